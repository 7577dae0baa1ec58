"""Running to and from intermediate tensors, and shared backbones (issue 18).

    feats, logits = model.run(x, outputs=["features", "logits"])    # any tensors by name
    (logits,) = model.run(from_tensors={"features": feats})         # start from given values
    backbone, head = model.split(at=["features"])                   # two models, same results

`subgraph(model, inputs, outputs)` is the core of all three: a model whose
inputs and outputs are any tensors the model takes or computes, by name
(`Model.tensors()` lists them, after the load-time passes), running only the
ops the outputs need from those inputs. It is a view of the library's model
(tinf_model_subgraph): same kernels on the same packed weights, so its
results are bit for bit those of a full run, and it costs no copy of the
weights. docs/caching.md, "Intermediate tensors and shared backbones".
"""

from __future__ import annotations

from collections import OrderedDict
from ctypes import byref, c_char_p
from typing import List, Sequence, Tuple

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError, InvalidStateError

__all__ = ["subgraph", "split", "MAX_PARTIAL_SESSIONS"]

L = _lib.lib

# Sessions a Session keeps for its run(outputs=..., from_tensors=...) calls
# (one per combination of names and shapes), least recently used closed first.
MAX_PARTIAL_SESSIONS = 8


def _names(names, what: str) -> List[str]:
    if isinstance(names, str):
        names = [names]
    try:
        names = list(names)
    except TypeError:
        raise InvalidArgumentError(f"{what} must be a tensor name or a list of names, got {names!r}") from None
    for n in names:
        if not isinstance(n, str):
            raise InvalidArgumentError(f"{what}: a tensor name is a str, got {n!r}")
        if "\0" in n:
            raise InvalidArgumentError(f"{what}: the name {n!r} contains a NUL character")
    return names


def _c_names(names: Sequence[str]):
    return (c_char_p * max(len(names), 1))(*[n.encode("utf-8") for n in names])


def subgraph(model, inputs=(), outputs=None, add_graph_inputs: bool = False):
    """A tinyinfer.Model from the tensors named `inputs` (graph inputs or
    intermediate tensors: its inputs, in this order) to those named `outputs`
    (default: `model`'s outputs), running only the ops the outputs need.
    With `add_graph_inputs`, inputs of `model` the outputs still need are
    appended to its inputs; without, such a need raises InvalidArgumentError
    naming it, as do unknown names, constants, tensors the load-time passes
    removed (load with optimize=False to keep them) and names given twice.
    The view shares `model`'s weights and stays valid after `model` is
    closed; it has `model`'s threads and work limit and no result cache."""
    from .model import Model
    ins = _names(inputs, "inputs")
    outs = [t.name for t in model.outputs] if outputs is None else _names(outputs, "outputs")
    if not outs:
        raise InvalidArgumentError("a subgraph needs at least one output")
    h = _lib.ModelHandle()
    flags = _lib.SUBGRAPH_ADD_GRAPH_INPUTS if add_graph_inputs else 0
    L.tinf_model_subgraph(model.handle, _c_names(ins), len(ins), _c_names(outs), len(outs), flags, byref(h))
    view = Model(h, threads=model.threads, optimize=model.optimize, shape_sessions=model.shape_sessions,
                 max_work=model.max_work)
    view.parent = model
    return view


def split(model, at) -> Tuple[object, object]:
    """(backbone, head) of `model` cut at the tensors named `at`: the backbone
    runs from `model`'s inputs (those the cut needs) to `at` (its outputs, in
    this order); the head from `at` (its first inputs, followed by any input
    of `model` the outputs still need past the cut) to `model`'s outputs.
    `head.run(backbone.run(x))` gives `model.run(x)` bit for bit (the same
    kernels on the same weights); one backbone run can feed several heads."""
    at = _names(at, "at")
    if not at:
        raise InvalidArgumentError("split needs at least one tensor name in `at`")
    backbone = subgraph(model, (), at, add_graph_inputs=True)
    head = subgraph(model, at, None, add_graph_inputs=True)
    return backbone, head


def _graph_inputs(session, inputs) -> dict:
    """{name: array} of the graph inputs given to a partial run: all of them
    (an array, a list in input order, or a dict) or, as a dict, some."""
    if inputs is None:
        return {}
    if isinstance(inputs, dict):
        names = {t.name for t in session.inputs}
        unknown = sorted(set(inputs) - names)
        if unknown:
            raise InvalidArgumentError(
                f"unknown input name(s) {unknown}; the model takes {[t.name for t in session.inputs]} "
                "(intermediate tensors go in from_tensors)")
        return dict(inputs)
    return {t.name: a for t, a in zip(session.inputs, session._arrays(inputs))}


def _expected_shape(session, view_info, name: str) -> tuple:
    """The shape tensor `name` has in this session: the file's, with the
    batch (first) dimension of this session when it runs another batch."""
    shape = tuple(view_info.shape)
    file_batch = session.model.inputs[0].shape[0] if session.model.inputs and session.model.inputs[0].shape else None
    batch = session.inputs[0].shape[0] if session.inputs and session.inputs[0].shape else None
    if shape and file_batch is not None and batch != file_batch and shape[0] == file_batch:
        shape = (batch,) + shape[1:]
    return shape


