"""LSTM and GRU (ops 71, 72): the core ops against the plain-loop numpy references
(reference.py lstm, gru), the ONNX converter against onnxruntime (models built with
onnx.helper, torch-exported nn.LSTM / nn.GRU, com.microsoft.DynamicQuantizeLSTM
from onnxruntime's quantize_dynamic), the TFLite UNIDIRECTIONAL_SEQUENCE_LSTM
against LiteRT, bad input, and the quantizer leaving them float."""
import os
import subprocess
import sys

import numpy as np
import pytest

import reference as R
import tinyinfer
from tinyinfer import GraphBuilder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- helpers

def _rand(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _lstm_params(rng, D, H, I, B, layout, bias=True, init=True, peep=False):
    w = _rand(rng, D, 4 * H, I)
    r = _rand(rng, D, 4 * H, H)
    b = _rand(rng, D, 8 * H) if bias else None
    st = (D, B, H) if layout == 0 else (B, D, H)
    h0 = _rand(rng, *st) if init else None
    c0 = _rand(rng, *st) if init else None
    p = _rand(rng, D, 3 * H) if peep else None
    return w, r, b, h0, c0, p


def _run_builder(op, x, consts, nout, **attrs):
    g = GraphBuilder(op.lower())
    xi = g.input("x", x.shape, dtype=x.dtype)
    ins = [xi] + [None if c is None else g.const(None, c) for c in consts]
    outs = g.op(op, *ins, outputs=nout, **attrs)
    outs = outs if isinstance(outs, list) else [outs]
    g.output(*outs)
    with g.load() as m:
        return m.run(x)


DIRS = {"forward": 0, "reverse": 1, "bidirectional": 2}


# ---------------------------------------------------------------- core ops vs numpy

@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("variant", ["plain", "nobias", "peephole", "clip", "input_forget"])
def test_lstm_op_vs_numpy(direction, layout, variant):
    rng = np.random.default_rng(hash((direction, layout, variant)) % 2**32)
    T, B, I, H = 5, 3, 7, 9
    D = 2 if direction == "bidirectional" else 1
    w, r, b, h0, c0, p = _lstm_params(rng, D, H, I, B, layout, bias=variant != "nobias",
                                      init=variant != "nobias", peep=variant == "peephole")
    x = _rand(rng, *((T, B, I) if layout == 0 else (B, T, I)), scale=1.0)
    attrs = dict(mode=DIRS[direction], axis=layout)
    clip = 0.0
    if variant == "clip":
        clip = 0.7
        attrs["clip"] = clip
    if variant == "input_forget":
        attrs["input_forget"] = 1
    got = _run_builder("LSTM", x, [w, r, b, h0, c0, p], 3, **attrs)
    want = R.lstm(x, w, r, b, h0, c0, p, direction, layout, clip, variant == "input_forget")
    for g_, w_ in zip(got, want):
        assert g_.shape == w_.shape
        np.testing.assert_allclose(g_, w_, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("variant", ["plain", "nobias", "clip"])
def test_gru_op_vs_numpy(direction, layout, lbr, variant):
    rng = np.random.default_rng(hash((direction, layout, lbr, variant)) % 2**32)
    T, B, I, H = 6, 2, 5, 8
    D = 2 if direction == "bidirectional" else 1
    w = _rand(rng, D, 3 * H, I)
    r = _rand(rng, D, 3 * H, H)
    b = None if variant == "nobias" else _rand(rng, D, 6 * H)
    h0 = None if variant == "nobias" else _rand(rng, *((D, B, H) if layout == 0 else (B, D, H)))
    x = _rand(rng, *((T, B, I) if layout == 0 else (B, T, I)), scale=1.0)
    attrs = dict(mode=DIRS[direction], axis=layout, linear_before_reset=lbr)
    clip = 0.6 if variant == "clip" else 0.0
    if clip:
        attrs["clip"] = clip
    got = _run_builder("GRU", x, [w, r, b, h0], 2, **attrs)
    want = R.gru(x, w, r, b, h0, direction, layout, clip, lbr)
    for g_, w_ in zip(got, want):
        assert g_.shape == w_.shape
        np.testing.assert_allclose(g_, w_, atol=2e-5, rtol=1e-4)


def test_lstm_larger_threads_and_batch():
    """A larger LSTM on two threads, and another batch size than the file's."""
    rng = np.random.default_rng(3)
    T, B, I, H = 20, 4, 48, 64
    w, r, b, h0, c0, _ = _lstm_params(rng, 2, H, I, B, 0, init=False)
    w *= 0.3
    r *= 0.3
    g = GraphBuilder("lstm")
    xi = g.input("x", (T, B, I))
    y, yh, yc = g.op("LSTM", xi, g.const("w", w), g.const("r", r), g.const("b", b), outputs=3, mode=2)
    g.output(y, yh, yc)
    x = _rand(rng, T, B, I, scale=1.0)
    with tinyinfer.load(g.to_bytes(), threads=2) as m:
        got = m.run(x)
    for g_, w_ in zip(got, R.lstm(x, w, r, b, direction="bidirectional")):
        np.testing.assert_allclose(g_, w_, atol=3e-5, rtol=1e-4)


def test_lstm_only_y_output():
    rng = np.random.default_rng(4)
    w, r, b, *_ = _lstm_params(rng, 1, 4, 3, 2, 0, init=False)
    x = _rand(rng, 3, 2, 3)
    (y,) = _run_builder("LSTM", x, [w, r, b], 1)
    np.testing.assert_allclose(y, R.lstm(x, w, r, b)[0], atol=2e-5)


# ---------------------------------------------------------------- bad input

def _expect_error(fn, *words):
    with pytest.raises(tinyinfer.TinyInferError) as e:
        fn()
    msg = str(e.value)
    for wd in words:
        assert wd in msg, msg


def test_bad_shapes_and_attributes():
    rng = np.random.default_rng(5)
    x = _rand(rng, 3, 2, 4)
    w = _rand(rng, 1, 16, 4)
    r = _rand(rng, 1, 16, 4)
    _expect_error(lambda: _run_builder("LSTM", x, [_rand(rng, 1, 16, 5), r], 1), "W")       # input size
    _expect_error(lambda: _run_builder("LSTM", x, [_rand(rng, 1, 15, 4), r], 1), "W")       # not 4 gates
    _expect_error(lambda: _run_builder("LSTM", x, [w, _rand(rng, 1, 16, 3)], 1), "R")
    _expect_error(lambda: _run_builder("LSTM", x, [w, r, _rand(rng, 1, 16)], 1), "B")
    _expect_error(lambda: _run_builder("LSTM", x, [w, r, None, _rand(rng, 1, 3, 4)], 1), "initial_h")
    _expect_error(lambda: _run_builder("LSTM", x, [w, r], 1, mode=2), "W")                  # needs 2 directions
    _expect_error(lambda: _run_builder("LSTM", x, [w, r], 1, mode=3), "mode")
    _expect_error(lambda: _run_builder("LSTM", x, [w, r], 1, clip=-1.0), "clip")
    _expect_error(lambda: _run_builder("LSTM", x, [w, r], 4), "outputs")
    _expect_error(lambda: _run_builder("LSTM", x[0], [w, r], 1), "rank 3")
    _expect_error(lambda: _run_builder("LSTM", x, [w, r], 1, linear_before_reset=1), "GRU")
    _expect_error(lambda: _run_builder("GRU", x, [_rand(rng, 1, 12, 4), _rand(rng, 1, 12, 4)], 3), "outputs")
    _expect_error(lambda: _run_builder("GRU", x, [_rand(rng, 1, 12, 4), _rand(rng, 1, 12, 4)], 1,
                                       input_forget=1), "LSTM")
    _expect_error(lambda: _run_builder("LSTM", x.astype(np.float64).astype(np.int32), [w, r], 1), "float32")


# ---------------------------------------------------------------- ONNX vs onnxruntime

def _onnx_model(node, inputs, outputs, inits, opset=14, ir=7, domains=()):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    g = helper.make_graph(
        [node], "rnn", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(a), name=k) for k, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)] +
                          [helper.make_opsetid(d, 1) for d in domains])
    m.ir_version = ir
    return m.SerializeToString()


