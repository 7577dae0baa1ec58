"""TFLite sparse constants -> dense arrays (for the DENSIFY op).

A TFLite tensor with `sparsity` stores only its non-zero values (blocks) in
the buffer; SparsityParameters describe where they go:

- the dense tensor has rank n; `block_map[k]` names the original dim that the
  k-th block dim splits (the tensor is then traversed as rank n + len(block_map):
  the n original dims divided by their block sizes, then the block dims);
- `traversal_order` is the order of those n + b dims, outermost first (the
  block dims come after the n original ones);
- `dim_metadata[level]` describes the level-th dim of that traversal: DENSE
  (`dense_size` entries) or SPARSE_CSR (`array_segments` / `array_indices`:
  for the position p reached at the previous level, entries
  array_segments[p] .. array_segments[p+1]-1 of array_indices hold the
  coordinates present along this dim).

The buffer's values are stored in traversal order, one per leaf. `densify`
walks the levels (depth first) and scatters each value to its original
coordinates; everything not listed is zero. The converter densifies sparse
constants when it reads them, so DENSIFY folds to a plain constant, and
marks them for the .tinf sparse encoding (GraphBuilder.store_sparse): the
file keeps them sparse wherever that is smaller than dense, and the sparse
kernels take them at load where they pay (docs/pruning.md).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .._errors import ModelFormatError

__all__ = ["DimMeta", "densify", "densify_tensor", "read_sparsity"]

DENSE, SPARSE_CSR = 0, 1

# (format, dense_size, array_segments, array_indices)
DimMeta = Tuple[int, int, Optional[np.ndarray], Optional[np.ndarray]]


def _index_vector(tfl, dm, which: str) -> Optional[np.ndarray]:
    """array_segments / array_indices of a DimensionMetadata (a union of
    Int32Vector, Uint16Vector, Uint8Vector) as an int64 array."""
    kind = getattr(dm, which + "Type")()
    table = getattr(dm, which)()
    if kind == 0 or table is None:
        return None
    cls = {1: tfl.Int32Vector, 2: tfl.Uint16Vector, 3: tfl.Uint8Vector}.get(int(kind))
    if cls is None:
        raise ModelFormatError(f"sparsity: unknown index vector type {kind}")
    v = cls()
    v.Init(table.Bytes, table.Pos)
    if v.ValuesLength() == 0:
        return np.zeros(0, np.int64)
    return np.asarray(v.ValuesAsNumpy()).astype(np.int64)


def read_sparsity(tfl, sp) -> Tuple[List[int], List[int], List[DimMeta]]:
    """(traversal_order, block_map, dim_metadata) of a flatbuffer SparsityParameters."""
    order = [int(v) for v in np.asarray(sp.TraversalOrderAsNumpy()).reshape(-1)] if sp.TraversalOrderLength() else []
    bmap = [int(v) for v in np.asarray(sp.BlockMapAsNumpy()).reshape(-1)] if sp.BlockMapLength() else []
    dims: List[DimMeta] = []
    for i in range(sp.DimMetadataLength()):
        dm = sp.DimMetadata(i)
        dims.append((int(dm.Format()), int(dm.DenseSize()),
                     _index_vector(tfl, dm, "ArraySegments"), _index_vector(tfl, dm, "ArrayIndices")))
    return order, bmap, dims


def densify(values: np.ndarray, shape: Sequence[int], traversal_order: Sequence[int],
            block_map: Sequence[int], dim_metadata: Sequence[DimMeta]) -> np.ndarray:
    """The dense array of `shape` that the sparse `values` (1-D, in traversal
    order) describe. Raises ModelFormatError on inconsistent metadata."""
    shape = [int(d) for d in shape]
    n, b = len(shape), len(block_map)
    total = n + b
    order = list(traversal_order) or list(range(total))
    if sorted(order) != list(range(total)) or len(dim_metadata) != total:
        raise ModelFormatError(f"sparsity: traversal_order {list(order)} / {len(dim_metadata)} dim_metadata "
                               f"do not fit a rank-{n} tensor with {b} block dim(s)")
    if any(not 0 <= m < n for m in block_map):
        raise ModelFormatError(f"sparsity: block_map {list(block_map)} out of range for rank {n}")
    if sorted(order[:n]) != list(range(n)):
        raise ModelFormatError(f"sparsity: traversal_order {order} puts a block dim before an original one")
    # block size of block dim k: the dense_size of the level that traverses dim n + k
    level_of = {d: lvl for lvl, d in enumerate(order)}
    block_size = [dim_metadata[level_of[n + k]][1] for k in range(b)]
    if any(s <= 0 for s in block_size):
        raise ModelFormatError(f"sparsity: block sizes {block_size} must be positive")
    for k, m in enumerate(block_map):
        if shape[m] % block_size[k]:
            raise ModelFormatError(f"sparsity: dim {m} ({shape[m]}) is not a multiple of its block size "
                                   f"{block_size[k]}")
    values = np.asarray(values).reshape(-1)
    out = np.zeros(shape, dtype=values.dtype)
    flat = out.reshape(-1)
    strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(n)]

    # Walk the levels breadth-first with arrays: at each level, `pos` is the
    # position index of every partial path (prev_idx of TFLite's converter)
    # and `coords[:, level]` its coordinate along that level's dim.
    pos = np.zeros(1, np.int64)
    coords = np.zeros((1, 0), np.int64)
    for lvl, (fmt, size, segs, idx) in enumerate(dim_metadata):
        if fmt == DENSE:
            if size <= 0:
                raise ModelFormatError(f"sparsity: level {lvl} is DENSE with dense_size {size}")
            j = np.arange(size, dtype=np.int64)
            new_pos = (pos[:, None] * size + j[None, :]).reshape(-1)
            new_c = np.repeat(coords, size, axis=0)
            coords = np.concatenate([new_c, np.tile(j, pos.size)[:, None]], axis=1)
            pos = new_pos
        elif fmt == SPARSE_CSR:
            if segs is None or idx is None:
                raise ModelFormatError(f"sparsity: level {lvl} is SPARSE_CSR without array_segments/indices")
            if pos.size and (pos.max() + 1 >= segs.size):
                raise ModelFormatError(f"sparsity: level {lvl} has {segs.size} segments for positions up to "
                                       f"{int(pos.max())}")
            start, stop = segs[pos], segs[pos + 1]
            counts = stop - start
            if np.any(counts < 0) or (stop.size and stop.max() > idx.size):
                raise ModelFormatError(f"sparsity: level {lvl} segments are not monotone within its "
                                       f"{idx.size} indices")
            # every j in [start, stop) of every path, in order
            n_new = int(counts.sum())
            new_pos = np.repeat(start - (np.cumsum(counts) - counts), counts) + np.arange(n_new, dtype=np.int64)
            coords = np.concatenate([np.repeat(coords, counts, axis=0), idx[new_pos][:, None]], axis=1)
            pos = new_pos
        else:
            raise ModelFormatError(f"sparsity: level {lvl} has unknown format {fmt}")
    if pos.size != values.size:
        raise ModelFormatError(f"sparsity: the metadata lists {pos.size} values, the buffer holds {values.size}")
    orig = np.zeros((pos.size, n), np.int64)
    for lvl in range(n):
        orig[:, order[lvl]] = coords[:, lvl]
    for lvl in range(n, total):
        k = order[lvl] - n
        m = block_map[k]
        orig[:, m] = orig[:, m] * block_size[k] + coords[:, lvl]
    # the dims that the traversal walks divided by block sizes must fit the shape
    if orig.size and (np.any(orig < 0) or np.any(orig >= np.asarray(shape, np.int64)[None, :])):
        raise ModelFormatError("sparsity: an index lies outside the tensor's shape")
    flat[orig @ np.asarray(strides, np.int64)] = values
    return out


def densify_tensor(tfl, sparsity, raw: bytes, dtype, shape, name: str) -> np.ndarray:
    """The dense constant of a TFLite tensor whose buffer `raw` is sparse."""
    itemsize = np.dtype(dtype).itemsize
    if len(raw) % itemsize:
        raise ModelFormatError(f"tensor '{name}': sparse buffer of {len(raw)} bytes is not a whole number "
                               f"of {np.dtype(dtype).name} values")
    order, bmap, dims = read_sparsity(tfl, sparsity)
    try:
        return densify(np.frombuffer(raw, dtype=dtype), shape, order, bmap, dims)
    except ModelFormatError as e:
        raise ModelFormatError(f"tensor '{name}': {e}") from e
