"""A float .tinf graph back to a trainable torch.nn.Module (docs/distillation.md, "Graphs back to PyTorch").

    net = tinyinfer.to_torch("model.tinf")                 # a TinfModule: NHWC in, the graph's outputs out
    net = tinyinfer.to_torch("pruned.tinf", keep_zeros=True)  # the zero weights stay zero while it trains
    net.to_tinf("tuned.tinf")                              # the same graph with the trained weights

The graph is read from the file (prune_structured._read_tinf, the layout of
docs/format.md), as written: before the load-time passes, so a BatchNorm is
still a BatchNorm and an activation is still its own op or the `activation`
attribute of the op it was fused into at conversion. Every float32 constant
becomes an nn.Parameter in the file's layout (a Conv2D weight stays
[Cout, KH, KW, Cin/groups]), except a BatchNorm's mean and variance and
non-float constants (buffers); a Dequantize of a constant (float16 or int8
weights) is folded into a float32 parameter. The module interprets the ops in
order with torch functions, NHWC like the runtime (a convolution transposes
to NCHW and back), so it runs at any batch size: a Reshape whose first entry
is the graph's batch (the batch it was converted at) keeps the actual batch.

An op without a torch form here raises UnsupportedOpError naming it.
Needs torch (pip install tinyinfer[train]).
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from ._dtypes import TO_NUMPY
from ._errors import InvalidArgumentError, UnsupportedOpError

__all__ = ["to_torch", "TRAINABLE_OPS"]

_UNARY = ("Relu", "Relu6", "Logistic", "Tanh", "Exp", "Log", "Sqrt", "Rsqrt", "HardSwish", "LeakyRelu", "Gelu",
          "Erf", "Floor", "Ceil", "Round")
_BINARY = ("Add", "Sub", "Mul", "Div", "Maximum", "Minimum")
_REDUCE = ("Mean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")
TRAINABLE_OPS = frozenset(_UNARY + _BINARY + _REDUCE + (
    "FullyConnected", "MatMul", "Conv2D", "DepthwiseConv2D", "TransposeConv2D", "MaxPool2D", "AveragePool2D",
    "PRelu", "Softmax", "LogSoftmax", "LayerNorm", "BatchNorm", "Reshape", "Squeeze", "ExpandDims", "Transpose",
    "Concat", "Split", "Slice", "Pad", "Gather", "Dequantize"))


def _torch():
    from .convert import require
    return require("torch", "train", "tinyinfer.to_torch")


def tinf_bytes(model) -> bytes:
    """The .tinf bytes of `model`: a loaded Model, .tinf bytes, a .tinf path, or anything tinyinfer.load
    converts (.tflite, .onnx, a checkpoint: converted in memory, cached as load caches)."""
    from .model import Model, load
    if isinstance(model, Model):
        if model._buffer is not None:
            return bytes(model._buffer)
        with open(model.path, "rb") as f:
            return f.read()
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.endswith(".tinf"):
            with open(path, "rb") as f:
                return f.read()
        with load(path) as m:
            return tinf_bytes(m)
    raise InvalidArgumentError(f"to_torch takes a model path, .tinf bytes or a loaded Model, got "
                               f"{type(model).__name__}")


def _dequantize(t) -> np.ndarray:
    """The float32 value of a constant Dequantize's input (float16, or an integer with quantization)."""
    a = t.data
    if a.dtype == np.float16:
        return a.astype(np.float32)
    if t.quant is None:
        raise UnsupportedOpError(f"to_torch: Dequantize of '{t.name}' ({a.dtype}) without quantization parameters")
    axis, scales, zps = t.quant
    if axis >= 0 and len(scales) > 1:
        shape = [1] * a.ndim
        shape[axis] = -1
        scales, zps = scales.reshape(shape), zps.reshape(shape)
    return ((a.astype(np.float32) - zps.astype(np.float32)) * scales.astype(np.float32)).astype(np.float32)


