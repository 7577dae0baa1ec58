"""Converter gaps found by the real-model suite (bench/real_models.py):

- TFLite DENSIFY (sparse constant weights): the sparsity format decoded by
  tinyinfer.convert.tflite_sparse, checked against dense arrays encoded here
  independently (CSR and block-CSR, permuted traversal orders), and the
  mediapipe sparse models against LiteRT when they are on disk;
- ONNX ConstantOfShape and Clip with computed bounds, against onnxruntime;
- the TFLite custom op Convolution2DTransposeBias, against a numpy reference of
  MediaPipe's kernel and LiteRT (its XNNPACK delegate runs the op);
- int8-static quantization of float16-weight models.

The real models live in bench/models/real/files (python bench/real_models.py
fetch); their tests skip cleanly when absent.
"""

import os

import numpy as np
import pytest

import tinyinfer
from tinyinfer.convert.tflite_sparse import DENSE, SPARSE_CSR, densify

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench", "models", "real", "files")


def real_model(name):
    path = os.path.join(REAL, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not on disk (python bench/real_models.py fetch)")
    return path


def litert_run(path, feeds):
    interp = pytest.importorskip("ai_edge_litert.interpreter")
    it = interp.Interpreter(model_path=path)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def litert_details(path):
    interp = pytest.importorskip("ai_edge_litert.interpreter")
    return interp.Interpreter(model_path=path).get_input_details()


def assert_rel(ours, refs, rel):
    assert len(ours) == len(refs)
    for a, r in zip(ours, refs):
        assert a.shape == r.shape, (a.shape, r.shape)
        err = float(np.abs(a.astype(np.float64) - r).max())
        assert err <= rel * max(float(np.abs(r).max()), 1e-30), (err, float(np.abs(r).max()))


# -- DENSIFY -----------------------------------------------------------------------------
def _encode(dense, order, block_map, block_sizes, formats):
    """TFLite sparsity metadata + values for `dense`, written from the format's
    definition: the blocked tensor walked in `order`; a SPARSE_CSR level lists
    only the coordinates whose sub-tree holds a non-zero value."""
    n = dense.ndim
    blocked_shape = list(dense.shape)
    for k, m in enumerate(block_map):
        blocked_shape[m] //= block_sizes[k]
    blocked_shape += list(block_sizes)

    def value(coord):  # coord: per blocked dim (original dims first, then block dims)
        idx = list(coord[:n])
        for k, m in enumerate(block_map):
            idx[m] = idx[m] * block_sizes[k] + coord[n + k]
        return dense[tuple(idx)]

    def subtree_nonzero(prefix):  # prefix: coordinates of the first len(prefix) levels
        level = len(prefix)
        if level == len(order):
            coord = [0] * len(order)
            for lvl, c in enumerate(prefix):
                coord[order[lvl]] = c
            return value(coord) != 0
        return any(subtree_nonzero(prefix + [j]) for j in range(blocked_shape[order[level]]))

    dims = [[f, blocked_shape[order[lvl]], [0], []] for lvl, f in enumerate(formats)]
    values = []

    def walk(prefix):
        level = len(prefix)
        if level == len(order):
            coord = [0] * len(order)
            for lvl, c in enumerate(prefix):
                coord[order[lvl]] = c
            values.append(value(coord))
            return
        size = blocked_shape[order[level]]
        kept = [j for j in range(size)
                if formats[level] == DENSE or subtree_nonzero(prefix + [j])]
        if formats[level] == SPARSE_CSR:
            dims[level][3].extend(kept)
            dims[level][2].append(len(dims[level][3]))
        for j in kept:
            walk(prefix + [j])

    walk([])
    meta = [(f, s, np.asarray(seg, np.int64) if f == SPARSE_CSR else None,
             np.asarray(ind, np.int64) if f == SPARSE_CSR else None) for f, s, seg, ind in dims]
    return np.asarray(values, dense.dtype), meta


@pytest.mark.parametrize("shape,order,block_map,blocks,formats", [
    ((5, 7), [0, 1], [], [], [DENSE, SPARSE_CSR]),                   # CSR
    ((5, 7), [1, 0], [], [], [DENSE, SPARSE_CSR]),                   # CSC
    ((6, 8), [0, 1, 2], [1], [4], [DENSE, SPARSE_CSR, DENSE]),       # 1x4 blocks (TFLite's FC format)
    ((4, 6), [0, 1, 2, 3], [0, 1], [2, 3], [DENSE, SPARSE_CSR, DENSE, DENSE]),  # 2x3 blocks
    ((3, 4, 5), [0, 1, 2], [], [], [DENSE, SPARSE_CSR, SPARSE_CSR]),  # two sparse levels
    ((4, 3, 3, 8), [0, 1, 2, 3], [], [], [DENSE, DENSE, DENSE, SPARSE_CSR]),  # conv weights OHWI
])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_densify_matches_independent_encoding(shape, order, block_map, blocks, formats, dtype):
    rng = np.random.default_rng(3)
    dense = rng.standard_normal(shape).astype(dtype)
    dense[rng.random(shape) < 0.6] = 0
    if len(shape) == 2 and blocks:  # whole zero blocks, the case block sparsity is for
        dense[:, :blocks[-1]] = 0
    values, meta = _encode(dense, order, block_map, blocks, formats)
    assert values.size < dense.size
    out = densify(values, shape, order, block_map, meta)
    assert out.dtype == dense.dtype
    np.testing.assert_array_equal(out, dense)


def test_densify_rejects_inconsistent_metadata():
    dense = np.eye(3, dtype=np.float32)
    values, meta = _encode(dense, [0, 1], [], [], [DENSE, SPARSE_CSR])
    with pytest.raises(tinyinfer.ModelFormatError):
        densify(values[:-1], (3, 3), [0, 1], [], meta)  # one value short
    bad = list(meta)
    bad[1] = (SPARSE_CSR, 3, meta[1][2], meta[1][3] + 5)  # indices past the dim
    with pytest.raises(tinyinfer.ModelFormatError):
        densify(values, (3, 3), [0, 1], [], bad)
    with pytest.raises(tinyinfer.ModelFormatError):
        densify(values, (3, 3), [0, 1, 2], [], meta)  # order longer than the metadata


@pytest.mark.parametrize("name", ["face_detection_full_range_sparse.tflite", "pose_detection.tflite"])
def test_real_sparse_models_match_litert(name, tmp_path):
    path = real_model(name)
    pytest.importorskip("tflite")
    dst = tmp_path / "m.tinf"
    report = tinyinfer.convert(path, dst, verbose=False)
    assert report.ops_in["DENSIFY"] > 0
    rng = np.random.default_rng(0)
    with tinyinfer.load(str(dst), threads=1) as m:
        feeds = [rng.random(shape, np.float32) for shape in (i.shape for i in m.inputs)]
        ours = m.run(feeds)
    assert_rel(ours, litert_run(path, feeds), 1e-5)


# -- ONNX ConstantOfShape and Clip ----------------------------------------------------------
def _onnx_check(model, feeds, tmp_path, rel=1e-6, **options):
    """Converts the onnx.ModelProto, runs it and onnxruntime on `feeds`; returns the report."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    onnx.checker.check_model(model)
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    refs = sess.run(None, dict(feeds))
    dst = tmp_path / "m.tinf"
    report = tinyinfer.convert(str(src), dst, verbose=False, **options)
    with tinyinfer.load(str(dst), threads=1) as m:
        ours = m.run([x for _, x in feeds])
    assert_rel(ours, refs, rel)
    return report


def _model(nodes, inputs, outputs, inits=(), opset=13):
    from onnx import helper
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_clip_bounds_computed_at_run_time(tmp_path):
    """openwakeword's melspectrogram: Clip(x, min=Cast(ReduceMax(x) - 80), max=initializer)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as TP, helper, numpy_helper
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
        helper.make_node("Sub", ["mx", "db"], ["lo64"]),
        helper.make_node("Cast", ["lo64"], ["lo"], to=TP.FLOAT),
        helper.make_node("Clip", ["x", "lo", "hi"], ["y"]),
        helper.make_node("Clip", ["x", "lo"], ["z"]),        # min only
        helper.make_node("Clip", ["x", "", "mx"], ["w"]),   # max only, run time
    ]
    inits = [numpy_helper.from_array(np.array(2.5, np.float32), "db"),
             numpy_helper.from_array(np.array(3.0, np.float32), "hi")]
    m = _model(nodes, [helper.make_tensor_value_info("x", TP.FLOAT, [1, 3, 5, 4])],
               [helper.make_tensor_value_info(k, TP.FLOAT, [1, 3, 5, 4]) for k in "yzw"], inits)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((1, 3, 5, 4)) * 3).astype(np.float32)
    _onnx_check(m, [("x", x)], tmp_path)
    # min > max gives max everywhere (ONNX's definition)
    x2 = np.full((1, 3, 5, 4), 10.0, np.float32)
    x2[0, 0, 0, 0] = 20.0
    _onnx_check(m, [("x", x2)], tmp_path)


