"""An onnxruntime-compatible session: code written for
`onnxruntime.InferenceSession` runs on tinyinfer by changing the import:

    import tinyinfer.ort as ort                 # was: import onnxruntime as ort
    sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    (y,) = sess.run(None, {name: x})

The ONNX model is converted in memory (tinyinfer.load's conversion cache
keeps the result); inputs, outputs and metadata are read from the ONNX file
itself, so they are onnxruntime's (symbolic dims as strings). A model with
dynamic dims runs on any shape the graph allows: each new set of input shapes
is converted for those shapes once (then cached). Errors for the same misuse
have onnxruntime's exception names (`tinyinfer.ort.InvalidArgument`, ...,
each also a tinyinfer.TinyInferError) or its builtin types (ValueError for
missing inputs). What tinyinfer cannot honour (other execution providers
only, profiling, IO binding, custom op libraries) raises an error naming it.
docs/migrating.md has the table.
"""

from __future__ import annotations

import enum
import os
import threading
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np

from ._errors import InvalidArgumentError, ModelFormatError, TinyInferError, TinyInferIOError, UnsupportedOpError

__all__ = ["InferenceSession", "SessionOptions", "RunOptions", "NodeArg", "ModelMetadata", "GraphOptimizationLevel",
           "ExecutionMode", "get_available_providers", "get_device", "Fail", "InvalidArgument", "NoSuchFile",
           "InvalidProtobuf", "InvalidGraph", "NotImplemented"]


# onnxruntime's exception names (onnxruntime.capi.onnxruntime_pybind11_state).
class Fail(TinyInferError):
    """The model could not be loaded or run."""


class InvalidArgument(InvalidArgumentError):
    """A wrong input name, type or shape, or a wrong output name."""


class NoSuchFile(TinyInferIOError):
    """The model file does not exist."""


class InvalidProtobuf(ModelFormatError):
    """The bytes are not an ONNX model."""


class InvalidGraph(ModelFormatError):
    """The ONNX graph is not valid."""


class NotImplemented(UnsupportedOpError):  # noqa: A001 (onnxruntime's name)
    """An op or feature tinyinfer does not implement."""


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


_PROVIDER = "CPUExecutionProvider"


def get_available_providers() -> List[str]:
    return [_PROVIDER]


def get_device() -> str:
    return "CPU"


class SessionOptions:
    """onnxruntime's SessionOptions. intra_op_num_threads sets tinyinfer's
    threads (0, the default, means 1); graph_optimization_level
    ORT_DISABLE_ALL loads without the graph passes. Settings about logging,
    memory arenas and inter-op threads are accepted and have no effect (one
    arena per session, ops run in order). enable_profiling,
    optimized_model_filepath and custom op libraries raise when a session is
    made with them."""

    _FIELDS = {"intra_op_num_threads": 0, "inter_op_num_threads": 0,
               "graph_optimization_level": GraphOptimizationLevel.ORT_ENABLE_ALL,
               "execution_mode": ExecutionMode.ORT_SEQUENTIAL, "enable_profiling": False,
               "optimized_model_filepath": "", "log_severity_level": 2, "log_verbosity_level": 0, "logid": "",
               "enable_mem_pattern": True, "enable_mem_reuse": True, "enable_cpu_mem_arena": True,
               "use_deterministic_compute": False, "profile_file_prefix": "onnxruntime_profile_"}

    def __init__(self):
        for k, v in self._FIELDS.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_config", {})

    def __setattr__(self, name, value):
        if name not in self._FIELDS:
            raise AttributeError(f"'SessionOptions' object has no attribute '{name}'")
        if name == "intra_op_num_threads" and (not isinstance(value, int) or value < 0):
            raise InvalidArgument(f"intra_op_num_threads must be an int >= 0, got {value!r}")
        object.__setattr__(self, name, value)

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise Fail(f"SessionOptions does not have configuration with key: {key}")
        return self._config[key]

    def register_custom_ops_library(self, path) -> None:
        raise NotImplemented(f"tinyinfer.ort cannot register custom op libraries ({path!r}): custom ops have no "
                             "tinyinfer kernels")

    def add_free_dimension_override_by_name(self, name: str, value: int) -> None:
        raise NotImplemented("add_free_dimension_override_by_name is not supported: tinyinfer.ort fits dynamic dims "
                             "to the inputs given to run()")

    def _check(self) -> None:
        if self.enable_profiling:
            raise NotImplemented("SessionOptions.enable_profiling is not supported by tinyinfer.ort "
                                 "(python -m tinyinfer bench --profile profiles a model)")
        if self.optimized_model_filepath:
            raise NotImplemented("SessionOptions.optimized_model_filepath is not supported by tinyinfer.ort "
                                 "(python -m tinyinfer convert writes the converted .tinf)")


