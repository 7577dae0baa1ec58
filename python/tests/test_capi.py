"""The raw C API through ctypes (tinyinfer._lib.lib, every prototype declared
there), then the Python API's errors and conveniences.

The status-returning functions of _lib.lib raise the mapped exception (their
errcheck); `st()` turns that back into the status code so the tests can speak
about the C API's return values directly.
"""

import ctypes
import os
import re
import subprocess
import sys
import threading
from ctypes import byref, c_char_p, c_float, c_int32, c_int64, c_size_t, c_void_p

import numpy as np
import pytest

import tinyinfer
from conftest import rss_growth
from tinyinfer import _lib
from tinyinfer import (InvalidArgumentError, InvalidStateError, ModelFormatError, TinyInferError,
                       UnsupportedOpError)

L = _lib.lib
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HEADER = os.path.join(ROOT, "include", "tinyinfer.h")

S = tinyinfer.Status


def st(fn, *args):
    """Calls a status-returning C function; returns its status (0 on success)."""
    try:
        r = fn(*args)
    except TinyInferError as e:
        return e.status
    return int(r)


def last_error():
    return L.tinf_last_error().decode()


def expect(status, fn, *args):
    """Calls fn, checks the status, and for failures a non-empty last error."""
    got = st(fn, *args)
    assert got == status, (fn.__name__, got, last_error())
    if status != S.OK:
        assert last_error() != "", fn.__name__
    return got


def header_defines():
    text = open(HEADER).read()
    return {k: int(v) for k, v in re.findall(r"#define\s+(TINF_\w+)\s+(\d+)", text)}


# -- a model to use -----------------------------------------------------------

W1 = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
B1 = np.random.default_rng(1).standard_normal(6).astype(np.float32)
W2 = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)


def two_input_model():
    """inputs a[2,4], b[2,3] -> out0 = FC(relu(FC(a)))+b, out1 = tanh(a)."""
    b = tinyinfer.GraphBuilder("capi")
    b.metadata("author", "tests")
    b.metadata("empty", "")
    a = b.input("a", (2, 4))
    bb = b.input("b", (2, 3))
    h = b.op("FullyConnected", a, b.const("w1", W1), b.const("b1", B1), activation=1)
    z = b.op("FullyConnected", h, b.const("w2", W2))
    y = b.op("Add", z, bb, name="sum")
    t = b.op("Tanh", a, name="tanh_a")
    b.output(y, t)
    data = b.to_bytes()
    b.close()
    return data


def reference(a, bb):
    h = np.maximum(a @ W1.T + B1, 0)
    return [h @ W2.T + bb, np.tanh(a)]


@pytest.fixture(scope="module")
def model_bytes():
    return two_input_model()


class Raw:
    """An aligned copy of the model bytes and a raw model handle."""

    def __init__(self, data):
        self.buf = np.zeros(len(data) + 64, np.uint8)
        off = (-self.buf.ctypes.data) % 64
        self.view = self.buf[off:off + len(data)]
        self.view[:] = np.frombuffer(data, np.uint8)
        self.model = _lib.ModelHandle()
        L.tinf_model_load_buffer(self.view.ctypes.data, len(data), byref(self.model))

    def session(self, threads=None):
        opts = None
        if threads is not None:
            opts = _lib.OptionsHandle()
            L.tinf_options_create(byref(opts))
            L.tinf_options_set_threads(opts, threads)
        s = _lib.SessionHandle()
        L.tinf_session_create(self.model, opts, byref(s))
        L.tinf_options_free(opts)
        return s


@pytest.fixture
def raw(model_bytes):
    r = Raw(model_bytes)
    yield r
    L.tinf_model_free(r.model)


@pytest.fixture
def session(raw):
    s = raw.session()
    yield s
    L.tinf_session_free(s)


@pytest.fixture
def builder():
    b = _lib.BuilderHandle()
    L.tinf_builder_create(byref(b))
    yield b
    L.tinf_builder_free(b)


# -- NULL handles and NULL out-pointers ---------------------------------------

def test_null_model_handles(raw):
    n = c_int32(-7)
    info = _lib.TensorInfo()
    k, v = c_char_p(), c_char_p()
    ops, tens, wb = c_int32(), c_int32(), c_size_t()
    m = _lib.ModelHandle()
    expect(S.INVALID_ARGUMENT, L.tinf_model_load_file, None, byref(m))
    expect(S.INVALID_ARGUMENT, L.tinf_model_load_file, b"/nonexistent.tinf", None)
    expect(S.INVALID_ARGUMENT, L.tinf_model_load_buffer, None, 100, byref(m))
    expect(S.INVALID_ARGUMENT, L.tinf_model_load_buffer, raw.view.ctypes.data, raw.view.size, None)
    assert not m.value  # untouched on failure
    for fn in (L.tinf_model_input_count, L.tinf_model_output_count, L.tinf_model_metadata_count):
        expect(S.INVALID_ARGUMENT, fn, None, byref(n))
        expect(S.INVALID_ARGUMENT, fn, raw.model, None)
    assert n.value == -7  # out-parameter untouched
    for fn in (L.tinf_model_input_info, L.tinf_model_output_info):
        expect(S.INVALID_ARGUMENT, fn, None, 0, byref(info))
        expect(S.INVALID_ARGUMENT, fn, raw.model, 0, None)
    for fn in (L.tinf_model_find_input, L.tinf_model_find_output):
        expect(S.INVALID_ARGUMENT, fn, None, b"a", byref(n))
        expect(S.INVALID_ARGUMENT, fn, raw.model, None, byref(n))
        expect(S.INVALID_ARGUMENT, fn, raw.model, b"a", None)
    assert n.value == -7
    expect(S.INVALID_ARGUMENT, L.tinf_model_metadata, None, 0, byref(k), byref(v))
    expect(S.INVALID_ARGUMENT, L.tinf_model_metadata, raw.model, 0, None, byref(v))
    expect(S.INVALID_ARGUMENT, L.tinf_model_metadata, raw.model, 0, byref(k), None)
    expect(S.INVALID_ARGUMENT, L.tinf_model_stats, None, byref(ops), byref(tens), byref(wb))


