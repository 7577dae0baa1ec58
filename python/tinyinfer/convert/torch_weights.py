"""PyTorch weights: torch.save files and safetensors, read without torch and
without running pickle code.

    sd = load_state_dict("model.pt")          # dict[str, np.ndarray]
    tinyinfer.convert("model.pt", "model.tinf", architecture=net, input_shape=(1, 3, 32, 32))

A state_dict is weights only: it has no graph. The graph comes from
`architecture`, a `tinyinfer.convert.nn.Module` that mirrors the torch model (same
layer names, so the same state_dict keys); its `load_state_dict` maps the
weights in (converting layouts) and `to_builder` writes the graph.

Formats, chosen by content:

- torch.save zip (PyTorch >= 1.6): `<archive>/data.pkl` (the object graph,
  a pickle), `<archive>/byteorder` ("little"; "big" is refused),
  `<archive>/data/<key>` (one raw storage per key).
- legacy torch.save (`_use_new_zipfile_serialization=False`): five pickles
  in a row -- magic number, protocol version (1001), sys_info, the object,
  the list of storage keys -- then each storage as an int64 element count
  and its raw little-endian bytes.
- safetensors: u64 little-endian header length, a JSON header
  `{name: {dtype, shape, data_offsets}}`, then the payload.

Security: pickles are read by `_RestrictedUnpickler`, whose `find_class`
returns safe stand-ins for the few globals a state_dict needs
(`torch._utils._rebuild_tensor_v2`/`_v3`, `_rebuild_parameter[_with_state]`,
`collections.OrderedDict`, the `torch.*Storage` types, `torch.UntypedStorage`
and torch dtypes) and refuses every other global with ModelFormatError,
before anything is called. The stand-ins refuse pickle's BUILD (so a file
cannot alter them), a pre-scan bounds memo indices (a LONG_BINPUT of 2**32
would make CPython allocate the memo), and every size, offset and stride is
checked against the bytes actually present before any array is made.
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import mmap
import os
import pickle
import pickletools
import re
import struct
import zipfile
import zlib
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .._errors import InvalidArgumentError, ModelFormatError

__all__ = ["load_state_dict", "load_state_dict_with_info", "detect_weights_format", "QuantizedTensor"]

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

# torch storage type names -> element dtype names
_STORAGE_TYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "UntypedStorage": "uint8",
    # quantized tensors' storages (the integer values; scales and zero points come with _rebuild_qtensor)
    "QInt8Storage": "int8", "QUInt8Storage": "uint8", "QInt32Storage": "int32",
}
# torch dtype attribute names -> dtype names
_TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "bool": "bool",
    "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "qint8": "qint8", "quint8": "quint8", "qint32": "qint32",
}
_QSCHEMES = ("per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
             "per_channel_affine_float_qparams")
# dtype name -> numpy dtype of the stored elements (bfloat16 is read as uint16, then widened)
_NUMPY_OF = {
    "float32": np.dtype("<f4"), "float64": np.dtype("<f8"), "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"), "int64": np.dtype("<i8"), "int32": np.dtype("<i4"), "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"), "uint8": np.dtype("u1"), "bool": np.dtype("?"),
    "uint16": np.dtype("<u2"), "uint32": np.dtype("<u4"), "uint64": np.dtype("<u8"),
}

_MAX_RANK = 64
_MAX_EXPANDED_ELEMENTS = 1 << 26  # a stride-0 / overlapping view may grow past its storage only this far
_MAX_PICKLE_BYTES = 1 << 30
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def _err(msg: str) -> ModelFormatError:
    return ModelFormatError(msg)


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 (exact: bf16 is the top half of an f32)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------------------------
# Safe stand-ins for the allowed pickle globals
# ---------------------------------------------------------------------------------------------

class _Sealed:
    """Objects the unpickler hands out: pickle's BUILD (which sets state and
    could otherwise rewrite a shared stand-in) is refused."""
    __slots__ = ()

    def __setstate__(self, state):
        raise _err(f"pickle tried to set the state of {self!r}: not a tensor file")

    def __reduce__(self):
        raise TypeError(f"{type(self).__name__} cannot be pickled")


class _StorageType(_Sealed):
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str):
        self.name, self.dtype = name, dtype

    def __call__(self, *args):
        raise _err(f"pickle called torch.{self.name}(...) directly: not a tensor file")

    def __repr__(self):
        return f"torch.{self.name}"


class _DType(_Sealed):
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args):
        raise _err(f"pickle called torch.{self.name}(...): not a tensor file")

    def __repr__(self):
        return f"torch.{self.name}"


class _Function(_Sealed):
    __slots__ = ("qualname", "fn")

    def __init__(self, qualname: str, fn):
        self.qualname, self.fn = qualname, fn

    def __call__(self, *args):
        return self.fn(*args)

    def __repr__(self):
        return self.qualname


class _Storage(_Sealed):
    """One storage of the file: dtype, element count, and (once read) its bytes."""
    __slots__ = ("key", "dtype", "numel", "data", "root", "byte_offset")

    def __init__(self, key: str, dtype: str, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data: Optional[bytes] = None
        self.root: Optional["_Storage"] = None  # legacy views: a slice of another storage
        self.byte_offset = 0

    @property
    def nbytes(self) -> int:
        return self.numel * _NUMPY_OF[self.dtype].itemsize

    def raw(self) -> memoryview:
        if self.root is not None:
            base = self.root.raw()
            return base[self.byte_offset:self.byte_offset + self.nbytes]
        if self.data is None:
            raise _err(f"storage {self.key!r} has no data in the file")
        return memoryview(self.data)

    def __repr__(self):
        return f"<storage {self.key} {self.dtype}[{self.numel}]>"


class _TensorRef(_Sealed):
    """A tensor described by the pickle: made into a numpy array once every storage is read."""
    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(self, storage: _Storage, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...], dtype: str):
        self.storage, self.offset, self.size, self.stride, self.dtype = storage, offset, size, stride, dtype

    def __repr__(self):
        return f"<tensor {self.dtype}{list(self.size)}>"


class QuantizedTensor:
    """A quantized torch tensor read from a file (torch.qint8 / quint8 / qint32),
    kept as torch stored it: `values` (the integers, int8 / uint8 / int32),
    `scales` and `zero_points` (one each per tensor, or one per slice along
    `axis`). `dequantize()` gives (values - zero_point) * scale in float32."""
    __slots__ = ("values", "scales", "zero_points", "axis", "qscheme")

    def __init__(self, values: np.ndarray, scales, zero_points, axis: Optional[int], qscheme: str):
        self.values = values
        self.scales = np.atleast_1d(np.asarray(scales, dtype=np.float64))
        self.zero_points = np.atleast_1d(np.asarray(zero_points)).astype(np.int64)
        self.axis, self.qscheme = axis, qscheme

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.values.shape

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def _bcast(self, a: np.ndarray) -> np.ndarray:
        if self.axis is None:
            return a.reshape(())
        shape = [1] * self.values.ndim
        shape[self.axis] = -1
        return a.reshape(shape)

    def dequantize(self) -> np.ndarray:
        v = self.values.astype(np.float64) - self._bcast(self.zero_points.astype(np.float64))
        return (v * self._bcast(self.scales)).astype(np.float32)

    def symmetric_int8(self):
        """(int8 values, float32 scales, axis) with zero point 0 holding exactly the same real values (the
        integers shifted by their zero point), or None when they do not fit int8."""
        v = self.values.astype(np.int64) - self._bcast(self.zero_points)
        if v.size and (v.min() < -128 or v.max() > 127):
            return None
        return v.astype(np.int8), self.scales.astype(np.float32), self.axis

    def __repr__(self):
        return f"QuantizedTensor({self.values.dtype}{list(self.values.shape)}, {self.qscheme})"


class _QTensorRef(_Sealed):
    """A quantized tensor described by the pickle (materialized like _TensorRef)."""
    __slots__ = ("ref", "qscheme", "scales", "zero_points", "axis")

    def __init__(self, ref, qscheme, scales, zero_points, axis):
        self.ref, self.qscheme, self.scales, self.zero_points, self.axis = ref, qscheme, scales, zero_points, axis

    def __repr__(self):
        return f"<quantized tensor {self.ref.dtype}{list(self.ref.size)} {self.qscheme}>"


class _QScheme(_DType):
    """torch.per_tensor_affine and the other quantization schemes (inert names, like dtypes)."""
    __slots__ = ()


class ScriptObject:
    """An object of a TorchScript archive's data.pkl (a scripted module, or a
    torch.classes object such as packed quantized weights): its qualified
    class name and the state pickle's BUILD gave it (a dict of attributes for
    modules, a tuple for torch.classes objects). Inert: nothing is called."""
    __slots__ = ("qualname", "state")

    def __init__(self, qualname: str):
        self.qualname, self.state = qualname, None

    def __setstate__(self, state):
        if self.state is not None:
            raise _err(f"pickle set the state of {self.qualname} twice")
        if not isinstance(state, (dict, tuple)):
            raise _err(f"{self.qualname}: object state must be a dict or a tuple, got {type(state).__name__}")
        self.state = state

    def __reduce__(self):
        raise TypeError("ScriptObject cannot be pickled")

    def __repr__(self):
        return f"<{self.qualname}>"


_SCRIPT_CLASSES: Dict[str, type] = {}
_SAFE_QUALNAME = re.compile(r"^__torch__(\.[A-Za-z_][A-Za-z0-9_]*){0,32}$")


def _script_class(module: str, name: str) -> type:
    """The stand-in class for a TorchScript class `module.name` (a subclass of ScriptObject per name, made once:
    pickle's NEWOBJ needs a class)."""
    qual = f"{module}.{name}"
    if not _SAFE_QUALNAME.match(qual) or len(qual) > 400:
        raise _err(f"refusing TorchScript class name {qual!r:.80}")
    cls = _SCRIPT_CLASSES.get(qual)
    if cls is None:
        def new(c, *args):
            if args:
                raise _err(f"pickle constructed {qual} with arguments")
            o = object.__new__(c)
            ScriptObject.__init__(o, qual)
            return o
        cls = type(name, (ScriptObject,), {"__slots__": (), "__new__": new, "_qualname": qual})
        _SCRIPT_CLASSES[qual] = cls
    return cls


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_tuple(v, what: str) -> Tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or len(v) > _MAX_RANK or not all(_is_int(d) for d in v):
        raise _err(f"tensor {what} must be a tuple of at most {_MAX_RANK} integers, got {v!r:.80}")
    return tuple(v)


def _tensor_ref(storage, offset, size, stride, dtype: Optional[str]) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise _err(f"tensor storage must come from the file's storages, got {type(storage).__name__}")
    if not _is_int(offset) or offset < 0:
        raise _err(f"tensor storage offset must be an integer >= 0, got {offset!r:.40}")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise _err(f"tensor size {size} and stride {stride} differ in rank")
    if any(d < 0 for d in size) or any(s < 0 for s in stride):
        raise _err(f"tensor size {size} / stride {stride} has a negative entry")
    dtype = dtype or storage.dtype
    itemsize = _NUMPY_OF[dtype].itemsize
    # Elements of `dtype` the storage holds (an untyped storage is bytes; v3 views it as dtype).
    avail = storage.nbytes // itemsize
    numel = 1
    for d in size:
        numel *= d
    if numel > 0:
        last = offset + sum((d - 1) * s for d, s in zip(size, stride))
        if last >= avail:
            raise _err(f"tensor of size {list(size)}, stride {list(stride)}, offset {offset} reads element {last} "
                       f"of a storage of {avail} {dtype} elements: the sizes lie")
        if numel > max(avail, 0) and numel > _MAX_EXPANDED_ELEMENTS:
            raise _err(f"tensor of size {list(size)} views a storage of {avail} elements with overlapping "
                       f"strides {list(stride)}: refusing to expand it to {numel} elements")
    return _TensorRef(storage, offset, size, stride, dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None, *rest):
    if rest:
        raise _err("_rebuild_tensor_v2 called with too many arguments")
    return _tensor_ref(storage, storage_offset, size, stride, None)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       dtype=None, metadata=None, *rest):
    if rest:
        raise _err("_rebuild_tensor_v3 called with too many arguments")
    if not isinstance(dtype, _DType):
        raise _err(f"_rebuild_tensor_v3: dtype must be a torch dtype, got {dtype!r:.40}")
    return _tensor_ref(storage, storage_offset, size, stride, dtype.name)


