"""The prepack cache (tinyinfer.prepack_cache, Runtime/PrepackImage.swift):
a cached load maps the packed weights instead of packing and gives the same
outputs bit for bit; corrupt, truncated, foreign and stale images are
refused and replaced; concurrent writers leave a valid file; the cache can
be turned off; an unwritable folder leaves the load working."""

import ctypes
import os
import struct
import subprocess
import sys
import time
from ctypes import byref, c_int32, c_size_t

import numpy as np
import pytest

import reference as ref
import tinyinfer
from tinyinfer import _lib, cache, prepack_cache

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = os.path.dirname(HERE)
L = _lib.lib


@pytest.fixture(autouse=True)
def folder(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(d))
    monkeypatch.delenv("TINYINFER_CACHE_MAX_BYTES", raising=False)
    monkeypatch.delenv("TINYINFER_PREPACK_CACHE", raising=False)
    return d


def make_model(path, seed=0, cout=24, hidden=40, sparse_w2=False):
    """Conv2D 3x3 (packed) -> reshape -> FullyConnected (packed) -> FullyConnected (packed).
    sparse_w2: 90% of the middle FullyConnected's weights are zero (it runs on the sparse kernel)."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((cout, 3, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal(cout).astype(np.float32)
    w2 = rng.standard_normal((hidden, 6 * 6 * cout)).astype(np.float32)
    if sparse_w2:
        w2[np.random.default_rng(99).random(w2.shape) < 0.9] = 0
    b2 = rng.standard_normal(hidden).astype(np.float32)
    w3 = rng.standard_normal((10, hidden)).astype(np.float32)
    b = tinyinfer.GraphBuilder("prepack")
    x = b.input("x", (2, 6, 6, 3))
    c = b.op("Conv2D", x, b.const("w1", w1), b.const("b1", b1), padding=1)
    r = b.op("Reshape", c, shape=[2, 6 * 6 * cout])
    f = b.op("FullyConnected", r, b.const("w2", w2), b.const("b2", b2))
    b.output(b.op("FullyConnected", f, b.const("w3", w3)))
    b.save(path)

    def reference(xv):
        y = ref.conv2d(xv, w1, b1, padding=1).reshape(2, -1)
        return ref.fully_connected(ref.fully_connected(y, w2, b2), w3)
    return reference


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "m.tinf"
    reference = make_model(p)
    x = np.random.default_rng(7).standard_normal((2, 6, 6, 3)).astype(np.float32)
    return p, x, reference


def packs(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".pack")) if os.path.isdir(folder) else []


def run(path, x, **kw):
    with tinyinfer.load(path, **kw) as m:
        (y,) = m.run(x)
        return y, dict(m.prepack)


def test_cached_load_maps_and_gives_identical_outputs(model, folder):
    path, x, reference = model
    plain, st = run(path, x, prepack_cache=False)
    assert st["state"] == "off" and st["packed_at_load"] == 3 and packs(folder) == []
    np.testing.assert_allclose(plain, reference(x), rtol=1e-4, atol=1e-3)  # the independent reference
    first, st1 = run(path, x)
    assert st1["state"] == "miss" and st1["written"] and st1["packed_at_load"] == 3
    assert len(packs(folder)) == 1 and os.path.basename(st1["image"]) == packs(folder)[0]
    second, st2 = run(path, x)
    # the second load packs nothing: every packed op's weights come from the image
    assert st2["state"] == "hit" and st2["from_image"] == 3 and st2["packed_at_load"] == 0 and not st2["written"]
    assert first.tobytes() == plain.tobytes() and second.tobytes() == plain.tobytes()


def test_model_from_bytes_is_cached_too(model, folder):
    path, x, _ = model
    data = path.read_bytes()
    want, _ = run(path, x, prepack_cache=False)
    _, st1 = run(data, x)
    y, st2 = run(data, x)
    assert (st1["state"], st2["state"]) == ("miss", "hit") and st2["packed_at_load"] == 0
    assert y.tobytes() == want.tobytes()


def test_sessions_outlive_the_model_with_a_mapped_image(model):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    run(path, x)
    m = tinyinfer.load(path)
    assert m.prepack["state"] == "hit"
    s = m.session()
    m.close()
    del m
    (y,) = s.run(x)
    assert y.tobytes() == want.tobytes()
    s.close()


def _image(folder):
    (name,) = packs(folder)
    return folder / name


@pytest.mark.parametrize("where, why", [("payload", "checksum"), ("header key", "another key"),
                                        ("magic", "bad magic"), ("entry", "entry 0")])
def test_corrupt_image_is_refused_and_replaced(model, folder, where, why):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    run(path, x)
    img = _image(folder)
    blob = bytearray(img.read_bytes())
    at = {"payload": len(blob) - 100, "header key": 45, "magic": 0, "entry": 256 + 8}[where]
    blob[at] ^= 0x01
    img.write_bytes(bytes(blob))
    y, st = run(path, x)
    assert st["state"] == "rejected" and why in st["note"], st
    assert st["packed_at_load"] == 3 and st["written"]  # packed as usual, and a good image written over it
    assert y.tobytes() == want.tobytes()
    y2, st2 = run(path, x)
    assert st2["state"] == "hit" and y2.tobytes() == want.tobytes()


@pytest.mark.parametrize("keep", [0, 100, 300, -1])
def test_truncated_image_is_refused_and_replaced(model, folder, keep):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    run(path, x)
    img = _image(folder)
    blob = img.read_bytes()
    img.write_bytes(blob[:keep] if keep >= 0 else blob[:-1])
    y, st = run(path, x)
    assert st["state"] == "rejected" and "truncated" in st["note"], st
    assert y.tobytes() == want.tobytes()
    assert run(path, x)[1]["state"] == "hit"


def test_foreign_image_other_version_is_refused(model, folder, monkeypatch):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    monkeypatch.setattr(tinyinfer, "__version__", "99.0.0")
    _, st = run(path, x)
    foreign = _image(folder)
    monkeypatch.undo()
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(folder))
    _foreign_under_this_key_is_rejected(path, x, want, foreign)  # the version is part of the key


def _foreign_under_this_key_is_rejected(path, x, want, foreign):
    """An image written under another key (`foreign`), moved to this load's
    key path: the load rejects it and computes the same outputs as without
    the cache."""
    plan = prepack_cache.Plan.make(True, path, 0)
    assert plan.path != str(foreign)
    os.replace(foreign, plan.path)
    y, st = run(path, x)
    assert st["state"] == "rejected" and "another key" in st["note"]
    assert y.tobytes() == want.tobytes()


def test_foreign_image_other_cpu_level_is_refused(model, folder):
    path, x, _ = model
    if tinyinfer.info()["isa"] == "baseline":
        pytest.skip("the CPU runs at the baseline level: no other level to write an image for")
    want, _ = run(path, x, prepack_cache=False)
    env = dict(os.environ, TINYINFER_ISA="baseline", PYTHONPATH=PYTHON)
    code = ("import sys, tinyinfer; m = tinyinfer.load(sys.argv[1]); "
            "assert m.prepack['written'], m.prepack; print(tinyinfer.info()['isa'])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "baseline", out.stderr
    foreign = _image(folder)
    # under this level's key, but the header says baseline: refused by the key, and by the level
    _foreign_under_this_key_is_rejected(path, x, want, foreign)  # the level is part of the key


def _write_image(model_path, image_path, key):
    h = _lib.ModelHandle()
    L.tinf_model_load_file_flags(os.fsencode(model_path), 0, byref(h))
    try:
        n = c_size_t()
        L.tinf_model_prepack_image(h, key, len(key), None, 0, byref(n))
        buf = bytearray(n.value)
        L.tinf_model_prepack_image(h, key, len(key), (ctypes.c_uint8 * n.value).from_buffer(buf), n.value, byref(n))
    finally:
        L.tinf_model_free(h)
    with open(image_path, "wb") as f:
        f.write(buf)


def _load_c(model_path, image_path, key):
    h = _lib.ModelHandle()
    L.tinf_model_load_file_prepacked(os.fsencode(model_path), 0, os.fsencode(image_path), key, len(key), byref(h))
    state, from_image, packed = c_int32(), c_int32(), c_int32()
    L.tinf_model_prepack_info(h, byref(state), byref(from_image), byref(packed))
    n = c_size_t()
    L.tinf_model_prepack_note(h, None, 0, byref(n))
    note = ctypes.create_string_buffer(n.value + 1)
    L.tinf_model_prepack_note(h, note, len(note), None)
    return h, state.value, from_image.value, packed.value, note.value.decode()


def test_image_of_another_model_with_the_same_key_is_refused(tmp_path):
    """Same architecture, other weights, the same key forced through the C
    API: the checks of the model's size, graph and sampled weights refuse it."""
    a, b = tmp_path / "a.tinf", tmp_path / "b.tinf"
    make_model(a, seed=1)
    ref_b = make_model(b, seed=2)
    assert a.stat().st_size == b.stat().st_size
    img = tmp_path / "a.pack"
    _write_image(a, img, b"k" * 32)
    h, state, from_image, packed, note = _load_c(a, img, b"k" * 32)
    L.tinf_model_free(h)
    assert (state, from_image, packed) == (1, 3, 0)
    h, state, from_image, packed, note = _load_c(b, img, b"k" * 32)
    try:
        assert (state, packed) == (3, 3) and "weights" in note, note
        with tinyinfer.load(b, prepack_cache=False) as m:
            x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype(np.float32)
            np.testing.assert_allclose(m.run(x)[0], ref_b(x), rtol=1e-4, atol=1e-3)
    finally:
        L.tinf_model_free(h)


