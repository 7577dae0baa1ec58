"""The benchmark suite: tinyinfer against LiteRT, onnxruntime and torch on
the same models, in the same run, each configuration in a fresh process
(bench/_worker.py) so that its peak RSS is its own.

    python bench/make_models.py          # once: makes bench/models/ (needs tensorflow, torch, tf2onnx)
    python bench/run_suite.py [--quick] [--models mlp,mobilenetv2,encoder]

Writes bench/results.json, bench/latency.png and the suite's section of
BENCHMARKS.md (between the markers), with medians, p90, ratios to LiteRT
float32 of the same model, load time, first run and peak RSS.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(HERE, "models")
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)
from _report import write_section  # noqa: E402

BEGIN = "<!-- suite:begin -->"
END = "<!-- suite:end -->"


def onnx_sourced(name):
    return not os.path.exists(os.path.join(MODELS, f"{name}.float32.tflite"))


def tinf_variants(name, quick, batch=1):
    """Converts the float32 model to .tinf and quantizes it in each mode.
    ONNX conversions write the batch into Reshape targets (docs/converting.md),
    so for another batch an ONNX-sourced model is converted again with
    batch=N, as a user would."""
    import numpy as np
    import tinyinfer
    src = os.path.join(MODELS, f"{name}.float32.tflite")
    if not os.path.exists(src):
        src = os.path.join(MODELS, f"{name}.float32.onnx")
    tag = "" if batch == 1 else f".b{batch}"
    out = {}
    f32 = os.path.join(MODELS, f"{name}{tag}.float32.tinf")
    if batch == 1:
        tinyinfer.convert(src, f32, verbose=False)
    else:
        tinyinfer.convert(src, f32, verbose=False, batch=batch)
    out["float32"] = f32
    quantize = getattr(tinyinfer, "quantize", None)
    if quantize is None:
        return out
    calib = calibration_data(name, np)
    if batch != 1:  # the same samples, as batches of the converted size
        calib = calib.reshape((-1, batch) + calib.shape[2:])
    for mode in ["fp16", "int8-dynamic", "int8-static", "int4"]:
        dst = os.path.join(MODELS, f"{name}{tag}.{mode}.tinf")
        try:
            if mode == "int8-static":
                quantize(f32, dst, mode=mode, calib=calib)
            else:
                quantize(f32, dst, mode=mode)
            out[mode] = dst
        except Exception as e:  # a mode that does not apply to the model
            print(f"  tinyinfer {mode} for {name}: {type(e).__name__}: {e}", file=sys.stderr)
    return out


def calibration_data(name, np):
    if name == "mlp":
        from tinyinfer.datasets import load_digits_28x28
        x, _ = load_digits_28x28()
        return x.reshape(-1, 1, 784)[:100]
    if name == "mobilenetv2":
        sys.path.insert(0, HERE)
        from make_models import photo_crops
        return photo_crops(32)[:, None]
    return np.random.default_rng(0).standard_normal((32, 1, 32, 128)).astype(np.float32)


def configs(names, quick):
    runs = []
    for name in names:
        by_batch = tinf_variants(name, quick, 32) if onnx_sourced(name) and not quick else {}
        for mode, path in tinf_variants(name, quick).items():
            extra = {"by_batch": {32: by_batch[mode]}} if mode in by_batch else {}
            runs.append((name, "tinyinfer", mode, path, extra))
        for mode in ["float32", "float16", "dynamic", "int8"]:
            p = os.path.join(MODELS, f"{name}.{mode}.tflite")
            if os.path.exists(p):
                runs.append((name, "litert", mode, p, {}))
        for mode in ["float32", "dynamic", "qdq"]:
            p = os.path.join(MODELS, f"{name}.{mode}.onnx")
            if os.path.exists(p):
                runs.append((name, "onnxruntime", mode, p, {}))
        p = os.path.join(MODELS, f"{name}.torch.pt")
        if os.path.exists(p):
            runs.append((name, "torch", "float32", p, {"torch_arch": name}))
            runs.append((name, "torch", "quantize_dynamic", p, {"torch_arch": name, "quantize_dynamic": True}))
    return runs


def run_one(runtime, path, batch, threads, nruns, extra):
    cmd = [sys.executable, os.path.join(HERE, "_worker.py"), runtime, path, "--batch", str(batch),
           "--threads", str(threads), "--runs", str(nruns)]
    if extra.get("torch_arch"):
        cmd += ["--torch-arch", extra["torch_arch"]]
    if extra.get("quantize_dynamic"):
        cmd.append("--quantize-dynamic")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:200]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer runs, batch 1 only")
    ap.add_argument("--models", default="mlp,mobilenetv2,encoder")
    ap.add_argument("--runs", type=int, default=0)
    a = ap.parse_args()
    names = [n for n in a.models.split(",") if n]
    results = []
    started = time.time()
    for name, runtime, mode, path, extra in configs(names, a.quick):
        size = os.path.getsize(path)
        for batch in ([1] if a.quick else [1, 32]):
            for threads in [1, 2]:
                nruns = a.runs or (50 if a.quick else (300 if name == "mlp" else 100))
                if batch == 32:
                    nruns = max(10, nruns // 5)
                r = run_one(runtime, extra.get("by_batch", {}).get(batch, path), batch, threads, nruns, extra)
                r.update(model=name, runtime=runtime, mode=mode, batch=batch, threads=threads, bytes=size)
                results.append(r)
                shown = f"{r['p50_us']:.1f} us" if "p50_us" in r else r.get("error")
                print(f"{name:12} {runtime:12} {mode:17} b{batch:<3} t{threads}: {shown}", flush=True)
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_markdown(results, " ".join(sys.argv[1:]), time.time() - started)
    try:
        chart(results)
    except ImportError:
        print("matplotlib not installed: no chart", file=sys.stderr)


def write_markdown(results, args, seconds):
    lines = [BEGIN, "", "## Suite: tinyinfer vs LiteRT, onnxruntime and torch", "",
             f"Command: `python bench/make_models.py && python bench/run_suite.py {args}`".replace(" `", " `").strip(),
             "", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"{platform.platform()}; run took {seconds / 60:.1f} min. Each row is one fresh process; latency from "
             "Python (the peers are timed the same way), medians and p90 over the runs after a warm-up; "
             "ratio = p50 / LiteRT float32 p50 of the same model, batch and threads (lower is better).", ""]
    for name in sorted({r["model"] for r in results}):
        lines += [f"### {name}", "",
                  "| runtime | mode | file bytes | batch | threads | p50 us | p90 us | ratio | load ms | first run us | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        rows = [r for r in results if r["model"] == name]
        for r in rows:
            base = next((b for b in rows if b["runtime"] == "litert" and b["mode"] == "float32"
                         and b["batch"] == r["batch"] and b["threads"] == r["threads"] and "p50_us" in b), None)
            if "p50_us" not in r:
                lines.append(f"| {r['runtime']} | {r['mode']} | {r['bytes']} | {r['batch']} | {r['threads']} | "
                             f"n/a ({r.get('error', '')}) | | | | | |")
                continue
            ratio = f"{r['p50_us'] / base['p50_us']:.2f}" if base else ""
            lines.append(f"| {r['runtime']} | {r['mode']} | {r['bytes']} | {r['batch']} | {r['threads']} | "
                         f"{r['p50_us']:.1f} | {r['p90_us']:.1f} | {ratio} | {r['load_ms']:.2f} | "
                         f"{r['first_us']:.0f} | {r['rss_mb']:.0f} |")
        lines.append("")
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))


def chart(results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in results if r["batch"] == 1 and r["threads"] == 1 and "p50_us" in r]
    names = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(len(names), 2, figsize=(13, 3.2 * len(names)), squeeze=False)
    colors = {"tinyinfer": "tab:green", "litert": "tab:blue", "onnxruntime": "tab:orange", "torch": "tab:red"}
    for i, name in enumerate(names):
        rs = [r for r in rows if r["model"] == name]
        labels = [f"{r['runtime']}\n{r['mode']}" for r in rs]
        c = [colors[r["runtime"]] for r in rs]
        axes[i][0].barh(labels, [r["p50_us"] for r in rs], color=c)
        axes[i][0].set_title(f"{name}: latency, batch 1, 1 thread (us, lower is better)")
        axes[i][1].barh(labels, [r["bytes"] / 1e6 for r in rs], color=c)
        axes[i][1].set_title(f"{name}: model file (MB)")
        for ax in axes[i]:
            ax.tick_params(axis="y", labelsize=7)
            ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "latency.png"), dpi=90)


if __name__ == "__main__":
    main()
