"""Argument checks shared by the public functions: each failure is a
``TypeError`` (wrong kind of thing) or ``ValueError`` (wrong value) that names
the argument."""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any, Optional, Tuple

import numpy as np

from . import _vitrust

# The largest size the core takes (a machine word).
SIZE_MAX = 2 * sys.maxsize + 1
# The VD's limits (docs/format.md, "The Viterbi decompressor"), as the core
# defines them, checked here too so that an error names the caller's own
# argument; the core checks them again.
MAX_FLIP_FLOPS = _vitrust.MAX_FLIP_FLOPS
MAX_N_IN = _vitrust.MAX_N_IN
MAX_N_OUT = _vitrust.MAX_N_OUT
MAX_COMPARATOR_BITS = _vitrust.MAX_COMPARATOR_BITS
# Steps per block unless told otherwise (docs/format.md, "Blocks").
DEFAULT_BLOCK_STEPS = 1024
MAX_TAP_SEEDS = 64
# Value dtypes by numpy name -> (itemsize, safetensors name). numpy has no
# bfloat16 or float8 of its own: those are the ml_dtypes package's types,
# recognised by name so that vitrust needs that package only where they occur.
VALUE_DTYPES = {
    "float16": (2, "F16"), "float32": (4, "F32"), "float64": (8, "F64"),
    "bfloat16": (2, "BF16"), "float8_e4m3fn": (1, "F8_E4M3"), "float8_e5m2": (1, "F8_E5M2"),
}
VALUE_NAMES = "float16, bfloat16, float8_e4m3fn, float8_e5m2, float32 or float64"


def value_dtype(dt: np.dtype) -> Optional[str]:
    """The safetensors name of a dtype values may have (any byte order), else None."""
    entry = VALUE_DTYPES.get(dt.name)
    if entry is None or entry[0] != dt.itemsize or dt.kind not in "fV":
        return None
    return entry[1]


def ml_dtype(name: str, what: str) -> np.dtype:
    """The numpy dtype of an ml_dtypes type (``name`` as numpy names it)."""
    try:
        import ml_dtypes
    except ImportError:
        raise ValueError(
            f"{what} is {name}, which numpy holds only with the ml_dtypes package installed (pip install ml_dtypes)"
        ) from None
    dt: np.dtype = np.dtype(getattr(ml_dtypes, name))
    return dt


def stored_dtype(st_name: str, what: str) -> np.dtype:
    """The numpy dtype of a value dtype's safetensors name (``"BF16"``, ...)."""
    numpy_name = next(name for name, (_, st) in VALUE_DTYPES.items() if st == st_name)
    if numpy_name in ("float16", "float32", "float64"):
        return np.dtype(numpy_name)
    return ml_dtype(numpy_name, what)


def native(a: np.ndarray) -> np.ndarray:
    """``a`` in the machine's byte order (big-endian arrays are converted)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def float_array(x: Any, name: str, empty_ok: bool = False) -> np.ndarray:
    """``x`` as an ndarray of a value dtype (float16/32/64, bfloat16, float8) in
    native byte order, with at least one dimension and (unless ``empty_ok``) one element."""
    if isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.asarray(x)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{name}: cannot be read as an array ({e})") from None
    if value_dtype(a.dtype) is None:
        kind = {"c": "complex", "b": "bool", "i": "integer", "u": "integer", "O": "object", "U": "string", "S": "bytes"}
        what = kind.get(a.dtype.kind, str(a.dtype))
        raise TypeError(f"{name}: expected {VALUE_NAMES} values, got {what} ({a.dtype})")
    a = native(a)
    if a.ndim == 0:
        raise ValueError(f"{name}: expected an array with at least one dimension, got a 0-d scalar")
    if a.size == 0 and not empty_ok:
        raise ValueError(f"{name}: the array is empty (shape {a.shape})")
    return a


def flat(a: np.ndarray) -> np.ndarray:
    """A 1-D C-order view (a copy only when ``a`` is not C-contiguous)."""
    return np.ascontiguousarray(a).reshape(-1)


def integer(x: Any, name: str, lo: int, hi: Optional[int] = None) -> int:
    """An integer in ``lo..=hi`` (without ``hi``: one the core can hold, a machine word)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(x).__name__}")
    v = int(x)
    if v < lo or (hi is not None and v > hi):
        bound = f"{lo}..={hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} = {v}: must be {bound}")
    if v > SIZE_MAX:
        raise ValueError(f"{name} = {v}: too large (at most 2**{SIZE_MAX.bit_length()} - 1)")
    return v


def real(x: Any, name: str) -> float:
    """A finite real number (bools refused: they are more likely a slip than a value)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(x).__name__}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name} = {v}: must be finite")
    return v


def rate(x: Any) -> float:
    r = real(x, "rate")
    if not 0.0 <= r < 1.0:
        raise ValueError(f"rate = {r}: must be in [0, 1) (the share of weights to prune)")
    return r


def threads(x: Any) -> Optional[int]:
    return None if x is None else integer(x, "threads", 1, _vitrust.MAX_THREADS)


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


def thresholds_array(x: Any) -> np.ndarray:
    """Per-block thresholds as a 1-D uint8 array (their range is the core's
    check, made when the index is first expanded)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"thresholds: expected a 1-D array, one threshold per block, got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype.kind not in "ui":
        raise TypeError(f"thresholds: expected integers (uint8), got {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError(f"thresholds: values must fit in uint8, got {a.min()}..{a.max()}")
    return a.astype(np.uint8)


ORDERS = ("C", "F")


def order(x: Any) -> str:
    """A stream order: ``"C"`` (row-major over the 2-D view) or ``"F"`` (column-major)."""
    if x not in ORDERS:
        raise ValueError(f"order = {x!r}: must be 'C' (row by row) or 'F' (column by column)")
    return str(x)


def matrix_view(shape: Tuple[int, ...]) -> Tuple[int, int]:
    """``(rows, cols)`` of a tensor's 2-D view, the one rule for products, CSR
    and the cost models: ``(shape[0], rest)``, and one row ``(1, N)`` for 1-D."""
    size = math.prod(shape)
    rows = shape[0] if len(shape) >= 2 else 1
    return rows, size // rows if rows else 0
