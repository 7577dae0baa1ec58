"""One thread against two on the same model, in one process (issue 20,
item 4): the model loaded with threads=1 and threads=2, rounds alternating
between them, each figure the best (minimum wall time) over the rounds'
runs. On a shared machine the second core may be busy with other jobs, so
the two-thread figure is a floor of what a quiet machine gives; read the
load average printed with it.

    python bench/threads_ab.py MODEL.tinf [MODEL ...] [--runs 300] [--rounds 5]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import tinyinfer  # noqa: E402


def measure(path, runs, rounds):
    models = {t: tinyinfer.load(path, threads=t) for t in (1, 2)}
    spec = models[1].inputs[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(spec.dtype, np.floating):
        x = rng.standard_normal(spec.shape).astype(spec.dtype)
    else:
        info = np.iinfo(spec.dtype)
        x = rng.integers(info.min, info.max + 1, size=spec.shape).astype(spec.dtype)
    best = {1: float("inf"), 2: float("inf")}
    for _ in range(rounds):
        for t, m in models.items():
            for _ in range(20):
                m.run(x)
            for _ in range(runs):
                a = time.perf_counter()
                m.run(x)
                best[t] = min(best[t], time.perf_counter() - a)
    for m in models.values():
        m.close()
    return best[1] * 1e6, best[2] * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| model | threads=1 us | threads=2 us | speedup |\n|---|---|---|---|")
    for path in a.models:
        one, two = measure(path, a.runs, a.rounds)
        print(f"| {os.path.basename(path)} | {one:.1f} | {two:.1f} | {one / two:.2f} |")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
