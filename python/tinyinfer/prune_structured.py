"""Structured (channel) pruning: removes whole output channels of
FullyConnected and Conv2D layers, and the matching input channels of the
layers that read them, so the pruned model is smaller and DENSE
(docs/pruning.md, "Structured pruning").

    r = tinyinfer.prune("cnn.tinf", "cnn-s50.tinf", method="structured", sparsity=0.5)

Why Python: it is graph surgery (which tensors share a channel axis, which
constants to slice), no arithmetic worth a kernel. The graph is the one the
library loads, after its passes (BatchNorm folded into the convolutions,
activations fused): `tinf_pruner_finish` writes it back as a file, this
module reads that file (`_read_tinf`, the layout of docs/format.md), slices
the constants and rewrites the graph with GraphBuilder, whose writer is the
library's.

Channel groups ("spaces"): every tensor's last (channel) axis belongs to a
space. A FullyConnected / Conv2D (groups 1) output starts a new space (the
layer is its producer); elementwise ops, pooling, Pad without channel
padding, reductions over other axes and depthwise convolutions (multiplier
1) keep their input's space; a binary op with two activations of the same
channel count merges their spaces (a residual Add: both branches pruned
identically); a Concat on the channel axis and a flattening Reshape give
derived spaces (their mask is the parts' masks concatenated / tiled). A
space that reaches a graph input or output, or an op that mixes channels
(Softmax, LayerNorm, Transpose, MatMul, grouped convolution, ...) is not
pruned, and its producers are reported as skipped.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import _lib
from ._dtypes import TO_NUMPY
from ._errors import InvalidArgumentError, ModelFormatError

CRITERIA = ("l2", "l1")

# Ops whose output has its (first) input's channels, one for one.
_PASS = frozenset({"Relu", "Relu6", "LeakyRelu", "HardSwish", "Logistic", "Tanh", "Gelu", "Exp", "Log", "Sqrt",
                   "Rsqrt", "Floor", "Ceil", "Round", "Erf", "MaxPool2D", "AveragePool2D", "Cast"})
_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Maximum", "Minimum", "PRelu"})
_REDUCE = frozenset({"Mean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd"})


# -- reading the .tinf (docs/format.md) ----------------------------------------------

class _Reader:
    def __init__(self, data: bytes, pos: int):
        self.d, self.p = data, pos

    def take(self, fmt: str):
        v = struct.unpack_from("<" + fmt, self.d, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]

    def string(self) -> str:
        n = self.take("I")
        s = self.d[self.p:self.p + n].decode("utf-8", "replace")
        self.p += n
        return s


@dataclass
class _T:
    name: str
    dtype: int
    shape: Optional[Tuple[int, ...]]
    data: Optional[np.ndarray] = None
    quant: Optional[tuple] = None


@dataclass
class _Op:
    op: str
    inputs: List[int]
    outputs: List[int]
    attrs: Dict[str, tuple]          # name -> (type code, value)


def _read_tinf(data: bytes):
    """(metadata, tensors, graph inputs, graph outputs, ops) of a .tinf the
    library wrote (it was validated on load)."""
    try:
        magic, major, minor, hsize, flags, body, bsize, doff, dsize, fsize = struct.unpack_from(
            "<4sHHIIQQQQQ", data, 0)
        if magic != b"TINF" or major != 1:
            raise ModelFormatError("not a .tinf 1.x file")
        r = _Reader(data, body)
        meta = {}
        for _ in range(r.take("I")):
            k = r.string()
            meta[k] = r.string()
        tensors = []
        for _ in range(r.take("I")):
            name = r.string()
            dtype, tflags, rank, _res = r.take("BBBB")
            shape = tuple(r.take("q") for _ in range(rank)) if tflags & 2 else None
            quant = None
            if r.take("B") == 1:
                axis, n = r.take("iI")
                scales = np.frombuffer(data, np.float32, n, r.p).copy()
                r.p += 4 * n
                zps = np.frombuffer(data, np.int32, n, r.p).copy()
                r.p += 4 * n
                quant = (axis, scales, zps)
            arr = None
            if tflags & 1:
                off, size = r.take("QQ")
                entries = None
                if tflags & 4:
                    _enc, _r1, _r2, entries = r.take("BBHQ")
                npdt = TO_NUMPY[dtype]
                raw = data[doff + off: doff + off + size]
                count = int(np.prod(shape, dtype=np.int64))
                if entries is None:
                    arr = np.frombuffer(raw, npdt, count).reshape(shape).copy()
                else:
                    arr = _expand_sparse(raw, npdt, shape, entries)
            tensors.append(_T(name, dtype, shape, arr, quant))
        g_in = [r.take("I") for _ in range(r.take("I"))]
        g_out = [r.take("I") for _ in range(r.take("I"))]
        op_names = {v: k for k, v in _lib.OP_IDS.items()}
        attr_names = {v: k for k, v in _lib.ATTR_IDS.items()}
        ops = []
        for _ in range(r.take("I")):
            code, nattr = r.take("HH")
            ins = [r.take("i") for _ in range(r.take("I"))]
            outs = [r.take("I") for _ in range(r.take("I"))]
            attrs = {}
            for _ in range(nattr):
                key, typ, _res = r.take("HBB")
                if typ == 1:
                    v = r.take("q")
                elif typ == 2:
                    v = r.take("f")
                elif typ == 3:
                    v = [r.take("q") for _ in range(r.take("I"))]
                elif typ == 4:
                    v = [r.take("f") for _ in range(r.take("I"))]
                else:
                    v = r.string()
                attrs[attr_names.get(key, str(key))] = (typ, v)
            ops.append(_Op(op_names.get(code, str(code)), ins, outs, attrs))
        return meta, tensors, g_in, g_out, ops
    except struct.error as e:
        raise ModelFormatError(f"structured pruning could not read the model: {e}") from None


def _expand_sparse(raw: bytes, npdt, shape, entries: int) -> np.ndarray:
    rows = shape[0]
    cols = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    counts = np.frombuffer(raw, np.uint32, rows, 0).astype(np.int64)
    deltas = np.frombuffer(raw, np.uint8, entries, 4 * rows).astype(np.int64)
    esize = np.dtype(npdt).itemsize
    voff = 4 * rows + entries
    voff += (-voff) % esize
    values = np.frombuffer(raw, npdt, entries, voff)
    out = np.zeros((rows, cols), npdt)
    row_of = np.repeat(np.arange(rows), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # column = cumulative delta within the row, minus one
    cum = np.cumsum(deltas)
    base = np.repeat(cum[starts - 1] * (starts > 0) if entries else np.zeros(rows, np.int64), counts)
    col = cum - base - 1
    out[row_of, col] = values
    return out.reshape(shape)


# -- channel spaces ---------------------------------------------------------------------

class _Spaces:
    """Union-find over channel spaces, each with its size, producers (op
    index, weight tensor, bias tensor), the constants to slice with its
    mask (tensor, axis), why it cannot be pruned, and for a derived space
    its parts."""

    def __init__(self):
        self.parent: List[int] = []
        self.size: List[int] = []
        self.producers: List[list] = []
        self.slices: List[list] = []
        self.blocked: List[list] = []
        self.derived: List[Optional[tuple]] = []
        self.depthwise: List[bool] = []

    def new(self, size: int, why: Optional[str] = None, derived=None) -> int:
        i = len(self.parent)
        self.parent.append(i)
        self.size.append(int(size))
        self.producers.append([])
        self.slices.append([])
        self.blocked.append([why] if why else [])
        self.derived.append(derived)
        self.depthwise.append(False)
        return i

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def block(self, i: int, why: str) -> None:
        r = self.find(i)
        if why not in self.blocked[r]:
            self.blocked[r].append(why)
        d = self.derived[r]
        if d is not None:
            for part in _parts(d):
                self.block(part, why)

    def union(self, a: int, b: int, why: str) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if self.size[a] != self.size[b]:
            self.block(a, why)
            self.block(b, why)
            return a
        if self.derived[a] is not None or self.derived[b] is not None:
            self.block(a, why + " (a concatenated or flattened channel axis)")
            self.block(b, why + " (a concatenated or flattened channel axis)")
        self.parent[b] = a
        self.producers[a] += self.producers[b]
        self.slices[a] += self.slices[b]
        self.blocked[a] += [w for w in self.blocked[b] if w not in self.blocked[a]]
        if self.derived[a] is None:
            self.derived[a] = self.derived[b]
        self.depthwise[a] = self.depthwise[a] or self.depthwise[b]
        return a


def _parts(d) -> List[int]:
    return [s for s, _ in d[1]] if d[0] == "concat" else [d[1]]


def _analyse(tensors, g_in, g_out, ops):
    S = _Spaces()
    space: Dict[int, int] = {}
    const_axis: Dict[Tuple[int, int], int] = {}

    def const(t):
        return t >= 0 and tensors[t].data is not None

    def chans(t):
        sh = tensors[t].shape
        return sh[-1] if sh else 1

    def sp(t):
        """The space of tensor t's last axis (a fresh blocked one for a constant used as data)."""
        if t not in space:
            space[t] = S.new(chans(t), "a constant used as an activation" if const(t) else "unknown producer")
        return space[t]

    def slicer(t, axis, s, name):
        """Constant t is sliced along `axis` by space s (a constant shared by two spaces ties them)."""
        a = axis % len(tensors[t].shape)
        key = (t, a)
        if key in const_axis:
            S.union(const_axis[key], s, f"constant '{tensors[t].name}' shared by {name}")
        else:
            const_axis[key] = s
            S.slices[S.find(s)].append((t, a))

    for t in g_in:
        space[t] = S.new(chans(t), "graph input")
    for k, o in enumerate(ops):
        name = f"{o.op} '{tensors[o.outputs[0]].name}'"
        acts = [t for t in o.inputs if t >= 0 and not const(t)]

        def block_all(why):
            for t in acts:
                S.block(sp(t), why)
            for t in o.outputs:
                space[t] = S.new(chans(t), why)

        if o.op in ("FullyConnected", "Conv2D"):
            x = o.inputs[0]
            w = o.inputs[1] if len(o.inputs) > 1 else -1
            b = o.inputs[2] if len(o.inputs) > 2 else -1
            groups = o.attrs.get("groups", (1, 1))[1]
            if not const(w) or tensors[w].data.dtype != np.float32 or groups != 1 or const(x):
                why = f"{name}: " + ("grouped convolution" if groups != 1 else "weights are not float32 constants")
                block_all(why)
                continue
            if len(tensors[x].shape) >= 1 and tensors[x].shape[-1] == tensors[w].shape[-1]:
                slicer(w, -1, sp(x), name)
            else:
                S.block(sp(x), f"{name}: input channels do not match the weights")
            out = S.new(tensors[w].shape[0])
            S.producers[out].append((k, w, b if const(b) else -1))
            slicer(w, 0, out, name)
            if const(b):
                slicer(b, 0, out, name)
            space[o.outputs[0]] = out
        elif o.op == "DepthwiseConv2D":
            x, w = o.inputs[0], o.inputs[1]
            b = o.inputs[2] if len(o.inputs) > 2 else -1
            if o.attrs.get("depth_multiplier", (1, 1))[1] != 1 or not const(w) or const(x):
                block_all(f"{name}: depth multiplier > 1 or weights not constant")
                continue
            s = sp(x)
            S.depthwise[S.find(s)] = True
            slicer(w, -1, s, name)
            if const(b):
                slicer(b, 0, s, name)
            space[o.outputs[0]] = s
        elif o.op in _PASS and acts:
            space[o.outputs[0]] = sp(o.inputs[0])
        elif o.op == "Pad" and acts:
            pads = o.attrs.get("pads", (3, []))[1]
            if len(pads) >= 2 and pads[-1] == 0 and pads[-2] == 0:
                space[o.outputs[0]] = sp(o.inputs[0])
            else:
                block_all(f"{name}: pads the channel axis")
        elif o.op in _BINARY:
            y = o.outputs[0]
            c = chans(y)
            s_out = None
            ok = True
            for t in o.inputs:
                if t < 0:
                    continue
                sh = tensors[t].shape or ()
                last = sh[-1] if sh else 1
                if const(t):
                    continue
                if last == c and len(sh) == len(tensors[y].shape or ()):
                    s_out = sp(t) if s_out is None else S.union(s_out, sp(t), f"{name} (residual branches)")
                elif last != 1:
                    ok = False
            if s_out is None or not ok:
                block_all(f"{name}: broadcasts across channels")
                continue
            for t in o.inputs:
                if t >= 0 and const(t):
                    sh = tensors[t].shape
                    if sh and sh[-1] == c and c > 1:
                        slicer(t, -1, s_out, name)
                    elif sh and sh[-1] != 1:
                        S.block(s_out, f"{name}: constant operand does not broadcast per channel")
            space[y] = s_out
        elif o.op in _REDUCE and acts and tensors[o.inputs[0]].shape:
            rank = len(tensors[o.inputs[0]].shape)
            axes = [a % rank for a in o.attrs.get("axes", (3, []))[1]]
            if rank - 1 in axes:
                block_all(f"{name}: reduces the channel axis")
            else:
                space[o.outputs[0]] = sp(o.inputs[0])
        elif o.op == "Concat" and acts and len(acts) == len(o.inputs) and tensors[o.outputs[0]].shape:
            rank = len(tensors[o.outputs[0]].shape)
            axis = o.attrs.get("axis", (1, 0))[1] % rank
            if axis == rank - 1:
                parts = [(sp(t), chans(t)) for t in o.inputs]
                space[o.outputs[0]] = S.new(chans(o.outputs[0]), derived=("concat", parts))
            else:
                s = sp(o.inputs[0])
                for t in o.inputs[1:]:
                    s = S.union(s, sp(t), f"{name} (concatenated along a non-channel axis)")
                space[o.outputs[0]] = s
        elif o.op == "Reshape" and acts:
            x, y = o.inputs[0], o.outputs[0]
            xs, ys = tensors[x].shape or (), tensors[y].shape or ()
            if not xs or not ys:
                block_all(f"{name}: reshapes a scalar")
            elif xs[-1] == ys[-1] and int(np.prod(xs[:-1])) == int(np.prod(ys[:-1])):
                space[y] = sp(x)
            elif len(ys) == 2 and len(xs) >= 2 and ys[0] == xs[0] and ys[1] == int(np.prod(xs[1:])):
                space[y] = S.new(ys[1], derived=("tile", sp(x), int(np.prod(xs[1:-1]))))
            else:
                block_all(f"{name}: mixes the channel axis")
        else:
            block_all(f"{name}: not a channel-wise op for structured pruning")
    for t in g_out:
        S.block(sp(t), f"graph output '{tensors[t].name}'")
    return S, space


