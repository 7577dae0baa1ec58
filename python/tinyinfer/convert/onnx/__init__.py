"""ONNX importer: ONNX graphs (opsets 11 to 20; torch.onnx.export writes 13 to
20) to tinyinfer graphs.

    tinyinfer.convert("model.onnx", "model.tinf")
    tinyinfer.convert("model.onnx", "model.tinf", batch=4)        # fix a dynamic batch dim

Options (keyword arguments of tinyinfer.convert):

- ``batch`` (default 1): the size given to a dynamic first dim of an input.
  Any other dynamic dim (a sequence length) stays dynamic: the file holds an
  example size and a run gives the size (dynamic.py: converted at two sizes,
  refused naming the op when the graph cannot follow the size); ``input_shapes``
  fixes it instead.
- ``input_shapes``: ``{input name: shape}`` overriding the declared shapes;
  ``input_shape``: the same for a model with one input (the command line's
  ``--input-shape``).
- ``keep_int8_weights`` (default True): a DequantizeLinear of a constant
  int8/uint8 weight becomes an int8 constant plus a Dequantize op (the file
  keeps 8-bit weights); False dequantizes it at conversion (float32 weights).
- ``check_opset`` (default True): refuse opsets outside 11..20.
- ``simulate_quantization`` (default False): a quantized model (QDQ pairs or
  QLinear* ops on activations) is converted to the simulated float graph and
  then rewritten onto the int8 kernels with the file's parameters (see
  "Quantized forms" below); True keeps the float simulation.

How the graph is converted
--------------------------

1. Dynamic batch dims are fixed, then ONNX shape inference and constant
   folding alternate until nothing changes: initializers, Constant nodes and
   every node whose inputs are all constants (Shape of a static shape,
   Gather/Unsqueeze/Concat chains, Cast, ConstantOfShape, ...) are evaluated
   at conversion with the ONNX reference evaluator (numpy). Every tensor that
   remains must have a static shape.
2. Graph rewrites at the ONNX level that no load-time pass of the core does,
   each reported: the erf form of Gelu (x * 0.5 * (1 + erf(x / sqrt 2))) to
   Gelu; the ReduceMean/Sub/Pow/Sqrt/Div form of layer normalization to
   LayerNorm; Reciprocal(Sqrt) to Rsqrt; HardSigmoid(1/6, 1/2) * x and
   x * Clip(x + 3, 0, 6) / 6 (or * 1/6) to HardSwish; BatchNormalization
   folded into a preceding ConvTranspose or 1-D Conv and a constant Pad into
   the padding of the following MaxPool / AveragePool (the core's passes do
   not cover these).
3. Emission, node by node, tracking the layout of every tensor: each value
   knows the permutation that takes its ONNX (NCHW) order to the order it has
   in the runtime. Ops that need NHWC (Conv, pooling, Resize, ...) ask for it
   and a Transpose is inserted once per tensor when the value is not already
   in that order; elementwise ops follow their inputs' layout (constants are
   permuted at conversion); axis attributes (Concat, Softmax, ReduceMean,
   Split, Slice, Pad, Gather, LayerNorm) are remapped; an ONNX Transpose
   only changes the recorded permutation (no op is emitted); a Flatten/Reshape
   of an NHWC tensor to [N, C*H*W] followed by Gemm/MatMul with constant
   weights permutes the weight columns instead of the activations. So a CNN
   has one Transpose after each 4-D image input and one before each 4-D
   output. A Reshape of a permuted tensor is done in the runtime layout when
   the merged or split axes are adjacent there (a ViT's flatten(2).transpose
   costs nothing). Clip(-1,1) after Conv/Gemm/MatMul/Add/Sub/Mul/Div/pooling
   becomes the fused activation (so do Relu and Clip(0,6) after a 1-D Conv
   or pool, where a Reshape separates them), and a constant bias Add after a
   MatMul becomes the FullyConnected bias.
4. The emitted ops are replayed into the GraphBuilder; constants no op reads
   are not written. The report's "ops out" counts what is in the file.

The importer leaves to the core's load-time passes (docs/architecture.md) what
they do on every model: BatchNorm folding into Conv2D / DepthwiseConv2D /
FullyConnected, Relu / Relu6 fusion, zero-Pad fusion into convolutions,
reshape-of-reshape and identity removal, dead ops. The report's "at load"
line lists what they will do to the converted model.

Pooling with ceil_mode = 1 becomes extra bottom/right padding (exact for
MaxPool and for AveragePool without count_include_pad; with it, a constant
per-position divisor correction); the output size follows onnxruntime's rule
(the last window starts inside the input or left padding) and a model whose
ONNX shape inference disagrees is refused. Resize maps a
coordinate_transformation_mode / nearest_mode to the runtime's align_corners /
half_pixel_centers / asymmetric rule only after checking that every output
row and column reads the same source coordinates as onnxruntime would.

Refused (UnsupportedOpError, nothing written): every op not in SUPPORTED_OPS
(listed with counts, e.g. TopK, NonMaxSuppression, RNN, Scan, Loop with scan outputs,
contrib-domain ops such as com.microsoft.Attention), dynamic dims other than the batch, Resize cubic /
tf_crop_and_resize / modes that do not map, ConvTranspose with groups, pooling
with dilations, per-axis quantization of activations, quantization to types
other than int8/uint8, Cast to float16/float64/strings, and opsets
outside 11..20 (check_opset=False tries anyway). The converted graph is static:
shapes (including Reshape targets) carry the batch size it was converted with;
convert again with batch=N for another batch size.

Quantized forms (simulated quantization; the choice is also written into the
report's notes). A model with quantized activations (QDQ pairs, QLinear*) is
then rewritten onto the int8 kernels with these parameters unless
``simulate_quantization=True`` (quant.to_int8_kernels; docs/quantization.md,
"QDQ models"):

- DequantizeLinear of a constant int8/uint8 weight: int8 constant plus a
  Dequantize op (per-tensor or per-channel; weights stay 8-bit in the file).
  DequantizeLinear of an int32 bias: dequantized at conversion.
- QuantizeLinear of an activation: a Quantize op (round half to even, as
  ONNX) followed by a Dequantize op; the ONNX integer tensor is carried as its
  dequantized float value, so a QuantizeLinear/DequantizeLinear pair is
  Quantize+Dequantize, and data-movement ops on quantized tensors (MaxPool,
  Reshape, Transpose, ...) run on the float values, which is exact.
- QLinearConv / QLinearMatMul: float Conv / FullyConnected on the
  dequantized input with dequantized weights (int8 constant + Dequantize),
  then Quantize+Dequantize with the output parameters.
- MatMulInteger / ConvInteger / DynamicQuantizeLinear: the integer values are
  carried exactly in float32 tensors (products and sums of 8-bit values are
  exact in float32 up to 2**24); DynamicQuantizeLinear computes its scale and
  zero point at run time from the tensor's min and max (MaxPool2D over the
  flattened tensor) as ONNX specifies, rounding with Quantize (half to even).

The package: `_core.py` (the importer: loading, shape inference and constant
folding, emission helpers, the main loop), `_graph.py` (the data it works
on), `rewrites.py` (ONNX-level rewrites), one module per op family
(`elementwise.py`, `conv.py`, `matmul.py`, `shape.py`, `quant.py`, `logic.py`, `recurrent.py`) and the
handler table HANDLERS below (op type, or "domain.op" outside the default
domain -> handler(importer, node)). Adding an op: a handler in its family's
module, a row in HANDLERS and one in SUPPORTED_OPS.
"""

