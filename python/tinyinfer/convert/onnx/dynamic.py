"""Dynamic non-batch input dims (a sequence length) in the ONNX importer.

The handlers work on concrete shapes (layouts, folded shape arithmetic), so a dynamic dim is converted twice,
at two example sizes (probe_size), and the two emitted graphs are compared: where they differ only in what the
runtime infers again for each prepared shape (the input's shape; one dim of a Reshape target, written as -1),
the first graph is kept and its inputs' dims are marked dynamic in the file (tinyinfer._dynamic). Anything
else that depends on the size (a constant computed from it, another attribute, a control-flow branch) is
refused naming the op, with the hint to fix the size with input_shapes=. The runtime re-plans a session for
each shape a run gives (model.py)."""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..._errors import UnsupportedOpError
from ._graph import _Graph

# The example sizes of the k-th distinct dynamic dim (by dim_param) at probe 0 (the size written in the file)
# and probe 1 (the check).
_PROBES = (24, 40)


def probe_size(probe: int, k: int) -> int:
    return _PROBES[probe] + 4 * k


def _refuse(what: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"onnx: dynamic input dims: {what}, so the converted graph cannot follow another size; give the "
        f"dynamic dims a size with input_shapes={{name: shape}}; nothing was written")


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def generalize(a: _Graph, b: _Graph, dynamic: Dict[str, List[int]]) -> List[str]:
    """Checks graph `a` (converted at probe 0) against `b` (probe 1) and makes `a` follow the size: Reshape
    targets that differ in one dim get -1 there. Raises UnsupportedOpError naming what depends on the size.
    The notes for the report."""
    notes = []
    if [(n, dt) for n, _, dt in a.inputs] != [(n, dt) for n, _, dt in b.inputs] or a.outputs != b.outputs:
        raise _refuse("the graph's inputs or outputs differ between sizes")
    for (nm, sa, _), (_, sb, _) in zip(a.inputs, b.inputs):
        diff = [d for d, (x, y) in enumerate(zip(sa, sb)) if x != y]
        if len(sa) != len(sb) or any(d not in dynamic.get(nm, ()) for d in diff):
            raise _refuse(f"input '{nm}' has shape {list(sa)} at one size and {list(sb)} at the other")
    if set(a.consts) != set(b.consts):
        raise _refuse("the constants differ between sizes")
    for nm, arr in a.consts.items():
        if not _same(arr, b.consts[nm]):
            raise _refuse(f"constant '{nm}' (shape {list(arr.shape)}) is computed from the dynamic size")
    if len(a.ops) != len(b.ops):
        raise _refuse(f"the graph has {len(a.ops)} ops at one size and {len(b.ops)} at the other")
    reshapes = 0
    for opa, opb in zip(a.ops, b.ops):
        op, ins, outs, attrs = opa
        label = f"{op} '{outs[0]}'"
        if op != opb[0] or ins != opb[1] or outs != opb[2] or set(attrs) != set(opb[3]):
            raise _refuse(f"the ops differ between sizes ({label} against {opb[0]} '{opb[2][0]}')")
        if "_subgraphs" in attrs:
            raise _refuse(f"{label} runs subgraphs (control flow), which are not checked for dynamic sizes")
        for key, va in attrs.items():
            vb = opb[3][key]
            if _same(va, vb):
                continue
            if op == "Reshape" and key == "shape" and len(va) == len(vb) and -1 not in va:
                diff = [d for d, (x, y) in enumerate(zip(va, vb)) if x != y]
                if len(diff) == 1:
                    attrs[key] = [-1 if d == diff[0] else int(x) for d, x in enumerate(va)]
                    reshapes += 1
                    continue
            raise _refuse(f"{label}: attribute {key} is {va} at one size and {vb} at the other")
    if set(a.quant) != set(b.quant) or any(not _same(a.quant[k], b.quant[k]) for k in a.quant):
        raise _refuse("quantization parameters differ between sizes")
    if reshapes:
        notes.append(f"{reshapes} Reshape target(s) follow the dynamic size (-1 in the dim that depends on it)")
    return notes
