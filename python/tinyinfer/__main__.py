"""Command line: python -m tinyinfer [--debug] COMMAND ...

An error prints one line ("error: ...") and exits with status 1 (2 for bad
arguments); --debug shows the Python traceback instead.

  convert SRC -o DST.tinf [--arch MODULE:NAME] [--input-shape [NAME=]1,3,32,32 ...] [--no-opset-check]
                                            TFLite / ONNX / PyTorch -> .tinf
  inspect MODEL.tinf [--memory]             every tensor's dtype, shape, quantization; size by part
                                            (--memory: the arena timeline, bytes alive per op, the peak)
  run MODEL.tinf [--input x.npy ...]        run once and print the outputs
  bench MODEL.tinf [--threads N] [--runs N] [--profile] [--json OUT]   latency percentiles, arena, per-op table
  compare A.tinf B.tinf ... [--data X.npy --labels Y.npy] [--json OUT] [--plot OUT.png|.html]
                                            variants side by side: size, accuracy, latency, memory, CPU, energy
  run MODEL.tinf --input DIR_OR_FILE --output FILE [--memory-budget 256MB]   stream a data set in batches
  info                                      library version, file, and the CPU level its kernels run at
  quantize SRC.tinf -o DST.tinf --mode fp16|int8-dynamic|int8-static|int4 [--calib FILE.npy|.npz|DIR]
           [--method auto|minmax|percentile|mse|entropy] [--report] [--max-accuracy-drop X] [--min-sqnr DB|auto|none] [--force-int8] [--requantization float32|fixed]
  cache ls|clear                            the conversion cache of tinyinfer.load (docs/migrating.md)
  prune SRC.tinf -o DST.tinf --method magnitude|wanda|nm [--sparsity 0.8] [--pattern 2:4] [--calib FILE]
  distill TEACHER --student mlp:HIDDEN[,HIDDEN] --data X.npy [--labels Y.npy] -o STUDENT.tinf
          [--quantize int8-static] [--epochs N]  train a small student from the teacher (tinyinfer[train])
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import numpy as np


def _shape(text: str):
    return tuple(int(x) for x in text.replace("x", ",").split(",") if x)


def _input_shapes(values):
    """--input-shape values: NAME=1,3,224,224 (repeatable, one per input) or one plain shape (a model with
    one input). Returns the convert options, or raises ValueError with the reason."""
    named, plain = {}, []
    for v in values or []:
        name, eq, dims = v.rpartition("=")
        try:
            shape = _shape(dims)
        except ValueError:
            raise ValueError(f"--input-shape {v!r}: dims must be integers, e.g. input=1,3,224,224") from None
        if not shape:
            raise ValueError(f"--input-shape {v!r} has no dims")
        if eq and not name:
            raise ValueError(f"--input-shape {v!r}: the input name before '=' is empty")
        if not eq:
            plain.append(shape)
        elif name in named:
            raise ValueError(f"--input-shape gives input '{name}' twice")
        else:
            named[name] = shape
    if plain and (named or len(plain) > 1):
        raise ValueError("--input-shape without a name is for a model with one input; name each input "
                         "(--input-shape NAME=1,3,224,224, repeated)")
    return {"input_shapes": named} if named else {"input_shape": plain[0]} if plain else {}


def cmd_convert(args) -> int:
    import tinyinfer
    options = {}
    if args.arch:
        mod, _, name = args.arch.partition(":")
        sys.path.insert(0, os.getcwd())
        arch = getattr(importlib.import_module(mod), name)
        options["architecture"] = arch() if callable(arch) and not hasattr(arch, "load_state_dict") else arch
    try:
        options.update(_input_shapes(args.input_shape))
    except ValueError as e:
        print(f"python -m tinyinfer convert: error: {e}", file=sys.stderr)
        return 2
    if args.opset_check is not None:
        options["check_opset"] = args.opset_check
    dst = args.output or os.path.splitext(args.src)[0] + ".tinf"
    try:
        tinyinfer.convert(args.src, dst, verbose=True, **options)
    except (TypeError, tinyinfer.InvalidArgumentError) as e:  # an option the importer does not take, a shape that fits no input
        print(f"python -m tinyinfer convert: error: {e}", file=sys.stderr)
        return 2
    return 0


def _fmt_bytes(n: int) -> str:
    for unit in ["B", "KB", "MB", "GB"]:
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_inspect(args) -> int:
    import tinyinfer
    if args.memory:
        return _inspect_memory(args)
    with tinyinfer.load(args.model, optimize=not args.no_optimize) as m:
        print(f"{args.model}: {os.path.getsize(args.model)} bytes, {m.num_ops} ops, {m.num_tensors} tensors")
        for k, v in m.metadata.items():
            print(f"  {k}: {v}")
        sizes = m.sizes
        print("size by part: " + ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in sizes.items()))
        by_dtype = {}
        for t in m.tensors():
            if t.kind in ("constant",):
                by_dtype[str(t.dtype)] = by_dtype.get(str(t.dtype), 0) + t.nbytes
        if by_dtype:
            print("weights by dtype: " + ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in sorted(by_dtype.items())))
        print(f"{'#':>4} {'name':40} {'kind':9} {'dtype':8} {'shape':20} {'bytes':>10}  quantization")
        for t in m.tensors():
            q = ""
            if t.scales is not None:
                if t.scales.size == 1:
                    q = f"scale {t.scales[0]:.6g} zero point {t.zero_points[0]}"
                else:
                    q = (f"axis {t.quant_axis}: {t.scales.size} scales {t.scales.min():.4g}..{t.scales.max():.4g}, "
                         f"zero points {t.zero_points.min()}..{t.zero_points.max()}")
            if t.kind == "constant":
                from .prune import tensor_storage
                sparse, stored, zeros = tensor_storage(m, t.index)
                if sparse or zeros >= 0.05:
                    q = (q + "; " if q else "") + f"{zeros:.1%} zeros" + (
                        f", stored sparse ({stored} B, {stored / max(t.nbytes, 1):.0%})" if sparse else "")
            print(f"{t.index:>4} {t.name[:40]:40} {t.kind:9} {str(t.dtype):8} {str(list(t.shape)):20} {t.nbytes:>10}  {q}")
        print("ops:")
        names = {t.index: t.name for t in m.tensors()}
        for op in m.ops():
            ins = ", ".join(names.get(i, "-") if i >= 0 else "-" for i in op.inputs)
            outs = ", ".join(names[i] for i in op.outputs)
            print(f"  {op.index:>3} {op.op:16} ({ins}) -> {outs}")
        passes = m.passes
        print(f"load-time passes ({len(passes)}):" if passes else "load-time passes: nothing to do")
        for line in passes:
            print(f"  {line}")
    return 0


def _inspect_memory(args) -> int:
    """inspect --memory: the arena timeline (tinyinfer.memory), --json / --plot."""
    import tinyinfer
    from tinyinfer import memory
    with tinyinfer.load(args.model, optimize=not args.no_optimize) as m:
        tl = memory.arena_timeline(m)
    print(f"{args.model}:")
    print(tl)
    if args.json:
        from tinyinfer.results import write_json
        write_json(args.json, "inspect-memory", {"model": args.model, "timeline": tl.to_dict()})
        print(f"JSON written to {args.json}")
    if args.plot:
        from tinyinfer import plots
        plots.arena_timeline(tl, args.plot, title=os.path.basename(args.model))
        print(f"plot written to {args.plot}")
    return 0


def _inputs(model, paths):
    if paths:
        arrays = [np.load(p) for p in paths]
    else:
        rng = np.random.default_rng(0)
        arrays = []
        for t in model.inputs:
            if np.issubdtype(t.dtype, np.floating):
                arrays.append(rng.standard_normal(t.shape).astype(t.dtype))
            else:
                arrays.append(np.zeros(t.shape, t.dtype))
    return arrays


def cmd_run(args) -> int:
    import tinyinfer
    from tinyinfer import batching
    if batching.cli_streams(args):  # --output / --memory-budget / a folder: stream in batches (docs/batching.md)
        return batching.cli_run(args)
    with tinyinfer.load(args.model, threads=args.threads) as m:
        outs = m.run(_inputs(m, args.input))
        for spec, y in zip(m.outputs, outs):
            print(f"{spec.name} {y.dtype} {list(y.shape)}")
            print(np.array2string(y.reshape(-1)[:32], precision=5), "..." if y.size > 32 else "")
    return 0


def _peak_rss_bytes() -> int:
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except Exception:
        return 0


def cmd_bench(args) -> int:
    import tinyinfer
    t0 = time.perf_counter()
    m = tinyinfer.load(args.model, threads=args.threads)
    load_s = time.perf_counter() - t0
    with m:
        x = _inputs(m, args.input)
        s = m.session()
        t0 = time.perf_counter()
        s.run(x)
        first = time.perf_counter() - t0
        cpu0 = time.process_time()
        wall, times = time.perf_counter(), []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            s.run(x)
            times.append(time.perf_counter() - t0)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu0
        t = np.array(times) * 1e6
        batch = m.inputs[0].shape[0] if m.inputs and m.inputs[0].shape else 1
        print(f"{args.model}: {m.num_ops} ops, threads {s.threads}, batch {batch}, {args.runs} runs")
        print(f"  latency us: p50 {np.percentile(t, 50):.1f}  p90 {np.percentile(t, 90):.1f}  "
              f"p99 {np.percentile(t, 99):.1f}  min {t.min():.1f}")
        print(f"  throughput: {args.runs * batch / wall:.1f} samples/s")
        print(f"  load {load_s * 1e3:.2f} ms, first run {first * 1e6:.1f} us")
        print(f"  arena {s.arena_bytes} bytes (unplanned {s.unplanned_bytes}), "
              f"peak RSS {_fmt_bytes(_peak_rss_bytes())}, CPU time per inference {cpu / args.runs * 1e6:.1f} us")
        if args.trace:
            _write_trace(args.trace, m, s.profile(x, runs=1), first)
            print(f"  trace written to {args.trace} (open in https://ui.perfetto.dev or chrome://tracing)")
        prof = None
        if args.profile:
            prof = s.profile(x, runs=min(args.runs, 200))
            total = sum(p for _, p in prof) or 1.0
            from .prune import sparse_ops
            sparse, nm24, timed = sparse_ops(m), sparse_ops(m, nm24=True), sparse_ops(m, measured_dense=True)
            print(f"  {'#':>3} {'op':16} {'us':>9} {'share':>6}")
            for i, (op, sec) in enumerate(prof):
                kernel = ("  sparse kernel (2:4)" if i in nm24 else "  sparse kernel" if i in sparse
                          else "  dense (measured)" if i in timed else "")
                print(f"  {i:>3} {op:16} {sec * 1e6:>9.2f} {sec / total * 100:>5.1f}%{kernel}")
        if args.json:
            from tinyinfer.results import write_json
            result = {"model": args.model, "file_bytes": os.path.getsize(args.model), "ops": m.num_ops,
                      "batch": batch, "runs": args.runs,
                      "latency_us": {"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
                                     "p99": float(np.percentile(t, 99)), "min": float(t.min()),
                                     "mean": float(t.mean())},
                      "throughput_per_s": args.runs * batch / wall, "load_ms": load_s * 1e3,
                      "first_run_us": first * 1e6, "arena_bytes": s.arena_bytes, "unplanned_bytes": s.unplanned_bytes,
                      "peak_rss_bytes": _peak_rss_bytes(), "cpu_us_per_inference": cpu / args.runs * 1e6,
                      "profile": None if prof is None else [{"index": i, "op": op, "us": sec * 1e6}
                                                            for i, (op, sec) in enumerate(prof)]}
            write_json(args.json, "bench", [result], threads=s.threads)
            print(f"  JSON written to {args.json}")
        if args.plot:
            from tinyinfer import plots
            plots.bench_report(args.model, t, prof, args.plot)
            print(f"  plot written to {args.plot}")
        s.close()
    return 0


def _write_trace(path, model, prof, first_run_s) -> None:
    """A Chrome trace-event JSON file (Perfetto opens it): one complete
    event per op of one run, on the session's thread."""
    import json
    events = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "tinyinfer"}},
              {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "session"}}]
    ops = model.ops()
    t = 0.0
    total = sum(sec for _, sec in prof)
    events.append({"name": "run", "cat": "session", "ph": "X", "pid": 1, "tid": 1, "ts": 0.0, "dur": total * 1e6})
    for op, (name, sec) in zip(ops, prof):
        events.append({"name": name, "cat": "op", "ph": "X", "pid": 1, "tid": 1, "ts": t * 1e6, "dur": sec * 1e6,
                       "args": {"op_index": op.index, "inputs": list(op.inputs), "outputs": list(op.outputs)}})
        t += sec
    with open(path, "w") as f:
        json.dump({"traceEvents": events, "displayTimeUnit": "ns",
                   "otherData": {"first_run_us": first_run_s * 1e6}}, f)


