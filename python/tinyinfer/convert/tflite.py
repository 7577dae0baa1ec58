"""TFLite importer: .tflite (schema v3) -> GraphBuilder.

    tinyinfer.convert("model.tflite", "model.tinf")

Reads the flatbuffer with the generated classes of the `tflite` PyPI package
(imported lazily) and converts the main subgraph (subgraph 0). TFLite is
NHWC like tinyinfer, and its weight layouts are the runtime's (CONV_2D and
TRANSPOSE_CONV weights OHWI = [Cout,KH,KW,Cin], DEPTHWISE_CONV_2D [1,KH,KW,C*M],
FULLY_CONNECTED [N,K]), so weights and their quantization axes carry over as
they are.

Precision is kept as the file has it:
- float32 models convert op for op;
- float16 weights (behind DEQUANTIZE ops) stay float16 constants, each
  followed by a Dequantize op (float16 -> float32);
- dynamic-range int8 models (int8 weights with per-channel scales on float
  ops): the int8 constant keeps its quantization and a Dequantize op feeds the
  float op. LiteRT's hybrid kernels instead quantize the activations at run
  time, so results differ from LiteRT by about that quantization step;
- full-integer models: int8 ops with their per-tensor / per-axis quantization
  parameters copied exactly, int32 biases as int32 constants with theirs;
  QUANTIZE / DEQUANTIZE become Quantize (dtype attribute, mode 0) / Dequantize.
  The model's inputs and outputs keep their dtypes.

Attributes that TFLite passes as input tensors (shapes, perms, axes, paddings,
begin/end/strides, sizes, split sizes, output_shape) must be constants.
Any op that cannot be mapped is collected; the conversion then fails with
UnsupportedOpError listing every one with its count, and writes nothing.
"""

from __future__ import annotations

import math
import os
import struct
from collections import Counter
from typing import Dict, List, Optional

import numpy as np

from .._dtypes import code_of
from .._errors import InvalidArgumentError, ModelFormatError
from ..builder import GraphBuilder, Tensor
from . import ConvertError, Report, require, unsupported
from .tflite_sparse import densify_tensor as _densify
from .tflite_custom import CUSTOM_HANDLERS

__all__ = ["SUPPORTED_OPS", "import_model"]

_ACT = "fused activation NONE/RELU/RELU6/RELU_N1_TO_1"

SUPPORTED_OPS: Dict[str, str] = {
    "ADD": f"Add ({_ACT})",
    "SUB": f"Sub ({_ACT})",
    "MUL": f"Mul ({_ACT})",
    "DIV": f"Div ({_ACT})",
    "MAXIMUM": "Maximum",
    "MINIMUM": "Minimum",
    "RELU": "Relu",
    "RELU6": "Relu6",
    "RELU_N1_TO_1": "Maximum(x, -1) then Minimum(., 1) (float only)",
    "LEAKY_RELU": "LeakyRelu (alpha)",
    "PRELU": "PRelu",
    "HARD_SWISH": "HardSwish",
    "GELU": "Gelu (approximate)",
    "LOGISTIC": "Logistic",
    "TANH": "Tanh",
    "EXP": "Exp",
    "LOG": "Log",
    "SQRT": "Sqrt",
    "RSQRT": "Rsqrt",
    "SOFTMAX": "Softmax (beta, last axis)",
    "LOG_SOFTMAX": "LogSoftmax (last axis)",
    "FULLY_CONNECTED": f"FullyConnected ({_ACT}; keep_num_dims=false flattens the input to 2-D with a Reshape)",
    "BATCH_MATMUL": "MatMul (adj_x/adj_y -> transpose_a/transpose_b)",
    "CONV_2D": f"Conv2D (strides, dilations, SAME/VALID, groups from the weight shape, {_ACT})",
    "DEPTHWISE_CONV_2D": f"DepthwiseConv2D (depth_multiplier from the weight shape, {_ACT})",
    "TRANSPOSE_CONV": "TransposeConv2D (constant output_shape -> explicit pads + output_padding; optional bias)",
    "MAX_POOL_2D": f"MaxPool2D ({_ACT})",
    "AVERAGE_POOL_2D": f"AveragePool2D (padding excluded from the count, {_ACT})",
    "MEAN": "Mean (constant axes, keep_dims)",
    "SUM": "ReduceSum (constant axes, keep_dims; float only)",
    "REDUCE_PROD": "ReduceProd (constant axes, keep_dims; float only; integer constants are folded)",
    "REDUCE_MAX": "ReduceMax (constant axes, keep_dims; int8 with the tensors' quantization)",
    "REDUCE_MIN": "ReduceMin (constant axes, keep_dims; float only)",
    "RESHAPE": "Reshape (constant shape input, else the new_shape option, else the output's shape)",
    "SQUEEZE": "Squeeze (squeeze_dims)",
    "EXPAND_DIMS": "ExpandDims (constant axis)",
    "TRANSPOSE": "Transpose (constant perm)",
    "CONCATENATION": "Concat (axis; no fused activation, which TFLite's kernels refuse too)",
    "SPLIT": "Split (constant axis, the first input; equal parts)",
    "SPLIT_V": "Split (constant size_splits and axis)",
    "SLICE": "Slice (constant begin, size; the SLICE + item + SLICE CONCATENATION of a lowered TensorList write "
             "(Keras LSTM WHILE loops) becomes DynamicUpdateSlice)",
    "DYNAMIC_UPDATE_SLICE": "DynamicUpdateSlice (run-time start, clamped so the update fits)",
    "STRIDED_SLICE": "StridedSlice (constant begin/end/strides, begin/end/shrink_axis masks, offset)",
    "GATHER": "Gather (axis; batch_dims 0)",
    "PAD": "Pad (constant paddings; quantized tensors pad with their zero point)",
    "PADV2": "Pad (constant paddings and constant_values)",
    "MIRROR_PAD": "Pad (mode 1 REFLECT / 2 SYMMETRIC)",
    "RESIZE_BILINEAR": "ResizeBilinear (constant size, align_corners, half_pixel_centers)",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearest (constant size, align_corners, half_pixel_centers)",
    "DEPTH_TO_SPACE": "DepthToSpace (block_size, DCR)",
    "SPACE_TO_DEPTH": "SpaceToDepth (block_size)",
    "QUANTIZE": "Quantize (dtype of the output, mode 0; output quantization copied)",
    "DEQUANTIZE": "Dequantize (int8/uint8/int16/float16 -> float32; constant inputs stay in their precision)",
    "EQUAL": "Equal (bool output; float32, int32, int64, int8/uint8 unquantized, bool)",
    "NOT_EQUAL": "NotEqual (as EQUAL)",
    "LESS": "Less (as EQUAL, no bool)",
    "LESS_EQUAL": "LessEqual (as LESS)",
    "GREATER": "Greater (as LESS)",
    "GREATER_EQUAL": "GreaterEqual (as LESS)",
    "LOGICAL_AND": "LogicalAnd",
    "LOGICAL_OR": "LogicalOr",
    "LOGICAL_NOT": "LogicalNot",
    "SELECT": "Where (a rank-1 condition over the first dim is reshaped to broadcast)",
    "SELECT_V2": "Where",
    "FLOOR": "Floor",
    "CEIL": "Ceil",
    "ROUND": "Round (ties to even)",
    "CAST": "Cast (to the output's dtype; constants are folded)",
    "SHAPE": "folded to a constant from the static shape (else Shape)",
    "TILE": "Tile (constant multiples)",
    "BROADCAST_TO": "Expand (constant shape)",
    "RANGE": "folded to a constant (constant start, limit, delta)",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "LSTM (float32 or dynamic-range int8 weights; time_major both ways; peepholes; "
                                    "tanh activation; the state starts at zero or at a constant on every run); "
                                    "CIFG, projection, layer norm and cell_clip refused",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "LSTM with both directions (as UNIDIRECTIONAL_SEQUENCE_LSTM; merged outputs as "
                                   "a Reshape, else a Split; auxiliary inputs refused)",
}

_CONTROL_FLOW = {"CALL", "STABLEHLO_WHILE", "STABLEHLO_COMPOSITE"}

# TensorType -> numpy dtype (the ones the runtime has).
_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16, 9: np.int8}
_TYPE_NAMES = {0: "FLOAT32", 1: "FLOAT16", 2: "INT32", 3: "UINT8", 4: "INT64", 5: "STRING", 6: "BOOL", 7: "INT16",
               8: "COMPLEX64", 9: "INT8", 10: "FLOAT64", 11: "COMPLEX128", 12: "UINT64", 13: "RESOURCE",
               14: "VARIANT", 15: "UINT32", 16: "UINT16", 17: "INT4", 18: "BFLOAT16"}
_ACT_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
# TFLite ActivationFunctionType -> the runtime's activation attribute.
_ACT_MAP = {0: 0, 1: 1, 3: 2, 2: 3}
_QUANTIZED = (np.int8, np.uint8, np.int16)


class _Refuse(Exception):
    """An op (or one of its settings) that cannot be converted: the reason."""


class _Quant:
    __slots__ = ("scales", "zero_points", "axis")

    def __init__(self, scales, zero_points, axis):
        self.scales, self.zero_points, self.axis = scales, zero_points, axis


class _TensorInfo:
    """One tensor of the TFLite subgraph."""
    __slots__ = ("index", "name", "type", "dtype", "shape", "data", "quant", "sparse", "signature", "was_sparse")

    def __init__(self, index, name, type_, dtype, shape, data, quant, sparse, signature, was_sparse=False):
        self.index, self.name, self.type, self.dtype = index, name, type_, dtype
        self.shape, self.data, self.quant, self.sparse, self.signature = shape, data, quant, sparse, signature
        self.was_sparse = was_sparse   # densified from a TFLite sparsity encoding: stored sparse again

    @property
    def dynamic(self) -> bool:
        """Whether shape_signature marks some dims as dynamic (-1)."""
        return any(d < 0 for d in self.signature)

    @property
    def const(self) -> bool:
        return self.data is not None

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, f"type {self.type}")


