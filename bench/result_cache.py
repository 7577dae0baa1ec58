"""What tinyinfer.ResultCache gains and costs, per bench model, through `Model.run`:

- no-repeat workload (every call a miss: inside the run call, the 64-bit
  hash of the input buffers (tinf_hash64's), the lookup; with --admit always
  also the stored copies of the inputs and outputs and evictions; with the
  default admit="repeat" the key is only remembered): `model.run` with the
  session bound to a cache and unbound, in short alternating rounds on one
  model and session; the overhead is the median over adjacent pairs of
  rounds of the ratio of wall time. Every call's input differs (one element
  is bumped before each call, in both arms).
- repeated-input workload: `--distinct` inputs (default 8) called in turn,
  so after the first pass every call is a hit; per-call time with and without
  the cache.

    python bench/result_cache.py [MODEL.tinf ...] [--rounds 21] [--seconds 0.1] [--admit repeat|always] [--clock wall|cpu] [--json OUT]

--clock cpu times the rounds by the thread's CPU time (time.thread_time)
instead of the wall clock, so that rounds in which the process waited for a
core (a shared machine) do not count the wait; "min +%" compares the fastest
round of each arm (the round least disturbed by other processes).

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
from tinyinfer.result_cache import ResultCache  # noqa: E402


def inputs_of(m, seed):
    r = np.random.default_rng(seed)
    out = []
    for t in m.inputs:
        if t.dtype.kind == "f":
            out.append(r.standard_normal(t.shape).astype(t.dtype))
        else:
            out.append(r.integers(0, 8, t.shape).astype(t.dtype))
    return out


CLOCK = time.perf_counter  # --clock cpu: time.thread_time


def no_repeat_loop(m, x, n):
    """Seconds per call of n calls, each on an input never seen before."""
    a = x[0].reshape(-1)
    t0 = CLOCK()
    for _ in range(n):
        a[0] += 1  # a new input every call (the same cost in both arms)
        m.run(x)
    return (CLOCK() - t0) / n


def repeat_loop(m, pool, n):
    t0 = CLOCK()
    for i in range(n):
        m.run(pool[i % len(pool)])
    return (CLOCK() - t0) / n


def measure(path, rounds, seconds, distinct, admit):
    """One model and its session, bound to the cache or unbound between rounds."""
    cache = ResultCache(max_bytes="16MB", admit=admit)
    with tinyinfer.load(path) as m:
        x = inputs_of(m, 0)
        with m._lock:
            session = m._main_session()

        def arm(use, fn, *args):
            if use:
                cache.bind(session, b"bench")
            else:
                ResultCache.unbind(session)
            return fn(m, *args)
        arm(False, no_repeat_loop, x, 5)
        arm(True, no_repeat_loop, x, 5)
        n = max(5, int(seconds / arm(False, no_repeat_loop, x, 5)))
        off, on = [], []
        for r in range(rounds):
            for use in ((False, True) if r % 2 == 0 else (True, False)):
                (on if use else off).append(arm(use, no_repeat_loop, x, n))
        off, on = np.array(off), np.array(on)
        s = cache.stats()
        assert s["hits"] == 0, s  # the no-repeat workload never hits
        pool = [inputs_of(m, 100 + i) for i in range(distinct)]
        reps = max(distinct, n)
        rep_off, rep_on = [], []
        for r in range(max(3, rounds // 4)):
            rep_off.append(arm(False, repeat_loop, pool, reps))
            rep_on.append(arm(True, repeat_loop, pool, reps))
        s = cache.stats()
    run_s = float(np.median(off))
    pairs = on / off
    return {"model": os.path.basename(path), "admit": admit, "calls_per_round": n, "rounds": rounds,
            "run_us": run_s * 1e6, "run_cached_miss_us": float(np.median(on)) * 1e6,
            "no_repeat_overhead_percent": float(np.median(pairs) - 1) * 100,
            "min_overhead_percent": float(on.min() / off.min() - 1) * 100,
            "overhead_iqr_percent": [float(np.percentile(pairs, 25) - 1) * 100,
                                     float(np.percentile(pairs, 75) - 1) * 100],
            "repeat_run_us": float(np.median(rep_off)) * 1e6, "repeat_hit_us": float(np.median(rep_on)) * 1e6,
            "repeat_speedup": float(np.median(rep_off) / np.median(rep_on)),
            "stats": s}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--seconds", type=float, default=0.1, help="length of one round")
    ap.add_argument("--distinct", type=int, default=8, help="distinct inputs of the repeated workload")
    ap.add_argument("--admit", default="repeat", choices=["repeat", "always"])
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    ap.add_argument("--json")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if a.clock == "wall" else time.thread_time
    paths = a.models or sorted(glob.glob(os.path.join(ROOT, "bench", "models", "*.tinf")))
    rows = []
    print(f"{'model':30} {'run us':>9} {'miss us':>9} {'no-repeat +%':>12} {'IQR %':>15} {'min +%':>7} "
          f"{'hit us':>8} {'repeat speedup':>14}")
    for p in paths:
        r = measure(p, a.rounds, a.seconds, a.distinct, a.admit)
        rows.append(r)
        print(f"{r['model']:30} {r['run_us']:>9.1f} {r['run_cached_miss_us']:>9.1f} "
              f"{r['no_repeat_overhead_percent']:>11.2f}% {r['overhead_iqr_percent'][0]:>6.2f}..{r['overhead_iqr_percent'][1]:>6.2f} "
              f"{r['min_overhead_percent']:>6.2f}% "
              f"{r['repeat_hit_us']:>8.2f} {r['repeat_speedup']:>13.1f}x", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
