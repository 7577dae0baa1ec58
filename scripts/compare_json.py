#!/usr/bin/env python3
"""Compares two `--json` result files of tinyinfer (bench, compare, inspect
--memory; schema in docs/monitoring.md) and flags regressions beyond a
threshold: latency, memory, energy or size up, or throughput down, by more
than THRESHOLD percent; accuracy or agreement down by more than ACCURACY_DROP
percentage points.

    python scripts/compare_json.py OLD.json NEW.json [--threshold 5] [--accuracy-drop 0.5] [--all]
                                   [--metric NAME ...]

--metric (repeatable) compares only the metrics whose name contains one of
the given strings: `--metric ratio_vs_peer` compares bench/guard.py runs by
their ratio to the peer runtime alone (the peer ran in the same rounds, so
the ratio cancels most of a shared machine's drift; docs/monitoring.md).

Records are matched by variant name (compare) or model file name (bench).
Exit status: 0 no regression, 1 regressions, 2 unusable input. A note says
when the two files come from different machines, CPU levels, versions or
thread counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SCHEMA = "tinyinfer-results/1"
HIGHER_IS_BETTER = ("accuracy", "agreement", "throughput", "per_s")
IGNORED = ("runs", "batch", "ops", "index", "cores", "first_op", "last_op", "offset", "buffer", "peak_op")
# Absolute figures within which a difference is noise, whatever the ratio.
POINTS = ("accuracy", "agreement")


def _flatten(obj, prefix=""):
    out = {}
    if isinstance(obj, dict):
        if set(obj) == {"unavailable"}:
            return out
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        if all(isinstance(x, dict) and "op" in x and "index" in x for x in obj):
            for x in obj:
                out.update(_flatten({k: v for k, v in x.items() if k not in ("op", "index")},
                                    f"{prefix}#{x['index']} {x['op']}."))
    elif isinstance(obj, bool) or obj is None:
        pass
    elif isinstance(obj, (int, float)):
        out[prefix[:-1]] = float(obj)
    return out


def _records(doc) -> dict:
    res = doc.get("results")
    if isinstance(res, dict):
        res = [res]
    out = {}
    for r in res or []:
        key = r.get("name") or os.path.basename(str(r.get("model", "?")))
        flat = _flatten({k: v for k, v in r.items() if k not in ("latencies_us", "notes", "path", "model", "name",
                                                                    "runtime", "energy_source")})
        out[key] = flat
    return out


def _ignored(metric: str) -> bool:
    last = metric.split(".")[-1]
    return last in IGNORED or any(part in IGNORED for part in metric.split("."))


def compare_docs(old: dict, new: dict, threshold: float, accuracy_drop: float = 0.5, metrics=None):
    """[(record, metric, old, new, change, regression)] for every metric in
    both (only those containing one of `metrics` when it is given)."""
    rows = []
    a, b = _records(old), _records(new)
    for key in a:
        if key not in b:
            continue
        for metric, va in a[key].items():
            if metric not in b[key] or _ignored(metric):
                continue
            if metrics and not any(m in metric for m in metrics):
                continue
            vb = b[key][metric]
            higher = any(h in metric for h in HIGHER_IS_BETTER)
            if any(p in metric for p in POINTS):
                change = vb - va
                worse = (va - vb) * 100.0 > accuracy_drop
            else:
                change = (vb - va) / abs(va) * 100.0 if va else (0.0 if vb == va else float("inf"))
                worse = (-change if higher else change) > threshold
            rows.append((key, metric, va, vb, change, worse))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--threshold", type=float, default=5.0, help="percent (default 5)")
    ap.add_argument("--accuracy-drop", type=float, default=0.5,
                    help="percentage points of accuracy or agreement (default 0.5)")
    ap.add_argument("--all", action="store_true", help="print every metric, not only the regressions")
    ap.add_argument("--metric", action="append", help="compare only metrics whose name contains this (repeatable)")
    a = ap.parse_args(argv)
    docs = []
    for p in (a.old, a.new):
        try:
            with open(p) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            print(f"compare_json: cannot read {p}: {e}", file=sys.stderr)
            return 2
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            print(f"compare_json: {p} is not a {SCHEMA} file", file=sys.stderr)
            return 2
        docs.append(d)
    old, new = docs
    if old.get("kind") != new.get("kind"):
        print(f"compare_json: {a.old} is '{old.get('kind')}', {a.new} is '{new.get('kind')}'", file=sys.stderr)
        return 2
    for what in ("machine", "tinyinfer", "threads"):
        if old.get(what) != new.get(what):
            keys = ("isa", "version") if what == "tinyinfer" else ("cpu_model", "cores", "machine")
            if what == "threads":
                print(f"note: threads differ: {old.get(what)} vs {new.get(what)}")
            else:
                diff = {k: (old[what].get(k), new[what].get(k)) for k in keys
                        if old.get(what, {}).get(k) != new.get(what, {}).get(k)}
                if diff:
                    print(f"note: {what} differs: " + ", ".join(f"{k} {x} -> {y}" for k, (x, y) in diff.items()))
    rows = compare_docs(old, new, a.threshold, a.accuracy_drop, a.metric)
    if not rows:
        print("compare_json: no record and metric in common", file=sys.stderr)
        return 2
    bad = [r for r in rows if r[5]]
    for key, metric, va, vb, change, worse in (rows if a.all else bad):
        unit = " points" if any(p in metric for p in POINTS) else "%"
        ch = change * 100 if unit == " points" else change
        print(f"{'REGRESSION' if worse else 'ok':10} {key:28} {metric:34} {va:>14.6g} -> {vb:<14.6g} {ch:+.2f}{unit}")
    print(f"{len(bad)} regression(s) beyond {a.threshold:g}% (accuracy: {a.accuracy_drop:g} points) "
          f"in {len(rows)} metrics")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
