"""Trains the bundled demo models on scikit-learn's load_digits (1797 real
8x8 digit images, upscaled to 28x28) and writes them as float32 .tflite files,
the form users bring from TensorFlow:

    models/digits_mlp.tflite   784-256-128-10 MLP
    models/digits_cnn.tflite   28x28x1 CNN (2 conv + 2 pool + 2 dense)
    models/digits_split.npz    indices of the train / calibration / test split
    models/digits_{mlp,cnn}.{float16,dynamic,int8}.tflite
                               LiteRT's post-training quantizations of the same
                               trained models (float16 weights, dynamic-range
                               int8, full-integer int8 calibrated on the
                               calibration split), for the comparison in
                               docs/quantization.md

Needs tensorflow-cpu and scikit-learn (not needed at run time: the files are
committed). Deterministic given the same TensorFlow build.

    python scripts/train_digits.py
"""

import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models")


def digits_28x28():
    """load_digits upscaled to 28x28 in [0, 1] (bilinear, same as python/tinyinfer/datasets.py)."""
    import sys
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from tinyinfer.datasets import load_digits_28x28
    return load_digits_28x28()


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.keras.utils.set_random_seed(0)
    x, y = digits_28x28()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    test, calib, train = idx[:450], idx[450:650], idx[650:]
    os.makedirs(OUT, exist_ok=True)
    np.savez(os.path.join(OUT, "digits_split.npz"), train=train, calib=calib, test=test)

    mlp = tf.keras.Sequential([
        tf.keras.Input((784,), name="image"),
        tf.keras.layers.Dense(256, activation="relu"),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    cnn = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1), name="image"),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    for name, model, xs in [("mlp", mlp, x.reshape(-1, 784)), ("cnn", cnn, x.reshape(-1, 28, 28, 1))]:
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(xs[train], y[train], epochs=30 if name == "mlp" else 15, batch_size=32, verbose=0)
        _, acc = model.evaluate(xs[test], y[test], verbose=0)
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        data = conv.convert()
        path = os.path.join(OUT, f"digits_{name}.tflite")
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {len(data)} bytes, Keras test accuracy {acc:.4f}")
        for kind in ["float16", "dynamic", "int8"]:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if kind == "float16":
                conv.target_spec.supported_types = [tf.float16]
            elif kind == "int8":
                rep = xs[calib]

                def dataset(rep=rep):
                    for i in range(len(rep)):
                        yield [rep[i:i + 1]]
                conv.representative_dataset = dataset
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            q = conv.convert()
            qpath = os.path.join(OUT, f"digits_{name}.{kind}.tflite")
            with open(qpath, "wb") as f:
                f.write(q)
            print(f"{qpath}: {len(q)} bytes")


if __name__ == "__main__":
    main()
