"""Quantization (docs/quantization.md, "Modes"): fp16, int8-dynamic,
int8-static, int4, calibration methods, the report and mixed precision, the
CLI; on the committed digits models (models/digits_*.tflite, held-out test
split models/digits_split.npz) and on small built graphs."""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer.quantize import Quantizer, calibration_sets, sqnr_db

import reference as R

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
SHAPES = {"mlp": (1, 784), "cnn": (1, 28, 28, 1)}


# -- a reader of .tinf files (docs/format.md), to look at stored constants ------

DTYPES = {1: np.float32, 2: np.float16, 3: np.int8, 4: np.uint8, 5: np.int32, 6: np.int64, 7: np.int16, 8: np.bool_}


def read_tinf(data: bytes):
    """{name: dict(dtype, shape, quant=(axis, scales, zps) or None, value=array or None)} and the op codes."""
    assert data[:4] == b"TINF"
    body_off, body_size, data_off = struct.unpack_from("<QQQ", data, 16)
    p = body_off

    def u32():
        nonlocal p
        v = struct.unpack_from("<I", data, p)[0]
        p += 4
        return v

    def s():
        nonlocal p
        n = u32()
        v = data[p:p + n].decode()
        p += n
        return v

    for _ in range(u32()):
        s(), s()
    tensors = {}
    for _ in range(u32()):
        name = s()
        dt, flags, rank, _r = struct.unpack_from("<BBBB", data, p)
        p += 4
        shape = struct.unpack_from(f"<{rank}q", data, p) if flags & 2 else ()
        p += 8 * rank
        kind = data[p]
        p += 1
        quant = None
        if kind == 1:
            axis = struct.unpack_from("<i", data, p)[0]
            n = struct.unpack_from("<I", data, p + 4)[0]
            p += 8
            scales = np.frombuffer(data, np.float32, n, p)
            zps = np.frombuffer(data, np.int32, n, p + 4 * n)
            p += 8 * n
            quant = (axis, scales.copy(), zps.copy())
        value = None
        if flags & 1:
            off, size = struct.unpack_from("<QQ", data, p)
            p += 16
            value = np.frombuffer(data, DTYPES[dt], size // np.dtype(DTYPES[dt]).itemsize,
                                  data_off + off).reshape(shape).copy()
        tensors.setdefault(name, dict(dtype=DTYPES.get(dt), shape=tuple(shape), quant=quant, value=value))
    return tensors


# -- models and data -------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{'mlp': path, 'cnn': path} of the float32 digits models as .tinf."""
    d = tmp_path_factory.mktemp("qmodels")
    out = {}
    for name in ("mlp", "cnn"):
        src = os.path.join(MODELS, f"digits_{name}.tflite")
        dst = str(d / f"{name}.tinf")
        tinyinfer.convert(src, dst, verbose=False)  # a converter failure fails every test that uses it
        out[name] = dst
    return out


@pytest.fixture(scope="module")
def digits():
    from tinyinfer.datasets import load_digits_28x28
    x, y = load_digits_28x28()
    split = np.load(os.path.join(MODELS, "digits_split.npz"))
    return {"calib": (x[split["calib"]], y[split["calib"]]), "test": (x[split["test"]], y[split["test"]])}


def predict(model, x, name):
    m = model if isinstance(model, tinyinfer.Model) else tinyinfer.load(model)
    try:
        shape = SHAPES[name]
        return np.concatenate([m.run(xi.reshape(shape))[0] for xi in x])
    finally:
        if m is not model:
            m.close()


def accuracy(model, data, name):
    x, y = data
    return float((predict(model, x, name).argmax(1) == y).mean())


def calib_of(digits, name, labels=False):
    x, y = digits["calib"]
    x = x.reshape(-1, *SHAPES[name][1:])
    return (x, y) if labels else x


# -- fp16 ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_fp16_halves_the_file_and_keeps_the_outputs(models, digits, tmp_path, name):
    dst = tmp_path / f"{name}_fp16.tinf"
    r = tinyinfer.quantize(models[name], dst, mode="fp16")
    src_size = os.path.getsize(models[name])
    assert r.src_bytes == src_size and r.dst_bytes == os.path.getsize(dst)
    assert 0.45 < r.dst_bytes / src_size < 0.55
    t = read_tinf(dst.read_bytes())
    weights = [v for v in t.values() if v["value"] is not None and len(v["shape"]) >= 2]
    assert weights and all(v["dtype"] == np.float16 for v in weights)
    biases = [v for v in t.values() if v["value"] is not None and len(v["shape"]) == 1]
    assert all(v["dtype"] == np.float32 for v in biases)
    with tinyinfer.load(dst) as m:
        assert m.metadata["quantization"] == "fp16"
        assert "Dequantize" not in [o.op for o in m.ops()]  # folded at load: no cost at run time
        x = digits["test"][0]
        ref, out = predict(models[name], x, name), predict(m, x, name)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-3
    assert np.abs(out - ref).max() < 2e-3
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.998


# -- int8-dynamic ---------------------------------------------------------------------

def test_int8_dynamic_mlp_size_accuracy_and_layout(models, digits, tmp_path):
    dst = tmp_path / "mlp_dyn.tinf"
    r = tinyinfer.quantize(models["mlp"], dst, mode="int8-dynamic")
    assert r.dst_bytes / r.src_bytes < 0.27
    t = read_tinf(dst.read_bytes())
    ws = [v for v in t.values() if v["dtype"] == np.int8]
    assert len(ws) == 3
    for v in ws:
        axis, scales, zps = v["quant"]
        assert axis == 0 and len(scales) == v["shape"][0] and not zps.any()
        assert v["value"].min() >= -127 and np.abs(v["value"]).max(axis=1).min() == 127
    acc0, acc = accuracy(models["mlp"], digits["test"], "mlp"), accuracy(dst, digits["test"], "mlp")
    assert acc >= acc0 - 0.01


def test_int8_dynamic_cnn_keeps_convolutions_float(models, digits, tmp_path):
    dst = tmp_path / "cnn_dyn.tinf"
    tinyinfer.quantize(models["cnn"], dst, mode="int8-dynamic")
    with tinyinfer.load(dst) as m:
        det = m.tensors()
        ops = m.ops()
    for op in ops:
        w = det[op.inputs[1]] if op.op in ("Conv2D", "FullyConnected") else None
        if op.op == "Conv2D":
            assert w.dtype == np.float32
        if op.op == "FullyConnected":
            assert w.dtype == np.int8 and w.quant_axis == 0
    assert accuracy(dst, digits["test"], "cnn") >= accuracy(models["cnn"], digits["test"], "cnn") - 0.01


def hybrid_reference(x, wq, wscale, bias, relu=False):
    """The documented int8-dynamic math in float32 numpy: per row, uint8
    with its own range (0 included), round half to even; exact integer dot
    products; one rounding to float."""
    rows = x.reshape(-1, x.shape[-1]).astype(np.float32)
    out = []
    for row in rows:
        lo, hi = np.float32(min(0.0, row.min())), np.float32(max(0.0, row.max()))
        s = np.float32(hi - lo) / np.float32(255)
        if s == 0:
            out.append(np.zeros(wq.shape[0], np.float32) + (0 if bias is None else bias))
            continue
        inv = np.float32(1) / s
        zp = np.round(np.float32(-lo * inv))
        q = np.round(np.clip(row * inv + zp, 0, 255).astype(np.float32))
        total = (q.astype(np.int64) - int(zp)) @ wq.astype(np.int64).T
        y = total.astype(np.float32) * (s * wscale.astype(np.float32))
        if bias is not None:
            y = y + bias
        out.append(np.maximum(y, 0) if relu else y)
    return np.stack(out).reshape(*x.shape[:-1], wq.shape[0]).astype(np.float32)


