"""What `tinyinfer.load` reads: a .tinf as it is, or a .tflite / .onnx /
torch.save / safetensors model converted in memory, the result kept in the
conversion cache (tinyinfer.cache) under the sha256 of the source's bytes,
the converter options and the versions of the library and the converters."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from typing import NamedTuple, Optional

from . import cache as _cache
from ._errors import InvalidArgumentError, ModelFormatError, TinyInferError

TINF_MAGIC = b"TINF"


def _head(source, n: int = 8) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:n])
    try:
        return _cache.read_prefix(source, n)
    except OSError:
        return b""  # the loader reports the missing or unreadable file


def is_tinf(source) -> bool:
    """Whether the source (a path or bytes) starts with the .tinf magic."""
    return _head(source, 4) == TINF_MAGIC


@functools.lru_cache(maxsize=1)
def converter_version() -> str:
    """The library version and a digest of the converters' sources (each
    file's name, size and modification time: reading them all would cost
    every process a few ms): a cached conversion is reused only by the same
    library and converters."""
    from . import __version__
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert")
    lines, folders = [], [("", root)]
    while folders:  # (os.scandir: os.walk and relpath cost about twice as much, on every process's first load)
        rel, folder = folders.pop()
        with os.scandir(folder) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    folders.append((rel + e.name + "/", e.path))
                elif e.name.endswith(".py"):
                    st = e.stat()
                    lines.append(f"{rel}{e.name}\0{st.st_size}\0{st.st_mtime_ns}\0")
    h = hashlib.sha256(__version__.encode())
    h.update("".join(sorted(lines)).encode())
    return h.hexdigest()


class Converted(NamedTuple):
    """A converted model for Model: its .tinf bytes (a 64-byte aligned numpy
    uint8 array when read from the cache: loaded without a copy) and what
    identifies them (the conversion cache key: the prepack cache keys its
    image by it instead of hashing the bytes again)."""
    data: object
    content: Optional[str]


def _options_text(fmt: str, options: dict):
    """The options as canonical JSON, or None when they are not plain data
    (a torch architecture object): such conversions are not cached."""
    def plain(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return True
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        return False
    if not plain(options):
        return None
    return json.dumps({"format": fmt, "options": options}, sort_keys=True)


def convert_cached(source, fmt: str, *, cache: bool = True, **options) -> Converted:
    """The .tinf bytes of a model of format `fmt` (a path or bytes), converted
    with `options` (tinyinfer.convert's), from the cache when it holds them.
    The key is the source's sha256 (for a file, through its identity's .ref
    entry: an unchanged file is not read again), the options and the
    converters' version."""
    from .convert import convert
    text = _options_text(fmt, options) if cache else None
    k = None
    if text is not None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            content = hashlib.sha256(source).hexdigest()
        else:
            content = _cache.file_content_hash(os.fspath(source))
        if content is not None:
            k = _cache.key("source-sha256", content, text, converter_version())
    if k is not None:
        hit = _cache.get(k, aligned=True)
        if hit is not None:
            return Converted(hit, k)
    try:
        report = convert(source, format=fmt, **options)
    except TinyInferError:
        raise
    except TypeError as e:  # an importer's "unknown option(s)"
        raise InvalidArgumentError(str(e)) from e
    except Exception as e:  # a parser's own error on a damaged file
        raise ModelFormatError(f"cannot read the model as {fmt}: {type(e).__name__}: {e}") from e
    if k is not None:
        _cache.put(k, report.data)
    return Converted(report.data, k)


def resolve(source, *, cache: bool = True, **options):
    """The source for Model: a .tinf path or bytes unchanged, a model of
    another format converted (through the cache). Bytes of no known format
    go to the loader unchanged, which says what is wrong with them."""
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"load takes a path or bytes, got {type(source).__name__}")
    if not isinstance(source, (bytes, bytearray, memoryview)):
        # Before anything opens it: a NUL byte is refused, and a missing or
        # non-regular file (a FIFO would block a read) goes to the loader,
        # which checks the file type first and names the problem.
        from .model import _fs_path
        _fs_path(source)
        try:
            regular = stat.S_ISREG(os.stat(source).st_mode)
        except OSError:
            regular = False
        if not regular:
            return source
    if is_tinf(source):
        if options:
            raise InvalidArgumentError(f"conversion option(s) {sorted(options)} given for a .tinf model")
        return source
    from .convert import detect_format  # (not imported for a .tinf)
    try:
        fmt = options.pop("format", None) or detect_format(source)
    except (ModelFormatError, OSError):
        if options:
            raise InvalidArgumentError(f"conversion option(s) {sorted(options)} given for a model "
                                       "that is neither .tinf nor a format the converters read") from None
        return source
    return convert_cached(source, fmt, cache=cache, **options)
