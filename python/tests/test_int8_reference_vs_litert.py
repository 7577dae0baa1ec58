"""Validates reference_int8.py (and tinyinfer's int8 kernels) against the real oracle: full-integer .tflite
models made by TensorFlow's converter, run by LiteRT's reference kernels
(OpResolverType.BUILTIN_REF). (The optimized kernels are not an oracle:
ruy and XNNPACK round their requantization differently.)

FullyConnected: LiteRT's reference kernel requantizes in double
(round(acc * s_in * s_w / s_out)) since April 2025, and so do the
reference's default (requant="float") and tinyinfer; the QuantizeMultiplier /
double rounding arithmetic is the one the Conv2D and DepthwiseConv2D
reference kernels use, checked here too.

For every op of every model, the reference is fed the op's actual input
tensors and quantization parameters as the interpreter holds them, and its
result must equal the interpreter's output tensor bit for bit. The same op
is also built as a one-op tinyinfer graph with those tensors and parameters,
and its output must equal LiteRT's too.

Skipped when tensorflow, ai_edge_litert or tflite (the flatbuffer schema
package, for the ops' options) is not importable (CI has none of them).
"""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")
tflite = pytest.importorskip("tflite")

import reference as ref  # noqa: E402
import reference_int8 as R  # noqa: E402
import tinyinfer as ti  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REF = litert.OpResolverType.BUILTIN_REF
# TFLite ActivationFunctionType -> tinyinfer activation codes.
ACT = {0: 0, 1: 1, 2: 3, 3: 2}
PAD = {tflite.Padding.SAME: 1, tflite.Padding.VALID: 0}


# ----------------------------------------------------------------------------
# Building and running models

def build_int8_tflite(fn, input_shapes, seed=0, spread=None, per_channel=True, float_io=False):
    """Converts `fn` (float32 tensors -> float32 tensor) to a full-integer
    .tflite with int8 inputs and outputs. `spread` gives each input's
    standard deviation for the representative data (different ranges give
    different quantization parameters). per_channel=False asks the converter
    for per-tensor weights; float_io=True keeps float32 inputs and outputs
    (the model then starts with QUANTIZE and ends with DEQUANTIZE)."""
    rng = np.random.default_rng(seed)
    spread = spread or [2.0] * len(input_shapes)
    cf = tf.function(fn).get_concrete_function(*[tf.TensorSpec(s, tf.float32) for s in input_shapes])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if not per_channel:
        conv._experimental_disable_per_channel = True

    def rep():
        for _ in range(32):
            yield [(rng.normal(size=s) * sd).astype(np.float32) for s, sd in zip(input_shapes, spread)]

    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def _qp(detail):
    q = detail["quantization_parameters"]
    s, z = q["scales"], q["zero_points"]
    if s.size > 1:
        return (s.astype(np.float32), z.astype(np.int64))
    if s.size == 0:
        return None
    return (np.float32(s[0]), int(z[0]))


def _options(op, cls):
    t = op.BuiltinOptions()
    o = cls()
    if t is not None:
        o.Init(t.Bytes, t.Pos)
    return o


