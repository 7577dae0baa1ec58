"""Models and sessions over the C library."""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import byref, c_char_p, c_int32, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from . import _lib
from ._dtypes import TO_NUMPY
from ._errors import InvalidArgumentError, InvalidStateError

L = _lib.lib


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, numpy dtype and shape."""
    name: str
    dtype: np.dtype
    shape: Tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _info(raw: _lib.TensorInfo) -> TensorInfo:
    return TensorInfo(raw.name.decode("utf-8", "replace"), TO_NUMPY[raw.dtype],
                      tuple(int(raw.dims[i]) for i in range(raw.rank)))


class Model:
    """A loaded .tinf model. Use `tinyinfer.load`.

    `run` uses one internal session guarded by a lock, so it is safe from any
    thread; to run in parallel, give each thread its own `session()`.
    """

    def __init__(self, source: Union[str, os.PathLike, bytes, bytearray, memoryview], threads: int = 1):
        self._handle = None
        self._buffer = None
        self._lock = threading.Lock()
        self._session = None
        handle = _lib.ModelHandle()
        if isinstance(source, (bytes, bytearray, memoryview)):
            # The library borrows an aligned buffer: keep a copy alive with the model.
            buf = np.frombuffer(bytes(source), dtype=np.uint8)
            aligned = np.empty(buf.size + 64, dtype=np.uint8)
            off = (-aligned.ctypes.data) % 64
            self._buffer = aligned[off:off + buf.size]
            self._buffer[:] = buf
            L.tinf_model_load_buffer(self._buffer.ctypes.data, self._buffer.size, byref(handle))
        else:
            L.tinf_model_load_file(os.fsencode(os.fspath(source)), byref(handle))
        self._handle = handle
        self.threads = threads
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
        self.inputs: List[TensorInfo] = ins
        self.outputs: List[TensorInfo] = outs
        L.tinf_model_metadata_count(handle, byref(n))
        meta = {}
        k, v = c_char_p(), c_char_p()
        for i in range(n.value):
            L.tinf_model_metadata(handle, i, byref(k), byref(v))
            meta[k.value.decode("utf-8", "replace")] = v.value.decode("utf-8", "replace")
        self.metadata: Dict[str, str] = meta
        ops, tensors, weights = c_int32(), c_int32(), c_size_t()
        L.tinf_model_stats(handle, byref(ops), byref(tensors), byref(weights))
        self.num_ops, self.num_tensors, self.weight_bytes = ops.value, tensors.value, weights.value

    # -- lifetime -----------------------------------------------------------
    def close(self) -> None:
        """Frees the model (sessions made from it stay valid). Idempotent."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            if self._handle is not None:
                L.tinf_model_free(self._handle)
                self._handle = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def handle(self) -> _lib.ModelHandle:
        if self._handle is None:
            raise InvalidStateError("the model is closed", 9)
        return self._handle

    # -- running ------------------------------------------------------------
    def session(self, threads: int | None = None) -> "Session":
        """A new session (its own arena); use one per thread to run in parallel."""
        return Session(self, self.threads if threads is None else threads)

    def run(self, inputs, copy: bool = True) -> List[np.ndarray]:
        """Runs the model. `inputs`: an array, a list of arrays (in input order)
        or a dict of input name to array. Returns a list of numpy arrays."""
        with self._lock:
            if self._session is None:
                self._session = Session(self, self.threads)
            return self._session.run(inputs, copy=copy)

    @property
    def arena_bytes(self) -> int:
        """Bytes of a session's arena."""
        with self._lock:
            if self._session is None:
                self._session = Session(self, self.threads)
            return self._session.arena_bytes

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}:{t.dtype}{list(t.shape)}" for t in self.inputs)
        outs = ", ".join(f"{t.name}:{t.dtype}{list(t.shape)}" for t in self.outputs)
        return f"<tinyinfer.Model {self.num_ops} ops ({ins}) -> ({outs})>"


class Session:
    """One execution context of a model: used by one thread at a time."""

    def __init__(self, model: Model, threads: int = 1):
        self._handle = None
        self.model = model
        opts = _lib.OptionsHandle()
        L.tinf_options_create(byref(opts))
        try:
            L.tinf_options_set_threads(opts, int(threads))
            h = _lib.SessionHandle()
            L.tinf_session_create(model.handle, opts, byref(h))
        finally:
            L.tinf_options_free(opts)
        self._handle = h
        arena, unplanned = c_size_t(), c_size_t()
        L.tinf_session_arena_bytes(h, byref(arena), byref(unplanned))
        self.arena_bytes, self.unplanned_bytes = arena.value, unplanned.value
        t = c_int32()
        L.tinf_session_threads(h, byref(t))
        self.threads = t.value
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._handle is not None:
            L.tinf_session_free(self._handle)
            self._handle = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _arrays(self, inputs) -> List[np.ndarray]:
        specs = self.model.inputs
        if isinstance(inputs, dict):
            names = [t.name for t in specs]
            unknown = set(inputs) - set(names)
            if unknown:
                raise InvalidArgumentError(f"unknown input name(s) {sorted(unknown)}; the model takes {names}", 1)
            missing = [n for n in names if n not in inputs]
            if missing:
                raise InvalidArgumentError(f"missing input(s) {missing}", 1)
            arrays = [inputs[n] for n in names]
        elif isinstance(inputs, (list, tuple)):
            arrays = list(inputs)
        else:
            arrays = [inputs]
        if len(arrays) != len(specs):
            raise InvalidArgumentError(f"the model takes {len(specs)} input(s), got {len(arrays)}", 1)
        out = []
        for a, spec in zip(arrays, specs):
            a = np.asarray(a)
            if a.dtype != spec.dtype:
                if not np.can_cast(a.dtype, spec.dtype, casting="same_kind"):
                    raise InvalidArgumentError(
                        f"input '{spec.name}' takes {spec.dtype}, got {a.dtype}", 1)
            if tuple(a.shape) != spec.shape:
                raise InvalidArgumentError(
                    f"input '{spec.name}' has shape {list(spec.shape)}, got {list(a.shape)}", 1)
            out.append(np.ascontiguousarray(a, dtype=spec.dtype))
        return out

    def run(self, inputs, copy: bool = True) -> List[np.ndarray]:
        """Sets the inputs, runs, and returns the outputs (copies; with
        copy=False, read-only views of the session's buffers, valid until the
        next run)."""
        if self._handle is None:
            raise InvalidStateError("the session is closed", 9)
        arrays = self._arrays(inputs)
        with self._lock:
            for i, a in enumerate(arrays):
                L.tinf_session_set_input(self._handle, i, a.ctypes.data, a.nbytes)
            L.tinf_session_run(self._handle)
            return [self._output(i, spec, copy) for i, spec in enumerate(self.model.outputs)]

    def _output(self, i: int, spec: TensorInfo, copy: bool) -> np.ndarray:
        ptr, n = c_void_p(), c_size_t()
        L.tinf_session_output_data(self._handle, i, byref(ptr), byref(n))
        buf = (ctypes.c_uint8 * n.value).from_address(ptr.value)
        view = np.frombuffer(buf, dtype=spec.dtype).reshape(spec.shape)
        if copy:
            return view.copy()
        view.flags.writeable = False
        return view


def load(source, threads: int = 1) -> Model:
    """Loads a .tinf model from a path or from bytes."""
    return Model(source, threads=threads)
