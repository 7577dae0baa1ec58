"""ONNX If -> the runtime's If over two subgraphs (docs/ops.md, "Control flow").

Each branch is converted as a model of its own by the same importer (layouts,
folding, every handler): its inputs are the values of the enclosing graph it
reads (ONNX branches capture them by name; the runtime's subgraphs take them
as inputs), in the ONNX order and layout; values the enclosing graph knows as
constants become the branch's initializers. The branch graphs are written
as subgraphs of the file when the main graph is (_Graph.replay). Both
branches must give the same dtypes and static shapes (the runtime checks).
Loop becomes While (op_Loop); scan outputs (sizes that depend on the data) and Scan are refused.
"""

from __future__ import annotations

from typing import List, Set

import numpy as np

from ..._errors import UnsupportedOpError
from .. import Report
from ._graph import Node, Val


def _captured(g) -> Set[str]:
    """Names graph g (and graphs nested in it) reads that it does not define."""
    import onnx
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    used: Set[str] = set()
    for node in g.node:
        used.update(x for x in node.input if x)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                used |= _captured(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sub in a.graphs:
                    used |= _captured(sub)
        defined.update(node.output)
    return used - defined


def _branch(im, g, runtime: List[str], consts: List[str]):
    """Branch graph g converted (deferred) with `runtime` as its inputs."""
    return _convert(im, g, [], runtime, consts)


def branch_output_types(im, n: Node):
    """The (dtype, shape) of each output of If n, from its branches run through the importer's shape inference
    and folding (ONNX inference alone loses them when a branch holds shape-dependent code, or another If);
    None when a branch does not know them or the branches disagree (the runtime needs them equal), or when
    the enclosing graph does not know the shapes of the values the branches capture yet (im.types)."""
    then_g, else_g = n.attrs.get("then_branch"), n.attrs.get("else_branch")
    if then_g is None or else_g is None:
        return None
    names = sorted(_captured(then_g) | _captured(else_g))
    key = tuple((nm, nm in im.consts, im.types.get(nm)) for nm in names)
    if im.if_tried.get(id(n)) == key:
        return None  # tried with what is known now
    im.if_tried[id(n)] = key
    consts = [nm for nm in names if nm in im.consts]  # before emission: no quantized constants yet
    runtime = [nm for nm in names if nm not in im.consts]
    if any(im.types.get(nm) is None or im.types[nm][1] is None for nm in runtime):
        return None
    found = []
    for g in (then_g, else_g):
        sub = _importer(im, g, [], runtime, consts)
        sub._read_graph()
        sub._fix_inputs()
        sub._fold_loop()
        types = []
        for o in g.output:
            if o.name in sub.consts:
                types.append((sub.consts[o.name].dtype, tuple(sub.consts[o.name].shape)))
            elif sub.types.get(o.name) is not None and sub.types[o.name][1] is not None:
                types.append((np.dtype(sub.types[o.name][0]), tuple(sub.types[o.name][1])))
            else:
                return None
        found.append(types)
    return found[0] if found[0] == found[1] else None


def _convert(im, g, inputs, runtime: List[str], consts: List[str]):
    """Graph g converted (deferred) as a model whose inputs are `inputs` (value infos) and the runtime
    captured values; the constant captured values become initializers."""
    return _importer(im, g, inputs, runtime, consts).run(deferred=True)


def _importer(im, g, inputs, runtime: List[str], consts: List[str]):
    """The importer of graph g as a model of its own (see _convert)."""
    from onnx import helper, numpy_helper
    from ._core import _Importer
    inputs = list(inputs) + [helper.make_tensor_value_info(
        nm, helper.np_dtype_to_tensor_dtype(np.dtype(im._dtype(nm))), list(im._shape(nm))) for nm in runtime]
    inits = list(g.initializer) + [numpy_helper.from_array(np.asarray(im.cval(nm)), nm) for nm in consts]
    graph = helper.make_graph(list(g.node), g.name or "branch", inputs, list(g.output), initializer=inits)
    model = helper.make_model(graph, opset_imports=list(im.model.opset_import))
    model.ir_version = im.model.ir_version
    sub = _Importer(model, Report(), im.handlers, batch=im.batch, keep_int8_weights=im.keep_int8,
                    check_opset=False, name=g.name or "branch")
    sub.opset = im.opset
    sub.domains = dict(im.domains)
    return sub


def op_If(im, n: Node):
    then_g, else_g = n.attrs.get("then_branch"), n.attrs.get("else_branch")
    if then_g is None or else_g is None:
        raise UnsupportedOpError(f"onnx: {n.label()} without then_branch / else_branch")
    runtime, args, consts = _captures(im, n, _captured(then_g) | _captured(else_g))
    cv = im.val(n.inputs[0])
    if cv.dtype != np.bool_ or int(np.prod(cv.shape, dtype=np.int64)) != 1:
        raise UnsupportedOpError(f"onnx: {n.label()}: the condition must be one bool")
    then_sub, else_sub = _branch(im, then_g, runtime, consts), _branch(im, else_g, runtime, consts)

    def subgraphs(b, prefix, ops_out):
        return [then_sub.replay_subgraph(b, prefix + "then/", ops_out),
                else_sub.replay_subgraph(b, prefix + "else/", ops_out)]

    outs = im.emit("If", im.get(cv, None), *args, out_names=[im.out_name(o, True) for o in n.outputs],
                   _subgraphs=subgraphs)
    for o, t in zip(n.outputs, outs):
        im.set(o, Val(t, im._shape(o), im._dtype(o)))


def _captures(im, n: Node, captured: Set[str]):
    """The captured names split: (runtime ones, their tensors, constant ones)."""
    names = sorted(captured)
    consts = [nm for nm in names if im.is_const(nm)]
    runtime = [nm for nm in names if not im.is_const(nm)]
    return runtime, [_plain(im, n, nm) for nm in runtime], consts


def _plain(im, n: Node, nm: str):
    """Value nm in the ONNX layout, for a subgraph input (quantized or emulated values are refused)."""
    v = im.val(nm)
    if v.kind != "real":
        raise UnsupportedOpError(f"onnx: {n.label()} passes the quantized or integer-emulated value '{nm}' to a "
                                 f"subgraph")
    return im.get(v, None)


def op_Loop(im, n: Node):
    """Loop(M, cond, v...) -> While over (i, M, cond, v..., captured...): the condition subgraph is
    i < M and cond; the body subgraph runs the converted ONNX body (iter_num = i as int64) and adds 1 to i.
    The counter is float32 (exact to 2^24 iterations, past what the work limit lets a run do)."""
    from onnx import helper
    from ..._dtypes import code_of
    body = n.attrs.get("body")
    if body is None:
        raise UnsupportedOpError(f"onnx: {n.label()} without a body")
    values = n.inputs[2:]
    if len(n.outputs) > len(values):
        raise UnsupportedOpError(f"onnx: {n.label()} has scan outputs (their size depends on the data)")
    if len(body.input) != 2 + len(values) or len(body.output) != 1 + len(values):
        raise UnsupportedOpError(f"onnx: {n.label()}: the body takes {len(body.input)} values and gives "
                                 f"{len(body.output)}, for {len(values)} loop values")
    m_name, c_name = n.inp(0), n.inp(1)
    if not m_name:
        m_t = im.const(np.array([np.inf], np.float32), "trip_count")
    elif im.is_const(m_name):
        m_t = im.const(np.array([min(float(np.asarray(im.cval(m_name)).reshape(-1)[0]), 2.0 ** 25)], np.float32),
                       "trip_count")
    else:
        m_t = im.emit("Cast", im.get(im.val(m_name), None), name="trip_count", dtype=code_of(np.float32))
    if not c_name:
        c_t = im.const(np.ones(1, np.bool_), "loop_cond")
    else:
        c_t = im.get(im.val(c_name), None)
    v_ts = [_plain(im, n, nm) for nm in values]
    runtime, cap_ts, consts = _captures(im, n, _captured(body))
    # the body as a model: its own inputs (iteration, condition, loop values with the enclosing shapes) and the
    # captured values
    iter_vi, cond_vi = body.input[0], body.input[1]
    ins = [helper.make_tensor_value_info(iter_vi.name, helper.np_dtype_to_tensor_dtype(np.dtype(np.int64)), []),
           helper.make_tensor_value_info(cond_vi.name, helper.np_dtype_to_tensor_dtype(np.dtype(np.bool_)), [])]
    for vi, nm in zip(body.input[2:], values):
        ins.append(helper.make_tensor_value_info(vi.name, helper.np_dtype_to_tensor_dtype(np.dtype(im._dtype(nm))),
                                                 list(im._shape(nm))))
    body_sub = _convert(im, body, ins, runtime, consts)
    sub_in = {nm: (shape, dt) for nm, shape, dt in body_sub.inputs}
    loop_names = [vi.name for vi in body.input[2:]]
    n_v = len(values)

    def subgraphs(b, prefix, ops_out):
        spec = [(prefix + "i", (1,), np.float32), (prefix + "n", (1,), np.float32), (prefix + "c", (1,), np.bool_)]
        spec += [(f"{prefix}v{k}",) + sub_in[nm] for k, nm in enumerate(loop_names)]
        spec += [(f"{prefix}x{k}",) + sub_in[nm] for k, nm in enumerate(runtime)]
        with b.subgraph(prefix + "cond", inputs=[(f"{e[0]}/c",) + tuple(e[1:]) for e in spec]) as cg:
            i, m, c = cg.inputs[:3]
            cg.output(b.op("LogicalAnd", b.op("Less", i, m, name=prefix + "cond/less"), c, name=prefix + "cond/and"))
        with b.subgraph(prefix + "body", inputs=[(f"{e[0]}/b",) + tuple(e[1:]) for e in spec]) as bg:
            i, m, c = bg.inputs[:3]
            tensors = {iter_vi.name: b.op("Cast", i, name=prefix + "body/iter", dtype=code_of(np.int64)),
                       cond_vi.name: c}
            tensors.update(zip(loop_names, bg.inputs[3:3 + n_v]))
            tensors.update(zip(runtime, bg.inputs[3 + n_v:]))
            body_sub.replay(b, tensors, prefix + "body/", ops_out)
            outs = [tensors[nm] for nm in body_sub.outputs]
            step = b.op("Add", i, b.const(prefix + "body/one", np.ones(1, np.float32)), name=prefix + "body/next")
            bg.output(step, m, *outs, *bg.inputs[3 + n_v:])
        return [cg.index, bg.index]

    out_names = ([im._fresh(f"{n.outputs[0]}/{s}") for s in ("i", "n", "c")]
                 + [im.out_name(o, True) for o in n.outputs]
                 + [im._fresh(f"{n.outputs[0]}/x{k}") for k in range(len(runtime))])
    outs = im.emit("While", im.const(np.zeros(1, np.float32), "iteration"), m_t, c_t, *v_ts, *cap_ts,
                   out_names=out_names, _subgraphs=subgraphs)
    for o, t, nm in zip(n.outputs, outs[3:3 + len(n.outputs)], values):
        im.set(o, Val(t, im._shape(nm), im._dtype(nm)))  # a loop value keeps its initial value's type
