"""tinyinfer.dask on a LocalCluster: wall time with 1 and 2 worker processes
(1 thread each) over the same dask.array, the speedup, and each worker's
memory (RSS, and USS: the pages only that process holds; the model file's
pages are mapped and shared). A single-process Model.map is the reference.

    python3 bench/dask_workers.py                                 # MobileNetV2, 3000 images of 128x128x3
    python3 bench/dask_workers.py --model bench/models/mlp.float32.tinf --items 400000 --chunk 20000
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "python"))


def memory():
    import psutil
    p = psutil.Process()
    info = p.memory_full_info()
    return info.rss, info.uss


def _spin(_):
    t0 = time.perf_counter()
    x = 0
    for i in range(6_000_000):
        x += i
    return time.perf_counter() - t0


def machine_parallelism() -> float:
    """How much faster two CPU-bound processes finish two loops than one does
    them one after the other: about 2 on two free cores, about 1 when other
    jobs take the cores (a control for the workers' speedup)."""
    import multiprocessing as mp
    one = _spin(0)
    with mp.Pool(2) as pool:
        t0 = time.perf_counter()
        pool.map(_spin, [0, 1])
        two = time.perf_counter() - t0
    return 2 * one / two


def make_block(block_id, shape):
    rng = np.random.default_rng(block_id)
    return rng.standard_normal(shape).astype(np.float32)


def main():
    import dask
    import dask.array as da
    import distributed
    import tinyinfer
    import tinyinfer.dask as tdask

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "bench", "models", "mobilenetv2.float32.tinf"))
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--budget", default="256MB")
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + os.environ.get("PYTHONPATH", "")
    model = os.path.abspath(args.model)
    with tinyinfer.load(model) as m:
        item = tuple(m.inputs[0].shape[1:])
        n_blocks = args.items // args.chunk
        # single process: the same blocks, one after the other
        t0 = time.perf_counter()
        for i in range(n_blocks):
            for _ in m.map(make_block(i, (args.chunk,) + item), memory_budget=args.budget, progress=False):
                pass
        single = time.perf_counter() - t0
    print(f"model {os.path.basename(model)}, {args.items} items in blocks of {args.chunk}, budget {args.budget}")
    print(f"single process Model.map: {single:.2f} s ({args.items / single:.0f} items/s)")
    print(f"control: two plain Python loops in two processes ran {machine_parallelism():.2f}x faster than in one "
          f"(2x on two free cores)\n")
    print("| workers | wall s | items/s | speedup vs 1 worker | per-worker RSS MB | per-worker USS MB | model loads |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=50) as cluster, \
                distributed.Client(cluster) as client:
            blocks = [da.from_delayed(dask.delayed(make_block)(i, (args.chunk,) + item), shape=(args.chunk,) + item,
                                      dtype=np.float32) for i in range(n_blocks)]
            x = da.concatenate(blocks)
            y = tdask.map_blocks(model, x, memory_budget=args.budget)
            y.sum().compute()  # warm: imports, load, batch plan on each worker
            t0 = time.perf_counter()
            total = y.sum().compute()
            wall = time.perf_counter() - t0
            mem = client.run(memory)
            loads = client.run(tdask.loads)
            base = base or wall
            rss = " / ".join(f"{v[0] / 2**20:.0f}" for v in mem.values())
            uss = " / ".join(f"{v[1] / 2**20:.0f}" for v in mem.values())
            nl = " / ".join(str(sum(v.values())) for v in loads.values())
            print(f"| {workers} | {wall:.2f} | {args.items / wall:.0f} | {base / wall:.2f}x | {rss} | {uss} | {nl} |",
                  flush=True)
            assert np.isfinite(total)


if __name__ == "__main__":
    main()