def _tflite():
    """The `tflite` package (the generated flatbuffer classes) and its op-code names."""
    utils = require("tflite.utils", "tflite", "the TFLite importer")
    import tflite
    return tflite, utils.BUILTIN_OPCODE2NAME


def _describe(info: "_TensorInfo") -> str:
    """'name' dtype [shape] (quantization), for the report."""
    text = f"'{info.name}' {np.dtype(info.dtype).name} {list(info.shape)}"
    q = info.quant
    if q is not None and np.dtype(info.dtype).kind in "iu":
        text += f" (per-axis, axis {q.axis}, {q.scales.size} scales)" if q.axis is not None else " (per-tensor)"
    return text


def _np(vec) -> np.ndarray:
    """A flatbuffer vector accessor's result (0 when absent) as an array."""
    return np.zeros(0) if isinstance(vec, int) else vec


def _opt(o, field: str, default):
    """An option field, or the default when the options table is absent."""
    return default if o is None else getattr(o, field)()


class _Importer:
    def __init__(self, data: bytes, report: Report, name: str):
        self.tfl, self.opnames = _tflite()
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ModelFormatError("not a TFLite file (no TFL3 identifier at byte 4)")
        self.raw = data
        self.report = report
        try:
            self.model = self.tfl.Model.GetRootAs(data, 0)
            version = self.model.Version()
            nsub = self.model.SubgraphsLength()
        except Exception as e:
            raise ModelFormatError(f"cannot read the TFLite flatbuffer: {e}") from e
        if version != 3:
            report.notes.append(f"schema version {version} (expected 3); read with the v3 schema")
        if nsub < 1:
            raise ModelFormatError("the TFLite model has no subgraph")
        self.graph = self.model.Subgraphs(0)
        if nsub > 1:
            report.notes.append(f"{nsub} subgraphs: converted the main one (subgraph 0) and those IF, WHILE and "
                                f"CALL_ONCE call")
        desc = self.model.Description()
        self.b = GraphBuilder(name, producer="tinyinfer.convert.tflite")
        self.b.metadata("source_format", "tflite")
        if desc:
            self.b.metadata("tflite_description", desc.decode("utf-8", "replace"))
        self.tensors: List[_TensorInfo] = [self._tensor(i) for i in range(self.graph.TensorsLength())]
        self.env: Dict[int, Tensor] = {}        # TFLite tensor index -> builder tensor
        self.float_view: Dict[int, Tensor] = {}  # quantized constant -> its Dequantize output
        self.names: set = set()
        self.problems: Counter = Counter()
        self.fused: Counter = Counter()
        self.folded: Counter = Counter()
        self.quantized_consts: Counter = Counter()  # (dtype, per-axis) -> count
        # Dynamic non-batch input dims (shape_signature -1): kept dynamic unless a value computed at conversion
        # from their example size (a folded SHAPE) reaches an op other than a RESHAPE that keeps the dim
        # inferred (_reshape); `tainted`: the tensors holding such values, `frozen_by`: why they were fixed.
        self.tainted: set = set()
        self.frozen_by: List[str] = []
        self.reshape_follows = False

    # -- reading ----------------------------------------------------------------
    def _buffer(self, index: int) -> Optional[bytes]:
        if index <= 0 or index >= self.model.BuffersLength():
            return None
        buf = self.model.Buffers(index)
        off = buf.Offset()
        if off > 1:  # data outside the flatbuffer (models over 2 GB)
            size = buf.Size()
            if off + size > len(self.raw):
                raise ModelFormatError(f"buffer {index} ({off}+{size}) lies past the end of the file")
            return self.raw[off:off + size] if size else None
        if buf.DataIsNone() or buf.DataLength() == 0:
            return None
        return buf.DataAsNumpy().tobytes()

    def _tensor(self, i: int) -> _TensorInfo:
        t = self.graph.Tensors(i)
        name = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{i}"
        shape = tuple(int(d) for d in _np(t.ShapeAsNumpy()))
        sig = tuple(int(d) for d in _np(t.ShapeSignatureAsNumpy()))
        if len(sig) != len(shape):
            sig = shape
        dtype = _TYPES.get(t.Type())
        raw = self._buffer(t.Buffer())
        sparse = t.Sparsity() is not None
        was_sparse = False
        data = None
        if raw is not None and sparse and dtype is not None:  # densified here: DENSIFY then folds
            data = _densify(self.tfl, t.Sparsity(), raw, dtype, shape, name)
            sparse, was_sparse = False, True
        elif raw is not None and sparse:
            data = raw  # compressed, of a dtype the runtime lacks: refused where used
        elif raw is not None and dtype is not None:
            n = int(np.prod(shape, dtype=np.int64))
            size = np.dtype(dtype).itemsize * n
            if len(raw) != size:
                raise ModelFormatError(f"tensor '{name}': buffer has {len(raw)} bytes, shape {list(shape)} "
                                       f"of {np.dtype(dtype).name} needs {size}")
            data = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        elif raw is not None:
            data = raw  # a constant of a dtype the runtime lacks: refused where used
        quant = None
        q = t.Quantization()
        if q is not None and q.ScaleLength() > 0:
            scales = _np(q.ScaleAsNumpy()).astype(np.float32)
            zps = _np(q.ZeroPointAsNumpy()).astype(np.int64)
            if zps.size == 0:
                zps = np.zeros(scales.size, np.int64)
            axis = int(q.QuantizedDimension()) if scales.size > 1 else None
            quant = _Quant(scales, zps, axis)
        return _TensorInfo(i, name, t.Type(), dtype, shape, data, quant, sparse, sig, was_sparse)

    def op_name(self, op) -> str:
        oc = self.model.OperatorCodes(op.OpcodeIndex())
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = self.opnames.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = "CUSTOM:" + (custom.decode("utf-8", "replace") if custom else "?")
        return name

    def options(self, op, cls):
        t = op.BuiltinOptions()
        if t is None:
            return None
        o = cls()
        o.Init(t.Bytes, t.Pos)
        return o

    # -- builder helpers ----------------------------------------------------------
    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def emit(self, kind: str, *inputs, name: Optional[str] = None, outputs=None, **attrs):
        """Appends a runtime op; `name` (a TFLite tensor name) names its output."""
        self.report.ops_out[kind] += 1
        if outputs is not None:
            return self.b.op(kind, *inputs, outputs=[self.unique(n) for n in outputs], **attrs)
        return self.b.op(kind, *inputs, name=self.unique(name or kind.lower()), **attrs)

    def set_quant(self, t: Tensor, info: _TensorInfo) -> None:
        if info.quant is not None and info.dtype is not None and np.dtype(info.dtype).kind in "iu":
            q = info.quant
            self.b.quantization(t, q.scales, q.zero_points, q.axis)

    def const(self, info: _TensorInfo, summarize: bool = True) -> Tensor:
        """The constant's builder tensor (made once). `summarize`: count a
        quantized one in the report's summary (not those listed one by one)."""
        if info.index in self.env:
            return self.env[info.index]
        if info.sparse:
            raise _Refuse(f"sparse tensor '{info.name}'")
        if info.dtype is None:
            raise _Refuse(f"constant '{info.name}' of type {info.type_name}")
        t = self.b.const(self.unique(info.name), info.data)
        if info.was_sparse:   # keep it sparse: our encoding whenever smaller (the sparse kernels choose at load)
            self.b.store_sparse(t)
        self.set_quant(t, info)
        self.env[info.index] = t
        if summarize and info.quant is not None and np.dtype(info.dtype).kind in "iu":
            self.quantized_consts[(np.dtype(info.dtype).name, info.quant.axis is not None)] += 1
        return t

    def dequantized_const(self, info: _TensorInfo, why: str) -> Tensor:
        """A quantized (or float16) constant kept in its precision, behind a Dequantize op."""
        if info.index in self.float_view:
            return self.float_view[info.index]
        c = self.const(info, summarize=False)
        t = self.emit("Dequantize", c, name=info.name + "/dequantized")
        self.float_view[info.index] = t
        self.report.kept_precision.append(f"{_describe(info)}: {why}")
        return t

    def tensor(self, op, k: int, float_op: bool = False) -> Optional[Tensor]:
        """The builder tensor for input k of op (None when absent). A quantized
        constant read by a float op (dynamic-range weights) is dequantized."""
        ins = op.InputsAsNumpy()
        ins = _np(ins)
        if k >= len(ins) or ins[k] < 0:
            return None
        i = int(ins[k])
        info = self.tensors[i]
        if info.const:
            if float_op and info.dtype in _QUANTIZED and info.quant is not None:
                self.hybrid = True
                return self.dequantized_const(
                    info, "dynamic-range weight kept int8 with its scales; Dequantize -> float32 for the float op")
            return self.const(info)
        if i not in self.env:
            raise _Refuse(f"input '{info.name}' is never produced")
        return self.env[i]

    def info_in(self, op, k: int) -> Optional[_TensorInfo]:
        ins = _np(op.InputsAsNumpy())
        if k >= len(ins) or ins[k] < 0:
            return None
        return self.tensors[int(ins[k])]

    def is_graph_output(self, index: int) -> bool:
        return index in {int(i) for i in _np(self.graph.OutputsAsNumpy())}

    def info_out(self, op, k: int = 0) -> _TensorInfo:
        return self.tensors[int(_np(op.OutputsAsNumpy())[k])]

    def const_value(self, op, k: int, what: str) -> np.ndarray:
        info = self.info_in(op, k)
        if info is None:
            raise _Refuse(f"missing {what} input")
        if not info.const:
            raise _Refuse(f"{what} input '{info.name}' is not a constant")
        if not isinstance(info.data, np.ndarray):
            raise _Refuse(f"{what} input '{info.name}' is a {'sparse' if info.sparse else info.type_name} constant")
        return np.asarray(info.data)

    def ints(self, op, k: int, what: str) -> List[int]:
        return [int(v) for v in self.const_value(op, k, what).reshape(-1)]

    def activation(self, op_name: str, act: int) -> int:
        if act not in _ACT_MAP:
            raise _Refuse(f"fused activation {_ACT_NAMES.get(act, act)}")
        if act:
            self.fused[f"{op_name} + {_ACT_NAMES[act]}"] += 1
        return _ACT_MAP[act]

    def is_float(self, info: _TensorInfo) -> bool:
        return info.dtype in (np.float32, np.float16)

    # -- conversion ---------------------------------------------------------------
    def run(self) -> GraphBuilder:
        g = self.graph
        for i in _np(g.InputsAsNumpy()):
            info = self.tensors[int(i)]
            if info.dtype is None:
                self.problems[f"input '{info.name}' of type {info.type_name}"] += 1
                continue
            t = self.b.input(self.unique(info.name), info.shape, info.dtype)
            self.set_quant(t, info)
            self.env[info.index] = t
        if self.model.SubgraphsLength() > 1:
            self.frozen_by.append("the model has control flow")
        self.convert_ops(g)

        if self.problems:
            raise unsupported("tflite", self.problems)

        self.b.output(*self.outputs_of(g))
        self._dynamic_inputs(g)
        self._finish_report()
        return self.b

    def probed_shapes(self, index: int):
        """Tensor `index`'s shapes at two sizes of the dynamic non-batch input dims, from LiteRT's shape
        propagation (resize_tensor_input, allocate_tensors, a run on zeros); None when no input has such dims, the model has
        control flow or no LiteRT is installed (then the dims are fixed)."""
        if not hasattr(self, "_probed"):
            self._probed = self._probe()
        return None if self._probed is None else (self._probed[0].get(index), self._probed[1].get(index))

    def _probe(self):
        g = self.graph
        ins = [self.tensors[int(i)] for i in _np(g.InputsAsNumpy())]
        if self.model.SubgraphsLength() > 1 or not any(v < 0 for t in ins for v in t.signature[1:]):
            return None
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            try:
                from tensorflow.lite.python.interpreter import Interpreter
            except ImportError:
                self.frozen_by.append("no LiteRT (ai-edge-litert) to follow the size through the graph")
                return None
        probes = []
        for size in (24, 40):
            try:
                it = Interpreter(model_content=self.raw)
                for t in ins:
                    it.resize_tensor_input(t.index, [size if v < 0 and d > 0 else s
                                                     for d, (v, s) in enumerate(zip(t.signature, t.shape))])
                it.allocate_tensors()
                it.invoke()  # on zeros: shapes computed from run-time values (a RESHAPE of a PACK) are set then
                probes.append({d["index"]: tuple(int(v) for v in d["shape"]) for d in it.get_tensor_details()})
            except Exception as e:  # noqa: BLE001 (LiteRT refuses the size: fixed, with its reason)
                self.frozen_by.append(f"LiteRT cannot resize the inputs to {size}: {e}")
                return None
        return probes

    def _dynamic_inputs(self, g) -> None:
        """Marks the inputs' dynamic non-batch dims in the metadata (tinyinfer._dynamic; the file's shape,
        1 where the signature has -1, is their example size), or notes why they were fixed."""
        from .._dynamic import DYNAMIC_DIMS_KEY, format_dynamic_dims
        dyn, k = {}, 0
        for i in _np(g.InputsAsNumpy()):
            info = self.tensors[int(i)]
            if info.dtype is None:
                continue
            dims = [d for d, v in enumerate(info.signature) if v < 0 and d > 0]
            if dims and not self.frozen_by:
                dyn[k] = dims
                self.report.notes.append(f"input '{info.name}': dims {dims} (signature {list(info.signature)}) stay "
                                         f"dynamic: given at run time")
            elif info.dynamic:
                why = f" ({'; '.join(self.frozen_by[:3])})" if dims else ""
                self.report.notes.append(f"input '{info.name}' has dynamic dims; fixed to {list(info.shape)}{why}")
            k += 1
        if dyn:
            self.b.metadata(DYNAMIC_DIMS_KEY, format_dynamic_dims(dyn))

    def outputs_of(self, g, as1=None) -> list:
        """The builder tensors of subgraph g's outputs (`as1`: applied to each computed one with its info)."""
        outs = []
        for i in _np(g.OutputsAsNumpy()):
            info = self.tensors[int(i)]
            if info.const:
                outs.append(self.const(info))
            elif int(i) in self.env:
                outs.append(self.env[int(i)] if as1 is None else as1(self, self.env[int(i)], info))
            else:
                raise ModelFormatError(f"graph output '{info.name}' is neither an input nor produced by an op")
        return outs

    def convert_ops(self, g) -> None:
        """Converts the ops of subgraph g (the one self.graph and self.tensors describe)."""
        writes, skip = _list_writes(self, g)
        for j in range(g.OperatorsLength()):
            op = g.Operators(j)
            name = self.op_name(op)
            self.report.ops_in[name] += 1
            if j in skip:
                continue  # a SLICE of a list write (_list_writes): the DynamicUpdateSlice replaces it
            if j in writes:
                self.env[self.info_out(op).index] = _emit_list_write(self, op, *writes[j])
                continue
            self.hybrid = False
            self.reshape_follows = False
            if self._fold(op, name):
                continue
            reads = [self.tensors[int(i)] for i in _np(op.InputsAsNumpy()) if int(i) in self.tainted]
            try:
                if name in _CONTROL_FLOW:
                    raise _Refuse("control flow; only IF and WHILE call subgraphs")
                handler = _HANDLERS.get(name) or CUSTOM_HANDLERS.get(name)
                if handler is None:
                    raise _Refuse("")
                outs = handler(self, op, name)
                if isinstance(outs, Tensor):
                    outs = [outs]
                for k, t in enumerate(outs):
                    info = self.info_out(op, k)
                    self.set_quant(t, info)
                    self.env[info.index] = t
                if self.hybrid:
                    self.folded[f"{name}: dynamic-range (hybrid) op computed in float32 on dequantized weights"] += 1
                if reads and not self.reshape_follows:
                    self.frozen_by.append(f"{name} '{self.info_out(op).name}' reads '{reads[0].name}', computed "
                                          f"at conversion from the example size")
            except _Refuse as r:
                reason = str(r)
                self.problems[f"{name} [{reason}]" if reason else name] += 1
                self._stand_in(op)

    def _fold(self, op, name: str) -> bool:
        """Computes an op on constants here (shape arithmetic such as Keras'
        Flatten: SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE); its outputs become
        constants. SHAPE reads the static shape. Quantized tensors and
        DEQUANTIZE are never folded (their precision is kept)."""
        fold = _FOLDERS.get(name)
        if fold is None:
            return False
        ins = [int(i) for i in _np(op.InputsAsNumpy())]
        outs = [self.tensors[int(i)] for i in _np(op.OutputsAsNumpy())]
        infos = [self.tensors[i] for i in ins if i >= 0]
        if name == "SHAPE":
            if not infos or infos[0].dtype is None:
                return False
        elif not infos or not all(isinstance(t.data, np.ndarray) and t.quant is None for t in infos):
            return False
        if any(t.dtype is None or t.quant is not None for t in outs):
            return False
        for t in outs:  # before anything is computed: the declared output sizes within the limits
            if any(d < 0 for d in t.shape) or math.prod(t.shape) > _MAX_FOLD_ELEMENTS:
                raise ConvertError(f"tflite: {name} would fold '{t.name}' to shape {list(t.shape)}, over the "
                                   f"converter's limit of 2^28 elements (a size in the file is too large)")
        try:
            values = fold(self, op, [None if i < 0 else self.tensors[i].data for i in ins])
        except (_Refuse, ValueError, IndexError, TypeError):
            return False
        results = []
        for t, v in zip(outs, values):
            v = np.asarray(v)
            if v.size != int(np.prod(t.shape, dtype=np.int64)):
                return False
            results.append(np.array(v, dtype=t.dtype).reshape(t.shape))
        for t, v in zip(outs, results):
            t.data = v
            t.was_sparse = t.was_sparse or (name == "DENSIFY")   # the dense form of a sparse constant: kept sparse
        if (name == "SHAPE" and any(d < 0 for d in infos[0].signature[1:])) or \
                any(i in self.tainted for i in ins):
            self.tainted.update(t.index for t in outs)
        if name == "SHAPE" and infos[0].dynamic:
            self.report.notes.append(
                f"SHAPE of '{infos[0].name}' (signature {list(infos[0].signature)}) folded to "
                f"{list(infos[0].shape)}; RESHAPEs whose output signature has one dynamic dim keep it inferred")
        what = "the static shape" if name == "SHAPE" else "constant inputs"
        self.folded[f"{name} computed at conversion ({what})"] += 1
        return True

    def _stand_in(self, op) -> None:
        """Gives a refused op's outputs placeholder tensors so that the scan goes
        on and finds every other problem (the builder is never serialized)."""
        for i in _np(op.OutputsAsNumpy()):
            info = self.tensors[int(i)]
            if int(i) in self.env:
                continue
            self.env[int(i)] = self.b.input(self.unique(info.name + "/unconverted"),
                                            tuple(max(d, 1) for d in info.shape), info.dtype or np.float32)

    def _finish_report(self) -> None:
        r = self.report
        r.fused.extend(f"{k} (x{v})" if v > 1 else k for k, v in sorted(self.fused.items()))
        r.folded.extend(f"{k} (x{v})" if v > 1 else k for k, v in sorted(self.folded.items()))
        if any("dynamic-range" in k for k in self.folded):
            r.notes.append("dynamic-range int8 model: LiteRT's hybrid kernels quantize activations to int8 at run "
                           "time; tinyinfer dequantizes the int8 weights and computes in float32, so results "
                           "differ from LiteRT by about the activation quantization step")
        if self.quantized_consts:
            parts = [f"{n} {dt} ({'per-axis' if axis else 'per-tensor'})"
                     for (dt, axis), n in sorted(self.quantized_consts.items())]
            r.kept_precision.append("quantized constants copied with their scales, zero points and axes: "
                                    + ", ".join(parts))
        float_q = [t.name for t in self.tensors if t.quant is not None and t.dtype in (np.float32, np.float16)]
        if float_q:
            r.dropped.append(f"quantization parameters on {len(float_q)} float tensor(s) (not used by float ops)")
        n_sig = self.model.SignatureDefsLength()
        if n_sig:
            r.dropped.append(f"{n_sig} signature def(s) (the graph's inputs and outputs are kept in subgraph order)")
        n_meta = self.model.MetadataLength()
        if n_meta:
            names = [(self.model.Metadata(i).Name() or b"").decode("utf-8", "replace") for i in range(n_meta)]
            r.dropped.append(f"metadata {', '.join(names)} (TFLite runtime information)")


