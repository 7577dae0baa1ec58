"""Converters: bring models in from TFLite, ONNX and PyTorch.

    tinyinfer.convert("model.tflite", "model.tinf")       # or .onnx, .pt/.pth, .safetensors (+ architecture)
    python -m tinyinfer convert model.onnx -o model.tinf

The importer is chosen by content (magic bytes), not only by extension. Each
importer returns a GraphBuilder and fills a Report; an unsupported op stops the
conversion with UnsupportedOpError listing every unsupported op and its count,
never a partial model.

Importers live in this package, one module each, and expose
`SUPPORTED_OPS` (their op names -> what they become) and
`import_model(source, report, **options) -> GraphBuilder`.
Peer packages (tflite, onnx, torch, safetensors) are imported lazily: the
runtime needs only numpy. A converter whose package is missing raises
MissingDependencyError naming the extra to install (`pip install
tinyinfer[tflite]`, `[onnx]`, `[torch]`).

The importers emit the plain graph: BatchNorm folding, Relu/Relu6 fusion,
zero-Pad fusion into convolutions, identity and dead-op removal are the
core's load-time passes (docs/architecture.md), which run on every model
whatever made it. The report lists what they will do (`Report.load_passes`,
the written model's `Model.passes`) after what the importer itself did.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

from .._atomic import write_atomic
from .._errors import ModelFormatError, OutOfMemoryError, TinyInferError, TinyInferIOError, UnsupportedOpError

__all__ = ["convert", "detect_format", "Report", "unsupported", "MissingDependencyError", "require", "ConvertError",
           "MAX_ELEMENTS", "check_elements"]


class ConvertError(ModelFormatError):
    """A source model a converter cannot read: malformed, truncated,
    inconsistent or out of the limits. The message names the file and the
    problem; the exception that found it is chained (`__cause__`). A
    converter raises only tinyinfer's error classes: ConvertError,
    UnsupportedOpError, MissingDependencyError, TinyInferIOError and
    OutOfMemoryError (convert() wraps anything else at its boundary)."""


# The loader's limit on one tensor (docs/format.md, Limits): 2^32 elements,
# and 2^32 bytes. Converters check every array they are asked to make
# (a Resize's output size, a folded Fill / ConstantOfShape / Range) against
# it before allocating.
MAX_ELEMENTS = 1 << 32
MAX_BYTES = 1 << 32


def check_elements(shape, itemsize: int, what: str) -> None:
    """Raises ConvertError when an array of `shape` (of `itemsize`-byte
    elements) would be over the loader's limits (or has a negative dim)."""
    n = 1
    for d in shape:
        d = int(d)
        if d < 0:
            raise ConvertError(f"{what}: negative dimension {d} in shape {list(shape)}")
        n *= d
    if n > MAX_ELEMENTS or n * itemsize > MAX_BYTES:
        raise ConvertError(f"{what}: shape {[int(d) for d in shape]} ({n} elements) is over the limit of "
                           f"2^32 elements or bytes of one tensor")


class MissingDependencyError(TinyInferError, ImportError):
    """A converter's optional package is not installed; the message names the extra to install."""