def _vs_ort(data, feeds, atol=2e-5, rtol=1e-4, peer=None):
    """Converts and runs `data`; compares every output with onnxruntime's outputs on it (or with `peer`'s,
    a list of arrays); returns the largest abs error."""
    if peer is None:
        ort = pytest.importorskip("onnxruntime")
        peer = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    report = tinyinfer.convert(data, None, verbose=False)
    with tinyinfer.Model(report.data) as m:
        outs = m.run(feeds)
    assert len(outs) == len(peer)
    worst = 0.0
    for got, ref in zip(outs, peer):
        assert got.shape == ref.shape, (got.shape, ref.shape)
        np.testing.assert_allclose(got, ref, atol=atol, rtol=rtol)
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def _layout1_peer(kind, names, attrs, inits, feeds, outputs):
    """onnxruntime refuses layout 1: its outputs for the same op with layout 0 on the transposed inputs,
    transposed back (onnx's reference evaluator, the other peer, ignores clip and input_forget)."""
    from onnx import helper
    ort = pytest.importorskip("onnxruntime")
    a0 = {k: v for k, v in attrs.items() if k != "layout"}
    f0 = {k: np.ascontiguousarray(v.transpose(1, 0, 2)) for k, v in feeds.items()}
    data = _onnx_model(helper.make_node(kind, names, outputs, **a0), f0, outputs, inits)
    outs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, f0)
    return [o.transpose(2, 0, 1, 3) if o.ndim == 4 else o.transpose(1, 0, 2) for o in outs]


