"""Corrupt and hostile .tinf files: every one must raise a TinyInferError
subclass (ModelFormatError, VersionError, UnsupportedOpError, ...) and never
crash the process.

Header layout (docs/format.md, ModelFile.readHeader): magic 0..4, u16 major at
4, u16 minor at 6, u32 header size at 8, u32 flags at 12, u64 body offset 16,
u64 body size 24, u64 data offset 32, u64 data size 40, u64 file size 48.

The byte-flip fuzzing runs in a subprocess so that a crash of the library
(a Swift trap, a segfault) shows up as a failed test instead of killing pytest.
"""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from conftest import rss_growth
from tinyinfer import (ModelFormatError, TinyInferError, TinyInferIOError, UnsupportedOpError, VersionError)
from tinyinfer import Status as S

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)

OFF_MAGIC, OFF_MAJOR, OFF_MINOR, OFF_HSIZE, OFF_FLAGS = 0, 4, 6, 8, 12
OFF_BODY, OFF_BODY_SIZE, OFF_DATA, OFF_DATA_SIZE, OFF_FILE_SIZE = 16, 24, 32, 40, 48
HEADER_SIZE = 64


def build_mlp(seed=0):
    """A 2-layer MLP with constants: x[2,8] -> FC(16, relu) -> FC(4) -> Softmax."""
    r = np.random.default_rng(seed)
    b = tinyinfer.GraphBuilder("mlp")
    b.metadata("purpose", "format tests")
    x = b.input("x", (2, 8))
    w1 = b.const("w1", r.standard_normal((16, 8)).astype(np.float32))
    b1 = b.const("b1", r.standard_normal(16).astype(np.float32))
    w2 = b.const("w2", r.standard_normal((4, 16)).astype(np.float32))
    b2 = b.const("b2", r.standard_normal(4).astype(np.float32))
    h = b.op("FullyConnected", x, w1, b1, activation=1, name="h")
    z = b.op("FullyConnected", h, w2, b2, name="z")
    y = b.op("Softmax", z, name="y")
    b.output(y)
    data = b.to_bytes()
    b.close()
    return data


def build_attr_model(seed=0):
    """Ops with attributes of every kind the known ops take (ints, floats):
    x[2,3,8] -> LayerNorm(axis=-1) -> MatMul(transpose_b) -> LeakyRelu(alpha)
    -> Softmax(axis=1, beta) -> Gelu(approximate) -> Add(activation) with BatchNorm."""
    r = np.random.default_rng(seed)
    b = tinyinfer.GraphBuilder("attrs")
    x = b.input("x", (2, 3, 8))
    g = b.const("gamma", r.standard_normal(8).astype(np.float32))
    be = b.const("beta", r.standard_normal(8).astype(np.float32))
    h = b.op("LayerNorm", x, g, be, axis=-1, epsilon=1e-3)
    w = b.const("w", r.standard_normal((5, 8)).astype(np.float32))
    h = b.op("MatMul", h, w, transpose_b=1)
    h = b.op("LeakyRelu", h, alpha=0.1)
    h = b.op("Softmax", h, axis=1, beta=2.0)
    h = b.op("Gelu", h, approximate=1)
    c = [b.const(f"bn{i}", (np.abs(r.standard_normal(5)) + 0.5).astype(np.float32)) for i in range(4)]
    h2 = b.op("BatchNorm", h, *c, epsilon=1e-4)
    y = b.op("Add", h, h2, activation=2)
    b.output(y, h)
    data = b.to_bytes()
    b.close()
    return data


def mlp_reference(x, seed=0):
    r = np.random.default_rng(seed)
    w1 = r.standard_normal((16, 8)).astype(np.float32)
    b1 = r.standard_normal(16).astype(np.float32)
    w2 = r.standard_normal((4, 16)).astype(np.float32)
    b2 = r.standard_normal(4).astype(np.float32)
    h = np.maximum(x @ w1.T + b1, 0)
    z = h @ w2.T + b2
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def mlp():
    return build_mlp()