def test_null_session_handles(raw, session):
    s = _lib.SessionHandle()
    p, n = c_void_p(), c_size_t()
    t = c_int32()
    buf = (ctypes.c_uint8 * 64)()
    expect(S.INVALID_ARGUMENT, L.tinf_session_create, None, None, byref(s))
    expect(S.INVALID_ARGUMENT, L.tinf_session_create, raw.model, None, None)
    assert not s.value
    expect(S.INVALID_ARGUMENT, L.tinf_session_set_input, None, 0, buf, 32)
    expect(S.INVALID_ARGUMENT, L.tinf_session_set_input, session, 0, None, 32)
    expect(S.INVALID_ARGUMENT, L.tinf_session_input_data, None, 0, byref(p), byref(n))
    expect(S.INVALID_ARGUMENT, L.tinf_session_input_data, session, 0, None, byref(n))
    expect(S.INVALID_ARGUMENT, L.tinf_session_run, None)
    expect(S.INVALID_ARGUMENT, L.tinf_session_get_output, None, 0, buf, 24)
    expect(S.INVALID_ARGUMENT, L.tinf_session_get_output, session, 0, None, 24)
    expect(S.INVALID_ARGUMENT, L.tinf_session_output_data, None, 0, byref(p), byref(n))
    expect(S.INVALID_ARGUMENT, L.tinf_session_output_data, session, 0, None, byref(n))
    expect(S.INVALID_ARGUMENT, L.tinf_session_arena_bytes, None, byref(n), byref(n))
    expect(S.INVALID_ARGUMENT, L.tinf_session_threads, None, byref(t))
    expect(S.INVALID_ARGUMENT, L.tinf_session_threads, session, None)


def test_null_out_pointers_are_refused(raw, session):
    # Every out-pointer is required (issue 12: NULL used to be skipped and
    # the call returned OK); the message names the argument.
    p, n = c_void_p(), c_size_t()
    for fn, args, name in [
            (L.tinf_model_stats, (raw.model, None, byref(c_int32()), byref(n)), "out_ops"),
            (L.tinf_model_stats, (raw.model, byref(c_int32()), byref(c_int32()), None), "out_weight_bytes"),
            (L.tinf_session_input_data, (session, 0, byref(p), None), "out_nbytes"),
            (L.tinf_session_output_data, (session, 0, byref(p), None), "out_nbytes"),
            (L.tinf_session_arena_bytes, (session, None, byref(n)), "out_arena"),
            (L.tinf_session_arena_bytes, (session, byref(n), None), "out_unplanned")]:
        expect(S.INVALID_ARGUMENT, fn, *args)
        assert name in last_error(), (fn.__name__, last_error())


def test_null_options_and_builder_handles(builder):
    o = _lib.OptionsHandle()
    expect(S.INVALID_ARGUMENT, L.tinf_options_create, None)
    expect(S.INVALID_ARGUMENT, L.tinf_options_set_threads, None, 1)
    b = _lib.BuilderHandle()
    expect(S.INVALID_ARGUMENT, L.tinf_builder_create, None)
    idx = c_int32()
    dims = (c_int64 * 1)(2)
    ins = (c_int32 * 1)(0)
    f = (c_float * 1)(1.0)
    z = (c_int32 * 1)(0)
    vals = (c_int64 * 1)(1)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_metadata, None, b"k", b"v")
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_metadata, builder, None, b"v")
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_metadata, builder, b"k", None)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_tensor, None, b"t", 1, 1, dims, None, 0, byref(idx))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_tensor, builder, None, 1, 1, dims, None, 0, byref(idx))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_tensor, builder, b"t", 1, 1, None, None, 0, byref(idx))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_quant, None, 0, -1, 1, f, z)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_op, None, 1, 1, ins, 1, ins, byref(idx))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_int, None, 0, 1, 1)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_float, None, 0, 1, 1.0)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_ints, None, 0, 1, 1, vals)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_floats, None, 0, 1, 1, f)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_string, None, 0, 1, b"s")
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_graph_inputs, None, 1, ins)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_graph_outputs, None, 1, ins)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_finish, None)
    p, n = c_void_p(), c_size_t()
    expect(S.INVALID_ARGUMENT, L.tinf_builder_data, None, byref(p), byref(n))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_data, builder, None, byref(n))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_data, builder, byref(p), None)
    assert not o.value and not b.value


def test_free_null_is_noop():
    L.tinf_model_free(None)
    L.tinf_session_free(None)
    L.tinf_options_free(None)
    L.tinf_builder_free(None)


def test_last_error_is_per_thread():
    expect(S.INVALID_ARGUMENT, L.tinf_session_run, None)
    mine = last_error()
    assert "NULL" in mine or "null" in mine.lower()
    seen = []
    t = threading.Thread(target=lambda: seen.append(L.tinf_last_error()))
    t.start()
    t.join()
    assert seen == [b""]
    assert last_error() == mine


# -- indices and sizes --------------------------------------------------------

def test_bad_indices(raw, session):
    info = _lib.TensorInfo()
    k, v = c_char_p(), c_char_p()
    p, n = c_void_p(), c_size_t()
    buf = (ctypes.c_uint8 * 4096)()
    for i in (-1, 2, 3, 2 ** 31 - 1, -(2 ** 31)):
        expect(S.INVALID_ARGUMENT, L.tinf_model_input_info, raw.model, i, byref(info))
        expect(S.INVALID_ARGUMENT, L.tinf_model_output_info, raw.model, i, byref(info))
        expect(S.INVALID_ARGUMENT, L.tinf_session_set_input, session, i, buf, 32)
        expect(S.INVALID_ARGUMENT, L.tinf_session_input_data, session, i, byref(p), byref(n))
        expect(S.INVALID_ARGUMENT, L.tinf_session_get_output, session, i, buf, 24)
        expect(S.INVALID_ARGUMENT, L.tinf_session_output_data, session, i, byref(p), byref(n))
    cnt = c_int32()
    L.tinf_model_metadata_count(raw.model, byref(cnt))
    for i in (-1, cnt.value, cnt.value + 1):
        expect(S.INVALID_ARGUMENT, L.tinf_model_metadata, raw.model, i, byref(k), byref(v))
    assert k.value is None
    idx = c_int32(-5)
    expect(S.INVALID_ARGUMENT, L.tinf_model_find_input, raw.model, b"nope", byref(idx))
    expect(S.INVALID_ARGUMENT, L.tinf_model_find_output, raw.model, b"a", byref(idx))  # an input, not an output
    assert idx.value == -5
    assert "nope" in (expect(S.INVALID_ARGUMENT, L.tinf_model_find_input, raw.model, b"nope", byref(idx)) and last_error())


