"""A LiteRT-compatible interpreter: code written for
`ai_edge_litert.interpreter.Interpreter` (or `tf.lite.Interpreter`) runs on
tinyinfer by changing the import:

    from tinyinfer.lite import Interpreter      # was: from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path="model.tflite")
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

The .tflite is converted in memory (tinyinfer.load's conversion cache keeps
the result), and its details (tensor indices, names, shapes and signatures,
dtypes, quantization) are read from the .tflite itself, so they are LiteRT's.
Errors for the same misuse have LiteRT's types (ValueError, RuntimeError; ours
are also tinyinfer.TinyInferError). What tinyinfer cannot honour (delegates,
reading intermediate tensors, subgraphs other than the main one) raises an
error that names it. docs/migrating.md has the table.
"""

from __future__ import annotations

import enum
from typing import Dict, List, Optional

import numpy as np

from . import _lib
from ._errors import (InvalidArgumentError, InvalidStateError, ModelFormatError, Status, TinyInferError,
                      TinyInferRuntimeError)

__all__ = ["Interpreter", "SignatureRunner", "OpResolverType", "load_delegate"]


class OpResolverType(enum.Enum):
    """LiteRT's op resolver choices (tinyinfer has one set of kernels: every
    value runs them; there are no delegates to leave out)."""
    AUTO = 0
    BUILTIN = 1
    BUILTIN_REF = 2
    BUILTIN_WITHOUT_DEFAULT_DELEGATES = 3


def load_delegate(library, options=None):
    """LiteRT loads a delegate library here; tinyinfer runs its own CPU kernels only."""
    raise InvalidArgumentError(f"tinyinfer.lite does not load delegates ({library!r}): tinyinfer runs on the CPU "
                               "with its own kernels; drop experimental_delegates")


# TFLite TensorType -> numpy scalar type (what LiteRT reports as 'dtype'), and the type names of its messages.
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 5: np.bytes_, 6: np.bool_,
           7: np.int16, 8: np.complex64, 9: np.int8, 10: np.float64, 11: np.complex128, 12: np.uint64,
           15: np.uint32, 16: np.uint16}
_TYPE_NAMES = {np.dtype(np.float32): "FLOAT32", np.dtype(np.float16): "FLOAT16", np.dtype(np.int32): "INT32",
               np.dtype(np.uint8): "UINT8", np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL",
               np.dtype(np.int16): "INT16", np.dtype(np.complex64): "COMPLEX64", np.dtype(np.int8): "INT8",
               np.dtype(np.float64): "FLOAT64", np.dtype(np.complex128): "COMPLEX128",
               np.dtype(np.uint64): "UINT64", np.dtype(np.uint32): "UINT32", np.dtype(np.uint16): "UINT16"}


def _type_name(dt) -> str:
    dt = np.dtype(dt)
    return _TYPE_NAMES.get(dt, dt.name.upper())


def _direct_buffers(session):
    """The session's own input buffers (writable) and output buffers
    (read-only views), fixed for its lifetime, when this Session keeps them
    (Session._in_views / _out_views); None makes the interpreter copy
    through Session.run instead (slower, same results). test_compat_litert
    checks that the direct path is in use."""
    ins, outs = getattr(session, "_in_views", None), getattr(session, "_out_views", None)
    if (isinstance(ins, list) and isinstance(outs, list) and len(ins) == len(session.inputs)
            and len(outs) == len(session.outputs) and hasattr(session, "_lock") and hasattr(session, "_handle")
            and all(isinstance(a, np.ndarray) and a.flags.writeable for a in ins)):
        return list(ins), list(outs)
    return None


