"""The sparsity / accuracy / latency / size table of docs/pruning.md and its
plot (bench/pruning.png): every pruning method at 50/70/80/90% (and the N:M
patterns) on the trained digits models (models/, accuracy on the held-out
test split of models/digits_split.npz) and on MobileNetV2 (bench/models,
random weights: the relative L2 error of its outputs against the dense
model's on random inputs instead of an accuracy), one-shot (no retraining), next to
torch.nn.utils.prune's global L1 magnitude pruning of the same weights
where torch is installed.

    python bench/prune_table.py [--models mlp,cnn,mobilenetv2] [--plot bench/pruning.png]
    python bench/prune_table.py --only "wanda,wanda + LS correction"     # some methods, no plot
"""

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import tinyinfer  # noqa: E402
from tinyinfer.prune import Pruner  # noqa: E402

SPARSITIES = [0.5, 0.7, 0.8, 0.9]
ONLY = []   # --only: the method labels to run


def digits(shape):
    from tinyinfer.datasets import load_digits_28x28
    x, y = load_digits_28x28()
    split = np.load(os.path.join(ROOT, "models", "digits_split.npz"))
    x = x.reshape(-1, *shape[1:])
    return x[split["calib"]], x[split["test"]], y[split["test"]]


def latency_ms(data, x, runs=50):
    with tinyinfer.load(data) as m, m.session(threads=1) as s:
        s.run(x[:1])
        return min(sum(t for _, t in s.profile(x[:1], runs=runs)) for _ in range(3)) * 1e3


def score(data, xt, yt, parent=None):
    """Accuracy on labels, or (yt None) the mean relative L2 error of the outputs against the parent's."""
    with tinyinfer.load(data) as m:
        outs = np.stack([m.run(xt[i:i + 1])[0].reshape(-1) for i in range(len(xt))]).astype(np.float64)
    if yt is not None:
        return float((outs.argmax(1) == yt).mean())
    return float(np.mean(np.linalg.norm(outs - parent, axis=1) / np.linalg.norm(parent, axis=1)))


def torch_global_magnitude(src, sparsity):
    """torch.nn.utils.prune.global_unstructured (L1) over the same layers' weights, written back."""
    import torch
    import torch.nn.utils.prune as tprune
    with tinyinfer.load(src, sparse=False) as m, Pruner(m) as p:
        mods = []
        for i in range(len(p.layers())):
            mod = torch.nn.Module()
            mod.weight = torch.nn.Parameter(torch.from_numpy(p.weights(i).copy()))
            mods.append(mod)
        tprune.global_unstructured([(mod, "weight") for mod in mods], pruning_method=tprune.L1Unstructured,
                                   amount=sparsity)
        for i, mod in enumerate(mods):
            p.set_weights(i, mod.weight.detach().numpy())
        return p.finish()


