"""Issue 12: never crash, never hang. Regression tests for the runtime's
defects an audit found (closing during a run, copy=False views after close,
FIFOs and devices as model paths, NUL bytes in paths, the work limit, NULL
out-pointers). Races and possible crashes run in a child process, so a
regression fails the test instead of killing pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from ctypes import byref, c_int32, c_int64, c_size_t, c_uint64, c_void_p, POINTER

import numpy as np
import pytest

import tinyinfer
from tinyinfer import _lib
from tinyinfer._errors import (InvalidArgumentError, InvalidStateError, ShapeError, Status, TinyInferIOError,
                               TinyInferRuntimeError)

L = _lib.lib
PYDIR = os.path.dirname(os.path.dirname(os.path.abspath(tinyinfer.__file__)))


def child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python (this package on the path); returns the result."""
    env = dict(os.environ, PYTHONPATH=PYDIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)


# A model whose run takes milliseconds (so a close lands inside a run) and
# whose arena is over 1 MB (mapped and unmapped whole: a run on a freed arena
# faults): eight elementwise ops on a 1024x1024 tensor.
SLOW_MODEL = """
import numpy as np, tinyinfer
def slow_model():
    b = tinyinfer.GraphBuilder("slow")
    x = b.input("x", (1024, 1024))
    for i in range(8):
        x = b.op("Mul" if i % 2 else "Add", x, b.const(f"k{i}", np.full(1, 1.0 + i / 8, np.float32)))
    b.output(x)
    return b.to_bytes()
"""


def test_session_close_while_another_thread_runs():
    # Defect 1: close() did not take the session's lock; a close during a
    # run freed the arena under it (segfault in 176 of 200 tries).
    r = child(SLOW_MODEL + """
import threading, time
from tinyinfer._errors import InvalidStateError
data = slow_model()
m = tinyinfer.load(data)
x = np.ones((1024, 1024), np.float32)
expected = m.run(x)[0]
closed_during_run = 0
for trial in range(40):
    s = m.session()
    started = threading.Event()
    results = []
    def runner():
        started.set()
        try:
            for _ in range(1000):
                results.append(s.run(x)[0])
        except InvalidStateError:
            pass
    t = threading.Thread(target=runner)
    t.start()
    started.wait()
    time.sleep(0.001 * (trial % 4))
    s.close()
    t.join()
    for y in results:
        assert np.array_equal(y, expected)
m.close()
print("ok")
""")
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_c_session_free_waits_for_a_run_in_progress():
    # Defect 1, C side: tinf_session_free during tinf_session_run on another
    # thread (ctypes releases the GIL in both) waits for the run to end. One
    # long run (64 ops on 4 MB tensors), freed a few milliseconds in.
    r = child("""
import threading, time, numpy as np, tinyinfer
from ctypes import byref
from tinyinfer import _lib
L = _lib.lib
b = tinyinfer.GraphBuilder("slow")
x = b.input("x", (1024, 1024))
for i in range(64):
    x = b.op("Mul" if i % 2 else "Add", x, b.const(f"k{i}", np.full(1, 1.0, np.float32)))
b.output(x)
data = np.frombuffer(b.to_bytes(), np.uint8).copy()
m = _lib.ModelHandle()
L.tinf_model_load_buffer(data.ctypes.data, data.size, byref(m))
for trial in range(10):
    s = _lib.SessionHandle()
    L.tinf_session_create(m, None, byref(s))
    started, status = threading.Event(), []
    def runner():
        started.set()
        status.append(L.tinf_session_run(s))
    t = threading.Thread(target=runner)
    t.start()
    started.wait()
    time.sleep(0.005)
    L.tinf_session_free(s)
    t.join()
    assert status == [0], status
L.tinf_model_free(m)
print("ok")
""")
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_model_close_while_other_threads_run():
    # Defect 1, Model side: Model.close() with live sessions running.
    r = child(SLOW_MODEL + """
import threading, time
from tinyinfer._errors import InvalidStateError
data = slow_model()
x = np.ones((1024, 1024), np.float32)
for trial in range(20):
    m = tinyinfer.load(data)
    expected = m.run(x)[0]
    started = threading.Barrier(3)
    bad = []
    def via_model():
        started.wait()
        try:
            for _ in range(200):
                if not np.array_equal(m.run(x)[0], expected):
                    bad.append(1)
        except InvalidStateError:
            pass
    own = m.session()
    def via_session():  # a session made by the model stays valid after the model's close
        started.wait()
        for _ in range(20):
            if not np.array_equal(own.run(x)[0], expected):
                bad.append(1)
    ts = [threading.Thread(target=via_model), threading.Thread(target=via_session)]
    for t in ts:
        t.start()
    started.wait()
    time.sleep(0.001 * (trial % 4))
    m.close()
    for t in ts:
        t.join()
    assert not bad
print("ok")
""")
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_closed_session_refuses_runs():
    b = tinyinfer.GraphBuilder("relu")
    b.output(b.op("Relu", b.input("x", (2, 3))))
    with b.load() as m:
        s = m.session()
        s.close()
        s.close()  # idempotent
        with pytest.raises(InvalidStateError):
            s.run(np.zeros((2, 3), np.float32))
        with pytest.raises(InvalidStateError):
            s.run([np.zeros((2, 3), np.float64)])
    with pytest.raises(InvalidStateError):
        m.run(np.zeros((2, 3), np.float32))


