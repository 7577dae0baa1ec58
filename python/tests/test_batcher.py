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


def test_queued_requests_are_gathered_into_batches():
    data, ref = mlp(d_in=1024, hidden=4096)  # about 4M multiply-adds a row: requests queue while one runs
    xs = np.random.default_rng(1).standard_normal((60, 1, 1024)).astype(np.float32)
    with tinyinfer.load(data) as m, tinyinfer.Batcher(m, max_batch=16, max_delay_ms=5) as b:
        futures = [b.submit(x) for x in xs]
        for x, f in zip(xs, futures):
            close(f.result(timeout=60)[0], ref(x), tol=1e-3)
        st = b.stats()
    assert st["rows"] == 60 and st["batches"] < 30 and st["failed"] == 0


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


def test_close_with_cancel_fails_pending_requests_clearly():
    data, ref = mlp(d_in=1024, hidden=4096)  # about 4M multiply-adds a row: the queue cannot empty at once
    xs = np.random.default_rng(0).standard_normal((300, 1, 1024)).astype(np.float32)
    with tinyinfer.load(data) as m:
        b = tinyinfer.Batcher(m, max_batch=1, max_delay_ms=0)
        futures = [b.submit(x) for x in xs]
        t0 = time.perf_counter()
        b.close(cancel=True)
        assert time.perf_counter() - t0 < 10
    done = failed = 0
    for x, f in zip(xs, futures):
        assert f.done()
        if f.exception(timeout=0) is None:
            close(f.result()[0], ref(x), tol=1e-3)
            done += 1
        else:
            assert isinstance(f.exception(), tinyinfer.BatcherClosedError)
            assert "closed before this request ran" in str(f.exception())
            failed += 1
    assert failed > 0 and done + failed == 300


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
def test_many_callers_steady_load_loses_nothing(net, workers):
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
    st = b.stats()
    # (whether requests were gathered depends on timing: callers that never
    # overlap run alone; submissions test the gathering)
    assert st["requests"] == st["rows"] == 16 * 150 and st["failed"] == 0
    b.close(timeout=10)
    assert b.stats()["queued"] == b.stats()["running"] == 0


def unbatched(m, x):
    """x's rows each run alone on a batch-1 session (the unbatched path)."""
    with m.session(threads=1, input_shapes=[(1,) + tuple(m.inputs[0].shape[1:])]) as s:
        return np.concatenate([s.run(x[i:i + 1])[0] for i in range(x.shape[0])])


