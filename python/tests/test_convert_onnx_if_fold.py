"""ONNX If whose condition folds at conversion (the importer takes the branch), Shape of values whose shape is
known only once such an If is resolved (inside If branches too), Shape of constants, the input_values option,
and the Silero VAD models (PyPI silero-vad) chunk by chunk against onnxruntime when they are on disk."""

import os

import numpy as np
import pytest

import tinyinfer
from tinyinfer import InvalidArgumentError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SILERO = os.path.join(ROOT, "bench", "models", "real", "files")


def _i64(name, v):
    return numpy_helper.from_array(np.asarray(v, np.int64), name)


def _squeeze_guard_model():
    """The exporters' pattern: `if x.shape[0] == 1: x = x.squeeze(0)` as an If on a Shape chain, then an If on
    the run-time `flag` whose branches take Shape of the captured (squeezed) value and of a constant."""
    sq_then = helper.make_graph([helper.make_node("Squeeze", ["x", "ax0"], ["sq"])], "sq_then", [],
                                [helper.make_tensor_value_info("sq", TensorProto.FLOAT, None)])
    sq_else = helper.make_graph([helper.make_node("Identity", ["x"], ["id"])], "sq_else", [],
                                [helper.make_tensor_value_info("id", TensorProto.FLOAT, None)])
    # then: y * (y.shape[-1]) + w.shape[0];  else: reshape(y[::-1 flattened], y.shape) - 1
    f_then = helper.make_graph([
        helper.make_node("Shape", ["y"], ["t_shape"]),
        helper.make_node("Gather", ["t_shape", "last"], ["t_n"], axis=0),
        helper.make_node("Cast", ["t_n"], ["t_nf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["y", "t_nf"], ["t_m"]),
        helper.make_node("Shape", ["w"], ["t_wshape"], start=0, end=1),
        helper.make_node("Cast", ["t_wshape"], ["t_wf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["t_m", "t_wf"], ["t_out"]),
    ], "f_then", [], [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)])
    f_else = helper.make_graph([
        helper.make_node("Shape", ["y"], ["e_shape"]),
        helper.make_node("Size", ["y"], ["e_size"]),
        helper.make_node("Reshape", ["e_size", "one"], ["e_flat_shape"]),
        helper.make_node("Reshape", ["y", "e_flat_shape"], ["e_flat"]),
        helper.make_node("Neg", ["e_flat"], ["e_neg"]),
        helper.make_node("Reshape", ["e_neg", "e_shape"], ["e_back"]),
        helper.make_node("Sub", ["e_back", "onef"], ["e_out"]),
    ], "f_else", [], [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)])
    nodes = [
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Gather", ["xs", "zero"], ["x0"], axis=0),
        helper.make_node("Equal", ["x0", "one_s"], ["is1"]),
        helper.make_node("If", ["is1"], ["y"], then_branch=sq_then, else_branch=sq_else),
        helper.make_node("If", ["flag"], ["out"], then_branch=f_then, else_branch=f_else),
    ]
    inits = [_i64("ax0", [0]), _i64("zero", 0), _i64("one_s", 1), _i64("last", -1), _i64("one", [1]),
             numpy_helper.from_array(np.ones((5, 2), np.float32), "w"),
             numpy_helper.from_array(np.ones(1, np.float32), "onef")]
    g = helper.make_graph(nodes, "squeeze_guard",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4]),
                           helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
    m.ir_version = 8
    return m


def test_if_on_shapes_folds_and_branch_shapes_fold(tmp_path):
    m = _squeeze_guard_model()
    path = str(tmp_path / "g.tinf")
    rep = tinyinfer.convert(m.SerializeToString(), path)
    assert "If x1" in " ".join(rep.folded)  # the shape-guard If was taken at conversion, the flag If was not
    model = tinyinfer.load(path)
    assert "If" in [o.op for o in model.ops()]
    sess = model.session()
    ref = ort.InferenceSession(m.SerializeToString())
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    for flag in (True, False):
        want = ref.run(None, {"x": x, "flag": np.array(flag)})[0]
        got = sess.run([x, np.array([flag])])[0]
        assert want.shape == (3, 4)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-6, atol=1e-6)