def _onnx_lstm_case(kind, direction, layout, variant, rng, T=4, B=3, I=6, H=5):
    D = 2 if direction == "bidirectional" else 1
    G = 4 if kind == "LSTM" else 3
    inits = {"W": _rand(rng, D, G * H, I), "R": _rand(rng, D, G * H, H)}
    names = ["X", "W", "R"]
    attrs = dict(hidden_size=H, direction=direction)
    if layout:
        attrs["layout"] = 1
    if variant != "nobias":
        inits["B"] = _rand(rng, D, 2 * G * H)
    names.append("B" if variant != "nobias" else "")
    st = (D, B, H) if layout == 0 else (B, D, H)
    if variant == "seqlens":
        inits["L"] = np.full(B, T, np.int32)
    names.append("L" if variant == "seqlens" else "")
    feeds = {"X": _rand(rng, *((T, B, I) if layout == 0 else (B, T, I)), scale=1.0)}
    if variant in ("init", "peephole"):
        feeds["h0"] = _rand(rng, *st)
        names.append("h0")
        if kind == "LSTM":
            feeds["c0"] = _rand(rng, *st)
            names.append("c0")
    if variant == "peephole":
        inits["P"] = _rand(rng, D, 3 * H)
        names.append("P")
    if variant == "clip":
        attrs["clip"] = 0.5
    if variant == "input_forget":
        attrs["input_forget"] = 1
    if variant == "lbr":
        attrs["linear_before_reset"] = 1
    if variant == "acts":
        attrs["activations"] = (["Sigmoid", "Tanh", "Tanh"] if kind == "LSTM" else ["Sigmoid", "Tanh"]) * D
    while names and not names[-1]:
        names.pop()
    return names, attrs, inits, feeds


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("variant", ["plain", "nobias", "init", "peephole", "clip", "input_forget", "seqlens",
                                     "acts"])
def test_onnx_lstm_vs_ort(direction, layout, variant):
    from onnx import helper
    rng = np.random.default_rng(hash(("onnx-lstm", direction, layout, variant)) % 2**32)
    names, attrs, inits, feeds = _onnx_lstm_case("LSTM", direction, layout, variant, rng)
    outs = ["Y", "Y_h", "Y_c"]
    peer = _layout1_peer("LSTM", names, attrs, inits, feeds, outs) if layout else None
    _vs_ort(_onnx_model(helper.make_node("LSTM", names, outs, **attrs), feeds, outs, inits), feeds, peer=peer)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("variant", ["plain", "nobias", "init", "clip", "lbr", "seqlens", "acts"])
def test_onnx_gru_vs_ort(direction, layout, variant):
    from onnx import helper
    rng = np.random.default_rng(hash(("onnx-gru", direction, layout, variant)) % 2**32)
    names, attrs, inits, feeds = _onnx_lstm_case("GRU", direction, layout, variant, rng)
    outs = ["Y", "Y_h"]
    peer = _layout1_peer("GRU", names, attrs, inits, feeds, outs) if layout else None
    _vs_ort(_onnx_model(helper.make_node("GRU", names, outs, **attrs), feeds, outs, inits), feeds, peer=peer)


@pytest.mark.parametrize("opset", [11, 13, 20])
@pytest.mark.parametrize("outputs", [["Y"], ["", "Y_h"], ["", "", "Y_c"], ["Y", "", "Y_c"]])
def test_onnx_lstm_outputs_and_opsets(opset, outputs):
    """Whichever outputs are used; layout is an opset-14 attribute, so opset 11/13 models have none."""
    from onnx import helper
    rng = np.random.default_rng(11)
    names, attrs, inits, feeds = _onnx_lstm_case("LSTM", "bidirectional", 0, "init", rng)
    node = helper.make_node("LSTM", names, outputs, **attrs)
    _vs_ort(_onnx_model(node, feeds, [o for o in outputs if o], inits, opset=opset), feeds)


def test_onnx_lstm_weights_as_inputs():
    """W, R and B given at run time (not constants)."""
    from onnx import helper
    rng = np.random.default_rng(12)
    names, attrs, inits, feeds = _onnx_lstm_case("LSTM", "forward", 0, "plain", rng)
    feeds.update(inits)
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], **attrs)
    _vs_ort(_onnx_model(node, feeds, ["Y", "Y_h", "Y_c"], {}), feeds)


def _refused(data, *words):
    with pytest.raises(tinyinfer.TinyInferError) as e:
        tinyinfer.convert(data, None, verbose=False)
    for wd in words:
        assert wd in str(e.value), str(e.value)


def test_onnx_refusals():
    from onnx import helper
    rng = np.random.default_rng(13)
    names, attrs, inits, feeds = _onnx_lstm_case("LSTM", "forward", 0, "plain", rng)
    bad = dict(attrs, activations=["Sigmoid", "Relu", "Tanh"])
    _refused(_onnx_model(helper.make_node("LSTM", names, ["Y"], **bad), feeds, ["Y"], inits), "activations")
    names2 = ["X", "W", "R", "B", "L"]
    inits2 = dict(inits, L=np.array([4, 9, 4], np.int32))   # past the sequence length (4)
    _refused(_onnx_model(helper.make_node("LSTM", names2, ["Y"], **attrs), feeds, ["Y"], inits2), "sequence_lens")
    feeds3 = dict(feeds, L=np.array([4, 4, 4], np.float32))  # run-time lengths of another dtype than int32
    _refused(_onnx_model(helper.make_node("LSTM", names2, ["Y"], **attrs), feeds3, ["Y"], inits), "sequence_lens")
    gnames, gattrs, ginits, gfeeds = _onnx_lstm_case("GRU", "forward", 0, "plain", rng)
    bad = dict(gattrs, activations=["HardSigmoid", "Tanh"])
    _refused(_onnx_model(helper.make_node("GRU", gnames, ["Y"], **bad), gfeeds, ["Y"], ginits), "activations")