class _Tensor:
    """What the .tflite says about one tensor of subgraph 0."""
    __slots__ = ("index", "name", "shape", "signature", "dtype", "scales", "zero_points", "axis", "buffer",
                 "sparse")

    def details(self, shape=None) -> dict:
        scales, zps = self.scales, self.zero_points
        per_tensor = scales.size == 1
        return {
            "name": self.name,
            "index": self.index,
            "shape": np.array(self.shape if shape is None else shape, dtype=np.int32),
            "shape_signature": np.array(self.signature, dtype=np.int32),
            "dtype": self.dtype,
            "quantization": (float(scales[0]), int(zps[0])) if per_tensor else (0.0, 0),
            "quantization_parameters": {"scales": scales.copy(), "zero_points": zps.copy(),
                                        "quantized_dimension": self.axis, "block_size": 0},
            "sparsity_parameters": {} if not self.sparse else {"sparse": True},
        }


class _TFLiteFile:
    """The parts of a .tflite the interpreter reports: subgraph 0's tensors,
    inputs, outputs, the signature defs and constant buffers."""

    def __init__(self, data: bytes):
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ModelFormatError("The model is not a valid Flatbuffer buffer (no TFL3 identifier at byte 4)")
        from .convert.tflite import _np, _tflite
        tfl, _ = _tflite()
        self.data = data
        try:
            self.model = model = tfl.Model.GetRootAs(data, 0)
            self.num_subgraphs = model.SubgraphsLength()
            if self.num_subgraphs < 1:
                raise ModelFormatError("The model has no subgraph")
            g = model.Subgraphs(0)
            self.tensors = [self._tensor(g.Tensors(i), i, _np) for i in range(g.TensorsLength())]
            self.inputs = [int(i) for i in _np(g.InputsAsNumpy())]
            self.outputs = [int(i) for i in _np(g.OutputsAsNumpy())]
            self.signatures: Dict[str, dict] = {}
            for k in range(model.SignatureDefsLength()):
                s = model.SignatureDefs(k)
                key = (s.SignatureKey() or b"").decode("utf-8", "replace")
                self.signatures[key] = {
                    "inputs": {(s.Inputs(j).Name() or b"").decode("utf-8", "replace"): int(s.Inputs(j).TensorIndex())
                               for j in range(s.InputsLength())},
                    "outputs": {(s.Outputs(j).Name() or b"").decode("utf-8", "replace"):
                                int(s.Outputs(j).TensorIndex()) for j in range(s.OutputsLength())},
                    "subgraph": int(s.SubgraphIndex())}
        except TinyInferError:
            raise
        except Exception as e:  # a damaged flatbuffer
            raise ModelFormatError(f"The model is not a valid Flatbuffer buffer: {type(e).__name__}: {e}") from e
        n = len(self.tensors)
        for i in self.inputs + self.outputs:
            if not 0 <= i < n:
                raise ModelFormatError(f"The model's subgraph 0 names tensor {i} of {n}")

    @staticmethod
    def _tensor(t, i: int, _np) -> _Tensor:
        r = _Tensor()
        r.index = i
        r.name = (t.Name() or b"").decode("utf-8", "replace")
        r.shape = tuple(int(d) for d in _np(t.ShapeAsNumpy()))
        sig = tuple(int(d) for d in _np(t.ShapeSignatureAsNumpy()))
        r.signature = sig if len(sig) == len(r.shape) else r.shape
        r.dtype = _DTYPES.get(t.Type(), np.void)
        q = t.Quantization()
        if q is not None:
            r.scales = np.asarray(_np(q.ScaleAsNumpy()), np.float32)
            r.zero_points = np.asarray(_np(q.ZeroPointAsNumpy()), np.int64).astype(np.int32)
            r.axis = int(q.QuantizedDimension())
        else:
            r.scales, r.zero_points, r.axis = np.zeros(0, np.float32), np.zeros(0, np.int32), 0
        r.buffer = int(t.Buffer())
        r.sparse = t.Sparsity() is not None
        return r

    def constant(self, t: _Tensor) -> Optional[np.ndarray]:
        """A constant tensor's value (None when the tensor has no data)."""
        if t.buffer <= 0 or t.buffer >= self.model.BuffersLength() or t.sparse:
            return None
        buf = self.model.Buffers(t.buffer)
        off = buf.Offset()
        if off > 1:
            raw = self.data[off:off + buf.Size()]
        elif buf.DataIsNone() or buf.DataLength() == 0:
            return None
        else:
            raw = buf.DataAsNumpy().tobytes()
        dt = np.dtype(t.dtype)
        if dt.kind == "V" or len(raw) != dt.itemsize * int(np.prod(t.shape, dtype=np.int64)):
            return None
        return np.frombuffer(raw, dtype=dt).reshape(t.shape).copy()


