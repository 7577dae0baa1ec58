"""Batch processing (docs/batching.md): the batch size to use under a memory
budget (`batch_plan`), streaming a model over data sets larger than memory
(`map`), and a micro-batcher gathering concurrent callers' requests into
batched runs (`Batcher`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import hashlib
import itertools
import json
import os
import platform
import queue
import re
import sys
import threading
import time
import zipfile
from collections import deque
from ctypes import byref, c_double, c_int32, c_int64, c_size_t
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError, InvalidStateError, OutOfMemoryError, Status, TinyInferError

L = _lib.lib

DEFAULT_BUDGET = "256MB"
DEFAULT_MAX_BATCH = 4096  # the largest batch batch_plan considers unless told
DEFAULT_MEASURE_MS = 600
# What a caller spends per batch besides the run, counted when batch sizes are
# compared: a Python call (Model.run, Session.run) is about 10-20 us; Model.map
# also hands the batch between its threads and copies in and out.
DEFAULT_OVERHEAD_US = 20
MAP_OVERHEAD_US = 60
_CAPACITY = 32  # candidates tinf_model_batch_plan can return (powers of two up to 2^30, and the largest)


# -- sizes ----------------------------------------------------------------------

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def parse_bytes(size) -> int:
    """Bytes from an int or a string such as "256MB", "1.5 GiB", "64k"
    (K, M, G and T are powers of 1024, with or without B / iB)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size < 0:
            raise InvalidArgumentError(f"a size must be >= 0 bytes, got {size}")
        return int(size)
    if isinstance(size, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", size)
        if m and m.group(2).upper() in _UNITS:
            return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    raise InvalidArgumentError(f"not a size: {size!r} (an int of bytes or a string like '256MB')")


def format_bytes(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# -- batch_plan -------------------------------------------------------------------

@dataclass(frozen=True)
class BatchCandidate:
    """One batch size batch_plan looked at: its bytes (arena + model +
    per-item bytes) and its measured items per second (0 when not measured)."""
    batch_size: int
    bytes: int
    items_per_second: float


@dataclass(frozen=True)
class BatchPlan:
    """What `Model.batch_plan` chose and the figures behind the choice."""
    batch_size: int          # the batch to use: the best measured throughput (smallest within 5% of the best)
    max_batch: int           # the largest batch whose bytes fit the budget (at most max_batch_limit)
    memory_budget: int       # bytes
    model_bytes: int         # what the model holds whatever the batch (constants, folded, packed weights)
    item_bytes: int          # per-item bytes the caller keeps besides the session (counted in the budget)
    threads: int
    overhead_us: float       # the caller's per-batch cost counted with each measured run
    max_batch_limit: int
    candidates: Tuple[BatchCandidate, ...]
    measured: bool
    source: str = "measured"  # "measured", "planned" (measure_ms=0), "memory" or "disk" (a cached plan)

    @property
    def bytes_needed(self) -> int:
        """Bytes at the chosen batch size."""
        return next(c.bytes for c in self.candidates if c.batch_size == self.batch_size)

    @property
    def items_per_second(self) -> float:
        return next(c.items_per_second for c in self.candidates if c.batch_size == self.batch_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["candidates"] = [asdict(c) for c in self.candidates]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "BatchPlan":
        d = dict(d)
        d["candidates"] = tuple(BatchCandidate(**c) for c in d["candidates"])
        d["source"] = source
        return cls(**d)

    def __str__(self) -> str:
        lines = [f"batch {self.batch_size} (largest fitting {self.max_batch}) under {format_bytes(self.memory_budget)}, "
                 f"{self.threads} thread(s), model {format_bytes(self.model_bytes)} [{self.source}]",
                 f"{'batch':>7} {'bytes':>10} {'items/s':>11}"]
        for c in self.candidates:
            mark = " <" if c.batch_size == self.batch_size else ""
            rate = f"{c.items_per_second:>11.1f}" if self.measured else f"{'-':>11}"
            lines.append(f"{c.batch_size:>7} {format_bytes(c.bytes):>10} {rate}{mark}")
        return "\n".join(lines)


def content_hash(model) -> str:
    """sha256 of the model's file (or bytes), computed once per Model."""
    h = getattr(model, "_batching_hash", None)
    if h is None:
        digest = hashlib.sha256()
        if model.path is not None:
            with open(model.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(memoryview(model._buffer))
        h = digest.hexdigest()
        model._batching_hash = h
    return h


_MACHINE = None


def machine_id() -> str:
    """What a measured plan depends on besides the model: CPU model, cores,
    the kernels' CPU level, and the library's version."""
    global _MACHINE
    if _MACHINE is None:
        cpu = platform.processor() or ""
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        _MACHINE = (f"{platform.machine()}|{cpu}|{os.cpu_count()}|{L.tinf_cpu_isa().decode()}|"
                    f"{L.tinf_version_string().decode()}")
    return _MACHINE


def cache_dir() -> str:
    """The tinyinfer cache folder (tinyinfer.cache.cache_dir)."""
    from .cache import cache_dir as _cache_dir
    return _cache_dir()


def atomic_write(path: str, data: bytes) -> None:
    """Writes a file so that readers see the old or the new content, never a
    part (tinyinfer._atomic), making its folder first."""
    from ._atomic import write_atomic
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomic(path, data)


_PLANS: Dict[str, BatchPlan] = {}
_PLANS_LOCK = threading.Lock()


def batch_plan(model, memory_budget=DEFAULT_BUDGET, threads: Optional[int] = None, *, item_bytes: int = 0,
               max_batch: int = DEFAULT_MAX_BATCH, measure_ms: int = DEFAULT_MEASURE_MS,
               overhead_us: float = DEFAULT_OVERHEAD_US, cache=True) -> BatchPlan:
    """The batch size to run `model` at under `memory_budget` (bytes or
    "256MB"): the largest batch whose arena + model bytes (+ item_bytes per
    item) fit, from the planner without running, then the best measured
    throughput among the powers of two up to it (about measure_ms in all;
    0: no measurement, the largest), each run's time counted with
    overhead_us, the caller's own cost per batch (a Python call and its
    copies), so that small batches are not favoured by a measure that
    leaves it out. `threads`: the session's threads
    (default: the model's); the measurement runs with them, so the choice
    follows them. Measured plans are cached per model content, machine,
    threads and arguments: in memory, and with cache=True also on disk
    (cache_dir()/batch-plans, written atomically); cache="memory" keeps them
    in memory only, cache=False measures again.

    A budget below what batch 1 needs raises OutOfMemoryError, whose message
    (and `.needed_bytes`) gives the bytes needed."""
    budget = parse_bytes(memory_budget)
    item_bytes = parse_bytes(item_bytes)
    threads = model.threads if threads is None else int(threads)
    if not isinstance(max_batch, (int, np.integer)) or not 1 <= max_batch <= 1 << 30:
        raise InvalidArgumentError(f"max_batch must be 1...2^30, got {max_batch!r}")
    if not isinstance(measure_ms, (int, np.integer)) or not 0 <= measure_ms <= 600_000:
        raise InvalidArgumentError(f"measure_ms must be 0...600000, got {measure_ms!r}")
    if not 0 <= overhead_us <= 1e6:
        raise InvalidArgumentError(f"overhead_us must be 0...1e6, got {overhead_us!r}")
    if cache not in (True, False, "memory"):
        raise InvalidArgumentError(f"cache must be True, False or 'memory', got {cache!r}")
    key = json.dumps([content_hash(model), getattr(model, "optimize", True), machine_id(), threads, budget,
                      item_bytes, int(max_batch), int(measure_ms), float(overhead_us)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    path = os.path.join(cache_dir(), "batch-plans", digest + ".json")
    if cache:
        with _PLANS_LOCK:
            hit = _PLANS.get(key)
        if hit is not None:
            return BatchPlan.from_dict(hit.to_dict(), "memory")
        if cache is True and measure_ms > 0:
            try:
                with open(path) as f:
                    stored = json.load(f)
                if stored.get("key") == key:
                    plan = BatchPlan.from_dict(stored["plan"], "disk")
                    with _PLANS_LOCK:
                        _PLANS[key] = plan
                    return plan
            except (OSError, ValueError, KeyError, TypeError):
                pass  # absent or unreadable: measure again and rewrite it
    plan = _plan_now(model, budget, threads, item_bytes, int(max_batch), int(measure_ms), float(overhead_us))
    if cache:
        with _PLANS_LOCK:
            _PLANS[key] = plan
        if cache is True and measure_ms > 0:
            try:
                atomic_write(path, json.dumps({"key": key, "plan": plan.to_dict()}, indent=1).encode())
            except OSError:
                pass  # a read-only home: the plan stays cached in memory
    return plan


def _plan_now(model, budget, threads, item_bytes, max_batch, measure_ms, overhead_us) -> BatchPlan:
    batches, sizes, rates = (c_int64 * _CAPACITY)(), (c_size_t * _CAPACITY)(), (c_double * _CAPACITY)()
    count, best = c_int32(), c_int32()
    opts = _options(threads)
    try:
        L.tinf_model_batch_plan(model.handle, opts, budget, item_bytes, max_batch, measure_ms,
                                int(overhead_us * 1000), _CAPACITY,
                                batches, sizes, rates, byref(count), byref(best))
    except OutOfMemoryError as e:
        e.needed_bytes = int(sizes[0])
        raise
    finally:
        L.tinf_options_free(opts)
    model_bytes = c_size_t()
    L.tinf_model_batch_bytes(model.handle, None, 1, None, byref(model_bytes))
    cands = tuple(BatchCandidate(int(batches[i]), int(sizes[i]), float(rates[i])) for i in range(count.value))
    return BatchPlan(batch_size=cands[best.value].batch_size, max_batch=cands[-1].batch_size, memory_budget=budget,
                     model_bytes=model_bytes.value, item_bytes=item_bytes, threads=threads, overhead_us=overhead_us,
                     max_batch_limit=max_batch,
                     candidates=cands, measured=measure_ms > 0, source="measured" if measure_ms > 0 else "planned")


def _options(threads: int) -> _lib.OptionsHandle:
    opts = _lib.OptionsHandle()
    L.tinf_options_create(byref(opts))
    try:
        L.tinf_options_set_threads(opts, int(threads))
    except TinyInferError:
        L.tinf_options_free(opts)
        raise
    return opts


def batch_bytes(model, batch: int) -> Tuple[int, int]:
    """(arena bytes, model bytes) of a session at `batch`, from the planner."""
    arena, resident = c_size_t(), c_size_t()
    L.tinf_model_batch_bytes(model.handle, None, int(batch), byref(arena), byref(resident))
    return arena.value, resident.value


def clear_plan_cache() -> None:
    """Forgets the plans cached in memory (the disk cache stays)."""
    with _PLANS_LOCK:
        _PLANS.clear()


# -- map: streaming a model over data -----------------------------------------------

class BadItemError(InvalidArgumentError):
    """An input item map() cannot run: wrong shape or dtype, an unreadable
    file. `.index` is the item's position, `.name` its file (or None)."""

    def __init__(self, index: int, name: Optional[str], reason: str):
        where = f"item {index}" + (f" ({name})" if name else "")
        super().__init__(f"{where}: {reason}")
        self.index, self.name, self.reason = index, name, reason


@dataclass(frozen=True)
class SkippedItem:
    index: int
    name: Optional[str]
    reason: str


def _item_specs(model):
    specs = []
    for t in model.inputs:
        if not t.shape:
            raise InvalidArgumentError(f"input '{t.name}' is a scalar: map needs a batch (first) dimension")
        specs.append((t.name, tuple(t.shape[1:]), np.dtype(t.dtype)))
    return specs


class _Batch:
    __slots__ = ("indices", "count", "bufs", "names")

    def __init__(self, bufs):
        self.bufs = bufs
        self.indices: List[int] = []
        self.count = 0


class _Stop(Exception):
    pass


class _Source:
    """Input items in order. `fill(batch, bs, bad)` puts up to bs items into
    batch.bufs and returns False when the input is exhausted."""
    total: Optional[int] = None

    def close(self) -> None:
        pass


def _cast_into(dst: np.ndarray, src, spec_name: str) -> Optional[str]:
    """Copies src into dst (same shape, same-kind casting); a reason on failure."""
    try:
        a = np.asarray(src)
    except Exception as e:  # an object numpy cannot make an array of
        return f"not an array ({type(e).__name__}: {e})"
    if a.shape != dst.shape:
        return f"input '{spec_name}' has shape {list(a.shape)}, the model takes items of {list(dst.shape)}"
    if not np.can_cast(a.dtype, dst.dtype, casting="same_kind"):
        return f"input '{spec_name}' is {a.dtype}, the model takes {dst.dtype}"
    np.copyto(dst, a, casting="same_kind")
    return None


def _release(arr: np.ndarray, start: int, stop: int) -> None:
    """Drops rows [start, stop) of a shared (read-only or r+) np.memmap from
    this process's resident pages: they stay in the page cache (and in the
    file) but stop counting in our RSS. Private (copy-on-write) maps are left."""
    if not isinstance(arr, np.memmap) or getattr(arr, "mode", "c") not in ("r", "r+", "w+") or stop <= start:
        return
    madvise = _madvise()
    if madvise is None:
        return
    row = arr.strides[0] if arr.ndim else arr.itemsize
    if row <= 0 or not arr.flags.c_contiguous:
        return
    page = _PAGE
    lo = arr.ctypes.data + start * row
    hi = arr.ctypes.data + stop * row
    # rows run in order, so the page holding `start` (and earlier rows) is done;
    # the page holding `stop` may still have rows to come. (Dropping a page of
    # a shared map loses nothing: it is read again from the file if needed.)
    lo = lo // page * page
    hi = hi // page * page
    if hi > lo:
        madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), ctypes.c_int(4))  # MADV_DONTNEED


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MADVISE: Any = False


def _madvise():
    global _MADVISE
    if _MADVISE is False:
        _MADVISE = None
        if sys.platform.startswith("linux"):
            try:
                _MADVISE = ctypes.CDLL(None, use_errno=True).madvise  # called with explicit ctypes values
            except (OSError, AttributeError):
                pass
    return _MADVISE


class _ArraySource(_Source):
    """Arrays (or memmaps) with items along axis 0, one per input."""

    def __init__(self, arrays, specs):
        self.arrays = arrays
        n = {a.shape[0] for a in arrays}
        if len(n) != 1:
            raise InvalidArgumentError(f"the inputs have different item counts {sorted(n)}")
        for a, (name, shape, dtype) in zip(arrays, specs):
            if a.shape[1:] != shape:
                raise InvalidArgumentError(
                    f"input '{name}' has items of shape {list(a.shape[1:])}, the model takes {list(shape)}")
            if not np.can_cast(a.dtype, dtype, casting="same_kind"):
                raise InvalidArgumentError(f"input '{name}' is {a.dtype}, the model takes {dtype}")
        self.total = n.pop()
        self.pos = 0

    def fill(self, batch, bs, bad) -> bool:
        k = min(bs, self.total - self.pos)
        for a, buf in zip(self.arrays, batch.bufs):
            np.copyto(buf[:k], a[self.pos:self.pos + k], casting="same_kind")
            _release(a, self.pos, self.pos + k)
        batch.indices.extend(range(self.pos, self.pos + k))
        batch.count = k
        self.pos += k
        return self.pos < self.total


class _NpyStream:
    """Reads a .npy file (or an .npz member) item by item with plain reads,
    never mapping it, so the bytes read do not stay in our resident memory."""

    def __init__(self, f, label: str):
        self.f = f
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as e:
            raise InvalidArgumentError(f"{label}: not a .npy array ({e})") from None
        if fortran and len(shape) > 1:
            raise InvalidArgumentError(f"{label}: a Fortran-ordered array; save it C-ordered to stream it")
        if dtype.hasobject:
            raise InvalidArgumentError(f"{label}: an object array cannot be streamed")
        if not shape:
            raise InvalidArgumentError(f"{label}: a scalar, not a stack of items")
        self.shape, self.dtype = tuple(shape), dtype
        self.item_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def read_into(self, dst: np.ndarray, k: int, label: str) -> None:
        """Reads k items into dst[:k] (casting when the dtypes differ)."""
        if self.dtype == dst.dtype:
            view = memoryview(dst[:k].reshape(-1).view(np.uint8))
            got = 0
            while got < len(view):
                n = self.f.readinto(view[got:]) if hasattr(self.f, "readinto") else None
                if n is None:
                    chunk = self.f.read(len(view) - got)
                    n = len(chunk)
                    view[got:got + n] = chunk
                if not n:
                    raise InvalidArgumentError(f"{label}: the file ends early (truncated)")
                got += n
        else:
            data = self.f.read(k * self.item_bytes)
            if len(data) != k * self.item_bytes:
                raise InvalidArgumentError(f"{label}: the file ends early (truncated)")
            np.copyto(dst[:k], np.frombuffer(data, self.dtype).reshape((k,) + self.shape[1:]), casting="same_kind")


class _FileSource(_Source):
    """A .npy file (one input) or an .npz file (arrays named after the inputs,
    'x', or its only array), streamed."""

    def __init__(self, path: str, specs):
        self.path = path
        self.files, self.streams = [], []
        try:
            if path.endswith(".npz"):
                self.zip = zipfile.ZipFile(path)
                members = {n[:-4] if n.endswith(".npy") else n: n for n in self.zip.namelist()}
                names = [s[0] for s in specs]
                if all(n in members for n in names):
                    keys = names
                elif len(specs) == 1 and "x" in members:
                    keys = ["x"]
                elif len(specs) == 1 and len(members) == 1:
                    keys = list(members)
                else:
                    raise InvalidArgumentError(f"{path}: needs arrays named {names} (or 'x'); it has {sorted(members)}")
                for k in keys:
                    f = self.zip.open(members[k])
                    self.files.append(f)
                    self.streams.append(_NpyStream(f, f"{path}[{k}]"))
            else:
                if len(specs) != 1:
                    raise InvalidArgumentError(
                        f"the model takes {len(specs)} inputs: give an .npz with arrays named after them")
                f = open(path, "rb")
                self.files.append(f)
                self.streams.append(_NpyStream(f, path))
        except (OSError, zipfile.BadZipFile) as e:
            self.close()
            raise InvalidArgumentError(f"cannot read {path}: {e}") from None
        except BaseException:
            self.close()
            raise
        counts = {s.shape[0] for s in self.streams}
        if len(counts) != 1:
            self.close()
            raise InvalidArgumentError(f"{path}: the arrays have different item counts {sorted(counts)}")
        for s, (name, shape, dtype) in zip(self.streams, specs):
            if s.shape[1:] != shape or not np.can_cast(s.dtype, dtype, casting="same_kind"):
                self.close()
                raise InvalidArgumentError(f"{path}: input '{name}' holds {s.dtype} items of shape {list(s.shape[1:])}, "
                                           f"the model takes {dtype} items of {list(shape)}")
        self.total = counts.pop()
        self.pos = 0

    def fill(self, batch, bs, bad) -> bool:
        k = min(bs, self.total - self.pos)
        for s, buf in zip(self.streams, batch.bufs):
            s.read_into(buf, k, self.path)
        batch.indices.extend(range(self.pos, self.pos + k))
        batch.count = k
        self.pos += k
        return self.pos < self.total

    def close(self) -> None:
        for f in self.files:
            f.close()
        if getattr(self, "zip", None) is not None:
            self.zip.close()


class _ItemSource(_Source):
    """Items one at a time: from an iterable (arrays, or tuples / lists /
    dicts of arrays for several inputs) or from a folder's files (each an
    item, or a stack of items along axis 0)."""

    def __init__(self, items, specs, total=None):
        self.it = iter(items)
        self.specs = specs
        self.total = total
        self.index = 0
        self.pending: deque = deque()  # (name, [arrays]) items of a file not yet placed

    def _next(self, bad):
        """(index, name, [per-input arrays]) or None at the end; bad items go to bad()."""
        while True:
            if self.pending:
                name, arrays = self.pending.popleft()
                i = self.index
                self.index += 1
                return i, name, arrays
            try:
                item = next(self.it)
            except StopIteration:
                return None
            if isinstance(item, _FileItem):
                try:
                    self.pending.extend(item.load(self.specs))
                except BadItemFile as e:
                    i = self.index
                    self.index += 1
                    bad(i, item.name, str(e))
                continue
            i = self.index
            self.index += 1
            if isinstance(item, dict):
                missing = [n for n, _, _ in self.specs if n not in item]
                if missing:
                    bad(i, None, f"missing input(s) {missing}")
                    continue
                arrays = [item[n] for n, _, _ in self.specs]
            elif len(self.specs) > 1:
                if not isinstance(item, (list, tuple)) or len(item) != len(self.specs):
                    bad(i, None, f"the model takes {len(self.specs)} inputs: give a tuple or dict per item")
                    continue
                arrays = list(item)
            else:
                arrays = [item[0] if isinstance(item, (list, tuple)) and len(item) == 1 else item]
            return i, None, arrays

    def fill(self, batch, bs, bad) -> bool:
        while batch.count < bs:
            nxt = self._next(bad)
            if nxt is None:
                return False
            i, name, arrays = nxt
            row = batch.count
            reason = None
            for a, buf, (sname, _, _) in zip(arrays, batch.bufs, self.specs):
                reason = _cast_into(buf[row], a, sname)
                if reason:
                    break
            if reason:
                bad(i, name, reason)
                continue
            batch.indices.append(i)
            batch.count += 1
        return True


class BadItemFile(Exception):
    pass


class _FileItem:
    """A file of a folder: one item, or a stack of items along axis 0."""

    def __init__(self, path: str):
        self.path = path
        self.name = os.path.basename(path)

    def load(self, specs):
        try:
            data = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except Exception as e:
            raise BadItemFile(f"unreadable ({type(e).__name__}: {e})") from None
        try:
            if isinstance(data, np.lib.npyio.NpzFile):
                names = [s[0] for s in specs]
                if all(n in data.files for n in names):
                    arrays = [data[n] for n in names]
                elif len(specs) == 1 and len(data.files) == 1:
                    arrays = [data[data.files[0]]]
                elif len(specs) == 1 and "x" in data.files:
                    arrays = [data["x"]]
                else:
                    raise BadItemFile(f"needs arrays named {names}; it has {data.files}")
            else:
                if len(specs) != 1:
                    raise BadItemFile(f"the model takes {len(specs)} inputs: use .npz files with their names")
                arrays = [data]
        except BadItemFile:
            raise
        except Exception as e:
            raise BadItemFile(f"unreadable ({type(e).__name__}: {e})") from None
        # One item of the item shape, or a stack of them.
        stacked = [a.ndim == len(s[1]) + 1 and tuple(a.shape[1:]) == s[1] for a, s in zip(arrays, specs)]
        single = [tuple(a.shape) == s[1] for a, s in zip(arrays, specs)]
        if all(single):
            return [(self.name, [np.array(a) for a in arrays])]
        if all(stacked) and len({a.shape[0] for a in arrays}) == 1:
            n = arrays[0].shape[0]
            return [(f"{self.name}[{j}]", [np.array(a[j]) for a in arrays]) for j in range(n)]
        shapes = [list(a.shape) for a in arrays]
        want = [list(s[1]) for s in specs]
        raise BadItemFile(f"holds arrays of shape {shapes}; the model takes items of {want} (or stacks of them)")


def _folder_items(path: str):
    names = sorted(n for n in os.listdir(path) if n.endswith((".npy", ".npz")))
    if not names:
        raise InvalidArgumentError(f"no .npy or .npz files in {path}")
    return [_FileItem(os.path.join(path, n)) for n in names]


def _source(inputs, specs) -> _Source:
    if isinstance(inputs, (str, os.PathLike)):
        path = os.fspath(inputs)
        if os.path.isdir(path):
            items = _folder_items(path)
            return _ItemSource(items, specs)
        if not os.path.exists(path):
            raise InvalidArgumentError(f"{path}: no such file or folder")
        if path.endswith((".npy", ".npz")):
            return _FileSource(path, specs)
        raise InvalidArgumentError(f"{path}: inputs must be .npy, .npz or a folder of them")
    if isinstance(inputs, np.ndarray):
        if len(specs) != 1:
            raise InvalidArgumentError(f"the model takes {len(specs)} inputs: give a list or dict of arrays")
        return _ArraySource([inputs], specs)
    if isinstance(inputs, dict) and all(isinstance(v, np.ndarray) for v in inputs.values()) and \
            set(inputs) == {s[0] for s in specs}:
        return _ArraySource([inputs[s[0]] for s in specs], specs)
    if isinstance(inputs, (list, tuple)) and len(specs) > 1 and len(inputs) == len(specs) and \
            all(isinstance(a, np.ndarray) and a.ndim == len(s[1]) + 1 for a, s in zip(inputs, specs)):
        return _ArraySource(list(inputs), specs)
    total = len(inputs) if hasattr(inputs, "__len__") else None
    return _ItemSource(inputs, specs, total)


class _NpyWriter:
    """Writes a .npy file row by row, its length unknown until the end: the
    header has room for any length and is rewritten on close (also after an
    error, so the rows written stay readable)."""

    _HEADER = 128  # bytes: fits any shape of rank <= 8 with 20-digit dims

    def __init__(self, path: str, item_shape, dtype):
        self.path, self.item_shape, self.dtype = path, tuple(item_shape), np.dtype(dtype)
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        self.f = open(path, "wb")
        self.rows = 0
        self._header()

    def _header(self) -> None:
        shape = (self.rows,) + self.item_shape
        text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
            np.lib.format.dtype_to_descr(self.dtype), shape)
        head = b"\x93NUMPY\x01\x00"
        body = text.encode("latin1")
        pad = self._HEADER - len(head) - 2 - len(body) - 1
        assert pad >= 0
        self.f.seek(0)
        self.f.write(head + (self._HEADER - len(head) - 2).to_bytes(2, "little") + body + b" " * pad + b"\n")
        self.f.seek(0, 2)

    def write(self, rows: np.ndarray) -> None:
        self.f.write(memoryview(np.ascontiguousarray(rows, dtype=self.dtype)).cast("B"))
        self.rows += rows.shape[0]

    def close(self) -> None:
        if self.f is not None and not self.f.closed:
            self._header()
            self.f.close()


def _fill_value(dtype):
    return np.nan if np.issubdtype(dtype, np.floating) else 0


class _Sink:
    """Where outputs go: arrays given by the caller (rows by item index), or
    .npy files written in order; skipped rows get NaN (0 for integers)."""

    def __init__(self, out, out_specs, total):
        self.writers: Optional[List[_NpyWriter]] = None
        self.arrays: Optional[List[np.ndarray]] = None
        self.paths: List[str] = []
        if isinstance(out, (str, os.PathLike)):
            path = os.fspath(out)
            if path.endswith(".npy"):
                if len(out_specs) != 1:
                    raise InvalidArgumentError(f"the model has {len(out_specs)} outputs: give a folder for out")
                self.paths = [path]
            else:
                self.paths = [os.path.join(path, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".npy")
                              for name, _, _ in out_specs]
            self.writers = [_NpyWriter(p, shape, dtype) for p, (_, shape, dtype) in zip(self.paths, out_specs)]
        else:
            if isinstance(out, np.ndarray):
                arrays = [out]
            elif isinstance(out, dict):
                arrays = [out[name] for name, _, _ in out_specs]
            else:
                arrays = list(out)
            if len(arrays) != len(out_specs):
                raise InvalidArgumentError(f"the model has {len(out_specs)} outputs, out gives {len(arrays)}")
            for a, (name, shape, dtype) in zip(arrays, out_specs):
                if not isinstance(a, np.ndarray) or tuple(a.shape[1:]) != shape:
                    raise InvalidArgumentError(f"out for '{name}' must be an array of items of shape {list(shape)}")
                if total is not None and a.shape[0] < total:
                    raise InvalidArgumentError(f"out for '{name}' has {a.shape[0]} rows for {total} items")
            self.arrays = arrays
        self.rows = 0  # rows written (items 0..rows-1 are complete)

    def write(self, indices: List[int], outs: List[np.ndarray], count: int) -> None:
        if self.arrays is not None:
            first, last = indices[0], indices[count - 1]
            contiguous = last - first + 1 == count
            for a, o in zip(self.arrays, outs):
                if first >= a.shape[0] or last >= a.shape[0]:
                    raise InvalidArgumentError(f"out has {a.shape[0]} rows; item {last} does not fit")
                if contiguous:
                    a[first:last + 1] = o[:count]
                    _release(a, first, last + 1)
                else:
                    a[np.asarray(indices[:count])] = o[:count]
            self.rows = last + 1
            return
        # .npy files: rows in index order, filling the gaps of skipped items
        j = 0
        while j < count:
            self._gap(indices[j])
            k = j
            while k + 1 < count and indices[k + 1] == indices[k] + 1:
                k += 1
            for w, o in zip(self.writers, outs):
                w.write(o[j:k + 1])
            self.rows = indices[k] + 1
            j = k + 1

    def _gap(self, upto: int) -> None:
        if upto > self.rows and self.writers is not None:
            for w in self.writers:
                w.write(np.full((upto - self.rows,) + w.item_shape, _fill_value(w.dtype), w.dtype))
            self.rows = upto

    def finish(self, skipped: List[SkippedItem], seen: int) -> None:
        if self.arrays is not None:
            for s in skipped:
                for a in self.arrays:
                    if s.index < a.shape[0]:
                        a[s.index] = _fill_value(a.dtype)
        else:
            self._gap(seen)

    def close(self) -> None:
        for w in self.writers or []:
            w.close()
        for a in self.arrays or []:
            if isinstance(a, np.memmap):
                a.flush()

    @property
    def result(self):
        if self.arrays is not None:
            return self.arrays[0] if len(self.arrays) == 1 else self.arrays
        return self.paths[0] if len(self.paths) == 1 else self.paths


class MapStream:
    """The iterator `Model.map` returns: yields each item's outputs in input
    order (an array for a one-output model, else a tuple), skipping bad items
    with on_error="skip" (listed in `.skipped`). With out=..., `Model.map` has
    already run to the end and `.out` holds the arrays or file paths written.
    `.plan` is the BatchPlan used (None for a fixed batch_size), `.count` the
    items run so far."""

    def __init__(self, model, inputs, batch_size, memory_budget, progress, out, on_error, threads, measure_ms):
        if on_error not in ("raise", "skip"):
            raise InvalidArgumentError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.model = model
        self.on_error = on_error
        self.skipped: List[SkippedItem] = []
        self.count = 0
        self.plan: Optional[BatchPlan] = None
        self.out = None
        specs = _item_specs(model)
        out_specs = []
        for t in model.outputs:
            if not t.shape:
                raise InvalidArgumentError(f"output '{t.name}' is a scalar: map needs a batch (first) dimension")
            out_specs.append((t.name, tuple(t.shape[1:]), np.dtype(t.dtype)))
        self._specs, self._out_specs = specs, out_specs
        threads = model.threads if threads is None else int(threads)
        in_item = sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for _, s, d in specs)
        out_item = sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for _, s, d in out_specs)
        # besides the session: two staging batches of inputs (one filled while
        # the other is copied in) and, when yielding, one batch of outputs
        item_bytes = 2 * in_item + (out_item if out is None else 0)
        if batch_size == "auto":
            self.plan = batch_plan(model, memory_budget, threads, item_bytes=item_bytes, measure_ms=measure_ms,
                                   overhead_us=MAP_OVERHEAD_US)
            bs = self.plan.batch_size
        else:
            if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
                raise InvalidArgumentError(f"batch_size must be 'auto' or an int >= 1, got {batch_size!r}")
            bs = int(batch_size)
            if memory_budget is not None:
                arena, resident = batch_bytes(model, bs)
                need = arena + resident + bs * item_bytes
                if need > parse_bytes(memory_budget):
                    raise OutOfMemoryError(f"batch_size {bs} needs {need} bytes, over the memory budget of "
                                           f"{parse_bytes(memory_budget)} bytes")
        self._source = _source(inputs, specs)
        if self._source.total is not None:
            bs = max(1, min(bs, self._source.total))  # no session larger than the data
        self.batch_size = bs
        self._sink = _Sink(out, out_specs, self._source.total) if out is not None else None
        self._session = model.session(threads=threads, input_shapes=[(bs,) + s for _, s, _ in specs])
        self._single_session = None  # batch 1, for isolating a failing batch's items (on_error="skip")
        self._progress = _progress_bar(progress, self._source.total)
        self._ready: "queue.Queue" = queue.Queue(maxsize=1)
        self._free: "queue.Queue" = queue.Queue()
        for _ in range(2):
            self._free.put([np.zeros((bs,) + s, d) for _, s, d in specs])
        self._stop = threading.Event()
        self._producer = threading.Thread(target=self._produce, name="tinyinfer-map-reader", daemon=True)
        self._producer.start()
        self._gen = self._run()

    # the reader thread: fills staging batches while the session runs
    def _produce(self) -> None:
        def bad(index, name, reason):
            err = BadItemError(index, name, reason)
            if self.on_error == "raise":
                raise err
            self.skipped.append(SkippedItem(index, name, reason))

        try:
            more = True
            while more and not self._stop.is_set():
                bufs = self._free.get()
                if bufs is None:
                    return
                batch = _Batch(bufs)
                try:
                    more = self._source.fill(batch, self.batch_size, bad)
                except BadItemError as e:
                    if batch.count:
                        self._put(batch)  # the items before the bad one still run
                    self._put(e)
                    return
                if batch.count:
                    self._put(batch)
                else:
                    self._free.put(bufs)
            self._put(None)
        except _Stop:
            pass
        except BaseException as e:  # unreadable data and the like: the consumer raises it
            try:
                self._put(e)
            except _Stop:
                pass

    def _put(self, item) -> None:
        while True:
            if self._stop.is_set():
                raise _Stop
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self):
        session = self._session
        ins = session._in_views
        seen = 0
        try:
            while True:
                item = self._ready.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                batch = item
                k = batch.count
                for view, buf in zip(ins, batch.bufs):
                    if k < self.batch_size:
                        buf[k:] = 0  # the ragged last batch: zeros after its items
                    view[...] = buf
                indices = batch.indices
                self._free.put(batch.bufs)  # copied in: the reader may refill it while we run
                outs = self._run_batch(indices, k)
                if outs is None:
                    continue
                seen = max(seen, indices[-1] + 1) if indices else seen
                self.count += len(indices)
                if self._progress is not None:
                    self._progress.update(len(indices))
                if self._sink is not None:
                    self._sink.write(indices, outs, len(indices))
                else:
                    rows = [o[:len(indices)].copy() for o in outs]
                    for j in range(len(indices)):
                        yield rows[0][j] if len(rows) == 1 else tuple(r[j] for r in rows)
            if self._sink is not None:
                self._sink.finish(self.skipped, max(seen, self._source_seen()))
        except BadItemError as e:
            if self._sink is not None:
                self._sink.finish(self.skipped, e.index)
                raise BadItemError(e.index, e.name, e.reason + f"; the {self._sink.rows} items before it are "
                                   f"written to {self._sink_label()}") from None
            raise
        finally:
            self._shutdown()

    def _source_seen(self) -> int:
        s = self._source
        return getattr(s, "index", getattr(s, "pos", 0))

    def _sink_label(self) -> str:
        r = self._sink.result
        return r if isinstance(r, str) else ("out" if not isinstance(r, list) or not r or
                                             not isinstance(r[0], str) else ", ".join(r))

    def _run_batch(self, indices, k):
        """Runs the staged batch; the outputs (views valid until the next run),
        or None when every item failed and was skipped."""
        try:
            L.tinf_session_run(self._session._handle)
            return self._session._out_views
        except TinyInferError as e:
            if self.on_error == "raise":
                raise type(e)(f"items {indices[0]}..{indices[k - 1]}: {e}") from None
        # on_error="skip": run the items one by one to find the bad ones
        if self._single_session is None:
            self._single_session = self.model.session(
                threads=self._session.threads, input_shapes=[(1,) + s for _, s, _ in self._specs])
        staged = [v[:k].copy() for v in self._session._in_views]
        good, rows = [], [[] for _ in self._out_specs]
        for j in range(k):
            try:
                outs = self._single_session.run([a[j:j + 1] for a in staged])
            except TinyInferError as e:
                self.skipped.append(SkippedItem(indices[j], None, str(e)))
                continue
            good.append(indices[j])
            for r, o in zip(rows, outs):
                r.append(o[0])
        if not good:
            return None
        indices[:] = good
        return [np.stack(r) for r in rows]

    def _shutdown(self) -> None:
        self._stop.set()
        self._free.put(None)
        self._producer.join()
        self._source.close()
        if self._sink is not None:
            self._sink.close()
            self.out = self._sink.result
        if self._progress is not None:
            self._progress.close()
        self._session.close()
        if self._single_session is not None:
            self._single_session.close()

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        return next(self._gen)

    def close(self) -> None:
        """Stops early (the reader thread ends, files are closed, what was
        written is kept)."""
        self._gen.close()

    def __enter__(self) -> "MapStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def drain(self) -> "MapStream":
        for _ in self._gen:
            pass
        return self


