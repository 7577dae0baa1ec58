"""tinyinfer.load on .tflite, .onnx and PyTorch files: told apart by content,
converted in memory with the options passed through, the result cached
(second load without conversion), and the outputs those of the peer
runtime."""

import os
import shutil
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer import cache

HERE = os.path.dirname(os.path.abspath(__file__))
TFLITE = os.path.join(HERE, "fixtures", "tflite")
ONNX = os.path.join(HERE, "fixtures", "onnx")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(d))
    return d


def _count_conversions(monkeypatch):
    """Counts calls of the converter entry point that load uses."""
    conv = sys.modules["tinyinfer.convert"]  # the package (tinyinfer.convert the attribute is the function)
    calls = []
    real = conv.convert

    def counting(*a, **k):
        calls.append(k)
        return real(*a, **k)
    monkeypatch.setattr(conv, "convert", counting)
    return calls


def test_tflite_by_path_and_bytes_matches_litert(monkeypatch):
    pytest.importorskip("tflite")
    lr = pytest.importorskip("ai_edge_litert.interpreter")
    path = os.path.join(TFLITE, "mlp_int8.tflite")
    calls = _count_conversions(monkeypatch)
    x = np.random.default_rng(0).integers(-128, 128, (1, 64)).astype(np.int8)
    it = lr.Interpreter(model_path=path, experimental_op_resolver_type=lr.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])
    with tinyinfer.load(path) as m:
        (y,) = m.run(x)
    np.testing.assert_array_equal(y, ref)  # full-integer: bit-exact with LiteRT's reference kernels
    assert len(calls) == 1 and len(cache.entries()) == 1
    with open(path, "rb") as f:
        data = f.read()
    with tinyinfer.load(data) as m:  # same content: a cache hit, no conversion
        np.testing.assert_array_equal(m.run(x)[0], ref)
    assert len(calls) == 1


def test_detected_by_content_not_extension(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    src = os.path.join(ONNX, "mlp_op17.onnx")
    renamed = tmp_path / "model.weights"
    shutil.copy(src, renamed)
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    refs = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"onnx::Gemm_0": x})
    with tinyinfer.load(renamed) as m:
        outs = m.run(x)
    for a, r in zip(outs, refs):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)


def test_options_pass_through_and_key_the_cache(monkeypatch):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    src = os.path.join(ONNX, "helper_ops_op18.onnx")  # input x has a symbolic batch dim
    calls = _count_conversions(monkeypatch)
    with tinyinfer.load(src) as m:
        assert m.inputs[0].shape[0] == 1
    with tinyinfer.load(src, input_shapes={"x": (3, 4, 6, 6)}) as m:
        assert m.inputs[0].shape == (3, 4, 6, 6)
        rng = np.random.default_rng(2)
        feeds = {"x": rng.standard_normal((3, 4, 6, 6)).astype(np.float32),
                 "v": rng.standard_normal((2, 12)).astype(np.float32)}
        outs = m.run(feeds)
    refs = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, r in zip(outs, refs):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)
    assert len(calls) == 2 and len(cache.entries()) == 2  # other options: another entry
    tinyinfer.load(src, input_shapes={"x": (3, 4, 6, 6)}).close()
    assert len(calls) == 2
    # an option the importer refuses reaches it
    with pytest.raises(tinyinfer.InvalidArgumentError):
        tinyinfer.load(src, no_such_option=1)


def test_opset_check_passes_through(tmp_path):
    onnx = pytest.importorskip("onnx")
    m = onnx.load(os.path.join(ONNX, "mlp_op17.onnx"))
    m.opset_import[0].version = 21
    data = m.SerializeToString()
    with pytest.raises(tinyinfer.UnsupportedOpError, match="opset 21"):
        tinyinfer.load(data)
    assert cache.entries() == []  # a failed conversion caches nothing
    with tinyinfer.load(data, check_opset=False) as model:
        assert model.outputs[0].shape == (1, 10)


def test_cache_false_converts_every_time(monkeypatch):
    pytest.importorskip("tflite")
    calls = _count_conversions(monkeypatch)
    path = os.path.join(TFLITE, "mlp_f32.tflite")
    for _ in range(2):
        tinyinfer.load(path, cache=False).close()
    assert len(calls) == 2 and cache.entries() == []


def test_corrupt_cache_entry_is_converted_again(monkeypatch, cache_dir):
    pytest.importorskip("tflite")
    path = os.path.join(TFLITE, "mlp_f32.tflite")
    calls = _count_conversions(monkeypatch)
    tinyinfer.load(path).close()
    (entry,) = cache.entries()
    raw = bytearray(open(entry.path, "rb").read())
    raw[-10] ^= 0xFF  # inside the .tinf payload
    open(entry.path, "wb").write(bytes(raw))
    x = np.ones((1, 64), np.float32)
    with tinyinfer.load(path) as m:
        y = m.run(x)[0]
    assert len(calls) == 2
    with tinyinfer.load(path, cache=False) as m:
        np.testing.assert_array_equal(m.run(x)[0], y)


def test_converted_model_matches_a_written_one(tmp_path):
    pytest.importorskip("tflite")
    path = os.path.join(TFLITE, "cnn_int8.tflite")
    dst = tmp_path / "cnn.tinf"
    tinyinfer.convert(path, dst)
    x = np.random.default_rng(3).integers(-128, 128, (1, 16, 16, 3)).astype(np.int8)
    with tinyinfer.load(path) as a, tinyinfer.load(str(dst)) as b:
        np.testing.assert_array_equal(a.run(x)[0], b.run(x)[0])
        assert a.inputs == b.inputs and a.outputs == b.outputs


def test_tinf_and_garbage_unchanged(tmp_path):
    b = tinyinfer.GraphBuilder("t")
    x = b.input("x", (1, 2))
    b.output(b.op("Relu", x))
    data = b.to_bytes()
    with tinyinfer.load(data) as m:
        assert m.run(np.array([[-1, 2]], np.float32))[0].tolist() == [[0, 2]]
    with pytest.raises(tinyinfer.InvalidArgumentError, match="conversion option"):
        tinyinfer.load(data, input_shapes={"x": (1, 2)})
    with pytest.raises(tinyinfer.ModelFormatError):
        tinyinfer.load(b"NOPE" + bytes(100))
    with pytest.raises(tinyinfer.TinyInferIOError):
        tinyinfer.load(str(tmp_path / "missing.tflite"))
    # a file named .onnx that is not one: the ONNX reader's error, as a tinyinfer error
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07" + os.urandom(64))
    pytest.importorskip("onnx")
    with pytest.raises(tinyinfer.ModelFormatError):
        tinyinfer.load(bad)
    with pytest.raises(tinyinfer.InvalidArgumentError):
        tinyinfer.load(12345)


def test_torch_checkpoint_with_architecture(tmp_path):
    torch = pytest.importorskip("torch")
    from tinyinfer.convert import nn
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    arch = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x = np.random.default_rng(4).standard_normal((1, 8)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    with tinyinfer.load(path, architecture=arch, input_shape=(1, 8)) as m:
        np.testing.assert_allclose(m.run(x)[0], ref, rtol=1e-5, atol=1e-6)
    assert cache.entries() == []  # an architecture object is not plain data: not cached