_EXPERIMENTAL_DEFAULTS = {
    "experimental_preserve_all_tensors": (False, "tinyinfer does not keep intermediate tensors: their memory is "
                                                 "reused during a run"),
    "experimental_disable_delegate_clustering": (False, "tinyinfer has no delegates"),
    "experimental_default_delegate_latest_features": (False, "tinyinfer has no delegates"),
    "experimental_compress_quantization_zero_points": (False, "not supported"),
    "experimental_disable_delegate_node_fusion": (False, "tinyinfer has no delegates"),
    "experimental_force_delegate_node_profiling": (False, "tinyinfer has no delegates"),
}


class Interpreter:
    """LiteRT's Interpreter on tinyinfer (see the module docstring)."""

    def __init__(self, model_path=None, model_content=None, experimental_delegates=None, num_threads=None,
                 experimental_op_resolver_type=OpResolverType.AUTO, **experimental):
        self._model = None
        self._session = None
        for name, value in experimental.items():
            if name not in _EXPERIMENTAL_DEFAULTS:
                raise TypeError(f"Interpreter.__init__() got an unexpected keyword argument '{name}'")
            default, why = _EXPERIMENTAL_DEFAULTS[name]
            if value != default:
                raise InvalidArgumentError(f"tinyinfer.lite.Interpreter: {name}={value!r} is not supported ({why})")
        if experimental_delegates:
            raise InvalidArgumentError("tinyinfer.lite.Interpreter: experimental_delegates is not supported: "
                                       "tinyinfer runs on the CPU with its own kernels, without delegates")
        if getattr(experimental_op_resolver_type, "name", None) not in OpResolverType.__members__:
            raise InvalidArgumentError(f"Unrecognized passed in op resolver type: {experimental_op_resolver_type}")
        if num_threads is not None:
            if not isinstance(num_threads, int):
                raise InvalidArgumentError("type of num_threads should be int")
            if num_threads < 1:
                raise InvalidArgumentError("num_threads should >= 1")
        if model_path is not None and model_content is not None:
            raise InvalidArgumentError("Can't both provide `model_path` and `model_content`")
        if model_path is not None:
            try:
                with open(model_path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise InvalidArgumentError(f"Could not open '{model_path}': {e.strerror}") from None
        elif model_content is not None:
            data = bytes(model_content)
        else:
            raise InvalidArgumentError("`model_path` or `model_content` must be specified.")
        self._file = _TFLiteFile(data)
        from ._load_any import convert_cached
        from .model import Model
        self._model = Model(convert_cached(data, "tflite"), threads=num_threads or 1)
        f = self._file
        if len(self._model.inputs) != len(f.inputs) or len(self._model.outputs) != len(f.outputs):
            raise TinyInferError("the converted model's inputs and outputs do not match the .tflite's")
        # LiteRT tensor index -> position among the inputs / outputs (the converter keeps subgraph order).
        self._in_pos = {t: k for k, t in enumerate(f.inputs)}
        self._out_pos = {t: k for k, t in enumerate(f.outputs)}
        self._in_shapes: List[tuple] = [f.tensors[t].shape for t in f.inputs]
        self._out_shapes: List[tuple] = [f.tensors[t].shape for t in f.outputs]
        self._in_dtypes = [np.dtype(f.tensors[t].dtype) for t in f.inputs]
        for info, dt in zip(self._model.inputs, self._in_dtypes):
            if info.dtype != dt:
                raise TinyInferError(f"input '{info.name}': the converted model takes {info.dtype}, the .tflite {dt}")
        self._inputs: Optional[List[np.ndarray]] = None   # buffers of set_tensor / tensor(), once allocated
        self._outputs: Optional[List[np.ndarray]] = None
        self._direct = False
        self._constants: Dict[int, np.ndarray] = {}

    def __del__(self):
        self._close()

    def _close(self) -> None:
        if getattr(self, "_session", None) is not None:
            self._session.close()
            self._session = None
        if getattr(self, "_model", None) is not None:
            self._model.close()
            self._model = None

    # -- details ----------------------------------------------------------------
    def _tensor_info(self, tensor_index) -> _Tensor:
        try:
            i = int(tensor_index)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"Invalid tensor index {tensor_index!r}") from None
        n = len(self._file.tensors)
        if i < 0:
            raise InvalidArgumentError(f"Invalid tensor index {i}: negative")
        if i >= n:
            raise InvalidArgumentError(f"Invalid tensor index {i} exceeds max tensor index {n}")
        return self._file.tensors[i]

    def _shape_of(self, t: _Tensor):
        k = self._in_pos.get(t.index)
        if k is not None:
            return self._in_shapes[k]
        k = self._out_pos.get(t.index)
        if k is not None:
            return self._out_shapes[k]
        return t.shape

    def _get_tensor_details(self, tensor_index, subgraph_index=0) -> dict:
        self._check_subgraph(subgraph_index)
        t = self._tensor_info(tensor_index)
        return t.details(self._shape_of(t))

    def _check_subgraph(self, subgraph_index) -> None:
        n = self._file.num_subgraphs
        if not 0 <= int(subgraph_index) < n:
            raise InvalidArgumentError(f"subgraph_index is out of range: {subgraph_index} for the model, "
                                       f"which has {n} subgraphs.")
        if int(subgraph_index) != 0:
            raise InvalidArgumentError(f"subgraph {subgraph_index}: tinyinfer converts and runs only the main "
                                       "subgraph (0)")

    def get_input_details(self) -> List[dict]:
        ts = self._file.tensors
        return [ts[i].details(s) for i, s in zip(self._file.inputs, self._in_shapes)]

    def get_output_details(self) -> List[dict]:
        ts = self._file.tensors
        return [ts[i].details(s) for i, s in zip(self._file.outputs, self._out_shapes)]

    def get_tensor_details(self, subgraph_index=0) -> List[dict]:
        self._check_subgraph(subgraph_index)
        return [t.details(self._shape_of(t)) for t in self._file.tensors if t.dtype is not np.void]

    def num_subgraphs(self) -> int:
        return self._file.num_subgraphs

    # -- running ----------------------------------------------------------------
    def allocate_tensors(self) -> None:
        """Makes the session for the current input shapes (after
        resize_tensor_input, the new ones); the output shapes follow."""
        from .model import Session
        if self._model is None:
            raise InvalidStateError("the interpreter is closed")
        shapes = [s if s != info.shape else None for s, info in zip(self._in_shapes, self._model.inputs)]
        try:
            session = Session(self._model, self._model.threads, shapes)
        except TinyInferError as e:
            raise TinyInferRuntimeError(f"allocate_tensors failed for input shapes "
                                        f"{[list(s) for s in self._in_shapes]}: {e}", e.status) from e
        if self._session is not None:
            self._session.close()
        self._session = session
        self._out_shapes = [tuple(o.shape) for o in session.outputs]
        direct = _direct_buffers(session)
        if direct is not None:
            # set_tensor writes into the session's input buffers and invoke runs it: no copy
            # on top of LiteRT's own (its set_tensor copies too)
            self._inputs, self._outputs = direct
            for a in self._inputs:
                a.fill(0)
        else:
            self._inputs = [np.zeros(s, dt) for s, dt in zip(self._in_shapes, self._in_dtypes)]
            self._outputs = [np.zeros(o.shape, o.dtype) for o in session.outputs]
        self._direct = direct is not None

    def invoke(self) -> None:
        session = self._session
        if session is None:
            raise InvalidStateError("Invoke called on model that is not ready: call allocate_tensors() first")
        if self._direct:
            with session._lock:
                if session._handle is None:
                    raise InvalidStateError("the interpreter is closed")
                _lib.lib.tinf_session_run(session._handle)
        else:
            self._outputs = session.run(self._inputs, copy=False)

    def set_tensor(self, tensor_index, value) -> None:
        k = self._in_pos.get(tensor_index)
        if k is None:
            t = self._tensor_info(tensor_index)
            raise InvalidArgumentError(f"Cannot set tensor {t.index} ('{t.name}'): tinyinfer.lite sets the model's "
                                       f"inputs only (indices {list(self._in_pos)})")
        if self._inputs is None:
            raise InvalidArgumentError("Cannot set tensor: Tensor is unallocated. Try calling allocate_tensors() first")
        buf = self._inputs[k]
        if type(value) is not np.ndarray:
            value = np.asarray(value)
        if value.dtype != buf.dtype:
            raise InvalidArgumentError(f"Cannot set tensor: Got value of type {_type_name(value.dtype)} but expected "
                                       f"type {_type_name(buf.dtype)} for input {tensor_index}, name: "
                                       f"{self._file.tensors[tensor_index].name} ")
        if value.shape != buf.shape:
            if value.ndim != buf.ndim:
                raise InvalidArgumentError(f"Cannot set tensor: Dimension mismatch. Got {value.ndim} but expected "
                                           f"{buf.ndim} for input {tensor_index}.")
            d = next(j for j in range(buf.ndim) if value.shape[j] != buf.shape[j])
            raise InvalidArgumentError(f"Cannot set tensor: Dimension mismatch. Got {value.shape[d]} but expected "
                                       f"{buf.shape[d]} for dimension {d} of input {tensor_index}.")
        buf[...] = value

    def get_tensor(self, tensor_index, subgraph_index=0) -> np.ndarray:
        k = self._out_pos.get(tensor_index)
        if k is not None and self._outputs is not None and not subgraph_index:
            return self._outputs[k].copy()
        return self._view(tensor_index, subgraph_index).copy()

    def tensor(self, tensor_index):
        """A function returning a numpy view of the tensor's current buffer:
        an input's is writable (written before invoke), an output's holds the
        last invoke's result. Do not keep the view across allocate_tensors()."""
        self._tensor_info(tensor_index)
        return lambda: self._view(tensor_index, 0)

    def _view(self, tensor_index, subgraph_index) -> np.ndarray:
        self._check_subgraph(subgraph_index)
        t = self._tensor_info(tensor_index)
        k = self._in_pos.get(t.index)
        if k is not None:
            if self._inputs is None:
                raise InvalidArgumentError("Tensor data is null. Run allocate_tensors() first")
            return self._inputs[k]
        k = self._out_pos.get(t.index)
        if k is not None:
            if self._outputs is None:
                raise InvalidArgumentError("Tensor data is null. Run allocate_tensors() first")
            return self._outputs[k]
        if t.index not in self._constants:
            value = self._file.constant(t)
            if value is None:
                raise InvalidArgumentError(
                    f"tensor {t.index} ('{t.name}') is an intermediate tensor: tinyinfer does not keep intermediate "
                    "values (their memory is reused during a run); read the model's inputs, outputs and constants")
            value.flags.writeable = False
            self._constants[t.index] = value
        return self._constants[t.index]

    def resize_tensor_input(self, input_index, tensor_size, strict=False) -> None:
        """Sets an input's shape for the next allocate_tensors(). strict=True
        allows changing only the dims that the shape signature marks -1."""
        k = self._in_pos.get(input_index)
        if k is None:
            t = self._tensor_info(input_index)
            raise InvalidArgumentError(f"tensor {t.index} ('{t.name}') is not an input of the model")
        size = np.array(tensor_size, dtype=np.int32)
        if size.ndim != 1:
            raise InvalidArgumentError(f"tensor_size must be a list of dims, got {tensor_size!r}")
        new = tuple(int(d) for d in size)
        if any(d < 0 for d in new):
            raise InvalidArgumentError(f"tensor_size {list(new)} has a negative dim")
        t = self._file.tensors[input_index]
        if strict:
            sig = t.signature
            if len(new) != len(sig):
                raise TinyInferRuntimeError(f"ResizeInputTensorStrict: tensor {input_index} has rank {len(sig)}, "
                                            f"got {len(new)} dims", Status.SHAPE)
            for d, (want, have) in enumerate(zip(new, self._in_shapes[k])):
                if sig[d] != -1 and want != have:
                    raise TinyInferRuntimeError(
                        f"Attempting to resize dimension {d} of tensor {input_index} with value {have} to {want}. "
                        "ResizeInputTensorStrict only allows mutating unknown dimensions identified by -1.",
                        Status.SHAPE)
        if new != self._in_shapes[k]:
            self._in_shapes[k] = new
            # Like LiteRT, the inputs must be allocated again before they are
            # set; the outputs keep the last values until then.
            if self._outputs is not None:
                self._outputs = [o.copy() for o in self._outputs]
            if self._session is not None:
                self._session.close()
                self._session = None
            self._inputs = None

    def reset_all_variables(self) -> None:
        """Sets the model's variables (TFLite resource variables) back to their
        initial values, as LiteRT's; nothing to do for a model without."""
        if self._session is not None:
            self._session.reset_state()

    # -- signatures -------------------------------------------------------------
    def _get_full_signature_list(self) -> Dict[str, dict]:
        return {k: {"inputs": dict(s["inputs"]), "outputs": dict(s["outputs"])}
                for k, s in self._file.signatures.items()}

    def get_signature_list(self) -> Dict[str, dict]:
        return {k: {"inputs": list(s["inputs"]), "outputs": list(s["outputs"])}
                for k, s in self._file.signatures.items()}

    def get_signature_runner(self, signature_key=None) -> "SignatureRunner":
        sigs = self._file.signatures
        if signature_key is None:
            if len(sigs) != 1:
                raise InvalidArgumentError(f"SignatureDef signature_key is None and model has {len(sigs)} "
                                           "Signatures. None is only allowed when the model has 1 SignatureDef")
            signature_key = next(iter(sigs))
        return SignatureRunner(self, signature_key)