def _progress_bar(progress, total):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None  # tqdm is optional: no bar
    return tqdm(total=total, unit="item", unit_scale=True, desc="tinyinfer map", file=sys.stderr,
                dynamic_ncols=True)


def map(model, inputs, batch_size="auto", memory_budget=DEFAULT_BUDGET, progress=True, out=None,
        on_error: str = "raise", threads: Optional[int] = None, measure_ms: int = DEFAULT_MEASURE_MS) -> MapStream:
    """See Model.map."""
    stream = MapStream(model, inputs, batch_size, memory_budget, progress, out, on_error, threads, measure_ms)
    if out is not None:
        stream.drain()
    return stream


# -- Batcher: micro-batching concurrent callers ----------------------------------------

class BatcherClosedError(InvalidStateError):
    """A request the Batcher could not run because it was closed."""


_INVALID_STATE, _RUNTIME = int(Status.INVALID_STATE), int(Status.RUNTIME)
_COMPLETIONS = 256  # finished submissions taken per tinf_batcher_completed call
# How long a Python caller woken with its result may keep the turn
# (tinf_batcher_set_turn: the callers of a batch are woken one at a time,
# each when the previous one is back in the library, so it has let the GIL
# go); 0: every caller is woken at once. Off by default: on the shared
# 2-core VM it measured slower (more thread switches a request, not fewer;
# BENCHMARKS.md, "Batch processing").
DEFAULT_TURN_MS = 0.0