def header(data):
    return struct.unpack_from("<4sHHIIQQQQQ", data, 0)


def patched(data, offset, fmt, value):
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def assert_refused(data, cls=ModelFormatError):
    with pytest.raises(cls) as ei:
        tinyinfer.load(data)
    assert isinstance(ei.value, TinyInferError)
    assert ei.value.message  # tinf_last_error() said something
    return ei.value


# -- the valid model --------------------------------------------------------

def test_valid_model_loads_and_runs(mlp):
    magic, major, minor, hsize, flags, body_off, body_size, data_off, data_size, file_size = header(mlp)
    assert magic == b"TINF"
    assert major == tinyinfer._clib.tinf_format_version_major()
    assert minor == 0 <= tinyinfer._clib.tinf_format_version_minor()  # no sparse constant: the oldest minor, 1.0
    assert hsize == HEADER_SIZE and file_size == len(mlp)
    assert body_off >= HEADER_SIZE and data_off % 64 == 0 and data_off >= body_off + body_size
    x = np.random.default_rng(5).standard_normal((2, 8)).astype(np.float32)
    with tinyinfer.load(mlp) as m:
        (y,) = m.run(x)
    np.testing.assert_allclose(y, mlp_reference(x), rtol=1e-5, atol=1e-6)


# -- whole-file damage ------------------------------------------------------

def test_empty_bytes():
    assert_refused(b"")


@pytest.mark.parametrize("data", [b"T", b"TINF", b"\0" * 64, b"\0" * 4096, b"XINF" + b"\0" * 60,
                                  b"tinf" + b"\0" * 200, b"\x7fELF" + b"\0" * 200])
def test_garbage(data):
    assert_refused(data)


def test_bad_magic(mlp):
    for i in range(4):
        b = bytearray(mlp)
        b[i] ^= 0x20
        assert_refused(bytes(b))


def test_every_truncation(mlp):
    for n in range(len(mlp)):
        e = assert_refused(mlp[:n])
        assert e.status == S.BAD_FORMAT, (n, e.status, e.message)


def test_trailing_garbage_refused(mlp):
    # The header's file size no longer matches.
    assert_refused(mlp + b"\0" * 64)
    assert_refused(mlp + b"x")


def test_unaligned_buffer_is_copied(mlp):
    # An unaligned buffer is copied by the library: load through a bytes object
    # at an odd address with the raw C API.
    import ctypes
    from tinyinfer import _lib
    buf = ctypes.create_string_buffer(len(mlp) + 1)
    ctypes.memmove(ctypes.addressof(buf) + 1, mlp, len(mlp))
    h = _lib.ModelHandle()
    _lib.lib.tinf_model_load_buffer(ctypes.addressof(buf) + 1, len(mlp), ctypes.byref(h))
    del buf  # the library owns a copy
    n = ctypes.c_int32()
    _lib.lib.tinf_model_input_count(h, ctypes.byref(n))
    assert n.value == 1
    _lib.lib.tinf_model_free(h)


# -- header fields ----------------------------------------------------------

HUGE = [2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 64, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 64, 2 ** 64 - 1]


@pytest.mark.parametrize("field", ["body_off", "body_size", "data_off", "data_size", "file_size"])
def test_header_offsets_out_of_range(mlp, field):
    _, _, _, _, _, body_off, body_size, data_off, data_size, size = header(mlp)
    offset = {"body_off": OFF_BODY, "body_size": OFF_BODY_SIZE, "data_off": OFF_DATA,
              "data_size": OFF_DATA_SIZE, "file_size": OFF_FILE_SIZE}[field]
    values = [size + 1, size + 64, size * 2] + HUGE
    if field == "body_off":
        values += [0, 8, 63, size - body_size + 1, size]
    if field == "body_size":
        values += [0, 1, body_size - 1, body_size + 1, size - body_off + 1]
    if field == "data_off":
        values += [0, 64, data_off - 64, data_off + 1, data_off + 64, size]
    if field == "data_size":
        values += [0, data_size - 1, data_size + 1, size - data_off + 1]
    if field == "file_size":
        values += [0, 1, size - 1]
    for v in values:
        data = patched(mlp, offset, "<Q", v)
        with pytest.raises(TinyInferError) as ei:
            tinyinfer.load(data)
        # A body that is cut or shifted may parse far enough to hit another
        # check (an unknown op code, a shape), but never passes.
        assert ei.value.status in (S.BAD_FORMAT, S.UNSUPPORTED_OP, S.UNSUPPORTED_DTYPE, S.SHAPE), \
            (field, v, ei.value.status, ei.value.message)