class SignatureRunner:
    """Runs one SignatureDef: `runner(name=array, ...)` returns {output name: array}."""

    def __init__(self, interpreter: Interpreter, signature_key: str):
        sigs = interpreter._file.signatures
        if signature_key not in sigs:
            raise InvalidArgumentError(f'Invalid signature_key provided: "{signature_key}".')
        sig = sigs[signature_key]
        if sig["subgraph"] != 0:
            raise InvalidArgumentError(f"signature '{signature_key}' runs subgraph {sig['subgraph']}: tinyinfer "
                                       "converts and runs only the main subgraph (0)")
        self._interpreter = interpreter
        self._inputs = sig["inputs"]
        self._outputs = sig["outputs"]

    def __call__(self, **kwargs) -> Dict[str, np.ndarray]:
        it = self._interpreter
        if len(kwargs) != len(self._inputs):
            raise InvalidArgumentError(f"Invalid number of inputs provided for running a SignatureDef, expected "
                                       f"{len(self._inputs)} vs provided {len(kwargs)}")
        for name, value in kwargs.items():
            if name not in self._inputs:
                raise InvalidArgumentError(f"Invalid Input name ({name}) for SignatureDef")
            it.resize_tensor_input(self._inputs[name], np.shape(value))
        if it._session is None:
            it.allocate_tensors()
        for name, value in kwargs.items():
            it.set_tensor(self._inputs[name], value)
        it.invoke()
        return {name: it.get_tensor(i) for name, i in self._outputs.items()}

    def get_input_details(self) -> Dict[str, dict]:
        return {name: self._interpreter._get_tensor_details(i) for name, i in self._inputs.items()}

    def get_output_details(self) -> Dict[str, dict]:
        return {name: self._interpreter._get_tensor_details(i) for name, i in self._outputs.items()}
