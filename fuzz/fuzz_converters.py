"""atheris harnesses over the converters and calibration: the contract is
that any bytes give a converted model or one of tinyinfer's errors
(tinyinfer.TinyInferError), never another exception, a crash or a hang.

    python fuzz/fuzz_converters.py TARGET [CORPUS_DIR ...] [libFuzzer flags]

TARGET: tflite, onnx, torch-zip, torch-pickle, safetensors (the converter
boundary, tinyinfer.convert on the bytes) or calib (tinyinfer.quantize
int8-static of a two-input model on calibration data decoded from the
bytes: shapes, dtypes, NaN and infinities chosen by the fuzzer).
scripts/fuzz.sh runs them all; a non-tinyinfer exception is reported by
libFuzzer as a crash with its traceback, a slow input by -timeout."""

from __future__ import annotations

import os
import sys

import atheris

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "fuzz"))

with atheris.instrument_imports(include=["tinyinfer"]):
    import numpy as np
    import tinyinfer
    import tinyinfer.convert
    import tinyinfer.quantize
    from fuzz_models import MLP_IN, calib_model, mlp_architecture

TARGETS = {"tflite": "tflite", "onnx": "onnx", "torch-zip": "torch", "torch-pickle": "torch",
           "safetensors": "safetensors", "calib": None}

_CALIB_MODEL = None


def convert_target(fmt):
    options = {} if fmt in ("tflite", "onnx") else {"architecture": mlp_architecture, "input_shape": (1, MLP_IN)}

    def test(data: bytes) -> None:
        try:
            tinyinfer.convert(data, format=fmt, **options)
        except tinyinfer.TinyInferError:
            pass
    return test


DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.int8, np.bool_, np.complex64]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, 1e38, -1e-38]


def calib_arrays(data: bytes):
    """Calibration data from fuzzer bytes: a structure (array, list, dict,
    (x, y) tuple), per array a dtype, a shape near the inputs' and values
    with NaN or infinities sprinkled in."""
    fdp = atheris.FuzzedDataProvider(data)

    def array(base):
        dt = DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)]
        shape = list(base)
        if fdp.ConsumeBool():  # perturb the shape
            kind = fdp.ConsumeIntInRange(0, 3)
            if kind == 0 and shape:
                shape[fdp.ConsumeIntInRange(0, len(shape) - 1)] = fdp.ConsumeIntInRange(0, 9)
            elif kind == 1:
                shape = [fdp.ConsumeIntInRange(1, 5)] + shape
            elif kind == 2 and shape:
                shape = shape[1:]
            else:
                shape = [fdp.ConsumeIntInRange(0, 4) for _ in range(fdp.ConsumeIntInRange(0, 5))]
        n = int(np.prod(shape)) if shape else 1
        vals = np.array(fdp.ConsumeFloatListInRange(min(n, 4096), -100.0, 100.0) + [0.0] * max(0, n - 4096))
        vals = np.resize(vals, n) if n else vals[:0]
        for _ in range(fdp.ConsumeIntInRange(0, 2)):
            if n:
                vals[fdp.ConsumeIntInRange(0, n - 1)] = SPECIAL[fdp.ConsumeIntInRange(0, len(SPECIAL) - 1)]
        with np.errstate(all="ignore"):
            return vals.astype(dt).reshape(shape)

    xs, vs = (1, 6, 6, 2), (1, 5)
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind == 0:
        return [(array(xs), array(vs)) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if kind == 1:
        return {"x": array((fdp.ConsumeIntInRange(1, 3),) + xs[1:]), "v": array((1,) + vs[1:])}
    if kind == 2:
        return array(xs)  # one array for a two-input model: refused
    if kind == 3:
        return ([{"x": array(xs), "v": array(vs)}], array((fdp.ConsumeIntInRange(0, 3),)))
    return [[array(xs)] for _ in range(fdp.ConsumeIntInRange(1, 2))]


def calib_target():
    global _CALIB_MODEL
    _CALIB_MODEL = calib_model()

    def test(data: bytes) -> None:
        calib = calib_arrays(data)
        try:
            tinyinfer.quantize(_CALIB_MODEL, mode="int8-static", calib=calib, progress=False)
        except tinyinfer.TinyInferError:
            pass
    return test


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer args]")
    target = sys.argv.pop(1)
    test = calib_target() if target == "calib" else convert_target(TARGETS[target])
    test(b"")  # imports the peer package (onnx, torch, ...) before the clock of the first input starts
    atheris.Setup(sys.argv, test)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
