"""The JSON envelope of every `--json` output (bench, compare, inspect
--memory; docs/monitoring.md "JSON"): what ran where, so results can be
tracked over time and compared (scripts/compare_json.py).

    {"schema": "tinyinfer-results/1", "kind": "bench" | "compare" | "inspect-memory",
     "created": "2026-12-03T09:30:00Z", "tinyinfer": {version, abi, format, isa, isa_detected},
     "machine": {system, release, machine, cpu_model, cores, python, numpy},
     "threads": N or null, "results": ...}
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

SCHEMA = "tinyinfer-results/1"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
            "cpu_model": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__}


def envelope(kind: str, results, threads=None) -> dict:
    import tinyinfer
    i = tinyinfer.info()
    return {"schema": SCHEMA, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tinyinfer": {k: i[k] for k in ("version", "abi", "format", "isa", "isa_detected")},
            "machine": machine(), "threads": threads, "results": results}


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    to_json = getattr(o, "to_json", None)
    if to_json is not None:
        return to_json()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path: str, kind: str, results, threads=None) -> dict:
    doc = envelope(kind, results, threads)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=_default)
    return doc
