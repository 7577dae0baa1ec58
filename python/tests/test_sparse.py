"""Sparse kernels (FullyConnected, 1x1 Conv2D; float32 and int8) against
numpy and against the dense kernels, their automatic choice, and the sparse
encoding of constants in .tinf files (round trip, size, hostile bytes)."""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from conftest import assert_close

HERE = os.path.dirname(os.path.abspath(__file__))


def sparse_weights(rng, shape, sparsity):
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < sparsity] = 0
    return w


def fc_model(w, b, m, act=0):
    g = tinyinfer.GraphBuilder("fc")
    x = g.input("x", (m, w.shape[1]))
    g.output(g.op("FullyConnected", x, g.const("w", w), None if b is None else g.const("b", b), activation=act))
    return g.to_bytes()


def conv1x1_model(w, b, shape, act=0):
    """w [Cout, Cin] as a 1x1 Conv2D on NHWC input of `shape`."""
    g = tinyinfer.GraphBuilder("conv")
    x = g.input("x", shape)
    g.output(g.op("Conv2D", x, g.const("w", w.reshape(w.shape[0], 1, 1, w.shape[1])),
                  None if b is None else g.const("b", b), activation=act))
    return g.to_bytes()


def act_ref(y, act):
    return {0: y, 1: np.maximum(y, 0), 2: np.clip(y, 0, 6), 3: np.clip(y, -1, 1)}[act]


def sparse_ops(model):
    return [p for p in model.passes if p.startswith("sparse kernel")]


@pytest.mark.parametrize("m,n,k,sparsity,act,bias", [
    (1, 64, 300, 0.9, 1, True), (1, 9, 40, 0.5, 0, False), (3, 33, 70, 0.8, 2, True),
    (37, 16, 48, 0.7, 0, True), (70, 130, 129, 0.95, 1, False), (5, 20, 19, 0.99, 3, True)])
def test_float_fully_connected_matches_numpy(rng, m, n, k, sparsity, act, bias):
    w = sparse_weights(rng, (n, k), sparsity)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    x = rng.standard_normal((m, k)).astype(np.float32)
    ref = act_ref(x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b), act)
    data = fc_model(w, b, m, act)
    with tinyinfer.load(data, sparse="always") as s:
        assert sparse_ops(s), s.passes
        assert_close(s.run(x)[0], ref, rtol=1e-5, atol=1e-5)
        # Another batch size (a session of its own) on the same sparse weights.
        x2 = rng.standard_normal((m + 9, k)).astype(np.float32)
        ref2 = act_ref(x2.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b), act)
        assert_close(s.run(x2)[0], ref2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,cout,sparsity", [
    ((1, 7, 9, 24), 40, 0.8), ((2, 5, 5, 64), 16, 0.9), ((1, 14, 14, 32), 96, 0.7), ((1, 1, 3, 64), 5, 0.5)])
def test_float_conv1x1_matches_numpy(rng, shape, cout, sparsity):
    w = sparse_weights(rng, (cout, shape[3]), sparsity)
    b = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    ref = np.maximum(np.einsum("nhwc,oc->nhwo", x.astype(np.float64), w.astype(np.float64)) + b, 0)
    with tinyinfer.load(conv1x1_model(w, b, shape, act=1), sparse="always") as s:
        assert sparse_ops(s)
        assert_close(s.run(x)[0], ref, rtol=1e-5, atol=1e-5)


# Every count of vectors of rows a tile can hold (1 to 8 vectors of 4, 8 or
# 16 rows by level), partial vectors, more rows than one tile, and input
# widths on both sides of the large-k split (two passes of at most 4 vectors).
TILE_ROWS = [2, 5, 17, 31, 47, 50, 66, 81, 97, 113, 127, 128, 129, 200, 257]


