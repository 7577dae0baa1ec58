"""Control flow: If and While over subgraphs (format 1.2, docs/ops.md "Control flow").

- Hand-built graphs (GraphBuilder.subgraph) against numpy written here:
  both branches of If, While with a data-dependent number of iterations,
  a While inside an If branch, refusals of malformed files.
- A loop that never ends stops at the session's work limit with a status.
- TFLite IF / WHILE made by TensorFlow (tf.cond, tf.while_loop; scripts/fixtures/make_control_flow.py,
  at test time) against LiteRT. Skipped without tensorflow or ai-edge-litert.
"""

import ctypes
import time

import numpy as np
import pytest

import tinyinfer
from tinyinfer import (GraphBuilder, InvalidArgumentError, ModelFormatError, ShapeError, TinyInferRuntimeError,
                       UnsupportedOpError, _lib)

import tf_fixtures
import reference as R

L = _lib.lib
F32 = np.float32


def _if_model():
    """y, z = If(flag, x): then (relu(x) * 2, x + 1), else (x - 1, x * x)."""
    b = GraphBuilder("if")
    flag = b.input("flag", (1,), np.bool_)
    x = b.input("x", (2, 3))
    with b.subgraph("then", inputs=[("then_x", (2, 3), F32)]) as then:
        (tx,) = then.inputs
        then.output(b.op("Mul", b.op("Relu", tx), b.const("two", np.full((2, 3), 2, F32))),
                    b.op("Add", tx, b.const("one", np.ones((2, 3), F32))))
    with b.subgraph("else", inputs=[("else_x", (2, 3), F32)]) as other:
        (ex,) = other.inputs
        other.output(b.op("Sub", ex, b.const("one_e", np.ones((2, 3), F32))), b.op("Mul", ex, ex))
    y, z = b.op("If", flag, x, outputs=["y", "z"], subgraphs=[then.index, other.index])
    b.output(y, z)
    return b


def test_if_runs_the_branch_the_condition_picks():
    x = np.array([[-1.5, 0.5, 2.0], [3.0, -0.25, 0.0]], F32)
    with _if_model().load() as m:
        assert [o.op for o in m.ops()] == ["If"]
        y, z = m.run([np.array([True]), x])
        np.testing.assert_array_equal(y, np.maximum(x, 0) * 2)
        np.testing.assert_array_equal(z, x + 1)
        y, z = m.run([np.array([False]), x])
        np.testing.assert_array_equal(y, x - 1)
        np.testing.assert_array_equal(z, x * x)


def _while_model(b=None, limit_input=True):
    """(i, limit, x) -> while i < limit: (i + 1, limit, x * 0.5 + 1)."""
    b = b or GraphBuilder("while")
    i0 = b.const("i0", np.zeros(1, F32))
    limit = b.input("limit", (1,)) if limit_input else b.const("limit", np.full(1, 4, F32))
    x = b.input("x", (2, 2))
    spec = [("c_i", (1,), F32), ("c_n", (1,), F32), ("c_x", (2, 2), F32)]
    with b.subgraph("cond", inputs=spec) as cond:
        ci, cn, _ = cond.inputs
        cond.output(b.op("Less", ci, cn))
    with b.subgraph("body", inputs=[("b_" + n[2:], s, d) for n, s, d in spec]) as body:
        bi, bn, bx = body.inputs
        body.output(b.op("Add", bi, b.const("one", np.ones(1, F32))), bn,
                    b.op("Add", b.op("Mul", bx, b.const("half", np.full((2, 2), 0.5, F32))),
                         b.const("ones", np.ones((2, 2), F32))))
    outs = b.op("While", i0, limit, x, outputs=["i", "n", "x_out"], subgraphs=[cond.index, body.index])
    return b, outs