@pytest.mark.parametrize("m,k,n", [(1, 784, 256), (3, 100, 7), (2, 33, 5), (1, 40000, 4), (9, 130, 70), (1, 37, 130)])
def test_hybrid_kernel_matches_the_documented_math(rng, tmp_path, m, k, n):
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    g = tinyinfer.GraphBuilder("fc")
    x = g.input("x", (m, k))
    g.output(g.op("FullyConnected", x, g.const("w", w), g.const("b", b), activation=1))
    r = tinyinfer.quantize(g.to_bytes(), mode="int8-dynamic")
    t = read_tinf(r.data)
    wq, (axis, scales, _) = t["w"]["value"], t["w"]["quant"]
    # Weights: symmetric per channel, max |w| / 127, round half to even.
    np.testing.assert_allclose(scales, np.abs(w).max(axis=1) / 127, rtol=1e-6)
    np.testing.assert_array_equal(wq, np.clip(np.round(w / scales[:, None]), -127, 127).astype(np.int8))
    xs = (rng.standard_normal((m, k)) * 3 + 0.5).astype(np.float32)
    xs[0, : min(k, 10)] = 0
    with tinyinfer.load(r.data) as mod:
        (y,) = mod.run(xs)
    ref = hybrid_reference(xs, wq, scales, b, relu=True)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # And it is close to float32.
    yf = np.maximum(xs @ w.T + b, 0)
    assert np.abs(y - yf).max() < 0.05 * np.abs(yf).max()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_int8_dynamic_agrees_with_torch_and_onnxruntime(models, digits):
    """Same weights, same test inputs: tinyinfer's difference from float32 is
    of the size of torch.ao quantize_dynamic's and onnxruntime's."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    r = tinyinfer.quantize(models["mlp"], mode="int8-dynamic")
    src = read_tinf(open(models["mlp"], "rb").read())
    fcs = []
    with tinyinfer.load(models["mlp"]) as m:
        det = m.tensors()
        for op in m.ops():
            assert op.op in ("FullyConnected", "Softmax")
            if op.op == "FullyConnected":
                fcs.append((src[det[op.inputs[1]].name]["value"], src[det[op.inputs[2]].name]["value"]))
    assert [w.shape for w, _ in fcs] == [(256, 784), (128, 256), (10, 128)]
    x = digits["test"][0].reshape(-1, 784)
    ref = predict(models["mlp"], x, "mlp")
    with tinyinfer.load(r.data) as qm:
        ours = predict(qm, x, "mlp")

    # PyTorch: nn.Linear layers, quantize_dynamic (qint8 weights, quint8 activations).
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, 10), torch.nn.Softmax(-1))
    with torch.no_grad():
        for lin, (w, b) in zip([net[0], net[2], net[4]], fcs):
            lin.weight.copy_(torch.from_numpy(w.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        t_ref = net(torch.from_numpy(x)).numpy()
        qnet = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
        t_q = np.concatenate([qnet(torch.from_numpy(xi[None])).numpy() for xi in x])

    # onnxruntime: MatMul + Add + Relu graph, quantize_dynamic (int8 weights).
    nodes, inits, prev = [], [], "x"
    for i, (w, b) in enumerate(fcs):
        inits += [numpy_helper.from_array(w.T.copy(), f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"B{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["y"], axis=-1))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 784])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        fp, qp = os.path.join(d, "mlp.onnx"), os.path.join(d, "mlp_q.onnx")
        onnx.save(model, fp)
        quantize_dynamic(fp, qp, weight_type=QuantType.QInt8)
        s0 = ort.InferenceSession(fp, providers=["CPUExecutionProvider"])
        s1 = ort.InferenceSession(qp, providers=["CPUExecutionProvider"])
        o_ref = np.concatenate([s0.run(None, {"x": xi[None]})[0] for xi in x])
        o_q = np.concatenate([s1.run(None, {"x": xi[None]})[0] for xi in x])

    assert np.abs(t_ref - ref).max() < 1e-5 and np.abs(o_ref - ref).max() < 1e-5  # same float32 model
    d_ours, d_torch, d_ort = np.abs(ours - ref).max(), np.abs(t_q - t_ref).max(), np.abs(o_q - o_ref).max()
    print(f"max |int8 - float32| on the test split: tinyinfer {d_ours:.5f}, torch {d_torch:.5f}, "
          f"onnxruntime {d_ort:.5f}; mean: tinyinfer {np.abs(ours - ref).mean():.6f}, "
          f"torch {np.abs(t_q - t_ref).mean():.6f}, onnxruntime {np.abs(o_q - o_ref).mean():.6f}")
    assert d_ours <= 2 * min(d_torch, d_ort)
    assert np.abs(ours - ref).mean() <= 2 * min(np.abs(t_q - t_ref).mean(), np.abs(o_q - o_ref).mean())
    y = digits["test"][1]
    assert (ours.argmax(1) == y).mean() >= min((t_q.argmax(1) == y).mean(), (o_q.argmax(1) == y).mean()) - 0.005


# -- int4 -----------------------------------------------------------------------------

def q4_decode(packed: np.ndarray, k: int) -> np.ndarray:
    """The documented block layout: per block of 32, float16 d then 16 bytes;
    byte j holds element j (low nibble) and j + 16 (high nibble); value (q - 8) * d."""
    n = packed.shape[0]
    blocks = packed.reshape(n, -1, 18)
    d = blocks[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = blocks[:, :, 2:]
    q = np.concatenate([(qs & 15).astype(np.int32), (qs >> 4).astype(np.int32)], axis=2) - 8
    return (q * d[..., None]).reshape(n, -1)[:, :k]


@pytest.mark.parametrize("k", [64, 100])
def test_int4_layout_and_kernel(rng, k):
    n = 6
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    g = tinyinfer.GraphBuilder("fc")
    x = g.input("x", (2, k))
    g.output(g.op("FullyConnected", x, g.const("w", w), g.const("b", b)))
    r = tinyinfer.quantize(g.to_bytes(), mode="int4")
    t = read_tinf(r.data)
    packed = t["w_q4"]["value"]
    nb = (k + 31) // 32
    assert packed.dtype == np.uint8 and packed.shape == (n, nb * 18)
    deq = q4_decode(packed, k)
    # Q4_0: d = (element of largest magnitude) / -8, so that element is exact.
    blocks = np.pad(w, ((0, 0), (0, nb * 32 - k))).reshape(n, nb, 32)
    amax = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=2)[..., None], axis=2)[..., 0]
    d = packed.reshape(n, nb, 18)[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)
    np.testing.assert_allclose(d, (amax / -8).astype(np.float16).astype(np.float32))
    assert np.abs(deq - w).max() <= np.abs(d).max() * 1.0001
    xs = rng.standard_normal((2, k)).astype(np.float32)
    with tinyinfer.load(r.data) as m:
        (y,) = m.run(xs)
    ref = xs @ deq.T + b
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_int4_size_and_accuracy(models, digits, tmp_path, name):
    dst = tmp_path / f"{name}_int4.tinf"
    r = tinyinfer.quantize(models[name], dst, mode="int4")
    # FullyConnected weights at 4.5 bits; the CNN's convolutions stay float32.
    assert r.dst_bytes / r.src_bytes < (0.16 if name == "mlp" else 0.25)
    with tinyinfer.load(dst) as m, tinyinfer.load(models[name]) as f:
        assert m.metadata["quantization"] == "int4"
        # No expanded weight matrix anywhere: nothing folded at load, no larger arena.
        assert not [t for t in m.tensors() if t.kind == "folded"]
        assert m.arena_bytes <= f.arena_bytes
    assert accuracy(dst, digits["test"], name) >= accuracy(models[name], digits["test"], name) - 0.03


def test_matmul_with_constant_operand(rng):
    """MatMul(a, B const) becomes FullyConnected in int8-dynamic and int4;
    fp16 stores B as float16."""
    a = rng.standard_normal((2, 3, 64)).astype(np.float32)
    bmat = rng.standard_normal((64, 40)).astype(np.float32)
    g = tinyinfer.GraphBuilder("mm")
    x = g.input("a", a.shape)
    g.output(g.op("MatMul", x, g.const("b", bmat)))
    data = g.to_bytes()
    ref = a @ bmat
    for mode, tol in [("fp16", 2e-3), ("int8-dynamic", 0.03), ("int4", 0.2)]:
        r = tinyinfer.quantize(data, mode=mode)
        with tinyinfer.load(r.data) as m:
            ops = [o.op for o in m.ops()]
            (y,) = m.run(a)
        assert ops == (["MatMul"] if mode == "fp16" else ["FullyConnected"]), (mode, ops)
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() < tol * np.abs(ref).max(), mode


# -- calibration ----------------------------------------------------------------------

def test_calibration_ranges(models, digits):
    """minmax ranges equal the activations' min and max computed with numpy;
    the other methods choose ranges inside them."""
    x = calib_of(digits, "mlp")
    src = read_tinf(open(models["mlp"], "rb").read())
    with tinyinfer.load(models["mlp"]) as m:
        det = m.tensors()
        fcs = [op for op in m.ops() if op.op == "FullyConnected"]
        q = Quantizer(m, "int8-static")
        sets, _ = calibration_sets(x, m.inputs)
        assert len(sets) == 200
        for s in sets:
            q.observe(s)
        assert q.samples == 200
        # numpy forward pass of the first layer (relu).
        w1, b1 = src[det[fcs[0].inputs[1]].name]["value"], src[det[fcs[0].inputs[2]].name]["value"]
        h1 = np.maximum(x @ w1.T + b1, 0)
        t_in, t_h1 = fcs[0].inputs[0], fcs[0].outputs[0]
        lo, hi, mn, mx = q.tensor_range(t_in)
        assert (lo, hi) == (mn, mx) == (pytest.approx(x.min()), pytest.approx(x.max()))
        lo, hi, mn, mx = q.tensor_range(t_h1)
        assert lo == mn == 0 and hi == mx == pytest.approx(h1.max(), rel=1e-5)
        for method in ["percentile", "mse", "entropy"]:
            q.set_method(method, 99.0 if method == "percentile" else 99.99)
            lo2, hi2, _, _ = q.tensor_range(t_h1)
            assert 0 <= lo2 <= hi2 <= hi * (1 + 1e-6), method
            assert hi2 > 0.2 * hi, method
        q.set_method("percentile", 99.0)
        _, hp, _, _ = q.tensor_range(t_h1)
        # The 99th percentile of the histogram, within one bin of numpy's.
        assert abs(hp - np.percentile(h1, 99.0)) <= hi / 1024
        with pytest.raises(tinyinfer.InvalidStateError):
            q.tensor_range(fcs[0].inputs[1])  # a weight: not calibrated
        q.close()


def test_calibration_data_forms(models, digits, tmp_path):
    x, y = calib_of(digits, "mlp", labels=True)
    specs = tinyinfer.load(models["mlp"]).inputs
    np.save(tmp_path / "x.npy", x[:20])
    np.savez(tmp_path / "xy.npz", x=x[:20], y=y[:20])
    (tmp_path / "dir").mkdir()
    for i in range(5):
        np.save(tmp_path / "dir" / f"{i:03d}.npy", x[i])
    assert len(calibration_sets(str(tmp_path / "x.npy"), specs)[0]) == 20
    sets, labels = calibration_sets(str(tmp_path / "xy.npz"), specs)
    assert len(sets) == 20 and len(labels) == 20 and labels[3][0] == y[3]
    assert len(calibration_sets(str(tmp_path / "dir"), specs)[0]) == 5
    assert len(calibration_sets(iter([x[0], x[1:4]]), specs)[0]) == 4
    assert len(calibration_sets((x[:7], y[:7]), specs)[1]) == 7
    assert len(calibration_sets(digits["calib"][0][:3], specs)[0]) == 3  # [N, 28, 28] images for a [1, 784] input
    with pytest.raises(tinyinfer.InvalidArgumentError):
        calibration_sets(np.zeros((3, 5), np.float32), specs)


# -- int8-static ----------------------------------------------------------------------

def test_int8_static_rewrite_follows_the_tflite_spec(models, digits, tmp_path):
    dst = tmp_path / "cnn_int8.tinf"
    tinyinfer.quantize(models["cnn"], dst, mode="int8-static", calib=calib_of(digits, "cnn"))
    t = read_tinf(dst.read_bytes())
    with tinyinfer.load(dst) as m, tinyinfer.load(models["cnn"]) as f:
        assert m.metadata["quantization"] == "int8-static"
        assert [(i.name, i.dtype, i.shape) for i in m.inputs] == [(i.name, i.dtype, i.shape) for i in f.inputs]
        assert [(o.name, o.dtype, o.shape) for o in m.outputs] == [(o.name, o.dtype, o.shape) for o in f.outputs]
        det = m.tensors()
        ops = m.ops()
    names = [o.op for o in ops]
    assert names[0] == "Quantize" and names[-1] == "Dequantize"
    assert names[1:-1] == ["Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D", "Reshape", "FullyConnected",
                           "FullyConnected", "Softmax"]
    for op in ops[1:-1]:
        x, y = det[op.inputs[0]], det[op.outputs[0]]
        assert x.dtype == np.int8 and y.dtype == np.int8 and x.scales.size == 1 and y.scales.size == 1
        if op.op in ("Conv2D", "FullyConnected"):
            w, b = det[op.inputs[1]], det[op.inputs[2]]
            assert w.dtype == np.int8 and w.quant_axis == 0 and w.scales.size == w.shape[0]
            assert not w.zero_points.any()
            wv = t[w.name]["value"]
            assert wv.min() >= -127
            assert b.dtype == np.int32 and not b.zero_points.any()
            np.testing.assert_allclose(b.scales, x.scales[0] * w.scales, rtol=1e-6)
        if op.op in ("MaxPool2D", "Reshape"):
            assert (y.scales[0], y.zero_points[0]) == (x.scales[0], x.zero_points[0])
        if op.op == "Softmax":
            assert (y.scales[0], y.zero_points[0]) == (1 / 256, -128)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("method", ["minmax", "percentile", "mse", "entropy"])
def test_int8_static_accuracy(models, digits, tmp_path, name, method):
    dst = tmp_path / f"{name}_{method}.tinf"
    r = tinyinfer.quantize(models[name], dst, mode="int8-static", calib=calib_of(digits, name), method=method,
                           progress=False)
    assert r.dst_bytes / r.src_bytes < 0.27
    acc0 = accuracy(models[name], digits["test"], name)
    acc = accuracy(dst, digits["test"], name)
    assert acc >= acc0 - 0.015, (acc, acc0)


def test_int8_static_other_ops(rng):
    """Depthwise, Add with a constant, Concat of differently scaled inputs,
    pooling, Mean, Logistic, Tanh, an op without an integer kernel (Exp,
    kept float32 between Dequantize and Quantize)."""
    g = tinyinfer.GraphBuilder("mix")
    x = g.input("x", (1, 8, 8, 3))
    dw = g.op("DepthwiseConv2D", x, g.const("dw", rng.standard_normal((1, 3, 3, 6)).astype(np.float32) * 0.5),
              g.const("dwb", rng.standard_normal(6).astype(np.float32)), depth_multiplier=2, padding=1, activation=1)
    a = g.op("Add", dw, g.const("c", rng.standard_normal((1, 1, 1, 6)).astype(np.float32)))
    sg = g.op("Logistic", a)
    th = g.op("Tanh", g.op("Mul", a, g.const("half", np.full((1,), 0.5, np.float32))))
    e = g.op("Exp", g.op("Mul", a, g.const("small", np.full((1,), -0.1, np.float32))))
    cat = g.op("Concat", sg, th, e, a, axis=3)
    pool = g.op("AveragePool2D", cat, filter=[2, 2], strides=[2, 2])
    mean = g.op("Mean", pool, axes=[1, 2], keep_dims=0)
    g.output(g.op("FullyConnected", mean, g.const("w", rng.standard_normal((5, 24)).astype(np.float32)),
                  g.const("b", rng.standard_normal(5).astype(np.float32))))
    data = g.to_bytes()
    calib = rng.standard_normal((64, 1, 8, 8, 3)).astype(np.float32)
    r = tinyinfer.quantize(data, mode="int8-static", calib=list(calib), report=False)
    with tinyinfer.load(r.data) as m, tinyinfer.load(data) as f:
        ops = [o.op for o in m.ops()]
        det = m.tensors()
        assert "Exp" in ops and ops.count("Quantize") >= 2 and ops.count("Dequantize") >= 2
        exp_op = [o for o in m.ops() if o.op == "Exp"][0]
        assert det[exp_op.inputs[0]].dtype == np.float32
        for o in m.ops():
            if o.op in ("DepthwiseConv2D",):
                w = det[o.inputs[1]]
                assert w.dtype == np.int8 and w.quant_axis == 3 and w.scales.size == 6
            if o.op == "Logistic":
                y = det[o.outputs[0]]
                assert (y.scales[0], y.zero_points[0]) == (1 / 256, -128)
            if o.op == "Tanh":
                y = det[o.outputs[0]]
                assert (y.scales[0], y.zero_points[0]) == (1 / 128, 0)
            if o.op == "Concat":
                qs = {(det[i].scales[0], det[i].zero_points[0]) for i in o.inputs + o.outputs}
                assert len(qs) == 1  # inputs requantized to the output's parameters
        test = rng.standard_normal((20, 1, 8, 8, 3)).astype(np.float32)
        ref = np.concatenate([f.run(t)[0] for t in test])
        out = np.concatenate([m.run(t)[0] for t in test])
    assert sqnr_db((ref ** 2).sum(), ((ref - out) ** 2).sum()) > 25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_int8_static_quantizes_the_folded_affine_chains(seed):
    """Constant Mul / Add / Sub after Conv2D, DepthwiseConv2D and
    FullyConnected (per-channel scales of both signs, a per-channel shift,
    c - x, a Relu after the Add) are folded at load before calibration
    (Passes/AffineFolding): int8-static makes each chain one int8 op with one
    calibrated output range, within int8 noise of the numpy float64
    reference and no worse than quantizing the unfolded graph op by op."""
    rng = np.random.default_rng(seed)

    def f(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)
    w1, b1, t1 = f(6, 3, 3, 3, scale=0.4), f(6), f(6)
    s1 = np.array([2.0, -0.5, 0.25, 1.5, -3.0, 0.75], np.float32)
    wd, wf, bf = f(1, 3, 3, 6, scale=0.5), f(4, 6), f(4)
    g = tinyinfer.GraphBuilder("affine")
    x = g.input("x", (1, 8, 8, 3))
    c = g.op("Conv2D", x, g.const("w1", w1), g.const("b1", b1), padding=1, name="conv")
    a = g.op("Add", g.op("Mul", c, g.const("s1", s1), name="mul"), g.const("t1", t1.reshape(1, 1, 1, 6)), name="add")
    d = g.op("DepthwiseConv2D", g.op("Relu", a, name="relu"), g.const("wd", wd), None, padding=1, name="dw")
    sub = g.op("Sub", g.const("half", np.full((1,), 0.5, np.float32)), d, name="sub")
    fc = g.op("FullyConnected", g.op("Mean", sub, axes=[1, 2], keep_dims=0), g.const("wf", wf), g.const("bf", bf),
              name="fc")
    g.output(g.op("Mul", fc, g.const("k", np.full((1,), 3.0, np.float32)), name="out"))
    data = g.to_bytes()

    def reference(t):
        y = np.maximum(R.conv2d(t, w1, b1, padding=1).astype(np.float64) * s1 + t1, 0)
        y = 0.5 - R.depthwise_conv2d(y, wd, None, padding=1).astype(np.float64)
        return R.fully_connected(y.mean(axis=(1, 2)), wf, bf).astype(np.float64) * 3.0

    calib = [f(1, 8, 8, 3) for _ in range(32)]
    test = [f(1, 8, 8, 3) for _ in range(20)]
    ref = np.concatenate([reference(t) for t in test])
    sqnr = {}
    for optimize in (True, False):
        with tinyinfer.load(data, optimize=optimize) as fm:
            folded = [p for p in fm.passes if p.startswith("fold") and "constant" not in p]
            r = tinyinfer.quantize(fm, mode="int8-static", calib=calib)
        with tinyinfer.load(r.data) as qm:
            ops = [o.op for o in qm.ops()]
            out = np.concatenate([qm.run(t)[0] for t in test]).astype(np.float64)
        if optimize:
            assert folded == ["fold Mul 'mul' into Conv2D 'conv'", "fold Add 'add' into Conv2D 'mul'",
                              "fold Sub 'sub' into DepthwiseConv2D 'dw'", "fold Mul 'out' into FullyConnected 'fc'"]
            assert ops == ["Quantize", "Conv2D", "DepthwiseConv2D", "Mean", "FullyConnected", "Dequantize"]
        else:
            assert folded == [] and ops.count("Mul") == 2 and "Sub" in ops
        sqnr[optimize] = sqnr_db((ref ** 2).sum(), ((ref - out) ** 2).sum())
        for j in range(4):  # every output channel, not only the largest
            assert sqnr_db((ref[:, j] ** 2).sum(), ((ref[:, j] - out[:, j]) ** 2).sum()) > 20, (optimize, j)
    assert sqnr[True] > 27, sqnr
    assert sqnr[True] >= sqnr[False] - 0.5, sqnr


@pytest.mark.parametrize("seed", [0, 1])
def test_int8_static_transpose_conv_head(seed):
    """The tail of PP-OCR's detection head: Conv2D -> TransposeConv2D ->
    Add(c) -> BatchNorm -> Relu -> TransposeConv2D (2x2 stride 2, one output
    channel) -> Logistic. The load-time folds leave two TransposeConv2D and
    int8-static runs both on the int8 kernel (weights per channel, int32
    bias): one Quantize and one Dequantize in all, within int8 noise of the
    numpy float64 reference, and no worse than before the folds."""
    rng = np.random.default_rng(seed)

    def f(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)
    w0, b0 = f(8, 3, 3, 4, scale=0.3), f(8)
    w1, c1 = f(6, 2, 2, 8, scale=0.3), f(6)
    bn = (f(6) * 0.5 + 1, f(6), f(6) * 0.3, np.abs(f(6)) + 0.5)
    w2, b2 = f(1, 2, 2, 6, scale=0.5), f(1)
    g = tinyinfer.GraphBuilder("tconv")
    x = g.input("x", (1, 6, 6, 4))
    y = g.op("Conv2D", x, g.const("w0", w0), g.const("b0", b0), padding=1, activation=1, name="conv")
    t = g.op("TransposeConv2D", y, g.const("w1", w1), None, strides=[2, 2], name="up1")
    a = g.op("Add", t, g.const("c1", c1), name="add")
    n = g.op("BatchNorm", a, *[g.const(None, v) for v in bn], epsilon=1e-5, name="bn")
    r = g.op("Relu", n, name="relu")
    u = g.op("TransposeConv2D", r, g.const("w2", w2), g.const("b2", b2), strides=[2, 2], name="up2")
    g.output(g.op("Logistic", u, name="out"))
    data = g.to_bytes()

    def reference(v):
        h = R.conv2d(v, w0, b0, padding=1, activation=1)
        h = R.transpose_conv2d(h, w1, None, strides=(2, 2)).astype(np.float64) + c1
        h = np.maximum(R.batch_norm(h, *bn), 0)
        h = R.transpose_conv2d(h, w2, b2, strides=(2, 2)).astype(np.float64)
        return 1 / (1 + np.exp(-h))

    calib = [f(1, 6, 6, 4) for _ in range(24)]
    test = [f(1, 6, 6, 4) for _ in range(10)]
    ref = np.concatenate([reference(v) for v in test])
    sqnr = {}
    for optimize in (True, False):
        with tinyinfer.load(data, optimize=optimize) as fm:
            r = tinyinfer.quantize(fm, mode="int8-static", calib=calib)
        with tinyinfer.load(r.data) as qm:
            tens = {t.index: t for t in qm.tensors()}
            ops = [o.op for o in qm.ops()]
            tconv_in = [str(tens[o.inputs[0]].dtype) for o in qm.ops() if o.op == "TransposeConv2D"]
            out = np.concatenate([qm.run(v)[0] for v in test]).astype(np.float64)
        if optimize:
            assert ops == ["Quantize", "Conv2D", "TransposeConv2D", "TransposeConv2D", "Logistic", "Dequantize"], ops
            assert tconv_in == ["int8", "int8"]
        sqnr[optimize] = sqnr_db((ref ** 2).sum(), ((ref - out) ** 2).sum())
    assert sqnr[True] > 25, sqnr
    assert sqnr[True] >= sqnr[False] - 0.5, sqnr


def test_int8_static_reduce_max_keeps_its_input_parameters(rng):
    """ReduceMax after an int8 Conv2D runs in int8 with its input's parameters
    (as TFLite's converter writes REDUCE_MAX), so the max itself is exact."""
    g = tinyinfer.GraphBuilder("rmax")
    x = g.input("x", (1, 6, 6, 4))
    c = g.op("Conv2D", x, g.const("w", rng.standard_normal((8, 3, 3, 4)).astype(np.float32)),
             g.const("b", rng.standard_normal(8).astype(np.float32)), padding=1)
    mx = g.op("ReduceMax", c, axes=[1, 2], keep_dims=0)
    g.output(g.op("FullyConnected", mx, g.const("fw", rng.standard_normal((3, 8)).astype(np.float32))))
    data = g.to_bytes()
    r = tinyinfer.quantize(data, mode="int8-static", calib=rng.standard_normal((16, 1, 6, 6, 4)).astype(np.float32),
                           report=True)
    assert [(l.op, l.quantized) for l in r.layers] == [("Conv2D", True), ("ReduceMax", True),
                                                       ("FullyConnected", True)]
    with tinyinfer.load(r.data) as m, tinyinfer.load(data) as f:
        assert [o.op for o in m.ops()] == ["Quantize", "Conv2D", "ReduceMax", "FullyConnected", "Dequantize"]
        det = m.tensors()
        o = [o for o in m.ops() if o.op == "ReduceMax"][0]
        xin, y = det[o.inputs[0]], det[o.outputs[0]]
        assert y.dtype == np.int8 and (y.scales[0], y.zero_points[0]) == (xin.scales[0], xin.zero_points[0])
        test = rng.standard_normal((10, 1, 6, 6, 4)).astype(np.float32)
        ref = np.concatenate([f.run(t)[0] for t in test])
        out = np.concatenate([m.run(t)[0] for t in test])
    assert sqnr_db((ref ** 2).sum(), ((ref - out) ** 2).sum()) > 25


def test_int8_static_falls_back_when_the_integer_kernel_refuses(rng):
    """An op whose int8 kernel refuses its attributes (AveragePool2D with
    count_include_pad = 1) runs in float32 between Dequantize and Quantize;
    the ops around it stay int8."""
    g = tinyinfer.GraphBuilder("fallback")
    x = g.input("x", (1, 6, 6, 4))
    c = g.op("Conv2D", x, g.const("w", rng.standard_normal((8, 3, 3, 4)).astype(np.float32)),
             g.const("b", np.zeros(8, np.float32)), padding=1, activation=1)
    p = g.op("AveragePool2D", c, filter=[3, 3], strides=[1, 1], padding=1, count_include_pad=1)
    g.output(g.op("Conv2D", p, g.const("w2", rng.standard_normal((2, 1, 1, 8)).astype(np.float32)), padding=0))
    data = g.to_bytes()
    r = tinyinfer.quantize(data, mode="int8-static", calib=rng.standard_normal((16, 1, 6, 6, 4)).astype(np.float32),
                           report=True)
    assert [(l.op, l.quantized) for l in r.layers] == [("Conv2D", True), ("AveragePool2D", False), ("Conv2D", True)]
    with tinyinfer.load(r.data) as m, tinyinfer.load(data) as f:
        assert [o.op for o in m.ops()] == ["Quantize", "Conv2D", "Dequantize", "AveragePool2D", "Quantize",
                                           "Conv2D", "Dequantize"]
        t = rng.standard_normal((1, 6, 6, 4)).astype(np.float32)
        ref, out = f.run(t)[0], m.run(t)[0]
    assert sqnr_db((ref ** 2).sum(), ((ref - out) ** 2).sum()) > 25


def test_already_quantized_models_are_refused(models, tmp_path):
    """Quantizing the output of quantize, or a converted quantized TFLite
    model, says so instead of writing a copy (a float16-weight .tflite is a
    float model: test_convert_gaps.py quantizes it)."""
    quantized = {mode: tinyinfer.quantize(models["mlp"], mode=mode).data for mode in ("fp16", "int8-dynamic", "int4")}
    for kind in ("int8", "dynamic"):
        dst = tmp_path / f"mlp_{kind}.tinf"
        tinyinfer.convert(os.path.join(MODELS, f"digits_mlp.{kind}.tflite"), str(dst), verbose=False)
        quantized[f"tflite {kind}"] = dst.read_bytes()
    for what, data in quantized.items():
        for mode in ("fp16", "int8-dynamic"):
            with pytest.raises(tinyinfer.InvalidArgumentError, match="already quantized") as ei:
                tinyinfer.quantize(data, tmp_path / "again.tinf", mode=mode)
            assert not (tmp_path / "again.tinf").exists(), (what, mode)
        assert ei.value.status is tinyinfer.Status.INVALID_ARGUMENT
    with tinyinfer.load(models["mlp"]) as m:
        from tinyinfer.quantize import already_quantized
        assert already_quantized(m) is None
    src = tmp_path / "mlp_fp16.tinf"
    src.write_bytes(quantized["fp16"])
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "tinyinfer", "quantize", str(src), "-o", str(tmp_path / "again.tinf"),
                        "--mode", "int8-dynamic"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode != 0 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "already quantized" in p.stderr and "quantization: fp16" in p.stderr
    assert not (tmp_path / "again.tinf").exists()


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(models, digits, monkeypatch):
    import io
    calib = calib_of(digits, "mlp")[:40]
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    tinyinfer.quantize(models["mlp"], mode="int8-static", calib=calib, report=True, progress=True)
    assert "\r" not in err.getvalue()
    assert err.getvalue().splitlines() == ["calibrating: 40/40", "comparing: 40/40"]

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    tinyinfer.quantize(models["mlp"], mode="int8-static", calib=calib, progress=True)
    assert "\r" in tty.getvalue() and "calibrating" in tty.getvalue()  # redrawn in place on a terminal


def test_int8_static_needs_calibration(models):
    with pytest.raises(tinyinfer.InvalidArgumentError, match="calibration"):
        tinyinfer.quantize(models["mlp"], mode="int8-static")
    with tinyinfer.load(models["mlp"]) as m:
        q = Quantizer(m, "int8-static")
        with pytest.raises(tinyinfer.InvalidStateError):
            q.finish()
        q.close()
    with pytest.raises(tinyinfer.InvalidArgumentError):
        tinyinfer.quantize(models["mlp"], mode="int3")


# -- report and mixed precision ---------------------------------------------------------

def test_report_gives_per_layer_sqnr(models, digits, capsys):
    r = tinyinfer.quantize(models["cnn"], mode="int8-static", calib=calib_of(digits, "cnn", labels=True),
                           report=True, progress=False)
    text = capsys.readouterr().out
    assert "SQNR" in text and "accuracy" in text
    assert [l.op for l in r.layers] == ["Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D", "FullyConnected",
                                        "FullyConnected", "Softmax"]
    assert all(l.quantized and 20 < l.sqnr_db < 80 for l in r.layers)
    assert len(r.output_sqnr_db) == 1 and r.output_sqnr_db[0] > 25
    assert r.accuracy >= r.float_accuracy - 0.02
    # Weight-only modes report too (the layers are the FullyConnected ops).
    r = tinyinfer.quantize(models["mlp"], mode="int4", calib=calib_of(digits, "mlp"), report=True, progress=False)
    assert [l.op for l in r.layers] == ["FullyConnected"] * 3 and all(l.sqnr_db > 10 for l in r.layers)


def test_min_sqnr_keeps_sensitive_layers_float(models, digits):
    calib = calib_of(digits, "mlp")
    base = tinyinfer.quantize(models["mlp"], mode="int4", calib=calib, report=True, progress=False)
    target = base.output_sqnr_db[0] + 6
    r = tinyinfer.quantize(models["mlp"], mode="int4", calib=calib, min_sqnr=target, progress=False)
    assert r.budget_met and r.output_sqnr_db[0] >= target
    assert 1 <= len(r.kept_float) < 3
    assert all(l.sensitivity_db is not None for l in r.layers)
    assert r.dst_bytes > base.dst_bytes
    kept = [l for l in r.layers if not l.quantized]
    assert [l.name for l in kept] == r.kept_float
    # The kept layer is the least robust one alone.
    worst = min(r.layers, key=lambda l: l.sensitivity_db)
    assert worst.name in r.kept_float


def test_max_accuracy_drop(models, digits):
    # entropy clips the logits: on these 450 labelled images the fully int8
    # model loses accuracy, and a zero budget keeps layers in float32.
    x, y = digits["test"]
    calib = (x.reshape(-1, 28, 28, 1), y)
    full = tinyinfer.quantize(models["cnn"], mode="int8-static", calib=calib, method="entropy", progress=False)
    assert full.accuracy < full.float_accuracy
    r = tinyinfer.quantize(models["cnn"], mode="int8-static", calib=calib, method="entropy", max_accuracy_drop=0.0,
                           progress=False)
    assert r.budget_met and r.accuracy >= r.float_accuracy and r.kept_float
    assert len(r.kept_float) < len(r.layers)
    assert accuracy(r.data, digits["test"], "cnn") == r.accuracy
    calib = calib_of(digits, "cnn", labels=True)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="labels"):
        tinyinfer.quantize(models["cnn"], mode="int8-static", calib=calib[0], max_accuracy_drop=0.01)


