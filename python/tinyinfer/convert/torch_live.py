"""Converts a live PyTorch nn.Module (`tinyinfer.from_torch`), by one of two paths:

- float modules: torch.onnx.export (TorchScript exporter, dynamo=False) into
  memory, then the ONNX importer (needs torch and onnx);
- ScriptModules (torch.jit.script / trace) and modules with torch.ao
  quantized layers (quantize_dynamic'd Linear keeps its int8 weights):
  torch.jit.save into memory (a trace at the example inputs for a module
  that is not scripted yet), then the TorchScript importer
  (convert/torchscript.py; needs torch only). `via="onnx"` / `"torchscript"`
  chooses explicitly.

    import tinyinfer
    model = tinyinfer.from_torch(net, torch.randn(1, 3, 32, 32))  # a loaded tinyinfer.Model
    y, = model.run(x.numpy())                                      # NCHW in, NCHW out, as torch
    report = tinyinfer.from_torch(net, example, "net.tinf")        # writes the file, returns the Report

Return value: with dst=None, a loaded tinyinfer.Model whose conversion Report
is at `model.report`; with a dst path, the Report (the file is written).

The module is exported in eval mode (its training flag is restored after) at
the shapes of `example_inputs` (a tensor or a tuple of tensors): the graph is
static, with the example's batch size. Options: opset (default 17; 13..20),
input_names / output_names (default: the forward() parameter names, and
output0, output1, ...), verbose (print the report), threads (for the returned
Model); any other keyword goes to the ONNX importer (keep_int8_weights, ...).
Needs torch and onnx (`pip install tinyinfer[torch,onnx]`; a missing one raises
MissingDependencyError saying so); onnxscript is not needed.
"""

from __future__ import annotations

import inspect
import io
import warnings
from typing import Optional, Sequence

from .._errors import InvalidArgumentError
from . import require

__all__ = ["from_torch", "torchscript_bytes"]


def _wrapper_class():
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(*args)

    return Wrapper


def _Wrapper(module):
    return _wrapper_class()(module)


def _default_input_names(module, n: int):
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params][:n]
        if len(names) == n and len(set(names)) == n:
            return names
    except (TypeError, ValueError):
        pass
    return [f"input{i}" for i in range(n)]


def export_onnx(module, example_inputs, opset: int = 17, input_names: Optional[Sequence[str]] = None,
                output_names: Optional[Sequence[str]] = None) -> bytes:
    """The ONNX bytes of `module` exported at the example inputs' shapes (eval mode, no gradients)."""
    torch = require("torch", "torch", "from_torch")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    if input_names is None:
        input_names = _default_input_names(module, len(example_inputs))
    was_training = module.training
    module.eval()
    f = io.BytesIO()
    # The fused "fast path" of nn.TransformerEncoderLayer / MultiheadAttention in eval mode has no ONNX export.
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None and hasattr(mha, "get_fastpath_enabled") else None
    if fastpath:
        mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs = dict(opset_version=opset, dynamo=False, input_names=list(input_names), do_constant_folding=True)
            if output_names is not None:
                kwargs["output_names"] = list(output_names)
            # Exported through a thin wrapper: the module's own forward() then sees Python defaults for the
            # arguments it is not given (tracing a top-level forward can turn them into tensors).
            torch.onnx.export(_Wrapper(module), example_inputs, f, **kwargs)
    finally:
        module.train(was_training)
        if fastpath:
            mha.set_fastpath_enabled(True)
    return f.getvalue()


def _quantized_modules(module) -> list:
    """The torch.ao quantized submodules of `module` (quantize_dynamic's Linear, static quantized layers)."""
    if not hasattr(module, "named_modules"):
        return []
    return [n for n, m in module.named_modules() if type(m).__module__.startswith(("torch.ao.nn.quantized",
                                                                                  "torch.nn.quantized"))]