def test_clip_run_time_integer_bound_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as TP, helper
    m = _model([helper.make_node("Clip", ["x", "lo"], ["y"])],
               [helper.make_tensor_value_info("x", TP.INT32, [4]), helper.make_tensor_value_info("lo", TP.INT32, [])],
               [helper.make_tensor_value_info("y", TP.INT32, [4])])
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    with pytest.raises(tinyinfer.UnsupportedOpError, match="Clip"):
        tinyinfer.convert(str(src), tmp_path / "m.tinf", verbose=False)


def test_constant_of_shape_from_shape_arithmetic(tmp_path):
    """silero-vad's padding: ConstantOfShape(Shape(x)[k] * a - b) concatenated to x."""
    pytest.importorskip("onnx")
    from onnx import TensorProto as TP, helper, numpy_helper
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
        helper.make_node("Mul", ["n", "two"], ["n2"]),
        helper.make_node("Sub", ["n2", "three"], ["k"]),
        helper.make_node("Concat", ["batch", "k"], ["shape"], axis=0),
        helper.make_node("ConstantOfShape", ["shape"], ["pad"],
                         value=helper.make_tensor("v", TP.FLOAT, [1], [0.25])),
        helper.make_node("Concat", ["x", "pad"], ["y"], axis=1),
        helper.make_node("ConstantOfShape", ["s"], ["zeros"]),  # default value: float 0
        helper.make_node("Add", ["x", "zeros"], ["z"]),
    ]
    inits = [numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([3], np.int64), "three"),
             numpy_helper.from_array(np.array([2], np.int64), "batch")]
    m = _model(nodes, [helper.make_tensor_value_info("x", TP.FLOAT, [2, 6])],
               [helper.make_tensor_value_info("y", TP.FLOAT, [2, 15]),
                helper.make_tensor_value_info("z", TP.FLOAT, [2, 6])], inits)
    x = np.random.default_rng(2).standard_normal((2, 6)).astype(np.float32)
    _onnx_check(m, [("x", x)], tmp_path)