# ---------------------------------------------------------------- DynamicQuantizeLSTM (onnxruntime quantize_dynamic)

def _dequantized(qm, name, scale, zp):
    """The float weights [D, 4H, K] of an 8-bit DynamicQuantizeLSTM weight [D, K, 4H] (numpy, written here)."""
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in qm.graph.initializer}
    q = inits[name].astype(np.float32)
    D, K, G = q.shape
    s = inits[scale].astype(np.float32).reshape(D, 1, -1)
    z = inits[zp].astype(np.float32).reshape(D, 1, -1)
    return ((q - z) * s).transpose(0, 2, 1)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_quantize_lstm_vs_ort(tmp_path, direction, per_channel):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    rng = np.random.default_rng(21)
    T, B, I, H = 6, 2, 24, 32
    names, attrs, inits, feeds = _onnx_lstm_case("LSTM", direction, 0, "plain", rng, T=T, B=B, I=I, H=H)
    src = tmp_path / "lstm.onnx"
    src.write_bytes(_onnx_model(helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], **attrs), feeds,
                                ["Y", "Y_h", "Y_c"], inits))
    dst = tmp_path / "lstm_q.onnx"
    quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8)
    qm = onnx.load(str(dst))
    assert [n.op_type for n in qm.graph.node] == ["DynamicQuantizeLSTM"]
    data = dst.read_bytes()
    report = tinyinfer.convert(data, None, verbose=False)
    assert any("W_quantized" in k for k in report.kept_precision), report.kept_precision  # 8-bit in the file
    with tinyinfer.Model(report.data) as m:
        got = m.run(feeds)
    # The float LSTM on the dequantized weights (numpy reference): float rounding only.
    w = _dequantized(qm, "W_quantized", "W_scale", "W_zero_point")
    r = _dequantized(qm, "R_quantized", "R_scale", "R_zero_point")
    want = R.lstm(feeds["X"], w, r, inits["B"], direction=direction)
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, atol=3e-5, rtol=1e-4)
    # onnxruntime also quantizes X and h to uint8 at every step: within its own int8 error of the float LSTM.
    import onnxruntime as ort
    refs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    floats = R.lstm(feeds["X"], inits["W"], inits["R"], inits["B"], direction=direction)
    for g_, o_, f_ in zip(got, refs, floats):
        ort_err = float(np.abs(o_ - f_).max())
        assert float(np.abs(g_ - o_).max()) <= max(2 * ort_err, 0.02), (np.abs(g_ - o_).max(), ort_err)


def test_dynamic_quantize_lstm_float_weights_option(tmp_path):
    """keep_int8_weights=False dequantizes at conversion: same outputs, float32 weights in the file."""
    pytest.importorskip("onnxruntime")
    from onnx import helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    rng = np.random.default_rng(22)
    names, attrs, inits, feeds = _onnx_lstm_case("LSTM", "forward", 0, "init", rng, I=8, H=16)
    src = tmp_path / "lstm.onnx"
    src.write_bytes(_onnx_model(helper.make_node("LSTM", names, ["Y"], **attrs), feeds, ["Y"], inits))
    dst = tmp_path / "lstm_q.onnx"
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    outs = []
    for keep in (True, False):
        report = tinyinfer.convert(dst.read_bytes(), None, verbose=False, keep_int8_weights=keep)
        with tinyinfer.Model(report.data) as m:
            outs.append(m.run(feeds)[0])
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)


# ---------------------------------------------------------------- torch nn.LSTM / nn.GRU (ONNX export path)

def _rnn_net(lib, kind, *args, **cfg):
    """A module of `lib` (torch.nn or tinyinfer's nn) around one lib.LSTM / lib.GRU: forward(x, *state) with the
    initial states as separate inputs, the output and final states as a flat tuple."""
    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(lib, kind)(*args, **cfg)

        def forward(self, x, *state):
            st = None
            if state:
                st = tuple(state) if kind == "LSTM" else state[0]
            y, s = self.rnn(x, st)
            return (y,) + (s if isinstance(s, tuple) else (s,))
    return Net()


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("cfg", [dict(), dict(num_layers=2), dict(bidirectional=True),
                                 dict(num_layers=2, bidirectional=True, batch_first=True),
                                 dict(batch_first=True, bias=False)])