def run_partial(session, inputs, outputs, from_tensors, copy: bool, check_finite: bool) -> List[np.ndarray]:
    """Session.run(inputs, outputs=..., from_tensors=...): see its docstring."""
    if session._handle is None:
        raise InvalidStateError("the session is closed")
    given = {} if from_tensors is None else from_tensors
    if not isinstance(given, dict):
        raise InvalidArgumentError(f"from_tensors must be a dict of tensor name to array, got {type(given).__name__}")
    from_names = _names(list(given), "from_tensors")
    outs = [t.name for t in session.outputs] if outputs is None else _names(outputs, "outputs")
    feeds = _graph_inputs(session, inputs)
    for n in from_names:
        if n in feeds:
            raise InvalidArgumentError(f"'{n}' is given both in inputs and in from_tensors")
    arrays = {n: a if isinstance(a, np.ndarray) else np.asarray(a) for n, a in {**feeds, **given}.items()}
    key = (tuple(outs), tuple(from_names), tuple((n, arrays[n].shape) for n in from_names))
    with session._lock:  # one caller at a time, as Session.run; Session.close closes the partial sessions
        if session._handle is None:
            raise InvalidStateError("the session is closed")
        partials = session.__dict__.setdefault("_partials", OrderedDict())
        sub = partials.get(key)
        if sub is None:
            sub = _partial_session(session, from_names, outs, arrays)
            partials[key] = sub
            while len(partials) > MAX_PARTIAL_SESSIONS:
                partials.popitem(last=False)[1].close()
        else:
            partials.move_to_end(key)
        feed = []
        for t in sub.inputs:
            a = arrays.get(t.name)
            if a is None:
                raise InvalidArgumentError(
                    f"the outputs {outs} need the model input '{t.name}', which is not given"
                    + (f": from_tensors {from_names} do not cut the graph before it" if from_names else ""))
            feed.append(a)
        return sub.run(feed, copy=copy, check_finite=check_finite)


def _partial_session(session, from_names, outs, arrays):
    """A session of the subgraph view from `from_names` (plus the graph inputs
    still needed) to `outs`, at this session's shapes."""
    from .model import Session
    view = subgraph(session.model, from_names, outs, add_graph_inputs=True)
    shapes = []
    for t in view.inputs:
        if t.name in from_names:
            a = arrays[t.name]
            want = _expected_shape(session, t, t.name)
            if tuple(a.shape) != want:
                raise InvalidArgumentError(
                    f"from_tensors['{t.name}'] has shape {list(a.shape)}, the tensor has {list(want)} in this session")
            if not np.can_cast(a.dtype, t.dtype, casting="same_kind"):
                raise InvalidArgumentError(f"from_tensors['{t.name}'] takes {t.dtype}, got {a.dtype}")
            shapes.append(want if want != tuple(t.shape) else None)
        else:
            spec = next(s for s in session.inputs if s.name == t.name)
            shapes.append(tuple(spec.shape) if tuple(spec.shape) != tuple(t.shape) else None)
    return Session(view, session.threads, shapes if any(s is not None for s in shapes) else None,
                   session.model.max_work)


def run_partial_model(model, inputs, outputs, from_tensors, copy: bool, check_finite: bool) -> List[np.ndarray]:
    """Model.run(inputs, outputs=..., from_tensors=...): on the session of the
    file's shapes, or of another batch (as Model.run) when the inputs or the
    given tensors have one."""
    from .model import _batch_shapes
    with model._lock:
        session = model._main_session()
        shapes = None
        if inputs is not None and (not isinstance(inputs, dict) or len(inputs) == len(model.inputs)):
            shapes = _batch_shapes(model.inputs, inputs)
        elif isinstance(from_tensors, dict) and model.inputs and model.inputs[0].shape:
            batch = _given_batch(model, from_tensors)
            if batch is not None:
                shapes = tuple((batch,) + tuple(t.shape[1:]) for t in model.inputs)
        if shapes is not None:
            session = model._shape_session(shapes)
        return run_partial(session, inputs, outputs, from_tensors, copy, check_finite)


def _given_batch(model, from_tensors):
    """The batch of given tensors whose shapes differ from the model's only in
    a first dimension that is the file's batch, else None."""
    shapes = model.__dict__.get("_tensor_shapes")
    if shapes is None:
        shapes = model._tensor_shapes = {t.name: t.shape for t in model.tensors()}
    file_batch = model.inputs[0].shape[0]
    for name, a in from_tensors.items():
        want, got = shapes.get(name), np.shape(a)
        if (want and len(got) == len(want) and got[1:] == tuple(want[1:]) and want[0] == file_batch
                and got[0] != file_batch):
            return got[0]
    return None