@pytest.mark.parametrize("k", [24, 130])
def test_float_tiles_of_every_row_count_match_numpy(rng, k):
    w = sparse_weights(rng, (37, k), 0.8)
    b = rng.standard_normal(37).astype(np.float32)
    for m in TILE_ROWS:
        x = rng.standard_normal((m, k)).astype(np.float32)
        ref = np.clip(x.astype(np.float64) @ w.T.astype(np.float64) + b, 0, 6)
        with tinyinfer.load(fc_model(w, b, m, act=2), sparse="always") as s:
            assert sparse_ops(s)
            assert_close(s.run(x)[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [24, 130])
def test_int8_tiles_of_every_row_count_equal_dense(rng, tmp_path, k):
    w = sparse_weights(rng, (21, k), 0.8)
    b = rng.standard_normal(21).astype(np.float32)
    for m in TILE_ROWS[::2]:
        data = fc_model(w, b, m, act=1)
        q = quantized(data, rng.standard_normal((4 * m, k)).astype(np.float32), tmp_path)
        x = rng.standard_normal((m, k)).astype(np.float32)
        with tinyinfer.load(q, sparse="always") as s, tinyinfer.load(q, sparse=False) as d:
            assert sparse_ops(s) and not sparse_ops(d)
            np.testing.assert_array_equal(s.run(x)[0], d.run(x)[0])


def quantized(data, calib, tmp_path, requant="float32"):
    src = tmp_path / "f.tinf"
    src.write_bytes(data)
    return tinyinfer.quantize(str(src), mode="int8-static", calib=calib, requantization=requant).data


@pytest.mark.parametrize("kind,m,n,k,sparsity", [
    ("fc", 1, 64, 200, 0.9), ("fc", 6, 40, 77, 0.8), ("fc", 50, 16, 33, 0.5),
    ("conv", 1, 48, 32, 0.85), ("conv", 2, 20, 24, 0.6),
    # k > 1024 with at most 1024 nonzeros per channel: the float tiles (exact below 2^24);
    # more than 1024 nonzeros in a channel: the int32 tile kernel
    ("fc", 40, 24, 1100, 0.8), ("conv", 1, 36, 1030, 0.9),
    ("fc", 40, 24, 1300, 0.05), ("conv", 3, 20, 1200, 0.1)])
@pytest.mark.parametrize("requant", ["float32", "fixed"])  # the convolutions' two output stages
def test_int8_sparse_equals_dense_bit_for_bit(rng, tmp_path, kind, m, n, k, sparsity, requant):
    w = sparse_weights(rng, (n, k), sparsity)
    b = rng.standard_normal(n).astype(np.float32)
    if kind == "fc":
        data, shape = fc_model(w, b, m, act=1), (m, k)
    else:
        shape = (m, 6, 5, k)
        data = conv1x1_model(w, b, shape, act=1)
    calib = rng.standard_normal((16,) + shape[1:] if kind == "conv" else (16 * m, k)).astype(np.float32)
    q = quantized(data, calib, tmp_path, requant)
    x = rng.standard_normal(shape).astype(np.float32)
    with tinyinfer.load(q, sparse="always") as s, tinyinfer.load(q, sparse=False) as d:
        assert sparse_ops(s) and not sparse_ops(d)
        # The graph's int8 op reads an int8 input: feed the same float input to both.
        ys, yd = s.run(x)[0], d.run(x)[0]
        np.testing.assert_array_equal(ys, yd)


def test_automatic_choice_by_density(rng):
    shape = (1, 8, 8, 64)
    x = rng.standard_normal(shape).astype(np.float32)
    dense_w = sparse_weights(rng, (64, 64), 0.1)
    sparse_w = sparse_weights(rng, (64, 64), 0.9)
    with tinyinfer.load(conv1x1_model(dense_w, None, shape)) as m:
        assert not sparse_ops(m)
    with tinyinfer.load(conv1x1_model(sparse_w, None, shape)) as m:
        (line,) = sparse_ops(m)
        assert "Conv2D" in line and "zeros" in line
        ref = np.einsum("nhwc,oc->nhwo", x.astype(np.float64), sparse_w.astype(np.float64))
        assert_close(m.run(x)[0], ref)
    with tinyinfer.load(conv1x1_model(sparse_w, None, shape), sparse=False) as m:
        assert not sparse_ops(m)
    with pytest.raises(tinyinfer.InvalidArgumentError):
        tinyinfer.load(conv1x1_model(sparse_w, None, shape), sparse="sometimes")


def test_automatic_choice_depends_on_the_input_channels(rng, monkeypatch):
    """At AVX2 and AVX-512 the tiles run layers of at most 128 input
    channels from 55% zeros (SparseGemm.maxDensityTiledSmallK); wider ones,
    and every layer at the other levels, from 70%. The thresholds alone:
    close cases are timed at load by default (test_sparse_measure.py)."""
    monkeypatch.setenv("TINYINFER_SPARSE_MEASURE", "0")
    isa = tinyinfer.info()["isa"]
    for k, zeros, want in ((64, 0.6, isa in ("avx2", "avx512")), (256, 0.6, False), (64, 0.4, False),
                           (256, 0.75, True)):
        w = sparse_weights(rng, (48, k), zeros)
        shape = (1, 6, 6, k)
        with tinyinfer.load(conv1x1_model(w, None, shape)) as m:
            assert bool(sparse_ops(m)) == want, (k, zeros, isa)
            x = rng.standard_normal(shape).astype(np.float32)
            assert_close(m.run(x)[0], np.einsum("nhwc,oc->nhwo", x.astype(np.float64), w.astype(np.float64)))


LEVEL_SCRIPT = r"""
import sys, numpy as np, tinyinfer
sys.path.insert(0, sys.argv[1])
import test_sparse as t
rng = np.random.default_rng(5)
w = t.sparse_weights(rng, (40, 72), 0.85); b = rng.standard_normal(40).astype(np.float32)
for m in (1, 45):
    x = rng.standard_normal((m, 72)).astype(np.float32)
    with tinyinfer.load(t.fc_model(w, b, m), sparse="always") as s:
        err = np.abs(s.run(x)[0] - (x.astype(np.float64) @ w.T + b)).max()
        assert err < 1e-4, err
x = rng.standard_normal((1, 9, 7, 72)).astype(np.float32)
with tinyinfer.load(t.conv1x1_model(w, b, x.shape), sparse="always") as s:
    err = np.abs(s.run(x)[0] - (np.einsum("nhwc,oc->nhwo", x.astype(np.float64), w) + b)).max()
    assert err < 1e-4, err
print(tinyinfer.info()["isa"])
"""


@pytest.mark.parametrize("level", ["baseline", "avx2", "avx512"])
def test_kernels_at_each_cpu_level(level):
    env = dict(os.environ, TINYINFER_ISA=level, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    r = subprocess.run([sys.executable, "-c", LEVEL_SCRIPT, HERE], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = r.stdout.strip()
    if got != level:
        pytest.skip(f"this CPU runs {got}, not {level}")


# -- the sparse encoding in files ----------------------------------------------------------

def header_minor(data: bytes) -> int:
    return struct.unpack_from("<H", data, 6)[0]


def test_sparse_constants_make_the_file_smaller_and_load_exactly(rng, tmp_path):
    w = sparse_weights(rng, (256, 784), 0.9)
    b = rng.standard_normal(256).astype(np.float32)
    sparse_file = fc_model(w, b, 1)
    dense_file = fc_model(rng.standard_normal((256, 784)).astype(np.float32), b, 1)
    assert header_minor(sparse_file) == 1 and header_minor(dense_file) == 0
    assert len(sparse_file) <= 0.2 * len(dense_file), (len(sparse_file), len(dense_file))
    x = rng.standard_normal((1, 784)).astype(np.float32)
    with tinyinfer.load(sparse_file, sparse=False) as m:
        # Expanded exactly: the dense kernel on the decoded weights equals numpy's float32 GEMV closely.
        assert_close(m.run(x)[0], x.astype(np.float64) @ w.T.astype(np.float64) + b)
        from tinyinfer.prune import tensor_storage
        (wt,) = [t for t in m.tensors() if t.name == "w"]
        enc, stored, zeros = tensor_storage(m, wt.index)
        assert enc and stored < wt.nbytes * 0.2 and abs(zeros - float((w == 0).mean())) < 1e-9
    # int8 weights at 90%: at most about a quarter of the dense int8 tensor.
    wq = (w * 20).clip(-127, 127).astype(np.int8)
    g = tinyinfer.GraphBuilder("q")
    g.output(g.const("w8", wq))
    data = g.to_bytes()
    with tinyinfer.load(data) as m:
        (t,) = [t for t in m.tensors() if t.name == "w8"]
        enc, stored, _ = tensor_storage(m, t.index)
        assert enc and stored <= 0.25 * wq.nbytes, stored
        np.testing.assert_array_equal(m.run([])[0], wq)


def test_sparse_round_trip_of_every_dtype_and_long_gaps(rng):
    for dtype in (np.float32, np.float16, np.int8, np.int32, np.int64):
        a = np.zeros((3, 2000), dtype)
        a[0, 0] = 1
        a[0, 1999] = 2          # a gap of 1998 columns: fillers
        a[2, 700:720] = np.arange(20).astype(dtype)
        a[1, 256] = 3
        g = tinyinfer.GraphBuilder("d")
        g.output(g.const("a", a))
        data = g.to_bytes()
        assert header_minor(data) == 1
        with tinyinfer.load(data) as m:
            np.testing.assert_array_equal(m.run([])[0], a)


def sparse_file_and_offsets():
    """A file with one sparse constant, and where its encoding lies."""
    a = np.zeros((64, 16), np.float32)   # 64 row counts (256 bytes), then 6 deltas: 4, 11, 6, 1, 1, 1
    a[0, 3] = 1.5
    a[1, 10] = -2
    a[3, 5:9] = 7
    g = tinyinfer.GraphBuilder("h")
    g.output(g.const("a", a))
    data = bytearray(g.to_bytes())
    data_off = struct.unpack_from("<Q", data, 32)[0]
    return data, data_off, a


@pytest.mark.parametrize("what,patch", [
    ("row count too large", lambda d, o: struct.pack_into("<I", d, o, 1000)),
    ("row counts short", lambda d, o: struct.pack_into("<I", d, o + 12, 0)),
    ("zero delta", lambda d, o: d.__setitem__(o + 256, 0)),
    ("column past the row", lambda d, o: d.__setitem__(o + 257, 200)),
])
def test_hostile_sparse_encodings_are_refused(what, patch):
    data, off, _ = sparse_file_and_offsets()
    patch(data, off)
    with pytest.raises(tinyinfer.ModelFormatError):
        tinyinfer.load(bytes(data))


def test_sparse_header_fields_are_checked():
    data, _, a = sparse_file_and_offsets()
    raw = bytes(data)
    # The entries field follows the tensor's data offset and size; find it by its value (6 entries).
    pos = raw.find(struct.pack("<BBHQ", 1, 0, 0, 6))
    assert pos > 0
    for bad in (struct.pack("<BBHQ", 2, 0, 0, 6), struct.pack("<BBHQ", 1, 0, 0, 7),
                struct.pack("<BBHQ", 1, 0, 0, 1 << 40)):
        d = bytearray(raw)
        d[pos:pos + 12] = bad
        with pytest.raises(tinyinfer.ModelFormatError):
            tinyinfer.load(bytes(d))
    with tinyinfer.load(raw) as m:
        np.testing.assert_array_equal(m.run([])[0], a)


def test_random_corruption_of_sparse_files_never_crashes():
    data, off, _ = sparse_file_and_offsets()
    rng = np.random.default_rng(7)
    end = len(data)
    for _ in range(300):
        d = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(64, end))
            d[i] = int(rng.integers(0, 256))
        try:
            with tinyinfer.load(bytes(d)) as m:
                m.run([])
        except tinyinfer.TinyInferError:
            pass


INT8_CHOICE_SCRIPT = r"""
import sys, numpy as np, tinyinfer
sys.path.insert(0, sys.argv[1])
import test_sparse as t
rng = np.random.default_rng(3)
print(tinyinfer.info()["isa"])
# 64 -> 64 channels at 90% zeros and a narrow layer (8 -> 32 channels, 75% zeros): the number of
# ops on sparse kernels for each (at AVX2 both pay since stop 31; at AVX-512 VNNI neither).
for (cout, cin), zeros, shape in (((64, 64), 0.9, (1, 8, 8, 64)), ((32, 8), 0.75, (1, 16, 16, 8))):
    w = t.sparse_weights(rng, (cout, cin), zeros)
    x = rng.standard_normal(shape).astype(np.float32)
    q = tinyinfer.quantize(t.conv1x1_model(w, None, shape), mode="int8-static", calib=[x]).data
    with tinyinfer.load(q) as m, tinyinfer.load(q, sparse=False) as d:
        np.testing.assert_array_equal(m.run(x)[0], d.run(x)[0])
        print(len(t.sparse_ops(m)))
"""


@pytest.mark.parametrize("level,expect", [("avx2", 1), ("avx512", 0)])
def test_int8_runs_sparse_by_itself_only_where_it_pays(level, expect):
    # The thresholds alone (the narrow layer is a close case, timed at load by default).
    env = dict(os.environ, TINYINFER_ISA=level, TINYINFER_SPARSE_MEASURE="0",
               PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    r = subprocess.run([sys.executable, "-c", INT8_CHOICE_SCRIPT, HERE], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    isa, chosen, narrow = r.stdout.split()
    if isa != level or (level == "avx512" and "avx512vnni" not in tinyinfer.info()["cpu_features"]):
        pytest.skip(f"this CPU runs {isa}")
    assert int(chosen) == expect
    assert int(narrow) == expect
