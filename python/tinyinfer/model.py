"""Models and sessions over the C library."""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import threading
import weakref
from collections import OrderedDict
from ctypes import byref, c_char_p, c_int32, c_int64, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib
from . import prepack_cache as _prepack
from ._load_any import Converted as _Converted
from ._dtypes import TO_NUMPY
from ._dynamic import DYNAMIC_DIMS_KEY, parse_dynamic_dims
from ._errors import InvalidArgumentError, InvalidStateError, ModelFormatError, TinyInferRuntimeError

L = _lib.lib
_run_unchecked = _lib.session_run_unchecked
_ndarray = np.ndarray  # the run fast paths' type test (a module global: one lookup less)


@dataclass(frozen=True)
class TensorDetail:
    """Any tensor of the loaded graph: kind is 'computed', 'constant' (from the
    file), 'folded' (computed once at load) or 'input'."""
    index: int
    name: str
    dtype: np.dtype
    shape: Tuple[int, ...]
    nbytes: int
    kind: str
    quant_axis: Optional[int]
    scales: Optional[np.ndarray]
    zero_points: Optional[np.ndarray]


@dataclass(frozen=True)
class OpDetail:
    index: int
    op: str
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]


LOAD_NO_GRAPH_PASSES = 1  # TINF_LOAD_NO_GRAPH_PASSES
LOAD_DENSE = 2  # TINF_LOAD_DENSE
LOAD_SPARSE_ALWAYS = 4  # TINF_LOAD_SPARSE_ALWAYS