class Model:
    """A .tflite model with its flatbuffer (for op options)."""

    def __init__(self, content):
        self.content = content
        self.fb = tflite.Model.GetRootAsModel(content, 0)
        self.sg = self.fb.Subgraphs(0)

    def ops(self):
        for i in range(self.sg.OperatorsLength()):
            op = self.sg.Operators(i)
            oc = self.fb.OperatorCodes(op.OpcodeIndex())
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            yield code, op, list(op.InputsAsNumpy()), list(op.OutputsAsNumpy())

    def constants(self):
        """Indices of the tensors with data in the file (weights, biases, axes)."""
        out = set()
        for i in range(self.sg.TensorsLength()):
            buf = self.fb.Buffers(self.sg.Tensors(i).Buffer())
            if buf is not None and (buf.DataLength() > 0 or buf.Size() > 0):
                out.add(i)
        return out

    def op_names(self):
        names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        return [names[c] for c, *_ in self.ops()]

    def run(self, resolver, inputs):
        it = litert.Interpreter(model_content=self.content, experimental_op_resolver_type=resolver,
                                experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        for d, x in zip(it.get_input_details(), inputs):
            it.set_tensor(d["index"], x)
        it.invoke()
        return it


def _tconv_attrs(op, ins, it):
    """A TRANSPOSE_CONV's geometry as TransposeConv2D attributes. TFLite
    pads as ComputePaddingHeightWidth does for a convolution whose input is
    the output: `pad = max((conv_out - 1) * s + k - out, 0) // 2` before,
    conv_out = ceil(out / s) (SAME) or (out - k + s) // s (VALID); the
    scatter is cut to the output_shape tensor's size (below, the rows past
    the scatter's end as output_padding, or the rows cut as the after pad)."""
    o = _options(op, tflite.TransposeConvOptions)
    out, w, x = it.get_tensor(ins[0]), it.get_tensor(ins[1]), it.get_tensor(ins[2])
    strides, pads, extra = (o.StrideH(), o.StrideW()), [], []
    for d in (1, 2):
        n, k, s, size = int(out[d]), w.shape[d], strides[d - 1], x.shape[d]
        conv_out = (n + s - 1) // s if o.Padding() == tflite.Padding.SAME else (n - k + s) // s
        before = max((conv_out - 1) * s + k - n, 0) // 2
        rest = (size - 1) * s + k - before - n
        pads += [before, max(rest, 0)]
        extra.append(max(-rest, 0))
    return dict(strides=strides, padding=2, pads=tuple(pads), output_padding=tuple(extra),
                activation=ACT[o.FusedActivationFunction()])


def reference_op(code, op, ins, it, details):
    """The reference result of one op given the interpreter's tensors."""
    B = tflite.BuiltinOperator
    t = lambda i: None if i < 0 else it.get_tensor(i)  # noqa: E731
    q = lambda i: _qp(details[i])  # noqa: E731
    x, xq = t(ins[0]), q(ins[0])
    out = op.OutputsAsNumpy()[0]
    yq = q(out)
    if code == B.FULLY_CONNECTED:
        o = _options(op, tflite.FullyConnectedOptions)
        w = t(ins[1])
        bias = t(ins[2]) if len(ins) > 2 else None
        y = R.fully_connected(x.reshape(-1, w.shape[1]), xq, w, q(ins[1]), bias, yq,
                              ACT[o.FusedActivationFunction()])
        return y.reshape(details[out]["shape"])
    if code == B.CONV_2D:
        o = _options(op, tflite.Conv2DOptions)
        w = t(ins[1])
        return R.conv2d(x, xq, w, q(ins[1])[0], t(ins[2]) if len(ins) > 2 else None, yq,
                        strides=(o.StrideH(), o.StrideW()), dilations=(o.DilationHFactor(), o.DilationWFactor()),
                        padding=PAD[o.Padding()], groups=x.shape[3] // w.shape[3],
                        activation=ACT[o.FusedActivationFunction()])
    if code == B.DEPTHWISE_CONV_2D:
        o = _options(op, tflite.DepthwiseConv2DOptions)
        w = t(ins[1])
        return R.depthwise_conv2d(x, xq, w, q(ins[1])[0], t(ins[2]) if len(ins) > 2 else None, yq,
                                  strides=(o.StrideH(), o.StrideW()),
                                  dilations=(o.DilationHFactor(), o.DilationWFactor()),
                                  padding=PAD[o.Padding()], depth_multiplier=w.shape[3] // x.shape[3],
                                  activation=ACT[o.FusedActivationFunction()])
    if code == B.TRANSPOSE_CONV:  # inputs: output_shape, weights, input, optional bias
        bias = t(ins[3]) if len(ins) > 3 else None
        return R.transpose_conv2d(t(ins[2]), q(ins[2]), t(ins[1]), q(ins[1])[0], bias, yq,
                                  **_tconv_attrs(op, ins, it))
    if code in (B.ADD, B.SUB, B.MUL):
        cls = {B.ADD: tflite.AddOptions, B.SUB: tflite.SubOptions, B.MUL: tflite.MulOptions}[code]
        f = {B.ADD: R.add, B.SUB: R.sub, B.MUL: R.mul}[code]
        o = _options(op, cls)
        return f(x, xq, t(ins[1]), q(ins[1]), yq, ACT[o.FusedActivationFunction()])
    if code in (B.AVERAGE_POOL_2D, B.MAX_POOL_2D):
        o = _options(op, tflite.Pool2DOptions)
        f = R.average_pool2d if code == B.AVERAGE_POOL_2D else R.max_pool2d
        assert xq == yq
        return f(x, yq, filter=(o.FilterHeight(), o.FilterWidth()), strides=(o.StrideH(), o.StrideW()),
                 padding=PAD[o.Padding()], activation=ACT[o.FusedActivationFunction()])
    if code == B.MEAN:
        o = _options(op, tflite.ReducerOptions)
        return R.mean(x, xq, yq, tuple(int(a) for a in np.ravel(t(ins[1]))), keep_dims=int(o.KeepDims()))
    if code == B.SOFTMAX:
        o = _options(op, tflite.SoftmaxOptions)
        assert yq == (np.float32(1 / 256), -128)
        return R.softmax(x, xq, beta=o.Beta())
    if code == B.LOGISTIC:
        return R.logistic(x, xq, yq)
    if code == B.TANH:
        return R.tanh(x, xq, yq)
    if code == B.HARD_SWISH:
        return R.hard_swish(x, xq, yq)
    if code == B.RELU:
        return R.relu(x, xq, yq)
    if code == B.RELU6:
        return R.relu6(x, xq, yq)
    if code == B.LEAKY_RELU:
        return R.leaky_relu(x, xq, yq, _options(op, tflite.LeakyReluOptions).Alpha())
    if code == B.CONCATENATION:
        o = _options(op, tflite.ConcatenationOptions)
        assert o.FusedActivationFunction() == 0
        return R.concat([t(i) for i in ins], [q(i) for i in ins], yq, axis=o.Axis())
    if code == B.QUANTIZE:
        if x.dtype == np.float32:
            return R.quantize(x, yq[0], yq[1])
        return R.requantize(x, xq, yq)
    if code == B.DEQUANTIZE:
        return R.dequantize(x, xq[0], xq[1])
    if code == B.RESHAPE:
        return x.reshape(details[out]["shape"])
    if code in (B.RESIZE_BILINEAR, B.RESIZE_NEAREST_NEIGHBOR):
        bil = code == B.RESIZE_BILINEAR
        o = _options(op, tflite.ResizeBilinearOptions if bil else tflite.ResizeNearestNeighborOptions)
        assert xq == yq
        size = tuple(int(v) for v in t(ins[1]))
        if bil:
            return R.resize_bilinear(x, size, align_corners=o.AlignCorners(), half_pixel_centers=o.HalfPixelCenters())
        return ref.resize_nearest(x, size, align_corners=o.AlignCorners(), half_pixel_centers=o.HalfPixelCenters())
    if code in (B.MAXIMUM, B.MINIMUM):
        assert xq == q(ins[1]) == yq
        return (R.maximum if code == B.MAXIMUM else R.minimum)(x, t(ins[1]))
    raise AssertionError(f"no reference for builtin op {code}")


def _tinf_quant(b, t, q):
    if q is None:
        return
    s, z = q
    if np.ndim(s) > 0:
        b.quantization(t, np.asarray(s, np.float32), np.asarray(z, np.int32), axis=None)
    else:
        b.quantization(t, [s], [z])


def tinyinfer_op(code, op, ins, it, details):
    """The op run by tinyinfer: a one-op graph of the interpreter's tensors
    (constants stay constants), or None for ops without a counterpart here."""
    B = tflite.BuiltinOperator
    t = lambda i: it.get_tensor(i)  # noqa: E731
    q = lambda i: _qp(details[i])  # noqa: E731
    out = op.OutputsAsNumpy()[0]
    b = ti.GraphBuilder("litert-op")
    feeds = []

    def inp(i, shape=None):
        x = t(i)
        if shape is not None:
            x = x.reshape(shape)
        if _is_const(i, it):
            h = b.const(None, x)
        else:
            h = b.input(f"in{len(feeds)}", x.shape, dtype=x.dtype)
            feeds.append(x)
        _tinf_quant(b, h, q(i))
        return h

    def weights(i, axis):
        w = t(i)
        h = b.const(None, w)
        s, z = q(i)
        if np.ndim(s) > 0:
            b.quantization(h, s, z, axis=axis)
        else:
            b.quantization(h, [s], [z])
        return h

    attrs = {}
    if code == B.FULLY_CONNECTED:
        o = _options(op, tflite.FullyConnectedOptions)
        k = t(ins[1]).shape[1]
        xs = inp(ins[0], (-1, k))
        args = [xs, weights(ins[1], 0), b.const(None, t(ins[2])) if len(ins) > 2 and ins[2] >= 0 else None]
        name, attrs = "FullyConnected", dict(activation=ACT[o.FusedActivationFunction()])
    elif code in (B.CONV_2D, B.DEPTHWISE_CONV_2D):
        dw = code == B.DEPTHWISE_CONV_2D
        o = _options(op, tflite.DepthwiseConv2DOptions if dw else tflite.Conv2DOptions)
        x, w = t(ins[0]), t(ins[1])
        args = [inp(ins[0]), weights(ins[1], 3 if dw else 0),
                b.const(None, t(ins[2])) if len(ins) > 2 and ins[2] >= 0 else None]
        attrs = dict(strides=[o.StrideH(), o.StrideW()], dilations=[o.DilationHFactor(), o.DilationWFactor()],
                     padding=PAD[o.Padding()], activation=ACT[o.FusedActivationFunction()])
        if dw:
            name = "DepthwiseConv2D"
            attrs["depth_multiplier"] = w.shape[3] // x.shape[3]
        else:
            name = "Conv2D"
            attrs["groups"] = x.shape[3] // w.shape[3]
    elif code == B.TRANSPOSE_CONV:
        name, attrs = "TransposeConv2D", _tconv_attrs(op, ins, it)
        attrs["strides"] = list(attrs["strides"])
        args = [inp(ins[2]), weights(ins[1], 0),
                b.const(None, t(ins[3])) if len(ins) > 3 and ins[3] >= 0 else None]
    elif code in (B.ADD, B.SUB, B.MUL):
        cls = {B.ADD: tflite.AddOptions, B.SUB: tflite.SubOptions, B.MUL: tflite.MulOptions}[code]
        name = {B.ADD: "Add", B.SUB: "Sub", B.MUL: "Mul"}[code]
        args = [inp(ins[0]), inp(ins[1])]
        attrs = dict(activation=ACT[_options(op, cls).FusedActivationFunction()])
    elif code in (B.AVERAGE_POOL_2D, B.MAX_POOL_2D):
        o = _options(op, tflite.Pool2DOptions)
        name = "AveragePool2D" if code == B.AVERAGE_POOL_2D else "MaxPool2D"
        args = [inp(ins[0])]
        attrs = dict(filter=[o.FilterHeight(), o.FilterWidth()], strides=[o.StrideH(), o.StrideW()],
                     padding=PAD[o.Padding()], activation=ACT[o.FusedActivationFunction()])
    elif code == B.MEAN:
        name, args = "Mean", [inp(ins[0])]
        attrs = dict(axes=[int(a) for a in np.ravel(t(ins[1]))],
                     keep_dims=int(_options(op, tflite.ReducerOptions).KeepDims()))
    elif code == B.SOFTMAX:
        name, args, attrs = "Softmax", [inp(ins[0])], dict(beta=float(_options(op, tflite.SoftmaxOptions).Beta()))
    elif code in (B.LOGISTIC, B.TANH, B.HARD_SWISH, B.RELU, B.RELU6, B.LEAKY_RELU):
        name = {B.LOGISTIC: "Logistic", B.TANH: "Tanh", B.HARD_SWISH: "HardSwish", B.RELU: "Relu",
                B.RELU6: "Relu6", B.LEAKY_RELU: "LeakyRelu"}[code]
        args = [inp(ins[0])]
        if code == B.LEAKY_RELU:
            attrs = dict(alpha=float(_options(op, tflite.LeakyReluOptions).Alpha()))
    elif code == B.CONCATENATION:
        name, args = "Concat", [inp(i) for i in ins]
        attrs = dict(axis=int(_options(op, tflite.ConcatenationOptions).Axis()))
    elif code == B.QUANTIZE:
        name, args, attrs = "Quantize", [inp(ins[0])], dict(dtype=3)
    elif code == B.DEQUANTIZE:
        name, args = "Dequantize", [inp(ins[0])]
    elif code in (B.RESIZE_BILINEAR, B.RESIZE_NEAREST_NEIGHBOR):
        bil = code == B.RESIZE_BILINEAR
        o = _options(op, tflite.ResizeBilinearOptions if bil else tflite.ResizeNearestNeighborOptions)
        name, args = "ResizeBilinear" if bil else "ResizeNearest", [inp(ins[0])]
        attrs = dict(size=[int(v) for v in t(ins[1])], align_corners=int(o.AlignCorners()),
                     half_pixel_centers=int(o.HalfPixelCenters()))
    elif code in (B.MAXIMUM, B.MINIMUM):
        name, args = "Maximum" if code == B.MAXIMUM else "Minimum", [inp(ins[0]), inp(ins[1])]
    else:
        return None
    y = b.op(name, *args, **attrs)
    _tinf_quant(b, y, q(out))
    b.output(y)
    with b.load() as m:
        (got,) = m.run(feeds)
    return got.reshape(details[out]["shape"])


def _is_const(i, it):
    return i in it._const_indices


def check_model(content, input_shapes, trials=6, seed=1, expect=None, float_inputs=False):
    """Runs the model on random int8 inputs (full range, with the extremes;
    or float inputs, wide, with ties of the input scale) under the reference
    resolver and checks every op against the reference."""
    m = Model(content)
    if expect is not None:
        assert expect in m.op_names(), m.op_names()
    rng = np.random.default_rng(seed)
    checked = 0
    for trial in range(trials):
        xs = []
        for s in input_shapes:
            if float_inputs:
                x = (rng.normal(size=s) * 3).astype(np.float32)
                x.flat[0], x.flat[-1] = 1e6, -1e6
                xs.append(x)
                continue
            x = rng.integers(-128, 128, size=s).astype(np.int8)
            if trial == 0:
                x.flat[0], x.flat[-1] = -128, 127
            if trial == 1:
                x[...] = rng.integers(-128, 128)  # constant input
            xs.append(x)
        it = m.run(REF, xs)
        it._const_indices = m.constants()
        details = {d["index"]: d for d in it.get_tensor_details()}
        for code, op, ins, outs in m.ops():
            want = it.get_tensor(outs[0])
            got = reference_op(code, op, ins, it, details)
            np.testing.assert_array_equal(got, want, err_msg=f"builtin op {code}, trial {trial}")
            mine = tinyinfer_op(code, op, ins, it, details)
            if mine is not None:
                np.testing.assert_array_equal(mine, want, err_msg=f"tinyinfer, builtin op {code}, trial {trial}")
            checked += 1
    return checked


def const(rng, *shape, sd=1.0):
    return tf.constant((rng.normal(size=shape) * sd).astype(np.float32))


# ----------------------------------------------------------------------------
# The models

@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("act", [None, tf.nn.relu, tf.nn.relu6])
def test_fully_connected(act, per_channel):
    rng = np.random.default_rng(3)
    w, b = const(rng, 24, 10), const(rng, 10)

    def f(x):
        y = tf.matmul(x, w) + b
        return act(y) if act else y

    content = build_int8_tflite(f, [(5, 24)], per_channel=per_channel)
    check_model(content, [(5, 24)], expect="FULLY_CONNECTED")


@pytest.mark.parametrize("strides,dilations,padding,act", [
    ((1, 1), (1, 1), "SAME", tf.nn.relu),
    ((2, 2), (1, 1), "SAME", None),
    ((1, 2), (1, 1), "VALID", tf.nn.relu6),
    ((1, 1), (2, 2), "VALID", None),
])
def test_conv2d(strides, dilations, padding, act):
    rng = np.random.default_rng(4)
    w, b = const(rng, 3, 3, 4, 6, sd=0.5), const(rng, 6)

    def f(x):
        y = tf.nn.conv2d(x, w, strides=(1,) + strides + (1,), padding=padding, dilations=dilations) + b
        return act(y) if act else y

    check_model(build_int8_tflite(f, [(2, 9, 10, 4)]), [(2, 9, 10, 4)], expect="CONV_2D")


@pytest.mark.parametrize("per_channel", [True, False])
def test_conv2d_groups_and_per_tensor(per_channel):
    rng = np.random.default_rng(8)
    w = const(rng, 3, 2, 2, 6, sd=0.5)  # 3 groups of 2 input channels

    def f(x):
        return tf.nn.conv2d(x, w, strides=1, padding="SAME")

    check_model(build_int8_tflite(f, [(1, 6, 5, 6)], per_channel=per_channel), [(1, 6, 5, 6)], expect="CONV_2D")


@pytest.mark.parametrize("mult,strides,padding", [(1, (1, 1), "SAME"), (2, (2, 2), "VALID"), (1, (2, 1), "SAME")])
def test_depthwise_conv2d(mult, strides, padding):
    rng = np.random.default_rng(5)
    w, b = const(rng, 3, 3, 5, mult), const(rng, 5 * mult)

    def f(x):
        return tf.nn.relu(tf.nn.depthwise_conv2d(x, w, strides=(1,) + strides + (1,), padding=padding) + b)

    check_model(build_int8_tflite(f, [(1, 8, 7, 5)]), [(1, 8, 7, 5)], expect="DEPTHWISE_CONV_2D")


@pytest.mark.parametrize("shapes", [[(2, 3, 8), (2, 3, 8)], [(2, 3, 8), (8,)], [(4, 1, 6), (1, 5, 6)]])
@pytest.mark.parametrize("kind", ["add", "sub", "mul", "add_relu"])
def test_binary(kind, shapes):
    f = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
         "add_relu": lambda a, b: tf.nn.relu(a + b)}[kind]
    name = {"add": "ADD", "sub": "SUB", "mul": "MUL", "add_relu": "ADD"}[kind]
    check_model(build_int8_tflite(f, shapes, spread=[3.0, 0.7]), shapes, expect=name)


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("ksize,strides,padding", [((2, 2), (2, 2), "VALID"), ((3, 3), (2, 2), "SAME"),
                                                   ((3, 2), (1, 1), "SAME")])
