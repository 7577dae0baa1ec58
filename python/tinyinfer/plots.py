"""Plots of the monitoring figures (matplotlib: `pip install tinyinfer[plot]`):
latency histograms per variant, size vs accuracy vs latency, per-op time
bars, the arena timeline. Each `*_report` function writes a PNG, or a
self-contained HTML report (tables and images embedded as base64) when the
path ends in .html.
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974",
           "#64B5CD"]


def _plt():
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        from ._errors import InvalidArgumentError
        raise InvalidArgumentError("plots need matplotlib: pip install 'tinyinfer[plot]'") from None
    return plt


def _style(ax, title=None, xlabel=None, ylabel=None):
    if title:
        ax.set_title(title, fontsize=11, loc="left")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, axis="both", color="#e5e5e5", linewidth=0.7)
    ax.set_axisbelow(True)


# ---- single panels ---------------------------------------------------------------------------------------------------

def latency_histograms(ax, series: Sequence[Tuple[str, np.ndarray]]) -> None:
    """Overlaid step histograms of latency (us) per variant, on a log axis
    when they span a wide range; runs beyond 1.5x the largest 99th
    percentile (a busy machine's outliers) are counted in the last bin."""
    arrays = [np.asarray(a, np.float64) for _, a in series if len(a)]
    if not arrays:
        return
    lo = min(np.percentile(a, 0.5) for a in arrays)
    hi = max(np.percentile(a, 99) for a in arrays) * 1.5
    log = hi / max(lo, 1e-9) > 8
    bins = np.geomspace(max(lo, 1e-3), hi, 60) if log else np.linspace(lo, hi, 60)
    for i, (name, a) in enumerate(series):
        a = np.clip(np.asarray(a, np.float64), bins[0], bins[-1])
        c = PALETTE[i % len(PALETTE)]
        w = np.full(a.size, 100.0 / max(a.size, 1))
        ax.hist(a, bins=bins, histtype="stepfilled", alpha=0.18, color=c, weights=w)
        raw = np.asarray(series[i][1], np.float64)
        ax.hist(a, bins=bins, histtype="step", linewidth=1.6, color=c, weights=w,
                label=f"{name}  (p50 {np.median(raw):.1f}, p99 {np.percentile(raw, 99):.1f} us)")
        ax.axvline(np.median(raw), color=c, linewidth=0.8, linestyle="--")
    if log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0) if hi / lo < 30 else (1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    _style(ax, "Latency per run", "latency (us)" + (", log scale" if log else ""), "% of runs")
    ax.legend(fontsize=8, frameon=False)


def tradeoff(ax, records: List[dict]) -> None:
    """Size vs accuracy (or agreement) vs latency: x latency p50, y accuracy,
    marker area proportional to the file size."""
    key = "accuracy" if any(r.get("accuracy") is not None for r in records) else "agreement"
    sizes = [r["file_bytes"] for r in records]
    smax = max(sizes) or 1
    for i, r in enumerate(records):
        y = r.get(key)
        if y is None or r.get("p50_us") is None:
            continue
        c = PALETTE[i % len(PALETTE)]
        ax.scatter([r["p50_us"]], [y], s=40 + 900 * r["file_bytes"] / smax, color=c, alpha=0.55, edgecolor=c,
                   linewidth=1.5, label=f"{r['name']}  {r['file_bytes'] / 1e3:,.0f} KB")
    leg = ax.legend(fontsize=8, frameon=False, loc="lower right", markerscale=0.4, labelspacing=0.9)
    for h in leg.legend_handles:
        h.set_sizes([40])
    ys = [r.get(key) for r in records if r.get(key) is not None]
    if ys:
        span = max(ys) - min(ys)
        pad = max(span * 0.25, 0.005)
        ax.set_ylim(min(ys) - pad, min(1.0 + pad / 2, max(ys) + pad))
    xs = [r["p50_us"] for r in records if r.get("p50_us") is not None]
    if xs:
        ax.set_xlim(0, max(xs) * 1.35)
    _style(ax, "Size vs " + key + " vs latency (marker area: file size)", "latency p50 (us)", key)


def bars(ax, labels: Sequence[str], values: Sequence[Optional[float]], title: str, xlabel: str,
         fmt="{:.1f}") -> None:
    """Horizontal bars with their values printed ("n/a" for None)."""
    y = np.arange(len(labels))
    vals = [0.0 if v is None else v for v in values]
    ax.barh(y, vals, color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))], height=0.6)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    vmax = max(vals) if len(vals) else 1
    for i, v in enumerate(values):
        ax.text((v or 0) + vmax * 0.01, i, "n/a" if v is None else fmt.format(v), va="center", fontsize=8,
                color="#888888" if v is None else "#222222")
    ax.set_xlim(0, vmax * 1.22 if vmax > 0 else 1)
    if vmax >= 10000:
        from matplotlib.ticker import FuncFormatter
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
    _style(ax, title, xlabel)
    ax.grid(False, axis="y")


