"""Load time with the prepack cache against LiteRT, first run against steady
state, and the pages two processes share (BENCHMARKS.md, "Prepack cache").

Every measurement is a fresh process (`--child`), rounds interleaved so that
machine noise hits every arm alike. The load time is the time until the
first output can be computed: tinyinfer.load and the session of the file's
shapes; LiteRT's Interpreter and allocate_tensors. Arms:

- litert: ai_edge_litert's Interpreter on the .tflite.
- nocache: tinyinfer on the .tinf, prepack_cache=False (packs at load).
- cold: tinyinfer on the .tinf, a cache folder of its own emptied first (packs, hashes the file, writes the image).
- cached: tinyinfer on the .tinf, the image present (maps it, packs nothing).
- tflite-cached: tinyinfer.load on the .tflite itself, conversion and prepack caches warm.

Then, per model, the memory a second process adds while a first one holds
the same model (both cached, then both with the cache off): its RSS and PSS
(/proc/self/smaps_rollup) before the load and after the first run, and the
image mapping's own Rss/Pss/Shared_Clean from /proc/self/smaps.

    python bench/load_time.py [--models mlp mobilenetv2] [--rounds 15] [--json OUT]

Needs bench/models (python bench/make_models.py) and ai-edge-litert.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "bench", "models")


def _mem():
    """(RSS, PSS, USS = private pages) of this process in bytes."""
    out = {"Rss": 0, "Pss": 0, "Private": 0}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                out[parts[0][:-1]] = int(parts[1]) * 1024
            elif parts[0] in ("Private_Clean:", "Private_Dirty:"):
                out["Private"] += int(parts[1]) * 1024
    return out["Rss"], out["Pss"], out["Private"]


def _image_mapping():
    """Rss, Pss and Shared_Clean (bytes) of the mapped prepack images (*.pack)."""
    total = {"Rss": 0, "Pss": 0, "Shared_Clean": 0}
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and "-" in parts[0] and ":" not in parts[0]:
                inside = parts[-1].endswith(".pack")
            elif inside and parts[0][:-1] in total:
                total[parts[0][:-1]] += int(parts[1]) * 1024
    return total


def child(a):
    """One measurement in this fresh process; prints a JSON line."""
    rng = np.random.default_rng(0)
    if a.arm == "litert":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _worker import setup_litert  # the suite's LiteRT set-up: Interpreter and allocate_tensors
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401  imported before the clock starts
        rss0, pss0, uss0 = _mem()
        load, run, keep = setup_litert(a.path, 1, 1)
    else:
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import tinyinfer
        option = False if a.arm == "nocache" else True
        rss0, pss0, uss0 = _mem()
        t0 = time.perf_counter()
        m = tinyinfer.load(a.path, prepack_cache=option)
        s = m.session()
        load = time.perf_counter() - t0
        xs = [rng.standard_normal(t.shape).astype(t.dtype) for t in s.inputs]
        keep = (m, s)

        def run():
            return s.run(xs)
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    for _ in range(20):
        run()
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    rss1, pss1, uss1 = _mem()
    out = {"load_ms": load * 1e3, "first_us": first * 1e6, "steady_us": float(np.median(times)) * 1e6,
           "added_rss": rss1 - rss0, "added_pss": pss1 - pss0, "added_uss": uss1 - uss0, "image": _image_mapping()}
    if a.arm != "litert":
        out["prepack"] = {k: v for k, v in keep[0].prepack.items() if k != "image"}
    print(json.dumps(out), flush=True)
    if a.hold:
        sys.stdin.readline()  # keep the model mapped until the parent says so
    del keep


def spawn(arm, path, folder, runs=50, hold=False):
    env = dict(os.environ, TINYINFER_CACHE_DIR=folder)
    env.pop("TINYINFER_PREPACK_CACHE", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--arm", arm, "--path", path, "--runs", str(runs)]
    if hold:
        cmd.append("--hold")
        return subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def paths(name):
    return os.path.join(MODELS, f"{name}.float32.tinf"), os.path.join(MODELS, f"{name}.float32.tflite")


def measure(name, rounds, folder):
    tinf, tflite = paths(name)
    arms = {"litert": [], "nocache": [], "cold": [], "cached": [], "tflite-cached": []}
    spawn("cached", tflite, folder)  # fills the conversion cache and the images
    spawn("cached", tinf, folder)
    cold = tempfile.mkdtemp(prefix="tinyinfer-loadtime-cold-")  # the cold arm's own folder: the warm one stays warm
    for _ in range(rounds):
        for arm in arms:
            if arm == "cold":
                for e in os.listdir(cold):
                    os.unlink(os.path.join(cold, e))
                r = spawn("cold", tinf, cold)
            elif arm == "litert":
                r = spawn("litert", tflite, folder)
            elif arm == "tflite-cached":
                r = spawn("cached", tflite, folder)
            else:
                r = spawn(arm, tinf, folder)
            arms[arm].append(r)
    shutil.rmtree(cold, ignore_errors=True)
    return arms


def shared(name, folder, cached):
    """A first process holds the model; a second loads it: what the second adds."""
    tinf, _ = paths(name)
    arm = "cached" if cached else "nocache"
    spawn(arm, tinf, folder)  # the image exists
    first = spawn(arm, tinf, folder, runs=5, hold=True)
    line = json.loads(first.stdout.readline())
    second = spawn(arm, tinf, folder, runs=5)
    first.stdin.write("\n")
    first.stdin.flush()
    first.wait()
    return {"first": line, "second": second}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--arm")
    p.add_argument("--path")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--hold", action="store_true")
    p.add_argument("--models", nargs="+", default=["mlp", "mobilenetv2"])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--json")
    a = p.parse_args()
    if a.child:
        return child(a)
    results = {}
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    print(f"load average before: {' '.join(load_before)}")
    for name in a.models:
        folder = tempfile.mkdtemp(prefix="tinyinfer-loadtime-")
        try:
            arms = measure(name, a.rounds, folder)
            sh = {"cached": shared(name, folder, True), "nocache": shared(name, folder, False)}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        med = {arm: {k: float(np.median([r[k] for r in rs])) for k in ("load_ms", "first_us", "steady_us")}
               for arm, rs in arms.items()}
        lit = med["litert"]["load_ms"]
        image = os.path.getsize(paths(name)[0])
        print(f"\n{name} (float32; .tinf {image} bytes), medians of {a.rounds} fresh processes per arm")
        print("| arm | load ms | / LiteRT load | first run us | steady us | first / steady |")
        print("|---|---|---|---|---|---|")
        for arm, m in med.items():
            print(f"| {arm} | {m['load_ms']:.2f} | {m['load_ms'] / lit:.2f}x | {m['first_us']:.0f} | "
                  f"{m['steady_us']:.1f} | {m['first_us'] / m['steady_us']:.2f}x |")
        pp = arms["cached"][-1]["prepack"]
        print(f"cached arm: state {pp['state']}, ops from the image {pp['from_image']}, packed at load "
              f"{pp['packed_at_load']}; cold arm: written {arms['cold'][-1]['prepack']['written']}")
        print("| second process, while a first holds the model | added RSS MB | added PSS MB | added USS (private) MB "
              "| image Rss MB | image Pss MB |")
        print("|---|---|---|---|---|---|")
        for mode, r in sh.items():
            s = r["second"]
            print(f"| prepack cache {'on' if mode == 'cached' else 'off'} | {s['added_rss'] / 2**20:.2f} | "
                  f"{s['added_pss'] / 2**20:.2f} | {s['added_uss'] / 2**20:.2f} | {s['image']['Rss'] / 2**20:.2f} | {s['image']['Pss'] / 2**20:.2f} |")
        results[name] = {"arms": arms, "medians": med, "shared": sh}
    with open("/proc/loadavg") as f:
        print(f"\nload average after: {' '.join(f.read().split()[:3])}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
