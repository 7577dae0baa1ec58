"""The on-disk cache of tinyinfer (converted models, and anything else keyed by content).

    from tinyinfer import cache
    k = cache.key(source_bytes, b"options", b"version")   # sha256 hex of the parts
    data = cache.get(k)                                    # bytes, or None (absent or corrupt)
    if data is None:
        data = make()
        cache.put(k, data)

Rules (docs/migrating.md, "The conversion cache"):

- Folder: `TINYINFER_CACHE_DIR`, else `$XDG_CACHE_HOME/tinyinfer`, else
  `~/.cache/tinyinfer` (`cache_dir()`).
- One file per entry, `<key>.bin`: a 64-byte header (magic `TINFCAC3`, the
  payload's size as u64 little-endian, its checksum: the library's 64-bit
  hash `tinf_hash64`, several GB/s, then 24 zero bytes, then 16 zero bytes)
  then the payload, which thus starts 64-byte aligned in the file:
  `get(k, aligned=True)` (tinyinfer.load's converted models) maps the file
  and hands the library the payload in place, no copy. `get` checks all of
  them and ignores (and removes) an entry that fails: a truncated or
  corrupt entry is a miss, never an error. Entries of the earlier layouts
  (a 48-byte header: magic `TINFCAC2`, the same fields; magic `TINFCACH`, a
  sha256 of the payload) are still read.
- `file_content_hash(path)`: the sha256 of a file's bytes through a small
  `<id>.ref` entry that maps the file's identity (device, inode, size,
  modification and change times in ns) to it, so an unchanged file is not
  read and hashed again (the conversion cache keys a source model by it,
  the prepack cache a .tinf).
- Writes are atomic (`_atomic.write_atomic`): a temporary file (`.tmp-*`) in
  the same folder, written, fsynced, then renamed over the entry
  (`os.replace`); entries are private to their user (mode 0600). Concurrent writers of one key
  each write their own temporary file; the last rename wins and both wrote the
  same bytes. Readers see the old or the new file, never a partial one.
- Bounded: after each `put`, the least recently used entries (by mtime; `get`
  touches the entry it returns) are removed until the total is at most
  `max_bytes()`: `TINYINFER_CACHE_MAX_BYTES`, default 1 GiB (DEFAULT_MAX_BYTES).
- Failures to write (read-only folder, full disk) are ignored: the cache is an
  optimization, the caller goes on with its data.
- The prepack cache (tinyinfer.prepack_cache) keeps its files in the same
  folder under the same bound: `<key>.pack` (packed weights, checked by the
  library itself) and `<key>.ref` (a model file's identity -> its content
  hash), written with `put_raw`; `entries(None)` lists every kind.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import stat
import struct
import time
from dataclasses import dataclass
from typing import List, Optional

from . import _lib
from ._atomic import write_atomic
from ._errors import TinyInferIOError

__all__ = ["cache_dir", "max_bytes", "key", "get", "put", "put_raw", "entry_path", "clear", "entries", "Entry",
           "file_content_hash", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB
MAGIC = b"TINFCAC3"          # the checksum is tinf_hash64's, then 24 zero bytes; a 64-byte header
MAGIC_48 = b"TINFCAC2"       # the second layout: the same in a 48-byte header
MAGIC_SHA256 = b"TINFCACH"   # the first layout: the checksum is the payload's sha256 (48-byte header)
_HEADER = struct.Struct("<8sQ32s16x")  # magic, payload size, checksum of the payload, zero: the payload at 64
_HEADER_48 = struct.Struct("<8sQ32s")  # the first two layouts' header
_SUFFIX = ".bin"
# file suffix -> kind of entry (Entry.kind)
KINDS = {_SUFFIX: "conversion", ".pack": "prepack", ".ref": "prepack-ref"}
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600  # a temporary file this old is a crashed writer's
_KEY = re.compile(r"^[0-9a-zA-Z_-]{1,128}$")


@dataclass(frozen=True)
class Entry:
    """One cache entry: its key, file, size in bytes (with the header) and last use (mtime, seconds)."""
    key: str
    path: str
    size: int
    mtime: float
    kind: str = "conversion"


def cache_dir() -> str:
    """The cache folder (not created until something is written):
    $TINYINFER_CACHE_DIR made absolute (a leading ~ or ~user expanded), else
    $XDG_CACHE_HOME/tinyinfer, else ~/.cache/tinyinfer. The library's rule
    (tinf_cache_folder), so that its cached loads look where this package writes."""
    buf = ctypes.create_string_buffer(8192)  # the library's bound on the folder's path
    _lib.lib.tinf_cache_folder(buf, len(buf), None)
    return os.fsdecode(buf.value)


def max_bytes() -> int:
    """The size bound: TINYINFER_CACHE_MAX_BYTES, else DEFAULT_MAX_BYTES."""
    v = os.environ.get("TINYINFER_CACHE_MAX_BYTES")
    if v:
        try:
            n = int(v)
        except ValueError:
            n = -1
        if n >= 0:
            return n
    return DEFAULT_MAX_BYTES


def key(*parts) -> str:
    """A key from the parts (bytes or str): the sha256 hex digest of them, length-prefixed."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else bytes(p)
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    return h.hexdigest()