def halving_loop(b, x, shape, zero_name="zero"):
    """A While op on `x` (of `shape`) with a constant limit: while i < 4: (i + 1, x * 0.5 + 1); returns the
    loop's x. Shared with test_quantize_floor.py."""
    spec = [("c_i", (1,), F32), ("c_x", shape, F32)]
    with b.subgraph("cond", inputs=spec) as cond:
        cond.output(b.op("Less", cond.inputs[0], b.const("four", np.full(1, 4, F32))))
    with b.subgraph("body", inputs=[("b_i", (1,), F32), ("b_x", shape, F32)]) as body:
        bi, bx = body.inputs
        body.output(b.op("Add", bi, b.const("one", np.ones(1, F32))),
                    b.op("Add", b.op("Mul", bx, b.const("half", np.full(shape, 0.5, F32))),
                         b.const("ones", np.ones(shape, F32))))
    _, lx = b.op("While", b.const(zero_name, np.zeros(1, F32)), x, outputs=["li", "lx"],
                 subgraphs=[cond.index, body.index])
    return lx


def _np_while(limit, x):
    i = 0.0
    while i < limit:
        i, x = i + 1, (x * F32(0.5) + F32(1)).astype(F32)
    return np.array([i], F32), x


def test_while_iterates_as_the_data_says():
    b, (i, n, xo) = _while_model()
    b.output(i, xo)
    x = np.array([[1.0, -2.0], [40.0, 0.125]], F32)
    with b.load() as m:
        for limit in (0.0, 1.0, 3.0, 7.5, 30.0):
            got_i, got_x = m.run([np.array([limit], F32), x])
            exp_i, exp_x = _np_while(limit, x)
            np.testing.assert_array_equal(got_i, exp_i)
            np.testing.assert_array_equal(got_x, exp_x)


def test_while_inside_an_if_branch():
    """then: the loop of _while_model (limit 4) on x; else: x itself."""
    b = GraphBuilder("nested")
    flag = b.input("flag", (1,), np.bool_)
    x = b.input("x", (2, 2))
    with b.subgraph("then", inputs=[("t_x", (2, 2), F32)]) as then:
        (tx,) = then.inputs
        then.output(halving_loop(b, tx, (2, 2)))
    with b.subgraph("else", inputs=[("e_x", (2, 2), F32)]) as other:
        other.output(b.op("Relu", other.inputs[0]))
    b.output(b.op("If", flag, x, name="y", subgraphs=[then.index, other.index]))
    x = np.array([[1.0, -2.0], [3.0, 0.5]], F32)
    with b.load() as m:
        np.testing.assert_array_equal(m.run([np.array([True]), x])[0], _np_while(4.0, x)[1])
        np.testing.assert_array_equal(m.run([np.array([False]), x])[0], np.maximum(x, 0))


def test_format_version_and_saved_file(tmp_path):
    path = str(tmp_path / "if.tinf")
    _if_model().save(path)
    data = open(path, "rb").read()
    assert int.from_bytes(data[6:8], "little") == 2  # 1.2: subgraphs
    assert L.tinf_format_version_minor() == 2
    with tinyinfer.load(path) as m:
        y, _ = m.run([np.array([True]), np.ones((2, 3), F32)])
        np.testing.assert_array_equal(y, np.full((2, 3), 2, F32))
    b = GraphBuilder("plain")
    b.output(b.op("Relu", b.input("x", (2,))))
    assert int.from_bytes(b.to_bytes()[6:8], "little") == 0  # no subgraph: still 1.0


def _infinite_loop(b):
    """while true: x + 1 (the condition is a constant true)."""
    x = b.input("x", (4,))
    with b.subgraph("cond", inputs=[("c_x", (4,), F32)]) as cond:
        cond.output(b.op("LogicalNot", b.const("false", np.zeros(1, np.bool_))))
    with b.subgraph("body", inputs=[("b_x", (4,), F32)]) as body:
        body.output(b.op("Add", body.inputs[0], b.const("one", np.ones(4, F32))))
    b.output(b.op("While", x, name="y", subgraphs=[cond.index, body.index]))
    return b