@pytest.mark.parametrize("v", [0, 1, 63, 65, 128, 2 ** 31, 2 ** 32 - 1])
def test_header_size_field(mlp, v):
    assert_refused(patched(mlp, OFF_HSIZE, "<I", v))


def test_header_flags_are_reserved(mlp):
    # Flags are reserved: a reader ignores them (or refuses with a format error).
    data = patched(mlp, OFF_FLAGS, "<I", 0xFFFFFFFF)
    try:
        tinyinfer.load(data).close()
    except ModelFormatError:
        pass


def test_newer_major_version(mlp):
    major = header(mlp)[1]
    for v in (major + 1, major + 7, 0xFFFF):
        e = assert_refused(patched(mlp, OFF_MAJOR, "<H", v), VersionError)
        assert e.status == S.VERSION
        assert isinstance(e, ModelFormatError)
    if major > 0:
        e = assert_refused(patched(mlp, OFF_MAJOR, "<H", major - 1), VersionError)


def test_newer_minor_version_loads(mlp):
    minor = header(mlp)[2]
    x = np.random.default_rng(9).standard_normal((2, 8)).astype(np.float32)
    for v in (minor + 1, minor + 5, 0xFFFF):
        with tinyinfer.load(patched(mlp, OFF_MINOR, "<H", v)) as m:
            (y,) = m.run(x)
        np.testing.assert_allclose(y, mlp_reference(x), rtol=1e-5, atol=1e-6)


def test_newer_minor_may_append_body_fields(mlp):
    # A newer minor may append fields to the graph section: the reader skips
    # them. Grow the body into the padding before the data section.
    _, _, minor, _, _, body_off, body_size, data_off, _, _ = header(mlp)
    if body_off + body_size == data_off:
        pytest.skip("no padding between the sections")
    grown = patched(mlp, OFF_BODY_SIZE, "<Q", body_size + 1)
    assert_refused(grown)  # same minor: trailing bytes are an error
    newer = patched(grown, OFF_MINOR, "<H", tinyinfer._clib.tinf_format_version_minor() + 1)
    with tinyinfer.load(newer) as m:
        m.run(np.zeros((2, 8), np.float32))


# -- the graph section --------------------------------------------------------

def body_of(data):
    _, _, _, _, _, body_off, body_size, _, _, _ = header(data)
    return body_off, body_size


