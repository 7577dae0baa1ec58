#!/usr/bin/env python3
"""Regenerates the example images of docs/monitoring.md (docs/images/
monitoring-*.png) from the bundled digits models: converts and quantizes
them into a temporary folder, then draws a comparison, the arena timeline
of the CNN and a bench profile. Needs matplotlib, scikit-learn (the digits)
and, for the LiteRT row, ai-edge-litert.

    python scripts/gen_monitoring_images.py [--out docs/images]
"""

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import tinyinfer  # noqa: E402
from tinyinfer import memory, plots  # noqa: E402
from tinyinfer.datasets import load_digits_28x28  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "images"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    x, y = load_digits_28x28()
    split = np.load(os.path.join(ROOT, "models", "digits_split.npz"))
    xs, ys = x[split["test"]], y[split["test"]]
    calib = x[split["calib"]][:, None, :, :, None]
    with tempfile.TemporaryDirectory() as d:
        f32 = os.path.join(d, "cnn.tinf")
        tinyinfer.convert(os.path.join(ROOT, "models", "digits_cnn.tflite"), f32)
        paths, names = [f32], ["float32"]
        for mode in ("fp16", "int8-dynamic", "int8-static"):
            p = os.path.join(d, f"cnn.{mode}.tinf")
            tinyinfer.quantize(f32, p, mode=mode, calib=calib if mode == "int8-static" else None, progress=False)
            paths.append(p)
            names.append(mode)
        try:
            import ai_edge_litert  # noqa: F401
            paths.append(os.path.join(ROOT, "models", "digits_cnn.int8.tflite"))
            names.append("LiteRT int8")
        except ImportError:
            pass
        recs = tinyinfer.compare(paths, data=xs, labels=ys, names=names, rounds=5, seconds=1.0)
        print(tinyinfer.compare_table(recs))
        plots.compare_report(recs, os.path.join(a.out, "monitoring-compare.png"))
        with tinyinfer.load(f32) as m:
            tl = memory.arena_timeline(m)
            s = m.session()
            xin = xs[:1].reshape(m.inputs[0].shape).astype(np.float32)
            prof = s.profile(xin, runs=100)
            lat = []
            import time
            for _ in range(2000):
                t0 = time.perf_counter()
                s.run(xin)
                lat.append((time.perf_counter() - t0) * 1e6)
            s.close()
        plots.arena_timeline(tl, os.path.join(a.out, "monitoring-arena.png"), title="digits CNN, float32")
        plots.bench_report("digits CNN float32", np.array(lat), prof, os.path.join(a.out, "monitoring-bench.png"))
    for f in ("monitoring-compare.png", "monitoring-arena.png", "monitoring-bench.png"):
        print(os.path.join(a.out, f), os.path.getsize(os.path.join(a.out, f)), "bytes")


if __name__ == "__main__":
    main()