def test_endless_loop_stops_at_the_work_limit(tmp_path):
    path = str(tmp_path / "endless.tinf")
    _infinite_loop(GraphBuilder("endless")).save(path)
    with tinyinfer.load(path, max_work=10 ** 6) as m:
        t0 = time.perf_counter()
        with pytest.raises(TinyInferRuntimeError, match="While: stopped after .* work limit of 1000000"):
            m.run(np.zeros(4, F32))
        assert time.perf_counter() - t0 < 5
        # the session stays usable (and fails the same way again)
        with pytest.raises(TinyInferRuntimeError, match="While: stopped after"):
            m.run(np.zeros(4, F32))
    # with the default limit (2^33) it stops too, in seconds
    with tinyinfer.load(path) as m:
        t0 = time.perf_counter()
        with pytest.raises(TinyInferRuntimeError, match="While: stopped after 8388"):
            m.run(np.zeros(4, F32))
        assert time.perf_counter() - t0 < 120


def test_work_is_counted_per_run():
    """A limit that one run's loop fits in lets every run through (the count starts again each run)."""
    b, (i, n, xo) = _while_model()
    b.output(xo)
    with tinyinfer.load(b.to_bytes(), max_work=40 * 1024) as m:
        for _ in range(5):
            (out,) = m.run([np.array([20.0], F32), np.zeros((2, 2), F32)])
            np.testing.assert_array_equal(out, _np_while(20.0, np.zeros((2, 2), F32))[1])
        with pytest.raises(TinyInferRuntimeError, match="work limit"):
            m.run([np.array([100.0], F32), np.zeros((2, 2), F32)])


def test_malformed_control_flow_refused():
    b = GraphBuilder("missing")
    x = b.input("x", (2,))
    b.output(b.op("If", b.input("c", (1,), np.bool_), x, name="y", subgraphs=[0, 1]))
    with pytest.raises(ModelFormatError, match="subgraph 0 does not exist"):
        b.to_bytes()

    # a subgraph that reads a value of the main graph instead of an input
    b = GraphBuilder("capture")
    x = b.input("x", (2,))
    r = b.op("Relu", x, name="r")
    with b.subgraph("then", inputs=[("t", (2,), F32)]) as then:
        then.output(b.op("Exp", r, name="e"))
    with b.subgraph("else", inputs=[("f", (2,), F32)]) as other:
        other.output(other.inputs[0])
    b.output(b.op("If", b.input("c", (1,), np.bool_), r, name="y", subgraphs=[then.index, other.index]))
    with pytest.raises(ModelFormatError, match="subgraph 0 'then'.*used before it is produced"):
        b.to_bytes()

    # branches that give different shapes
    b = GraphBuilder("shapes")
    x = b.input("x", (2, 2))
    with b.subgraph("then", inputs=[("t", (2, 2), F32)]) as then:
        then.output(then.inputs[0])
    with b.subgraph("else", inputs=[("f", (2, 2), F32)]) as other:
        other.output(b.op("Reshape", other.inputs[0], name="flat", shape=[4]))
    b.output(b.op("If", b.input("c", (1,), np.bool_), x, name="y", subgraphs=[then.index, other.index]))
    with pytest.raises(ShapeError, match="then subgraph gives float32 \\[2, 2\\], the else subgraph float32 \\[4\\]"):
        b.to_bytes()

    # a condition that is not one bool
    b = GraphBuilder("cond")
    x = b.input("x", (2,))
    with b.subgraph("then", inputs=[("t", (2,), F32)]) as then:
        then.output(then.inputs[0])
    with b.subgraph("else", inputs=[("f", (2,), F32)]) as other:
        other.output(other.inputs[0])
    b.output(b.op("If", x, x, name="y", subgraphs=[then.index, other.index]))
    with pytest.raises(ModelFormatError, match="condition .* must be one bool"):
        b.to_bytes()

    # a subgraph that calls itself (or one after it)
    b = GraphBuilder("recursive")
    x = b.input("x", (2,))
    with b.subgraph("body", inputs=[("t", (2,), F32)]) as body:
        body.output(b.op("If", b.const("t1", np.ones(1, np.bool_)), body.inputs[0], name="again", subgraphs=[0, 0]))
    b.output(b.op("If", b.const("t2", np.ones(1, np.bool_)), x, name="y", subgraphs=[body.index, body.index]))
    with pytest.raises(ModelFormatError, match="does not come before its own graph"):
        b.to_bytes()

    # variables live in the main graph only
    b = GraphBuilder("var")
    x = b.input("x", (2,))
    with b.subgraph("then", inputs=[("t", (2,), F32)]) as then:
        then.output(b.op("ReadVariable", b.const("v", np.zeros(2, F32)), name="rv"))
    with b.subgraph("else", inputs=[("f", (2,), F32)]) as other:
        other.output(other.inputs[0])
    b.output(b.op("If", b.input("c", (1,), np.bool_), x, name="y", subgraphs=[then.index, other.index]))
    with pytest.raises(UnsupportedOpError, match="variables .* inside a subgraph"):
        b.to_bytes()