def test_copy_false_outputs_stay_readable_after_close():
    # Defect 2: a copy=False view read after close pointed into the freed
    # arena (segfault). The view now keeps the session's memory alive.
    r = child("""
import gc, numpy as np, tinyinfer
b = tinyinfer.GraphBuilder("neg")
b.output(b.op("Mul", b.input("x", (256, 1024)), b.const("k", np.full(1, -2.0, np.float32))))
data = b.to_bytes()
x = np.arange(256 * 1024, dtype=np.float32).reshape(256, 1024)
for trial in range(30):
    m = tinyinfer.load(data)
    s = m.session()
    (a,) = s.run(x, copy=False)
    (c,) = m.run(x, copy=False)
    s.close()
    m.close()
    del s, m
    gc.collect()
    junk = [np.full((256, 1024), 7.0, np.float32) for _ in range(8)]  # reuse freed memory if any
    assert np.array_equal(a, -2 * x) and np.array_equal(c, -2 * x)
    assert not a.flags.writeable
print("ok")
""")
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_fifo_is_refused_without_blocking(tmp_path):
    # Defect 3: open() of a FIFO with no writer blocked for ever.
    fifo = tmp_path / "model.tinf"
    os.mkfifo(fifo)
    r = child(f"""
import tinyinfer
from tinyinfer._errors import TinyInferIOError
try:
    tinyinfer.load({str(fifo)!r})
except TinyInferIOError as e:
    print("refused:", e)
""", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "refused:" in r.stdout and "FIFO" in r.stdout, r.stdout


@pytest.mark.parametrize("path, what", [("/dev/zero", "character device"), ("/", "directory")])
def test_devices_and_directories_name_the_real_problem(path, what):
    # Defect 3: /dev/zero was reported as "Is a directory".
    with pytest.raises(TinyInferIOError, match=what):
        tinyinfer.load(path)


def test_missing_file_is_an_io_error(tmp_path):
    with pytest.raises(TinyInferIOError, match="No such file"):
        tinyinfer.load(tmp_path / "missing.tinf")


def test_path_with_nul_byte_is_refused(tmp_path):
    # Defect 4: the path was cut at the NUL, so "m.tinf\0junk" loaded m.tinf.
    b = tinyinfer.GraphBuilder("relu")
    b.output(b.op("Relu", b.input("x", (1, 3))))
    b.save(tmp_path / "m.tinf")
    with pytest.raises(InvalidArgumentError, match="NUL"):
        tinyinfer.load(str(tmp_path / "m.tinf") + "\0junk")
    import pathlib
    with pytest.raises(InvalidArgumentError, match="NUL"):
        tinyinfer.load(pathlib.PurePosixPath(str(tmp_path / "m.tinf") + "\0junk"))


# -- the work limit (defect 5) ---------------------------------------------------

def conv_model(h, w, cin, cout, k, pads=None):
    b = tinyinfer.GraphBuilder("conv")
    x = b.input("x", (1, h, w, cin))
    wt = np.ones((cout, k, k, cin), np.float32)
    attrs = dict(padding=2, pads=list(pads)) if pads else {}
    b.output(b.op("Conv2D", x, b.const("w", wt), b.const("b", np.zeros(cout, np.float32)), **attrs))
    return b.to_bytes()


def test_work_is_the_multiply_adds_and_element_visits():
    # Each figure: the graph input copied in and output copied out, plus
    # each op's own count (or its input + output elements, if more).
    # Conv2D 3x3 VALID, 10x12x4 -> 8x10x5: 8*10*5 outputs x 3*3*4 taps.
    with tinyinfer.load(conv_model(10, 12, 4, 5, 3)) as m:
        s = m.session()
        assert s.work == 10 * 12 * 4 + 8 * 10 * 5 + 8 * 10 * 5 * 3 * 3 * 4
    # FullyConnected [6, 7] x [3, 7]^T: 6*7*3; then Relu: 6*3 in + 6*3 out.
    b = tinyinfer.GraphBuilder("fc")
    y = b.op("FullyConnected", b.input("x", (6, 7)), b.const("w", np.ones((3, 7), np.float32)))
    b.output(b.op("Relu", y))
    with tinyinfer.load(b.to_bytes(), optimize=False) as m:  # (the passes fuse the Relu)
        assert m.session().work == 6 * 7 + 6 * 3 + 6 * 7 * 3 + 2 * 6 * 3
    # MaxPool2D 4x4 window stride 2 on 1x16x16x2: 8x8x2 outputs x 16.
    b = tinyinfer.GraphBuilder("pool")
    b.output(b.op("MaxPool2D", b.input("x", (1, 16, 16, 2)), filter=[4, 4], strides=[2, 2], padding=1))
    with b.load() as m:
        assert m.session().work == 16 * 16 * 2 + 8 * 8 * 2 + 8 * 8 * 2 * 16


def test_work_limit_refuses_a_tiny_file_asking_for_huge_work():
    # Defect 5: a few hundred bytes whose MaxPool took 17 s per run. This one
    # would visit 512*512*4 outputs x 255*255 window cells (6.8e10) per run.
    b = tinyinfer.GraphBuilder("pool")
    b.output(b.op("MaxPool2D", b.input("x", (1, 512, 512, 4)), filter=[255, 255], padding=1))
    data = b.to_bytes()
    assert len(data) < 1024
    t0 = time.monotonic()
    with tinyinfer.load(data) as m:
        with pytest.raises(InvalidArgumentError, match="work limit"):
            m.run(np.zeros((1, 512, 512, 4), np.float32))
    assert time.monotonic() - t0 < 10


def test_max_work_is_settable():
    data = conv_model(10, 12, 4, 5, 3)
    work = 10 * 12 * 4 + 8 * 10 * 5 + 8 * 10 * 5 * 3 * 3 * 4
    x = np.ones((1, 10, 12, 4), np.float32)
    with tinyinfer.load(data, max_work=work) as m:
        assert np.all(m.run(x)[0] == 36)
        with pytest.raises(InvalidArgumentError, match=f"over the work limit of {work - 1}"):
            m.session(max_work=work - 1)
    with tinyinfer.load(data, max_work=work - 1) as m:
        with pytest.raises(InvalidArgumentError, match="work limit"):
            m.run(x)
    for bad in (0, -1, 2 ** 64, 1.5, True):
        with pytest.raises(InvalidArgumentError):
            tinyinfer.load(data, max_work=bad)
    o = _lib.OptionsHandle()
    L.tinf_options_create(byref(o))
    try:
        assert L.tinf_options_set_max_work.__call__ is not None
        with pytest.raises(InvalidArgumentError, match="max_work"):
            L.tinf_options_set_max_work(o, 0)
    finally:
        L.tinf_options_free(o)
    with pytest.raises(InvalidArgumentError, match="options is NULL"):
        L.tinf_options_set_max_work(None, 5)


def test_graph_inputs_and_outputs_count_as_work():
    # Fuzz finding: a file of a few hundred bytes whose graph input is its
    # graph output (no op) had work 0 and got a multi-GB arena; every run
    # copies its inputs in and its outputs out (and the session zeroes the
    # inputs), so their elements are work.
    b = tinyinfer.GraphBuilder("io")
    x = b.input("x", (4096, 4096))
    b.output(x)
    data = b.to_bytes()
    assert len(data) < 512
    with tinyinfer.load(data) as m:
        with pytest.raises(InvalidArgumentError, match=f"needs {2 * 4096 * 4096} .* over the work limit of {1 << 24}"):
            m.session(max_work=1 << 24)
    b = tinyinfer.GraphBuilder("io")
    b.output(b.input("x", (3, 5)))
    with b.load() as m:
        assert m.session().work == 15 + 15  # copied in, copied out
        x = np.arange(15, dtype=np.float32).reshape(3, 5)
        assert np.array_equal(m.run(x)[0], x)
    # A huge input no op reads: zeroed when the session is made, copied in by every run.
    b = tinyinfer.GraphBuilder("unused")
    b.input("big", (4096, 4096))
    b.output(b.op("Relu", b.input("y", (2, 3))))
    data = b.to_bytes()
    assert len(data) < 512
    with tinyinfer.load(data, optimize=False) as m:
        with pytest.raises(InvalidArgumentError, match="work limit"):
            m.session(max_work=1 << 24)
        s = m.session()
        assert s.work == 4096 * 4096 + 6 + 6 + (6 + 6)  # inputs, output, Relu's in + out


def test_no_op_costs_less_than_its_element_visits():
    # A TransposeConv2D with a large stride writes (zeroes) an output far
    # larger than its multiply-adds (inputs x window x Cout: 64*64), and
    # the pooling after it reads that output with a window of 1: the work is
    # at least every op's input plus output elements, not only its own count.
    b = tinyinfer.GraphBuilder("stride")
    y = b.op("TransposeConv2D", b.input("x", (1, 64, 64, 1)), b.const("w", np.ones((1, 1, 1, 1), np.float32)),
             strides=[64, 64])
    b.output(b.op("MaxPool2D", y, filter=[1, 1], strides=[64, 64]))
    data = b.to_bytes()
    assert len(data) < 1024
    big = 4033 * 4033  # (64 - 1) * 64 + 1 rows and columns (VALID)
    with tinyinfer.load(data, optimize=False) as m:
        s = m.session()
        # I/O 2*4096; TransposeConv2D: its input 4096 + w 1 + output; MaxPool2D: its input + output 4096
        assert s.work == 2 * 4096 + (4096 + 1 + big) + (big + 4096)
        x = np.random.default_rng(0).standard_normal((1, 64, 64, 1)).astype(np.float32)
        (out,) = m.run(x)
        assert np.array_equal(out, x)  # each input cell lands on (64i, 64j), where the pool picks it
        with pytest.raises(InvalidArgumentError, match="work limit"):
            m.session(max_work=1 << 24)


def test_pads_out_of_proportion_are_refused():
    # Defect 5: a 712-byte convolution whose padding made a 67 MB arena.
    # (the builder validates by loading, so the file cannot even be written)
    with pytest.raises(ShapeError, match="out of proportion"):
        tinyinfer.load(conv_model(2, 2, 1, 1, 1, pads=(2000, 2000, 2000, 2000)))
    with pytest.raises(ShapeError, match="out of proportion"):
        tinyinfer.load(conv_model(8, 8, 1, 1, 3, pads=(0, 76, 0, 0)))  # over 8 + 3 + 64
    # up to input + window + 64 is fine (8x8 input, 3x3 window, pad 75)
    with tinyinfer.load(conv_model(8, 8, 1, 1, 3, pads=(75, 75, 1, 1))) as m:
        (y,) = m.run(np.ones((1, 8, 8, 1), np.float32))
        assert y.shape == (1, 156, 8, 1)
        assert y[0, 76, 1, 0] == 9 and y[0, 0, 0, 0] == 0


# -- check_finite (defect 8, inference side) ------------------------------------

def test_check_finite_names_the_input_and_output():
    b = tinyinfer.GraphBuilder("log")
    b.output(b.op("Log", b.input("x", (1, 4))))
    with b.load() as m:
        # off by default: NaN passes through
        assert np.isnan(m.run(np.array([[1, -1, 2, 3]], np.float32))[0][0, 1])
        with pytest.raises(InvalidArgumentError, match="input 'x' has 1 non-finite"):
            m.run(np.array([[1, np.nan, 2, 3]], np.float32), check_finite=True)
        with pytest.raises(TinyInferRuntimeError, match="output .* has 1 non-finite"):
            m.run(np.array([[1, -1, 2, 3]], np.float32), check_finite=True)
        (y,) = m.run(np.array([[1, 2, 3, 4]], np.float32), check_finite=True)
        np.testing.assert_allclose(y, np.log([[1, 2, 3, 4]]), rtol=1e-6)


# -- NULL out-pointers and sizes (defect 10) -------------------------------------

@pytest.fixture()
def handles():
    b = tinyinfer.GraphBuilder("fc")
    b.output(b.op("FullyConnected", b.input("x", (2, 3)), b.const("w", np.ones((4, 3), np.float32))))
    data = np.frombuffer(b.to_bytes(), np.uint8).copy()
    m, s = _lib.ModelHandle(), _lib.SessionHandle()
    L.tinf_model_load_buffer(data.ctypes.data, data.size, byref(m))
    L.tinf_session_create(m, None, byref(s))
    yield m, s
    L.tinf_session_free(s)
    L.tinf_model_free(m)


def status_of(fn, *args):
    try:
        fn(*args)
    except tinyinfer.TinyInferError as e:
        return e.status, e.message
    return Status.OK, ""


def test_null_out_pointers_name_the_argument(handles):
    m, s = handles
    i, n = c_int32(), c_size_t()
    p = POINTER(c_int32)()
    t = POINTER(c_uint64)()
    cases = [
        (L.tinf_model_stats, (m, byref(i), None, byref(n)), "out_tensors"),
        (L.tinf_model_op, (m, 0, byref(i), byref(i), byref(p), byref(i), None), "out_outputs"),
        (L.tinf_model_op, (m, 0, None, byref(i), byref(p), byref(i), byref(p)), "out_op"),
        (L.tinf_model_sizes, (m, byref(n), byref(n), None, byref(n)), "out_data"),
        (L.tinf_session_arena_bytes, (s, byref(n), None), "out_unplanned"),
        (L.tinf_session_run_profiled, (s, None, byref(i)), "out_ns"),
        (L.tinf_session_run_profiled, (s, byref(t), None), "out_count"),
        (L.tinf_session_work, (s, None), "out_work"),
    ]
    for fn, args, name in cases:
        st, msg = status_of(fn, *args)
        assert st == Status.INVALID_ARGUMENT and name in msg, (fn.__name__, st, msg)
    # and with every pointer given they work
    L.tinf_session_run_profiled(s, byref(t), byref(i))
    assert i.value == 1


def test_builder_refuses_null_data_with_a_size():
    h = _lib.BuilderHandle()
    L.tinf_builder_create(byref(h))
    try:
        dims = (c_int64 * 2)(2, 2)
        idx = c_int32()
        st, msg = status_of(L.tinf_builder_add_tensor, h, b"w", 1, 2, dims, None, 16, byref(idx))
        assert st == Status.INVALID_ARGUMENT and "data is NULL" in msg, msg
        buf = np.ones(4, np.float32)
        st, msg = status_of(L.tinf_builder_add_tensor, h, b"w", 1, 2, dims, buf.ctypes.data, 0, byref(idx))
        assert st == Status.INVALID_ARGUMENT and "nbytes is 0" in msg, msg
        st, msg = status_of(L.tinf_builder_add_tensor, h, b"w", 1, 2, dims, None, 0, None)
        assert st == Status.INVALID_ARGUMENT and "out_index" in msg, msg
        big = (c_int64 * 2)(2, 2 ** 40)
        st, msg = status_of(L.tinf_builder_add_tensor, h, b"w", 1, 2, big, None, 0, byref(idx))
        assert st == Status.INVALID_ARGUMENT and "dims[1]" in msg, msg
    finally:
        L.tinf_builder_free(h)


def test_input_shape_dims_over_2_30_name_the_dim():
    o = _lib.OptionsHandle()
    L.tinf_options_create(byref(o))
    try:
        dims = (c_int64 * 3)(1, 2 ** 31, 4)
        st, msg = status_of(L.tinf_options_set_input_shape, o, 0, 3, dims)
        assert st == Status.INVALID_ARGUMENT and "dims[1]" in msg and str(2 ** 30) in msg, msg
    finally:
        L.tinf_options_free(o)
