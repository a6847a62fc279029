"""Argument checks shared by the public functions: each failure is a
``TypeError`` (wrong kind of thing) or ``ValueError`` (wrong value) that names
the argument."""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def float_array(x: Any, name: str) -> np.ndarray:
    """``x`` as an ndarray of float16/32/64 with at least one dimension and one element."""
    if isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.asarray(x)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{name}: cannot be read as an array ({e})") from None
    if a.dtype not in FLOAT_DTYPES:
        kind = {"c": "complex", "b": "bool", "i": "integer", "u": "integer", "O": "object", "U": "string", "S": "bytes"}
        what = kind.get(a.dtype.kind, str(a.dtype))
        raise TypeError(f"{name}: expected float16, float32 or float64 values, got {what} ({a.dtype})")
    if a.ndim == 0:
        raise ValueError(f"{name}: expected an array with at least one dimension, got a 0-d scalar")
    if a.size == 0:
        raise ValueError(f"{name}: the array is empty (shape {a.shape})")
    return a


def flat(a: np.ndarray) -> np.ndarray:
    """A 1-D C-order view (a copy only when ``a`` is not C-contiguous)."""
    return np.ascontiguousarray(a).reshape(-1)


def integer(x: Any, name: str, lo: int, hi: Optional[int] = None) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(x).__name__}")
    x = int(x)
    if x < lo or (hi is not None and x > hi):
        bound = f"{lo}..={hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} = {x}: must be {bound}")
    return x


def real(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(x).__name__}")
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{name} = {x}: must be finite")
    return x


def rate(x: Any) -> float:
    r = real(x, "rate")
    if not 0.0 <= r < 1.0:
        raise ValueError(f"rate = {r}: must be in [0, 1) (the share of weights to prune)")
    return r


def threads(x: Any) -> Optional[int]:
    return None if x is None else integer(x, "threads", 1, 1024)


def index_array(x: Any) -> np.ndarray:
    """A 1-D uint64 index; other non-negative integer arrays are converted."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"index: expected a 1-D array of uint64 words, got shape {a.shape}")
    if a.dtype == np.uint64:
        return np.ascontiguousarray(a)
    if a.dtype.kind not in "ui" or (a.size and a.min() < 0):
        raise TypeError(f"index: expected uint64 words, got {a.dtype}")
    return a.astype(np.uint64)


def matrix_view(shape: Tuple[int, ...]) -> Tuple[int, int]:
    """``(rows, cols)`` of a tensor's 2-D view, the one rule for products, CSR
    and the cost models: ``(shape[0], rest)``, and one row ``(1, N)`` for 1-D."""
    size = math.prod(shape)
    rows = shape[0] if len(shape) >= 2 else 1
    return rows, size // rows if rows else 0
