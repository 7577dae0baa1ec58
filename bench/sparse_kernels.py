"""Sparse kernels against our dense kernels, same run, one thread, batch 1
(docs/pruning.md):

  kernels   one FullyConnected or 1x1 Conv2D per shape (MobileNetV2's
            pointwise convolutions, the digits MLP's layers, a classifier),
            float32 and int8, at 50/70/80/90% unstructured and 2:4
            sparsity: the op's time on the dense kernel (TINF_LOAD_DENSE)
            over its time on the sparse kernel (TINF_LOAD_SPARSE_ALWAYS;
            2:4 weights of several rows: the 2:4 kernels, marked),
            and what the automatic choice does (default load);
  models    the digits MLP and MobileNetV2 (bench/models) magnitude-pruned
            at each sparsity (2:4: method="nm"; --int8-models: then
            quantized int8-static), default load against the dense load,
            and the load's time with and without the sparse-or-dense
            timing at load (TINYINFER_SPARSE_MEASURE).

Times are medians of each op's profiled time; dense, sparse and auto are
measured in alternating rounds and each ratio is the median over the rounds
of that round's ratio (the machine is shared: a slow spell hits a round's
dense and sparse times alike). The CPU and the load average before and
after are printed; --markdown prints the tables of docs/pruning.md.

    python bench/sparse_kernels.py [--quick] [--json out.json] [--markdown]
        [--sparsity 2:4 ...] [--dtype int8] [--skip-models | --skip-kernels [--int8-models]]

--sparsity and --dtype keep only those columns and element types (e.g.
the int8 2:4 column alone: --sparsity 2:4 --dtype int8 --skip-models).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import tinyinfer  # noqa: E402
from _report import cpu_name  # noqa: E402

SPARSITIES = [0.5, 0.7, 0.8, 0.9, "2:4"]
# (name, kind, pixels or batch rows, cout, cin)
SHAPES = [
    ("pw 56x56 24->144", "conv", (56, 56), 144, 24),
    ("pw 28x28 32->192", "conv", (28, 28), 192, 32),
    ("pw 14x14 64->384", "conv", (14, 14), 384, 64),
    ("pw 14x14 384->96", "conv", (14, 14), 96, 384),
    ("pw 7x7 960->320", "conv", (7, 7), 320, 960),
    ("fc 1x784->256", "fc", 1, 256, 784),
    ("fc 1x1280->1000", "fc", 1, 1000, 1280),
]


def prune_weights(rng, w, sparsity):
    """Unstructured: the smallest |w| to the fraction; "2:4": the 2 largest of every 4 input channels."""
    w = w.copy()
    if sparsity == "2:4":
        g = w.reshape(-1, 4)
        drop = np.argsort(np.abs(g), axis=1)[:, :2]
        np.put_along_axis(g, drop, 0, 1)
        return g.reshape(w.shape)
    flat = np.abs(w).ravel()
    k = int(sparsity * flat.size)
    w.ravel()[np.argsort(flat)[:k]] = 0
    return w


def model_bytes(kind, shape, cout, cin, w, b):
    g = tinyinfer.GraphBuilder("k")
    if kind == "conv":
        x = g.input("x", (1, shape[0], shape[1], cin))
        y = g.op("Conv2D", x, g.const("w", w.reshape(cout, 1, 1, cin)), g.const("b", b), activation=1)
    else:
        x = g.input("x", (shape, cin))
        y = g.op("FullyConnected", x, g.const("w", w), g.const("b", b), activation=1)
    g.output(y)
    return g.to_bytes()


def op_time(model, x, runs):
    """Median time of the model's compute op (the largest), one thread."""
    with model.session(threads=1) as s:
        s.run(x)
        prof = s.profile(x, runs=runs)
    return max(t for _, t in prof)


def compare(data, x, runs, rounds):
    """(dense s, dense / sparse-always, dense / auto, auto ran sparse, the
    sparse kernel: "2:4" or "tiles"/"row") for one model's bytes: the median
    dense time and the medians of the per-round ratios."""
    with tinyinfer.load(data, sparse=False) as d, tinyinfer.load(data, sparse="always") as s, \
            tinyinfer.load(data) as a:
        td, ts, ta = [], [], []
        for _ in range(rounds):
            td.append(op_time(d, x, runs))
            ts.append(op_time(s, x, runs))
            ta.append(op_time(a, x, runs))
        chosen = any(p.startswith("sparse kernel") for p in a.passes)
        kernel = "2:4" if any("2:4 kernel" in p for p in s.passes) else "unstructured"
    med = lambda v: float(np.median(v))
    return (med(td), med([d / s for d, s in zip(td, ts)]), med([d / s for d, s in zip(td, ta)]), chosen, kernel)


