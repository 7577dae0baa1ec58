"""Load time of the real-model suite's models against their peers (issue 18).

Every measurement is a fresh process (`--child`), rounds interleaved so
that machine noise hits every arm alike. The load time is the time until
the first output can be computed:

- tinyinfer: `tinyinfer.load(.tinf)` and the session of the suite's input
  shapes (`<name>.inputs.npz`), the prepack cache warm ("cached") or off
  ("nocache"); the int8-static model too where the suite made one.
- peer: LiteRT's Interpreter and allocate_tensors on the source .tflite, or
  an onnxruntime InferenceSession on the source .onnx (one thread each).

    python bench/load_real.py [--models NAME ...] [--rounds 5] [--json OUT]

Needs the suite's files (python bench/real_models.py fetch / run) and the
peers (ai-edge-litert, onnxruntime). TINYINFER_LIB picks another library
(to compare two builds).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(ROOT, "bench", "models", "real")
WORK, FILES = os.path.join(REAL, "work"), os.path.join(REAL, "files")


def source(name):
    """The suite's source file of `name` (ocr_rec_dynamic: ocr_rec.dynamic.onnx)."""
    stems = [name] + ([name[:name.rindex("_")] + "." + name[name.rindex("_") + 1:]] if "_" in name else [])
    for stem in stems:
        for ext in (".tflite", ".onnx"):
            p = os.path.join(FILES, stem + ext)
            if os.path.exists(p):
                return p
    return None


def child(a):
    if a.arm == "peer":
        if a.path.endswith(".tflite"):
            from ai_edge_litert.interpreter import Interpreter
            t0 = time.perf_counter()
            it = Interpreter(model_path=a.path, num_threads=1)
            it.allocate_tensors()
        else:
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            t0 = time.perf_counter()
            ort.InferenceSession(a.path, so, providers=["CPUExecutionProvider"])
        load = time.perf_counter() - t0
    else:
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import tinyinfer
        shapes = None
        if a.inputs and os.path.exists(a.inputs):
            with np.load(a.inputs) as z:
                shapes = [z[k].shape for k in sorted(z.files, key=lambda s: int(s.split("_")[-1]) if s.split("_")[-1].isdigit() else 0)]
        t0 = time.perf_counter()
        m = tinyinfer.load(a.path, prepack_cache=a.arm != "nocache")
        s = m.session(input_shapes=shapes) if shapes else m.session()
        load = time.perf_counter() - t0
        del s, m
    print(json.dumps({"load_ms": load * 1e3}), flush=True)


def spawn(arm, path, inputs, folder):
    env = dict(os.environ, TINYINFER_CACHE_DIR=folder, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TINYINFER_PREPACK_CACHE", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--arm", arm, "--path", path, "--inputs", inputs or ""]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])["load_ms"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--arm")
    p.add_argument("--path")
    p.add_argument("--inputs")
    p.add_argument("--models", nargs="*")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json")
    a = p.parse_args()
    if a.child:
        return child(a)
    names = a.models or sorted({f.split(".")[0] for f in os.listdir(WORK) if f.endswith(".float32.tinf")})
    with open("/proc/loadavg") as f:
        print(f"load average before: {' '.join(f.read().split()[:3])}")
    folder = tempfile.mkdtemp(prefix="tinyinfer-loadreal-")
    results = {}
    for name in names:
        src = source(name)
        inputs = os.path.join(WORK, f"{name}.inputs.npz")
        arms = {"peer": src, "cached": os.path.join(WORK, f"{name}.float32.tinf"),
                "nocache": os.path.join(WORK, f"{name}.float32.tinf"),
                "int8 cached": os.path.join(WORK, f"{name}.int8-static.tinf")}
        arms = {k: v for k, v in arms.items() if v and os.path.exists(v)}
        for arm in ("cached", "int8 cached"):
            if arm in arms:
                spawn("cached", arms[arm], inputs, folder)  # the prepack image exists
        times = {k: [] for k in arms}
        for _ in range(a.rounds):
            for arm, path in arms.items():
                t = spawn("nocache" if arm == "nocache" else ("peer" if arm == "peer" else "cached"), path, inputs,
                          folder)
                if t is not None:
                    times[arm].append(t)
        med = {k: float(np.median(v)) for k, v in times.items() if v}
        results[name] = {"peer": ("LiteRT" if src and src.endswith(".tflite") else "onnxruntime") if src else None,
                         "medians_ms": med, "samples_ms": times}
        print(json.dumps({name: results[name]["medians_ms"]}), flush=True)
    with open("/proc/loadavg") as f:
        print(f"load average after: {' '.join(f.read().split()[:3])}")
    print("\n| model | peer | peer load ms | tinyinfer cached ms | / peer | uncached ms | / peer | int8-static cached ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        m = r["medians_ms"]
        pe = m.get("peer")

        def cell(k):
            return f"{m[k]:.2f}" if k in m else ""

        def ratio(k):
            return f"{m[k] / pe:.2f}x" if k in m and pe else ""
        print(f"| {name} | {r['peer'] or ''} | {cell('peer')} | {cell('cached')} | {ratio('cached')} | "
              f"{cell('nocache')} | {ratio('nocache')} | {cell('int8 cached')} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
