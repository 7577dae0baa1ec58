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
        (v,) = m.run(x, copy=False)       # a hit: a read-only view of the session's output buffer
        assert not v.flags.writeable
        with pytest.raises(ValueError):
            v[...] = 0
        np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-5)
        v.flags.writeable = True          # a caller who insists writes the session's buffer, not the entry
        v[...] = 7.0
        (y4,) = m.run(x)
        np.testing.assert_allclose(y4, expected, rtol=1e-5, atol=1e-5)
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


def test_hash_collisions_never_return_another_inputs_result():
    # hash_bits=0: every key of the cache is 0, so all inputs collide and
    # only the stored input bytes tell the entries apart
    cache = ResultCache(admit="always", max_bytes=1 << 20, hash_bits=0)
    with ti.load(model_bytes(), result_cache=cache) as m:
        a, b = xs(2)
        for x in (a, b, a, b, a):
            (y,) = m.run(x)
            np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-5)
        s = cache.stats()
        assert s["hits"] == 0 and s["collisions"] == 4 and s["entries"] == 1
        (y,) = m.run(a)                        # the entry now holds a: a true hit
        np.testing.assert_allclose(y, ref(a), rtol=1e-5, atol=1e-5)
        assert cache.stats()["hits"] == 1
        c = a.copy()
        c.view(np.uint32)[0, 15] ^= 1          # the last bit of the last element
        (y,) = m.run(c)
        np.testing.assert_allclose(y, ref(c), rtol=1e-5, atol=1e-5)
        assert cache.stats()["collisions"] == 5
    with pytest.raises(InvalidArgumentError):
        ResultCache(hash_bits=65)


def test_key_covers_shape_dtype_and_model_key_in_c():
    # Sessions bound under one model key share entries only when their input
    # and output dtypes and shapes match: the same 64 input bytes as (1, 16)
    # float32, (2, 8) float32 and (1, 16) int32 are three keys.
    def flat_model(shape, dtype):   # the input as 16 values: equal outputs for the three
        b = ti.GraphBuilder()
        v = b.input("v", shape, dtype=dtype)
        b.output(b.op("Reshape", v, shape=[16]))
        return b.to_bytes()

    cache = ResultCache(admit="always", max_bytes=1 << 20)
    x = xs(1)[0]
    with ti.load(flat_model((1, 16), "float32")) as m1, ti.load(flat_model((2, 8), "float32")) as m2, \
            ti.load(flat_model((1, 16), "int32")) as m3:
        s1, s2, s3, s1b = m1.session(), m2.session(), m3.session(), m1.session()
        for s in (s1, s2, s3, s1b):
            cache.bind(s, b"one key")
        (y1,) = s1.run(x)
        (y2,) = s2.run(x.reshape(2, 8))
        (y3,) = s3.run(x.view(np.int32))
        assert cache.stats()["misses"] == 3 and cache.stats()["entries"] == 3
        np.testing.assert_array_equal(y1, x.reshape(16))
        np.testing.assert_array_equal(y2, x.reshape(16))
        assert y3.dtype == np.int32
        np.testing.assert_array_equal(y3, x.view(np.int32).reshape(16))
        (y1b,) = s1b.run(x)                  # another session, same key and shapes: a hit
        assert cache.stats()["hits"] == 1
        np.testing.assert_array_equal(y1b, x.reshape(16))
        cache.bind(s1b, b"another key")     # another model key: a miss
        s1b.run(x)
        assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 4
        s4 = m1.session()                    # unbound: the cache sees nothing
        s4.run(x)
        assert cache.stats()["misses"] == 4
        for s in (s1, s2, s3, s1b, s4):
            s.close()


