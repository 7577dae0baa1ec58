"""Pruning: zeroing the weights of a float32 .tinf model so that it runs on
the sparse kernels and stores smaller (docs/pruning.md).

    import tinyinfer
    r = tinyinfer.prune("mlp.tinf", "mlp-80.tinf", method="magnitude", sparsity=0.8)
    print(r)          # per-layer sparsity, the check against the parent, sizes

The arithmetic (magnitude thresholds, N:M patterns, the activation
statistics of the calibration data) is the library's (`tinf_pruner_*`);
this module is the policy: which sparsity per layer, Wanda's scores, and
the check of the pruned model against its dense parent before it is written.

Methods:
  magnitude  the smallest |w|: one threshold over all layers (`scope="global"`),
             the same sparsity in every layer (`"layer"`), or per-layer
             sparsities chosen by sensitivity on calibration data (`"sensitivity"`).
  wanda      Wanda (Sun et al. 2023): |w| * ||x_c||, the input channel's norm over
             the calibration data, compared within each output channel; needs `calib`.
  nm         N:M semi-structured (`pattern="2:4"`): the N largest |w| of every M
             consecutive weights along the input channels (with calibration data:
             by Wanda's score instead).
  structured removes whole output channels (ranked by the filters' L2 or L1 norm,
             `criterion=`, or with `calib` by the channels' activation norms) and
             the consumers' matching input channels: a smaller dense model
             (prune_structured.py).
"""

from __future__ import annotations

import ctypes
import os
from ctypes import byref, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_void_p
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from ._handle import OwnedHandle
from . import _lib
from ._errors import InvalidArgumentError
from ._lib import lib as L
from .model import Model

METHODS = ("magnitude", "wanda", "nm", "structured")
SCOPES = ("global", "layer", "sensitivity")