class Batcher:
    """Gathers requests from many threads (or asyncio tasks) into batched runs
    of `model` and hands each caller its own rows, like Triton's dynamic
    batching.

        with tinyinfer.Batcher(model, max_batch=32, max_delay_ms=2) as b:
            (y,) = b.run(x)            # from any thread; x has a batch (first) dimension
            (y,) = await b.arun(x)     # from asyncio

    A request is what `Model.run` takes (its rows along the first dimension,
    at most max_batch); the result is what it returns. The queue is in the
    library (tinf_batcher_*, docs/batching.md): `run` is one call into it, in
    which the caller's thread waits without the GIL while `workers` threads
    of the library gather queued requests (up to max_batch rows; waiting at
    most max_delay_ms after the oldest, and only while fewer are queued than
    were in flight at once recently), run them as one batch and copy each
    request's rows out. A caller that finds nothing queued and a worker idle
    runs its request at once on its own thread, as `Model.run` would.
    `submit` (a concurrent.futures.Future) and `arun` queue without waiting;
    `arun`'s results reach its event loop through an fd the library writes
    once per batch, read by the loop itself (the first loop to call it; the
    next once that one is closed); `submit`'s, and other loops', through one
    thread that hands each loop its results in one call per group. A
    request is checked when submitted
    (shape, dtype, rows) and refused alone; when a batch run fails, its
    requests run one by one so only the failing ones get the error.
    `close()` (or leaving the `with` block) refuses new requests and
    completes the pending ones (cancel=True fails them with
    BatcherClosedError). `threads`: each session's threads (default the
    model's); `workers`: batches running at the same time (each worker has
    its own sessions, for the power-of-two sizes up to max_batch);
    `turn_ms` > 0: the callers of a batch are woken one at a time, each when
    the previous one is back in the library or after turn_ms
    (tinf_batcher_set_turn; off by default: measured slower here)."""

    def __init__(self, model, max_batch: int = 32, max_delay_ms: float = 2.0, threads: Optional[int] = None,
                 workers: int = 1, turn_ms: float = DEFAULT_TURN_MS):
        if not isinstance(max_batch, (int, np.integer)) or not 1 <= max_batch <= 65536:
            raise InvalidArgumentError(f"max_batch must be an int in 1..65536, got {max_batch!r}")
        if not 0 <= max_delay_ms <= 10_000:
            raise InvalidArgumentError(f"max_delay_ms must be in 0..10000, got {max_delay_ms!r}")
        if not isinstance(workers, (int, np.integer)) or not 1 <= workers <= 64:
            raise InvalidArgumentError(f"workers must be an int in 1..64, got {workers!r}")
        if not 0 <= turn_ms <= 1000:
            raise InvalidArgumentError(f"turn_ms must be in 0..1000, got {turn_ms!r}")
        self.model = model
        self.max_batch, self.max_delay = int(max_batch), float(max_delay_ms) / 1e3
        self.threads = model.threads if threads is None else int(threads)
        self.workers = int(workers)
        self._specs = _item_specs(model)
        self._names = [s[0] for s in self._specs]
        self._outs = [(tuple(t.shape[1:]), np.dtype(t.dtype)) for t in model.outputs]
        self._in_row = [int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for _, shape, dtype in self._specs]
        self._out_row = [int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in self._outs]
        self._nin, self._nout = len(self._specs), len(self._outs)
        h = _lib.BatcherHandle()
        L.tinf_batcher_create(model.handle, self.max_batch, int(round(self.max_delay * 1e6)), self.workers,
                              self.threads, byref(h))
        self._handle = h
        self._ref = _BatcherRef(h)  # frees the handle once neither self nor the completion thread needs it
        self.turn_ms = float(turn_ms)
        if self.turn_ms > 0:
            L.tinf_batcher_set_turn(h, int(round(self.turn_ms * 1e3)))
        self._closed = False
        self._lock = threading.Lock()
        self._local = threading.local()   # each calling thread's argument arrays
        self._pending: Dict[int, Any] = {}  # submissions by tag: (arrays, outputs, future, loop)
        self._tags = itertools.count()
        self._ctag = ctypes.c_uint64()  # submit's tag argument (submit keeps the GIL: no other thread between set and call)
        self._crows = [None] + [c_int64(r) for r in range(1, self.max_batch + 1)]
        self._thread: Optional[threading.Thread] = None  # takes the results of submit() (and of other loops' arun)
        self._channel: Optional[_LoopChannel] = None  # an event loop's fd the library writes to (arun)
        # the hot calls without argtypes (_lib.batcher_run_raw / _submit_raw)
        self._run_c = _lib.batcher_run_raw
        self._submit_c = _lib.batcher_submit_raw
        self._hv = ctypes.c_void_p(h.value)
        self._cnin, self._cnout = c_int32(self._nin), c_int32(self._nout)
        one = len(self._specs) == 1
        self._single = (self._specs[0][1], self._specs[0][2]) if one else None

    # -- callers ---------------------------------------------------------------
    def _args(self):
        """This thread's argument arrays for submit (input and output pointers and sizes)."""
        try:
            return self._local.args
        except AttributeError:
            args = self._local.args = ((ctypes.c_void_p * self._nin)(), (c_size_t * self._nin)(),
                                       (ctypes.c_void_p * self._nout)(), (c_size_t * self._nout)())
            return args

    def _stage(self, rows: int) -> "_Stage":
        """This thread's staging buffers, holding at least `rows` rows."""
        st = getattr(self._local, "stage", None)
        if st is None or st.capacity < rows:
            cap = 1
            while cap < rows:
                cap *= 2
            st = self._local.stage = _Stage(self, min(cap, self.max_batch))
        if st.rows != rows:
            st.set_rows(self, rows)
        return st

    def run(self, inputs, timeout: Optional[float] = None) -> List[np.ndarray]:
        """Runs one request (blocking) and returns its outputs (a list of
        arrays with the request's rows). `timeout` (seconds): a request not
        taken into a batch by then is withdrawn (TimeoutError; it did not run)."""
        # One call into the library with argument arrays prepared per thread:
        # the rows are staged in this thread's buffers (whose addresses are
        # fixed), so the call takes no per-call conversion but two copies.
        single = self._single
        if single is not None and type(inputs) is np.ndarray and inputs.dtype == single[1] \
                and inputs.shape[1:] == single[0] and 1 <= inputs.shape[0] <= self.max_batch:  # the common call
            rows = inputs.shape[0]
            st = getattr(self._local, "stage", None)
            if st is None or st.rows != rows:
                st = self._stage(rows)
            st.vin[0][...] = inputs
            status = self._run_c(self._hv, st.crows, st.ip, st.inb, self._cnin, st.op, st.onb, self._cnout,
                                 _NO_TIMEOUT if timeout is None else c_int64(max(int(timeout * 1e6), 0)))
            if status:
                raise self._error(status, timeout)
            return [st.vout[0].copy()]
        arrays = self._prepare(inputs)
        rows = arrays[0].shape[0]
        st = self._stage(rows)
        for v, a in zip(st.vin, arrays):
            v[...] = a
        status = self._run_c(self._hv, st.crows, st.ip, st.inb, self._cnin, st.op, st.onb, self._cnout,
                             _NO_TIMEOUT if timeout is None else c_int64(max(int(timeout * 1e6), 0)))
        if status:
            raise self._error(status, timeout)
        return [v.copy() for v in st.vout]

    def _fill(self, ip, inb, op, onb, arrays, outs, rows) -> None:
        for i, a in enumerate(arrays):
            ip[i] = a.ctypes.data
            inb[i] = rows * self._in_row[i]
        for o, y in enumerate(outs):
            op[o] = y.ctypes.data
            onb[o] = rows * self._out_row[o]

    def _error(self, status: int, timeout=None) -> Exception:
        msg = L.tinf_last_error().decode("utf-8", "replace")
        if status == _INVALID_STATE:
            return BatcherClosedError(msg, status)
        if status == _RUNTIME and timeout is not None and msg.startswith("tinf_batcher_run: timed out"):
            return TimeoutError(f"the request was not taken into a batch within {timeout} s (it did not run)")
        return _lib.error_for(status, msg)

    def submit(self, inputs) -> concurrent.futures.Future:
        """Queues a request; the Future's result is the list of output arrays
        (its rows). The inputs are read when the batch runs: do not change
        them before the Future is done."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._submit(self._ready(inputs), fut, None, True)
        return fut

    async def arun(self, inputs) -> List[np.ndarray]:
        """`run` for asyncio: awaits the batched run without blocking the loop
        (the results of one group reach each loop in one call)."""
        arrays = self._ready(inputs)
        loop = asyncio.get_running_loop()
        ch = self._channel
        fut = loop.create_future()
        self._submit(arrays, fut, loop, ch is None or ch.loop is not loop)
        return await fut

    def _submit(self, arrays, fut, loop, attach: bool) -> None:
        """Queues a request in the library; `attach`: first make sure its
        result has a way back (the completion thread for concurrent futures
        and loops other than the channel's; a channel for the first loop)."""
        if self._closed:
            raise BatcherClosedError("the batcher is closed")
        if attach:
            self._attach(loop)
        rows = arrays[0].shape[0]
        outs = [np.empty((rows,) + shape, dtype) for shape, dtype in self._outs]
        tag = next(self._tags)
        self._pending[tag] = (arrays, outs, fut, loop)
        ip, inb, op, onb = self._args()
        if self._single is not None:
            ip[0] = arrays[0].ctypes.data
            op[0] = outs[0].ctypes.data
            inb[0] = rows * self._in_row[0]
            onb[0] = rows * self._out_row[0]
        else:
            self._fill(ip, inb, op, onb, arrays, outs, rows)
        ctag = self._ctag
        ctag.value = tag
        st = self._submit_c(self._hv, self._crows[rows], ip, inb, self._cnin, op, onb, self._cnout, ctag)
        if st:
            self._pending.pop(tag, None)
            raise self._error(st)

    def _attach(self, loop) -> None:
        """Gives `loop`'s requests (None: concurrent futures) a way back:
        the first event loop (or the next one once it is closed) gets a
        channel, an fd the library writes to when results are ready, which
        the loop reads itself (no other thread, no GIL trade); everything
        else goes through the completion thread."""
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the batcher is closed")
            ch = self._channel
            if loop is not None and ch is not None and ch.loop is loop:
                return
            if loop is not None and (ch is None or ch.loop.is_closed()):
                if ch is not None:
                    ch.stop()
                self._channel = _LoopChannel(self._ref, self._pending, loop)
                return
            if self._thread is None:
                self._thread = threading.Thread(target=_take_completions, args=(self._ref, self._pending),
                                                name="tinyinfer-batcher", daemon=True)
                self._thread.start()

    def _ready(self, inputs) -> List[np.ndarray]:
        """_prepare, with the common request (one C-ordered array of the
        input's dtype and row shape) passed through at once."""
        single = self._single
        if single is not None and type(inputs) is np.ndarray and inputs.dtype == single[1] \
                and inputs.shape[1:] == single[0] and inputs.flags.c_contiguous \
                and 1 <= inputs.shape[0] <= self.max_batch:
            return [inputs]
        return self._prepare(inputs)

    def _prepare(self, inputs) -> List[np.ndarray]:
        """The request's arrays, checked, in the model's dtypes and C order."""
        if isinstance(inputs, dict):
            unknown = set(inputs) - set(self._names)
            missing = [n for n in self._names if n not in inputs]
            if unknown or missing:
                raise InvalidArgumentError(f"the model takes inputs {self._names}; got {sorted(inputs)}")
            arrays = [inputs[n] for n in self._names]
        elif isinstance(inputs, (list, tuple)):
            arrays = list(inputs)
        else:
            arrays = [inputs]
        if len(arrays) != len(self._specs):
            raise InvalidArgumentError(f"the model takes {len(self._specs)} input(s), got {len(arrays)}")
        out, rows = [], None
        for a, (name, shape, dtype) in zip(arrays, self._specs):
            a = np.asarray(a)
            if a.ndim != len(shape) + 1 or tuple(a.shape[1:]) != shape:
                raise InvalidArgumentError(f"input '{name}' takes (rows, {', '.join(str(d) for d in shape)}), "
                                           f"got {list(a.shape)}")
            if not np.can_cast(a.dtype, dtype, casting="same_kind"):
                raise InvalidArgumentError(f"input '{name}' takes {dtype}, got {a.dtype}")
            if rows is not None and a.shape[0] != rows:
                raise InvalidArgumentError(f"the inputs have different row counts {rows} and {a.shape[0]}")
            rows = a.shape[0]
            out.append(np.ascontiguousarray(a, dtype=dtype))
        if not 1 <= rows <= self.max_batch:
            raise InvalidArgumentError(f"a request has 1..max_batch ({self.max_batch}) rows, got {rows}")
        return out

    # -- counters ----------------------------------------------------------------
    def stats(self) -> Dict[str, int]:
        """The library's counters: requests, rows, batches (successful runs),
        failed, isolated (failed batches run again request by request),
        queued, running."""
        c = _lib.BatcherCounters()
        L.tinf_batcher_stats(self._handle, byref(c))
        return {k: getattr(c, k) for k in ("requests", "rows", "batches", "failed", "isolated", "queued", "running")}

    @property
    def batches(self) -> int:
        """Successful batched runs so far."""
        return self.stats()["batches"]

    @property
    def rows_run(self) -> int:
        """Rows run so far (padding not counted)."""
        return self.stats()["rows"]

    # -- lifetime --------------------------------------------------------------
    def close(self, cancel: bool = False, timeout: Optional[float] = None) -> None:
        """Refuses new requests; completes the pending ones (cancel=True fails
        them with BatcherClosedError instead) and waits for the library's
        workers (running batches finish) and, at most `timeout` seconds, for
        the thread that hands out submissions' results. Idempotent."""
        with self._lock:
            self._closed = True
            ch = self._channel
        L.tinf_batcher_close(self._handle, 1 if cancel else 0)
        if ch is not None:
            ch.finish()  # the results of the last submissions reach their loop
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def __del__(self):
        # Unreachable, so no thread is in run: close, so that the completion
        # thread (if any) ends; the handle is freed with the last _BatcherRef.
        if not getattr(self, "_closed", True):
            self._closed = True
            L.tinf_batcher_close(self._handle, 0)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<tinyinfer.Batcher max_batch={self.max_batch} max_delay_ms={self.max_delay * 1e3:g} "
                f"workers={self.workers} threads={self.threads}{' closed' if self._closed else ''}>")


