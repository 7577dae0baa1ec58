"""TFLite importer: every fixture converted and run, compared with LiteRT live.

Fixtures (python/tests/fixtures/tflite/) come from scripts/fixtures/make_tflite.py
(tensorflow-cpu, not needed here). Tolerances:
- float32 and float16-weight models: max |ours - LiteRT| <= 1e-5 * max |LiteRT|
  per output (float16 -> float32 is exact, so float16-weight models are float32
  arithmetic on both sides);
- dynamic-range int8: LiteRT's hybrid kernels quantize each hybrid op's input
  activations to int8 at run time, tinyinfer computes in float32 on the same
  dequantized weights. So two references: the model's float twin (the same
  dequantized weights, run by LiteRT in float32) within the float32 bound, and
  LiteRT's hybrid kernels within a bound derived from their quantization step
  and propagated through the model (see `_hybrid_bound`);
- full-integer int8: LiteRT's reference kernels (BUILTIN_REF), bit for bit.
Plus small models written here with the flatbuffer classes of the `tflite`
package, for option paths that TFLiteConverter does not emit (SQUEEZE,
EXPAND_DIMS, softmax beta, RESHAPE's new_shape option, keep_num_dims=false,
codes only in deprecated_builtin_code, ...) and for the refusals; and the
repository's trained digits models (models/*.tflite) on real digits.
"""

import os
import shutil
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer.convert import detect_format

tflite = pytest.importorskip("tflite")
pytest.importorskip("ai_edge_litert")
import flatbuffers  # noqa: E402  (a dependency of tflite)
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402
from tflite.utils import BUILTIN_OPCODE2NAME  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures", "tflite")

FLOAT32 = ["mlp_f32", "cnn_f32", "ops_elementwise", "ops_movement", "ops_resize", "ops_reduce", "ops_linear",
           "ops_conv", "reduce_max_min_f32"]
FLOAT16 = ["mlp_f16", "cnn_f16"]
DYNAMIC = ["mlp_dyn", "cnn_dyn"]
INT8 = ["mlp_int8", "cnn_int8", "mlp_int8_floatio", "int8_ops", "int8_conv", "reduce_max_int8"]


def fixture(name):
    return os.path.join(FIXTURES, name + ".tflite")


# -- running ---------------------------------------------------------------------------
def litert(model, feeds, resolver=None, preserve=False):
    """Runs a .tflite (path or bytes) in LiteRT; returns (outputs, interpreter)."""
    kw = {"model_path": model} if isinstance(model, str) else {"model_content": bytes(model)}
    if resolver is not None:
        kw["experimental_op_resolver_type"] = resolver
    if preserve:
        kw["experimental_preserve_all_tensors"] = True
    it = Interpreter(**kw)
    it.allocate_tensors()
    for d, a in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], a)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()], it


def convert_and_load(src, tmp_path, **options):
    dst = tmp_path / "model.tinf"
    report = tinyinfer.convert(src, dst, verbose=False, **options)
    assert dst.exists() and dst.stat().st_size == report.output_bytes
    return tinyinfer.load(str(dst)), report


def check_io(model, it):
    """Inputs and outputs in LiteRT's order, with its names, dtypes and shapes."""
    for ours, d in [(model.inputs, it.get_input_details()), (model.outputs, it.get_output_details())]:
        assert [t.name for t in ours] == [x["name"] for x in d]
        assert [t.dtype for t in ours] == [np.dtype(x["dtype"]) for x in d]
        assert [tuple(t.shape) for t in ours] == [tuple(int(v) for v in x["shape"]) for x in d]


