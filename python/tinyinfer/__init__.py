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


def info() -> dict:
    """What this installation runs on: the library's version, ABI and file,
    the .tinf format version it writes, and the CPU level its kernels run at
    (`isa`: "baseline", "avx2" or "avx512" on x86-64, "baseline" or "dotprod"
    on AArch64), the best level the CPU supports (`isa_detected`; they differ
    when the environment variable TINYINFER_ISA asks for a lower level) and
    the CPU features the library detected."""
    return {
        "version": __version__,
        "abi": _clib.tinf_abi_version(),
        "format": f"{_clib.tinf_format_version_major()}.{_clib.tinf_format_version_minor()}",
        "library": _lib.lib_path,
        "isa": _clib.tinf_cpu_isa().decode(),
        "isa_detected": _clib.tinf_cpu_isa_detected().decode(),
        "cpu_features": _clib.tinf_cpu_features().decode().split(),
    }


__all__ = [
    "load", "info", "Model", "Session", "TensorInfo", "TensorDetail", "OpDetail", "convert", "GraphBuilder", "Tensor", "OPS", "ABI_VERSION",
    "Status", "TinyInferError", "InvalidArgumentError", "TinyInferIOError", "ModelFormatError", "VersionError",
    "UnsupportedOpError", "UnsupportedDtypeError", "ShapeError", "OutOfMemoryError", "InvalidStateError", "TinyInferRuntimeError",
]

# `tinyinfer.convert(src, dst, **options)` is the function; the importers live
# in the subpackage tinyinfer.convert (imported here first, then the name is
# rebound to the function; `import tinyinfer.convert.tflite` still works).
from . import convert as _convert_pkg  # noqa: E402
from .convert import ConvertError, Report  # noqa: E402

convert = _convert_pkg.convert

# `tinyinfer.quantize(src, dst, mode=...)` is the function (docs/quantization.md);
# the module is tinyinfer.quantize too (`from tinyinfer.quantize import Quantizer`).
from . import quantize as _quantize_mod  # noqa: E402

quantize = _quantize_mod.quantize
__all__.append("quantize")
__all__.append("ConvertError")