def test_builder_subgraph_c_api_checks():
    b = GraphBuilder("c")
    out = ctypes.c_int32()
    one = (ctypes.c_int32 * 1)(0)
    with pytest.raises(InvalidArgumentError):
        L.tinf_builder_add_subgraph(None, b"s", 0, 0, None, 1, one, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError):
        L.tinf_builder_add_subgraph(b._h, None, 0, 0, None, 1, one, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError, match="first op"):
        L.tinf_builder_add_subgraph(b._h, b"s", 5, 0, None, 1, one, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError, match="at least one output"):
        L.tinf_builder_add_subgraph(b._h, b"s", 0, 0, None, 0, None, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError, match="out of range"):
        L.tinf_builder_add_subgraph(b._h, b"s", 0, 0, None, 1, one, ctypes.byref(out))  # no tensor 0 yet
    with pytest.raises(InvalidArgumentError):
        L.tinf_builder_add_subgraph(b._h, b"s", 0, 2, None, 1, one, ctypes.byref(out))  # NULL list with a count


# -- TFLite IF / WHILE vs LiteRT ---------------------------------------------------------
@pytest.fixture(scope="module")
def control_flow_models(tmp_path_factory):
    return tf_fixtures.build("make_control_flow", str(tmp_path_factory.mktemp("control_flow")))[1]


def _litert(path, x):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return {o["name"]: it.get_tensor(o["index"]).copy() for o in it.get_output_details()}


def _inputs():
    rng = np.random.RandomState(3)
    xs = [rng.uniform(-1, 1, (1, 4)).astype(F32) for _ in range(6)]
    xs += [np.full((1, 4), 0.5, F32), np.full((1, 4), -0.5, F32), np.full((1, 4), 30.0, F32)]
    return xs


def _matches_litert(path, op):
    """Runs every input of _inputs() through LiteRT and tinyinfer (which must have op `op`); the references."""
    refs = []
    with tinyinfer.load(path) as m:
        assert op in [o.op for o in m.ops()]
        names = [o.name for o in m.outputs]
        for x in _inputs():
            ref = _litert(path, x)
            got = dict(zip(names, m.run(x)))
            assert set(got) == set(ref)
            for k in ref:
                np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5)
            refs.append(ref)
    return refs


def test_tflite_if_matches_litert(control_flow_models):
    _matches_litert(control_flow_models["cond"], "If")
    assert {bool(x.sum() > 0) for x in _inputs()} == {True, False}  # both branches taken


def test_tflite_while_matches_litert(control_flow_models):
    refs = _matches_litert(control_flow_models["loop"], "While")
    counts = {float([v for v in ref.values() if v.size == 1][0][0]) for ref in refs}
    assert len(counts) >= 2  # the iteration count depends on the input


