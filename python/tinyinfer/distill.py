"""Knowledge distillation: a teacher run by tinyinfer teaches a small PyTorch student (docs/distillation.md).

    from tinyinfer import distill
    t = distill.teacher_outputs("teacher.tinf", x)           # logits, computed once, cached on disk (memmap)
    log = distill.train_student(net, x, t, labels=y)          # Hinton's soft targets (+ hard labels), needs torch
    distill.distill("teacher.tinf", net, x, labels=y, dst="student.tinf", quantize="int8-static")
    net = distill.shrink("teacher.tinf", width=0.5)          # the teacher's architecture, half its channels
    f = distill.teacher_outputs("teacher.tinf", x, intermediates=["conv3"])   # + chosen tensors, for hints
    distill.train_student(net, x, f["logits"], hints={"conv3": f["conv3"]})   # + a feature (hint) loss

teacher_outputs runs the model over a data set in batches and stores each
selected output in a .npy file (read back memory-mapped, so data sets larger
than RAM work) with a small JSON index, under `cache_dir` (default
`<tinyinfer cache folder>/distill`, see tinyinfer.cache). The entry's key is
the sha256 of the model's bytes, of the data (dtype, shape and bytes) and of
the selected outputs: a changed model or data set is a miss. Files are written
under temporary names and renamed when complete, the index last; an entry
whose files are missing or of the wrong size is ignored and recomputed, so a
half-written cache is never used.

The trainer needs torch (`pip install tinyinfer[train]`); teacher_outputs
needs numpy only (tqdm for the progress bar).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ._errors import InvalidArgumentError, TinyInferRuntimeError

__all__ = ["teacher_outputs", "train_student", "distill", "mlp_student", "shrink", "TrainResult", "DistillError",
           "probs_to_logits"]

_INDEX_VERSION = 1
_HEADER_BYTES = 256  # our .npy files reserve a fixed header so it can be written after the rows
_CHUNK = 1 << 24


class DistillError(TinyInferRuntimeError):
    """Training failed (a NaN or infinite loss); the student keeps its last good weights."""


# -- teacher outputs, cached ------------------------------------------------------------------------------------

def _cache_folder(cache_dir) -> str:
    if cache_dir is not None:
        return os.path.abspath(os.fspath(cache_dir))
    from .cache import cache_dir as base
    return os.path.join(base(), "distill")


def _model_bytes_hash(model) -> str:
    h = hashlib.sha256()
    if model._buffer is not None:
        h.update(memoryview(model._buffer))
    else:
        with open(model.path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


def _hash_rows(h, a: np.ndarray) -> None:
    """Feeds the bytes of `a` to `h` in chunks of rows (a memmap is not read at once). The data's hash is
    the rows as the teacher sees them (cast to its input dtype), so batch boundaries do not matter."""
    rows = max(1, _CHUNK // max(1, a[:1].nbytes))
    for i in range(0, len(a), rows):
        h.update(memoryview(np.ascontiguousarray(a[i:i + rows])).cast("B"))


def _batches(dataset, batch_size: int):
    """(a function giving a fresh iterator of batches, the number of items or None, re-iterable?)."""
    if isinstance(dataset, np.ndarray):
        if dataset.ndim == 0:
            raise InvalidArgumentError("dataset: an array of items along axis 0, got a scalar")
        n = len(dataset)
        return (lambda: (dataset[i:i + batch_size] for i in range(0, n, batch_size))), n, True
    if isinstance(dataset, (str, os.PathLike)):
        arr = np.load(os.fspath(dataset), mmap_mode="r")
        if not isinstance(arr, np.ndarray):
            raise InvalidArgumentError(f"{dataset}: teacher_outputs takes one .npy array (got an archive)")
        return _batches(arr, batch_size)
    if isinstance(dataset, (list, tuple)):
        return (lambda: iter(dataset)), None, True
    if hasattr(dataset, "__iter__"):
        return (lambda: iter(dataset)), None, iter(dataset) is not dataset
    raise InvalidArgumentError(f"dataset: an array, a memmap, a .npy path or an iterable of batches, got "
                               f"{type(dataset).__name__}")


def _check_batch(b, spec) -> np.ndarray:
    b = np.asarray(b)
    if b.ndim == 0 or tuple(b.shape[1:]) != tuple(spec.shape[1:]):
        raise InvalidArgumentError(f"a batch of shape {tuple(b.shape)} does not match the model input "
                                   f"'{spec.name}' {list(spec.shape)} (items of shape {list(spec.shape[1:])})")
    return b.astype(spec.dtype, copy=False)


def _data_hash(batches, spec) -> str:
    h = hashlib.sha256()
    for b in batches:
        _hash_rows(h, _check_batch(b, spec))
    return h.hexdigest()


def _npy_header(dtype: np.dtype, shape) -> bytes:
    d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.lib.format.dtype_to_descr(dtype), tuple(shape))
    body = d.encode("latin1")
    pad = _HEADER_BYTES - 10 - len(body) - 1
    if pad < 0:
        raise InvalidArgumentError(f"output shape {shape} too long for the cache header")
    hlen = _HEADER_BYTES - 10
    return b"\x93NUMPY\x01\x00" + hlen.to_bytes(2, "little") + body + b" " * pad + b"\n"


def _valid_entry(folder: str, key: str):
    """The index of a complete entry, or None (absent, unreadable, or a file missing or of the wrong size)."""
    try:
        with open(os.path.join(folder, key + ".json")) as f:
            index = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        if index.get("version") != _INDEX_VERSION or index.get("key") != key:
            return None
        for o in index["outputs"]:
            path = os.path.join(folder, o["file"])
            expect = _HEADER_BYTES + int(np.prod(o["shape"], dtype=np.int64)) * np.dtype(o["dtype"]).itemsize
            if os.path.getsize(path) != expect:
                return None
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return index


def _open_entry(folder: str, index) -> Dict[str, np.ndarray]:
    return {o["name"]: np.load(os.path.join(folder, o["file"]), mmap_mode="r") for o in index["outputs"]}


def _progress_bar(total, show: bool):
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None  # tqdm is optional (tinyinfer[progress]): no bar
    return tqdm(total=total, unit="item", desc="teacher outputs", file=sys.stderr, leave=False)


def teacher_outputs(model, dataset, batch_size: int = 256, outputs=None, cache_dir=None, progress: bool = True,
                    intermediates=None):
    """Runs `model` (a loaded tinyinfer.Model, or anything tinyinfer.load takes) over `dataset` in batches and
    returns its outputs, cached on disk (see the module's docstring).

    dataset: an array or memmap (items along axis 0), a .npy path, or an iterable of batches (arrays). A list
        or another re-iterable is read twice (hash, then run) so a cached entry is found without running the
        teacher; a one-shot iterator is hashed while the teacher runs over it (the result is still cached, and
        a later call with the same data as an array or re-iterable finds it).
    outputs: the model outputs to keep, by name or index (default: all).
    intermediates: names of other tensors of the graph to keep too (for feature / hint losses): the model is
        run with them as extra outputs (the graph as written in the file; `tinyinfer inspect` lists the names).
    Returns a read-only memmap of shape [items, ...] when one output is selected, else a dict name -> memmap.
    The model must have one input; each batch must match its item shape (dims after the first)."""
    from .model import Model, load
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an int >= 1, got {batch_size!r}")
    own = not isinstance(model, Model)
    m = load(model) if own else model
    try:
        if intermediates:
            if isinstance(intermediates, str):
                intermediates = [intermediates]
            names = [m.outputs[i].name for i in _select(m, outputs)]
            with Model(_with_outputs(m, list(intermediates))) as wide:
                return _teacher_outputs(wide, dataset, batch_size, names + list(intermediates), cache_dir,
                                        progress)
        return _teacher_outputs(m, dataset, batch_size, outputs, cache_dir, progress)
    finally:
        if own:
            m.close()


def _with_outputs(model, names) -> bytes:
    """The model's graph (as in its file) with the tensors `names` as extra outputs."""
    from .prune_structured import _read_tinf, write_graph
    from .to_torch import tinf_bytes
    meta, tensors, g_in, g_out, ops = _read_tinf(tinf_bytes(model))
    index = {t.name: i for i, t in enumerate(tensors)}
    extra = []
    for n in names:
        if n not in index:
            raise InvalidArgumentError(f"intermediates: the graph has no tensor {n!r}")
        if index[n] not in g_out and index[n] not in extra:
            extra.append(index[n])
    return write_graph(meta, tensors, g_in, g_out + extra, ops, {})


def _select(model, outputs) -> List[int]:
    names = [o.name for o in model.outputs]
    if outputs is None:
        return list(range(len(names)))
    if isinstance(outputs, (str, int)):
        outputs = [outputs]
    sel = []
    for o in outputs:
        if isinstance(o, str):
            if o not in names:
                raise InvalidArgumentError(f"outputs: the model has no output {o!r} (it has {names})")
            sel.append(names.index(o))
        elif isinstance(o, int) and not isinstance(o, bool) and -len(names) <= o < len(names):
            sel.append(o % len(names))
        else:
            raise InvalidArgumentError(f"outputs: {o!r} is neither an output name nor an index below {len(names)}")
    return sel


def _teacher_outputs(model, dataset, batch_size, outputs, cache_dir, progress):
    if len(model.inputs) != 1:
        raise InvalidArgumentError(f"teacher_outputs runs one-input models; this one has {len(model.inputs)} inputs")
    spec = model.inputs[0]
    sel = _select(model, outputs)
    make, total, reiterable = _batches(dataset, batch_size)
    folder = _cache_folder(cache_dir)
    model_hash = _model_bytes_hash(model)
    sel_names = [model.outputs[i].name for i in sel]

    def key_for(data_hash):
        from .cache import key
        return key("teacher_outputs", str(_INDEX_VERSION), model_hash, data_hash, json.dumps(sel_names),
                   np.dtype(spec.dtype).str, str(tuple(spec.shape[1:])))

    if reiterable:
        data_hash = _data_hash(make(), spec)
        k = key_for(data_hash)
        index = _valid_entry(folder, k)
        if index is not None:
            got = _open_entry(folder, index)
            return got[sel_names[0]] if len(sel) == 1 else got

    os.makedirs(folder, exist_ok=True)
    tmp_files, handles = [], []
    h = hashlib.sha256()
    bar = _progress_bar(total, progress)
    try:
        for _ in sel:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-teacher-", suffix=".npy", dir=folder)
            tmp_files.append(tmp)
            f = os.fdopen(fd, "wb")
            handles.append(f)
            f.write(b"\0" * _HEADER_BYTES)
        count, out_specs = 0, [None] * len(sel)
        for b in make():
            b = _check_batch(b, spec)
            if len(b) == 0:
                continue
            _hash_rows(h, b)
            ys = model.run(b)
            for j, i in enumerate(sel):
                y = np.ascontiguousarray(ys[i])
                if y.ndim == 0 or len(y) != len(b):
                    raise InvalidArgumentError(f"output '{sel_names[j]}' has {0 if y.ndim == 0 else len(y)} rows for "
                                               f"a batch of {len(b)}: teacher_outputs needs outputs batched along "
                                               f"axis 0")
                if out_specs[j] is None:
                    out_specs[j] = (y.dtype, y.shape[1:])
                elif (y.dtype, y.shape[1:]) != out_specs[j]:
                    raise InvalidArgumentError(f"output '{sel_names[j]}' changed shape between batches")
                handles[j].write(y.tobytes())
            count += len(b)
            if bar is not None:
                bar.update(len(b))
        if count == 0:
            raise InvalidArgumentError("dataset is empty")
        k = key_for(h.hexdigest()) if not reiterable else k
        if reiterable and h.hexdigest() != data_hash:
            raise InvalidArgumentError("dataset gave different data on its second pass (hash, then run); "
                                       "pass an array or a deterministic iterable")
        entries = []
        for j, f in enumerate(handles):
            dtype, item = out_specs[j]
            f.seek(0)
            f.write(_npy_header(dtype, (count,) + tuple(item)))
            f.flush()
            os.fsync(f.fileno())
            f.close()
            name = f"{k}.{j}.npy"
            os.replace(tmp_files[j], os.path.join(folder, name))
            tmp_files[j] = None
            entries.append({"name": sel_names[j], "file": name, "dtype": np.dtype(dtype).str,
                            "shape": [count] + [int(d) for d in item]})
        index = {"version": _INDEX_VERSION, "key": k, "model_sha256": model_hash,
                 "data_sha256": h.hexdigest(), "items": count, "outputs": entries, "created": time.time()}
        from ._atomic import write_atomic
        write_atomic(os.path.join(folder, k + ".json"), json.dumps(index, indent=1).encode())
    finally:
        if bar is not None:
            bar.close()
        for f in handles:
            if not f.closed:
                f.close()
        for t in tmp_files:
            if t is not None:
                try:
                    os.unlink(t)
                except OSError:
                    pass
    got = _open_entry(folder, index)
    return got[sel_names[0]] if len(sel) == 1 else got


def probs_to_logits(p: np.ndarray) -> np.ndarray:
    """Logits equivalent to probabilities `p` (a softmax output): log p, which differs from the original
    logits by a per-row constant, so softmax(log p / T) is the teacher's softmax at temperature T."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(np.maximum(p, 1e-30)).astype(np.float32)


# -- the student trainer (torch) --------------------------------------------------------------------------------

def _torch(what: str):
    from .convert import require
    return require("torch", "train", what)


@dataclass
class TrainResult:
    """What train_student did: one dict per epoch (epoch, train_loss, val_loss, val_accuracy when there are
    labels, val_agreement with the teacher's argmax when there is a teacher, seconds), the best epoch (whose weights the student
    holds) and whether early stopping ended the run."""
    history: List[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = []
        for h in self.history:
            lines.append(_epoch_line(h))
        lines.append(f"best epoch {self.best_epoch} (val loss {self.best_val_loss:.4f})"
                     f"{', stopped early' if self.stopped_early else ''}, {self.seconds:.1f}s")
        return "\n".join(lines)


def _epoch_line(h: dict) -> str:
    acc = "" if h.get("val_accuracy") is None else f"  val acc {h['val_accuracy']:.4f}"
    agree = "" if h.get("val_agreement") is None else f"  agree {h['val_agreement']:.4f}"
    return (f"epoch {h['epoch']:3d}  train loss {h['train_loss']:.4f}  val loss {h['val_loss']:.4f}{acc}{agree}  "
            f"{h['seconds']:.2f}s")


def _loss(torch, s, t, y, temperature, alpha):
    F = torch.nn.functional
    soft = F.kl_div(F.log_softmax(s / temperature, dim=1), F.log_softmax(t / temperature, dim=1),
                    reduction="batchmean", log_target=True) * (temperature * temperature)
    if y is None:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(s, y)


def train_student(student, data, teacher_logits, labels=None, temperature: float = 4.0, alpha: float = 0.7,
                  epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                  val_split: float = 0.1, patience: int = 5, seed: int = 0, progress: bool = True,
                  log=None, hints=None, hint_weight: float = 1.0) -> TrainResult:
    """Trains `student` (a torch.nn.Module mapping a batch of `data` items to logits) to match
    `teacher_logits` ([items, classes]): Hinton's soft-target loss, the KL divergence between the teacher's
    and the student's softmax at `temperature`, times temperature^2, mixed with the cross-entropy on
    `labels` as alpha * soft + (1 - alpha) * hard (no labels: soft only; teacher_logits=None: labels only,
    the baseline a distilled student is compared with). Adam at `lr`; a `val_split`
    fraction of the items (seeded) is held out and training stops when its loss has not improved for
    `patience` epochs; the student ends with the weights of the best epoch. `seed` fixes the split, the
    initial shuffle order and torch's RNG. Each epoch is printed (progress=True) or passed to `log` (a
    callable taking the epoch dict). A NaN or infinite loss raises DistillError; the student keeps the
    weights of its last good epoch.
    hints: the intermediate-feature (FitNets hint) loss, {student point: teacher features}: a student point is
        a tensor name of a tinyinfer.to_torch student or the name of a submodule (its output), the teacher
        features an array [items, ..., C] (teacher_outputs(..., intermediates=[...])). The student's tensor
        must have the teacher's shape but for the last (channel) axis; when the widths differ, a learnable
        linear projection over that axis (student width -> teacher width, trained with the student, then
        dropped) maps it. hint_weight * the mean squared error is added to the training loss (the validation
        loss, which early stopping watches, stays the output loss). Needs torch (pip install tinyinfer[train])."""
    torch = _torch("tinyinfer.distill.train_student")
    if not isinstance(student, torch.nn.Module):
        raise InvalidArgumentError(f"student must be a torch.nn.Module, got {type(student).__name__}")
    x = np.asarray(data) if not isinstance(data, np.ndarray) else data
    n = len(x)
    has_teacher = teacher_logits is not None
    if teacher_logits is None:  # the baseline: the student from labels only
        if labels is None:
            raise InvalidArgumentError("train_student needs teacher_logits, labels, or both")
        was_training = student.training
        student.eval()
        with torch.no_grad():
            k = int(student(torch.from_numpy(np.ascontiguousarray(x[:1], dtype=np.float32))).shape[-1])
        student.train(was_training)
        teacher_logits, alpha = np.zeros((n, k), np.float32), 0.0
    t = np.asarray(teacher_logits, dtype=np.float32)
    if t.ndim != 2:
        raise InvalidArgumentError(f"teacher_logits must be [items, classes], got shape {list(t.shape)}")
    if len(t) != n:
        raise InvalidArgumentError(f"teacher outputs have {len(t)} rows but the data has {n} items")
    y = None
    if labels is not None:
        y = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(y) != n:
            raise InvalidArgumentError(f"labels have {len(y)} rows but the data has {n} items")
        if y.min() < 0 or y.max() >= t.shape[1]:
            raise InvalidArgumentError(f"labels must be class indices in [0, {t.shape[1]})")
    if not np.isfinite(t).all():
        raise InvalidArgumentError("teacher_logits contain NaN or infinite values (for softmax outputs use "
                                   "probs_to_logits)")
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise InvalidArgumentError(f"alpha must be in [0, 1] and temperature > 0 (got {alpha}, {temperature})")
    if not 0.0 < val_split < 1.0:
        raise InvalidArgumentError(f"val_split must be in (0, 1), got {val_split}")
    n_val = max(1, int(round(n * val_split)))
    if n - n_val < 1:
        raise InvalidArgumentError(f"{n} items are too few for a validation split of {val_split}")

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), perm[n_val:]

    def tensors(idx):
        idx = np.sort(idx)  # sorted reads are sequential in a memmap
        xb = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32))
        tb = torch.from_numpy(np.ascontiguousarray(t[idx]))
        yb = None if y is None else torch.from_numpy(y[idx])
        return xb, tb, yb

    was_training = student.training
    student.eval()  # the probe: eval mode (a BatchNorm in training mode refuses a batch of one)
    with torch.no_grad():
        xv, tv, yv = tensors(val_idx)
        probe = student(xv[:1])
    student.train(was_training)
    if probe.ndim != 2 or probe.shape[1] != t.shape[1]:
        raise InvalidArgumentError(f"the student gives outputs of shape {list(probe.shape)} for one item; the "
                                   f"teacher gives {t.shape[1]} classes")
    hint = _Hints(torch, student, hints, n, xv[:1]) if hints else None
    params = list(student.parameters()) + ([] if hint is None else list(hint.projections.parameters()))
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    result = TrainResult()

    def snapshot():
        return {k: v.detach().clone() for k, v in student.state_dict().items()}

    best = snapshot()
    bad_epochs = 0
    start = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            student.train()
            order = train_idx[rng.permutation(len(train_idx))]
            total, seen = 0.0, 0
            for i in range(0, len(order), batch_size):
                idx = np.sort(order[i:i + batch_size])
                xb, tb, yb = tensors(idx)
                loss = _loss(torch, student(xb), tb, yb, temperature, alpha)
                if hint is not None:
                    loss = loss + hint_weight * hint.loss(idx)
                if not torch.isfinite(loss):
                    student.load_state_dict(best)
                    raise DistillError(f"the loss became {loss.item()} at epoch {epoch} (batch {i // batch_size}); "
                                       f"the student keeps the weights of epoch {result.best_epoch}; try a lower "
                                       f"lr (now {lr})")
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(xb)
                seen += len(xb)
            student.eval()
            with torch.no_grad():
                sv = student(xv)
                val_loss = _loss(torch, sv, tv, yv, temperature, alpha).item()
                pred = sv.argmax(1)
                agree = (pred == tv.argmax(1)).float().mean().item() if has_teacher else None
                acc = None if yv is None else (pred == yv).float().mean().item()
            if not math.isfinite(val_loss):
                student.load_state_dict(best)
                raise DistillError(f"the validation loss became {val_loss} at epoch {epoch}; the student keeps "
                                   f"the weights of epoch {result.best_epoch}; try a lower lr (now {lr})")
            rec = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": val_loss, "val_accuracy": acc,
                   "val_agreement": agree, "seconds": time.perf_counter() - t0}
            result.history.append(rec)
            if val_loss < result.best_val_loss:
                result.best_val_loss, result.best_epoch, bad_epochs = val_loss, epoch, 0
                best = snapshot()
            else:
                bad_epochs += 1
            if log is not None:
                log(rec)
            elif progress:
                print(_epoch_line(rec), file=sys.stderr)
            if bad_epochs >= patience:
                result.stopped_early = True
                break
        student.load_state_dict(best)
    finally:
        if hint is not None:
            hint.close()
        student.train(was_training)
        result.seconds = time.perf_counter() - start
    return result


class _Hints:
    """The feature loss of train_student: captures the student's tensors at the hint points (a to_torch
    module's named tensors, or forward hooks on submodules), projects them when widths differ."""

    def __init__(self, torch, student, hints, n, probe_x):
        self.torch = torch
        self.points = list(hints)
        self.feats = {}
        for p, f in hints.items():
            if f is None or len(f) != n:
                raise InvalidArgumentError(f"hints[{p!r}]: teacher features have {0 if f is None else len(f)} rows "
                                           f"but the data has {n} items")
            self.feats[p] = f
        self.student, self.hooks, self.got = student, [], {}
        tensor_names = set(getattr(student, "tensor_names", ()))
        modules = dict(student.named_modules())
        self.captured_by_module = False
        for p in self.points:
            if p in tensor_names:
                student.capture = set(student.capture) | {p}
            elif p in modules and p != "":
                self.hooks.append(modules[p].register_forward_hook(self._hook(p)))
            else:
                raise InvalidArgumentError(f"hints: {p!r} is neither a tensor of the student graph nor a submodule "
                                           f"of the student")
        was = student.training
        student.eval()
        with torch.no_grad():
            student(probe_x)
        student.train(was)
        self.projections = torch.nn.ModuleDict()
        self._names = {}
        for k, p in enumerate(self.points):
            s = self._value(p)
            t = self.feats[p]
            if s.dim() != t.ndim or tuple(s.shape[1:-1]) != tuple(t.shape[1:-1]):
                raise InvalidArgumentError(f"hints[{p!r}]: the student's tensor is {list(s.shape[1:])} per item, "
                                           f"the teacher's {list(t.shape[1:])}: they must agree but for the last "
                                           f"(channel) axis")
            if s.shape[-1] != t.shape[-1]:
                self._names[p] = f"p{k}"
                self.projections[f"p{k}"] = torch.nn.Linear(int(s.shape[-1]), int(t.shape[-1]), bias=False)

    def _hook(self, p):
        def hook(_module, _inputs, output):
            self.got[p] = output
        return hook

    def _value(self, p):
        if p in self.got:
            return self.got[p]
        captured = getattr(self.student, "captured", {})
        if p not in captured:
            raise InvalidArgumentError(f"hints: the student's forward pass did not compute {p!r}")
        return captured[p]

    def loss(self, idx):
        torch = self.torch
        total = 0.0
        for p in self.points:
            s = self._value(p)
            if p in self._names:
                s = self.projections[self._names[p]](s)
            t = torch.from_numpy(np.ascontiguousarray(self.feats[p][idx], dtype=np.float32))
            total = total + torch.nn.functional.mse_loss(s, t)
        self.got = {}
        return total

    def close(self):
        for h in self.hooks:
            h.remove()
        if hasattr(self.student, "capture"):
            self.student.capture = set(self.student.capture) - set(self.points)