class BodyReader:
    """Walks the graph section of a well-formed file, recording offsets."""

    def __init__(self, data):
        self.data = data
        self.pos, _ = body_of(data)
        self.marks = {}

    def u8(self):
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u32(self):
        v = struct.unpack_from("<I", self.data, self.pos)[0]
        self.pos += 4
        return v

    def skip(self, n):
        self.pos += n

    def string(self):
        n = self.u32()
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def walk(self):
        m = self.marks
        m["meta_count"] = self.pos
        for _ in range(self.u32()):
            self.string()
            self.string()
        m["tensor_count"] = self.pos
        tensors = []
        for _ in range(self.u32()):
            t = {"name_at": self.pos}
            t["name"] = self.string()
            t["dtype_at"] = self.pos
            self.u8()
            t["flags_at"] = self.pos
            flags = self.u8()
            t["rank_at"] = self.pos
            rank = self.u8()
            self.u8()
            t["dims_at"] = self.pos
            if flags & 2:
                self.skip(8 * rank)
            t["quant_at"] = self.pos
            q = self.u8()
            assert q == 0
            if flags & 1:
                t["off_at"] = self.pos
                self.skip(8)
                t["size_at"] = self.pos
                self.skip(8)
            tensors.append(t)
        m["tensors"] = tensors
        m["input_count"] = self.pos
        self.skip(4 * self.u32())
        m["output_count"] = self.pos
        self.skip(4 * self.u32())
        m["op_count"] = self.pos
        ops = []
        for _ in range(self.u32()):
            o = {"code_at": self.pos}
            self.skip(2)
            o["nattr_at"] = self.pos
            self.skip(2)
            o["nin_at"] = self.pos
            self.skip(4 * self.u32())
            o["nout_at"] = self.pos
            self.skip(4 * self.u32())
            ops.append(o)
            # attributes follow; only ops without attributes are walked past
            nattr = struct.unpack_from("<H", self.data, o["nattr_at"])[0]
            for _ in range(nattr):
                self.skip(2)
                typ = self.u8()
                self.skip(1)
                if typ == 1:
                    self.skip(8)
                elif typ == 2:
                    self.skip(4)
                elif typ == 3:
                    self.skip(8 * self.u32())
                elif typ == 4:
                    self.skip(4 * self.u32())
                elif typ == 5:
                    self.string()
        m["ops"] = ops
        m["end"] = self.pos
        return m


@pytest.fixture(scope="module")
def marks(mlp):
    m = BodyReader(mlp).walk()
    body_off, body_size = body_of(mlp)
    assert m["end"] == body_off + body_size, "the test's reading of the body is out of date"
    return m


def test_body_walk_names(marks):
    names = [t["name"] for t in marks["tensors"]]
    assert names[:5] == ["x", "w1", "b1", "w2", "b2"]


COUNTS = [2 ** 16, 2 ** 20, 2 ** 20 + 1, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1]


@pytest.mark.parametrize("where", ["meta_count", "tensor_count", "input_count", "output_count", "op_count"])
def test_huge_counts(mlp, marks, where):
    for v in COUNTS:
        e = assert_refused(patched(mlp, marks[where], "<I", v))
        assert e.status == S.BAD_FORMAT


def test_huge_counts_in_tensor_table(mlp, marks):
    for t in marks["tensors"]:
        for v in COUNTS + [2 ** 12 + 1]:
            assert_refused(patched(mlp, t["name_at"], "<I", v))
    for o in marks["ops"]:
        for v in COUNTS:
            assert_refused(patched(mlp, o["nin_at"], "<I", v))
            assert_refused(patched(mlp, o["nout_at"], "<I", v))
        for v in (257, 0xFFFF):
            assert_refused(patched(mlp, o["nattr_at"], "<H", v))


def test_bad_tensor_fields(mlp, marks):
    x = marks["tensors"][0]
    w1 = marks["tensors"][1]
    assert_refused(patched(mlp, w1["dtype_at"], "<B", 200), UnsupportedOpError)  # unknown dtype
    assert_refused(patched(mlp, w1["dtype_at"], "<B", 0))  # a constant must declare its dtype
    assert_refused(patched(mlp, w1["flags_at"], "<B", 0x80))  # unknown flags
    assert_refused(patched(mlp, w1["rank_at"], "<B", 9))  # rank > 8, and the body no longer parses
    assert_refused(patched(mlp, w1["quant_at"], "<B", 7))  # unknown quantization kind
    # Dimensions: 0, negative, huge, and products that overflow.
    for d in (0, -1, -(2 ** 63), 2 ** 40, 2 ** 62, 2 ** 63 - 1):
        with pytest.raises(TinyInferError):
            tinyinfer.load(patched(mlp, x["dims_at"], "<q", d))
        with pytest.raises(TinyInferError):
            tinyinfer.load(patched(mlp, w1["dims_at"], "<q", d))
    big = patched(patched(mlp, x["dims_at"], "<q", 2 ** 31), x["dims_at"] + 8, "<q", 2 ** 31)
    with pytest.raises(TinyInferError):
        tinyinfer.load(big)


