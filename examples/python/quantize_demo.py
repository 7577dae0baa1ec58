"""The whole story on bundled real data: convert the trained digits models
(models/digits_{mlp,cnn}.tflite), quantize them in every mode, run them on the
held-out split, and print one table of size, accuracy, agreement with float32
and latency per mode, next to LiteRT's own post-training quantizations of the
same trained models (when ai-edge-litert is installed).

    python examples/python/quantize_demo.py [--markdown] [--out DIR]
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import tinyinfer  # noqa: E402
from tinyinfer.datasets import load_digits_28x28  # noqa: E402

MODES = ["fp16", "int8-dynamic", "int8-static", "int4"]


def latency_us(run, x, reps=300):
    for _ in range(20):
        run(x)
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run(x)
        t.append(time.perf_counter() - t0)
    return float(np.median(t)) * 1e6


def evaluate_tinf(path, xs, ys, ref):
    with tinyinfer.load(path) as m:
        # The whole test split as one batch (a session for that batch size).
        (probs,) = m.run(xs)
        pred = probs.argmax(1)
        x1 = xs[:1]
        us = latency_us(m.run, x1)
    return {"bytes": os.path.getsize(path), "acc": float((pred == ys).mean()),
            "agree": float((pred == ref).mean()) if ref is not None else 1.0, "us": us, "pred": pred}


def evaluate_litert(path, xs, ys, ref):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]

    def run(x):
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]
            x = np.clip(np.round(x / s) + z, -128, 127).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            s, z = out["quantization"]
            y = (y.astype(np.float32) - z) * s
        return y
    pred = np.array([run(xs[i:i + 1]).argmax() for i in range(len(xs))])
    return {"bytes": os.path.getsize(path), "acc": float((pred == ys).mean()),
            "agree": float((pred == ref).mean()), "us": latency_us(run, xs[:1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--out", default=os.path.join(ROOT, "out"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t_start = time.time()
    x, y = load_digits_28x28()
    split = np.load(os.path.join(ROOT, "models", "digits_split.npz"))
    rows = []
    for name, shape in [("mlp", (-1, 784)), ("cnn", (-1, 28, 28, 1))]:
        xs, ys = x[split["test"]].reshape(shape), y[split["test"]]
        calib = x[split["calib"]].reshape(shape)[:, None]  # 200 calibration inputs of batch 1
        src = os.path.join(ROOT, "models", f"digits_{name}.tflite")
        f32 = os.path.join(a.out, f"digits_{name}.tinf")
        tinyinfer.convert(src, f32, verbose=False)
        base = evaluate_tinf(f32, xs, ys, None)
        rows.append((name, "tinyinfer", "float32", base))
        for mode in MODES:
            dst = os.path.join(a.out, f"digits_{name}.{mode}.tinf")
            tinyinfer.quantize(f32, dst, mode=mode, calib=calib if mode == "int8-static" else None, progress=False)
            rows.append((name, "tinyinfer", mode, evaluate_tinf(dst, xs, ys, base["pred"])))
        try:
            import ai_edge_litert  # noqa: F401
            for kind, label in [("", "float32"), (".float16", "float16"), (".dynamic", "dynamic-range int8"),
                                (".int8", "full-integer int8")]:
                p = os.path.join(ROOT, "models", f"digits_{name}{kind}.tflite")
                rows.append((name, "LiteRT", label, evaluate_litert(p, xs, ys, base["pred"])))
        except ImportError:
            pass
    if a.markdown:
        print("| model | runtime | mode | bytes | top-1 accuracy | agreement with float32 | latency us (batch 1) |")
        print("|---|---|---|---|---|---|---|")
        for name, rt, mode, r in rows:
            print(f"| {name} | {rt} | {mode} | {r['bytes']:,} | {r['acc']:.4f} | {r['agree']:.4f} | {r['us']:.1f} |")
    else:
        print(f"{'model':5} {'runtime':9} {'mode':19} {'bytes':>9} {'accuracy':>9} {'agree':>7} {'latency us':>11}")
        for name, rt, mode, r in rows:
            print(f"{name:5} {rt:9} {mode:19} {r['bytes']:>9,} {r['acc']:>9.4f} {r['agree']:>7.4f} {r['us']:>11.1f}")
    print(f"(digits test split: {len(split['test'])} images; int8-static calibrated on {len(split['calib'])}; "
          f"latency = median of 300 single-image runs from Python, one thread; took {time.time() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