def require(module: str, extra: str, what: str):
    """Imports `module` (a converter's optional dependency) or raises
    MissingDependencyError: "<what> needs the '<package>' package: pip install tinyinfer[<extra>]"."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{what} needs the '{module.split('.')[0]}' package: "
                                     f"pip install tinyinfer[{extra}]") from None


@dataclass
class Report:
    """What a conversion did, printed after it (str(report))."""
    source: str = ""
    importer: str = ""
    ops_in: Counter = field(default_factory=Counter)     # source op type -> count
    ops_out: Counter = field(default_factory=Counter)    # tinyinfer op -> count
    folded: List[str] = field(default_factory=list)      # by the importer: constant folding, ...
    fused: List[str] = field(default_factory=list)       # by the importer: patterns, layouts, ...
    kept_precision: List[str] = field(default_factory=list)  # tensors kept in their source precision
    dropped: List[str] = field(default_factory=list)     # "what (why)"
    notes: List[str] = field(default_factory=list)
    output_bytes: int = 0
    data: bytes = field(default=b"", repr=False)          # the converted model
    _load_passes: Optional[List[str]] = field(default=None, repr=False)
    _int8_rewrite: bool = field(default=False, repr=False)   # onnx: quantized graph to the int8 kernels

    @property
    def load_passes(self) -> List[str]:
        """What the core's load-time passes do to the converted model (its
        `Model.passes`, computed by loading `data` once): BatchNorm folding,
        activation and Pad fusion, identity and dead-op removal, constant
        folding, reordering. The importers leave these rewrites to the core."""
        if self._load_passes is None:
            from ..model import Model
            with Model(self.data) as m:
                self._load_passes = m.passes
        return self._load_passes

    def __str__(self) -> str:
        def listing(items: List[str]) -> str:
            shown = items if len(items) <= 12 else items[:12] + [f"... and {len(items) - 12} more"]
            return f"({len(items)}): " + "; ".join(shown)

        def counts(c: Counter) -> str:
            return ", ".join(f"{k} x{v}" for k, v in sorted(c.items())) or "none"
        lines = [f"converted {self.source} ({self.importer})",
                 f"  ops in  ({sum(self.ops_in.values())}): {counts(self.ops_in)}",
                 f"  ops out ({sum(self.ops_out.values())}): {counts(self.ops_out)}"]
        for title, items in [("folded", self.folded), ("fused", self.fused),
                             ("kept in source precision", self.kept_precision), ("dropped", self.dropped),
                             ("notes", self.notes)]:
            if items:
                lines.append(f"  {title} {listing(items)}")
        if self.output_bytes:
            lines.append(f"  wrote {self.output_bytes} bytes")
        if self.data:
            try:
                passes = self.load_passes
            except TinyInferError as e:
                lines.append(f"  at load: the runtime refuses the model: {e}")
            else:
                lines.append(f"  at load, the core's passes {listing(passes)}" if passes else
                             "  at load, the core's passes: nothing to do")
        return "\n".join(lines)


def unsupported(importer: str, ops: Counter) -> UnsupportedOpError:
    """The error for a model with ops the importer cannot map: every one, with counts."""
    listing = ", ".join(f"{op} (x{n})" for op, n in sorted(ops.items()))
    return UnsupportedOpError(f"{importer}: unsupported op(s): {listing}; nothing was written")


def detect_format(source: Union[str, os.PathLike, bytes]) -> str:
    """'tflite', 'onnx', 'torch' (torch.save zip or legacy pickle) or 'safetensors', from the content."""
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:64])
    else:
        _check_regular_file(source)
        with open(source, "rb") as f:
            head = f.read(64)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"  # before the zip test (a TFLite file may end with a zip of metadata files)
    if head[:4] == b"PK\x03\x04" if isinstance(source, (bytes, bytearray)) else zipfile.is_zipfile(source):
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"  # u64 header length, then JSON (checked before the pickle test:
        # a header length whose low byte is 0x80 would look like a pickle)
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
        return "torch"  # legacy torch.save: a pickle protocol 2+ stream
    if head[:1] == b"\x08":
        return "onnx"  # ModelProto starts with field 1 (ir_version), a varint
    name = str(source).lower() if not isinstance(source, (bytes, bytearray)) else ""
    for ext, fmt in [(".tflite", "tflite"), (".onnx", "onnx"), (".safetensors", "safetensors"),
                     (".pt", "torch"), (".pth", "torch"), (".bin", "torch")]:
        if name.endswith(ext):
            return fmt
    raise ModelFormatError(f"cannot tell the format of {source!r}: not TFLite, ONNX, torch.save or safetensors")


def _check_regular_file(path) -> None:
    """Refuses a source that is not a regular file before opening it (a FIFO
    would block the open for ever, a device give endless bytes)."""
    import stat
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:
        raise TinyInferIOError(f"cannot read '{os.fsdecode(os.fspath(path))}': "
                               f"{getattr(e, 'strerror', None) or e}") from e
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise TinyInferIOError(f"cannot read '{os.fsdecode(os.fspath(path))}': it is {kind}")


def _source_name(src) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<bytes>"
    try:
        return os.fsdecode(os.fspath(src))
    except TypeError:
        return repr(src)


def _at_boundary(e: BaseException, name: str, fmt: Optional[str]) -> TinyInferError:
    """The tinyinfer error for an exception that left an importer: a
    TinyInferError of the same class with the file named, OSError as
    TinyInferIOError, MemoryError as OutOfMemoryError, anything else (a
    malformed file that tripped a peer package or the importer) as
    ConvertError. The caller chains the original."""
    what = f"{fmt} model" if fmt else "model"
    if isinstance(e, TinyInferError):
        if name in e.message:
            return e
        try:
            return type(e)(f"{name}: {e.message}", e.status)
        except Exception:
            return e
    if isinstance(e, MemoryError):
        return OutOfMemoryError(f"{name}: out of memory reading the {what} (a size in the file is too large)")
    if isinstance(e, OSError) and not isinstance(e, (EOFError,)) and e.errno is not None:
        return TinyInferIOError(f"cannot read '{name}': {e.strerror or e}")
    detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return ConvertError(f"{name}: malformed or unsupported {what}: {type(e).__name__}"
                        + (f": {detail}" if detail else ""))


def convert(src, dst: Optional[Union[str, os.PathLike]] = None, *, format: Optional[str] = None,
            verbose: bool = False, **options) -> Report:
    """Converts `src` (a path or bytes) to a .tinf at `dst`. Returns the Report
    (`print(report)` shows it; verbose=True prints it here, as
    `python -m tinyinfer convert` does). Options go to the importer (see
    docs/converting.md).

    Raises only tinyinfer's errors (ConvertError for a malformed source,
    naming the file and the problem, with the original exception chained).
    The file at `dst` is written atomically: a failure leaves an old file as
    it was."""
    name = _source_name(src)
    fmt = format
    try:
        if not isinstance(src, (bytes, bytearray, memoryview)):
            _check_regular_file(src)
        fmt = format or detect_format(src)
        if fmt == "torch":
            from .torchscript import is_torchscript
            if is_torchscript(src):
                fmt = "torchscript"  # torch.jit.save: code and weights, converted without torch
        report = Report(source=name, importer=fmt)
        if fmt == "tflite":
            from . import tflite as importer
        elif fmt == "onnx":
            from . import onnx as importer
        elif fmt == "torchscript":
            from . import torchscript as importer
        elif fmt in ("torch", "safetensors"):
            from . import nn as importer
        else:
            raise ModelFormatError(f"unknown format {fmt!r}")
        builder = importer.import_model(src, report, **options)
        data = builder.to_bytes()
        if report._int8_rewrite:
            from .onnx.quant import to_int8_kernels
            data = to_int8_kernels(data, report)
    except (Exception, RecursionError) as e:
        raise _at_boundary(e, name, fmt) from e
    report.output_bytes = len(data)
    report.data = data
    if dst is not None:
        write_atomic(dst, data)
    if verbose:
        print(report)
    return report