def test_wrong_nbytes(session):
    buf = (ctypes.c_uint8 * 4096)()
    # input 0 is [2,4] float32 = 32 bytes; output 0 is [2,3] float32 = 24 bytes
    for nb in (0, 1, 31, 33, 64, 2 ** 40):
        expect(S.INVALID_ARGUMENT, L.tinf_session_set_input, session, 0, buf, nb)
    for nb in (0, 23, 25, 32):
        expect(S.INVALID_ARGUMENT, L.tinf_session_get_output, session, 0, buf, nb)
    expect(S.OK, L.tinf_session_set_input, session, 0, buf, 32)
    expect(S.OK, L.tinf_session_set_input, session, 1, buf, 24)
    expect(S.OK, L.tinf_session_get_output, session, 0, buf, 24)
    expect(S.OK, L.tinf_session_get_output, session, 1, buf, 32)


def test_find_and_info(raw):
    idx = c_int32()
    L.tinf_model_find_input(raw.model, b"b", byref(idx))
    assert idx.value == 1
    L.tinf_model_find_output(raw.model, b"tanh_a", byref(idx))
    assert idx.value == 1
    info = _lib.TensorInfo()
    L.tinf_model_input_info(raw.model, 1, byref(info))
    assert (info.name, info.dtype, info.rank, list(info.dims), info.nbytes) == \
        (b"b", 1, 2, [2, 3, 0, 0, 0, 0, 0, 0], 24)
    L.tinf_model_output_info(raw.model, 0, byref(info))
    assert (info.name, info.dtype, info.rank, info.nbytes) == (b"sum", 1, 2, 24)
    ops, tens, wb = c_int32(), c_int32(), c_size_t()
    L.tinf_model_stats(raw.model, byref(ops), byref(tens), byref(wb))
    assert ops.value == 4
    assert tens.value >= 9
    assert wb.value == W1.nbytes + B1.nbytes + W2.nbytes


# -- running -----------------------------------------------------------------

def inputs_for(seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((2, 4)).astype(np.float32), r.standard_normal((2, 3)).astype(np.float32)


def test_copy_run(session):
    a, bb = inputs_for()
    L.tinf_session_set_input(session, 0, a.ctypes.data, a.nbytes)
    L.tinf_session_set_input(session, 1, bb.ctypes.data, bb.nbytes)
    L.tinf_session_run(session)
    outs = [np.empty((2, 3), np.float32), np.empty((2, 4), np.float32)]
    for i, o in enumerate(outs):
        L.tinf_session_get_output(session, i, o.ctypes.data, o.nbytes)
    for o, r in zip(outs, reference(a, bb)):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)


def test_zero_copy_equals_copy(raw):
    s1, s2 = raw.session(), raw.session()
    try:
        for seed in range(3):
            a, bb = inputs_for(seed)
            # copies
            L.tinf_session_set_input(s1, 0, a.ctypes.data, a.nbytes)
            L.tinf_session_set_input(s1, 1, bb.ctypes.data, bb.nbytes)
            L.tinf_session_run(s1)
            copies = [np.empty((2, 3), np.float32), np.empty((2, 4), np.float32)]
            for i, o in enumerate(copies):
                L.tinf_session_get_output(s1, i, o.ctypes.data, o.nbytes)
            # zero-copy: write into the session's own input buffers
            for i, x in enumerate((a, bb)):
                p, n = c_void_p(), c_size_t()
                L.tinf_session_input_data(s2, i, byref(p), byref(n))
                assert n.value == x.nbytes and p.value % 64 == 0
                ctypes.memmove(p.value, x.ctypes.data, x.nbytes)
            L.tinf_session_run(s2)
            views = []
            for i, shape in enumerate(((2, 3), (2, 4))):
                p, n = c_void_p(), c_size_t()
                L.tinf_session_output_data(s2, i, byref(p), byref(n))
                assert n.value == 4 * shape[0] * shape[1]
                views.append(np.frombuffer((ctypes.c_uint8 * n.value).from_address(p.value), np.float32)
                             .reshape(shape).copy())
            for c, v in zip(copies, views):
                np.testing.assert_array_equal(c, v)
            # Inputs are never overwritten by a run.
            p, n = c_void_p(), c_size_t()
            L.tinf_session_input_data(s2, 0, byref(p), byref(n))
            np.testing.assert_array_equal(np.frombuffer(ctypes.string_at(p.value, n.value), np.float32).reshape(2, 4), a)
    finally:
        L.tinf_session_free(s1)
        L.tinf_session_free(s2)


def test_fresh_session_inputs_are_zero(raw):
    s = raw.session()
    try:
        p, n = c_void_p(), c_size_t()
        L.tinf_session_input_data(s, 0, byref(p), byref(n))
        assert ctypes.string_at(p.value, n.value) == b"\0" * n.value
        L.tinf_session_run(s)
    finally:
        L.tinf_session_free(s)


def test_model_freed_before_session(model_bytes):
    r = Raw(model_bytes)
    s = r.session()
    s2 = r.session()
    L.tinf_model_free(r.model)  # the sessions keep it alive
    a, bb = inputs_for(4)
    for sess in (s, s2):
        L.tinf_session_set_input(sess, 0, a.ctypes.data, a.nbytes)
        L.tinf_session_set_input(sess, 1, bb.ctypes.data, bb.nbytes)
        L.tinf_session_run(sess)
        o = np.empty((2, 3), np.float32)
        L.tinf_session_get_output(sess, 0, o.ctypes.data, o.nbytes)
        np.testing.assert_allclose(o, reference(a, bb)[0], rtol=1e-5, atol=1e-5)
    L.tinf_session_free(s)
    L.tinf_session_free(s2)
    del r  # only now may the borrowed buffer go


def test_model_from_file_freed_before_session(model_bytes, tmp_path):
    p = tmp_path / "m.tinf"
    p.write_bytes(model_bytes)
    m = _lib.ModelHandle()
    L.tinf_model_load_file(str(p).encode(), byref(m))
    s = _lib.SessionHandle()
    L.tinf_session_create(m, None, byref(s))
    L.tinf_model_free(m)
    p.unlink()
    a, bb = inputs_for(5)
    L.tinf_session_set_input(s, 0, a.ctypes.data, a.nbytes)
    L.tinf_session_set_input(s, 1, bb.ctypes.data, bb.nbytes)
    L.tinf_session_run(s)
    o = np.empty((2, 4), np.float32)
    L.tinf_session_get_output(s, 1, o.ctypes.data, o.nbytes)
    np.testing.assert_allclose(o, np.tanh(a), rtol=1e-5, atol=1e-6)
    L.tinf_session_free(s)


