"""The structured-pruning rows of docs/pruning.md: the digits MLP and CNN
(models/) with 25/50/75% of the channels removed (tinyinfer.prune
method="structured"), ranked by the filters' L2 norm or, with calibration
data, by the channels' activation norms; one shot, no retraining. Accuracy
on the held-out test split, latency (batch 1, one thread) and size, measured
as bench/prune_table.py does (its helpers). MobileNetV2 of bench/models
(random weights, when present): the relative output error against the
dense model on 16 random inputs instead of an accuracy, L2 ranking only.

    python bench/prune_structured_table.py
"""

import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import tinyinfer  # noqa: E402
from prune_table import digits, latency_ms, score  # noqa: E402

SPARSITIES = [0.25, 0.5, 0.75]


def main():
    tmp = tempfile.mkdtemp()
    print("| model | method | channels removed | accuracy | latency ms (batch 1, 1 thread) | speedup | weights | file bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("mlp", "cnn"):
        path = os.path.join(tmp, f"digits_{name}.tinf")
        tinyinfer.convert(os.path.join(ROOT, "models", f"digits_{name}.tflite"), path)
        with tinyinfer.load(path) as m:
            shape = m.inputs[0].shape
        xc, xt, yt = digits(shape)
        src = open(path, "rb").read()
        base_lat = latency_ms(src, xt)
        base = tinyinfer.prune(src, method="structured", sparsity=0.0, validate=False)
        print(f"| {name} | dense | 0% | {score(src, xt, yt):.4f} | {base_lat:.4f} | 1.00x | "
              f"{base.params_before:,} | {len(src):,} |", flush=True)
        for label, kw in (("structured L2", {}), ("structured activations", dict(calib=xc))):
            for sp in SPARSITIES:
                r = tinyinfer.prune(src, method="structured", sparsity=sp, **kw)
                lat = latency_ms(r.data, xt)
                print(f"| {name} | {label} | {sp:.0%} | {score(r.data, xt, yt):.4f} | {lat:.4f} | "
                      f"{base_lat / lat:.2f}x | {r.params_after:,} | {len(r.data):,} |", flush=True)
    path = os.path.join(ROOT, "bench", "models", "mobilenetv2.float32.tinf")
    if os.path.exists(path):
        src = open(path, "rb").read()
        with tinyinfer.load(src) as m:
            shape = m.inputs[0].shape
        xt = np.random.default_rng(0).standard_normal((16,) + tuple(shape[1:])).astype(np.float32)
        with tinyinfer.load(src) as m:
            parent = np.stack([m.run(xt[i:i + 1])[0].reshape(-1) for i in range(len(xt))]).astype(np.float64)
        base_lat = latency_ms(src, xt)
        base = tinyinfer.prune(src, method="structured", sparsity=0.0, validate=False)
        print(f"| mobilenetv2 | dense | 0% | rel. error 0.000 | {base_lat:.4f} | 1.00x | "
              f"{base.params_before:,} | {len(src):,} |", flush=True)
        for sp in SPARSITIES:
            r = tinyinfer.prune(src, method="structured", sparsity=sp)
            lat = latency_ms(r.data, xt)
            print(f"| mobilenetv2 | structured L2 | {sp:.0%} | rel. error {score(r.data, xt, None, parent):.3f} | "
                  f"{lat:.4f} | {base_lat / lat:.2f}x | {r.params_after:,} | {len(r.data):,} |", flush=True)


if __name__ == "__main__":
    main()
