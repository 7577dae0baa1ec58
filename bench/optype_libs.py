"""Per op type, two or more libtinyinfer builds on one model, the minimum over rounds.

Each round runs `python -m tinyinfer bench MODEL --runs RUNS --profile` once per build (fresh
processes, the builds alternating) and sums the per-op times by op type. The table gives, per op
type, each build's minimum over the rounds and the ratio of the last build to the first. On a
VM whose speed moves by up to 2x between minutes, a round in a slow phase cannot win the
minimum, so unchanged op types come out within a few percent of each other (their difference is
the noise left).

    python bench/optype_libs.py [--runs 300] [--rounds 6] MODEL LIB_A LIB_B ...
"""

import argparse
import collections
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def profile(model, lib, runs):
    env = dict(os.environ, TINYINFER_LIB=lib, PYTHONPATH=os.path.join(ROOT, "python"))
    out = subprocess.run([sys.executable, "-m", "tinyinfer", "bench", model, "--runs", str(runs), "--profile"],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{model} with {lib}: {(out.stderr or out.stdout).strip().splitlines()[-1]}")
    sums = collections.Counter()
    for line in out.stdout.splitlines():
        m = re.match(r"\s+\d+ (\S+)\s+([\d.]+)\s+[\d.]+%", line)
        if m:
            sums[m.group(1)] += float(m.group(2))
    sums["all ops"] = sum(sums.values())
    return sums


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args()
    res = {lib: [] for lib in a.libs}
    for _ in range(a.rounds):
        for lib in a.libs:
            res[lib].append(profile(a.model, lib, a.runs))
    best = {lib: {t: min(d.get(t, 0.0) for d in res[lib]) for t in set().union(*res[lib])} for lib in a.libs}
    first, last = a.libs[0], a.libs[-1]
    print(os.path.basename(a.model), "(us, minimum over", a.rounds, "rounds)")
    for t in sorted(best[first], key=lambda t: -best[first][t]):
        v = [best[lib].get(t, 0.0) for lib in a.libs]
        ratio = f"{v[-1] / v[0]:.2f}" if v[0] else ""
        print(f"  {t:18s} " + " ".join(f"{x:9.1f}" for x in v) + f"  {ratio}")


if __name__ == "__main__":
    main()