def run_model(name, path, rows, plot_data):
    with tinyinfer.load(path) as m:
        shape = m.inputs[0].shape
    if name == "mobilenetv2":
        rng = np.random.default_rng(0)
        xc = rng.standard_normal((16,) + tuple(shape[1:])).astype(np.float32)
        xt = rng.standard_normal((16,) + tuple(shape[1:])).astype(np.float32)
        with tinyinfer.load(path) as m:
            parent = np.stack([m.run(xt[i:i + 1])[0].reshape(-1) for i in range(len(xt))]).astype(np.float64)
        yt = None
    else:
        xc, xt, yt = digits(shape)
        parent = None
    src = open(path, "rb").read()
    base_acc = score(src, xt, yt, parent)
    base_lat = latency_ms(src, xt)
    rows.append((name, "dense", 0.0, base_acc, base_lat, len(src), None))
    print(f"{name}: dense {base_acc:.4f}, {base_lat:.3f} ms, {len(src):,} B", flush=True)
    methods = [("magnitude global", dict(method="magnitude", scope="global")),
               ("magnitude per layer", dict(method="magnitude", scope="layer")),
               ("magnitude sensitivity", dict(method="magnitude", scope="sensitivity", calib=xc)),
               ("wanda", dict(method="wanda", calib=xc)),
               ("wanda + LS correction", dict(method="wanda", calib=xc, ls_correction=True))]
    if ONLY:
        methods = [(label, kw) for label, kw in methods if label in ONLY]
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    for label, kw in methods + ([("torch global L1", None)] if have_torch and not ONLY else []):
        for sp in SPARSITIES:
            if kw is None:
                data = torch_global_magnitude(src, sp)
            else:
                data = tinyinfer.prune(src, sparsity=sp, validate=False, **kw).data
            acc, lat = score(data, xt, yt, parent), latency_ms(data, xt)
            rows.append((name, label, sp, acc, lat, len(data), None))
            plot_data.setdefault((name, label), []).append((sp, acc, lat))
            print(f"  {label:22} {sp:.0%}: {acc:.4f}  {lat:.3f} ms  {len(data):,} B", flush=True)
    for pattern in (() if ONLY else ("2:4", "1:4")):
        for label, kw in ((f"N:M {pattern} magnitude", {}), (f"N:M {pattern} wanda", dict(calib=xc))):
            data = tinyinfer.prune(src, method="nm", pattern=pattern, validate=False, **kw).data
            acc, lat = score(data, xt, yt, parent), latency_ms(data, xt)
            sp = 1 - int(pattern[0]) / int(pattern[2])
            rows.append((name, label, sp, acc, lat, len(data), None))
            print(f"  {label:22} {sp:.0%}: {acc:.4f}  {lat:.3f} ms  {len(data):,} B", flush=True)
    return base_acc, base_lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,cnn,mobilenetv2")
    ap.add_argument("--plot", default=os.path.join(ROOT, "bench", "pruning.png"))
    ap.add_argument("--only", help="comma-separated method labels to run (e.g. 'wanda,wanda + LS correction'); "
                                   "no torch, N:M or plot then")
    a = ap.parse_args()
    global ONLY
    ONLY = [s.strip() for s in a.only.split(",")] if a.only else []
    if ONLY:
        a.plot = None
    tmp = tempfile.mkdtemp()
    paths = {}
    for name in a.models.split(","):
        if name in ("mlp", "cnn"):
            p = os.path.join(tmp, f"digits_{name}.tinf")
            tinyinfer.convert(os.path.join(ROOT, "models", f"digits_{name}.tflite"), p)
            paths[name] = p
        elif name == "mobilenetv2":
            p = os.path.join(ROOT, "bench", "models", "mobilenetv2.float32.tinf")
            if os.path.exists(p):
                paths[name] = p
            else:
                print(f"{p} missing: python bench/make_models.py", file=sys.stderr)
    rows, plot_data, bases = [], {}, {}
    for name, path in paths.items():
        bases[name] = run_model(name, path, rows, plot_data)
    print("\n| model | method | sparsity | accuracy | latency ms (batch 1, 1 thread) | file bytes |")
    print("|---|---|---|---|---|---|")
    for name, label, sp, acc, lat, size, _ in rows:
        metric = f"{acc:.4f}" if name != "mobilenetv2" else f"rel. error {acc:.3f}"
        print(f"| {name} | {label} | {sp:.0%} | {metric} | {lat:.3f} | {size:,} |")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = list(paths)
        fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 8), squeeze=False)
        for j, name in enumerate(names):
            acc0, lat0 = bases[name]
            for (n, label), pts in plot_data.items():
                if n != name:
                    continue
                sps = [0] + [p[0] for p in pts]
                axes[0][j].plot(sps, [acc0] + [p[1] for p in pts], marker="o", label=label)
                axes[1][j].plot(sps, [lat0] + [p[2] for p in pts], marker="o", label=label)
            axes[0][j].set_title(f"{name}: " + ("accuracy" if name != "mobilenetv2" else "relative output error vs dense"))
            axes[1][j].set_title(f"{name}: latency, batch 1, one thread (ms)")
            for ax in (axes[0][j], axes[1][j]):
                ax.set_xlabel("sparsity")
                ax.grid(True, alpha=0.3)
            axes[1][j].set_ylim(bottom=0)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=90)
        print(f"\nwrote {a.plot}")


if __name__ == "__main__":
    main()
