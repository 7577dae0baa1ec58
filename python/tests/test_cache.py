"""tinyinfer.cache: round trips, corrupt entries ignored, LRU bound, atomic
and concurrent writes, the folder rules, and `python -m tinyinfer cache`."""

import ctypes
import hashlib
import multiprocessing
import os
import struct
import subprocess
import sys
import time

import pytest

from tinyinfer import cache
from tinyinfer._lib import lib

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def folder(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(d))
    monkeypatch.delenv("TINYINFER_CACHE_MAX_BYTES", raising=False)
    return d


def test_folder_rules(tmp_path, monkeypatch, folder):
    assert cache.cache_dir() == str(folder)
    monkeypatch.delenv("TINYINFER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == str(tmp_path / "xdg" / "tinyinfer")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == str(tmp_path / "home" / ".cache" / "tinyinfer")
    assert cache.max_bytes() == cache.DEFAULT_MAX_BYTES == 1 << 30
    monkeypatch.setenv("TINYINFER_CACHE_MAX_BYTES", "12345")
    assert cache.max_bytes() == 12345


def test_round_trip_and_file_layout(folder):
    k = cache.key(b"source", "options", b"v1")
    assert k == cache.key(b"source", "options", b"v1") and len(k) == 64
    assert k != cache.key(b"sourceoptions", b"", b"v1")  # parts are length-prefixed
    assert cache.get(k) is None
    assert not folder.exists()  # nothing is made by a miss
    payload = os.urandom(1000)
    assert cache.put(k, payload)
    assert cache.get(k) == payload
    raw = (folder / (k + ".bin")).read_bytes()
    magic, size, digest = struct.unpack_from("<8sQ32s", raw)
    h = ctypes.c_uint64()
    lib.tinf_hash64(payload, len(payload), 0, ctypes.byref(h))
    assert magic == b"TINFCAC3" and size == 1000 and digest == struct.pack("<Q", h.value) + bytes(24)
    assert raw[48:64] == bytes(16) and raw[64:] == payload
    assert [e.key for e in cache.entries()] == [k] and cache.entries()[0].size == 1064
    assert sorted(os.listdir(folder)) == [k + ".bin"]  # no temporary file left
    # aligned=True: the same payload as a 64-byte aligned uint8 array (the file mapped, read-only)
    a = cache.get(k, aligned=True)
    assert a.ctypes.data % 64 == 0 and a.tobytes() == payload and not a.flags.writeable
    # a damaged mapped entry is a miss, and removed
    bad = bytearray(raw)
    bad[500] ^= 1
    (folder / (k + ".bin")).write_bytes(bytes(bad))
    assert cache.get(k, aligned=True) is None and not (folder / (k + ".bin")).exists()


def test_second_layout_entries_are_still_read(folder):
    # an entry written with the 48-byte header of the second layout (TINFCAC2) is a hit, aligned or not
    k = cache.key(b"second")
    payload = os.urandom(700)
    h = ctypes.c_uint64()
    lib.tinf_hash64(payload, len(payload), 0, ctypes.byref(h))
    folder.mkdir()
    (folder / (k + ".bin")).write_bytes(
        struct.pack("<8sQ32s", b"TINFCAC2", len(payload), struct.pack("<Q", h.value) + bytes(24)) + payload)
    assert cache.get(k) == payload
    a = cache.get(k, aligned=True)
    assert a.ctypes.data % 64 == 0 and a.tobytes() == payload


def test_first_layout_entries_are_still_read(folder):
    # an entry written by the first layout (sha256 checksum) is a hit; a damaged one is a miss
    k = cache.key(b"old")
    payload = os.urandom(300)
    folder.mkdir()
    p = folder / (k + ".bin")
    p.write_bytes(struct.pack("<8sQ32s", b"TINFCACH", len(payload), hashlib.sha256(payload).digest()) + payload)
    assert cache.get(k) == payload
    assert cache.get(k, aligned=True).tobytes() == payload
    raw = bytearray(p.read_bytes())
    raw[60] ^= 1
    p.write_bytes(bytes(raw))
    assert cache.get(k) is None and not p.exists()


@pytest.mark.parametrize("aligned", [False, True])
def test_checksum_padding_must_be_zero(folder, aligned):
    k = cache.key(b"pad")
    cache.put(k, b"abc" * 100)
    p = folder / (k + ".bin")
    raw = bytearray(p.read_bytes())
    raw[40] = 1                                     # in the 24 zero bytes after the 64-bit checksum
    p.write_bytes(bytes(raw))
    assert cache.get(k, aligned=aligned) is None


def test_file_content_hash_through_the_identity(folder, tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x" * 5000)
    assert cache.file_content_hash(str(f)) == hashlib.sha256(b"x" * 5000).hexdigest()
    assert [e.kind for e in cache.entries(None)] == ["prepack-ref"]
    # the ref answers for the unchanged file: a planted ref is believed (the file is not read again) ...
    ref = cache.entries("prepack-ref")[0].path
    with open(ref, "wb") as w:
        w.write(b"0" * 64)
    assert cache.file_content_hash(str(f)) == "0" * 64
    # ... and a changed file has another identity: hashed again
    time.sleep(0.01)
    f.write_bytes(b"y" * 5000)
    assert cache.file_content_hash(str(f)) == hashlib.sha256(b"y" * 5000).hexdigest()
    assert cache.file_content_hash(str(tmp_path / "missing")) is None
    assert cache.file_content_hash(str(tmp_path)) is None      # a folder


@pytest.mark.parametrize("damage", ["truncate_header", "truncate_payload", "flip_payload", "flip_digest",
                                    "bad_magic", "bad_size", "empty", "extra_byte"])
def test_corrupt_entries_are_ignored_and_removed(folder, damage):
    k = cache.key(b"x")
    payload = bytes(range(256)) * 4
    cache.put(k, payload)
    p = folder / (k + ".bin")
    raw = bytearray(p.read_bytes())
    if damage == "truncate_header":
        raw = raw[:20]
    elif damage == "truncate_payload":
        raw = raw[:-1]
    elif damage == "flip_payload":
        raw[100] ^= 1
    elif damage == "flip_digest":
        raw[20] ^= 1
    elif damage == "bad_magic":
        raw[0:8] = b"TINFCACX"
    elif damage == "bad_size":
        struct.pack_into("<Q", raw, 8, len(payload) + 1)
    elif damage == "empty":
        raw = b""
    elif damage == "extra_byte":
        raw += b"\0"
    p.write_bytes(bytes(raw))
    assert cache.get(k) is None
    assert not p.exists()
    assert cache.put(k, payload) and cache.get(k) == payload


def test_bad_keys_refused():
    for k in ["", "../escape", "a/b", "x" * 129, "sp ace", None]:
        with pytest.raises(ValueError):
            cache.get(k)


def test_lru_bound_by_mtime(folder, monkeypatch):
    monkeypatch.setenv("TINYINFER_CACHE_MAX_BYTES", str(3 * (64 + 100)))  # 64: the entry header
    keys = [cache.key(str(i)) for i in range(5)]
    now = time.time()
    for i, k in enumerate(keys[:3]):
        assert cache.put(k, bytes([i]) * 100)
        os.utime(folder / (k + ".bin"), (now - 100 + i, now - 100 + i))  # k0 oldest
    assert cache.get(keys[0]) == bytes([0]) * 100  # a hit makes k0 the most recently used
    assert cache.put(keys[3], b"3" * 100)  # over the bound: the least recently used (k1) goes
    present = {e.key for e in cache.entries()}
    assert present == {keys[0], keys[2], keys[3]}
    assert sum(e.size for e in cache.entries()) <= cache.max_bytes()
    assert cache.entries()[0].key in (keys[0], keys[3])
    # an entry larger than the whole bound is not written
    assert not cache.put(keys[4], b"x" * 1000)
    assert cache.get(keys[4]) is None


def test_clear_and_stale_temporary_files(folder):
    for i in range(3):
        cache.put(cache.key(str(i)), b"abc")
    stale = folder / ".tmp-crashed.bin"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = folder / ".tmp-writing.bin"
    fresh.write_bytes(b"partial")
    cache.put(cache.key("3"), b"abc")  # trimming removes a crashed writer's old temporary file only
    assert not stale.exists() and fresh.exists()
    assert len(cache.entries()) == 4
    assert cache.clear() == 4
    assert cache.entries() == [] and os.listdir(folder) == []


def test_unwritable_folder_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(blocker / "sub"))  # a folder under a file
    assert cache.put(cache.key("k"), b"data") is False
    assert cache.get(cache.key("k")) is None
    assert cache.entries() == [] and cache.clear() == 0


def _writer(args):
    folder, seed = args
    os.environ["TINYINFER_CACHE_DIR"] = folder
    from tinyinfer import cache as c
    shared = c.key("shared")
    bad = 0
    for i in range(40):
        c.put(shared, b"S" * 5000)
        c.put(c.key(f"own-{seed}-{i % 5}"), bytes([seed]) * (1000 + i))
        got = c.get(shared)
        if got is not None and got != b"S" * 5000:
            bad += 1
    return bad


def test_concurrent_writers(folder):
    """Processes writing one key and their own keys at once: every read is
    whole, every entry valid afterwards, no temporary file left."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        bad = pool.map(_writer, [(str(folder), s) for s in range(4)])
    assert bad == [0, 0, 0, 0]
    assert cache.get(cache.key("shared")) == b"S" * 5000
    names = os.listdir(folder)
    assert not [n for n in names if n.startswith(".tmp-")]
    for e in cache.entries():
        assert cache.get(e.key) is not None
    assert len(cache.entries()) == 1 + 4 * 5


def test_cli_ls_and_clear(folder):
    cache.put(cache.key("a"), b"12345")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    out = subprocess.run([sys.executable, "-m", "tinyinfer", "cache", "ls"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert str(folder) in out.stdout and cache.key("a") in out.stdout and "1 entry" in out.stdout
    out = subprocess.run([sys.executable, "-m", "tinyinfer", "cache", "clear"], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0 and "removed 1 entry" in out.stdout
    assert cache.entries() == []


def _python_rule():
    """The folder rule written with os.path (the independent reference of the library's tinf_cache_folder)."""
    d = os.environ.get("TINYINFER_CACHE_DIR")
    if d:
        return os.path.abspath(os.path.expanduser(d))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tinyinfer")


@pytest.mark.parametrize("value", ["rel/dir", "./a/../b/", "~", "~/x/y", "/abs//double/./dots/../z/",
                                   "//net/share", "///three", "~root/c", "~no_such_user_ti/x", "a/../../..",
                                   "/..", "."])
def test_folder_rule_matches_os_path(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home") + "/")
    monkeypatch.setenv("TINYINFER_CACHE_DIR", value)
    assert cache.cache_dir() == _python_rule()


@pytest.mark.parametrize("home", [None, "", "/", "/h//", "rel"])
@pytest.mark.parametrize("xdg", [None, "", "x/y", "/abs/"])
def test_default_folder_rule_matches_os_path(home, xdg, monkeypatch):
    monkeypatch.delenv("TINYINFER_CACHE_DIR")
    for name, value in (("HOME", home), ("XDG_CACHE_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert cache.cache_dir() == _python_rule()
