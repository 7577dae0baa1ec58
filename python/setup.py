"""Builds libtinyinfer.so from the Swift sources beside this folder (with
../scripts/build-lib.sh, so it is compiled for the installing machine's CPU)
and ships it inside the package. `pip install ./python` runs this."""

import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class BuildWithLibrary(build_py):
    def run(self):
        script = os.path.join(ROOT, "scripts", "build-lib.sh")
        if os.path.exists(script):
            subprocess.check_call(["bash", script], cwd=ROOT)
        elif not os.path.exists(os.path.join(HERE, "tinyinfer", "lib", "libtinyinfer.so")):
            raise RuntimeError("cannot build libtinyinfer.so: the Swift sources are not beside python/")
        super().run()


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