def test_session_threads_and_arena(raw):
    s = raw.session(threads=3)
    t = c_int32()
    L.tinf_session_threads(s, byref(t))
    assert t.value == 3
    arena, unplanned = c_size_t(), c_size_t()
    L.tinf_session_arena_bytes(s, byref(arena), byref(unplanned))
    assert 0 < arena.value <= unplanned.value
    assert arena.value % 64 == 0
    L.tinf_session_free(s)
    s = raw.session(threads=0)
    L.tinf_session_threads(s, byref(t))
    assert t.value == os.cpu_count() or t.value >= 1
    L.tinf_session_free(s)
    s = raw.session()  # NULL options: 1 thread
    L.tinf_session_threads(s, byref(t))
    assert t.value == 1
    L.tinf_session_free(s)


# -- options ------------------------------------------------------------------

def test_options_threads_range():
    o = _lib.OptionsHandle()
    L.tinf_options_create(byref(o))
    try:
        for t in (-1, 257, 1000, 2 ** 31 - 1, -(2 ** 31)):
            expect(S.INVALID_ARGUMENT, L.tinf_options_set_threads, o, t)
            assert str(t) in last_error()
        for t in (0, 1, 2, 256):
            expect(S.OK, L.tinf_options_set_threads, o, t)
    finally:
        L.tinf_options_free(o)


# -- static tables --------------------------------------------------------------

def test_status_strings():
    names = {}
    for code in tinyinfer.Status:
        s = L.tinf_status_string(code)
        assert s, code
        names[code] = s.decode()
    assert names[S.OK] == "ok"
    assert len(set(names.values())) == len(S)
    assert "unknown status" not in names.values()
    for code in (max(S) + 1, max(S) + 2, 100, -1, 2 ** 31 - 1, -(2 ** 31)):
        assert L.tinf_status_string(code) == b"unknown status"


def test_versions():
    d = header_defines()
    v = L.tinf_version_string().decode()
    assert v == f"{d['TINF_VERSION_MAJOR']}.{d['TINF_VERSION_MINOR']}.{d['TINF_VERSION_PATCH']}"
    assert tinyinfer.__version__ == v
    assert L.tinf_abi_version() == d["TINF_ABI_VERSION"] == _lib.ABI_VERSION == tinyinfer.ABI_VERSION
    assert d["TINF_MAX_RANK"] == _lib.MAX_RANK
    major, minor = L.tinf_format_version_major(), L.tinf_format_version_minor()
    assert major >= 1 and minor >= 0
    data = two_input_model()
    assert int.from_bytes(data[4:6], "little") == major
    assert int.from_bytes(data[6:8], "little") == 0 < minor  # 1.0: no sparse constant (docs/format.md)


def test_op_names():
    n = L.tinf_op_count()
    assert n >= 40
    # op codes are handed out in ranges to parallel branches: a branch may leave a gap below its codes
    names = [x for x in (L.tinf_op_name(i) for i in range(1, n + 1)) if x]
    assert L.tinf_op_name(n) and len(names) >= 40
    assert len(set(names)) == len(names)
    for bad in (0, n + 1, n + 100, -1, 2 ** 16, 2 ** 16 + 1, 2 ** 31 - 1, -(2 ** 31)):
        assert L.tinf_op_name(bad) is None, bad
    doc = open(os.path.join(ROOT, "docs", "ops.md")).read()
    for name in names:
        assert name.decode() in doc
    for known in ("FullyConnected", "MatMul", "Add", "Softmax", "LayerNorm", "BatchNorm", "Conv2D"):
        assert known.encode() in names
    assert sorted(tinyinfer.OPS) == sorted(x.decode() for x in names)


def test_op_traits():
    """tinf_op_traits: the core's table, as docs/ops.md describes the ops."""
    text = open(HEADER).read()
    flags = dict((k, int(v)) for k, v in re.findall(r"(TINF_OP_[A-Z0-9_]+)\s*=\s*(\d+)", text))
    assert flags == {"TINF_OP_FUSED_ACTIVATION": _lib.OP_FUSED_ACTIVATION, "TINF_OP_IN_PLACE": _lib.OP_IN_PLACE,
                     "TINF_OP_INT8_KERNEL": _lib.OP_INT8_KERNEL, "TINF_OP_HYBRID_KERNEL": _lib.OP_HYBRID_KERNEL}
    # the ops whose attributes include `activation` in docs/ops.md
    assert _lib.OPS_TAKING_ACTIVATION == {"FullyConnected", "Conv2D", "DepthwiseConv2D", "TransposeConv2D",
                                          "MaxPool2D", "AveragePool2D", "Add", "Sub", "Mul", "Div"}
    lo, hi, outs, fl, w = c_int32(), c_int32(), c_int32(), ctypes.c_uint32(), ctypes.c_uint32()

    def traits(name):
        expect(S.OK, L.tinf_op_traits, _lib.OP_IDS[name], byref(lo), byref(hi), byref(outs), byref(fl), byref(w))
        return lo.value, hi.value, outs.value, fl.value, w.value

    assert traits("Conv2D") == (2, 3, 1, _lib.OP_FUSED_ACTIVATION | _lib.OP_INT8_KERNEL, 0b110)
    assert traits("FullyConnected")[3] == _lib.OP_FUSED_ACTIVATION | _lib.OP_INT8_KERNEL | _lib.OP_HYBRID_KERNEL
    assert traits("BatchNorm") == (5, 5, 1, _lib.OP_IN_PLACE, 0b11110)
    assert traits("Split")[:3] == (1, 1, 1 << 16)
    assert traits("Concat")[:2] == (1, 1 << 16)
    assert traits("ReduceMax") == (1, 1, 1, _lib.OP_INT8_KERNEL, 0)
    assert traits("Gelu") == (1, 1, 1, _lib.OP_IN_PLACE, 0)
    # every out pointer may be NULL
    expect(S.OK, L.tinf_op_traits, _lib.OP_IDS["Relu"], None, None, None, None, None)
    for bad in (0, -1, L.tinf_op_count() + 1, 2 ** 16, 2 ** 31 - 1, -(2 ** 31)):
        expect(S.UNSUPPORTED_OP, L.tinf_op_traits, bad, byref(lo), byref(hi), byref(outs), byref(fl), byref(w))


