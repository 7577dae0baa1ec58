"""An in-memory cache of model results, keyed by the inputs (opt-in).

    cache = tinyinfer.ResultCache(max_bytes="64MB")
    model = tinyinfer.load("model.tinf", result_cache=cache)
    model.run(x)          # computed, stored
    model.run(x.copy())   # same bytes, shapes and dtypes: answered from the cache
    cache.stats()         # {"hits": 1, "misses": 1, "evicted": 0, ...}

The key is the model's identity (the sha256 of its .tinf bytes and the load
options that change results, computed once at load), every input's dtype and
shape, and a fast 64-bit hash of the inputs' bytes (the library's
tinf_hash64, several GB/s). An entry also keeps a copy of its inputs' bytes,
compared with the caller's on every match, so two inputs whose hashes collide
can never be answered with each other's outputs. By default a result is
stored the second time its input comes (admit="repeat": the first time only
its key is remembered), so a stream of inputs that never repeat costs no
copies; admit="always" stores every result. Entries are dropped least
recently used first so that the bytes held (outputs and inputs) stay within
`max_bytes` (an entry larger than the bound is not stored). One lock guards
the table, so a cache can be shared by threads and by models (keys of
different models differ). The stored arrays are private and read-only:
`Model.run` returns copies of them (or, with copy=False, read-only views), so
a caller cannot change a cached result. docs/caching.md lists every cache of
tinyinfer.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from ctypes import byref, c_uint64
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError

__all__ = ["ResultCache", "DEFAULT_MAX_BYTES", "input_bytes"]

DEFAULT_MAX_BYTES = 64 << 20  # 64 MiB

_hash64 = _lib.lib.tinf_hash64
# Inputs up to this size are hashed from a copy (a copy of a few KB is
# quicker than numpy's address lookup); larger ones in place.
_COPY_TO_HASH = 64 << 10


def input_bytes(arrays: Sequence[np.ndarray]) -> Tuple[bytes, ...]:
    """Each input's bytes in C order (what an entry stores and compares)."""
    if len(arrays) == 1:
        return (arrays[0].tobytes(),)
    return tuple(a.tobytes() for a in arrays)


ADMIT = ("repeat", "always")
DEFAULT_MAX_SEEN = 16384


