"""Quantized ONNX: QuantizeLinear / DequantizeLinear (QDQ), QLinearConv / QLinearMatMul, the
com.microsoft QLinear* ops (onnxruntime's QOperator format), MatMulInteger / ConvInteger and
DynamicQuantizeLinear, simulated in float32 (see the package docstring)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..._errors import UnsupportedOpError
from ._graph import NHWC, Node, Val, WeightSrc, _POOL_ATTRS, _T, _dequant, _np_dtype, _quantize_np
from .elementwise import _as_float_val, _ew_in
from .conv import _conv_core, _spatial_in, _spatial_out
from .matmul import _fc, _matmul


def _qparams(im, n, scale_i, zp_i, axis_default=1, ref_rank=None):
    s = im.cval(n.inputs[scale_i]).astype(np.float32) if n.inp(scale_i) else None
    if s is None:
        raise UnsupportedOpError("onnx: quantization scale must be constant")
    if n.inp(zp_i):
        zarr = im.cval(n.inputs[zp_i]) if n.inputs[zp_i] not in im.qconsts else None
        if zarr is None:
            raise UnsupportedOpError("onnx: quantization zero point must be constant")
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
        raise UnsupportedOpError("onnx: blocked quantization")
    z = np.zeros(s.shape, np.int32) if zarr is None else zarr.astype(np.int32)
    return s, z, np.dtype(qd), axis


def _is_dynamic_q(im, n, scale_i, zp_i) -> bool:
    return (n.inp(scale_i) and not im.is_const(n.inputs[scale_i])) or \
           (n.inp(zp_i) and not im.is_const(n.inputs[zp_i]))


def _fake_quant(im, t: _T, s, z, qd, out_name, plain) -> Tuple[_T, _T]:
    if qd not in (np.int8, np.uint8):
        raise UnsupportedOpError(f"onnx: quantization to {qd} (int8 and uint8 only)")
    if np.asarray(s).size != 1:
        raise UnsupportedOpError("onnx: per-axis quantization of activations")
    im.fake_quant_count += 1
    qname = im.out_name(out_name, plain) if out_name in im.output_set else out_name + "_q"
    qt = im.emit("Quantize", t, name=qname, dtype=3 if qd == np.int8 else 4, mode=1)
    im.b.quantization(qt, np.asarray(s).reshape(-1)[:1], np.asarray(z).reshape(-1)[:1])
    # A DequantizeLinear of this tensor that is a graph output names the float tensor.
    fname = out_name + "_dq"
    if plain and out_name in im.consumers:
        for c in im._live_consumers(out_name):
            if c.op == "DequantizeLinear" and c.outputs[0] in im.output_set and \
                    c.outputs[0] not in im.named_outputs and not _is_dynamic_q(im, c, 1, 2) and \
                    np.array_equal(_qparams(im, c, 1, 2)[0].reshape(-1), np.asarray(s).reshape(-1)) and \
                    np.array_equal(_qparams(im, c, 1, 2)[1].reshape(-1), np.asarray(z).reshape(-1)):
                fname = im.out_name(c.outputs[0], True)
                break
    ft = im.emit("Dequantize", qt, name=fname)
    return qt, ft


def op_QuantizeLinear(im, n):
    x = im.val(n.inputs[0])
    if _is_dynamic_q(im, n, 1, 2):
        # run-time scale / zero point (hand-written dynamic quantization): q = sat(round(x / s) + zp)
        xf = im.fval(n.inputs[0])
        s = im.val(n.inputs[1])
        z = im.val(n.inputs[2]) if n.inp(2) else None
        qd = np.dtype(im._dtype(n.inputs[2])) if n.inp(2) else np.dtype(np.uint8)
        im.set(n.outputs[0], _dyn_quantize(im, xf, s, z, qd, n.outputs[0]))
        return
    s, z, qd, axis = _qparams(im, n, 1, 2, ref_rank=x.rank)
    if x.kind != "real" or x.dtype != np.float32:
        raise UnsupportedOpError(f"onnx: QuantizeLinear of a {x.dtype} tensor")
    if x.const is not None:
        im.consts[n.outputs[0]] = _quantize_np(x.const, s, z, axis, qd)
        return
    tx, perm, flat = _ew_in(im, x)
    qt, ft = _fake_quant(im, tx, s, z, qd, n.outputs[0], perm is None and flat is None)
    im.set(n.outputs[0], Val(ft, x.shape, qd, perm, kind="deq", q=(s, z, qd), qt=qt, flat=flat))


def op_DequantizeLinear(im, n):
    src = n.inputs[0]
    if src in im.consts and not _is_dynamic_q(im, n, 1, 2):
        q = im.consts[src]
        s, z, qd, axis = _qparams(im, n, 1, 2, ref_rank=q.ndim)
        if q.dtype.kind not in "iu":
            raise UnsupportedOpError(f"onnx: DequantizeLinear of {q.dtype}")
        if q.dtype in (np.int8, np.uint8):
            im.qconsts[n.outputs[0]] = (q, s, z, axis)
        else:  # int32 bias and others: dequantized now
            im.consts[n.outputs[0]] = _dequant(q, s, z, axis)
            im.report.folded.append(f"{n.label()} of constant {q.dtype} '{src}' evaluated at conversion")
        return
    v = im.val(src)
    if _is_dynamic_q(im, n, 1, 2):
        s = im.fval(n.inputs[1])
        z = im.val(n.inputs[2]) if n.inp(2) else None
        if v.kind != "intf":
            raise UnsupportedOpError("onnx: DequantizeLinear with run-time parameters of a non-integer tensor")
        t = im.get(v, None)
        if z is not None:
            t = im.emit("Sub", t, im.get(_as_float_val(im, z), None), name="dq_sub")
        t = im.emit("Mul", t, im.get(s, None), name=im.out_name(n.outputs[0], True))
        im.set(n.outputs[0], Val(t, v.shape, np.float32))
        return
    s, z, qd, axis = _qparams(im, n, 1, 2, ref_rank=v.rank)
    if v.kind == "deq":
        im.set(n.outputs[0], _as_params(im, v, s, z, n.label()))
        return
    if v.kind == "intf":
        if s.size != 1:
            raise UnsupportedOpError("onnx: per-axis DequantizeLinear of an activation")
        t, perm, flat = _ew_in(im, v)
        if np.any(z):
            t = im.emit("Sub", t, im.const(z.astype(np.float32).reshape(-1)[:1], "dq_zp"), name="dq_sub")
        t = im.emit("Mul", t, im.const(s.reshape(-1)[:1], "dq_scale"),
                      name=im.out_name(n.outputs[0], perm is None and flat is None))
        im.set(n.outputs[0], Val(t, v.shape, np.float32, perm, flat=flat))
        return
    if v.dtype in (np.int8, np.uint8, np.int32) and v.t is not None:
        # an integer graph input (or int tensor) with these parameters
        if s.size != 1:
            raise UnsupportedOpError("onnx: per-axis DequantizeLinear of an input")
        im.b.quantization(v.t, s.reshape(-1)[:1], z.reshape(-1)[:1])
        t = im.emit("Dequantize", v.t, name=im.out_name(n.outputs[0], True))
        im.set(n.outputs[0], Val(t, v.shape, np.float32))
        return
    raise UnsupportedOpError(f"onnx: DequantizeLinear of a {v.dtype} tensor")


def _as_params(im, v: Val, s, z, where: str) -> Val:
    """The float value of quantized tensor v read with parameters (s, z): the same tensor when they are
    v's own, else (x / s0 + z0 - z) * s in float."""
    s0, z0, _ = v.q
    if np.array_equal(np.asarray(s0).reshape(-1), np.asarray(s).reshape(-1)) and \
            np.array_equal(np.asarray(z0).reshape(-1), np.asarray(z).reshape(-1)):
        return Val(v.t, v.shape, np.float32, v.perm, flat=v.flat)
    if np.asarray(s).size != 1:
        raise UnsupportedOpError("onnx: per-axis parameters for an activation")
    s0f, z0f = float(np.asarray(s0).reshape(-1)[0]), float(np.asarray(z0).reshape(-1)[0])
    sf, zf = float(np.asarray(s).reshape(-1)[0]), float(np.asarray(z).reshape(-1)[0])
    t = im.emit("Mul", v.t, im.const(np.array([sf / s0f], np.float32), "rescale"), name="rescale")
    if z0f != zf:
        t = im.emit("Add", t, im.const(np.array([(z0f - zf) * sf], np.float32), "shift"), name="rescale")
    im.report.notes.append(f"{where}: quantization parameters differ from the tensor's; rescaled in float")
    return Val(t, v.shape, np.float32, v.perm, flat=v.flat)