def test_op_traits_arity_is_the_loaders():
    """An op with one input more than tinf_op_traits allows is refused when the graph is loaded."""
    lo, hi = c_int32(), c_int32()
    for name, op in _lib.OP_IDS.items():
        L.tinf_op_traits(op, byref(lo), byref(hi), None, None, None)
        if hi.value >= 1 << 16:
            continue
        g = tinyinfer.GraphBuilder()
        x = g.input("x", (2, 3))
        y = g.op(name, *([x] * (hi.value + 1)))
        g.output(y)
        with pytest.raises(TinyInferError, match=f"takes {lo.value}...{hi.value} inputs"):
            g.to_bytes()


def test_attr_names():
    n = L.tinf_attr_count()
    assert n >= 10
    # keys may leave gaps (a feature's keys apart from the sequence, so that parallel branches do not collide)
    names = [x for x in (L.tinf_attr_name(i) for i in range(1, n + 1)) if x]
    assert L.tinf_attr_name(n) and len(names) >= 10
    assert len(set(names)) == len(names)
    for bad in (0, n + 1, -1, 2 ** 16, 2 ** 31 - 1, -(2 ** 31)):
        assert L.tinf_attr_name(bad) is None, bad
    doc = open(os.path.join(ROOT, "docs", "ops.md")).read()
    for name in names:
        assert name.decode() in doc
    for known in (b"activation", b"axis", b"epsilon", b"alpha", b"transpose_b"):
        assert known in names


def test_dtype_size():
    assert [L.tinf_dtype_size(i) for i in range(1, 9)] == [4, 2, 1, 1, 4, 8, 2, 1]
    for bad in (0, 9, 100, 255, 256, 257, -1, 2 ** 31 - 1, -(2 ** 31)):
        assert L.tinf_dtype_size(bad) == 0, bad


# -- the builder ----------------------------------------------------------------

def add_tensor(b, name, dtype, shape, data=None):
    idx = c_int32(-1)
    if shape is None:
        rank, dims = -1, None
    else:
        rank, dims = len(shape), (c_int64 * max(len(shape), 1))(*shape)
    if data is None:
        st_ = st(L.tinf_builder_add_tensor, b, name, dtype, rank, dims, None, 0, byref(idx))
    else:
        st_ = st(L.tinf_builder_add_tensor, b, name, dtype, rank, dims, data.ctypes.data, data.nbytes, byref(idx))
    return st_, idx.value


def add_op(b, op, ins, outs):
    i = (c_int32 * max(len(ins), 1))(*ins)
    o = (c_int32 * max(len(outs), 1))(*outs)
    k = c_int32(-1)
    return st(L.tinf_builder_add_op, b, op, len(ins), i, len(outs), o, byref(k)), k.value


def test_builder_error_paths(builder):
    relu = _lib.OP_IDS["Relu"]
    s, x = add_tensor(builder, b"x", 1, (2, 3))
    assert s == S.OK and x == 0
    s, y = add_tensor(builder, b"y", 0, None)
    assert s == S.OK and y == 1
    # unknown op ids
    for op in (0, -1, L.tinf_op_count() + 1, 0xFFFF, 0x10000, 2 ** 31 - 1):
        s, _ = add_op(builder, op, [x], [y])
        assert s == S.UNSUPPORTED_OP, op
        assert last_error()
    # bad tensor indices
    for bad in (-2, 2, 100, -(2 ** 31)):
        assert add_op(builder, relu, [bad], [y])[0] == S.INVALID_ARGUMENT
    for bad in (-1, 2, 100):
        assert add_op(builder, relu, [x], [bad])[0] == S.INVALID_ARGUMENT
    # bad counts
    outs = (c_int32 * 1)(y)
    k = c_int32()
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_op, builder, relu, -1, None, 1, outs, byref(k))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_op, builder, relu, 1, None, 1, outs, byref(k))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_op, builder, relu, 0, None, 0, outs, byref(k))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_op, builder, relu, 0, None, 1, None, byref(k))
    # bad tensors
    assert add_tensor(builder, b"t", 99, (2,))[0] == S.UNSUPPORTED_DTYPE
    assert add_tensor(builder, b"t", 1, (1,) * 9)[0] == S.INVALID_ARGUMENT
    assert add_tensor(builder, b"t", 1, (0,))[0] == S.INVALID_ARGUMENT
    assert add_tensor(builder, b"t", 1, (-3,))[0] == S.INVALID_ARGUMENT
    idx = c_int32()
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_tensor, builder, b"t", 1, -2, None, None, 0, byref(idx))
    c = np.zeros(3, np.float32)
    dims = (c_int64 * 1)(4)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_tensor, builder, b"t", 1, 1, dims, c.ctypes.data, c.nbytes, byref(idx))
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_tensor, builder, b"t", 0, 1, dims, c.ctypes.data, 16, byref(idx))  # no dtype
    expect(S.INVALID_ARGUMENT, L.tinf_builder_add_tensor, builder, b"t", 1, -1, None, c.ctypes.data, 12, byref(idx))  # no shape
    # bad quantization
    f = (c_float * 2)(1.0, 1.0)
    z = (c_int32 * 2)(0, 0)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_quant, builder, 5, -1, 1, f, z)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_quant, builder, x, -1, 2, f, z)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_quant, builder, x, -1, 0, f, z)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_quant, builder, x, 9, 2, f, z)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_quant, builder, x, -1, 1, (c_float * 1)(-1.0), z)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_quant, builder, x, -1, 1, (c_float * 1)(float("nan")), z)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_quant, builder, x, -1, 1, f, None)
    # attributes on a missing op, unknown keys
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_int, builder, 0, 1, 1)
    s, k = add_op(builder, relu, [x], [y])
    assert s == 0 and k == 0
    alpha = _lib.ATTR_IDS["alpha"]
    for key in (0, -1, L.tinf_attr_count() + 1, 0x10000):
        expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_float, builder, k, key, 1.0)
    for op_index in (-1, 1, 1000):
        expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_float, builder, op_index, alpha, 1.0)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_ints, builder, k, alpha, 2, None)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_ints, builder, k, alpha, -1, None)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_floats, builder, k, alpha, 1, None)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_attr_string, builder, k, alpha, None)
    # graph lists
    bad = (c_int32 * 1)(7)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_graph_inputs, builder, 1, bad)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_graph_outputs, builder, 1, bad)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_graph_inputs, builder, -1, bad)
    expect(S.INVALID_ARGUMENT, L.tinf_builder_set_graph_outputs, builder, 1, None)


def finish_status(b):
    s = st(L.tinf_builder_finish, b)
    return s, (last_error() if s else "")