_KINDS = {0: "computed", 1: "constant", 2: "folded", 3: "input"}


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, numpy dtype and shape."""
    name: str
    dtype: np.dtype
    shape: Tuple[int, ...]
    # Dims besides the batch (0) that a run may give another size (a sequence length; _dynamic.py); the
    # shape holds an example size for them.
    dynamic: Tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _info(raw: _lib.TensorInfo) -> TensorInfo:
    return TensorInfo(raw.name.decode("utf-8", "replace"), TO_NUMPY[raw.dtype],
                      tuple(int(raw.dims[i]) for i in range(raw.rank)))


DEFAULT_SHAPE_SESSIONS = 4

# For tinyinfer.Monitor (monitor.py): the open models and sessions, and the
# function a new session is handed to while a monitor is active (None
# otherwise, so no monitoring costs nothing).
_live_models: "weakref.WeakSet[Model]" = weakref.WeakSet()
_live_sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()
_session_hook = None


class _OnFirstUse:
    """A read-only attribute asked of the library on first read: the owner's
    method `fill` sets the dict `store` (attribute name -> value) for all the
    attributes it serves. Descriptors rather than __getattr__: a class with
    __getattr__ loses CPython's specialized attribute loads on every instance
    attribute, which the run paths use (0.3 us a run in a first try)."""

    def __init__(self, store: str, fill: str, doc: str):
        self.store, self.fill, self.__doc__ = store, fill, doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        values = getattr(obj, self.store)
        if values is None:
            getattr(obj, self.fill)()
            values = getattr(obj, self.store)
        return values[self.name]


class Model:
    """A loaded .tinf model. Use `tinyinfer.load`.

    `run` uses internal sessions guarded by one lock, so it is safe from any
    thread; to run in parallel, give each thread its own `session()`. One
    session runs the file's input shapes; inputs with another batch size run
    on a session made for that shape, and the `shape_sessions` most recently
    used of those are kept (least recently used closed first).

    `prepack`: what the prepack cache did at load (docs/caching.md): `state`
    ("hit": packed weights mapped from the cache; "miss", "rejected" (with
    `note`): packed at load; "off"), `from_image`, `packed_at_load`,
    `written`, `write_note`, `image`.
    """

    def __init__(self, source: Union[str, os.PathLike, bytes, bytearray, memoryview], threads: int = 1,
                 optimize: bool = True, shape_sessions: int = DEFAULT_SHAPE_SESSIONS, sparse: bool = True,
                 max_work: Optional[int] = None, result_cache=None, prepack_cache=True):
        self._handle = None
        self._description = None
        self.max_work = _check_max_work(max_work)
        self._buffer = None
        self._lock = threading.Lock()
        self._session = None
        # input shapes -> Session, least recently used first
        self._sessions_by_shape: "OrderedDict[tuple, Session]" = OrderedDict()
        # a single-input model's sessions by their input shape, for run's fast path
        self._fast: Dict[tuple, Session] = {}
        if not isinstance(shape_sessions, int) or shape_sessions < 1:
            raise InvalidArgumentError(f"shape_sessions must be an int >= 1, got {shape_sessions!r}")
        self.shape_sessions = shape_sessions
        if sparse not in (True, False, "always"):
            raise InvalidArgumentError(f"sparse must be True, False or 'always', got {sparse!r}")
        flags = ((0 if optimize else LOAD_NO_GRAPH_PASSES) | (0 if sparse else LOAD_DENSE)
                 | (LOAD_SPARSE_ALWAYS if sparse == "always" else 0))
        self._view_of_handle = isinstance(source, _lib.ModelHandle)
        if self._view_of_handle:
            handle = source  # a C model made by the library (tinyinfer.subgraph's views): adopted
            self._buffer = b""
            self._prepack = {"state": "off", "note": "a view: the parent's packed weights", "image": None,
                             "from_image": 0, "packed_at_load": 0, "written": False, "write_note": ""}
        elif isinstance(source, (bytes, bytearray, memoryview, _Converted)):
            content = None
            if isinstance(source, _Converted):  # from tinyinfer.load's conversion (cache)
                source, content = source
            if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 1 \
                    and source.flags.c_contiguous and source.ctypes.data % 64 == 0:
                self._buffer = source  # aligned already (read from the conversion cache): borrowed as it is
            else:
                # The library borrows an aligned buffer: keep a copy alive with the model.
                buf = np.frombuffer(bytes(source), dtype=np.uint8)
                aligned = np.empty(buf.size + 64, dtype=np.uint8)
                off = (-aligned.ctypes.data) % 64
                self._buffer = aligned[off:off + buf.size]
                self._buffer[:] = buf
            handle, self._prepack = _prepack.load_handle(None, flags, prepack_cache, self._buffer, self._buffer,
                                                         content)
        else:
            # A hit leaves the stats to be made when asked (`prepack`): the load is one library call.
            handle, self._prepack = _prepack.load_path(_fs_path(source), flags, prepack_cache, source)
            self._prepack_of = (prepack_cache, source, flags)
        # where the model came from (batch plans and tinyinfer.dask key on it)
        self.path: Optional[str] = None if self._buffer is not None else os.path.abspath(os.fspath(source))
        self._handle = handle
        self.parent: Optional[Model] = None  # the model a view (Model.subgraph, split) was made from
        self.threads = threads
        self.optimize = optimize
        self._set_result_cache(result_cache, self._buffer if self._buffer is not None else self.path, flags)
        _live_models.add(self)

    # Asked of the library on first read (`_describe`), not at load.
    inputs = _OnFirstUse("_description", "_describe", "The inputs (name, dtype, shape).")
    outputs = _OnFirstUse("_description", "_describe", "The outputs (name, dtype, shape).")
    metadata = _OnFirstUse("_description", "_describe", "The file's metadata entries.")
    num_ops = _OnFirstUse("_description", "_describe", "Ops after load (constant folding, passes).")
    num_tensors = _OnFirstUse("_description", "_describe", "Tensors after load.")
    weight_bytes = _OnFirstUse("_description", "_describe", "Bytes of the constant weights.")

    def _describe(self) -> None:
        """Sets inputs, outputs, metadata, num_ops, num_tensors and weight_bytes from the library."""
        handle = self.handle
        n = c_int32()
        L.tinf_model_input_count(handle, byref(n))
        raw = _lib.TensorInfo()
        ins = []
        for i in range(n.value):
            L.tinf_model_input_info(handle, i, byref(raw))
            ins.append(_info(raw))
        L.tinf_model_output_count(handle, byref(n))
        outs = []
        for i in range(n.value):
            L.tinf_model_output_info(handle, i, byref(raw))
            outs.append(_info(raw))
        L.tinf_model_metadata_count(handle, byref(n))
        meta = {}
        k, v = c_char_p(), c_char_p()
        for i in range(n.value):
            L.tinf_model_metadata(handle, i, byref(k), byref(v))
            meta[k.value.decode("utf-8", "replace")] = v.value.decode("utf-8", "replace")
        if DYNAMIC_DIMS_KEY in meta and not self._view_of_handle:  # a view's inputs are others
            dyn = parse_dynamic_dims(meta[DYNAMIC_DIMS_KEY], [len(t.shape) for t in ins])
            ins = [dataclasses.replace(t, dynamic=d) for t, d in zip(ins, dyn)]
        ops, tensors, weights = c_int32(), c_int32(), c_size_t()
        L.tinf_model_stats(handle, byref(ops), byref(tensors), byref(weights))
        self._description = {"inputs": ins, "outputs": outs, "metadata": meta, "num_ops": ops.value,
                             "num_tensors": tensors.value, "weight_bytes": weights.value}

    @property
    def prepack(self) -> dict:
        """What the prepack cache did at this load (see the class's doc)."""
        if self._prepack is None:  # a hit of load_path: the stats made now
            self._prepack = _prepack.hit_stats(self.handle, *self._prepack_of)
        return self._prepack

    # -- inspection ---------------------------------------------------------
    def tensors(self) -> List[TensorDetail]:
        """Every tensor of the graph as loaded (after constant folding)."""
        n = c_int32()
        L.tinf_model_tensor_count(self.handle, byref(n))
        d = _lib.TensorDetail()
        out = []
        for i in range(n.value):
            L.tinf_model_tensor_detail(self.handle, i, byref(d))
            q = d.quant_count
            out.append(TensorDetail(
                i, d.name.decode("utf-8", "replace"), TO_NUMPY[d.dtype], tuple(int(d.dims[j]) for j in range(d.rank)),
                int(d.nbytes), _KINDS.get(d.kind, "?"), (None if d.quant_axis < 0 else d.quant_axis) if q else None,
                np.ctypeslib.as_array(d.scales, (q,)).copy() if q else None,
                np.ctypeslib.as_array(d.zero_points, (q,)).copy() if q else None))
        return out

    def ops(self) -> List[OpDetail]:
        """The ops as they run (after constant folding), in order."""
        names = {v: k for k, v in _lib.OP_IDS.items()}
        out = []
        op, ni, no = c_int32(), c_int32(), c_int32()
        ins, outs = ctypes.POINTER(c_int32)(), ctypes.POINTER(c_int32)()
        for i in range(self.num_ops):
            L.tinf_model_op(self.handle, i, byref(op), byref(ni), byref(ins), byref(no), byref(outs))
            out.append(OpDetail(i, names.get(op.value, str(op.value)), tuple(ins[j] for j in range(ni.value)),
                                tuple(outs[j] for j in range(no.value))))
        return out

    @property
    def sizes(self) -> Dict[str, int]:
        """Bytes of the file's header, graph section and data section, and
        the bytes constant folding added in memory."""
        h, g, d, f = c_size_t(), c_size_t(), c_size_t(), c_size_t()
        L.tinf_model_sizes(self.handle, byref(h), byref(g), byref(d), byref(f))
        return {"header": h.value, "graph": g.value, "data": d.value, "folded": f.value}

    @property
    def passes(self) -> List[str]:
        """What the load-time passes did, one line each in order: constant
        folding ("fold constant Dequantize -> w1"), then the graph passes
        ("fold BatchNorm 'bn' into Conv2D 'conv'", "fuse Relu 'r' into Conv2D
        'bn'", "reorder: arena 53440 -> 34496 B", ...)."""
        n = c_int32()
        L.tinf_model_pass_count(self.handle, byref(n))
        text = c_char_p()
        out = []
        for i in range(n.value):
            L.tinf_model_pass(self.handle, i, byref(text))
            out.append(text.value.decode("utf-8", "replace"))
        return out

    @property
    def load_seconds(self) -> float:
        """How long loading took inside the library (map, parse, validate, fold)."""
        ns = ctypes.c_uint64()
        L.tinf_model_load_ns(self.handle, byref(ns))
        return ns.value * 1e-9

    def profile(self, inputs, runs: int = 20) -> List[Tuple[str, float]]:
        """Per-op median times in seconds over `runs` runs: [(op name, seconds)]."""
        with self._lock:
            return self._main_session().profile(inputs, runs)

    # -- lifetime -----------------------------------------------------------
    def close(self) -> None:
        """Frees the model (sessions made from it stay valid). Idempotent.
        Waits for a `run` in progress on another thread; a later `run`
        raises InvalidStateError. Arrays returned with copy=False keep their
        session's memory alive (and valid) until they are dropped."""
        self._close(True)

    def _close(self, keep_descriptions: bool) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            for s in self._sessions_by_shape.values():
                s.close()
            self._sessions_by_shape.clear()
            self._fast.clear()
            if self._handle is not None:
                if keep_descriptions and self._description is None:
                    self._describe()  # inputs, outputs, ... stay readable after close, as before
                L.tinf_model_free(self._handle)
                self._handle = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self._close(False)
        except Exception:
            pass

    @property
    def handle(self) -> _lib.ModelHandle:
        if self._handle is None:
            raise InvalidStateError("the model is closed")
        return self._handle

    # -- running ------------------------------------------------------------
    def session(self, threads: int | None = None, input_shapes=None, max_work: Optional[int] = None) -> "Session":
        """A new session (its own arena); use one per thread to run in parallel.
        `input_shapes` (a list in input order, None entries keep the file's)
        runs the model on other shapes, for example another batch size.
        `max_work`: the session's work limit (default: the model's)."""
        return Session(self, self.threads if threads is None else threads, input_shapes,
                       self.max_work if max_work is None else max_work)

    def _main_session(self) -> "Session":
        """The session of the file's shapes (the caller holds the lock)."""
        if self._handle is None:
            raise InvalidStateError("the model is closed")
        if self._session is None:
            self._session = self._new_session()
            self._register_fast(self._session, None)
        return self._session

    def _register_fast(self, session: "Session", lru_key) -> None:
        """Makes `session` the one run's fast path takes for its input shape
        (single-input models; the caller holds the lock). `lru_key`: its key
        in the shape sessions' LRU cache (None for the main session)."""
        if session._fast_io is not None:
            session._fast_io = session._fast_io[:4] + (lru_key,)
            self._fast[session.inputs[0].shape] = session

    def run(self, inputs=None, copy: bool = True, check_finite: bool = False, *, outputs=None,
            from_tensors=None) -> List[np.ndarray]:
        # Fast path (the common call, kept short: Python's per-call cost is a
        # large part of a small model's latency): one array whose shape a
        # session of this model was made for and whose dtype is the input's,
        # no options. The copy into the session's input buffer takes any
        # strides. Everything else takes the general path, which checks it.
        # A result cache lives in the library (bound to the session), so the
        # fast path serves cached models too.
        # The lock is taken with acquire / try / finally rather than `with`:
        # about 0.2 us less per call (BENCHMARKS.md, PyTorch, "Latest") on a
        # path of about a microsecond of Python.
        if type(inputs) is _ndarray and not check_finite and outputs is None and from_tensors is None:
            lock = self._lock
            lock.acquire()
            try:
                s = self._fast.get(inputs.shape)
                if s is not None:
                    io = s._fast_io
                    if inputs.dtype is io[2]:
                        if io[4] is not None:
                            self._sessions_by_shape.move_to_end(io[4])
                        return s._run_io(io, inputs, copy)
            finally:
                lock.release()
        if outputs is not None or from_tensors is not None:
            from .subgraph import run_partial_model
            return run_partial_model(self, inputs, outputs, from_tensors, copy, check_finite)
        return self._run(inputs, copy, check_finite)

    def _run(self, inputs, copy: bool = True, check_finite: bool = False) -> List[np.ndarray]:
        """Runs the model. `inputs`: an array, a list of arrays (in input order)
        or a dict of input name to array. Returns a list of numpy arrays
        (with copy=False, read-only views whose contents change with the next
        `run`; they keep the session's memory alive, so they stay readable
        after close). `check_finite=True` raises InvalidArgumentError for a
        float input with NaN or infinite values and TinyInferRuntimeError for
        such an output, naming it.

        Inputs whose batch (first) dimension or dynamic dims (`inputs[i].dynamic`,
        a sequence length left open at conversion) differ from the file's run on
        a session made for those shapes (shapes inferred through the graph, the
        arena planned and shape arithmetic computed for them; a shape the graph
        cannot take is refused naming the op). The model keeps the `shape_sessions`
        (4 by default) most recently used of them for the next calls and
        closes the least recently used one when another shape comes."""
        with self._lock:
            session = self._main_session()
            if isinstance(inputs, np.ndarray) and len(self.inputs) == 1 and inputs.shape == self.inputs[0].shape:
                return session.run(inputs, copy=copy, check_finite=check_finite)
            shapes = _batch_shapes(self.inputs, inputs)
            if shapes is None:
                return session.run(inputs, copy=copy, check_finite=check_finite)
            return self._shape_session(shapes).run(inputs, copy=copy, check_finite=check_finite)

    run.__doc__ = _run.__doc__ + """
        With a `result_cache` (tinyinfer.ResultCache), inputs seen before
        (same bytes, shapes and dtypes) are answered from the cache: the
        run call copies the stored outputs into the session's output
        buffers, and `run` returns them as after any run.

        `outputs=["name", ...]` returns those tensors (graph outputs or
        intermediate tensors, by name) and runs only the ops they need;
        `from_tensors={"name": array}` starts from given values of
        intermediate tensors and skips what is upstream of them (`inputs`
        then holds only the graph inputs still needed, as a dict, or None).
        See Session.run; the result cache is not used for these runs."""

    def subgraph(self, inputs=(), outputs=None, add_graph_inputs: bool = False) -> "Model":
        """A model from the tensors named `inputs` to those named `outputs`
        (default: this model's outputs) that runs only the ops between them,
        sharing this model's weights (bit-identical results); see
        tinyinfer.subgraph."""
        from .subgraph import subgraph
        return subgraph(self, inputs, outputs, add_graph_inputs)

    def split(self, at) -> Tuple["Model", "Model"]:
        """(backbone, head): the backbone from this model's inputs to the
        tensors named `at`, the head from those tensors to this model's
        outputs; see tinyinfer.subgraph.split."""
        from .subgraph import split
        return split(self, at)

    def to_bytes(self) -> bytes:
        """The model as .tinf bytes: its graph as loaded (after the load-time
        passes) with the constants its ops read. For a view (`subgraph`,
        `split`) that is the view alone, so a backbone or a head saved and
        loaded again gives the same results bit for bit
        (tinf_model_serialize). A model with control-flow subgraphs (If /
        While) is refused (UnsupportedOpError)."""
        n = c_size_t()
        L.tinf_model_serialize(self.handle, None, 0, byref(n))
        buf = ctypes.create_string_buffer(n.value)
        L.tinf_model_serialize(self.handle, buf, n.value, byref(n))
        return buf.raw[:n.value]

    def save(self, path: Union[str, os.PathLike]) -> int:
        """Writes `to_bytes()` as a .tinf file atomically (tinyinfer._atomic);
        returns its size in bytes."""
        from ._atomic import write_atomic
        data = self.to_bytes()
        write_atomic(path, data)
        return len(data)

    # -- the result cache (tinyinfer.ResultCache, docs/caching.md) ----------
    def _set_result_cache(self, result_cache, source, flags: int) -> None:
        """At load: the cache, keyed by the sha256 of the model's bytes and the load flags."""
        self._result_cache = None
        self._model_id = None
        if result_cache is None:
            return  # (the setter's import and lock cost every load tens of us)
        from .result_cache import model_identity
        self._model_id = model_identity(source, flags)
        self.result_cache = result_cache

    @property
    def result_cache(self):
        """The tinyinfer.ResultCache `run` answers from, or None. Setting it
        (another cache, or None to turn it off) rebinds the sessions `run`
        uses. A model with variables is refused (InvalidArgumentError)."""
        return self._result_cache

    @result_cache.setter
    def result_cache(self, cache) -> None:
        from .result_cache import ResultCache
        if cache is not None and not isinstance(cache, ResultCache):
            raise InvalidArgumentError(f"result_cache must be a tinyinfer.ResultCache, got {type(cache).__name__}")
        with self._lock:
            if cache is not None and self._model_id is None:
                # set after load: keyed by the model as loaded (its bytes as tinf_model_serialize writes them)
                import hashlib
                self._model_id = hashlib.sha256(b"tinyinfer-loaded\0" + self.to_bytes()).digest()
            old, self._result_cache = self._result_cache, cache
            try:
                sessions = [self._main_session(), *self._sessions_by_shape.values()] if cache is not None else \
                    [x for x in [self._session, *self._sessions_by_shape.values()] if x is not None]
                for sess in sessions:
                    if cache is None:
                        ResultCache.unbind(sess)
                    else:
                        cache.bind(sess, self._model_id)  # a model the cache cannot serve is refused here
            except BaseException:
                self._result_cache = old
                raise

    def _new_session(self, shapes=None) -> "Session":
        """A session of `run` (the file's shapes, or `shapes`), bound to the result cache if any."""
        s = Session(self, self.threads, list(shapes) if shapes is not None else None, self.max_work)
        if self._result_cache is not None:
            try:
                self._result_cache.bind(s, self._model_id)
            except BaseException:
                s.close()
                raise
        return s

    def _shape_session(self, shapes) -> "Session":
        """The session for these input shapes, from the LRU cache or new (the
        caller holds the lock)."""
        cache = self._sessions_by_shape
        s = cache.get(shapes)
        if s is not None:
            cache.move_to_end(shapes)
            return s
        s = self._new_session(shapes)
        cache[shapes] = s
        self._register_fast(s, shapes)
        while len(cache) > self.shape_sessions:
            _, old = cache.popitem(last=False)
            if len(old.inputs) == 1 and self._fast.get(old.inputs[0].shape) is old:
                del self._fast[old.inputs[0].shape]
            old.close()
        return s

    def reset_state(self) -> None:
        """Sets the variables of the model's sessions (`run`'s, one per input
        shape) back to their initial values: a stateful model (docs/ops.md,
        "State") starts a new stream. Sessions made with `session()` keep
        their own state (`Session.reset_state`)."""
        with self._lock:
            if self._handle is None:
                raise InvalidStateError("the model is closed")
            for s in [self._session, *self._sessions_by_shape.values()]:
                if s is not None:
                    s.reset_state()

    @property
    def arena_bytes(self) -> int:
        """Bytes of a session's arena."""
        with self._lock:
            return self._main_session().arena_bytes

    # -- batch processing (tinyinfer.batching, docs/batching.md) -------------
    def batch_plan(self, memory_budget="256MB", threads: int | None = None, **options):
        """The batch size to run at under `memory_budget`: the largest whose
        arena + weights fit (from the planner) and the best measured
        throughput up to it; see tinyinfer.batching.batch_plan."""
        from . import batching
        return batching.batch_plan(self, memory_budget, threads, **options)

    def map(self, inputs, batch_size="auto", memory_budget="256MB", progress: bool = True, out=None,
            on_error: str = "raise", **options):
        """Runs the model over `inputs` in batches: an iterable of items, an
        array or memmap (items along axis 0), a .npy / .npz file or a folder of
        them. Yields each item's outputs in order, or with `out` (an array, a
        list of arrays, a .npy path or a folder) writes them there and returns
        when done. Memory stays within `memory_budget` whatever the data size;
        a bad item raises BadItemError (on_error="raise") or is skipped and
        listed in `.skipped`. See tinyinfer.batching.map."""
        from . import batching
        return batching.map(self, inputs, batch_size, memory_budget, progress, out, on_error, **options)

    def __repr__(self) -> str:
        if self._description is None and self._handle is None:
            return "<tinyinfer.Model (closed)>"
        ins = ", ".join(f"{t.name}:{t.dtype}{list(t.shape)}" for t in self.inputs)
        outs = ", ".join(f"{t.name}:{t.dtype}{list(t.shape)}" for t in self.outputs)
        return f"<tinyinfer.Model {self.num_ops} ops ({ins}) -> ({outs})>"


def _input_list(specs, inputs) -> list:
    """The inputs as a list in input order (None for a name a dict lacks)."""
    if isinstance(inputs, dict):
        return [inputs.get(t.name) for t in specs]
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    return [inputs]


def _one_element(shape, specs, i) -> bool:
    """Whether `shape` and input i's shape both hold one element (a scalar
    given for a [1] input: the converters write scalars as [1])."""
    try:
        return i < len(specs) and int(np.prod(tuple(shape))) == 1 and int(np.prod(specs[i].shape)) == 1
    except (TypeError, ValueError):
        return False


def _batch_shapes(specs, inputs):
    """The input shapes when they differ from the file's only in the first
    dimension (a batch) and the dynamic dims (TensorInfo.dynamic), else None."""
    arrays = _input_list(specs, inputs)
    if len(arrays) != len(specs):
        return None
    shapes, differs = [], False
    for a, spec in zip(arrays, specs):
        shape = tuple(np.shape(a)) if a is not None else spec.shape
        if shape != spec.shape:
            if len(shape) != len(spec.shape) or not shape or any(
                    a != b for d, (a, b) in enumerate(zip(shape, spec.shape)) if d and d not in spec.dynamic):
                return None
            differs = True
        shapes.append(shape)
    return tuple(shapes) if differs else None


def _fs_path(source) -> bytes:
    """A path for the C library: refused when it holds a NUL byte (C would
    read it only up to the NUL, so another file would be opened)."""
    try:
        path = os.fsencode(os.fspath(source))
    except TypeError as e:
        raise InvalidArgumentError(f"a model is a path or bytes, got {type(source).__name__}") from e
    if b"\0" in path:
        raise InvalidArgumentError(f"the model path {os.fsdecode(path)!r} contains a NUL byte")
    return path


def _check_max_work(max_work):
    if max_work is None:
        return None
    if isinstance(max_work, bool) or not isinstance(max_work, (int, np.integer)) or not 1 <= max_work < 2 ** 64:
        raise InvalidArgumentError(f"max_work must be an int in 1...2^64-1, got {max_work!r}")
    return int(max_work)


def _check_finite(arrays, specs, what: str) -> None:
    """Raises for the first float array with NaN or infinite values (check_finite=True)."""
    for a, spec in zip(arrays, specs):
        a = np.asarray(a)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = a.size - int(np.isfinite(a).sum())
            msg = f"{what} '{spec.name}' has {bad} non-finite value(s) (NaN or infinite)"
            if what == "input":
                raise InvalidArgumentError(msg)
            raise TinyInferRuntimeError(msg)


class _SessionBuffer:
    """What a numpy view of a session buffer is made from (its base): the
    buffer's address, shape and dtype through the array interface, and the
    C session, kept alive by the view. (numpy reads an array interface in C;
    a ctypes array's buffer goes through numpy's PEP 3118 format parser,
    though the first view of a process measured about the same, 70 us,
    either way.)"""

    __slots__ = ("__array_interface__", "_owner")

    def __init__(self, address: int, shape: tuple, typestr: str, owner):
        self.__array_interface__ = {"data": (address, False), "shape": shape, "typestr": typestr, "version": 3}
        self._owner = owner


class _SessionMemory:
    """Owns a C session handle: frees it when the last reference goes. The
    Session holds one reference and each numpy view of its buffers another
    (through the ctypes buffer under the view), so an output returned with
    copy=False stays readable after the Session is closed."""

    def __init__(self, handle):
        self.handle = handle

    def __del__(self):
        if self.handle is not None and L is not None:
            L.tinf_session_free(self.handle)
            self.handle = None


class Session:
    """One execution context of a model: used by one thread at a time
    (calls from several threads are serialized by its lock)."""

    def __init__(self, model: Model, threads: int = 1, input_shapes=None, max_work: Optional[int] = None):
        self._handle = None
        self._memory = None
        self._figures_of = None
        self.model = model
        max_work = _check_max_work(max_work)
        h = _lib.SessionHandle()
        if type(threads) is int and threads == 1 and max_work is None and not input_shapes:
            # The library's defaults (one thread, the default work limit, the
            # file's shapes): no options object (three calls less per session).
            L.tinf_session_create(model.handle, None, byref(h))
        else:
            opts = _lib.OptionsHandle()
            L.tinf_options_create(byref(opts))
            try:
                L.tinf_options_set_threads(opts, int(threads))
                if max_work is not None:
                    L.tinf_options_set_max_work(opts, max_work)
                for i, shape in enumerate(input_shapes or []):
                    if shape is not None and _one_element(shape, model.inputs, i):
                        shape = None  # a scalar for a one-element input (the converters write scalars as [1])
                    if shape is not None:
                        dims = (c_int64 * max(len(shape), 1))(*shape)
                        L.tinf_options_set_input_shape(opts, i, len(shape), dims)
                L.tinf_session_create(model.handle, opts, byref(h))
            finally:
                L.tinf_options_free(opts)
        self._handle = h
        self._memory = _SessionMemory(h)
        raw = _lib.TensorInfo()
        self.inputs, self.outputs = [], []
        n = c_int32()
        L.tinf_model_input_count(model.handle, byref(n))
        for i in range(n.value):
            L.tinf_session_input_info(h, i, byref(raw))
            self.inputs.append(_info(raw))
        L.tinf_model_output_count(model.handle, byref(n))
        for i in range(n.value):
            L.tinf_session_output_info(h, i, byref(raw))
            self.outputs.append(_info(raw))
        # numpy views of the session's input and output buffers: their
        # addresses are fixed for the session's lifetime.
        self._in_views = [self._view(i, t, False) for i, t in enumerate(self.inputs)]
        self._out_views = [self._view(i, t, True) for i, t in enumerate(self.outputs)]
        self._lock = threading.Lock()
        self._single = ((self.inputs[0].shape, np.dtype(self.inputs[0].dtype))
                        if len(self.inputs) == 1 else None)
        self._single_name = self.inputs[0].name if len(self.inputs) == 1 else None
        # The fast paths' view of a single-input session: (input buffer, C
        # handle, input dtype, the output buffer if there is only one, the
        # session's key in its model's LRU cache of shape sessions or None).
        self._fast_io = ((self._in_views[0], h, self._single[1],
                          self._out_views[0] if len(self._out_views) == 1 else None, None)
                         if self._single is not None else None)
        _live_sessions.add(self)
        if _session_hook is not None:
            _session_hook(self)

    # Asked of the library on first read (`_figures`), not when the session is made.
    arena_bytes = _OnFirstUse("_figures_of", "_figures", "Bytes of the arena (intermediate tensors).")
    unplanned_bytes = _OnFirstUse("_figures_of", "_figures", "Bytes the tensors would take without reuse.")
    threads = _OnFirstUse("_figures_of", "_figures", "Threads the session runs on.")
    work = _OnFirstUse("_figures_of", "_figures",
                       "Multiply-adds or element visits per run (docs/format.md, Limits).")

    def _figures(self) -> None:
        """Sets arena_bytes, unplanned_bytes, threads and work (multiply-adds or
        element visits per run: docs/format.md, Limits) from the library."""
        h = self._handle
        if h is None:
            raise InvalidStateError("the session is closed")
        arena, unplanned = c_size_t(), c_size_t()
        L.tinf_session_arena_bytes(h, byref(arena), byref(unplanned))
        t = c_int32()
        L.tinf_session_threads(h, byref(t))
        work = ctypes.c_uint64()
        L.tinf_session_work(h, byref(work))
        self._figures_of = {"arena_bytes": arena.value, "unplanned_bytes": unplanned.value, "threads": t.value,
                            "work": work.value}

    def close(self) -> None:
        """Closes the session: waits for a run in progress on another thread;
        later runs raise InvalidStateError. The C session is freed once no
        array returned with copy=False refers to its memory. Idempotent."""
        self._close(True)

    def _close(self, keep_figures: bool) -> None:
        lock = self.__dict__.get("_lock")
        if lock is None:  # __init__ failed before the lock existed
            self._handle = None
            self._memory = None
            return
        with lock:
            if keep_figures and self._handle is not None and self._figures_of is None:
                self._figures()  # readable after close, as before
            self._handle = None
            self._in_views = self._out_views = []
            self._fast_io = None
            self._memory = None
            for s in getattr(self, "_partials", {}).values():  # tinyinfer.subgraph's sessions of this one
                s.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self._close(False)
        except Exception:
            pass

    def _arrays(self, inputs) -> List[np.ndarray]:
        """The inputs as a list in input order, with shapes checked (dtypes are
        checked by the copy into the session's buffers)."""
        specs = self.inputs
        if isinstance(inputs, np.ndarray):
            arrays = [inputs]
        elif isinstance(inputs, dict):
            names = [t.name for t in specs]
            unknown = set(inputs) - set(names)
            if unknown:
                raise InvalidArgumentError(f"unknown input name(s) {sorted(unknown)}; the model takes {names}")
            missing = [n for n in names if n not in inputs]
            if missing:
                raise InvalidArgumentError(f"missing input(s) {missing}")
            arrays = [inputs[n] for n in names]
        elif isinstance(inputs, (list, tuple)):
            arrays = list(inputs)
        else:
            arrays = [inputs]
        if len(arrays) != len(specs):
            raise InvalidArgumentError(f"the model takes {len(specs)} input(s), got {len(arrays)}")
        for k, (a, spec) in enumerate(zip(arrays, specs)):
            if not isinstance(a, np.ndarray):
                a = arrays[k] = np.asarray(a)
            if a.shape != spec.shape and a.size == 1 and int(np.prod(spec.shape)) == 1:
                a = arrays[k] = a.reshape(spec.shape)  # a scalar for a [1] input (the converters' scalars)
            if a.shape != spec.shape:
                raise InvalidArgumentError(
                    f"input '{spec.name}' has shape {list(spec.shape)}, got {list(a.shape)}")
        return arrays

    def _set_inputs(self, arrays) -> None:
        # Copy straight into the session's input buffers (fixed for its
        # lifetime): one numpy copy per input, casting only within a kind.
        for a, view, spec in zip(arrays, self._in_views, self.inputs):
            try:
                np.copyto(view, a, casting="same_kind")
            except TypeError:
                raise InvalidArgumentError(f"input '{spec.name}' takes {spec.dtype}, got {a.dtype}") from None

    def run(self, inputs=None, copy: bool = True, check_finite: bool = False, *, outputs=None,
            from_tensors=None) -> List[np.ndarray]:
        """Sets the inputs, runs, and returns the outputs (copies; with
        copy=False, read-only views of the session's buffers whose contents
        change with the next run; they keep the buffers alive after close).
        `check_finite=True`: InvalidArgumentError for a float input with NaN
        or infinite values, TinyInferRuntimeError for such an output.

        `outputs=["name", ...]`: returns those tensors instead (graph outputs
        or intermediate tensors, by name, in this order) and runs only the
        ops they need. `from_tensors={"name": array}`: takes those tensors'
        values as given and skips the ops upstream of them; `inputs` then
        gives the graph inputs still needed (a dict by name, or all inputs as
        usual), or None. Each combination runs on a session of a
        tinyinfer.subgraph view, made on first use and kept (the 8 most
        recently used) with this session."""
        if outputs is not None or from_tensors is not None:
            from .subgraph import run_partial
            return run_partial(self, inputs, outputs, from_tensors, copy, check_finite)
        if check_finite:
            arrays = self._arrays(inputs)
            _check_finite(arrays, self.inputs, "input")
            outs = self.run(arrays, copy=copy)
            _check_finite(outs, self.outputs, "output")
            return outs
        # Fast path (the common call, kept short: Python's per-call cost is
        # a large part of a small model's latency): one input, given as an
        # array, a list of one array or a dict of one entry under the input's
        # name, of exactly the input's shape and dtype.
        if self._single is not None:
            kind = type(inputs)
            if kind is list and len(inputs) == 1:
                a = inputs[0]
            elif kind is dict and len(inputs) == 1:
                a = inputs.get(self._single_name)
            else:
                a = inputs
            if type(a) is _ndarray and a.shape == self._single[0] and a.dtype is self._single[1]:
                lock = self._lock  # acquire / try / finally: see Model.run
                lock.acquire()
                try:
                    io = self._fast_io
                    if io is None:
                        raise InvalidStateError("the session is closed")
                    return self._run_io(io, a, copy)
                finally:
                    lock.release()
        if self._handle is None:
            raise InvalidStateError("the session is closed")
        arrays = self._arrays(inputs)
        with self._lock:
            if self._handle is None:
                raise InvalidStateError("the session is closed")
            self._set_inputs(arrays)
            L.tinf_session_run(self._handle)
            if copy:
                return [v.copy() for v in self._out_views]
            return list(self._out_views)

    def _run_io(self, io, a, copy: bool) -> List[np.ndarray]:
        """The run of both fast paths (the caller holds the lock that guards
        this session and checked `a`'s shape and dtype): `a` into the input
        buffer, the C run, the outputs."""
        view, handle, _, out, _ = io
        view[...] = a
        status = _run_unchecked(handle)
        if status:
            _lib.check_status(status)
        if out is not None:  # one output
            return [out.copy()] if copy else [out]
        return [v.copy() for v in self._out_views] if copy else list(self._out_views)

    # -- state: resource variables (docs/ops.md, "State") --------------------
    @property
    def state_count(self) -> int:
        """The number of variables this session keeps across runs (0 for a
        model without ReadVariable / AssignVariable)."""
        with self._lock:
            if self._handle is None:
                raise InvalidStateError("the session is closed")
            n = c_int32()
            L.tinf_session_state_count(self._handle, byref(n))
            return n.value

    def reset_state(self) -> None:
        """Sets the session's variables back to their initial values (a new
        stream): the next run computes as the first run of a new session.
        Nothing to do for a model without variables."""
        with self._lock:
            if self._handle is None:
                raise InvalidStateError("the session is closed")
            L.tinf_session_reset_state(self._handle)

    def profile(self, inputs, runs: int = 20) -> List[Tuple[str, float]]:
        """Runs `runs` times recording each op's time; returns [(op name,
        median seconds)] in execution order."""
        if self._handle is None:
            raise InvalidStateError("the session is closed")
        arrays = self._arrays(inputs)
        ops = self.model.ops()
        samples = np.zeros((runs, len(ops)))
        with self._lock:
            if self._handle is None:
                raise InvalidStateError("the session is closed")
            self._set_inputs(arrays)
            ptr, n = ctypes.POINTER(ctypes.c_uint64)(), c_int32()
            for r in range(runs):
                L.tinf_session_run_profiled(self._handle, byref(ptr), byref(n))
                samples[r] = [ptr[j] for j in range(n.value)]
        med = np.median(samples, axis=0) * 1e-9
        return [(op.op, float(t)) for op, t in zip(ops, med)]

    def _view(self, i: int, spec: TensorInfo, output: bool) -> np.ndarray:
        ptr, n = c_void_p(), c_size_t()
        if output:
            L.tinf_session_output_data(self._handle, i, byref(ptr), byref(n))
        else:
            L.tinf_session_input_data(self._handle, i, byref(ptr), byref(n))
        dtype = np.dtype(spec.dtype)
        count = math.prod(spec.shape)
        if n.value != dtype.itemsize * count:
            raise InvalidStateError(f"the session's buffer {i} has {n.value} bytes, not those of {spec.shape} {dtype}")
        if count == 0 or not ptr.value:  # an empty tensor
            view = np.empty(spec.shape, dtype)
            if output:
                view.flags.writeable = False
            return view
        # The view keeps the C session (its arena) alive through its base.
        # An output's view is read-only by its flag, not by its base's: a
        # caller who insists can set it writable again (and then writes the
        # session's buffer, never a result cache's entry).
        view = np.asarray(_SessionBuffer(ptr.value, tuple(spec.shape), dtype.str, self._memory))
        if output:  # a view of the writable array: its flag can be set back
            view = view.view()
            view.flags.writeable = False
        return view


# Paths tried through resolve first (load): names of the formats the converters read. Only the order
# of the attempts: the format is always told from the bytes.
_OTHER_FORMAT_SUFFIXES = (".tflite", ".onnx", ".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".zip")


def load(source, threads: int = 1, optimize: bool = True, shape_sessions: int = DEFAULT_SHAPE_SESSIONS,
         sparse: bool = True, max_work: Optional[int] = None, *, cache: bool = True, result_cache=None,
         prepack_cache=True, **convert_options) -> Model:
    """Loads a model from a path or from bytes: a .tinf, or a .tflite, .onnx,
    torch.save or safetensors model (told apart by content), converted in
    memory with `convert_options` (tinyinfer.convert's: input_shapes,
    check_opset, architecture, ...) and the result kept in the conversion
    cache (tinyinfer.cache; `cache=False` converts every time).
    `optimize=False` skips the graph optimization passes (constant folding
    still runs). `sparse=False` keeps every op on the dense kernels (by
    default ops whose constant weights are mostly zeros run on sparse kernels,
    docs/pruning.md; `sparse="always"` runs every op that has a sparse kernel
    on it, for benchmarks). `shape_sessions`: how many sessions for other input shapes
    (batch sizes) `Model.run` keeps, least recently used closed first. `max_work`: the most
    multiply-adds or element visits one run may take (docs/format.md,
    Limits; default 2^33): a session over it is refused. `result_cache`: a
    tinyinfer.ResultCache that answers `Model.run` for inputs seen before
    (docs/caching.md). `prepack_cache`: where the packed weights are kept
    for the next load (True: the tinyinfer cache folder; a path: that
    folder; False: not at all; the environment variable
    TINYINFER_PREPACK_CACHE=0 turns it off too); `Model.prepack` reports
    what this load did (docs/caching.md)."""
    options = dict(threads=threads, optimize=optimize, shape_sessions=shape_sessions, sparse=sparse,
                   max_work=max_work, result_cache=result_cache, prepack_cache=prepack_cache)
    name = source if type(source) is str else os.fspath(source) if isinstance(source, os.PathLike) else None
    refused = None
    if type(name) is str and not convert_options and not name.endswith(_OTHER_FORMAT_SUFFIXES):
        # A path is tried as a .tinf first (the common load: its magic is read
        # once, by the library); a file the library refuses as not being one
        # goes through resolve, which converts other formats.
        try:
            return Model(source, **options)
        except ModelFormatError as e:
            refused = e
    from ._load_any import resolve
    resolved = resolve(source, cache=cache, **convert_options)
    if refused is not None and resolved is source:  # a .tinf after all (a damaged one): the library's error stands
        raise refused from None
    return Model(resolved, **options)