def test_bad_op_fields(mlp, marks):
    op0 = marks["ops"][0]
    assert_refused(patched(mlp, op0["code_at"], "<H", 0), UnsupportedOpError)
    assert_refused(patched(mlp, op0["code_at"], "<H", 0xFFFF), UnsupportedOpError)
    # input / output indices out of range
    first_in = op0["nin_at"] + 4
    for v in (-2, 5000, 2 ** 31 - 1, -(2 ** 31)):
        assert_refused(patched(mlp, first_in, "<i", v))
    first_out = op0["nout_at"] + 4
    for v in (5000, 2 ** 32 - 1, 0, 1):  # out of range, or a graph input / constant
        assert_refused(patched(mlp, first_out, "<I", v))
    # graph input / output indices out of range
    assert_refused(patched(mlp, marks["input_count"] + 4, "<I", 2 ** 32 - 1))
    assert_refused(patched(mlp, marks["output_count"] + 4, "<I", 2 ** 32 - 1))
    assert_refused(patched(mlp, marks["output_count"], "<I", 0))  # no outputs


def test_constant_data_out_of_bounds(mlp, marks):
    _, _, _, _, _, _, _, data_off, data_size, size = header(mlp)
    for t in marks["tensors"]:
        if "off_at" not in t:
            continue
        off, nbytes = struct.unpack_from("<QQ", mlp, t["off_at"])
        for v in (data_size, data_size - nbytes + 64, 2 ** 32, 2 ** 62, 2 ** 63, 2 ** 64 - 64, 2 ** 64 - 1, off + 1):
            assert_refused(patched(mlp, t["off_at"], "<Q", v))
        for v in (0, nbytes - 1, nbytes + 1, 2 ** 34, 2 ** 40, 2 ** 63, 2 ** 64 - 1):
            assert_refused(patched(mlp, t["size_at"], "<Q", v))
    # A data section that is shortened cuts off the last constant.
    assert_refused(patched(mlp, OFF_DATA_SIZE, "<Q", data_size - 4))


def test_unknown_attribute_key(marks):
    # A model with an attribute: patch the key code to an unknown one.
    b = tinyinfer.GraphBuilder("attr")
    x = b.input("x", (2, 3))
    y = b.op("LeakyRelu", x, alpha=0.5)
    b.output(y)
    data = b.to_bytes()
    m = BodyReader(data).walk()
    op0 = m["ops"][0]
    key_at = op0["nout_at"] + 4 + 4  # one output
    assert_refused(patched(data, key_at, "<H", 0xFFFF), UnsupportedOpError)
    assert_refused(patched(data, key_at + 2, "<B", 99))  # unknown attribute type


# -- files ----------------------------------------------------------------

def test_load_from_path(mlp, tmp_path):
    p = tmp_path / "mlp.tinf"
    p.write_bytes(mlp)
    x = np.ones((2, 8), np.float32)
    with tinyinfer.load(p) as m:
        (y,) = m.run(x)
    np.testing.assert_allclose(y, mlp_reference(x), rtol=1e-5, atol=1e-6)
    with tinyinfer.load(str(p)) as m:
        assert m.metadata["name"] == "mlp"


def test_missing_path(tmp_path):
    with pytest.raises(TinyInferIOError) as ei:
        tinyinfer.load(tmp_path / "nope.tinf")
    assert isinstance(ei.value, OSError)
    assert ei.value.status == S.IO
    assert "nope.tinf" in str(ei.value)


def test_directory_path(tmp_path):
    with pytest.raises(TinyInferError):
        tinyinfer.load(tmp_path)