def test_constant_of_shape_run_time_shape_refused_clearly(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as TP, helper
    m = _model([helper.make_node("ConstantOfShape", ["shape"], ["y"])],
               [helper.make_tensor_value_info("shape", TP.INT64, [2])],
               [helper.make_tensor_value_info("y", TP.FLOAT, None)])
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    with pytest.raises(tinyinfer.UnsupportedOpError, match="ConstantOfShape.*run time"):
        tinyinfer.convert(str(src), tmp_path / "m.tinf", verbose=False)


def test_real_melspectrogram_matches_onnxruntime(tmp_path):
    path = real_model("oww_melspectrogram.onnx")
    ort = pytest.importorskip("onnxruntime")
    x = np.sin(np.arange(1280, dtype=np.float32) * 0.05)[None] * 3000 + \
        np.random.default_rng(0).standard_normal((1, 1280)).astype(np.float32) * 300
    refs = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})
    dst = tmp_path / "m.tinf"
    tinyinfer.convert(path, dst, verbose=False, input_shapes={"input": x.shape})
    with tinyinfer.load(str(dst), threads=1) as m:
        assert_rel(m.run(x), refs, 1e-5)


# -- TFLite CUSTOM Convolution2DTransposeBias ------------------------------------------------
def _custom_tconv_model(x_shape, w, bias, padding, sw, sh, out_shape, options_len=12):
    """A one-op .tflite: CUSTOM 'Convolution2DTransposeBias'(x, w, bias) with
    MediaPipe's raw custom_options (int32 padding, stride_w, stride_h)."""
    pytest.importorskip("tflite")
    from tflite_custom_build import custom_op_model
    options = np.asarray([padding, sw, sh], "<i4").tobytes()[:options_len]
    return custom_op_model("Convolution2DTransposeBias",
                           [("x", x_shape, None), ("w", w.shape, w), ("bias", bias.shape, bias), ("y", out_shape, None)],
                           3, options)


