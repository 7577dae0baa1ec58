"""ONNX importer, ops on run-time data and opsets 11 to 20: small graphs made
here with onnx.helper, converted and run, compared with onnxruntime on the
same inputs (exact for comparisons, logic, Where, Cast, rounding and data
movement; float rounding for the rest)."""

import numpy as np
import pytest

import tinyinfer

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

NP2ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32,
           np.dtype(np.int64): TensorProto.INT64, np.dtype(np.bool_): TensorProto.BOOL,
           np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}


def model(nodes, inputs, outputs, opset=13, inits=()):
    """inputs: {name: array (its dtype and shape)}; outputs: names (types from shape inference)."""
    g = helper.make_graph(
        nodes, "ops", [helper.make_tensor_value_info(k, NP2ONNX[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(a), name=k) for k, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    m = onnx.shape_inference.infer_shapes(m)
    return m.SerializeToString()


def check(data, feeds, exact=True, rel=1e-5):
    """Converts and runs `data`; compares every output with onnxruntime. Returns the report."""
    refs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    report = tinyinfer.convert(data, None, verbose=False)
    with tinyinfer.Model(report.data) as m:
        outs = m.run(feeds)
    for got, ref in zip(outs, refs):
        assert got.shape == ref.shape, (got.shape, ref.shape)
        assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
        if exact:
            np.testing.assert_array_equal(got, ref)
        else:
            np.testing.assert_allclose(got, ref, rtol=rel, atol=rel * max(1.0, float(np.abs(ref).max())))
    return report


def rnd(shape, seed=0, dtype=np.float32):
    g = np.random.default_rng(seed)
    if dtype == np.bool_:
        return g.integers(0, 2, shape).astype(bool)
    if np.dtype(dtype).kind in "iu":
        return g.integers(0, 4, shape).astype(dtype)
    return np.round(g.standard_normal(shape) * 2, 1).astype(dtype)  # ties for the comparisons


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
@pytest.mark.parametrize("opset", [12, 13, 17])
def test_comparisons(op, dtype, opset):
    if op in ("LessOrEqual", "GreaterOrEqual") and opset < 12:
        pytest.skip("not in this opset")
    a, b = rnd((2, 3, 4), 1, dtype), rnd((3, 1), 2, dtype)
    data = model([helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"], opset)
    report = check(data, {"a": a, "b": b})
    assert sum(report.ops_out.values()) == 1


def test_comparison_with_a_constant_after_conv_keeps_the_layout():
    """Greater(Conv(x), 0) runs in NHWC (no Transpose before it); Where picks from the Conv output and a
    constant; the result is transposed back once."""
    x = rnd((1, 3, 5, 5), 3)
    w = np.random.default_rng(4).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Greater", ["c", "zero"], ["m"]),
             helper.make_node("Where", ["m", "c", "fill"], ["y"]),
             helper.make_node("Not", ["m"], ["n"])]
    data = model(nodes, {"x": x}, ["y", "n"], 13,
                 [("w", w), ("zero", np.zeros((), np.float32)), ("fill", np.full((4, 1, 1), -1, np.float32))])
    report = check(data, {"x": x}, exact=False)
    assert report.ops_out["Transpose"] == 3  # input; each 4-D output once


@pytest.mark.parametrize("op,rt", [("And", "LogicalAnd"), ("Or", "LogicalOr"), ("Xor", "LogicalXor")])
def test_logical(op, rt):
    a, b = rnd((3, 4), 5, np.bool_), rnd((4,), 6, np.bool_)
    report = check(model([helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"]), {"a": a, "b": b})
    assert report.ops_out[rt] == 1


def test_not_and_where_of_ints():
    c, x, y = rnd((2, 1, 4), 7, np.bool_), rnd((3, 4), 8, np.int64), rnd((2, 3, 1), 9, np.int64)
    nodes = [helper.make_node("Not", ["c"], ["nc"]), helper.make_node("Where", ["nc", "x", "y"], ["out"])]
    check(model(nodes, {"c": c, "x": x, "y": y}, ["out"], 11), {"c": c, "x": x, "y": y})


@pytest.mark.parametrize("op", ["Floor", "Ceil", "Round", "Erf"])
@pytest.mark.parametrize("opset", [11, 13])
def test_rounding_and_erf(op, opset):
    x = (np.random.default_rng(10).standard_normal((2, 17)) * 5).astype(np.float32)
    x[0, :6] = [0.5, 1.5, 2.5, -0.5, -2.5, 3.0]
    data = model([helper.make_node(op, ["x"], ["y"])], {"x": x}, ["y"], opset)
    check(data, {"x": x}, exact=op != "Erf", rel=3e-7)


@pytest.mark.parametrize("src,dst", [(np.float32, np.int32), (np.float32, np.int64), (np.int64, np.float32),
                                     (np.int32, np.int64), (np.float32, np.bool_), (np.bool_, np.float32),
                                     (np.int64, np.int32), (np.float32, np.uint8), (np.int32, np.int8)])
def test_cast(src, dst):
    x = (np.random.default_rng(11).standard_normal((3, 5)) * 50).astype(src) if src != np.bool_ else \
        rnd((3, 5), 11, np.bool_)
    if dst in (np.uint8, np.int8) and src == np.float32:
        x = np.abs(x) % 100  # in range: ONNX leaves out-of-range float -> int undefined
    data = model([helper.make_node("Cast", ["x"], ["y"], to=NP2ONNX[np.dtype(dst)])], {"x": x}, ["y"])
    report = check(data, {"x": x})
    assert report.ops_out["Cast"] == 1


def test_cast_then_compare_then_arithmetic():
    """A mask computed at run time: Cast(x > 0) to float times x (a ReLU written as data ops)."""
    x = rnd((2, 8), 12)
    nodes = [helper.make_node("Greater", ["x", "zero"], ["m"]),
             helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "mf"], ["y"])]
    check(model(nodes, {"x": x}, ["y"], 13, [("zero", np.float32(0))]), {"x": x})


@pytest.mark.parametrize("shape", [(3, 4), (2, 1, 4), (1, 3, 5), (1,)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_expand(shape, dtype):
    x = rnd((3, 1), 13, dtype)
    data = model([helper.make_node("Expand", ["x", "shape"], ["y"])], {"x": x}, ["y"], 13,
                 [("shape", np.array(shape, np.int64))])
    report = check(data, {"x": x})
    assert report.ops_out["Expand"] == (shape != (1,))


@pytest.mark.parametrize("reps", [(2, 1, 3), (1, 1, 1), (3, 2, 1)])
def test_tile(reps):
    x = rnd((2, 3, 4), 14)
    data = model([helper.make_node("Tile", ["x", "reps"], ["y"])], {"x": x}, ["y"], 13,
                 [("reps", np.array(reps, np.int64))])
    check(data, {"x": x})


def test_shape_and_range_fold():
    """Shape of a static shape, and Range on it, are constants at conversion; the Add runs."""
    x = rnd((2, 5), 15)
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
             helper.make_node("Range", ["zero", "n", "step"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "rf"], ["y"])]
    data = model(nodes, {"x": x}, ["y"], 13, [("one", np.int64(1)), ("zero", np.int64(0)), ("step", np.int64(1))])
    report = check(data, {"x": x})
    assert set(report.ops_out) == {"Add"}


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceProd", "ReduceMin", "ReduceMean"])
@pytest.mark.parametrize("opset", [11, 12, 13, 18])
def test_reductions_axes_attribute_or_input(op, opset):
    x = np.random.default_rng(16).uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32)
    inits, ins, attrs = [], ["x"], {"keepdims": 0}
    as_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    if as_input:
        inits.append(("axes", np.array([0, 2], np.int64)))
        ins.append("axes")
    else:
        attrs["axes"] = [0, 2]
    data = model([helper.make_node(op, ins, ["y"], **attrs)], {"x": x}, ["y"], opset, inits)
    check(data, {"x": x}, exact=False)


@pytest.mark.parametrize("opset", [11, 12, 13])
def test_squeeze_unsqueeze_axes_attribute_or_input(opset):
    x = rnd((2, 1, 3), 17)
    if opset < 13:
        nodes = [helper.make_node("Squeeze", ["x"], ["s"], axes=[1]),
                 helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0, 3])]
        inits = []
    else:
        nodes = [helper.make_node("Squeeze", ["x", "a1"], ["s"]), helper.make_node("Unsqueeze", ["s", "a2"], ["y"])]
        inits = [("a1", np.array([1], np.int64)), ("a2", np.array([0, 3], np.int64))]
    nodes.append(helper.make_node("Relu", ["y"], ["z"]))
    check(model(nodes, {"x": x}, ["z"], opset, inits), {"x": x})


@pytest.mark.parametrize("opset", [11, 12, 13, 18])
def test_split_sizes_attribute_or_input(opset):
    x = rnd((2, 7), 18)
    inits = []
    if opset < 13:
        node = helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[3, 4])
    else:
        node = helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=1)
        inits = [("sp", np.array([3, 4], np.int64))]
    nodes = [node, helper.make_node("Neg", ["a"], ["na"]), helper.make_node("Neg", ["b"], ["nb"])]
    check(model(nodes, {"x": x}, ["na", "nb"], opset, inits), {"x": x})


@pytest.mark.parametrize("opset", [11, 12, 13])
def test_clip_bounds_as_inputs(opset):
    x = rnd((3, 6), 19)
    data = model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"x": x}, ["y"], opset,
                 [("lo", np.float32(-1.5)), ("hi", np.float32(0.5))])
    check(data, {"x": x})


