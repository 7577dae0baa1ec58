"""Builds a small MLP and a small CNN with tinyinfer.GraphBuilder, saves them
as .tinf files, loads them back and runs them, printing outputs and timings.

    python examples/python/build_and_run.py [OUTDIR]
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import tinyinfer  # noqa: E402


def he(rng, *shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build_mlp(rng) -> tinyinfer.GraphBuilder:
    """784-256-128-10 with ReLU, softmax output."""
    b = tinyinfer.GraphBuilder("mlp")
    x = b.input("image", (1, 784))
    h = b.op("FullyConnected", x, b.const("fc1.w", he(rng, 256, 784, fan_in=784)), b.const("fc1.b", np.zeros(256)),
             activation=1)
    h = b.op("FullyConnected", h, b.const("fc2.w", he(rng, 128, 256, fan_in=256)), b.const("fc2.b", np.zeros(128)),
             activation=1)
    h = b.op("FullyConnected", h, b.const("fc3.w", he(rng, 10, 128, fan_in=128)), b.const("fc3.b", np.zeros(10)))
    b.output(b.op("Softmax", h, name="probs"))
    return b


def build_cnn(rng) -> tinyinfer.GraphBuilder:
    """28x28x1 -> conv3x3(8) -> maxpool -> conv3x3(16) -> maxpool -> fc(10) -> softmax."""
    b = tinyinfer.GraphBuilder("cnn")
    x = b.input("image", (1, 28, 28, 1))
    h = b.op("Conv2D", x, b.const("c1.w", he(rng, 8, 3, 3, 1, fan_in=9)), b.const("c1.b", np.zeros(8)),
             padding=1, activation=1)
    h = b.op("MaxPool2D", h, filter=[2, 2], strides=[2, 2])
    h = b.op("Conv2D", h, b.const("c2.w", he(rng, 16, 3, 3, 8, fan_in=72)), b.const("c2.b", np.zeros(16)),
             padding=1, activation=1)
    h = b.op("MaxPool2D", h, filter=[2, 2], strides=[2, 2])
    h = b.op("Reshape", h, shape=[-1, 7 * 7 * 16])
    h = b.op("FullyConnected", h, b.const("fc.w", he(rng, 10, 784, fan_in=784)), b.const("fc.b", np.zeros(10)))
    b.output(b.op("Softmax", h, name="probs"))
    return b


def time_runs(model, x, runs=200):
    model.run(x)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "out"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    print(f"tinyinfer {tinyinfer.__version__}")
    print(f"{'model':6} {'file bytes':>10} {'ops':>4} {'arena bytes':>11} {'load us':>8} {'run us (median)':>16}  top class")
    for name, build in [("mlp", build_mlp), ("cnn", build_cnn)]:
        path = os.path.join(out, f"{name}.tinf")
        size = build(rng).save(path)
        t0 = time.perf_counter()
        model = tinyinfer.load(path)
        load_us = (time.perf_counter() - t0) * 1e6
        with model:
            x = rng.random(model.inputs[0].shape, dtype=np.float32)
            np.save(os.path.join(out, f"{name}_input.npy"), x)
            x.tofile(os.path.join(out, f"{name}_input.bin"))
            (probs,) = model.run(x)
            us = time_runs(model, x)
            print(f"{name:6} {size:>10} {model.num_ops:>4} {model.arena_bytes:>11} {load_us:>8.0f} {us:>16.1f}  "
                  f"{int(np.argmax(probs))} (p={float(probs.max()):.3f}, sum={float(probs.sum()):.4f})")
    print(f"models written to {out}/")


if __name__ == "__main__":
    main()