def op_times(ax, prof: List[Tuple[str, float]], top: int = 20) -> None:
    """Per-op time bars (the `top` slowest ops, in us, with their share)."""
    total = sum(t for _, t in prof) or 1.0
    order = sorted(range(len(prof)), key=lambda i: -prof[i][1])[:top]
    labels = [f"#{i} {prof[i][0]}" for i in order]
    vals = [prof[i][1] * 1e6 for i in order]
    y = np.arange(len(order))
    ax.barh(y, vals, color=PALETTE[0], height=0.65)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    vmax = max(vals) if vals else 1
    for k, i in enumerate(order):
        ax.text(vals[k] + vmax * 0.01, k, f"{vals[k]:.1f} us  {prof[i][1] / total * 100:.0f}%", va="center",
                fontsize=8)
    ax.set_xlim(0, vmax * 1.3)
    more = f" (the {len(order)} slowest of {len(prof)})" if len(prof) > len(order) else ""
    _style(ax, f"Time per op, median of runs{more}; total {total * 1e6:.1f} us", "us")
    ax.grid(False, axis="y")


def arena_panels(ax_live, ax_layout, tl, label_top: int = 6) -> None:
    """The arena timeline: bytes alive per op (with the arena size and the
    peak) above, the planner's layout below (each tensor a box from its first
    to its last op at its offset)."""
    n = len(tl.ops)
    k = np.arange(n)
    ax_live.fill_between(k, tl.live_bytes / 1e3, step="mid", color=PALETTE[0], alpha=0.35)
    ax_live.step(k, tl.live_bytes / 1e3, where="mid", color=PALETTE[0], linewidth=1.4, label="bytes alive")
    ax_live.axhline(tl.arena_bytes / 1e3, color=PALETTE[3], linestyle="--", linewidth=1,
                    label=f"arena {tl.arena_bytes / 1e3:,.1f} KB")
    p = tl.peak_op
    ax_live.annotate(f"peak {tl.peak_bytes / 1e3:,.1f} KB\nop {p} {tl.ops[p].op}" if n else "", (p, tl.peak_bytes / 1e3),
                     textcoords="offset points", xytext=(10, -24), fontsize=8,
                     arrowprops=dict(arrowstyle="-", color="#555555", linewidth=0.8))
    ax_live.set_ylim(0, max(tl.arena_bytes, 1) / 1e3 * 1.18)
    _style(ax_live, f"Arena timeline: {n} ops, without reuse {tl.unplanned_bytes / 1e3:,.1f} KB", None, "KB alive")
    ax_live.legend(fontsize=8, frameon=True, framealpha=0.9, edgecolor="none", loc="center right")
    from matplotlib.patches import Rectangle
    biggest = {t.buffer for t in sorted(tl.alive(p), key=lambda t: -t.buffer_bytes)[:label_top]} if n else set()
    for t in tl.tensors:
        c = PALETTE[t.buffer % len(PALETTE)]
        ax_layout.add_patch(Rectangle((t.first_op - 0.45, t.offset / 1e3), t.last_op - t.first_op + 0.9,
                                      t.buffer_bytes / 1e3, facecolor=c, edgecolor="white", linewidth=0.5,
                                      alpha=0.9 if t.buffer in biggest else 0.55))
    labelled = set()
    for t in sorted(tl.tensors, key=lambda t: -t.buffer_bytes):
        if t.buffer in biggest and t.buffer not in labelled and t.buffer_bytes / max(tl.arena_bytes, 1) > 0.06:
            labelled.add(t.buffer)
            name = t.name if len(t.name) <= 28 else "..." + t.name[-25:]
            ax_layout.text(t.first_op, (t.offset + t.buffer_bytes / 2) / 1e3, f" {name}", fontsize=7, va="center",
                           clip_on=True)
    ax_layout.set_xlim(-0.6, max(n - 0.4, 0.6))
    ax_layout.set_ylim(0, max(tl.arena_bytes, 1) / 1e3)
    ax_layout.axvline(p, color="#555555", linewidth=0.8, linestyle=":")
    _style(ax_layout, "Layout chosen by the planner (a box per tensor: its ops x its bytes)", "op index",
           "arena offset (KB)")


