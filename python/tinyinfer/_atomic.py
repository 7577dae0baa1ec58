"""Writing files so that a failure never leaves a partial file: the bytes go
to a temporary file in the destination's folder, are flushed to the disk
(fsync), and the temporary file is renamed over the destination (an atomic
replace on POSIX). On any failure the temporary file is removed, the old
destination is left as it was, and TinyInferIOError names the file and the
problem ("cannot write 'out.tinf': No space left on device").

A destination that exists and is not a regular file (a device such as
/dev/null or /dev/full, a FIFO) is written in place: renaming over it would
replace the device."""

from __future__ import annotations

import os
import stat
import tempfile
from typing import Optional, Sequence, Union

from ._errors import TinyInferIOError

__all__ = ["write_atomic"]


def _fail(path: str, e: OSError) -> TinyInferIOError:
    return TinyInferIOError(f"cannot write '{path}': {e.strerror or e}")


Data = Union[bytes, bytearray, memoryview]


def write_atomic(path: Union[str, os.PathLike], data: Union[Data, Sequence[Data]], *,
                 tmp_prefix: Optional[str] = None, mode: Optional[int] = None) -> None:
    """Writes `data` (bytes, or a sequence of bytes-like parts written one
    after the other) to `path` atomically (see the module's docstring).

    tmp_prefix: the start of the temporary file's name (default
    ".<name>."), for callers that find their own stale temporary files by
    it (tinyinfer.cache). mode: the new file's permission bits (default
    what a plain open() would give: the old file's, else 0666 minus the
    umask)."""
    parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if "\0" in path:
        raise TinyInferIOError(f"cannot write {path!r}: the path contains a NUL byte")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _fail(path, e) from e
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise TinyInferIOError(f"cannot write '{path}': it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(path, "wb") as f:
                for part in parts:
                    f.write(part)
                f.flush()
        except OSError as e:
            raise _fail(path, e) from e
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        prefix = "." + os.path.basename(path) + "." if tmp_prefix is None else tmp_prefix
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    except OSError as e:
        raise _fail(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
            # the mode asked for, else the one a plain open() would give (or the old file's)
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            elif st is not None:
                os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode))
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(f.fileno(), 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _fail(path, e) from e
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