def test_results_identical_to_unbatched_runs(net):
    m, _ = net
    xs = [rows(i) for i in range(64)]
    expect = [unbatched(m, x) for x in xs]
    with tinyinfer.Batcher(m, max_batch=16, max_delay_ms=5, workers=2) as b:
        with ThreadPoolExecutor(16) as ex:
            outs = list(ex.map(lambda x: b.run(x)[0], xs))
        subs = [b.submit(x) for x in xs]
        got = [f.result(timeout=30)[0] for f in subs]
    for y, z, e in zip(outs, got, expect):
        # up to rounding: a row in a batch goes through the GEMM's multi-row
        # tile, which adds in another order than the one-row kernel
        np.testing.assert_allclose(y, e, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(z, e, rtol=1e-5, atol=1e-6)


def test_one_caller_loses_no_rows_or_values(net):
    m, _ = net
    with tinyinfer.Batcher(m, max_batch=16, max_delay_ms=50) as b:
        total = 0
        for i in range(200):
            x = rows(i)
            (y,) = b.run(x)
            # a lone caller's request runs alone, on the session of its size: as Model.run, bit for bit
            np.testing.assert_array_equal(y, m.run(x)[0])
            if i % 20 == 0:
                np.testing.assert_allclose(y, unbatched(m, x), rtol=1e-5, atol=1e-6)
            total += x.shape[0]
        st = b.stats()
        assert st["rows"] == total and st["requests"] == 200 and st["failed"] == 0


def test_many_threads_with_good_and_bad_requests_mixed():
    data, table = gather_model()
    bad_shape = np.zeros((1, 2), np.int32)
    with tinyinfer.load(data) as m, tinyinfer.Batcher(m, max_batch=16, max_delay_ms=5, workers=2) as b:
        def call(i):
            try:
                if i % 9 == 4:
                    return b.run(bad_shape)  # refused alone, before it reaches the queue
                if i % 7 == 2:
                    return b.run(np.array([[100 + i]], np.int32))  # fails its run alone
                return b.run(np.array([[i % 16]], np.int32))[0]
            except tinyinfer.TinyInferError as e:
                return e

        with ThreadPoolExecutor(16) as ex:
            outs = list(ex.map(call, range(400)))
        st = b.stats()
    for i, o in enumerate(outs):
        if i % 9 == 4:
            assert isinstance(o, tinyinfer.InvalidArgumentError) and "takes (rows, 1)" in str(o)
        elif i % 7 == 2:
            assert isinstance(o, tinyinfer.TinyInferRuntimeError) and "out of range" in str(o)
        else:
            np.testing.assert_array_equal(o[0, 0], table[i % 16])
    n_bad = sum(1 for i in range(400) if i % 9 != 4 and i % 7 == 2)
    assert st["failed"] == n_bad and st["requests"] == sum(1 for i in range(400) if i % 9 != 4)


def test_the_library_refuses_a_request_of_the_wrong_size_alone(net):
    m, ref = net
    from ctypes import c_size_t, c_void_p
    L = tinyinfer._lib.lib
    with tinyinfer.Batcher(m, max_batch=4) as b:
        x, y = rows(0, 2), np.empty((2, 10), np.float32)
        ip, inb = (c_void_p * 1)(x.ctypes.data), (c_size_t * 1)(x.nbytes - 4)
        op, onb = (c_void_p * 1)(y.ctypes.data), (c_size_t * 1)(y.nbytes)
        with pytest.raises(tinyinfer.ShapeError, match="input 0 of 2 row.s. has 256 bytes") as e:
            L.tinf_batcher_run(b._handle, 2, ip, inb, 1, op, onb, 1, -1)
        assert e.value.status == tinyinfer.Status.SHAPE
        inb[0] = x.nbytes
        L.tinf_batcher_run(b._handle, 2, ip, inb, 1, op, onb, 1, -1)  # raises on a failure
        close(y, ref(x))


def test_shutdown_with_callers_waiting_completes_them(net):
    m, ref = net
    b = tinyinfer.Batcher(m, max_batch=64, max_delay_ms=300)
    xs = [rows(i) for i in range(12)]
    # keep a worker busy gathering: peak in flight is high, so it waits for more
    with ThreadPoolExecutor(12) as ex:
        futs = [ex.submit(b.run, x) for x in xs]
        time.sleep(0.05)
        t0 = time.perf_counter()
        b.close()
        assert time.perf_counter() - t0 < 5
        outs = [f.result(timeout=10)[0] for f in futs]
    for x, y in zip(xs, outs):
        close(y, ref(x))


def test_shutdown_with_cancel_fails_waiting_callers_clearly(net):
    m, ref = net
    b = tinyinfer.Batcher(m, max_batch=1, max_delay_ms=0)
    x = rows(1, 1)

    def caller(_):
        try:
            while True:  # until the close refuses it
                close(b.run(x)[0], ref(x))
        except tinyinfer.BatcherClosedError as e:
            return str(e)

    with ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(caller, i) for i in range(8)]
        time.sleep(0.2)
        b.close(cancel=True)
        msgs = [f.result(timeout=10) for f in futs]
    assert all(m_ is not None and "closed" in m_ for m_ in msgs)
    b.close()
    b.close(cancel=True)  # idempotent