def _sr_model():
    """out = If(sr == 16000): x * 2 else x[:, :2] (an 8 kHz branch that needs other input sizes)."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["tm"])], "t", [],
                               [helper.make_tensor_value_info("tm", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Slice", ["x", "s0", "s1", "s_ax"], ["es"])], "e", [],
                               [helper.make_tensor_value_info("es", TensorProto.FLOAT, None)])
    g = helper.make_graph(
        [helper.make_node("Equal", ["sr", "k16"], ["is16"]),
         helper.make_node("If", ["is16"], ["out"], then_branch=then_g, else_branch=else_g)],
        "sr_select",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        initializer=[_i64("k16", 16000), numpy_helper.from_array(np.full(1, 2, np.float32), "two"),
                     _i64("s0", [0]), _i64("s1", [2]), _i64("s_ax", [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("sr", [16000, 8000])
def test_input_values_fix_an_input_and_select_the_branch(tmp_path, sr):
    m = _sr_model()
    path = str(tmp_path / "sr.tinf")
    rep = tinyinfer.convert(m.SerializeToString(), path, input_values={"sr": sr})
    assert any("'sr' fixed" in n for n in rep.notes)
    model = tinyinfer.load(path)
    sess = model.session()
    assert [t.name for t in sess.inputs] == ["x"]
    assert "If" not in [o.op for o in model.ops()]
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 4)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x, "sr": np.array(sr, np.int64)})[0]
    got = sess.run([x])[0]
    np.testing.assert_array_equal(got.reshape(want.shape), want)


def test_input_values_refusals(tmp_path):
    m = _sr_model().SerializeToString()
    path = str(tmp_path / "bad.tinf")
    for bad in ({"nope": 1}, {"sr": 1.5}, {"sr": [16000, 8000]}, {"sr": "16000"}):
        with pytest.raises(InvalidArgumentError):
            tinyinfer.convert(m, path, input_values=bad)
    with pytest.raises(InvalidArgumentError):
        tinyinfer.convert(m, path, input_values={"sr": 16000}, input_shapes={"sr": ()})
    assert not os.path.exists(path)


def test_integer_times_zero_folds(tmp_path):
    """out = x + Cast(k * 0): the runtime has no integer Mul, and k * 0 is 0 for every integer k."""
    g = helper.make_graph(
        [helper.make_node("Mul", ["k", "z"], ["kz"]), helper.make_node("Cast", ["kz"], ["kf"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["x", "kf"], ["out"])],
        "int_zero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                     helper.make_tensor_value_info("k", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 3])], initializer=[_i64("z", 0)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
    m.ir_version = 8
    path = str(tmp_path / "z.tinf")
    tinyinfer.convert(m.SerializeToString(), path)
    sess = tinyinfer.load(path).session()
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    k = np.array([[7, -3, 2 ** 40]], np.int64)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x, "k": k})[0]
    ins = {"x": x, "k": k}
    np.testing.assert_array_equal(sess.run([ins[t.name] for t in sess.inputs])[0].reshape(want.shape), want)


def _voice(n, seed=0):
    t = np.arange(n) / 16000.0
    r = np.random.default_rng(seed)
    f0 = 140 + 40 * np.sin(2 * np.pi * 2 * t)
    v = np.sin(2 * np.pi * np.cumsum(f0) / 16000.0) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (0.3 * v + 0.02 * r.standard_normal(n)).astype(np.float32)


# (file, chunk, sr, sr fixed at conversion). silero_vad.onnx picks its 16 kHz or 8 kHz branch on sr; its 8 kHz
# branch cannot take 512 samples (onnxruntime fails too), so 512-sample chunks need sr fixed (input_values);
# with 256-sample chunks both branches are valid and sr stays a run-time input (a run-time If).
VAD_CASES = [("silero_vad.onnx", 512, 16000, True), ("silero_vad.onnx", 256, 16000, False),
             ("silero_vad.onnx", 256, 8000, False), ("silero_vad_16k_op15.onnx", 512, 16000, True),
             ("silero_vad_16k_op15.onnx", 512, 16000, False),
             ("silero_vad_half.onnx", 512, None, False)]


@pytest.mark.parametrize("fname,n,sr,fixed", VAD_CASES)
def test_silero_vad_streams_like_onnxruntime(tmp_path, fname, n, sr, fixed):
    src = os.path.join(SILERO, fname)
    if not os.path.exists(src):
        pytest.skip(f"{fname} is not on disk (bench/models/real/files, from the silero-vad package)")
    ref = ort.InferenceSession(src)
    opts = dict(input_shapes={"input": (1, n), "state": (2, 1, 128)})
    if fixed:
        opts["input_values"] = {"sr": sr}
    path = str(tmp_path / "vad.tinf")
    tinyinfer.convert(src, path, **opts)
    model = tinyinfer.load(path, threads=1)
    sess = model.session(threads=1)
    run_sr = sr is not None and not fixed
    assert [t.name for t in sess.inputs] == ["input", "state"] + (["sr"] if run_sr else [])
    if fname == "silero_vad.onnx":  # op15 reads sr only as `sr * 0` (folded); half has no sr
        assert ("If" in [o.op for o in model.ops()]) == run_sr
    outs = [t.name for t in sess.outputs]
    x = _voice(n * 6)
    st_ref = np.zeros((2, 1, 128), np.float32)
    st = st_ref.copy()
    for c in range(6):
        chunk = x[None, n * c:n * (c + 1)]
        feeds = {"input": chunk, "state": st_ref}
        if sr is not None:
            feeds["sr"] = np.array(sr, np.int64)
        p_ref, st_ref = ref.run(None, feeds)
        got = dict(zip(outs, sess.run([chunk, st] + ([np.array([sr], np.int64)] if run_sr else []))))
        p, st = got["output"].reshape(p_ref.shape), got["stateN"].reshape(st_ref.shape)
        np.testing.assert_allclose(p, p_ref, rtol=1e-4, atol=1e-4 * np.abs(p_ref).max())
        np.testing.assert_allclose(st, st_ref, rtol=1e-4, atol=1e-4 * np.abs(st_ref).max())
