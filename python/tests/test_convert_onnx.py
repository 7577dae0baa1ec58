"""ONNX importer: every fixture of tests/fixtures/onnx (made by scripts/fixtures/make_onnx.py)
converted with tinyinfer.convert and compared against onnxruntime run live, on random and
realistic inputs (smooth images; sklearn's digits when importable). Integer fixtures on x86-64
without VNNI, where onnxruntime's int8 GEMMs saturate, compare against the onnx package's
reference evaluator instead (int8_reference)."""

import os
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer.convert import detect_format

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "onnx")

FLOAT_FIXTURES = [
    "cnn_bn_op13", "cnn_bn_op17", "mlp_op13", "mlp_op17", "transformer_op13", "transformer_op17",
    "transformer_op20", "resize_op13", "resize_op17", "misc_op13", "misc_op17", "helper_ops_op13",
    "helper_ops_op18", "helper_ops_op20",
]
STATIC_Q_FIXTURES = ["cnn_qdq", "mlp_qdq", "mlp_qdq_perchannel", "cnn_qop", "matmul_qop", "resnet_qop_contrib"]
DYNAMIC_Q_FIXTURES = ["cnn_dynamic", "mlp_dynamic"]


def fixture(name):
    return os.path.join(FIX, name + ".onnx")


# -- inputs --------------------------------------------------------------------

def smooth_images(n, c, h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = np.zeros((n, c, h, w), np.float32)
    for i in range(n):
        for k in range(c):
            for _ in range(3):
                fy, fx, ph = rng.uniform(0.5, 3), rng.uniform(0.5, 3), rng.uniform(0, 2 * np.pi)
                out[i, k] += np.sin(2 * np.pi * (fy * yy + fx * xx) + ph) / 3
    return out


def digits(n, seed=0):
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # scikit-learn is a test extra: smooth synthetic digits instead
        return (smooth_images(n, 1, 8, 8, seed).reshape(n, 64) + 1) / 2
    d = load_digits().data.astype(np.float32) / 16.0
    return d[np.random.default_rng(seed).choice(len(d), n, replace=False)]


def realistic(shape, seed):
    shape = tuple(shape)
    if len(shape) == 4:
        return smooth_images(shape[0], shape[1], shape[2], shape[3], seed)
    if len(shape) == 2 and shape[1] == 64:
        return digits(shape[0], seed)
    t = np.linspace(0, 1, int(np.prod(shape)), dtype=np.float32)
    return np.sin(2 * np.pi * (seed + 1) * t + seed).reshape(shape).astype(np.float32)


def feeds_for(sess, kind, seed, batch=1):
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in i.shape]
        feeds[i.name] = (rng.standard_normal(shape).astype(np.float32) if kind == "random"
                         else realistic(shape, seed))
    return feeds


def _ort_int8_exact():
    """onnxruntime's integer GEMMs (MLAS) sum exact int32 products where the CPU has VNNI or is not x86-64;
    on x86-64 without VNNI its u8s8 kernels add pairs of products with vpmaddubsw, which saturates at int16
    (onnxruntime's quantization docs: reduce_range), so its int8 outputs can be many steps off there."""
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        return True
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def int8_reference(data):
    """run(feeds) -> outputs of a quantized ONNX model: onnxruntime where its integer kernels are exact,
    else the onnx package's reference evaluator (ONNX's own semantics, in numpy)."""
    if _ort_int8_exact():
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return lambda feeds: sess.run(None, feeds)
    from onnx.reference import ReferenceEvaluator
    ev = ReferenceEvaluator(onnx.load_from_string(data) if isinstance(data, bytes) else data)
    return lambda feeds: ev.run(None, feeds)


def convert_fixture(name, tmp_path, **options):
    dst = tmp_path / f"{name}.tinf"
    report = tinyinfer.convert(fixture(name), dst, verbose=False, **options)
    assert dst.exists() and report.output_bytes == dst.stat().st_size
    return tinyinfer.load(str(dst)), report


# -- float fixtures -------------------------------------------------------------

