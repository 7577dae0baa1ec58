"""TFLite models with sparse tensors (the schema's `sparsity`, DENSIFY) stay
sparse: the converter densifies them (checked against the TFLite
interpreter) and marks them for the .tinf sparse encoding, which the writer
then uses whenever it is smaller than dense; the sparse kernels take them
at load where they pay. Also the builder's mark itself (store_sparse)."""

import numpy as np
import pytest

import tinyinfer
from tinyinfer.prune import sparse_ops, tensor_storage


def sparse_tflite(tf, rng, conv_zeros: float, fc_zeros: float) -> bytes:
    """A Keras 1x1 Conv2D (64 -> 96 on 8x8) and Dense (6144 -> 40) with
    random zeros, converted with TFLite's EXPERIMENTAL_SPARSITY (sparse
    constants behind DENSIFY ops)."""
    inp = tf.keras.Input((8, 8, 64), batch_size=1)
    conv = tf.keras.layers.Conv2D(96, 1)
    fc = tf.keras.layers.Dense(40)
    model = tf.keras.Model(inp, fc(tf.keras.layers.Flatten()(conv(inp))))
    for layer, zeros in ((conv, conv_zeros), (fc, fc_zeros)):
        k, b = layer.get_weights()
        k[rng.random(k.shape) < zeros] = 0
        layer.set_weights([k, b])
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return c.convert()


def test_sparse_tflite_constants_stay_sparse_and_run_on_the_sparse_kernel(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    # The Dense weights at 45% zeros: the sparse encoding does not halve them
    # (unmarked, they would be stored dense) but is smaller.
    src = tmp_path / "sparse.tflite"
    src.write_bytes(sparse_tflite(tf, rng, conv_zeros=0.85, fc_zeros=0.45))
    dst = tmp_path / "m.tinf"
    report = tinyinfer.convert(str(src), dst, verbose=False)
    assert report.ops_in["DENSIFY"] == 2
    interp = tf.lite.Interpreter(model_path=str(src))
    interp.allocate_tensors()
    x = rng.standard_normal((1, 8, 8, 64)).astype(np.float32)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    ref = interp.get_tensor(interp.get_output_details()[0]["index"])
    with tinyinfer.load(str(dst)) as m:
        weights = {t.index: t for t in m.tensors() if t.shape in ((96, 1, 1, 64), (40, 6144))}
        assert len(weights) == 2
        for i, t in weights.items():
            stored_sparse, nbytes, zeros = tensor_storage(m, i)
            assert stored_sparse, t.name
            assert nbytes < 4 * int(np.prod(t.shape)), (t.name, nbytes)
        assert zeros > 0.4
        # The 85% sparse 1x1 convolution (64 rows) runs on the sparse kernel.
        conv = [op.index for op in m.ops() if op.op == "Conv2D"]
        assert set(conv) <= sparse_ops(m), m.passes
        np.testing.assert_allclose(m.run(x)[0], ref, rtol=1e-4, atol=1e-4)


def test_store_sparse_mark_of_the_builder(rng):
    w = rng.standard_normal((40, 20)).astype(np.float32)     # 3,200 bytes: under the 4 KiB minimum too
    w[rng.random(w.shape) < 0.45] = 0                         # the encoding is ~0.6x: not halved

    def build(mark):
        g = tinyinfer.GraphBuilder("m")
        x = g.input("x", (2, 20))
        c = g.const("w", w)
        if mark:
            g.store_sparse(c)
        g.output(g.op("FullyConnected", x, c, None))
        return g.to_bytes()

    x = rng.standard_normal((2, 20)).astype(np.float32)
    for mark in (False, True):
        data = build(mark)
        with tinyinfer.load(data) as m:
            wi = [t.index for t in m.tensors() if t.name == "w"][0]
            stored_sparse, nbytes, _ = tensor_storage(m, wi)
            assert stored_sparse == mark
            assert (nbytes < w.nbytes) if mark else nbytes == w.nbytes
            np.testing.assert_allclose(m.run(x)[0], x.astype(np.float64) @ w.T, rtol=1e-5, atol=1e-5)
    g = tinyinfer.GraphBuilder("bad")
    x = g.input("x", (2, 20))
    with pytest.raises(tinyinfer.InvalidArgumentError, match="not a constant"):
        g.store_sparse(x)
