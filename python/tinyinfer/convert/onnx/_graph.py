"""The ONNX importer's data: the graph as read (Node), values during emission (Val, WeightSrc),
the deferred output graph (_Graph) and small layout helpers."""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..._errors import UnsupportedOpError
from ...builder import GraphBuilder
from .. import Report

MIN_OPSET, MAX_OPSET = 11, 20

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


def _qparams_for(ndim, scale, zp, axis):
    """(scale, zero point) as float32, shaped to broadcast over a rank-`ndim` tensor: along `axis` when
    per-axis, else scalars."""
    s = np.asarray(scale, dtype=np.float32)
    z = np.zeros_like(s) if zp is None else np.asarray(zp).astype(np.float32)
    if axis is not None and s.size > 1:
        shape = [1] * ndim
        shape[axis] = s.size
        return s.reshape(shape), z.reshape(shape)
    return s.reshape(-1)[0], z.reshape(-1)[0]


def _dequant(q, scale, zp, axis) -> np.ndarray:
    q = np.asarray(q)
    s, z = _qparams_for(q.ndim, scale, zp, axis)
    return ((q.astype(np.float32) - z) * s).astype(np.float32)


def _quantize_np(x, scale, zp, axis, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    x = np.asarray(x, np.float32)
    s, z = _qparams_for(x.ndim, scale, zp, axis)
    return np.clip(np.rint(x / s) + z, info.min, info.max).astype(dtype)


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
    """The ops as emitted, replayed into a GraphBuilder at the end, when every quantization is known.
    Constants that no op reads are not written; ops whose output nothing reads, and reshapes of reshapes,
    are written as emitted: the core's DeadCodeElimination and IdentityRemoval take them out at load."""

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
                raise UnsupportedOpError(f"onnx: internal error: tensor name '{o}' made twice")
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
        b = GraphBuilder(self.name, producer=self.producer)
        tensors = {}
        for nm, shape, dt in self.inputs:
            tensors[nm] = b.input(nm, shape, dt)
        ops_out = Counter()
        self.replay(b, tensors, "", ops_out)
        for nm in self.outputs:
            b.output(tensors[nm])
        report.ops_out.clear()
        report.ops_out.update(ops_out)
        return b

    def replay(self, b: GraphBuilder, tensors: Dict, prefix: str, ops_out: Counter) -> None:
        """Writes the constants that are read, the ops and the quantization into builder b; tensor names get
        `prefix` (a subgraph's, so that they stay unique in the file). An op whose attributes hold
        `_subgraphs` (control flow, control.py: a function of (builder, name prefix, ops_out) that writes
        its subgraphs and gives their indices) gets them written first."""
        read = set(self.outputs) | {i for op in self.ops for i in op[1] if i}
        for nm, arr in self.consts.items():
            if nm in read:
                tensors[nm] = b.const(prefix + nm, arr)
        for op, ins, outs, attrs in self.ops:
            if "_subgraphs" in attrs:
                attrs = dict(attrs)
                attrs["subgraphs"] = attrs.pop("_subgraphs")(b, f"{prefix}{outs[0]}/", ops_out)
            res = b.op(op, *[None if i is None else tensors[i] for i in ins], outputs=[prefix + o for o in outs],
                       **attrs)
            for o, t in zip(outs, res if isinstance(res, list) else [res]):
                tensors[o] = t
            ops_out[op] += 1
        for nm, (sc, zp, axis) in self.quant.items():
            if nm in tensors:
                b.quantization(tensors[nm], sc, zp, axis)

    def replay_subgraph(self, b: GraphBuilder, prefix: str, ops_out: Counter) -> int:
        """This graph as a subgraph of builder b (its inputs the subgraph's); its index."""
        with b.subgraph(prefix.rstrip("/"), inputs=[(prefix + nm, shape, dt) for nm, shape, dt in self.inputs]) as sg:
            tensors = {nm: t for (nm, _, _), t in zip(self.inputs, sg.inputs)}
            self.replay(b, tensors, prefix, ops_out)
            sg.output(*[tensors[nm] for nm in self.outputs])
        return sg.index
