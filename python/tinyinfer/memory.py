"""Arena memory analysis: which tensors are alive at each op, bytes over the
op sequence, and what the peak is made of (`python -m tinyinfer inspect
--memory`, docs/monitoring.md). The offsets and lifetimes are the memory
planner's own, read from the session (tinf_session_plan_entry).

    tl = tinyinfer.memory.arena_timeline(model)      # or a Session
    print(tl)                                        # the text report
    tl.live_bytes[k], tl.alive(k), tl.peak_op
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from . import _lib
from .model import Model, OpDetail, Session

L = _lib.lib


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the arena: where the planner put it and when it lives
    (first_op..last_op inclusive; graph inputs and outputs live to the last op)."""
    index: int
    name: str
    dtype: str
    shape: Tuple[int, ...]
    buffer: int
    offset: int
    nbytes: int
    buffer_bytes: int
    first_op: int
    last_op: int
    producer: Optional[int]     # op index that writes it, None for graph inputs
    # (shape is the model's; nbytes and buffer_bytes are the session's, which differ for other input shapes)
    role: str                   # "input", "output" or "intermediate"


@dataclass
class ArenaTimeline:
    ops: List[OpDetail]
    tensors: List[PlannedTensor]
    arena_bytes: int
    unplanned_bytes: int
    live_bytes: np.ndarray      # per op: bytes of the distinct buffers alive at it
    top_bytes: np.ndarray       # per op: the highest arena byte in use at it (offset + buffer bytes)

    @property
    def peak_op(self) -> int:
        """The op at which the most bytes are alive (the first such op)."""
        return int(np.argmax(self.live_bytes)) if len(self.live_bytes) else 0

    @property
    def peak_bytes(self) -> int:
        return int(self.live_bytes.max()) if len(self.live_bytes) else 0

    def alive(self, op: int) -> List[PlannedTensor]:
        """Tensors alive at op `op`, largest first."""
        return sorted((t for t in self.tensors if t.first_op <= op <= t.last_op), key=lambda t: -t.buffer_bytes)

    def peak_by_op(self) -> List[Tuple[int, int]]:
        """The peak's bytes by the op that produced them: [(op index or -1
        for graph inputs, bytes)], largest first (a buffer shared in place
        counts once, for the op that wrote the tensor alive in it at the
        peak; if two of its tensors are alive then, the earlier one's)."""
        seen, by = set(), {}
        for t in sorted(self.alive(self.peak_op), key=lambda t: t.first_op):
            if t.buffer in seen:
                continue
            seen.add(t.buffer)
            k = -1 if t.producer is None else t.producer
            by[k] = by.get(k, 0) + t.buffer_bytes
        return sorted(by.items(), key=lambda kv: -kv[1])

    def to_dict(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "unplanned_bytes": self.unplanned_bytes,
                "peak_op": self.peak_op, "peak_bytes": self.peak_bytes,
                "live_bytes": [int(v) for v in self.live_bytes], "top_bytes": [int(v) for v in self.top_bytes],
                "ops": [{"index": o.index, "op": o.op} for o in self.ops],
                "tensors": [{**t.__dict__, "shape": list(t.shape)} for t in self.tensors]}

    def __str__(self) -> str:
        return format_timeline(self)


def arena_timeline(source) -> ArenaTimeline:
    """The arena timeline of a Session, or of a Model (a session at the
    file's shapes, made for this and closed)."""
    if isinstance(source, Model):
        s = Session(source, source.threads)
        try:
            return arena_timeline(s)
        finally:
            s.close()
    if not isinstance(source, Session):
        raise TypeError(f"arena_timeline takes a tinyinfer Model or Session, got {type(source).__name__}")
    if source._handle is None:
        from ._errors import InvalidStateError
        raise InvalidStateError("the session is closed")
    model = source.model
    ops = model.ops()
    details = model.tensors()
    n_ops = len(ops)
    producer = {}
    for o in ops:
        for t in o.outputs:
            producer.setdefault(t, o.index)
    e = _lib.PlanEntry()
    tensors = []
    out_names = {t.name for t in model.outputs}
    in_names = {t.name for t in model.inputs}
    for d in details:
        L.tinf_session_plan_entry(source._handle, d.index, ctypes.byref(e))
        if e.buffer < 0:
            continue
        last = min(int(e.last_op), max(n_ops - 1, 0))
        role = "input" if d.name in in_names and d.kind == "input" else (
            "output" if d.name in out_names else "intermediate")
        tensors.append(PlannedTensor(d.index, d.name, str(d.dtype), d.shape, int(e.buffer), int(e.offset),
                                     int(e.nbytes), int(e.buffer_bytes), int(e.first_op), last, producer.get(d.index),
                                     role))
    live = np.zeros(n_ops, np.int64)
    top = np.zeros(n_ops, np.int64)
    for k in range(n_ops):
        seen = set()
        for t in tensors:
            if t.first_op <= k <= t.last_op:
                top[k] = max(top[k], t.offset + t.buffer_bytes)
                if t.buffer not in seen:
                    seen.add(t.buffer)
                    live[k] += t.buffer_bytes
    return ArenaTimeline(ops, tensors, source.arena_bytes, source.unplanned_bytes, live, top)


def _bar(v: int, full: int, width: int = 30) -> str:
    n = 0 if full <= 0 else int(round(v / full * width))
    return "#" * n


def format_timeline(tl: ArenaTimeline, top_n: int = 12) -> str:
    lines = [f"arena {tl.arena_bytes:,} B (without reuse {tl.unplanned_bytes:,} B); "
             f"peak alive {tl.peak_bytes:,} B at op {tl.peak_op}"
             + (f" ({tl.ops[tl.peak_op].op})" if tl.ops else "")]
    lines.append(f"  {'op':>4} {'kind':18} {'alive B':>10} {'tensors':>7}  bytes alive (# = {tl.arena_bytes / 30:,.0f} B)")
    for k, o in enumerate(tl.ops):
        n = sum(1 for t in tl.tensors if t.first_op <= k <= t.last_op)
        mark = "  <- peak" if k == tl.peak_op else ""
        lines.append(f"  {k:>4} {o.op[:18]:18} {int(tl.live_bytes[k]):>10,} {n:>7}  "
                     f"{_bar(int(tl.live_bytes[k]), tl.arena_bytes)}{mark}")
    if tl.ops:
        alive = tl.alive(tl.peak_op)
        lines.append(f"at the peak (op {tl.peak_op}, {tl.ops[tl.peak_op].op}): {len(alive)} tensors alive")
        lines.append(f"  {'tensor':32} {'bytes':>10} {'share':>6} {'offset':>9} {'ops':>9}  produced by")
        peak = tl.peak_bytes or 1
        for t in alive[:top_n]:
            who = "graph input" if t.producer is None else f"op {t.producer} {tl.ops[t.producer].op}"
            lines.append(f"  {t.name[:32]:32} {t.buffer_bytes:>10,} {t.buffer_bytes / peak * 100:>5.1f}% "
                         f"{t.offset:>9,} {t.first_op:>4}-{t.last_op:<4}  {who}")
        if len(alive) > top_n:
            lines.append(f"  ... and {len(alive) - top_n} more")
        lines.append("  by producing op: " + ", ".join(
            f"{'inputs' if k < 0 else f'op {k} {tl.ops[k].op}'} {b:,} B" for k, b in tl.peak_by_op()[:6]))
    return "\n".join(lines)
