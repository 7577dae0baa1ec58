"""Quantization of float32 .tinf models (docs/quantization.md).

    import tinyinfer
    tinyinfer.quantize("mlp.tinf", "mlp_fp16.tinf", mode="fp16")
    tinyinfer.quantize("mlp.tinf", "mlp_dyn.tinf", mode="int8-dynamic")
    tinyinfer.quantize("cnn.tinf", "cnn_int8.tinf", mode="int8-static", calib="calib.npy", method="percentile")
    tinyinfer.quantize("cnn.tinf", "cnn_mixed.tinf", mode="int8-static", calib=(x, y), max_accuracy_drop=0.01,
                       report=True)

The work is done by the library (tinf_quantizer_*): calibration runs the
float32 model in the core, the rewrite and the serialization are Swift. This
module refuses a model that is already quantized, feeds calibration data,
shows progress, and drives the mixed-precision search (which layers stay
float32) and the report. The tinf_quantizer_* prototypes are in _lib.py.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import byref, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_void_p
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._handle import OwnedHandle
from . import _lib
from ._atomic import write_atomic
from ._errors import InvalidArgumentError, TinyInferError, TinyInferIOError
from .model import Model

L = _lib.lib

MODES = {"fp16": 1, "int8-dynamic": 2, "int8-static": 3, "int4": 4}
METHODS = {"minmax": 1, "percentile": 2, "mse": 3, "entropy": 4}


def sqnr_db(signal: float, noise: float) -> float:
    """10 log10(signal / noise); inf when there is no error."""
    if noise <= 0:
        return float("inf")
    if signal <= 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))



_REQUANTIZATIONS = {"fixed": 0, "float32": 1}


def _requantization_code(mode) -> int:
    code = _REQUANTIZATIONS.get(str(mode).lower())
    if code is None:
        raise InvalidArgumentError(f"requantization must be one of {sorted(_REQUANTIZATIONS)}, got {mode!r}")
    return code

def _mode_code(mode: str) -> int:
    key = str(mode).lower().replace("_", "-")
    if key not in MODES:
        raise InvalidArgumentError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return MODES[key]


def _method_code(method: str) -> int:
    key = str(method).lower()
    if key not in METHODS:
        raise InvalidArgumentError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[key]


# method="auto" (int8-static): the candidates, the calibration sets that
# score them, and how much better (dB of the worst output's SQNR) another
# candidate must be than minmax (TFLite's ranges) to be chosen.
AUTO_METHODS = ("minmax", "mse")
AUTO_MAX_SETS = 32
AUTO_MARGIN_DB = 1.0


# int8-static's default accuracy floors (min_sqnr="auto"), by model kind:
# the worst graph output's SQNR (dB) against float32 that the default must
# keep; when the int8 model is under it, the most sensitive layers stay
# float32 until it is met. Recurrent models (LSTM / GRU ops, variables that
# keep state between runs, While loops, or weights applied again to a value
# they computed: an unrolled recurrence): 25 dB. Transformer encoders
# (Softmax with LayerNorm, or a MatMul of two computed tensors: attention):
# cosine 0.99 against float32 is about 17 dB (cos ~ 1 - 1/(2 SNR)); the floor
# asks 20 dB for margin. Other models (convolutional): no floor, the int8
# model as the rules give it.
FLOOR_RECURRENT_DB = 25.0
FLOOR_ATTENTION_DB = 20.0
# The search aims this much over the floor on the sets that choose, so that
# held-out data (which the search does not see) still meets it.
FLOOR_MARGIN_DB = 1.0
# At most this many calibration sets measure each candidate during the
# search (FLOOR_PROBE_SETS each layer's sensitivity); the check holds out
# each of FLOOR_FOLDS parts of the sets in turn (a quantizer calibrated on
# the others), so every set is once data the ranges never saw.
FLOOR_MAX_SETS = 12
FLOOR_PROBE_SETS = 2
FLOOR_FOLDS = 3
# Up to this many candidate layers, each one's sensitivity is measured alone
# (one quantization each); beyond, one comparison ranks them (_local_drops).
FLOOR_ALONE_MAX = 48
RECURRENT_OPS = {"LSTM", "GRU", "While", "ReadVariable", "AssignVariable"}


def model_kind(model: Model, recurrence: bool = False) -> Tuple[str, Optional[str]]:
    """("recurrent" | "attention" | "other", why) of a float32 model, for the
    default accuracy floor. `recurrence`: the quantizer's rules found an
    unrolled recurrence (the same weights applied to a value they computed)."""
    ops = [o.op for o in model.ops()]
    rec = sorted(set(ops) & RECURRENT_OPS)
    if rec:
        return "recurrent", "it has " + ", ".join(rec) + " (state carried across steps)"
    if recurrence:
        return "recurrent", "it applies the same weights to a value they computed (an unrolled recurrence)"
    if "Softmax" in ops and ("LayerNorm" in ops or _attention_matmul(model)):
        return "attention", "it has Softmax with " + ("LayerNorm" if "LayerNorm" in ops else "a MatMul of two "
                                                       "computed tensors") + " (a transformer)"
    return "other", None


def _attention_matmul(model: Model) -> bool:
    """A MatMul whose two operands are computed (Q K^T, attention x V)."""
    known = {t.index for t in model.tensors() if t.kind in ("constant", "folded")}
    return any(o.op == "MatMul" and len(o.inputs) >= 2 and o.inputs[0] not in known and o.inputs[1] not in known
               for o in model.ops())


class Quantizer(OwnedHandle):
    """The library's quantizer over a loaded model (a thin wrapper of
    tinf_quantizer_*). Most users call `tinyinfer.quantize` instead."""
    _FREE = "tinf_quantizer_free"

    def __init__(self, model: Model, mode: str):
        self.model = model
        self.mode = str(mode).lower().replace("_", "-")
        h = _lib.QuantizerHandle()
        L.tinf_quantizer_create(model.handle, _mode_code(mode), byref(h))
        self._h = h
        self._specs = model.inputs

    def set_method(self, method: str = "minmax", percentile: float = 99.99) -> None:
        L.tinf_quantizer_set_method(self._h, _method_code(method), float(percentile))

    def _buffers(self, arrays: Sequence[np.ndarray]):
        if len(arrays) != len(self._specs):
            raise InvalidArgumentError(f"the model takes {len(self._specs)} input(s), got {len(arrays)}")
        keep = [np.ascontiguousarray(a, dtype=s.dtype) for a, s in zip(arrays, self._specs)]
        for a, s in zip(keep, self._specs):
            if a.shape != s.shape:
                raise InvalidArgumentError(f"input '{s.name}' has shape {list(s.shape)}, got {list(a.shape)}")
        n = len(keep)
        ptrs = (c_void_p * max(n, 1))(*[a.ctypes.data for a in keep])
        sizes = (c_size_t * max(n, 1))(*[a.nbytes for a in keep])
        return keep, n, ptrs, sizes

    def observe(self, arrays: Sequence[np.ndarray]) -> None:
        """Runs the float32 model on one input set and records ranges."""
        keep, n, ptrs, sizes = self._buffers(arrays)
        L.tinf_quantizer_observe(self._h, n, ptrs, sizes)
        del keep

    def compare(self, arrays: Sequence[np.ndarray]) -> None:
        """Adds one input set to the per-layer error sums (after finish)."""
        keep, n, ptrs, sizes = self._buffers(arrays)
        L.tinf_quantizer_compare(self._h, n, ptrs, sizes)
        del keep

    @property
    def samples(self) -> int:
        n = c_int64()
        L.tinf_quantizer_sample_count(self._h, byref(n))
        return n.value

    def tensor_range(self, tensor: int) -> Tuple[float, float, float, float]:
        """(lo, hi) chosen by the method and the observed (min, max) of a tensor."""
        lo, hi, mn, mx = c_float(), c_float(), c_float(), c_float()
        L.tinf_quantizer_tensor_range(self._h, int(tensor), byref(lo), byref(hi), byref(mn), byref(mx))
        return lo.value, hi.value, mn.value, mx.value

    def layers(self) -> List[dict]:
        """Each layer (op this mode quantizes): op index, op name, name, quantized."""
        n = c_int32()
        L.tinf_quantizer_layer_count(self._h, byref(n))
        names = {v: k for k, v in _lib.OP_IDS.items()}
        out = []
        idx, op, q, name = c_int32(), c_int32(), c_int32(), c_char_p()
        for i in range(n.value):
            L.tinf_quantizer_layer(self._h, i, byref(idx), byref(op), byref(name), byref(q))
            out.append({"layer": i, "op_index": idx.value, "op": names.get(op.value, str(op.value)),
                        "name": name.value.decode("utf-8", "replace"), "quantized": bool(q.value)})
        return out

    def keep_float(self, layer: int, keep: bool = True) -> None:
        L.tinf_quantizer_keep_float(self._h, int(layer), int(bool(keep)))

    def set_auto_float(self, enabled: bool = True) -> None:
        """int8-static: keep float-sensitive ops in float32 (the default) or not (force int8)."""
        L.tinf_quantizer_set_auto_float(self._h, int(bool(enabled)))

    def set_graph_params(self, enabled: bool = True) -> None:
        """int8-static of a QDQ model: parameters from its Quantize/Dequantize pairs, 8-bit weights as given,
        no calibration."""
        L.tinf_quantizer_set_graph_params(self._h, int(bool(enabled)))

    def set_requantization(self, mode: str = "float32") -> None:
        """int8-static: the output stage of Conv2D, DepthwiseConv2D, TransposeConv2D and Mul, "float32" (the default;
        XNNPACK's and onnxruntime's arithmetic) or "fixed" (TFLite's fixed-point multipliers, bit for bit LiteRT's
        reference kernels)."""
        L.tinf_quantizer_set_requantization(self._h, _requantization_code(mode))

    def float_reason(self, layer: int) -> Optional[str]:
        """Why the last finish kept `layer` in float32 as float-sensitive, or None."""
        r = c_char_p()
        L.tinf_quantizer_float_reason(self._h, int(layer), byref(r))
        return None if r.value is None else r.value.decode("utf-8", "replace")

    def finish(self) -> bytes:
        """Rewrites and serializes; returns the file's bytes."""
        L.tinf_quantizer_finish(self._h)
        p, n = c_void_p(), c_size_t()
        L.tinf_quantizer_data(self._h, byref(p), byref(n))
        return ctypes.string_at(p.value, n.value)

    def layer_error(self, layer: int) -> Tuple[float, float]:
        s, e = c_double(), c_double()
        L.tinf_quantizer_layer_error(self._h, int(layer), byref(s), byref(e))
        return s.value, e.value

    def output_error(self, output: int = 0) -> Tuple[float, float]:
        s, e = c_double(), c_double()
        L.tinf_quantizer_output_error(self._h, int(output), byref(s), byref(e))
        return s.value, e.value


