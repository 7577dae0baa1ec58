"""int8-static against float32 of the same model, in one process (issue 14 item 7).

Both work files of each named real model (bench/models/real/work/NAME.float32.tinf and
NAME.int8-static.tinf, made by `python bench/real_models.py run`) are loaded in one process and
run on the suite's inputs (NAME.inputs.npz) in alternating blocks of runs; each block's CPU time
per run is kept. On a shared VM whose speed moves by up to 2x from one minute to the next, two
blocks run seconds apart see the same phase, so the median of the per-block ratios is steadier
than the ratio of two separate processes' medians.

    python bench/int8_vs_float.py [--blocks 20] [--runs 5] NAME ...

Prints, per model, the median block time of each file (us) and the median int8 / float32 ratio.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
import tinyinfer  # noqa: E402

WORK = os.path.join(HERE, "models", "real", "work")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+", help="real-model names (bench/models/real/work/NAME.*)")
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5, help="runs per block")
    a = ap.parse_args()
    print(f"{'model':34s} {'float32 us':>11s} {'int8 us':>9s} {'int8/float32':>12s}")
    for name in a.names:
        paths = [os.path.join(WORK, f"{name}.{kind}.tinf") for kind in ("float32", "int8-static")]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            sys.exit(f"{missing[0]}: not found (python bench/real_models.py run makes it)")
        z = np.load(os.path.join(WORK, f"{name}.inputs.npz"))
        feeds = [z[k] for k in z.files]
        models = [tinyinfer.load(p, threads=1) for p in paths]
        for m in models:
            for _ in range(10):
                m.run(feeds)
        times = [[], []]
        for _ in range(a.blocks):
            for k, m in enumerate(models):
                t0 = time.process_time()
                for _ in range(a.runs):
                    m.run(feeds)
                times[k].append((time.process_time() - t0) / a.runs * 1e6)
        ratio = statistics.median(q / f for f, q in zip(*times))
        print(f"{name:34s} {statistics.median(times[0]):11.1f} {statistics.median(times[1]):9.1f} {ratio:12.3f}")
        for m in models:
            m.close()


if __name__ == "__main__":
    main()
