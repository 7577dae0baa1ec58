"""The structured-pruning rows of docs/pruning.md: the digits MLP and CNN
(models/) with 25/50/75% of the channels removed (tinyinfer.prune
method="structured"), ranked by the filters' L2 norm or, with calibration
data, by the channels' contributions; one shot, no retraining. Accuracy on
the held-out test split, latency (batch 1, one thread) and size, measured as
bench/prune_table.py does (its helpers); the dense model's latency is the
best of a measurement before and one after its pruned variants (this
machine is shared). MobileNetV2 of bench/models (random weights, when
present): the relative output error against the dense model on 16 random
inputs instead of an accuracy, L2 ranking only.

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


def table(name, src, xt, quality, variants):
    """quality(data) -> the accuracy cell; variants: [(label, prune kwargs)]."""
    base_lat = latency_ms(src, xt)
    base = tinyinfer.prune(src, method="structured", sparsity=0.0, validate=False)
    rows = []
    for label, kw in variants:
        for sp in SPARSITIES:
            r = tinyinfer.prune(src, method="structured", sparsity=sp, **kw)
            rows.append((label, sp, quality(r.data), latency_ms(r.data, xt), r.params_after, len(r.data)))
    base_lat = min(base_lat, latency_ms(src, xt))
    print(f"| {name} | dense | 0% | {quality(src)} | {base_lat:.4f} | 1.00x | {base.params_before:,} | "
          f"{len(src):,} |", flush=True)
    for label, sp, q, lat, params, size in rows:
        print(f"| {name} | {label} | {sp:.0%} | {q} | {lat:.4f} | {base_lat / lat:.2f}x | {params:,} | {size:,} |",
              flush=True)


def main():
    tmp = tempfile.mkdtemp()
    print("| model | method | channels removed | accuracy | latency ms (batch 1, 1 thread) | speedup | weights "
          "| file bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("mlp", "cnn"):
        path = os.path.join(tmp, f"digits_{name}.tinf")
        tinyinfer.convert(os.path.join(ROOT, "models", f"digits_{name}.tflite"), path)
        with tinyinfer.load(path) as m:
            shape = m.inputs[0].shape
        xc, xt, yt = digits(shape)
        table(name, open(path, "rb").read(), xt, lambda d: f"{score(d, xt, yt):.4f}",
              [("structured L2", {}), ("structured activations", dict(calib=xc))])
    path = os.path.join(ROOT, "bench", "models", "mobilenetv2.float32.tinf")
    if os.path.exists(path):
        src = open(path, "rb").read()
        with tinyinfer.load(src) as m:
            shape = m.inputs[0].shape
        xt = np.random.default_rng(0).standard_normal((16,) + tuple(shape[1:])).astype(np.float32)
        with tinyinfer.load(src) as m:
            parent = np.stack([m.run(xt[i:i + 1])[0].reshape(-1) for i in range(len(xt))]).astype(np.float64)
        table("mobilenetv2", src, xt, lambda d: f"rel. error {score(d, xt, None, parent):.3f}",
              [("structured L2", {}), ("structured L2, exact counts", dict(channel_multiple=1))])


if __name__ == "__main__":
    main()
