"""scripts/compare_json.py --metric: only the named metrics are compared
(bench/guard.py's runs are compared by their ratio to the peer)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "compare_json.py")


def guard_doc(ratio_a, p50_a, ratio_b, p50_b):
    return {"schema": "tinyinfer-results/1", "kind": "guard", "threads": 1,
            "machine": {"cpu_model": "x", "cores": 2, "machine": "x86_64"},
            "tinyinfer": {"version": "0", "isa_detected": "avx2"},
            "results": [{"name": "a float32 @avx2", "peer": "litert", "latency_us": {"p50": p50_a},
                         "ratio_vs_peer": ratio_a},
                        {"name": "b float32 @avx2", "peer": "litert", "latency_us": {"p50": p50_b},
                         "ratio_vs_peer": ratio_b},
                        {"name": "a litert", "latency_us": {"p50": 100.0}}]}


def run(tmp_path, old, new, *flags):
    po, pn = tmp_path / "old.json", tmp_path / "new.json"
    po.write_text(json.dumps(old))
    pn.write_text(json.dumps(new))
    return subprocess.run([sys.executable, SCRIPT, str(po), str(pn), *flags], capture_output=True, text=True)


def test_metric_filter_flags_only_the_ratio(tmp_path):
    old = guard_doc(1.00, 100.0, 0.90, 50.0)
    # a: ratio 8% worse, latency the same; b: latency 20% worse (the machine), ratio 3% worse (within 5%)
    new = guard_doc(1.08, 100.0, 0.927, 60.0)
    every = run(tmp_path, old, new)
    assert every.returncode == 1
    assert "b float32 @avx2" in every.stdout and "latency_us.p50" in every.stdout
    only = run(tmp_path, old, new, "--metric", "ratio_vs_peer")
    assert only.returncode == 1, only.stdout
    lines = [ln for ln in only.stdout.splitlines() if ln.startswith("REGRESSION")]
    assert len(lines) == 1 and "a float32 @avx2" in lines[0] and "ratio_vs_peer" in lines[0]
    assert "in 2 metrics" in only.stdout   # the two ratios; no latency compared
    same = run(tmp_path, old, old, "--metric", "ratio_vs_peer")
    assert same.returncode == 0 and "0 regression(s)" in same.stdout


def test_metric_filter_matching_nothing_is_unusable(tmp_path):
    doc = guard_doc(1.0, 100.0, 1.0, 100.0)
    r = run(tmp_path, doc, doc, "--metric", "no_such_metric")
    assert r.returncode == 2 and "no record and metric in common" in r.stderr
