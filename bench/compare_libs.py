"""A/B(/C...) latency of several libtinyinfer builds on the same .tinf files,
in the same run: each measurement is `python -m tinyinfer bench` in a fresh
process, the builds alternate within each round (their order rotates from
round to round), and the table gives, per model and build, the median over
rounds of each run's p50 and the best p50, with ratios to the first build.

    python bench/compare_libs.py --lib before=/path/old.so:/path/old/python \\
        --lib after=python/tinyinfer/lib/libtinyinfer.so \\
        [--env avx2=after:TINYINFER_ISA=avx2] [--rounds 7] [--runs 300] [--threads 1] \\
        [--markdown] MODEL.tinf ...

`--lib NAME=LIB[:PYTHONPATH]`: a build and, for a build of another version,
the Python package that goes with it (its own checkout's python/ folder).
`--env NAME=BASE:VAR=VALUE`: the build BASE run with an environment variable
set (a forced CPU level, for example).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def measure(lib, pythonpath, env_extra, model, runs, threads):
    env = dict(os.environ, TINYINFER_LIB=lib, PYTHONPATH=pythonpath)
    env.pop("TINYINFER_ISA", None)
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-m", "tinyinfer", "bench", model, "--runs", str(runs),
                          "--threads", str(threads)], env=env, capture_output=True, text=True)
    m = re.search(r"p50 ([\d.]+)", out.stdout)
    if out.returncode != 0 or not m:
        raise SystemExit(f"{model} with {lib}: {out.stderr.strip() or out.stdout.strip()}")
    return float(m.group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", action="append", required=True, help="NAME=LIB[:PYTHONPATH]")
    p.add_argument("--env", action="append", default=[], help="NAME=BASE:VAR=VALUE")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("models", nargs="+")
    a = p.parse_args()
    builds = {}
    for spec in a.lib:
        name, _, rest = spec.partition("=")
        lib, _, pythonpath = rest.partition(":")
        builds[name] = (os.path.abspath(lib), os.path.abspath(pythonpath or os.path.join(ROOT, "python")), {})
    for spec in a.env:
        name, _, rest = spec.partition("=")
        base, _, assignment = rest.partition(":")
        var, _, value = assignment.partition("=")
        lib, pythonpath, env = builds[base]
        builds[name] = (lib, pythonpath, dict(env, **{var: value}))
    names = list(builds)
    res = {m: {n: [] for n in names} for m in a.models}
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for m in a.models:
            for n in order:
                lib, pythonpath, env = builds[n]
                res[m][n].append(measure(lib, pythonpath, env, m, a.runs, a.threads))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    first = names[0]
    if a.markdown:
        head = "| model | " + " | ".join(f"{n} p50 us (best)" for n in names) + " | " + \
            " | ".join(f"{n}/{first}" for n in names[1:]) + " |"
        print(head)
        print("|" + "---|" * (1 + 2 * len(names) - 1))
    for m in a.models:
        med = {n: statistics.median(res[m][n]) for n in names}
        best = {n: min(res[m][n]) for n in names}
        label = os.path.basename(m)
        if a.markdown:
            cells = [f"{med[n]:.1f} ({best[n]:.1f})" for n in names]
            ratios = [f"{med[n] / med[first]:.3f} ({best[n] / best[first]:.3f})" for n in names[1:]]
            print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
        else:
            print(f"{label:34} " + "  ".join(f"{n} {med[n]:9.1f} ({best[n]:9.1f})" for n in names) + "  " +
                  "  ".join(f"{n}/{first} {med[n] / med[first]:.3f} ({best[n] / best[first]:.3f})" for n in names[1:]))


if __name__ == "__main__":
    main()
