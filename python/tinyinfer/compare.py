"""Side-by-side comparison of model variants (fp32, fp16, int8, pruned, a
LiteRT or onnxruntime file of the same model...) in one process:

    records = tinyinfer.compare(["fp32.tinf", "int8.tinf", "int8.tflite"], data="x.npy", labels="y.npy")
    print(tinyinfer.compare_table(records))      # or pandas.DataFrame(records)

    python -m tinyinfer compare A.tinf B.tinf ... [--data X.npy --labels Y.npy] [--threads N]
           [--json OUT.json] [--plot OUT.png|OUT.html]

Each variant is loaded in turn (its peak RSS and the RSS it added are
measured then), evaluated on the data (accuracy against the labels, and
agreement with the first variant's top-1 predictions), then all are timed
in interleaved rounds (rotating order) so that machine noise falls on every
variant alike. Latency is one call from Python on a batch-1 input, like
`bench`; CPU use and RAPL energy (or the labelled estimate) are summed over
each variant's own rounds. docs/monitoring.md explains every column.
"""

from __future__ import annotations

import os
import resource
import time
from typing import List, Optional, Sequence

import numpy as np

from . import monitor as _mon

COLUMNS = ["name", "runtime", "file_bytes", "accuracy", "agreement", "output_rel_error", "p50_us", "p90_us", "p99_us",
           "mean_us", "throughput_per_s", "cpu_percent", "peak_rss_bytes", "rss_added_bytes", "library_bytes",
           "arena_bytes", "energy_j_per_inference", "energy_source", "runs", "batch", "path"]


# ---- variants: one adapter per runtime ----------------------------------------------------------------------------

class _Tinf:
    runtime = "tinyinfer"

    def __init__(self, path, threads):
        import tinyinfer
        self.model = tinyinfer.load(path, threads=threads)
        self.session = self.model.session()
        self.input_shapes = [t.shape for t in self.session.inputs]
        self.input_dtypes = [np.dtype(t.dtype) for t in self.session.inputs]

    def run(self, xs):
        return self.session.run(xs)[0]

    def memory(self):
        lib = _mon.library_memory_of(self.model, [self.session])
        return lib["weights"] + lib["folded"] + lib["packed"] + lib["arena"], lib["arena"]

    def close(self):
        self.session.close()
        self.model.close()


class _LiteRT:
    runtime = "LiteRT"

    def __init__(self, path, threads):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            try:
                from tflite_runtime.interpreter import Interpreter
            except ImportError:
                from ._errors import InvalidArgumentError
                raise InvalidArgumentError(f"{path}: comparing a .tflite file needs ai-edge-litert "
                                           "(pip install ai-edge-litert)") from None
        self.it = Interpreter(model_path=path, num_threads=threads)
        self.it.allocate_tensors()
        self.ins = self.it.get_input_details()
        self.out = self.it.get_output_details()[0]
        self.input_shapes = [tuple(int(v) for v in d["shape"]) for d in self.ins]
        self.input_dtypes = [np.dtype(np.float32) if d["dtype"] in (np.int8, np.uint8) else np.dtype(d["dtype"])
                             for d in self.ins]

    def run(self, xs):
        for d, x in zip(self.ins, xs):
            if d["dtype"] in (np.int8, np.uint8) and x.dtype != d["dtype"]:
                s, z = d["quantization"]
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x / s) + z, info.min, info.max).astype(d["dtype"])
            self.it.set_tensor(d["index"], x)
        self.it.invoke()
        y = self.it.get_tensor(self.out["index"])
        if self.out["dtype"] in (np.int8, np.uint8):
            s, z = self.out["quantization"]
            y = (y.astype(np.float32) - z) * s
        return y

    def memory(self):
        return None, None

    def close(self):
        self.it = None


class _Onnx:
    runtime = "onnxruntime"

    def __init__(self, path, threads):
        try:
            import onnxruntime as ort
        except ImportError:
            from ._errors import InvalidArgumentError
            raise InvalidArgumentError(f"{path}: comparing a .onnx file needs onnxruntime (pip install onnxruntime)") \
                from None
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        o.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        self.ins = self.sess.get_inputs()
        types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                 "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}
        self.input_shapes = [tuple(d if isinstance(d, int) else 1 for d in i.shape) for i in self.ins]
        self.input_dtypes = [np.dtype(types.get(i.type, np.float32)) for i in self.ins]

    def run(self, xs):
        return self.sess.run(None, {i.name: x for i, x in zip(self.ins, xs)})[0]

    def memory(self):
        return None, None

    def close(self):
        self.sess = None


