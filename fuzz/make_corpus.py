"""Writes the seed corpora of the fuzz harnesses (fuzz/corpus/<target>/,
gitignored; scripts/fuzz.sh runs this first):

  tinf          small valid .tinf files: one op of each kind the builder
                makes here, a float CNN, an MLP, int8 models (from the
                committed TFLite digits models, converted)
  tflite        the committed models/digits_*.tflite (float, fp16, dynamic, int8)
  onnx          small ONNX graphs (Conv, Gemm, Resize, Reshape, ...) made with onnx.helper
  torch-zip     torch.save of a state_dict (zip), when torch is installed
  torch-pickle  the legacy (non-zip) torch.save format, when torch is installed
  safetensors   safetensors files, when safetensors is installed
  calib         calibration inputs (see fuzz_converters.py's calib target)

Run from anywhere: python fuzz/make_corpus.py [OUT_DIR]."""

from __future__ import annotations

import glob
import io
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "fuzz"))

import tinyinfer  # noqa: E402
from fuzz_models import MLP_IN, MLP_SHAPES, mlp_state_dict, tinf_models  # noqa: E402


def write(folder: str, name: str, data: bytes) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def onnx_models():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return []
    rng = np.random.default_rng(1)
    out = []

    def model(nodes, inputs, outputs, inits, name):
        g = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        return name, m.SerializeToString()

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    out.append(model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
                      helper.make_node("Relu", ["c"], ["r"]),
                      helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                     [x], [y], {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                "b": np.zeros(4, np.float32)}, "conv"))
    xv = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])
    out.append(model([helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
                      helper.make_node("Softmax", ["g"], ["y"], axis=1)],
                     [xv], [y], {"w": rng.standard_normal((5, 16)).astype(np.float32),
                                 "b": np.zeros(5, np.float32)}, "gemm"))
    out.append(model([helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")],
                     [x], [y], {"sizes": np.array([1, 3, 16, 16], np.int64)}, "resize"))
    out.append(model([helper.make_node("Shape", ["x"], ["s"]),
                      helper.make_node("Gather", ["s", "i"], ["n"], axis=0),
                      helper.make_node("Concat", ["n", "m"], ["shape"], axis=0),
                      helper.make_node("Reshape", ["x", "shape"], ["y"])],
                     [x], [y], {"i": np.array([0], np.int64), "m": np.array([-1], np.int64)}, "reshape"))
    out.append(model([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                      helper.make_node("Add", ["t", "k"], ["a"]),
                      helper.make_node("ReduceMean", ["a"], ["y"], axes=[1, 2], keepdims=0)],
                     [x], [y], {"k": np.ones(3, np.float32)}, "transpose"))
    return out


def main(out_dir: str) -> None:
    for name, data in tinf_models():
        write(os.path.join(out_dir, "tinf"), name + ".tinf", data)
    tfl = sorted(glob.glob(os.path.join(ROOT, "models", "*.tflite")))
    for p in tfl:
        with open(p, "rb") as f:
            write(os.path.join(out_dir, "tflite"), os.path.basename(p), f.read())
        try:  # the converted model is a .tinf seed too (int8 ops)
            write(os.path.join(out_dir, "tinf"), os.path.basename(p) + ".tinf", tinyinfer.convert(p).data)
        except tinyinfer.TinyInferError:
            pass
    for name, data in onnx_models():
        write(os.path.join(out_dir, "onnx"), name + ".onnx", data)
    sd = mlp_state_dict()
    try:
        import torch
        tsd = {k: torch.from_numpy(v) for k, v in sd.items()}
        buf = io.BytesIO()
        torch.save(tsd, buf)
        write(os.path.join(out_dir, "torch-zip"), "mlp.pt", buf.getvalue())
        buf = io.BytesIO()
        torch.save(tsd, buf, _use_new_zipfile_serialization=False)
        write(os.path.join(out_dir, "torch-pickle"), "mlp-legacy.pt", buf.getvalue())
    except ImportError:
        pass
    try:
        from safetensors.numpy import save
        write(os.path.join(out_dir, "safetensors"), "mlp.safetensors", save(sd))
    except ImportError:
        pass
    # calibration: the harness's byte format (see fuzz_converters.calib_arrays)
    rng = np.random.default_rng(2)
    for k in range(4):
        write(os.path.join(out_dir, "calib"), f"calib{k}", rng.integers(0, 256, 64 + 32 * k, dtype=np.uint8).tobytes())
    print(f"seed corpora in {out_dir}: " + ", ".join(
        f"{d} {len(os.listdir(os.path.join(out_dir, d)))}" for d in sorted(os.listdir(out_dir))))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus"))
