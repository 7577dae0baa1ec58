"""Instruction counts of the aarch64 library under qemu-aarch64 (issue 20,
item 5): which functions execute the instructions of one model run, and
what share of each is NEON (vector register) code; next to the x86-64
library's total under valgrind's callgrind (its baseline and AVX2 levels;
valgrind has no AVX-512).

qemu-user here has no plugins (libinsn.so is not packaged), so the count
comes from its own logs: `-d in_asm` gives each translated block's
instructions once, `-d exec,nochain` one line per block executed; the sum of
(block size x executions), attributed to the library's symbols (the
unstripped build's `nm`, at the load base glibc's LD_DEBUG=files prints).
The count covers the whole process: the loader, loading the model (packing
weights), preparing the session and one run (tests/c/run_outputs.c).

Requirements: qemu-user, the aarch64 cross toolchain (binutils for nm),
scripts/build-aarch64.sh's build (build-aarch64/libtinyinfer.unstripped.so;
run_outputs is cross-compiled next to it when missing, as
scripts/test-aarch64.sh does), valgrind and cc for the x86 column.

    python bench/arm_insns.py [MODEL.tinf ...] [--build build-aarch64] [--cpu max] [--top 8]
"""

import argparse
import bisect
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT = [os.path.join(HERE, "models", f) for f in
           ("mlp.float32.tinf", "mlp.int8-static.tinf", "mobilenetv2.float32.tinf", "mobilenetv2.int8-static.tinf",
            "encoder.float32.tinf")]
VECTOR = re.compile(r"\b[vq]\d+\b|\bv\d+\.|\b(fmla|sdot|udot|smlal|smull|sqrdmulh|ld1|st1|ld1r|fmul|fadd)\b.*\bv\d+")


def inputs_for(model, folder):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import tinyinfer
    m = tinyinfer.load(model)
    rng = np.random.default_rng(0)
    files = []
    for k, t in enumerate(m.inputs):
        if np.issubdtype(t.dtype, np.floating):
            x = rng.standard_normal(t.shape).astype(t.dtype)
        else:
            info = np.iinfo(t.dtype)
            x = rng.integers(info.min, info.max + 1, size=t.shape).astype(t.dtype)
        p = os.path.join(folder, f"in{k}.bin")
        x.tofile(p)
        files.append(p)
    m.close()
    return files


def symbols(lib):
    out = subprocess.run(["aarch64-linux-gnu-nm", "--defined-only", lib], capture_output=True, text=True,
                         check=True).stdout
    syms = sorted((int(a, 16), n) for a, t, n in (ln.split(None, 2) for ln in out.splitlines() if ln.count(" ") >= 2)
                  if t in "tTwW")
    return [a for a, _ in syms], [n for _, n in syms]


def demangle(names):
    tool = shutil.which("swift-demangle")
    if not tool or not names:
        return {n: n for n in names}
    p = subprocess.run([tool, "--simplified", "--compact"], input="\n".join(names), capture_output=True, text=True)
    lines = p.stdout.splitlines()
    return {n: (d if len(lines) == len(names) else n)[:90] for n, d in zip(names, lines)}


