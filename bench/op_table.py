"""Time per op type, tinyinfer against LiteRT with XNNPACK (issue 20, item 1).

LiteRT's Python interpreter has no per-op profiler, so every op of a float
.tflite model is cut out into a model of its own (the op, its constant
tensors, its other inputs as the model's inputs; written with tensorflow's
flatbuffer_utils) and each of those is timed on both runtimes, one thread:
LiteRT (XNNPACK delegate, as the Interpreter applies it by default): the
median of `invoke()` alone, less that of a one-element Add model (its call
overhead); tinyinfer: the op's median time from its
per-op profile (`Session.profile`, the kernel alone, as `bench --profile`
gives it) on the same single-op model. Each runtime runs in a fresh process
per model, the two alternating in rounds; the figure is the median over
rounds. A second table gives tinyinfer's profile of the whole model, by its
own op names (after its load-time passes: fused Pad, activations).

Requirements (a bench, not in requirements-dev.txt): tensorflow (for
flatbuffer_utils), ai-edge-litert, tflite, numpy.

    python bench/op_table.py [MODEL.tflite ...] [--rounds 3] [--no-markdown]

Default models: bench/models/mobilenetv2.float32.tflite and the two
depthwise-heavy float32 real models of bench/real_models.py (face_landmark,
iris_landmark; `python bench/real_models.py fetch` first). Writes
bench/op_table.json and the section of BENCHMARKS.md between its markers.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import time

import numpy as np

from _report import cpu_name, write_section

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPS_DIR = os.path.join(HERE, "models", "real", "ops")
RESULTS = os.path.join(HERE, "op_table.json")
BEGIN = "<!-- op-table:begin -->"
END = "<!-- op-table:end -->"
DEFAULT = [os.path.join(HERE, "models", "mobilenetv2.float32.tflite"),
           os.path.join(HERE, "models", "real", "files", "face_landmark.tflite"),
           os.path.join(HERE, "models", "real", "files", "iris_landmark.tflite")]


def builtin_names():
    from tensorflow.lite.python import schema_py_generated as s
    return {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}


def op_key(name, op, tensors):
    """The op type, with the window and stride for convolutions and pools."""
    opts = op.builtinOptions
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and opts is not None:
        w = tensors[op.inputs[1]].shape
        kh, kw = (int(w[1]), int(w[2]))
        return f"{name} {kh}x{kw} s{opts.strideH}"
    if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D") and opts is not None:
        return f"{name} {opts.filterHeight}x{opts.filterWidth} s{opts.strideH}"
    return name


def split(path, out_dir):
    """Writes one .tflite per op of subgraph 0; returns [(file, op type key, shapes)]."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fu
    m = fu.read_model(path)
    names = builtin_names()
    sg = m.subgraphs[0]
    os.makedirs(out_dir, exist_ok=True)
    out = []
    # Weights stored as float16 behind a DEQUANTIZE op (the MediaPipe
    # models): the op's float32 input is made a constant of the converted
    # values, as both runtimes see it after their load (otherwise it would
    # be a run-time input: no prepacked weights on either side).
    dequantized = {}
    for op in sg.operators:
        code = m.operatorCodes[op.opcodeIndex]
        if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) != "DEQUANTIZE":
            continue
        src = sg.tensors[op.inputs[0]]
        data = m.buffers[src.buffer].data if src.buffer < len(m.buffers) else None
        if data is not None and len(data) and src.type == schema.TensorType.FLOAT16:
            f32 = np.frombuffer(bytes(bytearray(data)), dtype=np.float16).astype(np.float32)
            dequantized[op.outputs[0]] = np.frombuffer(f32.tobytes(), dtype=np.uint8)
    for i, op in enumerate(sg.operators):
        code = m.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"op{code.builtinCode}")
        if name == "DEQUANTIZE" and op.outputs[0] in dequantized:
            continue  # folded into the ops that read it
        used = []
        for t in list(op.inputs) + list(op.outputs):
            if t >= 0 and t not in used:
                used.append(t)
        remap = {t: k for k, t in enumerate(used)}
        new = schema.ModelT()
        new.version = m.version
        new.description = b"one op of " + os.path.basename(path).encode()
        new.operatorCodes = [copy.copy(code)]
        new.buffers = [schema.BufferT()]
        tensors, inputs = [], []
        for t in used:
            src = sg.tensors[t]
            tt = copy.copy(src)
            data = m.buffers[src.buffer].data if src.buffer < len(m.buffers) else None
            if t in dequantized:
                data = dequantized[t]
            if data is not None and len(data):
                b = schema.BufferT()
                b.data = data
                new.buffers.append(b)
                tt.buffer = len(new.buffers) - 1
            else:
                tt.buffer = 0
                if t in op.inputs:
                    inputs.append(remap[t])
            tensors.append(tt)
        if any(np.dtype(_np_type(tensors[k].type)) != np.float32 for k in inputs):
            continue  # an int shape or index tensor fed at run time: not timed alone
        one = copy.copy(op)
        one.opcodeIndex = 0
        one.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
        one.outputs = [remap[t] for t in op.outputs]
        g = schema.SubGraphT()
        g.tensors, g.inputs, g.outputs, g.operators = tensors, inputs, list(one.outputs), [one]
        g.name = b"op"
        new.subgraphs = [g]
        f = os.path.join(out_dir, f"{i:03d}_{name}.tflite")
        with open(f, "wb") as fh:
            fh.write(fu.convert_object_to_bytearray(new))
        shapes = [list(map(int, sg.tensors[t].shape)) for t in op.inputs if t >= 0]
        out.append((f, op_key(name, op, sg.tensors), shapes))
    return out