# -- op handlers ---------------------------------------------------------------------
# Each takes (importer, op, name) and returns the output tensor(s), in TFLite order.

def _window(o, padding_default=0):
    pad = _opt(o, "Padding", padding_default)
    if pad not in (0, 1):
        raise _Refuse(f"padding {pad}")
    return 1 if pad == 0 else 0  # TFLite SAME=0, VALID=1 -> runtime 1 SAME, 0 VALID


def _conv2d(im, op, name):
    T = im.tfl
    o = im.options(op, T.Conv2DOptions)
    x_info, w_info = im.info_in(op, 0), im.info_in(op, 1)
    fl = im.is_float(im.info_out(op))
    x, w, bias = im.tensor(op, 0, fl), im.tensor(op, 1, fl), im.tensor(op, 2, fl)
    attrs = dict(strides=[_opt(o, "StrideH", 1), _opt(o, "StrideW", 1)],
                 dilations=[_opt(o, "DilationHFactor", 1), _opt(o, "DilationWFactor", 1)],
                 padding=_window(o), activation=im.activation(name, _opt(o, "FusedActivationFunction", 0)))
    if len(x_info.shape) != 4 or len(w_info.shape) != 4:
        raise _Refuse("input and weights must be 4-D")
    cin, wcin = x_info.shape[3], w_info.shape[3]
    if cin != wcin:
        if wcin <= 0 or cin % wcin:
            raise _Refuse(f"input channels {cin} are not a multiple of the weights' {wcin}")
        attrs["groups"] = cin // wcin
    return im.emit("Conv2D", x, w, bias, name=im.info_out(op).name, **attrs)


