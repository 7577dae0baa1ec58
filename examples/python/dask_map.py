"""Runs a tinyinfer model over a dask.array on a Dask cluster.

    python examples/python/dask_map.py MODEL.tinf                          # a LocalCluster of 2 worker processes
    python examples/python/dask_map.py MODEL.tinf --scheduler scheduler:8786   # an existing cluster

On a real cluster every worker needs tinyinfer installed (pip install
'tinyinfer[dask]') and either the model at the same path (it is checked by
content hash) or --embed, which ships the model's bytes with the task graph;
each worker loads the model once and reuses it.
"""

import argparse

import numpy as np


def main():
    import dask.array as da
    import distributed

    import tinyinfer
    import tinyinfer.dask as tdask

    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--scheduler", help="address of a running scheduler, e.g. scheduler:8786")
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--memory-budget", default="256MB")
    ap.add_argument("--embed", action="store_true", help="send the model's bytes instead of its path")
    args = ap.parse_args()

    if args.scheduler:
        client = distributed.Client(args.scheduler)
        cluster = None
    else:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        with tinyinfer.load(args.model) as m:
            item = tuple(m.inputs[0].shape[1:])
        # items along axis 0; generated here, in practice da.from_zarr / da.from_npy_stack / ...
        x = da.random.default_rng(0).standard_normal((args.items,) + item, chunks=(args.chunk,) + item)
        x = x.astype(np.float32)
        y = tdask.map(args.model, x, memory_budget=args.memory_budget, embed=args.embed)
        out = y.compute(retries=2)  # a failed task runs again, up to twice
        print(f"{out.shape[0]} outputs of shape {out.shape[1:]}, mean {out.mean():.5f}")
        print("model loads per worker:", client.run(tdask.loads))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