_NO_TIMEOUT = c_int64(-1)


class _Stage:
    """A thread's staging buffers for Batcher.run: `capacity` rows of each
    input and output, their fixed addresses in ctypes arrays, and views and
    sizes for the current row count."""
    __slots__ = ("capacity", "rows", "bin", "bout", "vin", "vout", "ip", "inb", "op", "onb", "crows")

    def __init__(self, b: Batcher, capacity: int):
        self.capacity, self.rows = capacity, 0
        self.bin = [np.empty((capacity,) + shape, dtype) for _, shape, dtype in b._specs]
        self.bout = [np.empty((capacity,) + shape, dtype) for shape, dtype in b._outs]
        self.ip = (ctypes.c_void_p * b._nin)(*[a.ctypes.data for a in self.bin])
        self.op = (ctypes.c_void_p * b._nout)(*[a.ctypes.data for a in self.bout])
        self.inb, self.onb = (c_size_t * b._nin)(), (c_size_t * b._nout)()

    def set_rows(self, b: Batcher, rows: int) -> None:
        self.rows, self.crows = rows, c_int64(rows)
        self.vin = [a[:rows] for a in self.bin]
        self.vout = [a[:rows] for a in self.bout]
        for i in range(b._nin):
            self.inb[i] = rows * b._in_row[i]
        for o in range(b._nout):
            self.onb[o] = rows * b._out_row[o]