from __future__ import annotations

from typing import Dict, List

from ...builder import GraphBuilder
from .. import Report
from . import control, conv, elementwise, logic, matmul, quant, recurrent, shape
from ..._errors import InvalidArgumentError, ShapeError, UnsupportedOpError
from ._core import Handler, _Importer
from ._graph import MAX_OPSET, MIN_OPSET

__all__ = ["SUPPORTED_OPS", "HANDLERS", "import_model", "MIN_OPSET", "MAX_OPSET"]

SUPPORTED_OPS: Dict[str, str] = {
    "Conv": "Conv2D (OIHW weights -> OHWI), DepthwiseConv2D when group == C_in (weights [1,KH,KW,C*M]), "
            "grouped Conv2D otherwise; 1-D convolutions as 2-D with H = 1",
    "ConvTranspose": "TransposeConv2D (IOHW weights -> [Cout,KH,KW,Cin]); group 1 only",
    "Gemm": "FullyConnected (alpha, beta, transA, transB folded into the constant weights and bias); "
            "MatMul + Mul + Add when B is not constant",
    "MatMul": "FullyConnected when B is a constant 2-D matrix (a following constant Add becomes the bias), "
              "else MatMul (a transposed operand becomes transpose_a/transpose_b)",
    "Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Sum": "chain of Add",
    "Max": "Maximum (chained when variadic)", "Min": "Minimum (chained when variadic)",
    "Pow": "constant exponent 1, 2, 3 (Mul), 0.5 (Sqrt), -0.5 (Rsqrt), -1 (Div)",
    "Neg": "Mul by -1", "Abs": "Maximum(x, -x)",
    "Relu": "Relu (fused into its producer at load by the core; by the importer after a 1-D Conv/pool)",
    "Clip": "HardSwish as x * Clip(x + 3, 0, 6) / 6 (or * 1/6); Relu6 / Relu for (0,6) / (0,inf); the "
            "producer's fused activation for (-1,1); else Maximum + "
            "Minimum (constant bounds, or float bounds computed at run time)",
    "LeakyRelu": "LeakyRelu", "PRelu": "PRelu (slope permuted to the input's layout)",
    "HardSwish": "HardSwish", "HardSigmoid": "HardSwish when HardSigmoid(1/6, 1/2) * x; else Mul + Add + "
                                             "Relu + Minimum",
    "Sigmoid": "Logistic", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt",
    "Reciprocal": "Rsqrt when of a Sqrt, else Div(1, x)",
    "Gelu": "Gelu (opset 20; approximate none/tanh)",
    "Erf": "Erf; the erf form of Gelu (x * 0.5 * (1 + erf(x / sqrt 2))) becomes Gelu",
    "Softmax": "Softmax (axis remapped; opsets 11/12: over the dims from axis on, as Reshape to 2-D, Softmax, "
               "Reshape back when axis is not the last)",
    "LogSoftmax": "LogSoftmax (as Softmax)",
    "LayerNormalization": "LayerNorm (and the ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div form torch "
                          "writes below opset 17)",
    "BatchNormalization": "BatchNorm on the channels-last tensor (inference mode only; folded into a preceding "
                          "2-D Conv / Gemm by the core at load, into a ConvTranspose / 1-D Conv here)",
    "MaxPool": "MaxPool2D (ceil_mode as extra bottom/right padding; no dilations, no indices output)",
    "AveragePool": "AveragePool2D (count_include_pad; ceil_mode 1 through a constant divisor correction)",
    "GlobalAveragePool": "Mean over [1, 2] keep_dims on NHWC", "GlobalMaxPool": "MaxPool2D over H x W",
    "ReduceMean": "Mean (axes attribute or input, remapped)", "ReduceSum": "ReduceSum (axes as ReduceMean)",
    "ReduceMax": "ReduceMax (axes attribute or input, remapped; none = all unless noop_with_empty_axes)",
    "ReduceMin": "ReduceMin (axes as ReduceMean)",
    "Reshape": "Reshape (0 copies a dim; shapes from constants or folded Shape chains)",
    "Flatten": "Reshape (after an NHWC tensor feeding Gemm/MatMul: the weight columns are permuted)",
    "Squeeze": "Reshape", "Unsqueeze": "Reshape",
    "Transpose": "folded into the tracked layout (a Transpose op only where a consumer needs it)",
    "Concat": "Concat (axis remapped)", "Split": "Split (axis remapped)",
    "Slice": "Slice, or StridedSlice for steps != 1 (constant starts/ends/axes/steps)",
    "Pad": "Pad constant/reflect (constant pads; NHWC before a Conv, whose padding takes it at load; folded "
           "into a following MaxPool/AveragePool here)",
    "Gather": "Gather (axis remapped; scalar index drops the axis)",
    "Resize": "ResizeNearest / ResizeBilinear when the coordinate mode maps to align_corners / "
              "half_pixel / asymmetric exactly (checked per output row and column); cubic refused",
    "DepthToSpace": "DepthToSpace (DCR / CRD)", "SpaceToDepth": "SpaceToDepth",
    "Identity": "removed", "Dropout": "removed (inference)",
    "Constant": "folded", "Shape": "folded (static shapes)", "Size": "folded (static shapes)",
    "ConstantOfShape": "folded (a shape input computed at run time is refused)", "Cast": "Cast between float32, int8, uint8, int32, int64, bool (float to int "
                                        "truncates, saturating); folded when constant; float32 -> float32 "
                                        "removed; int -> float on integer-valued tensors (MatMulInteger/"
                                        "ConvInteger outputs) removed",
    "Range": "folded (constant start, limit, delta)",
    "Expand": "Expand (any dtype, in the input's layout); folded when constant",
    "Equal": "Equal (bool output; float32, int32, int64, int8/uint8, bool; constants take the run-time operand's "
             "dtype)", "Less": "Less", "Greater": "Greater", "LessOrEqual": "LessEqual",
    "GreaterOrEqual": "GreaterEqual", "Not": "LogicalNot", "And": "LogicalAnd", "Or": "LogicalOr",
    "Xor": "LogicalXor", "IsNaN": "NotEqual(x, x) (float32)", "Where": "Where (any dtype for X and Y)", "Floor": "Floor", "Ceil": "Ceil",
    "Round": "Round (ties to even)", "Tile": "Tile (constant repeats)", "ReduceProd": "ReduceProd",
    "QuantizeLinear": "Quantize + Dequantize (per-tensor int8/uint8, round half to even), then the int8 kernels with these parameters (docs/quantization.md, \"QDQ models\"); folded on constants",
    "DequantizeLinear": "int8 constant + Dequantize for weights; removed after QuantizeLinear (params "
                        "checked); Dequantize for integer inputs",
    "QLinearConv": "Conv2D / DepthwiseConv2D in float on dequantized values, then Quantize + Dequantize",
    "QLinearMatMul": "FullyConnected / MatMul in float on dequantized values, then Quantize + Dequantize",
    "MatMulInteger": "FullyConnected / MatMul on integer values carried in float32 (exact)",
    "ConvInteger": "Conv2D on integer values carried in float32 (exact)",
    "com.microsoft.QGemm": "FullyConnected in float on dequantized values (int8 weights + Dequantize, int32 "
                           "bias dequantized), then Quantize + Dequantize (or float output without y_scale)",
    "com.microsoft.QLinearAdd": "Add in float, then Quantize + Dequantize",
    "com.microsoft.QLinearMul": "Mul in float, then Quantize + Dequantize",
    "com.microsoft.QLinearGlobalAveragePool": "Mean in float, then Quantize + Dequantize (channels_last 0)",
    "com.microsoft.QLinearAveragePool": "AveragePool2D in float, then Quantize + Dequantize (channels_last 0)",
    "com.microsoft.QLinearSigmoid": "Logistic in float, then Quantize + Dequantize",
    "com.microsoft.QLinearLeakyRelu": "LeakyRelu in float, then Quantize + Dequantize",
    "com.microsoft.QLinearConcat": "Concat in float, then Quantize + Dequantize",
    "DynamicQuantizeLinear": "run-time scale and zero point (global max/min with MaxPool2D) and Quantize "
                             "(round half to even) as ONNX specifies",
    "LSTM": "LSTM (directions, layout 0/1, B, initial_h/c, peepholes, clip, input_forget; default activations "
            "only; sequence_lens per batch entry, a constant or an int32 input)",
    "GRU": "GRU (as LSTM; linear_before_reset 0 and 1)",
    "com.microsoft.DynamicQuantizeLSTM": "LSTM on the 8-bit W and R (int8 constants + Dequantize, folded at load; "
                                         "per-direction or per-column scales)",
    "If": "If over two subgraphs (each branch converted; the values it captures become its inputs; both must "
          "give the same dtypes and static shapes)",
    "Loop": "While over (iteration, trip count, condition, loop values, captured values): the condition "
            "subgraph iteration < M and cond, the body the converted body (iter_num as int64); no scan outputs",
}


