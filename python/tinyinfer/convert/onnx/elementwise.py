"""Elementwise ops, activations, softmax, normalization and reductions."""

from __future__ import annotations

import math

import numpy as np

from ..._errors import UnsupportedOpError
from ._graph import Node, Val, _cl, _ident, _norm, _np_dtype


def _binary(im, n: Node, op: str, a_name: str, b_name: str, out: str, act_ok=True):
    a, b = im.fval(a_name), im.fval(b_name)
    shape = im._shape(out) if out in im.types else np.broadcast_shapes(a.shape, b.shape)
    r = len(shape)
    perm = im.perm_for([a, b], r)
    ta, tb = im.operand(a, perm, r), im.operand(b, perm, r)
    act, final = (im.take_activation(out) if act_ok else (0, out))
    t = im.emit(op, ta, tb, name=im.out_name(final, perm is None), activation=act or None)
    im.set(final, Val(t, shape, np.float32, perm))
    return final


def _emit_maybe_intf(im, n, op):
    a, b = im.val(n.inputs[0]), im.val(n.inputs[1])
    if "intf" in (a.kind, b.kind):  # integer arithmetic on exact float-held integers (Add/Sub/Mul only)
        if op == "Div":
            raise UnsupportedOpError("onnx: integer Div is not supported")
        ta = im.operand(_as_float_val(im, a), None, len(im._out_shape(n)))
        tb = im.operand(_as_float_val(im, b), None, len(im._out_shape(n)))
        t = im.emit(op, ta, tb, name=n.outputs[0])
        im.set(n.outputs[0], Val(t, im._out_shape(n), im._dtype(n.outputs[0]), kind="intf"))
        return
    _binary(im, n, op, n.inputs[0], n.inputs[1], n.outputs[0])


def _as_float_val(im, v: Val) -> Val:
    if v.const is not None:
        return Val(None, v.shape, np.float32, const=v.const.astype(np.float32))
    if v.perm is not None or v.flat is not None:
        return Val(im.get(v, None), v.shape, np.float32)
    return v


def _chain(im, n, op):
    ins = [i for i in n.inputs if i]
    if len(ins) == 1:
        im.set(n.outputs[0], im.fval(ins[0]))
        return
    cur = ins[0]
    for k, nxt in enumerate(ins[1:]):
        last = k == len(ins) - 2
        out = n.outputs[0] if last else im._fresh(n.outputs[0] + f"_part{k}")
        if not last:
            im.types[out] = (np.dtype(np.float32),
                               tuple(np.broadcast_shapes(im.fval(cur).shape, im.fval(nxt).shape)))
        cur = _binary(im, n, op, cur, nxt, out, act_ok=last and op == "Add")


def op_PRelu(im, n):
    x, s = im.fval(n.inputs[0]), im.fval(n.inputs[1])
    perm = x.perm if x.flat is None else None
    ts = im.operand(s, perm, x.rank)
    t = im.emit("PRelu", im.get(x, perm), ts, name=im.out_name(n.outputs[0], perm is None))
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm))


def _ew_in(im, x: Val):
    """An elementwise op's input as the runtime holds it: (tensor, perm, flat); the output keeps that layout."""
    if x.const is not None:
        return im.get(x, None), None, None
    return x.t, x.perm, x.flat


def unary(op: str):
    """The handler of an ONNX op that is the runtime op `op` on its one input (same layout)."""
    return lambda im, n: _unary(im, n, op)


def binary(op: str):
    """The handler of an ONNX binary op that is the runtime op `op` (Add, Sub, Mul, Div)."""
    return lambda im, n: _emit_maybe_intf(im, n, op)


def variadic(op: str):
    """The handler of a variadic ONNX op (Sum, Max, Min) as a chain of the binary runtime op `op`."""
    return lambda im, n: _chain(im, n, op)