def _depthwise(im, op, name):
    T = im.tfl
    o = im.options(op, T.DepthwiseConv2DOptions)
    x_info, w_info = im.info_in(op, 0), im.info_in(op, 1)
    fl = im.is_float(im.info_out(op))
    x, w, bias = im.tensor(op, 0, fl), im.tensor(op, 1, fl), im.tensor(op, 2, fl)
    if len(x_info.shape) != 4 or len(w_info.shape) != 4:
        raise _Refuse("input and weights must be 4-D")
    c, cm = x_info.shape[3], w_info.shape[3]
    if c <= 0 or cm % c:
        raise _Refuse(f"weight channels {cm} are not a multiple of the input channels {c}")
    return im.emit("DepthwiseConv2D", x, w, bias, name=im.info_out(op).name,
                   strides=[_opt(o, "StrideH", 1), _opt(o, "StrideW", 1)],
                   dilations=[_opt(o, "DilationHFactor", 1), _opt(o, "DilationWFactor", 1)],
                   padding=_window(o), depth_multiplier=cm // c,
                   activation=im.activation(name, _opt(o, "FusedActivationFunction", 0)))


def _transpose_conv_pads(in_size, out_size, k, s, same):
    """TFLite's padding for TRANSPOSE_CONV (ComputePaddingHeightWidth applied
    to the output size) as the runtime's explicit (before, after, output_padding)."""
    conv_out = (out_size + s - 1) // s if same else (out_size - k + s) // s
    before = max((conv_out - 1) * s + k - out_size, 0) // 2
    full = (in_size - 1) * s + k - before  # rows from the first kept one to the end of the scatter
    if full >= out_size:
        return before, full - out_size, 0
    return before, 0, out_size - full


def _transpose_conv(im, op, name):
    T = im.tfl
    o = im.options(op, T.TransposeConvOptions)
    shape = im.ints(op, 0, "output_shape")
    w_info, x_info = im.info_in(op, 1), im.info_in(op, 2)
    fl = im.is_float(im.info_out(op))
    w, x, bias = im.tensor(op, 1, fl), im.tensor(op, 2, fl), im.tensor(op, 3, fl)
    if len(shape) != 4 or len(x_info.shape) != 4 or len(w_info.shape) != 4:
        raise _Refuse("output_shape, input and weights must be 4-D")
    same = _window(o) == 1
    sh, sw = _opt(o, "StrideH", 1), _opt(o, "StrideW", 1)
    th, bh, oph = _transpose_conv_pads(x_info.shape[1], shape[1], w_info.shape[1], sh, same)
    tw, bw, opw = _transpose_conv_pads(x_info.shape[2], shape[2], w_info.shape[2], sw, same)
    if oph >= sh or opw >= sw:
        raise _Refuse(f"output_shape {shape} is larger than the input allows")
    act = im.activation(name, _opt(o, "FusedActivationFunction", 0)) if o is not None and hasattr(
        o, "FusedActivationFunction") else 0
    im.folded["TRANSPOSE_CONV output_shape -> explicit pads and output_padding"] += 1
    return im.emit("TransposeConv2D", x, w, bias, name=im.info_out(op).name, strides=[sh, sw], padding=2,
                   pads=[th, bh, tw, bw], output_padding=[oph, opw], activation=act)


def _fully_connected(im, op, name):
    T = im.tfl
    o = im.options(op, T.FullyConnectedOptions)
    if _opt(o, "WeightsFormat", 0) != 0:
        raise _Refuse("shuffled weights format")
    x_info, w_info = im.info_in(op, 0), im.info_in(op, 1)
    fl = im.is_float(im.info_out(op))
    x, w, bias = im.tensor(op, 0, fl), im.tensor(op, 1, fl), im.tensor(op, 2, fl)
    if len(w_info.shape) != 2:
        raise _Refuse("weights must be 2-D")
    k = w_info.shape[1]
    keep = bool(_opt(o, "KeepNumDims", False))
    if not keep and (len(x_info.shape) != 2 or x_info.shape[1] != k):
        x = im.emit("Reshape", x, name=x_info.name + "/flattened", shape=[-1, k])
        im.folded["FULLY_CONNECTED keep_num_dims=false: input flattened to 2-D by a Reshape"] += 1
    return im.emit("FullyConnected", x, w, bias, name=im.info_out(op).name,
                   activation=im.activation(name, _opt(o, "FusedActivationFunction", 0)))


def _batch_matmul(im, op, name):
    o = im.options(op, im.tfl.BatchMatMulOptions)
    fl = im.is_float(im.info_out(op))
    return im.emit("MatMul", im.tensor(op, 0, fl), im.tensor(op, 1, fl), name=im.info_out(op).name,
                   transpose_a=int(bool(_opt(o, "AdjX", False))), transpose_b=int(bool(_opt(o, "AdjY", False))))


def _pool(kind):
    def h(im, op, name):
        o = im.options(op, im.tfl.Pool2DOptions)
        if o is None:
            raise _Refuse("missing Pool2DOptions")
        return im.emit(kind, im.tensor(op, 0), name=im.info_out(op).name,
                       filter=[o.FilterHeight(), o.FilterWidth()], strides=[o.StrideH(), o.StrideW()],
                       padding=_window(o), activation=im.activation(name, o.FusedActivationFunction()))
    return h


def _axes(im, op, k=1):
    axes = im.ints(op, k, "axes")
    rank = len(im.info_in(op, 0).shape)
    return sorted({a + rank if a < 0 else a for a in axes}) or []


def _reducer_attrs(im, op, name):
    """The axes (constant second input) and keep_dims (ReducerOptions) of MEAN, SUM, REDUCE_MAX, REDUCE_MIN."""
    o = im.options(op, im.tfl.ReducerOptions)
    axes = _axes(im, op)
    im.folded[f"{name} axes input -> attribute"] += 1
    return {"axes": axes, "keep_dims": int(bool(_opt(o, "KeepDims", False)))}


def _reducer(kind):
    """MEAN -> Mean, REDUCE_MAX -> ReduceMax (float32 or int8, the tensors' quantization carried)."""
    def h(im, op, name):
        return im.emit(kind, im.tensor(op, 0), name=im.info_out(op).name, **_reducer_attrs(im, op, name))
    return h


def _float_reducer(kind):
    """SUM -> ReduceSum, REDUCE_MIN -> ReduceMin, REDUCE_PROD -> ReduceProd (float32; quantized refused)."""
    def h(im, op, name):
        if not im.is_float(im.info_out(op)):
            raise _Refuse(f"quantized {name}")
        return im.emit(kind, im.tensor(op, 0), name=im.info_out(op).name, **_reducer_attrs(im, op, name))
    return h


