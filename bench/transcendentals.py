"""Elementwise math figures: ns per element of each transcendental op's
kernel (the op's own time from the session profiler, one thread, 1M float32
elements, in place where the planner allows) next to numpy's float32 function
on the same array, and the largest error measured against float64 over a
dense sweep (ulp of the float32-rounded reference, or absolute where the
result crosses zero; docs/ops.md has the bounds the tests check).

    python bench/transcendentals.py                  # the CPU's level
    TINYINFER_ISA=baseline python bench/transcendentals.py
"""

import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import tinyinfer  # noqa: E402

N = 1 << 20
_erf = np.vectorize(math.erf, otypes=[np.float64])
C = math.sqrt(2 / math.pi)

# op, attributes, sweep, float64 reference, numpy float32 peer
OPS = [
    ("Tanh", {}, (-12, 12), np.tanh, np.tanh),
    ("Logistic", {}, (-20, 20), lambda v: 1 / (1 + np.exp(-v)), lambda v: 1 / (1 + np.exp(-v))),
    ("Exp", {}, (-87, 88), np.exp, np.exp),
    ("Log", {}, "log", np.log, np.log),
    ("Erf", {}, (-5, 5), _erf, None),
    ("Gelu", {}, (-10, 10), lambda v: 0.5 * v * (1 + _erf(v / math.sqrt(2))), None),
    ("Gelu", {"approximate": 1}, (-10, 10), lambda v: 0.5 * v * (1 + np.tanh(C * (v + 0.044715 * v ** 3))),
     lambda v: 0.5 * v * (1 + np.tanh(np.float32(C) * (v + np.float32(0.044715) * v * v * v)))),
    ("Softmax", {}, (-10, 10), None, lambda v: np.exp(v - v.max(-1, keepdims=True)) /
     np.exp(v - v.max(-1, keepdims=True)).sum(-1, keepdims=True)),
]


def sweep(rng_spec):
    if rng_spec == "log":
        return np.exp(np.linspace(-87, 88, N)).astype(np.float32)
    return np.linspace(*rng_spec, N, dtype=np.float32)


def errors(y, ref, x):
    """(max ulp, max |error| / max(1, |x|))."""
    r32 = ref.astype(np.float32)
    d = np.abs(y.astype(np.float64) - ref)
    return float((d / np.spacing(np.abs(r32)).astype(np.float64)).max()), float((d / np.maximum(1, np.abs(x))).max())


def numpy_ns(f, x, runs=5):
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f(x)
        t.append(time.perf_counter() - t0)
    return min(t) / x.size * 1e9


def main():
    print(f"tinyinfer {tinyinfer.__version__}, CPU level {tinyinfer.info()['isa']}, one thread, {N} elements")
    print(f"{'op':<18} {'ns/elt':>7} {'numpy':>7}  {'max ulp':>8} {'max abs/max(1,|x|)':>19}")
    for op, attrs, rng_spec, ref, peer in OPS:
        x = sweep(rng_spec)
        shape = (1024, N // 1024)
        b = tinyinfer.GraphBuilder(op)
        b.output(b.op(op, b.input("x", shape), **attrs))
        with b.load(threads=1) as m:
            xs = x.reshape(shape)
            (y,) = m.run(xs)
            prof = m.profile(xs, runs=15)
        ns = sum(t for _, t in prof) / N * 1e9
        if ref is not None:
            ulp, rel = errors(y.reshape(-1), ref(x.astype(np.float64)), x)
            err = f"{ulp:8.2f} {rel:19.3g}"
        else:
            v = xs.astype(np.float64)
            e = np.exp(v - v.max(-1, keepdims=True))
            want = e / e.sum(-1, keepdims=True)
            err = f"{'':8} {'rel %.3g' % float((np.abs(y - want) / want).max()):>19}"
        np_ns = f"{numpy_ns(peer, xs):7.2f}" if peer is not None else f"{'-':>7}"
        name = op + ("(tanh)" if attrs else "")
        print(f"{name:<18} {ns:7.2f} {np_ns}  {err}")


if __name__ == "__main__":
    main()
