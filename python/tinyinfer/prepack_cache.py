"""The prepack cache: a model's float32 weights as packed for the GEMM
kernels, saved on disk by the first load and mapped read-only by later
loads (shared by every process that maps them), so they are not packed
again (docs/caching.md).

    tinyinfer.load("m.tinf")                          # on: the tinyinfer cache folder
    tinyinfer.load("m.tinf", prepack_cache=False)     # off (or TINYINFER_PREPACK_CACHE=0)
    tinyinfer.load("m.tinf", prepack_cache="/dir")    # another folder
    model.prepack                                     # what happened: state, note, counts

Files, in the folder and under the bound of tinyinfer.cache (one bound for
every kind, least recently used evicted first; `python -m tinyinfer cache
ls|clear` lists and clears them):

- `<key>.pack`: the image the library writes and checks
  (`tinf_model_prepack_image`, Runtime/PrepackImage.swift). `key` is the
  sha256 of the model's content hash, the load flags, the library version,
  the CPU level and the image layout version; the library refuses an image
  whose header holds another key, CPU level or layout, whose size or
  checksum is wrong, or whose entries do not match the model, and packs as
  usual (`model.prepack["note"]` says why); the file is then replaced.
- `<id>.ref`: for a model file, its identity (device, inode, size,
  modification and change times in ns) -> the sha256 of its bytes, so
  a later load of the unchanged file does not hash it again. A file changed
  in any way gets another identity.

A load of a model file (`load_path`) asks the library for the whole
lookup (`tinf_model_load_file_cached`: identity -> `.ref` -> key -> image,
with the same key function and folder rule as tinyinfer.cache), so a hit
is one call; what a miss leaves to do (hashing the file, writing the `.ref`
and the image) is done here with `Plan`. Bytes (a converted model) go
through `load_handle` and `Plan` all the way.

Writes go through tinyinfer.cache (temporary file, fsync, rename): readers
map the old file or the new one, never a partial one; concurrent writers of
one key write the same bytes and the last rename wins. A folder that
cannot be written (read-only, full) leaves the load working, with the
reason in `model.prepack["write_note"]`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from ctypes import byref, c_int32, c_size_t
from typing import Optional

import numpy as np

from . import _lib
from . import cache as _cache

L = _lib.lib

ENV = "TINYINFER_PREPACK_CACHE"
STATES = {0: "off", 1: "hit", 2: "miss", 3: "rejected"}


def folder(option) -> Optional[str]:
    """The folder images go to for the `prepack_cache` option (True: the
    tinyinfer cache folder; a path: that folder; False: None), or None when
    TINYINFER_PREPACK_CACHE is 0 / false / no / off."""
    if option is False or option is None:
        return None
    if os.environ.get(ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    if option is True:
        return _cache.cache_dir()
    return os.path.abspath(os.fspath(option))


_LEVEL = None


def _build():
    """What an image key takes from the package and this process's library:
    the package version, and the CPU level and image layout (fixed once the
    library is loaded: asked once)."""
    global _LEVEL
    from . import __version__
    if _LEVEL is None:
        _LEVEL = (L.tinf_cpu_isa().decode(), str(L.tinf_prepack_layout_version()))
    return (__version__,) + _LEVEL


class Plan:
    """One load's image: its file and key (from the model's content)."""

    def __init__(self, where: str, content: str, flags: int):
        self.folder = where
        self.hex = _cache.key("prepack", content, str(flags), *_build())
        self.key = bytes.fromhex(self.hex)
        self.path = _cache.entry_path(self.hex, ".pack", where)

    @classmethod
    def make(cls, option, source, flags: int, content: Optional[str] = None) -> Optional["Plan"]:
        """The plan for loading `source` (a path, or the .tinf bytes), None when
        the cache is off. `content`: what identifies the bytes when the caller
        knows it already (a converted model: its conversion cache key), else
        their sha256 (through the file's identity for a path)."""
        where = folder(option)
        if where is None:
            return None
        if content is None:
            if isinstance(source, (bytes, bytearray, memoryview, np.ndarray)):
                content = hashlib.sha256(source).hexdigest()
            else:
                content = _cache.file_content_hash(os.fspath(source), where)
                if content is None:
                    return None
        return cls(where, content, flags)

    def finish(self, handle) -> dict:
        """After the load: the stats, and the image written when the load packed."""
        state, from_image, packed = _counts(handle)
        note = ""
        if state != 1:  # a hit has no note
            n = c_size_t()
            L.tinf_model_prepack_note(handle, None, 0, byref(n))
            buf = ctypes.create_string_buffer(n.value + 1)
            L.tinf_model_prepack_note(handle, buf, len(buf), None)
            note = buf.value.decode("utf-8", "replace")
        if state == 0:
            # A load_path whose library found no .ref for the file's identity
            # (a new or changed file): nothing was looked for, so a miss.
            state, note = 2, "no image yet for this file (new or changed since the last load)"
        out = {"state": STATES.get(state, "?"), "note": note,
               "image": self.path, "from_image": from_image, "packed_at_load": packed,
               "written": False, "write_note": ""}
        if state == 1:
            try:
                os.utime(self.path)  # recently used (the bound evicts the least recently used)
            except OSError:
                pass
            return out
        size = c_size_t()
        L.tinf_model_prepack_image(handle, self.key, len(self.key), None, 0, byref(size))
        if size.value == 0:
            out["write_note"] = "nothing to cache: the model packs no weights"
            return out
        image = bytearray(size.value)
        L.tinf_model_prepack_image(handle, self.key, len(self.key),
                                   (ctypes.c_uint8 * size.value).from_buffer(image), size.value, byref(size))
        why = _cache.put_raw(self.hex, image, ".pack", self.folder)
        out["written"] = why is None
        out["write_note"] = why or ""
        return out


def stats(where: Optional[str] = None) -> dict:
    """The prepack entries of the folder (default: the tinyinfer cache folder): count and bytes."""
    items = _cache.entries("prepack", where)
    refs = _cache.entries("prepack-ref", where)
    return {"folder": where or _cache.cache_dir(), "images": len(items), "image_bytes": sum(e.size for e in items),
            "refs": len(refs), "enabled": folder(True) is not None}


def _counts(handle):
    state, from_image, packed = c_int32(), c_int32(), c_int32()
    L.tinf_model_prepack_info(handle, byref(state), byref(from_image), byref(packed))
    return state.value, from_image.value, packed.value


def load_handle(path: Optional[bytes], flags: int, option, source, buffer=None, content: Optional[str] = None):
    """Loads with the prepack cache: (handle, stats dict). `path` is the
    encoded path (None for bytes); `source` the path or the .tinf bytes;
    `buffer` the aligned numpy copy of the bytes; `content` what identifies
    them when known (Plan.make)."""
    handle = _lib.ModelHandle()
    plan = Plan.make(option, source, flags, content)
    image = plan.path.encode() if plan else None
    key = plan.key if plan else None
    n = len(key) if key else 0
    if buffer is not None:
        L.tinf_model_load_buffer_prepacked(buffer.ctypes.data, buffer.size, flags, image, key, n, byref(handle))
    else:
        L.tinf_model_load_file_prepacked(path, flags, image, key, n, byref(handle))
    if plan is None:
        _, _, packed = _counts(handle)
        return handle, {"state": "off", "note": "", "image": None, "from_image": 0, "packed_at_load": packed,
                        "written": False, "write_note": ""}
    try:
        return handle, plan.finish(handle)
    except BaseException:
        L.tinf_model_free(handle)
        raise


def load_path(path: bytes, flags: int, option, source):
    """Loads a model file with the prepack cache: (handle, stats dict, or
    None after a hit: `hit_stats` makes that dict when asked). The library
    finds and checks the image itself (tinf_model_load_file_cached: the
    file's identity -> its .ref -> the image's key and file), so a hit costs
    one call; after anything else the plan is made here and writes what is
    missing (the .ref, the image), as `load_handle` does."""
    if option is True:
        where = None  # the library's default folder (cache.cache_dir) and TINYINFER_PREPACK_CACHE
    elif option is False or option is None:
        where = b""
    else:
        where = os.fsencode(os.path.abspath(os.fspath(option)))
    handle = _lib.ModelHandle()
    L.tinf_model_load_file_cached(path, flags, where, byref(handle))
    try:
        state, from_image, packed = _counts(handle)
        if state == 1:
            return handle, None
        plan = Plan.make(option, source, flags)
        if plan is None:
            return handle, {"state": "off", "note": "", "image": None, "from_image": 0, "packed_at_load": packed,
                            "written": False, "write_note": ""}
        return handle, plan.finish(handle)
    except BaseException:
        L.tinf_model_free(handle)
        raise


def hit_stats(handle, option, source, flags: int) -> dict:
    """The stats dict of a load_path hit (its image path from the plan)."""
    _, from_image, _ = _counts(handle)
    plan = Plan.make(option, source, flags)
    return {"state": "hit", "note": "", "image": plan.path if plan else None, "from_image": from_image,
            "packed_at_load": 0, "written": False, "write_note": ""}