def mlp_student(in_features: int, hidden: Sequence[int], classes: int):
    """A torch MLP: items flattened to `in_features`, then Linear + ReLU per hidden width, then Linear to
    `classes` logits. The flattening is a reshape to [-1, in_features], so the exported .tinf runs any
    batch size (nn.Flatten exports a reshape to the example's batch)."""
    torch = _torch("tinyinfer.distill.mlp_student")
    nn = torch.nn

    class Flat(nn.Module):
        def forward(self, v):
            return v.reshape(-1, in_features)

    layers, prev = [Flat()], in_features
    for h in hidden:
        if not isinstance(h, int) or h < 1:
            raise InvalidArgumentError(f"hidden widths must be ints >= 1, got {list(hidden)}")
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, classes))
    return nn.Sequential(*layers)


def shrink(teacher, width: float = 0.5, calib=None, criterion: str = "l2", channel_multiple: Optional[int] = None,
           keep_zeros: bool = False):
    """A narrower copy of the teacher as a trainable torch module: structured (channel) pruning
    (tinyinfer.prune(method="structured", sparsity=1 - width), docs/pruning.md) keeps `width` of each prunable
    layer's output channels (FullyConnected neurons, Conv2D filters; those a residual or depthwise layer
    shares are kept alike; layers feeding an output or a channel-mixing op keep all), chosen by filter norm
    (`criterion`) or, with `calib` inputs, by activations; the result is loaded with tinyinfer.to_torch
    (logits=True: a final Softmax is skipped while it trains), so it starts from the teacher's kept weights.
    `module.to_tinf()` gives the student .tinf after training;
    `module.shrink_report` is the pruning's report (channels per layer). Needs torch."""
    _torch("tinyinfer.distill.shrink")
    from .prune import prune
    from .to_torch import to_torch, tinf_bytes
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not 0.0 < float(width) <= 1.0:
        raise InvalidArgumentError(f"width must be in (0, 1], got {width!r}")
    src = tinf_bytes(teacher)
    r = prune(src, method="structured", sparsity=1.0 - float(width), calib=calib, criterion=criterion,
              channel_multiple=channel_multiple, validate=False)
    net = to_torch(r.data, keep_zeros=keep_zeros, logits=True)
    net.shrink_report = r
    return net