def to_torch(model, keep_zeros: bool = False, trainable: bool = True, logits: bool = False):
    """A torch.nn.Module (TinfModule) computing the float graph `model` (a .tinf path or bytes, a loaded
    Model, or a .tflite / .onnx / checkpoint that tinyinfer.load converts), its float32 constants as trainable
    parameters (see the module's docstring).

    keep_zeros=True: every parameter with zeros (a pruned model) gets a fixed mask; the forward pass uses
    `parameter * mask`, so the zeros stay zero whatever the optimizer does, and to_tinf writes them as zeros.
    trainable=False: the constants are buffers instead (a frozen teacher).
    logits=True: a Softmax that gives a graph output is skipped (the module returns its input, the logits, as
    a distillation loss wants); to_tinf still writes it. The attribute `logits` can be changed later.
    The module takes the graph's inputs (NHWC for images, float32 tensors, any batch size) and returns its
    output, or a tuple when the graph has several. `module.to_tinf(dst=None)` writes the graph back with the
    current weights (bytes, or written to dst)."""
    torch = _torch()
    from .prune_structured import _read_tinf
    meta, tensors, g_in, g_out, ops = _read_tinf(tinf_bytes(model))
    net = _make_module(torch)(meta, tensors, g_in, g_out, ops, keep_zeros, trainable)
    net.logits = logits
    return net


_MODULE_CLASS = None


def _make_module(torch):
    global _MODULE_CLASS
    if _MODULE_CLASS is None:
        _MODULE_CLASS = _define(torch)
    return _MODULE_CLASS


