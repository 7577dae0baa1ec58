"""tinyinfer.ResultCache (docs/caching.md): hits answer with the outputs of the
first run, eviction keeps the held bytes under the bound, a caller cannot
change a cached result, threads sharing one cache get right answers, and
inputs whose hashes collide are never answered with each other's outputs.
References are plain numpy (x @ w + b, relu) written here."""
import threading

import numpy as np
import pytest

import tinyinfer as ti
from tinyinfer import InvalidArgumentError, ResultCache

RNG = np.random.default_rng(18)
W = RNG.standard_normal((16, 8)).astype(np.float32)
ENTRY_BYTES = 8 * 4 + 16 * 4   # an entry holds its output (8 floats) and its input's bytes (16 floats)
B = RNG.standard_normal(8).astype(np.float32)


def model_bytes(w=W, batch=1):
    b = ti.GraphBuilder()
    x = b.input("x", (batch, 16))
    # FullyConnected weights are [out, in]
    y = b.op("FullyConnected", x, b.const("w", np.ascontiguousarray(w.T)), b.const("b", B), activation=1)
    b.output(y)
    return b.to_bytes()


def ref(x, w=W):
    return np.maximum(x.astype(np.float32) @ w + B, 0)


def xs(n, batch=1):
    return [RNG.standard_normal((batch, 16)).astype(np.float32) for _ in range(n)]


def test_hits_return_the_first_results():
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    with ti.load(model_bytes(), result_cache=cache) as m:
        x = xs(1)[0]
        (y1,) = m.run(x)
        assert cache.stats()["misses"] == 1 and cache.stats()["hits"] == 0
        (y2,) = m.run(x.copy())          # same bytes, another array
        (y3,) = m.run([x])               # a list
        (y4,) = m.run({"x": x})          # a dict
        s = cache.stats()
        assert (s["hits"], s["misses"], s["entries"]) == (3, 1, 1)
        assert s["bytes"] == y1.nbytes + x.nbytes == ENTRY_BYTES
        for y in (y1, y2, y3, y4):
            np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-5)
        # another input is a miss
        (z,) = m.run(xs(1)[0])
        assert cache.stats()["misses"] == 2


def test_key_covers_dtype_shape_and_model():
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    x = xs(1)[0]
    with ti.load(model_bytes(), result_cache=cache) as m1, ti.load(model_bytes(2 * W), result_cache=cache) as m2:
        (a,) = m1.run(x)
        (b,) = m2.run(x)                 # other weights: another model, a miss
        assert cache.stats()["misses"] == 2
        np.testing.assert_allclose(b, ref(x, 2 * W), rtol=1e-5, atol=1e-5)
        # the same bytes read as another dtype are another key
        assert ResultCache.key(b"m", [x]) != ResultCache.key(b"m", [x.view(np.int32)])
        # the same bytes in another shape are another key
        assert ResultCache.key(b"m", [x]) != ResultCache.key(b"m", [x.reshape(2, 8)])
        assert ResultCache.key(b"m", [x]) != ResultCache.key(b"n", [x])
        # a float64 input is cast by the run and cached under its own key
        (c,) = m1.run(x.astype(np.float64))
        np.testing.assert_allclose(c, ref(x), rtol=1e-5, atol=1e-5)
        # a model loaded twice from the same bytes shares the entries
        with ti.load(model_bytes(), result_cache=cache) as m3:
            hits = cache.stats()["hits"]
            m3.run(x)
            assert cache.stats()["hits"] == hits + 1


def test_batch_shapes_are_cached_too():
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    with ti.load(model_bytes(), result_cache=cache) as m:
        (x,) = xs(1, batch=5)
        (y,) = m.run(x)
        (y2,) = m.run(x)
        assert y.shape == (5, 8) and cache.stats()["hits"] == 1
        np.testing.assert_allclose(y2, ref(x), rtol=1e-5, atol=1e-5)


def test_eviction_by_bytes_least_recently_used():
    cache = ResultCache(admit="always", max_bytes=3 * ENTRY_BYTES)
    with ti.load(model_bytes(), result_cache=cache) as m:
        a, b, c, d = xs(4)
        for x in (a, b, c):
            m.run(x)
        assert cache.stats()["entries"] == 3 and cache.stats()["evicted"] == 0
        m.run(a)                          # a is now the most recently used
        m.run(d)                          # evicts b, the least recently used
        s = cache.stats()
        assert (s["entries"], s["evicted"], s["bytes"]) == (3, 1, 3 * ENTRY_BYTES)
        hits = s["hits"]
        m.run(a)
        m.run(c)
        m.run(d)
        assert cache.stats()["hits"] == hits + 3
        m.run(b)                          # evicted: a miss again
        assert cache.stats()["hits"] == hits + 3
        assert cache.stats()["bytes"] <= cache.max_bytes


