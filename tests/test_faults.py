"""Faults: Ctrl-C during long calls, allocation failure under a memory limit,
a signal during the extension's first use, and size products that overflow.

Each fault runs in a child process (a memory limit or a signal must not touch
the test runner); the child reports what it saw on stdout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import vitrust
from children import first_line
from vitrust import _vitrust

PYTHON_DIR = str(Path(vitrust.__file__).resolve().parent.parent)

# The child: runs `setup`, says "ready", runs `op` and reports how it ended,
# with the monotonic clock (shared by all processes) when it did.
CHILD = r"""
import sys, time, numpy as np, vitrust
from vitrust import _vitrust
exec(sys.argv[1])
print("ready", flush=True)
try:
    exec(compile(sys.argv[2], "op", "exec"))  # (exec of a string would mark a caught KeyboardInterrupt as unhandled at exit)
    print("done", time.monotonic(), flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
except MemoryError as e:
    print("MemoryError", time.monotonic(), e, flush=True)
"""

# Sets a memory limit of the child's present size plus `margin` bytes first.
LIMITED = r"""
import resource
def _vm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
_limit = _vm() + MARGIN
resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
"""



def child(setup: str, op: str, *, sigint_after: float | None = None, timeout: float = 120) -> tuple[str, float, str]:
    """(outcome, seconds from SIGINT to the outcome or 0, stderr) of one child."""
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, setup, op], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    ready = first_line(p).strip()
    assert ready == "ready", p.communicate()[1]
    sent = None
    if sigint_after is not None:
        time.sleep(sigint_after)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=timeout)
    words = out.split()
    assert words, f"the child died (status {p.returncode}): {err[-2000:]}"
    return words[0], (float(words[1]) - sent) if sent else 0.0, " ".join(words[2:]) + err


SPARSE = """
rng = np.random.default_rng(0)
c = vitrust.VDConfig(10, 1, 5, 1, 1)
def sparse(rows, cols):
    n = rows * cols
    idx = rng.integers(0, 2**63, _vitrust.layout_info(c, n, 1024)[1], dtype=np.uint64)
    st = _vitrust.block_starts(c, idx, n, 1024)
    return vitrust.ViterbiSparse((rows, cols), c, 1024, idx, np.ones(int(st[-1]), np.float32), 0.0)
"""

# (setup, op): each runs for several seconds when not interrupted (short calls
# are repeated, so the signal always lands inside one, however fast the machine).
LONG_CALLS = {
    "prune at 16 flip-flops": (
        "w = np.random.default_rng(0).standard_normal((4096, 1024)).astype(np.float32)",
        "vitrust.prune(w, 0.9, flip_flops=16)",
    ),
    "search at lam": (
        "w = np.random.default_rng(0).standard_normal((4096, 1024)).astype(np.float32)",
        "vitrust.prune(w, lam=0.5, flip_flops=16)",
    ),
    "expand": (
        SPARSE + "sp = sparse(1 << 15, 1 << 15)",
        "for _ in range(100): sp.mask()",
    ),
    "W @ X": (
        SPARSE + "sp = sparse(4096, 4096); x = np.ones((4096, 1024), np.float32)",
        "for _ in range(100): sp @ x",
    ),
    "X @ W": (
        SPARSE + "sp = sparse(4096, 4096); x = np.ones((1024, 4096), np.float32)",
        "for _ in range(100): x @ sp",
    ),
}


@pytest.mark.parametrize("name", sorted(LONG_CALLS))
def test_sigint_stops_a_long_call_within_a_second(name: str) -> None:
    setup, op = LONG_CALLS[name]
    outcome, latency, err = child(setup, op, sigint_after=0.4)
    assert outcome == "interrupted", err
    assert latency < 1.0, f"{name}: KeyboardInterrupt {latency:.2f} s after SIGINT"
    assert "PanicException" not in err


def test_sigint_during_save_and_load_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    # A tensor is written in one piece: the latency is bounded by one tensor's write.
    setup = f"path = {str(path)!r}; ws = {{f'w{{i}}': np.full(1 << 24, i, np.float32) for i in range(32)}}"
    outcome, latency, err = child(setup, "vitrust.save_file(ws, path)", sigint_after=0.3)
    assert outcome == "interrupted" and latency < 1.0, (outcome, latency, err)
    assert list(tmp_path.iterdir()) == [], "an interrupted save left a file behind"
    vitrust.save_file({"w": np.ones(1 << 28, np.float32)}, path)
    outcome, latency, err = child(f"path = {str(path)!r}", "vitrust.load_file(path)", sigint_after=0.2)
    assert outcome in ("interrupted", "done") and latency < 1.0, (outcome, latency, err)
    assert [p.name for p in tmp_path.iterdir()] == ["big.safetensors"]


def test_a_signal_during_first_use_is_not_a_panic() -> None:
    # A handler that raises on the first timer tick after arming, ticking
    # every 30 microseconds: before the fix the first call that touched a
    # NumPy array ran NumPy's version check in Python, and the
    # KeyboardInterrupt raised there became a PanicException.
    setup = """
import signal
armed = [False]
def tick(*_):
    if armed[0]:
        armed[0] = False
        raise KeyboardInterrupt
signal.signal(signal.SIGALRM, tick)
"""
    op = """
c, idx = _vitrust.VDConfig(), np.zeros(1, np.uint64)
signal.setitimer(signal.ITIMER_REAL, 3e-5, 3e-5)
for _ in range(100000):
    try:
        armed[0] = True
        _vitrust.expand(c, idx, 5, 1024)
        armed[0] = False
        break
    except KeyboardInterrupt:
        pass
signal.setitimer(signal.ITIMER_REAL, 0)
"""
    for _ in range(3):
        outcome, _, err = child(setup, op)
        assert outcome == "done", err
        assert "PanicException" not in err and "panicked" not in err


# Each op needs far more than its margin, so it must fail cleanly.
MEMORY_CASES = {
    "expand": (SPARSE + "sp = sparse(1 << 15, 1 << 15)", "sp.mask()", 64 << 20),
    "to_dense": (SPARSE + "sp = sparse(1 << 15, 1 << 15)", "sp.to_dense()", 256 << 20),
    # Outputs of 512 MiB from operands of 32 MiB.
    "W @ X": (SPARSE + "sp = sparse(1 << 17, 1 << 13); x = np.ones((1 << 13, 1024), np.float32)", "sp @ x", 64 << 20),
    "X @ W": (SPARSE + "sp = sparse(1 << 13, 1 << 17); x = np.ones((1024, 1 << 13), np.float32)", "x @ sp", 64 << 20),
    "prune": ("w = np.ones(1 << 28, np.float32)", "vitrust.prune(w, lam=0.5)", 64 << 20),
}


@pytest.mark.parametrize("name", sorted(MEMORY_CASES))
def test_allocation_failure_is_a_memory_error(name: str) -> None:
    setup, op, margin = MEMORY_CASES[name]
    outcome, _, err = child(setup + LIMITED.replace("MARGIN", str(margin)), op)
    assert outcome == "MemoryError", err
    assert "bytes" in err or "allocate" in err, err


def test_loading_a_file_larger_than_the_memory_limit_is_a_memory_error(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    vitrust.save_file({"w": np.ones(1 << 26, np.float32)}, path)
    setup = f"path = {str(path)!r}" + LIMITED.replace("MARGIN", str(64 << 20))
    outcome, _, err = child(setup, "vitrust.load_file(path)")
    assert outcome == "MemoryError", err


def test_products_refuse_a_batch_whose_sizes_overflow() -> None:
    w = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    sp = vitrust.prune(w, 0.5)
    x = np.ones(64, np.float32)
    for batch in (2**54 + 1, 2**61, 2**64 - 1):
        for left in (False, True):
            with pytest.raises(ValueError, match=r"operand has 64 elements|overflows"):
                _vitrust.matmul(sp.config, sp.index, sp.block_steps, sp.values, 128, 8, x, batch, None, None, left)
    with pytest.raises(ValueError, match="n_weights"):
        _vitrust.expand(sp.config, sp.index, 2**63, 1024)
