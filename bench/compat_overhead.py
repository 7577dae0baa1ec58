"""The cost of the drop-in layers (tinyinfer.lite, tinyinfer.ort) over
running the same converted model with tinyinfer's own API.

    python bench/compat_overhead.py [--seconds 4] [--models mlp,mobilenetv2]

For each bench model (bench/models, made by bench/make_models.py) in each
format and precision tinyinfer converts:
  native  Session.run(x) (outputs copied) on the session the layer runs
  lite    interpreter.set_tensor(i, x); interpreter.invoke(); interpreter.get_tensor(o)
  ort     session.run(None, {name: x})
The two sides are called alternately, call by call (about `--seconds` per
model), so that both see the same machine, on the same session (the one the
layer made), so that both touch the same memory; the overhead is the median
of the paired differences (layer - native) over the median native time. The target
is under 2% of the invoke time.
"""

import argparse
import glob
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))

import tinyinfer  # noqa: E402
import tinyinfer.lite  # noqa: E402
import tinyinfer.ort  # noqa: E402


_CLOCK = time.perf_counter


def _timed_pair(first, second):
    pc = _CLOCK
    t0 = pc()
    first()
    t1 = pc()
    second()
    return t1 - t0, pc() - t1


def compare(native, layer, seconds):
    """Per-call times, the two sides called alternately (which goes first
    alternates too) so that both see the same machine: (median native
    seconds, median layer seconds, median of the paired differences)."""
    for _ in range(5):
        native()
        layer()
    pc = _CLOCK
    t0 = pc()
    for _ in range(5):
        native()
    per = (pc() - t0) / 5
    n = int(min(20000, max(60, seconds / (2 * max(per, 1e-7)))))
    tn, tl = np.empty(n), np.empty(n)
    for i in range(n):
        if i & 1:
            tn[i], tl[i] = _timed_pair(native, layer)
        else:
            tl[i], tn[i] = _timed_pair(layer, native)
    return float(np.median(tn)), float(np.median(tl)), float(np.median(tl - tn))


def _input(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.uniform(0, 1, shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max + 1, shape).astype(dt)


def bench_tflite(path, seconds):
    it = tinyinfer.lite.Interpreter(model_path=path)
    it.allocate_tensors()
    d_in, d_out = it.get_input_details(), it.get_output_details()
    xs = [_input(tuple(d["shape"]), d["dtype"], k) for k, d in enumerate(d_in)]
    ins = [d["index"] for d in d_in]
    outs = [d["index"] for d in d_out]

    def layer():
        for i, x in zip(ins, xs):
            it.set_tensor(i, x)
        it.invoke()
        return [it.get_tensor(o) for o in outs]

    session = it._session  # the interpreter's own session, run through tinyinfer's API
    feed = xs[0] if len(xs) == 1 else xs

    def native():
        return session.run(feed)

    for a, b in zip(layer(), native()):
        np.testing.assert_array_equal(a, b)
    return compare(native, layer, seconds)


def bench_onnx(path, seconds):
    sess = tinyinfer.ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    args = sess.get_inputs()
    session = sess._default_session  # the session's own (batch 1 for a symbolic batch dim)
    xs = [_input(t.shape, t.dtype, k) for k, t in enumerate(session.inputs)]
    feed = {a.name: x for a, x in zip(args, xs)}
    native_feed = xs[0] if len(xs) == 1 else xs

    def layer():
        return sess.run(None, feed)

    def native():
        return session.run(native_feed)

    for a, b in zip(layer(), native()):
        np.testing.assert_array_equal(a, b)
    return compare(native, layer, seconds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0, help="time spent per model")
    p.add_argument("--models", default="", help="comma-separated name prefixes (default: all)")
    args = p.parse_args(argv)
    files = sorted(glob.glob(os.path.join(HERE, "models", "*.tflite")) +
                   glob.glob(os.path.join(HERE, "models", "*.onnx")))
    if args.models:
        files = [f for f in files if os.path.basename(f).split(".")[0] in args.models.split(",")]
    if not files:
        print("no bench models: run bench/make_models.py first", file=sys.stderr)
        return 1
    print(f"{'model':32} {'layer':5} {'native us':>10} {'layer us':>10} {'extra us':>9} {'overhead':>9}")
    worst = 0.0
    for f in files:
        name = os.path.basename(f)
        kind = "lite" if f.endswith(".tflite") else "ort"
        try:
            native, layer, extra = (bench_tflite if kind == "lite" else bench_onnx)(f, args.seconds)
        except tinyinfer.TinyInferError as e:
            print(f"{name:32} {kind:5} not converted: {str(e)[:70]}")
            continue
        over = extra / native
        worst = max(worst, over)
        print(f"{name:32} {kind:5} {native * 1e6:>10.1f} {layer * 1e6:>10.1f} {extra * 1e6:>9.2f} {over * 100:>8.2f}%")
    print(f"largest overhead {worst * 100:.2f}% (target < 2%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