class _BatcherRef:
    """Owns a tinf_batcher handle: frees it when the last reference goes
    (the Batcher's, the completion thread's)."""
    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle

    def __del__(self):
        if self.handle is not None:
            L.tinf_batcher_free(self.handle)
            self.handle = None


def _collect(handle, pending: Dict[int, Any], bufs, timeout: int, here=None) -> bool:
    """Takes finished submissions from the library (waiting at most
    `timeout` us; -1: until some come; 0: drains what is there) and sets
    their futures: concurrent ones at once, asyncio ones of loop `here` (the
    calling thread's) at once, other loops' in one call per loop and group.
    False when the batcher is closed and none is outstanding."""
    tags, statuses, count = bufs
    completed = _lib.batcher_completed_raw
    while True:
        st = completed(handle, tags, statuses, _COMPLETIONS, timeout, byref(count))
        if st:
            return False  # closed and nothing outstanding (TINF_ERR_INVALID_STATE)
        n = count.value
        by_loop: Dict[Any, list] = {}
        for i in range(n):
            entry = pending.pop(tags[i], None)
            if entry is None:
                continue
            _, outs, fut, loop = entry
            s = statuses[i]
            err = None
            if s:  # only the last one of a group can have failed; its message is this thread's last error
                msg = L.tinf_last_error().decode("utf-8", "replace")
                err = BatcherClosedError(msg, s) if s == _INVALID_STATE else _lib.error_for(s, msg)
            if loop is None:
                if fut.set_running_or_notify_cancel():
                    if err is None:
                        fut.set_result(outs)
                    else:
                        fut.set_exception(err)
            elif loop is here:
                _deliver(((fut, outs, err),))
            else:
                by_loop.setdefault(loop, []).append((fut, outs, err))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:
                pass  # the loop is closed: nobody awaits these
        if timeout != 0 or n < _COMPLETIONS:
            return True


