"""Reading a child process's output: shared by the fault tests and the fault bench."""

from __future__ import annotations

import os
import subprocess


def first_line(p: subprocess.Popen) -> str:
    """The child's first line, read from the pipe byte by byte: a buffered
    readline would swallow later lines that ``communicate`` then never sees."""
    assert p.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        c = os.read(p.stdout.fileno(), 1)
        if not c:
            break
        line += c
    return line.decode()
