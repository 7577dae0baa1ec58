"""The C programs: examples/c/run_model.c and tests/c/abi_smoke.c are compiled
with the documented flags and run on models saved by GraphBuilder, and
scripts/check-exports.sh checks the library's exports. Skipped only when no
C compiler exists."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import tinyinfer
from tinyinfer import _lib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIBDIR = os.path.dirname(_lib.lib_path)
CC = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)

needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def compile_c(src, out, pedantic=False):
    flags = STRICT + (["-pedantic"] if pedantic else [])
    cmd = [CC, *flags, "-Iinclude", src, f"-L{LIBDIR}", "-ltinyinfer", f"-Wl,-rpath,{LIBDIR}", "-o", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stdout}\n{p.stderr}"
    return str(out)


def run(cmd, timeout=300, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("cbin")
    return {
        "run_model": compile_c("examples/c/run_model.c", d / "run_model"),
        "abi_smoke": compile_c("tests/c/abi_smoke.c", d / "abi_smoke", pedantic=True),
    }


R = np.random.default_rng(42)
W1 = R.standard_normal((16, 8)).astype(np.float32)
B1 = R.standard_normal(16).astype(np.float32)
W2 = R.standard_normal((4, 16)).astype(np.float32)


def mlp_reference(x):
    h = np.maximum(x @ W1.T + B1, 0)
    z = h @ W2.T
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    b = tinyinfer.GraphBuilder("c_mlp")
    b.metadata("origin", "test_c_programs")
    x = b.input("x", (2, 8))
    h = b.op("FullyConnected", x, b.const("w1", W1), b.const("b1", B1), activation=1)
    y = b.op("Softmax", b.op("FullyConnected", h, b.const("w2", W2)), name="probs")
    b.output(y)
    b.save(d / "mlp.tinf")
    b.close()

    b = tinyinfer.GraphBuilder("c_two")
    a = b.input("a", (3, 5))
    c = b.input("c", (1, 5))
    s = b.op("Add", a, c, name="sum")
    t = b.op("Tanh", s, name="tanh")
    b.output(s, t)
    b.save(d / "two.tinf")
    b.close()
    return d


def parse_values(stdout, name):
    m = re.search(rf"^{re.escape(name)}:((?: \S+)*?)(?: \.\.\. \((\d+) values\))?$", stdout, re.M)
    assert m, stdout
    vals = [float(v) for v in m.group(1).split()]
    return vals, (int(m.group(2)) if m.group(2) else None)


# -- run_model -------------------------------------------------------------------

@needs_cc
def test_run_model_with_input_file(bins, models, tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 8)).astype("<f4")
    x.tofile(tmp_path / "x.bin")
    p = run([bins["run_model"], "-n", "7", models / "mlp.tinf", tmp_path / "x.bin"])
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "input 0: x float32 [2, 8] (64 bytes)" in out
    assert "output 0: probs float32 [2, 4] (32 bytes)" in out
    assert "origin: test_c_programs" in out
    vals, total = parse_values(out, "probs")
    assert total is None and len(vals) == 8
    np.testing.assert_allclose(vals, mlp_reference(x).ravel(), rtol=1e-4, atol=1e-6)
    m = re.search(r"median ([0-9.]+) ms over 7 run\(s\)", out)
    assert m and float(m.group(1)) >= 0


@needs_cc
def test_run_model_zero_inputs(bins, models):
    p = run([bins["run_model"], "-n", "1", models / "mlp.tinf"])
    assert p.returncode == 0, p.stdout + p.stderr
    vals, _ = parse_values(p.stdout, "probs")
    np.testing.assert_allclose(vals, mlp_reference(np.zeros((2, 8), np.float32)).ravel(), rtol=1e-4, atol=1e-6)


@needs_cc
def test_run_model_two_inputs_and_options(bins, models, tmp_path):
    a = np.arange(15, dtype="<f4").reshape(3, 5) / 10
    c = np.array([[1, -1, 2, -2, 0.5]], "<f4")
    a.tofile(tmp_path / "a.bin")
    c.tofile(tmp_path / "c.bin")
    p = run([bins["run_model"], "-t", "2", "-k", "4", "-n", "3", models / "two.tinf", tmp_path / "a.bin",
             tmp_path / "c.bin"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "session: 2 thread(s)" in p.stdout
    assert "input 1: c float32 [1, 5]" in p.stdout
    s_vals, s_total = parse_values(p.stdout, "sum")
    t_vals, t_total = parse_values(p.stdout, "tanh")
    assert s_total == t_total == 15
    np.testing.assert_allclose(s_vals, (a + c).ravel()[:4], rtol=1e-5)
    np.testing.assert_allclose(t_vals, np.tanh(a + c).ravel()[:4], rtol=1e-5)


@needs_cc
def test_run_model_errors(bins, models, tmp_path):
    rm = bins["run_model"]
    # a missing file: the library's message, non-zero exit
    p = run([rm, tmp_path / "missing.tinf"])
    assert p.returncode != 0 and "cannot open" in p.stderr and "missing.tinf" in p.stderr
    # a corrupt model
    bad = tmp_path / "bad.tinf"
    bad.write_bytes((models / "mlp.tinf").read_bytes()[:100])
    p = run([rm, bad])
    assert p.returncode != 0 and "bad model format" in p.stderr
    bad.write_bytes(b"not a model" * 10)
    p = run([rm, bad])
    assert p.returncode != 0 and "magic" in p.stderr
    # an input file of the wrong size
    (tmp_path / "short.bin").write_bytes(b"\0" * 10)
    p = run([rm, models / "mlp.tinf", tmp_path / "short.bin"])
    assert p.returncode != 0 and "64" in p.stderr
    # a missing input file
    p = run([rm, models / "mlp.tinf", tmp_path / "nope.bin"])
    assert p.returncode != 0 and "nope.bin" in p.stderr
    # the wrong number of input files
    p = run([rm, models / "two.tinf", tmp_path / "short.bin"])
    assert p.returncode != 0
    # bad options and no model
    for args in (["-n", "0", models / "mlp.tinf"], ["-t", "999", models / "mlp.tinf"], ["-x", "1"],
                 ["-n"], ["-n", "abc", models / "mlp.tinf"], []):
        p = run([rm, *args])
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "usage" in p.stderr
    p = run([rm, "-h"])
    assert p.returncode == 0


@needs_cc
def test_makefile_builds(models, tmp_path):
    if not shutil.which("make"):
        pytest.skip("no make")
    out = tmp_path / "run_model_make"
    p = run(["make", "-C", os.path.join(ROOT, "examples", "c"), f"CC={CC}", f"OUT={out}"])
    assert p.returncode == 0, p.stdout + p.stderr
    p = run([out, "-n", "1", models / "mlp.tinf"])
    assert p.returncode == 0, p.stderr
    assert "probs:" in p.stdout


# -- abi_smoke ---------------------------------------------------------------------

@needs_cc
@pytest.mark.parametrize("model", ["mlp.tinf", "two.tinf"])
def test_abi_smoke(bins, models, model):
    p = run([bins["abi_smoke"], models / model])
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", p.stdout, re.M)
    assert m, p.stdout
    assert int(m.group(1)) > 150 and m.group(2) == "0"
    assert "FAIL" not in p.stdout


@needs_cc
def test_abi_smoke_usage_and_bad_model(bins, tmp_path):
    p = run([bins["abi_smoke"]])
    assert p.returncode == 2
    bad = tmp_path / "bad.tinf"
    bad.write_bytes(b"TINF" + b"\0" * 100)
    p = run([bins["abi_smoke"], bad])
    assert p.returncode == 1
    assert re.search(r"^\d+ passed, [1-9]\d* failed$", p.stdout, re.M), p.stdout


VALGRIND = shutil.which("valgrind")
# valgrind 3.19 cannot decode AVX-512: the library runs at its AVX2 level
# there (TINYINFER_ISA=avx2; its kernels are chosen at run time).
def portable_env():
    return dict(os.environ, TINYINFER_ISA="avx2")


@needs_cc
@pytest.mark.skipif(VALGRIND is None, reason="no valgrind")
def test_abi_smoke_under_valgrind_memory_errors(bins, models):
    # Invalid reads/writes, uses of uninitialized values, bad frees: none.
    p = run([VALGRIND, "-q", "--error-exitcode=99", "--leak-check=no", bins["abi_smoke"], models / "mlp.tinf"],
            timeout=600, env=portable_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]


@needs_cc
@pytest.mark.skipif(VALGRIND is None, reason="no valgrind")
def test_abi_smoke_under_valgrind_no_leaks(bins, models):
    p = run([VALGRIND, "-q", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
             bins["abi_smoke"], models / "mlp.tinf"], timeout=600, env=portable_env())
    assert p.returncode == 0, p.stderr[-6000:]


# -- check-exports -------------------------------------------------------------------

SCRIPT = os.path.join(ROOT, "scripts", "check-exports.sh")


def test_check_exports():
    if not shutil.which("readelf"):
        pytest.skip("no readelf")
    p = run(["bash", SCRIPT, _lib.lib_path])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok" in p.stdout


def test_check_exports_default_path():
    if not shutil.which("readelf"):
        pytest.skip("no readelf")
    if os.path.realpath(_lib.lib_path) != os.path.realpath(os.path.join(ROOT, "python", "tinyinfer", "lib",
                                                                         "libtinyinfer.so")):
        pytest.skip("TINYINFER_LIB points elsewhere")
    p = run(["bash", SCRIPT])
    assert p.returncode == 0, p.stdout + p.stderr


@needs_cc
def test_check_exports_catches_problems(tmp_path):
    if not shutil.which("readelf"):
        pytest.skip("no readelf")
    header = os.path.join(ROOT, "include", "tinyinfer.h")
    # A library exporting one declared function, an undeclared tinf_ one and a
    # foreign symbol: every problem is reported.
    (tmp_path / "fake.c").write_text(
        "int tinf_abi_version(void) { return 1; }\n"
        "int tinf_secret(void) { return 2; }\n"
        "int helper_symbol(void) { return 3; }\n")
    so = tmp_path / "libfake.so"
    p = run([CC, "-shared", "-fPIC", tmp_path / "fake.c", "-o", so])
    assert p.returncode == 0, p.stderr
    p = run(["bash", SCRIPT, so, header])
    assert p.returncode == 1
    assert "helper_symbol" in p.stderr
    assert "tinf_secret" in p.stderr
    assert "tinf_model_load_file is declared" in p.stderr
    assert "tinf_abi_version is declared" not in p.stderr
    # A library with every header function but a foreign dependency.
    names = sorted(set(re.findall(r"\b(tinf_\w+)\s*\(", re.sub(r"/\*.*?\*/", "", open(header).read(), flags=re.S))))
    assert len(names) >= 40
    (tmp_path / "full.c").write_text("".join(f"void {n}(void) {{}}\n" for n in names))
    so2 = tmp_path / "libfull.so"
    p = run([CC, "-shared", "-fPIC", tmp_path / "full.c", "-o", so2, "-Wl,--no-as-needed", "-lz"])
    if p.returncode != 0:
        p = run([CC, "-shared", "-fPIC", tmp_path / "full.c", "-o", so2, "-Wl,--no-as-needed", "-lrt"])
    assert p.returncode == 0, p.stderr
    p = run(["bash", SCRIPT, so2, header])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "depends on" in p.stderr
    assert "declared" not in p.stderr  # every function is there
    # Without the dependency it passes.
    p = run([CC, "-shared", "-fPIC", tmp_path / "full.c", "-o", so2])
    assert p.returncode == 0
    p = run(["bash", SCRIPT, so2, header])
    assert p.returncode == 0, p.stderr
    # A missing library is an error too.
    p = run(["bash", SCRIPT, tmp_path / "nope.so", header])
    assert p.returncode != 0 and "not found" in p.stderr


# -- quantizing from C ---------------------------------------------------------------

@needs_cc
@pytest.mark.parametrize("mode", ["fp16", "int8-dynamic", "int8-static", "int4"])
def test_quantize_from_c(tmp_path, mode):
    """examples/c/quantize_model.c quantizes the trained digits MLP in every
    mode through the C API; the result loads, is smaller, and classifies the
    held-out digits like the float32 model."""
    pytest.importorskip("sklearn")
    pytest.importorskip("tflite")
    from tinyinfer.datasets import load_digits_28x28
    exe = compile_c("examples/c/quantize_model.c", tmp_path / "quantize_model", pedantic=True)
    f32 = tmp_path / "mlp.tinf"
    tinyinfer.convert(os.path.join(ROOT, "models", "digits_mlp.tflite"), str(f32), verbose=False)
    x, y = load_digits_28x28()
    split = np.load(os.path.join(ROOT, "models", "digits_split.npz"))
    calib = tmp_path / "calib.bin"
    x[split["calib"]].reshape(-1, 784).astype("<f4").tofile(calib)
    dst = tmp_path / f"mlp.{mode}.tinf"
    p = run([exe, mode, f32, dst, calib])
    assert p.returncode == 0, p.stdout + p.stderr
    if mode == "int8-static":
        assert "calibrated on 200 samples" in p.stdout
    assert dst.stat().st_size < 0.55 * f32.stat().st_size
    xs, ys = x[split["test"]].reshape(-1, 784), y[split["test"]]
    with tinyinfer.load(str(f32)) as m0, tinyinfer.load(str(dst)) as m1:
        p0 = m0.run(xs)[0].argmax(1)
        p1 = m1.run(xs)[0].argmax(1)
        assert m1.metadata.get("quantization") == mode
    assert (p1 == ys).mean() >= (p0 == ys).mean() - 0.01
    assert (p1 == p0).mean() >= 0.98