class ResultCache:
    """A least-recently-used cache of outputs bounded by `max_bytes` (an int
    or a string such as "64MB") of stored outputs and inputs. Thread-safe;
    pass it to `tinyinfer.load` or `Model` as `result_cache=`. `stats()`
    gives the counts, `clear()` empties it.

    `admit`: "repeat" (the default) stores a result the second time its
    input comes (the first time only the key is remembered, among the
    `max_seen` most recent), so inputs that never repeat cost a hash and two
    lookups and no copies; "always" stores every result."""

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES, admit: str = "repeat", max_seen: int = DEFAULT_MAX_SEEN):
        from .batching import parse_bytes  # an int, or "64MB", "1GiB"; InvalidArgumentError otherwise
        self.max_bytes = parse_bytes(max_bytes)
        if admit not in ADMIT:
            raise InvalidArgumentError(f"admit must be one of {ADMIT}, got {admit!r}")
        if isinstance(max_seen, bool) or not isinstance(max_seen, int) or max_seen < 1:
            raise InvalidArgumentError(f"max_seen must be an int >= 1, got {max_seen!r}")
        self.admit, self.max_seen = admit, max_seen
        self._lock = threading.Lock()
        # key -> (input bytes, outputs, nbytes), least recently used first
        self._entries: "OrderedDict[tuple, tuple]" = OrderedDict()
        # admit="repeat": hash() of the keys seen once and not stored, least recently seen first
        # (two keys with one hash() only share their admission)
        self._seen: "OrderedDict[int, None]" = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evicted = self._too_large = self._collisions = self._deferred = 0

    # -- keys -----------------------------------------------------------------
    @staticmethod
    def key(model_id: bytes, arrays: Sequence[np.ndarray]) -> tuple:
        """The key of these inputs (in input order) for the model `model_id`:
        the identity, each input's dtype and shape, and the 64-bit hash of
        their bytes in C order (read in place when an input is contiguous and
        large; a small one is hashed from a short-lived copy, which is
        quicker than asking numpy for its address)."""
        h = c_uint64(0)
        for a in arrays:
            if a.nbytes <= _COPY_TO_HASH or not a.flags.c_contiguous:
                b = a.tobytes()
                _hash64(b, len(b), h.value, byref(h))
            else:
                _hash64(a.__array_interface__["data"][0], a.nbytes, h.value, byref(h))
        if len(arrays) == 1:
            a = arrays[0]
            return (model_id, h.value, a.dtype, a.shape)
        return (model_id, h.value) + tuple((a.dtype, a.shape) for a in arrays)

    # -- table ----------------------------------------------------------------
    def get(self, key: tuple, arrays: Sequence[np.ndarray]) -> Optional[List[np.ndarray]]:
        """The stored outputs for the inputs `arrays` (read-only arrays, never
        to be written), or None. An entry under `key` whose stored input
        bytes differ from the arrays' (a hash collision) is a miss. Counts a
        hit or a miss."""
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                self._misses += 1
                return None
        same = e[0] == input_bytes(arrays)  # outside the lock: the stored bytes never change
        with self._lock:
            if not same:
                self._misses += 1
                self._collisions += 1
                return None
            if key in self._entries:
                self._entries.move_to_end(key)
            self._hits += 1
            return e[1]

    def put(self, key: tuple, arrays: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> bool:
        """Stores private read-only copies of `outputs` and of the bytes of the
        inputs `arrays` under `key` and evicts least recently used entries down to
        max_bytes. Returns whether stored: False when the entry alone exceeds
        the bound, or with admit="repeat" when the key comes for the first
        time (it is then remembered, `deferred`)."""
        if self.admit == "repeat":
            with self._lock:
                seen = hash(key)  # an int: the remembered keys hold no objects for the garbage collector to walk
                if seen in self._seen:  # the second time: stored below
                    del self._seen[seen]
                elif key not in self._entries:  # (a key already stored is a collision: replaced at once)
                    self._seen[seen] = None
                    if len(self._seen) > self.max_seen:
                        self._seen.popitem(last=False)
                    self._deferred += 1
                    return False
        nbytes = sum([o.nbytes for o in outputs]) + sum([a.nbytes for a in arrays])
        if nbytes > self.max_bytes:
            with self._lock:
                self._too_large += 1
            return False
        data = input_bytes(arrays)
        stored = []
        for o in outputs:
            c = o.copy()
            c.flags.writeable = False
            stored.append(c)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = (data, stored, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, _, n) = self._entries.popitem(last=False)
                self._bytes -= n
                self._evicted += 1
        return True

    def clear(self) -> int:
        """Drops every entry (the counts stay); returns how many were dropped."""
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
            self._seen.clear()
            self._bytes = 0
            return n

    def stats(self) -> Dict[str, int]:
        """hits, misses, evicted (entries dropped for room), too_large (entries
        over max_bytes, not stored), collisions (misses on an entry of the
        same hash but other input bytes), deferred (admit="repeat": results
        not stored because their input came for the first time), entries,
        bytes (outputs and inputs held), max_bytes."""
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "evicted": self._evicted,
                    "too_large": self._too_large, "collisions": self._collisions, "deferred": self._deferred,
                    "entries": len(self._entries), "bytes": self._bytes, "max_bytes": self.max_bytes}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        s = self.stats()
        return (f"<tinyinfer.ResultCache {s['entries']} entries, {s['bytes']}/{s['max_bytes']} B, "
                f"{s['hits']} hits, {s['misses']} misses, {s['evicted']} evicted>")


def model_identity(source, flags: int) -> bytes:
    """sha256 of the model's bytes (a path, or bytes / a uint8 array) and the load flags that change results."""
    h = hashlib.sha256(b"tinyinfer-model\0" + struct.pack("<Q", flags))
    if isinstance(source, (bytes, bytearray, memoryview, np.ndarray)):
        h.update(source)
    else:
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.digest()


def input_arrays(specs, inputs) -> Optional[List[np.ndarray]]:
    """The inputs in input order as arrays, or None when they are not a
    well-formed set (the run itself then raises the error)."""
    if len(specs) == 1:  # the common calls, kept short: one array, or a list of one
        a = inputs[0] if type(inputs) is list and len(inputs) == 1 else inputs
        if type(a) is np.ndarray and not a.dtype.hasobject:
            return [a]
    from .model import _input_list
    arrays = _input_list(specs, inputs)
    if len(arrays) != len(specs):
        return None
    if isinstance(inputs, dict) and (len(inputs) != len(specs) or any(a is None for a in arrays)):
        return None  # unknown or missing names
    arrays = [a if type(a) is np.ndarray else np.asarray(a) for a in arrays]
    if any(a.dtype.hasobject for a in arrays):
        return None  # not numbers: the run refuses them
    return arrays
