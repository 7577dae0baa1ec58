"""An in-memory cache of model results, keyed by the inputs (opt-in).

    cache = tinyinfer.ResultCache(max_bytes="64MB")
    model = tinyinfer.load("model.tinf", result_cache=cache)
    model.run(x)          # computed, stored
    model.run(x.copy())   # same bytes, shapes and dtypes: answered from the cache
    cache.stats()         # {"hits": 1, "misses": 1, "evicted": 0, ...}

The key is the sha256 of the model's identity (the sha256 of its .tinf bytes
and the load options that change results) and of every input's dtype, shape
and bytes, in input order. Entries are dropped least recently used first so
that the outputs held stay within `max_bytes` (a result larger than the bound
is not stored). One lock guards the table, so a cache can be shared by threads
and by models (keys of different models differ). The stored arrays are
private and read-only: `Model.run` returns copies of them (or, with
copy=False, read-only views), so a caller cannot change a cached result.
docs/caching.md lists every cache of tinyinfer.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np

from ._errors import InvalidArgumentError

__all__ = ["ResultCache", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 64 << 20  # 64 MiB


class ResultCache:
    """A least-recently-used cache of outputs bounded by `max_bytes` (an int
    or a string such as "64MB"). Thread-safe; pass it to `tinyinfer.load` or
    `Model` as `result_cache=`. `stats()` gives the counts, `clear()` empties it."""

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES):
        from .batching import parse_bytes  # an int, or "64MB", "1GiB"; InvalidArgumentError otherwise
        self.max_bytes = parse_bytes(max_bytes)
        self._lock = threading.Lock()
        self._entries: "OrderedDict[bytes, tuple]" = OrderedDict()  # key -> (outputs, nbytes), LRU first
        self._bytes = 0
        self._hits = self._misses = self._evicted = self._too_large = 0

    # -- keys -----------------------------------------------------------------
    @staticmethod
    def key(model_id: bytes, arrays: Sequence[np.ndarray]) -> bytes:
        """The key of these inputs (in input order) for the model `model_id`:
        sha256 of the model's identity and each input's dtype, shape and bytes."""
        h = hashlib.sha256(model_id)
        for a in arrays:
            d = a.dtype.str.encode()
            h.update(struct.pack(f"<B{len(d)}sQ{a.ndim}Q", len(d), d, a.ndim, *a.shape))
            h.update(a if a.flags.c_contiguous else np.ascontiguousarray(a))
        return h.digest()

    # -- table ----------------------------------------------------------------
    def get(self, key: bytes) -> Optional[List[np.ndarray]]:
        """The stored outputs (read-only arrays, never to be written), or None.
        Counts a hit or a miss."""
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return e[0]

    def put(self, key: bytes, outputs: Sequence[np.ndarray]) -> bool:
        """Stores private read-only copies of `outputs` under `key` and evicts
        least recently used entries down to max_bytes. Returns whether stored
        (False when the outputs alone exceed the bound)."""
        nbytes = sum(int(o.nbytes) for o in outputs)
        if nbytes > self.max_bytes:
            with self._lock:
                self._too_large += 1
            return False
        stored = []
        for o in outputs:
            c = np.array(o, copy=True, order="C")
            c.flags.writeable = False
            stored.append(c)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (stored, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, n) = self._entries.popitem(last=False)
                self._bytes -= n
                self._evicted += 1
        return True

    def clear(self) -> int:
        """Drops every entry (the counts stay); returns how many were dropped."""
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return n

    def stats(self) -> Dict[str, int]:
        """hits, misses, evicted (entries dropped for room), too_large (results
        over max_bytes, not stored), entries, bytes (outputs held), max_bytes."""
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "evicted": self._evicted,
                    "too_large": self._too_large, "entries": len(self._entries), "bytes": self._bytes,
                    "max_bytes": self.max_bytes}

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