def test_tflite_keras_while_lstm_matches_litert(control_flow_models):
    """A tf.keras LSTM with unroll=False: a WHILE over int32 counters whose body gathers step i and writes
    it into the output list (the lowered TensorListSetItem becomes DynamicUpdateSlice)."""
    path = control_flow_models["keras_lstm"]
    from ai_edge_litert.interpreter import Interpreter
    report = tinyinfer.convert(path, None, verbose=False)
    assert any("DynamicUpdateSlice" in f for f in report.fused)
    rng = np.random.RandomState(4)
    with tinyinfer.Model(report.data) as m:
        assert "While" in [o.op for o in m.ops()]
        it = Interpreter(model_path=path)
        it.allocate_tensors()
        for _ in range(4):
            x = rng.uniform(-1, 1, (1, 6, 8)).astype(F32)
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            ref = it.get_tensor(it.get_output_details()[0]["index"])
            got = m.run(x)[0]
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_dynamic_update_slice_op_vs_numpy():
    """DynamicUpdateSlice on its own (builder): the start a run-time input, clamped so the update fits."""
    from tinyinfer import GraphBuilder
    b = GraphBuilder("dus")
    x = b.input("x", (4, 3, 5), np.float32)
    u = b.input("u", (2, 3, 2), np.float32)
    s = b.input("s", (3,), np.int32)
    b.output(b.op("DynamicUpdateSlice", x, u, s, name="y"))
    rng = np.random.RandomState(6)
    xv, uv = rng.randn(4, 3, 5).astype(F32), rng.randn(2, 3, 2).astype(F32)
    with tinyinfer.Model(b.to_bytes()) as m:
        for start in ([0, 0, 0], [1, 0, 3], [3, 0, 4], [-2, 1, 9]):
            want = R.dynamic_update_slice(xv, uv, start)
            np.testing.assert_array_equal(m.run([xv, uv, np.array(start, np.int32)])[0], want)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_add_sub_mul_max_min_vs_numpy(dtype):
    """The integer arithmetic of loop counters: broadcast, wrapping on overflow as numpy's does."""
    from tinyinfer import GraphBuilder
    info = np.iinfo(dtype)
    a = np.array([[1, -7, info.max, info.min], [5, 0, 3, -2]], dtype)
    c = np.array([3, -4, 2, -1], dtype)
    for op, ref in [("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("Maximum", np.maximum),
                    ("Minimum", np.minimum)]:
        b = GraphBuilder("int")
        x = b.input("x", a.shape, dtype)
        b.output(b.op(op, x, b.const("c", c), name="y"))
        with tinyinfer.Model(b.to_bytes()) as m:
            got = m.run(a)[0]
        assert got.dtype == dtype
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(got, ref(a, c))
    b = GraphBuilder("int")
    x = b.input("x", a.shape, dtype)
    b.output(b.op("Div", x, b.const("c", c), name="y"))
    with pytest.raises(tinyinfer.TinyInferError, match="integer Div"):
        tinyinfer.Model(b.to_bytes())


# -- ONNX If vs onnxruntime ---------------------------------------------------------------
def _onnx_if_models():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.RandomState(5)

    # 1: the condition computed from x; the branches capture x and y, one has an initializer of its own
    two = numpy_helper.from_array(np.full((2, 3), 2.0, F32), "two")
    then_g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "two"], ["t_out"])],
        "then", [], [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [2, 3])], initializer=[two])
    else_g = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Add", ["s", "y"], ["e_out"])],
        "else", [], [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [2, 3])])
    g = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["sum"], keepdims=0),
         helper.make_node("Greater", ["sum", "zero"], ["cond"]),
         helper.make_node("If", ["cond"], ["out"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Tanh", ["out"], ["z"])],
        "if_capture",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(np.array(0.0, F32), "zero")])
    m1 = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])

    # 2: image branches (a Conv in NCHW inside one): the layout is the importer's business in each branch
    w = numpy_helper.from_array(rng.randn(2, 2, 3, 3).astype(F32), "w")
    then_g = helper.make_graph([helper.make_node("Conv", ["img", "w"], ["c_out"], pads=[1, 1, 1, 1])], "conv", [],
                               [helper.make_tensor_value_info("c_out", TensorProto.FLOAT, [1, 2, 4, 4])],
                               initializer=[w])
    else_g = helper.make_graph([helper.make_node("Mul", ["img", "half"], ["m_out"])], "half", [],
                               [helper.make_tensor_value_info("m_out", TensorProto.FLOAT, [1, 2, 4, 4])])
    g = helper.make_graph(
        [helper.make_node("If", ["flag"], ["o"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Relu", ["o"], ["out"])],
        "if_conv",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 4, 4])],
        initializer=[numpy_helper.from_array(np.array(0.5, F32), "half")])
    m2 = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    for m in (m1, m2):
        m.ir_version = 8
        onnx.checker.check_model(m)
    return m1, m2


