"""Dynamic input dims (a sequence length given at run time): which dims of which graph inputs a converted
model leaves open. They live in the .tinf metadata under DYNAMIC_DIMS_KEY (docs/format.md, "Dynamic
dims"): `index:dim,dim;index:dim` (graph input index, then the dims, each >= 1; the batch dim 0 is
always open and is not listed). The file's input shape holds an example size for each such dim; a
session is prepared for the shapes a run gives (model.py)."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

DYNAMIC_DIMS_KEY = "dynamic_dims"


def format_dynamic_dims(dims: Dict[int, Sequence[int]]) -> str:
    """The metadata value for {input index: dims}; inputs without dims are left out."""
    return ";".join(f"{i}:{','.join(str(int(d)) for d in sorted(set(ds)))}"
                    for i, ds in sorted(dims.items()) if ds)


def parse_dynamic_dims(value: str, ranks: Sequence[int]) -> Tuple[Tuple[int, ...], ...]:
    """The dynamic dims of each input (by index, `ranks` their ranks) from the metadata value; entries that
    do not fit the inputs (a view of the model with other inputs, a hand-written key) are ignored."""
    out = [set() for _ in ranks]
    for part in (value or "").split(";"):
        idx, _, dims = part.partition(":")
        try:
            i = int(idx)
            ds = [int(d) for d in dims.split(",") if d.strip()]
        except ValueError:
            continue
        if 0 <= i < len(ranks):
            out[i].update(d for d in ds if 1 <= d < ranks[i])
    return tuple(tuple(sorted(s)) for s in out)
