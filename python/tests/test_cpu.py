"""The CPU level the kernels run at: detection against /proc/cpuinfo (an
independent reading of the same CPUID bits, as the kernel reports them) and
the TINYINFER_ISA override, each in a fresh process (the level is chosen once
per process)."""

import json
import os
import platform
import subprocess
import sys

import pytest

import tinyinfer

X86 = platform.machine() in ("x86_64", "AMD64")
PKG = os.path.dirname(os.path.dirname(os.path.abspath(tinyinfer.__file__)))
LEVELS = ["baseline", "avx2", "avx512"] if X86 else ["baseline", "dotprod"]


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def info_in_child(isa=None):
    env = child_env()
    env.pop("TINYINFER_ISA", None)
    if isa is not None:
        env["TINYINFER_ISA"] = isa
    code = "import json, tinyinfer; print(json.dumps(tinyinfer.info()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def cpuinfo_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_info_names_the_library_and_a_known_level():
    info = tinyinfer.info()
    assert info["version"] == tinyinfer.__version__
    assert info["abi"] == tinyinfer.ABI_VERSION
    assert os.path.samefile(info["library"], tinyinfer._lib.lib_path)
    assert info["isa_detected"] in LEVELS
    assert LEVELS.index(info["isa"]) <= LEVELS.index(info["isa_detected"])


def test_detected_level_matches_proc_cpuinfo():
    flags = cpuinfo_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags on this system")
    if X86:
        if {"avx2", "fma", "f16c"} <= flags and {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            expected = "avx512"
        elif {"avx2", "fma", "f16c"} <= flags:
            expected = "avx2"
        else:
            expected = "baseline"
        assert ("avx512vnni" in tinyinfer.info()["cpu_features"]) == ("avx512_vnni" in flags and expected == "avx512")
        # AMX (int8 tiles): reported where the kernel lists the tiles (Linux lists them only when it can save
        # them, and then grants a process their use) on a CPU with VNNI
        amx = {"amx_tile", "amx_int8", "avx512_vnni"} <= flags and expected == "avx512"
        assert ("amx-int8" in tinyinfer.info()["cpu_features"]) == amx
        # VBMI (byte permutes: the int8 table lookup's vpermt2b) at the avx512 level
        assert ("avx512vbmi" in tinyinfer.info()["cpu_features"]) == ("avx512vbmi" in flags and expected == "avx512")
    else:
        expected = "dotprod" if "asimddp" in flags else "baseline"
    assert info_in_child()["isa_detected"] == expected


@pytest.mark.parametrize("level", LEVELS)
def test_a_lower_level_can_be_forced(level):
    detected = info_in_child()["isa_detected"]
    info = info_in_child(level)
    assert info["isa_detected"] == detected
    want = level if LEVELS.index(level) <= LEVELS.index(detected) else detected
    assert info["isa"] == want


def test_an_unknown_level_name_is_ignored():
    detected = info_in_child()["isa_detected"]
    assert info_in_child("sse9000")["isa"] == detected


def test_cli_info_prints_the_level():
    out = subprocess.run([sys.executable, "-m", "tinyinfer", "info"], capture_output=True, text=True, check=True,
                         env=child_env())
    assert f"isa: {tinyinfer.info()['isa']}" in out.stdout


AMX_CHILD = r"""
import ctypes, sys
import numpy as np
import tinyinfer as ti

def granted():
    # arch_prctl(ARCH_GET_XCOMP_PERM): the state components this process may use; bit 18: AMX tile data
    libc = ctypes.CDLL(None, use_errno=True)
    mask = ctypes.c_uint64(0)
    assert libc.syscall(158, 0x1022, ctypes.byref(mask)) == 0
    return bool(mask.value >> 18 & 1)

before = granted()
b = ti.GraphBuilder("fc")
x = b.input("x", (64, 256), dtype=np.int8)
b.quantization(x, np.float32(0.05), np.int32(0))
w = b.const(None, np.ones((128, 256), np.int8))
b.quantization(w, np.ones(1, np.float32) * np.float32(0.01), np.zeros(1, np.int32))
y = b.op("FullyConnected", x, w)
b.quantization(y, np.float32(2.0), np.int32(0))
b.output(y)
with ti.load(b.to_bytes(), threads=1) as m:
    m.run(np.ones((64, 256), np.int8))
print(int(before), int(granted()))
"""


@pytest.mark.skipif(not X86 or platform.system() != "Linux", reason="AMX permission: Linux x86-64")
@pytest.mark.parametrize("amx_env", [None, "0"])
def test_amx_state_is_asked_for_at_the_first_gemm_that_uses_it(amx_env):
    """The tiles' state is requested from Linux only by an int8 GEMM that would run on them (a process that
    runs none keeps its signal frames and may still set a small alternate signal stack), never with
    TINYINFER_AMX=0; where the CPU has no AMX, never."""
    flags = cpuinfo_flags() or set()
    env = child_env()
    env.pop("TINYINFER_ISA", None)
    env.pop("TINYINFER_AMX", None)
    if amx_env is not None:
        env["TINYINFER_AMX"] = amx_env
    out = subprocess.run([sys.executable, "-c", AMX_CHILD], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert before == 0
    has_amx = "amx-int8" in tinyinfer.info()["cpu_features"] and {"amx_tile", "amx_int8"} <= flags
    assert after == (1 if has_amx and amx_env is None else 0)
