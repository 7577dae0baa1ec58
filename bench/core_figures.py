"""Core figures of the runtime: library size, arena sizes of the demo models,
and the load time of a 10 MB model (memory-mapped, weights used in place).

    python bench/core_figures.py        # after scripts/build-lib.sh
"""

import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "examples", "python"))
import tinyinfer  # noqa: E402
from tinyinfer import _lib  # noqa: E402
from build_and_run import build_cnn, build_mlp  # noqa: E402


def ten_mb_model(path):
    """An MLP 1024 -> 2048 -> 256 -> 10 with 2.6 M float32 weights (10.5 MB)."""
    rng = np.random.default_rng(0)
    b = tinyinfer.GraphBuilder("mlp-10mb")
    x = b.input("x", (1, 1024))
    h = b.op("FullyConnected", x, b.const("w1", rng.standard_normal((2048, 1024), np.float32) * 0.03),
             b.const("b1", np.zeros(2048, np.float32)), activation=1)
    h = b.op("FullyConnected", h, b.const("w2", rng.standard_normal((256, 2048), np.float32) * 0.02),
             b.const("b2", np.zeros(256, np.float32)), activation=1)
    h = b.op("FullyConnected", h, b.const("w3", rng.standard_normal((10, 256), np.float32) * 0.06))
    b.output(b.op("Softmax", h))
    return b.save(path)


def main():
    lib = _lib.lib_path
    print(f"library: {lib}: {os.path.getsize(lib)} bytes (stripped, Embedded Swift)")
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        for name, build in [("mlp 784-256-128-10", build_mlp), ("cnn 28x28", build_cnn)]:
            p = os.path.join(d, "m.tinf")
            size = build(rng).save(p)
            with tinyinfer.load(p) as m:
                s = m.session()
                print(f"{name}: file {size} bytes, arena {s.arena_bytes} bytes "
                      f"(without reuse {s.unplanned_bytes})")
                s.close()
        p = os.path.join(d, "big.tinf")
        size = ten_mb_model(p)
        x = np.ones((1, 1024), np.float32)
        walls, inside, firsts = [], [], []
        for _ in range(30):
            t0 = time.perf_counter()
            m = tinyinfer.load(p)
            walls.append(time.perf_counter() - t0)
            inside.append(m.load_seconds)
            s = m.session()
            t0 = time.perf_counter()
            s.run(x)
            firsts.append(time.perf_counter() - t0)
            s.close()
            m.close()
        with tinyinfer.load(p) as m:
            s = m.session()
            s.run(x)
            steady = []
            for _ in range(200):
                t0 = time.perf_counter()
                s.run(x)
                steady.append(time.perf_counter() - t0)
            s.close()
        print(f"10 MB model ({size} bytes): load median {statistics.median(walls) * 1e3:.3f} ms from Python "
              f"({statistics.median(inside) * 1e3:.3f} ms inside the library), first run "
              f"{statistics.median(firsts) * 1e6:.0f} us, steady run {statistics.median(steady) * 1e6:.0f} us "
              f"(30 loads, 200 runs, medians)")


if __name__ == "__main__":
    main()
