"""LSTM and GRU (ops 71, 72): the core ops against plain-loop numpy references
written here, the ONNX converter against onnxruntime (models built with
onnx.helper, torch-exported nn.LSTM / nn.GRU, com.microsoft.DynamicQuantizeLSTM
from onnxruntime's quantize_dynamic), the TFLite UNIDIRECTIONAL_SEQUENCE_LSTM
against LiteRT, bad input, and the quantizer leaving them float."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer import GraphBuilder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- references

def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _clip(x, clip):
    return np.clip(x, -clip, clip) if clip else x


def ref_lstm(x, w, r, b=None, h0=None, c0=None, p=None, direction="forward", layout=0, clip=0.0,
             input_forget=False):
    """ONNX LSTM, plain loops in float64 (gate order i, o, f, c)."""
    x = x.astype(np.float64)
    if layout == 1:
        x = x.transpose(1, 0, 2)
    T, B, _ = x.shape
    D, G, _ = w.shape
    H = G // 4
    Y = np.zeros((T, D, B, H))
    Yh = np.zeros((D, B, H))
    Yc = np.zeros((D, B, H))
    if h0 is not None and layout == 1:
        h0 = h0.transpose(1, 0, 2)
    if c0 is not None and layout == 1:
        c0 = c0.transpose(1, 0, 2)
    for d in range(D):
        W, R = w[d].astype(np.float64), r[d].astype(np.float64)
        bias = np.zeros(8 * H) if b is None else b[d].astype(np.float64)
        P = np.zeros(3 * H) if p is None else p[d].astype(np.float64)
        reverse = direction == "reverse" or d == 1
        for n in range(B):
            h = np.zeros(H) if h0 is None else h0[d, n].astype(np.float64)
            c = np.zeros(H) if c0 is None else c0[d, n].astype(np.float64)
            steps = range(T - 1, -1, -1) if reverse else range(T)
            for t in steps:
                g = W @ x[t, n] + R @ h + bias[:4 * H] + bias[4 * H:]
                gi, go, gf, gc = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
                i = _sig(_clip(gi + P[:H] * c, clip))
                f = 1 - i if input_forget else _sig(_clip(gf + P[2 * H:] * c, clip))
                cand = np.tanh(_clip(gc, clip))
                c = f * c + i * cand
                o = _sig(_clip(go + P[H:2 * H] * c, clip))
                h = o * np.tanh(c)
                Y[t, d, n] = h
            Yh[d, n] = h
            Yc[d, n] = c
    if layout == 1:
        return Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
    return Y, Yh, Yc


def ref_gru(x, w, r, b=None, h0=None, direction="forward", layout=0, clip=0.0, linear_before_reset=0):
    """ONNX GRU, plain loops in float64 (gate order z, r, h)."""
    x = x.astype(np.float64)
    if layout == 1:
        x = x.transpose(1, 0, 2)
    T, B, _ = x.shape
    D, G, _ = w.shape
    H = G // 3
    Y = np.zeros((T, D, B, H))
    Yh = np.zeros((D, B, H))
    if h0 is not None and layout == 1:
        h0 = h0.transpose(1, 0, 2)
    for d in range(D):
        W, R = w[d].astype(np.float64), r[d].astype(np.float64)
        bias = np.zeros(6 * H) if b is None else b[d].astype(np.float64)
        Wb, Rb = bias[:3 * H], bias[3 * H:]
        reverse = direction == "reverse" or d == 1
        for n in range(B):
            h = np.zeros(H) if h0 is None else h0[d, n].astype(np.float64)
            steps = range(T - 1, -1, -1) if reverse else range(T)
            for t in steps:
                xt = x[t, n]
                z = _sig(_clip(W[:H] @ xt + R[:H] @ h + Wb[:H] + Rb[:H], clip))
                rr = _sig(_clip(W[H:2 * H] @ xt + R[H:2 * H] @ h + Wb[H:2 * H] + Rb[H:2 * H], clip))
                if linear_before_reset:
                    pre = W[2 * H:] @ xt + rr * (R[2 * H:] @ h + Rb[2 * H:]) + Wb[2 * H:]
                else:
                    pre = W[2 * H:] @ xt + R[2 * H:] @ (rr * h) + Rb[2 * H:] + Wb[2 * H:]
                hh = np.tanh(_clip(pre, clip))
                h = (1 - z) * hh + z * h
                Y[t, d, n] = h
            Yh[d, n] = h
    if layout == 1:
        return Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2)
    return Y, Yh


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
    want = ref_lstm(x, w, r, b, h0, c0, p, direction, layout, clip, variant == "input_forget")
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
    want = ref_gru(x, w, r, b, h0, direction, layout, clip, lbr)
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
    for g_, w_ in zip(got, ref_lstm(x, w, r, b, direction="bidirectional")):
        np.testing.assert_allclose(g_, w_, atol=3e-5, rtol=1e-4)


def test_lstm_only_y_output():
    rng = np.random.default_rng(4)
    w, r, b, *_ = _lstm_params(rng, 1, 4, 3, 2, 0, init=False)
    x = _rand(rng, 3, 2, 3)
    (y,) = _run_builder("LSTM", x, [w, r, b], 1)
    np.testing.assert_allclose(y, ref_lstm(x, w, r, b)[0], atol=2e-5)


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
