"""Session state: resource variables (ReadVariable / AssignVariable, docs/ops.md "State").

- Hand-built graphs against a numpy accumulator written here (no TensorFlow).
- TFLite streaming models made by scripts/fixtures/make_stateful.py at test
  time (tf.Variable in a tf.Module, resource variables enabled), run chunk by
  chunk by LiteRT and by tinyinfer on the same chunks; reset_state restarts
  the stream. Skipped without tensorflow or ai-edge-litert.
"""

import ctypes
import threading

import numpy as np
import pytest

import tinyinfer
import tinyinfer.lite
from tinyinfer import (GraphBuilder, InvalidArgumentError, InvalidStateError, ModelFormatError, ShapeError,
                       TinyInferError, _lib)

import tf_fixtures

L = _lib.lib


def _accumulator(path, init=(0.5, -1.0, 2.0), second=None):
    """y = s + x; s <- s + x (and, with `second`, a second variable t with the
    same initial bytes: z = t * 2 + x; t <- t + 2 x)."""
    b = GraphBuilder("acc")
    x = b.input("x", (1, 3))
    s = b.const("s", np.array([init], np.float32))
    cur = b.op("ReadVariable", s, name="s_now")
    y = b.op("Add", cur, x, name="y")
    b.op("AssignVariable", s, y, name="s_assign")
    outs = [y]
    if second:
        t = b.const("t", np.array([init], np.float32))
        tn = b.op("ReadVariable", t, name="t_now")
        z = b.op("Add", b.op("Mul", tn, b.const("two", np.full((1, 3), 2, np.float32))), x, name="z")
        t2 = b.op("Add", tn, b.op("Add", x, x, name="x2"), name="t_next")
        b.op("AssignVariable", t, t2, name="t_assign")
        outs.append(z)
    b.output(*outs)
    b.save(path)
    return path


def test_accumulator_persists_and_resets(tmp_path):
    path = _accumulator(str(tmp_path / "acc.tinf"), second=True)
    rng = np.random.RandomState(0)
    xs = [rng.randn(1, 3).astype(np.float32) for _ in range(5)]
    with tinyinfer.load(path) as m:
        ops = [o.op for o in m.ops()]
        assert ops.count("ReadVariable") == 2 and ops.count("AssignVariable") == 2
        for _round in range(2):
            s = np.array([[0.5, -1.0, 2.0]], np.float32)
            t = s.copy()
            for x in xs:
                y, z = m.run(x)
                exp_y = s + x
                exp_z = t * 2 + x
                s, t = exp_y, t + (x + x)
                np.testing.assert_allclose(y, exp_y, rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(z, exp_z, rtol=1e-6, atol=1e-6)
            m.reset_state()


def test_sessions_have_their_own_state(tmp_path):
    path = _accumulator(str(tmp_path / "acc.tinf"))
    x = np.ones((1, 3), np.float32)
    with tinyinfer.load(path) as m:
        a, b = m.session(), m.session()
        assert a.state_count == 1
        for _ in range(3):
            a.run(x)
        (yb,) = b.run(x)
        np.testing.assert_array_equal(yb, [[1.5, 0.0, 3.0]])
        (ya,) = a.run(x)
        np.testing.assert_array_equal(ya, [[4.5, 3.0, 6.0]])
        a.reset_state()
        (ya,) = a.run(x)
        np.testing.assert_array_equal(ya, [[1.5, 0.0, 3.0]])
        a.close()
        with pytest.raises(InvalidStateError):
            a.reset_state()


def test_reads_see_the_value_at_the_start_of_the_run(tmp_path):
    """A ReadVariable after the AssignVariable in op order still reads the
    run's start value (assigns commit at the end of the run)."""
    b = GraphBuilder("order")
    x = b.input("x", (2,))
    v = b.const("v", np.array([1.0, 2.0], np.float32))
    b.op("AssignVariable", v, b.op("Add", b.op("ReadVariable", v, name="r0"), x, name="next"), name="assign")
    late = b.op("ReadVariable", v, name="late")
    b.output(b.op("Mul", late, b.const("k", np.array([10.0, 10.0], np.float32)), name="out"))
    path = str(tmp_path / "order.tinf")
    b.save(path)
    with tinyinfer.load(path) as m:
        x = np.array([1.0, 1.0], np.float32)
        np.testing.assert_array_equal(m.run(x)[0], [10.0, 20.0])
        np.testing.assert_array_equal(m.run(x)[0], [20.0, 30.0])


def test_failed_run_leaves_state_unchanged(tmp_path):
    """A Gather index out of range fails the run before the commit."""
    b = GraphBuilder("fail")
    x = b.input("x", (3,))
    idx = b.input("idx", (1,), np.int32)
    v = b.const("v", np.zeros(3, np.float32))
    nxt = b.op("Add", b.op("ReadVariable", v, name="r"), x, name="next")
    g = b.op("Gather", nxt, idx, name="g", axis=0)
    b.op("AssignVariable", v, nxt, name="assign")
    b.output(g, nxt)
    path = str(tmp_path / "fail.tinf")
    b.save(path)
    with tinyinfer.load(path, optimize=False) as m:
        one = np.ones(3, np.float32)
        m.run([one, np.array([0], np.int32)])
        with pytest.raises(TinyInferError):
            m.run([one, np.array([7], np.int32)])
        _, nxt_out = m.run([one, np.array([0], np.int32)])
        np.testing.assert_array_equal(nxt_out, [2.0, 2.0, 2.0])


def test_bad_variables_refused(tmp_path):
    b = GraphBuilder("bad")
    x = b.input("x", (1, 3))
    b.op("AssignVariable", b.const("v", np.zeros((1, 4), np.float32)), x, name="a")
    b.output(x)
    with pytest.raises(ShapeError, match="variable 'v'"):
        b.save(str(tmp_path / "shape.tinf"))  # the builder loads what it writes

    b = GraphBuilder("bad2")
    x = b.input("x", (1, 3))
    b.output(b.op("ReadVariable", x, name="r"))
    with pytest.raises(ModelFormatError, match="must be a constant"):
        b.save(str(tmp_path / "nonconst.tinf"))


def test_stateless_model_and_c_api(tmp_path):
    b = GraphBuilder("plain")
    x = b.input("x", (2,))
    b.output(b.op("Relu", x))
    path = str(tmp_path / "plain.tinf")
    b.save(path)
    with tinyinfer.load(path) as m:
        s = m.session()
        assert s.state_count == 0
        s.reset_state()  # nothing to do
        m.reset_state()
    with pytest.raises(InvalidArgumentError):
        L.tinf_session_reset_state(None)
    with pytest.raises(InvalidArgumentError):
        L.tinf_session_state_count(None, ctypes.byref(ctypes.c_int32()))
    with tinyinfer.load(_accumulator(str(tmp_path / "acc.tinf"))) as m:
        s = m.session()
        with pytest.raises(InvalidArgumentError):
            L.tinf_session_state_count(s._handle, None)


def test_result_cache_refused_for_stateful_models(tmp_path):
    path = _accumulator(str(tmp_path / "acc.tinf"))
    with pytest.raises(InvalidArgumentError, match="variables"):
        tinyinfer.load(path, result_cache=tinyinfer.ResultCache(max_bytes=1 << 20))


def test_reset_while_runs_on_other_threads(tmp_path):
    """reset_state takes the run lock: every run sees a whole state."""
    path = _accumulator(str(tmp_path / "acc.tinf"), init=(0.0, 0.0, 0.0))
    x = np.ones((1, 3), np.float32)
    with tinyinfer.load(path) as m:
        s = m.session()
        errors = []

        def runner():
            try:
                for _ in range(300):
                    (y,) = s.run(x)
                    assert y[0, 0] == y[0, 1] == y[0, 2] >= 1
            except Exception as e:  # reported below
                errors.append(e)

        t = threading.Thread(target=runner)
        t.start()
        for _ in range(100):
            s.reset_state()
        t.join()
        assert not errors


# -- TFLite resource variables vs LiteRT --------------------------------------------
@pytest.fixture(scope="module")
def stateful_models(tmp_path_factory):
    mod, made = tf_fixtures.build("make_stateful", str(tmp_path_factory.mktemp("stateful")))
    made["chunks"] = mod.chunks
    return made


def _litert_stream(path, chunks):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    outs = it.get_output_details()
    results = []
    for c in chunks:
        it.set_tensor(inp, c)
        it.invoke()
        results.append({o["name"]: it.get_tensor(o["index"]).copy() for o in outs})
    return results


def _tinyinfer_stream(m, chunks):
    names = [o.name for o in m.outputs]
    return [dict(zip(names, m.run(c))) for c in chunks]


def _compare(ours, theirs, tol):
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert set(a) == set(b), (sorted(a), sorted(b))
        for k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=f"chunk {step}, output {k}")