def test_too_large_and_clear():
    cache = ResultCache(admit="always", max_bytes=16)     # one entry is 96 bytes
    with ti.load(model_bytes(), result_cache=cache) as m:
        x = xs(1)[0]
        (y,) = m.run(x)
        (y2,) = m.run(x)
        s = cache.stats()
        assert (s["entries"], s["too_large"], s["hits"]) == (0, 2, 0)
        np.testing.assert_allclose(y2, ref(x), rtol=1e-5, atol=1e-5)
    cache = ResultCache("1KB", admit="always")
    assert cache.max_bytes == 1024
    with ti.load(model_bytes(), result_cache=cache) as m:
        m.run(xs(1)[0])
        assert cache.clear() == 1 and len(cache) == 0 and cache.stats()["bytes"] == 0


def test_callers_cannot_corrupt_cached_results():
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    with ti.load(model_bytes(), result_cache=cache) as m:
        x = xs(1)[0]
        expected = ref(x)
        (y,) = m.run(x)
        y[...] = 12345.0                  # the caller's copy
        (y2,) = m.run(x)
        np.testing.assert_allclose(y2, expected, rtol=1e-5, atol=1e-5)
        y2[...] = -1.0
        (v,) = m.run(x, copy=False)       # a read-only view of the entry
        assert not v.flags.writeable
        with pytest.raises(ValueError):
            v[...] = 0
        with pytest.raises(ValueError):
            v.flags.writeable = True
        np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-5)
        # changing the input after the run does not change the entry
        x2 = x.copy()
        m.run(x2)
        x2[...] = 0
        (y3,) = m.run(x)
        np.testing.assert_allclose(y3, expected, rtol=1e-5, atol=1e-5)
        # a copy=False miss: the entry is a copy, not the session's buffer
        z = xs(1)[0]
        (vz,) = m.run(z, copy=False)
        m.run(xs(1)[0])                   # overwrites the session's output buffer
        (z2,) = m.run(z)
        np.testing.assert_allclose(z2, ref(z), rtol=1e-5, atol=1e-5)


def test_check_finite_on_hits():
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    with ti.load(model_bytes(), result_cache=cache) as m:
        x = xs(1)[0]
        x[0, 3] = np.nan
        m.run(x)                          # stored without the check
        with pytest.raises(InvalidArgumentError, match="non-finite"):
            m.run(x, check_finite=True)   # a hit still checks


def test_bad_inputs_still_raise():
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    with ti.load(model_bytes(), result_cache=cache) as m:
        with pytest.raises(InvalidArgumentError):
            m.run({"nope": xs(1)[0]})
        with pytest.raises(InvalidArgumentError):
            m.run(np.zeros((1, 15), np.float32))
        with pytest.raises(ti.TinyInferError):
            m.run(np.array([[object()] * 16]))
        assert cache.stats()["entries"] == 0
    with pytest.raises(InvalidArgumentError):
        ti.load(model_bytes(), result_cache={"max_bytes": 10})
    with pytest.raises(InvalidArgumentError):
        ResultCache(admit="always", max_bytes=-1)
    with pytest.raises(InvalidArgumentError):
        ResultCache(admit="always", max_bytes="lots")


def test_thread_safety_shared_cache():
    # small bound: entries are evicted and re-added while 4 threads hit and miss
    cache = ResultCache(admit="always", max_bytes=6 * ENTRY_BYTES)
    inputs = xs(10)
    expected = [ref(x) for x in inputs]
    errors = []
    with ti.load(model_bytes(), result_cache=cache) as shared:
        models = [shared, shared, ti.load(model_bytes(), result_cache=cache),
                  ti.load(model_bytes(), result_cache=cache)]

        def work(k):
            m = models[k]
            r = np.random.default_rng(k)
            try:
                for _ in range(300):
                    i = int(r.integers(len(inputs)))
                    (y,) = m.run(inputs[i])
                    if not np.allclose(y, expected[i], rtol=1e-5, atol=1e-5):
                        errors.append((k, i))
                    y[...] = 0                # must not reach the cache
            except Exception as e:  # reported below: the test fails
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for m in models[2:]:
            m.close()
    assert errors == []
    s = cache.stats()
    assert s["hits"] + s["misses"] == 1200
    assert s["hits"] > 0 and s["evicted"] > 0
    assert s["bytes"] <= cache.max_bytes and s["entries"] <= 6
    assert s["bytes"] == s["entries"] * ENTRY_BYTES