def test_timeout_withdraws_a_request_not_taken():
    data, ref = mlp(d_in=1024, hidden=4096)  # about 4M multiply-adds a row
    with tinyinfer.load(data) as m, tinyinfer.Batcher(m, max_batch=1, max_delay_ms=0) as b:
        x = np.random.default_rng(0).standard_normal((1, 1024)).astype(np.float32)
        futs = [b.submit(x) for _ in range(60)]  # one worker, one row a run: a queue of 60 runs
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError, match="did not run"):
            b.run(x, timeout=0.001)
        assert time.perf_counter() - t0 < 1
        for f in futs:
            close(f.result(timeout=60)[0], ref(x), tol=1e-3)
        assert b.stats()["requests"] == 61 and b.stats()["rows"] == 60  # the withdrawn one never ran


def test_an_unclosed_batcher_is_collected_and_its_thread_ends(net):
    import gc
    m, ref = net
    b = tinyinfer.Batcher(m, max_batch=4)
    f = b.submit(rows(0))
    close(f.result(timeout=10)[0], ref(rows(0)))
    t = b._thread
    del b
    gc.collect()
    t.join(10)
    assert not t.is_alive()


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


def test_asyncio_results_come_through_the_loop_without_a_thread(net):
    # arun's results reach the loop through an fd the library writes to (one
    # wake-up per batch), read on the loop itself: no completion thread
    m, ref = net
    xs = [rows(i) for i in range(200)]

    async def main(b):
        return await asyncio.gather(*(b.arun(x) for x in xs))

    with tinyinfer.Batcher(m, max_batch=16, max_delay_ms=2, workers=2) as b:
        outs = asyncio.run(main(b))
        assert b._thread is None
        outs2 = asyncio.run(main(b))  # a second loop after the first was closed
        assert b._thread is None
    for x, (y,), (z,) in zip(xs, outs, outs2):
        close(y, ref(x))
        close(z, ref(x))


def test_asyncio_from_two_loops_at_once(net):
    # the first loop reads the fd; the other loop's results come through the completion thread
    m, ref = net
    xs = [rows(i) for i in range(120)]

    async def main(b, part):
        return await asyncio.gather(*(b.arun(x) for x in part))

    with tinyinfer.Batcher(m, max_batch=8, max_delay_ms=1) as b:
        with ThreadPoolExecutor(2) as ex:
            a, c = ex.map(lambda part: asyncio.run(main(b, part)), [xs[:60], xs[60:]])
    for x, (y,) in zip(xs, list(a) + list(c)):
        close(y, ref(x))


def test_close_inside_the_loop_completes_pending_arun(net):
    m, ref = net
    xs = [rows(i) for i in range(50)]

    async def main():
        b = tinyinfer.Batcher(m, max_batch=4, max_delay_ms=1)
        tasks = [asyncio.ensure_future(b.arun(x)) for x in xs]
        await asyncio.sleep(0)  # submitted
        b.close()
        return await asyncio.wait_for(asyncio.gather(*tasks), 30)

    for x, (y,) in zip(xs, asyncio.run(main())):
        close(y, ref(x))


@pytest.mark.parametrize("turn_ms", [0, 0.05, 5])
def test_turns_lose_nothing_when_callers_do_not_come_back(net, turn_ms):
    # callers that stay away between requests (sleeping, or gone after their
    # last one) hold their turn until it expires; every request completes
    m, ref = net
    xs = [rows(i, 1) for i in range(12)]
    with tinyinfer.Batcher(m, max_batch=8, max_delay_ms=1, workers=2, turn_ms=turn_ms) as b:
        def caller(i):
            out = []
            for k in range(20 + i):
                out.append(b.run(xs[i])[0])
                if k % 5 == i % 5:
                    time.sleep(0.002)
            return out

        t0 = time.perf_counter()
        with ThreadPoolExecutor(12) as ex:
            outs = list(ex.map(caller, range(12)))
        assert time.perf_counter() - t0 < 60
        st = b.stats()
    for x, ys in zip(xs, outs):
        for y in ys:
            close(y, ref(x))
    assert st["requests"] == st["rows"] == sum(20 + i for i in range(12)) and st["failed"] == 0


def test_turn_argument_is_checked(net):
    m, _ = net
    for bad in (-1, 2000):
        with pytest.raises(tinyinfer.InvalidArgumentError):
            tinyinfer.Batcher(m, turn_ms=bad)