def test_builder_finish_invalid_graph_then_data_is_invalid_state(builder):
    p, n = c_void_p(), c_size_t()
    # nothing finished yet
    expect(S.INVALID_STATE, L.tinf_builder_data, builder, byref(p), byref(n))
    _, x = add_tensor(builder, b"x", 1, (2, 3))
    _, y = add_tensor(builder, b"y", 0, None)
    # no outputs
    s, msg = finish_status(builder)
    assert s == S.BAD_FORMAT and "output" in msg
    expect(S.INVALID_STATE, L.tinf_builder_data, builder, byref(p), byref(n))
    # an op reads a tensor that nothing produces (x is not a graph input)
    add_op(builder, _lib.OP_IDS["Relu"], [x], [y])
    L.tinf_builder_set_graph_outputs(builder, 1, (c_int32 * 1)(y))
    s, msg = finish_status(builder)
    assert s == S.BAD_FORMAT and "x" in msg
    expect(S.INVALID_STATE, L.tinf_builder_data, builder, byref(p), byref(n))
    assert not p.value and n.value == 0  # untouched
    # fixed: x is a graph input
    L.tinf_builder_set_graph_inputs(builder, 1, (c_int32 * 1)(x))
    expect(S.OK, L.tinf_builder_finish, builder)
    expect(S.OK, L.tinf_builder_data, builder, byref(p), byref(n))
    assert p.value and n.value > 64
    assert ctypes.string_at(p.value, 4) == b"TINF"
    data = ctypes.string_at(p.value, n.value)
    with tinyinfer.load(data) as m:
        (out,) = m.run(np.array([[-1, 2, -3], [4, -5, 6]], np.float32))
    np.testing.assert_array_equal(out, [[0, 2, 0], [4, 0, 6]])
    # any change invalidates the data until the next finish
    L.tinf_builder_set_metadata(builder, b"k", b"v")
    expect(S.INVALID_STATE, L.tinf_builder_data, builder, byref(p), byref(n))
    expect(S.OK, L.tinf_builder_finish, builder)
    expect(S.OK, L.tinf_builder_data, builder, byref(p), byref(n))


def test_builder_finish_shape_errors(builder):
    # FullyConnected with mismatched K: refused with the op named.
    _, x = add_tensor(builder, b"x", 1, (2, 3))
    w = np.zeros((4, 5), np.float32)
    _, wi = add_tensor(builder, b"w", 1, (4, 5), w)
    _, y = add_tensor(builder, b"y", 0, None)
    add_op(builder, _lib.OP_IDS["FullyConnected"], [x, wi], [y])
    L.tinf_builder_set_graph_inputs(builder, 1, (c_int32 * 1)(x))
    L.tinf_builder_set_graph_outputs(builder, 1, (c_int32 * 1)(y))
    s, msg = finish_status(builder)
    assert s in (S.SHAPE, S.BAD_FORMAT, S.UNSUPPORTED_OP), (s, msg)
    assert "FullyConnected" in msg
    p, n = c_void_p(), c_size_t()
    expect(S.INVALID_STATE, L.tinf_builder_data, builder, byref(p), byref(n))


def test_builder_declared_output_shape_mismatch(builder):
    _, x = add_tensor(builder, b"x", 1, (2, 3))
    _, y = add_tensor(builder, b"y", 1, (3, 2))
    add_op(builder, _lib.OP_IDS["Relu"], [x], [y])
    L.tinf_builder_set_graph_inputs(builder, 1, (c_int32 * 1)(x))
    L.tinf_builder_set_graph_outputs(builder, 1, (c_int32 * 1)(y))
    s, msg = finish_status(builder)
    assert s == S.SHAPE, (s, msg)


# -- Python API -----------------------------------------------------------------

@pytest.fixture
def model(model_bytes):
    with tinyinfer.load(model_bytes) as m:
        yield m


def test_python_wrong_shape_dtype_count(model):
    a, bb = inputs_for()
    with pytest.raises(ValueError) as ei:
        model.run([a.reshape(4, 2), bb])
    assert isinstance(ei.value, InvalidArgumentError)
    with pytest.raises(ValueError):
        model.run([a[:, :3], bb])  # a non-batch dimension differs
    with pytest.raises(ValueError):
        model.run([a.astype(np.complex64), bb])
    with pytest.raises(ValueError):
        model.run([np.array([["x"] * 4] * 2), bb])
    with pytest.raises(ValueError):
        model.run([a])  # one input missing
    with pytest.raises(ValueError):
        model.run(a)
    with pytest.raises(ValueError):
        model.run([a, bb, bb])


def test_python_other_batch_runs_on_its_own_session(model):
    """A batch (first dimension) other than the file's is re-inferred."""
    a, bb = inputs_for()
    a3 = np.concatenate([a, a[:1]])
    b3 = np.concatenate([bb, bb[:1]])
    outs3 = model.run([a3, b3])
    outs2 = model.run([a, bb])
    for y3, y2 in zip(outs3, outs2):
        assert y3.shape[0] == 3
        np.testing.assert_allclose(y3[:2], y2, rtol=1e-6, atol=1e-6)
    with model.session(input_shapes=[(5, 4), (5, 3)]) as s:
        assert s.inputs[0].shape == (5, 4)
        assert s.outputs[0].shape[0] == 5