def entry_path(k: str, suffix: str = _SUFFIX, folder: Optional[str] = None) -> str:
    """The file of entry `k` of the kind `suffix` (a key of KINDS) in `folder` (default cache_dir())."""
    if not isinstance(k, str) or not _KEY.match(k):
        raise ValueError(f"bad cache key {k!r}: 1 to 128 characters of [0-9a-zA-Z_-]")
    if suffix not in KINDS:
        raise ValueError(f"bad cache entry suffix {suffix!r}")
    return os.path.join(folder or cache_dir(), k + suffix)


def _path(k: str) -> str:
    return entry_path(k)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _checksum(payload) -> bytes:
    """The checksum field of the header: tinf_hash64 of the payload, then 24 zero bytes."""
    from ._lib import lib
    h = ctypes.c_uint64()
    if isinstance(payload, bytes):
        lib.tinf_hash64(payload, len(payload), 0, ctypes.byref(h))
    else:
        import numpy as np
        a = np.frombuffer(payload, np.uint8)  # (no ctypes array type per size: each costs tens of us)
        lib.tinf_hash64(a.ctypes.data if a.size else None, a.size, 0, ctypes.byref(h))
    return struct.pack("<Q", h.value) + bytes(24)


def get(k: str, aligned: bool = False):
    """The payload stored under key `k`, or None when absent or corrupt (a
    corrupt entry is removed). A hit marks the entry as recently used.
    aligned=True returns it as a 64-byte aligned read-only numpy uint8 array
    (what the library borrows without a copy) instead of bytes: the file
    mapped, not read (entries are replaced by renames, never rewritten, so
    the mapping stays valid), for the current layout; read into an aligned
    buffer for the earlier ones."""
    path = _path(k)
    try:
        with open(path, "rb") as f:
            n = os.fstat(f.fileno()).st_size
            blob = None
            if aligned and n > _HEADER.size:
                import mmap
                import numpy as np
                m = mmap.mmap(f.fileno(), n, access=mmap.ACCESS_READ)
                if m[:8] == MAGIC:
                    blob = np.frombuffer(m, np.uint8)  # page aligned: the payload at 64 is 64-byte aligned
                else:
                    m.close()
                    f.seek(0)
                    raw = np.empty(n + 128, np.uint8)
                    start = (-(raw.ctypes.data + _HEADER_48.size)) % 64  # the payload lands on a 64-byte boundary
                    view = raw[start:start + n]
                    got = f.readinto(memoryview(view))
                    blob = view[:got]
            if blob is None:
                blob = f.read()
    except (OSError, ValueError):
        return None
    head = bytes(blob[:8])
    header = _HEADER if head == MAGIC else _HEADER_48
    if len(blob) < header.size:
        _remove(path)
        return None
    magic, size, digest = header.unpack_from(blob)
    payload = blob[header.size:]
    if magic in (MAGIC, MAGIC_48):
        ok = size == len(payload) and _checksum(payload) == digest
    else:
        ok = magic == MAGIC_SHA256 and size == len(payload) and hashlib.sha256(payload).digest() == digest
    if not ok:
        _remove(path)
        return None
    try:
        os.utime(path)
    except OSError:
        pass
    return payload


def put(k: str, data: bytes) -> bool:
    """Stores `data` under key `k` atomically, then trims the cache to
    max_bytes(). Returns whether it was written (False when the folder is not
    writable or the entry alone exceeds the bound)."""
    data = bytes(data)
    header = _HEADER.pack(MAGIC, len(data), _checksum(data))
    return _write_entry(_path(k), (header, data)) is None


