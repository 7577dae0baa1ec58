"""Recurrent ops: LSTM, GRU and com.microsoft.DynamicQuantizeLSTM (onnxruntime's quantize_dynamic of an LSTM)
-> the runtime's LSTM / GRU ops, which have ONNX's semantics (docs/ops.md, "Recurrent").

Kept: directions, layout 0 and 1, the optional B, initial_h, initial_c, P (peepholes), clip, input_forget,
linear_before_reset, and whichever of the outputs Y, Y_h, Y_c are used. Refused: activation lists other than the
default (Sigmoid, Tanh, Tanh for LSTM; Sigmoid, Tanh for GRU). sequence_lens (per-entry lengths, a constant or
a run-time int32 value) goes to the runtime op, except a constant equal to the sequence length for every entry
(the same as none)."""

from __future__ import annotations

import numpy as np

from ..._errors import UnsupportedOpError
from ._graph import Node, Val, WeightSrc

_DIRECTIONS = {"forward": 0, "reverse": 1, "bidirectional": 2}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


def _attrs(im, n: Node, kind: str):
    """(core attributes, directions, layout) after checking what the runtime does not implement."""
    a = n.attrs
    direction = a.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise UnsupportedOpError(f"onnx: {n.label()}: direction '{direction}'")
    d = 2 if direction == "bidirectional" else 1
    acts = a.get("activations")
    if acts is not None and [s.lower() for s in acts] != [s.lower() for s in _DEFAULT_ACTS[kind] * d]:
        raise UnsupportedOpError(f"onnx: {n.label()}: activations {list(acts)}; only the default "
                                 f"{_DEFAULT_ACTS[kind]} per direction is supported")
    layout = int(a.get("layout", 0))
    if layout not in (0, 1):
        raise UnsupportedOpError(f"onnx: {n.label()}: layout {layout}")
    core = dict(mode=_DIRECTIONS[direction], axis=layout)
    clip = a.get("clip")
    if clip is not None:
        if not (float(clip) > 0 and np.isfinite(clip)):
            raise UnsupportedOpError(f"onnx: {n.label()}: clip {clip} must be a positive threshold")
        core["clip"] = float(clip)
    if kind == "LSTM" and int(a.get("input_forget", 0)):
        core["input_forget"] = 1
    if kind == "GRU" and int(a.get("linear_before_reset", 0)):
        core["linear_before_reset"] = 1
    return core, d, layout


def _sequence_lens(im, n: Node, T: int, B: int):
    """sequence_lens (input 4) as the runtime op's int32 [B] input; None when absent or T for every entry."""
    name = n.inp(4)
    if not name:
        return None
    if im.is_const(name):
        lens = np.asarray(im.cval(name)).reshape(-1)
        if lens.size != B or lens.dtype.kind not in "iu" or np.any(lens < 0) or np.any(lens > T):
            raise UnsupportedOpError(f"onnx: {n.label()}: sequence_lens {lens.tolist()} must be {B} integers in "
                                     f"0...{T} (one per batch entry)")
        if np.all(lens == T):
            return None
        return im.b.const(im._fresh(f"{name}_lens"), lens.astype(np.int32))
    v = im.val(name)
    if v.dtype != np.int32 or v.shape != (B,):
        raise UnsupportedOpError(f"onnx: {n.label()}: sequence_lens is {v.dtype} {list(v.shape)}; int32 [{B}] "
                                 f"is supported")
    return im.get(v, None)


def _input(im, name: str, label: str):
    """A float input of the op: a constant (8-bit weights stay 8-bit with a Dequantize) or a run-time value."""
    if not name:
        return None
    if im.is_const(name):
        return im.emit_weight(im.weight(name), label)
    return im.get(im.fval(name), None)


def _emit(im, n: Node, kind: str, ins, core, d: int, layout: int, x_shape):
    """Emits the core op for n with inputs `ins` and sets its used outputs."""
    T, B = (x_shape[0], x_shape[1]) if layout == 0 else (x_shape[1], x_shape[0])
    H = int(n.attrs.get("hidden_size", 0)) or None
    used = [i for i, o in enumerate(n.outputs) if o]
    if not used:
        return
    count = used[-1] + 1
    names = [im.out_name(n.outputs[i], True) if i in used else im._fresh(f"{n.outputs[0] or kind.lower()}_{i}")
             for i in range(count)]
    outs = im.emit(kind, *ins, out_names=names, **core)
    outs = outs if isinstance(outs, list) else [outs]
    y_shape = (T, d, B, H) if layout == 0 else (B, T, d, H)
    s_shape = (d, B, H) if layout == 0 else (B, d, H)
    for i in used:
        im.set(n.outputs[i], Val(outs[i], y_shape if i == 0 else s_shape, np.float32))


def _check_hidden(n: Node, w_shape, gates: int):
    H = n.attrs.get("hidden_size")
    if len(w_shape) != 3 or w_shape[1] % gates:
        raise UnsupportedOpError(f"onnx: {n.label()}: W has shape {list(w_shape)}")
    if H is not None and int(H) * gates != w_shape[1]:
        raise UnsupportedOpError(f"onnx: {n.label()}: hidden_size {H} does not match W {list(w_shape)}")
    n.attrs["hidden_size"] = w_shape[1] // gates


