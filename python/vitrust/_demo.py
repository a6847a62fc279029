"""The demo: prune an embedded default matrix and compare with magnitude pruning."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from . import _checks, _scores
from ._prune import prune


def default_matrix(rows: int = 1024, cols: int = 1024, seed: int = 0) -> np.ndarray:
    """A trained-layer-like float32 matrix: Laplacian weights with per-row scales."""
    rng = np.random.default_rng(seed)
    scale = rng.lognormal(0.0, 0.3, size=(rows, 1))
    return (rng.laplace(0.0, 0.05, size=(rows, cols)) * scale).astype(np.float32)


def run(rate: float = 0.9, threads: Optional[int] = None) -> None:
    w = default_matrix()
    t0 = time.perf_counter()
    sp = prune(w, rate, threads=threads)
    elapsed = time.perf_counter() - t0
    n, nnz = w.size, sp.nnz
    rows, cols = _checks.matrix_view(w.shape)
    csr = 32 * (nnz + rows + 1)
    print(f"vitrust demo: {rows}x{cols} float32 (embedded default), target rate {rate:.2%}")
    print(f"  {sp!r}")
    print(f"  achieved rate      {sp.rate:.4%}  ({nnz} of {n} weights kept)")
    print("  index bits/weight  " + f"viterbi {sp.bits_per_weight:.4f}   bitmask 1.0000   csr32 {csr / n:.4f}")
    print(f"  retained |w|       {_scores.retained_of(w, sp.values):.4f} of magnitude pruning at the same count")
    print(f"  time               {elapsed * 1e3:.1f} ms ({n / elapsed / 1e6:.1f} M weights/s)")