# ---- figures and reports ---------------------------------------------------------------------------------------------

def _save(fig, path: str) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _html(title: str, sections: List[Tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
            "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 9px;border-bottom:1px solid #ddd;"
            "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
            "pre{font-size:12px;background:#f6f6f6;padding:8px}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>")


def _img(fig) -> str:
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(_png_bytes(fig)).decode()}'>"


def _table(rows: List[List[str]], head: List[str]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def compare_figures(records: List[dict]):
    """(latency and tradeoff figure, resources figure) of a comparison."""
    plt = _plt()
    fig1, (a, b) = plt.subplots(1, 2, figsize=(13, 4.6))
    latency_histograms(a, [(r["name"], r.get("latencies_us") or []) for r in records])
    tradeoff(b, records)
    fig1.tight_layout()
    fig2, axes = plt.subplots(1, 3, figsize=(13, 0.9 + 0.42 * len(records)))
    names = [r["name"] for r in records]
    bars(axes[0], names, [r["throughput_per_s"] or 0 for r in records], "Throughput", "inferences / s", "{:,.0f}")
    bars(axes[1], names, [None if r["library_bytes"] is None else r["library_bytes"] / 1e6 for r in records],
         "Library memory (weights, packed, arena)", "MB", "{:.2f}")
    est = any((r.get("energy_source") or "").startswith("estimate") for r in records)
    bars(axes[2], names, [None if r["energy_j_per_inference"] is None else r["energy_j_per_inference"] * 1e3 for r in records],
         "Energy per inference" + (" (estimate)" if est else ""), "mJ", "{:.4f}")
    for ax in axes[1:]:
        ax.set_yticks(ax.get_yticks(), [""] * len(names))
    fig2.tight_layout()
    return fig1, fig2


def compare_report(records: List[dict], path: str) -> None:
    """Writes a comparison's plots: PNG (one image of all panels) or HTML."""
    plt = _plt()
    if path.lower().endswith((".html", ".htm")):
        from .compare import compare_table
        f1, f2 = compare_figures(records)
        rows = [[r["name"], r["runtime"], f"{r['file_bytes'] / 1e3:,.1f}", _fmt(r["accuracy"], ".4f"),
                 _fmt(r["agreement"], ".4f"), _fmt(r["p50_us"], ".1f"), _fmt(r["p99_us"], ".1f"),
                 _fmt(r["throughput_per_s"], ",.0f"), _fmt(r["cpu_percent"], ".0f"),
                 _fmt(None if r["rss_added_bytes"] is None else r["rss_added_bytes"] / 1e6, ".2f"),
                 _fmt(None if r["library_bytes"] is None else r["library_bytes"] / 1e6, ".2f"),
                 _fmt(None if r["energy_j_per_inference"] is None else r["energy_j_per_inference"] * 1e3, ".4f"),
                 r["energy_source"] or "-"] for r in records]
        head = ["variant", "runtime", "file KB", "accuracy", "agreement", "p50 us", "p99 us", "inf/s", "CPU %",
                "+RSS MB", "library MB", "mJ/inference", "energy source"]
        notes = compare_table(records).split("\n")
        notes = [n for n in notes if n.startswith("(")]
        with open(path, "w") as f:
            f.write(_html("tinyinfer compare", [
                ("Variants", _table(rows, head) + "".join(f"<p>{html.escape(n)}</p>" for n in notes)),
                ("Latency, size and accuracy", _img(f1)), ("Resources", _img(f2))]))
        plt.close(f1)
        plt.close(f2)
        return
    fig = plt.figure(figsize=(13, 5.2 + 0.42 * len(records)))
    gs = fig.add_gridspec(2, 3, height_ratios=[4.6, 0.9 + 0.42 * len(records)])
    latency_histograms(fig.add_subplot(gs[0, :2]), [(r["name"], r.get("latencies_us") or []) for r in records])
    tradeoff(fig.add_subplot(gs[0, 2]), records)
    names = [r["name"] for r in records]
    bars(fig.add_subplot(gs[1, 0]), names, [r["throughput_per_s"] or 0 for r in records], "Throughput",
         "inferences / s", "{:,.0f}")
    ax = fig.add_subplot(gs[1, 1])
    bars(ax, names, [None if r["library_bytes"] is None else r["library_bytes"] / 1e6 for r in records], "Library memory", "MB", "{:.2f}")
    ax.set_yticks(ax.get_yticks(), [""] * len(names))
    ax = fig.add_subplot(gs[1, 2])
    est = any((r.get("energy_source") or "").startswith("estimate") for r in records)
    bars(ax, names, [None if r["energy_j_per_inference"] is None else r["energy_j_per_inference"] * 1e3 for r in records],
         "Energy / inference" + (" (estimate)" if est else ""), "mJ", "{:.4f}")
    ax.set_yticks(ax.get_yticks(), [""] * len(names))
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def arena_figure(tl, title: Optional[str] = None):
    plt = _plt()
    fig, (a, b) = plt.subplots(2, 1, figsize=(11, 6.8), sharex=True, gridspec_kw={"height_ratios": [1, 1.4]})
    arena_panels(a, b, tl)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=12)
    fig.tight_layout()
    return fig