def test_hash_collisions_never_return_another_inputs_result(monkeypatch):
    # every input hashes to 0: all keys of one shape and dtype collide, and
    # only the stored input bytes tell the entries apart
    import tinyinfer.result_cache as rc

    def colliding_hash(data, size, seed, out):
        out._obj.value = 0
        return 0

    monkeypatch.setattr(rc, "_hash64", colliding_hash)
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    with ti.load(model_bytes(), result_cache=cache) as m:
        a, b = xs(2)
        assert ResultCache.key(b"m", [a]) == ResultCache.key(b"m", [b])
        for x in (a, b, a, b, a):
            (y,) = m.run(x)
            np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-5)
        s = cache.stats()
        assert s["hits"] == 0 and s["collisions"] == 4 and s["entries"] == 1
        (y,) = m.run(a)                        # the entry now holds a: a true hit
        np.testing.assert_allclose(y, ref(a), rtol=1e-5, atol=1e-5)
        assert cache.stats()["hits"] == 1


def test_key_hash_is_the_librarys():
    x = xs(1)[0]
    k1 = ResultCache.key(b"m", [x])
    assert k1 == ResultCache.key(b"m", [x.copy()])
    y = x.copy()
    y.view(np.uint32)[0, 5] ^= 1                 # one bit
    assert ResultCache.key(b"m", [y]) != k1
    # a non-contiguous input hashes its C-order bytes
    t = np.asfortranarray(RNG.standard_normal((4, 4)).astype(np.float32))
    assert ResultCache.key(b"m", [t]) == ResultCache.key(b"m", [np.ascontiguousarray(t)])
    # a large contiguous input is hashed in place, a non-contiguous one from its C-order copy: the same key
    big = RNG.standard_normal((300, 100)).astype(np.float32)       # 120 KB
    assert ResultCache.key(b"m", [big]) == ResultCache.key(b"m", [np.asfortranarray(big)])
    changed = big.copy()
    changed[299, 99] = np.nextafter(changed[299, 99], np.float32(np.inf))   # the last element, one ulp
    assert ResultCache.key(b"m", [changed]) != ResultCache.key(b"m", [big])
    # two inputs: the hash covers both, in order
    assert ResultCache.key(b"m", [x, big]) != ResultCache.key(b"m", [x, changed])
    assert ResultCache.key(b"m", [x, x]) != ResultCache.key(b"m", [x, y])


def test_large_inputs_hit_and_miss():
    b = ti.GraphBuilder()
    v = b.input("v", (1, 40000))                                   # 160 KB: hashed in place
    b.output(b.op("Tanh", v))
    cache = ResultCache(max_bytes="4MB", admit="always")
    with ti.load(b.to_bytes(), result_cache=cache) as m:
        a = RNG.standard_normal((1, 40000)).astype(np.float32)
        (y1,) = m.run(a)
        a2 = a.copy()
        a2[0, -1] += 1
        (y2,) = m.run(a2)
        (y3,) = m.run(a.copy())
        s = cache.stats()
        assert (s["hits"], s["misses"], s["entries"]) == (1, 2, 2)
        np.testing.assert_allclose(y3, np.tanh(a), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y2, np.tanh(a2), rtol=1e-5, atol=1e-6)


def test_admit_repeat_stores_on_the_second_time():
    cache = ResultCache(max_bytes=1 << 20, max_seen=4)    # the default admission
    assert cache.admit == "repeat"
    with ti.load(model_bytes(), result_cache=cache) as m:
        x = xs(1)[0]
        for i in range(4):
            (y,) = m.run(x)
            np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-5)
        s = cache.stats()
        # 1st: remembered only; 2nd: stored; 3rd and 4th: hits
        assert (s["misses"], s["deferred"], s["entries"], s["hits"]) == (2, 1, 1, 2)
        # inputs that never repeat: nothing stored, the remembered keys bounded by max_seen
        for z in xs(10):
            m.run(z)
        s = cache.stats()
        assert (s["entries"], s["deferred"], s["bytes"]) == (1, 11, ENTRY_BYTES)
        assert len(cache._seen) == 4
        a = xs(1)[0]
        m.run(a)
        for z in xs(4):                                   # pushes a out of the remembered keys
            m.run(z)
        m.run(a)
        assert cache.stats()["entries"] == 1              # a came back too late: remembered again, not stored
    with pytest.raises(InvalidArgumentError):
        ResultCache(admit="sometimes")
    with pytest.raises(InvalidArgumentError):
        ResultCache(max_seen=0)