def assert_float_close(ours, refs, rel=1e-5, what=""):
    """max |ours - ref| <= rel * max |ref|, output by output. Returns the largest relative error."""
    assert len(ours) == len(refs)
    worst = 0.0
    for k, (a, r) in enumerate(zip(ours, refs)):
        assert a.shape == r.shape and a.dtype == r.dtype, (what, k, a.shape, a.dtype, r.shape, r.dtype)
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        err = float(np.max(np.abs(a.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
        assert err <= rel * scale or err == 0.0, f"{what} output {k}: max error {err:.3g} > {rel:g} * {scale:.3g}"
        worst = max(worst, err / scale if scale else 0.0)
    return worst


# -- inputs ------------------------------------------------------------------------------
def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    return (load_digits().data / 16.0).astype(np.float32)


def smooth(shape, seed):
    """A smooth, structured array (sums of sinusoids) in about [-2, 2]."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij")
    out = np.zeros(shape, np.float64)
    for _ in range(3):
        phase = sum(g * rng.uniform(-4, 4) for g in grids)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * phase + rng.uniform(0, 6.28))
    return out.astype(np.float32)


def realistic_float(name, shape, k, seed):
    """Digits for the MLP (64 features) and the CNN (16x16x3, as the fixture
    script builds them); smooth arrays elsewhere (or without sklearn)."""
    shape = tuple(int(s) for s in shape)
    d = _digits()
    if d is not None and name.startswith("mlp") and shape == (1, 64):
        return d[seed * 7 + k: seed * 7 + k + 1]
    if d is not None and name.startswith("cnn") and shape == (1, 16, 16, 3):
        img = d[seed * 7 + k].reshape(8, 8)
        up = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
        return np.stack([up, np.roll(up, 1, axis=1), 1.0 - up], axis=-1)[None].astype(np.float32)
    return smooth(shape, 1000 * seed + k)


def make_inputs(name, details, kind, seed):
    """Inputs for LiteRT's input details: kind 'random' or 'realistic'."""
    rng = np.random.default_rng(seed)
    feeds = []
    for k, d in enumerate(details):
        shape, dt = tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"])
        if dt == np.int32:  # gather indices
            a = rng.integers(0, 4, shape) if kind == "random" else np.arange(int(np.prod(shape)))[::-1] % 4
            feeds.append(np.asarray(a, np.int32).reshape(shape))
        elif dt == np.int8:
            if kind == "random":
                feeds.append(rng.integers(-128, 128, shape).astype(np.int8))
            else:
                scale, zp = d["quantization"]
                x = realistic_float(name, shape, k, seed)
                feeds.append(np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8))
        elif kind == "random":
            feeds.append(rng.standard_normal(shape).astype(dt))
        else:
            feeds.append(realistic_float(name, shape, k, seed).astype(dt))
    return feeds


def _details(path):
    it = Interpreter(model_path=path)
    return it.get_input_details()


KINDS = [("random", 0), ("random", 1), ("realistic", 2), ("realistic", 3)]


# -- float32 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FLOAT32)
def test_float32_fixture(name, tmp_path):
    path = fixture(name)
    model, report = convert_and_load(path, tmp_path)
    assert report.importer == "tflite" and sum(report.ops_in.values()) > 0
    for kind, seed in KINDS:
        feeds = make_inputs(name, _details(path), kind, seed)
        refs, it = litert(path, feeds)
        check_io(model, it)
        assert_float_close(model.run(feeds), refs, 1e-5, f"{name} ({kind})")


def test_float32_covers_every_supported_op():
    """The fixtures plus the hand-built models below exercise every mapped op."""
    from tinyinfer.convert.tflite import SUPPORTED_OPS
    seen = set()
    for name in FLOAT32 + FLOAT16 + DYNAMIC + INT8:
        buf = open(fixture(name), "rb").read()
        m = tflite.Model.GetRootAs(buf, 0)
        g = m.Subgraphs(0)
        for i in range(g.OperatorsLength()):
            oc = m.OperatorCodes(g.Operators(i).OpcodeIndex())
            seen.add(BUILTIN_OPCODE2NAME[max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())])
    hand_built = {"SQUEEZE", "EXPAND_DIMS", "RELU_N1_TO_1"}
    # Ops on run-time data: hand-built models in test_convert_tflite_ops.py.
    hand_built |= {"EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "LOGICAL_AND",
                   "LOGICAL_OR", "LOGICAL_NOT", "SELECT", "SELECT_V2", "FLOOR", "CEIL", "ROUND", "CAST", "SHAPE",
                   "TILE", "BROADCAST_TO", "RANGE", "REDUCE_PROD", "SUM", "REDUCE_MIN"}
    # Sequence LSTMs: hand-built models in test_rnn.py.
    hand_built |= {"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM"}
    # Resource variables: TensorFlow-made streaming models in test_state.py.
    hand_built |= {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}
    # Control flow: TensorFlow-made models in test_control_flow.py.
    hand_built |= {"IF", "WHILE"}
    # Data movement at a run-time position: test_convert_tflite_ops.py.
    hand_built |= {"DYNAMIC_UPDATE_SLICE"}
    assert set(SUPPORTED_OPS) - seen - hand_built == set()


# -- float16 weights --------------------------------------------------------------------------
@pytest.mark.parametrize("name", FLOAT16)
def test_float16_fixture(name, tmp_path):
    """float16 -> float32 conversion is exact and LiteRT computes in float32
    after it, so the float32 bound applies."""
    path = fixture(name)
    model, report = convert_and_load(path, tmp_path)
    assert report.ops_out["Dequantize"] == report.ops_in["DEQUANTIZE"] > 0
    assert report.kept_precision and all("float16" in k for k in report.kept_precision)
    (tmp_path / "f32").mkdir()
    f32, _ = convert_and_load(fixture(name.replace("_f16", "_f32")), tmp_path / "f32")
    assert model.weight_bytes < 0.6 * f32.weight_bytes  # the weights stayed float16 in the file
    for kind, seed in KINDS:
        feeds = make_inputs(name, _details(path), kind, seed)
        refs, it = litert(path, feeds)
        check_io(model, it)
        assert_float_close(model.run(feeds), refs, 1e-5, f"{name} ({kind})")


# -- dynamic-range int8 ---------------------------------------------------------------------------
def _hybrid_bound(path, feeds):
    """LiteRT outputs (builtin kernels, no delegate) and, per output, a
    tolerance for |ours - LiteRT| on a sequential dynamic-range model, derived
    from the activation quantization step.

    Both sides multiply the same int8 weights by the same scales. LiteRT's
    hybrid ops (an int8 constant weight on a float input x) first round x to
    int8 with a step s = max|x| / 127 (symmetric) or (max - min) / 255
    (asymmetric), at most max|x| / 127 either way; tinyinfer does not. The
    rounding errors are independent and uniform in [-s/2, s/2] (standard
    deviation s / sqrt(12)), so an output that reads the weight row w gets an
    error of standard deviation s / sqrt(12) * ||w||_2. Through later layers an
    error of deviation e becomes at most ||w||_2 * e (FC/conv, the largest row
    norm), e (relu, pooling, mean) or max 2 p (1 - p) * e (softmax, linearized at
    LiteRT's output p); the
    deviations of independent sources add in quadrature. s is read from
    LiteRT's own intermediate tensors. The tolerance is 6 deviations (plus the
    float32 slack of the caller); the worst-case sum over rounding errors
    (L1 norms instead of L2) would exceed the outputs' range and test nothing."""
    from tinyinfer.convert import Report
    from tinyinfer.convert.tflite import _Importer
    refs, it = litert(path, feeds, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, preserve=True)
    im = _Importer(open(path, "rb").read(), Report(), "bound")
    g = im.graph
    dev = {}

    def weights(info):
        w = info.data.astype(np.float64)
        q = info.quant
        if info.dtype == np.int8 and q is not None:
            shape = [1] * w.ndim
            if q.axis is not None:
                shape[q.axis] = -1
            w = (w - q.zero_points.reshape(shape)) * q.scales.astype(np.float64).reshape(shape)
        return w, info.dtype == np.int8

    for j in range(g.OperatorsLength()):
        op = g.Operators(j)
        name = im.op_name(op)
        x = im.info_in(op, 0)
        e_in = dev.get(x.index, 0.0)
        if name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            w, hybrid = weights(im.info_in(op, 1))
            if name == "DEPTHWISE_CONV_2D":  # [1, KH, KW, C*M]: each output reads one column
                gain = float(np.sqrt((w ** 2).sum(axis=(0, 1, 2))).max())
            else:  # [N, ...]: each output reads one row
                gain = float(np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1)).max())
            own = 0.0
            if hybrid:
                step = float(np.abs(it.get_tensor(x.index)).max()) / 127.0
                own = step / np.sqrt(12.0) * gain
            e_out = float(np.hypot(gain * e_in, own))
        elif name in ("RELU", "RELU6", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "RESHAPE"):
            e_out = e_in
        elif name == "SOFTMAX":  # Jacobian diag(p) - p p^T: row sums 2 p_i (1 - p_i) (at LiteRT's p)
            p = it.get_tensor(im.info_out(op).index).astype(np.float64)
            e_out = float((2 * p * (1 - p)).max()) * e_in
        else:
            raise AssertionError(f"_hybrid_bound does not know {name}")
        dev[im.info_out(op).index] = e_out
    bounds = [6.0 * dev.get(int(i), 0.0) for i in g.OutputsAsNumpy()]
    return refs, bounds, it