def _completion_buffers():
    return (ctypes.c_uint64 * _COMPLETIONS)(), (c_int32 * _COMPLETIONS)(), c_int32()


def _take_completions(ref: _BatcherRef, pending: Dict[int, Any]) -> None:
    """A Batcher's thread for submit() (and for event loops other than the
    channel's): takes finished submissions from the library and sets their
    futures until the batcher is closed and none is outstanding. It holds
    the handle's owner, not the Batcher, so an unclosed Batcher can still be
    collected (which closes it, and so ends this thread)."""
    bufs = _completion_buffers()
    while _collect(ref.handle, pending, bufs, -1):
        pass


class _LoopChannel:
    """An event loop's way back for arun: an eventfd (a pipe where there is
    none) the library writes to when finished submissions go from none to
    some (tinf_batcher_set_notify_fd), read by the loop itself, which then
    takes every finished submission and sets its futures directly: one
    wake-up of the loop per batch, and no other Python thread (whose turns
    with the GIL would cost a thread switch each). Holds the handle's
    owner, not the Batcher."""

    def __init__(self, ref: _BatcherRef, pending: Dict[int, Any], loop):
        self.ref, self.pending, self.loop = ref, pending, loop
        if hasattr(os, "eventfd"):
            self.rfd = self.wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self.rfd, self.wfd = os.pipe()
            os.set_blocking(self.rfd, False)
            os.set_blocking(self.wfd, False)
        self.bufs = _completion_buffers()
        loop.add_reader(self.rfd, self.drain)
        L.tinf_batcher_set_notify_fd(ref.handle, self.wfd)

    def drain(self) -> None:
        """On the loop: the wake-up first (a write after it is seen next time), then the results."""
        try:
            os.read(self.rfd, 4096)
        except (BlockingIOError, InterruptedError):
            pass
        _collect(self.ref.handle, self.pending, self.bufs, 0, self.loop)

    def finish(self) -> None:
        """After the batcher was closed (every submission has its result in
        the library): hands the last results to the loop and stops."""
        loop = self.loop
        if loop.is_closed():
            self.stop()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.drain()
            self.stop()
        else:
            try:
                loop.call_soon_threadsafe(self._finish_on_loop)
            except RuntimeError:
                self.stop()

    def _finish_on_loop(self) -> None:
        self.drain()
        self.stop()

    def stop(self) -> None:
        """No more writes nor reads; closes the fd (idempotent)."""
        if self.rfd is None:
            return
        L.tinf_batcher_set_notify_fd(self.ref.handle, -1)
        if not self.loop.is_closed():
            try:
                self.loop.remove_reader(self.rfd)
            except (RuntimeError, ValueError):
                pass
        self._close_fds()

    def _close_fds(self) -> None:
        rfd, wfd, self.rfd, self.wfd = self.rfd, self.wfd, None, None
        if rfd is not None:
            os.close(rfd)
            if wfd != rfd:
                os.close(wfd)

    def __del__(self):
        # The loop was collected with the reader still on it (the batcher was
        # never closed): the handle, if still alive, stops writing first.
        if getattr(self, "rfd", None) is not None:
            if self.ref.handle is not None:
                L.tinf_batcher_set_notify_fd(self.ref.handle, -1)
            self._close_fds()


