"""What the graph passes do on real models (issue 18 item 3): for each .tinf,
the load's pass report counted by kind: duplicate ops removed by the
common-subexpression pass, ops computed once at load by constant folding,
ops hoisted out of the runs (computed once per session: they depend on no
input value), and, for scale, the ops fused into their producers
(batch-norm, scale and bias folding) and the identities removed. A count, not
a timing: the figures do not depend on the machine.

    python bench/pass_counts.py [FILES...] [--markdown]

Default files: the real-model suite's converted models
(bench/models/real/work/*.tinf, made by `python bench/real_models.py run`)
and the bench models (bench/models/*.tinf, `python bench/make_models.py`).
"""

import argparse
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import tinyinfer  # noqa: E402

KINDS = {
    "cse": re.compile(r"^common subexpressions: (\d+) duplicate op"),
    "folded": re.compile(r"^fold constants: (\d+) op"),
    "hoisted": re.compile(r"^hoist: (\d+) op"),
}


def counts(path):
    """(ops, {kind: count}) from the pass report of the model's load."""
    with tinyinfer.load(path, prepack_cache=False) as m:
        ops = m.num_ops
        lines = list(m.passes)
    c = {k: 0 for k in KINDS}
    c["fused"] = c["removed"] = 0
    for line in lines:
        for k, rx in KINDS.items():
            hit = rx.match(line)
            if hit:
                c[k] += int(hit.group(1))
        if re.match(r"^fold \w+ '.*' into ", line):
            c["fused"] += 1
        elif line.startswith("remove "):
            c["removed"] += 1
    return ops, c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--markdown", action="store_true", help="a markdown table")
    args = ap.parse_args()
    files = args.files or (sorted(glob.glob(os.path.join(HERE, "models", "real", "work", "*.tinf")))
                           + sorted(glob.glob(os.path.join(HERE, "models", "*.tinf"))))
    if not files:
        sys.exit("pass_counts: no .tinf files (run bench/real_models.py run or bench/make_models.py first)")
    rows = []
    for f in files:
        try:
            ops, c = counts(f)
        except tinyinfer.TinyInferError as e:
            print(f"{os.path.basename(f)}: {e}", file=sys.stderr)
            continue
        rows.append((os.path.relpath(f, os.path.dirname(HERE)), ops, c))
    head = ["model", "ops", "CSE: duplicates removed", "folded at load", "hoisted per session",
            "fused into producers", "identities removed"]
    keys = ["cse", "folded", "hoisted", "fused", "removed"]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for name, ops, c in rows:
            print(f"| {name} | {ops} | " + " | ".join(str(c[k]) for k in keys) + " |")
    else:
        for name, ops, c in rows:
            print(f"{name:70s} {ops:6d} " + " ".join(f"{k}={c[k]}" for k in keys))
    tot = {k: sum(c[k] for _, _, c in rows) for k in keys}
    print(f"\n{len(rows)} models, {sum(r[1] for r in rows)} ops: " + ", ".join(f"{k} {tot[k]}" for k in keys))


if __name__ == "__main__":
    main()