@pytest.mark.parametrize("with_state", [False, True])
def test_torch_rnn_vs_torch(kind, cfg, with_state):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    torch.manual_seed(7)
    net = _rnn_net(torch.nn, kind, 10, 12, **cfg).eval()

    L = cfg.get("num_layers", 1) * (2 if cfg.get("bidirectional") else 1)
    x = torch.randn(3, 7, 10)
    args = (x,)
    if with_state:
        args += (torch.randn(L, 7 if not cfg.get("batch_first") else 3, 12),)
        if kind == "LSTM":
            args += (torch.randn(*args[1].shape),)
    with torch.no_grad():
        refs = [t.numpy() for t in net(*args)]
    model = tinyinfer.from_torch(net, args)
    try:
        assert model.report.ops_out[kind] == cfg.get("num_layers", 1)
        outs = model.run([a.numpy() for a in args])
    finally:
        model.close()
    for g_, r_ in zip(outs, refs):
        assert g_.shape == r_.shape
        np.testing.assert_allclose(g_, r_, atol=2e-5, rtol=1e-4)


# ---------------------------------------------------------------- TFLite UNIDIRECTIONAL_SEQUENCE_LSTM vs LiteRT

def _tflite_lstm(rng, T, B, I, H, time_major, peephole=False, int8=False, cifg=False, projection=False,
                 layer_norm=False, cell_clip=0.0, activation=4):
    """A hand-built .tflite with one UNIDIRECTIONAL_SEQUENCE_LSTM (the writer of test_convert_tflite.py).
    Returns (bytes, the gate parameters in TFLite order) ; LiteRT is the peer."""
    tc = pytest.importorskip("test_convert_tflite")
    m = tc.Model()
    x = m.input("x", (T, B, I) if time_major else (B, T, I))
    prm = {}

    def weight(name, shape):
        a = _rand(rng, *shape)
        prm[name] = a
        if int8 and name[:2] in ("w_", "r_", "p_"):  # LiteRT's hybrid kernel: int8 weights, float biases
            s = float(np.abs(a).max()) / 127
            q = np.clip(np.round(a / s), -127, 127).astype(np.int8)
            prm[name] = q.astype(np.float32) * s
            return m.tensor(name, shape, np.int8, q, quant=([s], [0], 0))
        return m.const(name, a)

    ins = [x]
    for g in "ifco":
        ins.append(-1 if cifg and g == "i" else weight(f"w_{g}", (H, I)))
    for g in "ifco":
        ins.append(-1 if cifg and g == "i" else weight(f"r_{g}", (H, H)))
    for g in "ifo":
        ins.append(weight(f"p_{g}", (H,)) if peephole else -1)
    for g in "ifco":
        ins.append(-1 if cifg and g == "i" else weight(f"b_{g}", (H,)))
    ins += [weight("proj", (H, H)), -1] if projection else [-1, -1]
    ins.append(m.tensor("h_state", (B, H), variable=True))
    ins.append(m.tensor("c_state", (B, H), variable=True))
    ins += [weight(f"ln_{g}", (H,)) if layer_norm else -1 for g in "ifco"]
    y = m.tensor("y", (T, B, H) if time_major else (B, T, H))
    m.outputs.append(y)
    m.op("UNIDIRECTIONAL_SEQUENCE_LSTM", ins, [y], tc._opts(
        "UnidirectionalSequenceLSTMOptions", FusedActivationFunction=activation, CellClip=cell_clip,
        TimeMajor=time_major))
    return m.to_bytes(), prm


def _tflite_ref(prm, x, time_major, peephole):
    """The TFLite LSTM through the ONNX-order numpy reference (gates i, o, f, c)."""
    H = prm["w_i"].shape[0]
    w = np.concatenate([prm[f"w_{g}"] for g in "iofc"])[None]
    r = np.concatenate([prm[f"r_{g}"] for g in "iofc"])[None]
    b = np.concatenate([prm[f"b_{g}"] for g in "iofc"] + [np.zeros(4 * H, np.float32)])[None]
    p = np.concatenate([prm[f"p_{g}"] for g in "iof"])[None] if peephole else None
    y = R.lstm(x, w, r, b, p=p, layout=0 if time_major else 1)[0]
    return y[:, 0] if time_major else y[:, :, 0]


