"""Batcher against unbatched calls: N concurrent callers, each sending
one-row requests in a loop, either all through one batcher or each on its
own batch-1 session (the baseline). Prints throughput and p50 / p99 latency
against the number of callers, the rows a batch held on average, and the
batch run time the p99 goal is measured against (p99 <= max_delay_ms + one
max_batch run). The arms:

- Python threads (always): N threading.Thread callers; unbatched, each
  calls Session.run on a batch-1 session of its own; batched, each calls
  tinyinfer.Batcher.run. Python's GIL serializes the callers' Python part.
- asyncio (--asyncio): N tasks on one event loop; unbatched, each runs
  Session.run on a batch-1 session of its own synchronously (the natural
  asyncio code for a fast model) and then yields to the loop
  (asyncio.sleep(0)), so the tasks take turns; batched, each awaits
  Batcher.arun.
- C threads (--c-threads): bench/batcher_c.c, built here with cc: N
  pthreads; unbatched, each calls tinf_session_run on a batch-1 session of
  its own; batched, each calls tinf_batcher_run. No interpreter lock: what
  the batcher itself gains or costs.

    python3 bench/batcher.py                                   # MLP and MobileNetV2 from bench/models
    python3 bench/batcher.py --models bench/models/mlp.float32.tinf --callers 1,16 --seconds 2
    python3 bench/batcher.py --asyncio --c-threads            # every arm
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import tinyinfer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# the models the batch-processing benches run by default (made by bench/make_models.py)
BENCH_MODELS = [os.path.join(HERE, "models", "mlp.float32.tinf"), os.path.join(HERE, "models", "mobilenetv2.float32.tinf")]


def load_loop(n, seconds, call):
    """n threads calling call(i) until the time is up: (requests/s, latencies in s)."""
    lat = [[] for _ in range(n)]
    start = threading.Barrier(n + 1)
    stop = [0.0]

    def caller(i):
        mine = lat[i]
        start.wait()
        while True:
            t0 = time.perf_counter()
            if t0 >= stop[0]:
                return
            call(i)
            mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    allat = np.concatenate([np.array(x) for x in lat])
    return len(allat) / wall, allat


def batcher_row(m, n, base, blat, loop, call, max_batch, delay_ms, threads, workers, turn_ms):
    """Runs the Batcher side (loop(n, seconds, call(b, i))) and prints a table row against the unbatched one."""
    kw = {"turn_ms": turn_ms} if turn_ms is not None else {}  # (None: a tinyinfer before turns, for before/after)
    with tinyinfer.Batcher(m, max_batch=max_batch, max_delay_ms=delay_ms, threads=threads, workers=workers, **kw) as b:
        b.run(np.zeros((1,) + tuple(m.inputs[0].shape[1:]), np.float32))
        r0, b0 = b.rows_run, b.batches
        got, glat = loop(lambda i: call(b, i))
        per = (b.rows_run - r0) / max(b.batches - b0, 1)
    p = lambda a, q: np.percentile(a, q) * 1e3  # noqa: E731
    print(f"| {n} | {base:.0f} | {p(blat, 50):.3f} | {p(blat, 99):.3f} | {got:.0f} | {p(glat, 50):.3f} | "
          f"{p(glat, 99):.3f} | {per:.1f} | {got / base:.2f}x |", flush=True)


def async_loop(n, seconds, call):
    """n asyncio tasks awaiting call(i) until the time is up: (requests/s, latencies in s)."""
    import asyncio
    lat = []

    async def caller(i, stop):
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            await call(i)
            lat.append(time.perf_counter() - t0)

    async def main():
        stop = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(i, stop) for i in range(n)))
        return time.perf_counter() - t0

    wall = asyncio.run(main())
    return len(lat) / wall, np.array(lat)


def bench_async(path, callers, seconds, max_batch, delay_ms, threads, workers, turn_ms):
    """Callers as asyncio tasks on one loop: each running its own batch-1
    session synchronously and yielding (asyncio.sleep(0)), or awaiting
    Batcher.arun."""
    import asyncio
    name = os.path.basename(path)
    with tinyinfer.load(path) as m:
        item = tuple(m.inputs[0].shape[1:])
        xs = [np.random.default_rng(i).standard_normal((1,) + item).astype(np.float32) for i in range(max(callers))]
        print(f"\n### {name}, asyncio tasks: Session.run in the task (then asyncio.sleep(0)) vs Batcher.arun")
        print("\n| tasks | unbatched req/s | p50 ms | p99 ms | Batcher req/s | p50 ms | p99 ms | rows/batch | speedup |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in callers:
            sessions = [m.session(threads=1) for _ in range(n)]

            async def unbatched(i):
                y = sessions[i].run(xs[i])
                await asyncio.sleep(0)
                return y
            base, blat = async_loop(n, seconds, unbatched)
            for s in sessions:
                s.close()
            batcher_row(m, n, base, blat, lambda f: async_loop(n, seconds, f), lambda b, i: b.arun(xs[i]), max_batch,
                        delay_ms, threads, workers, turn_ms)


def build_c_bench():
    """Compiles bench/batcher_c.c against the library tinyinfer loaded; its path (None: no C compiler)."""
    cc = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if cc is None:
        return None
    libdir = os.path.dirname(os.path.realpath(tinyinfer._lib.lib_path))
    out = os.path.join(tempfile.mkdtemp(prefix="tinyinfer-bench-"), "batcher_c")
    root = os.path.dirname(HERE)
    subprocess.run([cc, "-O2", "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-I", os.path.join(root, "include"),
                    os.path.join(HERE, "batcher_c.c"), f"-L{libdir}", "-l:" + os.path.basename(tinyinfer._lib.lib_path),
                    "-pthread", f"-Wl,-rpath,{libdir}", "-o", out], check=True)
    return out


def bench_c(exe, path, callers, seconds, max_batch, delay_ms, threads, workers):
    """Callers as C threads (bench/batcher_c.c): tinf_session_run on a session each vs tinf_batcher_run."""
    print(f"\n### {os.path.basename(path)}, C threads: tinf_session_run on a session each vs tinf_batcher_run")
    print("\n| threads | unbatched req/s | p50 ms | p99 ms | CPU us/req | batcher req/s | p50 ms | p99 ms | CPU us/req | "
          "rows/batch | speedup |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in callers:
        p = subprocess.run([exe, path, str(n), str(seconds), str(max_batch), str(int(round(delay_ms * 1e3))),
                            str(workers), str(threads)], capture_output=True, text=True, check=True)
        u, b = [line.split() for line in p.stdout.strip().splitlines()]
        base, got = float(u[2]), float(b[2])
        print(f"| {n} | {base:.0f} | {float(u[3]):.3f} | {float(u[4]):.3f} | {float(u[5]):.1f} | {got:.0f} | "
              f"{float(b[3]):.3f} | {float(b[4]):.3f} | {float(b[5]):.1f} | {float(b[6]):.1f} | {got / base:.2f}x |",
              flush=True)


def batch_run_seconds(model, batch, threads, runs=20):
    with model.session(threads=threads, input_shapes=[(batch,) + tuple(model.inputs[0].shape[1:])]) as s:
        x = np.random.default_rng(0).standard_normal(s.inputs[0].shape).astype(np.float32)
        s.run(x)
        return min(_timed(s, x) for _ in range(runs))


def _timed(s, x):
    t0 = time.perf_counter()
    s.run(x)
    return time.perf_counter() - t0


def bench_model(path, callers, seconds, max_batch, delay_ms, threads, workers, turn_ms):
    name = os.path.basename(path)
    with tinyinfer.load(path) as m:
        item = tuple(m.inputs[0].shape[1:])
        xs = [np.random.default_rng(i).standard_normal((1,) + item).astype(np.float32) for i in range(max(callers))]
        run_s = batch_run_seconds(m, max_batch, threads)
        print(f"\n### {name}: max_batch {max_batch}, max_delay_ms {delay_ms}, workers {workers}, threads {threads}, "
              f"turn_ms {turn_ms}; one batch-{max_batch} run {run_s * 1e3:.2f} ms, so the p99 goal is "
              f"<= {delay_ms + run_s * 1e3:.2f} ms")
        print("\nPython threads: Session.run on a session each vs Batcher.run")
        print("\n| callers | unbatched req/s | p50 ms | p99 ms | Batcher req/s | p50 ms | p99 ms | rows/batch | speedup |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in callers:
            sessions = [m.session(threads=1) for _ in range(n)]
            base, blat = load_loop(n, seconds, lambda i: sessions[i].run(xs[i]))
            for s in sessions:
                s.close()
            batcher_row(m, n, base, blat, lambda f: load_loop(n, seconds, f), lambda b, i: b.run(xs[i]), max_batch,
                        delay_ms, threads, workers, turn_ms)
        return run_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=BENCH_MODELS)
    ap.add_argument("--callers", default="1,2,4,8,16")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-delay-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1, help="threads of each Batcher session")
    ap.add_argument("--workers", type=int, default=2, help="Batcher sessions running batches at once")
    ap.add_argument("--turn-ms", type=float, default=getattr(tinyinfer.batching, "DEFAULT_TURN_MS", None),
                    help="Batcher turn_ms (0: wake every caller of a batch at once)")
    ap.add_argument("--asyncio", action="store_true", help="also callers as asyncio tasks (Batcher.arun)")
    ap.add_argument("--c-threads", action="store_true", help="also callers as C threads (bench/batcher_c.c)")
    args = ap.parse_args()
    callers = [int(c) for c in args.callers.split(",")]
    print(f"CPU: {tinyinfer.batching.machine_id()}; {args.seconds:g} s per cell; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    exe = build_c_bench() if args.c_threads else None
    if args.c_threads and exe is None:
        print("no C compiler: no C-thread figures")
    for path in args.models:
        bench_model(path, callers, args.seconds, args.max_batch, args.max_delay_ms, args.threads, args.workers,
                    args.turn_ms)
        if args.asyncio:
            bench_async(path, callers, args.seconds, args.max_batch, args.max_delay_ms, args.threads, args.workers,
                        args.turn_ms)
        if exe is not None:
            bench_c(exe, path, callers, args.seconds, args.max_batch, args.max_delay_ms, args.threads, args.workers)
        print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
