"""A dependency-free progress bar on stderr: tensors and weights done.

On a terminal the bar redraws in place; otherwise (a log file, a pipe) each
finished item is one plain line, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    def __init__(self, n_items: int, n_weights: int, *, stream: Optional[TextIO] = None, enabled: bool = True) -> None:
        self.n_items, self.n_weights = n_items, max(n_weights, 1)
        self.items = self.weights = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def start(self, label: str) -> None:
        """Shows that ``label`` is being worked on (terminal only)."""
        if self.tty:
            self._draw(label)

    def advance(self, label: str, weights: int) -> None:
        """Marks one item of ``weights`` weights done."""
        self.items += 1
        self.weights += weights
        if self.tty:
            self._draw(label)
        elif self.enabled:
            print(f"[{self.items}/{self.n_items}] {label}", file=self.stream, flush=True)

    def note(self, message: str) -> None:
        """Prints ``message`` on a line of its own (even when disabled)."""
        if self.tty:
            self.stream.write("\n")
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, label: str, width: int = 30) -> None:
        share = self.weights / self.n_weights
        filled = int(round(share * width))
        elapsed = time.perf_counter() - self.t0
        speed = self.weights / elapsed / 1e6 if elapsed > 0 else 0.0
        line = (
            f"\r[{'#' * filled}{'.' * (width - filled)}] {share:6.1%}  tensors {self.items}/{self.n_items}  "
            f"weights {_count(self.weights)}/{_count(self.n_weights)}  {speed:.1f} M/s  {label[:40]:<40}"
        )
        self.stream.write(line)
        self.stream.flush()


def _count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)