def test_ops_the_image_lists_skip_the_sparse_scan_unless_it_is_refused(tmp_path):
    """A load skips the sparse-weight scan of the ops the image lists (a load
    with the same key packed them dense); when the image is then refused,
    those ops get the sparse form a load without the image gives them. Here
    the image of a dense model is forced (same key) on a model whose middle
    FullyConnected is 90% zeros: refused (the file differs: its zeros are
    stored sparse), and that op still runs on the sparse kernel, with
    numpy's results."""
    a, b = tmp_path / "a.tinf", tmp_path / "b.tinf"
    make_model(a, seed=1)
    ref_b = make_model(b, seed=1, sparse_w2=True)
    img = tmp_path / "a.pack"
    _write_image(a, img, b"k" * 32)
    with tinyinfer.load(b, prepack_cache=False) as plain:
        sparse_lines = [p for p in plain.passes if p.startswith("sparse kernel")]
        assert len(sparse_lines) == 1 and "FullyConnected" in sparse_lines[0]
    h, state, from_image, packed, note = _load_c(b, img, b"k" * 32)
    m = tinyinfer.Model(h)
    try:
        assert (state, packed) == (3, 2), (state, packed, note)   # refused; 2 ops packed, 1 sparse
        assert [p for p in m.passes if p.startswith("sparse kernel")] == sparse_lines
        x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype(np.float32)
        np.testing.assert_allclose(m.run(x)[0], ref_b(x), rtol=1e-4, atol=1e-3)
    finally:
        m.close()
    # the dense model's own cached load: a hit, with nothing scanned or packed
    h, state, from_image, packed, note = _load_c(a, img, b"k" * 32)
    L.tinf_model_free(h)
    assert (state, from_image, packed) == (1, 3, 0)


