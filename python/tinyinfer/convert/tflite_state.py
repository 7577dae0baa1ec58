"""TFLite resource variables -> the runtime's ReadVariable / AssignVariable
(docs/ops.md, "State"). Part of the TFLite importer (tflite.py registers
these handlers).

- VAR_HANDLE names a variable by its (container, shared_name), as LiteRT does.
- CALL_ONCE runs an init subgraph once per interpreter: when that subgraph
  only assigns constants to variables (what TFLiteConverter makes of
  tf.Variable initial values), the constants become the variables' initial
  values; a subgraph that computes is refused.
- READ_VARIABLE before any ASSIGN_VARIABLE of the variable in the run becomes
  ReadVariable (the value at the start of the run); after one it reads the
  assigned tensor directly (the runtime's reads all see the run's start value
  and assigns commit at the end of the run, so the importer forwards the
  values a run assigns, which is what LiteRT's in-order execution gives).
- ASSIGN_VARIABLE becomes AssignVariable.
"""

from __future__ import annotations

import numpy as np

SUPPORTED = {
    "VAR_HANDLE": "the variable (container, shared_name); its initial value from CALL_ONCE",
    "READ_VARIABLE": "ReadVariable (the value at the start of the run); after an ASSIGN_VARIABLE in the same run, "
                     "the assigned value",
    "ASSIGN_VARIABLE": "AssignVariable (the variable's value for the next run)",
    "CALL_ONCE": "its init subgraph's constant assignments become the variables' initial values "
                 "(an init subgraph that computes is refused)",
}


class _Variable:
    __slots__ = ("key", "init", "quant", "tensor", "current")

    def __init__(self, key):
        self.key = key
        self.init = None      # initial value (numpy), from CALL_ONCE
        self.quant = None     # its quantization (tflite._Quant) or None
        self.tensor = None    # the builder constant naming the variable
        self.current = None   # the tensor assigned earlier in this run


def _state(im):
    st = getattr(im, "_var_state", None)
    if st is None:
        st = im._var_state = {"vars": {}, "handles": {}}
    return st


def _variable(im, key) -> _Variable:
    v = _state(im)["vars"].get(key)
    if v is None:
        v = _state(im)["vars"][key] = _Variable(key)
    return v


def _key(im, op):
    o = im.options(op, im.tfl.VarHandleOptions)
    container = (o.Container() or b"") if o is not None else b""
    shared = (o.SharedName() or b"") if o is not None else b""
    return container.decode("utf-8", "replace"), shared.decode("utf-8", "replace")


def _handle(im, op):
    """The variable of a READ_VARIABLE / ASSIGN_VARIABLE's resource input."""
    from .tflite import _Refuse, _np
    ins = _np(op.InputsAsNumpy())
    if len(ins) < 1 or int(ins[0]) < 0:
        raise _Refuse("no resource input")
    key = _state(im)["handles"].get(int(ins[0]))
    if key is None:
        raise _Refuse(f"resource '{im.tensors[int(ins[0])].name}' does not come from a VAR_HANDLE")
    return _variable(im, key)


def _name(v: _Variable) -> str:
    return "variable/" + (v.key[1] or "unnamed")


def _var_tensor(im, v: _Variable, like=None):
    """The builder constant that names variable v (its initial value)."""
    from .tflite import _Refuse
    if v.tensor is not None:
        return v.tensor
    init = v.init
    if init is None:
        if like is None:
            raise _Refuse(f"variable '{v.key[1]}' is read before it has a value (no CALL_ONCE initial value)")
        # Assigned before any read in every run: the initial value is never seen.
        init = np.zeros(like.shape, like.dtype)
        im.report.notes.append(f"variable '{v.key[1]}' has no initial value; it is assigned before it is read")
    v.tensor = im.b.const(im.unique(_name(v)), init)
    q = v.quant
    if q is not None and np.dtype(init.dtype).kind in "iu":
        im.b.quantization(v.tensor, q.scales, q.zero_points, q.axis)
    return v.tensor


def var_handle(im, op, name):
    from .tflite import _np
    outs = _np(op.OutputsAsNumpy())
    key = _key(im, op)
    _variable(im, key)
    _state(im)["handles"][int(outs[0])] = key
    return []


def read_variable(im, op, name):
    v = _handle(im, op)
    out = im.info_out(op)
    if v.current is not None:
        if im.is_graph_output(out.index):
            # Keep the output's name: an identity Reshape (removed at load).
            return im.emit("Reshape", v.current, name=out.name, shape=list(out.shape))
        return v.current
    return im.emit("ReadVariable", _var_tensor(im, v), name=out.name)


def assign_variable(im, op, name):
    from .tflite import _Refuse
    v = _handle(im, op)
    value = im.tensor(op, 1)
    info = im.info_in(op, 1)
    if info is None or info.dtype is None:
        raise _Refuse("value of an unsupported type")
    if v.init is not None and (tuple(v.init.shape) != tuple(info.shape) or v.init.dtype != np.dtype(info.dtype)):
        raise _Refuse(f"value {np.dtype(info.dtype).name} {list(info.shape)} for variable '{v.key[1]}' of "
                      f"{v.init.dtype.name} {list(v.init.shape)}")
    im.emit("AssignVariable", _var_tensor(im, v, np.zeros(info.shape, info.dtype)), value,
            name=f"{_name(v)}/assign")
    v.current = value
    return []


def call_once(im, op, name):
    """Reads the init subgraph: VAR_HANDLE and ASSIGN_VARIABLE of constants only."""
    from .tflite import _Refuse, _np
    o = im.options(op, im.tfl.CallOnceOptions)
    if o is None:
        raise _Refuse("no CallOnceOptions")
    index = int(o.InitSubgraphIndex())
    if index <= 0 or index >= im.model.SubgraphsLength():
        raise _Refuse(f"init subgraph {index} out of range")
    sub = im.model.Subgraphs(index)
    main, im.graph = im.graph, sub
    try:
        handles = {}
        for j in range(sub.OperatorsLength()):
            sop = sub.Operators(j)
            sname = im.op_name(sop)
            ins = [int(i) for i in _np(sop.InputsAsNumpy())]
            if sname == "VAR_HANDLE":
                handles[int(_np(sop.OutputsAsNumpy())[0])] = _key(im, sop)
            elif sname == "ASSIGN_VARIABLE" and len(ins) == 2 and ins[0] in handles and ins[1] >= 0:
                info = im._tensor(ins[1])
                if not isinstance(info.data, np.ndarray):
                    raise _Refuse(f"init subgraph {index} assigns '{info.name}', which is not a constant "
                                  f"(only constant initial values are supported)")
                v = _variable(im, handles[ins[0]])
                v.init, v.quant = info.data, info.quant
            else:
                raise _Refuse(f"init subgraph {index} runs {sname} (only VAR_HANDLE and ASSIGN_VARIABLE of "
                              f"constants are supported)")
    finally:
        im.graph = main
    im.folded["CALL_ONCE: initial values of the variables from the init subgraph"] += 1
    return []


HANDLERS = {
    "VAR_HANDLE": var_handle,
    "READ_VARIABLE": read_variable,
    "ASSIGN_VARIABLE": assign_variable,
    "CALL_ONCE": call_once,
}
