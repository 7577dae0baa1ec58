"""Small models shared by the fuzz harnesses and the corpus script."""

from __future__ import annotations

import numpy as np

import tinyinfer

MLP_IN = 8
MLP_SHAPES = {"fc1.weight": (16, MLP_IN), "fc1.bias": (16,), "fc2.weight": (4, 16), "fc2.bias": (4,)}


def mlp_state_dict():
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in MLP_SHAPES.items()}


def mlp_architecture():
    """The tinyinfer.nn architecture of mlp_state_dict (the torch and safetensors targets)."""
    from tinyinfer import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(MLP_IN, 16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x):
            return self.fc2(nn.functional.relu(self.fc1(x)))

    return MLP()


def calib_model() -> bytes:
    """A float model with two inputs for the calibration target."""
    rng = np.random.default_rng(3)
    b = tinyinfer.GraphBuilder("calib")
    x = b.input("x", (1, 6, 6, 2))
    v = b.input("v", (1, 5))
    c = b.op("Conv2D", x, b.const("w", rng.standard_normal((3, 3, 3, 2)).astype(np.float32)),
             b.const("b", np.zeros(3, np.float32)), padding=1, activation=1)
    m = b.op("Mean", c, axes=[1, 2])
    f = b.op("FullyConnected", v, b.const("fw", rng.standard_normal((3, 5)).astype(np.float32)))
    b.output(b.op("Add", m, f))
    return b.to_bytes()


def tinf_models():
    """(name, bytes) of small valid .tinf files covering many op kinds."""
    rng = np.random.default_rng(0)
    out = []

    def add(name, build):
        b = tinyinfer.GraphBuilder(name)
        build(b)
        out.append((name, b.to_bytes()))

    def f32(*s):
        return rng.standard_normal(s).astype(np.float32)

    add("fc_softmax", lambda b: b.output(b.op("Softmax", b.op(
        "FullyConnected", b.input("x", (2, 8)), b.const("w", f32(4, 8)), b.const("b", f32(4)), activation=1))))
    add("conv_pool", lambda b: b.output(b.op("MaxPool2D", b.op(
        "Conv2D", b.input("x", (1, 8, 8, 3)), b.const("w", f32(4, 3, 3, 3)), b.const("b", f32(4)), padding=1),
        filter=[2, 2], strides=[2, 2])))
    add("dwconv_avg", lambda b: b.output(b.op("AveragePool2D", b.op(
        "DepthwiseConv2D", b.input("x", (1, 6, 6, 2)), b.const("w", f32(1, 3, 3, 2)), b.const("b", f32(2))),
        filter=[2, 2])))
    add("binary", lambda b: b.output(b.op("Mul", b.op("Add", b.input("x", (2, 3, 4)), b.const("k", f32(4))),
                                          b.input("y", (2, 1, 4)))))
    add("unary", lambda b: b.output(b.op("Tanh", b.op("Logistic", b.op("Exp", b.input("x", (3, 5)))))))
    add("reshape_transpose", lambda b: b.output(b.op("Transpose", b.op(
        "Reshape", b.input("x", (2, 12)), shape=[2, 3, 4]), perm=[2, 0, 1])))
    add("concat_slice", lambda b: b.output(b.op("Slice", b.op(
        "Concat", b.input("x", (2, 3)), b.input("y", (2, 5)), axis=1), begin=[0, 1], size=[2, 4])))
    add("gather", lambda b: b.output(b.op("Gather", b.const("table", f32(10, 4)), b.input("i", (3,), "int32"))))
    add("matmul", lambda b: b.output(b.op("MatMul", b.input("a", (2, 3, 4)), b.input("b", (2, 4, 5)))))
    add("resize_pad", lambda b: b.output(b.op("ResizeBilinear", b.op(
        "Pad", b.input("x", (1, 4, 4, 1)), pads=[0, 0, 1, 1, 1, 1, 0, 0]), size=[8, 8])))
    add("layernorm", lambda b: b.output(b.op("LayerNorm", b.input("x", (2, 6)), b.const("g", f32(6)),
                                             b.const("be", f32(6)), axis=-1)))
    return out