@pytest.mark.parametrize("name", FLOAT_FIXTURES)
def test_float_fixture_matches_onnxruntime(name, tmp_path):
    model, report = convert_fixture(name, tmp_path)
    sess = ort.InferenceSession(fixture(name), providers=["CPUExecutionProvider"])
    # Inputs and outputs keep the ONNX names, order and (NCHW) shapes.
    assert [t.name for t in model.inputs] == [i.name for i in sess.get_inputs()]
    assert [t.name for t in model.outputs] == [o.name for o in sess.get_outputs()]
    for kind, seed in [("random", 0), ("random", 1), ("realistic", 2), ("realistic", 3)]:
        feeds = feeds_for(sess, kind, seed)
        ref = sess.run(None, feeds)
        got = model.run([feeds[t.name] for t in model.inputs])
        for r, g, o in zip(ref, got, sess.get_outputs()):
            assert g.shape == r.shape, (o.name, g.shape, r.shape)
            err = float(np.max(np.abs(g.astype(np.float64) - r)))
            scale = float(np.max(np.abs(r)))
            assert err <= 1e-5 * scale, f"{name}:{o.name} ({kind}) max error {err:.3g} vs max |ref| {scale:.3g}"


def loaded_ops(model):
    """The op count of a loaded model, after the core's load-time passes."""
    from collections import Counter
    return Counter(op.op for op in model.ops())


def test_cnn_layout_and_folds(tmp_path):
    model, report = convert_fixture("cnn_bn_op13", tmp_path)
    # One Transpose for the NCHW image input; none between ops; the flatten before the Linear
    # permutes the weight columns instead of transposing the activations.
    assert report.ops_out["Transpose"] == 1
    assert any("weight columns permuted" in f for f in report.fused)
    # The importer emits the plain graph: BatchNorm, Relu and Relu6 are ops in the file...
    assert report.ops_out["BatchNorm"] == 3 and report.ops_out["Relu"] == 2 and report.ops_out["Relu6"] == 1
    assert not any("BatchNorm" in f for f in report.folded) and not any("Relu" in f for f in report.fused)
    # ...and the core's passes fold and fuse them at load, as the report says.
    passes = model.passes
    assert report.load_passes == passes
    assert sum(p.startswith("fold BatchNorm") for p in passes) == 2
    assert sum(p.startswith("fuse Relu ") for p in passes) == 2 and sum(p.startswith("fuse Relu6 ") for p in passes) == 1
    ops = loaded_ops(model)
    assert ops["BatchNorm"] == 1                                  # the one after the residual Add
    assert "Relu" not in ops and "Relu6" not in ops
    assert ops["DepthwiseConv2D"] == 1 and ops["TransposeConv2D"] == 1 and ops["Transpose"] == 1
    assert "at load, the core's passes (" in str(report) and "fold BatchNorm" in str(report)


def test_transformer_patterns(tmp_path):
    _, r13 = convert_fixture("transformer_op13", tmp_path)
    assert r13.ops_out["LayerNorm"] == 2 and r13.ops_out["Gelu"] == 1
    assert "Erf" not in r13.ops_out and "Pow" not in r13.ops_out
    assert any("layer normalization" in f for f in r13.fused) and any("Gelu" in f for f in r13.fused)
    _, r20 = convert_fixture("transformer_op20", tmp_path)
    assert r20.ops_out["Gelu"] == 1 and r20.ops_out["LayerNorm"] == 2
    # the attention's 4 ONNX Transposes cost at most 4 runtime transposes
    assert r20.ops_out["Transpose"] <= 4


def test_misc_folds(tmp_path):
    model, report = convert_fixture("misc_op13", tmp_path)
    # F.pad + Conv on the NCHW input: the Pad is emitted in NHWC, where the Conv reads, and the core fuses it.
    assert report.ops_out["Pad"] == 1 and "Pad" not in loaded_ops(model)
    assert any(p.startswith("fuse Pad") and "explicit pads [1, 1, 1, 1]" in p for p in model.passes)
    # Relu after a 1-D Conv: lifted to 2-D, a Reshape stands between them, so the importer fuses it.
    assert any("Relu" in f and "c1d" in f for f in report.fused) and report.ops_out["Relu"] == 0
    assert report.ops_out["Rsqrt"] == 1
    assert any("constant folding" in f for f in report.folded)


