"""Data movement: Reshape and friends, Transpose (a layout change only), Concat, Split, Slice, Pad,
Gather, DepthToSpace / SpaceToDepth, Resize, Expand."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..._errors import UnsupportedOpError
from ._graph import NHWC, Val, _ident, _inv, _norm


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


def op_Expand(im, n):
    """Expand (bidirectional broadcast, any dtype): the runtime Expand in the input's layout."""
    x = im.val(n.inputs[0])
    if x.kind == "deq":
        raise UnsupportedOpError("onnx: Expand of a quantized tensor")
    out_shape = im._out_shape(n)
    r = len(out_shape)
    xs = (1,) * (r - x.rank) + x.shape
    if all(o == d for o, d in zip(out_shape, xs)):
        im.set(n.outputs[0], _reshape_to(im, x, out_shape, n.outputs[0]))
        return
    perm = x.perm if x.rank == r and x.flat is None else None
    target = [out_shape[a] for a in perm] if perm else list(out_shape)
    t = im.emit("Expand", im.get(x, perm), name=im.out_name(n.outputs[0], perm is None), shape=target)
    im.set(n.outputs[0], Val(t, out_shape, x.dtype, perm, kind=x.kind))


def _reshape_to(im, v: Val, target: Tuple[int, ...], out: str) -> Val:
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
            t = im.emit("Reshape", v.t, name=im.out_name(out, q is None), shape=rt_target or [1])
            if q is not None:
                im.report.fused.append(f"Reshape to {list(target)} done in the runtime layout (no transpose)")
            return Val(t, target, v.dtype, q, **keep)
        if v.rank == 4 and p == NHWC and len(target) == 2 and target[0] == s[0] and \
                target[1] == s[1] * s[2] * s[3]:
            c, h, w = s[1], s[2], s[3]
            t = im.emit("Reshape", v.t, name=out + "_flat_nhwc", shape=[s[0], h * w * c])
            nv = Val(t, target, v.dtype, flat=(c, h, w), **keep)
            return nv
    t0 = im.get(v, None)
    if tuple(target) == v.shape:
        return Val(t0, target, v.dtype, **keep)
    t = im.emit("Reshape", t0, name=im.out_name(out, True), shape=list(target) or [1])
    return Val(t, target, v.dtype, **keep)


def op_Reshape(im, n):
    im.set(n.outputs[0], _reshape_to(im, im.val(n.inputs[0]), im._out_shape(n), n.outputs[0]))


def op_Flatten(im, n):
    op_Reshape(im, n)


def op_Squeeze(im, n):
    op_Reshape(im, n)


def op_Unsqueeze(im, n):
    op_Reshape(im, n)


