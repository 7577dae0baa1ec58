"""GraphBuilder: writes .tinf files from numpy weights.

    b = GraphBuilder("mlp")
    x = b.input("x", (1, 784))
    h = b.op("FullyConnected", x, b.const("w1", w1), b.const("b1", b1), activation=1)
    y = b.op("Softmax", h)
    b.output(y)
    b.save("mlp.tinf")

Op and attribute names are those of docs/ops.md; their numbers come from the
library itself (tinf_op_name / tinf_attr_name), so they are written down only
in the Swift core. Serialization and validation are done by the library
(tinf_builder_*): a builder never writes a file the library refuses.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import byref, c_float, c_int32, c_int64, c_size_t, c_void_p
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._handle import OwnedHandle
from . import _lib
from ._dtypes import code_of
from ._errors import InvalidArgumentError, UnsupportedOpError

L = _lib.lib


class Tensor:
    """A tensor of a GraphBuilder (an index into its tensor table)."""

    __slots__ = ("builder", "index", "name")

    def __init__(self, builder: "GraphBuilder", index: int, name: str):
        self.builder, self.index, self.name = builder, index, name

    def __repr__(self) -> str:
        return f"Tensor({self.name!r})"


class GraphBuilder(OwnedHandle):
    """Assembles a graph op by op (in execution order) and serializes it."""
    _FREE = "tinf_builder_free"

    def __init__(self, name: str = "model", producer: str = "tinyinfer.GraphBuilder"):
        h = _lib.BuilderHandle()
        L.tinf_builder_create(byref(h))
        self._h = h
        self._names: Dict[str, int] = {}
        self._inputs: List[int] = []
        self._outputs: List[int] = []
        self._counter = 0
        self._next_op = 0  # the index the next op gets in the main graph's op list
        self.metadata("name", name)
        self.metadata("producer", producer)

    # -- tensors ------------------------------------------------------------
    def metadata(self, key: str, value: str) -> None:
        L.tinf_builder_set_metadata(self._h, key.encode(), str(value).encode())

    def _unique(self, name: Optional[str], stem: str) -> str:
        if name is None:
            self._counter += 1
            name = f"{stem}_{self._counter}"
        if name in self._names:
            raise InvalidArgumentError(f"tensor name '{name}' is already used")
        return name

    def _add(self, name: str, dtype, shape, data: Optional[np.ndarray]) -> Tensor:
        code = 0 if dtype is None else code_of(dtype)
        if shape is None:
            rank, dims = -1, None
        else:
            shape = tuple(int(d) for d in shape)
            rank = len(shape)
            dims = (c_int64 * max(rank, 1))(*shape)
        idx = c_int32()
        if data is not None:
            L.tinf_builder_add_tensor(self._h, name.encode(), code, rank, dims, data.ctypes.data, data.nbytes,
                                      byref(idx))
        else:
            L.tinf_builder_add_tensor(self._h, name.encode(), code, rank, dims, None, 0, byref(idx))
        self._names[name] = idx.value
        return Tensor(self, idx.value, name)

    def input(self, name: str, shape: Sequence[int], dtype="float32") -> Tensor:
        """Declares a graph input (in the order of calls)."""
        t = self._add(self._unique(name, "input"), dtype, shape, None)
        self._inputs.append(t.index)
        return t

    def const(self, name: Optional[str], value, dtype=None) -> Tensor:
        """Adds a constant (weights): copied into the file, 64-byte aligned."""
        a = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        a = np.ascontiguousarray(a)
        if a.ndim == 0:
            a = a.reshape(1)
        return self._add(self._unique(name, "const"), a.dtype, a.shape, a)

    def store_sparse(self, tensor: Tensor, on: bool = True) -> None:
        """Stores constant `tensor` in the file's sparse encoding whenever that
        is smaller than dense (unmarked constants: when it at most halves one
        of 4 KiB or more; docs/format.md, tinf_builder_set_store_sparse)."""
        L.tinf_builder_set_store_sparse(self._h, tensor.index, 1 if on else 0)

    def quantization(self, tensor: Tensor, scales, zero_points, axis: Optional[int] = None) -> None:
        """Sets quantization parameters (per tensor when axis is None)."""
        s = np.ascontiguousarray(np.atleast_1d(scales), dtype=np.float32)
        z = np.ascontiguousarray(np.atleast_1d(zero_points), dtype=np.int32)
        if s.shape != z.shape:
            raise InvalidArgumentError("scales and zero points differ in length")
        L.tinf_builder_set_quant(self._h, tensor.index, -1 if axis is None else int(axis), s.size,
                                 s.ctypes.data_as(ctypes.POINTER(c_float)),
                                 z.ctypes.data_as(ctypes.POINTER(c_int32)))

    # -- ops ----------------------------------------------------------------
    def op(self, op: str, *inputs: Optional[Tensor], outputs: Union[int, Sequence[str]] = 1,
           name: Optional[str] = None, **attrs) -> Union[Tensor, List[Tensor]]:
        """Appends op `op` (a name of docs/ops.md) reading `inputs` (None for an
        absent optional input) with attributes `attrs`. Returns its output
        tensor, or a list when `outputs` is a count > 1 or a list of names."""
        if op not in _lib.OP_IDS:
            raise UnsupportedOpError(f"unknown op '{op}'; known: {sorted(_lib.OP_IDS)}")
        ins = []
        for t in inputs:
            if t is None:
                ins.append(-1)
            elif isinstance(t, Tensor):
                if t.builder is not self:
                    raise InvalidArgumentError(f"{t} belongs to another builder")
                ins.append(t.index)
            else:
                ins.append(self.const(None, t).index)
        if isinstance(outputs, int):
            stem = name or op.lower()
            out_names = [self._unique(None, stem) for _ in range(outputs)] if outputs > 1 or name is None \
                else [self._unique(name, stem)]
        else:
            out_names = [self._unique(n, op.lower()) for n in outputs]
        outs = [self._add(n, None, None, None) for n in out_names]
        in_arr = (c_int32 * max(len(ins), 1))(*ins)
        out_arr = (c_int32 * len(outs))(*[t.index for t in outs])
        k = c_int32()
        L.tinf_builder_add_op(self._h, _lib.OP_IDS[op], len(ins), in_arr, len(outs), out_arr, byref(k))
        self._next_op = k.value + 1
        for key, value in attrs.items():
            self._set_attr(k.value, op, key, value)
        if isinstance(outputs, int) and outputs == 1:
            return outs[0]
        return outs

    def _set_attr(self, op_index: int, op: str, key: str, value) -> None:
        if key not in _lib.ATTR_IDS:
            raise InvalidArgumentError(f"{op}: unknown attribute '{key}'; known: {sorted(_lib.ATTR_IDS)}")
        k = _lib.ATTR_IDS[key]
        if isinstance(value, (bool, np.bool_, int, np.integer)):
            L.tinf_builder_set_attr_int(self._h, op_index, k, int(value))
        elif isinstance(value, (float, np.floating)):
            L.tinf_builder_set_attr_float(self._h, op_index, k, float(value))
        elif isinstance(value, str):
            L.tinf_builder_set_attr_string(self._h, op_index, k, value.encode())
        else:
            a = np.asarray(value)
            if a.ndim != 1 and a.size != 0:
                a = a.reshape(-1)
            if a.size == 0 or np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
                v = np.ascontiguousarray(a, dtype=np.int64)
                L.tinf_builder_set_attr_ints(self._h, op_index, k, v.size, v.ctypes.data_as(ctypes.POINTER(c_int64)))
            elif np.issubdtype(a.dtype, np.floating):
                v = np.ascontiguousarray(a, dtype=np.float32)
                L.tinf_builder_set_attr_floats(self._h, op_index, k, v.size, v.ctypes.data_as(ctypes.POINTER(c_float)))
            else:
                raise InvalidArgumentError(f"{op}: attribute '{key}' has unsupported value {value!r}")

    def subgraph(self, name: str, inputs: Sequence[Tuple[str, Sequence[int], object]] = ()) -> "Subgraph":
        """A subgraph for If / While (docs/ops.md, "Control flow"), as a context
        manager: its `inputs` ((name, shape, dtype) each) are `sub.inputs`; the
        ops added inside the `with` block are its ops; `sub.output(...)` marks
        its outputs; after the block `sub.index` is the number to give in the
        `subgraphs` attribute. A subgraph reads the main graph's values only
        through its inputs (constants are shared). Build a subgraph called
        from another one inside that one's block."""
        return Subgraph(self, name, inputs)

    def output(self, *tensors: Tensor) -> None:
        """Marks graph outputs (in the order of calls)."""
        for t in tensors:
            self._outputs.append(t.index)

    # -- serialization ----------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serializes and validates the graph; returns the .tinf bytes."""
        ins = (c_int32 * max(len(self._inputs), 1))(*self._inputs)
        outs = (c_int32 * max(len(self._outputs), 1))(*self._outputs)
        L.tinf_builder_set_graph_inputs(self._h, len(self._inputs), ins)
        L.tinf_builder_set_graph_outputs(self._h, len(self._outputs), outs)
        L.tinf_builder_finish(self._h)
        p, n = c_void_p(), c_size_t()
        L.tinf_builder_data(self._h, byref(p), byref(n))
        return ctypes.string_at(p.value, n.value)

    def save(self, path: Union[str, os.PathLike]) -> int:
        """Writes the .tinf file atomically (tinyinfer._atomic); returns its size in bytes."""
        from ._atomic import write_atomic
        data = self.to_bytes()
        write_atomic(path, data)
        return len(data)

    def load(self, threads: int = 1):
        """The built model, loaded (without a file)."""
        from .model import Model
        return Model(self.to_bytes(), threads=threads)


class Subgraph:
    """A subgraph being built (GraphBuilder.subgraph)."""

    def __init__(self, builder: GraphBuilder, name: str, inputs):
        self.builder, self.name = builder, name
        self.inputs = [builder._add(builder._unique(n, "input"), dt, shape, None) for n, shape, dt in inputs]
        self._outputs: List[int] = []
        self._first = None
        self.index: Optional[int] = None

    def output(self, *tensors: Tensor) -> None:
        for t in tensors:
            if t.builder is not self.builder:
                raise InvalidArgumentError(f"{t} belongs to another builder")
            self._outputs.append(t.index)

    def __enter__(self) -> "Subgraph":
        self._first = self.builder._next_op
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            return
        b = self.builder
        ins = (c_int32 * max(len(self.inputs), 1))(*[t.index for t in self.inputs])
        outs = (c_int32 * max(len(self._outputs), 1))(*self._outputs)
        k = c_int32()
        L.tinf_builder_add_subgraph(b._h, self.name.encode(), self._first, len(self.inputs), ins,
                                    len(self._outputs), outs, byref(k))
        b._next_op = self._first
        self.index = k.value