def _rebuild_qtensor(storage, storage_offset, size, stride, quantizer_params, requires_grad=False,
                     backward_hooks=None, *rest):
    if len(rest) > 1:
        raise _err("_rebuild_qtensor called with too many arguments")
    ref = _tensor_ref(storage, storage_offset, size, stride, None)
    if ref.dtype not in ("int8", "uint8", "int32"):
        raise _err(f"_rebuild_qtensor: storage of {ref.dtype} is not a quantized storage")
    if not isinstance(quantizer_params, tuple) or not quantizer_params or not isinstance(quantizer_params[0],
                                                                                       _QScheme):
        raise _err(f"_rebuild_qtensor: quantizer parameters {quantizer_params!r:.80} do not start with a qscheme")
    qs = quantizer_params[0].name
    if qs in ("per_tensor_affine", "per_tensor_symmetric"):
        if len(quantizer_params) != 3 or not isinstance(quantizer_params[1], float) \
                or not _is_int(quantizer_params[2]):
            raise _err(f"_rebuild_qtensor: {qs} needs (scale, zero_point), got {quantizer_params[1:]!r:.80}")
        return _QTensorRef(ref, qs, quantizer_params[1], quantizer_params[2], None)
    if qs in ("per_channel_affine", "per_channel_symmetric"):
        if len(quantizer_params) != 4 or not isinstance(quantizer_params[1], _TensorRef) \
                or not isinstance(quantizer_params[2], _TensorRef) or not _is_int(quantizer_params[3]):
            raise _err(f"_rebuild_qtensor: {qs} needs (scales, zero_points, axis), got "
                       f"{quantizer_params[1:]!r:.80}")
        axis = quantizer_params[3]
        if not 0 <= axis < max(len(ref.size), 1):
            raise _err(f"_rebuild_qtensor: axis {axis} out of range for size {list(ref.size)}")
        n = ref.size[axis] if ref.size else 1
        for what, t in (("scales", quantizer_params[1]), ("zero points", quantizer_params[2])):
            if len(t.size) != 1 or t.size[0] != n:
                raise _err(f"_rebuild_qtensor: {n} channels along axis {axis} but {what} of size {list(t.size)}")
        return _QTensorRef(ref, qs, quantizer_params[1], quantizer_params[2], axis)
    raise _err(f"_rebuild_qtensor: quantization scheme torch.{qs} is not supported")


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    if len(rest) > 1:
        raise _err("_rebuild_parameter called with too many arguments")
    if not isinstance(data, (_TensorRef, _QTensorRef)):
        raise _err(f"_rebuild_parameter expects a tensor, got {type(data).__name__}")
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _ordered_dict(*args):
    if not args:
        return OrderedDict()
    if len(args) == 1 and isinstance(args[0], (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in args[0]):
        return OrderedDict((k, v) for k, v in args[0])
    raise _err("collections.OrderedDict called with unexpected arguments")


def _typed_list(items):
    if not isinstance(items, list):
        raise _err(f"torch.jit._pickle.build_*list expects a list, got {type(items).__name__}")
    return items


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    g: Dict[Tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): _Function("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
        ("torch._utils", "_rebuild_tensor_v3"): _Function("torch._utils._rebuild_tensor_v3", _rebuild_tensor_v3),
        ("torch._utils", "_rebuild_parameter"): _Function("torch._utils._rebuild_parameter", _rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"):
            _Function("torch._utils._rebuild_parameter_with_state", _rebuild_parameter_with_state),
        ("collections", "OrderedDict"): _Function("collections.OrderedDict", _ordered_dict),
        ("torch._utils", "_rebuild_qtensor"): _Function("torch._utils._rebuild_qtensor", _rebuild_qtensor),
    }
    # TorchScript's typed lists (data.pkl of torch.jit.save): the list itself
    for name in ("build_intlist", "build_floatlist", "build_doublelist", "build_boollist", "build_tensorlist",
                 "build_genericlist"):
        g[("torch.jit._pickle", name)] = _Function(f"torch.jit._pickle.{name}", _typed_list)
    g[("torch.jit._pickle", "restore_type_tag")] = _Function("torch.jit._pickle.restore_type_tag",
                                                             lambda value, type_str=None: value)
    for name in _QSCHEMES:
        g[("torch", name)] = _QScheme(name)
    for name, dt in _STORAGE_TYPES.items():
        g[("torch", name)] = _StorageType(name, dt)
    g[("torch.storage", "UntypedStorage")] = g[("torch", "UntypedStorage")]
    for name, dt in _TORCH_DTYPES.items():
        g[("torch", name)] = _DType(dt)
    return g


_ALLOWED = _allowed_globals()


def _refusal(module: str, name: str) -> ModelFormatError:
    msg = f"refusing to load global {module}.{name}: pickles can run code; only tensor storages, " \
          f"dicts and OrderedDicts are read"
    if module.startswith("torch.nn") or module == "__main__" or name[:1].isupper():
        msg += " (if this file is a whole pickled model from torch.save(model), save model.state_dict() instead)"
    elif "Storage" in name or module.startswith("torch"):
        msg += " (a tensor type this reader does not support)"
    return _err(msg)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only plain containers, numbers, strings and tensors."""

    def __init__(self, data: bytes, storages: "_StorageTable", script_objects: bool = False):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._storages = storages
        self._script_objects = script_objects

    def find_class(self, module, name):
        if not isinstance(module, str) or not isinstance(name, str):
            raise _err("pickle global names must be strings")
        # Protocol < 3 pickles name Python 2 modules (__builtin__, ...): map them as pickle does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        obj = _ALLOWED.get((module, name))
        if obj is None and self._script_objects and (module == "__torch__" or module.startswith("__torch__.")):
            return _script_class(module, name)  # TorchScript archives only: inert stand-ins
        if obj is None:
            raise _refusal(module, name)
        return obj

    def persistent_load(self, pid):
        return self._storages.persistent_load(pid)


class _StorageTable:
    """The storages the pickle refers to, by key."""

    def __init__(self, legacy: bool):
        self.legacy = legacy
        self.by_key: Dict[str, _Storage] = {}

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise _err(f"unexpected persistent id {pid!r:.80}")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":
            raise _err("the file pickles a whole nn.Module (its class and source): save model.state_dict() instead")
        if kind != "storage":
            raise _err(f"unknown persistent id type {kind!r:.40}")
        expected = 6 if self.legacy else 5
        if len(pid) != expected:
            raise _err(f"storage persistent id has {len(pid)} fields, expected {expected}")
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, _StorageType):
            raise _err(f"storage type must be a torch storage class, got {stype!r:.40}")
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if not isinstance(key, str) or not _SAFE_KEY.match(key):
            raise _err(f"storage key {key!r:.40} is not a plain name")
        if not _is_int(numel) or numel < 0:
            raise _err(f"storage {key}: element count {numel!r:.40} is not an integer >= 0")
        st = self.by_key.get(key)
        if st is None:
            st = _Storage(key, stype.dtype, numel)
            self.by_key[key] = st
        elif st.dtype != stype.dtype or st.numel != numel:
            raise _err(f"storage {key} is described twice, as {st.dtype}[{st.numel}] and {stype.dtype}[{numel}]")
        if self.legacy and pid[5] is not None:
            view = pid[5]
            if not (isinstance(view, tuple) and len(view) == 3):
                raise _err(f"storage {key}: bad view metadata {view!r:.60}")
            vkey, voff, vsize = view
            if isinstance(vkey, bytes):
                vkey = vkey.decode("ascii", "replace")
            if not isinstance(vkey, str) or not _SAFE_KEY.match(vkey) or not _is_int(voff) or not _is_int(vsize) \
                    or voff < 0 or vsize < 0 or voff + vsize > numel:
                raise _err(f"storage {key}: view {view!r:.60} does not fit in its {numel} elements")
            v = self.by_key.get(vkey)
            if v is None:
                v = _Storage(vkey, st.dtype, vsize)
                # A view of a view points at the root directly (no chains to recurse through).
                base, base_off = (st.root, st.byte_offset) if st.root is not None else (st, 0)
                v.root, v.byte_offset = base, base_off + voff * _NUMPY_OF[st.dtype].itemsize
                self.by_key[vkey] = v
            return v
        return st


def _prescan(data: bytes, what: str) -> None:
    """Walks the opcodes without executing anything: refuses malformed
    streams, extension-registry opcodes and memo indices far beyond the
    stream's length (CPython sizes the memo by the largest index)."""
    count = 0
    try:
        for op, arg, _pos in pickletools.genops(data):
            count += 1
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
                idx = int(arg)
                if idx < 0 or idx > count + 1024:
                    raise _err(f"{what}: pickle memo index {idx} is out of range")
            elif op.name in ("EXT1", "EXT2", "EXT4"):
                raise _err(f"{what}: pickle uses the extension registry ({op.name}): refused")
    except ModelFormatError:
        raise
    except Exception as e:  # ValueError, UnicodeDecodeError, ... from a malformed stream
        raise _err(f"{what}: corrupt pickle: {e}") from None


def _unpickle(data: bytes, storages: _StorageTable, what: str, script_objects: bool = False):
    _prescan(data, what)
    try:
        return _RestrictedUnpickler(data, storages, script_objects).load()
    except ModelFormatError as e:
        raise _err(f"{what}: {e.message}") from None
    except RecursionError:
        raise _err(f"{what}: pickle nests too deeply") from None
    except MemoryError:
        raise _err(f"{what}: pickle asks for more memory than is available") from None
    except Exception as e:  # UnpicklingError, EOFError, TypeError, ValueError, KeyError, ...
        raise _err(f"{what}: corrupt pickle: {type(e).__name__}: {e}") from None


def _pickle_span(f, what: str) -> bytes:
    """Reads the next pickle (up to its STOP) from a stream, bytes-exact."""
    start = f.tell()
    try:
        end = None
        for op, _arg, pos in pickletools.genops(f):
            if op.name == "STOP":
                end = pos + 1
    except Exception as e:
        raise _err(f"{what}: corrupt or truncated pickle: {e}") from None
    if end is None:
        raise _err(f"{what}: truncated pickle")
    f.seek(start)
    data = f.read(end - start)
    if len(data) != end - start:
        raise _err(f"{what}: truncated pickle")
    return data


def _materialize(ref):
    """A numpy array for a _TensorRef, a QuantizedTensor for a _QTensorRef."""
    if isinstance(ref, _QTensorRef):
        values = _materialize_plain(ref.ref)
        if ref.axis is None:
            scales, zps = ref.scales, ref.zero_points
        else:
            scales, zps = _materialize_plain(ref.scales), _materialize_plain(ref.zero_points)
        return QuantizedTensor(values, scales, zps, ref.axis, ref.qscheme)
    return _materialize_plain(ref)


def _materialize_plain(ref: _TensorRef) -> np.ndarray:
    dt = _NUMPY_OF[ref.dtype]
    raw = ref.storage.raw()
    avail = len(raw) // dt.itemsize
    flat = np.frombuffer(raw, dtype=dt, count=avail)
    numel = int(np.prod(ref.size, dtype=np.int64)) if ref.size else 1
    if numel == 0:
        out = np.zeros(ref.size, dtype=dt)
    else:
        view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=ref.size,
                                               strides=tuple(s * dt.itemsize for s in ref.stride), writeable=False)
        out = np.array(view, dtype=dt, copy=True)
    if ref.dtype == "bfloat16":
        return bfloat16_to_float32(out)
    return out.astype(dt.newbyteorder("="), copy=False)


def _is_state_value(key: str, v) -> bool:
    """A tensor, or what torch.ao's quantized modules put in a state_dict: the packed (weight, bias) pair of a
    quantized Linear and its dtype."""
    if isinstance(v, (_TensorRef, _QTensorRef)):
        return True
    if key.endswith("._packed_params._packed_params") or key == "_packed_params._packed_params":
        return isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], _QTensorRef) and (
            v[1] is None or isinstance(v[1], _TensorRef))
    if key.endswith("_packed_params.dtype"):
        return isinstance(v, _DType)
    return False