def _binary(kind, options_cls=None):
    def h(im, op, name):
        attrs = {}
        if options_cls is not None:
            o = im.options(op, getattr(im.tfl, options_cls))
            act = im.activation(name, _opt(o, "FusedActivationFunction", 0))
            if act:
                attrs["activation"] = act
        fl = im.is_float(im.info_out(op))
        return im.emit(kind, im.tensor(op, 0, fl), im.tensor(op, 1, fl), name=im.info_out(op).name, **attrs)
    return h


def _unary(kind):
    def h(im, op, name):
        return im.emit(kind, im.tensor(op, 0), name=im.info_out(op).name)
    return h


def _plain(im, op, k):
    """Input k of an op on raw numbers (comparisons, Cast): quantized tensors are refused."""
    info = im.info_in(op, k)
    if info is not None and info.quant is not None and info.dtype in _QUANTIZED:
        raise _Refuse(f"quantized input '{info.name}'")
    return im.tensor(op, k)


def _compare(kind):
    def h(im, op, name):
        return im.emit(kind, _plain(im, op, 0), _plain(im, op, 1), name=im.info_out(op).name)
    return h


def _select(im, op, name):
    cond, x, out = im.tensor(op, 0), im.tensor(op, 1), im.info_out(op)
    c_shape, x_shape = im.info_in(op, 0).shape, im.info_in(op, 1).shape
    if name == "SELECT" and len(c_shape) == 1 and len(x_shape) > 1 and c_shape[0] == x_shape[0] != 1:
        # SELECT (v1): a rank-1 condition picks whole rows of x and y.
        cond = im.emit("Reshape", cond, name=out.name + "/condition", shape=[c_shape[0]] + [1] * (len(x_shape) - 1))
    return im.emit("Where", cond, x, im.tensor(op, 2), name=out.name)


def _cast(im, op, name):
    out = im.info_out(op)
    if out.dtype is None or out.dtype == np.float16:
        raise _Refuse(f"cast to {out.type_name}")
    return im.emit("Cast", _plain(im, op, 0), name=out.name, dtype=code_of(out.dtype))


def _shape(im, op, name):
    out = im.info_out(op)
    return im.emit("Shape", im.tensor(op, 0), name=out.name, dtype=code_of(out.dtype))


def _tile(im, op, name):
    return im.emit("Tile", im.tensor(op, 0), name=im.info_out(op).name, sizes=im.ints(op, 1, "multiples"))


def _broadcast_to(im, op, name):
    shape = im.ints(op, 1, "shape")
    out = im.emit("Expand", im.tensor(op, 0), name=im.info_out(op).name, shape=shape)
    return out


def _range(im, op, name):
    raise _Refuse("start, limit and delta must be constants (the output's size depends on them)")


def _relu_n1_to_1(im, op, name):
    out = im.info_out(op)
    if not im.is_float(out):
        raise _Refuse("quantized RELU_N1_TO_1")
    lo = im.emit("Maximum", im.tensor(op, 0), im.b.const(im.unique(out.name + "/minus_one"), np.float32([-1])),
                 name=out.name + "/clamped_below")
    return im.emit("Minimum", lo, im.b.const(im.unique(out.name + "/one"), np.float32([1])), name=out.name)


def _leaky_relu(im, op, name):
    o = im.options(op, im.tfl.LeakyReluOptions)
    return im.emit("LeakyRelu", im.tensor(op, 0), name=im.info_out(op).name, alpha=float(_opt(o, "Alpha", 0.2)))


def _prelu(im, op, name):
    fl = im.is_float(im.info_out(op))
    return im.emit("PRelu", im.tensor(op, 0), im.tensor(op, 1, fl), name=im.info_out(op).name)


def _gelu(im, op, name):
    o = im.options(op, im.tfl.GeluOptions)
    return im.emit("Gelu", im.tensor(op, 0), name=im.info_out(op).name,
                   approximate=int(bool(_opt(o, "Approximate", False))))


def _softmax(im, op, name):
    o = im.options(op, im.tfl.SoftmaxOptions)
    beta = float(_opt(o, "Beta", 1.0))
    attrs = {"beta": beta} if beta != 1.0 else {}
    return im.emit("Softmax", im.tensor(op, 0), name=im.info_out(op).name, **attrs)


def _log_softmax(im, op, name):
    return im.emit("LogSoftmax", im.tensor(op, 0), name=im.info_out(op).name)


def _reshape(im, op, name):
    out = im.info_out(op)
    shape = None
    sin = im.info_in(op, 1)
    if sin is not None:
        shape = im.ints(op, 1, "shape")
        im.folded["RESHAPE shape input -> attribute"] += 1
    else:
        o = im.options(op, im.tfl.ReshapeOptions)
        if o is not None and not o.NewShapeIsNone():
            shape = [int(v) for v in _np(o.NewShapeAsNumpy())]
            im.folded["RESHAPE new_shape option -> attribute"] += 1
    if shape is None:
        shape = list(out.shape)
        im.folded["RESHAPE without a shape: the output tensor's shape"] += 1
    sig = out.signature
    probed = im.probed_shapes(out.index)
    if probed is not None and None not in probed and len(probed[0]) == len(probed[1]):
        # Dynamic non-batch input dims: the output's shapes at two sizes (LiteRT's shape propagation) say which
        # dim follows the size (inferred, -1); none: the target holds at every size.
        diff = [d for d, (a, b) in enumerate(zip(*probed)) if a != b]
        if len(diff) <= 1:
            shape = [-1 if d in diff else s for d, s in enumerate(probed[0])]
            im.reshape_follows = True
    elif sum(d < 0 for d in sig) == 1 and all(d < 0 or d == s for d, s in zip(sig, out.shape)) \
            and len(shape) == len(sig):
        # A dynamic (batch) dim that SHAPE folding fixed: keep it inferred, as the signature says.
        shape = list(sig)
    return im.emit("Reshape", im.tensor(op, 0), name=out.name, shape=shape)


def _squeeze(im, op, name):
    o = im.options(op, im.tfl.SqueezeOptions)
    axes = [] if o is None or o.SqueezeDimsIsNone() else [int(v) for v in _np(o.SqueezeDimsAsNumpy())]
    attrs = {"axes": axes} if axes else {}
    return im.emit("Squeeze", im.tensor(op, 0), name=im.info_out(op).name, **attrs)


def _expand_dims(im, op, name):
    axis = im.ints(op, 1, "axis")
    if len(axis) != 1:
        raise _Refuse("axis must be a single value")
    im.folded["EXPAND_DIMS axis input -> attribute"] += 1
    return im.emit("ExpandDims", im.tensor(op, 0), name=im.info_out(op).name, axis=axis[0])


def _transpose(im, op, name):
    perm = im.ints(op, 1, "perm")
    im.folded["TRANSPOSE perm input -> attribute"] += 1
    return im.emit("Transpose", im.tensor(op, 0), name=im.info_out(op).name, perm=perm)


def _concat(im, op, name):
    o = im.options(op, im.tfl.ConcatenationOptions)
    n = len(_np(op.InputsAsNumpy()))
    rank = len(im.info_in(op, 0).shape)
    axis = int(_opt(o, "Axis", 0))
    axis = axis + rank if axis < 0 else axis
    act = _opt(o, "FusedActivationFunction", 0)
    if act:
        # TFLite's own kernels refuse it (concatenation.cc), XNNPACK ignores it: no meaning to copy.
        raise _Refuse(f"fused activation {_ACT_NAMES.get(act, act)} (TFLite's kernels refuse it too)")
    return im.emit("Concat", *[im.tensor(op, k) for k in range(n)], name=im.info_out(op).name, axis=axis)


def _split(im, op, name):
    axis = im.ints(op, 0, "axis")
    if len(axis) != 1:
        raise _Refuse("axis must be a single value")
    rank = len(im.info_in(op, 1).shape)
    a = axis[0] + rank if axis[0] < 0 else axis[0]
    outs = [im.info_out(op, k).name for k in range(len(_np(op.OutputsAsNumpy())))]
    im.folded["SPLIT axis input -> attribute"] += 1
    r = im.emit("Split", im.tensor(op, 1), outputs=outs, axis=a)
    return r if isinstance(r, list) else [r]


def _split_v(im, op, name):
    sizes = im.ints(op, 1, "size_splits")
    axis = im.ints(op, 2, "axis")
    if len(axis) != 1:
        raise _Refuse("axis must be a single value")
    rank = len(im.info_in(op, 0).shape)
    a = axis[0] + rank if axis[0] < 0 else axis[0]
    outs = [im.info_out(op, k).name for k in range(len(_np(op.OutputsAsNumpy())))]
    im.folded["SPLIT_V size_splits and axis inputs -> attributes"] += 1
    r = im.emit("Split", im.tensor(op, 0), outputs=outs, axis=a, sizes=sizes)
    return r if isinstance(r, list) else [r]


def _slice(im, op, name):
    begin, size = im.ints(op, 1, "begin"), im.ints(op, 2, "size")
    im.folded["SLICE begin/size inputs -> attributes"] += 1
    return im.emit("Slice", im.tensor(op, 0), name=im.info_out(op).name, begin=begin, size=size)


def _dynamic_update_slice(im, op, name):
    return im.emit("DynamicUpdateSlice", im.tensor(op, 0), im.tensor(op, 1), im.tensor(op, 2),
                   name=im.info_out(op).name)


