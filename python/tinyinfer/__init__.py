"""tinyinfer: a small neural-network inference runtime (Python bindings).

    import tinyinfer
    with tinyinfer.load("model.tinf") as model:
        (y,) = model.run(x)
"""

from ._errors import (InvalidArgumentError, InvalidStateError, ModelFormatError, OutOfMemoryError, ShapeError, Status,
                      TinyInferError, TinyInferIOError, TinyInferRuntimeError, UnsupportedDtypeError, UnsupportedOpError,
                      VersionError)
from . import _lib
from ._lib import ABI_VERSION
from ._lib import lib as _clib
from .builder import GraphBuilder, Tensor
from .model import Model, OpDetail, Session, TensorDetail, TensorInfo, load

__version__ = _clib.tinf_version_string().decode()
OPS = sorted(_lib.OP_IDS)

__all__ = [
    "load", "Model", "Session", "TensorInfo", "TensorDetail", "OpDetail", "convert", "GraphBuilder", "Tensor", "OPS", "ABI_VERSION",
    "Status", "TinyInferError", "InvalidArgumentError", "TinyInferIOError", "ModelFormatError", "VersionError",
    "UnsupportedOpError", "UnsupportedDtypeError", "ShapeError", "OutOfMemoryError", "InvalidStateError", "TinyInferRuntimeError",
]

# `tinyinfer.convert(src, dst, **options)` is the function; the importers live
# in the subpackage tinyinfer.convert (imported here first, then the name is
# rebound to the function; `import tinyinfer.convert.tflite` still works).
from . import convert as _convert_pkg  # noqa: E402
from .convert import Report  # noqa: E402

convert = _convert_pkg.convert

# `tinyinfer.quantize(src, dst, mode=...)` is the function (docs/quantization.md);
# the module is tinyinfer.quantize too (`from tinyinfer.quantize import Quantizer`).
from . import quantize as _quantize_mod  # noqa: E402

quantize = _quantize_mod.quantize
__all__.append("quantize")