def torchscript_bytes(module, example_inputs) -> bytes:
    """torch.jit.save of `module` into memory: a ScriptModule as it is, any other module traced
    (torch.jit.trace in eval mode, no gradients) at the example inputs."""
    torch = require("torch", "torch", "from_torch")
    args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if isinstance(module, torch.jit.ScriptModule):
        sm = module
    else:
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sm = torch.jit.trace(module, args, strict=False)
        finally:
            module.train(was_training)
    f = io.BytesIO()
    torch.jit.save(sm, f)
    return f.getvalue()


def from_torch(module, example_inputs, dst=None, *, opset: int = 17, input_names: Optional[Sequence[str]] = None,
               output_names: Optional[Sequence[str]] = None, verbose: bool = False, threads: int = 1,
               via: Optional[str] = None, **options):
    """Converts a live nn.Module. Returns a loaded tinyinfer.Model (report at .report) when dst is None,
    else writes dst and returns the Report.

    via: "onnx" (torch.onnx.export, then the ONNX importer; the default for float modules) or "torchscript"
    (torch.jit.save of the scripted module, or of a trace at example_inputs, then the TorchScript importer;
    the default for ScriptModules and for modules with torch.ao quantized layers, whose int8 weights it
    keeps)."""
    from . import convert
    torch = require("torch", "torch", "from_torch")
    if via is None:
        via = "torchscript" if isinstance(module, torch.jit.ScriptModule) or _quantized_modules(module) else "onnx"
    if via == "torchscript":
        args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        if options.get("input_shape") is None:
            options["input_shape"] = [tuple(a.shape) for a in args] if len(args) > 1 else tuple(args[0].shape)
        if "input_dtype" not in options:
            options["input_dtype"] = [str(a.dtype).replace("torch.", "") for a in args]
        unknown = set(options) - {"input_shape", "input_dtype", "name", "method"}
        if input_names is not None or output_names is not None or unknown:
            raise InvalidArgumentError(f"from_torch(via='torchscript'): options {sorted(unknown) or ''}"
                                       f"{' input_names/output_names' if input_names or output_names else ''} are "
                                       f"not supported on this path (input names are forward()'s parameters)")
        data = torchscript_bytes(module, example_inputs)
        report = convert(data, dst, format="torchscript", verbose=False, **options)
        report.source = f"<torch {type(module).__name__}>"
        how = "torch.jit.save" if isinstance(module, torch.jit.ScriptModule) else "torch.jit.trace + torch.jit.save"
        report.notes.insert(0, f"exported from a live {type(module).__name__} with {how}")
    elif via == "onnx":
        report = _via_onnx(module, example_inputs, dst, opset, input_names, output_names, options)
    else:
        raise InvalidArgumentError(f"from_torch: via must be 'onnx' or 'torchscript', got {via!r}")
    if verbose:
        print(report)
    if dst is not None:
        return report
    from ..model import Model
    model = Model(report.data, threads=threads)
    model.report = report
    return model


def _via_onnx(module, example_inputs, dst, opset, input_names, output_names, options):
    from . import convert
    torch = require("torch", "torch", "from_torch")
    require("onnx", "onnx", "from_torch (torch.onnx.export, then the ONNX importer)")
    n_out = None
    if output_names is None:
        with torch.no_grad():
            was_training = module.training
            module.eval()
            try:
                args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
                res = module(*args)
            finally:
                module.train(was_training)
        n_out = len(res) if isinstance(res, (tuple, list)) else 1
        output_names = [f"output{i}" for i in range(n_out)]
    data = export_onnx(module, example_inputs, opset=opset, input_names=input_names, output_names=output_names)
    report = convert(data, dst, format="onnx", verbose=False, **options)
    report.source = f"<torch {type(module).__name__}>"
    report.notes.insert(0, f"exported from a live {type(module).__name__} with torch.onnx.export(dynamo=False, "
                           f"opset_version={opset})")
    return report
