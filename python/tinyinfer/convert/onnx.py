"""ONNX importer: ONNX graphs (opsets 13 to 20, the form torch.onnx.export
writes) to tinyinfer graphs.

    tinyinfer.convert("model.onnx", "model.tinf")
    tinyinfer.convert("model.onnx", "model.tinf", batch=4)        # fix a dynamic batch dim

Options (keyword arguments of tinyinfer.convert):

- ``batch`` (default 1): the size given to a dynamic first dim of an input.
  Any other dynamic dim is refused unless ``input_shapes`` names it.
- ``input_shapes``: ``{input name: shape}`` overriding the declared shapes;
  ``input_shape``: the same for a model with one input (the command line's
  ``--input-shape``).
- ``keep_int8_weights`` (default True): a DequantizeLinear of a constant
  int8/uint8 weight becomes an int8 constant plus a Dequantize op (the file
  keeps 8-bit weights); False dequantizes it at conversion (float32 weights).
- ``check_opset`` (default True): refuse opsets outside 13..20.

How the graph is converted
--------------------------

1. Dynamic batch dims are fixed, then ONNX shape inference and constant
   folding alternate until nothing changes: initializers, Constant nodes and
   every node whose inputs are all constants (Shape of a static shape,
   Gather/Unsqueeze/Concat chains, Cast, ConstantOfShape, ...) are evaluated
   at conversion with the ONNX reference evaluator (numpy). Every tensor that
   remains must have a static shape.
2. Graph rewrites at the ONNX level, each reported: BatchNormalization folded
   into the preceding Conv/ConvTranspose/Gemm; a constant-zero Pad folded into
   the explicit padding of the following Conv/pool; the erf form of Gelu
   (x * 0.5 * (1 + erf(x / sqrt 2))) to Gelu; the ReduceMean/Sub/Pow/Sqrt/Div
   form of layer normalization to LayerNorm; Reciprocal(Sqrt) to Rsqrt;
   HardSigmoid(1/6, 1/2) * x to HardSwish.
3. Emission, node by node, tracking the layout of every tensor: each value
   knows the permutation that takes its ONNX (NCHW) order to the order it has
   in the runtime. Ops that need NHWC (Conv, pooling, Resize, ...) ask for it
   and a Transpose is inserted once per tensor when the value is not already
   in that order; elementwise ops follow their inputs' layout (constants are
   permuted at conversion); axis attributes (Concat, Softmax, ReduceMean,
   Split, Slice, Pad, Gather, LayerNorm) are remapped; an ONNX Transpose
   only changes the recorded permutation (no op is emitted); a Flatten/Reshape
   of an NHWC tensor to [N, C*H*W] followed by Gemm/MatMul with constant
   weights permutes the weight columns instead of the activations. So a CNN
   has one Transpose after each 4-D image input and one before each 4-D
   output. A Reshape of a permuted tensor is done in the runtime layout when
   the merged or split axes are adjacent there (a ViT's flatten(2).transpose
   costs nothing). Relu / Clip(0,6) / Clip(0,inf) / Clip(-1,1) after
   Conv/Gemm/MatMul/Add/Sub/Mul/Div/pooling become the fused activation, and
   a constant bias Add after a MatMul becomes the FullyConnected bias.
4. The emitted ops are replayed into the GraphBuilder: ops and constants that
   nothing reads are dropped and a Reshape of a Reshape reads the first one's
   input. The report's "ops out" counts what is in the file.

Pooling with ceil_mode = 1 becomes extra bottom/right padding (exact for
MaxPool and for AveragePool without count_include_pad; with it, a constant
per-position divisor correction); the output size follows onnxruntime's rule
(the last window starts inside the input or left padding) and a model whose
ONNX shape inference disagrees is refused. Resize maps a
coordinate_transformation_mode / nearest_mode to the runtime's align_corners /
half_pixel_centers / asymmetric rule only after checking that every output
row and column reads the same source coordinates as onnxruntime would.

Refused (UnsupportedOpError, nothing written): every op not in SUPPORTED_OPS
(listed with counts, e.g. TopK, NonMaxSuppression, LSTM/GRU, Where/Equal on
run-time tensors, Erf outside Gelu, contrib-domain ops such as
com.microsoft.QGemm), dynamic dims other than the batch, Resize cubic /
tf_crop_and_resize / modes that do not map, ConvTranspose with groups, pooling
with dilations, per-axis quantization of activations, quantization to types
other than int8/uint8, Cast of run-time tensors between types, and opsets
outside 13..20 (check_opset=False tries anyway). The converted graph is static:
shapes (including Reshape targets) carry the batch size it was converted with;
convert again with batch=N for another batch size.

Quantized forms (simulated quantization; the choice is also written into the
report's notes):

- DequantizeLinear of a constant int8/uint8 weight: int8 constant plus a
  Dequantize op (per-tensor or per-channel; weights stay 8-bit in the file).
  DequantizeLinear of an int32 bias: dequantized at conversion.
- QuantizeLinear of an activation: a Quantize op (round half to even, as
  ONNX) followed by a Dequantize op; the ONNX integer tensor is carried as its
  dequantized float value, so a QuantizeLinear/DequantizeLinear pair is
  Quantize+Dequantize, and data-movement ops on quantized tensors (MaxPool,
  Reshape, Transpose, ...) run on the float values, which is exact.
- QLinearConv / QLinearMatMul: float Conv / FullyConnected on the
  dequantized input with dequantized weights (int8 constant + Dequantize),
  then Quantize+Dequantize with the output parameters.
- MatMulInteger / ConvInteger / DynamicQuantizeLinear: the integer values are
  carried exactly in float32 tensors (products and sums of 8-bit values are
  exact in float32 up to 2**24); DynamicQuantizeLinear computes its scale and
  zero point at run time from the tensor's min and max (MaxPool2D over the
  flattened tensor) as ONNX specifies, rounding with Quantize (half to even).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._errors import ModelFormatError, UnsupportedOpError
from ..builder import GraphBuilder
from . import Report, unsupported

MIN_OPSET, MAX_OPSET = 13, 20

SUPPORTED_OPS: Dict[str, str] = {
    "Conv": "Conv2D (OIHW weights -> OHWI), DepthwiseConv2D when group == C_in (weights [1,KH,KW,C*M]), "
            "grouped Conv2D otherwise; 1-D convolutions as 2-D with H = 1",
    "ConvTranspose": "TransposeConv2D (IOHW weights -> [Cout,KH,KW,Cin]); group 1 only",
    "Gemm": "FullyConnected (alpha, beta, transA, transB folded into the constant weights and bias); "
            "MatMul + Mul + Add when B is not constant",
    "MatMul": "FullyConnected when B is a constant 2-D matrix (a following constant Add becomes the bias), "
              "else MatMul (a transposed operand becomes transpose_a/transpose_b)",
    "Add": "Add (fused activation)", "Sub": "Sub (fused activation)", "Mul": "Mul (fused activation)",
    "Div": "Div (fused activation)", "Sum": "chain of Add",
    "Max": "Maximum (chained when variadic)", "Min": "Minimum (chained when variadic)",
    "Pow": "constant exponent 1, 2, 3 (Mul), 0.5 (Sqrt), -0.5 (Rsqrt), -1 (Div)",
    "Neg": "Mul by -1", "Abs": "Maximum(x, -x)",
    "Relu": "Relu, or the fused activation of the producer",
    "Clip": "Relu6 / Relu / fused activation for (0,6), (0,inf), (-1,1); else Maximum + Minimum "
            "(constant bounds)",
    "LeakyRelu": "LeakyRelu", "PRelu": "PRelu (slope permuted to the input's layout)",
    "HardSwish": "HardSwish", "HardSigmoid": "HardSwish when HardSigmoid(1/6, 1/2) * x; else Mul + Add + "
                                             "Relu + Minimum",
    "Sigmoid": "Logistic", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt",
    "Reciprocal": "Rsqrt when of a Sqrt, else Div(1, x)",
    "Gelu": "Gelu (opset 20; approximate none/tanh)",
    "Erf": "only inside the erf form of Gelu (x * 0.5 * (1 + erf(x / sqrt 2))) -> Gelu",
    "Softmax": "Softmax (opset 13 single-axis semantics, axis remapped)",
    "LogSoftmax": "LogSoftmax (axis remapped)",
    "LayerNormalization": "LayerNorm (and the ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div form torch "
                          "writes below opset 17)",
    "BatchNormalization": "folded into the preceding Conv/ConvTranspose/Gemm, else BatchNorm on the "
                          "channels-last tensor (inference mode only)",
    "MaxPool": "MaxPool2D (ceil_mode as extra bottom/right padding; no dilations, no indices output)",
    "AveragePool": "AveragePool2D (count_include_pad; ceil_mode 1 through a constant divisor correction)",
    "GlobalAveragePool": "Mean over [1, 2] keep_dims on NHWC", "GlobalMaxPool": "MaxPool2D over H x W",
    "ReduceMean": "Mean (axes attribute or input, remapped)", "ReduceSum": "Mean then Mul by the count",
    "ReduceMax": "MaxPool2D over a reshaped view (reduced axes adjacent)", "ReduceMin": "-MaxPool2D(-x)",
    "Reshape": "Reshape (0 copies a dim; shapes from constants or folded Shape chains)",
    "Flatten": "Reshape (after an NHWC tensor feeding Gemm/MatMul: the weight columns are permuted)",
    "Squeeze": "Reshape", "Unsqueeze": "Reshape",
    "Transpose": "folded into the tracked layout (a Transpose op only where a consumer needs it)",
    "Concat": "Concat (axis remapped)", "Split": "Split (axis remapped)",
    "Slice": "Slice, or StridedSlice for steps != 1 (constant starts/ends/axes/steps)",
    "Pad": "Pad constant/reflect (constant pads; folded into a following Conv/pool when zero padding)",
    "Gather": "Gather (axis remapped; scalar index drops the axis)",
    "Resize": "ResizeNearest / ResizeBilinear when the coordinate mode maps to align_corners / "
              "half_pixel / asymmetric exactly (checked per output row and column); cubic refused",
    "DepthToSpace": "DepthToSpace (DCR / CRD)", "SpaceToDepth": "SpaceToDepth",
    "Identity": "removed", "Dropout": "removed (inference)",
    "Constant": "folded", "Shape": "folded (static shapes)", "Size": "folded (static shapes)",
    "ConstantOfShape": "folded", "Cast": "folded when constant; float32 -> float32 removed; int -> float on "
                                        "integer-valued tensors (MatMulInteger/ConvInteger outputs) removed",
    "Range": "folded", "Expand": "Add of a zeros constant (broadcasting); folded when constant",
    "Equal": "folded", "Where": "folded",
    "Floor": "folded", "Ceil": "folded", "Tile": "folded", "Not": "folded", "And": "folded", "Or": "folded",
    "Less": "folded", "Greater": "folded", "ReduceProd": "folded",
    "QuantizeLinear": "Quantize + Dequantize (per-tensor int8/uint8, round half to even); folded on constants",
    "DequantizeLinear": "int8 constant + Dequantize for weights; removed after QuantizeLinear (params "
                        "checked); Dequantize for integer inputs",
    "QLinearConv": "Conv2D / DepthwiseConv2D in float on dequantized values, then Quantize + Dequantize",
    "QLinearMatMul": "FullyConnected / MatMul in float on dequantized values, then Quantize + Dequantize",
    "MatMulInteger": "FullyConnected / MatMul on integer values carried in float32 (exact)",
    "ConvInteger": "Conv2D on integer values carried in float32 (exact)",
    "com.microsoft.QGemm": "FullyConnected in float on dequantized values (int8 weights + Dequantize, int32 "
                           "bias dequantized), then Quantize + Dequantize (or float output without y_scale)",
    "com.microsoft.QLinearAdd": "Add in float, then Quantize + Dequantize",
    "com.microsoft.QLinearMul": "Mul in float, then Quantize + Dequantize",
    "com.microsoft.QLinearGlobalAveragePool": "Mean in float, then Quantize + Dequantize (channels_last 0)",
    "com.microsoft.QLinearAveragePool": "AveragePool2D in float, then Quantize + Dequantize (channels_last 0)",
    "com.microsoft.QLinearSigmoid": "Logistic in float, then Quantize + Dequantize",
    "com.microsoft.QLinearLeakyRelu": "LeakyRelu in float, then Quantize + Dequantize",
    "com.microsoft.QLinearConcat": "Concat in float, then Quantize + Dequantize",
    "DynamicQuantizeLinear": "run-time scale and zero point (global max/min with MaxPool2D) and Quantize "
                             "(round half to even) as ONNX specifies",
}

# com.microsoft quantized ops (onnxruntime's QOperator format): the float op for shape inference, the
# quantized inputs, the output zero point's input index, the attributes the float op keeps.
_POOL_ATTRS = ["auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"]
_CONTRIB = {
    "QGemm": ("Gemm", [0, 3], 8, ["transA", "transB"]),
    "QLinearAdd": ("Add", [0, 3], 7, []),
    "QLinearMul": ("Mul", [0, 3], 7, []),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", [0], 4, []),
    "QLinearAveragePool": ("AveragePool", [0], 4, _POOL_ATTRS),
    "QLinearSigmoid": ("Sigmoid", [0], 4, []),
    "QLinearLeakyRelu": ("LeakyRelu", [0], 4, ["alpha"]),
    "QLinearConcat": ("Concat", [], 1, ["axis"]),
}

# Ops evaluated at conversion when every input is constant.
_FOLD_EXCLUDE = {"DequantizeLinear", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                 "Multinomial", "Bernoulli", "If", "Loop", "Scan", "DynamicQuantizeLinear"}

def _np_dtype(elem_type: int) -> np.dtype:
    import onnx
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def _inv(p: Sequence[int]) -> Tuple[int, ...]:
    q = [0] * len(p)
    for i, a in enumerate(p):
        q[a] = i
    return tuple(q)


def _norm(p) -> Optional[Tuple[int, ...]]:
    if p is None:
        return None
    p = tuple(int(a) for a in p)
    return None if p == tuple(range(len(p))) else p


def _ident(r: int) -> Tuple[int, ...]:
    return tuple(range(r))


def _cl(r: int) -> Optional[Tuple[int, ...]]:
    """Channels-last permutation of rank r (NCHW -> NHWC for r = 4)."""
    return _norm((0,) + tuple(range(2, r)) + (1,)) if r >= 3 else None


NHWC = (0, 2, 3, 1)

_ACT_NAMES = {1: "Relu", 2: "Relu6", 3: "Clip(-1,1)"}


class Node:
    """A node of the ONNX graph (attributes decoded to Python values)."""
    __slots__ = ("op", "domain", "name", "inputs", "outputs", "attrs", "proto", "dead")

    def __init__(self, op, domain, name, inputs, outputs, attrs, proto=None):
        self.op, self.domain, self.name = op, domain, name
        self.inputs, self.outputs, self.attrs = list(inputs), list(outputs), dict(attrs)
        self.proto, self.dead = proto, False

    def inp(self, i: int) -> str:
        return self.inputs[i] if i < len(self.inputs) else ""

    def label(self) -> str:
        return f"{self.op} '{self.name or self.outputs[0]}'"


class Val:
    """An ONNX tensor during emission.

    t: the runtime tensor. shape/dtype: the ONNX shape and dtype. perm: the
    runtime tensor is the ONNX tensor transposed by perm (None: same order).
    kind: 'real' (the runtime holds the ONNX values), 'deq' (the ONNX tensor
    is 8-bit quantized, q = (scale, zero_point, dtype); the runtime holds the
    dequantized float values; qt is the int8 runtime tensor when there is one),
    'intf' (an ONNX integer tensor whose values the runtime holds exactly in
    float32). flat = (C, H, W): an ONNX [N, C*H*W] tensor held as the
    flattening of its NHWC form, [N, H*W*C].
    """
    __slots__ = ("t", "shape", "dtype", "perm", "kind", "q", "qt", "flat", "views", "const")

    def __init__(self, t, shape, dtype, perm=None, kind="real", q=None, qt=None, flat=None, const=None):
        self.t, self.shape, self.dtype = t, tuple(int(d) for d in shape), np.dtype(dtype)
        self.perm = _norm(perm)
        self.kind, self.q, self.qt, self.flat, self.const = kind, q, qt, flat, const
        self.views: Dict = {}

    @property
    def rank(self) -> int:
        return len(self.shape)

    def rt_shape(self) -> Tuple[int, ...]:
        if self.rank == 0:
            return (1,)
        if self.flat is not None:
            return self.shape
        p = self.perm or _ident(self.rank)
        return tuple(self.shape[a] for a in p)


class WeightSrc:
    """A constant weight: float32 values, or 8-bit values with (scale, zero point, axis)."""

    def __init__(self, arr=None, q=None, scale=None, zp=None, axis=None, name=""):
        self.arr, self.q, self.scale, self.zp, self.axis, self.name = arr, q, scale, zp, axis, name

    @property
    def quantized(self) -> bool:
        return self.q is not None

    @property
    def shape(self):
        return (self.q if self.q is not None else self.arr).shape

    def float(self) -> np.ndarray:
        if self.q is None:
            return np.asarray(self.arr, dtype=np.float32)
        return _dequant(self.q, self.scale, self.zp, self.axis)

    def transform(self, fn, axis_map=None) -> "WeightSrc":
        """Applies fn (transposes/reshapes) to the values; axis_map maps the quantization axis."""
        if self.q is None:
            return WeightSrc(arr=fn(self.float()), name=self.name)
        axis = self.axis
        if axis is not None:
            axis = axis_map(axis)
        return WeightSrc(q=fn(self.q), scale=self.scale, zp=self.zp, axis=axis, name=self.name)

    def scaled(self, factor) -> "WeightSrc":
        """Multiplies by factor (a scalar, or per output channel along the quantization axis)."""
        f = np.asarray(factor, dtype=np.float32)
        if self.q is None:
            return WeightSrc(arr=self.float() * f, name=self.name)
        if f.size == 1 and float(f.reshape(-1)[0]) > 0:
            return WeightSrc(q=self.q, scale=self.scale * f.reshape(-1)[0], zp=self.zp, axis=self.axis,
                             name=self.name)
        return WeightSrc(arr=self.float() * f, name=self.name)


def _dequant(q, scale, zp, axis) -> np.ndarray:
    q = np.asarray(q)
    s = np.asarray(scale, dtype=np.float32)
    z = np.zeros_like(s, dtype=np.float32) if zp is None else np.asarray(zp).astype(np.float32)
    if axis is not None and s.size > 1:
        shape = [1] * q.ndim
        shape[axis] = s.size
        s, z = s.reshape(shape), z.reshape(shape)
    else:
        s, z = s.reshape(-1)[0], z.reshape(-1)[0]
    return ((q.astype(np.float32) - z) * s).astype(np.float32)


def _quantize_np(x, scale, zp, axis, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    s = np.asarray(scale, dtype=np.float32)
    z = np.zeros_like(s) if zp is None else np.asarray(zp).astype(np.float32)
    if axis is not None and s.size > 1:
        shape = [1] * x.ndim
        shape[axis] = s.size
        s, z = s.reshape(shape), z.reshape(shape)
    else:
        s, z = s.reshape(-1)[0], z.reshape(-1)[0]
    return np.clip(np.rint(np.asarray(x, np.float32) / s) + z, info.min, info.max).astype(dtype)


def _attr_value(a):
    import onnx
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode("utf-8", "replace") for s in v]
    if isinstance(v, onnx.TensorProto):
        return onnx.numpy_helper.to_array(v)
    return v


def _reshape_groups(s, t):
    """Pairs (axes of s, axes of t) whose sizes multiply to the same value, covering the dims != 1 in order."""
    si = [a for a in range(len(s)) if s[a] != 1]
    ti = [b for b in range(len(t)) if t[b] != 1]
    groups, i, j = [], 0, 0
    while i < len(si) and j < len(ti):
        gs, gt = [si[i]], [ti[j]]
        ps, pt = s[si[i]], t[ti[j]]
        i, j = i + 1, j + 1
        while ps != pt:
            if ps < pt:
                if i >= len(si):
                    return None
                gs.append(si[i])
                ps *= s[si[i]]
                i += 1
            else:
                if j >= len(ti):
                    return None
                gt.append(ti[j])
                pt *= t[ti[j]]
                j += 1
        groups.append((gs, gt))
    if i != len(si) or j != len(ti):
        return None
    return groups


def _reshape_perm(s, p, t):
    """For a tensor held as ONNX shape s transposed by p, the layout q in which the reshape to t can be done
    on the runtime tensor directly (each merged or split group of axes contiguous and in order in the runtime
    layout); None means t's own order; False when it cannot."""
    groups = _reshape_groups(s, t)
    if groups is None:
        return False
    order = [a for a in p if s[a] != 1]
    first = {}
    for gs, gt in groups:
        k = order.index(gs[0])
        if order[k:k + len(gs)] != gs:
            return False
        first[gs[0]] = gt
    q = []
    for a in order:
        if a in first:
            q += first[a]
    for b in [b for b in range(len(t)) if t[b] == 1]:
        q.insert(min(b, len(q)), b)
    return _norm(q)


