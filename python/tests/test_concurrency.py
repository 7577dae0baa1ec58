"""Concurrency: one model shared by several sessions in several Python threads
(ctypes releases the GIL during library calls), and intra-op threads.

A tinf_model is immutable and shared; each thread has its own session. The
results of concurrent runs must equal serial runs bit for bit (a session's
result does not depend on what other sessions do). With threads=2 a session
splits work among threads; the results must match threads=1 (to rounding,
since a split may change the order of a reduction).
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import tinyinfer
from conftest import assert_close

N_THREADS = 6
RUNS = 40


def mlp_model(seed=0):
    """x[8,64] -> FC(128, relu) -> LayerNorm -> FC(32) -> Softmax, plus a
    second output Tanh(x) so that outputs of different shapes coexist."""
    r = np.random.default_rng(seed)
    b = tinyinfer.GraphBuilder("shared")
    x = b.input("x", (8, 64))
    h = b.op("FullyConnected", x, b.const("w1", r.standard_normal((128, 64)).astype(np.float32) * 0.1),
             b.const("b1", r.standard_normal(128).astype(np.float32)), activation=1)
    h = b.op("LayerNorm", h, b.const("g", r.standard_normal(128).astype(np.float32)),
             b.const("be", r.standard_normal(128).astype(np.float32)))
    z = b.op("FullyConnected", h, b.const("w2", r.standard_normal((32, 128)).astype(np.float32) * 0.1))
    y = b.op("Softmax", z)
    t = b.op("Tanh", x)
    b.output(y, t)
    data = b.to_bytes()
    b.close()
    return data


@pytest.fixture(scope="module")
def shared_model():
    with tinyinfer.load(mlp_model()) as m:
        yield m


def inputs(n, seed=7):
    r = np.random.default_rng(seed)
    return [r.standard_normal((8, 64)).astype(np.float32) for _ in range(n)]


def run_threads(target, n):
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, e))

    ts = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
        assert not t.is_alive(), "a thread hangs"
    assert not errors, errors


def test_sessions_in_threads_equal_serial(shared_model):
    xs = inputs(16)
    with shared_model.session() as s:
        expected = [s.run(x) for x in xs]
    results = [[None] * RUNS for _ in range(N_THREADS)]

    def work(i):
        with shared_model.session() as s:
            for k in range(RUNS):
                j = (i * 5 + k) % len(xs)  # every thread a different input sequence
                results[i][k] = (j, s.run(xs[j]))

    run_threads(work, N_THREADS)
    for i in range(N_THREADS):
        for j, outs in results[i]:
            for got, want in zip(outs, expected[j]):
                np.testing.assert_array_equal(got, want)


def test_sessions_created_and_freed_concurrently(shared_model):
    xs = inputs(4, seed=3)
    with shared_model.session() as s:
        expected = [s.run(x)[0] for x in xs]

    def work(i):
        for k in range(15):
            with shared_model.session() as s:
                j = (i + k) % len(xs)
                np.testing.assert_array_equal(s.run(xs[j])[0], expected[j])

    run_threads(work, N_THREADS)


def test_models_loaded_concurrently():
    data = mlp_model(seed=2)
    x = inputs(1, seed=11)[0]
    with tinyinfer.load(data) as m:
        expected = m.run(x)[0]

    def work(i):
        for _ in range(10):
            with tinyinfer.load(data) as m:
                np.testing.assert_array_equal(m.run(x)[0], expected)

    run_threads(work, 4)


def test_model_run_is_locked(shared_model):
    # Model.run uses one internal session under a lock: safe from any thread.
    xs = inputs(6, seed=5)
    expected = [shared_model.run(x) for x in xs]

    def work(i):
        for k in range(20):
            j = (i + k) % len(xs)
            for got, want in zip(shared_model.run(xs[j]), expected[j]):
                np.testing.assert_array_equal(got, want)

    run_threads(work, 4)


def test_multithreaded_sessions_in_threads(shared_model):
    # Sessions with their own worker pools, run from several Python threads.
    xs = inputs(4, seed=9)
    with shared_model.session() as s:
        expected = [s.run(x)[0] for x in xs]

    def work(i):
        with shared_model.session(threads=2) as s:
            for k in range(20):
                j = (i + k) % len(xs)
                assert_close(s.run(xs[j])[0], expected[j], rtol=1e-5, atol=1e-6)

    run_threads(work, 3)


# -- intra-op threads ------------------------------------------------------------

def big_fc_model():
    r = np.random.default_rng(1)
    w = (r.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float32)
    bias = r.standard_normal(512).astype(np.float32)
    b = tinyinfer.GraphBuilder("big_fc")
    x = b.input("x", (64, 512))
    y = b.op("FullyConnected", x, b.const("w", w), b.const("b", bias), activation=1)
    b.output(y)
    data = b.to_bytes()
    b.close()
    return data, w, bias


def big_softmax_model():
    b = tinyinfer.GraphBuilder("big_softmax")
    x = b.input("x", (64, 1000))
    b.output(b.op("Softmax", x), b.op("LogSoftmax", x))
    data = b.to_bytes()
    b.close()
    return data


def big_matmul_model():
    b = tinyinfer.GraphBuilder("big_matmul")
    a = b.input("a", (4, 64, 128))
    c = b.input("c", (4, 128, 96))
    b.output(b.op("MatMul", a, c))
    data = b.to_bytes()
    b.close()
    return data


@pytest.mark.parametrize("threads", [2, 3, 0])
def test_fc_threads_match_single(threads):
    data, w, bias = big_fc_model()
    x = np.random.default_rng(2).standard_normal((64, 512)).astype(np.float32)
    with tinyinfer.load(data) as m:
        with m.session(threads=1) as s1, m.session(threads=threads) as sn:
            assert s1.threads == 1
            assert sn.threads >= 1 if threads == 0 else sn.threads == threads
            y1 = s1.run(x)[0]
            for _ in range(5):
                yn = sn.run(x)[0]
                assert_close(yn, y1, rtol=1e-5, atol=1e-5)
    ref = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + bias, 0)
    assert_close(y1, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [2, 4])
def test_softmax_threads_match_single(threads):
    x = (np.random.default_rng(3).standard_normal((64, 1000)) * 4).astype(np.float32)
    with tinyinfer.load(big_softmax_model()) as m:
        with m.session(threads=1) as s1, m.session(threads=threads) as sn:
            sm1, lsm1 = s1.run(x)
            for _ in range(5):
                smn, lsmn = sn.run(x)
                assert_close(smn, sm1, rtol=1e-6, atol=1e-7)
                assert_close(lsmn, lsm1, rtol=1e-6, atol=1e-6)
    e = np.exp(x - x.max(-1, keepdims=True))
    assert_close(sm1, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_matmul_threads_match_single():
    r = np.random.default_rng(4)
    a = r.standard_normal((4, 64, 128)).astype(np.float32)
    c = r.standard_normal((4, 128, 96)).astype(np.float32)
    with tinyinfer.load(big_matmul_model()) as m:
        with m.session(threads=1) as s1, m.session(threads=2) as s2:
            y1 = s1.run([a, c])[0]
            y2 = s2.run([a, c])[0]
    assert_close(y2, y1, rtol=1e-5, atol=1e-5)
    assert_close(y1, a @ c, rtol=1e-4, atol=1e-4)


def test_threaded_sessions_from_several_python_threads():
    # Intra-op pools and inter-session concurrency together.
    data, w, bias = big_fc_model()
    xs = [np.random.default_rng(10 + i).standard_normal((64, 512)).astype(np.float32) for i in range(4)]
    with tinyinfer.load(data) as m:
        with m.session(threads=1) as s:
            expected = [s.run(x)[0] for x in xs]

        def work(i):
            with m.session(threads=2) as s:
                for k in range(10):
                    j = (i + k) % len(xs)
                    assert_close(s.run(xs[j])[0], expected[j], rtol=1e-5, atol=1e-5)

        run_threads(work, 4)


@pytest.mark.parametrize("rows", [1, 3])
def test_fc_few_rows_threads_match_single(rows):
    # Fewer rows than threads: the work is split along the output columns.
    r = np.random.default_rng(6)
    w = (r.standard_normal((1000, 256)) / 16).astype(np.float32)
    b = tinyinfer.GraphBuilder("fc_cols")
    x = b.input("x", (rows, 256))
    b.output(b.op("FullyConnected", x, b.const("w", w)))
    xv = r.standard_normal((rows, 256)).astype(np.float32)
    with b.load() as m:
        with m.session(threads=1) as s1, m.session(threads=4) as s4:
            y1 = s1.run(xv)[0]
            y4 = s4.run(xv)[0]
    b.close()
    assert_close(y4, y1, rtol=1e-5, atol=1e-5)
    assert_close(y1, xv @ w.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_pool_jobs_of_changing_sizes_many_runs(threads):
    """Consecutive ops hand the pool jobs of different item counts (with 3
    or 4 threads, 2 to 4 chunks). A worker still leaving one job must never
    claim an item of the next one while it is being written: with more
    chunks than threads that ran an item twice and ended a job early (a
    crash after some hundred runs), which the pool's setup handshake
    prevents. Many runs, each equal to one thread's result."""
    rng = np.random.default_rng(threads)
    b = tinyinfer.GraphBuilder("chunks")
    x = b.input("x", (1, 24, 40, 3))
    t = b.op("Conv2D", x, b.const("w0", rng.standard_normal((16, 3, 3, 3)).astype(np.float32)),
             b.const("b0", np.zeros(16, np.float32)), strides=[2, 2], padding=1, activation=2)
    t = b.op("DepthwiseConv2D", t, b.const("w1", rng.standard_normal((1, 3, 3, 16)).astype(np.float32)),
             b.const("b1", np.zeros(16, np.float32)), padding=1, activation=2)
    t = b.op("Conv2D", t, b.const("w2", rng.standard_normal((40, 1, 1, 16)).astype(np.float32)),
             b.const("b2", np.zeros(40, np.float32)))
    t = b.op("Reshape", t, shape=[1, 12 * 20 * 40])
    t = b.op("FullyConnected", t, b.const("w3", (rng.standard_normal((64, 9600)) * 0.01).astype(np.float32)),
             b.const("b3", np.zeros(64, np.float32)))
    b.output(t)
    data = b.to_bytes()
    xs = rng.standard_normal((1, 24, 40, 3)).astype(np.float32)
    with tinyinfer.load(data, threads=1) as m1:
        (want,) = m1.run(xs)
    with tinyinfer.load(data, threads=threads) as m:
        with m.session(threads=threads) as s:
            for _ in range(400):
                (got,) = s.run(xs)
                assert_close(got, want)


