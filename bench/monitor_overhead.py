"""What tinyinfer.Monitor costs: the same loop of single-input runs with and
without an active monitor (default sampling), in alternating rounds; prints
per model the median time per run of each and the overhead in percent.

    python bench/monitor_overhead.py [MODEL.tinf ...] [--rounds 15] [--seconds 0.3] [--json OUT]

Without models it takes every bench/models/*.tinf (made by bench/make_models.py).
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import tinyinfer  # noqa: E402


def loop(run, x, n):
    t0 = time.perf_counter()
    for _ in range(n):
        run(x)
    return (time.perf_counter() - t0) / n


def measure(path, rounds, seconds):
    with tinyinfer.load(path) as m:
        s = m.session()
        x = [np.random.default_rng(0).standard_normal(t.shape).astype(t.dtype) for t in s.inputs]
        for _ in range(10):
            s.run(x)
        n = max(10, int(seconds / loop(s.run, x, 20)))
        off, on = [], []
        for r in range(rounds):
            for monitored in ((False, True) if r % 2 == 0 else (True, False)):
                if monitored:
                    with tinyinfer.Monitor():
                        on.append(loop(s.run, x, n))
                else:
                    off.append(loop(s.run, x, n))
        s.close()
    a, b = float(np.median(off)), float(np.median(on))
    return {"model": os.path.basename(path), "runs_per_round": n, "off_us": a * 1e6, "on_us": b * 1e6,
            "overhead_percent": (b / a - 1) * 100}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=0.3, help="length of one round")
    ap.add_argument("--json")
    a = ap.parse_args()
    paths = a.models or sorted(glob.glob(os.path.join(ROOT, "bench", "models", "*.tinf")))
    rows = []
    print(f"{'model':32} {'runs':>7} {'off us':>9} {'on us':>9} {'overhead':>9}")
    for p in paths:
        r = measure(p, a.rounds, a.seconds)
        rows.append(r)
        print(f"{r['model']:32} {r['runs_per_round']:>7} {r['off_us']:>9.2f} {r['on_us']:>9.2f} "
              f"{r['overhead_percent']:>8.2f}%", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