@pytest.mark.parametrize("name", ["helper_ops_op13", "helper_ops_op18"])
def test_dynamic_batch_option(name, tmp_path):
    """helper_ops has a dynamic batch dim and a Shape/Gather/Unsqueeze/Concat -> Reshape chain."""
    model, report = convert_fixture(name, tmp_path, batch=2)
    assert model.inputs[0].shape == (2, 4, 6, 6)
    assert any("fixed to 2" in n for n in report.notes)
    sess = ort.InferenceSession(fixture(name), providers=["CPUExecutionProvider"])
    feeds = feeds_for(sess, "random", 5, batch=2)
    feeds["v"] = feeds["v"][:2]
    ref = sess.run(None, feeds)
    got = model.run([feeds[t.name] for t in model.inputs])
    for r, g in zip(ref, got):
        assert g.shape == r.shape
        assert np.max(np.abs(g - r)) <= 1e-5 * np.max(np.abs(r))


# -- quantized fixtures ---------------------------------------------------------

def _initializers(m):
    return {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}


def output_step(m, out_name):
    """The quantization step of a graph output made by DequantizeLinear."""
    inits = _initializers(m)
    for n in m.graph.node:
        if out_name in n.output and n.op_type == "DequantizeLinear":
            return float(inits[n.input[1]].reshape(-1)[0])
    raise AssertionError(f"{out_name} is not a DequantizeLinear output")


@pytest.mark.parametrize("name", STATIC_Q_FIXTURES)
def test_static_quantized_fixture(name, tmp_path):
    model, report = convert_fixture(name, tmp_path)
    assert report.kept_precision, "int8 weights should stay int8"
    assert report.ops_out["Quantize"] >= 1 and report.ops_out["Dequantize"] >= 1
    assert any("runs on the int8 kernels" in n for n in report.notes), report.notes
    m = onnx.load(fixture(name))
    # The reference is the graph's semantics (onnxruntime without its graph optimizations evaluates every
    # QuantizeLinear / DequantizeLinear as ONNX specifies): onnxruntime 1.32's fused int8 kernels depart from it
    # by up to 19 output steps on the QDQ fixtures here (test_convert_onnx_qdq.py).
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(fixture(name), so, providers=["CPUExecutionProvider"])
    for kind, seed in [("random", 0), ("random", 1), ("realistic", 2), ("realistic", 3), ("realistic", 4)]:
        feeds = feeds_for(sess, kind, seed)
        ref = sess.run(None, feeds)
        got = model.run([feeds[t.name] for t in model.inputs])
        for r, g, o in zip(ref, got, sess.get_outputs()):
            step = output_step(m, o.name)
            # The int8 kernels compute with the file's parameters (integer sums, TFLite's fixed-point
            # requantization where onnxruntime multiplies by a float scale): the two differ only at near-ties,
            # which moves an activation by one step and the output by about one output step.
            err = float(np.max(np.abs(g - r)))
            assert err <= step * (1 + 1e-4) + 1e-6, f"{name}:{o.name} ({kind}) error {err:.3g} = {err / step:.2f} steps"


def _last_dynamic_layer_bound(m):
    """One activation step of the last DynamicQuantizeLinear times the largest dequantized weight of the
    MatMulInteger/ConvInteger it feeds (the output change from one rounding flip), as (scale name, bound fn)."""
    inits = _initializers(m)
    nodes = list(m.graph.node)
    last = [n for n in nodes if n.op_type in ("MatMulInteger", "ConvInteger")][-1]
    dql = next(n for n in nodes if n.op_type == "DynamicQuantizeLinear" and n.output[0] == last.input[0])
    w = inits[last.input[1]].astype(np.float32) - (inits[last.input[3]].astype(np.float32)
                                                   if len(last.input) > 3 and last.input[3] else 0)
    mul = next(n for n in nodes if n.op_type == "Mul" and dql.output[1] in n.input)
    w_scale = inits[[i for i in mul.input if i != dql.output[1]][0]]
    return dql.output[1], float(np.max(np.abs(w)) * np.max(w_scale))


@pytest.mark.parametrize("name", DYNAMIC_Q_FIXTURES)
def test_dynamic_quantized_fixture(name, tmp_path):
    model, report = convert_fixture(name, tmp_path)
    assert any("DynamicQuantizeLinear" in n for n in report.notes)
    m = onnx.load(fixture(name))
    scale_name, w_max = _last_dynamic_layer_bound(m)
    # onnxruntime run with the last dynamic scale as an extra output
    m2 = onnx.load(fixture(name))
    m2.graph.output.append(onnx.helper.make_tensor_value_info(scale_name, onnx.TensorProto.FLOAT, []))
    sess = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = int8_reference(m2.SerializeToString())
    for kind, seed in [("random", 0), ("random", 1), ("realistic", 2), ("realistic", 3)]:
        feeds = feeds_for(sess, kind, seed)
        *ref, a_scale = reference(feeds)
        got = model.run([feeds[t.name] for t in model.inputs])
        for r, g in zip(ref, got):
            # DynamicQuantizeLinear is computed as ONNX specifies (run-time min/max, round half to even) and the
            # integer products are exact in float32, so the outputs match up to float rounding; a rounding flip
            # of one input of the last layer would move an output by a_scale * max|w|: allow two such flips.
            err = float(np.max(np.abs(g - r)))
            tol = 1e-5 * float(np.max(np.abs(r))) + 2 * float(a_scale) * w_max
            assert err <= tol, f"{name} ({kind}) error {err:.3g} > {tol:.3g}"