def test_keep_float_by_name(models, digits):
    with tinyinfer.load(models["mlp"]) as m:
        last = [m.tensors()[o.outputs[0]].name for o in m.ops() if o.op == "FullyConnected"][-1]
    r = tinyinfer.quantize(models["mlp"], mode="int8-dynamic", keep_float=[last])
    assert r.kept_float == [last]
    t = read_tinf(r.data)
    assert sorted(v["dtype"].__name__ for v in t.values() if v["value"] is not None and len(v["shape"]) == 2) == [
        "float32", "int8", "int8"]


# -- command line and C API edges --------------------------------------------------------

def test_cli(models, digits, tmp_path):
    x, y = calib_of(digits, "mlp", labels=True)
    np.save(tmp_path / "calib.npy", x[:50])
    np.save(tmp_path / "labels.npy", y[:50])
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    dst = tmp_path / "out.tinf"
    p = subprocess.run([sys.executable, "-m", "tinyinfer", "quantize", models["mlp"], "-o", str(dst),
                        "--mode", "int8-static", "--calib", str(tmp_path / "calib.npy"), "--labels",
                        str(tmp_path / "labels.npy"), "--method", "percentile", "--report", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "SQNR" in p.stdout and "size:" in p.stdout and dst.exists()
    assert accuracy(str(dst), digits["test"], "mlp") > 0.9
    p = subprocess.run([sys.executable, "-m", "tinyinfer", "quantize", models["mlp"], "-o", str(dst), "--mode",
                        "fp16"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "bytes" in p.stdout
    p = subprocess.run([sys.executable, "-m", "tinyinfer", "quantize", models["mlp"], "--mode", "int8-static"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode != 0


def test_c_api_argument_checks(models):
    from ctypes import byref, c_int32, c_void_p
    from tinyinfer import _lib
    from tinyinfer.quantize import MODES
    QuantizerHandle = _lib.QuantizerHandle
    L = _lib.lib
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_quantizer_create(_lib.ModelHandle(), MODES["int8-dynamic"], byref(QuantizerHandle()))
    with tinyinfer.load(models["mlp"]) as m:
        with pytest.raises(tinyinfer.InvalidArgumentError):
            L.tinf_quantizer_create(m.handle, max(MODES.values()) + 1, byref(QuantizerHandle()))
        q = Quantizer(m, "int8-dynamic")
        with pytest.raises(tinyinfer.InvalidStateError):
            L.tinf_quantizer_data(q._h, byref(c_void_p()), byref(_lib.c_size_t()))
        with pytest.raises(tinyinfer.InvalidArgumentError):
            q.keep_float(99)
        with pytest.raises(tinyinfer.InvalidArgumentError):
            L.tinf_quantizer_observe(q._h, 1, None, None)
        with pytest.raises(tinyinfer.InvalidArgumentError):
            q.observe([np.zeros((1, 783), np.float32)])
        with pytest.raises(tinyinfer.InvalidArgumentError):
            q.set_method("minmax", 10.0)
        with pytest.raises(tinyinfer.InvalidStateError):
            q.compare([np.zeros((1, 784), np.float32)])
        n = c_int32()
        L.tinf_quantizer_layer_count(q._h, byref(n))
        assert n.value == 3
        q.close()
    L.tinf_quantizer_free(None)


def _heavy_tailed_fc(rng):
    """A small FC model followed by Relu6."""
    g = tinyinfer.GraphBuilder("tails")
    x = g.input("x", (1, 32))
    g.output(g.op("FullyConnected", x, g.const("w", rng.standard_normal((8, 32)).astype(np.float32) * 0.3),
                  g.const("b", rng.standard_normal(8).astype(np.float32) * 0.1), activation=3))
    return g.to_bytes()


class _ScoredQuantizer:
    """Stands in for Quantizer in _choose_method: each method's output
    (signal, noise) sums are given; records the calls."""

    def __init__(self, errors):
        self.errors, self.calls, self.method = errors, [], None

    def set_method(self, m, percentile=99.99):
        self.method = m
        self.calls.append(("set_method", m))

    def finish(self):
        self.calls.append(("finish", self.method))

    def compare(self, xs):
        self.calls.append(("compare", self.method))

    def output_error(self, o):
        return self.errors[self.method][o]


@pytest.mark.parametrize("errors,expect", [
    # (signal, noise) per output: the worst output decides; mse needs 1 dB more than minmax.
    ({"minmax": [(100.0, 1.0), (100.0, 10.0)], "mse": [(100.0, 1.0), (100.0, 2.0)]}, "mse"),     # 10 vs 17 dB
    ({"minmax": [(100.0, 1.0)], "mse": [(100.0, 0.85)]}, "minmax"),                             # +0.7 dB only
    ({"minmax": [(100.0, 1.0)], "mse": [(100.0, 0.5)]}, "mse"),                                 # +3 dB
    ({"minmax": [(100.0, 0.0)], "mse": [(100.0, 0.0)]}, "minmax"),                              # both exact
    ({"minmax": [(100.0, 50.0)], "mse": [(0.0, 1.0)]}, "minmax"),                               # -inf for mse
])
def test_auto_method_choice_from_the_worst_output(errors, expect):
    from tinyinfer.quantize import _choose_method
    q, scores = _ScoredQuantizer(errors), {}
    sets = [[np.zeros(1)]] * 3
    assert _choose_method(q, sets, len(errors["minmax"]), scores) == expect
    assert list(scores) == ["minmax", "mse"]
    assert scores["minmax"] == min(sqnr_db(*e) for e in errors["minmax"])
    # Each candidate: set, finish, then every set compared once.
    assert q.calls == [c for m in ("minmax", "mse") for c in [("set_method", m), ("finish", m)] +
                       [("compare", m)] * 3]


def test_auto_method_is_the_default_and_reports_its_scores(rng):
    data = _heavy_tailed_fc(rng)
    calib = list(rng.standard_normal((32, 1, 32)).astype(np.float32))
    auto = tinyinfer.quantize(data, mode="int8-static", calib=calib)
    assert auto.method in ("minmax", "mse") and set(auto.method_scores) == {"minmax", "mse"}
    assert "auto: minmax" in str(auto)
    # The model is exactly the chosen method's.
    assert auto.data == tinyinfer.quantize(data, mode="int8-static", calib=calib, method=auto.method).data


def test_auto_method_keeps_minmax_unless_another_is_clearly_better(rng):
    data = _heavy_tailed_fc(rng)
    calib = list(rng.uniform(-1, 1, (32, 1, 32)).astype(np.float32))   # no tails: nothing to clip
    auto = tinyinfer.quantize(data, mode="int8-static", calib=calib)
    s = auto.method_scores
    assert auto.method == ("mse" if s["mse"] >= s["minmax"] + 1.0 else "minmax")
    assert auto.data == tinyinfer.quantize(data, mode="int8-static", calib=calib, method=auto.method).data
    # Other modes have no activation ranges: no method, nothing scored.
    dyn = tinyinfer.quantize(data, mode="int8-dynamic")
    assert dyn.method is None and not dyn.method_scores
    with pytest.raises(tinyinfer.InvalidArgumentError, match="unknown method"):
        tinyinfer.quantize(data, mode="int8-static", calib=calib, method="median")


def test_int8_static_resize_maximum_minimum_stay_int8(rng):
    """Issue 14: ResizeNearest, ResizeBilinear, Maximum / Minimum with a
    constant and Maximum of two activations of one set of parameters run in
    int8 with their input's parameters (no Dequantize / Quantize around
    them); their results are the float ops' on the dequantized input within
    half a step (the constants' rounding; nearest and the comparisons are
    exact) or 1.5 steps (bilinear: TFLite's 10-bit weights). Maximum of two
    activations with different parameters stays float32."""
    g = tinyinfer.GraphBuilder("islands")
    x = g.input("x", (1, 6, 7, 4))
    c = g.op("Conv2D", x, g.const("w", rng.standard_normal((5, 3, 3, 4)).astype(np.float32) * 0.3),
             g.const("b", rng.standard_normal(5).astype(np.float32) * 0.1), padding=1)
    n = g.op("ResizeNearest", c, size=[12, 14], half_pixel_centers=1)
    m1 = g.op("Maximum", n, g.const("lo", np.float32([0.05])))
    m2 = g.op("Minimum", g.const("hi", np.full((1, 1, 1, 5), 1.0, np.float32)), m1)
    bl = g.op("ResizeBilinear", c, size=[11, 13], align_corners=1)
    m3 = g.op("Maximum", bl, g.op("ResizeNearest", c, size=[11, 13]))
    c2 = g.op("Conv2D", x, g.const("w2", rng.standard_normal((5, 1, 1, 4)).astype(np.float32) * 3), padding=0)
    m4 = g.op("Minimum", c, c2)
    g.output(c, m2, m3, m4)
    data = g.to_bytes()
    calib = rng.standard_normal((16, 1, 6, 7, 4)).astype(np.float32)
    r = tinyinfer.quantize(data, mode="int8-static", calib=calib, method="minmax")
    with tinyinfer.load(r.data) as m:
        ops = m.ops()
        det = m.tensors()
        names = [o.op for o in ops]
        # Dequantize: the three int8 outputs and c2 for the float Minimum; Quantize: the input only.
        assert names.count("Quantize") == 1 and names.count("Dequantize") == 4, names
        cq = [o for o in ops if o.op == "Conv2D"][0].outputs[0]
        p = (det[cq].scales[0], det[cq].zero_points[0])
        int8_ops, float_ops = [], []
        for o in ops:
            if o.op not in ("ResizeNearest", "ResizeBilinear", "Maximum", "Minimum"):
                continue
            ts = [det[i] for i in o.inputs + o.outputs]
            if all(t.dtype == np.int8 for t in ts):
                assert all((t.scales[0], t.zero_points[0]) == p for t in ts), o.op
                int8_ops.append(o.op)
            else:
                float_ops.append(o.op)
        assert sorted(int8_ops) == ["Maximum", "Maximum", "Minimum", "ResizeBilinear", "ResizeNearest",
                                    "ResizeNearest"]
        assert float_ops == ["Minimum"]
        for t in rng.standard_normal((4, 1, 6, 7, 4)).astype(np.float32):
            cd, y1, y2, _ = m.run(t)
            want1 = np.minimum(1.0, np.maximum(R.resize_nearest(cd, (12, 14), half_pixel_centers=1), 0.05))
            want2 = np.maximum(R.resize_bilinear(cd, (11, 13), align_corners=1), R.resize_nearest(cd, (11, 13)))
            assert np.abs(y1 - want1).max() <= 0.5 * p[0] + 1e-6
            assert np.abs(y2 - want2).max() <= 1.5 * p[0] + 1e-6


def test_int8_static_maximum_minimum_constant_beyond_the_range(rng):
    """A constant beyond the activation's range: Minimum(x, 100) and
    Maximum(x, -100) are x and run in int8 (the constant saturates, no
    result changes); Maximum(x, 100) would be 100, which x's parameters
    cannot hold: it stays float32 and gives 100."""
    g = tinyinfer.GraphBuilder("beyond")
    x = g.input("x", (1, 5, 5, 3))
    c = g.op("Conv2D", x, g.const("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3), padding=1)
    big, small = g.const("big", np.float32([100.0])), g.const("small", np.float32([-100.0]))
    g.output(c, g.op("Minimum", c, big), g.op("Maximum", small, c), g.op("Maximum", c, big))
    data = g.to_bytes()
    r = tinyinfer.quantize(data, mode="int8-static", calib=rng.standard_normal((8, 1, 5, 5, 3)).astype(np.float32),
                           method="minmax")
    with tinyinfer.load(r.data) as m:
        det = m.tensors()
        kinds = [(o.op, det[o.outputs[0]].dtype.name) for o in m.ops() if o.op in ("Maximum", "Minimum")]
        assert kinds == [("Minimum", "int8"), ("Maximum", "int8"), ("Maximum", "float32")]
        cd, lo_, hi_, big_ = m.run(rng.standard_normal((1, 5, 5, 3)).astype(np.float32))
    np.testing.assert_array_equal(lo_, cd)
    np.testing.assert_array_equal(hi_, cd)
    np.testing.assert_array_equal(big_, np.full_like(cd, 100.0))


# -- the output stage of int8-static's convolutions and Mul (docs/quantization.md, "Requantization") ----------------

def _conv_mul_model(rng):
    """x [1,9,10,8] -> Conv2D 3x3 (16, relu) -> DepthwiseConv2D 3x3 stride 2 -> Mul by a second input [1,1,1,16]."""
    g = tinyinfer.GraphBuilder("conv_mul")
    x = g.input("x", (1, 9, 10, 8))
    s = g.input("s", (1, 1, 1, 16))
    c = g.op("Conv2D", x, g.const("w1", (rng.standard_normal((16, 3, 3, 8)) * 0.3).astype(np.float32)),
             g.const("b1", rng.standard_normal(16).astype(np.float32)), padding=1, activation=1)
    d = g.op("DepthwiseConv2D", c, g.const("w2", (rng.standard_normal((1, 3, 3, 16)) * 0.5).astype(np.float32)),
             g.const("b2", rng.standard_normal(16).astype(np.float32)), strides=(2, 2), padding=1)
    g.output(g.op("Mul", d, s))
    return g.to_bytes()


@pytest.mark.parametrize("requant", ["float32", "fixed"])
def test_int8_static_output_stage_follows_requantization(rng, tmp_path, requant):
    """Each int8 Conv2D, DepthwiseConv2D and Mul of a quantized model gives, bit for bit, the numpy reference
    of the output stage chosen (float32 by default, or TFLite's fixed point) on its own int8 inputs."""
    import reference_int8 as R8
    src = tmp_path / "f.tinf"
    src.write_bytes(_conv_mul_model(rng))
    calib = [[rng.standard_normal((1, 9, 10, 8)).astype(np.float32),
              rng.uniform(0.2, 2, (1, 1, 1, 16)).astype(np.float32)] for _ in range(8)]
    dst = tmp_path / "q.tinf"
    kw = {} if requant == "float32" else {"requantization": "fixed"}  # float32 is the default
    tinyinfer.quantize(str(src), dst, mode="int8-static", calib=calib, method="minmax", progress=False, **kw)
    t = read_tinf(dst.read_bytes())
    with tinyinfer.load(dst) as m:
        det, ops = m.tensors(), m.ops()
        byop = {o.op: o for o in ops}
        names = {k: [det[i].name for i in byop[k].inputs] + [det[byop[k].outputs[0]].name]
                 for k in ("Conv2D", "DepthwiseConv2D", "Mul")}
        want = sorted({n for k in names for n in names[k] if t[n]["value"] is None})
        xs = [rng.standard_normal((1, 9, 10, 8)).astype(np.float32),
              rng.uniform(0.2, 2, (1, 1, 1, 16)).astype(np.float32)]
        got = dict(zip(want, m.run(xs, outputs=want)))

    def val(n):
        return got[n] if n in got else t[n]["value"]

    def q(n):
        return (np.float32(t[n]["quant"][1][0]), int(t[n]["quant"][2][0]))

    x, w, b, y = names["Conv2D"]
    ref = R8.conv2d(val(x), q(x), val(w), t[w]["quant"][1], val(b), q(y), padding=1, activation=1, requant=requant)
    np.testing.assert_array_equal(got[y], ref)
    other = "fixed" if requant == "float32" else "float32"
    assert np.abs(ref.astype(int) - R8.conv2d(val(x), q(x), val(w), t[w]["quant"][1], val(b), q(y), padding=1,
                                              activation=1, requant=other)).max() <= 1
    x, w, b, y = names["DepthwiseConv2D"]
    ref = R8.depthwise_conv2d(val(x), q(x), val(w), t[w]["quant"][1], val(b), q(y), strides=(2, 2), padding=1,
                              requant=requant)
    np.testing.assert_array_equal(got[y], ref)
    a, s, y = names["Mul"]
    np.testing.assert_array_equal(got[y], R8.mul(val(a), q(a), val(s), q(s), q(y), requant=requant))


def test_requantization_is_checked():
    with pytest.raises(tinyinfer.InvalidArgumentError, match="requantization"):
        tinyinfer.quantize(b"x", mode="int8-static", calib=[np.zeros(1, np.float32)], requantization="double")
