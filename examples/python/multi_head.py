"""One backbone, two heads: features computed once per input instead of once per head.

A multi-task image model (built here with tinyinfer.GraphBuilder, random
He-initialized weights): a CNN backbone (four 3x3 convolutions, 64x64 RGB
input) ending in 128 "features", a classifier head (features -> 10 class
probabilities) and an embedding head (features -> a 64-d tanh embedding).

    python examples/python/multi_head.py [--runs N]

It compares
- one model per head (what two separately exported models do): both run
  the backbone, so the backbone runs twice per input;
- `Model.split`: the backbone once, its features fed to both heads;
- `model.run(x, outputs=["probs", "embedding"])` on the multi-task model;
and checks that all give the same values bit for bit (same kernels, same
weights). bench/multi_head.py measures the same on more runs.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import tinyinfer  # noqa: E402


def he(rng, *shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build(seed: int = 0) -> bytes:
    """The multi-task model: input 'image' (1, 64, 64, 3); outputs 'probs' (1, 10) and 'embedding' (1, 64);
    the backbone's last tensor is 'features' (1, 128)."""
    rng = np.random.default_rng(seed)
    b = tinyinfer.GraphBuilder("multi_head")
    h = b.input("image", (1, 64, 64, 3))
    cin = 3
    for i, (cout, stride) in enumerate([(32, 2), (64, 1), (96, 2), (128, 1)]):
        h = b.op("Conv2D", h, b.const(f"conv{i}.w", he(rng, cout, 3, 3, cin, fan_in=9 * cin)),
                 b.const(f"conv{i}.b", np.zeros(cout, np.float32)), padding=1, strides=[stride, stride],
                 activation=1, name=f"conv{i}")
        cin = cout
    feats = b.op("Mean", h, axes=[1, 2], keep_dims=0, name="features")
    # classifier head
    c = b.op("FullyConnected", feats, b.const("cls1.w", he(rng, 128, 128, fan_in=128)),
             b.const("cls1.b", np.zeros(128, np.float32)), activation=1, name="cls_hidden")
    c = b.op("FullyConnected", c, b.const("cls2.w", he(rng, 10, 128, fan_in=128)),
             b.const("cls2.b", np.zeros(10, np.float32)), name="logits")
    probs = b.op("Softmax", c, name="probs")
    # embedding head
    e = b.op("FullyConnected", feats, b.const("emb.w", he(rng, 64, 128, fan_in=128)),
             b.const("emb.b", np.zeros(64, np.float32)), name="embedding_pre")
    emb = b.op("Tanh", e, name="embedding")
    b.output(probs, emb)
    return b.to_bytes()


def per_call_us(fn, runs: int) -> float:
    fn()  # warm-up (sessions are made on first use)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    a = ap.parse_args()
    x = np.random.default_rng(1).random((1, 64, 64, 3), dtype=np.float32)
    with tinyinfer.load(build()) as model:
        # one model per head: each runs the whole backbone
        classifier = model.subgraph(["image"], ["probs"])
        embedder = model.subgraph(["image"], ["embedding"])
        # one backbone, two heads
        backbone = model.subgraph(["image"], ["features"])
        cls_head = model.subgraph(["features"], ["probs"])
        emb_head = model.subgraph(["features"], ["embedding"])
        print(f"backbone {backbone.num_ops} ops, classifier head {cls_head.num_ops}, embedding head {emb_head.num_ops}")

        def separate():
            return classifier.run(x) + embedder.run(x)

        def shared():
            (f,) = backbone.run(x)
            return cls_head.run(f) + emb_head.run(f)

        ref = separate()
        for got in (shared(), model.run(x, outputs=["probs", "embedding"]), model.run(x)):
            assert all(np.array_equal(r, g) for r, g in zip(ref, got)), "results differ"
        print("bit-identical: separate models, shared backbone, run(outputs=...), the full model")

        # Model.split: the same two-stage form in one call
        bb, head = model.split(at=["features"])
        (f,) = bb.run(x)
        assert all(np.array_equal(r, g) for r, g in zip(ref, head.run(f)))

        t_sep = per_call_us(separate, a.runs)
        t_shared = per_call_us(shared, a.runs)
        print(f"two models, backbone twice: {t_sep:8.0f} us per input")
        print(f"backbone once, two heads:   {t_shared:8.0f} us per input  ({t_sep / t_shared:.2f}x faster)")


if __name__ == "__main__":
    main()