def test_qlinear_conv_with_uint8_input_and_output():
    """A QOperator graph with a uint8 graph input and output (no float at the edges), and a Pad and MaxPool
    on the quantized tensor: the output must equal onnxruntime's, byte for byte up to rounding flips."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8)
    c = lambda name, a: numpy_helper.from_array(np.asarray(a), name)
    inits = [c("xs", np.float32(0.02)), c("xz", np.uint8(128)), c("w", w),
             c("ws", rng.uniform(0.002, 0.004, 6).astype(np.float32)), c("wz", np.zeros(6, np.int8)),
             c("ys", np.float32(0.05)), c("yz", np.uint8(100)), c("b", rng.integers(-500, 500, 6).astype(np.int32)),
             c("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), c("pv", np.uint8(100))]
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Pad", ["y", "pads", "pv"], ["yp"]),
             helper.make_node("MaxPool", ["yp"], ["out"], kernel_shape=[2, 2], strides=[2, 2])]
    g = helper.make_graph(nodes, "qop", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.UINT8, [1, 6, 5, 5])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    data = m.SerializeToString()
    report = tinyinfer.convert(data, None, verbose=False)
    x = rng.integers(0, 256, (1, 3, 8, 8)).astype(np.uint8)
    ref = int8_reference(data)({"x": x})[0]
    with tinyinfer.Model(report.data) as mod:
        assert mod.inputs[0].dtype == np.uint8 and mod.outputs[0].dtype == np.uint8
        got = mod.run([x])[0]
    assert got.shape == ref.shape
    # float sums in another order than onnxruntime's int32 ones may flip a rounding: at most one step
    assert np.max(np.abs(got.astype(np.int32) - ref.astype(np.int32))) <= 1


def test_int8_weights_can_be_dequantized_at_conversion(tmp_path):
    m8, r8 = convert_fixture("cnn_qdq", tmp_path)
    dst = tmp_path / "f32.tinf"
    r32 = tinyinfer.convert(fixture("cnn_qdq"), dst, verbose=False, keep_int8_weights=False)
    m32 = tinyinfer.load(str(dst))
    assert not r32.kept_precision and r32.output_bytes > r8.output_bytes
    x = smooth_images(1, 3, 16, 16, 9)
    np.testing.assert_allclose(m32.run([x])[0], m8.run([x])[0], atol=1e-6)


# -- errors, formats, options ------------------------------------------------------

def test_unsupported_op_lists_every_op_with_counts(tmp_path):
    dst = tmp_path / "never.tinf"
    with pytest.raises(tinyinfer.UnsupportedOpError) as e:
        tinyinfer.convert(fixture("unsupported_topk"), dst, verbose=False)
    msg = str(e.value)
    assert "TopK (x2)" in msg and "Relu" not in msg
    assert not dst.exists()


def test_detect_format_by_content(tmp_path):
    data = open(fixture("mlp_op13"), "rb").read()
    assert detect_format(data) == "onnx"
    odd = tmp_path / "model.weights"          # no telling extension
    odd.write_bytes(data)
    assert detect_format(str(odd)) == "onnx"
    report = tinyinfer.convert(data, None, verbose=False)     # bytes in, bytes out
    assert report.importer == "onnx" and report.data[:4]


def _tiny_model(opset, dims):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m.SerializeToString()


def test_conversion_is_deterministic():
    a = tinyinfer.convert(fixture("cnn_qdq"), None, verbose=False).data
    b = tinyinfer.convert(fixture("cnn_qdq"), None, verbose=False).data
    assert a == b


def _resize_model(mode, ctm, nearest_mode="round_prefer_floor", scales=(1, 1, 2, 2)):
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
             numpy_helper.from_array(np.array(scales, np.float32), "scales")]
    out = [int(d * s) for d, s in zip((1, 2, 4, 4), scales)]
    g = helper.make_graph([helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode=mode,
                                            coordinate_transformation_mode=ctm, nearest_mode=nearest_mode)],
                          "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m.SerializeToString()


def test_resize_modes_that_do_not_map_are_refused():
    with pytest.raises(tinyinfer.UnsupportedOpError, match="cubic"):
        tinyinfer.convert(_resize_model("cubic", "half_pixel"), None, verbose=False)
    with pytest.raises(tinyinfer.UnsupportedOpError, match="tf_crop_and_resize"):
        tinyinfer.convert(_resize_model("linear", "tf_crop_and_resize"), None, verbose=False)
    # asymmetric + ceil upsampling by 2 reads cell ceil(o / 2): no TFLite rule does
    with pytest.raises(tinyinfer.UnsupportedOpError, match="matches none"):
        tinyinfer.convert(_resize_model("nearest", "asymmetric", "ceil"), None, verbose=False)
    # and one that maps: checked against onnxruntime
    data = _resize_model("nearest", "half_pixel", "round_prefer_ceil", scales=(1, 1, 0.5, 0.5))
    report = tinyinfer.convert(data, None, verbose=False)
    x = smooth_images(1, 2, 4, 4, 1)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with tinyinfer.Model(report.data) as m:
        np.testing.assert_array_equal(m.run([x])[0], ref)


def test_opset_range_is_checked():
    with pytest.raises(tinyinfer.UnsupportedOpError, match="opset 10"):
        tinyinfer.convert(_tiny_model(10, [1, 4]), None, verbose=False)
    report = tinyinfer.convert(_tiny_model(10, [1, 4]), None, verbose=False, check_opset=False)
    assert report.ops_out["Relu"] == 1


def test_dynamic_dims_other_than_batch_stay_dynamic_or_are_fixed():
    data = _tiny_model(13, ["batch", "seq", 8])
    with tinyinfer.Model(tinyinfer.convert(data, None, verbose=False).data) as m:
        assert m.inputs[0].dynamic == (1,)   # the rest in test_dynamic_dims.py
        x = np.linspace(-1, 1, 56, dtype=np.float32).reshape(1, 7, 8)
        np.testing.assert_array_equal(m.run([x])[0], np.maximum(x, 0))
    report = tinyinfer.convert(data, None, verbose=False, input_shapes={"x": (3, 5, 8)})
    single = tinyinfer.convert(data, None, verbose=False, input_shape=(3, 5, 8))   # the CLI's --input-shape
    assert single.data == report.data
    with tinyinfer.Model(report.data) as m:
        assert m.inputs[0].shape == (3, 5, 8) and m.inputs[0].dynamic == ()
        x = np.linspace(-1, 1, 120, dtype=np.float32).reshape(3, 5, 8)
        np.testing.assert_array_equal(m.run([x])[0], np.maximum(x, 0))


# -- live torch modules ------------------------------------------------------------

def _torch_net():
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.a, self.b = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c // 2, c, 1)

        def forward(self, x):
            return x * torch.sigmoid(self.b(F.relu(self.a(F.adaptive_avg_pool2d(x, 1)))))

    class InvRes(nn.Module):
        def __init__(self, c, e=3):
            super().__init__()
            self.exp = nn.Sequential(nn.Conv2d(c, c * e, 1, bias=False), nn.BatchNorm2d(c * e), nn.Hardswish())
            self.dw = nn.Sequential(nn.Conv2d(c * e, c * e, 3, padding=1, groups=c * e, bias=False),
                                    nn.BatchNorm2d(c * e), nn.ReLU6())
            self.se = SE(c * e)
            self.proj = nn.Sequential(nn.Conv2d(c * e, c, 1, bias=False), nn.BatchNorm2d(c))

        def forward(self, x):
            return x + self.proj(self.se(self.dw(self.exp(x))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.block = InvRes(8)
            self.head = nn.Linear(8 * 8 * 8, 5)

        def forward(self, image):
            y = self.block(self.stem(image))
            return F.softmax(self.head(y.flatten(1)), dim=1), y

    torch.manual_seed(3)
    net = Net()
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return torch, net.train()   # from_torch must export in eval mode and restore the flag


def test_from_torch_live_module(tmp_path):
    torch, net = _torch_net()
    from tinyinfer.convert.torch_live import from_torch
    x = torch.from_numpy(smooth_images(1, 3, 16, 16, 4))
    model = from_torch(net, x)
    assert net.training
    assert [t.name for t in model.inputs] == ["image"] and model.inputs[0].shape == (1, 3, 16, 16)
    assert model.report.ops_out["Transpose"] <= 2      # NCHW input and the NCHW feature-map output
    net.eval()
    with torch.no_grad():
        refs = [t.numpy() for t in net(x)]
    got = model.run([x.numpy()])
    for r, g in zip(refs, got):
        assert g.shape == r.shape
        assert np.max(np.abs(g - r)) <= 1e-5 * np.max(np.abs(r))
    # with a destination: writes the file and returns the Report
    dst = tmp_path / "net.tinf"
    report = from_torch(net, (x,), dst, opset=13)
    assert dst.exists() and report.output_bytes == dst.stat().st_size
    with tinyinfer.load(str(dst)) as m:
        np.testing.assert_allclose(m.run([x.numpy()])[0], refs[0], rtol=0, atol=1e-5 * np.max(np.abs(refs[0])))


def test_from_torch_transformer_layer():
    """nn.TransformerEncoderLayer in eval mode takes a fused fast path that torch cannot export: from_torch
    turns it off for the export."""
    torch = pytest.importorskip("torch")
    from tinyinfer.convert.torch_live import from_torch
    torch.manual_seed(5)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    x = torch.randn(1, 7, 16)
    model = from_torch(layer, x)
    assert model.report.ops_out["LayerNorm"] == 2
    with torch.no_grad():
        ref = layer(x).numpy()
    got = model.run([x.numpy()])[0]
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_missing_onnx_package_names_the_extra(monkeypatch):
    from tinyinfer.convert import MissingDependencyError
    from tinyinfer.convert.torch_live import from_torch
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` now fails
    with pytest.raises(MissingDependencyError, match=r"the ONNX importer needs the 'onnx' package: "
                                                     r"pip install tinyinfer\[onnx\]") as e:
        tinyinfer.convert(fixture("mlp_op13"), None)
    assert isinstance(e.value, tinyinfer.TinyInferError) and isinstance(e.value, ImportError)
    with pytest.raises(MissingDependencyError, match=r"pip install tinyinfer\[onnx\]"):
        from_torch(object(), None)


def test_missing_torch_package_names_the_extra(monkeypatch):
    from tinyinfer.convert import MissingDependencyError
    from tinyinfer.convert.torch_live import from_torch
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"from_torch needs the 'torch' package: "
                                                     r"pip install tinyinfer\[torch\]"):
        from_torch(object(), None)


def test_convert_is_quiet_unless_verbose(capsys):
    report = tinyinfer.convert(fixture("mlp_op13"), None)
    assert capsys.readouterr().out == ""
    tinyinfer.convert(fixture("mlp_op13"), None, verbose=True)
    assert capsys.readouterr().out.strip() == str(report)


def test_batchnorm_and_relu_where_the_core_cannot_fold_them():
    """BatchNorm after a ConvTranspose and after a 1-D Conv (which runs as Conv2D + Reshape) are folded by the
    importer, as is the Relu after the 1-D Conv; after a 2-D Conv and a Gemm they are left to the core."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(5)
    inits, nodes = [], []

    def const(name, *shape, lo=-0.5, hi=0.5):
        inits.append(numpy_helper.from_array(rng.uniform(lo, hi, shape).astype(np.float32), name))
        return name

    def bn(name, x, c):
        nodes.append(helper.make_node("BatchNormalization", [x, const(name + "_g", c, lo=0.5, hi=1.5),
                                                             const(name + "_b", c), const(name + "_m", c),
                                                             const(name + "_v", c, lo=0.5, hi=1.5)], [name]))
        return name

    nodes.append(helper.make_node("Conv", ["s", const("w1", 6, 4, 3), const("b1", 6)], ["c1"], pads=[1, 1]))
    nodes.append(helper.make_node("Relu", [bn("bn1", "c1", 6)], ["y1"]))
    nodes.append(helper.make_node("Conv", ["x", const("w2", 6, 4, 3, 3), const("b2", 6)], ["c2"], pads=[1] * 4))
    nodes.append(helper.make_node("Relu", [bn("bn2", "c2", 6)], ["r2"]))
    nodes.append(helper.make_node("ConvTranspose", ["r2", const("w3", 6, 3, 2, 2)], ["c3"], strides=[2, 2]))
    inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"),
              numpy_helper.from_array(np.array(6, np.float32), "six")]
    nodes.append(helper.make_node("Clip", [bn("bn3", "c3", 3), "zero", "six"], ["y2"]))
    nodes.append(helper.make_node("Gemm", ["v", const("w4", 5, 8), const("b4", 5)], ["g"], transB=1))
    bn("y3", "g", 5)
    graph = helper.make_graph(
        nodes, "bn", [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 4, 30]),
                      helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 6]),
                      helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("y1", "y2", "y3")], inits)
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    report = tinyinfer.convert(data, None)
    assert sum("BatchNormalization" in f for f in report.folded) == 2           # ConvTranspose, 1-D Conv
    assert any(f.startswith("Relu 'y1'") for f in report.fused)                # after the 1-D Conv
    assert report.ops_out["BatchNorm"] == 2 and report.ops_out["Relu"] == 1 and report.ops_out["Relu6"] == 1
    with tinyinfer.Model(report.data) as m:
        assert sum(p.startswith("fold BatchNorm") for p in m.passes) == 2       # Conv2D, FullyConnected
        assert not any(op.op in ("BatchNorm", "Relu", "Relu6") for op in m.ops())
        feeds = {"s": realistic((1, 4, 30), 1), "x": realistic((1, 4, 5, 6), 2),
                 "v": rng.standard_normal((2, 8)).astype(np.float32)}
        got = m.run([feeds[t.name] for t in m.inputs])
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for r, g in zip(sess.run(None, feeds), got):
        assert g.shape == r.shape
        assert np.max(np.abs(g - r)) <= 1e-5 * np.max(np.abs(r))


