"""An in-memory cache of model results, keyed by the inputs (opt-in).

    cache = tinyinfer.ResultCache(max_bytes="64MB")
    model = tinyinfer.load("model.tinf", result_cache=cache)
    model.run(x)          # computed; its key remembered
    model.run(x)          # computed and stored (the second time)
    model.run(x.copy())   # same bytes, shapes and dtypes: answered from the cache
    cache.stats()         # {"hits": 1, "misses": 2, "evicted": 0, ...}

The cache is the library's (tinf_result_cache, include/tinyinfer.h section
"result cache"): the sessions `Model.run` uses are bound to it, so the run
call itself hashes the input buffers (tinf_hash64's absorption with a cheaper
finish, ti_hash64_quick: these keys live only in memory), looks the key up,
compares the stored input bytes with the session's and on a match copies
the stored outputs into the session's output buffers; a cached run costs
one ctypes call, like an uncached one. The key is the model's identity
(the sha256 of its .tinf bytes and the load options that change results,
computed once at load), every input's and output's dtype and shape, and the
hash of the inputs' bytes; two inputs whose hashes collide are never
answered with each other's outputs (the bytes are compared). By default a
result is stored the second time its input comes (admit="repeat": the first
time only its key is remembered), so a stream of inputs that never repeat
costs no copies; admit="always" stores every result. Entries are dropped
least recently used first so that the bytes held (inputs and outputs) stay
within `max_bytes` (an entry larger than the bound is not stored). One lock
guards the table, so a cache can be shared by threads and by models (keys
of different models differ). The cache keeps its own copies: nothing a
caller does with the arrays `run` returns reaches it. docs/caching.md lists
every cache of tinyinfer.
"""

from __future__ import annotations

import hashlib
import os
import struct
from ctypes import byref, c_size_t
from typing import Dict

import numpy as np

from . import _lib
from . import cache as _cache
from ._errors import InvalidArgumentError

__all__ = ["ResultCache", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 64 << 20  # 64 MiB
ADMIT = ("repeat", "always")
DEFAULT_MAX_SEEN = 16384
L = _lib.lib


class ResultCache:
    """A least-recently-used cache of outputs bounded by `max_bytes` (an int
    or a string such as "64MB") of stored inputs and outputs. Thread-safe;
    pass it to `tinyinfer.load` or `Model` as `result_cache=`. `stats()`
    gives the counts, `clear()` empties it.

    `admit`: "repeat" (the default) stores a result the second time its
    input comes (the first time only the key is remembered, among the
    `max_seen` most recent), so inputs that never repeat cost a hash and a
    lookup and no copies; "always" stores every result. `hash_bits` (64) is
    for tests: fewer keeps only that many bits of each hash, so that
    different inputs share keys and only the byte comparison tells them
    apart."""

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES, admit: str = "repeat", max_seen: int = DEFAULT_MAX_SEEN,
                 *, hash_bits: int = 64):
        from .batching import parse_bytes  # an int, or "64MB", "1GiB"; InvalidArgumentError otherwise
        self._handle = None
        self.max_bytes = parse_bytes(max_bytes)
        if admit not in ADMIT:
            raise InvalidArgumentError(f"admit must be one of {ADMIT}, got {admit!r}")
        if isinstance(max_seen, bool) or not isinstance(max_seen, int) or max_seen < 1:
            raise InvalidArgumentError(f"max_seen must be an int >= 1, got {max_seen!r}")
        if isinstance(hash_bits, bool) or not isinstance(hash_bits, int) or not 0 <= hash_bits <= 64:
            raise InvalidArgumentError(f"hash_bits must be an int in 0...64, got {hash_bits!r}")
        self.admit, self.max_seen = admit, max_seen
        h = _lib.ResultCacheHandle()
        L.tinf_result_cache_create(self.max_bytes, _lib.RESULT_CACHE_ADMIT_REPEAT if admit == "repeat"
                                   else _lib.RESULT_CACHE_ADMIT_ALWAYS, max_seen, hash_bits, byref(h))
        self._handle = h

    def bind(self, session, model_id: bytes) -> None:
        """Binds a Session (its C session) to this cache under the model key
        `model_id`: its runs answer from and store into the cache. Raises
        InvalidArgumentError for a model with variables."""
        L.tinf_session_set_result_cache(session._handle, self._handle, model_id, len(model_id))

    @staticmethod
    def unbind(session) -> None:
        """Unbinds a Session from its cache (its runs compute every time)."""
        L.tinf_session_set_result_cache(session._handle, None, None, 0)

    def clear(self) -> int:
        """Drops every entry and remembered key (the counts stay); returns how many entries were dropped."""
        n = c_size_t()
        L.tinf_result_cache_clear(self._handle, byref(n))
        return n.value

    def stats(self) -> Dict[str, int]:
        """hits, misses, evicted (entries dropped for room), too_large (entries
        over max_bytes, not stored), collisions (misses on an entry of the
        same hash but other input bytes), deferred (admit="repeat": results
        not stored because their input came for the first time), entries,
        bytes (inputs and outputs held), max_bytes, seen (admit="repeat":
        keys remembered, at most max_seen)."""
        st = _lib.ResultCacheStats()
        L.tinf_result_cache_stats(self._handle, byref(st))
        return {name: int(getattr(st, name)) for name, _ in _lib.ResultCacheStats._fields_}

    def __len__(self) -> int:
        return self.stats()["entries"]

    def __del__(self):
        h, self._handle = getattr(self, "_handle", None), None
        if h is not None and L is not None:
            L.tinf_result_cache_free(h)

    def __repr__(self) -> str:
        s = self.stats()
        return (f"<tinyinfer.ResultCache {s['entries']} entries, {s['bytes']}/{s['max_bytes']} B, "
                f"{s['hits']} hits, {s['misses']} misses, {s['evicted']} evicted>")


def model_identity(source, flags: int) -> bytes:
    """sha256 of the model's content (a path, or bytes / a uint8 array: the sha256 of its bytes) and the load
    flags that change results. For a path the content's sha256 comes through the file's identity
    (tinyinfer.cache.file_content_hash, shared with the conversion and prepack caches), so an unchanged file
    is not read again; the same model as bytes or as a path gets the same identity."""
    if isinstance(source, (bytes, bytearray, memoryview, np.ndarray)):
        content = hashlib.sha256(source).hexdigest()
    else:
        content = _cache.file_content_hash(os.fspath(source))
        if content is None:  # not a regular file, or unreadable: read it here (errors reach the caller)
            h = hashlib.sha256()
            with open(source, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            content = h.hexdigest()
    return hashlib.sha256(b"tinyinfer-model\0" + struct.pack("<Q", flags) + content.encode()).digest()