class Pruner(OwnedHandle):
    """The library's pruner over a loaded float32 model (tinf_pruner_*)."""
    _FREE = "tinf_pruner_free"

    def __init__(self, model: Model):
        self.model = model
        h = _lib.PrunerHandle()
        L.tinf_pruner_create(model.handle, byref(h))
        self._h = h
        self._specs = model.inputs

    def layers(self) -> List[dict]:
        """Each prunable layer: op index, name, n (output channels), k (weights
        per output channel), run (innermost input channels of a row), input
        channels of its input, groups."""
        n = c_int32()
        L.tinf_pruner_layer_count(self._h, byref(n))
        out = []
        idx, nn, k, run, ch, name = c_int32(), c_int64(), c_int64(), c_int64(), c_int64(), c_char_p()
        for i in range(n.value):
            L.tinf_pruner_layer(self._h, i, byref(idx), byref(nn), byref(k), byref(run), byref(ch), byref(name))
            out.append({"layer": i, "op_index": idx.value, "name": name.value.decode("utf-8", "replace"),
                        "n": nn.value, "k": k.value, "run": run.value, "input_channels": ch.value,
                        "groups": max(1, ch.value // max(run.value, 1))})
        return out

    def weights(self, layer: int) -> np.ndarray:
        """The layer's current weights as [n, k] float32."""
        info = self.layers()[layer]
        w = np.empty((info["n"], info["k"]), np.float32)
        L.tinf_pruner_get_weights(self._h, int(layer), w.ctypes.data_as(ctypes.POINTER(c_float)), w.size)
        return w

    def set_weights(self, layer: int, w: np.ndarray) -> None:
        w = np.ascontiguousarray(w, np.float32) + np.float32(0)   # -0.0 (a masked negative weight) -> 0.0
        L.tinf_pruner_set_weights(self._h, int(layer), w.ctypes.data_as(ctypes.POINTER(c_float)), w.size)

    def magnitude(self, sparsity: float, layer: int = -1) -> None:
        L.tinf_pruner_magnitude(self._h, int(layer), float(sparsity))

    def nm(self, n: int, m: int, layer: int = -1) -> int:
        """Applies an N:M pattern; returns how many layers could not hold it (layer -1)."""
        skipped = c_int32()
        L.tinf_pruner_nm(self._h, int(layer), int(n), int(m), byref(skipped))
        return skipped.value

    def observe(self, arrays: Sequence[np.ndarray]) -> None:
        if len(arrays) != len(self._specs):
            raise InvalidArgumentError(f"the model takes {len(self._specs)} input(s), got {len(arrays)}")
        keep = [np.ascontiguousarray(a, dtype=s.dtype) for a, s in zip(arrays, self._specs)]
        for a, s in zip(keep, self._specs):
            if a.shape != s.shape:
                raise InvalidArgumentError(f"calibration input '{s.name}' has shape {list(a.shape)}, "
                                           f"the model takes {list(s.shape)}")
        n = len(keep)
        ptrs = (c_void_p * max(n, 1))(*[a.ctypes.data for a in keep])
        sizes = (c_size_t * max(n, 1))(*[a.nbytes for a in keep])
        L.tinf_pruner_observe(self._h, n, ptrs, sizes)

    def input_norms(self, layer: int) -> np.ndarray:
        """sqrt of the sum of x^2 per input channel of the layer's input, over
        every position observed."""
        ch = self.layers()[layer]["input_channels"]
        s = np.empty(ch, np.float64)
        pos = c_int64()
        L.tinf_pruner_input_squares(self._h, int(layer), s.ctypes.data_as(ctypes.POINTER(c_double)), ch, byref(pos))
        return np.sqrt(s)

    def finish(self) -> bytes:
        L.tinf_pruner_finish(self._h)
        p, n = c_void_p(), c_size_t()
        L.tinf_pruner_data(self._h, byref(p), byref(n))
        return ctypes.string_at(p.value, n.value)


def tensor_storage(model: Model, index: int) -> tuple:
    """(stored sparse in the file, bytes in the file, fraction of zero
    elements) of tensor `index` of a loaded model (tinf_model_tensor_storage)."""
    sparse, stored, zeros = c_int32(), c_size_t(), c_double()
    L.tinf_model_tensor_storage(model.handle, int(index), byref(sparse), byref(stored), byref(zeros))
    return bool(sparse.value), stored.value, zeros.value


def sparse_ops(model: Model, nm24: bool = False, measured_dense: bool = False) -> set:
    """Indices of the ops that run on a sparse kernel (the load report's
    "sparse kernel: Op 'output name' ..." lines, matched to the ops by
    their first output); `nm24`: only those on the 2:4 kernel ("..., 2:4
    kernel"); `measured_dense`: instead the ops the load timed and kept
    dense ("dense kernel: Op 'output name' (...; measured dense ...)",
    docs/pruning.md)."""
    head = "dense kernel:" if measured_dense else "sparse kernel:"
    names = {line.split("'")[1] for line in model.passes if line.startswith(head) and "'" in line
             and (not nm24 or "2:4 kernel" in line) and (not measured_dense or "measured dense" in line)}
    tensors = {t.index: t.name for t in model.tensors()}
    return {op.index for op in model.ops() if op.outputs and tensors.get(op.outputs[0]) in names}


def parse_pattern(pattern) -> tuple:
    """'2:4' -> (2, 4), checked."""
    if isinstance(pattern, (tuple, list)) and len(pattern) == 2:
        n, m = pattern
    else:
        text = str(pattern)
        parts = text.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise InvalidArgumentError(f"pattern must be N:M such as 2:4, got {pattern!r}")
        n, m = (int(p) for p in parts)
    n, m = int(n), int(m)
    if not (1 <= n < m <= 64):
        raise InvalidArgumentError(f"pattern N:M needs 1 <= N < M <= 64, got {n}:{m}")
    return n, m


def _input_channel_index(info: dict) -> np.ndarray:
    """For each weight of a layer ([n, k]), the input channel it multiplies."""
    n, k, run, groups = info["n"], info["k"], info["run"], info["groups"]
    within = np.arange(k) % run                               # channel within the group
    group = (np.arange(n) // max(1, n // groups))[:, None]   # output channel's group
    return group * run + within[None, :]


def _wanda_scores(p: Pruner, layer: int, info: dict) -> np.ndarray:
    w = p.weights(layer)
    norms = p.input_norms(layer)
    return np.abs(w) * norms[_input_channel_index(info)]


def _prune_rows_by_score(w: np.ndarray, score: np.ndarray, sparsity: float) -> np.ndarray:
    """Zeros the `sparsity` fraction of each row's lowest scores (Wanda compares within an output)."""
    k = w.shape[1]
    drop = int(np.floor(k * sparsity))
    if drop <= 0:
        return w
    order = np.argsort(score, axis=1, kind="stable")[:, :drop]
    out = w.copy()
    np.put_along_axis(out, order, 0.0, axis=1)
    return out


def _nm_by_score(w: np.ndarray, score: np.ndarray, run: int, n: int, m: int) -> np.ndarray:
    """Keeps the n best scores of every m consecutive weights along the innermost run."""
    rows, k = w.shape
    s = score.reshape(rows, k // run, run // m, m)
    order = np.argsort(s, axis=3, kind="stable")[..., : m - n]
    out = w.reshape(rows, k // run, run // m, m).copy()
    np.put_along_axis(out, order, 0.0, axis=3)
    return out.reshape(rows, k)


# -- the check against the parent ---------------------------------------------------

@dataclass
class Check:
    """The pruned model against its dense parent on the same inputs."""
    inputs: int
    max_rel_error: float           # max over outputs of ||y - y_parent|| / ||y_parent||
    top1_agreement: Optional[float]  # fraction of rows whose argmax agrees (outputs with a last dim > 1)
    accuracy: Optional[float] = None
    parent_accuracy: Optional[float] = None


def _check_against_parent(parent: Model, data: bytes, sets, labels) -> Check:
    with Model(data) as pruned:
        worst = 0.0
        agree = total = 0
        correct = pcorrect = 0
        for i, xs in enumerate(sets):
            ys = pruned.run(xs)
            ps = parent.run(xs)
            for y, p in zip(ys, ps):
                if y.shape != p.shape:
                    raise InvalidArgumentError(f"pruned model's output has shape {y.shape}, the parent's {p.shape}")
                if not np.all(np.isfinite(y)):
                    raise InvalidArgumentError("the pruned model gives non-finite outputs: not written")
                y64, p64 = y.astype(np.float64), p.astype(np.float64)
                worst = max(worst, float(np.linalg.norm(y64 - p64) / max(np.linalg.norm(p64), 1e-30)))
            y0, p0 = ys[0], ps[0]
            if y0.ndim >= 1 and y0.shape[-1] > 1:
                a = y0.reshape(-1, y0.shape[-1]).argmax(1)
                b = p0.reshape(-1, p0.shape[-1]).argmax(1)
                agree += int((a == b).sum())
                total += a.size
                if labels is not None:
                    lab = np.asarray(labels[i]).reshape(-1)
                    if lab.size == a.size:
                        correct += int((a == lab).sum())
                        pcorrect += int((b == lab).sum())
        c = Check(len(sets), worst, agree / total if total else None)
        if labels is not None and total:
            c.accuracy, c.parent_accuracy = correct / total, pcorrect / total
        return c


def _random_sets(specs, count: int = 4):
    rng = np.random.default_rng(0)
    sets = []
    for _ in range(count):
        xs = []
        for s in specs:
            if np.issubdtype(s.dtype, np.floating):
                xs.append(rng.standard_normal(s.shape).astype(s.dtype))
            else:
                xs.append(np.zeros(s.shape, s.dtype))
        sets.append(xs)
    return sets


# -- the result -----------------------------------------------------------------------

@dataclass
class LayerResult:
    name: str
    weights: int
    sparsity: float


@dataclass
class PruneResult:
    """What `prune` did; str() is the report."""
    method: str
    scope: Optional[str]
    target: Optional[float]
    pattern: Optional[str]
    src_bytes: int
    dst_bytes: int
    layers: List[LayerResult] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    check: Optional[Check] = None
    data: bytes = field(repr=False, default=b"")
    dst: Optional[str] = None
    ls_correction: Optional[str] = None   # what the least-squares correction did (wanda, ls_correction=True)

    @property
    def sparsity(self) -> float:
        total = sum(l.weights for l in self.layers)
        return sum(l.weights * l.sparsity for l in self.layers) / total if total else 0.0

    def __str__(self) -> str:
        head = f"pruned: {self.method}"
        if self.pattern:
            head += f" {self.pattern}"
        elif self.target is not None:
            head += f" {self.target:.0%} ({self.scope})"
        lines = [head, f"  weights of the prunable layers: {self.sparsity:.1%} zeros",
                 f"  size: {self.src_bytes:,} -> {self.dst_bytes:,} bytes"]
        if self.layers:
            w = max(12, min(48, max(len(l.name) for l in self.layers)))
            lines.append(f"  {'layer':{w}} {'weights':>9} {'zeros':>7}")
            for l in self.layers:
                lines.append(f"  {l.name[-w:]:{w}} {l.weights:>9} {l.sparsity:>7.1%}")
        if self.skipped:
            lines.append(f"  skipped ({len(self.skipped)}): " + ", ".join(self.skipped))
        if self.ls_correction:
            lines.append(f"  {self.ls_correction}")
        return "\n".join(lines + report_tail(self.check, self.dst))


def report_tail(c: Optional[Check], dst: Optional[str]) -> List[str]:
    """The last lines of a pruning report: the check against the parent, the file written."""
    lines = []
    if c is not None:
        t = f"  check vs the dense parent on {c.inputs} input set(s): max relative output error {c.max_rel_error:.3g}"
        if c.top1_agreement is not None:
            t += f", top-1 agreement {c.top1_agreement:.1%}"
        lines.append(t)
        if c.accuracy is not None:
            lines.append(f"  accuracy on the labels: parent {c.parent_accuracy:.4f}, pruned {c.accuracy:.4f}")
    if dst:
        lines.append(f"  wrote {dst}")
    return lines


def _sensitivity_allocation(p: Pruner, parent: Model, infos, sets, target: float,
                            grid=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95)) -> List[float]:
    """Per-layer sparsities whose weighted mean is `target`: each layer's
    output error when pruned alone at each grid sparsity, then a greedy
    allocation that raises the layer whose next step costs the least error
    per pruned weight until the total is reached."""
    base = [p.weights(i) for i in range(len(infos))]
    sizes = np.array([w.size for w in base], np.float64)
    errors = np.zeros((len(infos), len(grid)))
    for i in range(len(infos)):
        for j, s in enumerate(grid):
            p.magnitude(s, layer=i)
            errors[i, j] = _check_against_parent(parent, p.finish(), sets, None).max_rel_error
            p.set_weights(i, base[i])
    levels = [0.0] + list(grid)
    err = np.concatenate([np.zeros((len(infos), 1)), errors], axis=1)
    at = [0] * len(infos)
    need = target * sizes.sum()
    have = 0.0
    while have < need - 1e-9:
        best, best_cost = -1, np.inf
        for i in range(len(infos)):
            if at[i] + 1 >= len(levels):
                continue
            gain = (levels[at[i] + 1] - levels[at[i]]) * sizes[i]
            cost = (err[i, at[i] + 1] - err[i, at[i]]) / gain
            if cost < best_cost:
                best, best_cost = i, cost
        if best < 0:
            break
        have += (levels[at[best] + 1] - levels[at[best]]) * sizes[best]
        at[best] += 1
    alloc = [levels[a] for a in at]
    # The last step may overshoot: lower the last raised layer's level to hit the target exactly.
    over = have - need
    if over > 0 and best >= 0:
        alloc[best] = max(0.0, alloc[best] - over / sizes[best])
    return alloc


def prune(src, dst=None, method: str = "magnitude", sparsity: Optional[float] = None, pattern=None, calib=None,
          scope: str = "global", validate: bool = True, verbose: bool = False, criterion: str = "l2",
          channel_multiple: Optional[int] = None, ls_correction: bool = False):
    """Prunes a float32 .tinf model (a path, bytes or a loaded Model) and
    writes `dst` when given. Returns a PruneResult (str() is a report).

    method: "magnitude", "wanda" (needs `calib`), "nm" (needs `pattern`) or
        "structured" (returns a StructuredResult).
    sparsity: the fraction of weights to zero, in [0, 1) (magnitude, wanda);
        for structured, the fraction of each prunable layer's output channels to remove.
    criterion: structured without `calib`: rank channels by the "l2" or "l1" norm of their filters.
    channel_multiple: structured: keep a multiple of this many channels in each group
        whose size is one (default: 8 for groups that pass a depthwise convolution,
        whose fast kernel needs it, else 1: the exact fraction).
    pattern: "2:4", "1:4", ... for method "nm" (with `calib`, chosen by Wanda's score).
    scope: for magnitude: "global" (one threshold), "layer" (the same
        sparsity per layer) or "sensitivity" (per-layer sparsities from
        the calibration data, or random inputs without it).
    calib: inputs as for tinyinfer.quantize (array, .npy/.npz path, (x, y) with labels).
    ls_correction: wanda: after the mask is chosen, refit each output row's
        kept weights by ridge-regularized least squares so that the layer's
        outputs on the calibration activations match the dense layer's
        (tinyinfer.prune_ls); zeros stay zero.

    Before anything is written the pruned model is run next to its parent
    on the calibration inputs (or a few random ones): a model that does not
    load or gives non-finite outputs is refused; the report gives the
    largest relative output error, the top-1 agreement and, with labels,
    both accuracies."""
    from .quantize import calibration_sets, already_quantized

    method = str(method).lower()
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if scope not in SCOPES:
        raise InvalidArgumentError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    nm = None
    if method == "nm":
        if pattern is None:
            raise InvalidArgumentError("method nm needs a pattern such as 2:4")
        nm = parse_pattern(pattern)
        if sparsity is not None and abs(sparsity - (1 - nm[0] / nm[1])) > 1e-6:
            raise InvalidArgumentError(f"pattern {nm[0]}:{nm[1]} is {1 - nm[0] / nm[1]:.0%} sparse, "
                                       f"not the sparsity {sparsity} asked")
    else:
        if pattern is not None:
            raise InvalidArgumentError("pattern is for method nm")
        if sparsity is None:
            raise InvalidArgumentError(f"method {method} needs a sparsity (>= 0 and < 1)")
        if not isinstance(sparsity, (int, float)) or not (0 <= float(sparsity) < 1):
            raise InvalidArgumentError(f"sparsity must be >= 0 and < 1, got {sparsity!r}")
    if method == "structured":
        from .prune_structured import CRITERIA
        if criterion not in CRITERIA:
            raise InvalidArgumentError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
        if channel_multiple is not None and (isinstance(channel_multiple, bool)
                                             or not isinstance(channel_multiple, (int, np.integer))
                                             or channel_multiple < 1):
            raise InvalidArgumentError(f"channel_multiple must be an int >= 1, got {channel_multiple!r}")
    if method == "wanda" and calib is None:
        raise InvalidArgumentError("method wanda needs calibration data (calib)")
    if ls_correction and method != "wanda":
        raise InvalidArgumentError(f"ls_correction is an option of method wanda, not {method}")

    own = not isinstance(src, Model)
    parent = src if not own else Model(src if isinstance(src, (bytes, bytearray, memoryview)) else os.fspath(src),
                                       sparse=False)
    try:
        why = already_quantized(parent)
        if why:
            raise InvalidArgumentError(f"prune a float32 model (then quantize it): {why}")
        src_bytes = (len(src) if isinstance(src, (bytes, bytearray, memoryview))
                     else os.path.getsize(src) if own else parent.sizes.get("file", 0))
        labels = None
        if calib is not None:
            sets, labels = calibration_sets(calib, parent.inputs)
        else:
            sets = _random_sets(parent.inputs)
        if method == "structured":
            from .prune_structured import prune_structured
            result = prune_structured(parent, sets, labels, float(sparsity), criterion, calib is not None,
                                      src_bytes, validate, channel_multiple)
            if not result.layers:
                raise InvalidArgumentError("structured pruning found no layer it can shrink:\n  "
                                           + "\n  ".join(result.skipped or ["no FullyConnected or Conv2D layer"]))
        else:
            result = _prune_weights(parent, sets, labels, method, sparsity, nm, scope, calib, src_bytes, validate,
                                    bool(ls_correction))
        if dst is not None:
            with open(dst, "wb") as f:
                f.write(result.data)
            result.dst = os.fspath(dst)
        if verbose:
            print(result)
        return result
    finally:
        if own:
            parent.close()


def _prune_weights(parent, sets, labels, method, sparsity, nm, scope, calib, src_bytes, validate,
                   ls_correction: bool = False) -> PruneResult:
    ls_note = None
    with Pruner(parent) as p:
        infos = p.layers()
        if not infos:
            raise InvalidArgumentError("the model has no prunable layer (FullyConnected or Conv2D with "
                                       "constant float32 weights)")
        skipped: List[str] = []
        if method == "wanda" or (method == "nm" and calib is not None):
            for xs in sets:
                p.observe(xs)
        if method == "magnitude":
            if scope == "global":
                p.magnitude(sparsity)
            elif scope == "layer":
                for i in range(len(infos)):
                    p.magnitude(sparsity, layer=i)
            else:
                alloc = _sensitivity_allocation(p, parent, infos, sets[:8], float(sparsity))
                for i, s in enumerate(alloc):
                    p.magnitude(s, layer=i)
        elif method == "wanda":
            grams, ls_skipped = {}, {}
            if ls_correction:
                from .prune_ls import layer_grams, DEFAULT_RIDGE
                grams, ls_skipped = layer_grams(Pruner, parent, infos, sets)
            for i, info in enumerate(infos):
                w = p.weights(i)
                masked = _prune_rows_by_score(w, _wanda_scores(p, i, info), float(sparsity))
                if i in grams:
                    from .prune_ls import correct_rows
                    masked = correct_rows(w, masked, grams[i])
                p.set_weights(i, masked)
            if ls_correction:
                ls_note = (f"least-squares correction (ridge {DEFAULT_RIDGE:g}): {len(grams)} of {len(infos)} layers"
                           + "".join(f"; not {infos[i]['name']} ({why})" for i, why in sorted(ls_skipped.items())))
        else:
            n, m = nm
            if calib is None:
                p.nm(n, m)
                skipped = [info["name"] for info in infos if info["run"] % m]
            else:
                for i, info in enumerate(infos):
                    if info["run"] % m:
                        skipped.append(info["name"])
                        continue
                    p.set_weights(i, _nm_by_score(p.weights(i), _wanda_scores(p, i, info), info["run"], n, m))
        data = p.finish()
        layers = []
        for i, info in enumerate(infos):
            w = p.weights(i)
            layers.append(LayerResult(info["name"], int(w.size), float((w == 0).mean())))
    check = _check_against_parent(parent, data, sets, labels) if validate else None
    return PruneResult(method, scope if method == "magnitude" else None,
                       None if sparsity is None else float(sparsity),
                       f"{nm[0]}:{nm[1]}" if nm else None, src_bytes, len(data), layers, skipped, check, data,
                       ls_correction=ls_note)
