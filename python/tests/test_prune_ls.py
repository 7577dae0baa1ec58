"""Wanda's least-squares correction (tinyinfer.prune(..., ls_correction=True),
--ls-correction): the kept weights against a numpy ridge least-squares
reference (solved as an augmented lstsq, not by the normal equations the
code uses), the same zeros as plain Wanda, and a smaller output error on
the calibration data (the --ls-correction option: test_prune.test_command_line)."""

import numpy as np
import pytest

import tinyinfer
from test_prune import convnet, mlp, pruned_weights

RIDGE = 1e-2   # the documented default (docs/pruning.md)


def ridge_reference(x, w_dense, mask):
    """min ||x w - x_S v||^2 + lam ||v||^2 per row, lam = RIDGE * mean(diag(x^T x)),
    as the least-squares solution of [x_S; sqrt(lam) I] v = [x w; 0]."""
    x = x.astype(np.float64)
    lam = RIDGE * float((x ** 2).sum(0).mean())
    out = np.zeros_like(w_dense, dtype=np.float64)
    for r in range(w_dense.shape[0]):
        keep = np.flatnonzero(mask[r])
        a = np.vstack([x[:, keep], np.sqrt(lam) * np.eye(keep.size)])
        b = np.concatenate([x @ w_dense[r].astype(np.float64), np.zeros(keep.size)])
        out[r, keep] = np.linalg.lstsq(a, b, rcond=None)[0]
    return out


def outputs(data, x):
    with tinyinfer.load(data, sparse=False) as m:
        return np.concatenate([m.run(x[i:i + 1])[0] for i in range(len(x))])


def rel_error(y, ref):
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def test_kept_weights_are_the_ridge_least_squares_fit(rng):
    data, ws = mlp(rng, dims=(40, 24, 8))
    calib = (rng.standard_normal((64, 40)) * np.linspace(0.2, 2, 40)).astype(np.float32)
    plain = pruned_weights(tinyinfer.prune(data, method="wanda", sparsity=0.6, calib=calib).data)
    r = tinyinfer.prune(data, method="wanda", sparsity=0.6, calib=calib, ls_correction=True)
    got = pruned_weights(r.data)
    assert "least-squares correction" in str(r) and "2 of 2 layers" in str(r)
    for p, g in zip(plain, got):          # the same zeros, other kept values
        np.testing.assert_array_equal(p == 0, g == 0)
    assert not np.array_equal(plain[0], got[0])
    # Layer 0 reads the graph input: its activations are the calibration data.
    expect = ridge_reference(calib, ws[0], plain[0] != 0)
    np.testing.assert_allclose(got[0], expect, rtol=2e-4, atol=2e-5)


def test_correction_reduces_the_output_error_on_the_calibration_data(rng):
    data, _ = mlp(rng, dims=(64, 48, 32, 10))
    # Correlated inputs (as real activations are): 16 factors mixed into 64 channels, plus noise.
    calib = (rng.standard_normal((96, 16)) @ rng.standard_normal((16, 64))
             + 0.1 * rng.standard_normal((96, 64))).astype(np.float32)
    dense = outputs(data, calib)
    errs = {}
    for ls in (False, True):
        r = tinyinfer.prune(data, method="wanda", sparsity=0.7, calib=calib, ls_correction=ls)
        errs[ls] = rel_error(outputs(r.data, calib), dense)
    assert errs[True] < 0.7 * errs[False], errs


def test_correction_of_a_padded_3x3_convolution(rng):
    data, ws = convnet(rng)                # 3x3 SAME (8 -> 16), then 1x1 (16 -> 12)
    calib = (rng.standard_normal((48, 6, 6, 3)) @ rng.standard_normal((3, 8))
             + 0.1 * rng.standard_normal((48, 6, 6, 8))).astype(np.float32)
    dense = outputs(data, calib)
    plain = tinyinfer.prune(data, method="wanda", sparsity=0.6, calib=calib)
    ls = tinyinfer.prune(data, method="wanda", sparsity=0.6, calib=calib, ls_correction=True)
    e_ls, e_plain = rel_error(outputs(ls.data, calib), dense), rel_error(outputs(plain.data, calib), dense)
    assert e_ls < 0.8 * e_plain, (e_ls, e_plain)
    # The 3x3 layer against the reference on its input patches (zero padded, written here with loops).
    xp = np.pad(calib.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.array([xp[n, i:i + 3, j:j + 3, :].ravel() for n in range(48) for i in range(6) for j in range(6)])
    mask = pruned_weights(plain.data)[0] != 0
    expect = ridge_reference(patches, ws[0].reshape(16, -1), mask)
    np.testing.assert_allclose(pruned_weights(ls.data)[0], expect, rtol=2e-4, atol=2e-5)


def test_only_for_wanda(rng):
    data, _ = mlp(rng)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="ls_correction"):
        tinyinfer.prune(data, method="magnitude", sparsity=0.5, ls_correction=True)