def _mask(S: _Spaces, s: int, keep: Dict[int, np.ndarray]) -> np.ndarray:
    r = S.find(s)
    d = S.derived[r]
    if d is None:
        return keep.get(r, np.ones(S.size[r], bool))
    if d[0] == "concat":
        return np.concatenate([_mask(S, p, keep) for p, _ in d[1]])
    return np.tile(_mask(S, d[1], keep), d[2])


# -- the result -----------------------------------------------------------------------

@dataclass
class ChannelLayer:
    name: str
    channels: int
    kept: int


@dataclass
class StructuredResult:
    """What structured pruning did; str() is the report."""
    target: float
    criterion: str
    src_bytes: int
    dst_bytes: int
    params_before: int
    params_after: int
    layers: List[ChannelLayer] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    check: Optional[object] = None
    data: bytes = field(repr=False, default=b"")
    dst: Optional[str] = None
    method: str = "structured"

    @property
    def sparsity(self) -> float:
        """Fraction of the prunable layers' output channels removed."""
        total = sum(l.channels for l in self.layers)
        return 1 - sum(l.kept for l in self.layers) / total if total else 0.0

    def __str__(self) -> str:
        lines = [f"pruned: structured {self.target:.0%} of the channels ({self.criterion})",
                 f"  channels removed from the pruned layers: {self.sparsity:.1%}",
                 f"  weights: {self.params_before:,} -> {self.params_after:,}",
                 f"  size: {self.src_bytes:,} -> {self.dst_bytes:,} bytes"]
        if self.layers:
            w = max(12, min(48, max(len(l.name) for l in self.layers)))
            lines.append(f"  {'layer':{w}} {'channels':>8} {'kept':>6}")
            for l in self.layers:
                lines.append(f"  {l.name[-w:]:{w}} {l.channels:>8} {l.kept:>6}")
        if self.skipped:
            lines.append(f"  skipped ({len(self.skipped)}):")
            lines += [f"    {s}" for s in self.skipped]
        from .prune import report_tail
        return "\n".join(lines + report_tail(self.check, self.dst))