def arena_timeline(tl, path: str, title: Optional[str] = None) -> None:
    """Writes the arena timeline of `tl` (tinyinfer.memory.ArenaTimeline): PNG or HTML."""
    plt = _plt()
    fig = arena_figure(tl, title)
    if path.lower().endswith((".html", ".htm")):
        with open(path, "w") as f:
            f.write(_html(f"tinyinfer arena timeline{': ' + title if title else ''}",
                          [("Arena timeline", _img(fig)), ("Text", f"<pre>{html.escape(str(tl))}</pre>")]))
    else:
        _save(fig, path)
    plt.close(fig)


def bench_report(model: str, latencies_us, prof, path: str) -> None:
    """bench --plot: the latency histogram, and per-op bars with --profile."""
    plt = _plt()
    name = os.path.basename(model)
    panels = 2 if prof else 1
    h = 4.2 if not prof else max(4.2, 0.9 + 0.3 * min(len(prof), 20))
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, h), squeeze=False)
    latency_histograms(axes[0][0], [(name, latencies_us)])
    if prof:
        op_times(axes[0][1], prof)
    fig.tight_layout()
    if path.lower().endswith((".html", ".htm")):
        with open(path, "w") as f:
            f.write(_html(f"tinyinfer bench: {name}", [("Latency and ops", _img(fig))]))
    else:
        _save(fig, path)
    plt.close(fig)
