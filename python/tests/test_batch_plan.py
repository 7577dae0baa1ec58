"""batch_plan: the largest batch under a memory budget from the planner, the
measured best, the cache, and the C functions behind them."""

import ctypes
import json
import os

import numpy as np
import pytest

import tinyinfer
from tinyinfer import _lib, batching
from batch_helpers import mlp


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(d))
    batching.clear_plan_cache()
    yield d
    batching.clear_plan_cache()


@pytest.fixture
def model(tmp_path):
    data, _ = mlp(d_in=64, hidden=128, d_out=16)
    path = tmp_path / "mlp.tinf"
    path.write_bytes(data)
    with tinyinfer.load(path) as m:
        yield m


def test_parse_bytes():
    assert batching.parse_bytes("256MB") == 256 << 20
    assert batching.parse_bytes("1.5 GiB") == int(1.5 * (1 << 30))
    assert batching.parse_bytes("64k") == 64 << 10
    assert batching.parse_bytes(1000) == 1000
    for bad in ("lots", "-1MB", "12 parsecs", -5, None, 1.5):
        with pytest.raises(tinyinfer.InvalidArgumentError):
            batching.parse_bytes(bad)


@pytest.mark.parametrize("batch", [1, 3, 64, 1000])
def test_batch_bytes_is_the_arena_of_a_real_session(model, batch):
    arena, resident = batching.batch_bytes(model, batch)
    with model.session(input_shapes=[(batch, 64)]) as s:
        assert s.arena_bytes == arena
    # inputs and outputs live through the whole run, so they never share bytes
    assert arena >= batch * (64 + 16) * 4
    # the model's own bytes: at least its constants
    assert resident >= model.weight_bytes


def test_largest_batch_fits_and_one_more_does_not(model):
    budget = 3 << 20
    plan = model.batch_plan(budget, measure_ms=0, item_bytes=1000)
    assert plan.source == "planned" and not plan.measured
    assert plan.batch_size == plan.max_batch  # unmeasured: the largest
    arena, resident = batching.batch_bytes(model, plan.max_batch)
    assert arena + resident + plan.max_batch * 1000 <= budget
    arena, resident = batching.batch_bytes(model, plan.max_batch + 1)
    assert arena + resident + (plan.max_batch + 1) * 1000 > budget
    # candidates: the powers of two below it and it, with their bytes
    sizes = [c.batch_size for c in plan.candidates]
    assert sizes == [2 ** k for k in range(len(sizes) - 1)] + [plan.max_batch]
    for c in plan.candidates:
        a, r = batching.batch_bytes(model, c.batch_size)
        assert c.bytes == a + r + c.batch_size * 1000


def test_max_batch_limit(model):
    plan = model.batch_plan("1GB", measure_ms=0, max_batch=100)
    assert plan.max_batch == 100 and plan.max_batch_limit == 100


def test_budget_below_batch_one_says_what_it_needs(model):
    arena, resident = batching.batch_bytes(model, 1)
    with pytest.raises(tinyinfer.OutOfMemoryError) as e:
        model.batch_plan(arena + resident - 1, measure_ms=0)
    assert e.value.needed_bytes == arena + resident
    assert str(arena + resident) in str(e.value) and "batch 1" in str(e.value)


def test_measured_plan_picks_the_smallest_near_the_best(model):
    plan = model.batch_plan("8MB", measure_ms=300, max_batch=256, cache=False)
    assert plan.measured and plan.source == "measured"
    rates = [c.items_per_second for c in plan.candidates]
    assert all(r > 0 for r in rates)
    best = max(rates)
    want = next(c.batch_size for c in plan.candidates if c.items_per_second >= 0.95 * best)
    assert plan.batch_size == want
    assert plan.items_per_second >= 0.95 * best
    assert plan.bytes_needed <= plan.memory_budget
    assert "items/s" in str(plan)


