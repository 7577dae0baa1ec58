"""LSTM and GRU against onnxruntime on one thread: the same ONNX model
(made here with onnx.helper, random weights) converted and run by tinyinfer,
best of 5 rounds of 20 runs each. docs/ops.md ("Recurrent") quotes it.

    python bench/rnn.py
"""

import os
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import tinyinfer  # noqa: E402

CASES = [("LSTM", 100, 1, 64, 128, 1), ("LSTM", 100, 8, 64, 128, 1), ("LSTM", 50, 1, 128, 256, 2),
         ("GRU", 100, 1, 64, 128, 1), ("GRU", 100, 8, 64, 128, 2), ("LSTM", 200, 1, 40, 64, 1)]


def model(kind, T, B, I, H, D):
    rng = np.random.default_rng(0)
    G = 4 if kind == "LSTM" else 3
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32), n)
             for n, s in (("W", (D, G * H, I)), ("R", (D, G * H, H)), ("B", (D, 2 * G * H)))]
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if kind == "GRU":
        attrs["linear_before_reset"] = 1  # what torch exports
    g = helper.make_graph([helper.make_node(kind, ["X", "W", "R", "B"], ["Y"], **attrs)], "rnn",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 7
    return m.SerializeToString()


def best_ms(f, n=20):
    f()
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e3


def main():
    print("| op | T | B | I | H | D | onnxruntime ms | tinyinfer ms | ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, T, B, I, H, D in CASES:
        data = model(kind, T, B, I, H, D)
        x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        with tinyinfer.Model(tinyinfer.convert(data, None, verbose=False).data, threads=1) as m:
            a = best_ms(lambda: s.run(None, {"X": x}))
            b = best_ms(lambda: m.run(x))
            err = float(np.abs(s.run(None, {"X": x})[0] - m.run(x)[0]).max())
        print(f"| {kind} | {T} | {B} | {I} | {H} | {D} | {a:.3f} | {b:.3f} | {b / a:.2f} | {err:.1e} |")


if __name__ == "__main__":
    main()
