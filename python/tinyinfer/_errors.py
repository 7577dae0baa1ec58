"""Statuses and exceptions: `Status` mirrors the tinf_status enum of
include/tinyinfer.h, and each exception class carries the status it stands
for (`ExceptionClass.status`, and `.status` of each instance). BY_STATUS is the
one table from status to class; test_errors.py checks both against the header.
Nothing else in the package or its tests writes a status as a number."""

from __future__ import annotations

import enum
from typing import Optional


class Status(enum.IntEnum):
    """tinf_status (include/tinyinfer.h): the value every fallible C call returns."""
    OK = 0                  # TINF_OK
    INVALID_ARGUMENT = 1    # TINF_ERR_INVALID_ARGUMENT
    IO = 2                  # TINF_ERR_IO
    BAD_FORMAT = 3          # TINF_ERR_BAD_FORMAT
    VERSION = 4             # TINF_ERR_VERSION
    UNSUPPORTED_OP = 5      # TINF_ERR_UNSUPPORTED_OP
    UNSUPPORTED_DTYPE = 6   # TINF_ERR_UNSUPPORTED_DTYPE
    SHAPE = 7               # TINF_ERR_SHAPE
    OUT_OF_MEMORY = 8       # TINF_ERR_OUT_OF_MEMORY
    INVALID_STATE = 9       # TINF_ERR_INVALID_STATE
    INTERNAL = 10           # TINF_ERR_INTERNAL
    RUNTIME = 11            # TINF_ERR_RUNTIME


class TinyInferError(Exception):
    """An error reported by the library or the package: `.status` (a Status,
    or the plain int of a status this package does not know) and `.message`.
    The class itself stands for TINF_ERR_INTERNAL."""

    status = Status.INTERNAL

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        if status is not None:
            try:
                status = Status(status)
            except ValueError:
                status = int(status)
            self.status = status
        self.message = message


class InvalidArgumentError(TinyInferError, ValueError):
    """A bad argument: a wrong shape, size, dtype, index or value."""
    status = Status.INVALID_ARGUMENT


class TinyInferIOError(TinyInferError, OSError):
    """A file could not be opened, mapped or written."""
    status = Status.IO


class ModelFormatError(TinyInferError, ValueError):
    """The bytes are not a valid .tinf model (truncated, corrupt, inconsistent)."""
    status = Status.BAD_FORMAT


class VersionError(ModelFormatError):
    """A .tinf major version this library does not read."""
    status = Status.VERSION


class UnsupportedOpError(TinyInferError, NotImplementedError):
    """An op, attribute, shape or dtype that the kernels do not support."""
    status = Status.UNSUPPORTED_OP


class UnsupportedDtypeError(UnsupportedOpError):
    """A dtype that an op does not support (an UnsupportedOpError too)."""
    status = Status.UNSUPPORTED_DTYPE


class ShapeError(TinyInferError, ValueError):
    """Shapes that do not fit together."""
    status = Status.SHAPE


class OutOfMemoryError(TinyInferError, MemoryError):
    """The library could not allocate memory."""
    status = Status.OUT_OF_MEMORY


class InvalidStateError(TinyInferError, RuntimeError):
    """A call in the wrong order (for example using a closed model)."""
    status = Status.INVALID_STATE


class TinyInferRuntimeError(TinyInferError, RuntimeError):
    """A run failed on its data (for example a Gather index out of range)."""
    status = Status.RUNTIME


# The one table from status to exception class: every failing Status once.
BY_STATUS = {cls.status: cls for cls in (
    InvalidArgumentError, TinyInferIOError, ModelFormatError, VersionError, UnsupportedOpError,
    UnsupportedDtypeError, ShapeError, OutOfMemoryError, InvalidStateError, TinyInferError,
    TinyInferRuntimeError)}


def error_for(status: int, message: str) -> TinyInferError:
    """The exception for a status the library returned (a status this package
    does not know gives TinyInferError carrying that number)."""
    cls = BY_STATUS.get(status, TinyInferError)
    return cls(message, status)