def test_c_api_arguments():
    from ctypes import byref, c_size_t
    from tinyinfer import _lib
    L = _lib.lib
    h = _lib.ResultCacheHandle()
    for args in ((1 << 49, 0, 16, 64), (1024, 2, 16, 64), (1024, 0, 0, 64), (1024, 0, 16, -1)):
        with pytest.raises(InvalidArgumentError):
            L.tinf_result_cache_create(*args, byref(h))
    with pytest.raises(InvalidArgumentError):
        L.tinf_result_cache_create(1024, 0, 16, 64, None)
    with pytest.raises(InvalidArgumentError):
        L.tinf_result_cache_stats(None, byref(_lib.ResultCacheStats()))
    with pytest.raises(InvalidArgumentError):
        L.tinf_result_cache_clear(None, byref(c_size_t()))
    L.tinf_result_cache_free(None)           # a no-op
    cache = ResultCache(max_bytes=1 << 20)
    with ti.load(model_bytes()) as m:
        s = m.session()
        with pytest.raises(InvalidArgumentError):
            L.tinf_session_set_result_cache(None, cache._handle, b"k", 1)
        with pytest.raises(InvalidArgumentError):
            L.tinf_session_set_result_cache(s._handle, cache._handle, b"k" * 257, 257)
        with pytest.raises(InvalidArgumentError):
            L.tinf_session_set_result_cache(s._handle, cache._handle, None, 4)
        L.tinf_session_set_result_cache(s._handle, cache._handle, None, 0)
        L.tinf_session_set_result_cache(s._handle, None, None, 0)     # unbinds
        s.run(xs(1)[0])
        assert cache.stats()["misses"] == 0
        s.close()
    # a bound session keeps the C cache alive after the Python object is gone
    with ti.load(model_bytes()) as m:
        s = m.session()
        c2 = ResultCache(max_bytes=1 << 20, admit="always")
        c2.bind(s, b"k")
        x = xs(1)[0]
        s.run(x)
        del c2
        import gc
        gc.collect()
        for _ in range(2):                   # a hit on the freed handle's cache, still alive in the session
            (y,) = s.run(x)
            np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-5)
        s.close()


def test_setting_result_cache_rebinds_the_sessions():
    x = xs(1)[0]
    with ti.load(model_bytes(), result_cache=ResultCache(admit="always")) as m:
        c1 = m.result_cache
        xb = xs(1, batch=3)[0]
        m.run(x), m.run(xb)                  # the file's shape and a batch of 3: two sessions, both bound
        m.result_cache = None                # off for both
        m.run(x), m.run(xb)
        assert c1.stats()["hits"] == 0 and c1.stats()["misses"] == 2
        c2 = ResultCache(admit="always")
        m.result_cache = c2                  # another cache, both sessions
        for _ in range(2):
            (y,) = m.run(x)
            (yb,) = m.run(xb)
        assert (c2.stats()["hits"], c2.stats()["misses"]) == (2, 2) and c1.stats()["hits"] == 0
        np.testing.assert_allclose(yb, ref(xb), rtol=1e-5, atol=1e-5)
        with pytest.raises(InvalidArgumentError):
            m.result_cache = "yes"
    with ti.load(model_bytes()) as m:          # set after load: keyed by the model as loaded
        c3 = ResultCache(admit="always")
        m.result_cache = c3
        m.run(x), m.run(x)
        assert c3.stats()["hits"] == 1
        with ti.load(model_bytes()) as m2:     # the same model loaded again and set after load: shares entries
            m2.result_cache = c3
            (y,) = m2.run(x)
            assert c3.stats()["hits"] == 2
            np.testing.assert_allclose(y, ref(x), rtol=1e-5, atol=1e-5)


def test_any_changed_bit_misses_and_layouts_hit():
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    with ti.load(model_bytes(), result_cache=cache) as m:
        x = xs(1)[0]
        m.run(x)
        y = x.copy()
        y.view(np.uint32)[0, 5] ^= 1                     # one bit
        (r,) = m.run(y)
        assert cache.stats()["hits"] == 0
        np.testing.assert_allclose(r, ref(y), rtol=1e-5, atol=1e-5)
        # a non-contiguous input is its C-order bytes: the same entry
        t = np.asfortranarray(np.tile(x, (3, 1)))[1:2]
        assert not t.flags.c_contiguous
        (r,) = m.run(t)
        assert cache.stats()["hits"] == 1
        np.testing.assert_allclose(r, ref(x), rtol=1e-5, atol=1e-5)


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
        assert cache.stats()["seen"] == 4
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


