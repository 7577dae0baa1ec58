"""The three front ends agree bit for bit: the Swift API (examples/swift,
built with SwiftPM in normal mode), the C API (tests/c/run_outputs.c) and
the Python package run the same models on the same inputs and must write
byte-identical outputs.

The models are small but real: the digits MLP and CNN converted from
models/*.tflite, LiteRT's quantizations of them and tinyinfer's own fp16,
int8-dynamic, int8-static and int4 quantizations (tests/c/cross_check.py
makes them), and a MobileNetV2-style inverted residual block built with
GraphBuilder (float32 and int8-static). Each runs with 1 and 2 threads.
The bench suite's models (bench/models/*.tinf, made by bench/make_models.py
and bench/run_suite.py; not committed) join them when present, or from the
folder $TINYINFER_BENCH_MODELS names, with seeded random inputs.

Skipped, with the reason, where `swift` or a C compiler is missing. The
first run builds examples/swift in debug (about a minute on an idle machine).
"""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from test_c_programs import CC, compile_c

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "c"))
import cross_check  # noqa: E402

SWIFT = shutil.which("swift")
EXAMPLE = os.path.join(ROOT, "examples", "swift")
THREADS = (1, 2)

pytestmark = [pytest.mark.skipif(SWIFT is None, reason="swift is not on PATH (the Swift front end needs it)"),
              pytest.mark.skipif(CC is None, reason="no C compiler")]


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    """{"swift": tinyinfer-run, "c": run_outputs}, both with the same
    command line: [-t THREADS] -o OUT_PREFIX model.tinf inputs... for Swift,
    -t THREADS model.tinf OUT_PREFIX inputs... for C."""
    p = subprocess.run([SWIFT, "build", "--package-path", EXAMPLE, "--product", "tinyinfer-run"],
                       capture_output=True, text=True, timeout=3600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    bindir = subprocess.run([SWIFT, "build", "--package-path", EXAMPLE, "--show-bin-path"],
                            capture_output=True, text=True, timeout=600).stdout.strip()
    d = tmp_path_factory.mktemp("cbin")
    return {"swift": os.path.join(bindir, "tinyinfer-run"),
            "c": compile_c("tests/c/run_outputs.c", d / "run_outputs")}


def mobilenet_block(path):
    """A MobileNetV2 inverted residual block on a 16x16x8 map: 1x1 expansion
    to 48 channels with ReLU6, 3x3 depthwise with ReLU6, 1x1 projection,
    residual Add, then a strided depthwise + global average pool + classifier."""
    rng = np.random.default_rng(7)

    def w(*shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bias(n):
        return (rng.standard_normal(n) * 0.1).astype(np.float32)

    b = tinyinfer.GraphBuilder("mobilenet_block")
    x = b.input("image", (1, 16, 16, 8))
    h = b.op("Conv2D", x, b.const("expand.w", w(48, 1, 1, 8, fan_in=8)), b.const("expand.b", bias(48)), activation=2)
    h = b.op("DepthwiseConv2D", h, b.const("dw.w", w(1, 3, 3, 48, fan_in=9)), b.const("dw.b", bias(48)),
             padding=1, activation=2)
    h = b.op("Conv2D", h, b.const("project.w", w(8, 1, 1, 48, fan_in=48)), b.const("project.b", bias(8)))
    h = b.op("Add", x, h)
    h = b.op("DepthwiseConv2D", h, b.const("down.w", w(1, 3, 3, 8, fan_in=9)), b.const("down.b", bias(8)),
             strides=[2, 2], padding=1, activation=2)
    h = b.op("AveragePool2D", h, filter=[8, 8], strides=[8, 8])
    h = b.op("Reshape", h, shape=[1, 8])
    b.output(b.op("FullyConnected", h, b.const("fc.w", w(10, 8, fan_in=8)), b.const("fc.b", bias(10)), name="logits"))
    b.save(path)
    images = np.random.default_rng(8).standard_normal((3, 1, 16, 16, 8)).astype(np.float32)
    return images


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("swift_models"))
    out = cross_check.make_models(work, ["mlp", "cnn"])
    block = os.path.join(work, "mobilenet_block.tinf")
    images = mobilenet_block(block)
    out.append(("mobilenet_block", block, images[:2]))
    q = os.path.join(work, "mobilenet_block.int8-static.tinf")
    tinyinfer.quantize(block, q, mode="int8-static", calib=images, progress=False)
    out.append(("mobilenet_block.int8-static", q, images[:2]))
    made = len(out)
    bench = os.environ.get("TINYINFER_BENCH_MODELS", os.path.join(ROOT, "bench", "models"))
    for path in sorted(glob.glob(os.path.join(bench, "*.tinf"))):
        with tinyinfer.load(path) as m:
            shape = tuple(m.inputs[0].shape)
        images = np.random.default_rng(3).standard_normal((1,) + shape).astype(np.float32)
        out.append(("bench." + os.path.basename(path)[:-5], path, images))
    print(f"{made} models made, {len(out) - made} bench models from {bench}")
    return work, out, made


def test_the_case_list_is_what_the_docstring_says(cases):
    _, cs, made = cases
    names = {n for n, _, _ in cs[:made]}
    for net in ("mlp", "cnn"):
        assert f"digits_{net}" in names
        for kind in ("litert-float16", "litert-dynamic", "litert-int8", *cross_check.QUANT_MODES):
            assert f"digits_{net}.{kind}" in names
    assert {"mobilenet_block", "mobilenet_block.int8-static"} <= names
    assert made == 2 * 8 + 2


def test_swift_c_and_python_outputs_are_bit_identical(runners, cases):
    work, cs, _ = cases
    checked = 0
    for name, path, images in cs:
        for r, inputs in enumerate(cross_check.model_inputs(path, images)):
            files = []
            for i, x in enumerate(inputs):
                files.append(os.path.join(work, f"{name}.run{r}.in{i}.bin"))
                x.tofile(files[-1])
            for t in THREADS:
                with tinyinfer.load(path, threads=t) as m:
                    wants = m.run(inputs)
                for front in ("swift", "c"):
                    prefix = os.path.join(work, f"{name}.run{r}.t{t}.{front}")
                    for o in range(len(wants)):  # no stale file can pass
                        if os.path.exists(f"{prefix}.{o}.bin"):
                            os.remove(f"{prefix}.{o}.bin")
                    if front == "swift":
                        cmd = [runners["swift"], "-t", str(t), "-o", prefix, path, *files]
                    else:
                        cmd = [runners["c"], "-t", str(t), path, prefix, *files]
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                    assert p.returncode == 0, f"{front} {name}: {p.stderr}"
                    for o, want in enumerate(wants):
                        with open(f"{prefix}.{o}.bin", "rb") as f:
                            got = f.read()
                        assert len(got) == want.nbytes, f"{front} {name} output {o}"
                        if got != want.tobytes():
                            diff = np.frombuffer(got, want.dtype).reshape(want.shape) != want
                            pytest.fail(f"{front} {name} input {r} threads {t} output {o}: "
                                        f"{int(diff.sum())} of {want.size} values differ from Python's")
                        checked += 1
                    if front == "swift":  # the printed line names the output as Python does
                        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("output ")]
                        assert [ln.split()[2] for ln in lines] == [o.name for o in m.outputs]
    assert checked == sum(2 * len(THREADS) * len(images) for _, _, images in cs)


def test_swift_example_reports_errors(runners, tmp_path):
    """Library errors exit 1 with the status and message; bad usage exits 2."""
    missing = tmp_path / "missing.tinf"
    p = subprocess.run([runners["swift"], str(missing)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "io: cannot open" in p.stderr and str(missing) in p.stderr
    bad = tmp_path / "bad.tinf"
    bad.write_bytes(b"TINF" + bytes(60))
    p = subprocess.run([runners["swift"], str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.startswith("tinyinfer-run: ") and "io:" not in p.stderr
    p = subprocess.run([runners["swift"]], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "usage:" in p.stderr