def quantized_bytes(data, x):
    calib = [x * s for s in (0.5, 1.0, 1.5, 2.0)]
    return tinyinfer.quantize(data, mode="int8-static", calib=calib).data


def kernels(quick, sparsities=None, dtypes=None):
    rng = np.random.default_rng(0)
    rows = []
    shapes = SHAPES[:3] + SHAPES[5:6] if quick else SHAPES
    for name, kind, shape, cout, cin in shapes:
        dense_w = rng.standard_normal((cout, cin)).astype(np.float32) / np.sqrt(cin)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        x = rng.standard_normal((1, shape[0], shape[1], cin) if kind == "conv" else (shape, cin)).astype(np.float32)
        macs = cout * cin * (shape[0] * shape[1] if kind == "conv" else shape)
        runs, rounds = (30, 5) if macs > 2e6 else (200, 7)
        for sp in SPARSITIES:
            w = prune_weights(rng, dense_w, sp)
            if sparsities and str(sp) not in sparsities:
                continue
            data = model_bytes(kind, shape, cout, cin, w, b)
            for dtype in dtypes or ("float32", "int8"):
                d = data if dtype == "float32" else quantized_bytes(data, x)
                td, ratio, auto_ratio, chosen, kernel = compare(d, x, runs, rounds)
                rows.append(dict(shape=name, dtype=dtype, sparsity=sp, dense_us=td * 1e6, ratio=ratio,
                                 auto_ratio=auto_ratio, chosen=chosen, kernel=kernel))
                print(f"{name:18} {dtype:8} {str(sp):>4}  dense {td * 1e6:9.1f} us  dense/sparse x{ratio:5.2f}  "
                      f"auto x{auto_ratio:5.2f} ({'sparse' if chosen else 'dense'}; {kernel} kernel)", flush=True)
    return rows


def load_ms(data, measure, n=5):
    """The median wall time of `n` loads of `data` (no prepack cache), with
    the sparse-or-dense timing at load on or off (TINYINFER_SPARSE_MEASURE,
    read at each load)."""
    old = os.environ.get("TINYINFER_SPARSE_MEASURE")
    os.environ["TINYINFER_SPARSE_MEASURE"] = "1" if measure else "0"
    try:
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            tinyinfer.load(data, prepack_cache=False).close()
            ts.append(time.perf_counter() - t0)
    finally:
        if old is None:
            del os.environ["TINYINFER_SPARSE_MEASURE"]
        else:
            os.environ["TINYINFER_SPARSE_MEASURE"] = old
    return float(np.median(ts)) * 1e3