def _float_twin(path):
    """The model with every quantized constant replaced by its float32
    dequantization ((q - zero_point) * scale, in float32 as the runtime's
    Dequantize computes it): what tinyinfer computes, run by LiteRT in float32."""
    from tinyinfer.convert import Report
    from tinyinfer.convert.tflite import _Importer
    im = _Importer(open(path, "rb").read(), Report(), "twin")
    g = im.graph
    m = Model()
    for info in im.tensors:
        data = info.data
        if data is not None and info.dtype == np.int8 and info.quant is not None:
            q = info.quant
            shape = [1] * data.ndim
            if q.axis is not None:
                shape[q.axis] = -1
            data = ((data.astype(np.float32) - q.zero_points.astype(np.float32).reshape(shape))
                    * q.scales.astype(np.float32).reshape(shape))
        m.tensor(info.name, info.shape, np.float32 if data is None else data.dtype, data)
    m.inputs = [int(i) for i in g.InputsAsNumpy()]
    m.outputs = [int(i) for i in g.OutputsAsNumpy()]
    for j in range(g.OperatorsLength()):
        op = g.Operators(j)
        m.op(im.op_name(op), [int(i) for i in op.InputsAsNumpy()], [int(i) for i in op.OutputsAsNumpy()],
             _copy_options(op))
    return m.to_bytes()


@pytest.mark.parametrize("name", DYNAMIC)
def test_dynamic_range_fixture(name, tmp_path):
    """Two references: the float twin (the same dequantized weights, LiteRT in
    float32) within the float32 bound, and LiteRT's own hybrid kernels within
    the bound derived from their activation quantization step."""
    path = fixture(name)
    model, report = convert_and_load(path, tmp_path)
    assert report.ops_out["Dequantize"] > 0
    assert any("int8" in k and "dynamic-range" in k for k in report.kept_precision)
    assert any("dynamic-range" in n for n in report.notes)
    (tmp_path / "f32").mkdir()
    f32, _ = convert_and_load(fixture(name.replace("_dyn", "_f32")), tmp_path / "f32")
    assert model.weight_bytes < 0.7 * f32.weight_bytes  # the int8 weights stayed int8 in the file
    twin = _float_twin(path)
    for kind, seed in KINDS:
        feeds = make_inputs(name, _details(path), kind, seed)
        ours = model.run(feeds)
        twin_refs, _ = litert(twin, feeds)
        assert_float_close(ours, twin_refs, 1e-5, f"{name} ({kind}) vs its float twin")
        refs, bounds, it = _hybrid_bound(path, feeds)
        check_io(model, it)
        for k, (a, r, bound) in enumerate(zip(ours, refs, bounds)):
            err = float(np.max(np.abs(a - r)))
            assert bound > 0
            assert err <= bound + 1e-5 * float(np.max(np.abs(r))), f"{name} ({kind}) output {k}: {err} > {bound}"


