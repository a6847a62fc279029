"""Hostile but well-formed vitrust files, for the memory and time checks in
``tests/test_hostile.py`` and ``benches/hostile_files.py``.

Each builder writes a file of about ``size`` bytes whose metadata is made
to cost as much as possible to load: a huge unknown field, a huge tap list,
a huge shape in the container header, very many tiny pruned tensors, or
(format 2) very many blocks with thresholds of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Callable, Dict, Tuple

import numpy as np

import vitrust
from fuzzing import body, join, set_body, split


def _sample(path: str) -> bytes:
    rng = np.random.default_rng(0)
    sp = vitrust.prune(rng.standard_normal((12, 50)).astype(np.float32), 0.8, flip_flops=6, block_steps=16)
    vitrust.save_file({"w": sp}, path)
    with open(path, "rb") as f:
        return f.read()


def unknown_field(path: str, size: int) -> None:
    """The vitrust metadata with an unknown field of ``size / 2`` zeros."""
    header, data = split(_sample(path))
    b = body(header)
    b["x"] = [0] * (size // 2)
    set_body(header, b)
    _write(path, join(header, data))


def long_taps(path: str, size: int) -> None:
    """A config whose tap list has ``size / 2`` entries."""
    header, data = split(_sample(path))
    b = body(header)
    b["sparse"]["w"]["config"]["taps"] = [1] * (size // 2)
    set_body(header, b)
    _write(path, join(header, data))


def long_shape(path: str, size: int) -> None:
    """A container header (read before vitrust's metadata) whose tensor has a
    shape of ``size / 2`` zeros."""
    header, data = split(_sample(path))
    header["empty"] = {"dtype": "F32", "shape": [0] * (size // 2), "data_offsets": [0, 0]}
    _write(path, join(header, data))


def many_tensors(path: str, size: int) -> None:
    """A valid file of tiny pruned tensors (about 560 bytes each)."""
    sp = vitrust.prune(np.linspace(-1, 1, 40, dtype=np.float32).reshape(4, 10), 0.5, flip_flops=4, block_steps=4)
    vitrust.save_file({f"layer.{i}.weight": sp for i in range(max(1, size // 560))}, path)


def wide_config(path: str, size: int, steps: int = 60_000) -> None:
    """A valid file of pruned tensors of the widest config (flip_flops 16,
    n_out 64, comparator_bits 8), each too short (``steps`` < 2^17) to repay
    a keep table alone, and keeping almost nothing (so the file is index)."""
    rng = np.random.default_rng(1)
    cfg = vitrust.VDConfig(flip_flops=16, n_in=1, n_out=64, comparator_bits=8, threshold=1, seed=1)
    n, block_steps = 64 * steps, 4096
    n_blocks = -(-steps // block_steps)
    words = sum(-(-min(block_steps, steps - b * block_steps) // 64) for b in range(n_blocks))
    tensors: Dict[str, object] = {}
    for i in range(max(1, size // (8 * words))):
        index = rng.integers(0, 2**63, words, dtype=np.uint64)
        kept = int(vitrust._vitrust.expand(cfg, index, n, block_steps, 1).sum())
        tensors[f"t{i}"] = vitrust.ViterbiSparse((n,), cfg, block_steps, index, np.ones(kept, np.float16), 0.0)
    vitrust.save_file(tensors, path)


def many_thresholds(path: str, size: int) -> None:
    """A valid format 2 file: one tensor of the widest VD (flip_flops 16,
    n_in 4, comparator_bits 8; a keep table has 2^20 entries) cut into many
    short blocks whose thresholds run through all of 1..=255, so each
    threshold's blocks are far too few to repay a table of their own."""
    rng = np.random.default_rng(3)
    cfg = vitrust.VDConfig(flip_flops=16, n_in=4, n_out=1, comparator_bits=8, threshold=1, seed=1)
    block_steps = 64  # 4 index words and about 32 float16 values a block
    n_blocks = max(255, size // 96)
    n = n_blocks * block_steps
    index = rng.integers(0, 2**63, n_blocks * 4, dtype=np.uint64)
    thresholds = (np.arange(n_blocks) % 255 + 1).astype(np.uint8)
    kept = int(vitrust._vitrust.block_starts(cfg, index, n, block_steps, None, thresholds)[-1])
    sp = vitrust.ViterbiSparse((n,), cfg, block_steps, index, np.ones(kept, np.float16), 0.0,
                               thresholds=thresholds)
    vitrust.save_file({"w": sp}, path)


def normal(path: str, size: int) -> None:
    """An ordinary pruned checkpoint: float32 matrices at rate 0.9, default config."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((512, 512)).astype(np.float32)
    sp = vitrust.prune(w, 0.9, threads=1)
    per = sp.index.nbytes + sp.values.nbytes
    vitrust.save_file({f"layer.{i}": sp for i in range(max(1, size // per))}, path)


CASES: Dict[str, Callable[[str, int], None]] = {
    "unknown field": unknown_field,
    "long taps": long_taps,
    "long shape": long_shape,
    "many tensors": many_tensors,
    "many thresholds": many_thresholds,
}
# The cases that are valid files (the others are refused).
VALID = {"many tensors", "many thresholds"}


def _write(path: str, buf: bytes) -> None:
    with open(path, "wb") as f:
        f.write(buf)


# The peak is the process's own high-water mark (VmHWM): ru_maxrss would
# start at the parent's size, since the kernel carries it across fork and exec.
_PROBE = textwrap.dedent(
    """
    import sys, time, vitrust

    def hwm():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

    base = hwm()
    t = time.perf_counter()
    try:
        vitrust.load_file(sys.argv[1], threads=1)
        ok = "loaded"
    except ValueError as e:
        ok = "refused"
    dt = time.perf_counter() - t
    print(ok, base, hwm(), dt)
    """
)


def measure(path: str) -> Tuple[str, int, float]:
    """``(outcome, peak bytes above the interpreter's own, seconds)`` of
    ``load_file(path)`` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", _PROBE, path], check=True, capture_output=True, text=True,
                         env=dict(os.environ))
    ok, base, peak, dt = out.stdout.split()
    return ok, int(peak) - int(base), float(dt)