def test_every_handler_is_documented():
    """One table dispatches (HANDLERS); every op it handles is in SUPPORTED_OPS (the docs' table). Rsqrt is
    no ONNX op: the rewrites make it from Reciprocal(Sqrt)."""
    from tinyinfer.convert.onnx import HANDLERS, SUPPORTED_OPS
    assert set(HANDLERS) - {"Rsqrt"} <= set(SUPPORTED_OPS)
    assert {"Conv", "Gemm", "QuantizeLinear", "com.microsoft.QGemm", "Resize"} <= set(HANDLERS)


# -- ReduceMax / ReduceMin ------------------------------------------------------------------------
def _reduce_model(op, opset, shape, axes, keepdims, conv_first=False, noop=None):
    """x -> [1x1 Conv, so the tensor runs channels-last] -> op(axes, keepdims) -> y. Axes are an attribute
    below opset 18 and a constant input from 18 on; axes None leaves them out."""
    from onnx import TensorProto, helper, numpy_helper
    inits, nodes, src = [], [], "x"
    if conv_first:
        c = shape[1]
        w = np.random.default_rng(3).uniform(-1, 1, (c, c, 1, 1)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, "w"))
        nodes.append(helper.make_node("Conv", ["x", "w"], ["c"]))
        src = "c"
    attrs = {"keepdims": keepdims}
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    ins = [src]
    if axes is not None and opset < 18:
        attrs["axes"] = list(axes)
    elif axes is not None:
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
        ins.append("axes")
    nodes.append(helper.make_node(op, ins, ["y"], **attrs))
    g = helper.make_graph(nodes, "reduce", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


_REDUCE_CASES = [  # (shape, axes, conv_first); axes None: ONNX's default, every axis
    ((3, 5), [1], False), ((3, 5), [0], False), ((3, 5), [-1], False), ((3, 5), [0, 1], False),
    ((3, 5), None, False),
    ((2, 3, 4), [0, 2], False), ((2, 3, 4), [-2], False), ((2, 3, 4), [1, 2], False), ((2, 3, 4), None, False),
    ((2, 3, 4, 5), [1], True), ((2, 3, 4, 5), [2, 3], True), ((2, 3, 4, 5), [1, 3], True),
    ((2, 3, 4, 5), [-1, -3], True), ((2, 3, 4, 5), [0, 2], True), ((2, 3, 4, 5), [0, 1, 2, 3], True),
    ((2, 3, 4, 5), None, True), ((2, 3, 4, 5), [3, 1], False), ((2, 3, 4, 5), [0, -1], False),
]


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("shape,axes,conv_first", _REDUCE_CASES)
def test_reduce_max_min_match_onnxruntime(op, opset, keepdims, shape, axes, conv_first):
    """One ReduceMax (ReduceMin) op for any axes, remapped NCHW -> NHWC after a Conv; exact where no Conv
    precedes it (max is exact), within float rounding of the Conv otherwise."""
    data = _reduce_model(op, opset, shape, axes, keepdims, conv_first)
    report = tinyinfer.convert(data, None, verbose=False)
    assert report.ops_out[op] == 1 and "MaxPool2D" not in report.ops_out
    assert report.ops_out["Mul"] == 0
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with tinyinfer.Model(report.data) as m:
        for seed in range(2):
            x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
            ref = sess.run(None, {"x": x})[0]
            got = m.run([x])[0]
            assert got.shape == ref.shape, (got.shape, ref.shape)
            if conv_first:
                assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))
            else:
                np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_max_min_empty_axes(op):
    """Opset 18: an empty axes input reduces every axis, or nothing with noop_with_empty_axes=1."""
    x = np.random.default_rng(7).standard_normal((2, 3, 4)).astype(np.float32)
    for noop, axes in [(0, []), (1, []), (1, None), (0, None)]:
        data = _reduce_model(op, 18, x.shape, axes, 1, noop=noop)
        report = tinyinfer.convert(data, None, verbose=False)
        assert report.ops_out[op] == (0 if noop else 1)
        ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        with tinyinfer.Model(report.data) as m:
            got = m.run([x])[0]
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)