def _litert(data, x):
    """LiteRT's outputs of the .tflite `data` on input x (a fresh interpreter: the LSTM state starts at zero)."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("int8", [False, True])
def test_tflite_unidirectional_lstm_vs_litert(time_major, peephole, int8):
    rng = np.random.default_rng(31)
    T, B, I, H = 6, 2, 5, 7
    data, prm = _tflite_lstm(rng, T, B, I, H, time_major, peephole=peephole, int8=int8)
    x = _rand(rng, *((T, B, I) if time_major else (B, T, I)), scale=1.0)
    (ref,) = _litert(data, x)
    report = tinyinfer.convert(data, None, verbose=False)
    with tinyinfer.Model(report.data) as m:
        (got,) = m.run(x)
        again = m.run(x)[0]
    np.testing.assert_array_equal(got, again)  # no state carried between runs
    assert got.shape == ref.shape
    # The numpy reference on the (dequantized) weights: float rounding only.
    np.testing.assert_allclose(got, _tflite_ref(prm, x, time_major, peephole), atol=2e-5, rtol=1e-4)
    if int8:
        # LiteRT's hybrid kernel quantizes x and h to int8 at every step.
        assert float(np.abs(got - ref).max()) < 0.05
    else:
        np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("what,words", [
    (dict(cifg=True), "CIFG"), (dict(projection=True), "projection"), (dict(layer_norm=True), "layer norm"),
    (dict(cell_clip=3.0), "cell_clip"), (dict(activation=1), "RELU")])
def test_tflite_lstm_refusals(what, words):
    rng = np.random.default_rng(32)
    data, _ = _tflite_lstm(rng, 3, 1, 4, 4, False, **what)
    with pytest.raises(tinyinfer.TinyInferError) as e:
        tinyinfer.convert(data, None, verbose=False)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in str(e.value) and words in str(e.value), str(e.value)


# ---------------------------------------------------------------- quantizer, work limit

def _lstm_gru_model(rng, T=6, B=1, I=8, H=16):
    """x -> FullyConnected -> LSTM (bidirectional) -> GRU -> FullyConnected: float32 weights."""
    g = GraphBuilder("rnn")
    x = g.input("x", (T, B, I))
    fc = g.op("FullyConnected", x, g.const("fc_w", _rand(rng, I, I)), g.const("fc_b", _rand(rng, I)))
    w, r, b, *_ = _lstm_params(rng, 2, H, I, B, 0, init=False)
    y, _ = g.op("LSTM", fc, g.const("lw", w), g.const("lr", r), g.const("lb", b), outputs=2, mode=2)
    y = g.op("Reshape", y, shape=[T, B, 2 * H])
    gw, gr, gb = _rand(rng, 1, 3 * H, 2 * H), _rand(rng, 1, 3 * H, H), _rand(rng, 1, 6 * H)
    gy = g.op("GRU", y, g.const("gw", gw), g.const("gr", gr), g.const("gb", gb), linear_before_reset=1)
    gy = g.op("Reshape", gy, shape=[T * B, H])
    out = g.op("FullyConnected", gy, g.const("out_w", _rand(rng, 4, H)), g.const("out_b", _rand(rng, 4)))
    g.output(out)
    return g.to_bytes()


def _op_dtypes(model, op):
    tensors = model.tensors()
    return [tuple(tensors[i].dtype for i in d.inputs if i >= 0) for d in model.ops() if d.op == op]


def test_int8_static_keeps_lstm_and_gru_float():
    rng = np.random.default_rng(41)
    data = _lstm_gru_model(rng)
    calib = [_rand(rng, 6, 1, 8, scale=1.0) for _ in range(16)]
    res = tinyinfer.quantize(data, mode="int8-static", calib=calib)
    with tinyinfer.Model(data) as f, tinyinfer.Model(res.data) as q:
        ops = [d.op for d in q.ops()]
        assert "Quantize" in ops  # the FullyConnected layers went int8
        for op in ("LSTM", "GRU"):
            (dtypes,) = _op_dtypes(q, op)
            assert all(dt == np.float32 for dt in dtypes), (op, dtypes)
        x = calib[0]
        ref, got = f.run(x)[0], q.run(x)[0]
    sqnr = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2))
    assert sqnr > 25, sqnr


def test_fp16_and_int8_dynamic_of_recurrent_model():
    """fp16 stores W and R as float16 (Dequantize folded at load); int8-dynamic leaves the recurrent ops float."""
    rng = np.random.default_rng(42)
    data = _lstm_gru_model(rng)
    x = _rand(rng, 6, 1, 8, scale=1.0)
    with tinyinfer.Model(data) as f:
        ref = f.run(x)[0]
    half = tinyinfer.quantize(data, mode="fp16")
    assert half.dst_bytes < 0.6 * half.src_bytes
    with tinyinfer.Model(half.data) as m:
        np.testing.assert_allclose(m.run(x)[0], ref, atol=5e-3 * max(1, np.abs(ref).max()))
    dyn = tinyinfer.quantize(data, mode="int8-dynamic")
    with tinyinfer.Model(dyn.data) as m:
        for op in ("LSTM", "GRU"):
            (dtypes,) = _op_dtypes(m, op)
            assert all(dt == np.float32 for dt in dtypes)
        got = m.run(x)[0]
    assert np.abs(got - ref).max() < 0.05 * max(1, np.abs(ref).max())


def test_work_limit_counts_recurrent_steps():
    rng = np.random.default_rng(43)
    T, B, I, H = 50, 3, 20, 30
    w, r, b, *_ = _lstm_params(rng, 2, H, I, B, 0, init=False)
    g = GraphBuilder("lstm")
    x = g.input("x", (T, B, I))
    g.output(g.op("LSTM", x, g.const("w", w), g.const("r", r), g.const("b", b), mode=2))
    data = g.to_bytes()
    work = T * B * (w.size + r.size)  # multiply-adds: steps x batch x directions x 4H x (I + H)
    work += T * B * I + T * 2 * B * H  # the graph input and output, copied in and out (docs/format.md)
    with tinyinfer.load(data, max_work=work) as m:
        m.run(_rand(rng, T, B, I))
        with pytest.raises(tinyinfer.TinyInferError, match="work limit"):
            m.session(max_work=work - 1)


# ---------------------------------------------------------------- tinyinfer.nn LSTM / GRU (state_dict path)

@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("cfg", [dict(), dict(num_layers=2, bidirectional=True),
                                 dict(num_layers=2, bidirectional=True, batch_first=True), dict(bias=False)])
@pytest.mark.parametrize("with_state", [False, True])
def test_nn_builder_rnn_vs_torch(kind, cfg, with_state):
    torch = pytest.importorskip("torch")
    from tinyinfer.convert import nn as tnn
    torch.manual_seed(9)
    L = cfg.get("num_layers", 1) * (2 if cfg.get("bidirectional") else 1)
    T, B = 5, 3

    ref_net = _rnn_net(torch.nn, kind, 6, 8, **cfg).eval()
    x = torch.randn(*((B, T, 6) if cfg.get("batch_first") else (T, B, 6)))
    args = [x]
    if with_state:
        args += [torch.randn(L, B, 8) for _ in range(2 if kind == "LSTM" else 1)]
    with torch.no_grad():
        refs = [t.numpy() for t in ref_net(*args)]
    ours = _rnn_net(tnn, kind, 6, 8, **cfg)
    ours.load_state_dict(ref_net.state_dict())
    b = ours.to_builder([tuple(a.shape) for a in args])
    with tinyinfer.load(b.to_bytes()) as m:
        outs = m.run([a.numpy() for a in args])
    for g_, r_ in zip(outs, refs):
        assert g_.shape == r_.shape
        np.testing.assert_allclose(g_, r_, atol=2e-5, rtol=1e-4)


def test_nn_builder_refuses_projection():
    from tinyinfer.convert import nn as tnn
    with pytest.raises(tinyinfer.TinyInferError, match="proj_size"):
        tnn.LSTM(4, 8, proj_size=2)


def test_nn_from_torch_bare_lstm():
    """tinyinfer.nn.from_torch of a bare nn.LSTM: its (output, (h_n, c_n)) become three graph outputs."""
    torch = pytest.importorskip("torch")
    from tinyinfer.convert import nn as tnn
    torch.manual_seed(10)
    lstm = torch.nn.LSTM(4, 6, num_layers=2).eval()
    ours = tnn.from_torch(lstm)
    ours.load_state_dict(lstm.state_dict())
    x = torch.randn(7, 2, 4)
    with torch.no_grad():
        y, (h, c) = lstm(x)
    with tinyinfer.load(ours.to_builder((7, 2, 4)).to_bytes()) as m:
        outs = m.run(x.numpy())
    for g_, r_ in zip(outs, (y, h, c)):
        np.testing.assert_allclose(g_, r_.numpy(), atol=2e-5, rtol=1e-4)


def _tflite_bilstm(rng, T, B, I, H, time_major, merge, peephole=False):
    tc = pytest.importorskip("test_convert_tflite")
    m = tc.Model()
    x = m.input("x", (T, B, I) if time_major else (B, T, I))
    prm = {}

    def group(d):
        ins = []
        for kind, shape in (("w", (H, I)), ("r", (H, H))):
            for g in "ifco":
                prm[f"{d}{kind}_{g}"] = _rand(rng, *shape)
                ins.append(m.const(f"{d}{kind}_{g}", prm[f"{d}{kind}_{g}"]))
        for g in "ifo":
            if peephole:
                prm[f"{d}p_{g}"] = _rand(rng, H)
                ins.append(m.const(f"{d}p_{g}", prm[f"{d}p_{g}"]))
            else:
                ins.append(-1)
        for g in "ifco":
            prm[f"{d}b_{g}"] = _rand(rng, H)
            ins.append(m.const(f"{d}b_{g}", prm[f"{d}b_{g}"]))
        return ins + [-1, -1]

    ins = [x] + group("f") + group("b")
    ins += [m.tensor(n, (B, H), variable=True) for n in ("fh", "fc", "bh", "bc")]
    ins += [-1] * 9
    lead = (T, B) if time_major else (B, T)
    outs = [m.tensor("y", lead + (2 * H,))] if merge else [m.tensor("y_fw", lead + (H,)), m.tensor("y_bw", lead + (H,))]
    m.outputs += outs
    m.op("BIDIRECTIONAL_SEQUENCE_LSTM", ins, outs, tc._opts(
        "BidirectionalSequenceLSTMOptions", FusedActivationFunction=4, TimeMajor=time_major, MergeOutputs=merge))
    return m.to_bytes(), prm


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("peephole", [False, True])
def test_tflite_bidirectional_lstm_vs_litert(time_major, merge, peephole):
    rng = np.random.default_rng(33)
    T, B, I, H = 5, 2, 4, 6
    data, prm = _tflite_bilstm(rng, T, B, I, H, time_major, merge, peephole)
    x = _rand(rng, *((T, B, I) if time_major else (B, T, I)), scale=1.0)
    refs = _litert(data, x)
    report = tinyinfer.convert(data, None, verbose=False)
    with tinyinfer.Model(report.data) as m:
        got = m.run(x)
    assert [g.shape for g in got] == [r.shape for r in refs]
    for g_, r_ in zip(got, refs):
        if merge and not time_major:
            # LiteRT 2.3 writes batch entries past the first at wrong offsets of a merged batch-major output
            # (they change from run to run): compare batch 0 with it, all of it with numpy below.
            g_, r_ = g_[:1], r_[:1]
        np.testing.assert_allclose(g_, r_, atol=2e-5, rtol=1e-4)
    # and the numpy reference, direction by direction
    fw = {k[1:]: v for k, v in prm.items() if k[0] == "f"}
    bw = {k[1:]: v for k, v in prm.items() if k[0] == "b"}
    want = [_tflite_ref(fw, x, time_major, peephole)]
    xr = x[::-1] if time_major else x[:, ::-1]
    yb = _tflite_ref(bw, np.ascontiguousarray(xr), time_major, peephole)
    want.append(yb[::-1] if time_major else yb[:, ::-1])
    if merge:
        want = [np.concatenate(want, axis=-1)]
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, atol=2e-5, rtol=1e-4)


def test_quantize_dynamic_of_torch_lstm_model(tmp_path):
    """onnxruntime's quantize_dynamic of a torch-exported 2-layer bidirectional LSTM + Linear: DynamicQuantizeLSTM
    nodes whose outputs feed Transpose/Reshape and an 8-bit MatMulInteger (shape inference goes through them)."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(16, 32, num_layers=2, bidirectional=True)
            self.fc = torch.nn.Linear(64, 5)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    m, x = M().eval(), torch.randn(10, 2, 16)
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    torch.onnx.export(m, (x,), str(src), opset_version=13, dynamo=False)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    assert [n.op_type for n in onnx.load(str(dst)).graph.node].count("DynamicQuantizeLSTM") == 2
    feeds = {onnx.load(str(dst)).graph.input[0].name: x.numpy()}
    ref = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with torch.no_grad():
        fl = m(x).numpy()
    report = tinyinfer.convert(str(dst), None, verbose=False)
    assert report.ops_out["LSTM"] == 2
    with tinyinfer.Model(report.data) as mm:
        got = mm.run(x.numpy())[0]
    ort_err = float(np.abs(ref - fl).max())  # onnxruntime's own int8 error against float
    assert float(np.abs(got - ref).max()) <= max(1.5 * ort_err, 1e-3)


