"""The arena timeline (tinyinfer.memory, inspect --memory): the planner's
offsets and lifetimes as tinf_session_plan_entry reports them, checked
against lifetimes worked out by hand from the op list and against the
planner's invariants (no two live buffers overlap)."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer import memory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def branchy(tmp_path):
    """x -> t1 = Logistic(x) -> t2 = FC(t1) -> t3 = Tanh(t2) -> t4 = FC(t3) -> t5 = Add(t4, t1)."""
    rng = np.random.default_rng(0)
    b = tinyinfer.GraphBuilder("branchy")
    x = b.input("x", (1, 16))
    t1 = b.op("Logistic", x, name="t1")
    t2 = b.op("FullyConnected", t1, b.const("w1", rng.standard_normal((32, 16)).astype(np.float32)), name="t2")
    t3 = b.op("Tanh", t2, name="t3")
    t4 = b.op("FullyConnected", t3, b.const("w2", rng.standard_normal((16, 32)).astype(np.float32)), name="t4")
    t5 = b.op("Add", t4, t1, name="t5")
    b.output(t5)
    path = str(tmp_path / "branchy.tinf")
    b.save(path)
    return path


def check_invariants(tl):
    for t in tl.tensors:
        assert t.offset % 64 == 0 and t.offset + t.buffer_bytes <= tl.arena_bytes
        assert t.buffer_bytes >= t.nbytes and t.buffer_bytes % 64 == 0
    for i, a in enumerate(tl.tensors):
        for b in tl.tensors[i + 1:]:
            if a.buffer == b.buffer:
                assert a.offset == b.offset
                continue
            if a.first_op <= b.last_op and b.first_op <= a.last_op:
                assert a.offset + a.buffer_bytes <= b.offset or b.offset + b.buffer_bytes <= a.offset, (a, b)
    assert int(tl.live_bytes.max()) <= tl.arena_bytes <= tl.unplanned_bytes


def test_timeline_of_a_small_graph_against_lifetimes_by_hand(tmp_path):
    path = branchy(tmp_path)
    with tinyinfer.load(path, optimize=False) as m:
        tl = memory.arena_timeline(m)
    by = {t.name: t for t in tl.tensors}
    assert set(by) == {"x", "t1", "t2", "t3", "t4", "t5"}
    life = {n: (by[n].first_op, by[n].last_op) for n in by}
    # 5 ops, 0..4; the graph input lives throughout, t1 until the Add reads it, the output to the end.
    assert life == {"x": (0, 4), "t1": (0, 4), "t2": (1, 2), "t3": (2, 3), "t4": (3, 4), "t5": (4, 4)}
    assert [by[n].nbytes for n in ("x", "t1", "t2", "t3", "t4", "t5")] == [64, 64, 128, 128, 64, 64]
    # Tanh and Add run in place: t3 takes t2's buffer, t5 takes t4's.
    assert by["t3"].buffer == by["t2"].buffer and by["t5"].buffer == by["t4"].buffer
    assert len({by[n].buffer for n in ("x", "t1", "t2", "t4")}) == 4
    # bytes alive per op: op0 x+t1, op1 +t2, op2 (t3 in t2's buffer), op3 +t4, op4 t2/t3 gone, t5 in t4's buffer
    assert tl.live_bytes.tolist() == [128, 256, 256, 320, 192]
    assert tl.peak_op == 3 and tl.peak_bytes == 320
    assert [t.name for t in tl.alive(3)][0] in ("t2", "t3")
    # the peak by producing op: t3 (op 2 wrote it in t2's buffer), x (a graph input), t1 (op 0), t4 (op 3)
    assert dict(tl.peak_by_op()) == {2: 128, -1: 64, 0: 64, 3: 64}
    check_invariants(tl)
    text = str(tl)
    assert "peak alive 320 B at op 3 (FullyConnected)" in text
    d = tl.to_dict()
    assert d["live_bytes"] == [128, 256, 256, 320, 192] and len(d["tensors"]) == 6


def test_timeline_of_a_session_with_another_batch(tmp_path):
    path = branchy(tmp_path)
    with tinyinfer.load(path, optimize=False) as m:
        s = m.session(input_shapes=[(4, 16)])
        tl = memory.arena_timeline(s)
        s.close()
        with pytest.raises(tinyinfer.InvalidStateError):
            memory.arena_timeline(s)
    # every tensor 4 times as large (all multiples of 64 bytes already)
    assert tl.live_bytes.tolist() == [512, 1024, 1024, 1280, 768]
    check_invariants(tl)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "bench", "models", "*.tinf")))[:6] or
                         [pytest.param(None, marks=pytest.mark.skip(reason="no bench models (bench/make_models.py)"))])
def test_timeline_invariants_on_the_bench_models(path):
    with tinyinfer.load(path) as m:
        tl = memory.arena_timeline(m)
        ops = m.ops()
    check_invariants(tl)
    # every intermediate tensor lives from the op that writes it to the last op that reads it
    for t in tl.tensors:
        if t.role == "intermediate":
            readers = [o.index for o in ops if t.index in o.inputs]
            assert t.first_op == t.producer
            assert t.last_op == max(readers + [t.producer])


def test_inspect_memory_command(tmp_path):
    path = branchy(tmp_path)
    out = tmp_path / "m.json"
    r = subprocess.run([sys.executable, "-m", "tinyinfer", "inspect", "--memory", "--no-optimize", path,
                        "--json", str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")})
    assert r.returncode == 0, r.stderr
    assert "peak alive 320 B at op 3" in r.stdout and "by producing op:" in r.stdout
    import json
    doc = json.load(open(out))
    assert doc["kind"] == "inspect-memory" and doc["results"]["timeline"]["peak_bytes"] == 320