def test_pool(kind, ksize, strides, padding):
    pool = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d
    check_model(build_int8_tflite(lambda x: pool(x, ksize, strides, padding), [(2, 7, 8, 3)]), [(2, 7, 8, 3)],
                expect="AVERAGE_POOL_2D" if kind == "avg" else "MAX_POOL_2D")


@pytest.mark.parametrize("axes,keep", [((1, 2), True), ((1, 2), False), ((3,), True), ((1,), False)])
def test_mean(axes, keep):
    def f(x):
        return tf.reduce_mean(x + 0.5, axis=list(axes), keepdims=keep)
    check_model(build_int8_tflite(f, [(2, 6, 5, 7)]), [(2, 6, 5, 7)], expect="MEAN")


@pytest.mark.parametrize("spread", [0.5, 4.0, 30.0])
def test_softmax(spread):
    check_model(build_int8_tflite(lambda x: tf.nn.softmax(x), [(6, 17)], spread=[spread]), [(6, 17)],
                expect="SOFTMAX")


@pytest.mark.parametrize("kind", ["LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "LEAKY_RELU"])
@pytest.mark.parametrize("spread", [0.3, 3.0])
def test_activations(kind, spread):
    f = {"LOGISTIC": tf.sigmoid, "TANH": tf.tanh,
         "HARD_SWISH": lambda x: x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0),
         "RELU": tf.nn.relu, "RELU6": tf.nn.relu6, "LEAKY_RELU": lambda x: tf.nn.leaky_relu(x, 0.15)}[kind]
    # Applied to a graph input, the activation is an op of its own (after
    # an Add, Relu and Relu6 would be fused into it).
    check_model(build_int8_tflite(lambda a, b: f(a) + b, [(3, 40), (3, 40)], spread=[spread, spread]),
                [(3, 40), (3, 40)], expect=kind)


def test_concat():
    f = lambda a, b, c: tf.concat([a, b * 3.0, c], axis=-1)  # noqa: E731
    shapes = [(2, 4, 3), (2, 4, 5), (2, 4, 2)]
    check_model(build_int8_tflite(f, shapes, spread=[1.0, 2.0, 0.2]), shapes, expect="CONCATENATION")


@pytest.mark.parametrize("strides,padding,bias,act,per_channel", [
    ((2, 2), "SAME", True, None, True),
    ((2, 2), "VALID", False, tf.nn.relu, True),
    ((1, 1), "SAME", True, None, False),
    ((2, 1), "VALID", True, tf.nn.relu6, True),
])
def test_transpose_conv(strides, padding, bias, act, per_channel):
    """int8 TRANSPOSE_CONV (3x3 and 2x2 kernels, batch 2): the reference's
    scatter and tinyinfer's kernel against LiteRT's, op by op."""
    rng = np.random.default_rng(12)
    k = 2 if strides == (2, 1) else 3
    w, b = const(rng, k, k, 6, 5, sd=0.4), const(rng, 6)  # [KH, KW, Cout, Cin]
    n, h, wd = 2, 5, 6
    oh = h * strides[0] if padding == "SAME" else (h - 1) * strides[0] + k
    ow = wd * strides[1] if padding == "SAME" else (wd - 1) * strides[1] + k

    def f(x):
        y = tf.nn.conv2d_transpose(x, w, (n, oh, ow, 6), (1,) + strides + (1,), padding)
        y = y + b if bias else y
        return act(y) if act else y

    content = build_int8_tflite(f, [(n, h, wd, 5)], per_channel=per_channel)
    check_model(content, [(n, h, wd, 5)], expect="TRANSPOSE_CONV")


def test_transpose_conv_model_converted():
    """A full-int8 .tflite with TRANSPOSE_CONV between convolutions (a
    decoder's upsampling), converted by tinyinfer and run end to end: its
    int8 outputs are LiteRT's reference kernels' bit for bit."""
    rng = np.random.default_rng(13)
    w1, b1 = const(rng, 3, 3, 3, 8, sd=0.4), const(rng, 8)
    wt, bt = const(rng, 2, 2, 4, 8, sd=0.4), const(rng, 4)
    w2 = const(rng, 1, 1, 4, 2, sd=0.4)

    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 2, "SAME") + b1)
        y = tf.nn.relu(tf.nn.conv2d_transpose(y, wt, (1, 12, 12, 4), 2, "SAME") + bt)
        return tf.nn.conv2d(y, w2, 1, "SAME")

    content = build_int8_tflite(f, [(1, 12, 12, 3)])
    m = Model(content)
    assert "TRANSPOSE_CONV" in m.op_names(), m.op_names()
    data = ti.convert(content, format="tflite").data
    with ti.load(data) as tm:
        assert "TransposeConv2D" in [o.op for o in tm.ops()]
        rng2 = np.random.default_rng(14)
        for trial in range(3):
            x = rng2.integers(-128, 128, size=(1, 12, 12, 3)).astype(np.int8)
            it = m.run(REF, [x])
            want = it.get_tensor(it.get_output_details()[0]["index"])
            (got,) = tm.run([x])
            np.testing.assert_array_equal(got, want)


