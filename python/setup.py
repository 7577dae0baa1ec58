"""Packages tinyinfer with its libtinyinfer.so.

From a checkout, `pip install ./python` builds the library from the Swift
sources beside this folder with ../scripts/build-lib.sh (compiled for the
installing machine's CPU; 2 to 5 minutes, `pip install -v ./python` shows the
compiler's output) and ships it in the package. That needs the Swift toolchain
6.3 or newer; a wheel from scripts/build-wheel.sh needs no Swift.

TINYINFER_PREBUILT_LIB=/path/to/libtinyinfer.so ships that file instead of
building one (scripts/build-wheel.sh uses it).

The library is loaded with ctypes, not as an extension module, so one wheel
serves every Python 3: its tag is py3-none-<platform>, with the platform of
the library it holds (an aarch64 library makes a linux_aarch64 wheel on any
build machine).
"""

import os
import re
import shutil
import subprocess
import sys
import time

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB = os.path.join("tinyinfer", "lib", "libtinyinfer.so")
SWIFT_MIN = (6, 3)
SWIFT_HELP = ("Install the Swift toolchain {}.{} or newer (with its Embedded Swift support) from "
              "https://swift.org/install and put its usr/bin on PATH, or install a prebuilt wheel "
              "(scripts/build-wheel.sh makes one), which needs no Swift.").format(*SWIFT_MIN)


def stage(message):
    """A progress line. pip shows a build's output only with -v, so the line
    also goes to the terminal, when there is one, for a plain `pip install`."""
    line = "tinyinfer: " + message
    print(line, file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        return
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(line + "\n")
    except OSError:
        pass


def check_swift():
    swift = shutil.which("swift")
    if swift is None:
        sys.exit("error: building libtinyinfer.so from source needs Swift, and `swift` is not on PATH.\n"
                 + SWIFT_HELP)
    try:
        out = subprocess.run([swift, "--version"], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        sys.exit("error: `{} --version` failed ({}).\n{}".format(swift, e, SWIFT_HELP))
    m = re.search(r"Swift version (\d+)\.(\d+)", out)
    if m is None or (int(m.group(1)), int(m.group(2))) < SWIFT_MIN:
        found = m.group(0) if m else out.strip().splitlines()[0] if out.strip() else "no version"
        sys.exit("error: {} is {}; building libtinyinfer.so needs Swift {}.{} or newer.\n{}".format(
            swift, found, *SWIFT_MIN, SWIFT_HELP))
    return m.group(0)


class BuildWithLibrary(build_py):
    def run(self):
        prebuilt = os.environ.get("TINYINFER_PREBUILT_LIB")
        script = os.path.join(ROOT, "scripts", "build-lib.sh")
        if prebuilt:
            if not os.path.isfile(prebuilt):
                sys.exit("error: TINYINFER_PREBUILT_LIB={} is not a file".format(prebuilt))
            stage("packaging the prebuilt {}".format(prebuilt))
        elif os.path.exists(script):
            version = check_swift()
            stage("building libtinyinfer.so with {} (Embedded Swift, release): 2 to 5 minutes; "
                  "`pip install -v` shows the compiler's output".format(version))
            start = time.monotonic()
            built = subprocess.run(["bash", script], cwd=ROOT, stdout=subprocess.DEVNULL)
            if built.returncode != 0:
                sys.exit("error: scripts/build-lib.sh failed (exit status {}); its output is above "
                         "(run `pip install -v` to see it)".format(built.returncode))
            stage("built libtinyinfer.so in {:.0f} s".format(time.monotonic() - start))
        elif not os.path.exists(os.path.join(HERE, LIB)):
            sys.exit("error: cannot build libtinyinfer.so: the Swift sources are not beside python/ "
                     "(build from a checkout of the repository, or set TINYINFER_PREBUILT_LIB)")
        super().run()
        if prebuilt:
            self.mkpath(os.path.join(self.build_lib, os.path.dirname(LIB)))
            self.copy_file(prebuilt, os.path.join(self.build_lib, LIB))


# ELF e_machine -> the machine part of a linux_* platform tag.
ELF_MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 243: "riscv64"}


def library_machine():
    """The machine the shipped library is built for, from its ELF header."""
    path = os.environ.get("TINYINFER_PREBUILT_LIB") or os.path.join(HERE, LIB)
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return ELF_MACHINES.get(int.from_bytes(head[18:20], "little" if head[5] == 1 else "big"))


class BinaryDistribution(Distribution):
    """A platform package: it holds a shared library (installed to platlib)."""

    def has_ext_modules(self):
        return True


class Py3Wheel(bdist_wheel):
    def get_tag(self):
        plat = super().get_tag()[2]
        machine = library_machine()
        if machine and plat.startswith("linux_"):
            plat = "linux_" + machine
        return "py3", "none", plat


setup(cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": Py3Wheel}, distclass=BinaryDistribution)