# The one dispatch: op type -> handler(importer, node). Ops folded at conversion (Constant, Shape, ...) and
# matched by rewrites (Erf inside Gelu) need no handler; a node left with no entry here is refused.
HANDLERS: Dict[str, Handler] = {
    # elementwise.py
    "Add": elementwise.binary("Add"), "Sub": elementwise.binary("Sub"), "Mul": elementwise.binary("Mul"),
    "Div": elementwise.binary("Div"), "Sum": elementwise.variadic("Add"), "Max": elementwise.variadic("Maximum"),
    "Min": elementwise.variadic("Minimum"), "PRelu": elementwise.op_PRelu, "Relu": elementwise.unary("Relu"),
    "Sigmoid": elementwise.unary("Logistic"), "Tanh": elementwise.unary("Tanh"), "Exp": elementwise.unary("Exp"),
    "Log": elementwise.unary("Log"), "Sqrt": elementwise.unary("Sqrt"), "Rsqrt": elementwise.unary("Rsqrt"),
    "HardSwish": elementwise.unary("HardSwish"), "LeakyRelu": elementwise.op_LeakyRelu,
    "Gelu": elementwise.op_Gelu, "Identity": elementwise.op_Identity, "Dropout": elementwise.op_Dropout,
    "Neg": elementwise.op_Neg, "Abs": elementwise.op_Abs, "Reciprocal": elementwise.op_Reciprocal,
    "Pow": elementwise.op_Pow, "Clip": elementwise.op_Clip, "HardSigmoid": elementwise.op_HardSigmoid,
    "Softmax": elementwise.op_Softmax, "LogSoftmax": elementwise.op_LogSoftmax,
    "LayerNormalization": elementwise.op_LayerNormalization,
    "BatchNormalization": elementwise.op_BatchNormalization, "ReduceMean": elementwise.op_ReduceMean,
    "ReduceSum": elementwise.op_ReduceSum, "ReduceMax": elementwise.op_ReduceMax,
    "ReduceMin": elementwise.op_ReduceMin, "ReduceProd": elementwise.op_ReduceProd,
    # logic.py
    "Equal": logic.compare("Equal"), "Less": logic.compare("Less"), "Greater": logic.compare("Greater"),
    "LessOrEqual": logic.compare("LessEqual"), "GreaterOrEqual": logic.compare("GreaterEqual"),
    "Not": logic.logical("LogicalNot"), "And": logic.logical("LogicalAnd"), "Or": logic.logical("LogicalOr"),
    "Xor": logic.logical("LogicalXor"), "IsNaN": logic.op_IsNaN, "Where": logic.op_Where, "Cast": logic.op_Cast, "Tile": logic.op_Tile,
    "Floor": logic.rounding("Floor"), "Ceil": logic.rounding("Ceil"), "Round": logic.rounding("Round"),
    "Erf": logic.rounding("Erf"),
    # conv.py
    "Conv": conv.op_Conv, "ConvTranspose": conv.op_ConvTranspose, "MaxPool": conv.op_MaxPool,
    "AveragePool": conv.op_AveragePool, "GlobalAveragePool": conv.op_GlobalAveragePool,
    "GlobalMaxPool": conv.op_GlobalMaxPool,
    # matmul.py
    "Gemm": matmul.op_Gemm, "MatMul": matmul.op_MatMul,
    # shape.py
    "Expand": shape.op_Expand, "Reshape": shape.op_Reshape, "Flatten": shape.op_Flatten,
    "Squeeze": shape.op_Squeeze, "Unsqueeze": shape.op_Unsqueeze, "Transpose": shape.op_Transpose,
    "Concat": shape.op_Concat, "Split": shape.op_Split, "Slice": shape.op_Slice, "Pad": shape.op_Pad,
    "Gather": shape.op_Gather, "DepthToSpace": shape.op_DepthToSpace, "SpaceToDepth": shape.op_SpaceToDepth,
    "Resize": shape.op_Resize, "ConstantOfShape": shape.op_ConstantOfShape,
    # quant.py
    "QuantizeLinear": quant.op_QuantizeLinear, "DequantizeLinear": quant.op_DequantizeLinear,
    "QLinearConv": quant.op_QLinearConv, "QLinearMatMul": quant.op_QLinearMatMul,
    "com.microsoft.QLinearAdd": quant.op_ms_QLinearAdd, "com.microsoft.QLinearMul": quant.op_ms_QLinearMul,
    "com.microsoft.QLinearSigmoid": quant.op_ms_QLinearSigmoid,
    "com.microsoft.QLinearLeakyRelu": quant.op_ms_QLinearLeakyRelu,
    "com.microsoft.QLinearGlobalAveragePool": quant.op_ms_QLinearGlobalAveragePool,
    "com.microsoft.QLinearAveragePool": quant.op_ms_QLinearAveragePool,
    "com.microsoft.QLinearConcat": quant.op_ms_QLinearConcat, "com.microsoft.QGemm": quant.op_ms_QGemm,
    "MatMulInteger": quant.op_MatMulInteger, "ConvInteger": quant.op_ConvInteger,
    "DynamicQuantizeLinear": quant.op_DynamicQuantizeLinear,
    # recurrent.py
    "LSTM": recurrent.op_LSTM, "GRU": recurrent.op_GRU,
    "com.microsoft.DynamicQuantizeLSTM": recurrent.op_ms_DynamicQuantizeLSTM,
    # control.py
    "If": control.op_If, "Loop": control.op_Loop,
}