@pytest.mark.parametrize("opset", [11, 13, 18])
@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_pad_pads_as_input(opset, mode):
    x = rnd((1, 2, 4, 5), 20)
    inits = [("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))]
    ins = ["x", "pads"]
    if mode == "constant":
        inits.append(("value", np.float32(0.5)))
        ins.append("value")
    data = model([helper.make_node("Pad", ins, ["y"], mode=mode)], {"x": x}, ["y"], opset, inits)
    check(data, {"x": x})


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("mode,ctm", [("nearest", "asymmetric"), ("linear", "half_pixel"),
                                      ("linear", "align_corners")])
def test_resize_opset_11_and_13(opset, mode, ctm):
    x = rnd((1, 2, 4, 4), 21)
    inits = [("roi", np.zeros(0, np.float32)), ("scales", np.array([1, 1, 2, 2], np.float32))]
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode=mode, coordinate_transformation_mode=ctm,
                            nearest_mode="floor")
    check(model([node], {"x": x}, ["y"], opset, inits), {"x": x}, exact=False)


@pytest.mark.parametrize("opset", [11, 12, 13])
@pytest.mark.parametrize("axis", [1, -1, 2])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_axis_semantics_per_opset(opset, axis, op):
    """Opsets 11/12 normalize over every dim from axis on (the input seen as 2-D); 13 over axis alone."""
    x = rnd((2, 3, 4), 22)
    data = model([helper.make_node(op, ["x"], ["y"], axis=axis)], {"x": x}, ["y"], opset)
    check(data, {"x": x}, exact=False)


def test_run_time_cast_to_unsupported_dtype_refused():
    x = rnd((2, 3), 23)
    data = model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)], {"x": x}, ["y"])
    with pytest.raises(tinyinfer.UnsupportedOpError, match="Cast"):
        tinyinfer.convert(data, None, verbose=False)