# -- calibration data ---------------------------------------------------------

def _split(arr: np.ndarray, shape: Tuple[int, ...]) -> List[np.ndarray]:
    """One array of calibration data -> a list of arrays of the input's shape."""
    arr = np.asarray(arr)
    shape = tuple(shape)
    size = int(np.prod(shape))
    b = shape[0] if shape else 1
    if arr.shape == shape:
        return [arr]
    if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
        return list(arr)  # a stack of whole input sets
    if arr.ndim >= 1 and shape and arr.shape[1:] == shape[1:]:
        n = arr.shape[0] - arr.shape[0] % b
        return [arr[i:i + b] for i in range(0, n, b)]
    if shape and b == 1 and arr.size == size and arr.ndim >= 1:
        return [arr.reshape(shape)]
    if arr.ndim >= 1 and arr.shape[0] > 0 and arr[0].size * b == size and (arr.shape[0] % b == 0):
        per = arr.reshape(arr.shape[0] // b, *shape)
        return list(per)
    raise InvalidArgumentError(f"calibration array of shape {list(arr.shape)} does not fit the input shape "
                               f"{list(shape)}")


def _label_split(y: np.ndarray, batch: int) -> List[np.ndarray]:
    y = np.asarray(y)
    n = y.shape[0] - y.shape[0] % batch
    return [y[i:i + batch] for i in range(0, n, batch)]


def _load_path(path: str):
    """.npy -> array; .npz -> dict of arrays; directory -> list of arrays (sorted .npy/.npz files)."""
    if os.path.isdir(path):
        items = []
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if name.endswith(".npy"):
                items.append(np.load(full))
            elif name.endswith(".npz"):
                items.append(dict(np.load(full)))
        if not items:
            raise InvalidArgumentError(f"no .npy or .npz files in {path}")
        return items
    if path.endswith(".npz"):
        return dict(np.load(path))
    if path.endswith(".npy"):
        return np.load(path)
    raise InvalidArgumentError(f"calibration data must be .npy, .npz or a directory of them, got {path!r}")


def calibration_sets(calib, specs) -> Tuple[List[List[np.ndarray]], Optional[List[np.ndarray]]]:
    """Normalizes calibration data to ([input set, ...], labels per set or None).

    Accepted: an array (one input), a path to .npy / .npz / a directory of
    .npy files, a dict {input name: array} (an .npz with keys 'x' and 'y'
    gives inputs and labels), a tuple (x, y) with labels y, or any iterable
    of arrays (or of lists/tuples/dicts of arrays for several inputs).

    Everything is checked before any calibration work: every sample's shape
    and dtype against the model's inputs, and every float sample for NaN or
    infinite values (refused, naming the sample and the input). Bad data
    raises InvalidArgumentError (TinyInferIOError for a file that cannot be
    read), never another exception."""
    try:
        sets, label_sets = _calibration_sets(calib, specs)
    except TinyInferError:
        raise
    except OSError as e:
        raise TinyInferIOError(f"cannot read the calibration data: {e.strerror or e}") from e
    except MemoryError as e:
        raise InvalidArgumentError("the calibration data does not fit in memory") from e
    except Exception as e:
        raise InvalidArgumentError(f"bad calibration data ({type(e).__name__}: {e})") from e
    _check_sets(sets, specs)
    return sets, label_sets


def _check_sets(sets, specs) -> None:
    """Shapes, dtypes and finiteness of every calibration sample (before any work)."""
    for k, xs in enumerate(sets):
        if len(xs) != len(specs):
            raise InvalidArgumentError(f"calibration sample {k} has {len(xs)} input(s); the model takes {len(specs)}")
        for i, (a, spec) in enumerate(zip(xs, specs)):
            a = xs[i] = np.asarray(a)
            if a.dtype.kind not in "biuf":
                raise InvalidArgumentError(f"calibration sample {k}, input '{spec.name}': dtype {a.dtype} is not "
                                           f"numeric (the input takes {spec.dtype})")
            if not np.can_cast(a.dtype, spec.dtype, casting="same_kind"):
                raise InvalidArgumentError(f"calibration sample {k}, input '{spec.name}': dtype {a.dtype} does not "
                                           f"convert to the input's {spec.dtype}")
            if tuple(a.shape) != tuple(spec.shape):
                raise InvalidArgumentError(f"calibration sample {k}, input '{spec.name}': shape {list(a.shape)}, "
                                           f"the input takes {list(spec.shape)}")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                bad = a.size - int(np.isfinite(a).sum())
                raise InvalidArgumentError(f"calibration sample {k}, input '{spec.name}': {bad} non-finite "
                                           f"value(s) (NaN or infinite); calibration needs finite data")


def _calibration_sets(calib, specs):
    names = [s.name for s in specs]
    shapes = [s.shape for s in specs]
    labels = None
    if isinstance(calib, (str, os.PathLike)):
        calib = _load_path(os.fspath(calib))
    if isinstance(calib, tuple) and len(calib) == 2 and not (len(specs) == 2 and _looks_like_inputs(calib, shapes)):
        calib, labels = calib
        if isinstance(calib, (str, os.PathLike)):
            calib = _load_path(os.fspath(calib))
        if isinstance(labels, (str, os.PathLike)):
            labels = np.load(os.fspath(labels))
    if isinstance(calib, dict):
        if "y" in calib and labels is None and "y" not in names:
            labels = calib["y"]
        if all(n in calib for n in names):
            arrays = [calib[n] for n in names]
        elif len(names) == 1 and "x" in calib:
            arrays = [calib["x"]]
        elif len(names) == 1 and len([k for k in calib if k != "y"]) == 1:
            arrays = [calib[[k for k in calib if k != "y"][0]]]
        else:
            raise InvalidArgumentError(f"calibration .npz needs arrays named {names} (or 'x')")
        per_input = [_split(a, s) for a, s in zip(arrays, shapes)]
        sets = [list(t) for t in zip(*per_input)]
    elif isinstance(calib, np.ndarray):
        if len(names) != 1:
            raise InvalidArgumentError(f"the model takes {len(names)} inputs: give a dict or a list of tuples")
        sets = [[a] for a in _split(calib, shapes[0])]
    else:
        sets = []
        for item in calib:
            if isinstance(item, dict):
                per_input = [_split(item[n], s) for n, s in zip(names, shapes)]
            elif isinstance(item, (list, tuple)) and len(names) > 1:
                per_input = [_split(a, s) for a, s in zip(item, shapes)]
            else:
                per_input = [_split(item, shapes[0])]
            sets.extend(list(t) for t in zip(*per_input))
    if not sets:
        raise InvalidArgumentError("the calibration data is empty")
    label_sets = None
    if labels is not None:
        label_sets = _label_split(labels, shapes[0][0] if shapes[0] else 1)
        if len(label_sets) != len(sets):
            raise InvalidArgumentError(f"{len(label_sets)} label batches for {len(sets)} input sets")
    return sets, label_sets


def _looks_like_inputs(pair, shapes) -> bool:
    try:
        return all(np.asarray(a).shape[1:] == tuple(s)[1:] for a, s in zip(pair, shapes))
    except Exception:
        return False


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _progress(items, desc: str, enabled: bool):
    """Yields `items`, showing progress on stderr when enabled: on a terminal,
    tqdm if installed, else a counter rewritten in place; otherwise (a log
    file, a pipe) one plain line when the loop is done, no carriage returns."""
    if not enabled:
        yield from items
        return
    n = len(items)
    if not _is_terminal(sys.stderr):
        yield from items
        print(f"{desc}: {n}/{n}", file=sys.stderr, flush=True)
        return
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, desc=desc, file=sys.stderr, leave=False)
        return
    step = max(1, n // 20)
    for i, x in enumerate(items):
        if i % step == 0:
            print(f"\r{desc}: {i}/{n}", end="", file=sys.stderr, flush=True)
        yield x
    print(f"\r{desc}: {n}/{n}", file=sys.stderr, flush=True)


# -- the result -----------------------------------------------------------------

@dataclass
class LayerReport:
    name: str
    op: str
    quantized: bool
    sqnr_db: Optional[float] = None
    sensitivity_db: Optional[float] = None   # output SQNR when only this layer is quantized
    float_reason: Optional[str] = None       # why int8-static kept it in float32 as float-sensitive


@dataclass
class QuantizeResult:
    """What `quantize` did; str() is the report."""
    mode: str
    method: Optional[str]
    src_bytes: int
    dst_bytes: int
    data: bytes = field(repr=False, default=b"")
    samples: int = 0
    layers: List[LayerReport] = field(default_factory=list)
    output_sqnr_db: List[float] = field(default_factory=list)
    kept_float: List[str] = field(default_factory=list)
    # Layers int8-static kept in float32 by default as float-sensitive: {"name", "op", "reason"}.
    float_sensitive: List[dict] = field(default_factory=list)
    float_accuracy: Optional[float] = None
    accuracy: Optional[float] = None
    budget_met: Optional[bool] = None       # None: no max_accuracy_drop / min_sqnr asked
    dst: Optional[str] = None
    # method="auto": each candidate's worst output SQNR (dB) on the calibration data.
    method_scores: dict = field(default_factory=dict)
    # int8-static's default accuracy floor (min_sqnr="auto"): {"kind", "why", "floor_db", "int8_db" (every
    # layer the rules allow in int8, on the sets that choose), "chosen_db", "heldout_db" (the result on
    # calibration sets held out of the ranges and the search, FLOOR_FOLDS folds; None when the held-out
    # sets had to join the search, then "heldout_missed_db"), "heldout_sets", "met"}; None when off.
    floor: Optional[dict] = None
    # Ops kept in float32 for another reason than the rules (float_sensitive) or the user's keep_float:
    # {"name", "op", "reason"}: the accuracy floor's choices (with the measured SQNR) and control-flow ops.
    kept_float_why: List[dict] = field(default_factory=list)

    def __str__(self) -> str:
        ratio = self.dst_bytes / self.src_bytes if self.src_bytes else 0
        head = f"quantized: {self.mode}"
        if self.mode == "int8-static":
            head += f", method {self.method}, {self.samples} calibration samples"
            if self.method_scores:
                head += " (auto: " + ", ".join(f"{m} {v:.1f} dB" for m, v in self.method_scores.items()) + \
                    " worst output SQNR on the calibration data)"
        lines = [head, f"  size: {self.src_bytes:,} -> {self.dst_bytes:,} bytes ({ratio:.1%})"]
        if self.layers:
            w = max(12, min(48, max(len(l.name) for l in self.layers)))
            lines.append(f"  {'layer':{w}}  {'op':16} {'state':8} {'SQNR dB':>8} {'alone dB':>9}")
            for l in self.layers:
                sq = "" if l.sqnr_db is None else f"{l.sqnr_db:8.1f}"
                se = "" if l.sensitivity_db is None else f"{l.sensitivity_db:9.1f}"
                state = {"int8-dynamic": "int8", "int8-static": "int8"}.get(self.mode, self.mode) if l.quantized \
                    else "float32"
                lines.append(f"  {l.name[-w:]:{w}}  {l.op:16} {state:8} {sq:>8} {se:>9}")
        for i, s in enumerate(self.output_sqnr_db):
            lines.append(f"  output {i}: SQNR {s:.1f} dB vs float32")
        if self.float_accuracy is not None:
            lines.append(f"  accuracy on the calibration labels: float32 {self.float_accuracy:.4f}, "
                         f"quantized {self.accuracy:.4f}")
        if self.kept_float:
            lines.append(f"  kept in float32 ({len(self.kept_float)}): " + ", ".join(self.kept_float))
        if self.float_sensitive:
            lines.append(f"  float-sensitive, kept in float32 by default ({len(self.float_sensitive)}; "
                         f"force_int8=True / --force-int8 quantizes them):")
            for f in self.float_sensitive:
                lines.append(f"    {f['name']} ({f['op']}): {f['reason']}")
        if self.floor is not None:
            f = self.floor
            if f.get("floor_db") is None:
                lines.append(f"  accuracy floor: none ({f['kind']} model)")
            else:
                held = "" if f.get("heldout_db") is None else \
                    f", {f['heldout_db']:.1f} dB held out ({f['heldout_sets']} calibration sets, each once out of the ranges)"
                lines.append(f"  accuracy floor: {f['floor_db']:.0f} dB output SQNR ({f['kind']} model: {f['why']}); "
                             f"all-int8 {f['int8_db']:.1f} dB, result {f['chosen_db']:.1f} dB{held}"
                             + ("" if f.get("met") else " (NOT met)") + "; min_sqnr=None / --min-sqnr none turns it off")
        if self.kept_float_why:
            lines.append(f"  also kept in float32 ({len(self.kept_float_why)}):")
            for f in self.kept_float_why:
                lines.append(f"    {f['name']} ({f['op']}): {f['reason']}")
        if self.budget_met is False:
            lines.append("  the accuracy / SQNR budget is not met even with every layer in float32")
        if self.dst:
            lines.append(f"  wrote {self.dst}")
        return "\n".join(lines)


# -- the entry point ---------------------------------------------------------------

def _output_sqnrs(q: Quantizer, sets, n_outputs: int, desc: str = "", show: bool = False) -> List[float]:
    """Each graph output's SQNR (dB) of the quantized model `q` last finished
    against float32, over `sets`."""
    for xs in _progress(sets, desc, show):
        q.compare(xs)
    return [sqnr_db(*q.output_error(o)) for o in range(n_outputs)]


def _choose_method(q: Quantizer, sets, n_outputs: int, scores: dict) -> str:
    """method="auto": each candidate's worst output SQNR on `sets` into
    `scores`; minmax unless another candidate beats it by AUTO_MARGIN_DB."""
    for m in AUTO_METHODS:
        q.set_method(m)
        q.finish()
        worst = min(_output_sqnrs(q, sets, n_outputs))
        scores[m] = float("-inf") if np.isnan(worst) else worst
    best = max(AUTO_METHODS, key=lambda m: scores[m])
    return best if scores[best] >= scores["minmax"] + AUTO_MARGIN_DB else "minmax"


def _apply_floor(q: Quantizer, model: Model, layers, sets, kept: set, auto: set, result, floor_why: dict,
                 sensitivity: dict, show: bool, verbose: bool, method: str, percentile: float) -> bytes:
    """min_sqnr="auto": the default accuracy floor (FLOOR_*_DB by
    `model_kind`). The calibration sets are split in FLOOR_FOLDS parts; for
    each, a quantizer calibrated on the other parts (the first does the
    search), so each part is data its ranges and its choices never saw (as a
    user's inputs). When its worst output SQNR on the choosing sets is under the
    floor + FLOOR_MARGIN_DB, the layers whose int8 alone costs the most stay
    float32: the fewest of them, in that order (a bisection), that meet it;
    then the held-out sets must meet it too, else the search goes on
    with them (they are then no longer held out). `q` (calibrated on every
    set) gets the layers chosen. Adds them to `kept` and their reasons to
    `floor_why`; returns the file's bytes."""
    n_out = len(model.outputs)
    rec = any("recurrent state" in (q.float_reason(i) or "") for i in range(len(layers)))
    kind, why = model_kind(model, rec)
    floor = {"recurrent": FLOOR_RECURRENT_DB, "attention": FLOOR_ATTENTION_DB}.get(kind)
    result.floor = {"kind": kind, "why": why, "floor_db": floor, "met": True}
    if floor is None:
        return q.finish()
    # Folds: each third of the sets is held out once, from a quantizer calibrated on the rest.
    n = len(sets)
    nf = FLOOR_FOLDS if n >= 2 * FLOOR_FOLDS else 1
    bounds = [n * f // nf for f in range(nf + 1)]
    folds = []
    try:
        for f in range(nf):
            held = sets[bounds[f]:bounds[f + 1]] if nf > 1 else []
            rest = sets[:bounds[f]] + sets[bounds[f + 1]:] if nf > 1 else sets
            if held:
                sq = Quantizer(model, q.mode)
                sq.set_method(method, percentile)
                for xs in _progress(rest, f"floor: calibrating fold {f + 1}/{nf}", show):
                    sq.observe(xs)
            else:
                sq = q
            folds.append((sq, rest[:FLOOR_MAX_SETS], held))
        s, choose, _ = folds[0]

        def worst(qq, ss, desc):
            v = min(_output_sqnrs(qq, ss, n_out, desc, show))
            return float("-inf") if np.isnan(v) else v

        def with_float(k) -> None:
            extra = set(order[:k])
            for qq, _, _ in folds:
                for j in range(len(layers)):
                    qq.keep_float(j, j in kept or j in extra)
                qq.finish()

        def held_worst(desc) -> float:
            return min((worst(qq, hh, desc) for qq, _, hh in folds if hh), default=float("inf"))

        target = floor + FLOOR_MARGIN_DB
        order: list = []
        why_of: dict = {}
        with_float(0)
        result.floor["int8_db"] = base = worst(s, choose, "floor: measuring")
        if base < target or held_worst("floor: held-out") < target:
            candidates = [i for i in range(len(layers)) if i not in kept and i not in auto]
            probe = choose[:FLOOR_PROBE_SETS]
            if len(candidates) <= FLOOR_ALONE_MAX:
                for i in candidates:
                    for j in range(len(layers)):
                        s.keep_float(j, j != i)
                    s.finish()
                    sensitivity[i] = worst(s, probe, f"floor: sensitivity {i + 1}/{len(layers)}")
                    why_of[i] = f"int8 in this layer alone gives {sensitivity[i]:.1f} dB"
                order = sorted(candidates, key=lambda i: sensitivity[i])
            else:
                # Many layers: one comparison of the all-int8 model ranks them by the SQNR each loses
                # over its inputs (its own int8 error), instead of one quantization per layer.
                with_float(0)
                _output_sqnrs(s, probe, n_out, "floor: per-layer error", show)
                added = _local_drops(s, layers, model)
                for i in candidates:
                    why_of[i] = (f"the error its int8 output adds is {added[i]:.1f} dB under its signal"
                                 if np.isfinite(added[i]) else "its int8 output adds no error over its inputs' "
                                 "(ranked last, kept as the bisection went on)")
                order = sorted(candidates, key=lambda i: added[i])

        def bisect(lo: int, hi: int, ok) -> int:
            # lo: misses (or 0 untested), hi: assumed to meet it (everything float32 at len(order)).
            while hi - lo > 1:
                mid = (lo + hi) // 2
                with_float(mid)
                if ok(mid):
                    hi = mid
                else:
                    lo = mid
            return hi

        k = 0
        if order and base < target:
            k = bisect(0, len(order), lambda m: worst(s, choose, f"floor: keeping {m} in float32") >= target)
        with_float(k)
        result.floor["chosen_db"] = worst(s, choose, "floor: checking")
        result.floor["heldout_sets"] = n if nf > 1 else 0
        result.floor["heldout_db"] = None
        if nf > 1:
            hv = held_worst("floor: held-out")
            result.floor["heldout_db"] = hv
            if hv < target and k < len(order):
                # Missed on data the search did not see: go on with it too (it is then no longer held out).
                result.floor["heldout_missed_db"] = hv
                k = bisect(k, len(order), lambda m: held_worst(f"floor: keeping {m} in float32") >= target
                           and worst(s, choose, "floor: checking") >= target)
                with_float(k)
                result.floor["heldout_db"] = None
                result.floor["chosen_db"] = min(worst(s, choose, "floor: checking"), held_worst("floor: checking"))
    finally:
        for qq, _, _ in folds:
            if qq is not q:
                qq.close()
    chosen = order[:k]
    final = result.floor["heldout_db"] if result.floor["heldout_db"] is not None else result.floor["chosen_db"]
    result.floor["met"] = final >= floor
    for j in range(len(layers)):
        q.keep_float(j, j in kept or j in chosen)
    for i in chosen:
        kept.add(i)
        floor_why[i] = (f"accuracy floor: {'an' if kind[0] in 'aeiou' else 'a'} {kind} model needs {floor:.0f} dB output SQNR (all-int8: {base:.1f} dB); "
                        f"{why_of[i]}, one of the {len(chosen)} most sensitive kept in float32")
        if verbose:
            print(f"keeping {layers[i]['name']} in float32: {floor_why[i]}", file=sys.stderr)
    return q.finish()


def _local_drops(q: Quantizer, layers, model: Model) -> dict:
    """Per layer of `q` (finished, compared): the noise its int8 output adds
    to what its inputs bring, as dB under its signal (10 log10(1 / (n_out -
    n_in)), n the noise-to-signal ratios; lower: worse). Ops that are not
    layers pass their inputs' ratio on; graph inputs bring none."""
    layer_of = {l["op_index"]: i for i, l in enumerate(layers)}
    own = {}
    for i in range(len(layers)):
        sig, err = q.layer_error(i)
        own[i] = err / sig if sig > 0 else None
    ratio: dict = {}
    added = {}
    for o in model.ops():
        before = max((ratio[t] for t in o.inputs if t in ratio), default=0.0)
        i = layer_of.get(o.index)
        v = before
        if i is not None and own[i] is not None:
            v = own[i]
            added[i] = max(v - before, 0.0)
        for t in o.outputs:
            ratio[t] = v
    return {i: (float("inf") if added.get(i, 0.0) <= 0 else -10 * np.log10(added[i])) for i in range(len(layers))}


def _accuracy(model_bytes_or_model, sets, label_sets) -> float:
    m = model_bytes_or_model if isinstance(model_bytes_or_model, Model) else Model(model_bytes_or_model)
    try:
        correct = total = 0
        for xs, y in zip(sets, label_sets):
            (out,) = m.run(xs)[:1]
            pred = out.reshape(len(y), -1).argmax(axis=1)
            correct += int((pred == np.asarray(y).reshape(-1)).sum())
            total += len(y)
        return correct / max(total, 1)
    finally:
        if not isinstance(model_bytes_or_model, Model):
            m.close()


def already_quantized(model: Model) -> Optional[str]:
    """Why `model` is already quantized (the quantizer's metadata entry, a
    tensor with quantization parameters, a float16 constant), or None for a
    float32 model. quantize() first widens float16 weights behind Dequantize
    ops (float16 .tflite models) to float32, so those are quantized."""
    if model.metadata.get("quantization"):
        return f"its metadata says quantization: {model.metadata['quantization']}"
    for t in model.tensors():
        if t.scales is not None:
            return f"tensor '{t.name}' is {t.dtype} with quantization parameters"
        if t.kind == "constant" and t.dtype == np.float16:
            return f"constant '{t.name}' is float16"
    return None


def _float16_weights_widened(model: Model, src) -> Optional[bytes]:
    """For a float model whose weights are float16 constants behind Dequantize
    ops (a converted float16 .tflite): the same .tinf with each such constant
    stored as float32 and its Dequantize removed, so the quantizer sees a
    float32 model. None when there is nothing to widen (or the model is
    quantized otherwise: already_quantized then says why)."""
    if model.metadata.get("quantization") or not any(
            t.kind == "constant" and t.dtype == np.float16 for t in model.tensors()):
        return None
    if any(t.scales is not None for t in model.tensors()):
        return None
    if isinstance(src, (bytes, bytearray, memoryview)):
        raw = bytes(src)
    elif isinstance(src, Model):
        if src._buffer is not None:
            raw = bytes(src._buffer)
        else:
            with open(src.path, "rb") as f:
                raw = f.read()
    else:
        with open(src, "rb") as f:
            raw = f.read()
    from .prune_structured import _read_tinf, write_graph
    meta, tensors, g_in, g_out, ops = _read_tinf(raw)
    alias, widened, kept = {}, {}, []
    for o in ops:
        t = o.inputs[0] if o.op == "Dequantize" and len(o.inputs) == 1 else -1
        if t >= 0 and tensors[t].data is not None and tensors[t].data.dtype == np.float16 and tensors[t].quant is None:
            widened[t] = tensors[t].data.astype(np.float32)
            alias[o.outputs[0]] = t
        else:
            kept.append(o)
    if not widened:
        return None
    for o in kept:
        o.inputs = [alias.get(t, t) for t in o.inputs]
    return write_graph(meta, tensors, g_in, [alias.get(t, t) for t in g_out], kept, widened)


def quantize(src, dst=None, mode: str = "int8-dynamic", calib=None, method: str = "auto",
             percentile: float = 99.99, report: bool = False, max_accuracy_drop: Optional[float] = None,
             min_sqnr: Union[float, str, None] = "auto", keep_float: Iterable[str] = (), progress: Optional[bool] = None,
             verbose: bool = False, force_int8: bool = False, requantization: str = "float32") -> QuantizeResult:
    """Quantizes a float32 .tinf model (path, bytes or a loaded Model) and
    writes `dst` (when given). Returns a QuantizeResult (str() is a report).
    A model that is already quantized (see `already_quantized`) is refused
    with InvalidArgumentError.

    mode: "fp16", "int8-dynamic", "int8-static" (needs `calib`) or "int4".
    calib: representative inputs (see `calibration_sets`); `(x, y)` adds
        labels for `max_accuracy_drop`.
    method: activation ranges for int8-static: minmax, percentile (with
        `percentile`, 99.99 by default), mse or entropy; "auto" (the
        default) quantizes with minmax and with mse, runs both on (up to 32
        of) the calibration sets and keeps mse only when its worst output
        SQNR is at least 1 dB higher (`method` and `method_scores` of the
        result say what was chosen and why).
    report: print the per-layer SQNR of each quantized layer's output vs
        float32 on the calibration data.
    max_accuracy_drop / min_sqnr: mixed precision: keep the most sensitive
        layers in float32 until the accuracy on (x, y) drops by at most that
        much (a fraction, 0.01 = one point) / the model output's SQNR is at
        least min_sqnr dB. min_sqnr="auto" (the default): int8-static's
        accuracy floor by model kind (`model_kind`): 25 dB for a recurrent
        model, 20 dB (cosine 0.99 needs about 17) for a transformer, none
        otherwise; chosen on part of the calibration sets and checked on
        the rest (the result's `floor`, and `kept_float_why` says what it
        kept and the measured SQNR). None: no floor.
    keep_float: layer names (or op indices) to keep in float32 from the start.
    force_int8: int8-static keeps float-sensitive ops (attention-mask
        arithmetic and the Softmax it feeds, log / spectrogram paths) in
        float32 by default and names them with the reason in the result's
        `float_sensitive` (and the report); True quantizes them too (and
        turns the default accuracy floor off).
    requantization: int8-static's output stage for Conv2D, DepthwiseConv2D,
        TransposeConv2D and Mul: "float32" (the default) rounds `acc * scale` in
        float32, half to even, as XNNPACK and onnxruntime do (about a third
        of the vector work of the fixed-point stage on x86); "fixed" uses
        TFLite's fixed-point multipliers, bit for bit LiteRT's reference
        kernels. They differ by at most one step, on near-ties.
    progress: show progress on stderr (on a terminal tqdm if installed, else
        a counter; otherwise one plain line per stage, no carriage returns);
        default: when there are 100 calibration input sets or more.
    """
    mode = str(mode).lower().replace("_", "-")
    _mode_code(mode)
    requant_code = _requantization_code(requantization)
    floor_auto = isinstance(min_sqnr, str)
    if floor_auto:
        if min_sqnr.lower() != "auto":
            raise InvalidArgumentError(f"min_sqnr must be a number of dB, 'auto' or None, got {min_sqnr!r}")
        floor_auto = mode == "int8-static" and not force_int8 and max_accuracy_drop is None
        min_sqnr = None
    own_model = not isinstance(src, Model)
    model = Model(src) if own_model else src
    try:
        widened = _float16_weights_widened(model, src)
        if widened is not None:  # float16 weights behind Dequantize: quantize their float32 values
            if own_model:
                model.close()
            model, own_model = Model(widened), True
        why = already_quantized(model)
        if why is not None:
            name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else "the model"
            raise InvalidArgumentError(f"{name} is already quantized ({why}); quantize the float32 model it was "
                                       f"made from instead")
        if isinstance(src, (bytes, bytearray, memoryview)):
            src_bytes = len(src)
        elif isinstance(src, Model):
            src_bytes = sum(src.sizes[k] for k in ("header", "graph", "data"))
        else:
            src_bytes = os.path.getsize(src)
        sets, label_sets = (None, None)
        if calib is not None:
            sets, label_sets = calibration_sets(calib, model.inputs)
        if mode == "int8-static" and sets is None:
            raise InvalidArgumentError("int8-static needs calibration data (calib=...)")
        if max_accuracy_drop is not None and label_sets is None:
            raise InvalidArgumentError("max_accuracy_drop needs labels: calib=(x, y)")
        if (report or max_accuracy_drop is not None or min_sqnr is not None) and sets is None:
            raise InvalidArgumentError("report and mixed precision need calibration data (calib=...)")
        show = progress if progress is not None else (sets is not None and len(sets) >= 100)

        auto_method = str(method).lower() == "auto"
        if not auto_method:
            _method_code(method)
        q = Quantizer(model, mode)
        try:
            q.set_method("minmax" if auto_method else method, percentile)
            q.set_auto_float(not force_int8)
            L.tinf_quantizer_set_requantization(q._h, requant_code)
            if mode == "int8-static":
                for xs in _progress(sets, "calibrating", show):
                    q.observe(xs)
            layers = q.layers()
            for i, l in enumerate(layers):
                if l["name"] in keep_float or l["op_index"] in keep_float:
                    q.keep_float(i)
            scores = {}
            if auto_method and mode == "int8-static":
                method = _choose_method(q, sets[:AUTO_MAX_SETS], len(model.outputs), scores)
                q.set_method(method, percentile)
            data = q.finish()
            auto = {i for i in range(len(layers)) if q.float_reason(i) is not None}
            result = QuantizeResult(mode=mode, method=method if mode == "int8-static" else None,
                                    src_bytes=src_bytes, dst_bytes=len(data), samples=q.samples,
                                    method_scores=scores)

            def measure(desc):
                return _output_sqnrs(q, sets, len(model.outputs), desc, show)

            float_acc = None
            if label_sets is not None:
                float_acc = _accuracy(model, sets, label_sets)

            def meets(out_sqnr, data_now) -> Tuple[bool, Optional[float]]:
                acc = _accuracy(data_now, sets, label_sets) if label_sets is not None else None
                ok = True
                if max_accuracy_drop is not None:
                    ok = ok and float_acc - acc <= max_accuracy_drop + 1e-12
                if min_sqnr is not None:
                    ok = ok and min(out_sqnr) >= min_sqnr
                return ok, acc

            sensitivity = {}
            kept = {i for i, l in enumerate(layers) if l["name"] in keep_float or l["op_index"] in keep_float}
            floor_why = {}
            if floor_auto:
                data = _apply_floor(q, model, layers, sets, kept, auto, result, floor_why, sensitivity, show,
                                    verbose, method, percentile)
            if max_accuracy_drop is not None or min_sqnr is not None:
                out_sqnr = measure("measuring")
                ok, _ = meets(out_sqnr, data)
                if not ok:
                    # Sensitivity of each layer alone: the output SQNR when it
                    # is the only quantized layer. Least robust first.
                    candidates = [i for i in range(len(layers)) if i not in kept and i not in auto]
                    for i in candidates:
                        for j in range(len(layers)):
                            q.keep_float(j, j != i)
                        q.finish()
                        sensitivity[i] = min(measure(f"sensitivity {i + 1}/{len(layers)}"))
                    order = sorted(candidates, key=lambda i: sensitivity[i])
                    for j in range(len(layers)):
                        q.keep_float(j, j in kept)
                    for i in order:
                        kept.add(i)
                        q.keep_float(i, True)
                        data = q.finish()
                        ok, _ = meets(measure("measuring"), data)
                        if verbose:
                            print(f"keeping {layers[i]['name']} in float32: {'ok' if ok else 'not yet'}",
                                  file=sys.stderr)
                        if ok:
                            break
                    for j in range(len(layers)):
                        q.keep_float(j, j in kept)
                    data = q.finish()
                result.budget_met = ok
            if report or sensitivity or max_accuracy_drop is not None or min_sqnr is not None:
                result.output_sqnr_db = measure("comparing")
            layers = q.layers()
            for i, l in enumerate(layers):
                lr = LayerReport(l["name"], l["op"], l["quantized"], sensitivity_db=sensitivity.get(i),
                                 float_reason=q.float_reason(i))
                if result.output_sqnr_db and l["quantized"]:
                    lr.sqnr_db = sqnr_db(*q.layer_error(i))
                result.layers.append(lr)
                if lr.float_reason is not None:
                    result.float_sensitive.append({"name": l["name"], "op": l["op"], "reason": lr.float_reason})
            auto = {i for i, lr in enumerate(result.layers) if lr.float_reason is not None}
            result.kept_float = [layers[i]["name"] for i in sorted(kept | auto)]
            for i in sorted(floor_why):
                result.kept_float_why.append({"name": layers[i]["name"], "op": layers[i]["op"],
                                              "reason": floor_why[i]})
            names = {t.index: t.name for t in model.tensors()}
            for o in model.ops():
                if o.op in ("If", "While"):
                    result.kept_float_why.append({
                        "name": names.get(o.outputs[0], str(o.index)), "op": o.op,
                        "reason": "control flow body: the op and its subgraphs run in float32 (the quantizer "
                                  "rewrites the main graph; Quantize / Dequantize at its boundaries)"})
            result.data = data
            result.dst_bytes = len(data)
            if label_sets is not None:
                result.float_accuracy = float_acc
                result.accuracy = _accuracy(data, sets, label_sets)
        finally:
            q.close()
    finally:
        if own_model:
            model.close()
    if dst is not None:
        write_atomic(dst, result.data)
        result.dst = os.fspath(dst)
    if report or verbose:
        print(result)
    return result
