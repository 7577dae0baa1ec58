"""Exceptions: one per tinf_status, each also a matching built-in exception."""

from __future__ import annotations


class TinyInferError(Exception):
    """An error reported by the library: `.status` (int) and `.message`."""

    def __init__(self, message: str, status: int = 10):
        super().__init__(message)
        self.status = status
        self.message = message


class InvalidArgumentError(TinyInferError, ValueError):
    """A bad argument: a wrong shape, size, dtype, index or value."""


class TinyInferIOError(TinyInferError, OSError):
    """A file could not be opened, mapped or written."""


class ModelFormatError(TinyInferError, ValueError):
    """The bytes are not a valid .tinf model (truncated, corrupt, inconsistent)."""


class VersionError(ModelFormatError):
    """A .tinf major version this library does not read."""


class UnsupportedOpError(TinyInferError, NotImplementedError):
    """An op, attribute, shape or dtype that the kernels do not support."""


class ShapeError(TinyInferError, ValueError):
    """Shapes that do not fit together."""


class OutOfMemoryError(TinyInferError, MemoryError):
    """The library could not allocate memory."""


class InvalidStateError(TinyInferError, RuntimeError):
    """A call in the wrong order (for example using a closed model)."""


class TinyInferRuntimeError(TinyInferError, RuntimeError):
    """A run failed on its data (for example a Gather index out of range)."""


_BY_STATUS = {
    1: InvalidArgumentError,
    2: TinyInferIOError,
    3: ModelFormatError,
    4: VersionError,
    5: UnsupportedOpError,
    6: UnsupportedOpError,
    7: ShapeError,
    8: OutOfMemoryError,
    9: InvalidStateError,
    10: TinyInferError,
    11: TinyInferRuntimeError,
}


def error_for(status: int, message: str) -> TinyInferError:
    """The exception for a status code (unknown codes give the base class)."""
    return _BY_STATUS.get(status, TinyInferError)(message, status)