def _tconv_bias_reference(x, w, bias, same, sh, sw):
    """MediaPipe's kernel, written from its definition: every input pixel
    scatters w[:, fy, fx, :] @ x into output (iy*s - pad + fy, ix*s - pad + fx),
    pad = P // 2 with P = max(0, K - (in - 1) % S - 1) under SAME; output size
    S * (in - 1) + K - P."""
    n, h, wd, _ = x.shape
    co, kh, kw, _ = w.shape
    ph = max(0, kh - (h - 1) % sh - 1) if same else 0
    pw = max(0, kw - (wd - 1) % sw - 1) if same else 0
    oh, ow = sh * (h - 1) + kh - ph, sw * (wd - 1) + kw - pw
    out = np.tile(bias.astype(np.float64), (n, oh, ow, 1))
    for iy in range(h):
        for ix in range(wd):
            for fy in range(kh):
                for fx in range(kw):
                    oy, ox = iy * sh - ph // 2 + fy, ix * sw - pw // 2 + fx
                    if 0 <= oy < oh and 0 <= ox < ow:
                        out[:, oy, ox, :] += x[:, iy, ix, :].astype(np.float64) @ w[:, fy, fx, :].T.astype(np.float64)
    return out


@pytest.mark.parametrize("h,wd,kh,kw,sh,sw,padding", [
    (4, 5, 2, 2, 2, 2, 1),   # selfie_segmentation's case (SAME, 2x2 stride 2)
    (4, 5, 3, 3, 2, 2, 1),   # odd kernel: P = 2, split 1 / 1
    (5, 4, 4, 3, 2, 3, 1),   # uneven P, different strides
    (3, 3, 3, 3, 1, 1, 1),
    (4, 5, 3, 2, 2, 2, 2),   # VALID
])
def test_custom_transpose_conv_bias_matches_reference(h, wd, kh, kw, sh, sw, padding, tmp_path):
    rng = np.random.default_rng(11)
    cin, cout = 3, 4
    x = rng.standard_normal((1, h, wd, cin)).astype(np.float32)
    w = rng.standard_normal((cout, kh, kw, cin)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    ref = _tconv_bias_reference(x, w, bias, padding == 1, sh, sw)
    data = _custom_tconv_model(x.shape, w, bias, padding, sw, sh, ref.shape)
    dst = tmp_path / "m.tinf"
    report = tinyinfer.convert(data, dst, verbose=False)
    assert report.ops_out["TransposeConv2D"] == 1
    with tinyinfer.load(str(dst), threads=1) as m:
        (y,) = m.run(x)
    assert_rel([y], [ref], 1e-5)
    # ai-edge-litert runs MediaPipe's op too (XNNPACK delegate)
    interp = pytest.importorskip("ai_edge_litert.interpreter")
    it = interp.Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    assert_rel([y], [it.get_tensor(it.get_output_details()[0]["index"])], 1e-5)


@pytest.mark.parametrize("bad", ["short_options", "padding", "out_shape"])
def test_custom_transpose_conv_bias_refusals(bad, tmp_path):
    x_shape, w, bias = (1, 4, 4, 3), np.ones((2, 2, 2, 3), np.float32), np.zeros(2, np.float32)
    kwargs = dict(padding=1, sw=2, sh=2, out_shape=(1, 8, 8, 2))
    if bad == "short_options":
        kwargs["options_len"] = 8
    elif bad == "padding":
        kwargs["padding"] = 7
    else:
        kwargs["out_shape"] = (1, 9, 8, 2)
    data = _custom_tconv_model(x_shape, w, bias, **kwargs)
    with pytest.raises(tinyinfer.UnsupportedOpError, match="Convolution2DTransposeBias"):
        tinyinfer.convert(data, tmp_path / "m.tinf", verbose=False)


def _with_output(data, name):
    """The .tflite with tensor `name` added to the graph outputs."""
    pytest.importorskip("tensorflow")
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as S
    m = S.ModelT.InitFromObj(S.Model.GetRootAsModel(data, 0))
    g = m.subgraphs[0]
    g.outputs = list(g.outputs) + [[t.name for t in g.tensors].index(name.encode())]
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_real_selfie_segmentation_matches_litert(tmp_path):
    """ai-edge-litert runs MediaPipe's custom op (its XNNPACK delegate has it).
    The custom op's output ('segment', the mask's logits) is made a second
    output: the mask, their sigmoid, is saturated near 0 or 1 almost everywhere."""
    path = real_model("selfie_segmentation.tflite")
    pytest.importorskip("tflite")
    with_logits = _with_output(open(path, "rb").read(), "segment")
    dst = tmp_path / "m.tinf"
    report = tinyinfer.convert(with_logits, dst, verbose=False)
    assert report.ops_in["CUSTOM:Convolution2DTransposeBias"] == 1
    rng = np.random.default_rng(0)
    x = np.clip(rng.random((1, 256, 256, 3)) * 0.3 + np.linspace(0, 0.7, 256)[None, :, None, None], 0, 1)
    x = x.astype(np.float32)
    interp = pytest.importorskip("ai_edge_litert.interpreter")
    it = interp.Interpreter(model_content=with_logits)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    refs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    with tinyinfer.load(str(dst), threads=1) as m:
        ours = m.run(x)
    assert refs[1].std() > 1  # the logits carry signal
    assert_rel(ours[1:], refs[1:], 1e-5)
    assert float(np.abs(ours[0] - refs[0]).max()) <= 1e-6


# -- int8-static of float16-weight models -------------------------------------------------------
FIXTURES = os.path.join(HERE, "fixtures", "tflite")


@pytest.mark.parametrize("name", ["cnn_f16", "mlp_f16"])
@pytest.mark.parametrize("mode", ["int8-static", "int8-dynamic"])
def test_float16_weight_model_quantizes(name, mode, tmp_path):
    """A converted float16 .tflite (float16 constants behind Dequantize) is a
    float model to the quantizer: it quantizes, keeps no float16 tensor, and
    stays close to LiteRT's output on the .tflite."""
    pytest.importorskip("tflite")
    from tinyinfer.quantize import sqnr_db
    src = os.path.join(FIXTURES, f"{name}.tflite")
    f32 = tmp_path / "f.tinf"
    tinyinfer.convert(src, f32, verbose=False)
    with tinyinfer.load(str(f32)) as m:
        assert any(t.dtype == np.float16 for t in m.tensors())  # the fp16 weights are in the file
        shape = m.inputs[0].shape
    rng = np.random.default_rng(0)
    calib = rng.random((32,) + tuple(shape[1:]), np.float32)
    dst = tmp_path / "q.tinf"
    tinyinfer.quantize(str(f32), dst, mode=mode, calib=calib if mode == "int8-static" else None)
    x = rng.random(shape, np.float32)
    (ref,) = litert_run(src, [x])
    with tinyinfer.load(str(dst)) as q:
        assert not any(t.dtype == np.float16 for t in q.tensors())
        assert any(t.dtype == np.int8 and t.kind == "constant" for t in q.tensors())
        (y,) = q.run(x)
    assert sqnr_db(float((ref.astype(np.float64) ** 2).sum()), float(((ref - y) ** 2).sum())) > 25


@pytest.mark.parametrize("name", ["face_detection_short_range.tflite", "pose_detection.tflite"])
def test_real_fp16_model_int8_static(name, tmp_path):
    """pose_detection: two float16 weights stay behind run-time Dequantize ops
    (the load's folding budget is spent), widened to float32 by quantize."""
    path = real_model(name)
    pytest.importorskip("tflite")
    from tinyinfer.quantize import sqnr_db
    f32 = tmp_path / "f.tinf"
    tinyinfer.convert(path, f32, verbose=False)
    rng = np.random.default_rng(1)
    shape = tuple(litert_details(path)[0]["shape"])
    base = rng.random(shape, np.float32) * 2 - 1
    calib = np.concatenate([np.clip(base + rng.normal(0, 0.05, base.shape), -1, 1) for _ in range(8)]).astype(np.float32)
    dst = tmp_path / "q.tinf"
    tinyinfer.quantize(str(f32), dst, mode="int8-static", calib=calib)
    refs = litert_run(path, [base])
    with tinyinfer.load(str(dst)) as q:
        ours = q.run(base)
    # the regressors' output (box coordinates) keeps most of its signal in int8
    assert sqnr_db(float((refs[0].astype(np.float64) ** 2).sum()), float(((refs[0] - ours[0]) ** 2).sum())) > 12
