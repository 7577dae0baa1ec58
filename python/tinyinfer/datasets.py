"""Small real data for demos and tests: scikit-learn's bundled digits."""

from __future__ import annotations

import numpy as np


def _resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize of a 2-D array (numpy only)."""
    h, w = img.shape
    ys = (np.arange(size) + 0.5) * h / size - 0.5
    xs = (np.arange(size) + 0.5) * w / size - 0.5
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
    y1 = np.clip(y0 + 1, 0, h - 1)
    x1 = np.clip(x0 + 1, 0, w - 1)
    wy = np.clip(ys - y0, 0, 1)[:, None]
    wx = np.clip(xs - x0, 0, 1)[None, :]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def load_digits_28x28():
    """(images float32 [1797, 28, 28] in [0, 1], labels int64 [1797]) from
    sklearn.datasets.load_digits, each 8x8 image upscaled bilinearly."""
    from sklearn.datasets import load_digits
    d = load_digits()
    imgs = d.images.astype(np.float64) / 16.0
    out = np.stack([_resize_bilinear(im, 28) for im in imgs]).astype(np.float32)
    return out, d.target.astype(np.int64)
