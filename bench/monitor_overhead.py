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


def components(path, pairs=300, k=200):
    """The monitor's costs one by one, each measured where noise cancels:
    the library's run log (ns per run: paired blocks of k runs with the log
    attached and detached, called straight through ctypes), the sampler
    thread (its CPU time per second of monitoring) and a monitor's start and
    stop (ms)."""
    import ctypes
    from tinyinfer import _lib
    L = _lib.lib
    with tinyinfer.load(path) as m:
        s = m.session()
        h = s._handle
        buf = np.zeros(1026, np.uint64)
        ptr = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64))
        run, pc = L.tinf_session_run, time.perf_counter_ns
        out = {}
        for label, flags in (("run_log_ns", 0), ("run_log_every_run_ns", _lib.RUN_LOG_EVERY_RUN)):
            diffs, base = [], []
            for i in range(pairs):
                t = {}
                for attached in ((False, True) if i % 2 == 0 else (True, False)):
                    L.tinf_session_set_run_log(h, ptr if attached else None, 1024, flags)
                    t0 = pc()
                    for _ in range(k):
                        run(h)
                    t[attached] = (pc() - t0) / k
                diffs.append(t[True] - t[False])
                base.append(t[False])
            out[label] = float(np.median(diffs))
            out["run_ns"] = float(np.median(base))
        L.tinf_session_set_run_log(h, None, 0, 0)
        s.close()
    with tinyinfer.Monitor() as mo:
        time.sleep(2.0)
    sampler = mo.report["monitor"]["sampler_cpu_s"] / mo.report["wall_s"]
    t0 = time.perf_counter()
    for _ in range(50):
        with tinyinfer.Monitor():
            pass
    startstop = (time.perf_counter() - t0) / 50
    return {"model": os.path.basename(path), **out, "sampler_cpu_fraction": sampler,
            "start_stop_ms": startstop * 1e3}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--rounds", type=int, default=41)
    ap.add_argument("--seconds", type=float, default=0.1, help="length of one round")
    ap.add_argument("--json")
    ap.add_argument("--components", help="a model whose run-log cost to measure (default: the bench MLP int8)")
    a = ap.parse_args()
    paths = a.models or sorted(glob.glob(os.path.join(ROOT, "bench", "models", "*.tinf")))
    rows = []
    print(f"{'model':32} {'runs':>7} {'off us':>9} {'on us':>9} {'wall +%':>8} {'CPU +%':>8}")
    for p in paths:
        r = measure(p, a.rounds, a.seconds)
        rows.append(r)
        print(f"{r['model']:32} {r['runs_per_round']:>7} {r['off_us']:>9.2f} {r['on_us']:>9.2f} "
              f"{r['wall_overhead_percent']:>7.2f}% {r['cpu_overhead_percent']:>7.2f}%", flush=True)
    comp_model = a.components or os.path.join(ROOT, "bench", "models", "mlp.int8-static.tinf")
    comp = None
    if os.path.exists(comp_model):
        comp = components(comp_model)
        print(f"components ({comp['model']}, one run through ctypes {comp['run_ns'] / 1e3:.2f} us): the run log "
              f"{comp['run_log_ns']:.1f} ns per run ({comp['run_log_ns'] / comp['run_ns'] * 100:.2f}%), timing every "
              f"run {comp['run_log_every_run_ns']:.1f} ns ({comp['run_log_every_run_ns'] / comp['run_ns'] * 100:.2f}%); "
              f"the sampler {comp['sampler_cpu_fraction'] * 100:.3f}% of a core; "
              f"start + stop {comp['start_stop_ms']:.2f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"models": rows, "components": comp}, f, indent=1)


if __name__ == "__main__":
    main()
