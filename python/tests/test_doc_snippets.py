"""Every ```python, ```sh and ```bash block of README.md and docs/*.md runs as
written.

The blocks of one markdown file run in order, in one fresh temporary
directory, as a reader would run them from the repository root: the
directory holds links to the repository's folders the docs use (models/,
include/, examples/, python/, scripts/, bench/), so a block can read
models/digits_cnn.tflite and compile examples/c/run_model.c, while the files
it writes stay in the temporary directory; a later block may use what an
earlier block of the same file made. `python` is this interpreter, the
package is python/ on PYTHONPATH (with its built library, or the one
$TINYINFER_LIB names), shell blocks run with `bash -e -o pipefail`.

A block that cannot run as a test (it sets up the machine, or needs a file
of the reader's) is preceded by `<!-- skip-test: the reason -->`; keep them
few (MAX_SKIPS).
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINKED = ("models", "include", "examples", "python", "scripts", "bench")
RUNNABLE = {"python": "python", "sh": "sh", "bash": "sh"}
MAX_SKIPS = 5  # each one explained: set-up commands, a Dask scheduler, a bench that needs the bench models
TIMEOUT = 600


def markdown_files():
    docs = os.path.join(ROOT, "docs")
    return ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(docs) if f.endswith(".md"))


def blocks(relpath):
    """[(line, lang, code, skip reason or None)] of the fenced blocks in a markdown file."""
    lines = open(os.path.join(ROOT, relpath)).read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```\s*([\w+-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{relpath}:{start + 1}: the block is never closed"
        i += 1
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        skip = None
        if j >= 0:
            s = re.match(r"^<!--\s*skip-test:(.*?)-->\s*$", lines[j])
            if s:
                skip = s.group(1).strip()
                assert skip, f"{relpath}:{j + 1}: skip-test without a reason"
        out.append((start + 1, lang, "\n".join(body) + "\n", skip))
    return out


def runnable(relpath):
    return [b for b in blocks(relpath) if b[1] in RUNNABLE]


def test_snippets_are_found_and_skips_are_few_and_explained():
    found = {f: runnable(f) for f in markdown_files()}
    assert sum(len(b) for b in found.values()) >= 10, found
    skips = [(f, line, why) for f, bs in found.items() for line, _, _, why in bs if why is not None]
    assert len(skips) <= MAX_SKIPS, skips
    for f in found:
        text = open(os.path.join(ROOT, f)).read()
        markers = len(re.findall(r"<!--\s*skip-test:", text))
        assert markers == len([s for s in skips if s[0] == f]), f"{f}: a skip-test marker that precedes no code block"


def _environment(tmp_path):
    bindir = tmp_path / ".bin"
    bindir.mkdir()
    # Wrappers, not symlinks: Python finds a virtual environment from the
    # path it was started by (pyvenv.cfg beside it), so a symlink in another
    # folder would start the base interpreter without the environment's
    # packages.
    for name in ("python", "python3"):
        wrapper = bindir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = str(bindir) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    for name in LINKED:
        if os.path.exists(os.path.join(ROOT, name)):
            os.symlink(os.path.join(ROOT, name), tmp_path / name)
    return env


@pytest.mark.parametrize("doc", [f for f in markdown_files() if runnable(f)])
def test_snippets_run(doc, tmp_path):
    env = _environment(tmp_path)
    ran = 0
    for line, lang, code, skip in runnable(doc):
        if skip is not None:
            continue
        where = f"{doc}:{line} ({lang} block)"
        if RUNNABLE[lang] == "python":
            script = tmp_path / f".snippet_{line}.py"
            script.write_text(code)
            cmd = [sys.executable, str(script)]
        else:
            script = tmp_path / f".snippet_{line}.sh"
            script.write_text(code)
            cmd = ["bash", "-e", "-o", "pipefail", str(script)]
        try:
            p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{where} did not finish in {TIMEOUT} s:\n{code}")
        if p.returncode != 0:
            pytest.fail(f"{where} failed (exit {p.returncode}):\n--- block ---\n{code}--- stdout (end) ---\n"
                        f"{p.stdout[-3000:]}\n--- stderr (end) ---\n{p.stderr[-5000:]}", pytrace=False)
        ran += 1
    assert ran, f"{doc}: every block is skipped"