def _stream_and_restart(m, chunks, ref, tol):
    """The stream through model m matches LiteRT's `ref` within tol; after reset_state the same chunks give
    the same outputs bit for bit."""
    first = _tinyinfer_stream(m, chunks)
    _compare(first, ref, tol)
    m.reset_state()
    again = _tinyinfer_stream(m, chunks)
    for a, b in zip(again, first):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_tflite_streaming_f32_matches_litert(stateful_models):
    path = stateful_models["streaming_f32"]
    chunks = stateful_models["chunks"](12)
    ref = _litert_stream(path, chunks)
    # the state matters: the outputs change from chunk to chunk even for equal chunks
    key = sorted(ref[0])[0]
    assert not np.allclose(ref[0][key], ref[1][key])
    with tinyinfer.load(path) as m:
        ops = [o.op for o in m.ops()]
        assert "ReadVariable" in ops and "AssignVariable" in ops
        _stream_and_restart(m, chunks, ref, 1e-5)
        # the LiteRT-compatible interpreter: reset_all_variables restarts the stream too
        it = tinyinfer.lite.Interpreter(model_path=path)
        it.allocate_tensors()
        for _ in range(2):
            for c, r in zip(chunks[:4], ref[:4]):
                it.set_tensor(it.get_input_details()[0]["index"], c)
                it.invoke()
                for o in it.get_output_details():
                    np.testing.assert_allclose(it.get_tensor(o["index"]), r[o["name"]], rtol=1e-5, atol=1e-5)
            it.reset_all_variables()


def test_tflite_streaming_int8_matches_litert(stateful_models):
    path = stateful_models.get("streaming_int8")
    if path is None:
        pytest.skip(f"TensorFlow could not make the int8 model: {stateful_models['missing'].get('streaming_int8')}")
    chunks = stateful_models["chunks"](12)
    ref = _litert_stream(path, chunks)
    with tinyinfer.load(path) as m:
        assert "ReadVariable" in [o.op for o in m.ops()]
        # the int8 kernels follow LiteRT's arithmetic (measured bit-exact here; the variables are float32)
        _stream_and_restart(m, chunks, ref, 1e-6)