def test_admit_repeat_follows_a_model_of_the_remembered_keys():
    """A long stream with repeats at every distance, some keys coming back
    many times, against a plain model of admission "repeat": a miss stores
    an input remembered among the last max_seen remembered ones (forgotten
    when max_seen more have been remembered after it, even if some of those
    were taken since), else remembers it."""
    max_seen = 8
    cache = ResultCache(max_bytes=1 << 20, max_seen=max_seen)
    pool = xs(60)
    order = np.random.default_rng(5).integers(0, len(pool), 500)
    stored, remembered, count = set(), {}, 0        # remembered: input -> its number among the remembered
    hits = misses = deferred = 0
    with ti.load(model_bytes(), result_cache=cache) as m:
        for i in order:
            (y,) = m.run(pool[i])
            np.testing.assert_allclose(y, ref(pool[i]), rtol=1e-5, atol=1e-5)
            if i in stored:
                hits += 1
                continue
            misses += 1
            if i in remembered and remembered[i] >= count - max_seen:
                del remembered[i]
                stored.add(i)
            else:
                remembered[i] = count
                count += 1
                deferred += 1
            s = cache.stats()
            assert (s["hits"], s["misses"], s["deferred"], s["entries"]) == (hits, misses, deferred, len(stored))
            assert s["seen"] == sum(1 for n in remembered.values() if n >= count - max_seen)
        # some stored, some hit, some forgotten before they came back (remembered twice)
        assert len(stored) > 0 and hits > 0 and deferred > len(set(order.tolist()))
        cache.clear()
        assert cache.stats()["seen"] == 0 and cache.stats()["entries"] == 0
        m.run(pool[0])
        m.run(pool[0])
        assert cache.stats()["entries"] == 1          # after a clear the ring starts over


def test_c_program(tmp_path):
    """tests/c/result_cache.c (strict C99): the cache shared by two sessions,
    counts, eviction, clear, lifetime, tinf_model_serialize; its printed
    outputs are numpy's; valgrind (when present) finds no memory errors or leaks."""
    import re
    import shutil
    import subprocess
    from test_c_programs import CC, compile_c
    if CC is None:
        pytest.skip("no C compiler")
    exe = compile_c("tests/c/result_cache.c", tmp_path / "result_cache", pedantic=True)
    model = tmp_path / "m.tinf"
    model.write_bytes(model_bytes())
    p = subprocess.run([exe, str(model)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stdout + p.stderr
    x = np.array([((i % 7) - 3) * 0.25 for i in range(16)], np.float32).reshape(1, 16)
    got = np.array([float(v) for v in p.stdout.split()[:-1]], np.float32)
    np.testing.assert_allclose(got, ref(x).reshape(-1), rtol=1e-5, atol=1e-5)
    valgrind = shutil.which("valgrind")
    if valgrind:
        import os
        env = dict(os.environ, TINYINFER_ISA="avx2")   # valgrind cannot decode AVX-512
        p = subprocess.run([valgrind, "-q", "--error-exitcode=99", "--leak-check=full",
                            "--errors-for-leak-kinds=definite", exe, str(model)],
                           capture_output=True, text=True, timeout=600, env=env)
        assert p.returncode == 0, p.stderr[-4000:]
        assert re.search(r"^ok$", p.stdout, re.M)


def test_outputs_that_are_constants(tmp_path):
    """A graph output that is a constant of the file (mapped read-only) or a
    folded one: a hit leaves it alone (it holds its value) and copies the rest."""
    b = ti.GraphBuilder()
    x = b.input("x", (1, 4))
    c = np.arange(4, dtype=np.float32).reshape(1, 4)
    cc = b.const("c", c)
    b.output(b.op("Tanh", x), cc, b.op("Tanh", cc))
    path = tmp_path / "const_out.tinf"
    b.save(path)
    cache = ResultCache(admit="always", max_bytes=1 << 20)
    with ti.load(path, result_cache=cache, prepack_cache=False) as m:
        v = RNG.standard_normal((1, 4)).astype(np.float32)
        first = m.run(v)
        m.run(RNG.standard_normal((1, 4)).astype(np.float32))
        again = m.run(v)                      # a hit
        assert cache.stats()["hits"] == 1
        for got in (first, again):
            np.testing.assert_allclose(got[0], np.tanh(v), rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(got[1], c)
            np.testing.assert_allclose(got[2], np.tanh(c), rtol=1e-6, atol=1e-6)