def test_empty_and_truncated_files(mlp, tmp_path):
    p = tmp_path / "empty.tinf"
    p.write_bytes(b"")
    with pytest.raises(ModelFormatError):
        tinyinfer.load(p)
    for n in (1, 63, 64, len(mlp) // 2, len(mlp) - 1):
        p.write_bytes(mlp[:n])
        with pytest.raises(ModelFormatError):
            tinyinfer.load(p)


def test_unreadable_file(mlp, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads anything")
    p = tmp_path / "locked.tinf"
    p.write_bytes(mlp)
    p.chmod(0)
    with pytest.raises(TinyInferIOError):
        tinyinfer.load(p)


def test_hostile_file_on_disk(mlp, tmp_path):
    p = tmp_path / "bad.tinf"
    p.write_bytes(patched(mlp, OFF_BODY_SIZE, "<Q", 2 ** 64 - 1))
    with pytest.raises(ModelFormatError):
        tinyinfer.load(p)


# -- fuzzing ----------------------------------------------------------------

def fuzz(seed, count, start=0, model="mlp"):
    """Applies `count` seeded mutations to the MLP's graph section (and a few
    to its data section and header) and loads each one. Every mutant must load
    (and then run on a zero input) or raise a TinyInferError subclass.
    Returns a dict of counters. Meant to run in a child process."""
    import random
    try:
        import resource
        # A hostile file can ask for a big arena: let allocations fail
        # (OutOfMemoryError) instead of exhausting the machine.
        lim = 2 << 30
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    except (ImportError, ValueError, OSError):
        pass
    base = build_mlp() if model == "mlp" else build_attr_model()
    body_off, body_size = body_of(base)
    interesting8 = [0, 1, 2, 3, 7, 8, 9, 0x7F, 0x80, 0xFE, 0xFF]
    interesting32 = [0, 1, 2, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 1 << 20, 4096]
    stats = {"loaded": 0, "ran": 0}
    rnd = random.Random(seed)
    for i in range(count):
        b = bytearray(base)
        kind = rnd.random()
        nmut = rnd.choice((1, 1, 1, 2, 3, 8))
        for _ in range(nmut):
            if kind < 0.9:
                pos = body_off + rnd.randrange(body_size)
            elif kind < 0.97:
                pos = rnd.randrange(len(b))
            else:
                pos = rnd.randrange(HEADER_SIZE)
            how = rnd.randrange(5)
            if how == 0:
                b[pos] ^= 1 << rnd.randrange(8)
            elif how == 1:
                b[pos] = rnd.randrange(256)
            elif how == 2:
                b[pos] = rnd.choice(interesting8)
            elif how == 3 and pos + 4 <= len(b):
                struct.pack_into("<I", b, pos, rnd.choice(interesting32))
            elif pos + 8 <= len(b):
                struct.pack_into("<Q", b, pos, rnd.choice([0, 2 ** 63 - 1, 2 ** 64 - 1, 2 ** 32, 1 << 34, 64]))
        data = bytes(b)
        if i < start:
            continue
        try:
            m = tinyinfer.load(data)
        except TinyInferError:
            stats.setdefault("refused", 0)
            stats["refused"] += 1
            continue
        stats["loaded"] += 1
        with m:
            try:
                if sum(t.nbytes for t in m.inputs + m.outputs) > (64 << 20):
                    m.session().close()  # plan and allocate, but do not spend time running
                    continue
                m.run([np.zeros(t.shape, t.dtype) for t in m.inputs])
                stats["ran"] += 1
            except TinyInferError:
                pass
    return stats


FUZZ_SEEDS = [1, 2, 3]
FUZZ_COUNT = 1000


def test_attr_model_loads():
    with tinyinfer.load(build_attr_model()) as m:
        y, h = m.run(np.zeros((2, 3, 8), np.float32))
    assert y.shape == h.shape == (2, 3, 5)


@pytest.mark.parametrize("model", ["mlp", "attrs"])
@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_fuzz_in_subprocess(seed, model):
    code = ("import sys; sys.path[:0] = [%r, %r]; import test_format as t; "
            "print(t.fuzz(%d, %d, model=%r))" % (PYDIR, HERE, seed, FUZZ_COUNT, model))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, (
        f"fuzz seed {seed} crashed the process (exit {p.returncode}); bisect with "
        f"test_format.fuzz({seed}, n, start=n-1, model={model!r})\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-4000:]}")
    stats = eval(p.stdout.strip().splitlines()[-1])
    assert stats.get("refused", 0) > 0


# -- leaks ------------------------------------------------------------------------

def _load_many(data, n, ok):
    import ctypes
    from tinyinfer import _lib
    buf = np.zeros(len(data) + 64, np.uint8)
    off = (-buf.ctypes.data) % 64
    view = buf[off:off + len(data)]
    view[:] = np.frombuffer(data, np.uint8)
    h = _lib.ModelHandle()
    load, free = _lib.lib.tinf_model_load_buffer, _lib.lib.tinf_model_free
    addr, size = view.ctypes.data, (len(data) if ok else len(data) - 1)
    for _ in range(n):
        try:
            load(addr, size, ctypes.byref(h))
        except TinyInferError:
            continue
        free(h)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_load_and_free_does_not_leak():
    grown = rss_growth("from test_format import _load_many, build_mlp\n"
                       "data = build_mlp()\ndef step(n): _load_many(data, n, True)")
    assert grown < 2 << 20, f"RSS grew by {grown} bytes over 50000 loads (~{grown // 50000} B each)"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_failed_loads_do_not_leak():
    # each load is refused (the header's file size does not match)
    grown = rss_growth("from test_format import _load_many, build_mlp\n"
                       "data = build_mlp()\ndef step(n): _load_many(data, n, False)")
    assert grown < 2 << 20, f"RSS grew by {grown} bytes over 50000 refused loads (~{grown // 50000} B each)"


# -- resource bombs -----------------------------------------------------------------

BOMB_BUILDER = r"""
import sys
sys.path[:0] = [%r]
import numpy as np
import tinyinfer
steps = %d
b = tinyinfer.GraphBuilder("bomb")
x = b.input("x", (1,))
# 64 KiB from two 512-byte constants, then Adds that each broadcast along a
# new dim of size 4: every op grows its input only 4x, but the chain grows
# 4**steps times. Every op reads constants only, so all of it is folded at load.
t = b.op("Add", b.const("r", np.ones((1,) * 6 + (128, 1), np.float32)),
         b.const("c", np.ones((1,) * 6 + (1, 128), np.float32)))
for k in range(steps):
    shape = [1] * 8
    shape[5 - k] = 4
    t = b.op("Add", t, b.const("g%%d" %% k, np.ones(shape, np.float32)))
b.output(b.op("Relu", x), t)
b.save(sys.argv[1])
"""

BOMB_LOADER = r"""
import resource, sys
sys.path[:0] = [%r]
import numpy as np
import tinyinfer
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    m = tinyinfer.load(sys.argv[1])
except tinyinfer.TinyInferError as e:
    print("refused", e)
r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((r1 - r0) * 1024)
"""


def test_constant_folding_cannot_inflate_a_tiny_file(tmp_path):
    path = tmp_path / "bomb.tinf"
    p = subprocess.run([sys.executable, "-c", BOMB_BUILDER % (PYDIR, 6), str(path)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    size = path.stat().st_size
    assert size < 4096
    p = subprocess.run([sys.executable, "-c", BOMB_LOADER % PYDIR, str(path)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    grown = int(p.stdout.split()[-1])
    # Loading a 3 KB file may take memory in proportion to the file (constant
    # folding stops at its budget, docs/format.md), not hundreds of MiB. The
    # graph itself computes a 256 MiB output: running it needs an arena of
    # that size, which the session's arena limit bounds.
    assert grown < 32 << 20, f"loading a {size}-byte file raised the peak RSS by {grown >> 20} MiB"