def test_stale_image_after_the_model_changed(model, folder):
    path, x, _ = model
    _, st1 = run(path, x)
    old_image = st1["image"]
    reference = make_model(path, seed=5)  # the same file rewritten with other weights
    y, st = run(path, x)
    assert st["state"] == "miss" and st["image"] != old_image  # another content, another key
    np.testing.assert_allclose(y, reference(x), rtol=1e-4, atol=1e-3)
    # the old image put where the new one goes: refused (its key), not trusted
    os.replace(old_image, st["image"])
    y2, st2 = run(path, x)
    assert st2["state"] == "rejected" and "another key" in st2["note"]
    assert y2.tobytes() == y.tobytes()


def test_absent_image_is_a_miss_not_an_error(tmp_path):
    path = tmp_path / "m.tinf"
    make_model(path)
    h, state, from_image, packed, note = _load_c(path, tmp_path / "none.pack", b"")
    L.tinf_model_free(h)
    assert (state, from_image, packed) == (2, 0, 3) and "No such file" in note


@pytest.mark.parametrize("flip", [None, "first", "middle", "last"])
def test_large_image_checksummed_beside_the_parsing(tmp_path, folder, flip):
    """Images of 1 MB and more are checksummed on a thread of their own
    while the graph is parsed (PrepackImage.open): a flipped byte anywhere
    in the payload is still refused, an intact image still used."""
    path = tmp_path / "big.tinf"
    make_model(path, hidden=400)  # w2: 400 x 864 floats, an image of about 1.4 MB
    x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype(np.float32)
    want, _ = run(path, x, prepack_cache=False)
    run(path, x)
    img = _image(folder)
    assert img.stat().st_size >= 1 << 20
    if flip is not None:
        blob = bytearray(img.read_bytes())
        at = {"first": 384 + 5, "middle": len(blob) // 2, "last": len(blob) - 1}[flip]  # 384: the first packed floats
        blob[at] ^= 0x80
        img.write_bytes(bytes(blob))
    y, st = run(path, x)
    if flip is None:
        assert st["state"] == "hit" and st["from_image"] == 3, st
    else:
        assert st["state"] == "rejected" and "checksum" in st["note"], st
    assert y.tobytes() == want.tobytes()


def test_image_checksum_matches_the_python_transcription(tmp_path, folder):
    """The image's checksum (header bytes 24..32) is ti_hash64_chunked of
    bytes 32..end: 256 KB chunks, chunk i hashed with seed i, folded in
    order (computed here from test_subgraph's transcription of ti_hash64),
    whether the load's thread or the load itself hashed each chunk."""
    from test_subgraph import HP1, HP3, M64, _mix64, reference_hash64
    path = tmp_path / "big.tinf"
    make_model(path, hidden=400)  # an image of about 1.4 MB: 6 chunks, the last one short
    x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype(np.float32)
    run(path, x)
    blob = _image(folder).read_bytes()
    body, chunk = blob[32:], 256 << 10
    assert len(body) > 4 * chunk and len(body) % chunk
    n = (len(body) - 1) // chunk + 1
    acc = (len(body) * HP1) & M64
    for i in range(n):
        acc = (_mix64(acc ^ reference_hash64(body[i * chunk:(i + 1) * chunk], i)) + HP3) & M64
    assert struct.unpack_from("<Q", blob, 24)[0] == _mix64(acc ^ n)
    _, st = run(path, x)
    assert st["state"] == "hit", st


@pytest.mark.parametrize("rows", [1, 2])
def test_large_head_of_one_row_is_not_packed(tmp_path, rows):
    """A FullyConnected of 1 MB of weights or more on one row (a
    classifier's head) runs on the weights as they are: the load does not
    pack it (nor list it in the image); a session of several rows packs its
    own copy; every session gives numpy's result. With two rows in the
    file the load packs it as before."""
    rng = np.random.default_rng(5)
    k, n = 640, 512  # 1.25 MB of float32 weights
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    b = tinyinfer.GraphBuilder("head")
    x = b.input("x", (rows, k))
    b.output(b.op("FullyConnected", x, b.const("w", w), b.const("b", bias), activation=1))
    path = tmp_path / "head.tinf"
    b.save(str(path))
    with tinyinfer.load(path, prepack_cache=False) as m:
        assert m.prepack["packed_at_load"] == (0 if rows == 1 else 1)
        for batch in (rows, 3, 8):
            xs = rng.standard_normal((batch, k)).astype(np.float32)
            (y,) = m.run(xs)
            want = np.maximum(xs.astype(np.float64) @ w.T.astype(np.float64) + bias, 0)
            np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def test_failed_load_with_a_large_image_started(tmp_path):
    """A model file that fails to parse after its image was opened (and its
    checksum thread started) is a clean error, many times over."""
    good = tmp_path / "big.tinf"
    make_model(good, hidden=400)
    h = _lib.ModelHandle()
    L.tinf_model_load_file(os.fsencode(good), byref(h))
    try:
        n = c_size_t()
        L.tinf_model_prepack_image(h, b"k", 1, None, 0, byref(n))
        image = bytearray(n.value)
        L.tinf_model_prepack_image(h, b"k", 1, (ctypes.c_uint8 * n.value).from_buffer(image), n.value, byref(n))
    finally:
        L.tinf_model_free(h)
    pack = tmp_path / "big.pack"
    pack.write_bytes(bytes(image))
    assert len(image) >= 1 << 20
    bad = tmp_path / "bad.tinf"
    blob = bytearray(good.read_bytes())
    bad.write_bytes(bytes(blob[:200]))  # the header promises more than the file holds
    for _ in range(20):
        h = _lib.ModelHandle()
        with pytest.raises(tinyinfer.TinyInferError):
            L.tinf_model_load_file_prepacked(os.fsencode(bad), 0, os.fsencode(pack), b"k", 1, byref(h))
    # and the image itself is still good for the good model
    h2, state, from_image, packed, note = _load_c(good, pack, b"k")
    L.tinf_model_free(h2)
    assert (state, from_image, packed) == (1, 3, 0), note


def test_c_api_argument_checks(tmp_path):
    path = tmp_path / "m.tinf"
    make_model(path)
    h = _lib.ModelHandle()
    with pytest.raises(tinyinfer.InvalidArgumentError, match="at most 64"):
        L.tinf_model_load_file_prepacked(os.fsencode(path), 0, b"/nonexistent.pack", b"k" * 65, 65, byref(h))
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_load_file_prepacked(os.fsencode(path), 0, b"/x.pack", None, 4, byref(h))
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_prepack_info(None, None, None, None)
    L.tinf_model_load_file_flags(os.fsencode(path), 0, byref(h))
    try:
        n = c_size_t()
        L.tinf_model_prepack_image(h, None, 0, None, 0, byref(n))
        assert n.value > 256
        small = bytearray(n.value - 1)
        with pytest.raises(tinyinfer.InvalidArgumentError, match="exactly"):
            L.tinf_model_prepack_image(h, None, 0, (ctypes.c_uint8 * len(small)).from_buffer(small), len(small),
                                       byref(n))
        with pytest.raises(tinyinfer.InvalidArgumentError):
            L.tinf_model_prepack_image(h, None, 0, None, 0, None)
    finally:
        L.tinf_model_free(h)
    assert L.tinf_prepack_layout_version() >= 1


def test_model_without_packed_weights_writes_nothing(folder):
    b = tinyinfer.GraphBuilder()
    x = b.input("x", (1, 4))
    b.output(b.op("Tanh", x))
    with tinyinfer.load(b.to_bytes()) as m:
        assert m.prepack["state"] == "miss" and not m.prepack["written"]
        assert "no weights" in m.prepack["write_note"]
        np.testing.assert_allclose(m.run(np.ones((1, 4), np.float32))[0], np.tanh(np.ones((1, 4))), rtol=1e-6)
    assert packs(folder) == []


def test_disabled_cache_writes_nothing(model, folder, monkeypatch):
    path, x, _ = model
    _, st = run(path, x, prepack_cache=False)
    assert st["state"] == "off" and not os.path.exists(folder)
    monkeypatch.setenv("TINYINFER_PREPACK_CACHE", "0")
    _, st = run(path, x)
    assert st["state"] == "off" and not os.path.exists(folder)
    assert not prepack_cache.stats()["enabled"]


def test_other_folder_option(model, folder, tmp_path):
    path, x, _ = model
    other = tmp_path / "elsewhere"
    _, st = run(path, x, prepack_cache=other)
    assert st["written"] and len(packs(other)) == 1 and not os.path.exists(folder)
    _, st = run(path, x, prepack_cache=str(other))
    assert st["state"] == "hit"


def test_unwritable_folder_load_still_works(model, tmp_path, monkeypatch):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(blocker / "cache"))
    y, st = run(path, x)
    assert st["state"] == "miss" and not st["written"] and "cannot write" in st["write_note"]
    assert y.tobytes() == want.tobytes()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_load_still_works(model, folder):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    folder.mkdir()
    folder.chmod(0o500)
    try:
        y, st = run(path, x)
    finally:
        folder.chmod(0o700)
    assert not st["written"] and "cannot write" in st["write_note"] and y.tobytes() == want.tobytes()


