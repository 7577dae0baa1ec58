"""Shared by the bench scripts: the CPU's name, and a script's section of
BENCHMARKS.md (between its two markers) written anew."""

import os
import platform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_section(begin: str, end: str, block: str, path: str = os.path.join(ROOT, "BENCHMARKS.md")) -> None:
    """Replaces the text from `begin` to `end` in `path` with `block` (which
    starts with `begin` and ends with `end`), or appends it."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