def _unary(im, n, op, out=None, src=None, **attrs):
    x = im.fval(src or n.inputs[0])
    out = out or n.outputs[0]
    tx0, perm, flat = _ew_in(im, x)
    t = im.emit(op, tx0, name=im.out_name(out, perm is None and flat is None), **attrs)
    im.set(out, Val(t, x.shape, np.float32, perm, flat=flat))


def op_LeakyRelu(im, n):
    _unary(im, n, "LeakyRelu", alpha=float(n.attrs.get("alpha", 0.01)))


def op_Gelu(im, n):
    approx = n.attrs.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise UnsupportedOpError(f"onnx: Gelu approximate='{approx}'")
    _unary(im, n, "Gelu", approximate=0 if approx == "none" else 1)


def op_Identity(im, n):
    im.set(n.outputs[0], im.val(n.inputs[0]))


def op_Dropout(im, n):
    if len(n.outputs) > 1 and n.outputs[1] and im._live_consumers(n.outputs[1]):
        raise UnsupportedOpError("onnx: the mask output of Dropout is used")
    im.set(n.outputs[0], im.val(n.inputs[0]))
    im.report.dropped.append(f"{n.label()} (inference)")


def op_Neg(im, n):
    x = im.fval(n.inputs[0])
    tx0, perm, flat = _ew_in(im, x)
    t = im.emit("Mul", tx0, im.const(np.array([-1], np.float32), "minus_one"),
                  name=im.out_name(n.outputs[0], perm is None and flat is None))
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))


def op_Abs(im, n):
    x = im.fval(n.inputs[0])
    tx0, perm, flat = _ew_in(im, x)
    tx = tx0
    neg = im.emit("Mul", tx, im.const(np.array([-1], np.float32), "minus_one"), name="neg")
    t = im.emit("Maximum", tx, neg, name=im.out_name(n.outputs[0], perm is None and flat is None))
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))


def op_Reciprocal(im, n):
    x = im.fval(n.inputs[0])
    tx0, perm, flat = _ew_in(im, x)
    t = im.emit("Div", im.const(np.array([1], np.float32), "one"), tx0,
                  name=im.out_name(n.outputs[0], perm is None and flat is None))
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))


def op_Pow(im, n):
    e = im._scalar(n.inp(1))
    if e is None:
        raise UnsupportedOpError("onnx: Pow needs a constant scalar exponent")
    x = im.fval(n.inputs[0])
    tx0, perm, flat = _ew_in(im, x)
    tx = tx0
    nm = im.out_name(n.outputs[0], perm is None and flat is None)
    if e == 1.0:
        im.set(n.outputs[0], x)
        return
    if e == 2.0:
        t = im.emit("Mul", tx, tx, name=nm)
    elif e == 3.0:
        t = im.emit("Mul", im.emit("Mul", tx, tx, name="square"), tx, name=nm)
    elif e == 0.5:
        t = im.emit("Sqrt", tx, name=nm)
    elif e == -0.5:
        t = im.emit("Rsqrt", tx, name=nm)
    elif e == -1.0:
        t = im.emit("Div", im.const(np.array([1], np.float32), "one"), tx, name=nm)
    else:
        raise UnsupportedOpError(f"onnx: Pow with exponent {e} (supported: 1, 2, 3, 0.5, -0.5, -1)")
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))


def op_Clip(im, n):
    lo = im._scalar(n.inp(1)) if n.inp(1) else -math.inf
    hi = im._scalar(n.inp(2)) if n.inp(2) else math.inf
    if lo is None or hi is None:  # a bound computed at run time (e.g. max(x) - 80 dB): Maximum then Minimum
        _clip_tensor_bounds(im, n)
        return
    x = im.fval(n.inputs[0])
    tx0, perm, flat = _ew_in(im, x)
    tx = tx0
    nm = im.out_name(n.outputs[0], perm is None and flat is None)
    if lo == 0 and hi == 6:
        t = im.emit("Relu6", tx, name=nm)
    elif lo == 0 and hi == math.inf:
        t = im.emit("Relu", tx, name=nm)
    else:
        t = tx
        if lo > -math.inf:
            t = im.emit("Maximum", t, im.const(np.array([lo], np.float32), "clip_lo"),
                          name=nm if hi == math.inf else "clip_lo")
        if hi < math.inf:
            t = im.emit("Minimum", t, im.const(np.array([hi], np.float32), "clip_hi"), name=nm)
        if t is tx:
            im.set(n.outputs[0], x)
            return
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))


