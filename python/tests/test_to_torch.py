"""tinyinfer.to_torch: a .tinf graph as a trainable torch module, compared with the runtime (the peer), the
round trip .tinf -> torch -> from_torch -> .tinf, keep_zeros, and the refusals."""

import os

import numpy as np
import pytest

import tinyinfer
from tinyinfer import GraphBuilder, Model

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench", "models")


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def cnn_graph(rng) -> bytes:
    """Most of the converters' op set in one NHWC graph: grouped, strided, dilated, SAME / EXPLICIT padded
    convolutions, depthwise with a multiplier, a transposed convolution, BatchNorm, both pools with padding,
    Concat, Transpose, Reshape, LayerNorm, MatMul, FullyConnected, elementwise ops and Softmax."""
    g = GraphBuilder("cnn")
    x = g.input("x", (1, 9, 9, 4))
    a = g.op("Conv2D", x, g.const("w1", _w(rng, 6, 3, 3, 2)), g.const("b1", _w(rng, 6)), strides=[2, 2],
             padding=1, groups=2, activation=2)                                    # [1,5,5,6]
    b = g.op("Conv2D", a, g.const("w2", _w(rng, 6, 2, 2, 6)), None, dilations=[2, 2], padding=2,
             pads=[0, 1, 1, 0])                                                    # [1,4,4,6]
    d = g.op("DepthwiseConv2D", b, g.const("wd", _w(rng, 1, 3, 3, 12)), g.const("bd", _w(rng, 12)),
             padding=1, depth_multiplier=2)                                        # [1,4,4,12]
    bn = g.op("BatchNorm", d, g.const("s", _w(rng, 12) + 1), g.const("o", _w(rng, 12)),
              g.const("mu", _w(rng, 12)), g.const("var", np.abs(_w(rng, 12)) + 0.5), epsilon=1e-3)
    h = g.op("HardSwish", bn)
    mp = g.op("MaxPool2D", h, filter=[3, 3], strides=[2, 2], padding=1)           # [1,2,2,12]
    ap = g.op("AveragePool2D", h, filter=[3, 3], strides=[2, 2], padding=1)       # [1,2,2,12]
    tc = g.op("TransposeConv2D", mp, g.const("wt", _w(rng, 5, 3, 3, 12)), g.const("bt", _w(rng, 5)),
              strides=[2, 2], padding=1)                                           # [1,4,4,5]
    tp = g.op("MaxPool2D", tc, filter=[2, 2], strides=[2, 2])                     # [1,2,2,5]
    cat = g.op("Concat", g.op("Sub", mp, ap), g.op("LeakyRelu", tp, alpha=0.1), axis=3)  # [1,2,2,17]
    t = g.op("Transpose", cat, perm=[0, 3, 1, 2])                                  # [1,17,2,2]
    r = g.op("Reshape", t, shape=[1, 17, 4])
    ln = g.op("LayerNorm", r, g.const("gamma", _w(rng, 17, 4) + 1), g.const("beta", _w(rng, 17, 4)), axis=1)
    mm = g.op("MatMul", ln, g.const("m", _w(rng, 4, 3)))                         # [1,17,3]
    flat = g.op("Reshape", g.op("Mul", mm, g.op("Logistic", mm)), shape=[1, 51])
    fc = g.op("FullyConnected", flat, g.const("wf", _w(rng, 10, 51)), g.const("bf", _w(rng, 10)))
    g.output(g.op("Softmax", fc))
    try:
        return g.to_bytes()
    finally:
        g.close()


def mlp_graph(rng) -> bytes:
    g = GraphBuilder("mlp")
    x = g.input("x", (1, 12))
    h = g.op("FullyConnected", x, g.const("w1", _w(rng, 16, 12)), g.const("b1", _w(rng, 16)), activation=1)
    g.output(g.op("FullyConnected", h, g.const("w2", _w(rng, 5, 16)), g.const("b2", _w(rng, 5))))
    try:
        return g.to_bytes()
    finally:
        g.close()


def misc_graph(rng) -> bytes:
    """The data-movement and reduction ops: Split, Slice, Pad, Gather, Squeeze, ExpandDims, ReduceMax,
    ReduceSum, MatMul with transpose_b, PRelu, Gelu, LogSoftmax, Maximum, Div."""
    g = GraphBuilder("misc")
    x = g.input("x", (1, 6, 8))
    a, b = g.op("Split", x, axis=2, sizes=[3, 5], outputs=2)                    # [1,6,3], [1,6,5]
    s = g.op("Slice", b, begin=[0, 1, 0], size=[-1, 4, -1])                      # [1,4,5]
    p = g.op("Pad", s, pads=[0, 0, 1, 1, 0, 0], value=0.5)                       # [1,6,5]
    gth = g.op("Gather", p, g.const("idx", np.array([4, 0, -1], np.int32)), axis=2)  # [1,6,3]
    m = g.op("Maximum", a, g.op("PRelu", gth, g.const("slope", _w(rng, 3))))
    mm = g.op("MatMul", m, g.const("k", _w(rng, 7, 3)), transpose_b=1)          # [1,6,7]
    e = g.op("ExpandDims", g.op("ReduceMax", mm, axes=[1]), axis=1)              # [1,1,7]; total [1,1,1]
    total = g.op("Squeeze", g.op("ExpandDims", g.op("ReduceSum", e, axes=[2], keep_dims=1), axis=3), axes=[3])
    sq = g.op("Div", g.op("Gelu", mm), total)
    g.output(g.op("LogSoftmax", sq, axis=-1))
    try:
        return g.to_bytes()
    finally:
        g.close()


def _runtime(data, x):
    with Model(data) as m:
        return np.concatenate([m.run(x[i:i + 1])[0] for i in range(len(x))])