_PICK_SCRIPT = r"""
import sys
import numpy as np
import tinyinfer as ti
rng = np.random.default_rng(5)
g = ti.GraphBuilder("pick")
x = g.input("x", (1, 32, 32, 16))
h = g.op("Conv2D", x, g.const("w1", rng.standard_normal((96, 1, 1, 16)).astype(np.float32)),
         g.const("b1", rng.standard_normal(96).astype(np.float32)), activation=3)
h = g.op("DepthwiseConv2D", h, g.const("w2", rng.standard_normal((1, 3, 3, 96)).astype(np.float32)),
         g.const("b2", rng.standard_normal(96).astype(np.float32)), padding=1, activation=3)
g.output(g.op("Conv2D", h, g.const("w3", rng.standard_normal((16, 1, 1, 96)).astype(np.float32)),
              g.const("b3", rng.standard_normal(16).astype(np.float32))))
inputs = [rng.standard_normal((1, 32, 32, 16)).astype(np.float32) for _ in range(64)]
with g.load(threads=1) as m:
    want = [m.run([v])[0] for v in inputs]
with g.load(threads=2) as m:
    for v, w in zip(inputs, want):
        np.testing.assert_array_equal(m.run([v])[0], w)
print("same")
"""


@pytest.mark.parametrize("pick", ["1", "0"])
def test_thread_pick_keeps_results(pick):
    # A session with two threads times its runs 16-47 in blocks of eight on
    # one thread and on both and keeps the faster (TINYINFER_THREAD_PICK=0: both
    # always): every run, whichever way it went, gives the one-thread
    # session's outputs bit for bit (a fresh process with the variable set).
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(tinyinfer.__file__)))
    env = dict(os.environ, TINYINFER_THREAD_PICK=pick, PYTHONPATH=pkg)
    r = subprocess.run([sys.executable, "-c", _PICK_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "same"