def _q_input(im, n, xi, si, zi) -> Val:
    """The float (dequantized) value of a QLinear op's quantized input."""
    s, z, qd, axis = _qparams(im, n, si, zi)
    if n.inputs[xi] in im.consts:
        q = im.consts[n.inputs[xi]]
        f = _dequant(q, s, z, axis)
        return Val(None, f.shape, np.float32, const=f)
    v = im.val(n.inputs[xi])
    if v.kind == "deq":
        return _as_params(im, v, s, z, n.label())
    if v.kind == "real" and v.dtype in (np.int8, np.uint8) and v.t is not None:
        im.b.quantization(v.t, s.reshape(-1)[:1], z.reshape(-1)[:1])
        return Val(im.emit("Dequantize", v.t, name="dequantize"), v.shape, np.float32)
    raise UnsupportedOpError(f"onnx: {n.op} input of kind {v.kind}/{v.dtype}")


def _qweight(im, n, wi, si, zi, axis_default) -> WeightSrc:
    w = im.cval(n.inputs[wi]) if n.inputs[wi] in im.consts else None
    if w is None:
        raise UnsupportedOpError(f"onnx: {n.op} weights must be constant")
    s, z, qd, axis = _qparams(im, n, si, zi, axis_default=axis_default, ref_rank=w.ndim)
    if s.size > 1 and axis is None:
        axis = axis_default
    if im.keep_int8 and w.dtype in (np.int8, np.uint8):
        return WeightSrc(q=w, scale=s, zp=z, axis=axis, name=n.inputs[wi])
    return WeightSrc(arr=_dequant(w, s, z, axis), name=n.inputs[wi])