@pytest.mark.parametrize("make", [mlp_graph, cnn_graph, misc_graph])
def test_module_matches_runtime_at_any_batch(make, rng):
    data = make(rng)
    net = tinyinfer.to_torch(data)
    with Model(data) as m:
        shape = m.inputs[0].shape
    x = rng.standard_normal((3,) + shape[1:]).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _runtime(data, x), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in net.parameters()) > 0


@pytest.mark.parametrize("make", [mlp_graph, cnn_graph])
def test_round_trip_through_from_torch_and_to_tinf(make, rng, tmp_path):
    data = make(rng)
    net = tinyinfer.to_torch(data)
    with Model(data) as m:
        x = rng.standard_normal(m.inputs[0].shape).astype(np.float32)
        want = m.run(x)[0]
    with tinyinfer.from_torch(net, torch.from_numpy(x)) as back:
        np.testing.assert_allclose(back.run(x)[0], want, rtol=1e-5, atol=1e-5)
    net.to_tinf(tmp_path / "same.tinf")
    with Model(str(tmp_path / "same.tinf")) as same:
        np.testing.assert_array_equal(same.run(x)[0], want)  # the same graph and weights: bitwise


@pytest.mark.parametrize("name", ["mlp.float32.tinf", "digits_cnn", "mobilenetv2.float32.tinf", "encoder.float32.tinf"])
def test_bench_models_round_trip(name, rng, tmp_path):
    if name == "digits_cnn":
        src = os.path.join(ROOT, "models", "digits_cnn.tflite")
        path = str(tmp_path / "cnn.tinf")
        tinyinfer.convert(src, path)
    else:
        path = os.path.join(BENCH, name)
        if not os.path.exists(path):
            pytest.skip(f"{path} absent (bench/make_models.py makes it)")
    net = tinyinfer.to_torch(path)
    with Model(path) as m:
        x = rng.standard_normal(m.inputs[0].shape).astype(np.float32)
        want = m.run(x)[0]
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), want, rtol=1e-4, atol=1e-5)
    with tinyinfer.from_torch(net, torch.from_numpy(x)) as back:
        np.testing.assert_allclose(back.run(x)[0], want, rtol=1e-5, atol=1e-5)


def test_keep_zeros_holds_pruned_weights_at_zero(rng, tmp_path):
    data = mlp_graph(rng)
    pruned = tinyinfer.prune(data, method="magnitude", sparsity=0.8).data
    before = {k: v.copy() for k, v in tinyinfer.to_torch(pruned).weights().items()}
    zero = {k: v == 0 for k, v in before.items()}
    assert zero["w1"].mean() > 0.5
    net = tinyinfer.to_torch(pruned, keep_zeros=True)
    opt = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=0.1)
    x = torch.from_numpy(rng.standard_normal((32, 12)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 5, 32))
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = net.weights()
    for k in ("w1", "w2"):
        assert (after[k][zero[k]] == 0).all()
        assert not np.allclose(after[k][~zero[k]], before[k][~zero[k]])  # the kept weights trained
    out = net.to_tinf(tmp_path / "tuned.tinf")
    xs = x.numpy()[:4]
    with torch.no_grad():
        want = net(torch.from_numpy(xs)).numpy()
    np.testing.assert_allclose(_runtime(out, xs), want, rtol=1e-5, atol=1e-5)
    # without keep_zeros the zeros move
    free = tinyinfer.to_torch(pruned)
    opt = torch.optim.Adam(free.parameters(), lr=0.05)
    loss = torch.nn.functional.cross_entropy(free(x), y)
    loss.backward()
    opt.step()
    assert (free.weights()["w1"][zero["w1"]] != 0).any()


def test_trainable_false_gives_buffers(rng):
    net = tinyinfer.to_torch(mlp_graph(rng), trainable=False)
    assert list(net.parameters()) == []


def test_fp16_weights_fold_and_write_back(rng, tmp_path):
    data = mlp_graph(rng)
    tinyinfer.quantize(data, str(tmp_path / "h.tinf"), mode="fp16")
    net = tinyinfer.to_torch(str(tmp_path / "h.tinf"))
    x = rng.standard_normal((2, 12)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), _runtime(str(tmp_path / "h.tinf"), x),
                                   rtol=1e-4, atol=1e-5)
    back = net.to_tinf()
    with Model(back) as m, Model(str(tmp_path / "h.tinf")) as h:
        assert m.sizes["data"] == h.sizes["data"]  # written as float16 again
        np.testing.assert_array_equal(m.run(x[:1])[0], h.run(x[:1])[0])


def test_unsupported_op_is_named(rng):
    g = GraphBuilder("r")
    x = g.input("x", (1, 4, 4, 2))
    g.output(*g.op("ResizeNearest", x, size=[8, 8], outputs=["up"]))
    data = g.to_bytes()
    g.close()
    with pytest.raises(tinyinfer.UnsupportedOpError, match="ResizeNearest.*'up'"):
        tinyinfer.to_torch(data)


def test_quantized_graph_is_refused(rng, tmp_path):
    data = mlp_graph(rng)
    tinyinfer.quantize(data, str(tmp_path / "q.tinf"), mode="int8-static",
                       calib=[rng.standard_normal((1, 12)).astype(np.float32) for _ in range(4)], progress=False)
    with pytest.raises(tinyinfer.UnsupportedOpError, match="(?i)quantiz|float"):
        tinyinfer.to_torch(str(tmp_path / "q.tinf"))


def test_bad_source():
    with pytest.raises(tinyinfer.InvalidArgumentError):
        tinyinfer.to_torch(3)
    with pytest.raises(tinyinfer.TinyInferError):
        tinyinfer.to_torch("absent.onnx")
