"""One thread against two on the same model, in one process (issue 20,
item 4): the model loaded with threads=1 and threads=2, rounds alternating
between them. Each figure is the median of the kept rounds' median wall
time per run (and the best single run, "min").

Quiet gate: on a shared machine another process on the second core takes
it from the two-thread session (its worker cannot claim its half of an op,
so the calling thread runs both halves: the session then runs at about
one thread's speed). Each round reads /proc/stat before and after and
subtracts this process's own CPU time; a round during which other
processes used more than --max-foreign of a CPU (default 0.05) is dropped
and run again, up to --tries rounds in all per model. The table says how
many rounds were kept and dropped. (No /proc/stat: every round is kept.)

The peer in the same rounds: where MODEL is a .tflite or has one beside
it (the same name with .tflite for .tinf) and ai_edge_litert is installed, LiteRT
(XNNPACK) runs it with num_threads=1 and 2 in each round too, its
figures in the last columns (invoke() alone, inputs set before).

    python bench/threads_ab.py MODEL.tinf [MODEL ...] [--runs 200] [--rounds 5]
        [--max-foreign 0.05] [--tries 60]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import tinyinfer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_seconds():
    """CPU seconds every process of the machine has used (None without /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
    except OSError:
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / TICK


def own_seconds():
    t = os.times()
    return t.user + t.system


def random_input(shape, dtype):
    """Normal values for a float input, uniform over the range for an integer one (seed 0)."""
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


def litert_runners(path):
    """{threads: invoke} for LiteRT on `path` if it is a .tflite, else on the
    .tflite beside it; None without one (or without ai_edge_litert)."""
    tfl = path if path.endswith(".tflite") else os.path.splitext(path)[0] + ".tflite"
    if not os.path.exists(tfl):
        return None
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    out = {}
    for t in (1, 2):
        it = Interpreter(model_path=tfl, num_threads=t)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], random_input(d["shape"], d["dtype"]))
        out[t] = it.invoke
    return out


def measure(path, runs, rounds, max_foreign, tries):
    models = {t: tinyinfer.load(path, threads=t) for t in (1, 2)}
    peer = litert_runners(path)
    spec = models[1].inputs[0]
    x = random_input(spec.shape, spec.dtype)
    calls = [(t, lambda m=m: m.run(x)) for t, m in models.items()]
    calls += [(f"p{t}", inv) for t, inv in (peer or {}).items()]
    keys = [key for key, _ in calls]
    med = {k: [] for k in keys}
    best = {k: float("inf") for k in keys}
    kept = dropped = 0
    while kept < rounds and kept + dropped < tries:
        # One round: both thread counts, each after a warm-up; kept only
        # if the machine was quiet for the whole round.
        b0, o0, w0 = busy_seconds(), own_seconds(), time.perf_counter()
        figs = {}
        for key, call in calls:
            for _ in range(20):
                call()
            ts = np.empty(runs)
            for i in range(runs):
                a = time.perf_counter()
                call()
                ts[i] = time.perf_counter() - a
            figs[key] = ts
        b1, o1, w1 = busy_seconds(), own_seconds(), time.perf_counter()
        if b0 is not None and ((b1 - b0) - (o1 - o0)) / (w1 - w0) > max_foreign:
            dropped += 1
            continue
        kept += 1
        for t, ts in figs.items():
            med[t].append(float(np.median(ts)))
            best[t] = min(best[t], float(ts.min()))
    for m in models.values():
        m.close()
    if not kept:
        return None
    return {k: (float(np.median(med[k])) * 1e6, best[k] * 1e6) for k in keys}, kept, dropped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-foreign", type=float, default=0.05,
                    help="drop a round when other processes used more than this share of a CPU (0.05)")
    ap.add_argument("--tries", type=int, default=60, help="rounds run at most per model, kept or dropped")
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| model | threads=1 us (median, min) | threads=2 us (median, min) | speedup (median, min) | rounds kept / dropped "
          "| LiteRT 1 / 2 threads us (medians) | LiteRT speedup (median, min) |")
    print("|---|---|---|---|---|---|---|")
    for path in a.models:
        r = measure(path, a.runs, a.rounds, a.max_foreign, a.tries)
        name = os.path.basename(path)
        if r is None:
            print(f"| {name} | | | | 0 / {a.tries} (never quiet) | | |")
            continue
        (one, two), kept, dropped = (r[0][1], r[0][2]), r[1], r[2]
        peer = "| |"
        if "p1" in r[0]:
            p1, p2 = r[0]["p1"], r[0]["p2"]
            peer = f"{p1[0]:.1f} / {p2[0]:.1f} | {p1[0] / p2[0]:.2f}, {p1[1] / p2[1]:.2f} |"
        print(f"| {name} | {one[0]:.1f}, {one[1]:.1f} | {two[0]:.1f}, {two[1]:.1f} | "
              f"{one[0] / two[0]:.2f}, {one[1] / two[1]:.2f} | {kept} / {dropped} | {peer}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