def end_to_end(quick, sparsities=None, int8=False):
    """The models pruned at each sparsity (magnitude per layer; "2:4":
    method="nm"), int8-static after pruning with `int8`: the default load
    against the dense load, and the load's time with and without the
    sparse-or-dense timing."""
    rows = []
    models = [("digits MLP", os.path.join(ROOT, "bench", "models", "mlp.float32.tinf"), 300),
              ("MobileNetV2", os.path.join(ROOT, "bench", "models", "mobilenetv2.float32.tinf"), 10)]
    rng = np.random.default_rng(1)
    for name, path, runs in models:
        if not os.path.exists(path):
            print(f"{name}: {path} missing (python bench/make_models.py)")
            continue
        with tinyinfer.load(path) as m:
            x = rng.standard_normal(m.inputs[0].shape).astype(np.float32)
        calib = [np.random.default_rng(i).standard_normal(x.shape).astype(np.float32) for i in range(8)]
        for sp in sparsities or ([0.9] if quick else [0.5, 0.7, 0.8, 0.9]):
            if sp == "2:4":
                pruned = tinyinfer.prune(path, method="nm", pattern="2:4", validate=False).data
            else:
                pruned = tinyinfer.prune(path, method="magnitude", sparsity=sp, scope="layer", validate=False).data
            if int8:
                pruned = tinyinfer.quantize(pruned, mode="int8-static", calib=calib).data
            # Dense and default loads in alternating rounds; the median of the rounds' ratios.
            # No prepack cache: a cached load takes its image's choices without timing them.
            with tinyinfer.load(pruned, sparse=False, prepack_cache=False) as md, \
                    tinyinfer.load(pruned, prepack_cache=False) as ma, \
                    md.session(threads=1) as sd, ma.session(threads=1) as sa:
                sd.run(x)
                sa.run(x)
                td, ta = [], []
                for _ in range(5):
                    td.append(sum(t for _, t in sd.profile(x, runs=runs)))
                    ta.append(sum(t for _, t in sa.profile(x, runs=runs)))
                n = sum(p.startswith("sparse kernel") for p in ma.passes)
                timed = sum("measured" in p for p in ma.passes)
            speedup = float(np.median([d / a for d, a in zip(td, ta)]))
            td, ta = float(np.median(td)), float(np.median(ta))
            lm, l0 = load_ms(pruned, True), load_ms(pruned, False)
            label = (f"{sp:.0%}" if isinstance(sp, float) else sp) + (" int8-static" if int8 else "")
            rows.append(dict(model=name, sparsity=sp, int8=int8, dense_ms=td * 1e3, sparse_ms=ta * 1e3,
                             speedup=speedup, sparse_ops=n, timed_ops=timed, file=len(pruned), load_ms=lm,
                             load_ms_untimed=l0))
            print(f"{name:12} {label}: dense {td * 1e3:8.3f} ms, pruned with sparse kernels {ta * 1e3:8.3f} ms "
                  f"(x{speedup:.2f}, {n} ops sparse, {timed} timed at load), file {len(pruned):,} B, "
                  f"load {lm:.2f} ms ({l0:.2f} ms untimed)", flush=True)
    return rows


def markdown(rows):
    """The kernel tables of docs/pruning.md: dense time, then dense / sparse per sparsity (bold: auto runs sparse)."""
    # The columns measured (--sparsity may have chosen some), in SPARSITIES' order.
    columns = [s for s in SPARSITIES if any(r["sparsity"] == s for r in rows)]
    for dtype in ("float32", "int8"):
        print(f"\n{dtype}: dense time, then dense / sparse for each sparsity (bold when the automatic choice runs it sparse)\n")
        print("| layer | dense us | " + " | ".join(f"{s:.0%}" if isinstance(s, float) else s for s in columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for name in dict.fromkeys(r["shape"] for r in rows):
            rs = [r for r in rows if r["shape"] == name and r["dtype"] == dtype]
            if not rs:
                continue
            cells = [f"**{r['ratio']:.2f}x**" if r["chosen"] else f"{r['ratio']:.2f}x" for r in rs]
            # The 2:4 kernels (f32_nm24, q8_nm24) where they ran instead of the unstructured ones.
            cells = [c + " (2:4 kernel)" if r.get("kernel") == "2:4" else c for c, r in zip(cells, rs)]
            print(f"| {name} | {rs[0]['dense_us']:.1f} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--skip-kernels", action="store_true")
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print the kernel tables as markdown at the end")
    ap.add_argument("--sparsity", nargs="+", help="only these columns (0.5 0.7 0.8 0.9 2:4)")
    ap.add_argument("--dtype", nargs="+", choices=["float32", "int8"], help="only these element types")
    ap.add_argument("--int8-models", action="store_true", help="the models part quantizes the pruned models int8-static")
    a = ap.parse_args()
    load0 = os.getloadavg()
    print(f"tinyinfer {tinyinfer.__version__}, CPU level {tinyinfer.info()['isa']}, {cpu_name()}, "
          f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    out = {"isa": tinyinfer.info()["isa"], "cpu": cpu_name(), "load_before": load0}
    if not a.skip_kernels:
        out["kernels"] = kernels(a.quick, a.sparsity, a.dtype)
    if not a.skip_models:
        sp = [v if v == "2:4" else float(v) for v in a.sparsity] if a.sparsity else None
        out["models"] = end_to_end(a.quick, sp, a.int8_models)
    out["load_after"] = os.getloadavg()
    print("load average after: " + " ".join(f"{v:.2f}" for v in out["load_after"]))
    if a.markdown and out.get("kernels"):
        markdown(out["kernels"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
