"""tinyinfer.dask on a real distributed.LocalCluster of two worker processes
(dask_cluster_checks.py): results equal a single-process run, each worker
loads a model once, a worker killed mid-run loses no results.

The cluster checks run in a fresh Python process: at the end of the long
test session (thousands of sessions, threads and forks made by the tests
before) the LocalCluster's spawned workers sometimes never came up and
compute() waited for ever; alone they pass in about 30 s. A fresh process
is also what a user's script has."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("dask")
pytest.importorskip("distributed")

HERE = os.path.dirname(os.path.abspath(__file__))


def test_dask_cluster_checks_in_a_fresh_process():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "dask_cluster_checks.py"],
                       cwd=HERE, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout.splitlines()[-1], r.stdout[-2000:]