def test_small_network():
    """Conv -> depthwise -> pool -> mean -> FC -> softmax, end to end."""
    rng = np.random.default_rng(9)
    w1, b1 = const(rng, 3, 3, 3, 8, sd=0.4), const(rng, 8)
    w2 = const(rng, 3, 3, 8, 1, sd=0.4)
    w3, b3 = const(rng, 8, 5), const(rng, 5)

    def f(x):
        y = tf.nn.relu6(tf.nn.conv2d(x, w1, 1, "SAME") + b1)
        y = tf.nn.relu(tf.nn.depthwise_conv2d(y, w2, (1, 2, 2, 1), "SAME"))
        y = tf.nn.max_pool2d(y, 2, 1, "VALID")
        y = tf.reduce_mean(y, axis=[1, 2])
        return tf.nn.softmax(tf.matmul(y, w3) + b3)

    assert check_model(build_int8_tflite(f, [(1, 12, 12, 3)]), [(1, 12, 12, 3)], trials=4) >= 6 * 4


def test_quantize_dequantize_float_io():
    """Float inputs and outputs: QUANTIZE (float -> int8, round half away
    from zero) and DEQUANTIZE around the int8 ops."""
    rng = np.random.default_rng(11)
    w, b = const(rng, 12, 6), const(rng, 6)
    content = build_int8_tflite(lambda x: tf.nn.relu(tf.matmul(x, w) + b), [(7, 12)], float_io=True)
    m = Model(content)
    assert "QUANTIZE" in m.op_names() and "DEQUANTIZE" in m.op_names(), m.op_names()
    check_model(content, [(7, 12)], float_inputs=True)
    # ties: values exactly half way between two steps of the input scale
    it = m.run(REF, [np.zeros((7, 12), np.float32)])
    d = it.get_input_details()[0]
    qop = next(op for code, op, ins, outs in m.ops() if code == tflite.BuiltinOperator.QUANTIZE)
    s, z = _qp(it.get_tensor_details()[qop.OutputsAsNumpy()[0]])
    x = ((np.arange(84).reshape(7, 12) - 42 + 0.5) * np.float64(s)).astype(np.float32)
    it = m.run(REF, [x])
    got = it.get_tensor(qop.OutputsAsNumpy()[0])
    np.testing.assert_array_equal(got, R.quantize(x, s, z))
    assert d["dtype"] == np.float32


