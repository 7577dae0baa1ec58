"""The distillation table of docs/distillation.md, on scikit-learn's digits (tinyinfer.datasets, 28x28), with
the split of models/digits_split.npz (train 1147 / calib 200 / test 450, from scripts/train_digits.py).

Teacher: models/digits_cnn.tflite (or --teacher), run by tinyinfer. Student: an MLP (--hidden, default 32)
trained on the train split (a 10% validation split of it for early stopping), from labels only, and
distilled (Hinton's soft targets at --temperature with weight --alpha, plus the labels), over --seeds
seeds (the same initial weights for both students per seed), then exported with tinyinfer.from_torch and
quantized int8-static calibrated on the train split. Accuracy on the test split; size of the .tinf;
one-thread batch-1 latency (median of --runs runs); training time (teacher: trained by
scripts/train_digits.py, not timed here; its outputs over the train split are computed once and cached).

Needs torch, onnx and scikit-learn:

    PYTHONPATH=python python scripts/distill_table.py
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import tinyinfer  # noqa: E402
from tinyinfer import distill  # noqa: E402
from tinyinfer.datasets import load_digits_28x28  # noqa: E402


def latency_us(model, x, runs):
    with model.session(threads=1) as s:
        for _ in range(20):
            s.run(x)
        t = []
        for _ in range(runs):
            t0 = time.perf_counter()
            s.run(x)
            t.append(time.perf_counter() - t0)
    return float(np.median(t) * 1e6)


def accuracy(model, x, y):
    """Item by item (batch 1, the files' batch: the exported students' flatten is a reshape to batch 1)."""
    with model.session(threads=1) as s:
        pred = [int(np.argmax(s.run(x[i:i + 1])[0])) for i in range(len(x))]
    return float((np.array(pred) == y).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=os.path.join(ROOT, "models", "digits_cnn.tflite"))
    ap.add_argument("--hidden", default="32")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--runs", type=int, default=500)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    hidden = [int(h) for h in args.hidden.split(",")]

    x, y = load_digits_28x28()
    split = np.load(os.path.join(ROOT, "models", "digits_split.npz"))
    tmp = tempfile.mkdtemp(prefix="distill-table-")
    teacher = tinyinfer.load(args.teacher)
    shape = tuple(teacher.inputs[0].shape[1:])
    xt = x.reshape((-1,) + shape)
    train, test = split["train"], split["test"]
    xtr, ytr, xte, yte = xt[train], y[train], xt[test], y[test]
    teacher_file = os.path.join(tmp, "teacher.tinf")
    tinyinfer.convert(args.teacher, teacher_file)

    t0 = time.perf_counter()
    probs = distill.teacher_outputs(teacher, xtr, progress=False, cache_dir=os.path.join(tmp, "cache"))
    teacher_s = time.perf_counter() - t0
    logits = distill.probs_to_logits(probs)
    rows = [("teacher " + os.path.basename(args.teacher), [accuracy(teacher, xte, yte)], os.path.getsize(teacher_file),
             latency_us(teacher, xte[:1], args.runs), None)]
    print(f"teacher outputs over {len(xtr)} items: {teacher_s:.2f}s (cached for the next run)", file=sys.stderr)

    def export(net, name, quantize=False):
        wrapped = torch.nn.Sequential(net, torch.nn.Softmax(dim=1))
        path = os.path.join(tmp, name + ".tinf")
        tinyinfer.from_torch(wrapped, torch.from_numpy(xte[:1].copy()), path)
        if quantize:
            qpath = os.path.join(tmp, name + "-int8.tinf")
            tinyinfer.quantize(path, qpath, mode="int8-static", calib=[c[None] for c in xtr[:500]], progress=False)
            path = qpath
        return path

    results = {"labels": [], "distilled": [], "distilled+int8": []}
    files = {}
    for seed in range(args.seeds):
        for kind in ("labels", "distilled"):
            torch.manual_seed(seed)
            net = distill.mlp_student(int(np.prod(shape)), hidden, logits.shape[1])
            res = distill.train_student(net, xtr, logits if kind == "distilled" else None, labels=ytr,
                                        temperature=args.temperature, alpha=args.alpha, epochs=args.epochs,
                                        lr=args.lr, patience=args.patience, seed=seed, progress=False)
            outs = [(kind, False)] + ([("distilled+int8", True)] if kind == "distilled" else [])
            for label, q in outs:
                path = export(net, f"{label}-{seed}", quantize=q)
                with tinyinfer.load(path) as m:
                    results[label].append((accuracy(m, xte, yte), res.seconds, len(res.history)))
                files.setdefault(label, path)
            print(f"seed {seed} {kind}: test acc {results[kind][-1][0]:.4f}, {len(res.history)} epochs, "
                  f"{res.seconds:.1f}s", file=sys.stderr)
    for label, title in [("labels", "student from labels only"), ("distilled", "student distilled"),
                         ("distilled+int8", "student distilled + int8-static")]:
        with tinyinfer.load(files[label]) as m:
            lat = latency_us(m, xte[:1], args.runs)
        r = results[label]
        rows.append((title, [a for a, _, _ in r], os.path.getsize(files[label]), lat,
                     float(np.mean([s for _, s, _ in r]))))
    teacher.close()

    print(f"\nteacher {os.path.relpath(args.teacher, ROOT)}, student MLP {int(np.prod(shape))}-"
          f"{'-'.join(map(str, hidden))}-{logits.shape[1]}, T={args.temperature}, alpha={args.alpha}, "
          f"{args.seeds} seeds, test split {len(test)} images\n")
    print("| model | test accuracy (mean, min..max over seeds) | size | latency, 1 thread, batch 1 | training time |")
    print("|---|---|---|---|---|")
    for title, accs, size, lat, secs in rows:
        acc = f"{np.mean(accs) * 100:.2f}%" + (f" ({min(accs) * 100:.2f}..{max(accs) * 100:.2f})"
                                               if len(accs) > 1 else "")
        train_s = "trained by scripts/train_digits.py" if secs is None else f"{secs:.1f} s"
        print(f"| {title} | {acc} | {size / 1024:.1f} KiB | {lat:.1f} us | {train_s} |")
    t_acc = rows[0][1][0]
    lab, dis = np.mean(rows[1][1]), np.mean(rows[2][1])
    gap = t_acc - lab
    print(f"\ngap recovered by distillation: {(dis - lab) / gap * 100:.0f}% of the "
          f"{gap * 100:.2f}-point gap" if gap > 0 else "\nthe labels-only student is not below the teacher")
    print(f"student latency / teacher latency: {rows[2][3] / rows[0][3]:.2f}")


if __name__ == "__main__":
    main()
