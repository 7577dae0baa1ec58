"""Models made by TensorFlow at test time from a committed script of scripts/fixtures/ (not committed
themselves): the tests that use them skip when TensorFlow, LiteRT or the tflite package is absent, or
when this TensorFlow cannot make them."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(script: str, out_dir: str):
    """(the script's module, what its build(out_dir) returned)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("tflite")
    spec = importlib.util.spec_from_file_location(script, os.path.join(ROOT, "scripts", "fixtures", script + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        return mod, mod.build(out_dir)
    except Exception as e:  # TensorFlow cannot make the fixture here
        pytest.skip(f"cannot make the TFLite fixtures of scripts/fixtures/{script}.py: {type(e).__name__}: {e}")
