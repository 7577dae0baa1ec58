"""tinyinfer.convert.nn (also importable as tinyinfer.nn): describe a PyTorch
architecture, load its state_dict, write a .tinf. The PyTorch front end:
torch_weights.py reads the weight files, this module says how the layers
connect and is the importer `tinyinfer.convert` uses for .pt/.pth/.safetensors.

A torch state_dict holds weights only. Describe the model with these
torch-like layers (same names and arguments as torch.nn, so the state_dict
keys match), load the weights, and write the graph:

    from tinyinfer.convert import nn
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16 * 16, 10))
    net.load_state_dict("net.pt")          # a path, or a state_dict
    net.save("net.tinf", input_shape=(1, 3, 32, 32))

The .tinf takes torch's layout (NCHW) and gives torch's output layout.
Inside, image tensors are NHWC (the runtime's layout): one Transpose follows
the input, weights are converted once (Conv2d OIHW -> OHWI, depthwise ->
[1, KH, KW, C*M], ConvTranspose2d IOHW -> [Cout, KH, KW, Cin]), and a Flatten
of NHWC data permutes the columns of the Linear that reads it instead of
transposing the data back. Dropout/Identity vanish. The graph is written
plain: BatchNorm after a convolution or Linear and ReLU/ReLU6 after their
producer are folded and fused by the core's load-time passes (the report's
"at load" line lists them); only a BatchNorm after a ConvTranspose2d, which
those passes do not cover, is folded here.

Custom modules work like torch's: subclass Module, assign layers in
__init__, and write forward with these layers, the Value methods (+, -, *,
/, flatten, view/reshape, permute, transpose, mean, softmax, relu, ...) and
the functions of `functional` (cat, relu, ...). forward runs once, on
symbolic Values, when the graph is written.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict, namedtuple
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .._errors import InvalidArgumentError, InvalidStateError, ShapeError, UnsupportedOpError
from ..builder import GraphBuilder
from .torch_weights import QuantizedTensor, load_state_dict as _load_state_dict, load_state_dict_with_info

__all__ = [
    "Module", "Parameter", "Value", "Sequential", "ModuleList", "ModuleDict", "Linear", "Conv2d", "ConvTranspose2d",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Embedding", "ReLU", "ReLU6", "LeakyReLU", "PReLU", "GELU", "SiLU",
    "Sigmoid", "Tanh", "Hardswish", "Softmax", "LogSoftmax", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d", "Flatten", "Dropout", "Dropout2d", "Identity", "functional", "cat", "from_torch",
    "StateDictError", "IncompatibleKeys", "matmul", "clamp", "maximum", "minimum", "reduce_sum", "QuantizedTensor",
    "pad", "ZeroPad2d", "narrow", "quantize", "dequantize",
    "scaled_dot_product_attention", "LSTM", "GRU",
]


class StateDictError(InvalidArgumentError, RuntimeError):
    """load_state_dict failed: missing / unexpected keys or shape mismatches (a RuntimeError, as in torch)."""


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _torch_qtensor(t) -> QuantizedTensor:
    """A live torch quantized tensor (from a torch.ao module's state_dict) as a QuantizedTensor."""
    qs = str(t.qscheme()).replace("torch.", "")
    values = t.int_repr().numpy()
    if qs in ("per_tensor_affine", "per_tensor_symmetric"):
        return QuantizedTensor(values, t.q_scale(), t.q_zero_point(), None, qs)
    return QuantizedTensor(values, t.q_per_channel_scales().numpy(), t.q_per_channel_zero_points().numpy(),
                           int(t.q_per_channel_axis()), qs)


def _to_numpy(v) -> np.ndarray:
    """An array from a numpy array, a torch tensor or anything array-like."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor, without importing torch
        v = v.detach().cpu()
        if str(getattr(v, "dtype", "")) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    return np.asarray(v)


class Parameter:
    """A learned tensor of a module (parameter or buffer): its torch shape, and its value once loaded.

    `Parameter((4, 8))` declares one to be loaded; `Parameter(array)` gives it a value now."""

    def __init__(self, shape_or_data, dtype="float32"):
        self.quant: Optional[QuantizedTensor] = None
        if isinstance(shape_or_data, QuantizedTensor):
            self.quant = shape_or_data
            self.dtype = np.dtype(dtype)
            self.data = shape_or_data.dequantize()
            self.shape = self.data.shape
        elif isinstance(shape_or_data, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in shape_or_data):
            self.shape = tuple(int(d) for d in shape_or_data)
            self.dtype = np.dtype(dtype)
            self.data: Optional[np.ndarray] = None
        else:
            a = _to_numpy(shape_or_data)
            self.dtype = np.dtype(dtype) if a.dtype.kind == "f" else a.dtype
            self.data = np.ascontiguousarray(a, dtype=self.dtype)
            self.shape = self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, {'loaded' if self.data is not None else 'not loaded'})"


# ---------------------------------------------------------------------------------------------
# Symbolic tracing: Values over a small graph, then passes, then a GraphBuilder
# ---------------------------------------------------------------------------------------------

class _Sym:
    """A tensor of the graph being built, in its physical (runtime) layout."""
    __slots__ = ("shape", "dtype", "producer", "name", "quant", "__weakref__")

    def __init__(self, shape, dtype, producer, name):
        self.shape, self.dtype, self.producer, self.name = tuple(int(d) for d in shape), np.dtype(dtype), producer, name
        self.quant = None  # (scales, zero_points, axis) of a quantized (int8 / uint8) tensor


class _Const:
    __slots__ = ("array", "name", "quant")

    def __init__(self, array: np.ndarray, name: str, quant=None):
        # quant: (scales, zero_points, axis) of an integer constant (int8 weights), or None
        self.array, self.name, self.quant = array, name, quant


class _Node:
    __slots__ = ("op", "inputs", "attrs", "outputs", "scope", "layer", "dead")

    def __init__(self, op, inputs, attrs, scope, layer):
        self.op, self.inputs, self.attrs, self.scope, self.layer = op, list(inputs), dict(attrs), scope, layer
        self.outputs: List[_Sym] = []
        self.dead = False




_MOVES = ("Reshape", "Transpose", "Squeeze", "ExpandDims", "Slice", "StridedSlice")


class _Tracer:
    def __init__(self, root: "Module"):
        self.root = root
        self.nodes: List[_Node] = []
        self.inputs: List[_Sym] = []
        self.scope_stack: List[str] = []
        self.layer_stack: List[str] = []
        self.names = {}
        for n, m in root.named_modules(remove_duplicate=False):
            self.names.setdefault(id(m), n)
        self.layers_in: Counter = Counter()
        self.dropped: List[str] = []
        self.folded: List[str] = []
        self.layout: Dict[str, List[str]] = OrderedDict()
        self.cache: Dict[Tuple[int, Tuple[int, ...]], _Sym] = {}
        self._keep = []  # keeps cached syms alive so their ids stay unique
        self.quantized: List[str] = []  # layers that kept torch's int8 weights

    # -- bookkeeping --------------------------------------------------------------------------
    @property
    def scope(self) -> str:
        return self.scope_stack[-1] if self.scope_stack else ""

    def note_layout(self, what: str, where: Optional[str] = None) -> None:
        self.layout.setdefault(what, []).append(where if where is not None else (self.scope or "<root>"))

    def const(self, array, suffix: str) -> _Const:
        a = np.ascontiguousarray(array)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        return _Const(a, f"{self.scope}.{suffix}" if self.scope else suffix)

    def emit(self, op: str, inputs, shapes, dtype="float32", n_out: int = 1, **attrs):
        layer = f"{self.layer_stack[-1]} {self.scope or '<root>'}" if self.layer_stack else "input"
        node = _Node(op, inputs, attrs, self.scope, layer)
        shapes_list = shapes if n_out > 1 else [shapes]
        for i, s in enumerate(shapes_list):
            node.outputs.append(_Sym(s, dtype, node, None))
        src = inputs[0] if inputs else None
        if op in _MOVES and isinstance(src, _Sym) and src.quant is not None:
            for o in node.outputs:  # data movement keeps the quantization parameters
                o.quant = src.quant
        self.nodes.append(node)
        return node.outputs if n_out > 1 else node.outputs[0]

    def input(self, name: str, shape, dtype) -> "Value":
        s = _Sym(shape, dtype, None, name)
        self.inputs.append(s)
        return Value(self, s, tuple(shape))

    # -- layouts ------------------------------------------------------------------------------
    def transpose(self, sym: _Sym, perm: Tuple[int, ...], why: str) -> _Sym:
        perm = tuple(int(p) for p in perm)
        if perm == tuple(range(len(perm))):
            return sym
        key = (id(sym), perm)
        if key in self.cache:
            return self.cache[key]
        out = self.emit("Transpose", [sym], tuple(sym.shape[p] for p in perm), dtype=sym.dtype, perm=list(perm))
        self.note_layout(why)
        self.cache[key] = out
        self._keep.append(sym)
        return out

    # -- passes and emission ------------------------------------------------------------------
    def finish(self, outputs: List["Value"], name: str, output_names: Sequence[str], report):
        outs = [plain(v, "output back to torch's layout") for v in outputs]
        out_syms = [v.sym for v in outs]
        # BatchNorm folding (also after a TransposeConv2D), Relu / Relu6 fusion, identity and dead-op removal
        # are left to the core's load-time passes (docs/architecture.md, Load-time passes).
        b = GraphBuilder(name, producer="tinyinfer.convert.nn")
        if self.quantized:
            b.metadata("quantization", "int8-dynamic")
        tensors: Dict[int, object] = {}
        used_names = set()
        out_name_of = {}
        for s, nm in zip(out_syms, output_names):
            out_name_of.setdefault(id(s), nm)
        used_names.update(output_names)
        for s in self.inputs:
            used_names.add(s.name)
            tensors[id(s)] = b.input(s.name, s.shape, s.dtype)
        # A graph input that is also an output gets its own tensor (an identity Reshape).
        for i, s in enumerate(out_syms):
            if s.producer is None:
                ident = self.emit("Reshape", [s], s.shape, dtype=s.dtype, shape=list(s.shape))
                out_syms[i] = ident
                out_name_of[id(ident)] = output_names[i]
        counter = Counter()

        def unique(stem: str) -> str:
            stem = stem or "t"
            nm, k = stem, 1
            while nm in used_names:
                k += 1
                nm = f"{stem}_{k}"
            used_names.add(nm)
            return nm

        const_tensors: Dict[int, object] = {}
        ops_out: Counter = Counter()
        for n in self.nodes:
            if n.dead:
                continue
            ins = []
            for i in n.inputs:
                if i is None:
                    ins.append(None)
                elif isinstance(i, _Const):
                    if id(i) not in const_tensors:
                        const_tensors[id(i)] = b.const(unique(i.name), i.array)
                        if i.quant is not None:
                            b.quantization(const_tensors[id(i)], *i.quant)
                    ins.append(const_tensors[id(i)])
                else:
                    ins.append(tensors[id(i)])
            names = []
            for o in n.outputs:
                if id(o) in out_name_of:
                    names.append(out_name_of[id(o)])
                else:
                    counter[n.scope] += 1
                    names.append(unique(n.scope if n.scope else n.op.lower()))
            attrs = {k: v for k, v in n.attrs.items() if not (k == "activation" and v == 0)}
            r = b.op(n.op, *ins, outputs=names, **attrs)
            for o, t in zip(n.outputs, r):
                tensors[id(o)] = t
                if o.quant is not None:
                    b.quantization(t, *o.quant)
            ops_out[n.op] += 1
        b.output(*[tensors[id(s)] for s in out_syms])
        if report is not None:
            report.ops_in.update(self.layers_in)
            report.ops_out.update(ops_out)
            report.folded.extend(self.folded)
            report.kept_precision.extend(f"{q} (torch's int8 weights and scales)" for q in self.quantized)
            report.dropped.extend(self.dropped)
            for what, where in self.layout.items():
                shown = ", ".join(where[:4]) + (" ..." if len(where) > 4 else "")
                report.notes.append(f"layout: {what} (x{len(where)}: {shown})")
        return b


class Value:
    """A symbolic tensor inside forward during to_builder: torch's logical
    shape, and how the runtime holds it (`perm`: physical axis i holds
    logical axis perm[i]; `fperm`: the last axis is permuted)."""
    __slots__ = ("_t", "sym", "shape", "perm", "fperm")

    def __init__(self, tracer: _Tracer, sym: _Sym, shape, perm=None, fperm=None):
        self._t, self.sym, self.shape = tracer, sym, tuple(int(d) for d in shape)
        self.perm = tuple(range(len(self.shape))) if perm is None else tuple(perm)
        self.fperm = fperm

    @property
    def dtype(self) -> np.dtype:
        return self.sym.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def size(self, dim: Optional[int] = None):
        return self.shape if dim is None else self.shape[_axis(dim, len(self.shape))]

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def __repr__(self) -> str:
        return f"Value(shape={self.shape}, dtype={self.dtype})"

    def __add__(self, o): return _binary("Add", self, o)
    def __radd__(self, o): return _binary("Add", self, o, reverse=True)
    def __sub__(self, o): return _binary("Sub", self, o)
    def __rsub__(self, o): return _binary("Sub", self, o, reverse=True)
    def __mul__(self, o): return _binary("Mul", self, o)
    def __rmul__(self, o): return _binary("Mul", self, o, reverse=True)
    def __truediv__(self, o): return _binary("Div", self, o)
    def __rtruediv__(self, o): return _binary("Div", self, o, reverse=True)
    def __neg__(self): return _binary("Mul", self, -1.0)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)
    def clamp(self, min=None, max=None): return clamp(self, min, max)
    def float(self): return to(self, "float32")
    def to(self, *args, **kwargs):
        dt = kwargs.get("dtype", next((a for a in args if not isinstance(a, str) or a not in ("cpu",)), None))
        return self if dt is None else to(self, dt)
    def sum(self, dim=None, keepdim=False): return reduce_sum(self, dim, keepdim)

    def relu(self): return _unary(self, "Relu")
    def sigmoid(self): return _unary(self, "Logistic")
    def tanh(self): return _unary(self, "Tanh")
    def exp(self): return _unary(self, "Exp")
    def sqrt(self): return _unary(self, "Sqrt")
    def softmax(self, dim): return _softmax(self, dim, "Softmax")
    def log_softmax(self, dim): return _softmax(self, dim, "LogSoftmax")
    def flatten(self, start_dim=0, end_dim=-1): return flatten(self, start_dim, end_dim)
    def view(self, *shape): return reshape(self, *shape)
    def reshape(self, *shape): return reshape(self, *shape)
    def permute(self, *dims): return permute(self, *dims)
    def transpose(self, d0, d1):
        dims = list(range(self.ndim))
        a, b = _axis(d0, self.ndim), _axis(d1, self.ndim)
        dims[a], dims[b] = dims[b], dims[a]
        return permute(self, *dims)
    def mean(self, dim=None, keepdim=False): return mean(self, dim, keepdim)
    def unsqueeze(self, dim):
        d = _axis(dim, self.ndim + 1)
        return reshape(self, *(self.shape[:d] + (1,) + self.shape[d:]))
    def squeeze(self, dim=None):
        if dim is None:
            return reshape(self, *[s for s in self.shape if s != 1])
        d = _axis(dim, self.ndim)
        return self if self.shape[d] != 1 else reshape(self, *(self.shape[:d] + self.shape[d + 1:]))


def _axis(d: int, rank: int) -> int:
    if not -rank <= d < max(rank, 1):
        raise ShapeError(f"dimension {d} is out of range for rank {rank}")
    return d % rank if rank else 0


def _inv(p: Sequence[int]) -> Tuple[int, ...]:
    q = [0] * len(p)
    for i, a in enumerate(p):
        q[a] = i
    return tuple(q)


def _need_value(x, who: str) -> "Value":
    if not isinstance(x, Value):
        raise InvalidArgumentError(
            f"{who}: tinyinfer.nn layers run symbolically while the graph is written (to_builder / save); "
            f"got {type(x).__name__}")
    return x


def plain(v: Value, why: str = "back to torch's layout") -> Value:
    """v in torch's own layout (no permutation), emitting a Transpose or Gather if needed."""
    t = v._t
    if v.fperm is not None:
        q = np.argsort(v.fperm).astype(np.int32)
        ax = v.ndim - 1
        sym = t.emit("Gather", [v.sym, _Const(q, f"{t.scope or 'input'}.unpermute")], v.sym.shape,
                     dtype=v.dtype, axis=ax)
        t.note_layout("features un-permuted (Gather) before an op that needs torch's order")
        return Value(t, sym, v.shape)
    if v.perm == tuple(range(v.ndim)):
        return v
    return Value(t, t.transpose(v.sym, _inv(v.perm), f"Transpose {why}"), v.shape)


def _in_layout(v: Value, perm: Tuple[int, ...], why: str) -> _Sym:
    """The physical tensor whose axis i holds logical axis perm[i]."""
    if v.fperm is not None:
        v = plain(v)
    if tuple(perm) == v.perm:
        return v.sym
    inv = _inv(v.perm)
    return v._t.transpose(v.sym, tuple(inv[p] for p in perm), why)


_NHWC = (0, 2, 3, 1)


def _nhwc(v: Value, who: str) -> _Sym:
    if v.ndim != 4:
        raise ShapeError(f"{who} expects a 4-D input (N, C, H, W), got shape {v.shape}")
    if v.dtype != np.float32:
        raise UnsupportedOpError(f"{who} takes float32 input, got {v.dtype}")
    return _in_layout(v, _NHWC, "Transpose NCHW -> NHWC (torch layout to the runtime's)")


def _unary(v: Value, op: str, **attrs) -> Value:
    v = _need_value(v, op)
    sym = v._t.emit(op, [v.sym], v.sym.shape, dtype=v.dtype, **attrs)
    return Value(v._t, sym, v.shape, v.perm, v.fperm)


def _binary(op: str, a: Value, b, reverse: bool = False) -> Value:
    t = a._t
    if isinstance(b, Value):
        if a.ndim == b.ndim and a.fperm is None and b.fperm is None:
            sa, sb, perm, fperm = a.sym, _in_layout(b, a.perm, "Transpose to match the other operand"), a.perm, None
        elif a.ndim == b.ndim and a.perm == b.perm and a.fperm is not None and b.fperm is not None \
                and np.array_equal(a.fperm, b.fperm):
            sa, sb, perm, fperm = a.sym, b.sym, a.perm, a.fperm
        else:
            a, b = plain(a), plain(b)
            sa, sb, perm, fperm = a.sym, b.sym, None, None
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
            pshape = np.broadcast_shapes(sa.shape, sb.shape)
        except ValueError:
            raise ShapeError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None
    else:
        arr = np.asarray(b.data if isinstance(b, Parameter) else _to_numpy(b), dtype=np.float32)
        if isinstance(b, Parameter) and b.data is None:
            raise InvalidStateError(f"{op}: a Parameter of shape {b.shape} has no value (load_state_dict first)")
        if arr.size == 1:
            shape, pshape, const, perm, fperm = a.shape, a.sym.shape, arr.reshape(1), a.perm, a.fperm
        else:
            try:
                shape = np.broadcast_shapes(a.shape, arr.shape)
            except ValueError:
                raise ShapeError(f"{op}: shapes {a.shape} and {arr.shape} do not broadcast") from None
            if arr.ndim > a.ndim or (shape != a.shape and a.fperm is not None):
                a = plain(a)
            if arr.ndim > a.ndim:
                const, perm, fperm = arr, None, None
            else:
                al = arr.reshape((1,) * (a.ndim - arr.ndim) + arr.shape).transpose(a.perm)
                if a.fperm is not None and al.shape[-1] > 1:
                    al = al[..., a.fperm]
                const, perm, fperm = np.ascontiguousarray(al), a.perm, a.fperm
            pshape = np.broadcast_shapes(a.sym.shape, const.shape)
        sa, sb = a.sym, t.const(const, op.lower() + "_const")
    ins = [sb, sa] if reverse else [sa, sb]
    sym = t.emit(op, ins, pshape, dtype=np.float32)
    return Value(t, sym, shape, perm, fperm)


def _softmax(v: Value, dim: int, op: str) -> Value:
    v = _need_value(v, op)
    d = _axis(dim, v.ndim)
    sym = v._t.emit(op, [v.sym], v.sym.shape, axis=v.perm.index(d))
    return Value(v._t, sym, v.shape, v.perm, v.fperm)


def flatten(v: Value, start_dim: int = 0, end_dim: int = -1) -> Value:
    v = _need_value(v, "flatten")
    t, r = v._t, v.ndim
    if r == 0:
        return reshape(v, 1)
    s, e = _axis(start_dim, r), _axis(end_dim, r)
    if s > e:
        raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    if s == e:
        return v
    new_shape = v.shape[:s] + (int(np.prod(v.shape[s:e + 1])),) + v.shape[e + 1:]
    if e == r - 1 and v.fperm is None and v.perm[:s] == tuple(range(s)):
        # Reshape the runtime's layout as it is; remember how the features are ordered.
        order = [a - s for a in v.perm[s:]]
        p = np.arange(new_shape[-1]).reshape(v.shape[s:]).transpose(order).reshape(-1)
        sym = t.emit("Reshape", [v.sym], new_shape, dtype=v.dtype, shape=_reshape_attr(v.shape, new_shape))
        if np.array_equal(p, np.arange(p.size)):
            return Value(t, sym, new_shape)
        t.note_layout("Flatten keeps the runtime's channels-last order "
                      "(the next Linear's columns are permuted to match)")
        return Value(t, sym, new_shape, None, p)
    v = plain(v, "before a reshape")
    return Value(t, t.emit("Reshape", [v.sym], new_shape, dtype=v.dtype, shape=_reshape_attr(v.shape, new_shape)),
                 new_shape)


def _reshape_attr(old, new) -> List[int]:
    """The Reshape op's shape attribute: a reshape that keeps the first (batch) dimension and rearranges the
    rest per row writes -1 there, so the file runs at other batch sizes (`view(x.size(0), -1)`)."""
    new = [int(d) for d in new]
    if len(old) >= 1 and len(new) >= 2 and new[0] == old[0]:
        new[0] = -1
    return new


def reshape(v: Value, *shape) -> Value:
    v = _need_value(v, "reshape")
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = [int(d) for d in shape]
    total = v.numel()
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape {tuple(shape)}: only one dimension can be -1")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1]))
        if known == 0 or total % known:
            raise ShapeError(f"reshape: shape {tuple(shape)} does not fit {v.shape}")
        shape[shape.index(-1)] = total // known
    shape = tuple(shape)
    if int(np.prod(shape)) != total:
        raise ShapeError(f"reshape: shape {shape} does not fit {v.shape} ({total} elements)")
    if shape == v.shape:
        return v
    for k in range(v.ndim):
        if shape == v.shape[:k] + (int(np.prod(v.shape[k:])),):
            return flatten(v, k, -1)
    v = plain(v, "before a reshape")
    return Value(v._t, v._t.emit("Reshape", [v.sym], shape, dtype=v.dtype, shape=_reshape_attr(v.shape, shape)),
                 shape)


def permute(v: Value, *dims) -> Value:
    v = _need_value(v, "permute")
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    dims = tuple(_axis(d, v.ndim) for d in dims)
    if sorted(dims) != list(range(v.ndim)):
        raise ShapeError(f"permute: {dims} is not a permutation of the {v.ndim} dimensions")
    if v.fperm is not None:
        v = plain(v)
    inv = _inv(dims)
    # No data moves: the runtime layout stays, only the logical view changes.
    return Value(v._t, v.sym, tuple(v.shape[d] for d in dims), tuple(inv[p] for p in v.perm))


def mean(v: Value, dim=None, keepdim: bool = False) -> Value:
    v = _need_value(v, "mean")
    r = v.ndim
    dims = list(range(r)) if dim is None else [_axis(d, r) for d in ((dim,) if isinstance(dim, int) else dim)]
    if len(set(dims)) != len(dims):
        raise ShapeError(f"mean: repeated dimension in {dim}")
    if v.fperm is not None and (r - 1) in dims:
        v = plain(v)
    t = v._t
    axes = sorted(v.perm.index(d) for d in dims)
    if keepdim:
        shape = tuple(1 if i in dims else s for i, s in enumerate(v.shape))
        pshape = tuple(1 if i in axes else s for i, s in enumerate(v.sym.shape))
        sym = t.emit("Mean", [v.sym], pshape, axes=axes, keep_dims=1)
        return Value(t, sym, shape, v.perm, v.fperm)
    keep = [a for a in range(r) if a not in dims]
    if not keep:
        sym = t.emit("Mean", [v.sym], tuple(1 for _ in range(r)), axes=axes, keep_dims=1)
        sym = t.emit("Reshape", [sym], (1,), shape=[1])
        return Value(t, sym, (1,))
    renum = {a: i for i, a in enumerate(keep)}
    pshape = tuple(s for i, s in enumerate(v.sym.shape) if i not in axes)
    sym = t.emit("Mean", [v.sym], pshape, axes=axes, keep_dims=0)
    return Value(t, sym, tuple(v.shape[a] for a in keep), tuple(renum[p] for p in v.perm if p in renum), v.fperm)


def cat(values: Sequence[Value], dim: int = 0) -> Value:
    """torch.cat."""
    values = [_need_value(v, "cat") for v in values]
    if not values:
        raise InvalidArgumentError("cat: no tensors")
    r = values[0].ndim
    if any(v.ndim != r for v in values):
        raise ShapeError(f"cat: ranks differ: {[v.shape for v in values]}")
    d = _axis(dim, r)
    for v in values:
        if v.shape[:d] + v.shape[d + 1:] != values[0].shape[:d] + values[0].shape[d + 1:]:
            raise ShapeError(f"cat along {dim}: shapes {[v.shape for v in values]} differ elsewhere")
    t = values[0]._t
    if any(v.fperm is not None for v in values):
        values = [plain(v) for v in values]
    perm = values[0].perm
    syms = [_in_layout(v, perm, "Transpose to match the other inputs of cat") for v in values]
    shape = list(values[0].shape)
    shape[d] = sum(v.shape[d] for v in values)
    pshape = tuple(shape[p] for p in perm)
    sym = t.emit("Concat", syms, pshape, dtype=values[0].dtype, axis=perm.index(d))
    return Value(t, sym, tuple(shape), perm)


def pad(v: Value, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> Value:
    """torch.nn.functional.pad: `pad` pairs (before, after) from the last dimension backwards, torch's order
    ((left, right, top, bottom) for an image); constant (any value), reflect or replicate-free modes. A zero
    Pad before a convolution is fused into it by the core at load (TF-SAME's asymmetric (0, 1) included)."""
    v = _need_value(v, "pad")
    p = [int(x) for x in pad]
    if len(p) % 2 or len(p) // 2 > v.ndim:
        raise InvalidArgumentError(f"pad: {list(pad)} must hold (before, after) pairs for at most {v.ndim} dims")
    if any(x < 0 for x in p):
        raise UnsupportedOpError(f"pad: negative padding {list(pad)} (cropping) is not supported")
    modes = {"constant": 0, "reflect": 1}
    if mode not in modes:
        raise UnsupportedOpError(f"pad: mode {mode!r} is not supported (constant, reflect)")
    before, after = [0] * v.ndim, [0] * v.ndim
    for i in range(len(p) // 2):
        before[v.ndim - 1 - i], after[v.ndim - 1 - i] = p[2 * i], p[2 * i + 1]
    if v.fperm is not None:
        v = plain(v)
    t = v._t
    shape = tuple(d + b + a for d, b, a in zip(v.shape, before, after))
    pads = []
    for logical in v.perm:  # physical axis i holds logical axis perm[i]
        pads += [before[logical], after[logical]]
    attrs = dict(pads=pads, mode=modes[mode])
    if mode == "constant" and float(value) != 0.0:
        attrs["value"] = float(value)
    sym = t.emit("Pad", [v.sym], tuple(shape[a] for a in v.perm), dtype=v.dtype, **attrs)
    return Value(t, sym, shape, v.perm)


def scaled_dot_product_attention(q: Value, k: Value, v: Value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None) -> Value:
    """torch.nn.functional.scaled_dot_product_attention: softmax(q k^T * scale + mask) v over the last two
    dimensions (scale defaults to 1/sqrt(q.size(-1))); the mask is a float additive mask (a constant or a
    Value: turn a 0/1 padding mask into 0 / -1e4 with arithmetic before). is_causal is not supported."""
    if is_causal:
        raise UnsupportedOpError("scaled_dot_product_attention: is_causal=True is not supported (pass a float "
                                 "mask with -inf above the diagonal)")
    q, k, v = (_need_value(x, "scaled_dot_product_attention") for x in (q, k, v))
    sc = (1.0 / float(np.sqrt(q.shape[-1]))) if scale is None else float(scale)
    s = matmul(q * sc, k.transpose(-1, -2))
    if attn_mask is not None:
        m = attn_mask
        dt = m.dtype if isinstance(m, Value) else np.asarray(_to_numpy(m)).dtype
        if np.dtype(dt) == np.bool_:
            raise UnsupportedOpError("scaled_dot_product_attention: a boolean mask is not supported here; pass a "
                                     "float additive mask (0 where attended, -inf or -1e4 elsewhere)")
        s = s + m
    return _softmax(s, -1, "Softmax") @ v


def narrow(v: Value, dim: int, start: int, length: int) -> Value:
    """torch.narrow (x[..., start:start+length, ...] along dim): a Slice in the runtime's layout."""
    v = _need_value(v, "narrow")
    d = _axis(dim, v.ndim)
    if not (0 <= start and length >= 1 and start + length <= v.shape[d]):
        raise ShapeError(f"narrow: [{start}, {start + length}) is outside dimension {dim} of size {v.shape[d]}")
    if length == v.shape[d]:
        return v
    if v.fperm is not None:
        v = plain(v)
    t = v._t
    p = v.perm.index(d)
    begin = [0] * v.ndim
    size = [-1] * v.ndim
    begin[p], size[p] = start, length
    pshape = list(v.sym.shape)
    pshape[p] = length
    shape = list(v.shape)
    shape[d] = length
    return Value(t, t.emit("Slice", [v.sym], tuple(pshape), dtype=v.dtype, begin=begin, size=size), tuple(shape),
                 v.perm)


def squeeze_dim(v: Value, dim: int) -> Value:
    """v without dimension `dim` (of size 1)."""
    d = _axis(dim, v.ndim)
    if v.shape[d] != 1:
        raise ShapeError(f"squeeze: dimension {dim} of {v.shape} is not 1")
    return v.squeeze(d)


def to(v: Value, dtype) -> Value:
    """Value.to(dtype) / .float() / .long() ...: a Cast op (float32, int8, uint8, int32, int64, bool; float to
    an integer truncates toward zero and saturates, docs/ops.md); the same dtype returns `v`."""
    name = str(dtype).replace("torch.", "")
    name = {"float": "float32", "half": "float16", "double": "float64", "long": "int64", "int": "int32"}.get(name, name)
    if name == v.dtype.name:
        return v
    ok = ("float32", "int32", "int64", "int8", "uint8", "bool")
    if name not in ok or v.dtype.name not in ok:
        raise UnsupportedOpError(f"a cast of a {v.dtype.name} tensor to {name}: the runtime's Cast takes "
                                 f"{', '.join(ok)}")
    from .._dtypes import code_of
    v = plain(v, "Cast") if v.fperm is not None else v
    sym = v._t.emit("Cast", [v.sym], tuple(v.sym.shape), dtype=np.dtype(name))
    sym.producer.attrs["dtype"] = code_of(np.dtype(name))
    return Value(v._t, sym, v.shape, v.perm)


def quantize(v: Value, scale: float, zero_point: int, dtype: str = "uint8") -> Value:
    """torch.quantize_per_tensor: a Quantize op (round half to even) to int8 / uint8 with these parameters."""
    v = _need_value(v, "quantize")
    codes = {"int8": 3, "uint8": 4}
    if dtype not in codes:
        raise UnsupportedOpError(f"quantize: dtype {dtype!r} (int8 and uint8 are supported)")
    t = v._t
    sym = t.emit("Quantize", [v.sym], v.sym.shape, dtype=dtype, mode=1)
    sym.producer.attrs["dtype"] = codes[dtype]
    sym.quant = ([float(scale)], [int(zero_point)], None)
    return Value(t, sym, v.shape, v.perm, v.fperm)


def dequantize(v: Value) -> Value:
    """torch.dequantize of a quantized Value: float32 (q - zero_point) * scale."""
    v = _need_value(v, "dequantize")
    if v.sym.quant is None:
        return v
    return Value(v._t, v._t.emit("Dequantize", [v.sym], v.sym.shape), v.shape, v.perm, v.fperm)


def matmul(a, b) -> Value:
    """torch.matmul / `a @ b`: Value @ Value (MatMul, batch dims broadcast), or a Value times a constant
    matrix (FullyConnected with its transpose)."""
    if not isinstance(a, Value):
        raise UnsupportedOpError("matmul: a constant on the left of a Value is not supported (transpose it)")
    t = a._t
    if a.ndim < (2 if isinstance(b, Value) else 1):
        raise ShapeError(f"matmul: rank-1 operands are not supported (shape {a.shape}); unsqueeze first")
    if not isinstance(b, Value):
        w = np.asarray(b.data if isinstance(b, Parameter) else _to_numpy(b), dtype=np.float32)
        if w.ndim != 2 or w.shape[0] != a.shape[-1]:
            raise ShapeError(f"matmul: {a.shape} @ constant {w.shape}: expected a [{a.shape[-1]}, N] matrix")
        a = plain(a, "before MatMul")
        shape = a.shape[:-1] + (w.shape[1],)
        return Value(t, t.emit("FullyConnected", [a.sym, t.const(np.ascontiguousarray(w.T), "matmul_weight")],
                               shape), shape)
    if b.ndim < 2:
        raise ShapeError(f"matmul: rank-1 operands are not supported (shape {b.shape}); unsqueeze first")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: {a.shape} @ {b.shape}: inner dimensions differ")
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ShapeError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
    # b read transposed when its last two axes are swapped in the runtime's layout: no data moves
    nb = b.ndim
    swapped = tuple(range(nb - 2)) + (nb - 1, nb - 2)
    tb = b.fperm is None and b.perm == swapped
    sb = b.sym if tb else _in_layout(b, tuple(range(nb)), "Transpose before MatMul")
    sa = _in_layout(a, tuple(range(a.ndim)), "Transpose before MatMul")
    shape = tuple(batch) + (a.shape[-2], b.shape[-1])
    attrs = {"transpose_b": 1} if tb else {}
    return Value(t, t.emit("MatMul", [sa, sb], shape, **attrs), shape)


def _elementwise2(op: str, a, b) -> Value:
    if isinstance(a, Value):
        return _binary(op, a, b)
    if isinstance(b, Value):
        return _binary(op, b, a)  # Maximum / Minimum commute
    raise InvalidArgumentError(f"{op}: needs a Value")


def maximum(a, b) -> Value:
    """torch.maximum (elementwise, broadcasting)."""
    return _elementwise2("Maximum", a, b)


def minimum(a, b) -> Value:
    """torch.minimum (elementwise, broadcasting)."""
    return _elementwise2("Minimum", a, b)


def clamp(v: Value, min=None, max=None) -> Value:
    """torch.clamp with scalar bounds: Relu / Relu6 when they fit, else Maximum and Minimum."""
    v = _need_value(v, "clamp")
    if min is None and max is None:
        raise InvalidArgumentError("clamp: at least one of min and max is needed")
    if min is not None and max is not None and float(min) == 0.0 and float(max) == 6.0:
        return _unary(v, "Relu6")
    if min is not None and float(min) == 0.0 and max is None:
        return _unary(v, "Relu")
    out = v
    if min is not None:
        out = _binary("Maximum", out, float(min))
    if max is not None:
        out = _binary("Minimum", out, float(max))
    return out


def reduce_sum(v: Value, dim=None, keepdim: bool = False) -> Value:
    """torch.sum over `dim` (all dimensions when None): a Mean times the count."""
    v = _need_value(v, "sum")
    dims = list(range(v.ndim)) if dim is None else [_axis(d, v.ndim) for d in
                                                     ((dim,) if isinstance(dim, (int, np.integer)) else dim)]
    count = int(np.prod([v.shape[d] for d in dims])) if dims else 1
    return _binary("Mul", mean(v, dims, keepdim), float(count))


# ---------------------------------------------------------------------------------------------
# Module
# ---------------------------------------------------------------------------------------------

class Module:
    """Base class of layers and models (torch.nn.Module's shape: children,
    parameters, buffers, state_dict keys, forward)."""

    def __init__(self):
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", False)

    def __setattr__(self, name, value):
        if "_modules" not in self.__dict__:
            raise InvalidStateError(
                f"cannot assign {name!r} before Module.__init__() call (call super().__init__() first)", 9)
        mods, params, bufs = self._modules, self._parameters, self._buffers
        if isinstance(value, Module):
            params.pop(name, None)
            bufs.pop(name, None)
            mods[name] = value
        elif isinstance(value, Parameter):
            mods.pop(name, None)
            (bufs if name in bufs else params)[name] = value
        elif value is None and (name in mods or name in params or name in bufs):
            (mods if name in mods else params if name in params else bufs)[name] = None
        else:
            for d in (mods, params, bufs):
                d.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        """A buffer (running statistics and the like): a shape, an array, or None."""
        if value is not None and not isinstance(value, Parameter):
            value = Parameter(value) if not isinstance(value, (tuple, list)) else Parameter(tuple(value))
        self._buffers[name] = value
        if not persistent:
            self._non_persistent.add(name)
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, value: Optional[Parameter]) -> None:
        self._parameters[name] = value
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        self._modules[name] = module
        object.__setattr__(self, name, module)

    # -- structure ---------------------------------------------------------------------------
    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        for n, m in self._modules.items():
            if m is not None:
                yield n, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "", remove_duplicate: bool = True, _memo=None):
        memo = set() if _memo is None else _memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for n, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{n}" if prefix else n, remove_duplicate, memo)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def _state_entries(self, prefix: str = "") -> "OrderedDict[str, Parameter]":
        out: "OrderedDict[str, Parameter]" = OrderedDict()
        for n, p in self._parameters.items():
            if p is not None:
                out[prefix + n] = p
        for n, p in self._buffers.items():
            if p is not None and n not in self._non_persistent:
                out[prefix + n] = p
        for n, m in self.named_children():
            out.update(m._state_entries(prefix + n + "."))
        return out

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """The loaded values, keyed as torch keys them (unloaded entries are left out)."""
        return OrderedDict((k, p.data) for k, p in self._state_entries().items() if p.data is not None)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        if mode:
            raise UnsupportedOpError("tinyinfer.nn describes inference only (eval mode)")
        return self

    # -- weights -----------------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, skip: Sequence[str] = ()) -> IncompatibleKeys:
        """Loads torch weights (a mapping of key -> array or torch tensor, or a
        path to a .pt/.pth/.safetensors file). Like torch: with strict, missing
        or unexpected keys raise StateDictError ("Missing key(s) in
        state_dict: ..."); shape mismatches always raise; returns
        IncompatibleKeys(missing_keys, unexpected_keys). `skip`: key prefixes
        (module names) of the checkpoint to leave out, for modules the
        forward pass does not use and the description does not declare
        (skip=("pooler",))."""
        if isinstance(state_dict, (str, os.PathLike, bytes)):
            state_dict = _load_state_dict(state_dict)
        if not hasattr(state_dict, "keys"):
            raise InvalidArgumentError(f"load_state_dict expects a mapping, got {type(state_dict).__name__}")
        if skip:  # checkpoint modules the forward pass does not use (a pooler, a head): not declared, not loaded
            pre = tuple(str(p).rstrip(".") + "." for p in ([skip] if isinstance(skip, str) else skip))
            state_dict = OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith(pre))
        entries = self._state_entries()
        missing = [k for k in entries if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in entries]
        errors: List[str] = []
        values = {}
        for k, p in entries.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            if hasattr(v, "is_quantized") and getattr(v, "is_quantized", False) and hasattr(v, "int_repr"):
                v = _torch_qtensor(v)  # a live torch quantized tensor
            if isinstance(v, QuantizedTensor):
                if tuple(v.shape) != p.shape:
                    errors.append(f"size mismatch for {k}: copying a param with shape {tuple(v.shape)} from "
                                  f"checkpoint, the shape in current model is {p.shape}.")
                    continue
                values[k] = v
                continue
            a = _to_numpy(v)
            if len(p.shape) == 0 and a.shape == (1,):
                a = a.reshape(())  # torch's rule for 0-d parameters saved as 1-d
            if tuple(a.shape) != p.shape:
                errors.append(f"size mismatch for {k}: copying a param with shape {tuple(a.shape)} from checkpoint, "
                              f"the shape in current model is {p.shape}.")
                continue
            if p.dtype.kind == "f":
                if a.dtype.kind not in "fiub":
                    errors.append(f"{k}: dtype {a.dtype} cannot become {p.dtype}")
                    continue
                a = a.astype(p.dtype)
            values[k] = a
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
        if strict and unexpected and missing:
            stripped = {k[len("module."):] for k in unexpected if k.startswith("module.")}
            if set(missing) <= stripped:
                errors.append("(the keys start with 'module.': a checkpoint of DataParallel / "
                              "DistributedDataParallel; strip that prefix from the keys)")
        if errors:
            raise StateDictError("Error(s) in loading state_dict for {}:\n\t{}".format(
                type(self).__name__, "\n\t".join(errors)))
        for k, a in values.items():
            if isinstance(a, QuantizedTensor):
                entries[k].quant, entries[k].data = a, a.dequantize()
            else:
                entries[k].quant, entries[k].data = None, np.ascontiguousarray(a)
        return IncompatibleKeys(missing, unexpected)

    def _check_loaded(self) -> None:
        empty = [k for k, p in self._state_entries().items() if p.data is None and k.rsplit(".", 1)[-1]
                 != "num_batches_tracked"]
        if empty:
            raise InvalidStateError(
                f"{type(self).__name__}: no value for {', '.join(empty[:8])}{' ...' if len(empty) > 8 else ''}: "
                f"call load_state_dict first")

    # -- forward -----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def __call__(self, *args, **kwargs):
        values = [a for a in list(args) + list(kwargs.values()) if isinstance(a, Value)]
        if not values:
            values = [x for a in args if isinstance(a, (list, tuple)) for x in a if isinstance(x, Value)]
        if not values:
            raise InvalidArgumentError(
                f"{type(self).__name__}: tinyinfer.nn modules run symbolically while the graph is written; call "
                f"to_builder(input_shape) or save(path, input_shape) instead of calling the model on data")
        t = values[0]._t
        name = t.names.get(id(self), type(self).__name__)
        t.scope_stack.append(name)
        t.layer_stack.append(type(self).__name__)
        try:
            if not self._modules:
                t.layers_in[type(self).__name__] += 1
            return self.forward(*args, **kwargs)
        finally:
            t.scope_stack.pop()
            t.layer_stack.pop()

    # -- graph -------------------------------------------------------------------------------
    def to_builder(self, input_shape, name: Optional[str] = None, *, input_dtype=None, input_names=None,
                   output_names=None, report=None):
        """A GraphBuilder for this model on inputs of `input_shape` (torch
        layout; a list of shapes for several inputs). The graph's inputs and
        outputs have torch's layouts. `report` (a tinyinfer.convert.Report)
        is filled with the layers, ops, folds, fusions and layout changes."""
        self._check_loaded()
        shapes = [tuple(input_shape)] if all(isinstance(d, (int, np.integer)) for d in input_shape) \
            else [tuple(s) for s in input_shape]
        for s in shapes:
            if not s or any(int(d) < 1 for d in s):
                raise ShapeError(f"input shape {s}: every dimension must be >= 1")
        if input_dtype is None:
            first = next((m for m in self.modules() if not m._modules), None)
            dtypes = ["int64" if isinstance(first, Embedding) else "float32"] * len(shapes)
        else:
            dtypes = [input_dtype] * len(shapes) if isinstance(input_dtype, str) or not isinstance(
                input_dtype, (list, tuple)) else list(input_dtype)
        if input_names is None:
            input_names = ["input"] if len(shapes) == 1 else [f"input_{i}" for i in range(len(shapes))]
        t = _Tracer(self)
        ins = [t.input(n, s, d) for n, s, d in zip(input_names, shapes, dtypes)]
        out = self(*ins)

        def flat(o):  # nested tuples (an LSTM's (output, (h_n, c_n))) become graph outputs in order
            return [v for e in o for v in flat(e)] if isinstance(o, (list, tuple)) else [o]
        outs = flat(out)
        for o in outs:
            _need_value(o, f"{type(self).__name__}.forward result")
        if output_names is None:
            output_names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
        return t.finish(outs, name or type(self).__name__, list(output_names), report)

    def save(self, path, input_shape, **kwargs) -> int:
        """Writes the .tinf for inputs of `input_shape` (torch layout); returns its size in bytes."""
        b = self.to_builder(input_shape, **kwargs)
        return b.save(path)

    # -- printing ----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({n}): " + repr(m).replace("\n", "\n  ") for n, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + (")" if not lines else "\n  " + "\n  ".join(lines) + "\n)")


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------