def _close(a, b, rel=1e-4) -> bool:
    return abs(float(a) - float(b)) <= rel * max(1.0, abs(float(b)))


class _T:
    """A tensor of the deferred graph (its name)."""
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"_T({self.name!r})"


class _Graph:
    """The ops as emitted, replayed into a GraphBuilder at the end: ops and constants nothing reads are
    dropped, and a Reshape of a Reshape reads the first one's input."""

    def __init__(self, name: str, producer: str):
        self.name, self.producer = name, producer
        self.inputs: List[tuple] = []
        self.consts: Dict[str, np.ndarray] = {}
        self.ops: List[list] = []
        self.quant: Dict[str, tuple] = {}
        self.outputs: List[str] = []
        self.names = set()

    def input(self, name, shape, dtype) -> _T:
        self.names.add(name)
        self.inputs.append((name, tuple(shape), dtype))
        return _T(name)

    def const(self, name, arr) -> _T:
        self.names.add(name)
        self.consts[name] = np.ascontiguousarray(arr)
        return _T(name)

    def op(self, op, *inputs, name=None, outputs=None, **attrs):
        outs = [name] if outputs is None else list(outputs)
        for o in outs:
            if o in self.names:
                raise UnsupportedOpError(f"onnx: internal error: tensor name '{o}' made twice", 5)
            self.names.add(o)
        self.ops.append([op, [None if t is None else t.name for t in inputs], outs, attrs])
        res = [_T(o) for o in outs]
        return res[0] if outputs is None else res

    def quantization(self, t, scales, zero_points, axis=None) -> None:
        self.quant[t.name] = (np.atleast_1d(np.asarray(scales, np.float32)),
                              np.atleast_1d(np.asarray(zero_points)).astype(np.int32), axis)

    def output(self, t) -> None:
        self.outputs.append(t.name)

    def finish(self, report: Report) -> GraphBuilder:
        producer = {o: k for k, op in enumerate(self.ops) for o in op[2]}
        for op in self.ops:
            if op[0] == "Reshape":
                src = op[1][0]
                while src in producer and self.ops[producer[src]][0] == "Reshape" and src not in self.quant:
                    src = self.ops[producer[src]][1][0]
                op[1][0] = src
        live = set(self.outputs)
        keep = [False] * len(self.ops)
        for k in range(len(self.ops) - 1, -1, -1):
            if any(o in live for o in self.ops[k][2]):
                keep[k] = True
                live.update(i for i in self.ops[k][1] if i)
        b = GraphBuilder(self.name, producer=self.producer)
        tensors = {}
        for nm, shape, dt in self.inputs:
            tensors[nm] = b.input(nm, shape, dt)
        for nm, arr in self.consts.items():
            if nm in live:
                tensors[nm] = b.const(nm, arr)
        ops_out = Counter()
        for k, (op, ins, outs, attrs) in enumerate(self.ops):
            if not keep[k]:
                continue
            res = b.op(op, *[None if i is None else tensors[i] for i in ins], outputs=outs, **attrs)
            for o, t in zip(outs, res if isinstance(res, list) else [res]):
                tensors[o] = t
            ops_out[op] += 1
        for nm, (sc, zp, axis) in self.quant.items():
            if nm in tensors:
                b.quantization(tensors[nm], sc, zp, axis)
        for nm in self.outputs:
            b.output(tensors[nm])
        report.ops_out.clear()
        report.ops_out.update(ops_out)
        return b