def _list_writes(im, g):
    """The TensorList writes that TFLiteConverter lowers a Keras LSTM's WHILE body to (TensorListSetItem):
    CONCATENATION on axis 0 of SLICE(list, 0, [i, -1, ...]), the item [1, ...], SLICE(list, [i + 1, 0, ...],
    [-1, ...]): the list with row i replaced, i a run-time counter, so the SLICEs have run-time shapes.
    Returns ({CONCATENATION op index: (list tensor, item tensor, i as int32 [1] tensor)}, {SLICE op indices})
    for DynamicUpdateSlice(list, item, [i, 0, ...])."""
    producer = {}
    for j in range(g.OperatorsLength()):
        for o in _np(g.Operators(j).OutputsAsNumpy()):
            producer[int(o)] = j

    def made_by(t, opname):
        j = producer.get(int(t))
        return (j, g.Operators(j)) if j is not None and im.op_name(g.Operators(j)) == opname else (None, None)

    def const_all(t, value):
        d = im.tensors[int(t)].data
        return isinstance(d, np.ndarray) and d.size > 0 and bool(np.all(d == value))

    def index_then(t, rest):
        """Tensor t is CONCATENATION(RESHAPE(scalar) -> [1], constant `rest`s): the scalar's tensor."""
        _, c = made_by(t, "CONCATENATION")
        if c is None or len(c.InputsAsNumpy()) != 2 or not const_all(c.InputsAsNumpy()[1], rest):
            return None, None
        _, r = made_by(c.InputsAsNumpy()[0], "RESHAPE")
        return (None, None) if r is None else (int(r.InputsAsNumpy()[0]), int(c.InputsAsNumpy()[0]))

    writes, skip = {}, set()
    for j in range(g.OperatorsLength()):
        op = g.Operators(j)
        if im.op_name(op) != "CONCATENATION" or len(op.InputsAsNumpy()) != 3:
            continue
        o = im.options(op, im.tfl.ConcatenationOptions)
        a_in, item, b_in = (int(v) for v in op.InputsAsNumpy())
        ja, sa = made_by(a_in, "SLICE")
        jb, sb = made_by(b_in, "SLICE")
        if sa is None or sb is None or int(_opt(o, "Axis", 0)) != 0:
            continue
        lst = int(sa.InputsAsNumpy()[0])
        if int(sb.InputsAsNumpy()[0]) != lst or not const_all(sa.InputsAsNumpy()[1], 0) \
                or not const_all(sb.InputsAsNumpy()[2], -1):
            continue
        i, i_vec = index_then(sa.InputsAsNumpy()[2], -1)
        i1, _ = index_then(sb.InputsAsNumpy()[1], 0)
        _, add = made_by(i1, "ADD") if i1 is not None else (None, None)
        if i is None or add is None:
            continue
        x, y = (int(v) for v in add.InputsAsNumpy())
        if not ((x == i and const_all(y, 1)) or (y == i and const_all(x, 1))):
            continue
        shape, ishape = im.tensors[lst].shape, im.tensors[item].shape
        if im.info_out(op).shape != shape or len(ishape) != len(shape) or ishape[0] != 1 \
                or tuple(ishape[1:]) != tuple(shape[1:]):
            continue
        writes[j] = (lst, item, i_vec)
        skip.update((ja, jb))
    # A SLICE also read elsewhere keeps its own conversion (refused there: its shape is a run-time value).
    used = {int(t) for k in range(g.OperatorsLength()) if k not in writes for t in _np(g.Operators(k).InputsAsNumpy())}
    skip = {k for k in skip if int(g.Operators(k).OutputsAsNumpy()[0]) not in used}
    return writes, skip


def _emit_list_write(im, op, lst, item, i_vec):
    """DynamicUpdateSlice(list, item, [i, 0, ...]) for a match of _list_writes."""
    rank = len(im.tensors[lst].shape)
    zeros = im.b.const(im.unique(f"{im.info_out(op).name}/zeros"), np.zeros(rank - 1, np.int32))
    i = im.env[i_vec] if i_vec in im.env else im.const(im.tensors[i_vec])
    if im.tensors[i_vec].dtype != np.int32:
        raise _Refuse("list write at a non-int32 index")
    start = im.emit("Concat", i, zeros, name=im.unique(f"{im.info_out(op).name}/start"), axis=0)
    env = lambda t: im.env[t] if t in im.env else im.const(im.tensors[t])  # noqa: E731
    im.fused["TensorList write (SLICE + item + SLICE, CONCATENATION) -> DynamicUpdateSlice"] += 1
    return im.emit("DynamicUpdateSlice", env(lst), env(item), start, name=im.info_out(op).name)


def _strided_slice(im, op, name):
    o = im.options(op, im.tfl.StridedSliceOptions)
    begin, end = im.ints(op, 1, "begin"), im.ints(op, 2, "end")
    strides = im.ints(op, 3, "strides") if im.info_in(op, 3) is not None else [1] * len(begin)
    if _opt(o, "EllipsisMask", 0):
        raise _Refuse("ellipsis_mask")
    if _opt(o, "NewAxisMask", 0):
        raise _Refuse("new_axis_mask")
    end_mask = int(_opt(o, "EndMask", 0))
    if o is not None and hasattr(o, "Offset") and o.Offset():
        end = [b + e for b, e in zip(begin, end)]  # end is an offset from begin
    im.folded["STRIDED_SLICE begin/end/strides inputs -> attributes"] += 1
    return im.emit("StridedSlice", im.tensor(op, 0), name=im.info_out(op).name, begin=begin, end=end,
                   strides=strides, begin_mask=int(_opt(o, "BeginMask", 0)), end_mask=end_mask,
                   shrink_axis_mask=int(_opt(o, "ShrinkAxisMask", 0)))


def _gather(im, op, name):
    o = im.options(op, im.tfl.GatherOptions)
    if _opt(o, "BatchDims", 0):
        raise _Refuse(f"batch_dims {o.BatchDims()}")
    rank = len(im.info_in(op, 0).shape)
    axis = int(_opt(o, "Axis", 0))
    axis = axis + rank if axis < 0 else axis
    fl = im.is_float(im.info_out(op))
    out = im.info_out(op)
    if len(im.info_in(op, 1).shape) == 0:
        # A scalar index (a WHILE body reading step i): written as [1], so the gathered dim is squeezed.
        g = im.emit("Gather", im.tensor(op, 0, fl), im.tensor(op, 1), name=im.unique(out.name + "/gather"),
                    axis=axis)
        return im.emit("Squeeze", g, name=out.name, axes=[axis])
    return im.emit("Gather", im.tensor(op, 0, fl), im.tensor(op, 1), name=out.name, axis=axis)


def _paddings(im, op):
    p = im.const_value(op, 1, "paddings").astype(np.int64)
    rank = len(im.info_in(op, 0).shape)
    if p.size != 2 * rank:
        raise _Refuse(f"paddings has {p.size} values for a rank-{rank} input")
    im.folded["PAD paddings input -> attribute"] += 1
    return [int(v) for v in p.reshape(-1)]


def _pad(im, op, name):
    return im.emit("Pad", im.tensor(op, 0), name=im.info_out(op).name, pads=_paddings(im, op))


def _padv2(im, op, name):
    pads = _paddings(im, op)
    x_info = im.info_in(op, 0)
    attrs = {}
    if im.info_in(op, 2) is not None:
        v = im.const_value(op, 2, "constant_values").reshape(-1)
        if v.size != 1:
            raise _Refuse("constant_values must be a scalar")
        v = v[0]
        if im.is_float(x_info):
            attrs["value"] = float(v)
        else:
            zp = int(x_info.quant.zero_points[0]) if x_info.quant is not None else 0
            if int(v) != zp:
                raise _Refuse(f"integer pad value {int(v)} other than the zero point {zp}")
    return im.emit("Pad", im.tensor(op, 0), name=im.info_out(op).name, pads=pads, **attrs)


def _mirror_pad(im, op, name):
    o = im.options(op, im.tfl.MirrorPadOptions)
    mode = _opt(o, "Mode", 0)
    if mode not in (0, 1):
        raise _Refuse(f"mirror pad mode {mode}")
    return im.emit("Pad", im.tensor(op, 0), name=im.info_out(op).name, pads=_paddings(im, op), mode=mode + 1)


def _resize(kind, options_cls):
    def h(im, op, name):
        size = im.ints(op, 1, "size")
        o = im.options(op, getattr(im.tfl, options_cls))
        im.folded[f"{name} size input -> attribute"] += 1
        return im.emit(kind, im.tensor(op, 0), name=im.info_out(op).name, size=size,
                       align_corners=int(bool(_opt(o, "AlignCorners", False))),
                       half_pixel_centers=int(bool(_opt(o, "HalfPixelCenters", False))))
    return h


def _space_depth(kind, options_cls):
    def h(im, op, name):
        o = im.options(op, getattr(im.tfl, options_cls))
        if o is None:
            raise _Refuse("missing block_size")
        return im.emit(kind, im.tensor(op, 0), name=im.info_out(op).name, block_size=o.BlockSize(), mode=0)
    return h


def _quantize(im, op, name):
    out = im.info_out(op)
    x_info = im.info_in(op, 0)
    if out.dtype not in _QUANTIZED:
        raise _Refuse(f"quantize to {out.type_name}")
    if out.quant is None:
        raise _Refuse(f"output '{out.name}' has no quantization parameters")
    if not im.is_float(x_info):
        im.report.notes.append(f"QUANTIZE '{out.name}': requantization {x_info.type_name} -> {out.type_name}")
    return im.emit("Quantize", im.tensor(op, 0), name=out.name, dtype=code_of(out.dtype), mode=0)


def _dequantize(im, op, name):
    x_info = im.info_in(op, 0)
    out = im.info_out(op)
    if x_info.dtype not in _QUANTIZED + (np.float16,):
        raise _Refuse(f"dequantize from {x_info.type_name}")
    if x_info.dtype != np.float16 and x_info.quant is None:
        raise _Refuse(f"input '{x_info.name}' has no quantization parameters")
    if x_info.const:
        why = ("kept float16; Dequantize -> float32" if x_info.dtype == np.float16 else
               "kept quantized with its scales; Dequantize -> float32")
        if x_info.index in im.float_view:
            # Another DEQUANTIZE of the same constant: share the first one.
            return im.float_view[x_info.index]
        c = im.const(x_info, summarize=False)
        t = im.emit("Dequantize", c, name=out.name)
        im.float_view[x_info.index] = t
        im.report.kept_precision.append(f"{_describe(x_info)}: {why}")
        return t
    return im.emit("Dequantize", im.tensor(op, 0), name=out.name)