def _deliver(items) -> None:
    """On an event loop's thread: sets its requests' asyncio futures."""
    for fut, outs, err in items:
        if not fut.done():
            if err is None:
                fut.set_result(outs)
            else:
                fut.set_exception(err)


# -- command line: python -m tinyinfer run MODEL --input DIR_OR_FILE --output FILE ------------

def add_cli_arguments(parser) -> None:
    """The streaming options of `python -m tinyinfer run`."""
    parser.add_argument("--output", help="stream over --input (a .npy, .npz or folder of them, items along axis 0) "
                                         "and write the outputs to this .npy (a folder for several outputs)")
    parser.add_argument("--memory-budget", help="bytes the run may use, e.g. 256MB (default 256MB when streaming)")
    parser.add_argument("--batch-size", default=None, help="'auto' (default: batch_plan under the budget) or an int")
    parser.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                        help="a bad item (wrong shape, unreadable file): stop (default) or skip it (NaN rows)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def cli_streams(args) -> bool:
    """Whether `run` streams: --output, --memory-budget or --batch-size given,
    or one --input that is a folder or an .npz."""
    one = args.input[0] if args.input and len(args.input) == 1 else None
    return bool(args.output or args.memory_budget or args.batch_size or
                (one is not None and (os.path.isdir(one) or one.endswith(".npz"))))


