"""Kernel figures: a 256x1024x1024 product through FullyConnected (float32
on the packed 6x16 micro-kernel; int8 on the TFLite-exact integer kernel),
one thread, from Python (the call overhead is negligible at this size).

    python bench/gemm.py
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import tinyinfer  # noqa: E402

M, K, N = 256, 1024, 1024


def timed(model, x, runs=30):
    s = model.session(threads=1)
    for _ in range(3):
        s.run(x)
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(x)
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def main():
    rng = np.random.default_rng(0)
    b = tinyinfer.GraphBuilder("gemm-f32")
    x = b.input("x", (M, K))
    b.output(b.op("FullyConnected", x, b.const("w", rng.standard_normal((N, K)).astype(np.float32))))
    sec = timed(b.load(), rng.standard_normal((M, K)).astype(np.float32))
    print(f"float32 {M}x{K}x{N}: {sec * 1e3:.2f} ms, {2 * M * K * N / sec / 1e9:.1f} GFLOP/s")

    b = tinyinfer.GraphBuilder("gemm-int8")
    x = b.input("x", (M, K), "int8")
    b.quantization(x, [0.05], [3])
    w = b.const("w", rng.integers(-127, 128, (N, K)).astype(np.int8))
    b.quantization(w, [0.01], [0])
    y = b.op("FullyConnected", x, w)
    b.quantization(y, [2.0], [-5])
    b.output(y)
    sec = timed(b.load(), rng.integers(-128, 128, (M, K)).astype(np.int8))
    print(f"int8    {M}x{K}x{N}: {sec * 1e3:.2f} ms, {2 * M * K * N / sec / 1e9:.1f} GOP/s")


if __name__ == "__main__":
    main()
