"""Structured weight tensors on which rate control is tested (and benchmarked).

Real weights are not i.i.d.: filters have fixed profiles, rows and columns
have their own scales, whole blocks are zero, and quantised tensors tie.
"""

from __future__ import annotations

from typing import Callable, Dict

import numpy as np


def periodic(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Filters of 64 taps of which only 16 carry signal (issue 10's reproducer)."""
    prof = np.full(64, 0.006)
    prof[24:40] = 0.3
    return (rng.standard_normal((rows, 16, 64)) * prof).astype(np.float32)


def _family(rows: int) -> Dict[str, Callable[[np.random.Generator], np.ndarray]]:
    cols = 256

    def gauss(rng):
        return rng.standard_normal((rows, cols)).astype(np.float32)

    def row_scaled(rng):
        return gauss(rng) * np.logspace(-3, 0, rows, dtype=np.float32)[rng.permutation(rows), None]

    def col_scaled(rng):
        return gauss(rng) * np.logspace(-3, 0, cols, dtype=np.float32)[rng.permutation(cols)]

    def block_sparse(rng):
        keep = rng.random((rows // 32, cols // 32)) < 0.25
        return gauss(rng) * np.kron(keep, np.ones((32, 32), np.float32))

    def mostly_zero(rng):
        return gauss(rng) * (rng.random((rows, cols)) < 0.05)

    def ternary(rng):
        return rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), size=(rows, cols), p=[0.3, 0.4, 0.3])

    def constant(rng):
        return np.full((rows, cols), 0.5, np.float32)

    def outliers(rng):
        w = gauss(rng)
        w.flat[rng.choice(w.size, w.size // 1000, replace=False)] *= 1000
        return w

    def periodic_small(rng):
        return periodic(rng, rows * cols // 1024)

    return {
        "gaussian": gauss,
        "periodic": periodic_small,
        "row-scaled": row_scaled,
        "column-scaled": col_scaled,
        "block-sparse": block_sparse,
        "mostly-zero": mostly_zero,
        "ternary": ternary,
        "constant": constant,
        "outliers": outliers,
    }


def families(rows: int = 256) -> Dict[str, Callable[[np.random.Generator], np.ndarray]]:
    """Name -> generator of a ``(rows, 256)``-sized tensor (seeded by the caller)."""
    return _family(rows)