@pytest.mark.parametrize("mode", ["plain", "align_corners", "half_pixel_centers"])
@pytest.mark.parametrize("xs,size", [((1, 8, 8, 16), (16, 16)), ((1, 9, 12, 5), (4, 5)), ((2, 3, 3, 8), (7, 10))])
def test_resize(mode, xs, size):
    """RESIZE_BILINEAR (TFLite's integer kernel) and RESIZE_NEAREST_NEIGHBOR, upsampling and downsampling."""
    kw = dict(align_corners=mode == "align_corners", half_pixel_centers=mode == "half_pixel_centers")

    def f(x):
        y = tf.compat.v1.image.resize_bilinear(x, size, **kw)
        return y + tf.compat.v1.image.resize_nearest_neighbor(x, size, **kw)

    check_model(build_int8_tflite(f, [xs]), [xs], expect="RESIZE_BILINEAR")


def test_maximum_minimum():
    """MAXIMUM / MINIMUM of an activation and a constant, and of two activations."""
    rng = np.random.default_rng(12)
    c = const(rng, 1, 1, 6, sd=0.5)

    def f(x, z):
        return tf.maximum(tf.minimum(x, c), tf.maximum(z, 0.3)) + tf.minimum(x, z)

    check_model(build_int8_tflite(f, [(2, 5, 6), (2, 5, 6)], spread=[1.0, 2.0]), [(2, 5, 6), (2, 5, 6)],
                expect="MAXIMUM")