# -- full-integer int8 -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", INT8)
def test_full_integer_fixture(name, tmp_path):
    """Bit for bit against LiteRT's reference kernels."""
    path = fixture(name)
    model, report = convert_and_load(path, tmp_path)
    if name.endswith("floatio"):
        assert report.ops_out["Quantize"] == 1 and report.ops_out["Dequantize"] == 1
    for kind, seed in KINDS:
        feeds = make_inputs(name, _details(path), kind, seed)
        refs, it = litert(path, feeds, OpResolverType.BUILTIN_REF)
        check_io(model, it)
        for k, (a, r) in enumerate(zip(model.run(feeds), refs)):
            np.testing.assert_array_equal(a, r, err_msg=f"{name} ({kind}) output {k}")


def test_full_integer_fixtures_cover_the_integer_ops():
    from tinyinfer.convert import Report
    from tinyinfer.convert.tflite import _Importer
    ops = set()
    for name in INT8:
        report = Report()
        _Importer(open(fixture(name), "rb").read(), report, name).run()
        ops |= set(report.ops_out)
        assert (any("int8" in k and "per-axis" in k for k in report.kept_precision)
                or name in ("int8_ops", "reduce_max_int8"))
    assert {"Quantize", "Dequantize", "FullyConnected", "Conv2D", "DepthwiseConv2D", "Add", "Sub", "Mul",
            "MaxPool2D", "AveragePool2D", "Mean", "Softmax", "Logistic", "Tanh", "HardSwish", "Relu", "Relu6",
            "LeakyRelu", "Concat", "ReduceMax"} <= ops


def test_full_integer_quantization_carried_exactly():
    """Every int8/int32 tensor keeps TFLite's scales, zero points and axis."""
    from tinyinfer.convert import Report
    from tinyinfer.convert.tflite import _Importer
    seen = []
    orig = tinyinfer.GraphBuilder.quantization

    for name in INT8:
        data = open(fixture(name), "rb").read()
        im = _Importer(data, Report(), name)
        calls = {}

        def spy(self, tensor, scales, zero_points, axis=None, calls=calls):
            calls[tensor.name] = (np.asarray(scales, np.float32), np.asarray(zero_points), axis)
            return orig(self, tensor, scales, zero_points, axis)
        tinyinfer.GraphBuilder.quantization = spy
        try:
            im.run()
        finally:
            tinyinfer.GraphBuilder.quantization = orig
        by_name = {t.name: t for t in im.tensors}
        for tname, (s, z, axis) in calls.items():
            info = by_name[tname]
            np.testing.assert_array_equal(s, info.quant.scales)
            np.testing.assert_array_equal(z, info.quant.zero_points)
            assert axis == info.quant.axis
            seen.append(axis)
        # Every quantized tensor that the graph reads was given its parameters.
        quantized = {t.name for t in im.tensors if t.quant is not None and t.dtype is not None
                     and np.dtype(t.dtype).kind in "iu"}
        assert quantized - set(calls) == set(), name
    assert 0 in seen and None in seen  # per-axis (weights, biases) and per-tensor


# -- the repository's trained digits models (models/, scripts/train_digits.py) ------------------
@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_trained_digits_model(name, tmp_path):
    """Real trained float32 models on real digits: same outputs, same predictions."""
    path = os.path.join(HERE, "..", "..", "models", name + ".tflite")
    if not os.path.exists(path):
        pytest.skip(f"{path} is not there")
    pytest.importorskip("sklearn")
    from tinyinfer.datasets import load_digits_28x28
    images, labels = load_digits_28x28()
    model, _ = convert_and_load(path, tmp_path)
    shape = tuple(model.inputs[0].shape)
    agree = 0
    for i in range(0, 200, 5):
        x = images[i].reshape(shape)
        refs, it = litert(path, [x])
        check_io(model, it)
        ours = model.run([x])
        assert_float_close(ours, refs, 1e-5, f"{name} digit {i}")
        agree += int(np.argmax(ours[0]) == np.argmax(refs[0]))
    assert agree == 40
    # Another batch size: the dynamic batch of the file (shape_signature -1) stays inferred.
    batch = images[:8].reshape((8,) + shape[1:])
    it = Interpreter(model_path=path)
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(batch.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], batch)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])
    assert_float_close(model.run([batch]), [ref], 1e-5, f"{name} batch 8")


# -- refusals ----------------------------------------------------------------------------------
def test_unsupported_ops_listed_with_counts(tmp_path):
    dst = tmp_path / "out.tinf"
    with pytest.raises(tinyinfer.UnsupportedOpError) as e:
        tinyinfer.convert(fixture("unsupported_ops"), dst, verbose=False)
    msg = str(e.value)
    assert "CUMSUM (x2)" in msg and "TOPK_V2 (x1)" in msg
    assert "ADD" not in msg and "RELU" not in msg
    assert not dst.exists()


