"""Accuracy of the vectorized elementwise math (Tanh, Logistic, Exp, Log,
Erf, Gelu, Softmax) against float64 over dense sweeps: the bounds of
docs/ops.md ("Accuracy of the elementwise math"). scripts/test.sh runs this
file at each forced CPU level too (TINYINFER_ISA)."""

import math

import numpy as np
import pytest

import reference as R
from conftest import run_op

N = 1 << 18


def sweep(lo, hi):
    return np.linspace(lo, hi, N, dtype=np.float32)


def ulps(y, ref):
    """|y - ref| in units in the last place of the float32-rounded reference."""
    u = np.spacing(np.abs(ref.astype(np.float32))).astype(np.float64)
    return np.abs(y.astype(np.float64) - ref) / u


# op, attributes, inputs, float64 reference, bound in ulp
ULP_BOUNDS = [
    ("Tanh", {}, sweep(-12, 12), np.tanh, 2.0),
    ("Tanh", {}, sweep(-0.7, 0.7), np.tanh, 2.0),  # both sides of the polynomial's limit 0.625
    ("Logistic", {}, sweep(-20, 20), lambda v: 1 / (1 + np.exp(-v)), 3.0),
    ("Exp", {}, sweep(-87, 88), np.exp, 1.5),
    ("Log", {}, np.exp(np.linspace(-87, 88, N)).astype(np.float32), np.log, 1.0),
    ("Log", {}, sweep(0.5, 2), np.log, 1.0),
    ("Erf", {}, sweep(-5, 5), R._erf, 3.0),
    ("Erf", {}, sweep(-1e-3, 1e-3), R._erf, 3.0),
]


@pytest.mark.parametrize("op,attrs,x,ref,bound", ULP_BOUNDS, ids=[f"{c[0]}-{i}" for i, c in enumerate(ULP_BOUNDS)])
def test_ulp_bound(op, attrs, x, ref, bound):
    (y,) = run_op(op, [x], **attrs)
    err = ulps(y, ref(x.astype(np.float64)))
    assert err.max() <= bound, (op, float(err.max()), float(x[err.argmax()]))


@pytest.mark.parametrize("approximate,bound", [(0, 3e-7), (1, 2e-7)])
def test_gelu_error_bound(approximate, bound):
    """GELU crosses zero (x(1 + erf) cancels for negative x): the bound is absolute, scaled by max(1, |x|)."""
    x = sweep(-10, 10)
    (y,) = run_op("Gelu", [x], approximate=approximate)
    v = x.astype(np.float64)
    if approximate:
        ref = 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
    else:
        ref = 0.5 * v * (1 + R._erf(v / math.sqrt(2)))
    err = np.abs(y - ref) / np.maximum(1, np.abs(v))
    assert err.max() <= bound, float(err.max())


def test_softmax_relative_bound(rng):
    """Relative error within (5 + |x - max|) * 1.2e-7: the row sum and 1 / sum round, and float32's
    rounding of x - max is carried by exp."""
    x = (rng.standard_normal((64, 1000)) * 5).astype(np.float32)
    (y,) = run_op("Softmax", [x])
    v = x.astype(np.float64)
    e = np.exp(v - v.max(-1, keepdims=True))
    want = e / e.sum(-1, keepdims=True)
    bound = (5 + np.abs(v - v.max(-1, keepdims=True))) * 1.2e-7
    assert (np.abs(y - want) / want <= bound).all()


@pytest.mark.parametrize("op", ["Tanh", "Log", "Erf", "Gelu"])
def test_special_values(op):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, 100.0, -100.0], np.float32)
    (y,) = run_op(op, [x])
    want = {"Tanh": R.tanh, "Log": R.log, "Erf": R.erf, "Gelu": R.gelu}[op](x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(y[ok], want[ok], rtol=2e-7, atol=1e-45)


@pytest.mark.parametrize("n", [1, 3, 17, 1000])
def test_erf_op_against_reference(rng, n):
    x = (rng.standard_normal(n) * 2).astype(np.float32)
    (y,) = run_op("Erf", [x])
    np.testing.assert_allclose(y, R.erf(x), rtol=3e-7, atol=1.5e-7)
