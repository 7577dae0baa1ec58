"""Makes the benchmark models (not committed: run this first; needs
tensorflow-cpu, torch, onnx, onnxruntime, tf2onnx, scikit-learn, pillow):

  bench/models/mlp.*            the digits MLP 784-256-128-10 (models/digits_mlp.tflite, trained)
  bench/models/mobilenetv2.*    MobileNetV2 alpha 0.35, 128x128x3, 1000 classes, BatchNorm statistics
                                calibrated on real photos (scikit-learn's sample images)
  bench/models/encoder.*        a transformer encoder block (d_model 128, 4 heads, ff 256, 32 tokens)

For each: float32 .tflite and LiteRT's post-training quantizations (float16,
dynamic-range int8, full-integer int8 with a representative dataset), the
float32 ONNX and onnxruntime's quantize_dynamic and static QDQ versions, and
for the MLP and the encoder a torch state (float32, quantize_dynamic done at
run time).

    python bench/make_models.py
"""

import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "models")
sys.path.insert(0, os.path.join(ROOT, "python"))


def photo_crops(n=96, size=128, seed=0):
    """Random crops of scikit-learn's two sample photos, in [-1, 1] (MobileNet's range)."""
    from sklearn.datasets import load_sample_images
    rng = np.random.default_rng(seed)
    imgs = [im.astype(np.float32) / 127.5 - 1.0 for im in load_sample_images().images]
    out = []
    for i in range(n):
        im = imgs[i % len(imgs)]
        y = rng.integers(0, im.shape[0] - size)
        x = rng.integers(0, im.shape[1] - size)
        out.append(im[y:y + size, x:x + size])
    return np.stack(out)


def tflite_variants(tf, make_converter, rep_data, name):
    """float32, float16, dynamic-range and full-integer .tflite files."""
    paths = {}
    for kind in ["float32", "float16", "dynamic", "int8"]:
        conv = make_converter()
        if kind == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif kind == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif kind == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]

            def rep():
                for x in rep_data:
                    yield [x[None].astype(np.float32)]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        p = os.path.join(OUT, f"{name}.{kind}.tflite")
        with open(p, "wb") as f:
            f.write(conv.convert())
        paths[kind] = p
    return paths


def onnx_variants(onnx_path, rep_data, input_name):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static
    base = onnx_path[:-len(".float32.onnx")]
    quantize_dynamic(onnx_path, base + ".dynamic.onnx", weight_type=QuantType.QInt8)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(rep_data)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {input_name: x[None].astype(np.float32)}
    quantize_static(onnx_path, base + ".qdq.onnx", Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)


def tflite_to_onnx(tflite_path, onnx_path):
    import tf2onnx
    tf2onnx.convert.from_tflite(tflite_path, opset=17, output_path=onnx_path)
    import onnx
    return onnx.load(onnx_path).graph.input[0].name


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import torch
    tf.keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    only = sys.argv[1:]  # optional: model names to (re)make

    # -- MLP: the trained digits model -------------------------------------------------------
    if not only or "mlp" in only:
        _make_mlp(tf)
    if not only or "mobilenetv2" in only:
        _make_mobilenet(tf)
    if not only or "encoder" in only:
        _make_encoder(torch)
    for f in sorted(os.listdir(OUT)):
        print(f"{f}: {os.path.getsize(os.path.join(OUT, f))} bytes")


def _make_mlp(tf):
    from tinyinfer.datasets import load_digits_28x28
    x, _ = load_digits_28x28()
    digits = x.reshape(-1, 784)[:200]
    shutil.copy(os.path.join(ROOT, "models", "digits_mlp.tflite"), os.path.join(OUT, "mlp.float32.tflite"))
    keras_mlp = _keras_mlp_from_tflite(tf, os.path.join(OUT, "mlp.float32.tflite"))
    tflite_variants(tf, lambda: tf.lite.TFLiteConverter.from_keras_model(keras_mlp), digits, "mlp")
    name = tflite_to_onnx(os.path.join(OUT, "mlp.float32.tflite"), os.path.join(OUT, "mlp.float32.onnx"))
    onnx_variants(os.path.join(OUT, "mlp.float32.onnx"), digits, name)
    _torch_mlp_state(keras_mlp, os.path.join(OUT, "mlp.torch.pt"))