def test_control_flow_int32_loop_matches_litert(tmp_path):
    """A WHILE that counts in int32 (the integer Add of its body; test_control_flow.py has more)."""
    model, _ = convert_and_load(fixture("control_flow"), tmp_path)
    assert "While" in [o.op for o in model.ops()]
    feeds = [np.linspace(-1, 1, int(np.prod(t.shape)), dtype=t.dtype).reshape(t.shape) if t.dtype.kind == "f"
             else np.ones(t.shape, t.dtype) for t in model.inputs]
    refs, _ = litert(fixture("control_flow"), feeds)
    assert_float_close(model.run(feeds), refs)


def test_detect_format_by_content(tmp_path):
    renamed = tmp_path / "model.bin"
    shutil.copy(fixture("mlp_f32"), renamed)
    assert detect_format(str(renamed)) == "tflite"
    assert detect_format(open(renamed, "rb").read()) == "tflite"
    model, report = convert_and_load(str(renamed), tmp_path)
    assert report.importer == "tflite"
    feeds = make_inputs("mlp", _details(str(renamed)), "realistic", 0)
    refs, _ = litert(str(renamed), feeds)
    assert_float_close(model.run(feeds), refs)


def test_convert_from_bytes_and_report():
    data = open(fixture("mlp_f32"), "rb").read()
    report = tinyinfer.convert(data, None, verbose=False)
    assert report.ops_in == {"FULLY_CONNECTED": 3, "SOFTMAX": 1}
    assert report.ops_out == {"FullyConnected": 3, "Softmax": 1}
    assert any("RELU" in f for f in report.fused) and any("RELU6" in f for f in report.fused)
    text = str(report)
    assert "FULLY_CONNECTED x3" in text and "FullyConnected x3" in text
    with tinyinfer.Model(report.data) as m:
        assert m.metadata["producer"] == "tinyinfer.convert.tflite"


def test_unknown_option_refused():
    with pytest.raises(tinyinfer.InvalidArgumentError):
        tinyinfer.convert(fixture("mlp_f32"), None, verbose=False, bogus=1)


def test_not_a_tflite_file():
    with pytest.raises(tinyinfer.ModelFormatError):
        tinyinfer.convert(b"\x00" * 64, None, format="tflite", verbose=False)


# -- hand-built models --------------------------------------------------------------------------
T = tflite.TensorType
BO = tflite.BuiltinOptions
OPS = {v: k for k, v in BUILTIN_OPCODE2NAME.items()}
_NP = {np.dtype(np.float32): T.FLOAT32, np.dtype(np.int32): T.INT32, np.dtype(np.int8): T.INT8,
       np.dtype(np.float16): T.FLOAT16, np.dtype(np.int64): T.INT64, np.dtype(np.bool_): T.BOOL,
       np.dtype(np.uint8): T.UINT8}


