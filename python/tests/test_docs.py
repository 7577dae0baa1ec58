"""The docs say what the code does: generated tables are current."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_converting_doc_op_tables_are_current():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_converting_doc.py"), "--check"],
                       capture_output=True, text=True, env=dict(os.environ))
    assert p.returncode == 0, p.stderr + p.stdout
