"""ONNX-level rewrites that no load-time pass of the core does: the erf form of Gelu, the
ReduceMean/Sub/Pow/Sqrt/Div form of layer normalization, Reciprocal(Sqrt) -> Rsqrt, HardSigmoid * x
and x * Clip(x + 3, 0, 6) / 6 -> HardSwish; and the BatchNorm and Pad foldings the core's passes cannot
see (each function says which).
What the core does (BatchNorm into Conv2D / DepthwiseConv2D / TransposeConv2D / FullyConnected, Relu /
Relu6 fusion, zero Pad into a convolution, identity and dead-op removal) is left to it."""

from __future__ import annotations

import math

import numpy as np

from ..._errors import UnsupportedOpError
from ._graph import Node, _close


def fold_batchnorm(im):
    """BatchNormalization into the ConvTranspose or 1-D Conv before it: a 1-D Conv or ConvTranspose reaches the
    runtime as Conv2D / TransposeConv2D + Reshape, so the core's BatchNormFolding (Conv2D, DepthwiseConv2D,
    TransposeConv2D, FullyConnected) does not see the BatchNorm, which reads the Reshape; a 2-D ConvTranspose is
    folded here too, as before the core covered it. After a 2-D Conv or a Gemm the BatchNorm is emitted
    and the core folds it at load."""
    for bn in im.nodes:
        if bn.dead or bn.op != "BatchNormalization" or bn.domain:
            continue
        if bn.attrs.get("training_mode", 0) or any(o and im._live_consumers(o) for o in bn.outputs[1:]):
            continue
        x = bn.inputs[0]
        p = im.producer.get(x)
        if p is None or p.dead or im._single(x) is not bn or p.domain:
            continue
        prm = [im._float_const(i) for i in bn.inputs[1:5]]
        if any(a is None for a in prm):
            continue
        gamma, beta, mean, var = prm
        eps = bn.attrs.get("epsilon", 1e-5)
        scale = (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        c = scale.size
        w = im._float_const(p.inp(1))
        if p.op == "Conv" and w is not None and w.ndim == 3 and w.shape[0] == c:
            w2 = w * scale.reshape(c, 1, 1)
        elif p.op == "ConvTranspose" and p.attrs.get("group", 1) == 1 and w is not None and w.shape[1] == c:
            w2 = w * scale.reshape((1, c) + (1,) * (w.ndim - 2))
        else:
            continue
        b = im._float_const(p.inp(2)) if p.inp(2) else np.zeros(c, np.float32)
        if b is None:
            continue
        b2 = b * scale + shift
        p.inputs[1] = im._new_const(p.inp(1) + "_bn", w2.astype(np.float32))
        b_name = im._new_const((p.inp(2) or p.outputs[0]) + "_bn", b2.astype(np.float32))
        if len(p.inputs) < 3:
            p.inputs.append(b_name)
        else:
            p.inputs[2] = b_name
        p.outputs[0] = bn.outputs[0]
        p.proto = None
        bn.dead = True
        im.report.folded.append(f"{bn.label()} into {p.label()}")
        im._index()


def fold_pads(im):
    """A constant Pad of H and W into the padding of the MaxPool (pad value -inf) or AveragePool (zeros,
    count_include_pad) that alone reads it: the core's PadFusion folds zero pads into Conv2D and
    DepthwiseConv2D only, so a Pad before a Conv is emitted (in NHWC, shape.op_Pad) and fused at load."""
    for pad in im.nodes:
        if pad.dead or pad.op != "Pad" or pad.domain:
            continue
        if pad.attrs.get("mode", "constant") != "constant":
            continue
        pads = im.consts.get(pad.inp(1))
        if pads is None:
            continue
        pads = [int(v) for v in pads.reshape(-1)]
        if pad.inp(3):
            continue  # axes input (opset 18): leave to the Pad op
        value = im._scalar(pad.inp(2)) if pad.inp(2) else 0.0
        if value is None:
            continue
        c = im._single(pad.outputs[0])
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
        if c.op == "MaxPool":
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
        ks = c.attrs.get("kernel_shape", [])
        if len(ks) != 2 or new[0] >= ks[0] or new[2] >= ks[0] or new[1] >= ks[1] or new[3] >= ks[1]:
            continue
        c.attrs["pads"] = new
        c.attrs["auto_pad"] = "NOTSET"
        c.inputs[0] = pad.inputs[0]
        c.proto = None
        pad.dead = True
        im.report.fused.append(f"{pad.label()} into the padding of {c.label()}")
        im._index()


def _const_operand(im, node, not_name):
    """(the other input, its scalar constant value) for a binary node with one input `not_name`."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if a == not_name:
        return im._scalar(b)
    if b == not_name:
        return im._scalar(a)
    return None


def match_gelu(im):
    for erf in im.nodes:
        if erf.dead or erf.op != "Erf" or erf.domain:
            continue
        d = im.producer.get(erf.inputs[0])
        if d is None or d.dead or im._single(d.outputs[0]) is not erf:
            continue
        x = None
        for cand in d.inputs:
            other = _const_operand(im, d, cand)
            if other is None:
                continue
            if d.op == "Div" and d.inputs[0] == cand and _close(other, math.sqrt(2)):
                x = cand
            elif d.op == "Mul" and _close(other, 1 / math.sqrt(2)):
                x = cand
        if x is None:
            continue
        add = im._single(erf.outputs[0])
        if add is None or add.op != "Add" or not _close(_const_operand(im, add, erf.outputs[0]) or 0, 1.0):
            continue
        m1 = im._single(add.outputs[0])
        if m1 is None or m1.op != "Mul" or len(m1.inputs) != 2:
            continue
        other = m1.inputs[1] if m1.inputs[0] == add.outputs[0] else m1.inputs[0]
        chain = [d, erf, add, m1]
        out = None
        if other == x:  # (x * (1 + erf)) * 0.5
            m2 = im._single(m1.outputs[0])
            if m2 is not None and m2.op == "Mul" and _close(_const_operand(im, m2, m1.outputs[0]) or 0, 0.5):
                chain.append(m2)
                out = m2.outputs[0]
        elif im._scalar(other) is not None and _close(im._scalar(other), 0.5):  # ((1 + erf) * 0.5) * x
            m2 = im._single(m1.outputs[0])
            if m2 is not None and m2.op == "Mul" and x in m2.inputs and m1.outputs[0] in m2.inputs:
                chain.append(m2)
                out = m2.outputs[0]
        else:  # (x * 0.5) * (1 + erf)
            h = im.producer.get(other)
            if h is not None and h.op == "Mul" and x in h.inputs and \
                    _close(_const_operand(im, h, x) or 0, 0.5) and im._single(other) is m1:
                chain.append(h)
                out = m1.outputs[0]
        if out is None:
            continue
        for c in chain:
            c.dead = True
        last = max(chain, key=lambda c: im.nodes.index(c))
        g = Node("Gelu", "", f"{erf.name or 'erf'}_gelu", [x], [out], {"approximate": "none"})
        im.nodes.insert(im.nodes.index(last), g)
        im.report.fused.append(f"erf form of Gelu ({len(chain)} nodes) -> Gelu '{out}'")
        im._index()


def match_layernorm(im):
    for rm1 in im.nodes:
        if rm1.dead or rm1.op != "ReduceMean" or rm1.domain or not rm1.attrs.get("keepdims", 1):
            continue
        x = rm1.inputs[0]
        try:
            xs = im._shape(x)
        except UnsupportedOpError:
            continue
        r = len(xs)
        axes = im._axes_of(rm1)
        if not axes:
            continue
        axes = sorted(a % r for a in axes)
        if axes != list(range(r - len(axes), r)):
            continue
        sub = im._single(rm1.outputs[0])
        if sub is None or sub.op != "Sub" or sub.inputs != [x, rm1.outputs[0]]:
            continue
        d = sub.outputs[0]
        cs = im._live_consumers(d)
        if d in im.output_set or len(cs) != 2:
            continue
        pw = next((c for c in cs if c.op in ("Pow", "Mul")), None)
        div = next((c for c in cs if c.op == "Div" and c.inputs[0] == d), None)
        if pw is None or div is None:
            continue
        if pw.op == "Pow" and not (pw.inputs[0] == d and _close(im._scalar(pw.inp(1)) or 0, 2.0)):
            continue
        if pw.op == "Mul" and pw.inputs != [d, d]:
            continue
        rm2 = im._single(pw.outputs[0])
        if rm2 is None or rm2.op != "ReduceMean" or not rm2.attrs.get("keepdims", 1):
            continue
        a2 = im._axes_of(rm2)
        if a2 is None or sorted(a % r for a in a2) != axes:
            continue
        add = im._single(rm2.outputs[0])
        if add is None or add.op != "Add":
            continue
        eps = _const_operand(im, add, rm2.outputs[0])
        if eps is None:
            continue
        sq = im._single(add.outputs[0])
        if sq is None or sq.op != "Sqrt" or im._single(sq.outputs[0]) is not div or \
                div.inputs[1] != sq.outputs[0]:
            continue
        chain = [rm1, sub, pw, rm2, add, sq, div]
        out = div.outputs[0]
        norm_shape = xs[axes[0]:]
        gamma = np.ones(norm_shape, np.float32)
        beta = None
        mul = im._single(out)
        if mul is not None and mul.op == "Mul" and len(mul.inputs) == 2:
            g = mul.inputs[1] if mul.inputs[0] == out else mul.inputs[0]
            ga = im._float_const(g)
            if ga is not None and ga.ndim <= len(norm_shape):
                try:
                    gamma = np.broadcast_to(ga, norm_shape).astype(np.float32)
                    chain.append(mul)
                    out = mul.outputs[0]
                    ad2 = im._single(out)
                    if ad2 is not None and ad2.op == "Add" and len(ad2.inputs) == 2:
                        bb = ad2.inputs[1] if ad2.inputs[0] == out else ad2.inputs[0]
                        ba = im._float_const(bb)
                        if ba is not None and ba.ndim <= len(norm_shape):
                            beta = np.broadcast_to(ba, norm_shape).astype(np.float32)
                            chain.append(ad2)
                            out = ad2.outputs[0]
                except ValueError:
                    pass
        for c in chain:
            c.dead = True
        ins = [x, im._new_const(f"{out}_gamma", np.ascontiguousarray(gamma))]
        if beta is not None:
            ins.append(im._new_const(f"{out}_beta", np.ascontiguousarray(beta)))
        last = max(chain, key=lambda c: im.nodes.index(c))
        ln = Node("LayerNormalization", "", f"{out}_layernorm", ins, [out],
                  {"axis": axes[0], "epsilon": float(eps)})
        im.nodes.insert(im.nodes.index(last), ln)
        im.report.fused.append(f"ReduceMean/Sub/Pow/Sqrt/Div form of layer normalization ({len(chain)} "
                                 f"nodes) -> LayerNorm '{out}'")
        im._index()


def match_small(im):
    for n in im.nodes:
        if n.dead or n.domain:
            continue
        if n.op == "Sqrt":
            c = im._single(n.outputs[0])
            if c is None:
                continue
            if c.op == "Reciprocal" or (c.op == "Div" and c.inputs[1] == n.outputs[0] and
                                         im._scalar(c.inputs[0]) == 1.0):
                n.dead = c.dead = True
                r = Node("Rsqrt", "", f"{n.name}_rsqrt", [n.inputs[0]], [c.outputs[0]], {})
                im.nodes.insert(im.nodes.index(c), r)
                im.report.fused.append(f"{n.label()} + {c.label()} -> Rsqrt")
                im._index()
        elif n.op == "Add":
            _match_hardswish_arith(im, n)
        elif n.op == "HardSigmoid":
            if not (_close(n.attrs.get("alpha", 0.2), 1 / 6) and _close(n.attrs.get("beta", 0.5), 0.5)):
                continue
            c = im._single(n.outputs[0])
            if c is None or c.op != "Mul" or sorted(c.inputs) != sorted([n.inputs[0], n.outputs[0]]):
                continue
            n.dead = c.dead = True
            h = Node("HardSwish", "", f"{n.name}_hardswish", [n.inputs[0]], [c.outputs[0]], {})
            im.nodes.insert(im.nodes.index(c), h)
            im.report.fused.append(f"{n.label()} * x -> HardSwish")
            im._index()


def _match_hardswish_arith(im, add):
    """x * Clip(x + 3, 0, 6) / 6 (or * 1/6), HardSwish spelled out (PaddlePaddle's and many MobileNetV3
    exports) -> HardSwish: one op instead of four, and under int8-static one table lookup instead of an
    Add, a Mul and a float Div between a Dequantize and a Quantize."""
    if len(add.inputs) != 2:
        return
    x = next((i for i in add.inputs if im._scalar(i) is None), None)
    if x is None or _const_operand(im, add, x) != 3.0:
        return
    clip = im._single(add.outputs[0])
    if clip is None or clip.dead or clip.domain or clip.op != "Clip" or len(clip.inputs) != 3 or \
            clip.inputs[0] != add.outputs[0]:
        return
    if im._scalar(clip.inp(1)) != 0.0 or im._scalar(clip.inp(2)) != 6.0:
        return
    mul = im._single(clip.outputs[0])
    if mul is None or mul.dead or mul.domain or mul.op != "Mul" or \
            sorted(mul.inputs) != sorted([x, clip.outputs[0]]):
        return
    scale = im._single(mul.outputs[0])
    if scale is None or scale.dead or scale.domain or len(scale.inputs) != 2:
        return
    if scale.op == "Div":
        ok = scale.inputs[0] == mul.outputs[0] and im._scalar(scale.inputs[1]) == 6.0
    else:
        ok = scale.op == "Mul" and _close(_const_operand(im, scale, mul.outputs[0]) or 0.0, 1 / 6)
    # The constants must not broadcast x to a higher rank.
    consts = [c for c in (*add.inputs, *scale.inputs) if im._scalar(c) is not None]
    if not ok or any(im._shape(c) not in ((), (1,)) for c in consts):
        return
    add.dead = clip.dead = mul.dead = scale.dead = True
    h = Node("HardSwish", "", f"{add.name}_hardswish", [x], [scale.outputs[0]], {})
    im.nodes.insert(im.nodes.index(scale), h)
    im.report.fused.append(f"{add.label()} + {clip.label()} + {mul.label()} + {scale.label()} -> HardSwish")
    im._index()
