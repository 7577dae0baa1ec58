"""Ops on run-time data of any dtype: comparisons, IsNaN, logical ops, Where, Cast,
Floor/Ceil/Round/Erf, Shape, Expand, Tile, Range. (Nodes whose inputs are all
constant are folded at conversion before these handlers see them.)"""

from __future__ import annotations

import numpy as np

from ..._dtypes import code_of
from ..._errors import UnsupportedOpError
from ._graph import Node, Val, _np_dtype

# The dtypes the runtime's comparison / Where / Cast kernels take.
_PLAIN = {np.dtype(t) for t in (np.float32, np.int32, np.int64, np.int8, np.uint8, np.bool_)}


def _plain_val(im, name: str, op: str) -> Val:
    """A value of a dtype the runtime holds as is ('intf' integers held in float32 count as float32)."""
    v = im.val(name)
    if v.kind == "deq":
        raise UnsupportedOpError(f"onnx: '{name}' is a quantized tensor; compare its dequantized value instead")
    if v.kind == "intf":
        return Val(v.t, v.shape, np.float32, v.perm, flat=v.flat)
    if v.const is not None and v.dtype == np.float64:
        return Val(None, v.shape, np.float32, const=v.const.astype(np.float32))
    if v.dtype not in _PLAIN:
        raise UnsupportedOpError(f"onnx: {name} has dtype {v.dtype}, which the runtime's {op} does not take")
    return v


def _unify(vals):
    """Constants take the dtype of the run-time operands (ONNX requires one dtype; a constant folded to
    float64 or an int64 constant against an 'intf' float32 tensor is cast)."""
    live = [v for v in vals if v.const is None]
    if not live:
        return vals
    dt = live[0].dtype
    if any(v.dtype != dt for v in live):
        raise UnsupportedOpError(f"onnx: {[str(v.dtype) for v in live]} operands of one op")
    return [v if v.const is None or v.dtype == dt else Val(None, v.shape, dt, const=v.const.astype(dt)) for v in vals]


def _broadcast_op(im, n: Node, op: str, names, out_dtype=None, first_dtype_out=0):
    """A broadcasting op over inputs `names` in the layout of its largest run-time input."""
    vals = [_plain_val(im, nm, op) for nm in names]
    if op == "Where":
        vals = [vals[0]] + _unify(vals[1:])
    else:
        vals = _unify(vals)
    shape = im._out_shape(n)
    r = len(shape)
    perm = im.perm_for(vals, r)
    ts = [im.operand(v, perm, r) for v in vals]
    dt = out_dtype if out_dtype is not None else vals[first_dtype_out].dtype
    t = im.emit(op, *ts, name=im.out_name(n.outputs[0], perm is None))
    im.set(n.outputs[0], Val(t, shape, dt, perm))


def compare(op: str):
    """Equal, Less, Greater, LessOrEqual, GreaterOrEqual -> the runtime comparison (bool output)."""
    return lambda im, n: _broadcast_op(im, n, op, n.inputs[:2], out_dtype=np.bool_)


def logical(op: str):
    """And, Or, Xor -> LogicalAnd/Or/Xor; Not -> LogicalNot."""
    return lambda im, n: _broadcast_op(im, n, op, n.inputs[:2 if op != "LogicalNot" else 1], out_dtype=np.bool_)


def op_IsNaN(im, n):
    """IsNaN(x) -> NotEqual(x, x) (float32 follows IEEE: only a NaN is unequal to itself)."""
    v = im.val(n.inputs[0])
    if v.kind == "deq" or v.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise UnsupportedOpError(f"onnx: IsNaN of {n.inputs[0]} ({v.dtype}, {v.kind}); the runtime takes float32")
    _broadcast_op(im, n, "NotEqual", [n.inputs[0], n.inputs[0]], out_dtype=np.bool_)


def op_Where(im, n):
    _broadcast_op(im, n, "Where", n.inputs[:3], first_dtype_out=1)


def rounding(op: str):
    """Floor, Ceil, Round (ties to even), Erf: float32 elementwise, any layout."""
    def h(im, n):
        x = im.fval(n.inputs[0])
        if x.const is not None:
            t, perm, flat = im.get(x, None), None, None
        else:
            t, perm, flat = x.t, x.perm, x.flat
        y = im.emit(op, t, name=im.out_name(n.outputs[0], perm is None and flat is None))
        im.set(n.outputs[0], Val(y, x.shape, np.float32, perm, flat=flat))
    return h


def op_Cast(im, n):
    """Cast between float32, int8, uint8, int32, int64 and bool (truncation toward zero, saturating, for
    float to int; ONNX leaves out-of-range values undefined). A float32 -> float32 Cast and the Cast of
    an integer tensor held exactly in float32 to float32 are removed."""
    v = im.val(n.inputs[0])
    to = _np_dtype(n.attrs["to"])
    if v.kind == "intf" and to == np.float32:
        im.set(n.outputs[0], Val(v.t, v.shape, np.float32, v.perm, flat=v.flat))
        return
    if v.kind == "real" and v.dtype == to:
        im.set(n.outputs[0], v)
        return
    v = _plain_val(im, n.inputs[0], "Cast")
    if to not in _PLAIN:
        raise UnsupportedOpError(f"onnx: Cast to {to} (the runtime casts between {sorted(str(d) for d in _PLAIN)})")
    src = v.t if v.const is None else im.get(v, None)
    perm, flat = (v.perm, v.flat) if v.const is None else (None, None)
    t = im.emit("Cast", src, name=im.out_name(n.outputs[0], perm is None and flat is None), dtype=code_of(to))
    im.set(n.outputs[0], Val(t, v.shape, to, perm, flat=flat))


def op_Tile(im, n):
    x = im.val(n.inputs[0])
    reps = im.cval(n.inputs[1]) if im.is_const(n.inp(1)) else None
    if reps is None:
        raise UnsupportedOpError("onnx: Tile repeats must be constant")
    reps = [int(r) for r in np.asarray(reps).reshape(-1)]
    if x.kind == "deq":
        raise UnsupportedOpError("onnx: Tile of a quantized tensor")
    perm = x.perm if x.flat is None else None
    p = perm or tuple(range(x.rank))
    t = im.emit("Tile", im.get(x, perm), name=im.out_name(n.outputs[0], perm is None), sizes=[reps[a] for a in p])
    im.set(n.outputs[0], Val(t, im._out_shape(n), x.dtype, perm, kind=x.kind))