def test_threads_are_part_of_the_plan(model):
    one = model.batch_plan("8MB", threads=1, measure_ms=100, max_batch=64)
    two = model.batch_plan("8MB", threads=2, measure_ms=100, max_batch=64)
    assert one.threads == 1 and two.threads == 2
    assert two.source == "measured"  # not the cached one-thread plan
    assert model.batch_plan("8MB", threads=2, measure_ms=100, max_batch=64).source == "memory"


def test_cache_in_memory_then_on_disk(model, cache_dir):
    first = model.batch_plan("8MB", measure_ms=100, max_batch=64)
    assert first.source == "measured"
    assert model.batch_plan("8MB", measure_ms=100, max_batch=64).source == "memory"
    files = list((cache_dir / "batch-plans").iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # no temporary file left behind
    stored = json.loads(files[0].read_text())
    assert stored["plan"]["batch_size"] == first.batch_size
    batching.clear_plan_cache()
    again = model.batch_plan("8MB", measure_ms=100, max_batch=64)
    assert again.source == "disk"
    assert again.batch_size == first.batch_size and again.candidates == first.candidates
    # another model (other content) does not hit it
    data, _ = mlp(d_in=64, hidden=128, d_out=16, seed=5)
    with tinyinfer.load(data) as other:
        assert other.batch_plan("8MB", measure_ms=100, max_batch=64).source == "measured"
    # a corrupt file is measured again and rewritten
    files[0].write_text("{not json")
    batching.clear_plan_cache()
    assert model.batch_plan("8MB", measure_ms=100, max_batch=64).source == "measured"
    assert json.loads(files[0].read_text())["plan"]["memory_budget"] == 8 << 20
    # cache=False measures every time
    assert model.batch_plan("8MB", measure_ms=100, max_batch=64, cache=False).source == "measured"


def test_a_graph_with_a_fixed_batch_plans_batch_one():
    b = tinyinfer.GraphBuilder("fixed")
    x = b.input("x", (1, 4, 4))
    r = b.op("Reshape", x, shape=[1, 16])
    b.output(b.op("FullyConnected", r, b.const("w", np.ones((2, 16), np.float32))))
    with b.load() as m:
        plan = m.batch_plan("64MB", measure_ms=0)
        assert plan.max_batch == 1 and plan.batch_size == 1
    b.close()


def test_c_function_checks_its_arguments(model):
    L = _lib.lib
    n = 32
    batches, sizes, rates = (ctypes.c_int64 * n)(), (ctypes.c_size_t * n)(), (ctypes.c_double * n)()
    count, best = ctypes.c_int32(), ctypes.c_int32()
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_batch_plan(model.handle, None, 1 << 30, 0, 0, 0, 0, n, None, sizes, rates, ctypes.byref(count),
                                ctypes.byref(best))
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_batch_plan(None, None, 1 << 30, 0, 0, 0, 0, n, batches, sizes, rates, ctypes.byref(count),
                                ctypes.byref(best))
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_batch_plan(model.handle, None, 1 << 30, 0, 0, 0, 0, 0, batches, sizes, rates,
                                ctypes.byref(count), ctypes.byref(best))
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_batch_bytes(model.handle, None, 0, None, None)
    # a short capacity keeps the largest candidates
    L.tinf_model_batch_plan(model.handle, None, 1 << 30, 0, 1000, 0, 0, 3, batches, sizes, rates, ctypes.byref(count),
                            ctypes.byref(best))
    assert count.value == 3 and list(batches[:3]) == [256, 512, 1000] and best.value == 2


def test_caller_overhead_is_counted_with_each_run(model):
    # 100 ms of caller cost per batch dwarfs the runs: items/s grow with the batch, the largest wins
    plan = model.batch_plan("8MB", measure_ms=60, max_batch=64, overhead_us=100_000, cache=False)
    rates = [c.items_per_second for c in plan.candidates]
    assert plan.batch_size == 64 and plan.overhead_us == 100_000
    for c in plan.candidates:  # at most batch / 0.1 s
        assert c.items_per_second <= c.batch_size / 0.1 * 1.0001
    assert rates == sorted(rates)