def op_Transpose(im, n):
    v = im.val(n.inputs[0])
    r = v.rank
    t = list(n.attrs.get("perm", list(range(r))[::-1]))
    if v.const is not None:
        im.set(n.outputs[0], Val(None, np.transpose(v.const, t).shape, v.dtype,
                                   const=np.transpose(v.const, t)))
        return
    if v.flat is not None:
        v = Val(im.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
    p = v.perm or _ident(r)
    inv_t = _inv(t)
    q = [inv_t[p[i]] for i in range(r)]
    out_shape = tuple(v.shape[a] for a in t)
    im.set(n.outputs[0], Val(v.t, out_shape, v.dtype, q, kind=v.kind, q=v.q))
    im.report.fused.append(f"{n.label()} folded into the layout")


def op_Concat(im, n):
    vals = [im.val(i) for i in n.inputs if i]
    out_shape = im._out_shape(n)
    r = len(out_shape)
    axis = int(n.attrs["axis"]) % r
    kinds = {v.kind for v in vals if v.const is None}
    kind, q = "real", None
    if kinds == {"deq"}:
        qs = {(float(np.asarray(v.q[0]).reshape(-1)[0]), int(np.asarray(v.q[1]).reshape(-1)[0]), v.q[2])
              for v in vals}
        if len(qs) != 1 or any(v.const is not None for v in vals):
            raise UnsupportedOpError("onnx: Concat of quantized tensors with different parameters")
        kind, q = "deq", vals[0].q
    elif kinds - {"real"}:
        raise UnsupportedOpError("onnx: Concat of integer tensors")
    perm = im.perm_for(vals, r)
    ts = [im.get(v, perm) for v in vals]
    rax = perm.index(axis) if perm else axis
    t = im.emit("Concat", *ts, name=im.out_name(n.outputs[0], perm is None), axis=rax)
    im.set(n.outputs[0], Val(t, out_shape, vals[0].dtype, perm, kind=kind, q=q))


def op_Split(im, n):
    v = im.val(n.inputs[0])
    axis = int(n.attrs.get("axis", 0)) % v.rank
    if v.flat is not None:
        v = Val(im.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
    perm = v.perm
    rax = perm.index(axis) if perm else axis
    outs = [o for o in n.outputs]
    sizes = [im._shape(o)[axis] for o in outs]
    ts = im.emit("Split", im.get(v, perm), outputs=len(outs),
                   out_names=[im.out_name(o, perm is None) for o in outs], axis=rax, sizes=sizes)
    if not isinstance(ts, list):
        ts = [ts]
    for o, t in zip(outs, ts):
        im.set(o, Val(t, im._shape(o), v.dtype, perm, kind=v.kind, q=v.q))


def op_Slice(im, n):
    v = im.val(n.inputs[0])
    if v.flat is not None:
        v = Val(im.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
    starts = [int(x) for x in im.cval(n.inputs[1]).reshape(-1)]
    ends = [int(x) for x in im.cval(n.inputs[2]).reshape(-1)]
    axes = [int(x) % v.rank for x in im.cval(n.inp(3)).reshape(-1)] if n.inp(3) else list(range(len(starts)))
    steps = [int(x) for x in im.cval(n.inp(4)).reshape(-1)] if n.inp(4) else [1] * len(starts)
    r = v.rank
    begin, end, stride = [0] * r, list(v.shape), [1] * r
    end_mask = 0
    for s, e, a, st in zip(starts, ends, axes, steps):
        d = v.shape[a]
        if st == 0:
            raise UnsupportedOpError("onnx: Slice step 0")
        if s < 0:
            s += d
        if e < 0:
            e += d
        if st > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
        else:
            s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
        begin[a], end[a], stride[a] = s, e, st
    out_shape = im._out_shape(n)
    if any(d == 0 for d in out_shape):
        raise UnsupportedOpError("onnx: Slice with an empty result")
    perm = v.perm
    p = perm or _ident(r)
    rb, re_, rs = [begin[a] for a in p], [end[a] for a in p], [stride[a] for a in p]
    nm = im.out_name(n.outputs[0], perm is None)
    if all(s == 1 for s in rs):
        # size -1 (to the end) where the slice reaches the end: the same here, and it follows a dynamic dim
        size = [-1 if e == v.shape[a] else e - b for b, e, a in zip(rb, re_, p)]
        t = im.emit("Slice", im.get(v, perm), name=nm, begin=rb, size=size)
    else:
        for i in range(r):
            if rs[i] < 0 and re_[i] == -1:
                end_mask |= 1 << i
                re_[i] = 0
        t = im.emit("StridedSlice", im.get(v, perm), name=nm, begin=rb, end=re_, strides=rs,
                      end_mask=end_mask or None)
    im.set(n.outputs[0], Val(t, out_shape, v.dtype, perm, kind=v.kind, q=v.q))


def op_Pad(im, n):
    v = im.val(n.inputs[0])
    mode = n.attrs.get("mode", "constant")
    if mode not in ("constant", "reflect"):
        raise UnsupportedOpError(f"onnx: Pad mode '{mode}' (constant and reflect only)")
    pads = [int(x) for x in im.cval(n.inputs[1]).reshape(-1)]
    r = v.rank
    axes = [int(a) % r for a in im.cval(n.inp(3)).reshape(-1)] if n.inp(3) else list(range(r))
    k = len(axes)
    before, after = [0] * r, [0] * r
    for j, a in enumerate(axes):
        before[a], after[a] = pads[j], pads[j + k]
    if any(x < 0 for x in before + after):
        raise UnsupportedOpError("onnx: negative pads (cropping)")
    value = im._scalar(n.inp(2)) if n.inp(2) else 0.0
    if value is None:
        raise UnsupportedOpError("onnx: Pad value must be constant")
    if v.kind == "deq":  # the pad value is a quantized value: its float value is (value - zp) * scale
        qs, qz, _ = v.q
        value = (value - float(np.asarray(qz).reshape(-1)[0])) * float(np.asarray(qs).reshape(-1)[0])
    elif v.kind != "real":
        raise UnsupportedOpError("onnx: Pad of an integer tensor")
    if v.flat is not None:
        v = Val(im.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
    perm = v.perm
    c = im._single(n.outputs[0])
    if r == 4 and mode == "constant" and c is not None and c.op == "Conv" and not c.domain:
        perm = NHWC  # pad where the Conv reads (NHWC), so the core's PadFusion sees Pad -> Conv2D
    p = perm or _ident(r)
    rp = []
    for a in p:
        rp += [before[a], after[a]]
    t = im.emit("Pad", im.get(v, perm), name=im.out_name(n.outputs[0], perm is None), pads=rp,
                  mode=1 if mode == "reflect" else 0, value=float(value) if value else None)
    im.set(n.outputs[0], Val(t, im._out_shape(n), v.dtype, perm, kind=v.kind, q=v.q))


def op_Gather(im, n):
    v = im.val(n.inputs[0])
    axis = int(n.attrs.get("axis", 0)) % v.rank
    out_shape = im._out_shape(n)
    if v.flat is not None:
        v = Val(im.get(v, None), v.shape, v.dtype, kind=v.kind, q=v.q)
    if im.is_const(n.inputs[1]):
        idx = np.asarray(im.cval(n.inputs[1])).astype(np.int64)
        k = idx.ndim
        it = im.const(idx.reshape(-1) if k == 0 else idx, "indices")
    else:
        iv = im.val(n.inputs[1])
        if iv.dtype not in (np.int32, np.int64) or iv.kind != "real":
            raise UnsupportedOpError(f"onnx: Gather indices of dtype {iv.dtype}")
        k = iv.rank
        it = im.get(iv, None)
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
        t = im.emit("Gather", im.get(v, perm), it, name="gather", axis=rax)
        rt_shape = [v.rt_shape()[i] for i in range(v.rank) if i != rax] if perm is not None else list(out_shape)
        t = im.emit("Reshape", t, name=im.out_name(n.outputs[0], out_perm is None), shape=rt_shape or [1])
    else:
        t = im.emit("Gather", im.get(v, perm), it, name=im.out_name(n.outputs[0], out_perm is None),
                      axis=rax)
    im.set(n.outputs[0], Val(t, out_shape, v.dtype, out_perm, kind=v.kind, q=v.q))


def op_DepthToSpace(im, n):
    _d2s(im, n, "DepthToSpace", 1 if n.attrs.get("mode", "DCR") == "CRD" else 0)


def op_SpaceToDepth(im, n):
    _d2s(im, n, "SpaceToDepth", 0)


def _d2s(im, n, op, mode):
    v = im.val(n.inputs[0])
    if v.rank != 4:
        raise UnsupportedOpError(f"onnx: {n.op} on a rank-{v.rank} tensor")
    t = im.emit(op, im.get(v, NHWC), name=im.out_name(n.outputs[0], False),
                  block_size=int(n.attrs["blocksize"]), mode=mode or None)
    im.set(n.outputs[0], Val(t, im._out_shape(n), v.dtype, NHWC, kind=v.kind, q=v.q))


def op_Resize(im, n):
    v = im.val(n.inputs[0])
    if v.rank != 4:
        raise UnsupportedOpError(f"onnx: Resize of a rank-{v.rank} tensor (4-D only)")
    mode = n.attrs.get("mode", "nearest")
    ctm = n.attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest_mode = n.attrs.get("nearest_mode", "round_prefer_floor")
    if mode not in ("nearest", "linear"):
        raise UnsupportedOpError(f"onnx: Resize mode '{mode}' (nearest and linear only)")
    if n.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise UnsupportedOpError("onnx: Resize keep_aspect_ratio_policy other than stretch")
    if mode == "linear" and v.kind == "deq":
        raise UnsupportedOpError("onnx: linear Resize of a quantized tensor")
    out_shape = im._out_shape(n)
    if out_shape[0] != v.shape[0] or out_shape[1] != v.shape[1]:
        raise UnsupportedOpError("onnx: Resize of the batch or channel dims")
    if n.attrs.get("antialias", 0) and (out_shape[2] < v.shape[2] or out_shape[3] < v.shape[3]):
        raise UnsupportedOpError("onnx: Resize with antialias when downsampling")
    scales = None
    if n.inp(3) and im.cval(n.inp(3)).size:
        scales = [o / i for o, i in zip(out_shape, v.shape)]
        scales = [np.float32(o) / np.float32(i) for o, i in zip(out_shape, v.shape)]
    elif n.inp(2) and im.cval(n.inp(2)).size:
        sc = [float(x) for x in im.cval(n.inp(2)).reshape(-1)]
        axes = n.attrs.get("axes")
        full = [1.0] * 4
        for j, a in enumerate(axes if axes else range(4)):
            full[a % 4] = sc[j]
        scales = [np.float32(s) for s in full]
    else:
        raise UnsupportedOpError("onnx: Resize needs constant scales or sizes")
    combos = [(0, 0), (0, 1), (1, 0)]
    chosen = None
    for ac, hp in combos:
        ok = True
        for d in (2, 3):
            ref = _onnx_coords(mode, ctm, nearest_mode, v.shape[d], out_shape[d], scales[d])
            if ref is None:
                raise UnsupportedOpError(f"onnx: Resize coordinate_transformation_mode '{ctm}'")
            got = _rt_coords(mode, ac, hp, v.shape[d], out_shape[d])
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
            f" from {v.shape[2:]} to {out_shape[2:]} matches none of align_corners / half_pixel / asymmetric")
    ac, hp = chosen
    t = im.emit("ResizeNearest" if mode == "nearest" else "ResizeBilinear", im.get(v, NHWC),
                  name=im.out_name(n.outputs[0], False), size=[out_shape[2], out_shape[3]],
                  align_corners=ac or None, half_pixel_centers=hp or None)
    im.report.notes.append(f"{n.label()}: {mode}/{ctm} -> " +
                             ("align_corners" if ac else "half_pixel_centers" if hp else "asymmetric"))
    im.set(n.outputs[0], Val(t, out_shape, v.dtype, NHWC, kind=v.kind, q=v.q))


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



def op_ConstantOfShape(im, n):
    """A ConstantOfShape that the fold pass left: its shape input is a run-time
    value (a constant or convert-time-computable shape is folded before any
    handler runs). Refused, since the runtime's shapes are static."""
    raise UnsupportedOpError(
        f"onnx: ConstantOfShape's shape input '{n.inputs[0]}' is a value computed at run time (only a shape "
        f"known at conversion can be folded: give the inputs' shapes with input_shapes=)")
