"""Throughput against batch size under a memory budget, and how to spend two
cores: one session with 1 thread, one session with 2 intra-op threads, or
two 1-thread sessions side by side (one per Python thread). Prints
batch_plan's choice for 1 and 2 threads and a markdown table.

    python3 bench/batch_sizes.py                        # MLP and MobileNetV2 from bench/models, 256MB
    python3 bench/batch_sizes.py --budget 64MB --seconds 0.5 bench/models/mlp.float32.tinf
"""

import argparse
import os
import sys
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import tinyinfer  # noqa: E402
from tinyinfer import batching  # noqa: E402
from batcher import BENCH_MODELS, load_loop  # noqa: E402  (bench/batcher.py: threads calling in a loop)


def rate(sessions, x, seconds):
    """Items per second of len(sessions) sessions each running x in its own thread."""
    for s in sessions:
        s.run(x)  # warm
    per_second, _ = load_loop(len(sessions), seconds, lambda i: sessions[i].run(x))
    return per_second * x.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=BENCH_MODELS)
    ap.add_argument("--budget", default="256MB")
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    budget = batching.parse_bytes(args.budget)
    print(f"CPU: {batching.machine_id()}; budget {args.budget}; {args.seconds:g} s per cell")
    for path in args.models:
        with tinyinfer.load(path) as m:
            plans = {t: m.batch_plan(budget, threads=t, cache=False) for t in (1, 2)}
            print(f"\n### {os.path.basename(path)}\n")
            for t, p in plans.items():
                print(f"batch_plan(threads={t}): batch {p.batch_size}, largest fitting {p.max_batch}, "
                      f"{p.items_per_second:.0f} items/s measured")
            sizes = sorted({1, 4, 16, 64, plans[1].batch_size, plans[2].batch_size, plans[1].max_batch})
            print("\n| batch | bytes (arena + model) | 1 session x 1 thread | 1 session x 2 threads | "
                  "2 sessions x 1 thread | within budget |")
            print("|---|---|---|---|---|---|")
            item = tuple(m.inputs[0].shape[1:])
            for b in sizes:
                arena, resident = batching.batch_bytes(m, b)
                fits = arena + resident <= budget
                two_arenas = 2 * arena + resident <= budget
                if not fits:
                    continue
                x = np.random.default_rng(0).standard_normal((b,) + item).astype(np.float32)
                shape = [(b,) + item]
                cells = []
                for threads, count in ((1, 1), (2, 1), (1, 2)):
                    if count == 2 and not two_arenas:
                        cells.append("over budget")
                        continue
                    sessions = [m.session(threads=threads, input_shapes=shape) for _ in range(count)]
                    cells.append(f"{rate(sessions, x, args.seconds):.0f}")
                    for s in sessions:
                        s.close()
                print(f"| {b} | {batching.format_bytes(arena + resident)} | " + " | ".join(cells) +
                      f" | {'yes' if fits else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