# ---------------------------------------------------------------- per-entry sequence_lens

@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("runtime", [False, True])
def test_onnx_per_entry_sequence_lens_vs_ort(kind, direction, layout, runtime):
    """Each batch entry stops at its own length: Y zero past it, Y_h (Y_c) from its last step; the lengths a
    constant or a run-time int32 input (onnxruntime's outputs; layout 1 through the transposed layout-0 op)."""
    from onnx import TensorProto, helper, numpy_helper
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(hash(("lens", kind, direction, layout, runtime)) % 2**32)
    T, B = 5, 4
    names, attrs, inits, feeds = _onnx_lstm_case(kind, direction, 0, "init", rng, T=T, B=B)
    lens = np.array([5, 2, 0, 3], np.int32)
    names = names[:4] + ["L"] + names[5:]
    outs = ["Y", "Y_h", "Y_c"] if kind == "LSTM" else ["Y", "Y_h"]

    def model(attrs, feeds, with_lens_input):
        ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in feeds.items()]
        consts = dict(inits)
        if with_lens_input:
            ins.append(helper.make_tensor_value_info("L", TensorProto.INT32, [B]))
        else:
            consts["L"] = lens
        g = helper.make_graph([helper.make_node(kind, names, outs, **attrs)], "rnn", ins,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
                              [numpy_helper.from_array(np.asarray(a), name=k) for k, a in consts.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
        m.ir_version = 7
        return m.SerializeToString()

    run_feeds = dict(feeds, L=lens) if runtime else dict(feeds)
    peer = ort.InferenceSession(model(attrs, feeds, runtime), providers=["CPUExecutionProvider"]).run(None, run_feeds)
    if layout:
        tr = {k: np.ascontiguousarray(v.transpose(1, 0, 2)) for k, v in feeds.items()}
        data = model(dict(attrs, layout=1), tr, runtime)
        run_feeds = dict(tr, L=lens) if runtime else tr
        peer = [o.transpose(2, 0, 1, 3) if o.ndim == 4 else o.transpose(1, 0, 2) for o in peer]
    else:
        data = model(attrs, feeds, runtime)
    with tinyinfer.Model(tinyinfer.convert(data, None, verbose=False).data) as m:
        got = m.run(run_feeds)
        if runtime:
            with pytest.raises(tinyinfer.TinyInferRuntimeError, match="sequence_lens"):
                m.run(dict(run_feeds, L=np.array([5, 6, 1, 1], np.int32)))
    for g_, p_ in zip(got, peer):
        np.testing.assert_allclose(g_, p_, atol=2e-5, rtol=1e-4)
    y = got[0]
    for n, ln in enumerate(lens):   # the zeros past each length, also checked by themselves
        assert not np.any((y[ln:, :, n] if layout == 0 else y[n, ln:]))
