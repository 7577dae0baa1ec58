"""Cross-checks a libtinyinfer.so built for another CPU against the library
the tinyinfer Python package loads on this machine (the reference).

It makes the models (the committed digits MLP and CNN converted from
models/*.tflite, LiteRT's quantizations of them, tinyinfer's own fp16,
int8-dynamic, int8-static and int4 quantizations, a MobileNetV2 and the
bench's transformer encoder block built in torch), fixed inputs (real
digits, seeded random images and token embeddings), runs each model here
with the reference library and there with tests/c/run_outputs built for the
other CPU (through an emulator such as qemu-aarch64), and compares:

- float32 / float16 outputs: |there - here| <= 1e-5 * |here| + 1e-5 * max(1, max |here|)
  (the op tests' float tolerance; both libraries run the same Swift kernels,
  but the vector width and the fused multiply-adds differ by CPU);
- int8 / uint8 outputs: within one quantization step;
- integer and bool outputs: equal.

Prints one line per run and `N passed, N failed`; exits 1 when any run
failed. Used by scripts/test-aarch64.sh:

    python3 tests/c/cross_check.py --runner build-aarch64/run_outputs --work build-aarch64/check \
        --emulator "dotprod=qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu" \
        --emulator "armv8.0=qemu-aarch64 -cpu cortex-a53 -L /usr/aarch64-linux-gnu"
"""

import argparse
import os
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import tinyinfer  # noqa: E402

MODELS = os.path.join(ROOT, "models")
QUANT_MODES = ["fp16", "int8-dynamic", "int8-static", "int4"]


# -- models -----------------------------------------------------------------------------

def digits_data():
    from tinyinfer.datasets import load_digits_28x28
    x, _ = load_digits_28x28()
    split = np.load(os.path.join(MODELS, "digits_split.npz"))
    return x[split["calib"]], x[split["test"]]


