"""Code written against onnxruntime's InferenceSession, run twice: once with
the real `onnxruntime`, once with `tinyinfer.ort` in its place (the `rt`
fixture; `errors` is where each keeps its exception classes). Each
expectation is checked on onnxruntime too, and tinyinfer must give the same
outputs (float tolerance; quantized models within a few quantization
steps), the same inputs/outputs/metadata and the same exception types.

Models of every precision: the committed ONNX fixtures (float32, dynamic
int8, QDQ int8 per tensor and per channel, QOperator, symbolic batch dims),
a float16-weight model made here, and the bench models when bench/models
has them.
"""

import glob
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import tinyinfer  # noqa: E402
import tinyinfer.ort  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(HERE, "fixtures", "onnx")
CPU = ["CPUExecutionProvider"]


def fp16_weights_model() -> bytes:
    """MatMul + Add on float16 initializers cast to float32, with a symbolic batch dim and metadata."""
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT),
         helper.make_node("Cast", ["b16"], ["b"], to=TensorProto.FLOAT),
         helper.make_node("MatMul", ["x", "w"], ["mm"]),
         helper.make_node("Add", ["mm", "b"], ["y0"]),
         helper.make_node("Relu", ["y0"], ["y"])],
        "fp16_weights", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float16), "w16"),
         numpy_helper.from_array(rng.standard_normal(8).astype(np.float16), "b16")],
        doc_string="the graph")
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="test_compat_ort",
                          doc_string="float16 weights", domain="tinyinfer.test")
    m.ir_version = 8
    m.model_version = 3
    helper.set_model_props(m, {"author": "tinyinfer", "license": "MIT"})
    return m.SerializeToString()


# path (or "fp16" for the model made here) -> precision: "f32", "f16", "quant" (int8 forms)
MODELS = {os.path.join(FIXTURES, n + ".onnx"): p for n, p in [
    ("mlp_op17", "f32"), ("cnn_bn_op17", "f32"), ("transformer_op17", "f32"), ("helper_ops_op18", "f32"),
    ("misc_op17", "f32"), ("mlp_dynamic", "quant"), ("cnn_dynamic", "quant"), ("mlp_qdq", "quant"),
    ("mlp_qdq_perchannel", "quant"), ("cnn_qdq", "quant"), ("cnn_qop", "quant"), ("matmul_qop", "quant")]}
MODELS["fp16"] = "f16"
for _p in sorted(glob.glob(os.path.join(ROOT, "bench", "models", "*.onnx"))):
    if os.path.basename(_p).startswith(("mlp.", "mobilenetv2.")):
        MODELS[_p] = "f32" if ".float32." in _p else "quant"
KEYS = [k for k in MODELS if k == "fp16" or os.path.exists(k)]


def ids(keys):
    return [k if k == "fp16" else os.path.relpath(k, ROOT) for k in keys]


def source(key):
    return fp16_weights_model() if key == "fp16" else key


@pytest.fixture(params=["onnxruntime", "tinyinfer"])
def rt(request, tmp_path, monkeypatch):
    """The module under test: onnxruntime or tinyinfer.ort."""
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(tmp_path / "cache"))
    return onnxruntime if request.param == "onnxruntime" else tinyinfer.ort


@pytest.fixture
def errors(rt):
    return onnxruntime.capi.onnxruntime_pybind11_state if rt is onnxruntime else tinyinfer.ort


