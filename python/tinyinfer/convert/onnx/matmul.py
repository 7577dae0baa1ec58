"""Gemm and MatMul: FullyConnected for constant weights, else MatMul."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ._graph import Val, WeightSrc, _T, _ident


def _fc(im, a: Val, ws: WeightSrc, bias, out_name: str, out_shape, allow_bias_add=True):
    """FullyConnected: a [..., K] @ ws[N, K].T (+ bias); a may be flat (weights permuted)."""
    nout = ws.shape[0]
    perm = None
    if a.flat is not None:
        c, h, w = a.flat
        ws = ws.transform(lambda m: m.reshape(m.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(m.shape[0], -1),
                          lambda ax: ax)
        im.report.fused.append(f"NCHW flatten before '{out_name}': weight columns permuted to NHWC order "
                                 f"instead of transposing the activations")
        at = a.t
    elif a.perm is not None and a.perm[-1] == a.rank - 1:
        perm = a.perm
        at = a.t
    else:
        at = im.get(a, None)
    final = out_name
    if allow_bias_add:
        c = im._single(out_name)
        if c is not None and c.op == "Add" and not c.domain and len(c.inputs) == 2:
            other = c.inputs[1] if c.inputs[0] == out_name else c.inputs[0]
            if other != out_name and other in im.consts and im.consts[other].dtype.kind == "f":
                arr = im.consts[other].astype(np.float32)
                if arr.ndim <= len(out_shape) and arr.size == nout and arr.shape[-1] == nout:
                    bias = arr.reshape(nout) + (0 if bias is None else bias)
                    c.dead = True
                    final = c.outputs[0]
                    im.report.fused.append(f"{c.label()} into the bias of FullyConnected '{final}'")
    act, final = im.take_activation(final)
    w = im.emit_weight(ws, f"{final}_w")
    bt = None if bias is None else im.const(np.asarray(bias, np.float32).reshape(nout), f"{final}_bias")
    t = im.emit("FullyConnected", at, w, bt, name=im.out_name(final, perm is None), activation=act or None)
    return t, final, perm


def op_Gemm(im, n):
    a = im.fval(n.inputs[0])
    alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
    ta, tb = int(n.attrs.get("transA", 0)), int(n.attrs.get("transB", 0))
    out_shape = im._out_shape(n)
    if im.is_const(n.inputs[1]):
        ws = im.weight(n.inputs[1])
        if not tb:
            ws = ws.transform(lambda m: m.T, lambda ax: 1 - ax)
        if alpha != 1.0:
            ws = ws.scaled(alpha)
        bias, post_c = None, None
        if n.inp(2):
            if im.is_const(n.inp(2)):
                cc = im.cval(n.inp(2)).astype(np.float32) * np.float32(beta)
                if cc.size == 1:
                    bias = np.full(out_shape[1], cc.reshape(-1)[0], np.float32)
                elif cc.shape[-1] == out_shape[1] and cc.size == out_shape[1]:
                    bias = cc.reshape(-1)
                else:
                    post_c = cc
            else:
                post_c = n.inp(2)
        if ta:
            a = Val(im.emit("Transpose", im.get(a, None), name="gemm_at", perm=[1, 0]),
                    a.shape[::-1], np.float32)
        if post_c is None:
            t, final, perm = _fc(im, a, ws, bias, n.outputs[0], out_shape)
            im.set(final, Val(t, out_shape, np.float32, perm))
            return
        t, _, _ = _fc(im, a, ws, bias, im._fresh(n.outputs[0] + "_ab"), out_shape, allow_bias_add=False)
        _gemm_add_c(im, n, Val(t, out_shape, np.float32), post_c, beta)
        return
    b = im.fval(n.inputs[1])
    t = im.emit("MatMul", im.get(a, None), im.get(b, None), name="gemm_ab", transpose_a=ta or None,
                  transpose_b=tb or None)
    if alpha != 1.0:
        t = im.emit("Mul", t, im.const(np.array([alpha], np.float32), "alpha"), name="gemm_alpha")
    v = Val(t, out_shape, np.float32)
    if n.inp(2):
        _gemm_add_c(im, n, v, im.cval(n.inp(2)).astype(np.float32) * np.float32(beta)
                         if im.is_const(n.inp(2)) else n.inp(2), beta)
    else:
        im.set(n.outputs[0], v)


def _gemm_add_c(im, n, v: Val, c, beta):
    if isinstance(c, str):
        cv = im.fval(c)
        tc = im.get(cv, None)
        if beta != 1.0:
            tc = im.emit("Mul", tc, im.const(np.array([beta], np.float32), "beta"), name="gemm_beta")
    else:
        tc = im.const(c, "gemm_c")
    act, final = im.take_activation(n.outputs[0])
    t = im.emit("Add", v.t, tc, name=im.out_name(final, True), activation=act or None)
    im.set(final, Val(t, v.shape, np.float32))


def _mm_operand(im, v: Val) -> Tuple[_T, int]:
    """(runtime tensor, transpose flag) for a MatMul operand."""
    if v.const is not None or v.rank < 2 or v.flat is not None:
        return im.get(v, None), 0
    p = v.perm or _ident(v.rank)
    if p == _ident(v.rank):
        return v.t, 0
    sw = _ident(v.rank - 2) + (v.rank - 1, v.rank - 2)
    if tuple(p) == sw:
        return v.t, 1
    # prefer a transpose that also leaves a swapped form when cheaper: plain
    return im.get(v, None), 0


def op_MatMul(im, n):
    a = im.fval(n.inputs[0])
    out_shape = im._out_shape(n)
    if im.is_const(n.inputs[1]) and len(im._shape(n.inputs[1])) == 2 and a.rank >= 2:
        ws = im.weight(n.inputs[1]).transform(lambda m: m.T, lambda ax: 1 - ax)
        t, final, perm = _fc(im, a, ws, None, n.outputs[0], out_shape)
        im.set(final, Val(t, out_shape, np.float32, perm))
        return
    b = im.fval(n.inputs[1])
    _matmul(im, a, b, n.outputs[0], out_shape)


def _matmul(im, a: Val, b: Val, out: str, out_shape, kind="real", dtype=np.float32):
    if a.rank < 2 or b.rank < 2:
        ta = im.get(a, None)
        tb = im.get(b, None)
        if a.rank == 1:
            ta = im.emit("Reshape", ta, name="mm_a", shape=[1, a.shape[0]])
        if b.rank == 1:
            tb = im.emit("Reshape", tb, name="mm_b", shape=[b.shape[0], 1])
        t = im.emit("MatMul", ta, tb, name="matmul")
        t = im.emit("Reshape", t, name=im.out_name(out, True), shape=list(out_shape) or [1])
        im.set(out, Val(t, out_shape, dtype, kind=kind))
        return
    ta, fa = _mm_operand(im, a)
    tb, fb = _mm_operand(im, b)
    t = im.emit("MatMul", ta, tb, name=im.out_name(out, True), transpose_a=fa or None, transpose_b=fb or None)
    if fa or fb:
        im.report.fused.append(f"Transpose of a MatMul operand as transpose_a/transpose_b ('{out}')")
    im.set(out, Val(t, out_shape, dtype, kind=kind))
