"""The int8 GEMM at a batch of one (ti_q8_kernels.gemv) in the hybrid
int8-dynamic FullyConnected: its int32 sums are exact and the float ends
(row quantization, output stage) are C kernels without contraction, so every
CPU level (TINYINFER_ISA, each in its own process) gives the same output
bytes, and they are the bytes the many-row kernel (gemm_rows) gives for the
same row inside a batch of three. Shapes cover a depth that is not a
multiple of four, fewer than 16 and not a multiple of 16 outputs, many
panels, a deep row, and the column split between two threads (panels from
the middle of the weights). The integer FullyConnected's batch of one is
checked bit for bit against the numpy reference of TFLite's arithmetic at
each level by test_ops_int8.py (test_fully_connected_packed_gemm_shapes;
scripts/test.sh runs it at every forced level)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)

# (k, n): depth and output channels of one FullyConnected.
SHAPES = [(784, 512), (37, 5), (130, 70), (256, 10), (8000, 33), (64, 1000)]


def fc_graph(k, n, batch, seed):
    rng = np.random.default_rng(seed)
    g = tinyinfer.GraphBuilder("fc")
    x = g.input("x", (batch, k))
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    g.output(g.op("FullyConnected", x, g.const("w", w), g.const("b", b), activation=1))
    return g.to_bytes()


def inputs(k, seed):
    rng = np.random.default_rng(seed + 100)
    x = (rng.standard_normal((3, k)) * 3 + 0.5).astype(np.float32)
    x[1, : min(k, 9)] = 0
    return x


def model(k, n, seed):
    """The int8-dynamic model, made for a batch of three (run at one too: a
    session of that shape)."""
    return tinyinfer.quantize(fc_graph(k, n, 3, seed), mode="int8-dynamic").data


LEVEL_SCRIPT = r"""
import sys, numpy as np, tinyinfer
sys.path.insert(0, sys.argv[1])
import test_gemv_levels as t
res = {}
for seed, (k, n) in enumerate(t.SHAPES):
    data = t.model(k, n, seed)
    x = t.inputs(k, seed)
    for threads in (1, 2):
        with tinyinfer.Model(data, threads=threads) as m:
            rows = [m.run(x[i:i + 1])[0] for i in range(3)]
        res[f"{k}x{n} t{threads}"] = np.concatenate(rows)
    with tinyinfer.Model(data, threads=1) as m:
        res[f"{k}x{n} batch3"] = m.run(x)[0]
np.savez(sys.argv[2], **res)
print(tinyinfer.info()["isa"])
"""


def run_level(level, path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PKG, HERE]))
    env.pop("TINYINFER_ISA", None)
    if level is not None:
        env["TINYINFER_ISA"] = level
    r = subprocess.run([sys.executable, "-c", LEVEL_SCRIPT, HERE, path], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), dict(np.load(path))


def test_every_level_gives_the_same_bytes_as_the_many_row_kernel(tmp_path):
    levels = {}
    for level in ("baseline", "avx2", "avx512", "dotprod", None):
        isa, res = run_level(level, str(tmp_path / f"{level}.npz"))
        levels.setdefault(isa, res)  # a level the CPU lacks runs the highest it has
    assert len(levels) >= 2, f"only {list(levels)} on this CPU"
    first_isa, first = next(iter(levels.items()))
    for key, y in first.items():
        assert np.isfinite(y).all() and np.abs(y).max() > 0, key
        if key.endswith("batch3"):
            continue
        # gemv (batch 1, one and two threads) and gemm_rows (batch 3): the same bytes.
        np.testing.assert_array_equal(y, first[key.rsplit(" ", 1)[0] + " batch3"], err_msg=key)
    for isa, res in levels.items():
        assert res.keys() == first.keys()
        for key in first:
            np.testing.assert_array_equal(res[key], first[key], err_msg=f"{isa} vs {first_isa}: {key}")


def test_hybrid_batch_of_one_matches_numpy():
    """The level this CPU runs, against the documented math in numpy (per row
    uint8 quantization, exact integer sums in int64)."""
    from test_quantize import hybrid_reference, read_tinf
    for seed, (k, n) in enumerate(SHAPES):
        data = model(k, n, seed)
        t = read_tinf(data)
        wq, (_, scales, _) = t["w"]["value"], t["w"]["quant"]
        x = inputs(k, seed)
        bias = t["b"]["value"]
        ref = hybrid_reference(x, wq, scales, bias, relu=True)
        with tinyinfer.Model(data) as m:
            y = np.concatenate([m.run(x[i:i + 1])[0] for i in range(3)])
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(), err_msg=f"{k}x{n}")