# -- scores and the rewrite -----------------------------------------------------------

def _weight_scores(S, r, tensors, criterion) -> np.ndarray:
    total = np.zeros(S.size[r])
    for _k, w, _b in S.producers[r]:
        a = np.abs(tensors[w].data.reshape(tensors[w].shape[0], -1).astype(np.float64))
        n = a.sum(1) if criterion == "l1" else np.sqrt((a * a).sum(1))
        total += n / max(n.mean(), 1e-30)      # each producer weighs the same in a residual group
    return total


def _activation_scores(S, r, readers, norms_of, tensors) -> Optional[np.ndarray]:
    """Each channel's contribution to the layers that read it, over the
    calibration data: ||x_c|| (its activation norm) times ||W[:, c]|| (the
    reader's weights on it), summed over the readers (and over the positions
    of a flattened input)."""
    total = np.zeros(S.size[r])
    found = False
    for layer, how, w in readers.get(r, []):
        x = norms_of(layer)
        wt = tensors[w].data
        col = np.sqrt((wt.astype(np.float64).reshape(-1, wt.shape[-1]) ** 2).sum(0))
        if x.size != col.size:
            continue
        if how is None and x.size == S.size[r]:
            total += x * col
        elif how is not None and x.size == how * S.size[r]:
            total += (x * col).reshape(how, S.size[r]).sum(0)
        else:
            continue
        found = True
    return total if found else None