class Model:
    """A tiny .tflite writer: tensors (name, shape, dtype, optional constant data)
    and ops (name, inputs, outputs, options); `to_bytes` serializes."""

    def __init__(self):
        self.tensors, self.ops, self.inputs, self.outputs, self.quant = [], [], [], [], {}
        self.variables = set()

    def tensor(self, name, shape, dtype=np.float32, data=None, quant=None, variable=False):
        """quant: (scales, zero_points, quantized_dimension); variable: a variable tensor (an LSTM's state)."""
        self.tensors.append((name, tuple(shape), np.dtype(dtype), None if data is None else
                             np.ascontiguousarray(np.asarray(data, dtype))))
        self.quant[len(self.tensors) - 1] = quant
        if variable:
            self.variables.add(len(self.tensors) - 1)
        return len(self.tensors) - 1

    def input(self, name, shape, dtype=np.float32):
        i = self.tensor(name, shape, dtype)
        self.inputs.append(i)
        return i

    def const(self, name, value, dtype=None):
        a = np.asarray(value, dtype)
        return self.tensor(name, a.shape, a.dtype, a)

    def op(self, name, inputs, outputs, options=None, code_fields="both"):
        """options: (BuiltinOptions type, fn(builder) -> table offset).
        code_fields: 'both', 'deprecated' (only deprecated_builtin_code), or 'new'
        (deprecated_builtin_code = 127, the placeholder, and builtin_code)."""
        self.ops.append((name, list(inputs), list(outputs), options, code_fields))

    def to_bytes(self, external=False):
        """external: constants after the flatbuffer, found by Buffer.offset/size
        (the layout of models over 2 GB)."""
        if not external:
            return self._build(None)
        probe = self._build(1 << 40)  # same size whatever the (non-default) offsets are
        base = (len(probe) + 15) // 16 * 16
        data = self._build(base)
        assert len(data) == len(probe)
        blob = b"".join(d.tobytes() + b"\0" * (-d.nbytes % 16) for d in self._datas())
        return data + b"\0" * (base - len(data)) + blob

    def _datas(self):
        return [d for _, _, _, d in self.tensors if d is not None]

    def _build(self, external_base):
        b = flatbuffers.Builder(1024)
        # Buffers: 0 is the empty one.
        buffer_index, datas = [], []
        for _, _, _, data in self.tensors:
            if data is None:
                buffer_index.append(0)
            else:
                datas.append(data.tobytes())
                buffer_index.append(len(datas))
        buf_offsets = []
        pos = external_base
        for raw in [None] + datas:
            vec = None
            if raw and external_base is None:
                b.StartVector(1, len(raw), 16)
                b.head -= len(raw)
                b.Bytes[b.head:b.head + len(raw)] = raw
                vec = b.EndVector()
            tflite.BufferStart(b)
            if vec is not None:
                tflite.BufferAddData(b, vec)
            if raw and external_base is not None:
                tflite.BufferAddOffset(b, pos)
                tflite.BufferAddSize(b, len(raw))
                pos += len(raw) + (-len(raw) % 16)
            buf_offsets.append(tflite.BufferEnd(b))
        tensor_offsets = []
        for k, ((name, shape, dtype, _), bi) in enumerate(zip(self.tensors, buffer_index)):
            nm = b.CreateString(name)
            shp = b.CreateNumpyVector(np.asarray(shape, np.int32))
            qp = None
            if self.quant.get(k) is not None:
                scales, zps, axis = self.quant[k]
                sv = b.CreateNumpyVector(np.asarray(scales, np.float32))
                zv = b.CreateNumpyVector(np.asarray(zps, np.int64))
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, sv)
                tflite.QuantizationParametersAddZeroPoint(b, zv)
                tflite.QuantizationParametersAddQuantizedDimension(b, axis)
                qp = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            if qp is not None:
                tflite.TensorAddQuantization(b, qp)
            tflite.TensorAddShape(b, shp)
            tflite.TensorAddType(b, _NP[dtype])
            tflite.TensorAddBuffer(b, bi)
            tflite.TensorAddName(b, nm)
            if k in self.variables:
                tflite.TensorAddIsVariable(b, True)
            tensor_offsets.append(tflite.TensorEnd(b))
        codes, code_offsets, op_offsets = [], [], []
        for name, ins, outs, options, fields in self.ops:
            key = (name, fields)
            if key not in codes:
                codes.append(key)
                code = OPS[name]
                tflite.OperatorCodeStart(b)
                if fields == "deprecated":
                    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, code)
                elif fields == "new":
                    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, 127)
                    tflite.OperatorCodeAddBuiltinCode(b, code)
                else:
                    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
                    tflite.OperatorCodeAddBuiltinCode(b, code)
                tflite.OperatorCodeAddVersion(b, 1)
                code_offsets.append(tflite.OperatorCodeEnd(b))
            opt = options[1](b) if options else None
            iv = b.CreateNumpyVector(np.asarray(ins, np.int32))
            ov = b.CreateNumpyVector(np.asarray(outs, np.int32))
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, codes.index(key))
            tflite.OperatorAddInputs(b, iv)
            tflite.OperatorAddOutputs(b, ov)
            if options:
                tflite.OperatorAddBuiltinOptionsType(b, options[0])
                tflite.OperatorAddBuiltinOptions(b, opt)
            op_offsets.append(tflite.OperatorEnd(b))

        def offsets(start, items):
            start(b, len(items))
            for o in reversed(items):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()
        tv = offsets(tflite.SubGraphStartTensorsVector, tensor_offsets)
        opv = offsets(tflite.SubGraphStartOperatorsVector, op_offsets)
        inv = b.CreateNumpyVector(np.asarray(self.inputs, np.int32))
        outv = b.CreateNumpyVector(np.asarray(self.outputs, np.int32))
        sname = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tv)
        tflite.SubGraphAddInputs(b, inv)
        tflite.SubGraphAddOutputs(b, outv)
        tflite.SubGraphAddOperators(b, opv)
        tflite.SubGraphAddName(b, sname)
        sg = tflite.SubGraphEnd(b)
        sgv = offsets(tflite.ModelStartSubgraphsVector, [sg])
        cv = offsets(tflite.ModelStartOperatorCodesVector, code_offsets)
        bv = offsets(tflite.ModelStartBuffersVector, buf_offsets)
        desc = b.CreateString("hand-built by test_convert_tflite.py")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, cv)
        tflite.ModelAddSubgraphs(b, sgv)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, bv)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _opts(kind, **fields):
    """(BuiltinOptions type, writer) for an options table `kind` with scalar
    fields (ints/floats/bools) or int vectors (lists)."""
    def write(b):
        vecs = {k: b.CreateNumpyVector(np.asarray(v, np.int32)) for k, v in fields.items() if isinstance(v, list)}
        getattr(tflite, kind + "Start")(b)
        for k, v in fields.items():
            getattr(tflite, f"{kind}Add{k}")(b, vecs.get(k, v))
        return getattr(tflite, kind + "End")(b)
    return getattr(BO, kind), write


_OPTION_KINDS = {v: k for k, v in vars(BO).items() if isinstance(v, int)}


def _copy_options(op):
    """An operator's builtin options as (type, writer), copied field by field."""
    t = op.BuiltinOptionsType()
    if t == 0:
        return None
    kind = _OPTION_KINDS[t]
    cls = getattr(tflite, kind)
    o = cls()
    tab = op.BuiltinOptions()
    o.Init(tab.Bytes, tab.Pos)
    fields = {}
    for f in dir(cls):
        if f.startswith(("_", "Init", "GetRootAs", kind)) or f.endswith(("AsNumpy", "Length", "IsNone")):
            continue
        if not hasattr(tflite, f"{kind}Add{f}"):
            continue
        if hasattr(cls, f + "AsNumpy"):
            if not getattr(o, f + "IsNone")():
                fields[f] = [int(v) for v in getattr(o, f + "AsNumpy")()]
        else:
            fields[f] = getattr(o, f)()
    return _opts(kind, **fields)