def test_full_cache_load_still_works(model, folder, monkeypatch):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    monkeypatch.setenv("TINYINFER_CACHE_MAX_BYTES", "1000")  # smaller than the image
    y, st = run(path, x)
    assert not st["written"] and "bound" in st["write_note"] and y.tobytes() == want.tobytes()
    assert packs(folder) == []


def test_bound_evicts_least_recently_used(tmp_path, folder, monkeypatch):
    a, b = tmp_path / "a.tinf", tmp_path / "b.tinf"
    make_model(a, seed=1)
    make_model(b, seed=2)
    x = np.zeros((2, 6, 6, 3), np.float32)
    _, sa = run(a, x)
    size = os.path.getsize(sa["image"])
    monkeypatch.setenv("TINYINFER_CACHE_MAX_BYTES", str(size + size // 2))  # room for one image (and refs)
    os.utime(sa["image"], (1, 1))  # the oldest
    _, sb = run(b, x)
    assert sb["written"] and os.path.exists(sb["image"]) and not os.path.exists(sa["image"])
    assert os.path.getsize(sb["image"]) + sum(e.size for e in cache.entries("prepack-ref")) <= size + size // 2


def test_concurrent_writers_leave_one_valid_image(model, folder):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    env = dict(os.environ, PYTHONPATH=PYTHON)
    code = ("import sys, numpy as np, tinyinfer\n"
            "for i in range(3):\n"
            "    m = tinyinfer.load(sys.argv[1])\n"
            "    y = m.run(np.load(sys.argv[2]))[0]\n"
            "    assert y.tobytes() == np.load(sys.argv[3]).tobytes(), m.prepack\n"
            "    assert m.prepack['state'] in ('miss', 'hit'), m.prepack\n"
            "    m.close()\n")
    np.save(folder.parent / "x.npy", x)
    np.save(folder.parent / "want.npy", want)
    for _ in range(2):
        cache.clear()
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(folder.parent / "x.npy"),
                                   str(folder.parent / "want.npy")], env=env, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        assert len(packs(folder)) == 1
        assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]
        y, st = run(path, x)
        assert st["state"] == "hit" and y.tobytes() == want.tobytes()