def _unpack_quantized(refs: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """The state_dict of torch.ao quantized modules in plain keys: `X._packed_params._packed_params`
    (weight, bias) becomes `X.weight` / `X.bias`, `X._packed_params.dtype` goes, and so do the output
    quantization parameters `X.scale` / `X.zero_point` of a module with a quantized weight (tinyinfer's
    activations between layers stay float32). Returns the dict and notes on what changed."""
    out: Dict[str, Any] = OrderedDict()
    notes: List[str] = []
    qprefixes = set()
    for k, v in refs.items():
        if k.endswith("_packed_params._packed_params"):
            pre = k[:-len("_packed_params._packed_params")]
            pre = pre[:-1] if pre.endswith(".") else pre
            dot = pre + "." if pre else ""
            out[dot + "weight"] = v[0]
            if v[1] is not None:
                out[dot + "bias"] = v[1]
            qprefixes.add(pre)
        elif k.endswith("_packed_params.dtype"):
            continue
        else:
            out[k] = v
            if isinstance(v, _QTensorRef) and k.endswith("weight"):
                qprefixes.add(k[:-len("weight")].rstrip("."))
    dropped = 0
    for pre in qprefixes:
        for suffix in ("scale", "zero_point"):
            key = f"{pre}.{suffix}" if pre else suffix
            if key in out and isinstance(out[key], _TensorRef):
                del out[key]
                dropped += 1
    # A QuantStub converted by torch.ao (its module holds nothing but the input's scale and zero point): the
    # quantization of the model's input, which a float32 tinyinfer input does not need.
    stubs = []
    if qprefixes:
        by_prefix: Dict[str, List[str]] = {}
        for k in out:
            by_prefix.setdefault(k.rsplit(".", 1)[0] if "." in k else "", []).append(k.rsplit(".", 1)[-1])
        for pre, names in by_prefix.items():
            if sorted(names) == ["scale", "zero_point"] and pre and pre not in qprefixes:
                del out[f"{pre}.scale"], out[f"{pre}.zero_point"]
                stubs.append(pre)
        if stubs:
            notes.append(f"input quantization of {', '.join(sorted(stubs)[:6])} (QuantStub scale/zero_point) dropped: "
                         f"tinyinfer takes float32 inputs")
    if qprefixes:
        notes.append(f"{len(qprefixes)} quantized module(s) ({', '.join(sorted(qprefixes)[:6])}): weights kept as "
                     f"quantized tensors" + (f", {dropped // 2} output scale/zero_point pair(s) dropped "
                                             f"(activations stay float32)" if dropped else ""))
    return out, notes


_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params")


def _state_dict_of(obj, where: str) -> Tuple[Dict[str, np.ndarray], Optional[str]]:
    """The mapping of names to tensors in a loaded object (a state_dict, or a
    checkpoint dict holding one under a usual key)."""
    def tensors_only(d):
        return isinstance(d, dict) and len(d) > 0 and all(
            isinstance(k, str) and _is_state_value(k, v) for k, v in d.items())

    if tensors_only(obj):
        return obj, None
    if isinstance(obj, dict):
        for k in _NESTED_KEYS:
            if tensors_only(obj.get(k)):
                return obj[k], k
        if len(obj) == 0:
            raise _err(f"{where} holds an empty dict: no tensors")
        bad = [f"{k!r}: {type(v).__name__.lstrip('_')}" for k, v in obj.items() if not _is_state_value(k, v)]
        raise _err(f"{where} is not a state_dict (a dict of name -> tensor): entries {', '.join(bad[:6])}"
                   f"{' ...' if len(bad) > 6 else ''} are not tensors, and none of the keys "
                   f"{list(_NESTED_KEYS)} holds one")
    what = "a single tensor" if isinstance(obj, _TensorRef) else f"a {type(obj).__name__}"
    raise _err(f"{where} holds {what}, not a state_dict (a dict of name -> tensor)")


# ---------------------------------------------------------------------------------------------
# torch.save zip
# ---------------------------------------------------------------------------------------------

def _check_entry_size(zf: zipfile.ZipFile, info: zipfile.ZipInfo, total: int, what: str) -> None:
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise _err(f"{what}: stored zip entry {info.filename} claims {info.file_size} bytes but holds "
                       f"{info.compress_size}")
    elif info.file_size > 1100 * info.compress_size + 65536:
        raise _err(f"{what}: zip entry {info.filename} claims an implausible compression ratio")
    if info.header_offset + info.compress_size > total:
        raise _err(f"{what}: zip entry {info.filename} runs past the end of the archive (truncated?)")


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, total: int, what: str) -> bytes:
    _check_entry_size(zf, info, total, what)
    try:
        data = zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError) as e:
        raise _err(f"{what}: cannot read zip entry {info.filename}: {e}") from None
    if len(data) != info.file_size:
        raise _err(f"{what}: zip entry {info.filename} is truncated")
    return data