def _run_hand_built(m, tmp_path, seed=0):
    data = m.to_bytes()
    assert detect_format(data) == "tflite"
    rng = np.random.default_rng(seed)
    feeds = [rng.standard_normal(m.tensors[i][1]).astype(m.tensors[i][2]) for i in m.inputs]
    refs, it = litert(data, feeds)
    dst = tmp_path / "hand.tinf"
    report = tinyinfer.convert(data, dst, verbose=False)
    with tinyinfer.load(str(dst)) as model:
        check_io(model, it)
        assert_float_close(model.run(feeds), refs, 1e-5)
    return report


def test_hand_built_option_paths(tmp_path):
    m = Model()
    x = m.input("x", (2, 3, 1, 4))
    y = m.input("y", (2, 3, 4))
    outs = []

    def out(name, shape):
        t = m.tensor(name, shape)
        outs.append(t)
        return t
    m.op("SQUEEZE", [x], [out("squeezed", (2, 3, 4))], _opts("SqueezeOptions", SqueezeDims=[2]))
    m.op("SQUEEZE", [x], [out("squeezed_all", (2, 3, 4))], _opts("SqueezeOptions"))
    m.op("EXPAND_DIMS", [y, m.const("axis", np.int32(1))], [out("expanded", (2, 1, 3, 4))])
    # SOFTMAX beta, with the code only in deprecated_builtin_code (old files).
    m.op("SOFTMAX", [y], [out("softmax_beta", (2, 3, 4))], _opts("SoftmaxOptions", Beta=0.5), "deprecated")
    # GELU (code 150 > 127: deprecated_builtin_code holds the placeholder 127).
    m.op("GELU", [y], [out("gelu", (2, 3, 4))], _opts("GeluOptions", Approximate=True), "new")
    # RESHAPE from its new_shape option (no shape input).
    m.op("RESHAPE", [y], [out("reshaped", (6, 4))], _opts("ReshapeOptions", NewShape=[6, 4]))
    # FULLY_CONNECTED keep_num_dims=false on a 3-D input, no bias (-1).
    w = m.const("w", np.random.default_rng(5).standard_normal((5, 4)).astype(np.float32))
    m.op("FULLY_CONNECTED", [y, w, -1], [out("fc_flat", (6, 5))],
         _opts("FullyConnectedOptions", KeepNumDims=False, FusedActivationFunction=1))
    m.op("FULLY_CONNECTED", [y, w, -1], [out("fc_keep", (2, 3, 5))],
         _opts("FullyConnectedOptions", KeepNumDims=True, FusedActivationFunction=2))
    m.op("CONCATENATION", [y, y], [out("concat", (2, 3, 8))], _opts("ConcatenationOptions", Axis=-1))
    m.op("RELU_N1_TO_1", [y], [out("clamped", (2, 3, 4))])
    # STRIDED_SLICE with offset=true: end is begin + end.
    m.op("STRIDED_SLICE", [y, m.const("b", np.int32([0, 1, 1])), m.const("e", np.int32([2, 2, 3])),
                           m.const("s", np.int32([1, 1, 1]))], [out("sliced", (2, 2, 3))],
         _opts("StridedSliceOptions", Offset=True))
    m.outputs = outs
    report = _run_hand_built(m, tmp_path)
    assert report.ops_in["SQUEEZE"] == 2 and report.ops_in["GELU"] == 1 and report.ops_in["SOFTMAX"] == 1
    assert report.ops_out["Reshape"] == 2  # RESHAPE, and FULLY_CONNECTED's flattening
    assert any("new_shape" in f for f in report.folded)
    assert any("keep_num_dims" in f for f in report.folded)


def test_hand_built_transpose_conv_shapes(tmp_path):
    """TRANSPOSE_CONV output_shape values that TFLite accepts beyond in*stride."""
    rng = np.random.default_rng(7)
    for (h, k, s, pad, oh) in [(4, 3, 2, 0, 8), (4, 3, 2, 0, 7), (4, 2, 2, 0, 8), (4, 1, 2, 0, 8),
                               (4, 3, 2, 1, 9), (5, 4, 3, 0, 15), (3, 3, 1, 1, 5)]:
        m = Model()
        x = m.input("x", (1, h, h, 3))
        w = m.const("w", rng.standard_normal((2, k, k, 3)).astype(np.float32))
        bias = m.const("bias", rng.standard_normal(2).astype(np.float32))
        y = m.tensor("y", (1, oh, oh, 2))
        m.op("TRANSPOSE_CONV", [m.const("shape", np.int32([1, oh, oh, 2])), w, x, bias], [y],
             _opts("TransposeConvOptions", Padding=pad, StrideH=s, StrideW=s))
        m.outputs = [y]
        _run_hand_built(m, tmp_path)


