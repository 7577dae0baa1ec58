"""Converter gaps found by the real-model suite (bench/real_models.py):

- TFLite DENSIFY (sparse constant weights): the sparsity format decoded by
  tinyinfer.convert.tflite_sparse, checked against dense arrays encoded here
  independently (CSR and block-CSR, permuted traversal orders), and the
  mediapipe sparse models against LiteRT when they are on disk;
- ONNX ConstantOfShape and Clip with computed bounds, against onnxruntime;
- the TFLite custom op Convolution2DTransposeBias, against a numpy reference;
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