def import_model(source, report: Report, **options) -> GraphBuilder:
    """Converts an ONNX model (path, bytes or onnx.ModelProto) to a GraphBuilder; fills `report`.
    Options: batch=1, input_shapes=None, input_shape=None (the shape of the only input, as the command
    line's --input-shape gives it), keep_int8_weights=True, check_opset=True, name=None, input_values=None
    ({input name: value}: the input becomes that constant, e.g. a sample rate that selects an If branch)."""
    known = {"batch", "input_shapes", "input_shape", "keep_int8_weights", "check_opset", "name", "input_values",
             "simulate_quantization"}
    bad = set(options) - known
    if bad:
        raise InvalidArgumentError(f"onnx importer: unknown option(s) {sorted(bad)}; known: {sorted(known)}")
    report.importer = "onnx"
    single = options.pop("input_shape", None)
    simulate = bool(options.pop("simulate_quantization", False))
    imp = _Importer(source, report, HANDLERS, **options)
    if single is not None:
        inits = {i.name for i in imp.model.graph.initializer}
        names = [vi.name for vi in imp.model.graph.input if vi.name not in inits]
        if len(names) != 1:
            raise InvalidArgumentError(f"onnx importer: input_shape needs a model with one input (this one has {names}); "
                            f"use input_shapes={{name: shape}}")
        imp.input_shapes.setdefault(names[0], tuple(int(d) for d in single))
    try:
        g = imp.run(deferred=True)
    except (UnsupportedOpError, ShapeError) as e:
        if not imp.dynamic:
            raise
        sizes = ", ".join(f"'{nm}' dim {d}" for nm, d, _ in imp.dynamic)
        raise type(e)(f"{e.message if hasattr(e, 'message') else e} (the dynamic dims {sizes} were converted at "
                      f"an example size; give them a size with input_shapes={{name: shape}})") from None
    if not imp.dynamic:
        # quantized activations (QDQ, QLinear*): the simulated graph goes to the int8 kernels after writing
        report._int8_rewrite = bool(imp.fake_quant_count and imp.keep_int8 and not simulate)
        return g.finish(report)
    # Dynamic non-batch dims (dynamic.py): converted again at other example sizes and compared.
    from ..._dynamic import DYNAMIC_DIMS_KEY, format_dynamic_dims
    from .dynamic import generalize
    other = _Importer(source, Report(),
                      HANDLERS, probe=1, **options)
    other.input_shapes = imp.input_shapes
    try:
        g2 = other.run(deferred=True)
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"onnx: dynamic input dims: the model does not convert at a second size "
                                 f"({e}); give them a size with input_shapes={{name: shape}}") from None
    dyn: Dict[str, List[int]] = {}
    for nm, d, _ in imp.dynamic:
        dyn.setdefault(nm, []).append(d)
    report.notes.extend(generalize(g, g2, dyn))
    b = g.finish(report)
    index = {nm: i for i, (nm, _, _) in enumerate(g.inputs)}
    b.metadata(DYNAMIC_DIMS_KEY, format_dynamic_dims({index[nm]: ds for nm, ds in dyn.items()}))
    for nm, d, sym in imp.dynamic:
        report.notes.append(f"input '{nm}': dim {d} ('{sym}') stays dynamic: given at run time (example size "
                            f"{imp.in_types[nm][1][d]} in the file)")
    return b
