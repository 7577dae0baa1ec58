"""The distillation tables of docs/distillation.md. `--dataset digits` (default): on scikit-learn's digits
(tinyinfer.datasets, 28x28), with the split of models/digits_split.npz (train 1147 / calib 200 / test 450, from scripts/train_digits.py).

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

`--dataset mnist1d`: MNIST-1D (the `mnist1d` package, Apache-2.0, `pip install mnist1d`: 40-sample 1-D
signals of 10 digit templates, generated locally by mnist1d.data.make_dataset, no download), 20000 items
(16000 train, 4000 test). The teacher is a 1-D CNN trained here on all 16000 training labels; the students
are MLPs (--hidden) given 10% of the labels (1600), from labels only, and distilled from the teacher's
outputs on all 16000 training items without their labels (soft targets only); a row with all the labels is
the reference. Then the teacher pruned 80% (magnitude, one shot) and recovered: tinyinfer.to_torch(pruned,
keep_zeros=True) fine-tuned on the teacher's outputs and the labels, written back with to_tinf. And the
teacher shrunk (distill.shrink, --shrink of its channels) and distilled the same way.

    PYTHONPATH=python python scripts/distill_table.py --dataset mnist1d --hidden 128,128 --epochs 100 --seeds 2
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


def print_table(rows, recovered: int) -> None:
    """rows: (title, compare records, training time text); row 0 the teacher, 1 the labels-only student,
    2 the distilled one, `recovered` the pruned-and-recovered teacher. Prints the markdown table and the
    goals' figures."""
    print("| model | test accuracy (mean, min..max over seeds) | size | latency, 1 thread, batch 1 (p50) | "
          "training time |")
    print("|---|---|---|---|---|")
    means, lat = [], []
    for title, rs, t in rows:
        accs = [r["accuracy"] for r in rs]
        means.append(float(np.mean(accs)))
        lat.append(float(np.median([r["p50_us"] for r in rs])))
        acc = f"{np.mean(accs) * 100:.2f}%" + (f" ({min(accs) * 100:.2f}..{max(accs) * 100:.2f})"
                                               if len(accs) > 1 else "")
        print(f"| {title} | {acc} | {rs[0]['file_bytes'] / 1024:.1f} KiB | {lat[-1]:.1f} us | {t} |")
    gap = means[0] - means[1]
    print(f"\ngap recovered by distillation: {(means[2] - means[1]) / gap * 100:.0f}% of the "
          f"{gap * 100:.2f}-point gap" if gap > 0 else "\nthe labels-only student is not below the teacher")
    print(f"distilled student latency / teacher latency: {lat[2] / lat[0]:.2f}")
    print(f"pruned-recovered vs teacher: {(means[recovered] - means[0]) * 100:+.2f} points")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["digits", "mnist1d"], default="digits")
    ap.add_argument("--labeled", type=float, default=None,
                    help="the fraction of training labels the labels-only student gets (mnist1d default 0.1; "
                         "digits default 1: below 1, the distilled student gets all training items unlabeled)")
    ap.add_argument("--shrink", type=float, default=0.25, help="mnist1d: the shrunk teacher's width")
    ap.add_argument("--teacher-epochs", type=int, default=40)
    ap.add_argument("--teacher-channels", type=int, default=64, help="mnist1d: the teacher CNN's channels")
    ap.add_argument("--recovery-epochs", type=int, default=15,
                    help="mnist1d: epochs of the pruned teacher's recovery and of the shrunk teacher's training")
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
    if args.dataset == "mnist1d":
        if args.labeled is None:
            args.labeled = 0.1
        return mnist1d_table(args, torch)
    labeled = 1.0 if args.labeled is None else args.labeled
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
            fit = dict(temperature=args.temperature, alpha=args.alpha, epochs=args.epochs, lr=args.lr,
                       patience=args.patience, seed=seed, progress=False)
            n_lab = int(round(len(xtr) * labeled))
            if labeled < 1.0:  # few labels: the labels-only student has n_lab; the distilled one all, unlabeled
                res = (distill.train_student(net, xtr, logits, **fit) if kind == "distilled" else
                       distill.train_student(net, xtr[:n_lab], None, labels=ytr[:n_lab], **fit))
            else:
                res = distill.train_student(net, xtr, logits if kind == "distilled" else None, labels=ytr, **fit)
            for label, q in [(kind, False)] + ([("distilled+int8", True)] if kind == "distilled" else []):
                files[label].append(export(net, f"{label}-{seed}", quantize=q))
                train_s[label].append(res.seconds)
            print(f"seed {seed} {kind}: {len(res.history)} epochs, {res.seconds:.1f}s", file=sys.stderr)
    teacher.close()

    # the teacher 80% pruned (magnitude, one shot), then recovered: its zeros held, the dense teacher teaching
    pruned_file, recovered_file = os.path.join(tmp, "pruned.tinf"), os.path.join(tmp, "recovered.tinf")
    tinyinfer.prune(teacher_file, pruned_file, method="magnitude", sparsity=0.8)
    torch.manual_seed(0)
    pnet = tinyinfer.to_torch(pruned_file, keep_zeros=True, logits=True)
    rec_res = distill.train_student(pnet, xtr, logits, labels=ytr, temperature=args.temperature, alpha=args.alpha,
                                    epochs=args.recovery_epochs, lr=args.lr / 4, patience=args.patience, seed=0,
                                    progress=False)
    pnet.to_tinf(recovered_file)
    print(f"recovered: {len(rec_res.history)} epochs, {rec_res.seconds:.1f}s", file=sys.stderr)

    # accuracy on the test split, file size and one-thread batch-1 latency (p50, interleaved rounds): compare
    paths = [teacher_file, pruned_file, recovered_file] + [f for k in kinds for f in files[k]]
    recs = {r["path"]: r for r in tinyinfer.compare(paths, data=xte, labels=yte, threads=1, seconds=args.seconds)}
    rows = [("teacher " + os.path.basename(args.teacher), [recs[os.path.abspath(teacher_file)]],
             "trained by scripts/train_digits.py")]
    n_lab = int(round(len(xtr) * labeled))
    few = f" ({n_lab} labels)" if labeled < 1.0 else ""
    unl = f" ({len(xtr)} items, unlabeled)" if labeled < 1.0 else ""
    for label, title in [("labels", "student from labels only" + few), ("distilled", "student distilled" + unl),
                         ("distilled+int8", "student distilled + int8-static")]:
        rows.append((title, [recs[os.path.abspath(f)] for f in files[label]], f"{np.mean(train_s[label]):.1f} s"))
    rows.append(("teacher 80% pruned (magnitude), one shot", [recs[os.path.abspath(pruned_file)]], "-"))
    rows.append(("pruned + distillation recovery (keep_zeros)", [recs[os.path.abspath(recovered_file)]],
                 f"{rec_res.seconds:.1f} s"))
    print(f"\nteacher {os.path.relpath(args.teacher, ROOT)}, student MLP {int(np.prod(shape))}-"
          f"{'-'.join(map(str, hidden))}-{logits.shape[1]}, T={args.temperature}, alpha={args.alpha}, "
          f"{args.seeds} seeds, {len(xtr)} training images ({args.augment} shifted copies each), "
          f"test split {len(test)} images\n")
    print_table(rows, recovered=5)