def count_arm(model, build, cpu, work):
    lib = os.path.join(build, "libtinyinfer.unstripped.so")
    libdir = os.path.join(work, "lib")
    os.makedirs(libdir, exist_ok=True)
    shutil.copy(lib, os.path.join(libdir, "libtinyinfer.so.0"))
    runner = os.path.join(build, "run_outputs")
    if not os.path.exists(runner):  # as scripts/test-aarch64.sh builds it
        subprocess.run(["aarch64-linux-gnu-gcc", "-std=c99", "-O2", "-I", os.path.join(ROOT, "include"),
                        os.path.join(ROOT, "tests", "c", "run_outputs.c"), "-L", build, "-ltinyinfer",
                        "-Wl,-rpath,$ORIGIN", "-o", runner], check=True)
    ins = inputs_for(model, work)
    log = os.path.join(work, "qemu.log")
    env = dict(os.environ, LD_LIBRARY_PATH=libdir, LD_DEBUG="files")
    p = subprocess.run(["qemu-aarch64", "-cpu", cpu, "-L", "/usr/aarch64-linux-gnu", "-d", "in_asm,exec,nochain",
                        "-D", log, runner, model, os.path.join(work, "out")] + ins,
                       capture_output=True, text=True, env=env, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"run_outputs failed under qemu: {p.stderr.strip().splitlines()[-1:]}")
    m = re.search(r"file=libtinyinfer\.so\.0 \[0\];\s+generating link map\s*\n\s*\d+:\s+dynamic: 0x[0-9a-f]+\s+"
                  r"base: (0x[0-9a-f]+)", p.stderr)
    base = int(m.group(1), 16)
    size, vec = {}, {}
    execs = collections.Counter()
    cur, n, v = None, 0, 0
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("Trace "):
                execs[int(line.split("[", 1)[1].split("/")[1], 16)] += 1
            elif line.startswith("0x"):
                addr = int(line.split(":", 1)[0], 16)
                if cur is None:
                    cur = addr
                n += 1
                v += 1 if VECTOR.search(line.split(":", 1)[1]) else 0
            elif cur is not None and not line.strip():
                size[cur], vec[cur] = n, v
                cur, n, v = None, 0, 0
    if cur is not None:
        size[cur], vec[cur] = n, v
    os.remove(log)
    addrs, names = symbols(lib)
    per = collections.defaultdict(lambda: [0, 0])
    total = inlib = 0
    for pc, k in execs.items():
        n = size.get(pc, 0) * k
        total += n
        off = pc - base
        if 0 <= off < (addrs[-1] + 65536 if addrs else 0):
            i = bisect.bisect_right(addrs, off) - 1
            if i >= 0:
                inlib += n
                per[names[i]][0] += n
                per[names[i]][1] += vec.get(pc, 0) * k
    return total, inlib, per


def count_x86(model, level, work):
    """Total instructions (callgrind Ir) of the same program on the x86-64 library."""
    if not shutil.which("valgrind"):
        return None
    exe = os.path.join(work, "run_outputs_x86")
    libdir = os.path.join(ROOT, "python", "tinyinfer", "lib")
    if not os.path.exists(exe):
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(ROOT, "tests", "c", "run_outputs.c"),
                        "-I", os.path.join(ROOT, "include"), "-L", libdir, "-ltinyinfer"], check=True)
    ins = inputs_for(model, work)
    out = os.path.join(work, "cg.out")
    env = dict(os.environ, LD_LIBRARY_PATH=libdir, TINYINFER_ISA=level)
    p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", exe, model,
                        os.path.join(work, "out")] + ins, capture_output=True, text=True, env=env, timeout=1800)
    m = re.search(r"Collected : (\d+)", p.stderr)
    if os.path.exists(out):
        os.remove(out)
    return int(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-aarch64"))
    ap.add_argument("--cpu", default="max", help="qemu -cpu (max has dotprod; cortex-a53 is plain Armv8.0)")
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--json", default=os.path.join(HERE, "arm_insns.json"))
    a = ap.parse_args()
    results = []
    for model in a.models or DEFAULT:
        with tempfile.TemporaryDirectory() as work:
            total, inlib, per = count_arm(model, a.build, a.cpu, work)
            x86 = {lv: count_x86(model, lv, work) for lv in ("baseline", "avx2")}
        top = sorted(per.items(), key=lambda kv: -kv[1][0])[: a.top]
        names = demangle([n for n, _ in top])
        results.append({"model": os.path.basename(model), "aarch64_total": total, "aarch64_in_library": inlib,
                        "x86_total": x86, "top": [{"symbol": names[n], "insns": c, "vector_share": v / c if c else 0}
                                                 for n, (c, v) in top]})
        r = results[-1]
        print(f"### {r['model']}: aarch64 ({a.cpu}) {total / 1e6:.2f} M instructions ({inlib / 1e6:.2f} M in the "
              f"library); x86-64 baseline {(x86['baseline'] or 0) / 1e6:.2f} M, avx2 {(x86['avx2'] or 0) / 1e6:.2f} M")
        print("| function | M instructions | share of the library's | NEON share |\n|---|---|---|---|")
        for t in r["top"]:
            print(f"| `{t['symbol']}` | {t['insns'] / 1e6:.3f} | {100 * t['insns'] / max(1, inlib):.0f}% | "
                  f"{100 * t['vector_share']:.0f}% |")
        print(flush=True)
    with open(a.json, "w") as f:
        json.dump({"cpu": a.cpu, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