# -- command line: --input-shape per input, --opset-check ---------------------------------------------
def _two_input_model(path, opset=13):
    """a [batch, seq, 4] and b [batch, 1, 4]: seq is dynamic, so a shape must be given for a."""
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", "seq", 4]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    path.write_bytes(m.SerializeToString())
    return str(path)


def test_cli_input_shape_per_input(tmp_path):
    from tinyinfer.__main__ import main
    src, dst = _two_input_model(tmp_path / "two.onnx"), str(tmp_path / "two.tinf")
    assert main(["convert", src, "-o", dst, "--input-shape", "a=2,3,4", "--input-shape", "b=2,1,4"]) == 0
    with tinyinfer.load(dst) as m:
        assert [tuple(t.shape) for t in m.inputs] == [(2, 3, 4), (2, 1, 4)]
        a, b = rnd((2, 3, 4), 1), rnd((2, 1, 4), 2)
        np.testing.assert_array_equal(m.run([a, b])[0], a + b)


@pytest.mark.parametrize("flags,message", [
    (["--input-shape", "1,3,4"], "one input"),                      # plain shape, two inputs
    (["--input-shape", "a=1,3,4", "--input-shape", "2,1,4"], "name each input"),
    (["--input-shape", "a=1,3,4", "--input-shape", "a=1,5,4"], "twice"),
    (["--input-shape", "c=1,3,4"], "not inputs"),
    (["--input-shape", "a=1,3,5"], "does not fit"),
    (["--input-shape", "a=1,?,4"], "integers"),
])
def test_cli_bad_input_shape_is_one_line(tmp_path, capsys, flags, message):
    from tinyinfer.__main__ import main
    src = _two_input_model(tmp_path / "two.onnx")
    assert main(["convert", src, "-o", str(tmp_path / "x.tinf")] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.tinf").exists()


def test_cli_opset_check_flags(tmp_path, capsys):
    from tinyinfer.__main__ import main
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "old",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 10)])
    m.ir_version = 7
    src = tmp_path / "old.onnx"
    src.write_bytes(m.SerializeToString())
    assert main(["convert", str(src), "-o", str(tmp_path / "a.tinf"), "--opset-check"]) == 1
    assert "opset 10" in capsys.readouterr().err and not (tmp_path / "a.tinf").exists()
    assert main(["convert", str(src), "-o", str(tmp_path / "b.tinf"), "--no-opset-check"]) == 0
    assert (tmp_path / "b.tinf").exists()