def mnist1d_data(n=20000, seed=0):
    """MNIST-1D (mnist1d package): n items, 80% train / 20% test, float32 [n, 40], labels int64."""
    from mnist1d.data import get_dataset_args, make_dataset
    a = get_dataset_args()
    a.num_samples, a.train_split, a.seed = n, 0.8, seed
    d = make_dataset(a)
    return (d["x"].astype(np.float32), d["y"].astype(np.int64), d["x_test"].astype(np.float32),
            d["y_test"].astype(np.int64))


def cnn1d(torch, channels=32, length=40, classes=10):
    """The teacher: three 1-D convolutions (kernel 5, 3, 3, ReLU) as Conv2d over [N, 1, 1, length], then a
    dense layer over the flattened features; reshape(-1, ...) keeps the exported graph batch-dynamic."""
    nn = torch.nn

    class CNN1D(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, channels, (1, 5), padding=(0, 2))
            self.c2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
            self.c3 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
            self.fc = nn.Linear(channels * length, classes)

        def forward(self, x):
            h = x.reshape(-1, 1, 1, length)
            h = torch.relu(self.c3(torch.relu(self.c2(torch.relu(self.c1(h))))))
            return self.fc(h.reshape(-1, channels * length))

    return CNN1D()


def mnist1d_table(args, torch):
    hidden = [int(h) for h in args.hidden.split(",")]
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = mnist1d_data()
    print(f"MNIST-1D: {len(xtr)} train, {len(xte)} test items, made in {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="distill-mnist1d-")
    fit = dict(epochs=args.epochs, lr=args.lr, patience=args.patience, progress=False)
    paths, secs = {}, {}

    # the teacher: trained from all training labels
    torch.manual_seed(0)
    tnet = cnn1d(torch, channels=args.teacher_channels)
    res = distill.train_student(tnet, xtr, None, labels=ytr, seed=0, **dict(fit, epochs=args.teacher_epochs))
    secs["teacher"] = res.seconds
    paths["teacher"] = os.path.join(tmp, "teacher.tinf")
    tinyinfer.from_torch(tnet, torch.from_numpy(xtr[:1]), paths["teacher"], via="torchscript")
    print(f"teacher: {len(res.history)} epochs, {res.seconds:.1f}s", file=sys.stderr)
    logits = np.array(distill.teacher_outputs(paths["teacher"], xtr, progress=False,
                                              cache_dir=os.path.join(tmp, "cache")))

    def export_mlp(net, name, quantize=False):
        path = os.path.join(tmp, name + ".tinf")
        tinyinfer.from_torch(net, torch.from_numpy(xtr[:1]), path, via="torchscript")
        if quantize:
            q = os.path.join(tmp, name + "-int8.tinf")
            tinyinfer.quantize(path, q, mode="int8-static", calib=[c[None] for c in xtr[:500]], progress=False)
            return q
        return path

    n_lab = int(round(len(xtr) * args.labeled))
    rows = {k: [] for k in ("labels", "all_labels", "distilled", "distilled+int8")}
    times = {k: [] for k in rows}
    for seed in range(args.seeds):
        for kind in ("labels", "all_labels", "distilled"):
            torch.manual_seed(seed)
            net = distill.mlp_student(40, hidden, 10)
            if kind == "labels":
                r = distill.train_student(net, xtr[:n_lab], None, labels=ytr[:n_lab], seed=seed, **fit)
            elif kind == "all_labels":
                r = distill.train_student(net, xtr, None, labels=ytr, seed=seed, **fit)
            else:
                r = distill.train_student(net, xtr, logits, temperature=args.temperature, seed=seed, **fit)
            rows[kind].append(export_mlp(net, f"{kind}-{seed}"))
            times[kind].append(r.seconds)
            if kind == "distilled":
                rows["distilled+int8"].append(export_mlp(net, f"{kind}-{seed}", quantize=True))
                times["distilled+int8"].append(r.seconds)
            print(f"seed {seed} {kind}: {len(r.history)} epochs, {r.seconds:.1f}s", file=sys.stderr)

    # 80% pruned teacher, one shot, then recovered by distillation with its zeros held
    paths["pruned"] = os.path.join(tmp, "pruned.tinf")
    tinyinfer.prune(paths["teacher"], paths["pruned"], method="magnitude", sparsity=0.8)
    torch.manual_seed(0)
    pnet = tinyinfer.to_torch(paths["pruned"], keep_zeros=True)
    r = distill.train_student(pnet, xtr, logits, labels=ytr, temperature=args.temperature, alpha=args.alpha,
                              seed=0, **dict(fit, lr=args.lr / 4, epochs=args.recovery_epochs))
    secs["recovered"] = r.seconds
    paths["recovered"] = os.path.join(tmp, "recovered.tinf")
    pnet.to_tinf(paths["recovered"])
    mats = [w for w in pnet.weights().values() if w.ndim > 1]
    zeros = sum(int((w == 0).sum()) for w in mats) / sum(w.size for w in mats)
    print(f"recovered: {len(r.history)} epochs, {r.seconds:.1f}s, {zeros:.1%} of the weights zero",
          file=sys.stderr)

    # the teacher shrunk (structured pruning to --shrink of its channels), distilled without labels
    torch.manual_seed(0)
    snet = distill.shrink(paths["teacher"], width=args.shrink)
    r = distill.train_student(snet, xtr, logits, temperature=args.temperature, seed=0,
                              **dict(fit, epochs=args.recovery_epochs))
    secs["shrunk"] = r.seconds
    paths["shrunk"] = os.path.join(tmp, "shrunk.tinf")
    snet.to_tinf(paths["shrunk"])
    print(f"shrunk: {len(r.history)} epochs, {r.seconds:.1f}s", file=sys.stderr)

    allp = list(paths.values()) + [f for v in rows.values() for f in v]
    recs = {r["path"]: r for r in tinyinfer.compare(allp, data=xte, labels=yte, threads=1, seconds=args.seconds)}

    def rec(p):
        return recs[os.path.abspath(p)]

    def t(v):
        return f"{np.mean(v):.1f} s"

    table = [(f"teacher: 1-D CNN (3 conv, {args.teacher_channels} channels), all {len(xtr)} labels",
              [rec(paths["teacher"])], t(secs["teacher"])),
             (f"student MLP from {args.labeled:.0%} of the labels ({n_lab})", [rec(p) for p in rows["labels"]],
              t(times["labels"])),
             (f"student distilled, all {len(xtr)} items unlabeled", [rec(p) for p in rows["distilled"]],
              t(times["distilled"])),
             ("student distilled + int8-static", [rec(p) for p in rows["distilled+int8"]],
              t(times["distilled+int8"])),
             ("teacher 80% pruned (magnitude), one shot", [rec(paths["pruned"])], "-"),
             ("pruned + distillation recovery (keep_zeros)", [rec(paths["recovered"])], t(secs["recovered"])),
             (f"(reference) student MLP from all {len(xtr)} labels", [rec(p) for p in rows["all_labels"]],
              t(times["all_labels"])),
             (f"teacher shrunk to {args.shrink:g} width, distilled unlabeled", [rec(paths["shrunk"])],
              t(secs["shrunk"]))]
    print(f"\nMNIST-1D, student MLP 40-{'-'.join(map(str, hidden))}-10, T={args.temperature}, "
          f"{args.seeds} seeds for the MLP rows, test {len(xte)} items\n")
    print_table(table, recovered=5)


if __name__ == "__main__":
    main()
