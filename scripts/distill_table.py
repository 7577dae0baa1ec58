"""The distillation table of docs/distillation.md, on scikit-learn's digits (tinyinfer.datasets, 28x28), with
the split of models/digits_split.npz (train 1147 / calib 200 / test 450, from scripts/train_digits.py).

Teacher: models/digits_cnn.tflite (or --teacher), run by tinyinfer. Student: an MLP (--hidden, default 16)
trained on the train split (a 10% validation split of it for early stopping), from labels only, and
distilled (Hinton's soft targets at --temperature with weight --alpha, plus the labels), over --seeds
seeds (the same initial weights for both students per seed), then exported with tinyinfer.from_torch and
quantized int8-static calibrated on the train split. Accuracy on the test split; size of the .tinf;
one-thread batch-1 latency (p50; tinyinfer.compare, which also
gives the accuracy and size); training time (teacher: trained by
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=os.path.join(ROOT, "models", "digits_cnn.tflite"))
    ap.add_argument("--hidden", default="16")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=0.5, help="latency timing per model (tinyinfer.compare)")
    ap.add_argument("--augment", type=int, default=0,
                    help="add this many shifted copies (+-2 pixels) of each training image to the training set "
                         "of both students (the teacher labels them for the distilled one)")
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
    if args.augment:
        rng = np.random.default_rng(0)
        img = x[train]
        copies = [xtr]
        for _ in range(args.augment):
            dy, dx = rng.integers(-2, 3, size=(2, len(img)))
            shifted = np.stack([np.roll(np.roll(im, a, 0), b, 1) for im, a, b in zip(img, dy, dx)])
            copies.append(shifted.reshape((-1,) + shape))
        xtr, ytr = np.concatenate(copies), np.tile(ytr, args.augment + 1)
    teacher_file = os.path.join(tmp, "teacher.tinf")
    tinyinfer.convert(args.teacher, teacher_file)

    t0 = time.perf_counter()
    probs = distill.teacher_outputs(teacher, xtr, progress=False, cache_dir=os.path.join(tmp, "cache"))
    teacher_s = time.perf_counter() - t0
    logits = distill.probs_to_logits(probs)
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

    kinds = ["labels", "distilled", "distilled+int8"]
    files = {k: [] for k in kinds}
    train_s = {k: [] for k in kinds}
    for seed in range(args.seeds):
        for kind in ("labels", "distilled"):
            torch.manual_seed(seed)
            net = distill.mlp_student(int(np.prod(shape)), hidden, logits.shape[1])
            res = distill.train_student(net, xtr, logits if kind == "distilled" else None, labels=ytr,
                                        temperature=args.temperature, alpha=args.alpha, epochs=args.epochs,
                                        lr=args.lr, patience=args.patience, seed=seed, progress=False)
            for label, q in [(kind, False)] + ([("distilled+int8", True)] if kind == "distilled" else []):
                files[label].append(export(net, f"{label}-{seed}", quantize=q))
                train_s[label].append(res.seconds)
            print(f"seed {seed} {kind}: {len(res.history)} epochs, {res.seconds:.1f}s", file=sys.stderr)
    teacher.close()

    # accuracy on the test split, file size and one-thread batch-1 latency (p50, interleaved rounds): compare
    paths = [teacher_file] + [f for k in kinds for f in files[k]]
    recs = {r["path"]: r for r in tinyinfer.compare(paths, data=xte, labels=yte, threads=1, seconds=args.seconds)}
    rows = [("teacher " + os.path.basename(args.teacher), [recs[os.path.abspath(teacher_file)]], None)]
    for label, title in [("labels", "student from labels only"), ("distilled", "student distilled"),
                         ("distilled+int8", "student distilled + int8-static")]:
        rows.append((title, [recs[os.path.abspath(f)] for f in files[label]], float(np.mean(train_s[label]))))

    print(f"\nteacher {os.path.relpath(args.teacher, ROOT)}, student MLP {int(np.prod(shape))}-"
          f"{'-'.join(map(str, hidden))}-{logits.shape[1]}, T={args.temperature}, alpha={args.alpha}, "
          f"{args.seeds} seeds, {len(xtr)} training images ({args.augment} shifted copies each), "
          f"test split {len(test)} images\n")
    print("| model | test accuracy (mean, min..max over seeds) | size | latency, 1 thread, batch 1 (p50) | "
          "training time |")
    print("|---|---|---|---|---|")
    means = []
    for title, rs, secs in rows:
        accs = [r["accuracy"] for r in rs]
        means.append(float(np.mean(accs)))
        acc = f"{np.mean(accs) * 100:.2f}%" + (f" ({min(accs) * 100:.2f}..{max(accs) * 100:.2f})"
                                               if len(accs) > 1 else "")
        lat = np.median([r["p50_us"] for r in rs])
        t = "trained by scripts/train_digits.py" if secs is None else f"{secs:.1f} s"
        print(f"| {title} | {acc} | {rs[0]['file_bytes'] / 1024:.1f} KiB | {lat:.1f} us | {t} |")
    gap = means[0] - means[1]
    print(f"\ngap recovered by distillation: {(means[2] - means[1]) / gap * 100:.0f}% of the "
          f"{gap * 100:.2f}-point gap" if gap > 0 else "\nthe labels-only student is not below the teacher")
    lat = [np.median([r["p50_us"] for r in rs]) for _, rs, _ in rows]
    print(f"distilled student latency / teacher latency: {lat[2] / lat[0]:.2f}")


if __name__ == "__main__":
    main()
