"""Two libraries (or two models) A/B, op by op, in alternating fresh processes.

Each process loads the model with the library given by TINYINFER_LIB, runs
it 30 times, then takes 200 single-run per-op profiles (`Session.profile`)
and keeps each op's 10th percentile; over the rounds each op's best figure
is kept. On a shared VM whose processes differ by 10-30% from one to the
next, this compares kernels more steadily than whole-run medians (the
BENCHMARKS.md stop 29 figures). Prints the ops that differ by more than 5%
(all of them with ALL=1), the totals per op type and the model's total.

    python bench/ab_ops.py MODEL LIB_A LIB_B [ROUNDS]
    MODEL_B=other.tflite python bench/ab_ops.py MODEL LIB LIB   # two models, one library

Inputs: random, int8 for models whose path names int8 or wakeword, else
float32, of shape SHAPE (default 1,128,128,3; SHAPE=1,3,40 for
micro_wakeword).
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = r'''
import sys, json, numpy as np
sys.path.insert(0, sys.argv[3])
import tinyinfer
m = tinyinfer.load(sys.argv[1]); s = m.session(threads=1)
dt = np.int8 if ("int8" in sys.argv[1] or "wakeword" in sys.argv[1]) else np.float32
shape = tuple(int(v) for v in sys.argv[2].split(","))
x = np.random.default_rng(0).integers(-128, 127, shape).astype(dt)
for _ in range(30): s.run(x)
P = np.array([[t for _, t in s.profile(x, runs=1)] for _ in range(200)])
print(json.dumps([[o.op for o in m.ops()], list(np.percentile(P, 10, axis=0))]))
'''


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    model, libs = sys.argv[1], sys.argv[2:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    models = [model, os.environ.get("MODEL_B", model)]
    shape = os.environ.get("SHAPE", "1,128,128,3")
    res = {0: [], 1: []}
    ops = None
    for _ in range(rounds):
        for i, lib in enumerate(libs):
            env = dict(os.environ, TINYINFER_LIB=lib)
            out = subprocess.run([sys.executable, "-c", CHILD, models[i], shape, os.path.join(os.path.dirname(HERE), "python")],
                                 env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr.strip().splitlines()[-1])
            names, p = json.loads(out.stdout)
            ops = ops or names
            res[i].append(p[:len(ops)] if len(p) >= len(ops) else p)
    a = np.min(np.array(res[0]), 0) * 1e6
    b = np.min(np.array(res[1]), 0) * 1e6
    tot = {}
    for j, op in enumerate(ops[:min(len(a), len(b))]):
        if os.environ.get("ALL") or abs(a[j] - b[j]) > 0.05 * a[j]:
            print(f"{j:3d} {op:18s} {a[j]:8.1f} {b[j]:8.1f} {b[j] / a[j]:5.2f}")
        t = tot.setdefault(op, [0.0, 0.0])
        t[0] += a[j]
        t[1] += b[j]
    for k, v in tot.items():
        print(f"    {k:18s} {v[0]:8.1f} {v[1]:8.1f} {v[1] / v[0]:5.2f}")
    print(f"    total {a.sum():8.1f} {b.sum():8.1f} {b.sum() / a.sum():5.2f}")


if __name__ == "__main__":
    main()