class RunOptions:
    """onnxruntime's RunOptions: accepted by run(), with no effect but terminate=True, which raises."""

    def __init__(self):
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.logid = ""
        self.terminate = False
        self.only_execute_path_to_fetches = False

    def add_run_config_entry(self, key: str, value: str) -> None:
        pass


class NodeArg:
    """An input or output: name, shape (ints, dim_param strings, None for an unnamed dynamic dim) and type."""

    def __init__(self, name: str, type: str, shape):
        self.name, self.type, self.shape = name, type, shape

    def __repr__(self) -> str:
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"


class ModelMetadata:
    def __init__(self, m):
        self.producer_name = m.producer_name
        self.graph_name = m.graph.name
        self.domain = m.domain
        self.description = m.doc_string
        self.graph_description = m.graph.doc_string
        self.version = m.model_version if m.HasField("model_version") else 2 ** 63 - 1  # onnxruntime's 'unset'
        self.custom_metadata_map = {p.key: p.value for p in m.metadata_props}


# ONNX TensorProto element type -> (onnxruntime's type string, numpy dtype)
_ELEM = {1: ("tensor(float)", np.float32), 2: ("tensor(uint8)", np.uint8), 3: ("tensor(int8)", np.int8),
         4: ("tensor(uint16)", np.uint16), 5: ("tensor(int16)", np.int16), 6: ("tensor(int32)", np.int32),
         7: ("tensor(int64)", np.int64), 8: ("tensor(string)", np.object_), 9: ("tensor(bool)", np.bool_),
         10: ("tensor(float16)", np.float16), 11: ("tensor(double)", np.float64), 12: ("tensor(uint32)", np.uint32),
         13: ("tensor(uint64)", np.uint64), 14: ("tensor(complex64)", np.complex64),
         15: ("tensor(complex128)", np.complex128), 16: ("tensor(bfloat16)", None)}
_TYPE_OF = {np.dtype(dt): name for name, dt in _ELEM.values() if dt is not None}

_SHAPE_MODELS = 4  # converted models kept for other input shapes, least recently used closed first


def _type_string(dtype) -> str:
    dt = np.dtype(dtype)
    return _TYPE_OF.get(dt, f"tensor({dt.name})")


class _Port:
    """One input or output as the ONNX file declares it."""
    __slots__ = ("name", "type", "dtype", "dims")

    def __init__(self, vi):
        self.name = vi.name
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if tt is None:
            raise NotImplemented(f"'{vi.name}' is not a tensor ({vi.type.WhichOneof('value')}): tinyinfer.ort "
                                 "runs tensor inputs and outputs only")
        self.type, self.dtype = _ELEM.get(tt.elem_type, (f"tensor(type {tt.elem_type})", None))
        if tt.HasField("shape"):
            self.dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.dim_param else None)
                         for d in tt.shape.dim]
        else:
            self.dims = None

    def node_arg(self) -> NodeArg:
        return NodeArg(self.name, self.type, list(self.dims) if self.dims is not None else [])


def _read_model(data: bytes):
    from .convert import require
    onnx = require("onnx", "onnx", "tinyinfer.ort")
    try:
        m = onnx.load_model_from_string(data)
    except Exception as e:
        raise InvalidProtobuf(f"Failed to load model because protobuf parsing failed: {e}") from None
    if not m.HasField("graph"):
        raise InvalidGraph("the ONNX model has no graph")
    return m


