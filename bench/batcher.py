"""Batcher against unbatched calls: N concurrent callers (threads), each
sending one-row requests in a loop, either through one tinyinfer.Batcher or
each on its own batch-1 session (the baseline). Prints throughput and p50 /
p99 latency against the number of callers, and the batch run time the p99
goal is measured against (p99 <= max_delay_ms + one max_batch run).

    python3 bench/batcher.py                                   # MLP and MobileNetV2 from bench/models
    python3 bench/batcher.py --models bench/models/mlp.float32.tinf --callers 1,16 --seconds 2
    python3 bench/batcher.py --asyncio      # also callers as asyncio tasks: run_in_executor vs Batcher.arun
"""

import argparse
import os
import sys
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


def batcher_row(m, n, base, blat, loop, call, max_batch, delay_ms, threads, workers):
    """Runs the Batcher side (loop(n, seconds, call(b, i))) and prints a table row against the unbatched one."""
    with tinyinfer.Batcher(m, max_batch=max_batch, max_delay_ms=delay_ms, threads=threads, workers=workers) as b:
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


def bench_async(path, callers, seconds, max_batch, delay_ms, threads, workers):
    """Callers as asyncio tasks: each awaiting its own batch-1 session in a
    thread pool (run_in_executor), or Batcher.arun."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    name = os.path.basename(path)
    with tinyinfer.load(path) as m:
        item = tuple(m.inputs[0].shape[1:])
        xs = [np.random.default_rng(i).standard_normal((1,) + item).astype(np.float32) for i in range(max(callers))]
        print(f"\n### {name}, asyncio tasks: run_in_executor on a session each vs Batcher.arun")
        print("\n| tasks | unbatched req/s | p50 ms | p99 ms | Batcher req/s | p50 ms | p99 ms | rows/batch | speedup |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in callers:
            sessions = [m.session(threads=1) for _ in range(n)]
            with ThreadPoolExecutor(n) as pool:
                async def unbatched(i):
                    return await asyncio.get_running_loop().run_in_executor(pool, sessions[i].run, xs[i])
                base, blat = async_loop(n, seconds, unbatched)
            for s in sessions:
                s.close()
            batcher_row(m, n, base, blat, lambda f: async_loop(n, seconds, f), lambda b, i: b.arun(xs[i]), max_batch,
                        delay_ms, threads, workers)


def batch_run_seconds(model, batch, threads, runs=20):
    with model.session(threads=threads, input_shapes=[(batch,) + tuple(model.inputs[0].shape[1:])]) as s:
        x = np.random.default_rng(0).standard_normal(s.inputs[0].shape).astype(np.float32)
        s.run(x)
        return min(_timed(s, x) for _ in range(runs))


def _timed(s, x):
    t0 = time.perf_counter()
    s.run(x)
    return time.perf_counter() - t0


def bench_model(path, callers, seconds, max_batch, delay_ms, threads, workers):
    name = os.path.basename(path)
    with tinyinfer.load(path) as m:
        item = tuple(m.inputs[0].shape[1:])
        xs = [np.random.default_rng(i).standard_normal((1,) + item).astype(np.float32) for i in range(max(callers))]
        run_s = batch_run_seconds(m, max_batch, threads)
        print(f"\n### {name}: max_batch {max_batch}, max_delay_ms {delay_ms}, workers {workers}, threads {threads}; "
              f"one batch-{max_batch} run {run_s * 1e3:.2f} ms, so the p99 goal is <= {delay_ms + run_s * 1e3:.2f} ms")
        print("\n| callers | unbatched req/s | p50 ms | p99 ms | Batcher req/s | p50 ms | p99 ms | rows/batch | speedup |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in callers:
            sessions = [m.session(threads=1) for _ in range(n)]
            base, blat = load_loop(n, seconds, lambda i: sessions[i].run(xs[i]))
            for s in sessions:
                s.close()
            batcher_row(m, n, base, blat, lambda f: load_loop(n, seconds, f), lambda b, i: b.run(xs[i]), max_batch,
                        delay_ms, threads, workers)
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
    ap.add_argument("--asyncio", action="store_true", help="also callers as asyncio tasks (Batcher.arun)")
    args = ap.parse_args()
    callers = [int(c) for c in args.callers.split(",")]
    print(f"CPU: {tinyinfer.batching.machine_id()}; {args.seconds:g} s per cell; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    for path in args.models:
        bench_model(path, callers, args.seconds, args.max_batch, args.max_delay_ms, args.threads, args.workers)
        if args.asyncio:
            bench_async(path, callers, args.seconds, args.max_batch, args.max_delay_ms, args.threads, args.workers)
        print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
