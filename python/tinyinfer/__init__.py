"""tinyinfer: a small neural-network inference runtime (Python bindings).

    import tinyinfer
    with tinyinfer.load("model.tinf") as model:
        (y,) = model.run(x)
"""

from ._errors import (InvalidArgumentError, InvalidStateError, ModelFormatError, OutOfMemoryError, ShapeError,
                      TinyInferError, TinyInferIOError, TinyInferRuntimeError, UnsupportedOpError, VersionError)
from ._lib import ABI_VERSION
from ._lib import lib as _clib
from .builder import GraphBuilder, Tensor
from .model import Model, Session, TensorInfo, load

__version__ = _clib.tinf_version_string().decode()
OPS = sorted(__import__("tinyinfer._lib", fromlist=["OP_IDS"]).OP_IDS)

__all__ = [
    "load", "Model", "Session", "TensorInfo", "GraphBuilder", "Tensor", "OPS", "ABI_VERSION",
    "TinyInferError", "InvalidArgumentError", "TinyInferIOError", "ModelFormatError", "VersionError",
    "UnsupportedOpError", "ShapeError", "OutOfMemoryError", "InvalidStateError", "TinyInferRuntimeError",
]