def feed_for(sess, seed=0, batch=2):
    rng = np.random.default_rng(seed)
    feed = {}
    for a in sess.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in a.shape]
        assert a.type == "tensor(float)"
        feed[a.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feed


def reference(key, feed, output_names=None):
    return onnxruntime.InferenceSession(source(key), providers=CPU).run(output_names, feed)


def assert_same(outs, refs, precision):
    assert isinstance(outs, list) and len(outs) == len(refs)
    for a, r in zip(outs, refs):
        assert isinstance(a, np.ndarray) and a.dtype == r.dtype and a.shape == r.shape
        scale = max(1.0, float(np.max(np.abs(r))))
        if precision == "quant":
            # int8 arithmetic in another order (or on dequantized weights) can flip a rounding,
            # which moves a value by a quantization step; a few steps at most
            np.testing.assert_allclose(a, r, rtol=0, atol=0.05 * scale)
        else:
            np.testing.assert_allclose(a, r, rtol=1e-4, atol={"f32": 1e-5, "f16": 1e-4}[precision] * scale)


# -- the common snippet, on every model ------------------------------------------------------------------
@pytest.mark.parametrize("key", KEYS, ids=ids(KEYS))
def test_run_gives_onnxruntime_outputs(rt, key):
    sess = rt.InferenceSession(source(key), providers=CPU)
    for seed in (1, 2):
        feed = feed_for(sess, seed)
        assert_same(sess.run(None, feed), reference(key, feed), MODELS[key])


@pytest.mark.parametrize("key", KEYS, ids=ids(KEYS))
def test_inputs_outputs_and_metadata(rt, key):
    ours = rt.InferenceSession(source(key), providers=CPU)
    theirs = onnxruntime.InferenceSession(source(key), providers=CPU)
    for a, b in zip(ours.get_inputs() + ours.get_outputs(), theirs.get_inputs() + theirs.get_outputs()):
        assert (a.name, a.shape, a.type) == (b.name, b.shape, b.type)
    assert len(ours.get_inputs()) == len(theirs.get_inputs())
    assert len(ours.get_outputs()) == len(theirs.get_outputs())
    ma, mb = ours.get_modelmeta(), theirs.get_modelmeta()
    for field in ("producer_name", "graph_name", "domain", "description", "graph_description", "version",
                  "custom_metadata_map"):
        assert getattr(ma, field) == getattr(mb, field), field


def test_symbolic_dims_are_strings(rt):
    sess = rt.InferenceSession(fp16_weights_model(), providers=CPU)
    (x,) = sess.get_inputs()
    assert x.shape == ["N", 16] and x.type == "tensor(float)"
    assert sess.get_outputs()[0].shape == ["N", 8]
    meta = sess.get_modelmeta()
    assert meta.custom_metadata_map == {"author": "tinyinfer", "license": "MIT"} and meta.version == 3
    assert meta.description == "float16 weights" and meta.graph_description == "the graph"


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_dynamic_batch(rt, batch):
    key = os.path.join(FIXTURES, "helper_ops_op18.onnx")  # x: ['batch', 4, 6, 6], v: [2, 12]
    sess = rt.InferenceSession(key, providers=CPU)
    feed = feed_for(sess, seed=batch, batch=batch)
    outs = sess.run(None, feed)
    assert outs[3].shape == (batch, 4, 6, 6)
    assert_same(outs, reference(key, feed), "f32")
    # back to another shape on the same session
    feed = feed_for(sess, seed=10, batch=2)
    assert_same(sess.run(None, feed), reference(key, feed), "f32")


def test_output_names(rt):
    key = os.path.join(FIXTURES, "mlp_op17.onnx")  # two outputs
    sess = rt.InferenceSession(key, providers=CPU)
    feed = feed_for(sess, 3)
    first, second = [o.name for o in sess.get_outputs()]
    full = reference(key, feed)
    assert_same(sess.run([second], feed), [full[1]], "f32")
    assert_same(sess.run([second, first], feed), [full[1], full[0]], "f32")
    assert_same(sess.run([], feed), full, "f32")
    assert_same(sess.run((first,), feed), [full[0]], "f32")


def test_model_from_bytes_and_session_options(rt):
    key = os.path.join(FIXTURES, "cnn_bn_op17.onnx")
    so = rt.SessionOptions()
    assert so.intra_op_num_threads == 0
    so.intra_op_num_threads = 2
    so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    with open(key, "rb") as f:
        sess = rt.InferenceSession(f.read(), sess_options=so, providers=CPU)
    assert sess.get_session_options().intra_op_num_threads == 2
    assert sess.get_providers() == CPU
    feed = feed_for(sess, 4)
    assert_same(sess.run(None, feed), reference(key, feed), "f32")
    so2 = rt.SessionOptions()
    so2.graph_optimization_level = rt.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess2 = rt.InferenceSession(key, sess_options=so2)
    assert_same(sess2.run(None, feed), reference(key, feed), "f32")


# -- misuse: the same exception types ---------------------------------------------------------------------
def test_wrong_feeds(rt, errors):
    key = os.path.join(FIXTURES, "cnn_bn_op17.onnx")  # input.1: [1, 3, 16, 16]
    sess = rt.InferenceSession(key, providers=CPU)
    name = sess.get_inputs()[0].name
    x = np.zeros((1, 3, 16, 16), np.float32)
    with pytest.raises(ValueError):
        sess.run(None, {})
    with pytest.raises(ValueError):
        sess.run(None, {"not_an_input": x})
    with pytest.raises(errors.InvalidArgument):
        sess.run(None, {name: x, "extra": x})
    with pytest.raises(errors.InvalidArgument):
        sess.run(None, {name: x.astype(np.float64)})
    with pytest.raises(errors.InvalidArgument):
        sess.run(None, {name: x.astype(np.int32)})
    with pytest.raises(errors.InvalidArgument):
        sess.run(None, {name: x[0]})
    with pytest.raises(errors.InvalidArgument):
        sess.run(None, {name: np.zeros((2, 3, 16, 16), np.float32)})  # a fixed dim
    with pytest.raises(errors.InvalidArgument):
        sess.run(None, {name: np.zeros((1, 3, 16, 15), np.float32)})
    with pytest.raises(errors.InvalidArgument):
        sess.run(["no_such_output"], {name: x})
    assert sess.run(None, {name: x})[0].shape == (1, 10)  # the session still works


def test_wrong_model(rt, errors, tmp_path):
    with pytest.raises(errors.NoSuchFile):
        rt.InferenceSession(str(tmp_path / "missing.onnx"), providers=CPU)
    with pytest.raises(errors.InvalidProtobuf):
        rt.InferenceSession(b"\xff\xff\xff\xff garbage", providers=CPU)
    with pytest.raises(errors.InvalidProtobuf):
        rt.InferenceSession(os.path.join(HERE, "fixtures", "tflite", "mlp_f32.tflite"), providers=CPU)


# -- what tinyinfer cannot honour: clear errors naming it ----------------------------------------------------
def test_unsupported_things_name_themselves(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(tmp_path))
    key = os.path.join(FIXTURES, "mlp_op17.onnx")
    with pytest.raises(tinyinfer.ort.InvalidArgument, match="CPU"):
        tinyinfer.ort.InferenceSession(key, providers=["CUDAExecutionProvider"])
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):  # listed before the CPU: falls back, as ORT
        s = tinyinfer.ort.InferenceSession(key, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert s.get_providers() == CPU
    so = tinyinfer.ort.SessionOptions()
    so.enable_profiling = True
    with pytest.raises(tinyinfer.ort.NotImplemented, match="enable_profiling"):
        tinyinfer.ort.InferenceSession(key, sess_options=so)
    with pytest.raises(AttributeError):
        so.no_such_option = 1
    with pytest.raises(tinyinfer.ort.NotImplemented, match="custom op"):
        so.register_custom_ops_library("libcustom.so")
    with pytest.raises(tinyinfer.ort.NotImplemented, match="IO binding"):
        s.io_binding()
    with pytest.raises(tinyinfer.ort.NotImplemented, match="unsupported op"):
        tinyinfer.ort.InferenceSession(os.path.join(FIXTURES, "unsupported_topk.onnx"))
    # every tinyinfer.ort error is a tinyinfer error too
    assert issubclass(tinyinfer.ort.InvalidArgument, tinyinfer.TinyInferError)
    assert issubclass(tinyinfer.ort.NoSuchFile, tinyinfer.TinyInferError)


def test_concurrent_runs(rt):
    """One session, runs from several threads at once (onnxruntime allows it)."""
    import threading
    key = os.path.join(FIXTURES, "cnn_bn_op17.onnx")
    sess = rt.InferenceSession(key, providers=CPU)
    feeds = [feed_for(sess, seed) for seed in range(4)]
    refs = [reference(key, f) for f in feeds]
    failures = []

    def work(k):
        try:
            for _ in range(20):
                assert_same(sess.run(None, feeds[k]), refs[k], "f32")
        except AssertionError as e:
            failures.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]