def test_onnx_if_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    m1, m2 = _onnx_if_models()
    rng = np.random.RandomState(9)
    s1 = ort.InferenceSession(m1.SerializeToString(), providers=["CPUExecutionProvider"])
    with tinyinfer.load(m1.SerializeToString()) as m:
        assert "If" in [o.op for o in m.ops()]
        signs = set()
        for _ in range(6):
            x = rng.randn(2, 3).astype(F32)
            y = rng.randn(2, 3).astype(F32)
            (ref,) = s1.run(None, {"x": x, "y": y})
            (got,) = m.run({"x": x, "y": y})
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
            signs.add(bool(x.sum() > 0))
        assert signs == {True, False}
    s2 = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"])
    with tinyinfer.load(m2.SerializeToString()) as m:
        img = rng.randn(1, 2, 4, 4).astype(F32)
        for flag in (True, False):
            f = np.array(flag)
            (ref,) = s2.run(None, {"flag": f, "img": img})
            (got,) = m.run({"flag": f.reshape(1), "img": img})
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def _onnx_loop_model(trip_input: bool):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    # body(i, cond, v): v' = v * 1.5 + y + 0.1 * float(i); cond' = sum(v') < limit (limit, y captured)
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["fi", "tenth"], ["step"]),
         helper.make_node("Mul", ["v", "k"], ["v1"]),
         helper.make_node("Add", ["v1", "y"], ["v2"]),
         helper.make_node("Add", ["v2", "step"], ["v_out"]),
         helper.make_node("ReduceSum", ["v_out"], ["s"], keepdims=0),
         helper.make_node("Less", ["s", "limit"], ["c_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array(1.5, F32), "k"),
                     numpy_helper.from_array(np.array(0.1, F32), "tenth")])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
              helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
              helper.make_tensor_value_info("limit", TensorProto.FLOAT, [])]
    inits = []
    if trip_input:
        inputs.append(helper.make_tensor_value_info("M", TensorProto.INT64, []))
    else:
        inits.append(numpy_helper.from_array(np.array(6, np.int64), "M"))
    inits.append(numpy_helper.from_array(np.array(True), "go"))
    g = helper.make_graph([helper.make_node("Loop", ["M", "go", "x"], ["out"], body=body),
                           helper.make_node("Relu", ["out"], ["z"])],
                          "loop", inputs, [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("trip_input", [False, True])
def test_onnx_loop_matches_onnxruntime(trip_input):
    ort = pytest.importorskip("onnxruntime")
    m = _onnx_loop_model(trip_input)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.RandomState(11)
    with tinyinfer.load(m.SerializeToString()) as t:
        assert "While" in [o.op for o in t.ops()]
        for limit in (-100.0, 0.0, 5.0, 40.0, 1e6):
            feeds = {"x": rng.randn(2, 3).astype(F32), "y": rng.uniform(0, 1, (2, 3)).astype(F32),
                     "limit": np.array(limit, F32)}
            if trip_input:
                feeds["M"] = np.array(int(limit) % 9 if limit < 1e5 else 4, np.int64)
            (ref,) = s.run(None, feeds)
            ours = {k: (v.reshape(1) if v.ndim == 0 else v) for k, v in feeds.items()}
            (got,) = t.run(ours)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_quantizer_keeps_control_flow_float_and_pruner_refuses():
    """The quantizer rewrites the main graph and carries the subgraphs as
    they are (float32; test_quantize_floor.py checks int8-static around
    them); the pruner still refuses."""
    data = _if_model().to_bytes()
    x = np.array([[-1.5, 0.5, 2.0], [3.0, -0.25, 0.0]], F32)
    for mode in ("fp16", "int8-dynamic"):
        r = tinyinfer.quantize(data, mode=mode)
        assert [f["op"] for f in r.kept_float_why] == ["If"] and "control flow body" in str(r)
        with tinyinfer.load(r.data) as q:
            for flag in (True, False):
                y, z = q.run([np.array([flag]), x])
                np.testing.assert_array_equal(y, np.maximum(x, 0) * 2 if flag else x - 1)
                np.testing.assert_array_equal(z, x + 1 if flag else x * x)
    with pytest.raises(UnsupportedOpError, match="the pruner does not rewrite control flow"):
        tinyinfer.prune(data, sparsity=0.5)