def _min_sqnr(v: str):
    key = v.strip().lower()
    if key == "auto":
        return "auto"
    if key in ("none", "off"):
        return None
    try:
        return float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--min-sqnr takes a number of dB, 'auto' or 'none', not {v!r}")


def cmd_quantize(args) -> int:
    import tinyinfer
    calib = args.calib
    if calib is not None and args.labels:
        calib = (calib, args.labels)
    dst = args.output or os.path.splitext(args.src)[0] + "_" + args.mode.replace("-", "_") + ".tinf"
    tinyinfer.quantize(args.src, dst, mode=args.mode, calib=calib, method=args.method, percentile=args.percentile,
                       report=args.report, max_accuracy_drop=args.max_accuracy_drop, min_sqnr=args.min_sqnr,
                       keep_float=args.keep_float or (), progress=None if not args.no_progress else False,
                       force_int8=args.force_int8, requantization=args.requantization, verbose=True)
    return 0

def cmd_info(args) -> int:
    import tinyinfer
    for key, value in tinyinfer.info().items():
        print(f"{key}: {' '.join(value) if isinstance(value, list) else value}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinyinfer", description="tinyinfer command line")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="convert a TFLite, ONNX or PyTorch model to .tinf")
    c.add_argument("src")
    c.add_argument("-o", "--output")
    c.add_argument("--arch", help="for a PyTorch state_dict: MODULE:NAME of a tinyinfer.nn architecture")
    c.add_argument("--input-shape", action="append",
                   help="NAME=1,3,224,224 for an ONNX input with dynamic dims (repeat per input), or one plain "
                        "shape for a one-input model or a PyTorch state_dict or TorchScript archive: e.g. 1,3,32,32")
    c.add_argument("--opset-check", action=argparse.BooleanOptionalAction, default=None,
                   help="ONNX: refuse opsets outside 11..20 (default); --no-opset-check tries anyway")
    c.set_defaults(fn=cmd_convert)
    i = sub.add_parser("inspect", help="show every tensor's dtype, shape and quantization, and sizes")
    i.add_argument("model")
    i.add_argument("--no-optimize", action="store_true", help="load without the graph optimization passes")
    i.add_argument("--memory", action="store_true",
                   help="the arena timeline: bytes alive at each op and what the peak is made of")
    i.add_argument("--json", help="with --memory: write the timeline as JSON")
    i.add_argument("--plot", help="with --memory: draw the timeline (.png or .html; needs matplotlib)")
    i.set_defaults(fn=cmd_inspect)
    r = sub.add_parser("run", help="run a model once and print its outputs")
    r.add_argument("model")
    r.add_argument("--input", action="append", help=".npy file per input, in order (default: random)")
    r.add_argument("--threads", type=int, default=1)
    __import__("tinyinfer.batching").batching.add_cli_arguments(r)
    r.set_defaults(fn=cmd_run)
    b = sub.add_parser("bench", help="latency percentiles, throughput, memory; --profile for a per-op table")
    b.add_argument("model")
    b.add_argument("--input", action="append")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--runs", type=int, default=200)
    b.add_argument("--profile", action="store_true")
    b.add_argument("--trace", help="write a Perfetto / chrome://tracing JSON trace of one run")
    b.add_argument("--json", help="write the figures as JSON (docs/monitoring.md schema)")
    b.add_argument("--plot", help="write a latency histogram (and per-op bars with --profile): .png or .html")
    b.set_defaults(fn=cmd_bench)
    sub.add_parser("info", help="library version and file, and the CPU level its kernels run at").set_defaults(
        fn=cmd_info)
    qz = sub.add_parser("quantize", help="quantize a float32 .tinf: fp16, int8-dynamic, int8-static or int4")
    qz.add_argument("src")
    qz.add_argument("-o", "--output")
    qz.add_argument("--mode", required=True, choices=["fp16", "int8-dynamic", "int8-static", "int4"])
    qz.add_argument("--calib", help="representative inputs: .npy, .npz (input names, or x and y) or a directory of .npy")
    qz.add_argument("--labels", help=".npy of labels for --calib (for --max-accuracy-drop)")
    qz.add_argument("--method", default="auto", choices=["auto", "minmax", "percentile", "mse", "entropy"])
    qz.add_argument("--percentile", type=float, default=99.99)
    qz.add_argument("--report", action="store_true", help="per-layer SQNR vs float32 on the calibration data")
    qz.add_argument("--max-accuracy-drop", type=float, help="keep sensitive layers float32 (needs labels)")
    qz.add_argument("--min-sqnr", type=_min_sqnr, default="auto",
                    help="keep sensitive layers float32 until the output SQNR >= DB; 'auto' (default): "
                         "int8-static's floor by model kind (recurrent 25 dB, transformer 20 dB, others none); "
                         "'none': no floor")
    qz.add_argument("--keep-float", action="append", help="a layer name to keep in float32 (repeatable)")
    qz.add_argument("--force-int8", action="store_true",
                    help="int8-static: quantize float-sensitive ops too (masks, Softmax, log paths; kept float32 by default)")
    qz.add_argument("--requantization", default="float32", choices=["float32", "fixed"],
                    help="int8-static convolutions' and Mul's output stage: float32 (default; as XNNPACK/onnxruntime) or "
                         "fixed (TFLite's fixed-point multipliers, bit for bit LiteRT's reference kernels)")
    qz.add_argument("--no-progress", action="store_true")
    qz.set_defaults(fn=cmd_quantize)
    from ._cache_cli import add_parser as add_cache_parser
    add_cache_parser(sub)
    from tinyinfer import _compare_mod  # the compare subcommand (tinyinfer/compare.py)
    _compare_mod.add_parser(sub)
    from . import _cli_prune
    _cli_prune.add_parser(sub)
    from . import _cli_distill  # knowledge distillation (tinyinfer/distill.py)
    _cli_distill.add_parser(sub)
    args = p.parse_args(argv)
    return _run(args.fn, args, args.debug)


def _run(fn, args, debug: bool) -> int:
    """Runs a command: an error is one line on stderr and exit status 1
    (2 for bad arguments, 130 for Ctrl-C), the traceback only with --debug."""
    from ._errors import TinyInferError
    try:
        return fn(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except (TinyInferError, OSError, ValueError, TypeError, KeyError, ImportError, MemoryError) as e:
        # the library's own errors, and files, arguments or modules the user named (--arch, --calib)
        if debug:
            raise
        if isinstance(e, TinyInferError):
            msg = str(e)
        elif isinstance(e, OSError) and e.filename is not None:
            msg = f"{e.filename}: {e.strerror or e}"
        else:
            msg = f"{type(e).__name__}: {e}"
        print(f"error: {msg}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, with how to see more
        if debug:
            raise
        print(f"error: internal error ({type(e).__name__}: {e}); run with --debug for the traceback",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