def put_raw(k: str, data, suffix: str, folder: Optional[str] = None) -> Optional[str]:
    """Stores `data` (bytes-like) as it is (no header: the kind checks its own
    files) as entry `k` of kind `suffix` in `folder` (default cache_dir()),
    atomically, then trims that folder to max_bytes(). Returns None when
    written, else why not (the folder is not writable, the disk is full, the
    entry alone exceeds the bound)."""
    return _write_entry(entry_path(k, suffix, folder), (data,))


_HEX64 = re.compile(rb"^[0-9a-f]{64}$")


def read_prefix(path, n: int) -> bytes:
    """The first `n` bytes of a file (fewer when it is shorter), with
    os.open/os.read: no buffered file object for a few bytes (every load
    reads a model's magic and, with the prepack cache, its `.ref`).
    Non-blocking, so a FIFO does not hang the read. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        return os.read(fd, n)
    finally:
        os.close(fd)


def file_content_hash(path: str, folder: Optional[str] = None) -> Optional[str]:
    """The sha256 hex of a file's bytes, through its identity's `<id>.ref`
    entry in `folder` (default cache_dir()): hashed only when the file is new
    or changed (another device, inode, size, mtime or ctime). None when the
    file is missing, unreadable or not a regular file (a FIFO or a device:
    reading it could block or never end)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    ident = key("prepack-ref", f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}")
    ref = entry_path(ident, ".ref", folder)
    try:
        text = read_prefix(ref, 65)
        if _HEX64.match(text):
            return text.decode()
    except OSError:
        pass
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    digest = h.hexdigest()
    put_raw(ident, digest.encode(), ".ref", folder)
    return digest


def _write_entry(path: str, chunks) -> Optional[str]:
    """Writes the chunks to `path` atomically (_atomic.write_atomic:
    temporary file, fsync, rename) and trims its folder; None when written,
    else the reason."""
    size = sum(len(memoryview(c)) for c in chunks)
    if size > max_bytes():
        return f"{size} bytes exceed the cache bound of {max_bytes()} bytes"
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        # _TMP_PREFIX: _trim finds a crashed writer's temporary file by it;
        # 0600: an entry is private to its user (a converted model's bytes).
        write_atomic(path, chunks, tmp_prefix=_TMP_PREFIX, mode=0o600)
    except OSError as e:
        return f"cannot write in {folder}: {e.strerror or e}"
    except TinyInferIOError as e:
        return str(e)
    _trim(keep=path, folder=folder)
    return None


def _scan(folder: Optional[str] = None):
    """(entries of every kind, temporary files) of the folder (default cache_dir())."""
    folder = folder or cache_dir()
    out, tmps = [], []
    try:
        names = os.listdir(folder)
    except OSError:
        return out, tmps
    for name in names:
        p = os.path.join(folder, name)
        try:
            st = os.stat(p)
        except OSError:
            continue  # removed meanwhile by another process
        if name.startswith(_TMP_PREFIX):
            tmps.append((p, st.st_mtime))
        else:
            stem, suffix = os.path.splitext(name)
            if suffix in KINDS and _KEY.match(stem):
                out.append(Entry(stem, p, st.st_size, st.st_mtime, KINDS[suffix]))
    return out, tmps


def _trim(keep: Optional[str] = None, folder: Optional[str] = None) -> None:
    """Removes least recently used entries (of every kind) until the total
    fits max_bytes(), and temporary files left by crashed writers."""
    items, tmps = _scan(folder)
    now = time.time()
    for p, mtime in tmps:
        if now - mtime > _STALE_TMP_SECONDS:
            _remove(p)
    limit = max_bytes()
    total = sum(e.size for e in items)
    for e in sorted(items, key=lambda e: e.mtime):
        if total <= limit:
            break
        if e.path == keep:
            continue
        _remove(e.path)
        total -= e.size


def entries(kind: Optional[str] = "conversion", folder: Optional[str] = None) -> List[Entry]:
    """The entries of one kind ("conversion", "prepack", "prepack-ref"; None:
    every kind), most recently used first."""
    return sorted((e for e in _scan(folder)[0] if kind is None or e.kind == kind), key=lambda e: e.mtime, reverse=True)


def clear(folder: Optional[str] = None) -> int:
    """Removes every entry of every kind (and temporary file); returns how many entries were removed."""
    items, tmps = _scan(folder)
    for p, _ in tmps:
        _remove(p)
    for e in items:
        _remove(e.path)
    return len(items)