def _clip_tensor_bounds(im, n):
    """Clip whose min or max is a run-time tensor: Maximum(x, min), then
    Minimum(., max) (so min > max gives max, as ONNX defines)."""
    for k in (1, 2):
        if n.inp(k) and im._dtype(n.inp(k)).kind != "f":
            raise UnsupportedOpError(f"onnx: Clip with a run-time {('min', 'max')[k - 1]} of dtype "
                                     f"{im._dtype(n.inp(k)).name} (float only)")
    cur, lo, hi = n.inputs[0], n.inp(1), n.inp(2)
    if lo:
        out = n.outputs[0]
        if hi:
            out = im._fresh(n.outputs[0] + "_min")
            im.types[out] = (np.dtype(np.float32), tuple(np.broadcast_shapes(im.fval(cur).shape,
                                                                             im.fval(lo).shape)))
        cur = _binary(im, n, "Maximum", cur, lo, out, act_ok=False)
    if hi:
        _binary(im, n, "Minimum", cur, hi, n.outputs[0], act_ok=False)


def op_HardSigmoid(im, n):
    alpha, beta = float(n.attrs.get("alpha", 0.2)), float(n.attrs.get("beta", 0.5))
    x = im.fval(n.inputs[0])
    tx0, perm, flat = _ew_in(im, x)
    t = im.emit("Mul", tx0, im.const(np.array([alpha], np.float32), "hs_alpha"), name="hs")
    t = im.emit("Add", t, im.const(np.array([beta], np.float32), "hs_beta"), name="hs", activation=1)
    t = im.emit("Minimum", t, im.const(np.array([1], np.float32), "one"),
                  name=im.out_name(n.outputs[0], perm is None and flat is None))
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm, flat=flat))


def _axis_op(im, n, op, **attrs):
    x = im.fval(n.inputs[0])
    if im.opset < 13 and x.rank > 1:
        # Opsets 11 and 12: the input is seen as 2-D [prod(dims before axis), prod(dims from axis)] (axis
        # default 1) and normalized over the second; the same as opset 13 only when axis is the last dim.
        axis = int(n.attrs.get("axis", 1)) % x.rank
        if axis != x.rank - 1:
            inner = int(np.prod(x.shape[axis:]))
            flat = im.emit("Reshape", im.get(x, None), name="softmax_2d", shape=[int(np.prod(x.shape[:axis])), inner])
            y = im.emit(op, flat, name="softmax_rows", axis=1, **attrs)
            t = im.emit("Reshape", y, name=im.out_name(n.outputs[0], True), shape=list(x.shape))
            im.set(n.outputs[0], Val(t, x.shape, np.float32))
            return
    axis = n.attrs.get("axis", -1) % max(x.rank, 1)
    perm = x.perm if x.flat is None else None
    rax = (perm.index(axis) if perm else axis)
    t = im.emit(op, im.get(x, perm), name=im.out_name(n.outputs[0], perm is None), axis=rax, **attrs)
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm))


def op_Softmax(im, n):
    _axis_op(im, n, "Softmax")


def op_LogSoftmax(im, n):
    _axis_op(im, n, "LogSoftmax")


