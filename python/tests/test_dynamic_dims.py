"""Dynamic non-batch input dims (a sequence length): the ONNX and TFLite converters leave them open (metadata
dynamic_dims), and a run at another length re-prepares the session; checked against onnxruntime and LiteRT at
several lengths."""

import numpy as np
import pytest

import tinyinfer

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _export(module, x, axes, tmp_path, name):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / f"{name}.onnx")
    torch.onnx.export(module.eval(), (x,), path, input_names=["x"], output_names=["y"], dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    return path


def _check_lengths(path, shape, axis, lengths):
    report = tinyinfer.convert(path, None, verbose=False)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    with tinyinfer.Model(report.data) as m:
        assert m.inputs[0].dynamic == (axis,)
        assert m.inputs[0].shape[axis] == 24   # the example size written in the file
        for n in lengths:
            s = list(shape)
            s[axis] = n
            x = rng.standard_normal(s).astype(np.float32)
            want = ref.run(None, {"x": x})[0]
            got = m.run(x)[0]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
    return report


def test_conv1d_lstm_with_a_dynamic_length_matches_onnxruntime(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class ConvLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv1d(8, 16, 3, padding=1), nn.Linear(32, 5)
            self.lstm = nn.LSTM(16, 32, batch_first=True)

        def forward(self, x):  # [B, 8, L]
            y, _ = self.lstm(torch.relu(self.conv(x)).transpose(1, 2))
            return self.fc(y)

    torch.manual_seed(0)
    path = _export(ConvLSTM(), torch.randn(1, 8, 20), {"x": {2: "L"}, "y": {1: "L"}}, tmp_path, "convlstm")
    report = _check_lengths(path, (1, 8, 0), 2, [24, 7, 33, 100, 24])
    assert any("stays dynamic" in n for n in report.notes)


def test_encoder_block_with_a_dynamic_length_matches_onnxruntime(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Encoder(nn.Module):
        def __init__(self, d=32, h=4):
            super().__init__()
            self.h, self.qkv, self.o = h, nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.ff = nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, d))

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            heads = lambda z: z.reshape(b, t, self.h, d // self.h).transpose(1, 2)  # noqa: E731
            q, k, v = heads(q), heads(k), heads(v)
            a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.h) ** 0.5, dim=-1) @ v
            x = self.n1(x + self.o(a.transpose(1, 2).reshape(b, t, d)))
            return self.n2(x + self.ff(x))

    torch.manual_seed(0)
    path = _export(Encoder(), torch.randn(1, 10, 32), {"x": {1: "T"}, "y": {1: "T"}}, tmp_path, "encoder")
    _check_lengths(path, (1, 0, 32), 1, [1, 5, 24, 64])


def test_input_shapes_still_fixes_a_dynamic_dim(tmp_path):
    torch = pytest.importorskip("torch")
    path = _export(torch.nn.Conv1d(4, 4, 3), torch.randn(1, 4, 9), {"x": {2: "L"}, "y": {2: "L"}}, tmp_path, "c")
    with tinyinfer.Model(tinyinfer.convert(path, None, verbose=False, input_shapes={"x": (1, 4, 9)}).data) as m:
        assert m.inputs[0].shape == (1, 4, 9) and m.inputs[0].dynamic == ()
        with pytest.raises(tinyinfer.InvalidArgumentError, match="shape"):
            m.run(np.zeros((1, 4, 12), np.float32))


def test_a_length_the_graph_cannot_take_is_refused_naming_the_op(tmp_path):
    torch = pytest.importorskip("torch")

    class Pairs(torch.nn.Module):
        def forward(self, x):  # [1, L, 8] -> [1, L / 2, 16]
            return torch.relu(x.reshape(1, x.shape[1] // 2, 16))

    path = _export(Pairs(), torch.randn(1, 10, 8), {"x": {1: "L"}, "y": {1: "H"}}, tmp_path, "pairs")
    with tinyinfer.Model(tinyinfer.convert(path, None, verbose=False).data) as m:
        x = np.arange(12 * 8, dtype=np.float32).reshape(1, 12, 8) - 40
        np.testing.assert_array_equal(m.run(x)[0], np.maximum(x.reshape(1, 6, 16), 0))
        with pytest.raises(tinyinfer.TinyInferError, match="Reshape"):
            m.run(np.zeros((1, 7, 8), np.float32))


def test_a_constant_that_depends_on_the_length_is_refused(tmp_path):
    torch = pytest.importorskip("torch")

    class Positions(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pe = torch.nn.Parameter(torch.randn(1, 64, 8))

        def forward(self, x):  # a learned position table cut to the length
            return x + self.pe[:, : x.shape[1]]

    path = _export(Positions(), torch.randn(1, 10, 8), {"x": {1: "L"}, "y": {1: "L"}}, tmp_path, "positions")
    with pytest.raises(tinyinfer.UnsupportedOpError, match="input_shapes"):
        tinyinfer.convert(path, None, verbose=False)
    with tinyinfer.Model(tinyinfer.convert(path, None, verbose=False, input_shapes={"x": (1, 10, 8)}).data) as m:
        x = np.ones((1, 10, 8), np.float32)
        ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(m.run(x)[0], ref, rtol=1e-6)


def test_tflite_with_a_dynamic_length_in_its_signature_matches_litert(tmp_path):
    tf = pytest.importorskip("tensorflow")
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    tf.random.set_seed(0)
    inp = tf.keras.Input(shape=(None, 8), batch_size=1)   # shape_signature [1, -1, 8]
    h = tf.keras.layers.Conv1D(16, 3, padding="same", activation="relu")(inp)
    h = tf.keras.layers.Activation("tanh")(tf.keras.layers.Dense(12)(h))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(4)(h))
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    report = tinyinfer.convert(data, None, verbose=False)
    assert any("stay dynamic" in n for n in report.notes)
    it = litert.Interpreter(model_content=data)
    d = it.get_input_details()[0]
    rng = np.random.default_rng(1)
    with tinyinfer.Model(report.data) as m:
        assert m.inputs[0].dynamic == (1,)
        for n in [1, 5, 24, 64, 5]:
            x = rng.standard_normal((1, n, 8)).astype(np.float32)
            it.resize_tensor_input(d["index"], [1, n, 8])
            it.allocate_tensors()
            it.set_tensor(d["index"], x)
            it.invoke()
            want = it.get_tensor(it.get_output_details()[0]["index"])
            np.testing.assert_allclose(m.run(x)[0], want, rtol=1e-4, atol=2e-5)


def test_a_dim_named_like_the_batch_takes_its_size():
    """Silero VAD's pattern: state [2, batch, H] next to input [batch, samples]: the state's 'batch' dim takes
    the batch size (or the size input_shapes gives the dim of that name), not an example size."""
    from onnx import TensorProto, helper
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["s"], ["t"])], "named",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, "batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    for opts, n in [({}, 1), ({"input_shapes": {"x": (3, 4)}}, 3)]:
        report = tinyinfer.convert(data, None, verbose=False, **opts)
        assert any("('batch') fixed to" in note for note in report.notes)
        with tinyinfer.Model(report.data) as m:
            assert [t.shape for t in m.inputs] == [(n, 4), (2, n, 3)]
            assert all(t.dynamic == () for t in m.inputs)
            s = np.arange(6 * n, dtype=np.float32).reshape(2, n, 3)
            np.testing.assert_array_equal(m.run([np.ones((n, 4), np.float32), s])[1], -s)
