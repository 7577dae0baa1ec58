"""tinyinfer on Dask (docs/batching.md, "Scale-out on Dask"): runs a model over
the blocks of a dask.array or the partitions of a dask.bag or dask.dataframe,
on whatever cluster the current dask Client points at (a LocalCluster, or
`Client("scheduler:8786")`).

    import dask.array as da, tinyinfer.dask as tdask
    x = da.from_npy_stack(...)                       # items along axis 0
    y = tdask.map("model.tinf", x, memory_budget="256MB")
    y.compute(retries=2)                             # or client.compute(y, retries=2)

The model travels to the workers as a `ModelRef`: its path and content hash
(or, with embed=True, its bytes). Each worker process loads it once and
reuses it; loading memory-maps the file (embedded bytes are written once per
host into the tinyinfer cache folder first), so the workers on one host share
its pages. Inside a block or partition, items run in batches chosen by
`batch_plan` under `memory_budget` (Model.map). Failed tasks are retried by
Dask when the computation asks for it (`compute(retries=N)`: task
annotations such as `dask.annotate(retries=...)` do not survive Dask's graph
optimization, nor dask.dataframe's query planning), and the tasks of a
worker that dies are run again on another one, as for any Dask
computation. Needs the extra `tinyinfer[dask]`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Dict, Optional, Tuple

import numpy as np

from . import batching
from ._errors import InvalidArgumentError, InvalidStateError
from .model import Model, load

try:
    import dask.array as da
    import dask.bag as db
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("tinyinfer.dask needs dask: pip install 'tinyinfer[dask]'") from e


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ModelRef:
    """A picklable reference to a .tinf model for Dask workers: its path and
    sha256, or its bytes (embed=True, for workers that do not share the
    client's files). `get()` returns the process's loaded Model, loading it
    on first use only."""

    def __init__(self, model, threads: int = 1, optimize: bool = True, embed: bool = False):
        data = None
        if isinstance(model, Model):
            path, threads, optimize = model.path, model.threads, model.optimize
            sha = batching.content_hash(model)
            if path is None:
                data = bytes(model._buffer)
        elif isinstance(model, (bytes, bytearray, memoryview)):
            path, data = None, bytes(model)
            sha = hashlib.sha256(data).hexdigest()
        else:
            path = os.path.abspath(os.fspath(model))
            sha = _sha256_file(path)
        if embed and data is None:
            with open(path, "rb") as f:
                data = f.read()
        self.path, self.sha256, self.data = path, sha, data
        self.threads, self.optimize = int(threads), bool(optimize)

    def __getstate__(self):
        return {"path": self.path, "sha256": self.sha256, "data": self.data, "threads": self.threads,
                "optimize": self.optimize}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        how = "bytes" if self.data is not None else self.path
        return f"<tinyinfer.dask.ModelRef {self.sha256[:12]} from {how}, threads={self.threads}>"

    def _key(self) -> Tuple[str, int, bool]:
        return (self.sha256, self.threads, self.optimize)

    def _local_path(self) -> str:
        """A file of this process's host holding the model's bytes."""
        if self.path is not None and os.path.exists(self.path):
            got = _VERIFIED.get(self.path)
            if got is None:
                got = _VERIFIED[self.path] = _sha256_file(self.path)
            if got == self.sha256:
                return self.path
            if self.data is None:
                raise InvalidStateError(f"{self.path} on this worker is not the client's model (sha256 {got[:12]}, "
                                        f"expected {self.sha256[:12]}): use embed=True or the same file")
        if self.data is None:
            raise InvalidStateError(f"{self.path} does not exist on this worker: use embed=True, or put the model "
                                    f"at the same path on every worker")
        cached = os.path.join(batching.cache_dir(), "models", self.sha256 + ".tinf")
        if not os.path.exists(cached) or os.path.getsize(cached) != len(self.data):
            batching.atomic_write(cached, self.data)  # once per host; then every worker maps the same pages
        return cached

    def get(self) -> Model:
        key = self._key()
        with _LOCK:
            m = _MODELS.get(key)
            if m is None:
                m = load(self._local_path(), threads=self.threads, optimize=self.optimize)
                _MODELS[key] = m
                _LOADS[key] = _LOADS.get(key, 0) + 1
            return m


_LOCK = threading.Lock()
_MODELS: Dict[Tuple[str, int, bool], Model] = {}
_LOADS: Dict[Tuple[str, int, bool], int] = {}
_VERIFIED: Dict[str, str] = {}


def loads() -> Dict[str, int]:
    """How many times this process loaded each model (sha256 prefix -> count):
    1 each on a worker that reuses it (`client.run(tinyinfer.dask.loads)`)."""
    with _LOCK:
        return {f"{k[0][:12]}/{k[1]}": v for k, v in _LOADS.items()}


def _ref(model, threads, embed) -> ModelRef:
    if isinstance(model, ModelRef):
        return model
    if isinstance(model, Model):
        return ModelRef(model, embed=embed) if threads is None else ModelRef(
            model.path if model.path else bytes(model._buffer), threads, model.optimize, embed)
    return ModelRef(model, threads=1 if threads is None else threads, embed=embed)


def _run_items(items, ref: ModelRef, options) -> list:
    """Each item's outputs (an array, or a tuple for several outputs)."""
    model = ref.get()
    return list(batching.map(model, items, progress=False, **options))


def _run_block(block: np.ndarray, ref: ModelRef, options: dict, output: int) -> np.ndarray:
    model = ref.get()
    outs = [np.empty((block.shape[0],) + tuple(t.shape[1:]), t.dtype) for t in model.outputs]
    if block.shape[0]:
        batching.map(model, np.ascontiguousarray(block), progress=False, out=outs, **options)
    return outs[output]


def _options(memory_budget, batch_size, measure_ms, on_error) -> dict:
    if memory_budget is not None:
        batching.parse_bytes(memory_budget)  # a bad size fails here, not on the workers
    return {"memory_budget": memory_budget, "batch_size": batch_size, "measure_ms": measure_ms,
            "on_error": on_error}


def map_blocks(model, array, memory_budget="256MB", batch_size="auto", output=0, threads: Optional[int] = None,
               embed: bool = False, measure_ms: int = batching.DEFAULT_MEASURE_MS):
    """Runs `model` over a dask.array whose items lie along axis 0, block by
    block (the other axes are put in one chunk); returns the dask.array of
    output `output` (an index or a name), chunked like the items."""
    ref = _ref(model, threads, embed)
    m = ref.get()
    specs = batching._item_specs(m)
    if len(specs) != 1:
        raise InvalidArgumentError(f"the model takes {len(specs)} inputs: use map_partitions with a bag of tuples")
    item_shape = specs[0][1]
    if tuple(array.shape[1:]) != item_shape:
        raise InvalidArgumentError(f"the array's items have shape {list(array.shape[1:])}, the model takes "
                                   f"{list(item_shape)}")
    names = [t.name for t in m.outputs]
    idx = names.index(output) if isinstance(output, str) else int(output)
    if not 0 <= idx < len(names):
        raise InvalidArgumentError(f"output {output!r}: the model's outputs are {names}")
    spec = m.outputs[idx]
    out_item = tuple(spec.shape[1:])
    if any(len(c) > 1 for c in array.chunks[1:]):
        array = array.rechunk({i: -1 for i in range(1, array.ndim)})
    in_nd, out_nd = array.ndim, 1 + len(out_item)
    kw = {}
    if out_nd < in_nd:
        kw["drop_axis"] = list(range(out_nd, in_nd))
    elif out_nd > in_nd:
        kw["new_axis"] = list(range(in_nd, out_nd))
    options = _options(memory_budget, batch_size, measure_ms, "raise")
    return array.map_blocks(_run_block, ref, options, idx, dtype=spec.dtype,
                            chunks=(array.chunks[0],) + tuple((d,) for d in out_item),
                            meta=np.empty((0,) * out_nd, spec.dtype), **kw)


def map_partitions(model, bag, memory_budget="256MB", batch_size="auto", threads: Optional[int] = None,
                   embed: bool = False, measure_ms: int = batching.DEFAULT_MEASURE_MS, on_error: str = "raise"):
    """Runs `model` over a dask.bag of items (arrays, or tuples / dicts of
    arrays for several inputs); returns the bag of each item's outputs (an
    array, or a tuple for several outputs). on_error="skip" drops bad items."""
    ref = _ref(model, threads, embed)
    options = _options(memory_budget, batch_size, measure_ms, on_error)
    return bag.map_partitions(_run_items, ref, options)


def _run_frame(part, ref: ModelRef, columns, out_columns, options):
    import pandas as pd
    model = ref.get()
    x = part[columns].to_numpy(dtype=model.inputs[0].dtype)
    outs = [np.empty((len(part),) + tuple(t.shape[1:]), t.dtype) for t in model.outputs]
    if len(part):
        batching.map(model, x, progress=False, out=outs, **options)
    flat = np.concatenate([o.reshape(len(part), -1) for o in outs], axis=1)
    return pd.DataFrame(flat, index=part.index, columns=out_columns)


def map_dataframe(model, frame, columns=None, output_columns=None, memory_budget="256MB", batch_size="auto",
                  threads: Optional[int] = None, embed: bool = False,
                  measure_ms: int = batching.DEFAULT_MEASURE_MS):
    """Runs a one-input model whose items are vectors over the rows of a
    dask.dataframe (`columns`, default all, in order, as the item); returns a
    dask.dataframe with the same index and one column per output value
    (`output_columns`, default "<output>_<j>")."""
    ref = _ref(model, threads, embed)
    m = ref.get()
    specs = batching._item_specs(m)
    columns = list(frame.columns) if columns is None else list(columns)
    if len(specs) != 1 or specs[0][1] != (len(columns),):
        raise InvalidArgumentError(f"map_dataframe needs a one-input model taking items of [{len(columns)}] "
                                   f"(the columns); it takes {[list(s[1]) for s in specs]}")
    widths = [int(np.prod(t.shape[1:], dtype=np.int64)) for t in m.outputs]
    if output_columns is None:
        output_columns = [f"{t.name}_{j}" for t, w in zip(m.outputs, widths) for j in range(w)]
    output_columns = list(output_columns)
    if len(output_columns) != sum(widths):
        raise InvalidArgumentError(f"{len(output_columns)} output_columns for {sum(widths)} output values")
    import pandas as pd
    dtype = np.result_type(*[t.dtype for t in m.outputs])
    meta = pd.DataFrame({c: np.empty(0, dtype) for c in output_columns})
    options = _options(memory_budget, batch_size, measure_ms, "raise")
    return frame.map_partitions(_run_frame, ref, columns, output_columns, options, meta=meta)


def map(model, collection, **options):
    """map_blocks for a dask.array, map_partitions for a dask.bag,
    map_dataframe for a dask.dataframe."""
    if isinstance(collection, da.Array):
        return map_blocks(model, collection, **options)
    if isinstance(collection, db.Bag):
        return map_partitions(model, collection, **options)
    try:
        import dask.dataframe as dd
        if isinstance(collection, dd.DataFrame):
            return map_dataframe(model, collection, **options)
    except ImportError:
        pass
    raise InvalidArgumentError(f"tinyinfer.dask.map takes a dask.array, dask.bag or dask.dataframe, "
                               f"got {type(collection).__name__}")