def test_hand_built_refusals_are_all_listed(tmp_path):
    m = Model()
    x = m.input("x", (1, 4))
    perm = m.input("perm", (2,), np.int32)
    a = m.tensor("a", (1, 4))
    m.op("ADD", [x, x], [a], _opts("AddOptions", FusedActivationFunction=4))  # TANH: refused
    b = m.tensor("b", (1, 4))
    m.op("ADD", [a, x], [b], _opts("AddOptions", FusedActivationFunction=5))  # SIGN_BIT: refused
    c = m.tensor("c", (4, 1))
    m.op("TRANSPOSE", [b, perm], [c])  # perm not constant
    c2 = m.tensor("c2", (4, 2))
    m.op("CONCATENATION", [c, c], [c2], _opts("ConcatenationOptions", Axis=1, FusedActivationFunction=1))
    d = m.tensor("d", (4, 2))
    m.op("ABS", [c2], [d])
    e = m.tensor("e", (4, 2))
    m.op("ABS", [d], [e])
    q = m.tensor("q", (1, 4), np.int8, quant=([0.1], [0], 0))
    m.inputs.append(q)
    qmin = m.tensor("qmin", (1,), np.int8, quant=([0.1], [0], 0))
    m.op("REDUCE_MIN", [q, m.const("axes", [1], np.int32)], [qmin], _opts("ReducerOptions", KeepDims=False))
    m.outputs = [e, qmin]
    dst = tmp_path / "out.tinf"
    with pytest.raises(tinyinfer.UnsupportedOpError) as err:
        tinyinfer.convert(m.to_bytes(), dst, verbose=False)
    msg = str(err.value)
    assert "ADD [fused activation TANH] (x1)" in msg
    assert "ADD [fused activation SIGN_BIT] (x1)" in msg
    assert "TRANSPOSE [perm input 'perm' is not a constant] (x1)" in msg
    assert "CONCATENATION [fused activation RELU (TFLite's kernels refuse it too)] (x1)" in msg
    assert "ABS (x2)" in msg
    assert "REDUCE_MIN [quantized REDUCE_MIN] (x1)" in msg
    assert not dst.exists()


def test_hand_built_while_in_main_graph(tmp_path):
    m = Model()
    x = m.input("x", (1, 4))
    y = m.tensor("y", (1, 4))
    m.op("CALL_ONCE", [], [])
    m.op("RELU", [x], [y])
    m.outputs = [y]
    with pytest.raises(tinyinfer.UnsupportedOpError) as err:
        tinyinfer.convert(m.to_bytes(), None, verbose=False)
    assert "CALL_ONCE [no CallOnceOptions]" in str(err.value)  # CALL_ONCE needs its init subgraph


def test_hand_built_external_buffers(tmp_path):
    """Constants stored after the flatbuffer (Buffer.offset/size, as in models over 2 GB)."""
    rng = np.random.default_rng(9)
    m = Model()
    x = m.input("x", (2, 6))
    w = m.const("w", rng.standard_normal((5, 6)).astype(np.float32))
    bias = m.const("bias", rng.standard_normal(5).astype(np.float32))
    y = m.tensor("y", (2, 5))
    m.op("FULLY_CONNECTED", [x, w, bias], [y], _opts("FullyConnectedOptions"))
    m.outputs = [y]
    data = m.to_bytes(external=True)
    head = len(m._build(1 << 40))
    assert m.tensors[w][3].tobytes() not in data[:head] and m.tensors[w][3].tobytes() in data[head:]
    feeds = [rng.standard_normal((2, 6)).astype(np.float32)]
    refs, _ = litert(data, feeds)
    report = tinyinfer.convert(data, None, verbose=False)
    with tinyinfer.Model(report.data) as model:
        assert_float_close(model.run(feeds), refs)


def test_hand_built_int8_weights_behind_dequantize(tmp_path):
    """int8 per-channel weights behind a DEQUANTIZE op (the other dynamic-range
    layout): kept int8 in the .tinf, dequantized at run time; LiteRT
    dequantizes the same way and computes in float32, so the float32 bound holds."""
    rng = np.random.default_rng(11)
    q = rng.integers(-127, 128, (6, 8)).astype(np.int8)
    scales = rng.uniform(0.001, 0.02, 6).astype(np.float32)
    m = Model()
    x = m.input("x", (3, 8))
    wq = m.tensor("w_int8", (6, 8), np.int8, q, quant=(scales, np.zeros(6, np.int64), 0))
    w = m.tensor("w", (6, 8))
    m.op("DEQUANTIZE", [wq], [w])
    y = m.tensor("y", (3, 6))
    m.op("FULLY_CONNECTED", [x, w, -1], [y], _opts("FullyConnectedOptions", FusedActivationFunction=1))
    m.outputs = [y]
    report = _run_hand_built(m, tmp_path)
    assert report.ops_out["Dequantize"] == 1
    assert any("w_int8" in k and "int8" in k for k in report.kept_precision)


def test_missing_tflite_package_names_the_extra(monkeypatch):
    from tinyinfer.convert import MissingDependencyError
    monkeypatch.setitem(sys.modules, "tflite", None)   # `import tflite` now fails
    monkeypatch.setitem(sys.modules, "tflite.utils", None)
    with pytest.raises(MissingDependencyError, match=r"the TFLite importer needs the 'tflite' package: "
                                                     r"pip install tinyinfer\[tflite\]") as e:
        tinyinfer.convert(fixture("mlp_f32"), None)
    assert isinstance(e.value, tinyinfer.TinyInferError)
