"""The C install (scripts/install.sh, which `make install` runs): the header,
the library under its versioned name with the SONAME and -ltinyinfer links,
and tinyinfer.pc; then examples/c/run_model.c builds with nothing but
`cc $(pkg-config --cflags --libs tinyinfer)` and runs a model."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import tinyinfer
from tinyinfer import _lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTALL = os.path.join(ROOT, "scripts", "install.sh")

pytestmark = pytest.mark.skipif(not (shutil.which("cc") and shutil.which("pkg-config") and shutil.which("readelf")),
                                reason="needs cc, pkg-config and readelf (scripts/setup.sh installs them)")


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def dynamic_entries(path, tag):
    out = run(["readelf", "-d", path]).stdout
    return re.findall(r"\(" + tag + r"\)\s+.*\[(.*)\]", out)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    p = run(["bash", INSTALL, str(prefix), "--lib", _lib.lib_path])
    assert p.returncode == 0, p.stdout + p.stderr
    return prefix


def test_installed_files(prefix):
    version = tinyinfer.__version__  # the library's own tinf_version_string()
    major = version.split(".")[0]
    libdir = prefix / "lib"
    real = libdir / f"libtinyinfer.so.{version}"
    assert real.is_file() and not real.is_symlink()
    assert real.read_bytes() == open(_lib.lib_path, "rb").read()
    assert os.readlink(libdir / f"libtinyinfer.so.{major}") == real.name
    assert os.readlink(libdir / "libtinyinfer.so") == f"libtinyinfer.so.{major}"
    assert dynamic_entries(str(real), "SONAME") == [f"libtinyinfer.so.{major}"]
    with open(os.path.join(ROOT, "include", "tinyinfer.h"), "rb") as f:
        assert (prefix / "include" / "tinyinfer.h").read_bytes() == f.read()


def test_pkg_config_builds_and_runs_the_c_example(prefix, tmp_path):
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    p = run(["pkg-config", "--modversion", "tinyinfer"], env=env)
    assert p.returncode == 0 and p.stdout.strip() == tinyinfer.__version__, p.stdout + p.stderr
    flags = run(["pkg-config", "--cflags", "--libs", "tinyinfer"], env=env).stdout.split()
    assert f"-I{prefix / 'include'}" in flags and f"-L{prefix / 'lib'}" in flags and "-ltinyinfer" in flags, flags

    exe = tmp_path / "run_model"
    p = run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", os.path.join(ROOT, "examples", "c", "run_model.c"),
             *flags, "-o", str(exe)])
    assert p.returncode == 0, p.stderr
    # Linked against the SONAME, not the unversioned development link.
    assert f"libtinyinfer.so.{tinyinfer.__version__.split('.')[0]}" in dynamic_entries(str(exe), "NEEDED")

    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 6)).astype(np.float32)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    b = tinyinfer.GraphBuilder("install-check")
    b.output(b.op("FullyConnected", b.input("x", x.shape), b.const("w", w), b.const("b", bias)))
    b.save(str(tmp_path / "fc.tinf"))
    (tmp_path / "x.bin").write_bytes(x.tobytes())

    # Found at run time through LD_LIBRARY_PATH only (no rpath in the program).
    env = {k: v for k, v in os.environ.items() if k != "TINYINFER_LIB"}
    env["LD_LIBRARY_PATH"] = str(prefix / "lib")
    p = run([str(exe), "-k", "4", str(tmp_path / "fc.tinf"), str(tmp_path / "x.bin")], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"^[^\s:]+:((?: \S+){4})$", p.stdout, re.M)
    assert m, p.stdout
    got = np.array([float(v) for v in m.group(1).split()])
    expected = (x.astype(np.float64) @ w.T.astype(np.float64) + bias)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_refuses_a_library_without_the_soname(tmp_path):
    # Any shared object built without -soname.
    lib = tmp_path / "libnosoname.so"
    p = run(["cc", "-shared", "-fPIC", "-x", "c", "-", "-o", str(lib)], input="int f(void) { return 0; }\n")
    assert p.returncode == 0, p.stderr
    p = run(["bash", INSTALL, str(tmp_path / "prefix"), "--lib", str(lib)])
    assert p.returncode == 1
    assert "SONAME 'none', expected libtinyinfer.so." in p.stderr, p.stderr
    assert not (tmp_path / "prefix").exists()
