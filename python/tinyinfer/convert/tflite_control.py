"""TFLite IF and WHILE -> the runtime's If and While over subgraphs
(docs/ops.md, "Control flow"). Part of the TFLite importer (tflite.py
registers these handlers).

A TFLite subgraph has its own tensor table and takes everything it reads as
an input, so each called subgraph converts op for op into a subgraph of the
.tinf file (GraphBuilder.subgraph), with the same handlers as the main graph
(a subgraph calling another one converts that one inside it). Each call
converts its subgraphs anew.
"""

from __future__ import annotations

SUPPORTED = {
    "IF": "If (the then and else subgraphs converted; both must give the same dtypes and static shapes)",
    "WHILE": "While (the cond and body subgraphs converted; static shapes; iterations bounded by the session's "
             "work limit)",
}


def _subgraph(im, index: int, label: str) -> int:
    """Converts TFLite subgraph `index` into a subgraph of the builder; its index."""
    from .tflite import _Refuse, _np
    if index <= 0 or index >= im.model.SubgraphsLength():
        raise _Refuse(f"{label} subgraph {index} out of range")
    depth = getattr(im, "_subgraph_depth", 0)
    if depth >= 16:
        raise _Refuse("subgraphs nested more than 16 deep")
    sub = im.model.Subgraphs(index)
    saved = (im.graph, im.tensors, im.env, im.float_view)
    im.graph = sub
    im._subgraph_depth = depth + 1
    try:
        im.tensors = [im._tensor(i) for i in range(sub.TensorsLength())]
        im.env, im.float_view = {}, {}
        ins = [im.tensors[int(i)] for i in _np(sub.InputsAsNumpy())]
        for info in ins:
            if info.dtype is None:
                raise _Refuse(f"{label} subgraph input '{info.name}' of type {info.type_name}")
            if info.dynamic:
                raise _Refuse(f"{label} subgraph input '{info.name}' has dynamic dims {list(info.signature)}")
        sub_name = (sub.Name() or b"").decode("utf-8", "replace") or f"subgraph_{index}"
        # a scalar is [1], as the builder stores a scalar constant passed in
        specs = [(im.unique(f"{sub_name}/{info.name}"), info.shape or (1,), info.dtype) for info in ins]
        with im.b.subgraph(sub_name, inputs=specs) as sg:
            for info, t in zip(ins, sg.inputs):
                im.set_quant(t, info)
                im.env[info.index] = t
            im.convert_ops(sub)
            sg.output(*im.outputs_of(sub, _as1))
        return sg.index
    finally:
        im.graph, im.tensors, im.env, im.float_view = saved
        im._subgraph_depth = depth


def _as1(im, t, info):
    """A TFLite scalar as [1] (what subgraph inputs and scalar constants are here); else t."""
    if tuple(info.shape) != () or info.const:
        return t
    return im.emit("Reshape", t, name=info.name + "/as1", shape=[1])


def _args(im, op, first: int):
    from .tflite import _np
    n = len(_np(op.InputsAsNumpy()))
    return [_as1(im, im.tensor(op, k), im.info_in(op, k)) for k in range(first, n)]


def _outputs(im, op):
    from .tflite import _np
    return [im.info_out(op, k).name for k in range(len(_np(op.OutputsAsNumpy())))]


def if_(im, op, name):
    from .tflite import _Refuse
    o = im.options(op, im.tfl.IfOptions)
    if o is None:
        raise _Refuse("no IfOptions")
    cond = im.tensor(op, 0)
    args = _args(im, op, 1)
    then_i = _subgraph(im, int(o.ThenSubgraphIndex()), "then")
    else_i = _subgraph(im, int(o.ElseSubgraphIndex()), "else")
    outs = im.emit("If", cond, *args, outputs=_outputs(im, op), subgraphs=[then_i, else_i])
    return outs


def while_(im, op, name):
    from .tflite import _Refuse
    o = im.options(op, im.tfl.WhileOptions)
    if o is None:
        raise _Refuse("no WhileOptions")
    args = _args(im, op, 0)
    cond_i = _subgraph(im, int(o.CondSubgraphIndex()), "cond")
    body_i = _subgraph(im, int(o.BodySubgraphIndex()), "body")
    return im.emit("While", *args, outputs=_outputs(im, op), subgraphs=[cond_i, body_i])


HANDLERS = {"IF": if_, "WHILE": while_}