def _requant_out(im, n, t: _T, out_shape, perm, si, zi):
    s, z, qd, _ = _qparams(im, n, si, zi)
    qt, ft = _fake_quant(im, t, s, z, qd, n.outputs[0], perm is None)
    im.set(n.outputs[0], Val(ft, out_shape, qd, perm, kind="deq", q=(s, z, qd), qt=qt))


def op_QLinearConv(im, n):
    x = _q_input(im, n, 0, 1, 2)
    ws = _qweight(im, n, 3, 4, 5, axis_default=0)
    xs = float(im.cval(n.inputs[1]).reshape(-1)[0])
    bias = None
    if n.inp(8):
        b = im.cval(n.inputs[8]).astype(np.float64)
        bias = (b * xs * np.asarray(im.cval(n.inputs[4]), np.float64).reshape(-1)).astype(np.float32)
    xt, xshape, one_d = _spatial_in(im, x)
    out_shape = im._out_shape(n)
    oshape4 = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
    t = _conv_core(im, n, xt, xshape, ws, bias, oshape4, n.outputs[0] + "_float", 0)
    if one_d:
        t = im.emit("Reshape", t, name="conv1d", shape=[out_shape[0], out_shape[2], out_shape[1]])
    _requant_out(im, n, t, out_shape, (0, 2, 1) if one_d else NHWC, 6, 7)