def op_LayerNormalization(im, n):
    if any(o and im._live_consumers(o) or o in im.output_set for o in n.outputs[1:] if o):
        raise UnsupportedOpError("onnx: LayerNormalization Mean/InvStdDev outputs are used")
    x = im.fval(n.inputs[0])
    r = x.rank
    axis = n.attrs.get("axis", -1) % r
    norm = list(range(axis, r))
    perm = x.perm if x.flat is None else None
    if perm is not None and sorted(perm[axis:]) != norm:
        perm = None
    sub = None if perm is None else [a - axis for a in perm[axis:]]
    gamma = np.broadcast_to(im.cval(n.inputs[1]).astype(np.float32), x.shape[axis:])
    tg = im.const(gamma if sub is None else np.transpose(gamma, sub), "ln_gamma")
    tb = None
    if n.inp(2):
        beta = np.broadcast_to(im.cval(n.inputs[2]).astype(np.float32), x.shape[axis:])
        tb = im.const(beta if sub is None else np.transpose(beta, sub), "ln_beta")
    t = im.emit("LayerNorm", im.get(x, perm), tg, tb, name=im.out_name(n.outputs[0], perm is None),
                  axis=axis, epsilon=float(n.attrs.get("epsilon", 1e-5)))
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm))


def op_BatchNormalization(im, n):
    if n.attrs.get("training_mode", 0):
        raise UnsupportedOpError("onnx: BatchNormalization in training mode")
    x = im.fval(n.inputs[0])
    perm = _cl(x.rank)
    prm = [im.cval(i).astype(np.float32) for i in n.inputs[1:5]]
    ts = [im.const(a, nm) for a, nm in zip(prm, ("bn_scale", "bn_bias", "bn_mean", "bn_var"))]
    t = im.emit("BatchNorm", im.get(x, perm), *ts, name=im.out_name(n.outputs[0], perm is None),
                  epsilon=float(n.attrs.get("epsilon", 1e-5)))
    im.set(n.outputs[0], Val(t, x.shape, np.float32, perm))


def _reduce(im, n, mode: str):
    """ReduceMean (Mean), ReduceSum, ReduceMax, ReduceMin, ReduceProd over any axes remapped to the runtime
    layout. Axes from the attribute (opsets before 18, before 13 for ReduceSum) or the constant second input; none means every axis, or no reduction at all with
    noop_with_empty_axes=1."""
    x = im.fval(n.inputs[0])
    axes = im._axes_of(n)
    if axes is None:
        raise UnsupportedOpError("onnx: reduction axes must be constant")
    if not axes:
        if n.attrs.get("noop_with_empty_axes", 0):
            im.set(n.outputs[0], x)
            return
        axes = list(range(x.rank))
    if any(not -x.rank <= a < x.rank for a in axes):
        raise UnsupportedOpError(f"onnx: {n.op} axes {axes} out of range for rank {x.rank}")
    axes = sorted(set(a % x.rank for a in axes))
    keep = int(n.attrs.get("keepdims", 1))
    perm = x.perm if x.flat is None else None
    rax = sorted((perm or _ident(x.rank)).index(a) for a in axes)
    p = perm or _ident(x.rank)
    out_shape = im._out_shape(n)
    if keep:
        out_perm = perm
    else:
        remaining = [a for a in p if a not in axes]
        renum = {a: k for k, a in enumerate(sorted(remaining))}
        out_perm = _norm([renum[a] for a in remaining]) if remaining else None
    if not out_shape:
        out_perm = None
    final = im.out_name(n.outputs[0], out_perm is None)
    kind = {"mean": "Mean", "sum": "ReduceSum", "max": "ReduceMax", "min": "ReduceMin", "prod": "ReduceProd"}[mode]
    t = im.emit(kind, im.get(x, perm), name=final, axes=rax, keep_dims=keep)
    im.set(n.outputs[0], Val(t, out_shape, np.float32, out_perm))


def op_ReduceMean(im, n):
    _reduce(im, n, "mean")


def op_ReduceSum(im, n):
    _reduce(im, n, "sum")


def op_ReduceMax(im, n):
    _reduce(im, n, "max")


def op_ReduceMin(im, n):
    _reduce(im, n, "min")


def op_ReduceProd(im, n):
    _reduce(im, n, "prod")
