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
    SPARSE_A=always SPARSE_B=0 python bench/ab_ops.py MODEL LIB LIB   # sparse kernels against dense

SPARSE_A / SPARSE_B: the `sparse` argument of each side's load (1: the
automatic choice, the default; 0: dense kernels only; always).
Per-op rows are printed when both sides have the same ops (two libraries,
or sparse against dense); two different models get their totals per op
type only.

THREADS=2: each side's session runs with two threads (default one);
THREADS_B=2 alone: side B only, so `THREADS_B=2 python bench/ab_ops.py MODEL
LIB LIB` compares one thread against two, op by op.

Inputs: random integers in [-128, 127) of the first input's dtype and
shape (SHAPE=1,3,40 gives another shape).
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
sparse = {"0": False, "1": True, "always": "always"}[sys.argv[4]]
m = tinyinfer.load(sys.argv[1], sparse=sparse); s = m.session(threads=int(sys.argv[5]))
spec = m.inputs[0]
shape = tuple(int(v) for v in sys.argv[2].split(",")) if sys.argv[2] else tuple(spec.shape)
x = np.random.default_rng(0).integers(-128, 127, shape).astype(np.dtype(spec.dtype))
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
    sparse = [os.environ.get("SPARSE_A", "1"), os.environ.get("SPARSE_B", "1")]
    shape = os.environ.get("SHAPE", "")
    threads = os.environ.get("THREADS", "1")
    threads_side = [threads, os.environ.get("THREADS_B", threads)]
    ops, res = [None, None], [[], []]
    for _ in range(rounds):
        for i, lib in enumerate(libs):
            env = dict(os.environ, TINYINFER_LIB=lib)
            out = subprocess.run(
                [sys.executable, "-c", CHILD, models[i], shape, os.path.join(os.path.dirname(HERE), "python"), sparse[i], threads_side[i]],
                env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr.strip().splitlines()[-1])
            ops[i], p = json.loads(out.stdout)
            res[i].append(p)
    a, b = (np.min(np.array(r), 0) * 1e6 for r in res)
    if ops[0] == ops[1]:
        for j, op in enumerate(ops[0]):
            if os.environ.get("ALL") or abs(a[j] - b[j]) > 0.05 * a[j]:
                print(f"{j:3d} {op:18s} {a[j]:8.1f} {b[j]:8.1f} {b[j] / a[j]:5.2f}")
    tot = {}
    for side, (names, t) in enumerate(((ops[0], a), (ops[1], b))):
        for op, v in zip(names, t):
            tot.setdefault(op, [0.0, 0.0])[side] += v
    for k, (u, v) in tot.items():
        print(f"    {k:18s} {u:8.1f} {v:8.1f} " + (f"{v / u:5.2f}" if u and v else ""))
    print(f"    total {a.sum():8.1f} {b.sum():8.1f} {b.sum() / a.sum():5.2f}")

if __name__ == "__main__":
    main()
