"""Convolutions and pooling (NHWC in the runtime; 1-D ops lifted to 2-D with H = 1)."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..._errors import UnsupportedOpError
from ._graph import NHWC, Val, WeightSrc, _T, _cl


def _conv_pads(im, n, in_hw, k_hw, strides, dil, one_d=False):
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
        raise UnsupportedOpError("onnx: negative pads")
    if not any(rt):
        return 0, None
    return 2, rt


def _spatial_in(im, x: Val) -> Tuple[_T, Tuple[int, ...], bool]:
    """NHWC runtime tensor of an ONNX NCHW (or NCW, lifted to H = 1) value: (tensor, NCHW shape, was_1d)."""
    if x.rank == 4:
        return im.get(x, NHWC), x.shape, False
    if x.rank == 3:
        t = im.get(x, (0, 2, 1))
        nb, c, l = x.shape
        t = im.emit("Reshape", t, name="to_2d", shape=[nb, 1, l, c])
        return t, (nb, c, 1, l), True
    raise UnsupportedOpError(f"onnx: spatial op on a rank-{x.rank} tensor (2-D and 1-D only)")


def _spatial_out(im, t: _T, out_name: str, out_shape, was_1d: bool, kind="real", q=None, dtype=np.float32) -> Val:
    if was_1d:
        nb, c, l = out_shape
        t = im.emit("Reshape", t, name=im.out_name(out_name, False), shape=[nb, l, c])
        return Val(t, out_shape, dtype, (0, 2, 1), kind=kind, q=q)
    return Val(t, out_shape, dtype, NHWC, kind=kind, q=q)


def _conv_core(im, n, xt, xshape, ws: WeightSrc, bias, out_shape, final_name, act):
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
    padding, pads = _conv_pads(im, n, xshape[2:], (kh, kw), strides, dil, one_d)
    btensor = None if bias is None else im.const(np.asarray(bias, np.float32).reshape(-1), f"{final_name}_bias")
    nm = im.out_name(final_name, False)
    common = dict(strides=strides, dilations=dil, padding=padding, pads=pads, activation=act or None)
    to_ohwi = (lambda a: np.transpose(a, (0, 2, 3, 1)), lambda ax: [0, 3, 1, 2][ax])
    if group == 1:
        w = im.emit_weight(ws.transform(*to_ohwi), f"{final_name}_w")
        t = im.emit("Conv2D", xt, w, btensor, name=nm, **common)
    elif group == cin and cg == 1 and cout % cin == 0:
        m = cout // cin
        w = im.emit_weight(ws.transform(lambda a: np.transpose(a, (1, 2, 3, 0)), lambda ax: [3, 0, 1, 2][ax]),
                             f"{final_name}_w")
        t = im.emit("DepthwiseConv2D", xt, w, btensor, name=nm, depth_multiplier=m if m > 1 else None, **common)
    else:
        w = im.emit_weight(ws.transform(*to_ohwi), f"{final_name}_w")
        t = im.emit("Conv2D", xt, w, btensor, name=nm, groups=group, **common)
    return t


def op_Conv(im, n):
    x = im.fval(n.inputs[0])
    ws = im.weight(n.inputs[1])
    bias = im.cval(n.inp(2)).astype(np.float32) if n.inp(2) else None
    xt, xshape, one_d = _spatial_in(im, x)
    act, final = im.take_activation(n.outputs[0], lifted=one_d)
    out_shape = im._shape(n.outputs[0])
    oshape4 = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
    t = _conv_core(im, n, xt, xshape, ws, bias, oshape4, final, act)
    im.set(final, _spatial_out(im, t, final, out_shape, one_d))


def op_ConvTranspose(im, n):
    x = im.fval(n.inputs[0])
    ws = im.weight(n.inputs[1])
    if n.attrs.get("group", 1) != 1:
        raise UnsupportedOpError("onnx: ConvTranspose with group > 1")
    bias = im.cval(n.inp(2)).astype(np.float32) if n.inp(2) else None
    xt, xshape, one_d = _spatial_in(im, x)
    if one_d:
        ws = ws.transform(lambda a: a[:, :, None, :])
    act, final = im.take_activation(n.outputs[0], lifted=one_d)
    out_shape = im._shape(n.outputs[0])
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
                                         "(ambiguous between ONNX versions)")
            b_ = e_ = total // 2
        if b_ + e_ != total or b_ < 0 or e_ < 0:
            raise UnsupportedOpError(f"onnx: ConvTranspose padding ({b_}, {e_}) does not give the inferred "
                                     f"output size")
        pads_rt += [b_, e_]
    w = im.emit_weight(ws.transform(lambda a: np.transpose(a, (1, 2, 3, 0)), lambda ax: [3, 0, 1, 2][ax]),
                         f"{final}_w")
    btensor = None if bias is None else im.const(bias, f"{final}_bias")
    t = im.emit("TransposeConv2D", xt, w, btensor, name=im.out_name(final, False), strides=strides,
                  dilations=dil, padding=2 if any(pads_rt) else 0, pads=pads_rt if any(pads_rt) else None,
                  output_padding=op if any(op) else None, activation=act or None)
    im.set(final, _spatial_out(im, t, final, out_shape, one_d))


def _pool(im, n, op):
    x = im.val(n.inputs[0])
    if x.kind == "intf" or (x.kind == "real" and x.dtype != np.float32):
        raise UnsupportedOpError(f"onnx: {n.op} on a {x.dtype} tensor")
    if op == "AveragePool2D" and x.kind == "deq":
        raise UnsupportedOpError("onnx: AveragePool on a quantized tensor")
    if len(n.outputs) > 1 and n.outputs[1]:
        raise UnsupportedOpError("onnx: MaxPool indices output")
    ks = [int(k) for k in n.attrs["kernel_shape"]]
    if any(d != 1 for d in n.attrs.get("dilations", [1] * len(ks))):
        raise UnsupportedOpError(f"onnx: {n.op} with dilations")
    xt, xshape, one_d = _spatial_in(im, x)
    out_shape = im._shape(n.outputs[0])
    oshape = out_shape if not one_d else (out_shape[0], out_shape[1], 1, out_shape[2])
    strides = [int(s) for s in n.attrs.get("strides", [1] * len(ks))]
    if one_d:
        ks, strides = [1] + ks, [1] + strides
    in_hw = xshape[2:]
    padding, pads = _conv_pads(im, n, in_hw, ks, strides, [1, 1], one_d)
    if padding == 1:
        pads = _same_pads(in_hw, ks, strides)
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
                    f"onnxruntime's rule (last window starts inside the input) gives {o}")
    ceil_fix = False
    for i in range(2):
        rt_out = (in_hw[i] + pads[2 * i] + pads[2 * i + 1] - ks[i]) // strides[i] + 1
        if rt_out != oshape[2 + i]:
            extra = (oshape[2 + i] - 1) * strides[i] + ks[i] - (in_hw[i] + pads[2 * i] + pads[2 * i + 1])
            if extra <= 0 or not n.attrs.get("ceil_mode", 0):
                raise UnsupportedOpError(f"onnx: {n.op} output size {oshape[2 + i]} does not match the "
                                         f"runtime's {rt_out}")
            ceil_fix = True
            pads[2 * i + 1] += extra
    corr = None
    if ceil_fix and cip:
        # ONNX divides by the window clipped to input + pads (not the extra ceil-mode cells): average over the
        # real cells (count_include_pad 0), then scale each output by real cells / ONNX divisor (a constant).
        corr = np.outer(*[_avg_correction(in_hw[i], ks[i], strides[i], pads0[2 * i], pads0[2 * i + 1],
                                               oshape[2 + i]) for i in range(2)])
        cip = 0
    if any(p >= k for p, k in zip(pads, [ks[0], ks[0], ks[1], ks[1]])):
        raise UnsupportedOpError(f"onnx: {n.op} padding {pads} not smaller than the window {ks}")
    if x.kind == "real" and corr is None:
        act, final = im.take_activation(n.outputs[0], lifted=one_d)
    else:
        act, final = 0, n.outputs[0]
    nm = im.out_name(final, False) if corr is None else "avgpool"
    t = im.emit(op, xt, name=nm, filter=ks, strides=strides, padding=2 if any(pads) else 0,
                  pads=pads if any(pads) else None, count_include_pad=cip or None, activation=act or None)
    if ceil_fix:
        im.report.notes.append(f"{n.label()}: ceil_mode as extra bottom/right padding"
                                 + (" with a divisor correction" if corr is not None else ""))
    if corr is not None:
        m = corr.astype(np.float32).reshape(1, oshape[2], oshape[3], 1)
        t = im.emit("Mul", t, im.const(m, "avgpool_divisor"), name=im.out_name(final, False))
    im.set(final, _spatial_out(im, t, final, out_shape, one_d, kind=x.kind, q=x.q, dtype=x.dtype))


def _same_pads(in_hw, ks, strides):
    pads = []
    for i in range(2):
        out = -(-in_hw[i] // strides[i])
        total = max((out - 1) * strides[i] + ks[i] - in_hw[i], 0)
        pads += [total // 2, total - total // 2]
    return pads


def _avg_correction(inp, k, s, pb, pe, out):
    """Per output position of one dim: real cells in the window / the ONNX count_include_pad divisor."""
    res = []
    for o in range(out):
        start = o * s - pb
        end = min(start + k, inp + pe)
        res.append((min(start + k, inp) - max(start, 0)) / (end - start))
    return np.array(res)


def op_MaxPool(im, n):
    _pool(im, n, "MaxPool2D")


def op_AveragePool(im, n):
    _pool(im, n, "AveragePool2D")


def op_GlobalAveragePool(im, n):
    x = im.fval(n.inputs[0])
    perm = _cl(x.rank)
    axes = list(range(1, x.rank - 1))
    t = im.emit("Mean", im.get(x, perm), name=im.out_name(n.outputs[0], False), axes=axes, keep_dims=1)
    im.set(n.outputs[0], Val(t, im._out_shape(n), np.float32, perm))


def op_GlobalMaxPool(im, n):
    x = im.val(n.inputs[0])
    xt, xshape, one_d = _spatial_in(im, x)
    t = im.emit("MaxPool2D", xt, name=im.out_name(n.outputs[0], False), filter=list(xshape[2:]))
    im.set(n.outputs[0], _spatial_out(im, t, n.outputs[0], im._out_shape(n), one_d, kind=x.kind, q=x.q,
                                             dtype=x.dtype))