def mobilenet_v2(alpha=0.35, classes=1000):
    """MobileNetV2 (Sandler et al. 2018) at width `alpha`: inverted residual
    blocks of 1x1 expansion, 3x3 depthwise, 1x1 projection, BatchNorm and
    ReLU6, as torchvision and Keras build it."""
    import torch
    from torch import nn

    def div8(c):
        return max(8, int(c * alpha + 4) // 8 * 8)

    def cbr(cin, cout, k, stride, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return layers + ([nn.ReLU6()] if act else [])

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            mid = cin * expand
            layers = (cbr(cin, mid, 1, 1) if expand != 1 else []) + cbr(mid, mid, 3, stride, groups=mid) + \
                cbr(mid, cout, 1, 1, act=False)
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    layers = cbr(3, div8(32), 3, 2)
    cin = div8(32)
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for i in range(n):
            layers.append(Block(cin, div8(c), s if i == 0 else 1, t))
            cin = div8(c)
    layers += cbr(cin, 1280, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes)]
    return torch.nn.Sequential(*layers)


def torch_model(name, work):
    """(float32 .tinf path, calibration inputs, test inputs) of a torch model
    with seeded weights (BatchNorm statistics from a few training-mode passes,
    so that activations keep a realistic range through the network)."""
    import torch
    from tinyinfer.convert.torch_live import from_torch
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    if name == "mobilenetv2":
        m = mobilenet_v2()
        calib = rng.standard_normal((16, 3, 128, 128)).astype(np.float32)
        m.train()
        with torch.no_grad():
            for i in range(0, 16, 4):
                m(torch.from_numpy(calib[i:i + 4]))
    else:
        from encoder_block import EncoderBlock
        m = EncoderBlock()
        calib = rng.standard_normal((16, 32, 128)).astype(np.float32)
    m.eval()
    path = os.path.join(work, f"{name}.tinf")
    from_torch(m, torch.from_numpy(calib[:1]), path)
    test = rng.standard_normal((2,) + calib.shape[1:]).astype(np.float32)
    return path, calib, test


def make_models(work, which):
    """[(case name, .tinf path, [input arrays of one run, ...])]."""
    cases = []
    calib_digits, test_digits = digits_data()
    for net in ("mlp", "cnn"):
        if which and not any(w in net for w in which):
            continue
        src = os.path.join(MODELS, f"digits_{net}.tflite")
        base = os.path.join(work, f"digits_{net}.tinf")
        tinyinfer.convert(src, base, verbose=False)
        with tinyinfer.load(base) as m:
            shape = m.inputs[0].shape
        calib = calib_digits.reshape((-1,) + tuple(shape[1:]))
        test = test_digits[:3].reshape((-1,) + tuple(shape[1:]))
        cases.append((f"digits_{net}", base, test))
        for kind in ("float16", "dynamic", "int8"):
            p = os.path.join(work, f"digits_{net}.litert-{kind}.tinf")
            tinyinfer.convert(os.path.join(MODELS, f"digits_{net}.{kind}.tflite"), p, verbose=False)
            cases.append((f"digits_{net}.litert-{kind}", p, test))
        for mode in QUANT_MODES:
            p = os.path.join(work, f"digits_{net}.{mode}.tinf")
            tinyinfer.quantize(base, p, mode=mode, calib=calib if mode == "int8-static" else None, progress=False)
            cases.append((f"digits_{net}.{mode}", p, test))
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped mobilenetv2 and encoder: torch is not installed (they are built in torch)", flush=True)
        return cases
    for net in ("mobilenetv2", "encoder"):
        if which and not any(w in net for w in which):
            continue
        base, calib, test = torch_model(net, work)
        with tinyinfer.load(base) as m:
            shape = m.inputs[0].shape
        calib, test = calib.reshape((-1,) + tuple(shape[1:])), test.reshape((-1,) + tuple(shape[1:]))
        cases.append((net, base, test))
        for mode in QUANT_MODES:
            p = os.path.join(work, f"{net}.{mode}.tinf")
            tinyinfer.quantize(base, p, mode=mode, calib=calib if mode == "int8-static" else None, progress=False)
            cases.append((f"{net}.{mode}", p, test))
    return cases


def model_inputs(path, images):
    """One run's input arrays per test image: the image itself for a float
    input, quantized with the input's scale and zero point for an int8 one."""
    with tinyinfer.load(path) as m:
        specs = m.inputs
        details = {t.name: t for t in m.tensors()}
    assert len(specs) == 1, path
    spec, runs = specs[0], []
    for img in images:
        x = img.reshape(spec.shape)
        if spec.dtype != np.float32:
            t = details[spec.name]
            info = np.iinfo(spec.dtype)
            x = np.clip(np.round(x / t.scales[0]) + t.zero_points[0], info.min, info.max)
        runs.append([np.ascontiguousarray(x, dtype=spec.dtype)])
    return runs


# -- compare ----------------------------------------------------------------------------

def compare(got, want):
    """(ok, description of the largest difference)."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return False, f"got {got.dtype}{list(got.shape)}, want {want.dtype}{list(want.shape)}"
    if want.dtype.kind == "f":
        g, w = got.astype(np.float64), want.astype(np.float64)
        if not np.array_equal(np.isnan(g), np.isnan(w)):
            return False, "NaN in different places"
        g, w = np.nan_to_num(g), np.nan_to_num(w)
        scale = max(1.0, float(np.abs(w).max(initial=0.0)))
        err = np.abs(g - w)
        ok = bool(np.all(err <= 1e-5 * np.abs(w) + 1e-5 * scale))
        rel = float((err / scale).max(initial=0.0))
        return ok, f"max |diff| {err.max(initial=0.0):.3g} ({rel:.3g} of max |ref|)"
    err = np.abs(got.astype(np.int64) - want.astype(np.int64))
    limit = 1 if want.dtype in (np.int8, np.uint8) else 0
    return bool(err.max(initial=0) <= limit), f"max |diff| {int(err.max(initial=0))} step(s), " \
        f"{int((err != 0).sum())} of {err.size} differ"


def check_compare():
    """The comparison rejects what it must (so a pass means something)."""
    rng = np.random.default_rng(0)
    f = rng.standard_normal((4, 10)).astype(np.float32)
    assert compare(f.copy(), f)[0]
    g = f.copy()
    g[1, 2] += 1e-4 * max(1.0, float(np.abs(f).max()))
    assert not compare(g, f)[0]
    g = f.copy()
    g[0, 0] = np.nan
    assert not compare(g, f)[0]
    assert not compare(f[:, :9].copy(), f)[0]
    q = rng.integers(-100, 100, (3, 7)).astype(np.int8)
    assert compare((q + 1).astype(np.int8), q)[0]  # one step
    assert not compare((q + 2).astype(np.int8), q)[0]
    i = rng.integers(0, 100, 5).astype(np.int32)
    assert not compare(i + 1, i)[0]


# One run under the emulator takes seconds (the largest model, two threads:
# about 2 s); a run that hangs fails here instead of stalling the job.
RUN_TIMEOUT_S = 300


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runner", required=True, help="tests/c/run_outputs built for the other CPU")
    ap.add_argument("--emulator", action="append", default=[],
                    help="LABEL=COMMAND: a command prefix that runs it, e.g. "
                         "'dotprod=qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu' (repeatable: every run on each)")
    ap.add_argument("--work", required=True, help="directory for models, inputs and outputs")
    ap.add_argument("--threads", default="1,2", help="thread counts of the runs there (the reference runs with 1)")
    ap.add_argument("--only", action="append", default=[], help="only the models whose name contains this")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    check_compare()
    threads = [int(t) for t in args.threads.split(",")]
    from tinyinfer import _lib
    print(f"reference: tinyinfer {tinyinfer.__version__} ({_lib.lib_path})", flush=True)

    t0 = time.time()
    cases = make_models(args.work, args.only)
    print(f"{len(cases)} models made in {time.time() - t0:.1f} s", flush=True)

    passed = failed = 0
    emulators = []
    for e in args.emulator or ["native="]:
        label, _, cmd = e.partition("=") if "=" in e else (e, "", e)
        emulators.append((label, shlex.split(cmd)))
    for name, path, images in cases:
        runs = model_inputs(path, images)
        with tinyinfer.load(path) as m:
            wants = [m.run(inputs) for inputs in runs]
        for r, (inputs, want) in enumerate(zip(runs, wants)):
            files = []
            for i, x in enumerate(inputs):
                f = os.path.join(args.work, f"{name}.run{r}.in{i}.bin")
                x.tofile(f)
                files.append(f)
            for (emu, emulator), t in [(e, t) for e in emulators for t in threads]:
                prefix = os.path.join(args.work, f"{name}.run{r}.{emu}.t{t}.out")
                label = f"{name} input {r} {emu} threads {t}"
                for o in range(len(want)):  # no stale output can pass
                    if os.path.exists(f"{prefix}.{o}.bin"):
                        os.remove(f"{prefix}.{o}.bin")
                t1 = time.time()
                try:
                    proc = subprocess.run(emulator + [args.runner, "-t", str(t), path, prefix] + files,
                                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    print(f"FAIL {label}: no result within {RUN_TIMEOUT_S} s (killed)", flush=True)
                    failed += 1
                    continue
                dt = time.time() - t1
                if proc.returncode != 0:
                    print(f"FAIL {label}: exit {proc.returncode}: {proc.stderr.strip()}", flush=True)
                    failed += 1
                    continue
                ok_all, notes = True, []
                for o, w in enumerate(want):
                    if not os.path.exists(f"{prefix}.{o}.bin"):
                        ok_all = False
                        notes.append(f"out {o} not written")
                        continue
                    g = np.fromfile(f"{prefix}.{o}.bin", dtype=w.dtype)
                    if g.size == w.size:
                        g = g.reshape(w.shape)
                    ok, note = compare(g, w)
                    ok_all &= ok
                    notes.append(f"out {o} {w.dtype}{list(w.shape)} {note}")
                print(f"{'ok  ' if ok_all else 'FAIL'} {label}: {'; '.join(notes)} [{dt:.2f} s]", flush=True)
                passed += ok_all
                failed += not ok_all
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