def _ends_in_softmax(model, out_index: int) -> bool:
    """Whether the model's output `out_index` is produced by a Softmax op (probabilities, not logits)."""
    name = model.outputs[out_index].name
    ids = {d.index for d in model.tensors() if d.name == name}
    return any(op.op == "Softmax" and ids.intersection(op.outputs) for op in model.ops())


def distill(teacher, student, data, labels=None, dst=None, quantize: Optional[str] = None, epochs: int = 30,
            temperature: float = 4.0, alpha: float = 0.7, batch_size: int = 64, lr: float = 1e-3,
            val_split: float = 0.1, patience: int = 5, seed: int = 0, cache_dir=None, progress: bool = True,
            calib_items: int = 500, via: Optional[str] = None):
    """The whole path in one call: the teacher's outputs (teacher_outputs, cached; a softmax output is turned
    into logits with probs_to_logits), train_student, then the student exported with tinyinfer.from_torch
    (float32; with a Softmax appended when the teacher's output is a softmax, so the two give the same kind
    of output; a tinyinfer.to_torch or shrink student is written back as its own graph with to_tinf, its
    final Softmax skipped while it trains) and, with quantize="int8-static" (or another tinyinfer.quantize mode), quantized, calibrated
    on the first `calib_items` items of `data`. `via`: from_torch's export path (None: its default, ONNX
    for float modules, which writes the example's batch of 1 into reshapes; "torchscript" keeps a
    reshape(-1, n) dynamic, so the student runs any batch size). Writes `dst` when given. Returns
    (TrainResult, the loaded student Model)."""
    torch = _torch("tinyinfer.distill.distill")
    from .model import Model, load
    from . import from_torch
    from . import quantize as _quantize
    own = not isinstance(teacher, Model)
    tm = load(teacher) if own else teacher
    try:
        x = np.load(os.fspath(data), mmap_mode="r") if isinstance(data, (str, os.PathLike)) else np.asarray(data)
        if labels is not None and isinstance(labels, (str, os.PathLike)):
            labels = np.load(os.fspath(labels))
        t = teacher_outputs(tm, x, outputs=0, cache_dir=cache_dir, progress=progress)
        softmax = _ends_in_softmax(tm, 0)
        if t.ndim != 2:
            raise InvalidArgumentError(f"the teacher's output has shape {list(t.shape)}; distillation needs "
                                       f"[items, classes]")
        logits = probs_to_logits(t) if softmax else np.asarray(t)
    finally:
        if own:
            tm.close()
    if hasattr(student, "to_tinf"):
        student.logits = True
    result = train_student(student, x, logits, labels=labels, temperature=temperature, alpha=alpha, epochs=epochs,
                           batch_size=batch_size, lr=lr, val_split=val_split, patience=patience, seed=seed,
                           progress=progress)
    if hasattr(student, "to_tinf"):  # a tinyinfer.to_torch / shrink student: its own graph, the new weights
        data_bytes = student.to_tinf()
        float_model = Model(data_bytes)
    else:
        export = torch.nn.Sequential(student, torch.nn.Softmax(dim=1)) if softmax else student
        example = torch.from_numpy(np.ascontiguousarray(x[:1], dtype=np.float32))
        float_model = from_torch(export, example) if via is None else from_torch(export, example, via=via)
        data_bytes = float_model.report.data
    if quantize:
        calib = np.ascontiguousarray(x[:calib_items], dtype=np.float32)
        try:
            data_bytes = _quantize(float_model, mode=quantize, calib=[c[None] for c in calib], progress=False).data
        finally:
            float_model.close()
        model = Model(data_bytes)
    else:
        model = float_model
    if dst is not None:
        from ._atomic import write_atomic
        write_atomic(dst, data_bytes)
    return result, model