def _np_type(code):
    from tensorflow.lite.python import schema_py_generated as s
    t = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}[code]
    return {"FLOAT32": np.float32, "INT32": np.int32, "INT64": np.int64, "INT8": np.int8, "UINT8": np.uint8,
            "FLOAT16": np.float16, "BOOL": np.bool_}.get(t, np.float32)


# ---------------------------------------------------------------- workers (one fresh process per runtime and model)

def trivial_model(path):
    """A one-element Add: what an invoke() costs LiteRT besides its op."""
    if os.path.exists(path):
        return
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 1], tf.float32)])
    def f(x):
        return x + 1.0
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    with open(path, "wb") as fh:
        fh.write(conv.convert())


def time_litert(files, runs):
    rng = np.random.default_rng(0)
    out = {}
    for f in files + [os.path.join(OPS_DIR, "trivial.tflite")]:
        try:
            out[f] = median_invoke(f, runs, 5, rng)
        except Exception as e:
            out[f] = f"{type(e).__name__}: {e}"[:200]
    return out


def time_tinyinfer(files, runs, whole=None):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import tinyinfer
    rng = np.random.default_rng(0)
    out = {}
    for f in files:
        try:
            m = tinyinfer.load(f, threads=1)
            xs = [rng.standard_normal(t.shape).astype(t.dtype) for t in m.inputs]
            prof = m.profile(xs, runs=runs)
            out[f] = sum(t for _, t in prof) * 1e6
        except Exception as e:
            out[f] = f"{type(e).__name__}: {e}"[:200]
    if whole:
        m = tinyinfer.load(whole, threads=1)
        xs = [rng.standard_normal(t.shape).astype(t.dtype) for t in m.inputs]
        out["__whole__"] = [[op, t * 1e6] for op, t in m.profile(xs, runs=max(20, runs // 2))]
        for _ in range(10):
            m.run(xs)
        ts = []
        for _ in range(max(50, runs)):
            t0 = time.perf_counter()
            m.run(xs)
            ts.append(time.perf_counter() - t0)
        out["__whole_run_us__"] = float(np.median(ts)) * 1e6
    return out


def worker(args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, os.path.abspath(__file__)] + args, capture_output=True, text=True, env=env,
                       timeout=1800)
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"worker {args[:2]} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")


def median_invoke(path, runs, warm, rng):
    """LiteRT (one thread, XNNPACK): the median microseconds of `invoke()` alone on random inputs."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(np.float32))
    for _ in range(warm):
        it.invoke()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e6


def measure(path, rounds, runs):
    name = os.path.splitext(os.path.basename(path))[0]
    ops = split(path, os.path.join(OPS_DIR, name))
    files = [f for f, _, _ in ops]
    lists = os.path.join(OPS_DIR, name, "files.json")
    with open(lists, "w") as fh:
        json.dump(files, fh)
    ours, theirs, whole, whole_run, lite_whole = [], [], [], [], []
    trivial = os.path.join(OPS_DIR, "trivial.tflite")
    trivial_model(trivial)
    overhead = []
    for r in range(rounds):
        theirs.append(worker(["_litert", lists, "--runs", str(runs), "--whole", path]))
        overhead.append(theirs[-1].pop(trivial))
        ours.append(worker(["_tinyinfer", lists, "--runs", str(runs), "--whole", path]))
        whole.append(ours[-1].pop("__whole__"))
        whole_run.append(ours[-1].pop("__whole_run_us__"))
        lite_whole.append(theirs[-1].pop("__whole__"))
        print(f"  {name}: round {r + 1}/{rounds}", flush=True)
    rows = []
    for f, key, shapes in ops:
        a = [o[f] for o in ours if isinstance(o.get(f), float)]
        b = [max(0.0, t[f] - o) for t, o in zip(theirs, overhead) if isinstance(t.get(f), float)]
        err = next((o[f] for o in ours + theirs if isinstance(o.get(f), str)), None)
        rows.append({"op": os.path.basename(f)[:-7], "type": key, "shapes": shapes,
                     "ours_us": float(np.median(a)) if a else None, "litert_us": float(np.median(b)) if b else None,
                     "error": err})
    prof = {}
    for k in range(len(whole[0])):
        op = whole[0][k][0]
        prof.setdefault(op, []).append(float(np.median([w[k][1] for w in whole])))
    return {"model": name, "path": os.path.relpath(path, ROOT), "ops": rows,
            "litert_invoke_overhead_us": float(np.median(overhead)),
            "ours_whole_profile": {op: [len(v), sum(v)] for op, v in prof.items()},
            "ours_whole_run_us": float(np.median(whole_run)), "litert_whole_us": float(np.median(lite_whole))}


def write_markdown(doc):
    la = doc["load_average"]
    lines = [BEGIN, "", "## Per op type against LiteRT with XNNPACK (issue 20)", "",
             f"Command: `{doc['command']}`", "",
             f"CPU: {doc['cpu']} (tinyinfer level {doc['isa']}); load average {la['start'][0]:.2f} at the start, "
             f"{la['end'][0]:.2f} at the end (shared machine). One thread. Each op of the model cut out into a "
             "single-op .tflite and timed on both runtimes: LiteRT the median `invoke()` (XNNPACK) less "
             "the median `invoke()` of a one-element Add model (LiteRT's own call overhead, "
             f"{np.median([m['litert_invoke_overhead_us'] for m in doc['models']]):.2f} us here), tinyinfer the op's median in its per-op "
             f"profile of the same single-op model; the median over {doc['rounds']} alternating rounds of fresh "
             "processes. Rows: sums over the ops of that type and window; ratio = tinyinfer / LiteRT (lower is "
             "better). Single-op times miss what a whole model does between ops (fusion, cache reuse): the "
             "whole-model line is the two runtimes on the full model.", ""]
    for m in doc["models"]:
        lines += [f"### {m['model']} (`{m['path']}`)", "",
                  f"Whole model: tinyinfer {m['ours_whole_run_us']:.0f} us (`Model.run`), LiteRT "
                  f"{m['litert_whole_us']:.0f} us (`invoke`): {m['ours_whole_run_us'] / m['litert_whole_us']:.2f}x.",
                  "", "| op type | count | tinyinfer us | LiteRT us | ratio | share of our single-op total |",
                  "|---|---|---|---|---|---|"]
        groups = {}
        for r in m["ops"]:
            g = groups.setdefault(r["type"], [0, 0.0, 0.0, []])
            g[0] += 1
            if r["ours_us"] is not None and r["litert_us"] is not None:
                g[1] += r["ours_us"]
                g[2] += r["litert_us"]
            elif r["error"]:
                g[3].append(r["error"])
        total = sum(g[1] for g in groups.values()) or 1.0
        tot_b = sum(g[2] for g in groups.values())
        for key, (n, a, b, errs) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
            ratio = f"{a / b:.2f}" if b else ""
            note = f" ({len(errs)} not timed: {errs[0][:80]})" if errs else ""
            lines.append(f"| {key}{note} | {n} | {a:.1f} | {b:.1f} | {ratio} | {100 * a / total:.0f}% |")
        lines.append(f"| **all ops** | {len(m['ops'])} | {total:.1f} | {tot_b:.1f} | "
                     f"{total / tot_b if tot_b else 0:.2f} | 100% |")
        lines += ["", "tinyinfer's profile of the whole model (its op names, after its load-time passes): " +
                  ", ".join(f"{op} x{n} {us:.1f} us" for op, (n, us) in
                            sorted(m["ours_whole_profile"].items(), key=lambda kv: -kv[1][1])) + ".", ""]
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--whole")
    ap.add_argument("--no-markdown", action="store_true")
    a = ap.parse_args()
    if a.models and a.models[0] in ("_litert", "_tinyinfer"):
        with open(a.models[1]) as fh:
            files = json.load(fh)
        if a.models[0] == "_litert":
            out = time_litert(files, a.runs)
            out["__whole__"] = median_invoke(a.whole, 100, 10, np.random.default_rng(0)) if a.whole else None
        else:
            out = time_tinyinfer(files, a.runs, a.whole)
        print(json.dumps(out))
        return
    paths = a.models or DEFAULT
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import tinyinfer
    load0 = os.getloadavg()
    doc = {"schema": "tinyinfer-results/1", "kind": "op-table", "cpu": cpu_name(), "isa": tinyinfer.info()["isa"],
           "rounds": a.rounds, "command": "python bench/op_table.py " + " ".join(sys.argv[1:]), "models": []}
    for p in paths:
        if not os.path.exists(p):
            print(f"missing {p} (bench/make_models.py, bench/real_models.py fetch)", file=sys.stderr)
            continue
        doc["models"].append(measure(p, a.rounds, a.runs))
    doc["load_average"] = {"start": list(load0), "end": list(os.getloadavg())}
    with open(RESULTS, "w") as f:
        json.dump(doc, f)
    if not a.no_markdown:
        write_markdown(doc)
    for m in doc["models"]:
        print(f"{m['model']}: tinyinfer {m['ours_whole_run_us']:.0f} us, LiteRT {m['litert_whole_us']:.0f} us")


if __name__ == "__main__":
    main()