def _make_mobilenet(tf):
    # -- MobileNetV2 0.35 @ 128 with calibrated BatchNorm ------------------------------------
    crops = photo_crops()
    mnet = tf.keras.applications.MobileNetV2(input_shape=(128, 128, 3), alpha=0.35, weights=None, classes=1000)
    _calibrate_batchnorm(tf, mnet, crops[:64])
    tflite_variants(tf, lambda: tf.lite.TFLiteConverter.from_keras_model(mnet), crops[64:], "mobilenetv2")
    name = tflite_to_onnx(os.path.join(OUT, "mobilenetv2.float32.tflite"), os.path.join(OUT, "mobilenetv2.float32.onnx"))
    onnx_variants(os.path.join(OUT, "mobilenetv2.float32.onnx"), crops[64:], name)


def _make_encoder(torch):
    # -- transformer encoder block (torch -> ONNX) -------------------------------------------
    sys.path.insert(0, HERE)
    from encoder_block import EncoderBlock
    enc = EncoderBlock().eval()
    tokens = torch.randn(1, 32, 128)
    torch.save(enc.state_dict(), os.path.join(OUT, "encoder.torch.pt"))
    # A dynamic batch axis, so that every runtime can run batch 32 from the same file.
    torch.onnx.export(enc, (tokens,), os.path.join(OUT, "encoder.float32.onnx"), opset_version=17,
                      input_names=["tokens"], output_names=["out"], dynamo=False,
                      dynamic_axes={"tokens": {0: "batch"}, "out": {0: "batch"}})
    reps = np.random.default_rng(0).standard_normal((32, 32, 128)).astype(np.float32)
    onnx_variants(os.path.join(OUT, "encoder.float32.onnx"), reps, "tokens")


def _keras_mlp_from_tflite(tf, path):
    """The digits MLP as a Keras model with the .tflite's weights (for the
    post-training quantization variants)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    consts = {}
    for d in it.get_tensor_details():
        try:
            v = it.get_tensor(d["index"])
        except ValueError:
            continue
        if v.ndim == 2 and v.shape[1] in (784, 256, 128) and v.shape[0] in (256, 128, 10):
            consts[v.shape] = v
        elif v.ndim == 1 and v.shape[0] in (256, 128, 10) and "bias" in d["name"].lower():
            consts[("b",) + v.shape] = v
    model = tf.keras.Sequential([tf.keras.Input((784,), name="image"), tf.keras.layers.Dense(256, activation="relu"),
                                 tf.keras.layers.Dense(128, activation="relu"),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    for layer, (o, i) in zip(model.layers, [(256, 784), (128, 256), (10, 128)]):
        b = consts.get(("b", o), np.zeros(o, np.float32))
        layer.set_weights([consts[(o, i)].T, b])
    return model


def _torch_mlp_state(keras_mlp, path):
    import torch
    sd = {}
    for k, layer in enumerate(keras_mlp.layers):
        w, b = layer.get_weights()
        sd[f"{2 * k}.weight"] = torch.from_numpy(np.ascontiguousarray(w.T))
        sd[f"{2 * k}.bias"] = torch.from_numpy(b)
    torch.save(sd, path)


def _calibrate_batchnorm(tf, model, images):
    """Sets each BatchNorm's moving statistics to those of its input on real
    images, layer by layer, so activations stay well scaled."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            sub = tf.keras.Model(model.inputs, layer.input)
            a = sub(images, training=False).numpy()
            axes = tuple(range(a.ndim - 1))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, a.mean(axis=axes), a.var(axis=axes)])


if __name__ == "__main__":
    main()
