"""MediaPipe's TFLite custom ops MaxPoolingWithArgmax2D and MaxUnpooling2D
(convert/tflite_custom.py): against numpy references written from their
definitions, against LiteRT where its XNNPACK delegate runs them, and their
refusals."""

import struct

import numpy as np
import pytest

import tinyinfer

pytest.importorskip("tflite")


def custom_model(code, inputs, outputs, options):
    """A one-op .tflite: CUSTOM `code` with raw custom_options; inputs and
    outputs: (name, shape), every input a graph input."""
    from tflite_custom_build import custom_op_model
    return custom_op_model(code, [(n, s, None) for n, s in inputs + outputs], len(inputs), options)


def pool_options(padding=1, sw=2, sh=2, fw=2, fh=2, act=0, length=None):
    raw = struct.pack("<6i", padding, sw, sh, fw, fh, act) + bytes(16)  # + the computed padding MediaPipe fills
    return raw if length is None else raw[:length]


def argmax_reference(x, b, act):
    """MediaPipe's MaxPoolArgmax, from its definition: per window the first
    strictly greater value in raster order; index dy * b + dx + 0.1."""
    n, h, w, c = x.shape
    vals = np.empty((n, h // b, w // b, c), np.float32)
    idx = np.empty_like(vals)
    for oy in range(h // b):
        for ox in range(w // b):
            for bi in range(n):
                for ch in range(c):
                    best, at = -np.finfo(np.float32).max, 0
                    for dy in range(b):
                        for dx in range(b):
                            v = x[bi, oy * b + dy, ox * b + dx, ch]
                            if v > best:
                                best, at = v, dy * b + dx
                    vals[bi, oy, ox, ch] = best
                    idx[bi, oy, ox, ch] = np.float32(at) + np.float32(0.1)
    lo, hi = {0: (-np.inf, np.inf), 1: (0, np.inf), 2: (-1, 1), 3: (0, 6)}[act]
    return np.clip(vals, lo, hi), idx


def unpool_reference(x, idx, b):
    """MediaPipe's MaxUnpooling, from its definition (padding 0 when the
    windows equal their strides): zeros, each value at its window position."""
    n, h, w, c = x.shape
    out = np.zeros((n, h * b, w * b, c), np.float32)
    for bi in range(n):
        for y in range(h):
            for xx in range(w):
                for ch in range(c):
                    k = int(idx[bi, y, xx, ch])
                    oy, ox = y * b + k // b, xx * b + k % b
                    if 0 <= oy < h * b and 0 <= ox < w * b:
                        out[bi, oy, ox, ch] = x[bi, y, xx, ch]
    return out


def litert(data, xs):
    interp = pytest.importorskip("ai_edge_litert.interpreter")
    try:
        it = interp.Interpreter(model_content=data)
        it.allocate_tensors()
    except (RuntimeError, ValueError) as e:  # no resolver for the custom op in this build
        pytest.skip(f"LiteRT does not run it: {e}")
    for d, x in zip(it.get_input_details(), xs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


@pytest.mark.parametrize("shape,b,act,padding", [
    ((1, 4, 6, 3), 2, 0, 1), ((2, 6, 6, 5), 3, 1, 2), ((1, 8, 4, 16), 2, 3, 1), ((1, 3, 3, 2), 1, 0, 2)])
def test_max_pooling_with_argmax_matches_reference(rng, shape, b, act, padding, tmp_path):
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = 5.0  # a tie in the first window: the first one wins
    n, h, w, c = shape
    out_shape = (n, h // b, w // b, c)
    data = custom_model("MaxPoolingWithArgmax2D", [("x", shape)], [("values", out_shape), ("indices", out_shape)],
                        pool_options(padding, b, b, b, b, act))
    vals, idx = argmax_reference(x, b, act)
    report = tinyinfer.convert(data, tmp_path / "m.tinf", verbose=False)
    assert report.ops_in["CUSTOM:MaxPoolingWithArgmax2D"] == 1
    with tinyinfer.load(str(tmp_path / "m.tinf"), threads=1) as m:
        got_vals, got_idx = m.run(x)
    np.testing.assert_array_equal(got_vals, vals)
    np.testing.assert_array_equal(got_idx, idx)
    if b == 2 and act == 0:
        # LiteRT runs the op in its XNNPACK delegate, which writes the index
        # as a uint32 into the float32 tensor, column by column (dx * b + dy;
        # its unpooling reads it so); MediaPipe's own kernel, which this
        # follows, writes dy * b + dx + 0.1.
        ref_vals, ref_idx = litert(data, [x])
        np.testing.assert_array_equal(got_vals, ref_vals)
        xnn = ref_idx.view(np.uint32)
        np.testing.assert_array_equal(np.floor(got_idx).astype(np.uint32), (xnn % b) * b + xnn // b)


@pytest.mark.parametrize("shape,b", [((1, 3, 4, 3), 2), ((2, 2, 2, 5), 3), ((1, 4, 4, 8), 1)])
def test_max_unpooling_matches_reference(rng, shape, b, tmp_path):
    x = rng.standard_normal(shape).astype(np.float32)
    idx = (rng.integers(0, b * b, shape) + 0.1).astype(np.float32)
    n, h, w, c = shape
    out_shape = (n, h * b, w * b, c)
    data = custom_model("MaxUnpooling2D", [("x", shape), ("indices", shape)], [("y", out_shape)],
                        pool_options(2, b, b, b, b, 0))  # VALID: XNNPACK's unpooling refuses SAME
    report = tinyinfer.convert(data, tmp_path / "m.tinf", verbose=False)
    assert report.ops_in["CUSTOM:MaxUnpooling2D"] == 1
    with tinyinfer.load(str(tmp_path / "m.tinf"), threads=1) as m:
        (y,) = m.run([x, idx])
    np.testing.assert_array_equal(y, unpool_reference(x, idx, b))
    if b == 2:
        # LiteRT's XNNPACK unpooling reads the index as a uint32, dx * b + dy (above).
        k = np.floor(idx).astype(np.uint32)
        (ref,) = litert(data, [x, ((k % b) * b + k // b).astype(np.uint32).view(np.float32)])
        np.testing.assert_array_equal(y, ref)


def test_pool_then_unpool_round_trip(rng, tmp_path):
    """The pair as a segmentation net uses it: unpooling the pooled maxima at
    their indices puts every maximum back where it was."""
    x = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    pooled = custom_model("MaxPoolingWithArgmax2D", [("x", x.shape)],
                          [("v", (1, 4, 4, 4)), ("i", (1, 4, 4, 4))], pool_options())
    unpool = custom_model("MaxUnpooling2D", [("v", (1, 4, 4, 4)), ("i", (1, 4, 4, 4))],
                          [("y", x.shape)], pool_options())
    tinyinfer.convert(pooled, tmp_path / "p.tinf", verbose=False)
    tinyinfer.convert(unpool, tmp_path / "u.tinf", verbose=False)
    with tinyinfer.load(str(tmp_path / "p.tinf")) as p, tinyinfer.load(str(tmp_path / "u.tinf")) as u:
        v, i = p.run(x)
        (y,) = u.run([v, i])
    windows = x.reshape(1, 4, 2, 4, 2, 4).max(axis=(2, 4))
    np.testing.assert_array_equal(v, windows)
    # one value per window, the maximum, where it was; zeros elsewhere
    assert np.array_equal((y != 0).reshape(1, 4, 2, 4, 2, 4).sum(axis=(2, 4)), np.ones((1, 4, 4, 4), int))
    np.testing.assert_array_equal(y.reshape(1, 4, 2, 4, 2, 4).sum(axis=(2, 4)), windows)
    assert np.all((y == 0) | (y == x))


def test_out_of_window_indices_are_dropped(tmp_path):
    x = np.float32([1, 2, 3, 4]).reshape(1, 2, 2, 1)
    idx = np.float32([0.1, -1.0, 4.2, 3.1]).reshape(1, 2, 2, 1)  # -1 and 4 name no position of a 2x2 window
    data = custom_model("MaxUnpooling2D", [("x", x.shape), ("indices", x.shape)], [("y", (1, 4, 4, 1))],
                        pool_options())
    tinyinfer.convert(data, tmp_path / "m.tinf", verbose=False)
    with tinyinfer.load(str(tmp_path / "m.tinf")) as m:
        (y,) = m.run([x, idx])
    want = np.zeros((1, 4, 4, 1), np.float32)
    want[0, 0, 0, 0], want[0, 3, 3, 0] = 1, 4
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("bad", ["short_options", "padding", "window_not_stride", "not_square", "ragged",
                                 "out_shape"])
def test_refusals(bad, tmp_path):
    shape, out = (1, 4, 4, 2), (1, 2, 2, 2)
    opts = dict(padding=1, sw=2, sh=2, fw=2, fh=2, act=0)
    if bad == "short_options":
        opts["length"] = 20
    elif bad == "padding":
        opts["padding"] = 0
    elif bad == "window_not_stride":
        opts.update(fw=3, fh=3)
    elif bad == "not_square":
        opts.update(sw=1, fw=1)
    elif bad == "ragged":
        shape, out = (1, 5, 4, 2), (1, 3, 2, 2)
    else:
        out = (1, 3, 2, 2)
    data = custom_model("MaxPoolingWithArgmax2D", [("x", shape)], [("v", out), ("i", out)], pool_options(**opts))
    with pytest.raises(tinyinfer.UnsupportedOpError, match="MaxPoolingWithArgmax2D"):
        tinyinfer.convert(data, tmp_path / "m.tinf", verbose=False)
