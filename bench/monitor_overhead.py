"""What tinyinfer.Monitor costs: the same loop of single-input runs with and
without an active monitor (default sampling: the library's run log and the
sampler thread), in many short alternating rounds (a monitor started and stopped in each
"on" round); prints per model the median time per run of each and the
overhead in percent: the median over the pairs of adjacent rounds of the
ratio of wall time, and of process CPU time (which includes the sampler
thread and is the steadier figure on a shared machine).

    python bench/monitor_overhead.py [MODEL.tinf ...] [--rounds 41] [--seconds 0.1] [--json OUT]

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
    """(wall, process CPU) seconds per run of n runs; process CPU time
    includes the monitor's sampler thread."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        run(x)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def measure(path, rounds, seconds):
    with tinyinfer.load(path) as m:
        s = m.session()
        x = [np.random.default_rng(0).standard_normal(t.shape).astype(t.dtype) for t in s.inputs]
        for _ in range(10):
            s.run(x)
        n = max(10, int(seconds / loop(s.run, x, 20)[0]))
        off, on = [], []
        for r in range(rounds):
            for monitored in ((False, True) if r % 2 == 0 else (True, False)):
                if monitored:
                    with tinyinfer.Monitor():      # its start and stop count in the round
                        on.append(loop(s.run, x, n))
                else:
                    off.append(loop(s.run, x, n))
        s.close()
    off, on = np.array(off), np.array(on)
    # Paired rounds (adjacent in time, so under the same load): the median of the ratios.
    wall = float(np.median(on[:, 0] / off[:, 0]) - 1) * 100
    cpu = float(np.median(on[:, 1] / np.maximum(off[:, 1], 1e-12)) - 1) * 100
    return {"model": os.path.basename(path), "runs_per_round": n, "rounds": rounds,
            "off_us": float(np.median(off[:, 0])) * 1e6, "on_us": float(np.median(on[:, 0])) * 1e6,
            "wall_overhead_percent": wall, "cpu_overhead_percent": cpu}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--rounds", type=int, default=41)
    ap.add_argument("--seconds", type=float, default=0.1, help="length of one round")
    ap.add_argument("--json")
    a = ap.parse_args()
    paths = a.models or sorted(glob.glob(os.path.join(ROOT, "bench", "models", "*.tinf")))
    rows = []
    print(f"{'model':32} {'runs':>7} {'off us':>9} {'on us':>9} {'wall +%':>8} {'CPU +%':>8}")
    for p in paths:
        r = measure(p, a.rounds, a.seconds)
        rows.append(r)
        print(f"{r['model']:32} {r['runs_per_round']:>7} {r['off_us']:>9.2f} {r['on_us']:>9.2f} "
              f"{r['wall_overhead_percent']:>7.2f}% {r['cpu_overhead_percent']:>7.2f}%", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