class InferenceSession:
    """onnxruntime's InferenceSession on tinyinfer (see the module docstring)."""

    def __init__(self, path_or_bytes, sess_options: Optional[SessionOptions] = None, providers=None,
                 provider_options=None, **kwargs):
        self._models: "OrderedDict[tuple, object]" = OrderedDict()
        self._lock = threading.Lock()
        if kwargs:
            raise InvalidArgument(f"tinyinfer.ort.InferenceSession: unsupported argument(s) {sorted(kwargs)}")
        self._providers = self._check_providers(providers, provider_options)
        self._options = sess_options if sess_options is not None else SessionOptions()
        if not isinstance(self._options, SessionOptions):
            raise InvalidArgument("sess_options must be a tinyinfer.ort.SessionOptions")
        self._options._check()
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            data = bytes(path_or_bytes)
            self._model_path = None
        elif isinstance(path_or_bytes, (str, os.PathLike)):
            self._model_path = os.fspath(path_or_bytes)
            try:
                with open(self._model_path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                raise NoSuchFile(f"Load model from {self._model_path} failed: File doesn't exist") from None
            except OSError as e:
                raise Fail(f"Load model from {self._model_path} failed: {e.strerror}") from None
        else:
            raise InvalidArgument(f"Unable to load from type '{type(path_or_bytes).__name__}': give a path or bytes")
        self._data = data
        proto = _read_model(data)
        self._meta = ModelMetadata(proto)
        inits = {i.name for i in proto.graph.initializer}
        self._ins = [_Port(vi) for vi in proto.graph.input if vi.name not in inits]
        self._outs = [_Port(vi) for vi in proto.graph.output]
        self._in_index = {p.name: k for k, p in enumerate(self._ins)}
        self._out_index = {p.name: k for k, p in enumerate(self._outs)}
        self._threads = self._options.intra_op_num_threads or 1
        self._optimize = self._options.graph_optimization_level != GraphOptimizationLevel.ORT_DISABLE_ALL
        # The model as the file's shapes give it (dynamic batch dims as 1), converted now so that
        # an unsupported op fails here, as an onnxruntime session fails at creation.
        # (A model with dynamic dims past the first is converted at the first run, for its shapes.)
        self._default = self._default_shapes = self._default_session = self._fast = None
        if all(p.dims is not None and all(isinstance(d, int) for d in p.dims[1:]) for p in self._ins):
            self._default = self._model_for(None)
            self._default_shapes = tuple(tuple(t.shape) for t in self._default.inputs)
            self._default_session = self._default.session()  # thread-safe: Session.run holds its lock
            if all(p.dtype is not None for p in self._ins):
                self._fast = [(p.name, np.dtype(p.dtype), shape) for p, shape in zip(self._ins, self._default_shapes)]
            if all(isinstance(d, int) for p in self._ins for d in p.dims):
                # Static inputs: like onnxruntime's shape inference, an output dim the file leaves
                # symbolic is the one the graph computes.
                for p, info in zip(self._outs, self._default.outputs):
                    if p.dims is not None and len(p.dims) == len(info.shape):
                        p.dims = [d if isinstance(d, int) else int(n) for d, n in zip(p.dims, info.shape)]

    @staticmethod
    def _check_providers(providers, provider_options):
        if providers is None:
            return [_PROVIDER]
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        if _PROVIDER not in names:
            raise InvalidArgument(f"tinyinfer.ort runs on the CPU only: providers {names} do not include "
                                  f"'{_PROVIDER}'")
        others = [n for n in names if n != _PROVIDER]
        if others:
            warnings.warn(f"tinyinfer.ort: provider(s) {others} are not available; running on {_PROVIDER}",
                          stacklevel=3)
        return [_PROVIDER]

    def _model_for(self, shapes: Optional[tuple]):
        """The converted model for these input shapes (None: the file's)."""
        from ._load_any import convert_cached
        from .model import Model
        m = self._models.get(shapes)
        if m is not None:
            self._models.move_to_end(shapes)
            return m
        options = {}
        if shapes is not None:
            options["input_shapes"] = {p.name: list(s) for p, s in zip(self._ins, shapes)}
        try:
            data = convert_cached(self._data, "onnx", **options)
        except UnsupportedOpError as e:
            raise NotImplemented(str(e)) from e
        except ModelFormatError as e:
            raise InvalidGraph(str(e)) from e
        m = Model(data, threads=self._threads, optimize=self._optimize)
        if len(m.inputs) != len(self._ins) or len(m.outputs) != len(self._outs):
            m.close()
            raise Fail("the converted model's inputs and outputs do not match the ONNX graph's")
        if shapes is not None:
            self._models[shapes] = m
            while len(self._models) > _SHAPE_MODELS:
                self._models.popitem(last=False)[1].close()
        return m

    # -- description ------------------------------------------------------------
    def get_inputs(self) -> List[NodeArg]:
        return [p.node_arg() for p in self._ins]

    def get_outputs(self) -> List[NodeArg]:
        return [p.node_arg() for p in self._outs]

    def get_overridable_initializers(self) -> List[NodeArg]:
        return []

    def get_modelmeta(self) -> ModelMetadata:
        return self._meta

    def get_providers(self) -> List[str]:
        return list(self._providers)

    def get_provider_options(self) -> Dict[str, dict]:
        return {_PROVIDER: {}}

    def get_session_options(self) -> SessionOptions:
        return self._options

    def set_providers(self, providers=None, provider_options=None) -> None:
        self._providers = self._check_providers(providers, provider_options)

    def disable_fallback(self) -> None:
        pass

    def enable_fallback(self) -> None:
        pass

    @property
    def _model_path_or_bytes(self):
        return self._model_path if self._model_path is not None else self._data

    # -- running ----------------------------------------------------------------
    def run(self, output_names, input_feed, run_options: Optional[RunOptions] = None) -> List[np.ndarray]:
        # Fast path (kept short: its cost is the layer's overhead on a small model): every input
        # given as an array of exactly the file's dtype and of the shapes the default model runs.
        fast = self._fast
        if fast is not None and not output_names and run_options is None and type(input_feed) is dict \
                and len(input_feed) == len(fast):
            arrays = []
            for name, dtype, shape in fast:
                a = input_feed.get(name)
                if type(a) is not np.ndarray or a.dtype != dtype or a.shape != shape:
                    break
                arrays.append(a)
            else:
                return self._default_session.run(arrays)
        if run_options is not None and getattr(run_options, "terminate", False):
            raise Fail("Exiting due to terminate flag being set to true.")
        if not isinstance(input_feed, dict):
            raise InvalidArgument(f"input_feed must be a dict of input name to array, got {type(input_feed).__name__}")
        missing = [p.name for p in self._ins if p.name not in input_feed]
        if missing:
            raise ValueError(f"Required inputs ({missing}) are missing from input feed ({list(input_feed)}).")
        arrays = [None] * len(self._ins)
        for name, value in input_feed.items():
            k = self._in_index.get(name)
            if k is None:
                raise InvalidArgument(f"Invalid input name: {name}")
            arrays[k] = self._check_input(self._ins[k], value)
        if output_names:
            try:
                picks = [self._out_index[n] for n in output_names]
            except KeyError as e:
                raise InvalidArgument(f"Invalid output name:{e.args[0]}") from None
        else:
            picks = None
        shapes = tuple(a.shape for a in arrays)
        if shapes == self._default_shapes:
            outs = self._default_session.run(arrays)
        else:
            with self._lock:
                model = self._model_for(shapes)
                outs = model.run(arrays)
        if picks is None:
            return outs
        return [outs[k] for k in picks]

    def _check_input(self, port: _Port, value) -> np.ndarray:
        if type(value) is not np.ndarray:
            if isinstance(value, (list, tuple)) and port.dtype is not None:
                value = np.asarray(value, dtype=port.dtype)
            elif isinstance(value, (np.generic, np.ndarray)):
                value = np.asarray(value)
            else:
                raise InvalidArgument(f"input '{port.name}': unable to handle object of type {type(value)}")
        if port.dtype is None or value.dtype != port.dtype:
            raise InvalidArgument(f"Unexpected input data type. Actual: ({_type_string(value.dtype)}) , "
                                  f"expected: ({port.type})")
        dims = port.dims
        if dims is not None:
            if value.ndim != len(dims):
                raise InvalidArgument(f"Invalid rank for input: {port.name} Got: {value.ndim} Expected: {len(dims)} "
                                      "Please fix either the inputs/outputs or the model.")
            bad = [(i, g, e) for i, (g, e) in enumerate(zip(value.shape, dims)) if isinstance(e, int) and g != e]
            if bad:
                lines = "".join(f"\n index: {i} Got: {g} Expected: {e}" for i, g, e in bad)
                raise InvalidArgument(f"Got invalid dimensions for input: {port.name} for the following indices"
                                      f"{lines}\n Please fix either the inputs/outputs or the model.")
        return value

    def io_binding(self):
        raise NotImplemented("IO binding is not supported by tinyinfer.ort: use run()")

    def run_with_iobinding(self, iobinding, run_options=None):
        raise NotImplemented("IO binding is not supported by tinyinfer.ort: use run()")

    def run_with_ort_values(self, output_names, input_dict_ort_values, run_options=None):
        raise NotImplemented("OrtValue inputs are not supported by tinyinfer.ort: use run() with numpy arrays")

    def run_async(self, output_names, input_feed, callback, user_data, run_options=None):
        raise NotImplemented("run_async is not supported by tinyinfer.ort: use run() (thread-safe)")

    def end_profiling(self) -> str:
        raise NotImplemented("profiling is not supported by tinyinfer.ort")

    def close(self) -> None:
        """Frees the converted models (not in onnxruntime; the session also frees them when collected)."""
        with self._lock:
            for m in self._models.values():
                m.close()
            self._models.clear()
            if getattr(self, "_default_session", None) is not None:
                self._default_session.close()
            if getattr(self, "_default", None) is not None:
                self._default.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