# -- constant folding ------------------------------------------------------------------
def _fold_shape(im, op, vals):
    return [np.asarray(im.info_in(op, 0).shape, np.int64)]


def _fold_pack(im, op, vals):
    o = im.options(op, im.tfl.PackOptions)
    return [np.stack(vals, axis=int(_opt(o, "Axis", 0)))]


def _fold_unpack(im, op, vals):
    o = im.options(op, im.tfl.UnpackOptions)
    axis = int(_opt(o, "Axis", 0))
    return [np.take(vals[0], i, axis=axis) for i in range(vals[0].shape[axis])]


def _fold_strided_slice(im, op, vals):
    o = im.options(op, im.tfl.StridedSliceOptions)
    if _opt(o, "EllipsisMask", 0) or _opt(o, "NewAxisMask", 0):
        raise _Refuse("not folded")
    x = vals[0]
    begin, end = [int(v) for v in vals[1].reshape(-1)], [int(v) for v in vals[2].reshape(-1)]
    strides = [int(v) for v in vals[3].reshape(-1)] if len(vals) > 3 and vals[3] is not None else [1] * len(begin)
    if o is not None and o.Offset():
        end = [b + e for b, e in zip(begin, end)]
    bm, em, sm = int(_opt(o, "BeginMask", 0)), int(_opt(o, "EndMask", 0)), int(_opt(o, "ShrinkAxisMask", 0))
    index = []
    for i in range(x.ndim):
        if i >= len(begin):
            index.append(slice(None))
        elif sm >> i & 1:
            index.append(begin[i])
        else:
            index.append(slice(None if bm >> i & 1 else begin[i], None if em >> i & 1 else end[i], strides[i]))
    return [x[tuple(index)]]


def _fold_slice(im, op, vals):
    x, begin, size = vals[0], vals[1].reshape(-1), vals[2].reshape(-1)
    return [x[tuple(slice(int(b), None if int(n) < 0 else int(b) + int(n)) for b, n in zip(begin, size))]]


def _fold_concat(im, op, vals):
    o = im.options(op, im.tfl.ConcatenationOptions)
    if _opt(o, "FusedActivationFunction", 0):
        raise _Refuse("not folded")
    return [np.concatenate(vals, axis=int(_opt(o, "Axis", 0)))]


def _fold_reshape(im, op, vals):
    return [vals[0]]  # the caller reshapes to the output's static shape


def _fold_gather(im, op, vals):
    o = im.options(op, im.tfl.GatherOptions)
    if _opt(o, "BatchDims", 0):
        raise _Refuse("not folded")
    return [np.take(vals[0], vals[1].astype(np.int64), axis=int(_opt(o, "Axis", 0)))]


def _fold_transpose(im, op, vals):
    return [np.transpose(vals[0], [int(v) for v in vals[1].reshape(-1)])]


def _fold_int_binary(fn, options_cls):
    def f(im, op, vals):
        o = im.options(op, getattr(im.tfl, options_cls)) if options_cls else None
        if _opt(o, "FusedActivationFunction", 0) or any(v.dtype.kind not in "iu" for v in vals):
            raise _Refuse("not folded")  # integer shape arithmetic only
        return [fn(vals[0], vals[1])]
    return f


def _fold_reduce_prod(im, op, vals):
    o = im.options(op, im.tfl.ReducerOptions)
    if vals[0].dtype.kind not in "iu":
        raise _Refuse("not folded")
    axes = tuple(int(a) for a in vals[1].reshape(-1))
    return [np.prod(vals[0], axis=axes, keepdims=bool(_opt(o, "KeepDims", False)))]


def _fold_range(im, op, vals):
    start, limit, delta = (v.reshape(-1)[0] for v in vals[:3])
    return [np.arange(start, limit, delta)]


def _fold_fill(im, op, vals):
    dims = [int(d) for d in vals[0].reshape(-1)]
    if any(d < 0 for d in dims) or math.prod(dims) > _MAX_FOLD_ELEMENTS:
        raise _Refuse("not folded")  # (the declared output shape is checked by the caller)
    return [np.full(dims, vals[1].reshape(-1)[0])]


# The most elements a constant folded by the importer may hold (as the ONNX
# importer's MAX_FOLD_ELEMENTS): 2^28.
_MAX_FOLD_ELEMENTS = 1 << 28


# -- recurrent ---------------------------------------------------------------------

def _lstm_checks(im, op, o, present, groups):
    """The settings of a TFLite sequence LSTM the runtime's LSTM does not have, refused."""
    for base in groups:  # the 17 inputs of one direction's weights, from `base`
        if not present[base] or not present[base + 4]:
            raise _Refuse("CIFG (coupled input and forget gates, no input gate weights)")
        if present[base + 15] or present[base + 16]:
            raise _Refuse("projection layer")
        if any(present[base + 8:base + 11]) and not all(present[base + 8:base + 11]):
            raise _Refuse("peepholes on only some gates")
    act = _opt(o, "FusedActivationFunction", 4)
    if act != 4:
        raise _Refuse(f"activation {_ACT_NAMES.get(act, act)} (only TANH)")
    if _opt(o, "CellClip", 0.0):
        raise _Refuse("cell_clip (TFLite clips the cell state)")
    x_info = im.info_in(op, 0)
    if not im.is_float(x_info) or len(x_info.shape) != 3:
        raise _Refuse(f"input '{x_info.name}' must be float32 of rank 3")


def _lstm_weights(im, op, present, groups, H, I, label):
    """W [D, 4H, I], R [D, 4H, H], B [D, 8H] and P [D, 3H] (or None) of the runtime's LSTM from the TFLite
    gate tensors of each direction (17 inputs from each of `groups`): ONNX's gate order i, o, f, c from
    TFLite's i, f, c, o, concatenated at load (constant folding; int8 weights stay int8 in the file)."""
    D = len(groups)
    for base in groups:
        for k in range(base, base + 15):
            if not present[k]:
                continue
            info = im.info_in(op, k)
            off = k - base
            want = (H, I) if off < 4 else (H, H) if off < 8 else (H,)
            if tuple(info.shape) != want:
                raise _Refuse(f"input {k} '{info.name}' has shape {list(info.shape)}, not {list(want)}")
    order = (0, 3, 1, 2)  # TFLite i, f, c, o -> ONNX i, o, f, c

    def stacked(offsets, what, shape, extra=None):
        parts = []
        for base in groups:
            parts += [im.tensor(op, base + j, True) for j in offsets]
            if extra is not None:
                parts.append(extra)
        t = im.emit("Concat", *parts, name=f"{label}/{what}_stacked", axis=0)
        return im.emit("Reshape", t, name=f"{label}/{what}", shape=[D] + shape)

    w = stacked(order, "W", [4 * H, I])
    r = stacked([4 + j for j in order], "R", [4 * H, H])
    zeros = im.b.const(im.unique(f"{label}/Rb"), np.zeros(4 * H, np.float32))
    bias = stacked([11 + j for j in order], "B", [8 * H], zeros)
    p = stacked([8, 10, 9], "P", [3 * H]) if present[groups[0] + 8] else None  # i, o, f
    if im.hybrid:
        im.report.notes.append("sequence LSTM with int8 weights: computed in float32 on the dequantized weights "
                               "(LiteRT's hybrid kernel also quantizes the activations)")
    return w, r, bias, p


def _lstm_states(im, op, slots, B, H, time_major):
    """initial_h and initial_c [D, B, H] / [B, D, H] from the TFLite state inputs (variable tensors, zero;
    constant data when they hold some) of each direction."""
    out = []
    for kind in (0, 1):
        datas = []
        for pair in slots:
            info = im.info_in(op, pair[kind])
            if info is None or tuple(info.shape) != (B, H):
                raise _Refuse(f"state input {pair[kind]} must be [{B}, {H}]")
            datas.append(np.asarray(info.data, np.float32) if isinstance(info.data, np.ndarray) else None)
        if all(d is None for d in datas):
            out.append(None)
            continue
        arr = np.stack([np.zeros((B, H), np.float32) if d is None else d for d in datas], axis=0 if time_major else 1)
        out.append(im.b.const(im.unique(f"{im.info_in(op, slots[0][kind]).name}/initial"), arr))
    return out


def _sequence_lstm_dims(im, op, time_major):
    x_info = im.info_in(op, 0)
    T, B = (x_info.shape[0], x_info.shape[1]) if time_major else (x_info.shape[1], x_info.shape[0])
    w_info = im.info_in(op, 2)
    if len(w_info.shape) != 2:
        raise _Refuse("gate weights must be 2-D")
    return T, B, w_info.shape[0], w_info.shape[1]