def _recurrent(kind: str, gates: int):
    def handler(im, n: Node):
        core, d, layout = _attrs(im, n, kind)
        x = im.fval(n.inputs[0])
        if x.rank != 3:
            raise UnsupportedOpError(f"onnx: {n.label()}: X has rank {x.rank}, not 3")
        T, B = (x.shape[0], x.shape[1]) if layout == 0 else (x.shape[1], x.shape[0])
        lens = _sequence_lens(im, n, T, B)
        _check_hidden(n, im._shape(n.inputs[1]), gates)
        ins = [im.get(x, None), _input(im, n.inputs[1], "W"), _input(im, n.inputs[2], "R"),
               _input(im, n.inp(3), "B"), _input(im, n.inp(5), "initial_h")]
        if kind == "LSTM":
            ins += [_input(im, n.inp(6), "initial_c"), _input(im, n.inp(7), "P")]
        ins.append(lens)
        while ins[-1] is None:
            ins.pop()
        _emit(im, n, kind, ins, core, d, layout, x.shape)
    handler.__name__ = f"op_{kind}"
    return handler


op_LSTM = _recurrent("LSTM", 4)
op_GRU = _recurrent("GRU", 3)


def _dq_weight(im, n: Node, qi: int, si: int, zi: int, label: str):
    """DynamicQuantizeLSTM's W or R: 8-bit [D, K, 4H] with a scale and zero point per direction ([D]) or per
    direction and gate column ([D, 4H]) -> float [D, 4H, K]: an 8-bit [D*4H, K] constant per row + Dequantize
    (folded at load) + Reshape, or float32 at conversion with keep_int8_weights=False."""
    for i in (qi, si, zi):
        if not n.inp(i) or not im.is_const(n.inp(i)):
            raise UnsupportedOpError(f"onnx: {n.label()}: input {i} must be a constant")
    q = np.asarray(im.cval(n.inputs[qi]))
    if q.dtype not in (np.int8, np.uint8) or q.ndim != 3:
        raise UnsupportedOpError(f"onnx: {n.label()}: {label} is {q.dtype} {list(q.shape)}; expected 8-bit "
                                 f"[directions, size, 4 * hidden]")
    D, K, G = q.shape
    scale = np.asarray(im.cval(n.inputs[si]), np.float32)
    zp = np.asarray(im.cval(n.inputs[zi]))
    if scale.size not in (D, D * G) or zp.size != scale.size:
        raise UnsupportedOpError(f"onnx: {n.label()}: {label} scale {list(scale.shape)} / zero point "
                                 f"{list(zp.shape)} for weights {list(q.shape)}")
    rows = np.ascontiguousarray(q.transpose(0, 2, 1)).reshape(D * G, K)
    s = np.repeat(scale.reshape(D, -1), G // (scale.size // D), axis=1).reshape(-1)
    z = np.repeat(zp.reshape(D, -1).astype(np.int32), G // (zp.size // D), axis=1).reshape(-1)
    if np.all(s == s[0]) and np.all(z == z[0]):
        ws = WeightSrc(q=rows, scale=s[:1], zp=z[:1], axis=None, name=f"{n.inputs[qi]}")
    else:
        ws = WeightSrc(q=rows, scale=s, zp=z, axis=0, name=f"{n.inputs[qi]}")
    if not im.keep_int8:
        ws = WeightSrc(arr=ws.float(), name=ws.name)
    t = im.emit_weight(ws, label)
    return im.emit("Reshape", t, name=label, shape=[D, G, K]), (D, G, K)


def op_ms_DynamicQuantizeLSTM(im, n: Node):
    """com.microsoft.DynamicQuantizeLSTM: X, W, R, B, sequence_lens, initial_h, initial_c, P, W_scale,
    W_zero_point, R_scale, R_zero_point; W [D, I, 4H] and R [D, H, 4H] 8-bit. Runs as the float LSTM on the
    dequantized weights (onnxruntime also quantizes X and h to 8 bits at each step: the outputs differ by that
    rounding)."""
    core, d, layout = _attrs(im, n, "LSTM")
    x = im.fval(n.inputs[0])
    if x.rank != 3:
        raise UnsupportedOpError(f"onnx: {n.label()}: X has rank {x.rank}, not 3")
    T, B = (x.shape[0], x.shape[1]) if layout == 0 else (x.shape[1], x.shape[0])
    lens = _sequence_lens(im, n, T, B)
    w, wshape = _dq_weight(im, n, 1, 8, 9, "W")
    r, _ = _dq_weight(im, n, 2, 10, 11, "R")
    _check_hidden(n, wshape, 4)
    ins = [im.get(x, None), w, r, _input(im, n.inp(3), "B"), _input(im, n.inp(5), "initial_h"),
           _input(im, n.inp(6), "initial_c"), _input(im, n.inp(7), "P"), lens]
    while ins[-1] is None:
        ins.pop()
    _emit(im, n, "LSTM", ins, core, d, layout, x.shape)


def dynamic_quantize_lstm_proxy(n: Node):
    """Standard-domain nodes with the outputs' types and shapes of a DynamicQuantizeLSTM (for ONNX shape inference
    only, which does not know the com.microsoft domain): the 8-bit W and R cast to float and transposed to
    [D, 4H, K], then an LSTM with the node's attributes."""
    from onnx import TensorProto, helper
    nodes, ins = [], [n.inputs[0]]
    for i in (1, 2):
        c, t = f"__proxy_{n.name or n.outputs[0]}_{i}_f", f"__proxy_{n.name or n.outputs[0]}_{i}_t"
        nodes.append(helper.make_node("Cast", [n.inputs[i]], [c], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Transpose", [c], [t], perm=[0, 2, 1]))
        ins.append(t)
    ins += [n.inp(i) for i in range(3, 8)]
    while ins and not ins[-1]:
        ins.pop()
    keep = {k: v for k, v in n.attrs.items() if k in ("direction", "hidden_size", "layout", "clip", "input_forget")}
    nodes.append(helper.make_node("LSTM", ins, n.outputs, **keep))
    return nodes
