"""Batcher: requests from many threads and asyncio tasks gathered into
batched runs; each caller gets its own rows; failures stay with their
request; shutdown completes or fails what is pending, and nothing hangs."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tinyinfer
from batch_helpers import close, gather_model, mlp, two_input_model


@pytest.fixture(scope="module")
def net():
    data, ref = mlp()
    with tinyinfer.load(data) as m:
        yield m, ref


def rows(i, n=None):
    r = np.random.default_rng(i)
    return r.standard_normal((n or 1 + i % 3, 32)).astype(np.float32)


def test_each_caller_gets_its_rows_from_many_threads(net):
    m, ref = net
    with tinyinfer.Batcher(m, max_batch=16, max_delay_ms=5) as b:
        def call(i):
            x = rows(i)
            (y,) = b.run(x)
            return x, y
        with ThreadPoolExecutor(16) as ex:
            results = list(ex.map(call, range(400)))
        for x, y in results:
            close(y, ref(x))
        assert b.rows_run == sum(x.shape[0] for x, _ in results)
        # queued requests are gathered (threads may also find the queue empty and run alone)
        futures = [b.submit(rows(i)) for i in range(200)]
        before = b.batches
        for i, f in enumerate(futures):
            close(f.result(timeout=30)[0], ref(rows(i)))
        assert b.batches - before < 200


def test_asyncio_callers(net):
    m, ref = net
    xs = [rows(i) for i in range(100)]

    async def main(b):
        return await asyncio.gather(*(b.arun(x) for x in xs))

    with tinyinfer.Batcher(m, max_batch=32, max_delay_ms=2) as b:
        outs = asyncio.run(main(b))
    for x, (y,) in zip(xs, outs):
        close(y, ref(x))


def test_several_inputs_by_dict_and_list():
    data, ref = two_input_model()
    with tinyinfer.load(data) as m, tinyinfer.Batcher(m, max_batch=8) as b:
        a, c = rows(1, 3)[:, :8], rows(2, 3)[:, :8]
        close(b.run({"a": a, "b": c})[0], ref(a, c))
        close(b.run([a, c])[0], ref(a, c))
        with pytest.raises(tinyinfer.InvalidArgumentError, match="different row counts"):
            b.run([a, c[:2]])


def test_a_lone_caller_does_not_wait_for_the_delay(net):
    m, ref = net
    with tinyinfer.Batcher(m, max_batch=16, max_delay_ms=300) as b:
        b.run(rows(0))
        t0 = time.perf_counter()
        for i in range(10):
            close(b.run(rows(i))[0], ref(rows(i)))
        assert time.perf_counter() - t0 < 1.5  # 10 waits of 300 ms would take 3 s


def test_bad_requests_fail_alone(net):
    m, ref = net
    with tinyinfer.Batcher(m, max_batch=16) as b:
        with pytest.raises(tinyinfer.InvalidArgumentError, match=r"takes \(rows, 32\)"):
            b.run(np.zeros((2, 31), np.float32))
        with pytest.raises(tinyinfer.InvalidArgumentError, match="takes float32"):
            b.run(np.array([["x"] * 32]))
        with pytest.raises(tinyinfer.InvalidArgumentError, match="1..max_batch"):
            b.run(np.zeros((17, 32), np.float32))
        close(b.run(rows(3))[0], ref(rows(3)))


def test_a_run_failing_on_one_request_does_not_fail_the_others():
    data, table = gather_model()
    with tinyinfer.load(data) as m, tinyinfer.Batcher(m, max_batch=32, max_delay_ms=20) as b:
        idx = [np.array([[i % 16]], np.int32) for i in range(60)]
        bad = {7, 33}
        for i in bad:
            idx[i] = np.array([[100 + i]], np.int32)
        start = threading.Barrier(12)

        def call(i):
            if i < 12:
                start.wait()
            try:
                return b.run(idx[i])[0]
            except tinyinfer.TinyInferRuntimeError as e:
                return e

        with ThreadPoolExecutor(12) as ex:
            outs = list(ex.map(call, range(60)))
    for i, o in enumerate(outs):
        if i in bad:
            assert isinstance(o, tinyinfer.TinyInferRuntimeError) and "out of range" in str(o)
        else:
            np.testing.assert_array_equal(o[0, 0], table[i % 16])



def test_close_completes_pending_requests(net):
    m, ref = net
    b = tinyinfer.Batcher(m, max_batch=4, max_delay_ms=1)
    futures = [b.submit(rows(i)) for i in range(200)]
    b.close()
    for i, f in enumerate(futures):
        close(f.result(timeout=0)[0], ref(rows(i)))
    with pytest.raises(tinyinfer.BatcherClosedError):
        b.run(rows(0))
    b.close()  # idempotent


def test_close_with_cancel_fails_pending_requests_clearly(net):
    m, ref = net
    b = tinyinfer.Batcher(m, max_batch=1, max_delay_ms=0)
    futures = [b.submit(rows(i, 1)) for i in range(2000)]
    t0 = time.perf_counter()
    b.close(cancel=True)
    assert time.perf_counter() - t0 < 10
    done = failed = 0
    for i, f in enumerate(futures):
        assert f.done()
        if f.exception(timeout=0) is None:
            close(f.result()[0], ref(rows(i, 1)))
            done += 1
        else:
            assert isinstance(f.exception(), tinyinfer.BatcherClosedError)
            assert "closed before this request ran" in str(f.exception())
            failed += 1
    assert failed > 0 and done + failed == 2000


def test_context_manager_and_asyncio_after_close(net):
    m, _ = net
    with tinyinfer.Batcher(m) as b:
        pass
    assert b.closed

    async def main():
        with pytest.raises(tinyinfer.BatcherClosedError):
            await b.arun(rows(0))

    asyncio.run(main())


def test_arguments_are_checked(net):
    m, _ = net
    for kw in ({"max_batch": 0}, {"max_delay_ms": -1}, {"workers": 0}):
        with pytest.raises(tinyinfer.InvalidArgumentError):
            tinyinfer.Batcher(m, **kw)


def test_two_workers_with_two_threads(net):
    m, ref = net
    with tinyinfer.Batcher(m, max_batch=8, max_delay_ms=2, workers=2, threads=2) as b:
        with ThreadPoolExecutor(8) as ex:
            outs = list(ex.map(lambda i: (rows(i), b.run(rows(i))[0]), range(100)))
    for x, y in outs:
        close(y, ref(x))


@pytest.mark.parametrize("workers", [1, 2])
def test_many_callers_hand_the_lead_over_without_losing_a_leader(net, workers):
    m, ref = net
    b = tinyinfer.Batcher(m, max_batch=8, max_delay_ms=0.5, workers=workers)
    xs = [rows(i, 1) for i in range(16)]

    def caller(i):
        for _ in range(150):
            (y,) = b.run(xs[i])
        return y

    with ThreadPoolExecutor(16) as ex:
        outs = list(ex.map(caller, range(16)))
    for x, y in zip(xs, outs):
        close(y, ref(x))
    b.close(timeout=10)
    assert not b._thread.is_alive() and b._leaders == 0 and b._inflight == 0


def test_a_cancelled_asyncio_request_does_not_disturb_the_others(net):
    m, ref = net
    xs = [rows(i) for i in range(40)]

    async def main(b):
        tasks = [asyncio.ensure_future(b.arun(x)) for x in xs]
        tasks[3].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    with tinyinfer.Batcher(m, max_batch=8, max_delay_ms=5) as b:
        outs = asyncio.run(main(b))
    assert isinstance(outs[3], asyncio.CancelledError)
    for i, (x, o) in enumerate(zip(xs, outs)):
        if i != 3:
            close(o[0], ref(x))