def op_QLinearMatMul(im, n):
    a = _q_input(im, n, 0, 1, 2)
    out_shape = im._out_shape(n)
    if n.inputs[3] in im.consts and im.consts[n.inputs[3]].ndim == 2 and a.rank >= 2:
        ws = _qweight(im, n, 3, 4, 5, axis_default=1).transform(lambda m: m.T, lambda ax: 1 - ax)
        nm = im._fresh(n.outputs[0] + "_float")
        t, _, perm = _fc(im, a, ws, None, nm, out_shape, allow_bias_add=False)
    else:
        b = _q_input(im, n, 3, 4, 5)
        nm = im._fresh(n.outputs[0] + "_float")
        im.types[nm] = (np.dtype(np.float32), out_shape)
        _matmul(im, a, b, nm, out_shape)
        t, perm = im.vals[nm].t, None
    _requant_out(im, n, t, out_shape, perm, 6, 7)


def _qlinear_float(im, n, float_op, pairs, out_si, out_zi, attrs):
    """A com.microsoft QLinear* op: its float op on the dequantized inputs, then Quantize + Dequantize."""
    syn = []
    for xi, si, zi in pairs:
        nm = f"{n.outputs[0]}__in{len(syn)}"
        im.vals[nm] = _q_input(im, n, xi, si, zi)
        syn.append(nm)
    out = n.outputs[0] + "__float"
    im.types[out] = (np.dtype(np.float32), im._shape(n.outputs[0]))
    im.handlers[float_op](im, Node(float_op, "", f"{n.name or n.op}_float", syn, [out], attrs))
    fv = im.vals[out]
    s, z, qd, _ = _qparams(im, n, out_si, out_zi)
    t, perm, flat = _ew_in(im, fv)
    qt, ft = _fake_quant(im, t, s, z, qd, n.outputs[0], perm is None and flat is None)
    im.set(n.outputs[0], Val(ft, fv.shape, qd, perm, kind="deq", q=(s, z, qd), qt=qt, flat=flat))


def op_ms_QLinearAdd(im, n):
    _qlinear_float(im, n, "Add", [(0, 1, 2), (3, 4, 5)], 6, 7, {})


def op_ms_QLinearMul(im, n):
    _qlinear_float(im, n, "Mul", [(0, 1, 2), (3, 4, 5)], 6, 7, {})


def op_ms_QLinearSigmoid(im, n):
    _qlinear_float(im, n, "Sigmoid", [(0, 1, 2)], 3, 4, {})


def op_ms_QLinearLeakyRelu(im, n):
    _qlinear_float(im, n, "LeakyRelu", [(0, 1, 2)], 3, 4, {"alpha": n.attrs.get("alpha", 0.01)})


def op_ms_QLinearGlobalAveragePool(im, n):
    if n.attrs.get("channels_last", 0):
        raise UnsupportedOpError("onnx: QLinearGlobalAveragePool with channels_last = 1")
    _qlinear_float(im, n, "GlobalAveragePool", [(0, 1, 2)], 3, 4, {})


def op_ms_QLinearAveragePool(im, n):
    if n.attrs.get("channels_last", 0):
        raise UnsupportedOpError("onnx: QLinearAveragePool with channels_last = 1")
    _qlinear_float(im, n, "AveragePool", [(0, 1, 2)], 3, 4,
                        {k: v for k, v in n.attrs.items() if k in _POOL_ATTRS})


def op_ms_QLinearConcat(im, n):
    pairs = [(i, i + 1, i + 2) for i in range(2, len(n.inputs), 3)]
    _qlinear_float(im, n, "Concat", pairs, 0, 1, {"axis": n.attrs["axis"]})