class Sequential(Module):
    """Children run in order; keys "0.weight", ... or named with an OrderedDict."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], dict):
            for n, m in args[0].items():
                self.add_module(str(n), m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def add_module(self, name, module):
        if not isinstance(module, Module):
            raise InvalidArgumentError(f"Sequential: child {name!r} is not a tinyinfer.nn.Module "
                                       f"({type(module).__name__})", 1)
        super().add_module(name, module)

    def append(self, module: Module) -> "Sequential":
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[idx][1]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    def __init__(self, modules=None):
        super().__init__()
        for m in modules or []:
            self.append(m)

    def append(self, module: Module) -> "ModuleList":
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules) -> "ModuleList":
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, idx):
        items = list(self._modules.values())
        return ModuleList(items[idx]) if isinstance(idx, slice) else items[idx]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleDict(Module):
    def __init__(self, modules=None):
        super().__init__()
        for n, m in (modules or {}).items():
            self.add_module(n, m)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------

def _pair(v, what: str) -> Tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, (int, np.integer)) for x in v):
        return int(v[0]), int(v[1])
    if isinstance(v, (tuple, list)) and len(v) == 1:
        return _pair(v[0], what)
    raise InvalidArgumentError(f"{what} must be an int or a pair of ints, got {v!r}")


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter((self.out_features, self.in_features))
        self.bias = Parameter((self.out_features,)) if bias else None

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x):
        x = _need_value(x, "Linear")
        t = x._t
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"Linear {t.scope}: input {x.shape} does not end in in_features={self.in_features}")
        if x.dtype != np.float32:
            raise UnsupportedOpError(f"Linear {t.scope}: takes float32 input, got {x.dtype}")
        if x.perm != tuple(range(x.ndim)):
            x = plain(x, "before Linear")
        ins = [x.sym, linear_weight(t, self.weight, x.fperm)]
        if self.bias is not None:
            ins.append(t.const(self.bias.data, "bias"))
        shape = x.shape[:-1] + (self.out_features,)
        return Value(t, t.emit("FullyConnected", ins, shape), shape)


def linear_weight(t: "_Tracer", weight: Parameter, fperm=None) -> _Const:
    """The FullyConnected weight constant of a Linear: float32, or, for a quantized weight whose values fit
    int8 with zero point 0 (torch's qint8 weights, per tensor or per output channel), torch's own int8
    values with their scales (the runtime's int8-dynamic FullyConnected), never re-quantized."""
    q = weight.quant.symmetric_int8() if weight.quant is not None else None
    if weight.quant is not None and (q is None or q[2] not in (None, 0)):
        t.note_layout("a quantized Linear weight that is not int8 with zero point 0 along the output axis "
                      "runs dequantized (float32, the same values)")
        q = None
    w = q[0] if q is not None else weight.data
    if fperm is not None:
        w = w[:, fperm]
        t.note_layout("Linear weight columns permuted to the NHWC flatten order")
    c = t.const(w, "weight")
    if q is not None:
        c.quant = (q[1], np.zeros(q[1].size, np.int32), q[2])
        t.quantized.append(t.scope or "<root>")
    return c


def _conv_out(n: int, k: int, s: int, d: int, before: int, after: int) -> int:
    return (n + before + after - d * (k - 1) - 1) // s + 1


class Conv2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise InvalidArgumentError(f"Conv2d: padding {padding!r}; expected 'same', 'valid' or ints")
            if padding == "same" and self.stride != (1, 1):
                raise InvalidArgumentError("Conv2d: padding='same' is not supported for strided convolutions "
                                           "(as in torch)")
            self.padding = padding
        else:
            self.padding = _pair(padding, "padding")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise InvalidArgumentError(f"Conv2d: padding_mode {padding_mode!r}")
        self.padding_mode = padding_mode
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise InvalidArgumentError(f"Conv2d: in_channels {in_channels} and out_channels {out_channels} must be "
                                       f"divisible by groups {groups}")
        kh, kw = self.kernel_size
        self.weight = Parameter((self.out_channels, self.in_channels // self.groups, kh, kw))
        self.bias = Parameter((self.out_channels,)) if bias else None

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}")

    def pads(self) -> Tuple[int, int, int, int]:
        """The explicit (top, bottom, left, right) padding this convolution applies ('same' resolved)."""
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        if self.padding == "valid":
            return 0, 0, 0, 0
        if self.padding == "same":
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return th // 2, th - th // 2, tw // 2, tw - tw // 2
        ph, pw = self.padding
        return ph, ph, pw, pw

    def forward(self, x):
        x = _need_value(x, "Conv2d")
        t = x._t
        who = f"Conv2d {t.scope}"
        xs = _nhwc(x, who)
        n, c, h, w = x.shape
        if c != self.in_channels:
            raise ShapeError(f"{who}: expected {self.in_channels} input channels, got {c} (input {x.shape})")
        pt, pb, pl, pr = self.pads()
        if self.padding_mode != "zeros" and (pt or pb or pl or pr):
            if self.padding_mode != "reflect":
                raise UnsupportedOpError(f"{who}: padding_mode {self.padding_mode!r} is not supported "
                                         f"('zeros' and 'reflect' are)")
            if max(pt, pb) >= h or max(pl, pr) >= w:
                raise ShapeError(f"{who}: reflect padding must be smaller than the input")
            xs = t.emit("Pad", [xs], (n, h + pt + pb, w + pl + pr, c), pads=[0, 0, pt, pb, pl, pr, 0, 0], mode=1)
            h, w = h + pt + pb, w + pl + pr
            pt = pb = pl = pr = 0
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        oh, ow = _conv_out(h, kh, sh, dh, pt, pb), _conv_out(w, kw, sw, dw, pl, pr)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{who}: input {x.shape} is smaller than the kernel {self.kernel_size}")
        attrs = dict(strides=[sh, sw], dilations=[dh, dw])
        attrs.update(dict(padding=2, pads=[pt, pb, pl, pr]) if (pt or pb or pl or pr) else dict(padding=0))
        wt = self.weight.data
        if self.groups == self.in_channels and self.groups > 1:
            m = self.out_channels // self.in_channels
            wc = wt[:, 0].transpose(1, 2, 0)[None]  # [C*M, KH, KW] -> [1, KH, KW, C*M]
            op = "DepthwiseConv2D"
            attrs["depth_multiplier"] = m
            t.note_layout("depthwise Conv2d weight [C*M, 1, KH, KW] -> [1, KH, KW, C*M]")
        else:
            wc = wt.transpose(0, 2, 3, 1)
            op = "Conv2D"
            if self.groups > 1:
                attrs["groups"] = self.groups
            t.note_layout("Conv2d weight OIHW -> OHWI")
        ins = [xs, t.const(wc, "weight")]
        if self.bias is not None:
            ins.append(t.const(self.bias.data, "bias"))
        out = (n, self.out_channels, oh, ow)
        return Value(t, t.emit(op, ins, (n, oh, ow, self.out_channels), **attrs), out, _NHWC)


class ConvTranspose2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.output_padding = _pair(output_padding, "output_padding")
        self.dilation = _pair(dilation, "dilation")
        if padding_mode != "zeros":
            raise InvalidArgumentError("ConvTranspose2d: only padding_mode='zeros' exists (as in torch)")
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise InvalidArgumentError(f"ConvTranspose2d: channels must be divisible by groups {groups}")
        kh, kw = self.kernel_size
        self.weight = Parameter((self.in_channels, self.out_channels // self.groups, kh, kw))
        self.bias = Parameter((self.out_channels,)) if bias else None

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, output_padding={self.output_padding}")

    def forward(self, x, output_size=None):
        x = _need_value(x, "ConvTranspose2d")
        t = x._t
        who = f"ConvTranspose2d {t.scope}"
        if output_size is not None:
            raise UnsupportedOpError(f"{who}: output_size is not supported; use output_padding")
        xs = _nhwc(x, who)
        n, c, h, w = x.shape
        if c != self.in_channels:
            raise ShapeError(f"{who}: expected {self.in_channels} input channels, got {c}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        (dh, dw), (oph, opw) = self.dilation, self.output_padding
        oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
        ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
        if oh < 1 or ow < 1:
            raise ShapeError(f"{who}: the output would be empty ({oh} x {ow})")
        attrs = dict(strides=[sh, sw], dilations=[dh, dw], output_padding=[oph, opw])
        attrs.update(dict(padding=2, pads=[ph, ph, pw, pw]) if (ph or pw) else dict(padding=0))
        g = self.groups
        wt = self.weight.data  # [Cin, Cout/g, KH, KW]
        t.note_layout("ConvTranspose2d weight IOHW -> [Cout, KH, KW, Cin]")
        cin_g, cout_g = self.in_channels // g, self.out_channels // g
        bias = self.bias.data if self.bias is not None else None
        if g == 1:
            parts_in = [xs]
        else:
            parts_in = t.emit("Split", [xs], [(n, h, w, cin_g)] * g, n_out=g, axis=3)
        outs = []
        for i, xi in enumerate(parts_in):
            wi = wt[i * cin_g:(i + 1) * cin_g].transpose(1, 2, 3, 0)  # [Cout_g, KH, KW, Cin_g]
            ins = [xi, t.const(wi, "weight" if g == 1 else f"weight_g{i}")]
            if bias is not None:
                ins.append(t.const(bias[i * cout_g:(i + 1) * cout_g], "bias" if g == 1 else f"bias_g{i}"))
            outs.append(t.emit("TransposeConv2D", ins, (n, oh, ow, cout_g), **attrs))
        sym = outs[0] if g == 1 else t.emit("Concat", outs, (n, oh, ow, self.out_channels), axis=3)
        return Value(t, sym, (n, self.out_channels, oh, ow), _NHWC)


class _BatchNorm(Module):
    _ranks: Tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps = int(num_features), float(eps)
        self.affine, self.track_running_stats = affine, track_running_stats
        c = self.num_features
        self.weight = Parameter((c,)) if affine else None
        self.bias = Parameter((c,)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", Parameter((c,)))
            self.register_buffer("running_var", Parameter((c,)))
            self.register_buffer("num_batches_tracked", Parameter((), dtype="int64"))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"

    def _stats(self, who):
        if not self.track_running_stats:
            raise UnsupportedOpError(f"{who}: without running statistics (track_running_stats=False) torch "
                                     f"normalizes with each batch's statistics even in eval mode; not supported")
        c = self.num_features
        scale = self.weight.data if self.affine else np.ones(c, np.float32)
        shift = self.bias.data if self.affine else np.zeros(c, np.float32)
        return [scale, shift, self.running_mean.data, self.running_var.data]

    def forward(self, x):
        x = _need_value(x, type(self).__name__)
        t = x._t
        who = f"{type(self).__name__} {t.scope}"
        if x.ndim not in self._ranks:
            raise ShapeError(f"{who}: expected a {' or '.join(f'{r}-D' for r in self._ranks)} input, got {x.shape}")
        if x.shape[1] != self.num_features:
            raise ShapeError(f"{who}: expected {self.num_features} channels, got {x.shape[1]}")
        stats = self._stats(who)
        if x.ndim == 4:
            sym, perm, fperm = _nhwc(x, who), _NHWC, None
        elif x.ndim == 2:
            sym, perm, fperm = x.sym, x.perm, x.fperm
            if fperm is not None:
                stats = [s[fperm] for s in stats]
        else:  # (N, C, L): channels last in the runtime
            perm = (0, 2, 1)
            sym, fperm = _in_layout(x, perm, "Transpose (N, C, L) -> (N, L, C) for BatchNorm1d"), None
        ins = [sym] + [t.const(a, nm) for a, nm in zip(stats, ["weight", "bias", "running_mean", "running_var"])]
        out = t.emit("BatchNorm", ins, sym.shape, epsilon=self.eps)
        return Value(t, out, x.shape, perm, fperm)


class BatchNorm2d(_BatchNorm):
    _ranks = (4,)


class BatchNorm1d(_BatchNorm):
    _ranks = (2, 3)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        ns = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = tuple(int(d) for d in ns), float(eps), \
            elementwise_affine
        self.weight = Parameter(self.normalized_shape) if elementwise_affine else None
        self.bias = Parameter(self.normalized_shape) if elementwise_affine and bias else None

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

    def forward(self, x):
        x = _need_value(x, "LayerNorm")
        t = x._t
        k = len(self.normalized_shape)
        if x.shape[-k:] != self.normalized_shape or x.ndim < k:
            raise ShapeError(f"LayerNorm {t.scope}: input {x.shape} does not end in {self.normalized_shape}")
        r = x.ndim
        if x.perm[r - k:] != tuple(range(r - k, r)):
            x = plain(x, "before LayerNorm")
        gamma = self.weight.data if self.weight is not None else np.ones(self.normalized_shape, np.float32)
        beta = self.bias.data if self.bias is not None else None
        if x.fperm is not None:
            gamma = gamma[..., x.fperm]
            beta = beta[..., x.fperm] if beta is not None else None
        ins = [x.sym, t.const(gamma, "weight"), t.const(beta, "bias") if beta is not None else None]
        out = t.emit("LayerNorm", ins, x.sym.shape, axis=-k, epsilon=self.eps)
        return Value(t, out, x.shape, x.perm, x.fperm)


class _RNNBase(Module):
    """torch.nn.LSTM / torch.nn.GRU: each layer is one runtime LSTM / GRU op over every step and both
    directions (ONNX semantics: torch's gate order i, f, g, o becomes i, o, f, c; r, z, n becomes z, r, h with
    linear_before_reset = 1). forward(x, hx=None) returns (output, (h_n, c_n)) for LSTM and (output, h_n) for
    GRU, in torch's layouts; dropout between layers is an identity (inference). proj_size is refused."""
    _kind, _gates, _order = "LSTM", 4, (0, 3, 1, 2)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None):
        super().__init__()
        if proj_size:
            raise UnsupportedOpError(f"{self._kind}: proj_size={proj_size} (projections) is not supported")
        if int(num_layers) < 1 or int(hidden_size) < 1 or int(input_size) < 1:
            raise InvalidArgumentError(f"{self._kind}: input_size, hidden_size and num_layers must be >= 1")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout = float(dropout)
        d, gh = (2 if self.bidirectional else 1), self._gates * self.hidden_size
        for k in range(self.num_layers):
            width = self.input_size if k == 0 else self.hidden_size * d
            for sfx in ("", "_reverse")[:d]:
                setattr(self, f"weight_ih_l{k}{sfx}", Parameter((gh, width)))
                setattr(self, f"weight_hh_l{k}{sfx}", Parameter((gh, self.hidden_size)))
                if self.bias:
                    setattr(self, f"bias_ih_l{k}{sfx}", Parameter((gh,)))
                    setattr(self, f"bias_hh_l{k}{sfx}", Parameter((gh,)))

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, bidirectional={self.bidirectional}")

    def _gate_rows(self, a: np.ndarray) -> np.ndarray:
        """torch's gate blocks in the runtime's (ONNX) order."""
        h = self.hidden_size
        return np.concatenate([a[j * h:(j + 1) * h] for j in self._order])

    def forward(self, x, hx=None):
        x = plain(_need_value(x, self._kind), f"before {self._kind}")
        t = x._t
        if x.ndim != 3 or x.shape[2] != self.input_size or x.dtype != np.float32:
            raise ShapeError(f"{self._kind} {t.scope}: input {x.shape} {x.dtype} must be float32 [seq, batch, "
                             f"{self.input_size}] ({'batch first' if self.batch_first else 'sequence first'})")
        d, h = (2 if self.bidirectional else 1), self.hidden_size
        T, B = (x.shape[1], x.shape[0]) if self.batch_first else (x.shape[0], x.shape[1])
        states = [] if hx is None else ([hx] if self._kind == "GRU" else list(hx))
        for s in states:
            s = _need_value(s, self._kind)
            if s.shape != (self.num_layers * d, B, h):
                raise ShapeError(f"{self._kind} {t.scope}: state {s.shape}, expected {(self.num_layers * d, B, h)}")
        axis = 1 if self.batch_first else 0
        hs, cs = [], []
        for k in range(self.num_layers):
            sfxs = ("", "_reverse")[:d]
            w = np.stack([self._gate_rows(getattr(self, f"weight_ih_l{k}{s}").data) for s in sfxs])
            r = np.stack([self._gate_rows(getattr(self, f"weight_hh_l{k}{s}").data) for s in sfxs])
            ins = [x.sym, t.const(w.astype(np.float32), f"W_l{k}"), t.const(r.astype(np.float32), f"R_l{k}")]
            if self.bias:
                b = np.stack([np.concatenate([self._gate_rows(getattr(self, f"bias_ih_l{k}{s}").data),
                                              self._gate_rows(getattr(self, f"bias_hh_l{k}{s}").data)])
                              for s in sfxs])
                ins.append(t.const(b.astype(np.float32), f"B_l{k}"))
            for s in states:  # this layer's [D, B, H] slice, in the op's state layout
                part = plain(narrow(s, 0, k * d, d))
                if self.batch_first:
                    part = plain(part.permute(1, 0, 2), f"{self._kind} state to batch-first")
                while len(ins) < 4:
                    ins.append(None)
                ins.append(part.sym)
            n_out = 3 if self._kind == "LSTM" else 2
            y_shape = (B, T, d, h) if self.batch_first else (T, d, B, h)
            s_shape = (B, d, h) if self.batch_first else (d, B, h)
            attrs = dict(mode=2 if d == 2 else 0, axis=axis)
            if self._kind == "GRU":
                attrs["linear_before_reset"] = 1
            outs = t.emit(self._kind, ins, [y_shape] + [s_shape] * (n_out - 1), n_out=n_out, **attrs)
            y = Value(t, outs[0], y_shape)
            x = reshape(y, B, T, d * h) if self.batch_first else reshape(y.permute(0, 2, 1, 3), T, B, d * h)
            x = plain(x, f"after {self._kind}")
            for lst, o in zip((hs, cs), outs[1:]):
                v = Value(t, o, s_shape)
                lst.append(v.permute(1, 0, 2) if self.batch_first else v)
        h_n = cat(hs, 0) if len(hs) > 1 else hs[0]
        if self._kind == "GRU":
            return x, h_n
        return x, (h_n, cat(cs, 0) if len(cs) > 1 else cs[0])


class LSTM(_RNNBase):
    _kind, _gates, _order = "LSTM", 4, (0, 3, 1, 2)


class GRU(_RNNBase):
    _kind, _gates, _order = "GRU", 3, (1, 0, 2)


class Embedding(Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, device=None, dtype=None):
        super().__init__()
        if max_norm is not None:
            raise UnsupportedOpError("Embedding: max_norm renormalizes rows at lookup; not supported")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        self.weight = Parameter((self.num_embeddings, self.embedding_dim))

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"

    def forward(self, x):
        x = _need_value(x, "Embedding")
        t = x._t
        if x.dtype.kind not in "iu" or x.dtype.itemsize not in (4, 8) or x.dtype.kind == "u":
            raise UnsupportedOpError(f"Embedding {t.scope}: takes int32 or int64 indices, got {x.dtype} "
                                     f"(pass input_dtype='int64' to to_builder)")
        x = plain(x)
        shape = x.shape + (self.embedding_dim,)
        out = t.emit("Gather", [t.const(self.weight.data, "weight"), x.sym], shape, axis=0)
        return Value(t, out, shape)


class _Activation(Module):
    _op = ""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x):
        return _unary(_need_value(x, type(self).__name__), self._op)


class ReLU(_Activation):
    _op = "Relu"


class ReLU6(_Activation):
    _op = "Relu6"


class Sigmoid(_Activation):
    _op = "Logistic"

    def __init__(self):
        super().__init__()


class Tanh(_Activation):
    _op = "Tanh"

    def __init__(self):
        super().__init__()


class Hardswish(_Activation):
    _op = "HardSwish"


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return _unary(_need_value(x, "LeakyReLU"), "LeakyRelu", alpha=self.negative_slope)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise InvalidArgumentError(f"GELU: approximate {approximate!r}; expected 'none' or 'tanh'")
        self.approximate = approximate

    def forward(self, x):
        return _unary(_need_value(x, "GELU"), "Gelu", approximate=1 if self.approximate == "tanh" else 0)


class SiLU(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x):
        x = _need_value(x, "SiLU")
        return _binary("Mul", x, _unary(x, "Logistic"))


class PReLU(Module):
    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = int(num_parameters)
        self.weight = Parameter((self.num_parameters,))

    def forward(self, x):
        x = _need_value(x, "PReLU")
        t = x._t
        slope = self.weight.data
        if self.num_parameters > 1:
            if x.ndim < 2 or x.shape[1] != self.num_parameters:
                raise ShapeError(f"PReLU {t.scope}: {self.num_parameters} parameters for input {x.shape}")
            logical = slope.reshape((1, -1) + (1,) * (x.ndim - 2))
            slope = logical.transpose(x.perm)
            if x.fperm is not None and slope.shape[-1] > 1:
                slope = slope[..., x.fperm]
        out = t.emit("PRelu", [x.sym, t.const(np.ascontiguousarray(slope), "weight")], x.sym.shape)
        return Value(t, out, x.shape, x.perm, x.fperm)


def _softmax_dim(dim, ndim):
    if dim is not None:
        return dim
    return 0 if ndim in (0, 1, 3) else 1  # torch's legacy implicit dim


class Softmax(Module):
    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        x = _need_value(x, "Softmax")
        return _softmax(x, _softmax_dim(self.dim, x.ndim), "Softmax")


class LogSoftmax(Softmax):
    def forward(self, x):
        x = _need_value(x, "LogSoftmax")
        return _softmax(x, _softmax_dim(self.dim, x.ndim), "LogSoftmax")


def _pool_out(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    num = n + 2 * p - k
    o = (num + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride") if stride is not None and stride != [] else self.kernel_size
        self.padding = _pair(padding, "padding")
        self.ceil_mode = bool(ceil_mode)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _geometry(self, x, who):
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if ph > kh // 2 or pw > kw // 2:
            raise ShapeError(f"{who}: padding {self.padding} must be at most half the kernel {self.kernel_size}")
        oh, ow = _pool_out(h, kh, sh, ph, self.ceil_mode), _pool_out(w, kw, sw, pw, self.ceil_mode)
        if oh < 1 or ow < 1:
            raise ShapeError(f"{who}: input {x.shape} is smaller than the kernel {self.kernel_size}")
        eh = max((oh - 1) * sh + kh - (h + 2 * ph), 0)
        ew = max((ow - 1) * sw + kw - (w + 2 * pw), 0)
        return (n, c, oh, ow), [ph, ph + eh, pw, pw + ew], (eh, ew)

    def _emit(self, x, op, who, **extra):
        t = x._t
        xs = _nhwc(x, who)
        out, pads, _ = self._geometry(x, who)
        attrs = dict(filter=list(self.kernel_size), strides=list(self.stride))
        attrs.update(dict(padding=2, pads=pads) if any(pads) else dict(padding=0))
        attrs.update(extra)
        n, c, oh, ow = out
        return Value(t, t.emit(op, [xs], (n, oh, ow, c), **attrs), out, _NHWC)


class MaxPool2d(_Pool2d):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        if _pair(dilation, "dilation") != (1, 1):
            raise UnsupportedOpError("MaxPool2d: dilation is not supported")
        if return_indices:
            raise UnsupportedOpError("MaxPool2d: return_indices is not supported")

    def forward(self, x):
        x = _need_value(x, "MaxPool2d")
        return self._emit(x, "MaxPool2D", f"MaxPool2d {x._t.scope}")


class AvgPool2d(_Pool2d):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        if divisor_override is not None and int(divisor_override) <= 0:
            raise InvalidArgumentError("AvgPool2d: divisor_override must be > 0")
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def _divisors(self, h, w, oh, ow):
        """torch's divisor for each output cell, and the number of real input cells in it."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding

        def axis(n, o, k, s, p):
            start = np.arange(o) * s - p
            end = np.minimum(start + k, n + p)
            size = end - start
            real = np.minimum(end, n) - np.maximum(start, 0)
            return size, real
        size_h, real_h = axis(h, oh, kh, sh, ph)
        size_w, real_w = axis(w, ow, kw, sw, pw)
        real = np.outer(real_h, real_w).astype(np.float64)
        if self.divisor_override is not None:
            torch_div = np.full_like(real, float(self.divisor_override))
        elif self.count_include_pad:
            torch_div = np.outer(size_h, size_w).astype(np.float64)
        else:
            torch_div = real
        return torch_div, real

    def forward(self, x):
        x = _need_value(x, "AvgPool2d")
        t = x._t
        who = f"AvgPool2d {t.scope}"
        _nhwc(x, who)
        (n, c, oh, ow), _, _ = self._geometry(x, who)
        torch_div, real = self._divisors(x.shape[2], x.shape[3], oh, ow)
        kh, kw = self.kernel_size
        if np.all(torch_div == kh * kw):
            return self._emit(x, "AveragePool2D", who, count_include_pad=1)
        y = self._emit(x, "AveragePool2D", who, count_include_pad=0)  # divides by the real cells
        if np.array_equal(torch_div, real):
            return y
        # torch divides some windows by another count (padding cells, or divisor_override): rescale those.
        factor = (real / torch_div).astype(np.float32).reshape(1, oh, ow, 1)
        t.note_layout("AvgPool2d divisor differs from the runtime's on some windows: Mul by a constant map")
        sym = t.emit("Mul", [y.sym, t.const(factor, "divisor_map")], y.sym.shape)
        return Value(t, sym, y.shape, y.perm)


def _adaptive_size(output_size, h, w):
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        oh = ow = output_size
    else:
        oh, ow = output_size
    return (h if oh is None else int(oh)), (w if ow is None else int(ow))


def _adaptive_matrix(n: int, o: int) -> np.ndarray:
    m = np.zeros((o, n), np.float64)
    for i in range(o):
        a, b = (i * n) // o, -((-(i + 1) * n) // o)
        m[i, a:b] = 1.0 / (b - a)
    return m


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        x = _need_value(x, "AdaptiveAvgPool2d")
        t = x._t
        who = f"AdaptiveAvgPool2d {t.scope}"
        xs = _nhwc(x, who)
        n, c, h, w = x.shape
        oh, ow = _adaptive_size(self.output_size, h, w)
        if (oh, ow) == (h, w):
            return x
        if (oh, ow) == (1, 1):
            return Value(t, t.emit("Mean", [xs], (n, 1, 1, c), axes=[1, 2], keep_dims=1), (n, c, 1, 1), _NHWC)
        if h % oh == 0 and w % ow == 0:
            kh, kw = h // oh, w // ow
            sym = t.emit("AveragePool2D", [xs], (n, oh, ow, c), filter=[kh, kw], strides=[kh, kw], padding=0)
            return Value(t, sym, (n, c, oh, ow), _NHWC)
        # Uneven windows (torch: rows floor(i*H/oh) .. ceil((i+1)*H/oh)): the pooling is linear, so it is
        # one FullyConnected over H*W with the matrix kron(Ph, Pw), on torch's (N, C, H*W) layout.
        if oh * ow * h * w > (1 << 22):
            raise UnsupportedOpError(f"{who}: output {oh}x{ow} does not divide the input {h}x{w} and the pooling "
                                     f"matrix would be too large")
        mat = np.kron(_adaptive_matrix(h, oh), _adaptive_matrix(w, ow)).astype(np.float32)
        flat = flatten(plain(x, "before uneven adaptive pooling"), 2, 3)
        sym = t.emit("FullyConnected", [flat.sym, t.const(mat, "pool_matrix")], (n, c, oh * ow))
        t.note_layout("uneven AdaptiveAvgPool2d as a FullyConnected over H*W")
        return reshape(Value(t, sym, (n, c, oh * ow)), n, c, oh, ow)


class AdaptiveMaxPool2d(Module):
    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        if return_indices:
            raise UnsupportedOpError("AdaptiveMaxPool2d: return_indices is not supported")
        self.output_size = output_size

    def forward(self, x):
        x = _need_value(x, "AdaptiveMaxPool2d")
        t = x._t
        who = f"AdaptiveMaxPool2d {t.scope}"
        xs = _nhwc(x, who)
        n, c, h, w = x.shape
        oh, ow = _adaptive_size(self.output_size, h, w)
        if (oh, ow) == (h, w):
            return x
        if h % oh or w % ow:
            raise UnsupportedOpError(f"{who}: output {oh}x{ow} does not divide the input {h}x{w}")
        kh, kw = h // oh, w // ow
        sym = t.emit("MaxPool2D", [xs], (n, oh, ow, c), filter=[kh, kw], strides=[kh, kw], padding=0)
        return Value(t, sym, (n, c, oh, ow), _NHWC)


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return flatten(_need_value(x, "Flatten"), self.start_dim, self.end_dim)


class ZeroPad2d(Module):
    """torch.nn.ZeroPad2d: padding an int or (left, right, top, bottom)."""

    def __init__(self, padding):
        super().__init__()
        self.padding = (int(padding),) * 4 if isinstance(padding, (int, np.integer)) else tuple(int(p) for p in padding)
        if len(self.padding) != 4:
            raise InvalidArgumentError(f"ZeroPad2d: padding must be an int or 4 ints, got {padding!r}")

    def extra_repr(self):
        return f"{self.padding}"

    def forward(self, x):
        return pad(_need_value(x, "ZeroPad2d"), self.padding)


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        x = _need_value(x, "Identity")
        x._t.dropped.append(f"{type(self).__name__} {x._t.scope or '<root>'} (identity at inference)")
        return x


class Dropout(Identity):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = p


class Dropout2d(Dropout):
    pass


# ---------------------------------------------------------------------------------------------
# functional
# ---------------------------------------------------------------------------------------------

class _Functional:
    """torch.nn.functional-like helpers for custom forward methods."""

    @staticmethod
    def relu(x, inplace=False): return _unary(_need_value(x, "relu"), "Relu")
    @staticmethod
    def relu6(x, inplace=False): return _unary(_need_value(x, "relu6"), "Relu6")
    @staticmethod
    def leaky_relu(x, negative_slope=0.01, inplace=False):
        return _unary(_need_value(x, "leaky_relu"), "LeakyRelu", alpha=float(negative_slope))
    @staticmethod
    def gelu(x, approximate="none"):
        return _unary(_need_value(x, "gelu"), "Gelu", approximate=1 if approximate == "tanh" else 0)
    @staticmethod
    def sigmoid(x): return _unary(_need_value(x, "sigmoid"), "Logistic")
    @staticmethod
    def tanh(x): return _unary(_need_value(x, "tanh"), "Tanh")
    @staticmethod
    def hardswish(x, inplace=False): return _unary(_need_value(x, "hardswish"), "HardSwish")
    @staticmethod
    def silu(x, inplace=False):
        x = _need_value(x, "silu")
        return _binary("Mul", x, _unary(x, "Logistic"))
    @staticmethod
    def softmax(x, dim): return _softmax(_need_value(x, "softmax"), dim, "Softmax")
    @staticmethod
    def log_softmax(x, dim): return _softmax(_need_value(x, "log_softmax"), dim, "LogSoftmax")
    @staticmethod
    def flatten(x, start_dim=0, end_dim=-1): return flatten(x, start_dim, end_dim)
    @staticmethod
    def cat(values, dim=0): return cat(values, dim)
    @staticmethod
    def clamp(x, min=None, max=None): return clamp(x, min, max)
    @staticmethod
    def matmul(a, b): return matmul(a, b)
    @staticmethod
    def maximum(a, b): return maximum(a, b)
    @staticmethod
    def minimum(a, b): return minimum(a, b)
    @staticmethod
    def pad(x, pad_, mode="constant", value=0.0): return pad(x, pad_, mode, value)
    @staticmethod
    def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        return scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)
    @staticmethod
    def sum(x, dim=None, keepdim=False): return reduce_sum(x, dim, keepdim)
    @staticmethod
    def adaptive_avg_pool2d(x, output_size): return AdaptiveAvgPool2d(output_size).forward(x)
    @staticmethod
    def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
        return MaxPool2d(kernel_size, stride, padding, ceil_mode=ceil_mode).forward(x)
    @staticmethod
    def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        return AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad).forward(x)


functional = _Functional()


# ---------------------------------------------------------------------------------------------
# from_torch: a torch.nn.Module made of standard layers -> the same tinyinfer.nn description
# ---------------------------------------------------------------------------------------------

def _t_bias(m) -> bool:
    return getattr(m, "bias", None) is not None


_FROM_TORCH = {
    "Linear": lambda m: Linear(m.in_features, m.out_features, _t_bias(m)),
    "LSTM": lambda m: LSTM(m.input_size, m.hidden_size, m.num_layers, m.bias, m.batch_first, m.dropout,
                           m.bidirectional, m.proj_size),
    "GRU": lambda m: GRU(m.input_size, m.hidden_size, m.num_layers, m.bias, m.batch_first, m.dropout,
                         m.bidirectional),
    "Conv2d": lambda m: Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                               m.groups, _t_bias(m), m.padding_mode),
    "ConvTranspose2d": lambda m: ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                                 m.output_padding, m.groups, _t_bias(m), m.dilation),
    "BatchNorm2d": lambda m: BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats),
    "BatchNorm1d": lambda m: BatchNorm1d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats),
    "LayerNorm": lambda m: LayerNorm(m.normalized_shape, m.eps, m.elementwise_affine, _t_bias(m)),
    "Embedding": lambda m: Embedding(m.num_embeddings, m.embedding_dim, m.padding_idx, m.max_norm),
    "ReLU": lambda m: ReLU(), "ReLU6": lambda m: ReLU6(), "Sigmoid": lambda m: Sigmoid(), "Tanh": lambda m: Tanh(),
    "Hardswish": lambda m: Hardswish(), "SiLU": lambda m: SiLU(),
    "LeakyReLU": lambda m: LeakyReLU(m.negative_slope),
    "GELU": lambda m: GELU(m.approximate),
    "PReLU": lambda m: PReLU(m.num_parameters),
    "Softmax": lambda m: Softmax(m.dim), "LogSoftmax": lambda m: LogSoftmax(m.dim),
    "MaxPool2d": lambda m: MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode),
    "AvgPool2d": lambda m: AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                     m.divisor_override),
    "AdaptiveAvgPool2d": lambda m: AdaptiveAvgPool2d(m.output_size),
    "AdaptiveMaxPool2d": lambda m: AdaptiveMaxPool2d(m.output_size, m.return_indices),
    "Flatten": lambda m: Flatten(m.start_dim, m.end_dim),
    "Dropout": lambda m: Dropout(m.p), "Dropout2d": lambda m: Dropout2d(m.p), "Identity": lambda m: Identity(),
    "ZeroPad2d": lambda m: ZeroPad2d(m.padding),
}


def from_torch(module) -> Module:
    """The tinyinfer.nn description of a torch.nn.Module built only of
    standard layers (Sequential / ModuleList of the layers above); reads
    the hyperparameters, not the weights (load those with load_state_dict).
    A module with its own forward cannot be read: describe it with
    tinyinfer.nn."""
    cls = type(module)
    if not cls.__module__.startswith("torch.nn"):
        raise UnsupportedOpError(
            f"from_torch: {cls.__name__} (from {cls.__module__}) has its own forward, which cannot be read without "
            f"running it: describe it with tinyinfer.nn (a Module subclass with the same layer names)")
    name = cls.__name__
    if name == "Sequential":
        return Sequential(OrderedDict((n, from_torch(m)) for n, m in module.named_children()))
    if name == "ModuleList":
        return ModuleList([from_torch(m) for m in module.children()])
    if name in _FROM_TORCH:
        return _FROM_TORCH[name](module)
    raise UnsupportedOpError(f"from_torch: torch.nn.{name} is not supported; supported: "
                             f"{', '.join(sorted(list(_FROM_TORCH) + ['Sequential', 'ModuleList']))}", 5)


# The layers of this module -> what they become in the .tinf graph.
SUPPORTED_OPS: Dict[str, str] = {
    "Linear": "FullyConnected (weight [out, in] as is; columns permuted when it follows a Flatten of NHWC data)",
    "Conv2d": "Conv2D (OIHW -> OHWI; groups kept), or DepthwiseConv2D when groups == in_channels "
              "(weight -> [1, KH, KW, C*M]); padding_mode 'reflect' adds a Pad",
    "ConvTranspose2d": "TransposeConv2D (IOHW -> [Cout, KH, KW, Cin]); groups > 1 as Split + TransposeConv2D + Concat",
    "BatchNorm2d": "BatchNorm (folded into a preceding Conv2D / DepthwiseConv2D / TransposeConv2D by the core "
                   "at load)",
    "BatchNorm1d": "BatchNorm (folded into a preceding FullyConnected by the core at load)",
    "LayerNorm": "LayerNorm",
    "Embedding": "Gather (axis 0)",
    "LSTM": "LSTM per layer (gates reordered to ONNX's i, o, f, c; both directions in one op; batch_first as the "
            "op's time axis; initial states; proj_size refused)",
    "GRU": "GRU per layer (gates reordered to z, r, h; linear_before_reset = 1, torch's form)",
    "ReLU": "Relu (fused into its producer by the core at load)",
    "ReLU6": "Relu6 (fused into its producer by the core at load)",
    "LeakyReLU": "LeakyRelu",
    "PReLU": "PRelu",
    "GELU": "Gelu (approximate 'none' -> 0, 'tanh' -> 1)",
    "SiLU": "Logistic + Mul",
    "Sigmoid": "Logistic",
    "Tanh": "Tanh",
    "Hardswish": "HardSwish",
    "Softmax": "Softmax",
    "LogSoftmax": "LogSoftmax",
    "MaxPool2d": "MaxPool2D (ceil_mode as extra bottom/right padding)",
    "AvgPool2d": "AveragePool2D (count_include_pad; torch's other divisors -- ceil_mode windows, divisor_override "
                 "-- as a Mul by a constant map)",
    "AdaptiveAvgPool2d": "Mean over H, W (output 1), or AveragePool2D when the input divides evenly",
    "AdaptiveMaxPool2d": "MaxPool2D when the input divides evenly",
    "Flatten": "Reshape (NHWC order; the next Linear's columns are permuted to match torch's C,H,W order)",
    "Sequential": "its children in order",
    "Dropout": "removed (identity at inference)",
    "Dropout2d": "removed (identity at inference)",
    "Identity": "removed",
    "ZeroPad2d": "Pad (zeros; fused into a following convolution by the core at load)",
}


def import_model(source, report, architecture=None, input_shape=None, strict: bool = True, input_dtype=None,
                 name: Optional[str] = None,
                 **unknown):
    """tinyinfer.convert for .pt/.pth/.bin/.safetensors: loads the state_dict,
    applies it to `architecture` (a tinyinfer.nn.Module mirroring the torch
    model, or a torch.nn.Module built only of supported layers), and returns
    its GraphBuilder for an input of `input_shape` (torch layout, NCHW)."""
    if unknown:
        raise InvalidArgumentError(
            f"torch importer: unknown option(s) {sorted(unknown)}; known: architecture, input_shape, strict, "
            f"input_dtype, name")
    sd, desc = load_state_dict_with_info(source)
    report.notes.append(f"read {desc}")
    if architecture is None:
        keys = list(sd)
        shown = ", ".join(f"{k} {list(sd[k].shape)}" for k in keys[:6]) + (" ..." if len(keys) > 6 else "")
        raise InvalidArgumentError(
            f"{report.source or 'the file'} holds only weights (a state_dict of {len(keys)} tensors: {shown}), "
            f"not a graph: a state_dict does not say how the layers connect. Describe the model with tinyinfer.nn "
            f"(the same layer names as the torch model) and pass it: tinyinfer.convert(src, dst, "
            f"architecture=net, input_shape=(1, 3, 32, 32))", 1)
    if not isinstance(architecture, Module):
        if isinstance(architecture, type) and issubclass(architecture, Module):
            architecture = architecture()
        elif hasattr(architecture, "named_children") and hasattr(architecture, "state_dict"):
            architecture = from_torch(architecture)  # a torch.nn.Module: read its layers' hyperparameters
            report.notes.append("architecture read from a torch.nn.Module (layer hyperparameters only)")
        else:
            raise InvalidArgumentError(
                f"architecture must be a tinyinfer.nn.Module (or a torch.nn.Module of supported layers), got "
                f"{type(architecture).__name__}")
    if input_shape is None:
        raise InvalidArgumentError("torch importer: input_shape is required (torch layout, e.g. (1, 3, 32, 32))")
    architecture.load_state_dict(sd, strict=strict)
    return architecture.to_builder(tuple(input_shape), name=name or type(architecture).__name__,
                                   input_dtype=input_dtype, report=report)