def _load_zip(fileobj, total: int, where: str):
    try:
        zf = zipfile.ZipFile(fileobj)
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, struct.error) as e:
        raise _err(f"{where}: not a readable zip archive (truncated or corrupt?): {e}") from None
    with zf:
        by_name = {i.filename: i for i in infos}
        pkls = [n for n in by_name if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if not pkls:
            raise _err(f"{where}: a zip archive without data.pkl: not a torch.save file")
        if len(pkls) > 1:
            raise _err(f"{where}: a zip archive with several data.pkl ({', '.join(pkls[:4])})")
        prefix = pkls[0][:-len("data.pkl")]
        if prefix + "constants.pkl" in by_name or any(n.startswith(prefix + "code/") for n in by_name):
            raise _err(f"{where}: a TorchScript archive (torch.jit.save), not a state_dict: convert it whole with "
                       f"tinyinfer.convert(path, dst, input_shape=...) (its code is the graph; "
                       f"tinyinfer.convert.torchscript.read_archive reads its weights)")
        check_zip_byteorder(zf, by_name, prefix, total, where)
        obj = load_zip_pickle(zf, by_name, prefix, "data.pkl", "data", total, where)
    return obj, f"torch.save zip (archive '{prefix.rstrip('/')}')"


def check_zip_byteorder(zf: zipfile.ZipFile, by_name, prefix: str, total: int, where: str) -> None:
    """Refuses an archive whose `byteorder` record is not 'little' (absent means little)."""
    bo = by_name.get(prefix + "byteorder")
    if bo is not None:
        order = _read_entry(zf, bo, total, where).decode("ascii", "replace").strip()
        if order == "big":
            raise _err(f"{where}: saved on a big-endian machine (byteorder 'big'): refused; re-save it on a "
                       f"little-endian machine")
        if order != "little":
            raise _err(f"{where}: unknown byteorder record {order!r:.20}")


def load_zip_pickle(zf: zipfile.ZipFile, by_name, prefix: str, pkl: str, storage_dir: str, total: int, where: str,
                    script_objects: bool = False):
    """Unpickles `<prefix><pkl>` of a torch zip archive with the restricted unpickler (TorchScript objects as
    inert stand-ins when script_objects) and reads the storages it names from `<prefix><storage_dir>/<key>`,
    every size checked."""
    info = by_name[prefix + pkl]
    if info.file_size > _MAX_PICKLE_BYTES:
        raise _err(f"{where}: {pkl} of {info.file_size} bytes is too large")
    table = _StorageTable(legacy=False)
    obj = _unpickle(_read_entry(zf, info, total, where), table, f"{where} ({pkl})", script_objects)
    for key, st in table.by_key.items():
        entry = by_name.get(f"{prefix}{storage_dir}/{key}")
        if entry is None:
            raise _err(f"{where}: storage {key} is missing (no {prefix}{storage_dir}/{key} in the archive)")
        if entry.file_size != st.nbytes:
            raise _err(f"{where}: storage {key} is described as {st.numel} {st.dtype} elements "
                       f"({st.nbytes} bytes) but {entry.filename} holds {entry.file_size} bytes: the sizes lie")
        st.data = _read_entry(zf, entry, total, where)
    return obj


# ---------------------------------------------------------------------------------------------
# legacy torch.save (protocol 1001)
# ---------------------------------------------------------------------------------------------

def _load_legacy(f, total: int, where: str):
    plain = _StorageTable(legacy=True)
    magic = _unpickle(_pickle_span(f, where), plain, f"{where} (magic number)")
    if magic != _MAGIC_NUMBER:
        raise _err(f"{where}: a pickle, but not a torch.save file (magic number {magic!r:.40})")
    proto = _unpickle(_pickle_span(f, where), plain, f"{where} (protocol)")
    if proto != _PROTOCOL_VERSION:
        raise _err(f"{where}: legacy torch.save protocol {proto!r:.20} is not supported (expected 1001)")
    sys_info = _unpickle(_pickle_span(f, where), plain, f"{where} (sys_info)")
    if not isinstance(sys_info, dict):
        raise _err(f"{where}: sys_info is not a dict")
    if sys_info.get("little_endian", True) is not True:
        raise _err(f"{where}: saved on a big-endian machine: refused; re-save it on a little-endian machine")
    table = _StorageTable(legacy=True)
    obj = _unpickle(_pickle_span(f, where), table, f"{where} (data)")
    keys = _unpickle(_pickle_span(f, where), plain, f"{where} (storage keys)")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _err(f"{where}: the storage key list is not a list of strings")
    if plain.by_key:
        raise _err(f"{where}: a header pickle refers to storages")
    roots = {k: s for k, s in table.by_key.items() if s.root is None}
    if sorted(set(keys)) != sorted(roots) or len(keys) != len(set(keys)):
        raise _err(f"{where}: the storage key list {keys[:4]} does not match the storages the data refers to "
                   f"{sorted(roots)[:4]}")
    for key in keys:
        st = roots[key]
        head = f.read(8)
        if len(head) != 8:
            raise _err(f"{where}: truncated before storage {key}")
        (numel,) = struct.unpack("<q", head)
        if numel != st.numel:
            raise _err(f"{where}: storage {key} is described as {st.numel} elements but its record says {numel}: "
                       f"the sizes lie")
        left = total - f.tell()
        if st.nbytes > left:
            raise _err(f"{where}: storage {key} needs {st.nbytes} bytes but only {left} are left (truncated?)")
        st.data = f.read(st.nbytes)
        if len(st.data) != st.nbytes:
            raise _err(f"{where}: storage {key} is truncated")
    return obj, "legacy torch.save (protocol 1001)"


# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}
_ST_MAX_HEADER = 100 * 1000 * 1000


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise _err(f"safetensors header: duplicate key {k!r:.60}")
        d[k] = v
    return d


def parse_safetensors_header(buf, where: str = "safetensors"):
    """Validates a safetensors header; returns ([(name, dtype, shape, begin, end)], payload offset)."""
    total = len(buf)
    if total < 8:
        raise _err(f"{where}: {total} bytes: too short for a safetensors header")
    (n,) = struct.unpack("<Q", bytes(buf[:8]))
    if n > total - 8 or n > _ST_MAX_HEADER:
        raise _err(f"{where}: header length {n} exceeds the file ({total} bytes)")
    try:
        header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ModelFormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _err(f"{where}: the header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise _err(f"{where}: the header is not a JSON object")
    payload = total - 8 - n
    entries = []
    for name, e in header.items():
        if name == "__metadata__":
            if not isinstance(e, dict) or not all(isinstance(v, str) for v in e.values()):
                raise _err(f"{where}: __metadata__ must map strings to strings")
            continue
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise _err(f"{where}: tensor {name!r:.60} must have exactly dtype, shape and data_offsets")
        dt = e["dtype"]
        if dt not in _ST_DTYPES:
            raise _err(f"{where}: tensor {name!r:.60} has dtype {dt!r:.20}; supported: {', '.join(_ST_DTYPES)}")
        shape, offs = e["shape"], e["data_offsets"]
        if not isinstance(shape, list) or len(shape) > _MAX_RANK or not all(_is_int(d) and d >= 0 for d in shape):
            raise _err(f"{where}: tensor {name!r:.60} has a bad shape {shape!r:.60}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs)
                and 0 <= offs[0] <= offs[1] <= payload):
            raise _err(f"{where}: tensor {name!r:.60} has data_offsets {offs!r:.60} outside the {payload}-byte payload")
        count = 1
        for d in shape:
            count *= d
        need = count * _NUMPY_OF[_ST_DTYPES[dt]].itemsize
        if offs[1] - offs[0] != need:
            raise _err(f"{where}: tensor {name!r:.60} of shape {shape} and dtype {dt} needs {need} bytes but "
                       f"data_offsets {offs} span {offs[1] - offs[0]}")
        entries.append((name, _ST_DTYPES[dt], tuple(shape), offs[0], offs[1]))
    pos = 0
    for name, _dt, _shape, b, e in sorted(entries, key=lambda t: (t[3], t[4])):
        if b != pos:
            raise _err(f"{where}: tensor {name!r:.60} starts at {b}, expected {pos} (overlap or hole)")
        pos = e
    if pos != payload:
        raise _err(f"{where}: the tensors cover {pos} of the {payload} payload bytes")
    return entries, 8 + n


def _load_safetensors_own(buf, where: str) -> Dict[str, np.ndarray]:
    entries, base = parse_safetensors_header(buf, where)
    out: Dict[str, np.ndarray] = {}
    for name, dt, shape, b, e in entries:
        npd = _NUMPY_OF[dt]
        a = np.frombuffer(buf, dtype=npd, count=(e - b) // npd.itemsize, offset=base + b).reshape(shape).copy()
        out[name] = bfloat16_to_float32(a) if dt == "bfloat16" else a.astype(npd.newbyteorder("="), copy=False)
    return out


def _safetensors_numpy():
    """The safetensors package's numpy API, or None."""
    try:
        from safetensors import numpy as stnp  # type: ignore
        return stnp
    except Exception:
        return None


def _load_safetensors(buf, where: str) -> Dict[str, np.ndarray]:
    entries, _ = parse_safetensors_header(buf, where)  # our own checks first, always
    stnp = _safetensors_numpy()
    if stnp is None or any(dt == "bfloat16" for _, dt, *_ in entries):
        return _load_safetensors_own(buf, where)  # numpy has no bfloat16: widen it ourselves
    try:
        loaded = stnp.load(bytes(buf))
    except Exception as e:
        raise _err(f"{where}: safetensors refused the file: {e}") from None
    for name, dt, shape, _b, _e in entries:
        a = loaded.get(name)
        if a is None or tuple(a.shape) != shape:
            raise _err(f"{where}: safetensors and the header disagree on tensor {name!r:.60}")
    return {name: np.ascontiguousarray(loaded[name]) for name, *_ in entries}


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------

_LEGACY_HEAD = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def detect_weights_format(head: bytes, total: int) -> str:
    """'zip', 'legacy' or 'safetensors' from the first bytes of a file."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head.startswith(_LEGACY_HEAD):
        return "legacy"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if n <= total - 8:
            return "safetensors"
    if head[:1] == b"\x80":
        return "legacy"
    raise _err("not a torch.save file (zip or legacy pickle) nor a safetensors file")


def _open(source) -> Tuple[Any, int, str, Any]:
    """(buffer-like, size, description, closer) for a path or bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        b = bytes(source)
        return b, len(b), "<bytes>", None
    path = os.fspath(source)
    try:
        f = open(path, "rb")
    except OSError as e:
        from .._errors import TinyInferIOError
        raise TinyInferIOError(f"cannot open {path}: {e.strerror or e}") from None
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        f.close()
        raise _err(f"{path}: empty file")
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    f.close()
    return m, size, os.fspath(path), m


def load_state_dict_with_info(source) -> Tuple[Dict[str, np.ndarray], str]:
    """Like load_state_dict, plus a description of what was read."""
    buf, total, where, closer = _open(source)
    try:
        fmt = detect_weights_format(bytes(buf[:64]), total)
        if fmt == "safetensors":
            sd = _load_safetensors(buf, where)
            if not sd:
                raise _err(f"{where}: a safetensors file without tensors")
            return sd, f"safetensors ({len(sd)} tensors)"
        stream = io.BytesIO(buf) if isinstance(buf, bytes) else _MmapReader(buf)
        if fmt == "zip":
            obj, desc = _load_zip(stream, total, where)
        else:
            obj, desc = _load_legacy(stream, total, where)
        refs, nested = _state_dict_of(obj, where)
        refs, qnotes = _unpack_quantized(refs)
        sd = {k: _materialize(v) for k, v in refs.items()}
        if nested:
            desc += f", the state_dict under key {nested!r}"
        for n in qnotes:
            desc += f"; {n}"
        return sd, f"{desc} ({len(sd)} tensors)"
    finally:
        if closer is not None:
            closer.close()


def load_state_dict(source) -> Dict[str, np.ndarray]:
    """Reads a state_dict (name -> numpy array) from a torch.save file (zip or
    legacy) or a safetensors file, chosen by content; `source` is a path or
    bytes. Never runs pickle code: anything but tensors and plain containers
    is refused with ModelFormatError. bfloat16 becomes float32; other dtypes
    are kept. A checkpoint dict holding the state_dict under 'state_dict',
    'model_state_dict', 'model', ... is accepted."""
    return load_state_dict_with_info(source)[0]


class _MmapReader(io.RawIOBase):
    """A seekable read-only stream over an mmap (for zipfile and the legacy reader) without copying the file."""

    def __init__(self, m):
        super().__init__()
        self._m, self._pos = m, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, off, whence=0):
        base = {0: 0, 1: self._pos, 2: len(self._m)}[whence]
        self._pos = max(0, base + off)
        return self._pos

    def read(self, n=-1):
        end = len(self._m) if n is None or n < 0 else min(len(self._m), self._pos + n)
        data = self._m[self._pos:end] if end > self._pos else b""
        self._pos = max(self._pos, end)
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)
