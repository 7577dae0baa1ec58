"""Per-item cost against batch size, per op: why a batched convolutional
network can run slower per item than batch 1 (BENCHMARKS.md, "Why batched
MobileNetV2 is slower per item"). Two markdown tables, us per item from
`Session.profile` (median of runs, 1 thread):

- one-op graphs (DepthwiseConv2D and a 1x1 Conv2D at 64x64 and 16x16):
  the same kernel at batch 1 to 64, against the bytes its batch touches;
- a model's ops summed by kind at batch 1 to 64, with the arena size.

    python3 bench/batch_locality.py                                   # MobileNetV2 from bench/models
    python3 bench/batch_locality.py --model bench/models/mobilenetv2.float32.tinf --batches 1,16
"""

import argparse
import collections
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import tinyinfer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ONE_OP = [  # op, channels in, weights, attributes (MobileNetV2's layer kinds)
    ("DepthwiseConv2D 3x3 /2", 48, (1, 3, 3, 48), dict(strides=[2, 2], padding=1, activation=3)),
    ("DepthwiseConv2D 3x3", 16, (1, 3, 3, 16), dict(padding=1, activation=3)),
    ("Conv2D 1x1 8->48", 8, (48, 1, 1, 8), dict(activation=3)),
]


def one_op_session(op, xs, ws, attrs):
    g = tinyinfer.GraphBuilder(op)
    rng = np.random.default_rng(0)
    x = g.input("x", xs, dtype=np.float32)
    w = g.const("w", rng.standard_normal(ws).astype(np.float32))
    b = g.const("b", rng.standard_normal(ws[0] if op == "Conv2D" else ws[3]).astype(np.float32))
    y = g.op(op, x, w, b, **attrs)
    g.output(y)
    return g.load(threads=1).session(), y


def per_item_us(session, shape, runs):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    session.run(x)
    return [(op, t * 1e6 / shape[0]) for op, t in session.profile(x, runs=runs)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(HERE, "models", "mobilenetv2.float32.tinf"))
    ap.add_argument("--batches", default="1,2,4,16,64")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    print(f"load average {os.getloadavg()[0]:.1f}\n")
    print("| op (us per item) | in + out KB per item | " + " | ".join(f"batch {n}" for n in batches) + " |")
    print("|---|---|" + "---|" * len(batches))
    for name, c, ws, attrs in ONE_OP:
        op = name.split()[0]
        for hw in (64, 16):
            cells = []
            for n in batches:
                s, _ = one_op_session(op, (n, hw, hw, c), ws, attrs)
                cells.append(f"{per_item_us(s, (n, hw, hw, c), max(10, 400 // n))[0][1]:.2f}")
                s.close()
            st = attrs.get("strides", [1, 1])[0]
            cout = ws[0] if op == "Conv2D" else ws[3]
            kb = (hw * hw * c + (hw // st) ** 2 * cout) * 4 / 1024
            print(f"| {name}, {hw}x{hw}x{c} | {kb:.0f} | " + " | ".join(cells) + " |")

    m = tinyinfer.load(a.model)
    print(f"\n{os.path.basename(a.model)}, us per item, load average {os.getloadavg()[0]:.1f}\n")
    kinds = None
    rows = []
    for n in batches:
        shape = [n] + list(m.inputs[0].shape[1:])
        s = m.session(threads=1, input_shapes=[shape])
        agg = collections.defaultdict(float)
        for op, us in per_item_us(s, shape, max(5, 160 // n)):
            agg[op] += us
        kinds = kinds or [k for k, _ in sorted(agg.items(), key=lambda kv: -kv[1])][:3]
        rows.append((n, s.arena_bytes, agg))
        s.close()
    print("| batch | arena MB | " + " | ".join(kinds) + " | all ops |")
    print("|---|---|" + "---|" * (len(kinds) + 1))
    for n, arena, agg in rows:
        print(f"| {n} | {arena / 2**20:.1f} | " + " | ".join(f"{agg[k]:,.0f}" for k in kinds)
              + f" | {sum(agg.values()):,.0f} |")


if __name__ == "__main__":
    main()