def kept_channels(c: int, sparsity: float, multiple: int = 1) -> int:
    """Channels a group of c keeps: c - floor(c * sparsity), at least 1; with
    multiple > 1 and c a multiple of it, rounded to the nearest multiple (at least one)."""
    keep = c - min(int(np.floor(c * sparsity)), c - 1)
    if multiple > 1 and c % multiple == 0:
        keep = max(multiple, int(np.floor(keep / multiple + 0.5)) * multiple)
    return keep


def prune_structured(parent, sets, labels, sparsity: float, criterion: str, use_activations: bool,
                     src_bytes: int, validate: bool = True, channel_multiple: Optional[int] = None
                     ) -> StructuredResult:
    from .prune import Pruner, _check_against_parent

    with Pruner(parent) as p:
        if use_activations:
            for xs in sets:
                p.observe(xs)
        flat = p.finish()
        layer_of_op = {info["op_index"]: info["layer"] for info in p.layers()}
        norms_cache: Dict[int, np.ndarray] = {}

        def norms_of(layer):
            if layer not in norms_cache:
                norms_cache[layer] = p.input_norms(layer)
            return norms_cache[layer]

        meta, tensors, g_in, g_out, ops = _read_tinf(flat)
        S, space = _analyse(tensors, g_in, g_out, ops)

        # which pruner layer reads each space (for activation statistics)
        readers: Dict[int, list] = {}
        for k, o in enumerate(ops):
            if k in layer_of_op and o.inputs[0] in space:
                r = S.find(space[o.inputs[0]])
                d = S.derived[r]
                if d is None:
                    readers.setdefault(r, []).append((layer_of_op[k], None, o.inputs[1]))
                elif d[0] == "tile":
                    readers.setdefault(S.find(d[1]), []).append((layer_of_op[k], d[2], o.inputs[1]))

        keep: Dict[int, np.ndarray] = {}
        layers: List[ChannelLayer] = []
        skipped: List[str] = []
        roots = sorted({S.find(i) for i in range(len(S.parent))})
        for r in roots:
            if not S.producers[r]:
                continue
            names = [tensors[ops[k].outputs[0]].name for k, _, _ in S.producers[r]]
            if S.blocked[r]:
                skipped += [f"{n}: {'; '.join(S.blocked[r])}" for n in names]
                continue
            c = S.size[r]
            multiple = channel_multiple if channel_multiple is not None else (8 if S.depthwise[r] else 1)
            drop = c - kept_channels(c, sparsity, multiple)
            score = _activation_scores(S, r, readers, norms_of, tensors) if use_activations else None
            if score is None:
                score = _weight_scores(S, r, tensors, criterion)
            m = np.ones(c, bool)
            if drop > 0:
                m[np.argsort(score, kind="stable")[:drop]] = False
            keep[r] = m
            for n in names:
                layers.append(ChannelLayer(n, c, int(m.sum())))

    # slice the constants
    new_data = {i: t.data for i, t in enumerate(tensors) if t.data is not None}
    params_before = sum(int(tensors[w].data.size) for r in roots for _, w, _ in S.producers[r])
    for r in roots:
        m = _mask(S, r, keep)
        if m.all():
            continue
        for t, axis in S.slices[r]:
            new_data[t] = np.compress(m, new_data[t], axis=axis)
    params_after = sum(int(new_data[w].size) for r in roots for _, w, _ in S.producers[r])

    # rewrite the graph
    def shrink_reshape(k, o, attrs):
        if o.op == "Reshape" and "shape" in attrs and o.outputs[0] in space:
            shp = attrs["shape"].copy()
            if shp.size and shp[-1] != -1:
                shp[-1] = int(_mask(S, space[o.outputs[0]], keep).sum())
            attrs["shape"] = shp

    data = write_graph(meta, tensors, g_in, g_out, ops, new_data,
                       {"pruned": f"structured {sparsity:g} ({criterion})"}, shrink_reshape)

    check = _check_against_parent(parent, data, sets, labels) if validate else None
    return StructuredResult(float(sparsity), "activations" if use_activations else criterion, src_bytes, len(data),
                            params_before, params_after, layers, skipped, check, data)