def _open(path, threads):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".tflite":
        return _LiteRT(path, threads)
    if ext == ".onnx":
        return _Onnx(path, threads)
    return _Tinf(path, threads)


# ---- data ----------------------------------------------------------------------------------------------------------

def _load_array(a, what):
    if a is None or isinstance(a, np.ndarray):
        return a
    if isinstance(a, (str, os.PathLike)):
        try:
            return np.load(a, allow_pickle=False)
        except (OSError, ValueError) as e:
            from ._errors import InvalidArgumentError
            raise InvalidArgumentError(f"cannot read {what} file {a}: {e}") from None
    return np.asarray(a)


def _samples_for(v, data: np.ndarray) -> List[np.ndarray]:
    """The data as batches of the variant's input shape: one array per sample
    group (the variant's batch, usually 1), reshaped when only the layout
    differs (784 vs 28x28x1)."""
    from ._errors import InvalidArgumentError
    if len(v.input_shapes) != 1:
        raise InvalidArgumentError(f"--data needs single-input models; this one takes {len(v.input_shapes)}")
    shape, dtype = v.input_shapes[0], v.input_dtypes[0]
    b = shape[0] if shape else 1
    per = int(np.prod(shape[1:], dtype=np.int64)) if shape else 1
    if data.size % per != 0:
        raise InvalidArgumentError(f"data of shape {list(data.shape)} does not split into inputs of shape "
                                   f"{list(shape)}")
    flat = data.reshape(-1, per)
    n = flat.shape[0] // b * b
    if n == 0:
        raise InvalidArgumentError(f"data of shape {list(data.shape)} holds fewer than one batch of {list(shape)}")
    if np.issubdtype(dtype, np.floating) and not np.issubdtype(flat.dtype, np.floating):
        flat = flat.astype(dtype)
    elif not np.can_cast(flat.dtype, dtype, casting="same_kind"):
        raise InvalidArgumentError(f"the model takes {dtype} input, the data is {flat.dtype}")
    flat = flat[:n].astype(dtype, copy=False).reshape((n // b,) + tuple(shape))
    return [np.ascontiguousarray(x) for x in flat]


def _random_inputs(v, n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        xs = []
        for shape, dt in zip(v.input_shapes, v.input_dtypes):
            xs.append(rng.standard_normal(shape).astype(dt) if np.issubdtype(dt, np.floating)
                      else np.zeros(shape, dt))
        out.append(xs)
    return out


# ---- the comparison ------------------------------------------------------------------------------------------------

def compare(models: Sequence, data=None, labels=None, threads: int = 1, rounds: int = 5, seconds: float = 1.0,
            names: Optional[Sequence[str]] = None, watts_per_core: Optional[float] = None,
            powercap_root: str = "/sys/class/powercap", hwmon_root: str = "/sys/class/hwmon",
            progress=None) -> List[dict]:
    """Compares model files (.tinf; .tflite through LiteRT, .onnx through
    onnxruntime). `data`: inputs (array or .npy), N samples of the models'
    input (layout may differ: 784 vs 28x28x1); `labels`: N class indices.
    Without data, 64 random inputs give the agreement. `seconds`: timing per
    variant, over `rounds` interleaved rounds. `names`: labels for the
    variants (default: file names). Returns one dict per variant (keys in
    COLUMNS plus `latencies_us` and `notes`), ready for pandas.DataFrame."""
    from ._errors import InvalidArgumentError
    models = [os.fspath(m) for m in models]
    if not models:
        raise InvalidArgumentError("compare needs at least one model")
    if names is not None and len(names) != len(models):
        raise InvalidArgumentError(f"{len(names)} names for {len(models)} models")
    if rounds < 1 or not seconds > 0:
        raise InvalidArgumentError("rounds must be >= 1 and seconds > 0")
    names = list(names) if names is not None else [os.path.basename(m) for m in models]
    data = _load_array(data, "data")
    labels = _load_array(labels, "labels")
    if labels is not None and data is None:
        raise InvalidArgumentError("labels need data")
    if watts_per_core is None:
        watts_per_core = float(os.environ.get("TINYINFER_WATTS_PER_CORE", _mon.DEFAULT_WATTS_PER_CORE))
    say = progress or (lambda msg: None)
    proc = _mon.ProcSource()
    records, variants, inputs = [], [], []
    ref_out = None
    try:
        # 1. Load and evaluate each in turn: peak RSS, RSS added, accuracy, agreement.
        for path, name in zip(models, names):
            say(f"loading {name}")
            reset = proc.reset_hwm()
            rss0 = proc.rss()
            v = _open(path, threads)
            variants.append(v)
            samples = _samples_for(v, data) if data is not None else _random_inputs(v, 64)
            if data is not None:
                samples = [[x] for x in samples]
            outs = np.stack([np.asarray(v.run(xs), np.float32).reshape(-1) for xs in samples])
            hwm = proc.hwm()
            peak = hwm if reset is None and isinstance(hwm, int) else None
            rec = {"name": name, "runtime": v.runtime, "path": path, "file_bytes": os.path.getsize(path),
                   "batch": int(v.input_shapes[0][0]) if v.input_shapes and v.input_shapes[0] else 1,
                   "peak_rss_bytes": peak, "notes": {}}
            rec["rss_added_bytes"] = peak - rss0 if peak is not None and isinstance(rss0, int) else None
            if peak is None:
                rec["notes"]["peak_rss_bytes"] = reset or str(hwm)
            rec["library_bytes"], rec["arena_bytes"] = v.memory()
            if rec["library_bytes"] is None:
                rec["notes"]["library_bytes"] = f"{v.runtime} does not report its memory"
            classes = outs.shape[1] // max(rec["batch"], 1)
            pred = outs.reshape(outs.shape[0] * rec["batch"], -1).argmax(1) if classes > 1 else None
            if labels is not None and pred is not None:
                y = np.asarray(labels).reshape(-1)[:len(pred)]
                rec["accuracy"] = float((pred == y).mean())
            else:
                rec["accuracy"] = None
                rec["notes"]["accuracy"] = "no labels" if labels is None else "the output has one value per sample"
            if ref_out is None:
                ref_out, ref_pred = outs, pred
            if outs.shape == ref_out.shape:
                den = float(np.linalg.norm(ref_out)) or 1.0
                rec["output_rel_error"] = float(np.linalg.norm(outs - ref_out)) / den
                rec["agreement"] = float((pred == ref_pred).mean()) if pred is not None else None
            else:
                rec["output_rel_error"] = rec["agreement"] = None
                rec["notes"]["agreement"] = f"output shape {outs.shape[1:]} differs from the first variant's"
            inputs.append(samples[0])
            records.append(rec)

        # 2. Warm up and size the rounds from a first estimate of each latency.
        per_round = []
        for v, xs in zip(variants, inputs):
            for _ in range(5):
                v.run(xs)
            t0 = time.perf_counter()
            k = 0
            while k < 20 or time.perf_counter() - t0 < 0.02:
                v.run(xs)
                k += 1
            est = (time.perf_counter() - t0) / k
            per_round.append(max(1, int(seconds / rounds / est)))

        # 3. Interleaved rounds, rotating the order.
        rapl = _mon.RaplSource(powercap_root, hwmon_root)
        lat = [[] for _ in variants]
        wall = [0.0] * len(variants)
        cpu = [0.0] * len(variants)
        joules = [0.0] * len(variants)
        pc = time.perf_counter_ns
        for r in range(rounds):
            say(f"round {r + 1}/{rounds}")
            n = len(variants)
            for j in range(n):
                i = (j + r) % n
                v, xs, t = variants[i], inputs[i], lat[i]
                run = v.run
                if rapl.problem is None:
                    rapl.start()
                ru0 = resource.getrusage(resource.RUSAGE_SELF)
                w0 = time.perf_counter()
                for _ in range(per_round[i]):
                    t0 = pc()
                    run(xs)
                    t.append(pc() - t0)
                wall[i] += time.perf_counter() - w0
                ru1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu[i] += (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
                if rapl.problem is None:
                    try:
                        rapl.sample()
                        joules[i] += sum(rapl.joules().values())
                    except OSError as e:
                        rapl.problem = str(e)
        for i, rec in enumerate(records):
            us = np.array(lat[i], np.float64) * 1e-3
            runs = len(us)
            rec.update({"p50_us": float(np.percentile(us, 50)), "p90_us": float(np.percentile(us, 90)),
                        "p99_us": float(np.percentile(us, 99)), "mean_us": float(us.mean()), "runs": runs,
                        "throughput_per_s": runs * rec["batch"] / wall[i] if wall[i] > 0 else None,
                        "cpu_percent": 100.0 * cpu[i] / wall[i] if wall[i] > 0 else None,
                        "latencies_us": us.tolist()})
            inf = runs * rec["batch"]
            if rapl.problem is None:
                rec["energy_j_per_inference"], rec["energy_source"] = joules[i] / inf, "RAPL"
            else:
                rec["energy_j_per_inference"] = cpu[i] * watts_per_core / inf
                rec["energy_source"] = f"estimate ({watts_per_core:g} W per busy core)"
                rec["notes"]["energy"] = rapl.problem
    finally:
        for v in variants:
            v.close()
    return [{k: rec.get(k) for k in COLUMNS} | {"latencies_us": rec["latencies_us"], "notes": rec["notes"]}
            for rec in records]


# ---- the table -----------------------------------------------------------------------------------------------------

def _f(v, fmt, width):
    return f"{'-':>{width}}" if v is None else f"{v:>{width}{fmt}}"


def compare_table(records: List[dict]) -> str:
    """The comparison as a text table (one line per variant)."""
    w = max([7] + [len(r["name"]) for r in records])
    head = (f"{'variant':{w}} {'runtime':11} {'file KB':>8} {'accuracy':>8} {'agree':>6} {'p50 us':>9} "
            f"{'p99 us':>9} {'inf/s':>9} {'CPU %':>6} {'peak RSS MB':>11} {'+RSS MB':>8} {'lib MB':>7} {'mJ/inf':>8}")
    lines = [head]
    est = False
    for r in records:
        mj = r["energy_j_per_inference"]
        mark = "*" if r["energy_source"] and r["energy_source"].startswith("estimate") else " "
        est = est or mark == "*"
        mb = (lambda b: None if b is None else b / 1e6)
        lines.append(f"{r['name']:{w}} {r['runtime']:11} {r['file_bytes'] / 1e3:>8.1f} "
                     f"{_f(r['accuracy'], '.4f', 8)} {_f(r['agreement'], '.4f', 6)} {_f(r['p50_us'], '.1f', 9)} "
                     f"{_f(r['p99_us'], '.1f', 9)} {_f(r['throughput_per_s'], '.0f', 9)} "
                     f"{_f(r['cpu_percent'], '.0f', 6)} {_f(mb(r['peak_rss_bytes']), '.1f', 11)} "
                     f"{_f(mb(r['rss_added_bytes']), '.2f', 8)} {_f(mb(r['library_bytes']), '.2f', 7)} "
                     f"{_f(None if mj is None else mj * 1e3, '.4f', 7)}{mark}")
    notes = ["latency: one call from Python on one input (batch of the file), interleaved rounds; agree: top-1 "
             "agreement with the first variant; +RSS: RSS added by loading and evaluating it; lib: weights, "
             "folded and repacked constants, arena"]
    if est:
        e = next(r["energy_source"] for r in records if r["energy_source"].startswith("estimate"))
        notes.append(f"* energy {e}: no energy meter (" + next(r["notes"]["energy"] for r in records
                                                               if "energy" in r["notes"]) + ")")
    return "\n".join(lines + ["(" + n + ")" for n in notes])


# ---- the command line: python -m tinyinfer compare ---------------------------------------------------------------

def add_parser(sub) -> None:
    """Registers `compare` on the subparsers of python -m tinyinfer."""
    c = sub.add_parser("compare", help="compare model variants side by side: size, accuracy, latency, memory, "
                                       "CPU, energy")
    c.add_argument("models", nargs="+", metavar="MODEL",
                   help=".tinf (also .tflite via LiteRT, .onnx via onnxruntime); NAME=PATH names a variant")
    c.add_argument("--data", help=".npy of inputs (N samples; the layout may differ, 784 vs 28x28x1)")
    c.add_argument("--labels", help=".npy of N class indices (for accuracy)")
    c.add_argument("--threads", type=int, default=1, help="threads per variant (default 1)")
    c.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    c.add_argument("--seconds", type=float, default=1.0, help="timing per variant over all rounds (default 1)")
    c.add_argument("--watts-per-core", type=float, help="power of a busy core for the energy estimate "
                                                        f"(default {_mon.DEFAULT_WATTS_PER_CORE:g} W)")
    c.add_argument("--json", help="write the records (docs/monitoring.md schema)")
    c.add_argument("--plot", help="write plots: OUT.png (one figure) or OUT.html (a report with tables and images)")
    c.set_defaults(fn=main)


def main(args) -> int:
    paths, names = [], []
    for m in args.models:
        name, sep, path = m.partition("=")
        if sep and not os.path.exists(m):
            paths.append(path)
            names.append(name)
        else:
            paths.append(m)
            names.append(os.path.basename(m))
    records = compare(paths, data=args.data, labels=args.labels, threads=args.threads, rounds=args.rounds,
                      seconds=args.seconds, names=names, watts_per_core=args.watts_per_core)
    print(compare_table(records))
    if args.json:
        from .results import write_json
        write_json(args.json, "compare", [{k: v for k, v in r.items() if k != "latencies_us"} for r in records],
                   threads=args.threads)
        print(f"JSON written to {args.json}")
    if args.plot:
        from . import plots
        plots.compare_report(records, args.plot)
        print(f"plot written to {args.plot}")
    return 0