def op_ms_QGemm(im, n):
    a = _q_input(im, n, 0, 1, 2)
    alpha = float(n.attrs.get("alpha", 1.0))
    ta, tb = int(n.attrs.get("transA", 0)), int(n.attrs.get("transB", 0))
    out_shape = im._out_shape(n)
    ws = _qweight(im, n, 3, 4, 5, axis_default=0 if tb else 1)
    if not tb:
        ws = ws.transform(lambda m: m.T, lambda ax: 1 - ax)
    if alpha != 1.0:
        ws = ws.scaled(alpha)
    bias = None
    if n.inp(6):
        c = im.cval(n.inputs[6]).astype(np.float64)
        sa = float(im.cval(n.inputs[1]).reshape(-1)[0])
        sb = np.asarray(im.cval(n.inputs[4]), np.float64).reshape(-1)
        bias = np.broadcast_to(c * sa * sb, (out_shape[1],)).astype(np.float32)
    if ta:
        a = Val(im.emit("Transpose", im.get(a, None), name="qgemm_at", perm=[1, 0]), a.shape[::-1],
                np.float32)
    quantized_out = bool(n.inp(7))
    nm = im._fresh(n.outputs[0] + "_float") if quantized_out else n.outputs[0]
    t, final, perm = _fc(im, a, ws, bias, nm, out_shape, allow_bias_add=False)
    if quantized_out:
        _requant_out(im, n, t, out_shape, perm, 7, 8)
    else:
        im.set(final, Val(t, out_shape, np.float32, perm))


def _int_input(im, n, xi, zi):
    """x - zero_point as exact float values for MatMulInteger / ConvInteger: (tensor, perm, flat)."""
    v = im.val(n.inputs[xi])
    zp = n.inp(zi)
    if v.kind == "deq":
        s0, z0, _ = v.q
        t, perm, flat = _ew_in(im, v)
        zc = im.cval(zp).astype(np.float32).reshape(-1) if zp and im.is_const(zp) else None
        if zp and zc is None:
            # run-time zero point: x/s0 + z0 - zp
            t = im.emit("Mul", t, im.const(np.array([1 / float(np.asarray(s0).reshape(-1)[0])], np.float32),
                                               "inv_scale"), name="int_values")
            t = im.emit("Add", t, im.const(np.array([float(np.asarray(z0).reshape(-1)[0])], np.float32),
                                               "zp"), name="int_values")
            t = im.emit("Sub", t, im.get(_as_float_val(im, im.val(zp)), None), name="int_centered")
            return t, perm, flat
        z = 0.0 if zc is None else float(zc[0])
        s0f, z0f = float(np.asarray(s0).reshape(-1)[0]), float(np.asarray(z0).reshape(-1)[0])
        t = im.emit("Mul", t, im.const(np.array([1 / s0f], np.float32), "inv_scale"), name="int_values")
        if z0f != z:
            t = im.emit("Add", t, im.const(np.array([z0f - z], np.float32), "zp_shift"), name="int_centered")
        return t, perm, flat
    if v.kind == "intf":
        t, perm, flat = _ew_in(im, v)
        if zp:
            zv = im.val(zp)
            if zv.const is not None:
                zf = float(zv.const.reshape(-1)[0])
                if zv.const.size != 1:
                    raise UnsupportedOpError("onnx: per-row zero point of MatMulInteger input A")
                if zf:
                    t = im.emit("Sub", t, im.const(np.array([zf], np.float32), "zp"), name="int_centered")
            else:
                t = im.emit("Sub", t, im.get(_as_float_val(im, zv), None), name="int_centered")
        return t, perm, flat
    if v.kind == "real" and v.dtype in (np.int8, np.uint8) and v.t is not None:
        z = im.cval(zp).reshape(-1)[:1].astype(np.int32) if zp else np.zeros(1, np.int32)
        im.b.quantization(v.t, np.ones(1, np.float32), z)
        return im.emit("Dequantize", v.t, name="int_centered"), None, None
    raise UnsupportedOpError(f"onnx: {n.op} input '{n.inputs[xi]}' ({v.kind}, {v.dtype})")


def _int_weight(im, n, wi, zi, axis_default) -> WeightSrc:
    w = im.consts.get(n.inputs[wi])
    if w is None:
        return None
    z = im.cval(n.inp(zi)).astype(np.int32) if n.inp(zi) else np.zeros(1, np.int32)
    axis = axis_default if z.size > 1 else None
    s = np.ones(z.shape if z.size > 1 else (1,), np.float32)
    if im.keep_int8 and w.dtype in (np.int8, np.uint8):
        return WeightSrc(q=w, scale=s, zp=z.reshape(-1), axis=axis, name=n.inputs[wi])
    return WeightSrc(arr=_dequant(w, s, z, axis), name=n.inputs[wi])