def write_graph(meta, tensors, g_in, g_out, ops, data, metadata=None, fix_attrs=None) -> bytes:
    """A .tinf of the graph read by _read_tinf (meta, tensors, g_in, g_out, ops), with the constants of `data`
    (tensor index -> array; a constant absent from it keeps its own) and `metadata` added; `fix_attrs(k, op,
    attrs)` may change an op's attributes (numpy arrays) in place. Written by GraphBuilder (the library's
    writer). Also used by tinyinfer.to_torch's TinfModule.to_tinf."""
    from .builder import GraphBuilder
    b = GraphBuilder(meta.get("name", "model"), producer=meta.get("producer", "tinyinfer"))
    try:
        for k, v in meta.items():
            if k not in ("name", "producer"):
                b.metadata(k, v)
        for k, v in (metadata or {}).items():
            b.metadata(k, v)
        used = set()

        def unique(name):
            n, i = name, 1
            while n in used:
                n, i = f"{name}_{i}", i + 1
            used.add(n)
            return n

        handle: Dict[int, object] = {}
        for t in g_in:
            ti = tensors[t]
            handle[t] = b.input(unique(ti.name), ti.shape, TO_NUMPY[ti.dtype])

        def tensor(t):
            if t < 0:
                return None
            if t not in handle:
                ti = tensors[t]
                handle[t] = b.const(unique(ti.name), data[t] if t in data else ti.data)
                if ti.quant is not None:
                    axis, sc, zp = ti.quant
                    b.quantization(handle[t], sc, zp, None if axis < 0 else axis)
            return handle[t]

        for k, o in enumerate(ops):
            ins = [tensor(t) for t in o.inputs]
            attrs = {}
            for key, (typ, v) in o.attrs.items():
                if typ == 3:
                    v = np.asarray(v, np.int64)
                elif typ == 4:
                    v = np.asarray(v, np.float32)
                attrs[key] = v
            if fix_attrs is not None:
                fix_attrs(k, o, attrs)
            floats_empty = {key: v for key, v in attrs.items() if isinstance(v, np.ndarray) and v.size == 0
                            and v.dtype == np.float32}
            for key in floats_empty:
                del attrs[key]
            outs = b.op(o.op, *ins, outputs=[unique(tensors[t].name) for t in o.outputs], **attrs)
            for key in floats_empty:
                _lib.lib.tinf_builder_set_attr_floats(b._h, k, _lib.ATTR_IDS[key], 0, None)
            for t, h in zip(o.outputs, outs):
                handle[t] = h
        b.output(*[tensor(t) for t in g_out])
        return b.to_bytes()
    finally:
        b.close()