def _define(torch):
    nn, F = torch.nn, torch.nn.functional

    def act(y, a):
        if a == 1:
            return F.relu(y)
        if a == 2:
            return torch.clamp(y, 0.0, 6.0)
        if a == 3:
            return torch.clamp(y, -1.0, 1.0)
        return y

    def ints(attrs, key, default):
        v = attrs.get(key)
        return list(default) if v is None else [int(i) for i in v[1]]

    def scalar(attrs, key, default):
        v = attrs.get(key)
        return default if v is None else v[1]

    def pad_amounts(attrs, h, w, kh, kw, sh, sw, dh, dw):
        """[top, bottom, left, right] per docs/ops.md's padding rules."""
        mode = scalar(attrs, "padding", 0)
        if mode == 2:
            return ints(attrs, "pads", [0, 0, 0, 0])
        if mode == 1:
            out = []
            for size, k, s, d in ((h, kh, sh, dh), (w, kw, sw, dw)):
                o = -(-size // s)
                total = max((o - 1) * s + (k - 1) * d + 1 - size, 0)
                out += [total // 2, total - total // 2]
            return out
        return [0, 0, 0, 0]

    class TinfModule(nn.Module):
        """A .tinf graph as a torch module (tinyinfer.to_torch). `tensor_names` lists the graph's tensors;
        set `capture` to a set of names to have their values kept in `captured` after each forward (for
        feature losses)."""

        def __init__(self, meta, tensors, g_in, g_out, ops, keep_zeros, trainable):
            super().__init__()
            self._meta, self._tensors, self._g_in, self._g_out, self._ops = meta, tensors, g_in, g_out, ops
            self.tensor_names = [t.name for t in tensors]
            self.input_names = [tensors[i].name for i in g_in]
            self.output_names = [tensors[i].name for i in g_out]
            self._batch = [tensors[i].shape[0] if tensors[i].shape else None for i in g_in]
            self.capture, self.captured = set(), {}
            self.logits = False
            self._final_softmax = {k for k, o in enumerate(ops) if o.op == "Softmax" and o.outputs[0] in g_out}
            self.keep_zeros = keep_zeros
            self._key: Dict[int, str] = {}        # constant tensor index -> parameter / buffer name
            self._folded: Dict[int, int] = {}     # a constant Dequantize's output -> its input constant
            self._masked = set()
            stats = set()
            for o in ops:
                if o.op not in TRAINABLE_OPS:
                    out = tensors[o.outputs[0]].name if o.outputs else "?"
                    raise UnsupportedOpError(
                        f"to_torch: op {o.op} (output '{out}') has no trainable form; supported: "
                        f"{', '.join(sorted(TRAINABLE_OPS))}")
                if o.op == "BatchNorm":
                    stats.update(o.inputs[3:5])
            consts = {}
            for o in ops:
                if o.op == "Dequantize":
                    src = tensors[o.inputs[0]]
                    if src.data is None:
                        raise UnsupportedOpError(f"to_torch: a Dequantize of computed tensor '{src.name}': "
                                                 f"the graph is quantized; to_torch takes float graphs")
                    consts[o.outputs[0]] = _dequantize(src)
                    self._folded[o.outputs[0]] = o.inputs[0]
            for o in ops:
                for i in o.inputs:
                    if i >= 0 and tensors[i].data is not None and i not in consts:
                        if o.op != "Dequantize":
                            consts[i] = tensors[i].data
            for i, a in consts.items():
                key = f"t{i}"
                self._key[i] = key
                if a.dtype == np.float32 and trainable and i not in stats:
                    self.register_parameter(key, nn.Parameter(torch.from_numpy(np.array(a, np.float32))))
                    if keep_zeros and (a == 0).any():
                        self.register_buffer(key + "_mask", torch.from_numpy((a != 0).astype(np.float32)))
                        self._masked.add(i)
                else:
                    self.register_buffer(key, torch.from_numpy(np.array(a)))

        def _const(self, i):
            v = getattr(self, self._key[i])
            if i in self._masked:
                v = v * getattr(self, self._key[i] + "_mask")
            return v

        def forward(self, *inputs):
            if len(inputs) != len(self._g_in):
                raise InvalidArgumentError(f"the graph has {len(self._g_in)} inputs ({self.input_names}), "
                                           f"got {len(inputs)}")
            env = {}
            for i, x in zip(self._g_in, inputs):
                env[i] = x
            capture = self.capture
            self.captured = {}
            for k, o in enumerate(self._ops):
                if o.op == "Dequantize" and o.outputs[0] in self._key:
                    continue
                xs = [None if i < 0 else (env[i] if i in env else self._const(i)) for i in o.inputs]
                ys = [xs[0]] if self.logits and k in self._final_softmax else self._run(o, xs)
                for i, y in zip(o.outputs, ys):
                    env[i] = y
                    if capture and self._tensors[i].name in capture:
                        self.captured[self._tensors[i].name] = y
            outs = [env[i] if i in env else self._const(i) for i in self._g_out]
            return outs[0] if len(outs) == 1 else tuple(outs)

        def _run(self, o, xs) -> List:
            a, op = o.attrs, o.op
            x = xs[0]
            if op == "FullyConnected":
                w = xs[1]
                if w.dtype != torch.float32:
                    raise UnsupportedOpError(f"to_torch: FullyConnected with {w.dtype} weights (a quantized "
                                             f"graph); to_torch takes float graphs")
                return [act(F.linear(x, w, xs[2] if len(xs) > 2 else None), scalar(a, "activation", 0))]
            if op == "MatMul":
                p, q = x, xs[1]
                if scalar(a, "transpose_a", 0):
                    p = p.transpose(-1, -2)
                if scalar(a, "transpose_b", 0):
                    q = q.transpose(-1, -2)
                return [torch.matmul(p, q)]
            if op in ("Conv2D", "DepthwiseConv2D", "TransposeConv2D"):
                return [self._conv(op, a, x, xs[1], xs[2] if len(xs) > 2 else None)]
            if op in ("MaxPool2D", "AveragePool2D"):
                return [self._pool(op, a, x)]
            if op in _BINARY:
                b = xs[1]
                y = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div,
                     "Maximum": torch.maximum, "Minimum": torch.minimum}[op](x, b)
                return [act(y, scalar(a, "activation", 0))]
            if op in _UNARY:
                if op == "Relu":
                    return [F.relu(x)]
                if op == "Relu6":
                    return [torch.clamp(x, 0.0, 6.0)]
                if op == "LeakyRelu":
                    return [F.leaky_relu(x, float(scalar(a, "alpha", 0.2)))]
                if op == "Gelu":
                    return [F.gelu(x, approximate="tanh" if scalar(a, "approximate", 0) else "none")]
                if op == "HardSwish":
                    return [x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0]
                if op == "Rsqrt":
                    return [torch.rsqrt(x)]
                return [{"Logistic": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
                         "Sqrt": torch.sqrt, "Erf": torch.erf, "Floor": torch.floor, "Ceil": torch.ceil,
                         "Round": torch.round}[op](x)]
            if op == "PRelu":
                return [torch.where(x >= 0, x, x * xs[1])]
            if op in ("Softmax", "LogSoftmax"):
                beta = float(scalar(a, "beta", 1.0))
                z = x * beta if beta != 1.0 else x
                f = F.softmax if op == "Softmax" else F.log_softmax
                return [f(z, dim=int(scalar(a, "axis", -1)))]
            if op == "LayerNorm":
                axis = int(scalar(a, "axis", -1)) % x.dim()
                return [F.layer_norm(x, tuple(x.shape[axis:]), xs[1], xs[2] if len(xs) > 2 else None,
                                     float(scalar(a, "epsilon", 1e-5)))]
            if op == "BatchNorm":
                scale, bias, mean, var = xs[1:5]
                return [(x - mean) / torch.sqrt(var + float(scalar(a, "epsilon", 1e-5))) * scale + bias]
            if op in _REDUCE:
                axes = [int(v) % x.dim() for v in ints(a, "axes", [])]
                keep = bool(scalar(a, "keep_dims", 0))
                if not axes:
                    return [x]
                if op == "Mean":
                    return [x.mean(dim=axes, keepdim=keep)]
                if op == "ReduceSum":
                    return [x.sum(dim=axes, keepdim=keep)]
                y = x
                for ax in sorted(axes, reverse=True):
                    y = {"ReduceMax": lambda v, d: v.amax(dim=d, keepdim=keep),
                         "ReduceMin": lambda v, d: v.amin(dim=d, keepdim=keep),
                         "ReduceProd": lambda v, d: v.prod(dim=d, keepdim=keep)}[op](y, ax)
                return [y]
            if op == "Reshape":
                shape = ints(a, "shape", [])
                b0 = self._batch[0] if self._batch else None
                if shape and b0 is not None and shape[0] == b0 and x.shape[0] != b0 and x.dim() >= 1:
                    shape = [x.shape[0]] + shape[1:]  # the batch written at conversion: keep the actual one
                return [x.reshape(shape)]
            if op == "Squeeze":
                axes = [int(v) % x.dim() for v in ints(a, "axes", [])]
                if not axes:
                    axes = [d for d in range(x.dim()) if x.shape[d] == 1]
                y = x
                for ax in sorted(axes, reverse=True):
                    y = y.squeeze(ax)
                return [y]
            if op == "ExpandDims":
                return [x.unsqueeze(int(scalar(a, "axis", 0)))]
            if op == "Transpose":
                return [x.permute(*ints(a, "perm", []))]
            if op == "Concat":
                return [torch.cat(xs, dim=int(scalar(a, "axis", 0)))]
            if op == "Split":
                axis = int(scalar(a, "axis", 0)) % x.dim()
                sizes = ints(a, "sizes", [])
                if not sizes:
                    n = len(o.outputs)
                    sizes = [x.shape[axis] // n] * n
                elif -1 in sizes:
                    k = sizes.index(-1)
                    sizes[k] = x.shape[axis] - (sum(sizes) + 1)
                return list(torch.split(x, sizes, dim=axis))
            if op == "Slice":
                begin, size = ints(a, "begin", []), ints(a, "size", [])
                idx = []
                for d, (bgn, sz) in enumerate(zip(begin, size)):
                    n = x.shape[d]
                    bgn = bgn + n if bgn < 0 else bgn
                    idx.append(slice(bgn, n if sz == -1 else bgn + sz))
                return [x[tuple(idx)]]
            if op == "Pad":
                pads = ints(a, "pads", [])
                flat = []
                for d in reversed(range(len(pads) // 2)):
                    flat += [pads[2 * d], pads[2 * d + 1]]
                mode = int(scalar(a, "mode", 0))
                if mode != 0:
                    raise UnsupportedOpError("to_torch: Pad in reflect or symmetric mode")
                return [F.pad(x, flat, value=float(scalar(a, "value", 0.0)))]
            if op == "Gather":
                axis = int(scalar(a, "axis", 0)) % x.dim()
                idx = xs[1].long()
                idx = torch.where(idx < 0, idx + x.shape[axis], idx)
                y = torch.index_select(x, axis, idx.reshape(-1))
                return [y.reshape(tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1:]))]
            if op == "Dequantize":
                raise UnsupportedOpError("to_torch: a Dequantize of a computed tensor (a quantized graph)")
            raise UnsupportedOpError(f"to_torch: op {op}")  # pragma: no cover (TRAINABLE_OPS is checked at build)

        def _conv(self, op, a, x, w, bias):
            sh, sw = ints(a, "strides", [1, 1])
            dh, dw = ints(a, "dilations", [1, 1])
            xn = x.permute(0, 3, 1, 2)
            h, wd = x.shape[1], x.shape[2]
            if op == "TransposeConv2D":
                kh, kw = w.shape[1], w.shape[2]
                wt = w.permute(3, 0, 1, 2)  # [Cin, Cout, KH, KW]
                full = F.conv_transpose2d(xn, wt, None, stride=(sh, sw), dilation=(dh, dw))
                oph, opw = ints(a, "output_padding", [0, 0])
                mode = scalar(a, "padding", 0)
                sizes = []
                tops = []
                for size, k, s, d, op_, j in ((h, kh, sh, dh, oph, 0), (wd, kw, sw, dw, opw, 2)):
                    fullsize = (size - 1) * s + (k - 1) * d + 1
                    if mode == 1:
                        total = max(fullsize - size * s, 0)
                        top, out = total // 2, size * s + op_
                    elif mode == 2:
                        pads = ints(a, "pads", [0, 0, 0, 0])
                        top, out = pads[j], fullsize - pads[j] - pads[j + 1] + op_
                    else:
                        top, out = 0, fullsize + op_
                    tops.append(top)
                    sizes.append(out)
                extra_h = max(0, tops[0] + sizes[0] - full.shape[2])
                extra_w = max(0, tops[1] + sizes[1] - full.shape[3])
                if extra_h or extra_w:
                    full = F.pad(full, [0, extra_w, 0, extra_h])
                y = full[:, :, tops[0]:tops[0] + sizes[0], tops[1]:tops[1] + sizes[1]]
                if bias is not None:
                    y = y + bias.reshape(1, -1, 1, 1)
            else:
                if op == "Conv2D":
                    groups = int(scalar(a, "groups", 1))
                    wt = w.permute(0, 3, 1, 2)  # [Cout, Cin/groups, KH, KW]
                else:
                    groups = x.shape[3]
                    wt = w.permute(3, 0, 1, 2)  # [C*M, 1, KH, KW]
                kh, kw = wt.shape[2], wt.shape[3]
                t, b, l, r = pad_amounts(a, h, wd, kh, kw, sh, sw, dh, dw)
                if t == b and l == r:
                    y = F.conv2d(xn, wt, bias, stride=(sh, sw), padding=(t, l), dilation=(dh, dw), groups=groups)
                else:
                    y = F.conv2d(F.pad(xn, [l, r, t, b]), wt, bias, stride=(sh, sw), dilation=(dh, dw),
                                 groups=groups)
            return act(y, scalar(a, "activation", 0)).permute(0, 2, 3, 1)

        def _pool(self, op, a, x):
            kh, kw = ints(a, "filter", [1, 1])
            sh, sw = ints(a, "strides", [1, 1])
            xn = x.permute(0, 3, 1, 2)
            t, b, l, r = pad_amounts(a, x.shape[1], x.shape[2], kh, kw, sh, sw, 1, 1)
            if op == "MaxPool2D":
                if t or b or l or r:
                    xn = F.pad(xn, [l, r, t, b], value=-math.inf)
                y = F.max_pool2d(xn, (kh, kw), (sh, sw))
            elif not (t or b or l or r):
                y = F.avg_pool2d(xn, (kh, kw), (sh, sw))
            else:
                total = F.avg_pool2d(F.pad(xn, [l, r, t, b]), (kh, kw), (sh, sw)) * (kh * kw)
                if scalar(a, "count_include_pad", 0):
                    y = total / (kh * kw)
                else:
                    ones = torch.ones((1, 1) + tuple(xn.shape[2:]), dtype=xn.dtype)
                    count = F.avg_pool2d(F.pad(ones, [l, r, t, b]), (kh, kw), (sh, sw)) * (kh * kw)
                    y = total / count
            return act(y, scalar(a, "activation", 0)).permute(0, 2, 3, 1)

        def weights(self) -> Dict[str, np.ndarray]:
            """The graph's constants as the module holds them now (masked), by tensor name."""
            return {self._tensors[i].name: self._const(i).detach().cpu().numpy() for i in self._key}

        def to_tinf(self, dst=None):
            """The graph with the module's current weights (masks applied), as .tinf bytes; also written to
            `dst` when given. A constant that was float16 in the file is written as float16 again; one
            that was int8 (quantized) is refused (quantize the written float model instead)."""
            from .prune_structured import write_graph
            data = {}
            for i in self._key:
                v = self._const(i).detach().cpu().numpy()
                if i in self._folded:
                    src = self._tensors[self._folded[i]]
                    if src.data.dtype != np.float16:
                        raise UnsupportedOpError(f"to_tinf: '{src.name}' was {src.data.dtype} weights; write "
                                                 f"the float model with tinyinfer.from_torch and quantize it")
                    data[self._folded[i]] = v.astype(np.float16)
                else:
                    data[i] = v.astype(self._tensors[i].data.dtype, copy=False)
            out = write_graph(self._meta, self._tensors, self._g_in, self._g_out, self._ops, data,
                              {"tuned": "tinyinfer.to_torch"})
            if dst is not None:
                from ._atomic import write_atomic
                write_atomic(os.fspath(dst), out)
            return out

    return TinfModule