def op_MatMulInteger(im, n):
    ta, perm, flat = _int_input(im, n, 0, 2)
    av = im.val(n.inputs[0])
    out_shape = im._out_shape(n)
    a = Val(ta, av.shape, np.float32, perm, flat=flat)
    ws = _int_weight(im, n, 1, 3, axis_default=1)
    if ws is not None and len(ws.shape) == 2 and a.rank >= 2:
        ws = ws.transform(lambda m: m.T, lambda ax: 1 - ax)
        t, _, perm2 = _fc(im, a, ws, None, im._fresh(n.outputs[0]), out_shape, allow_bias_add=False)
        im.set(n.outputs[0], Val(t, out_shape, np.int32, perm2, kind="intf"))
        return
    tb, permb, flatb = _int_input(im, n, 1, 3)
    bv = im.val(n.inputs[1])
    b = Val(tb, bv.shape, np.float32, permb, flat=flatb)
    nm = im._fresh(n.outputs[0])
    im.types[nm] = (np.dtype(np.float32), out_shape)
    _matmul(im, a, b, nm, out_shape)
    im.set(n.outputs[0], Val(im.vals[nm].t, out_shape, np.int32, kind="intf"))


def op_ConvInteger(im, n):
    ta, perm, flat = _int_input(im, n, 0, 2)
    av = im.val(n.inputs[0])
    x = Val(ta, av.shape, np.float32, perm, flat=flat)
    ws = _int_weight(im, n, 1, 3, axis_default=0)
    if ws is None:
        raise UnsupportedOpError("onnx: ConvInteger weights must be constant")
    xt, xshape, one_d = _spatial_in(im, x)
    out_shape = im._out_shape(n)
    oshape4 = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
    t = _conv_core(im, n, xt, xshape, ws, None, oshape4, n.outputs[0], 0)
    v = _spatial_out(im, t, n.outputs[0], out_shape, one_d)
    v.kind, v.dtype = "intf", np.dtype(np.int32)
    im.set(n.outputs[0], v)