def test_cli_and_info_show_prepack_entries(model, folder):
    path, x, _ = model
    run(path, x)
    info = tinyinfer.info()["cache"]
    assert info["folder"] == str(folder) and info["prepack"]["images"] == 1 and info["prepack"]["refs"] == 1
    env = dict(os.environ, PYTHONPATH=PYTHON)
    ls = subprocess.run([sys.executable, "-m", "tinyinfer", "cache", "ls"], env=env, capture_output=True, text=True)
    assert ls.returncode == 0 and " prepack " in ls.stdout and "prepack-ref" in ls.stdout, ls.stdout
    clear = subprocess.run([sys.executable, "-m", "tinyinfer", "cache", "clear"], env=env, capture_output=True,
                           text=True)
    assert clear.returncode == 0 and "removed 2 entries" in clear.stdout
    assert packs(folder) == [] and tinyinfer.info()["cache"]["prepack"]["images"] == 0


def _head_model(path, sparse_head=False):
    """Conv2D 3x3 (packed) -> reshape -> a one-row FullyConnected of 1.1 MB
    (a classifier head: not packed, read in place; sparse_head: 97% of its
    weights are zero, so it runs on the sparse kernel: a clear case, not
    timed at load, Runtime/SparseMeasure.swift)."""
    rng = np.random.default_rng(11)
    w1 = rng.standard_normal((24, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((320, 6 * 6 * 24)).astype(np.float32)
    if sparse_head:
        w2[np.random.default_rng(12).random(w2.shape) < 0.97] = 0
    b = tinyinfer.GraphBuilder("head")
    x = b.input("x", (1, 6, 6, 3))
    c = b.op("Conv2D", x, b.const("w1", w1), padding=1)
    r = b.op("Reshape", c, shape=[1, 6 * 6 * 24])
    b.output(b.op("FullyConnected", r, b.const("w2", w2)))
    b.save(str(path))
    return lambda xv: ref.fully_connected(ref.conv2d(xv, w1, None, padding=1).reshape(1, -1), w2)


def _scanned(image: bytes):
    """The op indices of an image's scanned-ops table (PrepackImage.swift's layout)."""
    entries, scanned = struct.unpack_from("<I", image, 32)[0], struct.unpack_from("<I", image, 136)[0]
    return list(struct.unpack_from(f"<{scanned}I", image, 256 + 32 * entries))


def test_image_lists_the_scanned_head_and_a_cached_load_skips_its_scan(tmp_path):
    """The image names the unpacked head a load scanned and kept dense; a
    cached load takes it from there (a hit: nothing packed, the head dense,
    numpy's results). A pruned head is not listed: its cached load scans it
    and runs it sparse as before. A table naming a packed op is refused."""
    x = np.random.default_rng(13).standard_normal((1, 6, 6, 3)).astype(np.float32)
    for sparse_head in (False, True):
        path = tmp_path / f"head{int(sparse_head)}.tinf"
        reference = _head_model(path, sparse_head)
        img = tmp_path / f"head{int(sparse_head)}.pack"
        _write_image(path, img, b"h" * 32)
        image = img.read_bytes()
        assert _scanned(image) == ([] if sparse_head else [2]), _scanned(image)
        h, state, from_image, packed, note = _load_c(path, img, b"h" * 32)
        m = tinyinfer.Model(h)
        try:
            assert (state, from_image, packed) == (1, 1, 0), (state, from_image, packed, note)
            sparse_lines = [p for p in m.passes if p.startswith("sparse kernel")]
            assert len(sparse_lines) == (1 if sparse_head else 0), m.passes
            np.testing.assert_allclose(m.run(x)[0], reference(x), rtol=1e-4, atol=1e-3)
        finally:
            m.close()
    # the dense head's image forced on the pruned model: refused (another
    # graph), and the head it lists is scanned after all: sparse, right results
    reference = _head_model(tmp_path / "head1.tinf", True)
    h, state, from_image, packed, note = _load_c(tmp_path / "head1.tinf", tmp_path / "head0.pack", b"h" * 32)
    m = tinyinfer.Model(h)
    try:
        assert state == 3 and packed == 1, (state, packed, note)
        assert len([p for p in m.passes if p.startswith("sparse kernel")]) == 1, m.passes
        np.testing.assert_allclose(m.run(x)[0], reference(x), rtol=1e-4, atol=1e-3)
    finally:
        m.close()
    # a scanned-ops table naming the packed Conv2D (op 0): refused, and the load packs as usual
    image = bytearray((tmp_path / "head0.pack").read_bytes())
    entries = struct.unpack_from("<I", image, 32)[0]
    struct.pack_into("<I", image, 256 + 32 * entries, 0)
    bad = tmp_path / "bad.pack"
    bad.write_bytes(bytes(image))
    h, state, from_image, packed, note = _load_c(tmp_path / "head0.tinf", bad, b"h" * 32)
    L.tinf_model_free(h)
    assert (state, packed) == (3, 1) and "scanned op 0" in note, (state, packed, note)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_forked_while_the_head_is_mapped_frees_the_model(tmp_path):
    """A model whose large one-row head has its pages mapped by a thread of
    its own (still running when load returns: it takes about a millisecond
    here), then a fork at once (a multiprocessing pool started after a
    load): the child, which has no such thread, frees the model and exits
    cleanly within the deadline, and the parent's model still runs."""
    k, n = 4096, 2048  # 32 MB of weights: their thread runs for milliseconds
    b = tinyinfer.GraphBuilder("bighead")
    x = b.input("x", (1, k))
    b.output(b.op("FullyConnected", x, b.const("w", np.ones((n, k), np.float32))))
    path = tmp_path / "bighead.tinf"
    b.save(str(path))
    for _ in range(3):
        m = tinyinfer.load(path, prepack_cache=False)
        pid = os.fork()
        if pid == 0:  # the child: free the model, then leave without Python's exit handlers
            status = 1  # an exception in close leaves 1, which the parent's assertion reports
            try:
                m.close()
                status = 0
            finally:
                os._exit(status)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung freeing the model")
            time.sleep(0.01)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        (y,) = m.run(np.ones((1, k), np.float32))
        assert np.all(y == k)
        m.close()


# ---- the library's own lookup (tinf_model_load_file_cached) ------------------

def _c_key(*parts):
    """tinf_cache_key of the parts (the library's SHA-256)."""
    bufs = [ctypes.create_string_buffer(p, len(p)) for p in parts]
    ptrs = (ctypes.c_void_p * max(len(parts), 1))(*[ctypes.addressof(b) for b in bufs])
    sizes = (c_size_t * max(len(parts), 1))(*[len(p) for p in parts])
    out = ctypes.create_string_buffer(32)
    L.tinf_cache_key(ptrs, sizes, len(parts), out)
    return out.raw.hex()


def test_library_cache_key_is_the_packages_key():
    """The library's SHA-256 of length-prefixed parts against tinyinfer.cache.key (hashlib)."""
    rng = np.random.default_rng(3)
    for sizes in ([], [0], [1], [47], [48], [55], [56], [63], [64], [65], [119, 1], [0, 0, 200], [1000, 3],
                  list(rng.integers(0, 300, 6)), [4096 + 17]):
        parts = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in sizes]
        assert _c_key(*parts) == cache.key(*parts)
    # SHA-256's own test vector, through one part whose prefix is known
    assert _c_key(b"abc") == __import__("hashlib").sha256(struct.pack("<Q", 3) + b"abc").hexdigest()
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_cache_key((ctypes.c_void_p * 1)(None), (c_size_t * 1)(4), 1, ctypes.create_string_buffer(32))
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_cache_key(None, None, -1, ctypes.create_string_buffer(32))


def _c_cached(path, folder):
    h = _lib.ModelHandle()
    L.tinf_model_load_file_cached(os.fsencode(path), 0, None if folder is None else os.fsencode(folder), byref(h))
    state, from_image, packed = c_int32(), c_int32(), c_int32()
    L.tinf_model_prepack_info(h, byref(state), byref(from_image), byref(packed))
    L.tinf_model_free(h)
    return state.value, from_image.value, packed.value


def test_library_finds_the_image_the_package_wrote(model, folder, tmp_path):
    path, x, _ = model
    assert _c_cached(path, None) == (0, 0, 3)  # no .ref yet: nothing looked for, nothing written
    assert packs(folder) == []
    run(path, x)  # the package hashes the file, writes the .ref and the image
    assert _c_cached(path, None) == (1, 3, 0)  # the default folder (TINYINFER_CACHE_DIR)
    assert _c_cached(path, folder) == (1, 3, 0)
    assert _c_cached(path, b"") == (0, 0, 3)  # "": no cache
    assert _c_cached(path, tmp_path / "elsewhere") == (0, 0, 3)


def test_library_lookup_follows_the_environment(model, folder, monkeypatch):
    path, x, _ = model
    run(path, x)
    for off in ("0", " OFF ", "no", "False"):
        monkeypatch.setenv("TINYINFER_PREPACK_CACHE", off)
        assert _c_cached(path, None) == (0, 0, 3)
        assert run(path, x)[1]["state"] == "off"
    monkeypatch.setenv("TINYINFER_PREPACK_CACHE", "1")
    assert _c_cached(path, None) == (1, 3, 0)
    # the default folder moves with TINYINFER_CACHE_DIR, as the package's does
    monkeypatch.chdir(folder.parent)
    monkeypatch.setenv("TINYINFER_CACHE_DIR", "x/../" + folder.name)
    assert cache.cache_dir() == str(folder) and _c_cached(path, None) == (1, 3, 0)


@pytest.mark.parametrize("damage", ["missing", "garbage", "short", "upper"])
def test_missing_or_damaged_ref_is_a_miss_and_rewritten(model, folder, damage):
    path, x, _ = model
    want, _ = run(path, x, prepack_cache=False)
    run(path, x)
    (ref_file,) = [folder / n for n in os.listdir(folder) if n.endswith(".ref")]
    digest = ref_file.read_bytes()
    if damage == "missing":
        ref_file.unlink()
    else:
        ref_file.write_bytes({"garbage": b"z" * 64, "short": digest[:63], "upper": digest.upper()}[damage])
    y, st = run(path, x)
    assert st["state"] == "miss" and "no image yet" in st["note"] and st["packed_at_load"] == 3
    assert ref_file.read_bytes() == digest and y.tobytes() == want.tobytes()
    y2, st2 = run(path, x)
    assert st2["state"] == "hit" and y2.tobytes() == want.tobytes()
    ref_file.write_bytes(digest + b"\n")  # a newline after the digest is read as the package reads it
    assert run(path, x)[1]["state"] == "hit"


def test_hit_marks_the_image_recently_used(model, folder):
    path, x, _ = model
    _, st = run(path, x)
    os.utime(st["image"], (1_000_000, 1_000_000))
    _, st2 = run(path, x)
    assert st2["state"] == "hit" and os.stat(st2["image"]).st_mtime > time.time() - 600


def test_changed_file_is_not_served_the_old_image(model, folder):
    """Another identity (the file rewritten) has no .ref: the library looks for nothing."""
    path, x, _ = model
    run(path, x)
    reference = make_model(path, seed=9)
    assert _c_cached(path, None)[0] == 0
    y, st = run(path, x)
    assert st["state"] == "miss"
    np.testing.assert_allclose(y, reference(x), rtol=1e-4, atol=1e-3)


def test_library_lookup_argument_checks(model, tmp_path):
    path, _, _ = model
    h = _lib.ModelHandle()
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_load_file_cached(None, 0, None, byref(h))
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_load_file_cached(os.fsencode(path), 0, None, None)
    with pytest.raises(tinyinfer.InvalidArgumentError):
        L.tinf_model_load_file_cached(os.fsencode(path), 1 << 20, None, byref(h))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(tinyinfer.TinyInferIOError):
        L.tinf_model_load_file_cached(os.fsencode(fifo), 0, None, byref(h))
    with pytest.raises(tinyinfer.TinyInferIOError):
        tinyinfer.load(str(fifo))


def test_c_program_writes_what_a_cached_load_maps(tmp_path, folder):
    """tests/c/prepack_cache.c (strict C99): the cache from C alone. A cached
    load misses, tinf_model_save_prepack_cached writes the .ref and the image,
    the next cached load maps it with the same outputs bit for bit, a save
    after a hit writes nothing, four threads saving at once leave a valid
    image, and bad arguments and an unwritable folder are refused. The
    files are the package's: a Python load of the same file then hits the
    image the C program wrote, and no temporary file is left."""
    import subprocess
    from test_c_programs import CC, compile_c
    if CC is None:
        pytest.skip("no C compiler")
    exe = compile_c("tests/c/prepack_cache.c", tmp_path / "prepack_cache", pedantic=True)
    path = tmp_path / "m.tinf"
    reference = make_model(path)
    other = tmp_path / "other.tinf"
    make_model(other, hidden=48)
    assert os.path.getsize(other) != os.path.getsize(path)
    (tmp_path / "a-file").write_bytes(b"x")  # a "folder" below a file: cannot be made, even by root
    p = subprocess.run([exe, str(path), str(other), str(folder), str(tmp_path / "a-file" / "cache")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stdout[-2000:] + p.stderr[-4000:]
    assert len(packs(folder)) == 1 and len([n for n in os.listdir(folder) if n.endswith(".ref")]) == 1
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]
    # the C program's input pattern, through the reference
    info = None
    with tinyinfer.load(path) as m:
        assert m.prepack["state"] == "hit"
        info = m.inputs[0]
        x = np.array([((i % 13) - 6) * 0.125 for i in range(int(np.prod(info.shape)))], np.float32)
        x = x.reshape(info.shape)
        got = m.run(x)[0]
    c_out = np.array([float(v) for v in p.stdout.split()[:-1]], np.float32)
    np.testing.assert_array_equal(c_out, got.reshape(-1))
    np.testing.assert_allclose(got, reference(x), rtol=1e-4, atol=1e-4)


def c_load_and_save(path, where):
    """A plain load of `path` through the C API, then tinf_model_save_prepack_cached into `where`: its out_written."""
    h = _lib.ModelHandle()
    L.tinf_model_load_file_flags(os.fsencode(path), 0, byref(h))
    try:
        written = ctypes.c_int32(-1)
        L.tinf_model_save_prepack_cached(h, os.fsencode(path), 0, os.fsencode(where), byref(written))
        return written.value
    finally:
        L.tinf_model_free(h)


def test_c_save_trims_the_folder_to_its_bound(tmp_path, folder, monkeypatch):
    """tinf_model_save_prepack_cached keeps the folder under
    TINYINFER_CACHE_MAX_BYTES as the package does: the least recently used
    entries of every kind go first, never the image just written; a crashed
    writer's temporary file older than an hour goes, a fresh one (a writer
    at work) stays; files that are not entries are left alone."""
    path = tmp_path / "m.tinf"
    make_model(path)
    folder.mkdir(parents=True)
    old = []
    for i, suffix in enumerate([".pack", ".bin", ".ref"]):
        f = folder / (f"{i:064x}" + suffix)
        f.write_bytes(b"\0" * 4096)
        os.utime(f, (1000 + i, 1000 + i))
        old.append(f)
    stale = folder / ".tmp-crashed"
    stale.write_bytes(b"x")
    os.utime(stale, (1000, 1000))
    fresh = folder / ".tmp-writing"
    fresh.write_bytes(b"x")
    other = folder / "notes.txt"
    other.write_bytes(b"\0" * 100000)
    os.utime(other, (1000, 1000))
    h = _lib.ModelHandle()
    L.tinf_model_load_file_flags(os.fsencode(path), 0, byref(h))
    try:
        n = c_size_t()
        L.tinf_model_prepack_image(h, None, 0, None, 0, byref(n))
        # room for the new image and .ref and one old entry, not for all three
        monkeypatch.setenv("TINYINFER_CACHE_MAX_BYTES", str(n.value + 64 + 4096))
        written = ctypes.c_int32(-1)
        L.tinf_model_save_prepack_cached(h, os.fsencode(path), 0, os.fsencode(folder), byref(written))
        assert written.value == 1
    finally:
        L.tinf_model_free(h)
    left = set(os.listdir(folder))
    assert [f.name for f in old if f.name in left] == [old[2].name]  # the two oldest went, the newest old one stays
    assert len(packs(folder)) == 1 and ".tmp-writing" in left and ".tmp-crashed" not in left
    assert "notes.txt" in left
    with tinyinfer.load(path) as m:
        assert m.prepack["state"] == "hit"
    # a bound smaller than the image alone: the image is still kept (it is never trimmed away)
    monkeypatch.setenv("TINYINFER_CACHE_MAX_BYTES", "1")
    os.remove(folder / packs(folder)[0])
    assert c_load_and_save(path, folder) == 1
    assert len(packs(folder)) == 1 and not [n for n in os.listdir(folder) if n.endswith((".bin", ".ref"))]


def test_c_save_makes_missing_folders(tmp_path):
    """The folder given to tinf_model_save_prepack_cached and its missing
    parents are made (as os.makedirs), and a Python load from it then hits."""
    path = tmp_path / "m.tinf"
    make_model(path)
    where = tmp_path / "a" / "b" / "cache"
    assert c_load_and_save(path, where) == 1
    assert len(packs(where)) == 1 and os.stat(where).st_mode & 0o777 == 0o700
    with tinyinfer.load(path, prepack_cache=str(where)) as m:
        assert m.prepack["state"] == "hit"
