"""The regression guard (issue 20, item 6): a compact suite, the bench models
and three real models, timed against their peer (LiteRT; onnxruntime for the
ONNX-only encoder) in one run at each dispatch level the CPU has
(`TINYINFER_ISA=baseline|avx2|avx512`, docs/platforms.md), with a JSON file
that scripts/compare_json.py compares with an earlier run.

Requirements (a bench, not in requirements-dev.txt): ai-edge-litert,
onnxruntime, numpy; the bench models (`python bench/make_models.py`, then
`python bench/run_suite.py --quick` for the int8-static .tinf) and the real
ones (`python bench/real_models.py fetch`).

    python bench/guard.py [--rounds 3] [--levels baseline,avx2,avx512] [--models mlp,...] [-o bench/guard.json]
                          [--markdown]
    python bench/guard.py -o new.json --compare old.json     # exit 1 when a model got >5% slower

One fresh process per configuration (bench/_worker.py, one thread, batch 1),
the configurations alternating in rounds; each figure is the median over
the rounds of a process's median CPU time per run (cpu_p50_us: on a shared
machine a run preempted by another process costs wall time, not CPU time,
and a one-thread run's CPU time is its work). Records: "MODEL MODE @LEVEL" with
cpu_us.p50 and ratio_vs_peer (tinyinfer / the peer, CPU time per run, of the
same round), and "PEER FILE" for the peer itself. The peer of an int8 model
is LiteRT float32 (MobileNetV2, as issue 20's target) or LiteRT dynamic int8
(the MLP). --compare flags each ratio worse by more than the threshold
(scripts/compare_json.py without --metric flags the CPU times too); the
ratio cancels most of a shared machine's drift, since the peer runs in the
same rounds.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(HERE, "models")
REAL = os.path.join(MODELS, "real", "files")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, HERE)
from _report import cpu_name, write_section  # noqa: E402

# (name, mode, tinyinfer's model, peer, peer's model): a .tflite or .onnx
# is converted by tinyinfer.load (its conversion cache) and run by the peer too.
_B = lambda f: os.path.join(MODELS, f)  # noqa: E731
_R = lambda f: os.path.join(REAL, f)  # noqa: E731
SUITE = [
    ("mlp", "float32", _B("mlp.float32.tflite"), "litert", _B("mlp.float32.tflite")),
    ("mlp", "int8-static", _B("mlp.int8-static.tinf"), "litert", _B("mlp.dynamic.tflite")),
    ("mobilenetv2", "float32", _B("mobilenetv2.float32.tflite"), "litert", _B("mobilenetv2.float32.tflite")),
    ("mobilenetv2", "int8-static", _B("mobilenetv2.int8-static.tinf"), "litert", _B("mobilenetv2.float32.tflite")),
    # The same full-integer .tflite on both: how our int8 kernels compare
    # with XNNPACK's own.
    ("mobilenetv2", "full-int8 .tflite", _B("mobilenetv2.int8.tflite"), "litert", _B("mobilenetv2.int8.tflite")),
    ("encoder", "float32", _B("encoder.float32.onnx"), "onnxruntime", _B("encoder.float32.onnx")),
    ("face_landmark", "float32", _R("face_landmark.tflite"), "litert", _R("face_landmark.tflite")),
    ("face_detection_short_range", "fp16 weights", _R("face_detection_short_range.tflite"), "litert",
     _R("face_detection_short_range.tflite")),
    ("palm_detection_lite", "fp16 weights", _R("palm_detection_lite.tflite"), "litert", _R("palm_detection_lite.tflite")),
]
X86_LEVELS = ["baseline", "avx2", "avx512"]


def levels_here():
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import tinyinfer
    info = tinyinfer.info()
    detected = info.get("isa_detected") or info.get("isa")
    if detected in X86_LEVELS:
        return X86_LEVELS[:X86_LEVELS.index(detected) + 1], info
    return (["baseline", detected] if detected != "baseline" else ["baseline"]), info


def timed(runtime, path, level, runs):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TINYINFER_ISA", None)
    if level:
        env["TINYINFER_ISA"] = level
    cmd = [sys.executable, os.path.join(HERE, "_worker.py"), runtime, path, "--threads", "1", "--runs", str(runs)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        return None
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line).get("cpu_p50_us")
    return None


def runs_for(name):
    return {"mlp": 500, "encoder": 300}.get(name, 100)


BEGIN = "<!-- guard:begin -->"
END = "<!-- guard:end -->"


def write_markdown(doc, suite, args):
    levels = doc["levels"]
    recs = {r["name"]: r for r in doc["results"]}
    la = doc["load_average"]
    lines = [BEGIN, "", "## Regression guard: ratios to the peer at each CPU level (issue 20)", "",
             f"Command: `python bench/guard.py {args}`; compare two runs with "
             "`python bench/guard.py -o new.json --compare old.json` or "
             "`python scripts/compare_json.py old.json new.json --metric ratio_vs_peer` "
             "(exit status 1 and a REGRESSION line for each model whose ratio grew by more than 5%).", "",
             f"CPU: {doc['machine']['cpu_model']} ({doc['machine']['cores']} cores, detected level "
             f"{doc['tinyinfer']['isa_detected']}); load average {la['start'][0]:.2f} at the start, "
             f"{la['end'][0]:.2f} at the end (shared machine). One thread, batch 1; each cell: tinyinfer / "
             "the peer, CPU time per run (the median per process: robust to preemption), the median over "
             f"{doc['rounds']} alternating rounds of fresh processes (tinyinfer's figure in us in brackets); `TINYINFER_ISA` forces each level of tinyinfer; the peer runs at "
             "its own best level (XNNPACK and onnxruntime pick theirs; they have no switch to force one), so the "
             "baseline and avx2 columns compare our lower levels with the peer's best. On this shared machine one "
             "process's figure moves by 10-30% between rounds: the 5% threshold needs a quiet machine (or more "
             "rounds) to be meaningful.", "",
             "| model | mode | peer | peer us | " + " | ".join(levels) + " |",
             "|---|---|---|---|" + "---|" * len(levels)]
    for name, mode, path, peer, ppath in suite:
        pk = f"{peer} {os.path.basename(ppath)}"
        pus = recs.get(pk, {}).get("cpu_us", {}).get("p50")
        cells = []
        for lv in levels:
            r = recs.get(f"{name} {mode} @{lv}", {})
            q, t = r.get("ratio_vs_peer"), r.get("cpu_us", {}).get("p50")
            cells.append(f"{q:.2f} ({t:.1f})" if q is not None and t is not None else "n/a")
        lines.append(f"| {name} | {mode} | {pk} | {pus:.1f} | " if pus else f"| {name} | {mode} | {pk} | n/a | ")
        lines[-1] += " | ".join(cells) + " |"
    lines += ["", END]
    write_section(BEGIN, END, "\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", help="comma-separated; default: every level this CPU has")
    ap.add_argument("--models", help="comma-separated names (default: all of the suite)")
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "guard.json"))
    ap.add_argument("--compare", metavar="OLD.json", help="compare with an earlier run (scripts/compare_json.py)")
    ap.add_argument("--threshold", type=float, default=5.0)
    ap.add_argument("--markdown", action="store_true", help="write the table into BENCHMARKS.md (between its markers)")
    a = ap.parse_args(argv)
    levels, info = levels_here()
    if a.levels:
        levels = [x for x in a.levels.split(",") if x]
    chosen = [s for s in SUITE if not a.models or s[0] in a.models.split(",")]
    suite = [s for s in chosen if os.path.exists(s[2]) and os.path.exists(s[4])]
    for s in chosen:
        if s not in suite:
            print(f"skipped {s[0]} {s[1]}: missing {s[2] if not os.path.exists(s[2]) else s[4]}", file=sys.stderr)
    load0 = os.getloadavg()
    peers = sorted({(s[0], s[3], s[4]) for s in suite})
    ours = {}   # (name, mode, level) -> [CPU us per round]
    theirs = {}  # peer's model -> [CPU us per round]
    ratios = {}  # (name, mode, level) -> [ratio per round]
    for r in range(a.rounds):
        for name, peer, ppath in peers:
            theirs.setdefault(ppath, []).append(timed(peer, ppath, None, runs_for(name)))
        for name, mode, path, peer, ppath in suite:
            base = theirs[ppath][-1]
            for level in levels:
                t = timed("tinyinfer", path, level, runs_for(name))
                ours.setdefault((name, mode, level), []).append(t)
                if t and base:
                    ratios.setdefault((name, mode, level), []).append(t / base)
        print(f"round {r + 1}/{a.rounds}", file=sys.stderr, flush=True)
    med = lambda xs: float(np.median([x for x in xs if x])) if any(xs) else None  # noqa: E731
    results = []
    for name, peer, ppath in peers:
        results.append({"name": f"{peer} {os.path.basename(ppath)}", "cpu_us": {"p50": med(theirs[ppath])}})
    print(f"{'model':28} {'mode':13} " + " ".join(f"{lv:>17}" for lv in levels) + "   (ratio to peer; CPU us per run)")
    for name, mode, path, peer, ppath in suite:
        cells = []
        for level in levels:
            t, q = med(ours[(name, mode, level)]), med(ratios.get((name, mode, level), []))
            rec = {"name": f"{name} {mode} @{level}", "peer": f"{peer} {os.path.basename(ppath)}",
                   "cpu_us": {"p50": t}}
            if q is not None:
                rec["ratio_vs_peer"] = q
            results.append(rec)
            cells.append(f"{q:5.2f} ({t:8.1f})" if q is not None else f"{'n/a':>17}")
        print(f"{name:28} {mode:13} " + " ".join(cells) + f"   vs {peer} {os.path.basename(ppath)}")
    doc = {"schema": "tinyinfer-results/1", "kind": "guard",
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "tinyinfer": {k: info.get(k) for k in ("version", "isa_detected")},
           "machine": {"system": platform.system(), "machine": platform.machine(), "cpu_model": cpu_name(),
                       "cores": os.cpu_count()},
           "threads": 1, "levels": levels, "rounds": a.rounds,
           "load_average": {"start": list(load0), "end": list(os.getloadavg())}, "results": results}
    with open(a.output, "w") as f:
        json.dump(doc, f, indent=1)
    if a.markdown:
        write_markdown(doc, suite, " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"wrote {a.output}; load average {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    if a.compare:
        import compare_json
        return compare_json.main([a.compare, a.output, "--threshold", str(a.threshold), "--metric", "ratio_vs_peer"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
