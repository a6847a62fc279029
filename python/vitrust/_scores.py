"""Importance scores, the one place that turns weights into them, and the
retained-importance figure measured against magnitude pruning.

The search maximises ``sum over kept (score - lam)`` (docs/algorithm.md,
"Search objective"); a weight's score is ``|w|`` (``"abs"``), ``w**2``
(``"square"``) or, for arrays that already hold scores, the value itself
(``"raw"``).
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import numpy.typing as npt

# What a caller may ask for; "raw" is the internal name for caller-given scores.
SCORES: Tuple[str, ...] = ("abs", "square")
KINDS: Tuple[str, ...] = SCORES + ("raw",)


def check(score: Any, raw: bool = False) -> str:
    """``score`` when it names a score (``"raw"`` too when ``raw``), else a ``ValueError``."""
    allowed = KINDS if raw else SCORES
    if not isinstance(score, str) or score not in allowed:
        names = ", ".join(repr(k) for k in allowed)
        raise ValueError(f"score = {score!r}: expected one of {names}")
    return score


def values(x: Any, kind: str, dtype: npt.DTypeLike = np.float64) -> npt.NDArray[Any]:
    """The scores of ``x`` as ``dtype`` (float64 by default).

    Squares are taken in float64, so a float32 result is the correctly rounded
    square; ``|x|`` commutes with rounding, so it is taken after the cast.
    """
    a = np.asarray(x)
    if kind == "square":
        wide = a.astype(np.float64)
        return (wide * wide).astype(dtype, copy=False)
    if kind == "abs":
        out: npt.NDArray[Any] = np.abs(a.astype(dtype, copy=False))
        return out
    # A copy even when the dtype matches: callers keep scores of tensors that
    # are only read (memory-mapped), never a view of them.
    return a.astype(dtype)


def top_sum(scores: npt.NDArray[Any], k: int, overwrite: bool = False) -> float:
    """The sum of the ``k`` largest of the flat ``scores`` (magnitude pruning
    keeping ``k``), added in float64; ``overwrite`` reorders ``scores`` in
    place instead of partitioning a copy."""
    if k <= 0:
        return 0.0
    n = scores.size
    if overwrite:
        scores.partition(n - k)
    else:
        scores = np.partition(scores, n - k)
    return float(scores[n - k:].sum(dtype=np.float64))


def retained(scores: npt.NDArray[Any], kept: float, k: int, overwrite: bool = False) -> float:
    """Kept importance relative to magnitude pruning at the same count: ``kept``
    (the sum of the ``k`` kept scores) over the sum of the ``k`` largest
    ``scores`` (reordered in place with ``overwrite``); 1.0 when nothing is
    kept or every top score is zero."""
    top = top_sum(scores, k, overwrite)
    return kept / top if top > 0 else 1.0


def retained_of(weights: Any, kept_values: Any, kind: str = "abs") -> float:
    """:func:`retained` of a pruned tensor from its weights and its kept values."""
    kept = values(np.asarray(kept_values).reshape(-1), kind)
    return retained(values(np.asarray(weights).reshape(-1), kind), float(kept.sum()), kept.size)