def _global_max(im, t: _T, count: int, name: str) -> _T:
    """max over all elements of a runtime tensor with `count` elements, as a [1] tensor."""
    lim = 1 << 20
    if count <= lim:
        a, b = 1, count
    else:
        a = next((d for d in range(2, lim + 1) if count % d == 0 and count // d <= lim), None)
        if a is None:
            raise UnsupportedOpError("onnx: DynamicQuantizeLinear of a tensor too large to reduce")
        b = count // a
    r = im.emit("Reshape", t, name=name + "_flat", shape=[1, a, b, 1])
    m = im.emit("MaxPool2D", r, name=name, filter=[a, b])
    return im.emit("Reshape", m, name=name + "_1", shape=[1])


def op_DynamicQuantizeLinear(im, n):
    x = im.fval(n.inputs[0])
    xt, perm, flat = _ew_in(im, x)
    cnt = int(np.prod(x.shape)) if x.shape else 1
    base = n.outputs[0]
    mx = _global_max(im, xt, cnt, base + "_max")
    neg = im.emit("Mul", xt, im.const(np.array([-1], np.float32), "minus_one"), name=base + "_neg")
    mn = _global_max(im, neg, cnt, base + "_negmin")
    hi = im.emit("Relu", mx, name=base + "_hi")               # max(0, max x)
    lo = im.emit("Relu", mn, name=base + "_lo")               # -min(0, min x)
    rng = im.emit("Add", hi, lo, name=base + "_range")
    # ONNX: scale = (max - min) / 255, 1/255 when max == min (only when x is all zeros: any scale works)
    rng = im.emit("Maximum", rng, im.const(np.array([1e-30], np.float32), "tiny"), name=base + "_range_nz")
    scale = im.emit("Div", rng, im.const(np.array([255], np.float32), "q255"),
                      name=im.out_name(n.outputs[1], True) if len(n.outputs) > 1 and n.outputs[1] else "scale")
    zpf = im.emit("Div", lo, scale, name=base + "_zp_real")
    zq = im.emit("Quantize", zpf, name=base + "_zp_u8", dtype=4, mode=1)
    im.b.quantization(zq, np.ones(1, np.float32), np.zeros(1, np.int32))
    zp = im.emit("Dequantize", zq, name=base + "_zp")
    y = _round_add_zp(im, im.emit("Div", xt, scale, name=base + "_scaled"), zp, base)
    im.set(n.outputs[0], Val(y, x.shape, np.uint8, perm, kind="intf", flat=flat))
    if len(n.outputs) > 1 and n.outputs[1]:
        im.set(n.outputs[1], Val(scale, (), np.float32))
    if len(n.outputs) > 2 and n.outputs[2]:
        im.set(n.outputs[2], Val(zp, (), np.uint8, kind="intf"))
    im.dql_count += 1


def _round_add_zp(im, t: _T, zp: Optional[_T], base: str) -> _T:
    """saturate_uint8(round_half_even(t) + zp) as float values: rounds through an int16 Quantize (t within
    +-32767) so that the zero point is added after rounding, exactly as ONNX specifies."""
    q16 = im.emit("Quantize", t, name=base + "_rounded", dtype=7, mode=1)
    im.b.quantization(q16, np.ones(1, np.float32), np.zeros(1, np.int32))
    r = im.emit("Dequantize", q16, name=base + "_rounded_f")
    if zp is not None:
        r = im.emit("Add", r, zp, name=base + "_shifted")
    q = im.emit("Quantize", r, name=base + "_u8", dtype=4, mode=1)
    im.b.quantization(q, np.ones(1, np.float32), np.zeros(1, np.int32))
    return im.emit("Dequantize", q, name=base + "_values")


def _dyn_quantize(im, x: Val, s: Val, z: Optional[Val], qd, out) -> Val:
    if qd != np.uint8:
        raise UnsupportedOpError("onnx: QuantizeLinear with run-time parameters to int8 (uint8 only)")
    perm = x.perm if x.flat is None else None
    t = im.emit("Div", im.get(x, perm), im.get(_as_float_val(im, s), None), name=out + "_scaled")
    zt = im.get(_as_float_val(im, z), None) if z is not None else None
    y = _round_add_zp(im, t, zt, out)
    return Val(y, x.shape, qd, perm, kind="intf")


def to_int8_kernels(data: bytes, report) -> bytes:
    """The simulated graph (Quantize + Dequantize around float ops) rewritten by the core's int8-static pass with
    the graph's own parameters (Quantizer.set_graph_params: no calibration; the file's int8 weights, scales and
    zero points as given, uint8 activations as int8 with the zero point - 128): ops whose inputs and output carry
    parameters run on the int8 kernels, the others stay float32 as simulated."""
    from collections import Counter
    from ...model import Model
    from ...quantize import Quantizer
    with Model(data) as m:
        q = Quantizer(m, "int8-static")
        try:
            q.set_graph_params(True)
            out = q.finish()
            layers = q.layers()
        finally:
            q.close()
    done = [lay for lay in layers if lay["quantized"]]
    if not done:
        report.notes.append("quantized ONNX: no op maps onto the int8 kernels; the simulation is kept")
        return data
    kept = Counter(lay["op"] for lay in layers if not lay["quantized"])
    report.notes.append(
        f"quantized ONNX runs on the int8 kernels: {len(done)} of {len(layers)} layers with the file's scales, zero "
        f"points and int8 weights (int8-static with the graph's parameters)"
        + (f"; in float32 as simulated: {', '.join(f'{k} x{v}' for k, v in sorted(kept.items()))}" if kept else "")
        + " (simulate_quantization=True keeps the float simulation)")
    with Model(out) as m2:
        report.ops_out = Counter(o.op for o in m2.ops())
    return out
