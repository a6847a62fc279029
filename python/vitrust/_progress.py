"""A dependency-free progress bar on stderr: tensors and weights done, speed
and time left, within 80 columns.

On a terminal the bar redraws in place, twice a second, and moves within a
large tensor too (by the speed measured so far: the search reports no
progress of its own); otherwise (a log file, a pipe) each finished item is one
plain line, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional, TextIO, Tuple

WIDTH = 79
# A tensor in progress is shown at most this far along until it is done.
_CAP = 0.95


class Progress:
    """A progress line on ``stream`` (rewritten in place on a terminal) over items and weights."""

    def __init__(self, n_items: int, n_weights: int, *, stream: Optional[TextIO] = None, enabled: bool = True,
                 width: int = WIDTH) -> None:
        self.n_items, self.n_weights = n_items, max(n_weights, 1)
        self.items = self.weights = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.t0 = time.perf_counter()
        self._current: Optional[Tuple[str, int, float]] = None  # (label, weights, start time)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def __call__(self, event: str, label: str, weights: int) -> None:
        """The checkpoint pipeline's callback: ``"start"`` or ``"done"`` of a tensor."""
        if event == "start":
            self.start(label, weights)
        else:
            self.advance(label, weights)

    def start(self, label: str, weights: int = 0) -> None:
        """Shows that ``label`` (of ``weights`` weights) is being worked on."""
        with self._lock:
            self._current = (label, weights, time.perf_counter())
            if self.tty:
                self._draw()

    def advance(self, label: str, weights: int) -> None:
        """Marks one item of ``weights`` weights done."""
        with self._lock:
            self.items += 1
            self.weights += weights
            self._current = None
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
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                self._draw()

    def _done(self, now: float) -> float:
        """Weights done, counting the share of the tensor in progress its time suggests."""
        done = float(self.weights)
        elapsed = now - self.t0
        if self._current is not None and self.weights > 0 and elapsed > 0:
            _, w, started = self._current
            speed = self.weights / max(started - self.t0, 1e-9)
            done += min(_CAP, (now - started) * speed / max(w, 1)) * w
        return done

    def line(self, label: Optional[str] = None, now: Optional[float] = None) -> str:
        """The bar's text (at most ``width`` columns)."""
        now = time.perf_counter() if now is None else now
        if label is None:
            label = self._current[0] if self._current is not None else ""
        done = self._done(now)
        share = min(done / self.n_weights, 1.0)
        elapsed = now - self.t0
        speed = done / elapsed if elapsed > 0 else 0.0
        eta = (self.n_weights - done) / speed if speed > 0 else None
        bar_w = 16
        filled = int(share * bar_w)
        head = (f"[{'#' * filled}{'.' * (bar_w - filled)}] {share:4.0%} {self.items}/{self.n_items} "
                f"{_count(int(done))}/{_count(self.n_weights)} {_count(int(speed))}/s ETA {_duration(eta)} ")
        room = max(self.width - len(head), 0)
        return head + _fit(label, room)

    def _draw(self, label: Optional[str] = None) -> None:
        text = self.line(label)
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()


def _fit(text: str, room: int) -> str:
    """``text`` cut to ``room`` columns, keeping its end (a tensor's name ends in what tells it apart)."""
    if len(text) <= room:
        return text
    return "…" + text[len(text) - room + 1 :] if room > 1 else ""


def _count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _duration(s: Optional[float]) -> str:
    if s is None:
        return "--"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