def cli_run(args) -> int:
    """`python -m tinyinfer run MODEL --input X --output Y [--memory-budget B]`."""
    import tinyinfer
    if not args.input or len(args.input) != 1:
        raise InvalidArgumentError("streaming takes one --input: a .npy, an .npz or a folder of them")
    budget = args.memory_budget or DEFAULT_BUDGET
    bs = args.batch_size or "auto"
    bs = bs if bs == "auto" else int(bs)
    t0 = time.perf_counter()
    with tinyinfer.load(args.model, threads=args.threads) as m:
        stream = MapStream(m, args.input[0], bs, budget, not args.no_progress, args.output or None,
                           args.on_error, None, DEFAULT_MEASURE_MS)
        if args.output:
            try:
                stream.drain()
            finally:
                if stream._sink is not None and stream.out is not None:
                    print(f"wrote {stream._sink.rows} rows to {stream.out} ({len(stream.skipped)} skipped)", file=sys.stderr)
        else:
            for i, y in enumerate(stream):
                ys = y if isinstance(y, tuple) else (y,)
                print(i, " ".join(np.array2string(v.reshape(-1)[:8], precision=5) for v in ys))
    dt = time.perf_counter() - t0
    plan = f" (batch_plan: {stream.plan.source})" if stream.plan is not None else ""
    print(f"{stream.count} items in {dt:.2f} s ({stream.count / max(dt, 1e-9):.1f} items/s), batch {stream.batch_size}"
          f"{plan}, memory budget {budget}", file=sys.stderr)
    for s in stream.skipped:
        print(f"skipped item {s.index}{f' ({s.name})' if s.name else ''}: {s.reason}", file=sys.stderr)
    return 0