def test_python_shape_sessions_are_a_bounded_lru(model_bytes):
    """Model.run keeps the `shape_sessions` most recently used sessions for
    other batch sizes and closes the least recently used one."""
    def batch(n, seed=0):
        r = np.random.default_rng(seed)
        return [r.standard_normal((n, 4)).astype(np.float32), r.standard_normal((n, 3)).astype(np.float32)]

    with tinyinfer.load(model_bytes) as m:
        assert m.shape_sessions == 4
    with tinyinfer.load(model_bytes, shape_sessions=2) as m:
        def cached():
            return [shapes[0][0] for shapes in m._sessions_by_shape]

        m.run(batch(3))
        m.run(batch(4))
        assert cached() == [3, 4]
        s3 = m._sessions_by_shape[((3, 4), (3, 3))]
        s4 = m._sessions_by_shape[((4, 4), (4, 3))]
        m.run(batch(3))  # a hit: 3 becomes the most recently used
        assert cached() == [4, 3] and m._sessions_by_shape[((3, 4), (3, 3))] is s3
        m.run(batch(2))  # the file's shape: its own session, the cache is unchanged
        assert cached() == [4, 3]
        x5 = batch(5, seed=7)
        outs = m.run(x5)  # evicts 4, the least recently used
        assert cached() == [3, 5]
        assert s4._handle is None and s3._handle is not None
        for got, want in zip(outs, reference(*x5)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        x4 = batch(4, seed=8)
        for got, want in zip(m.run(x4), reference(*x4)):  # made again after its eviction
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert cached() == [5, 4] and s3._handle is None
    for bad in (0, -1, 1.5, "4", None):
        with pytest.raises(InvalidArgumentError, match="shape_sessions"):
            tinyinfer.load(model_bytes, shape_sessions=bad)


def test_python_casts_same_kind(model):
    a, bb = inputs_for()
    (y64, _) = model.run([a.astype(np.float64), bb])
    (y32, _) = model.run([a, bb])
    np.testing.assert_array_equal(y64, y32)
    # non-contiguous inputs are made contiguous
    (yt, _) = model.run([np.asfortranarray(a), bb])
    np.testing.assert_array_equal(yt, y32)


def test_python_input_names(model):
    a, bb = inputs_for()
    with pytest.raises(InvalidArgumentError) as ei:
        model.run({"a": a, "b": bb, "c": bb})
    assert "c" in str(ei.value)
    with pytest.raises(ValueError):
        model.run({"a": a})
    with pytest.raises(ValueError):
        model.run({"A": a, "b": bb})


def test_python_input_forms():
    b = tinyinfer.GraphBuilder("one")
    x = b.input("x", (3,))
    b.output(b.op("Relu", x))
    with b.load() as m:
        v = np.array([-1, 0, 2], np.float32)
        r1 = m.run(v)[0]
        r2 = m.run([v])[0]
        r3 = m.run((v,))[0]
        r4 = m.run({"x": v})[0]
        for r in (r1, r2, r3, r4):
            np.testing.assert_array_equal(r, [0, 0, 2])
    b.close()


def test_python_dict_equals_list(model):
    a, bb = inputs_for(3)
    r1 = model.run([a, bb])
    r2 = model.run({"b": bb, "a": a})
    for x, y in zip(r1, r2):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(r1, reference(a, bb)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_python_copy_false_views(model):
    a, bb = inputs_for(1)
    views = model.run([a, bb], copy=False)
    assert not views[0].flags.writeable
    np.testing.assert_allclose(views[0], reference(a, bb)[0], rtol=1e-5, atol=1e-5)


def test_python_closed_model(model_bytes):
    m = tinyinfer.load(model_bytes)
    s = m.session()
    m.close()
    m.close()  # idempotent
    a, bb = inputs_for()
    with pytest.raises(InvalidStateError) as ei:
        m.run([a, bb])
    assert isinstance(ei.value, RuntimeError)
    with pytest.raises(InvalidStateError):
        m.session()
    with pytest.raises(InvalidStateError):
        _ = m.handle
    # a session outlives its model
    np.testing.assert_allclose(s.run([a, bb])[0], reference(a, bb)[0], rtol=1e-5, atol=1e-5)
    s.close()
    with pytest.raises(InvalidStateError):
        s.run([a, bb])
    s.close()


def test_python_context_managers(model_bytes):
    with tinyinfer.load(model_bytes) as m:
        with m.session(threads=2) as s:
            assert s.threads == 2
            assert s.arena_bytes > 0 and s.unplanned_bytes >= s.arena_bytes
            s.run(list(inputs_for()))
        assert s._handle is None
        assert m.arena_bytes > 0
    assert m._handle is None
    with pytest.raises(InvalidStateError):
        m.run(list(inputs_for()))


def test_python_metadata_and_info(model):
    assert model.metadata == {"name": "capi", "producer": "tinyinfer.GraphBuilder", "author": "tests", "empty": ""}
    assert [(t.name, t.dtype, t.shape, t.nbytes) for t in model.inputs] == \
        [("a", np.float32, (2, 4), 32), ("b", np.float32, (2, 3), 24)]
    assert [(t.name, t.dtype, t.shape) for t in model.outputs] == [("sum", np.float32, (2, 3)),
                                                                   ("tanh_a", np.float32, (2, 4))]
    assert model.num_ops == 4
    assert model.weight_bytes == W1.nbytes + B1.nbytes + W2.nbytes
    assert "4 ops" in repr(model)


def test_python_load_errors(tmp_path):
    with pytest.raises(ModelFormatError):
        tinyinfer.load(b"not a model at all" * 10)
    with pytest.raises(OSError):
        tinyinfer.load(tmp_path / "missing.tinf")


def test_python_builder_errors():
    b = tinyinfer.GraphBuilder()
    x = b.input("x", (2,))
    with pytest.raises(UnsupportedOpError):
        b.op("NoSuchOp", x)
    with pytest.raises(InvalidArgumentError):
        b.op("Relu", x, no_such_attr=1)
    with pytest.raises(InvalidArgumentError):
        b.input("x", (3,))  # name used twice
    other = tinyinfer.GraphBuilder()
    with pytest.raises(InvalidArgumentError):
        other.op("Relu", x)
    with pytest.raises(TinyInferError):
        b.to_bytes()  # no outputs
    other.close()
    b.close()


def test_abi_version_matches():
    assert _lib.ABI_VERSION == L.tinf_abi_version() == tinyinfer.ABI_VERSION


def test_abi_mismatch_refused():
    # Import the package with a CDLL whose tinf_abi_version() says 999: the
    # import must fail with ImportError naming both versions.
    code = r"""
import ctypes, sys
sys.path.insert(0, %r)
real = ctypes.CDLL
class FakeLib:
    def __init__(self, *a, **k):
        self._real = real(*a, **k)
        self._cache = {}
    def __getattr__(self, name):
        if name not in self._cache:
            if name == "tinf_abi_version":
                f = lambda: 999
            else:
                f = getattr(self._real, name)
            self._cache[name] = f
        return self._cache[name]
ctypes.CDLL = FakeLib
try:
    import tinyinfer
except ImportError as e:
    print("refused:", e)
    sys.exit(0)
print("accepted")
sys.exit(1)
""" % os.path.dirname(HERE)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "999" in p.stdout and str(_lib.ABI_VERSION) in p.stdout


def test_missing_library_refused(tmp_path):
    code = "import sys; sys.path.insert(0, %r); import tinyinfer" % os.path.dirname(HERE)
    env = dict(os.environ, TINYINFER_LIB=str(tmp_path / "libnope.so"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode != 0
    assert "libnope.so" in p.stderr


# -- failures do not leak ----------------------------------------------------------

def huge_arena_model():
    # Valid, but a session needs a 32 GiB arena: over the library's arena limit
    # (or more than malloc gives), so tinf_session_create fails.
    b = tinyinfer.GraphBuilder("huge")
    x = b.input("x", (1 << 15, 1 << 17))
    b.output(b.op("Relu", x))
    data = b.to_bytes()
    b.close()
    return data


def test_session_create_failure_reports_oom():
    r = Raw(huge_arena_model())
    try:
        s = _lib.SessionHandle()
        expect(S.OUT_OF_MEMORY, L.tinf_session_create, r.model, None, byref(s))
        assert not s.value
        assert "arena" in last_error()
    finally:
        L.tinf_model_free(r.model)


def test_session_create_and_free_does_not_leak():
    grown = rss_growth(
        "from test_capi import Raw, two_input_model, L, _lib, byref\n"
        "raw = Raw(two_input_model())\n"
        "def step(n):\n"
        "    for _ in range(n):\n"
        "        s = _lib.SessionHandle()\n"
        "        L.tinf_session_create(raw.model, None, byref(s))\n"
        "        L.tinf_session_free(s)\n")
    assert grown < 2 << 20, f"RSS grew by {grown} bytes over 50000 session creations and frees"


def test_failed_session_create_does_not_leak():
    grown = rss_growth(
        "from test_capi import Raw, huge_arena_model, L, _lib, byref, st\n"
        "r = Raw(huge_arena_model())\n"
        "s = _lib.SessionHandle()\n"
        "def step(n):\n"
        "    for _ in range(n):\n"
        "        st(L.tinf_session_create, r.model, None, byref(s))\n")
    assert grown < 2 << 20, f"RSS grew by {grown} bytes over 50000 failed session creations"


# -- unusual but valid graphs --------------------------------------------------------

def test_scalar_input():
    b = tinyinfer.GraphBuilder("scalar")
    b.output(b.op("Relu", b.input("x", ())))
    with b.load() as m:
        assert m.inputs[0].shape == () and m.inputs[0].nbytes == 4
        assert m.run(np.array(-3, np.float32))[0] == 0
        assert m.run(np.float32(2.5))[0] == 2.5
    b.close()


def test_identity_graph_output_is_input():
    b = tinyinfer.GraphBuilder("identity")
    x = b.input("x", (2, 3), "int32")
    b.output(x)
    with b.load() as m:
        assert m.num_ops == 0
        v = np.arange(6, dtype=np.int32).reshape(2, 3)
        np.testing.assert_array_equal(m.run(v)[0], v)
        np.testing.assert_array_equal(m.run({"x": v + 1})[0], v + 1)
    b.close()


def test_constant_output_and_no_inputs():
    b = tinyinfer.GraphBuilder("consts")
    c = b.const("c", np.array([[5, -6]], np.float32))
    b.output(b.op("Relu", c), c)
    with b.load() as m:
        assert m.inputs == []
        r, c_out = m.run([])
        np.testing.assert_array_equal(r, [[5, 0]])
        np.testing.assert_array_equal(c_out, [[5, -6]])
        with m.session() as s:
            r2, _ = s.run({})
            np.testing.assert_array_equal(r2, r)
    b.close()


# -- inspection and profiling ----------------------------------------------------------

def test_inspection_null_and_ranges(raw, session):
    n = c_int32(-7)
    d = _lib.TensorDetail()
    z = c_size_t()
    ns = ctypes.c_uint64()
    op, ni, no = c_int32(), c_int32(), c_int32()
    ins, outs = ctypes.POINTER(c_int32)(), ctypes.POINTER(c_int32)()
    times = ctypes.POINTER(ctypes.c_uint64)()
    expect(S.INVALID_ARGUMENT, L.tinf_model_tensor_count, None, byref(n))
    expect(S.INVALID_ARGUMENT, L.tinf_model_tensor_count, raw.model, None)
    expect(S.INVALID_ARGUMENT, L.tinf_model_tensor_detail, None, 0, byref(d))
    expect(S.INVALID_ARGUMENT, L.tinf_model_tensor_detail, raw.model, 0, None)
    expect(S.INVALID_ARGUMENT, L.tinf_model_op, None, 0, byref(op), byref(ni), byref(ins), byref(no), byref(outs))
    expect(S.INVALID_ARGUMENT, L.tinf_model_sizes, None, byref(z), byref(z), byref(z), byref(z))
    expect(S.INVALID_ARGUMENT, L.tinf_model_load_ns, None, byref(ns))
    expect(S.INVALID_ARGUMENT, L.tinf_model_load_ns, raw.model, None)
    expect(S.INVALID_ARGUMENT, L.tinf_session_run_profiled, None, byref(times), byref(n))
    assert n.value == -7
    L.tinf_model_tensor_count(raw.model, byref(n))
    count = n.value
    for i in (-1, count, count + 1, 2 ** 31 - 1):
        expect(S.INVALID_ARGUMENT, L.tinf_model_tensor_detail, raw.model, i, byref(d))
    ops, tens, wb = c_int32(), c_int32(), c_size_t()
    L.tinf_model_stats(raw.model, byref(ops), byref(tens), byref(wb))
    for i in (-1, ops.value, 2 ** 31 - 1):
        expect(S.INVALID_ARGUMENT, L.tinf_model_op, raw.model, i, byref(op), byref(ni), byref(ins), byref(no), byref(outs))
    # every op refers to existing tensors and a known op id
    for k in range(ops.value):
        L.tinf_model_op(raw.model, k, byref(op), byref(ni), byref(ins), byref(no), byref(outs))
        assert L.tinf_op_name(op.value) is not None
        assert all(-1 <= ins[j] < count for j in range(ni.value))
        assert no.value >= 1 and all(0 <= outs[j] < count for j in range(no.value))
    # every tensor is described
    kinds = []
    for i in range(count):
        L.tinf_model_tensor_detail(raw.model, i, byref(d))
        assert d.name and 0 <= d.rank <= 8 and 0 <= d.kind <= 3
        kinds.append(d.kind)
    assert kinds.count(3) == 2  # the two graph inputs
    h, g, dd, f = c_size_t(), c_size_t(), c_size_t(), c_size_t()
    L.tinf_model_sizes(raw.model, byref(h), byref(g), byref(dd), byref(f))
    assert h.value == 64 and g.value > 0 and dd.value >= W1.nbytes + B1.nbytes + W2.nbytes
    L.tinf_session_run_profiled(session, byref(times), byref(n))
    assert n.value == ops.value
