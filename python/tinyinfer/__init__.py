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
from .batching import BadItemError, Batcher, BatcherClosedError, BatchPlan, parse_bytes

__version__ = _clib.tinf_version_string().decode()
OPS = sorted(_lib.OP_IDS)


def info() -> dict:
    """What this installation runs on: the library's version, ABI and file,
    the .tinf format version it writes, and the CPU level its kernels run at
    (`isa`: "baseline", "avx2" or "avx512" on x86-64, "baseline" or "dotprod"
    on AArch64), the best level the CPU supports (`isa_detected`; they differ
    when the environment variable TINYINFER_ISA asks for a lower level) and
    the CPU features the library detected; `cache`: the on-disk cache folder,
    its bound, and its conversion and prepack entries (docs/caching.md)."""
    return {
        "version": __version__,
        "abi": _clib.tinf_abi_version(),
        "format": f"{_clib.tinf_format_version_major()}.{_clib.tinf_format_version_minor()}",
        "library": _lib.lib_path,
        "isa": _clib.tinf_cpu_isa().decode(),
        "isa_detected": _clib.tinf_cpu_isa_detected().decode(),
        "cpu_features": _clib.tinf_cpu_features().decode().split(),
        # the on-disk caches (docs/caching.md): conversions and prepacked weights
        "cache": _cache_info(),
    }


def _cache_info() -> dict:
    from . import cache, prepack_cache
    conv = cache.entries("conversion")
    return {"folder": cache.cache_dir(), "max_bytes": cache.max_bytes(), "conversions": len(conv),
            "conversion_bytes": sum(e.size for e in conv), "prepack": prepack_cache.stats()}


__all__ = [
    "load", "info", "Model", "Session", "TensorInfo", "TensorDetail", "OpDetail", "convert", "GraphBuilder", "Tensor", "OPS", "ABI_VERSION",
    "Status", "TinyInferError", "InvalidArgumentError", "TinyInferIOError", "ModelFormatError", "VersionError",
    "UnsupportedOpError", "UnsupportedDtypeError", "ShapeError", "OutOfMemoryError", "InvalidStateError", "TinyInferRuntimeError",
]
__all__ += ["Batcher", "BatchPlan", "BadItemError", "BatcherClosedError", "parse_bytes"]  # batch processing (docs/batching.md)

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

# Monitoring (docs/monitoring.md): tinyinfer.Monitor and tinyinfer.compare.
from .monitor import Monitor, Unavailable  # noqa: E402

__all__ += ["Monitor", "Unavailable"]

# `tinyinfer.compare(models, ...)` is the function (like convert and quantize);
# the module stays importable as tinyinfer.compare's home, tinyinfer._compare_mod.
from . import compare as _compare_mod  # noqa: E402

compare = _compare_mod.compare
compare_table = _compare_mod.compare_table
__all__ += ["compare", "compare_table"]

def from_torch(module, example_inputs, dst=None, **options):
    """Converts a live torch.nn.Module (float, quantize_dynamic'd, scripted or
    traced) at the shapes of `example_inputs`; returns a loaded Model (its
    Report at `.report`), or writes `dst` and returns the Report. Float
    modules go through torch.onnx.export and the ONNX importer; ScriptModules
    and modules with torch.ao quantized layers through torch.jit.save and the
    TorchScript importer (int8 weights kept). Needs torch (and onnx for the
    first path): docs/converting.md, "PyTorch"."""
    from .convert.torch_live import from_torch as _from_torch
    return _from_torch(module, example_inputs, dst, **options)


__all__.append("from_torch")
# `tinyinfer.prune(src, dst, method=..., sparsity=...)` is the function (docs/pruning.md);
# the module is tinyinfer.prune too (`from tinyinfer.prune import Pruner`).
from . import prune as _prune_mod  # noqa: E402

prune = _prune_mod.prune
__all__.append("prune")
__all__.append("ConvertError")

# The result cache of Model.run (docs/caching.md).
from .result_cache import ResultCache  # noqa: E402

__all__.append("ResultCache")
from . import distill  # noqa: E402,F401  tinyinfer.distill: knowledge distillation (docs/distillation.md)
from .to_torch import to_torch  # noqa: E402  a .tinf graph as a trainable torch module (docs/distillation.md)

# Imported here, not at the first tinyinfer.load: a load's time is the load's (BENCHMARKS.md, "Prepack cache").
from . import _load_any as _load_any_mod  # noqa: E402,F401