def _unidirectional_sequence_lstm(im, op, name):
    """UNIDIRECTIONAL_SEQUENCE_LSTM -> the runtime's LSTM and a Reshape of Y [T, 1, B, H] / [B, T, 1, H] to the
    TFLite output. The state inputs (variable tensors) give the initial state when they hold constant data,
    else it is zero: each run starts afresh, as LiteRT after reset_all_variables (LiteRT itself carries the
    state from one invoke to the next)."""
    o = im.options(op, im.tfl.UnidirectionalSequenceLSTMOptions)
    ins = [int(i) for i in _np(op.InputsAsNumpy())]
    if len(ins) not in (20, 24):
        raise _Refuse(f"{len(ins)} inputs (20 or 24 expected)")
    present = [k < len(ins) and ins[k] >= 0 for k in range(24)]
    _lstm_checks(im, op, o, present, [1])
    if any(present[20:24]):
        raise _Refuse("layer normalization")
    if _opt(o, "DiagonalRecurrentTensors", False):
        raise _Refuse("diagonal recurrent weights")
    time_major = bool(_opt(o, "TimeMajor", False))
    T, B, H, I = _sequence_lstm_dims(im, op, time_major)
    out = im.info_out(op)
    w, r, bias, p = _lstm_weights(im, op, present, [1], H, I, out.name)
    h0, c0 = _lstm_states(im, op, [(18, 19)], B, H, time_major)
    core = [im.tensor(op, 0), w, r, bias, h0, c0, p]
    while core[-1] is None:
        core.pop()
    y = im.emit("LSTM", *core, name=f"{out.name}/lstm", axis=0 if time_major else 1)
    return im.emit("Reshape", y, name=out.name, shape=list(out.shape))


def _bidirectional_sequence_lstm(im, op, name):
    """BIDIRECTIONAL_SEQUENCE_LSTM -> one LSTM with both directions (mode 2); Y [T, 2, B, H] / [B, T, 2, H]
    becomes the merged output [.., 2H] (a Transpose when time major) or the forward and backward outputs
    (a Split). States as UNIDIRECTIONAL_SEQUENCE_LSTM. Auxiliary inputs are refused."""
    o = im.options(op, im.tfl.BidirectionalSequenceLSTMOptions)
    ins = [int(i) for i in _np(op.InputsAsNumpy())]
    if len(ins) != 48:
        raise _Refuse(f"{len(ins)} inputs (48 expected)")
    present = [ins[k] >= 0 for k in range(48)]
    _lstm_checks(im, op, o, present, [1, 18])
    if any(present[39:48]):
        raise _Refuse("auxiliary input")
    if present[9] != present[26]:
        raise _Refuse("peepholes in one direction only")
    time_major = bool(_opt(o, "TimeMajor", True))
    merge = bool(_opt(o, "MergeOutputs", False))
    T, B, H, I = _sequence_lstm_dims(im, op, time_major)
    if tuple(im.info_in(op, 19).shape) != (H, I):
        raise _Refuse("the two directions have different sizes")
    out = im.info_out(op)
    w, r, bias, p = _lstm_weights(im, op, present, [1, 18], H, I, out.name)
    h0, c0 = _lstm_states(im, op, [(35, 36), (37, 38)], B, H, time_major)
    core = [im.tensor(op, 0), w, r, bias, h0, c0, p]
    while core[-1] is None:
        core.pop()
    y = im.emit("LSTM", *core, name=f"{out.name}/lstm", axis=0 if time_major else 1, mode=2)
    lead = [T, B] if time_major else [B, T]
    if time_major:  # [T, 2, B, H] -> [T, B, 2, H]
        y = im.emit("Transpose", y, name=f"{out.name}/directions_last", perm=[0, 2, 1, 3])
    if merge:
        return im.emit("Reshape", y, name=out.name, shape=list(out.shape))
    fw, bw = im.emit("Split", y, outputs=[f"{out.name}/fw", f"{out.name}/bw"], axis=2)
    bw_info = im.info_out(op, 1)
    return [im.emit("Reshape", fw, name=out.name, shape=lead + [H]),
            im.emit("Reshape", bw, name=bw_info.name, shape=lead + [H])]

_FOLDERS = {
    "SHAPE": _fold_shape,
    "PACK": _fold_pack,
    "UNPACK": _fold_unpack,
    "STRIDED_SLICE": _fold_strided_slice,
    "SLICE": _fold_slice,
    "CONCATENATION": _fold_concat,
    "RESHAPE": _fold_reshape,
    "SQUEEZE": _fold_reshape,
    "EXPAND_DIMS": _fold_reshape,
    "GATHER": _fold_gather,
    "TRANSPOSE": _fold_transpose,
    "CAST": lambda im, op, vals: [vals[0]],  # the caller casts to the output's dtype
    "ADD": _fold_int_binary(np.add, "AddOptions"),
    "SUB": _fold_int_binary(np.subtract, "SubOptions"),
    "MUL": _fold_int_binary(np.multiply, "MulOptions"),
    "FLOOR_DIV": _fold_int_binary(np.floor_divide, None),
    "REDUCE_PROD": _fold_reduce_prod,
    "FILL": _fold_fill,
    "RANGE": _fold_range,
    "DENSIFY": lambda im, op, vals: [vals[0]],  # sparse constants are densified when read
}


_HANDLERS = {
    "ADD": _binary("Add", "AddOptions"),
    "SUB": _binary("Sub", "SubOptions"),
    "MUL": _binary("Mul", "MulOptions"),
    "DIV": _binary("Div", "DivOptions"),
    "MAXIMUM": _binary("Maximum"),
    "MINIMUM": _binary("Minimum"),
    "RELU": _unary("Relu"),
    "RELU6": _unary("Relu6"),
    "RELU_N1_TO_1": _relu_n1_to_1,
    "LEAKY_RELU": _leaky_relu,
    "PRELU": _prelu,
    "HARD_SWISH": _unary("HardSwish"),
    "GELU": _gelu,
    "LOGISTIC": _unary("Logistic"),
    "TANH": _unary("Tanh"),
    "EXP": _unary("Exp"),
    "LOG": _unary("Log"),
    "SQRT": _unary("Sqrt"),
    "RSQRT": _unary("Rsqrt"),
    "SOFTMAX": _softmax,
    "LOG_SOFTMAX": _log_softmax,
    "FULLY_CONNECTED": _fully_connected,
    "BATCH_MATMUL": _batch_matmul,
    "CONV_2D": _conv2d,
    "DEPTHWISE_CONV_2D": _depthwise,
    "TRANSPOSE_CONV": _transpose_conv,
    "MAX_POOL_2D": _pool("MaxPool2D"),
    "AVERAGE_POOL_2D": _pool("AveragePool2D"),
    "MEAN": _reducer("Mean"),
    "SUM": _float_reducer("ReduceSum"),
    "REDUCE_PROD": _float_reducer("ReduceProd"),
    "REDUCE_MAX": _reducer("ReduceMax"),
    "REDUCE_MIN": _float_reducer("ReduceMin"),
    "RESHAPE": _reshape,
    "SQUEEZE": _squeeze,
    "EXPAND_DIMS": _expand_dims,
    "TRANSPOSE": _transpose,
    "CONCATENATION": _concat,
    "SPLIT": _split,
    "SPLIT_V": _split_v,
    "SLICE": _slice,
    "DYNAMIC_UPDATE_SLICE": _dynamic_update_slice,
    "STRIDED_SLICE": _strided_slice,
    "GATHER": _gather,
    "PAD": _pad,
    "PADV2": _padv2,
    "MIRROR_PAD": _mirror_pad,
    "RESIZE_BILINEAR": _resize("ResizeBilinear", "ResizeBilinearOptions"),
    "RESIZE_NEAREST_NEIGHBOR": _resize("ResizeNearest", "ResizeNearestNeighborOptions"),
    "DEPTH_TO_SPACE": _space_depth("DepthToSpace", "DepthToSpaceOptions"),
    "SPACE_TO_DEPTH": _space_depth("SpaceToDepth", "SpaceToDepthOptions"),
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "EQUAL": _compare("Equal"),
    "NOT_EQUAL": _compare("NotEqual"),
    "LESS": _compare("Less"),
    "LESS_EQUAL": _compare("LessEqual"),
    "GREATER": _compare("Greater"),
    "GREATER_EQUAL": _compare("GreaterEqual"),
    "LOGICAL_AND": _binary("LogicalAnd"),
    "LOGICAL_OR": _binary("LogicalOr"),
    "LOGICAL_NOT": _unary("LogicalNot"),
    "SELECT": _select,
    "SELECT_V2": _select,
    "FLOOR": _unary("Floor"),
    "CEIL": _unary("Ceil"),
    "ROUND": _unary("Round"),
    "CAST": _cast,
    "SHAPE": _shape,
    "TILE": _tile,
    "BROADCAST_TO": _broadcast_to,
    "RANGE": _range,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _unidirectional_sequence_lstm,
    "BIDIRECTIONAL_SEQUENCE_LSTM": _bidirectional_sequence_lstm,
}
# Resource variables (VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE, CALL_ONCE): tflite_state.py.
# IF, WHILE (subgraphs): tflite_control.py.
from . import tflite_control as _control  # noqa: E402
from . import tflite_state as _state  # noqa: E402  (it reads this module's helpers)
_HANDLERS.update(_state.HANDLERS)
SUPPORTED_OPS.update(_state.SUPPORTED)
_HANDLERS.update(_control.HANDLERS)
SUPPORTED_OPS.update(_control.SUPPORTED)
assert set(_HANDLERS) == set(SUPPORTED_OPS)


def import_model(source, report: Report, **options) -> GraphBuilder:
    """Reads a .tflite (a path or bytes) and returns a GraphBuilder of its main
    subgraph. Option: name (the model name in the .tinf metadata)."""
    name = options.pop("name", None)
    if options:
        raise InvalidArgumentError(f"tflite importer: unknown option(s) {sorted(options)}; known: name")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        default_name = "tflite_model"
    else:
        with open(source, "rb") as f:
            data = f.read()
        default_name = os.path.splitext(os.path.basename(os.fspath(source)))[0]
    report.importer = "tflite"
    try:
        return _Importer(data, report, name or default_name).run()
    except (struct.error, IndexError, UnicodeDecodeError) as e:  # a truncated or corrupt flatbuffer
        raise ModelFormatError(f"cannot read the TFLite flatbuffer: {type(e).__name__}: {e}") from e