class _Importer:
    def __init__(self, source, report: Report, batch: int = 1, input_shapes=None, keep_int8_weights: bool = True,
                 check_opset: bool = True, name: Optional[str] = None):
        try:
            import onnx  # noqa: F401
        except ImportError as e:  # pragma: no cover
            raise UnsupportedOpError("converting ONNX needs the 'onnx' package (pip install onnx)", 5) from e
        self.report = report
        self.batch = int(batch)
        self.input_shapes = dict(input_shapes or {})
        self.keep_int8 = bool(keep_int8_weights)
        self.check_opset = check_opset
        self.model = self._load(source)
        self.name = name or self.model.graph.name or "onnx"

    # -- loading ------------------------------------------------------------
    @staticmethod
    def _load(source):
        import onnx
        if isinstance(source, onnx.ModelProto):
            return source
        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                return onnx.load_from_string(bytes(source))
            return onnx.load(os.fspath(source))
        except Exception as e:  # a protobuf decode error
            raise ModelFormatError(f"cannot read the ONNX model: {e}", 3) from e

    def run(self) -> GraphBuilder:
        m = self.model
        self.opset = 0
        self.domains = {}
        for o in m.opset_import:
            self.domains[o.domain or "ai.onnx"] = o.version
        self.opset = self.domains.get("ai.onnx", 0)
        if self.check_opset and not (MIN_OPSET <= self.opset <= MAX_OPSET):
            raise UnsupportedOpError(
                f"onnx: opset {self.opset} is not supported (supported: {MIN_OPSET} to {MAX_OPSET}); nothing was "
                f"written (check_opset=False tries anyway)", 5)
        self.report.notes.append(f"ONNX opset {self.opset}, producer {m.producer_name or '?'} "
                                 f"{m.producer_version or ''}".rstrip())
        self._read_graph()
        self._fix_inputs()
        self._fold_loop()
        self._rewrites()
        self._check_supported()
        return self._emit_all()

    def _read_graph(self):
        import onnx
        g = self.model.graph
        self.consts: Dict[str, np.ndarray] = {}
        for init in g.initializer:
            self.consts[init.name] = onnx.numpy_helper.to_array(init)
        for sp in g.sparse_initializer:
            raise UnsupportedOpError("onnx: sparse initializers are not supported; nothing was written", 5)
        self.nodes: List[Node] = []
        ops_in = Counter()
        for p in g.node:
            ops_in[p.op_type] += 1
            attrs = {a.name: _attr_value(a) for a in p.attribute}
            domain = p.domain if p.domain not in ("", "ai.onnx") else ""
            if p.op_type == "Constant" and domain == "":
                self.consts[p.output[0]] = self._constant_value(p, attrs)
                continue
            self.nodes.append(Node(p.op_type, domain, p.name, p.input, p.output, attrs, p))
        self.report.ops_in.update(ops_in)
        self.outputs = [o.name for o in g.output]
        self.output_set = set(self.outputs)
        inits = set(self.consts)
        self.inputs = []
        for vi in g.input:
            if vi.name in inits:
                continue  # an initializer listed as input (IR < 4): a constant
            self.inputs.append(vi)

    @staticmethod
    def _constant_value(p, attrs) -> np.ndarray:
        if "value" in attrs:
            return np.asarray(attrs["value"])
        if "value_float" in attrs:
            return np.array(attrs["value_float"], dtype=np.float32)
        if "value_floats" in attrs:
            return np.array(attrs["value_floats"], dtype=np.float32)
        if "value_int" in attrs:
            return np.array(attrs["value_int"], dtype=np.int64)
        if "value_ints" in attrs:
            return np.array(attrs["value_ints"], dtype=np.int64)
        raise UnsupportedOpError(f"onnx: Constant '{p.name}' with {sorted(attrs)} is not supported", 5)

    def _fix_inputs(self):
        """Static input shapes: a dynamic first dim becomes `batch`; other dynamic dims are refused."""
        self.in_types: Dict[str, Tuple[np.dtype, Tuple[int, ...]]] = {}
        for vi in self.inputs:
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                raise UnsupportedOpError(f"onnx: input '{vi.name}' is not a tensor", 5)
            dtype = _np_dtype(tt.elem_type)
            if vi.name in self.input_shapes:
                shape = tuple(int(d) for d in self.input_shapes[vi.name])
            else:
                if not tt.HasField("shape"):
                    raise UnsupportedOpError(f"onnx: input '{vi.name}' has no shape; give input_shapes=", 5)
                shape = []
                for i, d in enumerate(tt.shape.dim):
                    if d.HasField("dim_value") and d.dim_value > 0:
                        shape.append(d.dim_value)
                    elif i == 0:
                        shape.append(self.batch)
                        self.report.notes.append(
                            f"input '{vi.name}': dynamic batch dim '{d.dim_param or '?'}' fixed to {self.batch}")
                    else:
                        raise UnsupportedOpError(
                            f"onnx: input '{vi.name}' has a dynamic dim {i} ('{d.dim_param or '?'}'); only the batch "
                            f"dim may be dynamic (give input_shapes={{'{vi.name}': (...)}}); nothing was written", 5)
                shape = tuple(shape)
            self.in_types[vi.name] = (dtype, shape)

    # -- shape inference and constant folding -------------------------------
    def _as_model(self, with_all_consts: bool = False):
        import onnx
        from onnx import helper, numpy_helper
        nodes = []
        for n in self.nodes:
            if n.dead:
                continue
            if n.domain == "com.microsoft" and n.op in _CONTRIB:
                nodes.extend(self._proxy(n))
                continue
            p = onnx.NodeProto()
            if n.proto is None:
                p = helper.make_node(n.op, n.inputs, n.outputs, name=n.name, domain=n.domain,
                                     **{k: v for k, v in n.attrs.items()})
            else:
                p.CopyFrom(n.proto)
                del p.input[:]
                p.input.extend(n.inputs)
                del p.output[:]
                p.output.extend(n.outputs)
            nodes.append(p)
        inputs = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(dt), list(sh))
                  for nm, (dt, sh) in self.in_types.items()]
        used = {i for n in self.nodes if not n.dead for i in n.inputs} | self.output_set
        inits = []
        for nm, arr in self.consts.items():
            if nm not in used:
                continue
            if with_all_consts or arr.size <= 4096:
                inits.append(numpy_helper.from_array(np.asarray(arr), nm))
            else:  # shape inference needs the type only
                inputs.append(helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(arr.dtype),
                                                            list(arr.shape)))
        outputs = [helper.make_empty_tensor_value_info(o) for o in self.outputs]
        g = helper.make_graph(nodes, self.name, inputs, outputs, initializer=inits)
        m = helper.make_model(g, opset_imports=list(self.model.opset_import))
        m.ir_version = max(self.model.ir_version, 7)
        return m

    def _proxy(self, n: Node):
        """Standard-domain nodes with the output type and shape of a com.microsoft quantized op (for shape
        inference only): Cast the quantized inputs to float, the float op, Cast to the output's type."""
        from onnx import TensorProto, helper
        float_op, ins, zp_i, keep = _CONTRIB[n.op]
        if n.op == "QLinearConcat":
            ins = list(range(2, len(n.inputs), 3))
        nodes, casted = [], []
        for k, i in enumerate(ins):
            nm = f"__proxy_{n.outputs[0]}_{k}"
            nodes.append(helper.make_node("Cast", [n.inputs[i]], [nm], to=TensorProto.FLOAT))
            casted.append(nm)
        attrs = {k: v for k, v in n.attrs.items() if k in keep}
        out = n.outputs[0]
        if zp_i is not None and (zp_i < len(n.inputs) and n.inputs[zp_i] or n.op != "QGemm"):
            zp = self.consts.get(n.inp(zp_i))
            to = helper.np_dtype_to_tensor_dtype(zp.dtype) if zp is not None else TensorProto.UINT8
            fl = f"__proxy_{out}_float"
            nodes.append(helper.make_node(float_op, casted, [fl], **attrs))
            nodes.append(helper.make_node("Cast", [fl], [out], to=to))
        else:
            nodes.append(helper.make_node(float_op, casted, [out], **attrs))
        return nodes

    def _infer(self):
        import onnx
        m = self._as_model()
        try:
            inferred = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
        except Exception as e:
            raise ModelFormatError(f"onnx: shape inference failed: {e}", 3) from e
        types = {}
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
            if not vi.type.HasField("tensor_type"):
                continue
            tt = vi.type.tensor_type
            if tt.elem_type == 0:
                continue
            shape = None
            if tt.HasField("shape"):
                dims = []
                for d in tt.shape.dim:
                    if d.HasField("dim_value") and d.dim_value >= 0:
                        dims.append(int(d.dim_value))
                    else:
                        dims = None
                        break
                shape = tuple(dims) if dims is not None else None
            types[vi.name] = (_np_dtype(tt.elem_type), shape)
        for nm, (dt, sh) in self.in_types.items():
            types[nm] = (dt, sh)
        self.types = types

    def _eval(self, n: Node, values: List[Optional[np.ndarray]]) -> List[np.ndarray]:
        import onnx
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        ins = [f"i{k}" if nm else "" for k, nm in enumerate(n.inputs)]
        outs = [f"o{k}" if nm else "" for k, nm in enumerate(n.outputs)]
        p = onnx.NodeProto()
        p.CopyFrom(n.proto)
        del p.input[:]
        p.input.extend(ins)
        del p.output[:]
        p.output.extend(outs)
        opsets = {"": self.opset}
        if n.domain:
            opsets[n.domain] = self.domains.get(n.domain, 1)
        ev = ReferenceEvaluator(p, opsets=opsets)
        feeds = {k: v for k, v in zip(ins, values) if k}
        res = ev.run(None, feeds)
        return [np.asarray(r) for r in res]

    def _fold_pass(self) -> int:
        folded = 0
        for n in self.nodes:
            if n.dead or n.domain or n.op in _FOLD_EXCLUDE:
                continue
            real = [i for i in n.inputs if i]
            if n.op in ("Shape", "Size"):
                t = self.types.get(n.inputs[0])
                if t is None or t[1] is None:
                    continue
                shape = np.array(t[1], dtype=np.int64)
                if n.op == "Size":
                    out = np.array(int(np.prod(shape)), dtype=np.int64)
                else:
                    start, end = n.attrs.get("start", 0), n.attrs.get("end", None)
                    out = shape[start:end]
                self.consts[n.outputs[0]] = out
            elif real and all(i in self.consts for i in real):
                try:
                    res = self._eval(n, [self.consts[i] if i else None for i in n.inputs])
                except Exception as e:
                    raise UnsupportedOpError(f"onnx: cannot evaluate constant {n.label()}: {e}", 5) from e
                for nm, r in zip(n.outputs, res):
                    if nm:
                        self.consts[nm] = r
            elif n.op in ("Identity", "Dropout") and not real:
                continue
            else:
                continue
            n.dead = True
            folded += 1
            self.fold_counts[n.op] += 1
        return folded

    def _fold_loop(self):
        self.fold_counts = Counter()
        for _ in range(50):
            self._infer()
            if not self._fold_pass():
                break
        self.nodes = [n for n in self.nodes if not n.dead]
        if self.fold_counts:
            self.report.folded.append(
                "constant folding: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.fold_counts.items())))

    # -- graph rewrites -----------------------------------------------------
    def _index(self):
        self.producer: Dict[str, Node] = {}
        self.consumers: Dict[str, List[Node]] = defaultdict(list)
        for n in self.nodes:
            if n.dead:
                continue
            for o in n.outputs:
                if o:
                    self.producer[o] = n
            for i in n.inputs:
                if i and n not in self.consumers[i]:
                    self.consumers[i].append(n)

    def _live_consumers(self, name) -> List[Node]:
        return [c for c in self.consumers.get(name, []) if not c.dead]

    def _single(self, name) -> Optional[Node]:
        """The only consumer of `name` (None if several, none, or a graph output)."""
        if name in self.output_set:
            return None
        cs = self._live_consumers(name)
        return cs[0] if len(cs) == 1 else None

    def _scalar(self, name) -> Optional[float]:
        if name in self.consts and self.consts[name].size == 1:
            return float(self.consts[name].reshape(-1)[0])
        return None

    def _shape(self, name) -> Tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        t = self.types.get(name)
        if t is None or t[1] is None:
            raise UnsupportedOpError(f"onnx: tensor '{name}' has no static shape (dynamic shapes are not "
                                     f"supported); nothing was written", 5)
        return t[1]

    def _dtype(self, name) -> np.dtype:
        if name in self.consts:
            return self.consts[name].dtype
        t = self.types.get(name)
        return t[0] if t else np.dtype(np.float32)

    def _new_const(self, base, arr) -> str:
        nm = base
        k = 0
        while nm in self.consts or nm in self.types:
            k += 1
            nm = f"{base}_{k}"
        self.consts[nm] = arr
        return nm

    def _rewrites(self):
        self._index()
        self._fold_batchnorm()
        self._fold_pads()
        self._match_gelu()
        self._match_layernorm()
        self._match_small()
        self.nodes = [n for n in self.nodes if not n.dead]
        self._index()

    def _float_const(self, name) -> Optional[np.ndarray]:
        if name and name in self.consts and self.consts[name].dtype.kind == "f":
            return self.consts[name].astype(np.float32)
        return None

    def _fold_batchnorm(self):
        for bn in self.nodes:
            if bn.dead or bn.op != "BatchNormalization" or bn.domain:
                continue
            if bn.attrs.get("training_mode", 0) or any(o and self._live_consumers(o) for o in bn.outputs[1:]):
                continue
            x = bn.inputs[0]
            p = self.producer.get(x)
            if p is None or p.dead or self._single(x) is not bn:
                continue
            prm = [self._float_const(i) for i in bn.inputs[1:5]]
            if any(a is None for a in prm):
                continue
            gamma, beta, mean, var = prm
            eps = bn.attrs.get("epsilon", 1e-5)
            scale = (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
            shift = (beta - mean * scale).astype(np.float32)
            c = scale.size
            if p.op == "Conv" and not p.domain:
                w = self._float_const(p.inp(1))
                if w is None or w.shape[0] != c:
                    continue
                w2 = w * scale.reshape((c,) + (1,) * (w.ndim - 1))
                b = self._float_const(p.inp(2)) if p.inp(2) else np.zeros(c, np.float32)
                if b is None:
                    continue
                b2 = b * scale + shift
            elif p.op == "ConvTranspose" and not p.domain and p.attrs.get("group", 1) == 1:
                w = self._float_const(p.inp(1))
                if w is None or w.shape[1] != c:
                    continue
                w2 = w * scale.reshape((1, c) + (1,) * (w.ndim - 2))
                b = self._float_const(p.inp(2)) if p.inp(2) else np.zeros(c, np.float32)
                if b is None:
                    continue
                b2 = b * scale + shift
            elif p.op == "Gemm" and not p.domain and len(self._shape(x)) == 2:
                w = self._float_const(p.inp(1))
                if w is None:
                    continue
                tb = p.attrs.get("transB", 0)
                if (w.shape[0] if tb else w.shape[1]) != c:
                    continue
                w2 = w * (scale.reshape(c, 1) if tb else scale.reshape(1, c))
                beta_g = p.attrs.get("beta", 1.0)
                cc = self._float_const(p.inp(2)) if p.inp(2) else np.zeros(c, np.float32)
                if cc is None:
                    continue
                b2 = (np.float32(beta_g) * cc * scale + shift).astype(np.float32)
                p.attrs["beta"] = 1.0
            else:
                continue
            p.inputs[1] = self._new_const(p.inp(1) + "_bn", w2.astype(np.float32))
            b_name = self._new_const((p.inp(2) or p.outputs[0]) + "_bn", b2.astype(np.float32))
            if len(p.inputs) < 3:
                p.inputs.append(b_name)
            else:
                p.inputs[2] = b_name
            p.outputs[0] = bn.outputs[0]
            p.proto = None
            bn.dead = True
            self.report.folded.append(f"{bn.label()} into {p.label()}")
            self._index()

    def _fold_pads(self):
        for pad in self.nodes:
            if pad.dead or pad.op != "Pad" or pad.domain:
                continue
            if pad.attrs.get("mode", "constant") != "constant":
                continue
            pads = self.consts.get(pad.inp(1))
            if pads is None:
                continue
            pads = [int(v) for v in pads.reshape(-1)]
            if pad.inp(3):
                continue  # axes input (opset 18): leave to the Pad op
            value = self._scalar(pad.inp(2)) if pad.inp(2) else 0.0
            if value is None:
                continue
            c = self._single(pad.outputs[0])
            if c is None or c.domain or c.inputs[0] != pad.outputs[0]:
                continue
            r = len(pads) // 2
            if r != 4 or any(v < 0 for v in pads) or pads[0] or pads[1] or pads[4] or pads[5]:
                continue
            extra = [pads[2], pads[3], pads[6], pads[7]]  # ONNX order [h_begin, w_begin, h_end, w_end]
            if c.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                continue
            old = list(c.attrs.get("pads", [0, 0, 0, 0]))
            if len(old) != 4:
                continue
            new = [a + b for a, b in zip(old, extra)]
            if c.op == "Conv":
                if value != 0.0:
                    continue
            elif c.op == "MaxPool":
                if not (value <= -3.0e38) or c.attrs.get("ceil_mode", 0):
                    continue
            elif c.op == "AveragePool":
                if value != 0.0 or c.attrs.get("ceil_mode", 0):
                    continue
                if any(old) and not c.attrs.get("count_include_pad", 0):
                    continue
                c.attrs["count_include_pad"] = 1
            else:
                continue
            if c.op != "Conv":
                ks = c.attrs.get("kernel_shape", [])
                if len(ks) != 2 or new[0] >= ks[0] or new[2] >= ks[0] or new[1] >= ks[1] or new[3] >= ks[1]:
                    continue
            c.attrs["pads"] = new
            c.attrs["auto_pad"] = "NOTSET"
            c.inputs[0] = pad.inputs[0]
            c.proto = None
            pad.dead = True
            self.report.fused.append(f"{pad.label()} into the padding of {c.label()}")
            self._index()

    def _const_operand(self, node, not_name):
        """(the other input, its scalar constant value) for a binary node with one input `not_name`."""
        if len(node.inputs) != 2:
            return None
        a, b = node.inputs
        if a == not_name:
            return self._scalar(b)
        if b == not_name:
            return self._scalar(a)
        return None

    def _match_gelu(self):
        for erf in self.nodes:
            if erf.dead or erf.op != "Erf" or erf.domain:
                continue
            d = self.producer.get(erf.inputs[0])
            if d is None or d.dead or self._single(d.outputs[0]) is not erf:
                continue
            x = None
            for cand in d.inputs:
                other = self._const_operand(d, cand)
                if other is None:
                    continue
                if d.op == "Div" and d.inputs[0] == cand and _close(other, math.sqrt(2)):
                    x = cand
                elif d.op == "Mul" and _close(other, 1 / math.sqrt(2)):
                    x = cand
            if x is None:
                continue
            add = self._single(erf.outputs[0])
            if add is None or add.op != "Add" or not _close(self._const_operand(add, erf.outputs[0]) or 0, 1.0):
                continue
            m1 = self._single(add.outputs[0])
            if m1 is None or m1.op != "Mul" or len(m1.inputs) != 2:
                continue
            other = m1.inputs[1] if m1.inputs[0] == add.outputs[0] else m1.inputs[0]
            chain = [d, erf, add, m1]
            out = None
            if other == x:  # (x * (1 + erf)) * 0.5
                m2 = self._single(m1.outputs[0])
                if m2 is not None and m2.op == "Mul" and _close(self._const_operand(m2, m1.outputs[0]) or 0, 0.5):
                    chain.append(m2)
                    out = m2.outputs[0]
            elif self._scalar(other) is not None and _close(self._scalar(other), 0.5):  # ((1 + erf) * 0.5) * x
                m2 = self._single(m1.outputs[0])
                if m2 is not None and m2.op == "Mul" and x in m2.inputs and m1.outputs[0] in m2.inputs:
                    chain.append(m2)
                    out = m2.outputs[0]
            else:  # (x * 0.5) * (1 + erf)
                h = self.producer.get(other)
                if h is not None and h.op == "Mul" and x in h.inputs and \
                        _close(self._const_operand(h, x) or 0, 0.5) and self._single(other) is m1:
                    chain.append(h)
                    out = m1.outputs[0]
            if out is None:
                continue
            for c in chain:
                c.dead = True
            last = max(chain, key=lambda c: self.nodes.index(c))
            g = Node("Gelu", "", f"{erf.name or 'erf'}_gelu", [x], [out], {"approximate": "none"})
            self.nodes.insert(self.nodes.index(last), g)
            self.report.fused.append(f"erf form of Gelu ({len(chain)} nodes) -> Gelu '{out}'")
            self._index()

    def _axes_of(self, n) -> Optional[List[int]]:
        if "axes" in n.attrs:
            return [int(a) for a in n.attrs["axes"]]
        if n.inp(1):
            a = self.consts.get(n.inp(1))
            return None if a is None else [int(v) for v in a.reshape(-1)]
        return []

    def _match_layernorm(self):
        for rm1 in self.nodes:
            if rm1.dead or rm1.op != "ReduceMean" or rm1.domain or not rm1.attrs.get("keepdims", 1):
                continue
            x = rm1.inputs[0]
            try:
                xs = self._shape(x)
            except UnsupportedOpError:
                continue
            r = len(xs)
            axes = self._axes_of(rm1)
            if not axes:
                continue
            axes = sorted(a % r for a in axes)
            if axes != list(range(r - len(axes), r)):
                continue
            sub = self._single(rm1.outputs[0])
            if sub is None or sub.op != "Sub" or sub.inputs != [x, rm1.outputs[0]]:
                continue
            d = sub.outputs[0]
            cs = self._live_consumers(d)
            if d in self.output_set or len(cs) != 2:
                continue
            pw = next((c for c in cs if c.op in ("Pow", "Mul")), None)
            div = next((c for c in cs if c.op == "Div" and c.inputs[0] == d), None)
            if pw is None or div is None:
                continue
            if pw.op == "Pow" and not (pw.inputs[0] == d and _close(self._scalar(pw.inp(1)) or 0, 2.0)):
                continue
            if pw.op == "Mul" and pw.inputs != [d, d]:
                continue
            rm2 = self._single(pw.outputs[0])
            if rm2 is None or rm2.op != "ReduceMean" or not rm2.attrs.get("keepdims", 1):
                continue
            a2 = self._axes_of(rm2)
            if a2 is None or sorted(a % r for a in a2) != axes:
                continue
            add = self._single(rm2.outputs[0])
            if add is None or add.op != "Add":
                continue
            eps = self._const_operand(add, rm2.outputs[0])
            if eps is None:
                continue
            sq = self._single(add.outputs[0])
            if sq is None or sq.op != "Sqrt" or self._single(sq.outputs[0]) is not div or \
                    div.inputs[1] != sq.outputs[0]:
                continue
            chain = [rm1, sub, pw, rm2, add, sq, div]
            out = div.outputs[0]
            norm_shape = xs[axes[0]:]
            gamma = np.ones(norm_shape, np.float32)
            beta = None
            mul = self._single(out)
            if mul is not None and mul.op == "Mul" and len(mul.inputs) == 2:
                g = mul.inputs[1] if mul.inputs[0] == out else mul.inputs[0]
                ga = self._float_const(g)
                if ga is not None and ga.ndim <= len(norm_shape):
                    try:
                        gamma = np.broadcast_to(ga, norm_shape).astype(np.float32)
                        chain.append(mul)
                        out = mul.outputs[0]
                        ad2 = self._single(out)
                        if ad2 is not None and ad2.op == "Add" and len(ad2.inputs) == 2:
                            bb = ad2.inputs[1] if ad2.inputs[0] == out else ad2.inputs[0]
                            ba = self._float_const(bb)
                            if ba is not None and ba.ndim <= len(norm_shape):
                                beta = np.broadcast_to(ba, norm_shape).astype(np.float32)
                                chain.append(ad2)
                                out = ad2.outputs[0]
                    except ValueError:
                        pass
            for c in chain:
                c.dead = True
            ins = [x, self._new_const(f"{out}_gamma", np.ascontiguousarray(gamma))]
            if beta is not None:
                ins.append(self._new_const(f"{out}_beta", np.ascontiguousarray(beta)))
            last = max(chain, key=lambda c: self.nodes.index(c))
            ln = Node("LayerNormalization", "", f"{out}_layernorm", ins, [out],
                      {"axis": axes[0], "epsilon": float(eps)})
            self.nodes.insert(self.nodes.index(last), ln)
            self.report.fused.append(f"ReduceMean/Sub/Pow/Sqrt/Div form of layer normalization ({len(chain)} "
                                     f"nodes) -> LayerNorm '{out}'")
            self._index()

    def _match_small(self):
        for n in self.nodes:
            if n.dead or n.domain:
                continue
            if n.op == "Sqrt":
                c = self._single(n.outputs[0])
                if c is None:
                    continue
                if c.op == "Reciprocal" or (c.op == "Div" and c.inputs[1] == n.outputs[0] and
                                             self._scalar(c.inputs[0]) == 1.0):
                    n.dead = c.dead = True
                    r = Node("Rsqrt", "", f"{n.name}_rsqrt", [n.inputs[0]], [c.outputs[0]], {})
                    self.nodes.insert(self.nodes.index(c), r)
                    self.report.fused.append(f"{n.label()} + {c.label()} -> Rsqrt")
                    self._index()
            elif n.op == "HardSigmoid":
                if not (_close(n.attrs.get("alpha", 0.2), 1 / 6) and _close(n.attrs.get("beta", 0.5), 0.5)):
                    continue
                c = self._single(n.outputs[0])
                if c is None or c.op != "Mul" or sorted(c.inputs) != sorted([n.inputs[0], n.outputs[0]]):
                    continue
                n.dead = c.dead = True
                h = Node("HardSwish", "", f"{n.name}_hardswish", [n.inputs[0]], [c.outputs[0]], {})
                self.nodes.insert(self.nodes.index(c), h)
                self.report.fused.append(f"{n.label()} * x -> HardSwish")
                self._index()

    @staticmethod
    def _handler_name(n: Node) -> str:
        if not n.domain:
            return "_op_" + n.op
        if n.domain == "com.microsoft" and n.op in _CONTRIB:
            return "_op_ms_" + n.op
        return "_unsupported_"

    def _check_supported(self):
        bad = Counter()
        for n in self.nodes:
            key = n.op if not n.domain else f"{n.domain}.{n.op}"
            if n.dead:
                continue
            if not hasattr(self, self._handler_name(n)):
                bad[key] += 1
        if bad:
            raise unsupported("onnx", bad)

    # -- emission helpers ------------------------------------------------------
    def _fresh(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.:/\-]", "_", str(base))[:120] or "t"
        nm, k = base, 0
        while nm in self.used_names:
            k += 1
            nm = f"{base}_{k}"
        self.used_names.add(nm)
        return nm

    def emit(self, op: str, *inputs, name: Optional[str] = None, outputs: int = 1, out_names=None, **attrs):
        self.report.ops_out[op] += 1
        attrs = {k: v for k, v in attrs.items() if v is not None}
        if out_names is not None:
            res = self.b.op(op, *inputs, outputs=list(out_names), **attrs)
        elif outputs == 1:
            if name is not None and name in self.claimed:
                self.claimed.discard(name)
            else:
                name = self._fresh(name or op.lower())
            res = self.b.op(op, *inputs, name=name, **attrs)
        else:
            res = self.b.op(op, *inputs, outputs=[self._fresh(f"{name or op.lower()}_{i}") for i in range(outputs)],
                            **attrs)
        if self.trace is not None:
            outs = res if isinstance(res, list) else [res]
            self.trace.append(f"{op}({', '.join(t.name if t is not None else '-' for t in inputs)}) -> "
                              f"{', '.join(t.name for t in outs)} {attrs}")
        return res

    def out_name(self, onnx_name: str, plain: bool) -> str:
        """The runtime name for the tensor holding ONNX value onnx_name (the ONNX name if it is a
        plain graph output not yet named)."""
        if plain and onnx_name in self.output_set and onnx_name not in self.named_outputs:
            self.named_outputs.add(onnx_name)
            nm = onnx_name
        else:
            nm = self._fresh(onnx_name + ("" if plain else "_nhwc"))
        self.claimed.add(nm)
        return nm

    def const(self, arr, name="const") -> _T:
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        if arr.dtype == np.bool_:
            raise UnsupportedOpError("onnx: boolean tensors are not supported by the runtime", 5)
        return self.b.const(self._fresh(name), arr)

    def val(self, name: str) -> Val:
        if name in self.vals:
            return self.vals[name]
        if name in self.consts:
            arr = self.consts[name]
            v = Val(None, arr.shape, arr.dtype, const=arr)
            self.vals[name] = v
            return v
        if name in self.qconsts:
            arr = self.qconst_float(name)
            v = Val(None, arr.shape, arr.dtype, const=arr)
            self.vals[name] = v
            return v
        raise UnsupportedOpError(f"onnx: tensor '{name}' is not produced by any supported node", 5)

    def is_const(self, name) -> bool:
        return bool(name) and (name in self.consts or name in self.qconsts)

    def cval(self, name) -> np.ndarray:
        if name in self.consts:
            return self.consts[name]
        if name in self.qconsts:
            return self.qconst_float(name)
        raise UnsupportedOpError(f"onnx: '{name}' must be a constant", 5)

    def qconst_float(self, name) -> np.ndarray:
        q, s, z, axis = self.qconsts[name]
        if name not in self.qconst_folded:
            self.qconst_folded.add(name)
            self.report.folded.append(f"DequantizeLinear of constant '{name}' ({q.dtype}) evaluated at conversion")
        return _dequant(q, s, z, axis)

    def weight(self, name) -> WeightSrc:
        if name in self.qconsts:
            q, s, z, axis = self.qconsts[name]
            if q.dtype in (np.int8, np.uint8) and self.keep_int8:
                return WeightSrc(q=q, scale=s, zp=z, axis=axis, name=name)
            return WeightSrc(arr=self.qconst_float(name), name=name)
        if name in self.consts:
            a = self.consts[name]
            if a.dtype.kind != "f":
                raise UnsupportedOpError(f"onnx: weight '{name}' has dtype {a.dtype}", 5)
            return WeightSrc(arr=a.astype(np.float32), name=name)
        raise UnsupportedOpError(f"onnx: weight '{name}' is not constant", 5)

    def emit_weight(self, ws: WeightSrc, name: str) -> _T:
        if not ws.quantized:
            return self.const(ws.float(), name)
        c = self.const(ws.q, name + "_q")
        s = np.asarray(ws.scale, np.float32).reshape(-1)
        z = np.zeros(s.shape, np.int32) if ws.zp is None else np.asarray(ws.zp).astype(np.int32).reshape(-1)
        if z.size == 1 and s.size > 1:
            z = np.full(s.shape, int(z[0]), np.int32)
        if s.size == 1 and z.size == 1:
            self.b.quantization(c, s, z)
        else:
            self.b.quantization(c, s, z, axis=ws.axis)
        self.report.kept_precision.append(f"{ws.name or name} ({ws.q.dtype}, "
                                          f"{'per-tensor' if s.size == 1 else f'per-channel axis {ws.axis}'})")
        return self.emit("Dequantize", c, name=name)

    def get(self, v: Val, perm=None) -> _T:
        """The runtime tensor of v in the order `perm` of its ONNX axes (None: ONNX order)."""
        perm = _norm(perm)
        if v.const is not None:
            key = ("c", perm)
            if key not in v.views:
                arr = v.const if perm is None else np.transpose(v.const, perm)
                v.views[key] = self.const(arr, "const")
            return v.views[key]
        if v.flat is not None:
            if "plain" not in v.views:
                c, h, w = v.flat
                n = v.shape[0]
                r1 = self.emit("Reshape", v.t, name="unflatten", shape=[n, h, w, c])
                r2 = self.emit("Transpose", r1, name="to_nchw", perm=[0, 3, 1, 2])
                v.views["plain"] = self.emit("Reshape", r2, name="flatten_nchw", shape=[n, c * h * w])
                self.transposes.append(f"{v.shape} flattened NHWC -> flattened NCHW (for a consumer that is not a "
                                       f"constant-weight Gemm/MatMul)")
            if perm is not None:
                raise UnsupportedOpError("onnx: internal: permuting a flattened tensor", 5)
            return v.views["plain"]
        if perm == v.perm or v.rank <= 1:
            return v.t
        if perm in v.views:
            return v.views[perm]
        src = v.perm or _ident(v.rank)
        tgt = perm or _ident(v.rank)
        inv = _inv(src)
        u = [inv[tgt[j]] for j in range(v.rank)]
        # Moving only size-1 dims is a Reshape.
        rt = v.rt_shape()
        nontriv = [a for a in u if rt[a] != 1]
        if nontriv == sorted(nontriv):
            t = self.emit("Reshape", v.t, name="reshape", shape=[rt[a] for a in u])
        else:
            t = self.emit("Transpose", v.t, name="transpose", perm=u)
            self.transposes.append(f"{v.shape} {'NHWC' if src == NHWC else src} -> "
                                   f"{'NHWC' if tgt == NHWC else 'ONNX order' if tgt == _ident(v.rank) else tgt}")
        v.views[perm] = t
        return t

    def fval(self, name: str) -> Val:
        """A float value (refuses integer and quantized tensors)."""
        v = self.val(name)
        if v.kind == "deq":
            raise UnsupportedOpError(f"onnx: arithmetic on the quantized tensor '{name}' is not supported", 5)
        if v.kind == "real" and v.dtype != np.float32:
            if v.const is not None and v.dtype.kind == "f":
                return Val(None, v.shape, np.float32, const=v.const.astype(np.float32))
            raise UnsupportedOpError(f"onnx: tensor '{name}' has dtype {v.dtype}; the runtime computes in float32", 5)
        return v

    def set(self, name: str, v: Val):
        self.vals[name] = v

    def take_activation(self, out: str, allow=(1, 2, 3)) -> Tuple[int, str]:
        """Fuses a following Relu / Clip into the producer of `out`: (activation code, new output name)."""
        c = self._single(out)
        if c is None or c.dead or c.domain:
            return 0, out
        code = 0
        if c.op == "Relu":
            code = 1
        elif c.op == "Clip":
            lo = self._scalar(c.inp(1)) if c.inp(1) else -math.inf
            hi = self._scalar(c.inp(2)) if c.inp(2) else math.inf
            if lo is None or hi is None:
                return 0, out
            code = {(0.0, 6.0): 2, (0.0, math.inf): 1, (-1.0, 1.0): 3}.get((lo, hi), 0)
        if code not in allow:
            return 0, out
        c.dead = True
        self.report.fused.append(f"{c.label()} into the activation of the op making '{out}'")
        return code, c.outputs[0]

    def perm_for(self, vals: List[Val], rank: int):
        """The layout an elementwise op works in: that of its largest non-constant input of full rank."""
        best = None
        for v in vals:
            if v.const is None and v.rank == rank and v.flat is None:
                if best is None or np.prod(v.shape) > np.prod(best.shape):
                    best = v
        return best.perm if best is not None else None

    def operand(self, v: Val, perm, rank: int) -> _T:
        """v as an operand of a broadcasting op of rank `rank` working in layout perm."""
        if perm is None:
            if v.const is not None and v.const.ndim == 0:
                return self.get(v)
            return self.get(v, None)
        if v.const is not None:
            arr = v.const.reshape((1,) * (rank - v.const.ndim) + v.const.shape)
            if arr.size == 1:
                return self.get(Val(None, (1,), arr.dtype, const=arr.reshape(1)))
            return self.const(np.transpose(arr, perm), "const")
        if v.rank == rank:
            return self.get(v, perm)
        if v.rank == 0 or int(np.prod(v.shape)) == 1:
            return self.get(v, None)
        padded = (1,) * (rank - v.rank) + v.shape
        t = self.get(v, None)
        r = self.emit("Reshape", t, name="bcast", shape=list(padded))
        tmp = Val(r, padded, v.dtype)
        return self.get(tmp, perm)

    # -- the main loop ------------------------------------------------------
    def _emit_all(self) -> GraphBuilder:
        self.b = _Graph(self.name, producer="tinyinfer.convert.onnx")
        self.trace = [] if os.environ.get("TINF_ONNX_TRACE") else None
        self.used_names = set(self.in_types) | set(self.outputs)
        self.named_outputs = set()
        self.claimed = set()
        self.transposes: List[str] = []
        self.dql_count = 0
        self.vals: Dict[str, Val] = {}
        self.qconsts: Dict[str, tuple] = {}
        self.qconst_folded = set()
        for nm, (dt, sh) in self.in_types.items():
            t = self.b.input(nm, sh if sh else (1,), dt)
            self.vals[nm] = Val(t, sh, dt)
        for n in self.nodes:
            if n.dead:
                continue
            handler = getattr(self, self._handler_name(n))
            try:
                handler(n)
            except UnsupportedOpError as e:
                msg = e.message if hasattr(e, "message") else str(e)
                if n.label() not in msg:
                    msg = f"{msg.rstrip('.')} (in {n.label()}); nothing was written"
                raise UnsupportedOpError(msg, 5) from None
        self._emit_outputs()
        if self.transposes:
            self.report.notes.append(f"{len(self.transposes)} layout Transpose(s) inserted: "
                                     + "; ".join(self.transposes[:8]) + (" ..." if len(self.transposes) > 8 else ""))
        if self.dql_count:
            self.report.notes.append(
                f"DynamicQuantizeLinear x{self.dql_count}: scale and zero point computed at run time (MaxPool2D over "
                f"the tensor for max and -min); round(x / scale) through an int16 Quantize, then + zero point and "
                f"saturation through a uint8 Quantize, as ONNX specifies")
        if self.trace is not None:
            print("\n".join(self.trace))
        if self.qconsts or any(v.kind != "real" for v in self.vals.values()):
            self.report.notes.append(
                "quantized ONNX ops are simulated: activations quantized by QuantizeLinear/QLinear* outputs go "
                "through Quantize (round half to even) + Dequantize and ops compute in float32; int8 weights stay "
                "int8 in the file with a Dequantize op" if self.keep_int8 else
                "quantized ONNX ops are simulated in float32; 8-bit weights were dequantized at conversion")
        return self.b.finish(self.report)

    def _emit_outputs(self):
        for nm in self.outputs:
            v = self.val(nm)
            if v.kind == "intf":
                raise UnsupportedOpError(f"onnx: graph output '{nm}' is an integer ({v.dtype}) tensor", 5)
            if v.kind == "deq" and v.dtype.kind in "iu":
                if v.qt is None or v.perm is not None or v.flat is not None:
                    s, z, qd = v.q
                    qt = self.emit("Quantize", self.get(v, None), out_names=[nm], dtype=3 if qd == np.int8 else 4,
                                   mode=1)
                    self.b.quantization(qt[0], s, z)
                    self.named_outputs.add(nm)
                    continue
                v = Val(v.qt, v.shape, v.dtype)
            if v.t is not None and v.t.name == nm and v.perm is None and v.flat is None:
                continue
            if v.const is not None or v.flat is not None or v.perm is None:
                t = self.get(v, None)
                if t.name == nm:
                    continue
                self.emit("Reshape", t, out_names=[nm], shape=list(v.shape) or [1])
            else:
                src = v.perm
                inv = _inv(src)
                u = [inv[j] for j in range(v.rank)]
                self.emit("Transpose", v.t, out_names=[nm], perm=u)
            self.named_outputs.add(nm)
        for nm in self.outputs:
            self.b.output(self._tensor_by_name(nm))

    def _tensor_by_name(self, nm) -> _T:
        return _T(nm)

    def _out_shape(self, n: Node, i: int = 0) -> Tuple[int, ...]:
        return self._shape(n.outputs[i])

    # -- elementwise ----------------------------------------------------------
    def _binary(self, n: Node, op: str, a_name: str, b_name: str, out: str, act_ok=True):
        a, b = self.fval(a_name), self.fval(b_name)
        shape = self._shape(out) if out in self.types else np.broadcast_shapes(a.shape, b.shape)
        r = len(shape)
        perm = self.perm_for([a, b], r)
        ta, tb = self.operand(a, perm, r), self.operand(b, perm, r)
        act, final = (self.take_activation(out) if act_ok else (0, out))
        t = self.emit(op, ta, tb, name=self.out_name(final, perm is None), activation=act or None)
        self.set(final, Val(t, shape, np.float32, perm))
        return final

    def _op_Add(self, n):
        self._emit_maybe_intf(n, "Add")

    def _op_Sub(self, n):
        self._emit_maybe_intf(n, "Sub")

    def _op_Mul(self, n):
        self._emit_maybe_intf(n, "Mul")

    def _op_Div(self, n):
        self._emit_maybe_intf(n, "Div")

    def _emit_maybe_intf(self, n, op):
        a, b = self.val(n.inputs[0]), self.val(n.inputs[1])
        if "intf" in (a.kind, b.kind):  # integer arithmetic on exact float-held integers (Add/Sub/Mul only)
            if op == "Div":
                raise UnsupportedOpError("onnx: integer Div is not supported", 5)
            ta = self.operand(self._as_float_val(a), None, len(self._out_shape(n)))
            tb = self.operand(self._as_float_val(b), None, len(self._out_shape(n)))
            t = self.emit(op, ta, tb, name=n.outputs[0])
            self.set(n.outputs[0], Val(t, self._out_shape(n), self._dtype(n.outputs[0]), kind="intf"))
            return
        self._binary(n, op, n.inputs[0], n.inputs[1], n.outputs[0])

    def _as_float_val(self, v: Val) -> Val:
        if v.const is not None:
            return Val(None, v.shape, np.float32, const=v.const.astype(np.float32))
        if v.perm is not None or v.flat is not None:
            return Val(self.get(v, None), v.shape, np.float32)
        return v

    def _op_Sum(self, n):
        self._chain(n, "Add")

    def _op_Max(self, n):
        self._chain(n, "Maximum")

    def _op_Min(self, n):
        self._chain(n, "Minimum")

    def _chain(self, n, op):
        ins = [i for i in n.inputs if i]
        if len(ins) == 1:
            self.set(n.outputs[0], self.fval(ins[0]))
            return
        cur = ins[0]
        for k, nxt in enumerate(ins[1:]):
            last = k == len(ins) - 2
            out = n.outputs[0] if last else self._fresh(n.outputs[0] + f"_part{k}")
            if not last:
                self.types[out] = (np.dtype(np.float32),
                                   tuple(np.broadcast_shapes(self.fval(cur).shape, self.fval(nxt).shape)))
            cur = self._binary(n, op, cur, nxt, out, act_ok=last and op == "Add")

    def _op_PRelu(self, n):
        x, s = self.fval(n.inputs[0]), self.fval(n.inputs[1])
        perm = x.perm if x.flat is None else None
        ts = self.operand(s, perm, x.rank)
        t = self.emit("PRelu", self.get(x, perm), ts, name=self.out_name(n.outputs[0], perm is None))
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm))

    def _ew_in(self, x: Val):
        """An elementwise op's input as the runtime holds it: (tensor, perm, flat); the output keeps that layout."""
        if x.const is not None:
            return self.get(x, None), None, None
        return x.t, x.perm, x.flat

    def _unary(self, n, op, out=None, src=None, **attrs):
        x = self.fval(src or n.inputs[0])
        out = out or n.outputs[0]
        tx0, perm, flat = self._ew_in(x)
        t = self.emit(op, tx0, name=self.out_name(out, perm is None and flat is None), **attrs)
        self.set(out, Val(t, x.shape, np.float32, perm, flat=flat))

    def _op_Relu(self, n):
        self._unary(n, "Relu")

    def _op_Sigmoid(self, n):
        self._unary(n, "Logistic")

    def _op_Tanh(self, n):
        self._unary(n, "Tanh")

    def _op_Exp(self, n):
        self._unary(n, "Exp")

    def _op_Log(self, n):
        self._unary(n, "Log")

    def _op_Sqrt(self, n):
        self._unary(n, "Sqrt")

    def _op_Rsqrt(self, n):
        self._unary(n, "Rsqrt")

    def _op_HardSwish(self, n):
        self._unary(n, "HardSwish")

    def _op_LeakyRelu(self, n):
        self._unary(n, "LeakyRelu", alpha=float(n.attrs.get("alpha", 0.01)))

    def _op_Gelu(self, n):
        approx = n.attrs.get("approximate", "none")
        if approx not in ("none", "tanh"):
            raise UnsupportedOpError(f"onnx: Gelu approximate='{approx}'", 5)
        self._unary(n, "Gelu", approximate=0 if approx == "none" else 1)

    def _op_Identity(self, n):
        self.set(n.outputs[0], self.val(n.inputs[0]))

    def _op_Dropout(self, n):
        if len(n.outputs) > 1 and n.outputs[1] and self._live_consumers(n.outputs[1]):
            raise UnsupportedOpError("onnx: the mask output of Dropout is used", 5)
        self.set(n.outputs[0], self.val(n.inputs[0]))
        self.report.dropped.append(f"{n.label()} (inference)")

    def _op_Neg(self, n):
        x = self.fval(n.inputs[0])
        tx0, perm, flat = self._ew_in(x)
        t = self.emit("Mul", tx0, self.const(np.array([-1], np.float32), "minus_one"),
                      name=self.out_name(n.outputs[0], perm is None and flat is None))
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))

    def _op_Abs(self, n):
        x = self.fval(n.inputs[0])
        tx0, perm, flat = self._ew_in(x)
        tx = tx0
        neg = self.emit("Mul", tx, self.const(np.array([-1], np.float32), "minus_one"), name="neg")
        t = self.emit("Maximum", tx, neg, name=self.out_name(n.outputs[0], perm is None and flat is None))
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))

    def _op_Reciprocal(self, n):
        x = self.fval(n.inputs[0])
        tx0, perm, flat = self._ew_in(x)
        t = self.emit("Div", self.const(np.array([1], np.float32), "one"), tx0,
                      name=self.out_name(n.outputs[0], perm is None and flat is None))
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))

    def _op_Pow(self, n):
        e = self._scalar(n.inp(1))
        if e is None:
            raise UnsupportedOpError("onnx: Pow needs a constant scalar exponent", 5)
        x = self.fval(n.inputs[0])
        tx0, perm, flat = self._ew_in(x)
        tx = tx0
        nm = self.out_name(n.outputs[0], perm is None and flat is None)
        if e == 1.0:
            self.set(n.outputs[0], x)
            return
        if e == 2.0:
            t = self.emit("Mul", tx, tx, name=nm)
        elif e == 3.0:
            t = self.emit("Mul", self.emit("Mul", tx, tx, name="square"), tx, name=nm)
        elif e == 0.5:
            t = self.emit("Sqrt", tx, name=nm)
        elif e == -0.5:
            t = self.emit("Rsqrt", tx, name=nm)
        elif e == -1.0:
            t = self.emit("Div", self.const(np.array([1], np.float32), "one"), tx, name=nm)
        else:
            raise UnsupportedOpError(f"onnx: Pow with exponent {e} (supported: 1, 2, 3, 0.5, -0.5, -1)", 5)
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))

    def _op_Clip(self, n):
        lo = self._scalar(n.inp(1)) if n.inp(1) else -math.inf
        hi = self._scalar(n.inp(2)) if n.inp(2) else math.inf
        if lo is None or hi is None:
            raise UnsupportedOpError("onnx: Clip needs constant bounds", 5)
        x = self.fval(n.inputs[0])
        tx0, perm, flat = self._ew_in(x)
        tx = tx0
        nm = self.out_name(n.outputs[0], perm is None and flat is None)
        if lo == 0 and hi == 6:
            t = self.emit("Relu6", tx, name=nm)
        elif lo == 0 and hi == math.inf:
            t = self.emit("Relu", tx, name=nm)
        else:
            t = tx
            if lo > -math.inf:
                t = self.emit("Maximum", t, self.const(np.array([lo], np.float32), "clip_lo"),
                              name=nm if hi == math.inf else "clip_lo")
            if hi < math.inf:
                t = self.emit("Minimum", t, self.const(np.array([hi], np.float32), "clip_hi"), name=nm)
            if t is tx:
                self.set(n.outputs[0], x)
                return
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))

    def _op_HardSigmoid(self, n):
        alpha, beta = float(n.attrs.get("alpha", 0.2)), float(n.attrs.get("beta", 0.5))
        x = self.fval(n.inputs[0])
        tx0, perm, flat = self._ew_in(x)
        t = self.emit("Mul", tx0, self.const(np.array([alpha], np.float32), "hs_alpha"), name="hs")
        t = self.emit("Add", t, self.const(np.array([beta], np.float32), "hs_beta"), name="hs", activation=1)
        t = self.emit("Minimum", t, self.const(np.array([1], np.float32), "one"),
                      name=self.out_name(n.outputs[0], perm is None and flat is None))
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))

    def _op_Cast(self, n):
        v = self.val(n.inputs[0])
        to = _np_dtype(n.attrs["to"])
        if v.kind == "intf" and to == np.float32:
            self.set(n.outputs[0], Val(v.t, v.shape, np.float32, v.perm, flat=v.flat))
            return
        if v.kind == "real" and v.dtype == to:
            self.set(n.outputs[0], v)
            return
        raise UnsupportedOpError(f"onnx: Cast from {v.dtype} to {to} of a run-time tensor (the runtime has no Cast)",
                                 5)

    # -- softmax, normalization ----------------------------------------------------
    def _axis_op(self, n, op, **attrs):
        x = self.fval(n.inputs[0])
        axis = n.attrs.get("axis", -1) % max(x.rank, 1)
        perm = x.perm if x.flat is None else None
        rax = (perm.index(axis) if perm else axis)
        t = self.emit(op, self.get(x, perm), name=self.out_name(n.outputs[0], perm is None), axis=rax, **attrs)
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm))

    def _op_Softmax(self, n):
        self._axis_op(n, "Softmax")

    def _op_LogSoftmax(self, n):
        self._axis_op(n, "LogSoftmax")

    def _op_LayerNormalization(self, n):
        if any(o and self._live_consumers(o) or o in self.output_set for o in n.outputs[1:] if o):
            raise UnsupportedOpError("onnx: LayerNormalization Mean/InvStdDev outputs are used", 5)
        x = self.fval(n.inputs[0])
        r = x.rank
        axis = n.attrs.get("axis", -1) % r
        norm = list(range(axis, r))
        perm = x.perm if x.flat is None else None
        if perm is not None and sorted(perm[axis:]) != norm:
            perm = None
        sub = None if perm is None else [a - axis for a in perm[axis:]]
        gamma = np.broadcast_to(self.cval(n.inputs[1]).astype(np.float32), x.shape[axis:])
        tg = self.const(gamma if sub is None else np.transpose(gamma, sub), "ln_gamma")
        tb = None
        if n.inp(2):
            beta = np.broadcast_to(self.cval(n.inputs[2]).astype(np.float32), x.shape[axis:])
            tb = self.const(beta if sub is None else np.transpose(beta, sub), "ln_beta")
        t = self.emit("LayerNorm", self.get(x, perm), tg, tb, name=self.out_name(n.outputs[0], perm is None),
                      axis=axis, epsilon=float(n.attrs.get("epsilon", 1e-5)))
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm))

    def _op_BatchNormalization(self, n):
        if n.attrs.get("training_mode", 0):
            raise UnsupportedOpError("onnx: BatchNormalization in training mode", 5)
        x = self.fval(n.inputs[0])
        perm = _cl(x.rank)
        prm = [self.cval(i).astype(np.float32) for i in n.inputs[1:5]]
        ts = [self.const(a, nm) for a, nm in zip(prm, ("bn_scale", "bn_bias", "bn_mean", "bn_var"))]
        t = self.emit("BatchNorm", self.get(x, perm), *ts, name=self.out_name(n.outputs[0], perm is None),
                      epsilon=float(n.attrs.get("epsilon", 1e-5)))
        self.set(n.outputs[0], Val(t, x.shape, np.float32, perm))

    # -- convolution ------------------------------------------------------------
    def _conv_pads(self, n, in_hw, k_hw, strides, dil, one_d=False):
        """Runtime padding (padding, pads [t, b, l, r]) for ONNX auto_pad / pads on the (lifted) 2-D window."""
        auto = n.attrs.get("auto_pad", "NOTSET")
        if auto == "VALID":
            return 0, None
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            rt = []
            for i in range(2):
                out = -(-in_hw[i] // strides[i])
                total = max((out - 1) * strides[i] + (k_hw[i] - 1) * dil[i] + 1 - in_hw[i], 0)
                small = total // 2
                rt += [small, total - small] if auto == "SAME_UPPER" else [total - small, small]
            if auto == "SAME_UPPER":
                return 1, None
            return (2, rt) if any(rt) else (0, None)
        p = [int(v) for v in n.attrs.get("pads", [0] * (2 if one_d else 4))]
        rt = [0, 0, p[0], p[1]] if one_d else [p[0], p[2], p[1], p[3]]  # ONNX [h0, w0, h1, w1] -> [t, b, l, r]
        if any(v < 0 for v in rt):
            raise UnsupportedOpError("onnx: negative pads", 5)
        if not any(rt):
            return 0, None
        return 2, rt

    def _spatial_in(self, x: Val) -> Tuple[_T, Tuple[int, ...], bool]:
        """NHWC runtime tensor of an ONNX NCHW (or NCW, lifted to H = 1) value: (tensor, NCHW shape, was_1d)."""
        if x.rank == 4:
            return self.get(x, NHWC), x.shape, False
        if x.rank == 3:
            t = self.get(x, (0, 2, 1))
            nb, c, l = x.shape
            t = self.emit("Reshape", t, name="to_2d", shape=[nb, 1, l, c])
            return t, (nb, c, 1, l), True
        raise UnsupportedOpError(f"onnx: spatial op on a rank-{x.rank} tensor (2-D and 1-D only)", 5)

    def _spatial_out(self, t: _T, out_name: str, out_shape, was_1d: bool, kind="real", q=None, dtype=np.float32) -> Val:
        if was_1d:
            nb, c, l = out_shape
            t = self.emit("Reshape", t, name=self.out_name(out_name, False), shape=[nb, l, c])
            return Val(t, out_shape, dtype, (0, 2, 1), kind=kind, q=q)
        return Val(t, out_shape, dtype, NHWC, kind=kind, q=q)

    def _conv_core(self, n, xt, xshape, ws: WeightSrc, bias, out_shape, final_name, act):
        """Conv2D / DepthwiseConv2D on NHWC input xt; ws in ONNX OIHW (or OIW) order. Returns the runtime tensor."""
        one_d = len(ws.shape) == 3
        if one_d:
            ws = ws.transform(lambda a: a[:, :, None, :], lambda ax: ax if ax < 2 else ax + 1)
        cin = xshape[1]
        cout, cg, kh, kw = ws.shape
        group = int(n.attrs.get("group", 1))
        strides = [int(s) for s in n.attrs.get("strides", [1] * (1 if one_d else 2))]
        dil = [int(d) for d in n.attrs.get("dilations", [1] * (1 if one_d else 2))]
        if one_d:
            strides, dil = [1] + strides, [1] + dil
        padding, pads = self._conv_pads(n, xshape[2:], (kh, kw), strides, dil, one_d)
        btensor = None if bias is None else self.const(np.asarray(bias, np.float32).reshape(-1), f"{final_name}_bias")
        nm = self.out_name(final_name, False)
        common = dict(strides=strides, dilations=dil, padding=padding, pads=pads, activation=act or None)
        to_ohwi = (lambda a: np.transpose(a, (0, 2, 3, 1)), lambda ax: [0, 3, 1, 2][ax])
        if group == 1:
            w = self.emit_weight(ws.transform(*to_ohwi), f"{final_name}_w")
            t = self.emit("Conv2D", xt, w, btensor, name=nm, **common)
        elif group == cin and cg == 1 and cout % cin == 0:
            m = cout // cin
            w = self.emit_weight(ws.transform(lambda a: np.transpose(a, (1, 2, 3, 0)), lambda ax: [3, 0, 1, 2][ax]),
                                 f"{final_name}_w")
            t = self.emit("DepthwiseConv2D", xt, w, btensor, name=nm, depth_multiplier=m if m > 1 else None, **common)
        else:
            w = self.emit_weight(ws.transform(*to_ohwi), f"{final_name}_w")
            t = self.emit("Conv2D", xt, w, btensor, name=nm, groups=group, **common)
        return t

    def _op_Conv(self, n):
        x = self.fval(n.inputs[0])
        ws = self.weight(n.inputs[1])
        bias = self.cval(n.inp(2)).astype(np.float32) if n.inp(2) else None
        xt, xshape, one_d = self._spatial_in(x)
        act, final = self.take_activation(n.outputs[0])
        out_shape = self._shape(n.outputs[0])
        oshape4 = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
        t = self._conv_core(n, xt, xshape, ws, bias, oshape4, final, act)
        self.set(final, self._spatial_out(t, final, out_shape, one_d))

    def _op_ConvTranspose(self, n):
        x = self.fval(n.inputs[0])
        ws = self.weight(n.inputs[1])
        if n.attrs.get("group", 1) != 1:
            raise UnsupportedOpError("onnx: ConvTranspose with group > 1", 5)
        bias = self.cval(n.inp(2)).astype(np.float32) if n.inp(2) else None
        xt, xshape, one_d = self._spatial_in(x)
        if one_d:
            ws = ws.transform(lambda a: a[:, :, None, :])
        act, final = self.take_activation(n.outputs[0])
        out_shape = self._shape(n.outputs[0])
        oshape = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
        cin, cout, kh, kw = ws.shape
        lift = (lambda L: [1] + list(L)) if one_d else (lambda L: list(L))
        strides = lift(n.attrs.get("strides", [1] * (2 - one_d)))
        dil = lift(n.attrs.get("dilations", [1] * (2 - one_d)))
        op = n.attrs.get("output_padding", [0] * (2 - one_d))
        op = ([0] + list(op)) if one_d else list(op)
        auto = n.attrs.get("auto_pad", "NOTSET")
        pads_rt = []
        for i in range(2):
            full = (xshape[2 + i] - 1) * strides[i] + op[i] + (oshape[2 + i] * 0) + ((kh, kw)[i] - 1) * dil[i] + 1
            total = full - oshape[2 + i]
            if auto == "NOTSET" and "output_shape" not in n.attrs:
                p = list(n.attrs.get("pads", [0] * (4 - 2 * one_d)))
                p = ([0, p[0], 0, p[1]] if one_d else p)
                b_, e_ = p[i], p[i + 2]
            else:
                if total % 2:
                    raise UnsupportedOpError("onnx: ConvTranspose output_shape/auto_pad with an odd total padding "
                                             "(ambiguous between ONNX versions)", 5)
                b_ = e_ = total // 2
            if b_ + e_ != total or b_ < 0 or e_ < 0:
                raise UnsupportedOpError(f"onnx: ConvTranspose padding ({b_}, {e_}) does not give the inferred "
                                         f"output size", 5)
            pads_rt += [b_, e_]
        w = self.emit_weight(ws.transform(lambda a: np.transpose(a, (1, 2, 3, 0)), lambda ax: [3, 0, 1, 2][ax]),
                             f"{final}_w")
        btensor = None if bias is None else self.const(bias, f"{final}_bias")
        t = self.emit("TransposeConv2D", xt, w, btensor, name=self.out_name(final, False), strides=strides,
                      dilations=dil, padding=2 if any(pads_rt) else 0, pads=pads_rt if any(pads_rt) else None,
                      output_padding=op if any(op) else None, activation=act or None)
        self.set(final, self._spatial_out(t, final, out_shape, one_d))

    # -- pooling ------------------------------------------------------------
    def _pool(self, n, op):
        x = self.val(n.inputs[0])
        if x.kind == "intf" or (x.kind == "real" and x.dtype != np.float32):
            raise UnsupportedOpError(f"onnx: {n.op} on a {x.dtype} tensor", 5)
        if op == "AveragePool2D" and x.kind == "deq":
            raise UnsupportedOpError("onnx: AveragePool on a quantized tensor", 5)
        if len(n.outputs) > 1 and n.outputs[1]:
            raise UnsupportedOpError("onnx: MaxPool indices output", 5)
        ks = [int(k) for k in n.attrs["kernel_shape"]]
        if any(d != 1 for d in n.attrs.get("dilations", [1] * len(ks))):
            raise UnsupportedOpError(f"onnx: {n.op} with dilations", 5)
        xt, xshape, one_d = self._spatial_in(x)
        out_shape = self._shape(n.outputs[0])
        oshape = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
        strides = [int(s) for s in n.attrs.get("strides", [1] * len(ks))]
        if one_d:
            ks, strides = [1] + ks, [1] + strides
        in_hw = xshape[2:]
        padding, pads = self._conv_pads(n, in_hw, ks, strides, [1, 1], one_d)
        if padding == 1:
            pads = self._same_pads(in_hw, ks, strides)
        pads0 = list(pads or [0, 0, 0, 0])
        pads = list(pads0)
        cip = int(n.attrs.get("count_include_pad", 0)) if op == "AveragePool2D" else 0
        if n.attrs.get("ceil_mode", 0):
            for i in range(2):  # onnxruntime's / PyTorch's rule: the last window starts inside input + left pad
                tot = in_hw[i] + pads0[2 * i] + pads0[2 * i + 1] - ks[i]
                o = -(-tot // strides[i]) + 1
                if (o - 1) * strides[i] >= in_hw[i] + pads0[2 * i]:
                    o -= 1
                if o != oshape[2 + i]:
                    raise UnsupportedOpError(
                        f"onnx: {n.op} with ceil_mode: ONNX shape inference gives output size {oshape[2 + i]}, "
                        f"onnxruntime's rule (last window starts inside the input) gives {o}", 5)
        ceil_fix = False
        for i in range(2):
            rt_out = (in_hw[i] + pads[2 * i] + pads[2 * i + 1] - ks[i]) // strides[i] + 1
            if rt_out != oshape[2 + i]:
                extra = (oshape[2 + i] - 1) * strides[i] + ks[i] - (in_hw[i] + pads[2 * i] + pads[2 * i + 1])
                if extra <= 0 or not n.attrs.get("ceil_mode", 0):
                    raise UnsupportedOpError(f"onnx: {n.op} output size {oshape[2 + i]} does not match the "
                                             f"runtime's {rt_out}", 5)
                ceil_fix = True
                pads[2 * i + 1] += extra
        corr = None
        if ceil_fix and cip:
            # ONNX divides by the window clipped to input + pads (not the extra ceil-mode cells): average over the
            # real cells (count_include_pad 0), then scale each output by real cells / ONNX divisor (a constant).
            corr = np.outer(*[self._avg_correction(in_hw[i], ks[i], strides[i], pads0[2 * i], pads0[2 * i + 1],
                                                   oshape[2 + i]) for i in range(2)])
            cip = 0
        if any(p >= k for p, k in zip(pads, [ks[0], ks[0], ks[1], ks[1]])):
            raise UnsupportedOpError(f"onnx: {n.op} padding {pads} not smaller than the window {ks}", 5)
        if x.kind == "real" and corr is None:
            act, final = self.take_activation(n.outputs[0])
        else:
            act, final = 0, n.outputs[0]
        nm = self.out_name(final, False) if corr is None else "avgpool"
        t = self.emit(op, xt, name=nm, filter=ks, strides=strides, padding=2 if any(pads) else 0,
                      pads=pads if any(pads) else None, count_include_pad=cip or None, activation=act or None)
        if ceil_fix:
            self.report.notes.append(f"{n.label()}: ceil_mode as extra bottom/right padding"
                                     + (" with a divisor correction" if corr is not None else ""))
        if corr is not None:
            m = corr.astype(np.float32).reshape(1, oshape[2], oshape[3], 1)
            t = self.emit("Mul", t, self.const(m, "avgpool_divisor"), name=self.out_name(final, False))
        self.set(final, self._spatial_out(t, final, out_shape, one_d, kind=x.kind, q=x.q, dtype=x.dtype))

    @staticmethod
    def _same_pads(in_hw, ks, strides):
        pads = []
        for i in range(2):
            out = -(-in_hw[i] // strides[i])
            total = max((out - 1) * strides[i] + ks[i] - in_hw[i], 0)
            pads += [total // 2, total - total // 2]
        return pads

    @staticmethod
    def _avg_correction(inp, k, s, pb, pe, out):
        """Per output position of one dim: real cells in the window / the ONNX count_include_pad divisor."""
        res = []
        for o in range(out):
            start = o * s - pb
            end = min(start + k, inp + pe)
            res.append((min(start + k, inp) - max(start, 0)) / (end - start))
        return np.array(res)

    def _op_MaxPool(self, n):
        self._pool(n, "MaxPool2D")

    def _op_AveragePool(self, n):
        self._pool(n, "AveragePool2D")

    def _op_GlobalAveragePool(self, n):
        x = self.fval(n.inputs[0])
        perm = _cl(x.rank)
        axes = list(range(1, x.rank - 1))
        t = self.emit("Mean", self.get(x, perm), name=self.out_name(n.outputs[0], False), axes=axes, keep_dims=1)
        self.set(n.outputs[0], Val(t, self._out_shape(n), np.float32, perm))

    def _op_GlobalMaxPool(self, n):
        x = self.val(n.inputs[0])
        xt, xshape, one_d = self._spatial_in(x)
        t = self.emit("MaxPool2D", xt, name=self.out_name(n.outputs[0], False), filter=list(xshape[2:]))
        self.set(n.outputs[0], self._spatial_out(t, n.outputs[0], self._out_shape(n), one_d, kind=x.kind, q=x.q,
                                                 dtype=x.dtype))

    # -- reductions ---------------------------------------------------------------
    def _reduce(self, n, mode: str):
        """ReduceMean (Mean), ReduceSum (Mean * count), ReduceMax / ReduceMin (MaxPool2D over a reshaped view of
        contiguous reduced dims; min as -max(-x))."""
        x = self.fval(n.inputs[0])
        axes = self._axes_of(n)
        if axes is None:
            raise UnsupportedOpError("onnx: reduction axes must be constant", 5)
        if not axes:
            if n.attrs.get("noop_with_empty_axes", 0):
                self.set(n.outputs[0], x)
                return
            axes = list(range(x.rank))
        axes = sorted(set(a % x.rank for a in axes))
        keep = int(n.attrs.get("keepdims", 1))
        perm = x.perm if x.flat is None else None
        rax = sorted((perm or _ident(x.rank)).index(a) for a in axes)
        if mode in ("max", "min") and rax != list(range(rax[0], rax[-1] + 1)):
            perm, rax = None, axes  # not contiguous in the runtime layout: ONNX order
            if rax != list(range(rax[0], rax[-1] + 1)):
                raise UnsupportedOpError(f"onnx: {n.op} over non-adjacent axes {axes}", 5)
        p = perm or _ident(x.rank)
        out_shape = self._out_shape(n)
        if keep:
            out_perm = perm
        else:
            remaining = [a for a in p if a not in axes]
            renum = {a: k for k, a in enumerate(sorted(remaining))}
            out_perm = _norm([renum[a] for a in remaining]) if remaining else None
        if not out_shape:
            out_perm = None
        final = self.out_name(n.outputs[0], out_perm is None)
        xt = self.get(x, perm)
        if mode in ("mean", "sum"):
            t = self.emit("Mean", xt, name=final if mode == "mean" else "sum_mean", axes=rax, keep_dims=keep)
            if mode == "sum":
                cnt = float(np.prod([x.shape[a] for a in axes]))
                t = self.emit("Mul", t, self.const(np.array([cnt], np.float32), "count"), name=final)
        else:
            rt = [x.shape[a] for a in p]
            o = int(np.prod(rt[:rax[0]]))
            r = int(np.prod(rt[rax[0]:rax[-1] + 1]))
            i = int(np.prod(rt[rax[-1] + 1:]))
            if r > (1 << 20):
                raise UnsupportedOpError(f"onnx: {n.op} over {r} elements (at most 2**20)", 5)
            if mode == "min":
                xt = self.emit("Mul", xt, self.const(np.array([-1], np.float32), "minus_one"), name="neg")
            t = self.emit("Reshape", xt, name="reduce_view", shape=[o, r, 1, i])
            t = self.emit("MaxPool2D", t, name="reduce_max", filter=[r, 1])
            if mode == "min":
                t = self.emit("Mul", t, self.const(np.array([-1], np.float32), "minus_one"), name="neg")
            rt_out = [d if k not in rax else 1 for k, d in enumerate(rt)] if keep else \
                [d for k, d in enumerate(rt) if k not in rax]
            t = self.emit("Reshape", t, name=final, shape=rt_out or [1])
        self.set(n.outputs[0], Val(t, out_shape, np.float32, out_perm))

    def _op_ReduceMean(self, n):
        self._reduce(n, "mean")

    def _op_ReduceSum(self, n):
        self._reduce(n, "sum")

    def _op_ReduceMax(self, n):
        self._reduce(n, "max")

    def _op_ReduceMin(self, n):
        self._reduce(n, "min")

    def _op_Expand(self, n):
        x = self.fval(n.inputs[0])
        out_shape = self._out_shape(n)
        r = len(out_shape)
        xs = (1,) * (r - x.rank) + x.shape
        zshape = tuple(o if xd == 1 else 1 for o, xd in zip(out_shape, xs))
        if all(z == 1 for z in zshape):
            self.set(n.outputs[0], self._reshape_to(x, out_shape, n.outputs[0]))
            return
        perm = x.perm if x.rank == r and x.flat is None else None
        zeros = Val(None, zshape, np.float32, const=np.zeros(zshape, np.float32))
        t = self.emit("Add", self.operand(x, perm, r), self.operand(zeros, perm, r),
                      name=self.out_name(n.outputs[0], perm is None))
        self.set(n.outputs[0], Val(t, out_shape, np.float32, perm))
        self.report.notes.append(f"{n.label()}: Expand as Add of zeros (broadcast)")

    # -- gemm / matmul --------------------------------------------------------
    def _fc(self, a: Val, ws: WeightSrc, bias, out_name: str, out_shape, allow_bias_add=True):
        """FullyConnected: a [..., K] @ ws[N, K].T (+ bias); a may be flat (weights permuted)."""
        nout = ws.shape[0]
        perm = None
        if a.flat is not None:
            c, h, w = a.flat
            ws = ws.transform(lambda m: m.reshape(m.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(m.shape[0], -1),
                              lambda ax: ax)
            self.report.fused.append(f"NCHW flatten before '{out_name}': weight columns permuted to NHWC order "
                                     f"instead of transposing the activations")
            at = a.t
        elif a.perm is not None and a.perm[-1] == a.rank - 1:
            perm = a.perm
            at = a.t
        else:
            at = self.get(a, None)
        final = out_name
        if allow_bias_add:
            c = self._single(out_name)
            if c is not None and c.op == "Add" and not c.domain and len(c.inputs) == 2:
                other = c.inputs[1] if c.inputs[0] == out_name else c.inputs[0]
                if other != out_name and other in self.consts and self.consts[other].dtype.kind == "f":
                    arr = self.consts[other].astype(np.float32)
                    if arr.ndim <= len(out_shape) and arr.size == nout and arr.shape[-1] == nout:
                        bias = arr.reshape(nout) + (0 if bias is None else bias)
                        c.dead = True
                        final = c.outputs[0]
                        self.report.fused.append(f"{c.label()} into the bias of FullyConnected '{final}'")
        act, final = self.take_activation(final)
        w = self.emit_weight(ws, f"{final}_w")
        bt = None if bias is None else self.const(np.asarray(bias, np.float32).reshape(nout), f"{final}_bias")
        t = self.emit("FullyConnected", at, w, bt, name=self.out_name(final, perm is None), activation=act or None)
        return t, final, perm

    def _op_Gemm(self, n):
        a = self.fval(n.inputs[0])
        alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
        ta, tb = int(n.attrs.get("transA", 0)), int(n.attrs.get("transB", 0))
        out_shape = self._out_shape(n)
        if self.is_const(n.inputs[1]):
            ws = self.weight(n.inputs[1])
            if not tb:
                ws = ws.transform(lambda m: m.T, lambda ax: 1 - ax)
            if alpha != 1.0:
                ws = ws.scaled(alpha)
            bias, post_c = None, None
            if n.inp(2):
                if self.is_const(n.inp(2)):
                    cc = self.cval(n.inp(2)).astype(np.float32) * np.float32(beta)
                    if cc.size == 1:
                        bias = np.full(out_shape[1], cc.reshape(-1)[0], np.float32)
                    elif cc.shape[-1] == out_shape[1] and cc.size == out_shape[1]:
                        bias = cc.reshape(-1)
                    else:
                        post_c = cc
                else:
                    post_c = n.inp(2)
            if ta:
                a = Val(self.emit("Transpose", self.get(a, None), name="gemm_at", perm=[1, 0]),
                        a.shape[::-1], np.float32)
            if post_c is None:
                t, final, perm = self._fc(a, ws, bias, n.outputs[0], out_shape)
                self.set(final, Val(t, out_shape, np.float32, perm))
                return
            t, _, _ = self._fc(a, ws, bias, self._fresh(n.outputs[0] + "_ab"), out_shape, allow_bias_add=False)
            self._gemm_add_c(n, Val(t, out_shape, np.float32), post_c, beta)
            return
        b = self.fval(n.inputs[1])
        t = self.emit("MatMul", self.get(a, None), self.get(b, None), name="gemm_ab", transpose_a=ta or None,
                      transpose_b=tb or None)
        if alpha != 1.0:
            t = self.emit("Mul", t, self.const(np.array([alpha], np.float32), "alpha"), name="gemm_alpha")
        v = Val(t, out_shape, np.float32)
        if n.inp(2):
            self._gemm_add_c(n, v, self.cval(n.inp(2)).astype(np.float32) * np.float32(beta)
                             if self.is_const(n.inp(2)) else n.inp(2), beta)
        else:
            self.set(n.outputs[0], v)

    def _gemm_add_c(self, n, v: Val, c, beta):
        if isinstance(c, str):
            cv = self.fval(c)
            tc = self.get(cv, None)
            if beta != 1.0:
                tc = self.emit("Mul", tc, self.const(np.array([beta], np.float32), "beta"), name="gemm_beta")
        else:
            tc = self.const(c, "gemm_c")
        act, final = self.take_activation(n.outputs[0])
        t = self.emit("Add", v.t, tc, name=self.out_name(final, True), activation=act or None)
        self.set(final, Val(t, v.shape, np.float32))

    def _mm_operand(self, v: Val) -> Tuple[_T, int]:
        """(runtime tensor, transpose flag) for a MatMul operand."""
        if v.const is not None or v.rank < 2 or v.flat is not None:
            return self.get(v, None), 0
        p = v.perm or _ident(v.rank)
        if p == _ident(v.rank):
            return v.t, 0
        sw = _ident(v.rank - 2) + (v.rank - 1, v.rank - 2)
        if tuple(p) == sw:
            return v.t, 1
        # prefer a transpose that also leaves a swapped form when cheaper: plain
        return self.get(v, None), 0

    def _op_MatMul(self, n):
        a = self.fval(n.inputs[0])
        out_shape = self._out_shape(n)
        if self.is_const(n.inputs[1]) and len(self._shape(n.inputs[1])) == 2 and a.rank >= 2:
            ws = self.weight(n.inputs[1]).transform(lambda m: m.T, lambda ax: 1 - ax)
            t, final, perm = self._fc(a, ws, None, n.outputs[0], out_shape)
            self.set(final, Val(t, out_shape, np.float32, perm))
            return
        b = self.fval(n.inputs[1])
        self._matmul(a, b, n.outputs[0], out_shape)

    def _matmul(self, a: Val, b: Val, out: str, out_shape, kind="real", dtype=np.float32):
        if a.rank < 2 or b.rank < 2:
            ta = self.get(a, None)
            tb = self.get(b, None)
            if a.rank == 1:
                ta = self.emit("Reshape", ta, name="mm_a", shape=[1, a.shape[0]])
            if b.rank == 1:
                tb = self.emit("Reshape", tb, name="mm_b", shape=[b.shape[0], 1])
            t = self.emit("MatMul", ta, tb, name="matmul")
            t = self.emit("Reshape", t, name=self.out_name(out, True), shape=list(out_shape) or [1])
            self.set(out, Val(t, out_shape, dtype, kind=kind))
            return
        ta, fa = self._mm_operand(a)
        tb, fb = self._mm_operand(b)
        t = self.emit("MatMul", ta, tb, name=self.out_name(out, True), transpose_a=fa or None, transpose_b=fb or None)
        if fa or fb:
            self.report.fused.append(f"Transpose of a MatMul operand as transpose_a/transpose_b ('{out}')")
        self.set(out, Val(t, out_shape, dtype, kind=kind))

    # -- data movement ----------------------------------------------------------
    def _reshape_to(self, v: Val, target: Tuple[int, ...], out: str) -> Val:
        target = tuple(int(d) for d in target)
        keep = dict(kind=v.kind, q=v.q)
        if v.const is not None:
            return Val(None, target, v.dtype, const=v.const.reshape(target))
        if v.flat is None and v.perm is not None:
            s, p = v.shape, v.perm
            q = _reshape_perm(s, p, target)
            if q is not False:
                rt_target = [target[b] for b in (q or _ident(len(target)))]
                if tuple(rt_target) == v.rt_shape():
                    return Val(v.t, target, v.dtype, q, **keep)
                t = self.emit("Reshape", v.t, name=self.out_name(out, q is None), shape=rt_target or [1])
                if q is not None:
                    self.report.fused.append(f"Reshape to {list(target)} done in the runtime layout (no transpose)")
                return Val(t, target, v.dtype, q, **keep)
            if v.rank == 4 and p == NHWC and len(target) == 2 and target[0] == s[0] and \
                    target[1] == s[1] * s[2] * s[3]:
                c, h, w = s[1], s[2], s[3]
                t = self.emit("Reshape", v.t, name=out + "_flat_nhwc", shape=[s[0], h * w * c])
                nv = Val(t, target, v.dtype, flat=(c, h, w), **keep)
                return nv
        t0 = self.get(v, None)
        if tuple(target) == v.shape:
            return Val(t0, target, v.dtype, **keep)
        t = self.emit("Reshape", t0, name=self.out_name(out, True), shape=list(target) or [1])
        return Val(t, target, v.dtype, **keep)

    def _op_Reshape(self, n):
        self.set(n.outputs[0], self._reshape_to(self.val(n.inputs[0]), self._out_shape(n), n.outputs[0]))

    def _op_Flatten(self, n):
        self._op_Reshape(n)

    def _op_Squeeze(self, n):
        self._op_Reshape(n)

    def _op_Unsqueeze(self, n):
        self._op_Reshape(n)

    def _op_Transpose(self, n):
        v = self.val(n.inputs[0])
        r = v.rank
        t = list(n.attrs.get("perm", list(range(r))[::-1]))
        if v.const is not None:
            self.set(n.outputs[0], Val(None, np.transpose(v.const, t).shape, v.dtype,
                                       const=np.transpose(v.const, t)))
            return
        if v.flat is not None:
            v = Val(self.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
        p = v.perm or _ident(r)
        inv_t = _inv(t)
        q = [inv_t[p[i]] for i in range(r)]
        out_shape = tuple(v.shape[a] for a in t)
        self.set(n.outputs[0], Val(v.t, out_shape, v.dtype, q, kind=v.kind, q=v.q))
        self.report.fused.append(f"{n.label()} folded into the layout")

    def _op_Concat(self, n):
        vals = [self.val(i) for i in n.inputs if i]
        out_shape = self._out_shape(n)
        r = len(out_shape)
        axis = int(n.attrs["axis"]) % r
        kinds = {v.kind for v in vals if v.const is None}
        kind, q = "real", None
        if kinds == {"deq"}:
            qs = {(float(np.asarray(v.q[0]).reshape(-1)[0]), int(np.asarray(v.q[1]).reshape(-1)[0]), v.q[2])
                  for v in vals}
            if len(qs) != 1 or any(v.const is not None for v in vals):
                raise UnsupportedOpError("onnx: Concat of quantized tensors with different parameters", 5)
            kind, q = "deq", vals[0].q
        elif kinds - {"real"}:
            raise UnsupportedOpError("onnx: Concat of integer tensors", 5)
        perm = self.perm_for(vals, r)
        ts = [self.get(v, perm) for v in vals]
        rax = perm.index(axis) if perm else axis
        t = self.emit("Concat", *ts, name=self.out_name(n.outputs[0], perm is None), axis=rax)
        self.set(n.outputs[0], Val(t, out_shape, vals[0].dtype, perm, kind=kind, q=q))

    def _op_Split(self, n):
        v = self.val(n.inputs[0])
        axis = int(n.attrs.get("axis", 0)) % v.rank
        if v.flat is not None:
            v = Val(self.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
        perm = v.perm
        rax = perm.index(axis) if perm else axis
        outs = [o for o in n.outputs]
        sizes = [self._shape(o)[axis] for o in outs]
        ts = self.emit("Split", self.get(v, perm), outputs=len(outs),
                       out_names=[self.out_name(o, perm is None) for o in outs], axis=rax, sizes=sizes)
        if not isinstance(ts, list):
            ts = [ts]
        for o, t in zip(outs, ts):
            self.set(o, Val(t, self._shape(o), v.dtype, perm, kind=v.kind, q=v.q))

    def _op_Slice(self, n):
        v = self.val(n.inputs[0])
        if v.flat is not None:
            v = Val(self.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
        starts = [int(x) for x in self.cval(n.inputs[1]).reshape(-1)]
        ends = [int(x) for x in self.cval(n.inputs[2]).reshape(-1)]
        axes = [int(x) % v.rank for x in self.cval(n.inp(3)).reshape(-1)] if n.inp(3) else list(range(len(starts)))
        steps = [int(x) for x in self.cval(n.inp(4)).reshape(-1)] if n.inp(4) else [1] * len(starts)
        r = v.rank
        begin, end, stride = [0] * r, list(v.shape), [1] * r
        end_mask = 0
        for s, e, a, st in zip(starts, ends, axes, steps):
            d = v.shape[a]
            if st == 0:
                raise UnsupportedOpError("onnx: Slice step 0", 5)
            if s < 0:
                s += d
            if e < 0:
                e += d
            if st > 0:
                s, e = min(max(s, 0), d), min(max(e, 0), d)
            else:
                s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
            begin[a], end[a], stride[a] = s, e, st
        out_shape = self._out_shape(n)
        if any(d == 0 for d in out_shape):
            raise UnsupportedOpError("onnx: Slice with an empty result", 5)
        perm = v.perm
        p = perm or _ident(r)
        rb, re_, rs = [begin[a] for a in p], [end[a] for a in p], [stride[a] for a in p]
        nm = self.out_name(n.outputs[0], perm is None)
        if all(s == 1 for s in rs):
            t = self.emit("Slice", self.get(v, perm), name=nm, begin=rb, size=[e - b for b, e in zip(rb, re_)])
        else:
            for i in range(r):
                if rs[i] < 0 and re_[i] == -1:
                    end_mask |= 1 << i
                    re_[i] = 0
            t = self.emit("StridedSlice", self.get(v, perm), name=nm, begin=rb, end=re_, strides=rs,
                          end_mask=end_mask or None)
        self.set(n.outputs[0], Val(t, out_shape, v.dtype, perm, kind=v.kind, q=v.q))

    def _op_Pad(self, n):
        v = self.val(n.inputs[0])
        mode = n.attrs.get("mode", "constant")
        if mode not in ("constant", "reflect"):
            raise UnsupportedOpError(f"onnx: Pad mode '{mode}' (constant and reflect only)", 5)
        pads = [int(x) for x in self.cval(n.inputs[1]).reshape(-1)]
        r = v.rank
        axes = [int(a) % r for a in self.cval(n.inp(3)).reshape(-1)] if n.inp(3) else list(range(r))
        k = len(axes)
        before, after = [0] * r, [0] * r
        for j, a in enumerate(axes):
            before[a], after[a] = pads[j], pads[j + k]
        if any(x < 0 for x in before + after):
            raise UnsupportedOpError("onnx: negative pads (cropping)", 5)
        value = self._scalar(n.inp(2)) if n.inp(2) else 0.0
        if value is None:
            raise UnsupportedOpError("onnx: Pad value must be constant", 5)
        if v.kind == "deq":  # the pad value is a quantized value: its float value is (value - zp) * scale
            qs, qz, _ = v.q
            value = (value - float(np.asarray(qz).reshape(-1)[0])) * float(np.asarray(qs).reshape(-1)[0])
        elif v.kind != "real":
            raise UnsupportedOpError("onnx: Pad of an integer tensor", 5)
        if v.flat is not None:
            v = Val(self.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
        perm = v.perm
        p = perm or _ident(r)
        rp = []
        for a in p:
            rp += [before[a], after[a]]
        t = self.emit("Pad", self.get(v, perm), name=self.out_name(n.outputs[0], perm is None), pads=rp,
                      mode=1 if mode == "reflect" else 0, value=float(value) if value else None)
        self.set(n.outputs[0], Val(t, self._out_shape(n), v.dtype, perm, kind=v.kind, q=v.q))

    def _op_Gather(self, n):
        v = self.val(n.inputs[0])
        axis = int(n.attrs.get("axis", 0)) % v.rank
        out_shape = self._out_shape(n)
        if v.flat is not None:
            v = Val(self.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
        if self.is_const(n.inputs[1]):
            idx = np.asarray(self.cval(n.inputs[1])).astype(np.int64)
            k = idx.ndim
            it = self.const(idx.reshape(-1) if k == 0 else idx, "indices")
        else:
            iv = self.val(n.inputs[1])
            if iv.dtype not in (np.int32, np.int64) or iv.kind != "real":
                raise UnsupportedOpError(f"onnx: Gather indices of dtype {iv.dtype}", 5)
            k = iv.rank
            it = self.get(iv, None)
        perm = v.perm
        if perm is not None and k > 1:
            perm = None
        p = perm or _ident(v.rank)
        rax = p.index(axis)
        scalar = k == 0
        out_perm = None
        if perm is not None:
            # runtime axes after the gather, as ONNX output axes
            order = []
            for a in p:
                if a == axis:
                    order += [] if scalar else [axis]
                else:
                    order.append(a if a < axis else a + k - 1)
            out_perm = _norm(order)
        if scalar:
            t = self.emit("Gather", self.get(v, perm), it, name="gather", axis=rax)
            rt_shape = [v.rt_shape()[i] for i in range(v.rank) if i != rax] if perm is not None else list(out_shape)
            t = self.emit("Reshape", t, name=self.out_name(n.outputs[0], out_perm is None), shape=rt_shape or [1])
        else:
            t = self.emit("Gather", self.get(v, perm), it, name=self.out_name(n.outputs[0], out_perm is None),
                          axis=rax)
        self.set(n.outputs[0], Val(t, out_shape, v.dtype, out_perm, kind=v.kind, q=v.q))

    def _op_DepthToSpace(self, n):
        self._d2s(n, "DepthToSpace", 1 if n.attrs.get("mode", "DCR") == "CRD" else 0)

    def _op_SpaceToDepth(self, n):
        self._d2s(n, "SpaceToDepth", 0)

    def _d2s(self, n, op, mode):
        v = self.val(n.inputs[0])
        if v.rank != 4:
            raise UnsupportedOpError(f"onnx: {n.op} on a rank-{v.rank} tensor", 5)
        t = self.emit(op, self.get(v, NHWC), name=self.out_name(n.outputs[0], False),
                      block_size=int(n.attrs["blocksize"]), mode=mode or None)
        self.set(n.outputs[0], Val(t, self._out_shape(n), v.dtype, NHWC, kind=v.kind, q=v.q))

    # -- resize ---------------------------------------------------------------
    def _op_Resize(self, n):
        v = self.val(n.inputs[0])
        if v.rank != 4:
            raise UnsupportedOpError(f"onnx: Resize of a rank-{v.rank} tensor (4-D only)", 5)
        mode = n.attrs.get("mode", "nearest")
        ctm = n.attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest_mode = n.attrs.get("nearest_mode", "round_prefer_floor")
        if mode not in ("nearest", "linear"):
            raise UnsupportedOpError(f"onnx: Resize mode '{mode}' (nearest and linear only)", 5)
        if n.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise UnsupportedOpError("onnx: Resize keep_aspect_ratio_policy other than stretch", 5)
        if mode == "linear" and v.kind == "deq":
            raise UnsupportedOpError("onnx: linear Resize of a quantized tensor", 5)
        out_shape = self._out_shape(n)
        if out_shape[0] != v.shape[0] or out_shape[1] != v.shape[1]:
            raise UnsupportedOpError("onnx: Resize of the batch or channel dims", 5)
        if n.attrs.get("antialias", 0) and (out_shape[2] < v.shape[2] or out_shape[3] < v.shape[3]):
            raise UnsupportedOpError("onnx: Resize with antialias when downsampling", 5)
        scales = None
        if n.inp(3) and self.cval(n.inp(3)).size:
            scales = [o / i for o, i in zip(out_shape, v.shape)]
            scales = [np.float32(o) / np.float32(i) for o, i in zip(out_shape, v.shape)]
        elif n.inp(2) and self.cval(n.inp(2)).size:
            sc = [float(x) for x in self.cval(n.inp(2)).reshape(-1)]
            axes = n.attrs.get("axes")
            full = [1.0] * 4
            for j, a in enumerate(axes if axes else range(4)):
                full[a % 4] = sc[j]
            scales = [np.float32(s) for s in full]
        else:
            raise UnsupportedOpError("onnx: Resize needs constant scales or sizes", 5)
        combos = [(0, 0), (0, 1), (1, 0)]
        chosen = None
        for ac, hp in combos:
            ok = True
            for d in (2, 3):
                ref = self._onnx_coords(mode, ctm, nearest_mode, v.shape[d], out_shape[d], scales[d])
                if ref is None:
                    raise UnsupportedOpError(f"onnx: Resize coordinate_transformation_mode '{ctm}'", 5)
                got = self._rt_coords(mode, ac, hp, v.shape[d], out_shape[d])
                if mode == "nearest":
                    ok = ok and np.array_equal(ref, got)
                else:
                    ok = ok and np.allclose(ref, got, atol=1e-4)
            if ok:
                chosen = (ac, hp)
                break
        if chosen is None:
            raise UnsupportedOpError(
                f"onnx: Resize {mode} with coordinate_transformation_mode '{ctm}'" +
                (f", nearest_mode '{nearest_mode}'" if mode == "nearest" else "") +
                f" from {v.shape[2:]} to {out_shape[2:]} matches none of align_corners / half_pixel / asymmetric", 5)
        ac, hp = chosen
        t = self.emit("ResizeNearest" if mode == "nearest" else "ResizeBilinear", self.get(v, NHWC),
                      name=self.out_name(n.outputs[0], False), size=[out_shape[2], out_shape[3]],
                      align_corners=ac or None, half_pixel_centers=hp or None)
        self.report.notes.append(f"{n.label()}: {mode}/{ctm} -> " +
                                 ("align_corners" if ac else "half_pixel_centers" if hp else "asymmetric"))
        self.set(n.outputs[0], Val(t, out_shape, v.dtype, NHWC, kind=v.kind, q=v.q))

    @staticmethod
    def _onnx_coords(mode, ctm, nearest_mode, inp, out, scale):
        """Source coordinates (linear: clamped float; nearest: index) as onnxruntime computes them (float32)."""
        f = np.float32
        x = np.arange(out, dtype=np.float32)
        sc = f(scale)
        with np.errstate(all="ignore"):
            if ctm == "half_pixel":
                o = (x + f(0.5)) / sc - f(0.5)
            elif ctm == "pytorch_half_pixel":
                o = (x + f(0.5)) / sc - f(0.5) if out > 1 else np.zeros(out, np.float32)
            elif ctm == "align_corners":
                o = x * f(inp - 1) / f(out - 1) if out > 1 else np.zeros(out, np.float32)
            elif ctm == "asymmetric":
                o = x / sc
            elif ctm == "tf_half_pixel_for_nn":
                o = (x + f(0.5)) / sc
            else:
                return None
        o = o.astype(np.float32)
        if mode == "linear":
            return np.clip(o, 0, inp - 1)
        if nearest_mode == "round_prefer_floor":
            i = np.where(o == np.floor(o) + f(0.5), np.floor(o), np.round(o))
        elif nearest_mode == "round_prefer_ceil":
            i = np.where(o == np.floor(o) + f(0.5), np.ceil(o), np.round(o))
        elif nearest_mode == "floor":
            i = np.floor(o)
        elif nearest_mode == "ceil":
            i = np.ceil(o)
        else:
            return None
        return np.clip(i, 0, inp - 1).astype(np.int64)

    @staticmethod
    def _rt_coords(mode, ac, hp, inp, out):
        """The runtime's (TFLite reference) source coordinates."""
        f = np.float32
        s = f(inp - 1) / f(out - 1) if (ac and out > 1) else f(inp) / f(out)
        o = np.arange(out, dtype=np.float32)
        if mode == "nearest":
            v = (o + (f(0.5) if hp else f(0))) * s
            i = np.floor(v + f(0.5)) if ac else np.floor(v)  # round half away from zero for v >= 0
            return np.clip(i, 0, inp - 1).astype(np.int64)
        v = ((o + f(0.5)) * s - f(0.5)) if hp else o * s
        return np.clip(v, 0, inp - 1)

    # -- quantization -----------------------------------------------------------
    def _qparams(self, n, scale_i, zp_i, axis_default=1, ref_rank=None):
        s = self.cval(n.inputs[scale_i]).astype(np.float32) if n.inp(scale_i) else None
        if s is None:
            raise UnsupportedOpError("onnx: quantization scale must be constant", 5)
        if n.inp(zp_i):
            zarr = self.cval(n.inputs[zp_i]) if n.inputs[zp_i] not in self.qconsts else None
            if zarr is None:
                raise UnsupportedOpError("onnx: quantization zero point must be constant", 5)
            qd = zarr.dtype
        else:
            zarr, qd = None, np.dtype(np.uint8)
            od = n.attrs.get("output_dtype")
            if od:
                qd = _np_dtype(od)
        axis = None
        if s.size > 1:
            axis = int(n.attrs.get("axis", axis_default))
            if ref_rank:
                axis %= ref_rank
        if n.attrs.get("block_size"):
            raise UnsupportedOpError("onnx: blocked quantization", 5)
        z = np.zeros(s.shape, np.int32) if zarr is None else zarr.astype(np.int32)
        return s, z, np.dtype(qd), axis

    def _is_dynamic_q(self, n, scale_i, zp_i) -> bool:
        return (n.inp(scale_i) and not self.is_const(n.inputs[scale_i])) or \
               (n.inp(zp_i) and not self.is_const(n.inputs[zp_i]))

    def _fake_quant(self, t: _T, s, z, qd, out_name, plain) -> Tuple[_T, _T]:
        if qd not in (np.int8, np.uint8):
            raise UnsupportedOpError(f"onnx: quantization to {qd} (int8 and uint8 only)", 5)
        if np.asarray(s).size != 1:
            raise UnsupportedOpError("onnx: per-axis quantization of activations", 5)
        qname = self.out_name(out_name, plain) if out_name in self.output_set else out_name + "_q"
        qt = self.emit("Quantize", t, name=qname, dtype=3 if qd == np.int8 else 4, mode=1)
        self.b.quantization(qt, np.asarray(s).reshape(-1)[:1], np.asarray(z).reshape(-1)[:1])
        # A DequantizeLinear of this tensor that is a graph output names the float tensor.
        fname = out_name + "_dq"
        if plain and out_name in self.consumers:
            for c in self._live_consumers(out_name):
                if c.op == "DequantizeLinear" and c.outputs[0] in self.output_set and \
                        c.outputs[0] not in self.named_outputs and not self._is_dynamic_q(c, 1, 2) and \
                        np.array_equal(self._qparams(c, 1, 2)[0].reshape(-1), np.asarray(s).reshape(-1)) and \
                        np.array_equal(self._qparams(c, 1, 2)[1].reshape(-1), np.asarray(z).reshape(-1)):
                    fname = self.out_name(c.outputs[0], True)
                    break
        ft = self.emit("Dequantize", qt, name=fname)
        return qt, ft

    def _op_QuantizeLinear(self, n):
        x = self.val(n.inputs[0])
        if self._is_dynamic_q(n, 1, 2):
            # run-time scale / zero point (hand-written dynamic quantization): q = sat(round(x / s) + zp)
            xf = self.fval(n.inputs[0])
            s = self.val(n.inputs[1])
            z = self.val(n.inputs[2]) if n.inp(2) else None
            qd = np.dtype(self._dtype(n.inputs[2])) if n.inp(2) else np.dtype(np.uint8)
            self.set(n.outputs[0], self._dyn_quantize(xf, s, z, qd, n.outputs[0]))
            return
        s, z, qd, axis = self._qparams(n, 1, 2, ref_rank=x.rank)
        if x.kind != "real" or x.dtype != np.float32:
            raise UnsupportedOpError(f"onnx: QuantizeLinear of a {x.dtype} tensor", 5)
        if x.const is not None:
            self.consts[n.outputs[0]] = _quantize_np(x.const, s, z, axis, qd)
            return
        tx, perm, flat = self._ew_in(x)
        qt, ft = self._fake_quant(tx, s, z, qd, n.outputs[0], perm is None and flat is None)
        self.set(n.outputs[0], Val(ft, x.shape, qd, perm, kind="deq", q=(s, z, qd), qt=qt, flat=flat))

    def _op_DequantizeLinear(self, n):
        src = n.inputs[0]
        if src in self.consts and not self._is_dynamic_q(n, 1, 2):
            q = self.consts[src]
            s, z, qd, axis = self._qparams(n, 1, 2, ref_rank=q.ndim)
            if q.dtype.kind not in "iu":
                raise UnsupportedOpError(f"onnx: DequantizeLinear of {q.dtype}", 5)
            if q.dtype in (np.int8, np.uint8):
                self.qconsts[n.outputs[0]] = (q, s, z, axis)
            else:  # int32 bias and others: dequantized now
                self.consts[n.outputs[0]] = _dequant(q, s, z, axis)
                self.report.folded.append(f"{n.label()} of constant {q.dtype} '{src}' evaluated at conversion")
            return
        v = self.val(src)
        if self._is_dynamic_q(n, 1, 2):
            s = self.fval(n.inputs[1])
            z = self.val(n.inputs[2]) if n.inp(2) else None
            if v.kind != "intf":
                raise UnsupportedOpError("onnx: DequantizeLinear with run-time parameters of a non-integer tensor", 5)
            t = self.get(v, None)
            if z is not None:
                t = self.emit("Sub", t, self.get(self._as_float_val(z), None), name="dq_sub")
            t = self.emit("Mul", t, self.get(s, None), name=self.out_name(n.outputs[0], True))
            self.set(n.outputs[0], Val(t, v.shape, np.float32))
            return
        s, z, qd, axis = self._qparams(n, 1, 2, ref_rank=v.rank)
        if v.kind == "deq":
            self.set(n.outputs[0], self._as_params(v, s, z, n.label()))
            return
        if v.kind == "intf":
            if s.size != 1:
                raise UnsupportedOpError("onnx: per-axis DequantizeLinear of an activation", 5)
            t, perm, flat = self._ew_in(v)
            if np.any(z):
                t = self.emit("Sub", t, self.const(z.astype(np.float32).reshape(-1)[:1], "dq_zp"), name="dq_sub")
            t = self.emit("Mul", t, self.const(s.reshape(-1)[:1], "dq_scale"),
                          name=self.out_name(n.outputs[0], perm is None and flat is None))
            self.set(n.outputs[0], Val(t, v.shape, np.float32, perm, flat=flat))
            return
        if v.dtype in (np.int8, np.uint8, np.int32) and v.t is not None:
            # an integer graph input (or int tensor) with these parameters
            if s.size != 1:
                raise UnsupportedOpError("onnx: per-axis DequantizeLinear of an input", 5)
            self.b.quantization(v.t, s.reshape(-1)[:1], z.reshape(-1)[:1])
            t = self.emit("Dequantize", v.t, name=self.out_name(n.outputs[0], True))
            self.set(n.outputs[0], Val(t, v.shape, np.float32))
            return
        raise UnsupportedOpError(f"onnx: DequantizeLinear of a {v.dtype} tensor", 5)

    def _as_params(self, v: Val, s, z, where: str) -> Val:
        """The float value of quantized tensor v read with parameters (s, z): the same tensor when they are
        v's own, else (x / s0 + z0 - z) * s in float."""
        s0, z0, _ = v.q
        if np.array_equal(np.asarray(s0).reshape(-1), np.asarray(s).reshape(-1)) and \
                np.array_equal(np.asarray(z0).reshape(-1), np.asarray(z).reshape(-1)):
            return Val(v.t, v.shape, np.float32, v.perm, flat=v.flat)
        if np.asarray(s).size != 1:
            raise UnsupportedOpError("onnx: per-axis parameters for an activation", 5)
        s0f, z0f = float(np.asarray(s0).reshape(-1)[0]), float(np.asarray(z0).reshape(-1)[0])
        sf, zf = float(np.asarray(s).reshape(-1)[0]), float(np.asarray(z).reshape(-1)[0])
        t = self.emit("Mul", v.t, self.const(np.array([sf / s0f], np.float32), "rescale"), name="rescale")
        if z0f != zf:
            t = self.emit("Add", t, self.const(np.array([(z0f - zf) * sf], np.float32), "shift"), name="rescale")
        self.report.notes.append(f"{where}: quantization parameters differ from the tensor's; rescaled in float")
        return Val(t, v.shape, np.float32, v.perm, flat=v.flat)

    def _q_input(self, n, xi, si, zi) -> Val:
        """The float (dequantized) value of a QLinear op's quantized input."""
        s, z, qd, axis = self._qparams(n, si, zi)
        if n.inputs[xi] in self.consts:
            q = self.consts[n.inputs[xi]]
            f = _dequant(q, s, z, axis)
            return Val(None, f.shape, np.float32, const=f)
        v = self.val(n.inputs[xi])
        if v.kind == "deq":
            return self._as_params(v, s, z, n.label())
        if v.kind == "real" and v.dtype in (np.int8, np.uint8) and v.t is not None:
            self.b.quantization(v.t, s.reshape(-1)[:1], z.reshape(-1)[:1])
            return Val(self.emit("Dequantize", v.t, name="dequantize"), v.shape, np.float32)
        raise UnsupportedOpError(f"onnx: {n.op} input of kind {v.kind}/{v.dtype}", 5)

    def _qweight(self, n, wi, si, zi, axis_default) -> WeightSrc:
        w = self.cval(n.inputs[wi]) if n.inputs[wi] in self.consts else None
        if w is None:
            raise UnsupportedOpError(f"onnx: {n.op} weights must be constant", 5)
        s, z, qd, axis = self._qparams(n, si, zi, axis_default=axis_default, ref_rank=w.ndim)
        if s.size > 1 and axis is None:
            axis = axis_default
        if self.keep_int8 and w.dtype in (np.int8, np.uint8):
            return WeightSrc(q=w, scale=s, zp=z, axis=axis, name=n.inputs[wi])
        return WeightSrc(arr=_dequant(w, s, z, axis), name=n.inputs[wi])

    def _requant_out(self, n, t: _T, out_shape, perm, si, zi):
        s, z, qd, _ = self._qparams(n, si, zi)
        qt, ft = self._fake_quant(t, s, z, qd, n.outputs[0], perm is None)
        self.set(n.outputs[0], Val(ft, out_shape, qd, perm, kind="deq", q=(s, z, qd), qt=qt))

    def _op_QLinearConv(self, n):
        x = self._q_input(n, 0, 1, 2)
        ws = self._qweight(n, 3, 4, 5, axis_default=0)
        xs = float(self.cval(n.inputs[1]).reshape(-1)[0])
        bias = None
        if n.inp(8):
            b = self.cval(n.inputs[8]).astype(np.float64)
            bias = (b * xs * np.asarray(self.cval(n.inputs[4]), np.float64).reshape(-1)).astype(np.float32)
        xt, xshape, one_d = self._spatial_in(x)
        out_shape = self._out_shape(n)
        oshape4 = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
        t = self._conv_core(n, xt, xshape, ws, bias, oshape4, n.outputs[0] + "_float", 0)
        if one_d:
            t = self.emit("Reshape", t, name="conv1d", shape=[out_shape[0], out_shape[2], out_shape[1]])
        self._requant_out(n, t, out_shape, (0, 2, 1) if one_d else NHWC, 6, 7)

    def _op_QLinearMatMul(self, n):
        a = self._q_input(n, 0, 1, 2)
        out_shape = self._out_shape(n)
        if n.inputs[3] in self.consts and self.consts[n.inputs[3]].ndim == 2 and a.rank >= 2:
            ws = self._qweight(n, 3, 4, 5, axis_default=1).transform(lambda m: m.T, lambda ax: 1 - ax)
            nm = self._fresh(n.outputs[0] + "_float")
            t, _, perm = self._fc(a, ws, None, nm, out_shape, allow_bias_add=False)
        else:
            b = self._q_input(n, 3, 4, 5)
            nm = self._fresh(n.outputs[0] + "_float")
            self.types[nm] = (np.dtype(np.float32), out_shape)
            self._matmul(a, b, nm, out_shape)
            t, perm = self.vals[nm].t, None
        self._requant_out(n, t, out_shape, perm, 6, 7)

    def _qlinear_float(self, n, float_op, pairs, out_si, out_zi, attrs):
        """A com.microsoft QLinear* op: its float op on the dequantized inputs, then Quantize + Dequantize."""
        syn = []
        for xi, si, zi in pairs:
            nm = f"{n.outputs[0]}__in{len(syn)}"
            self.vals[nm] = self._q_input(n, xi, si, zi)
            syn.append(nm)
        out = n.outputs[0] + "__float"
        self.types[out] = (np.dtype(np.float32), self._shape(n.outputs[0]))
        getattr(self, "_op_" + float_op)(Node(float_op, "", f"{n.name or n.op}_float", syn, [out], attrs))
        fv = self.vals[out]
        s, z, qd, _ = self._qparams(n, out_si, out_zi)
        t, perm, flat = self._ew_in(fv)
        qt, ft = self._fake_quant(t, s, z, qd, n.outputs[0], perm is None and flat is None)
        self.set(n.outputs[0], Val(ft, fv.shape, qd, perm, kind="deq", q=(s, z, qd), qt=qt, flat=flat))

    def _op_ms_QLinearAdd(self, n):
        self._qlinear_float(n, "Add", [(0, 1, 2), (3, 4, 5)], 6, 7, {})

    def _op_ms_QLinearMul(self, n):
        self._qlinear_float(n, "Mul", [(0, 1, 2), (3, 4, 5)], 6, 7, {})

    def _op_ms_QLinearSigmoid(self, n):
        self._qlinear_float(n, "Sigmoid", [(0, 1, 2)], 3, 4, {})

    def _op_ms_QLinearLeakyRelu(self, n):
        self._qlinear_float(n, "LeakyRelu", [(0, 1, 2)], 3, 4, {"alpha": n.attrs.get("alpha", 0.01)})

    def _op_ms_QLinearGlobalAveragePool(self, n):
        if n.attrs.get("channels_last", 0):
            raise UnsupportedOpError("onnx: QLinearGlobalAveragePool with channels_last = 1", 5)
        self._qlinear_float(n, "GlobalAveragePool", [(0, 1, 2)], 3, 4, {})

    def _op_ms_QLinearAveragePool(self, n):
        if n.attrs.get("channels_last", 0):
            raise UnsupportedOpError("onnx: QLinearAveragePool with channels_last = 1", 5)
        self._qlinear_float(n, "AveragePool", [(0, 1, 2)], 3, 4,
                            {k: v for k, v in n.attrs.items() if k in _POOL_ATTRS})

    def _op_ms_QLinearConcat(self, n):
        pairs = [(i, i + 1, i + 2) for i in range(2, len(n.inputs), 3)]
        self._qlinear_float(n, "Concat", pairs, 0, 1, {"axis": n.attrs["axis"]})

    def _op_ms_QGemm(self, n):
        a = self._q_input(n, 0, 1, 2)
        alpha = float(n.attrs.get("alpha", 1.0))
        ta, tb = int(n.attrs.get("transA", 0)), int(n.attrs.get("transB", 0))
        out_shape = self._out_shape(n)
        ws = self._qweight(n, 3, 4, 5, axis_default=0 if tb else 1)
        if not tb:
            ws = ws.transform(lambda m: m.T, lambda ax: 1 - ax)
        if alpha != 1.0:
            ws = ws.scaled(alpha)
        bias = None
        if n.inp(6):
            c = self.cval(n.inputs[6]).astype(np.float64)
            sa = float(self.cval(n.inputs[1]).reshape(-1)[0])
            sb = np.asarray(self.cval(n.inputs[4]), np.float64).reshape(-1)
            bias = np.broadcast_to(c * sa * sb, (out_shape[1],)).astype(np.float32)
        if ta:
            a = Val(self.emit("Transpose", self.get(a, None), name="qgemm_at", perm=[1, 0]), a.shape[::-1],
                    np.float32)
        quantized_out = bool(n.inp(7))
        nm = self._fresh(n.outputs[0] + "_float") if quantized_out else n.outputs[0]
        t, final, perm = self._fc(a, ws, bias, nm, out_shape, allow_bias_add=False)
        if quantized_out:
            self._requant_out(n, t, out_shape, perm, 7, 8)
        else:
            self.set(final, Val(t, out_shape, np.float32, perm))

    def _int_input(self, n, xi, zi):
        """x - zero_point as exact float values for MatMulInteger / ConvInteger: (tensor, perm, flat)."""
        v = self.val(n.inputs[xi])
        zp = n.inp(zi)
        if v.kind == "deq":
            s0, z0, _ = v.q
            t, perm, flat = self._ew_in(v)
            zc = self.cval(zp).astype(np.float32).reshape(-1) if zp and self.is_const(zp) else None
            if zp and zc is None:
                # run-time zero point: x/s0 + z0 - zp
                t = self.emit("Mul", t, self.const(np.array([1 / float(np.asarray(s0).reshape(-1)[0])], np.float32),
                                                   "inv_scale"), name="int_values")
                t = self.emit("Add", t, self.const(np.array([float(np.asarray(z0).reshape(-1)[0])], np.float32),
                                                   "zp"), name="int_values")
                t = self.emit("Sub", t, self.get(self._as_float_val(self.val(zp)), None), name="int_centered")
                return t, perm, flat
            z = 0.0 if zc is None else float(zc[0])
            s0f, z0f = float(np.asarray(s0).reshape(-1)[0]), float(np.asarray(z0).reshape(-1)[0])
            t = self.emit("Mul", t, self.const(np.array([1 / s0f], np.float32), "inv_scale"), name="int_values")
            if z0f != z:
                t = self.emit("Add", t, self.const(np.array([z0f - z], np.float32), "zp_shift"), name="int_centered")
            return t, perm, flat
        if v.kind == "intf":
            t, perm, flat = self._ew_in(v)
            if zp:
                zv = self.val(zp)
                if zv.const is not None:
                    zf = float(zv.const.reshape(-1)[0])
                    if zv.const.size != 1:
                        raise UnsupportedOpError("onnx: per-row zero point of MatMulInteger input A", 5)
                    if zf:
                        t = self.emit("Sub", t, self.const(np.array([zf], np.float32), "zp"), name="int_centered")
                else:
                    t = self.emit("Sub", t, self.get(self._as_float_val(zv), None), name="int_centered")
            return t, perm, flat
        if v.kind == "real" and v.dtype in (np.int8, np.uint8) and v.t is not None:
            z = self.cval(zp).reshape(-1)[:1].astype(np.int32) if zp else np.zeros(1, np.int32)
            self.b.quantization(v.t, np.ones(1, np.float32), z)
            return self.emit("Dequantize", v.t, name="int_centered"), None, None
        raise UnsupportedOpError(f"onnx: {n.op} input '{n.inputs[xi]}' ({v.kind}, {v.dtype})", 5)

    def _int_weight(self, n, wi, zi, axis_default) -> WeightSrc:
        w = self.consts.get(n.inputs[wi])
        if w is None:
            return None
        z = self.cval(n.inp(zi)).astype(np.int32) if n.inp(zi) else np.zeros(1, np.int32)
        axis = axis_default if z.size > 1 else None
        s = np.ones(z.shape if z.size > 1 else (1,), np.float32)
        if self.keep_int8 and w.dtype in (np.int8, np.uint8):
            return WeightSrc(q=w, scale=s, zp=z.reshape(-1), axis=axis, name=n.inputs[wi])
        return WeightSrc(arr=_dequant(w, s, z, axis), name=n.inputs[wi])

    def _op_MatMulInteger(self, n):
        ta, perm, flat = self._int_input(n, 0, 2)
        av = self.val(n.inputs[0])
        out_shape = self._out_shape(n)
        a = Val(ta, av.shape, np.float32, perm, flat=flat)
        ws = self._int_weight(n, 1, 3, axis_default=1)
        if ws is not None and len(ws.shape) == 2 and a.rank >= 2:
            ws = ws.transform(lambda m: m.T, lambda ax: 1 - ax)
            t, _, perm2 = self._fc(a, ws, None, self._fresh(n.outputs[0]), out_shape, allow_bias_add=False)
            self.set(n.outputs[0], Val(t, out_shape, np.int32, perm2, kind="intf"))
            return
        tb, permb, flatb = self._int_input(n, 1, 3)
        bv = self.val(n.inputs[1])
        b = Val(tb, bv.shape, np.float32, permb, flat=flatb)
        nm = self._fresh(n.outputs[0])
        self.types[nm] = (np.dtype(np.float32), out_shape)
        self._matmul(a, b, nm, out_shape)
        self.set(n.outputs[0], Val(self.vals[nm].t, out_shape, np.int32, kind="intf"))

    def _op_ConvInteger(self, n):
        ta, perm, flat = self._int_input(n, 0, 2)
        av = self.val(n.inputs[0])
        x = Val(ta, av.shape, np.float32, perm, flat=flat)
        ws = self._int_weight(n, 1, 3, axis_default=0)
        if ws is None:
            raise UnsupportedOpError("onnx: ConvInteger weights must be constant", 5)
        xt, xshape, one_d = self._spatial_in(x)
        out_shape = self._out_shape(n)
        oshape4 = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
        t = self._conv_core(n, xt, xshape, ws, None, oshape4, n.outputs[0], 0)
        v = self._spatial_out(t, n.outputs[0], out_shape, one_d)
        v.kind, v.dtype = "intf", np.dtype(np.int32)
        self.set(n.outputs[0], v)

    def _global_max(self, t: _T, count: int, name: str) -> _T:
        """max over all elements of a runtime tensor with `count` elements, as a [1] tensor."""
        lim = 1 << 20
        if count <= lim:
            a, b = 1, count
        else:
            a = next((d for d in range(2, lim + 1) if count % d == 0 and count // d <= lim), None)
            if a is None:
                raise UnsupportedOpError("onnx: DynamicQuantizeLinear of a tensor too large to reduce", 5)
            b = count // a
        r = self.emit("Reshape", t, name=name + "_flat", shape=[1, a, b, 1])
        m = self.emit("MaxPool2D", r, name=name, filter=[a, b])
        return self.emit("Reshape", m, name=name + "_1", shape=[1])

    def _op_DynamicQuantizeLinear(self, n):
        x = self.fval(n.inputs[0])
        xt, perm, flat = self._ew_in(x)
        cnt = int(np.prod(x.shape)) if x.shape else 1
        base = n.outputs[0]
        mx = self._global_max(xt, cnt, base + "_max")
        neg = self.emit("Mul", xt, self.const(np.array([-1], np.float32), "minus_one"), name=base + "_neg")
        mn = self._global_max(neg, cnt, base + "_negmin")
        hi = self.emit("Relu", mx, name=base + "_hi")               # max(0, max x)
        lo = self.emit("Relu", mn, name=base + "_lo")               # -min(0, min x)
        rng = self.emit("Add", hi, lo, name=base + "_range")
        # ONNX: scale = (max - min) / 255, 1/255 when max == min (only when x is all zeros: any scale works)
        rng = self.emit("Maximum", rng, self.const(np.array([1e-30], np.float32), "tiny"), name=base + "_range_nz")
        scale = self.emit("Div", rng, self.const(np.array([255], np.float32), "q255"),
                          name=self.out_name(n.outputs[1], True) if len(n.outputs) > 1 and n.outputs[1] else "scale")
        zpf = self.emit("Div", lo, scale, name=base + "_zp_real")
        zq = self.emit("Quantize", zpf, name=base + "_zp_u8", dtype=4, mode=1)
        self.b.quantization(zq, np.ones(1, np.float32), np.zeros(1, np.int32))
        zp = self.emit("Dequantize", zq, name=base + "_zp")
        y = self._round_add_zp(self.emit("Div", xt, scale, name=base + "_scaled"), zp, base)
        self.set(n.outputs[0], Val(y, x.shape, np.uint8, perm, kind="intf", flat=flat))
        if len(n.outputs) > 1 and n.outputs[1]:
            self.set(n.outputs[1], Val(scale, (), np.float32))
        if len(n.outputs) > 2 and n.outputs[2]:
            self.set(n.outputs[2], Val(zp, (), np.uint8, kind="intf"))
        self.dql_count += 1

    def _round_add_zp(self, t: _T, zp: Optional[_T], base: str) -> _T:
        """saturate_uint8(round_half_even(t) + zp) as float values: rounds through an int16 Quantize (t within
        +-32767) so that the zero point is added after rounding, exactly as ONNX specifies."""
        q16 = self.emit("Quantize", t, name=base + "_rounded", dtype=7, mode=1)
        self.b.quantization(q16, np.ones(1, np.float32), np.zeros(1, np.int32))
        r = self.emit("Dequantize", q16, name=base + "_rounded_f")
        if zp is not None:
            r = self.emit("Add", r, zp, name=base + "_shifted")
        q = self.emit("Quantize", r, name=base + "_u8", dtype=4, mode=1)
        self.b.quantization(q, np.ones(1, np.float32), np.zeros(1, np.int32))
        return self.emit("Dequantize", q, name=base + "_values")

    def _dyn_quantize(self, x: Val, s: Val, z: Optional[Val], qd, out) -> Val:
        if qd != np.uint8:
            raise UnsupportedOpError("onnx: QuantizeLinear with run-time parameters to int8 (uint8 only)", 5)
        perm = x.perm if x.flat is None else None
        t = self.emit("Div", self.get(x, perm), self.get(self._as_float_val(s), None), name=out + "_scaled")
        zt = self.get(self._as_float_val(z), None) if z is not None else None
        y = self._round_add_zp(t, zt, out)
        return Val(y, x.shape, qd, perm, kind="intf")


def import_model(source, report: Report, **options) -> GraphBuilder:
    """Converts an ONNX model (path, bytes or onnx.ModelProto) to a GraphBuilder; fills `report`.
    Options: batch=1, input_shapes=None, input_shape=None (the shape of the only input, as the command
    line's --input-shape gives it), keep_int8_weights=True, check_opset=True, name=None."""
    known = {"batch", "input_shapes", "input_shape", "keep_int8_weights", "check_opset", "name"}
    bad = set(options) - known
    if bad:
        raise TypeError(f"onnx importer: unknown option(s) {sorted(bad)}; known: {sorted(known)}")
    report.importer = "onnx"
    single = options.pop("input_shape", None)
    imp = _Importer(source, report, **options)
    if single is not None:
        inits = {i.name for i in imp.model.graph.initializer}
        names = [vi.name for vi in imp.model.graph.input if vi.name not in inits]
        if len(names) != 1:
            raise TypeError(f"onnx importer: input_shape needs a model with one input (this one has {names}); "
                            f"use input_shapes={{name: shape}}")
        imp.input_shapes.setdefault(names[0], tuple(int(d) for d in single))
    return imp.run()