def test_reduce_max_axes_out_of_range_refused():
    with pytest.raises(tinyinfer.UnsupportedOpError, match="out of range"):
        tinyinfer.convert(_reduce_model("ReduceMax", 13, (2, 3), [2], 1), None, verbose=False)


def test_reduce_max_between_qdq_pairs():
    """QuantizeLinear -> DequantizeLinear -> ReduceMax -> QuantizeLinear -> DequantizeLinear, as a QDQ model
    writes it: the max of values on one int8 grid, requantized with the same parameters, is exact."""
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(3, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("ReduceMax", ["xd"], ["r"], axes=[1, -1], keepdims=0),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"])]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3, 4, 5))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    data = m.SerializeToString()
    report = tinyinfer.convert(data, None, verbose=False)
    assert report.ops_out["ReduceMax"] == 1
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5)).astype(np.float32)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with tinyinfer.Model(report.data) as mm:
        np.testing.assert_array_equal(mm.run([x])[0], ref)


@pytest.mark.parametrize("scale_op,hi", [("Div", 6.0), ("Mul", 6.0), ("Div", 5.0)])
def test_hardswish_spelled_out_becomes_one_op(scale_op, hi):
    """x * Clip(x + 3, 0, 6) / 6 (PaddlePaddle's MobileNetV3 exports; or * 1/6) is imported as one HardSwish,
    checked against onnxruntime; with Clip(0, 5) it is not HardSwish and stays the arithmetic. int8-static
    then runs a table lookup with no float Div between Dequantize and Quantize."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(11)
    c = lambda name, v: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
    inits = [c("w", rng.uniform(-0.5, 0.5, (8, 3, 3, 3))), c("b", rng.uniform(-0.5, 0.5, 8)),
             c("three", [3.0]), c("zero", 0.0), c("hi", hi), c("k", 6.0 if scale_op == "Div" else 1 / 6)]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[1] * 4),
             helper.make_node("Add", ["t", "three"], ["a"]),
             helper.make_node("Clip", ["a", "zero", "hi"], ["r"]),
             helper.make_node("Mul", ["t", "r"], ["m"]),
             helper.make_node(scale_op, ["m", "k"], ["y"])]
    graph = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    report = tinyinfer.convert(data, None)
    fused = hi == 6.0
    assert (report.ops_out["HardSwish"] == 1) == fused
    assert ("Div" in report.ops_out) == (not fused and scale_op == "Div")
    x = realistic((1, 3, 8, 10), 3) * 4
    with tinyinfer.Model(report.data) as m:
        got = m.run([x])[0]
    (want,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))
    if fused:
        calib = [realistic((1, 3, 8, 10), s) * 4 for s in range(8)]
        q = tinyinfer.quantize(report.data, mode="int8-static", calib=calib)
        with tinyinfer.Model(q.data) as mq:
            ops = loaded_ops(mq)
        assert ops["HardSwish"] == 1 and "Div" not in ops and ops["Dequantize"] == 1  # the output only
