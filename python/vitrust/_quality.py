"""Quality measures: the rate-distortion bound and how close a pruned tensor gets to it.

The bound. Treat the scores as a memoryless
source ``X`` (the tensor's own empirical distribution) and the keep-mask as
its reproduction ``Y`` in {0, 1}, with ``E[Y] = d`` (the density). Any index
of ``R`` bits per weight that decodes to the mask satisfies ``I(X; Y) <= R``
(asymptotically, and that is all a long tensor needs), so no such index keeps
more expected importance than

    D(R) = max E[X Y]  subject to  E[Y] = d,  I(X; Y) <= R.

With the output marginal fixed at ``(1 - d, d)``, ``I(X; Y)`` is the mean
Kullback-Leibler divergence of ``p(y | x)`` from that marginal, and the
maximiser is the Blahut-Arimoto fixed point for this marginal: an exponential
tilt, ``p(1 | x) = sigmoid(beta * x + c)``, with ``c`` set so that the mean
keep probability is ``d`` and ``beta >= 0`` so that the information is ``R``.
Both are monotone one-dimensional solves (safeguarded Newton on ``c``,
bisection on ``log beta``). ``beta = 0`` is the random mask (``D = d *
mean``); ``beta -> inf`` is magnitude pruning, reached at ``R = H(d)``.

To keep the solve cheap on large tensors the sorted scores are compressed into
at most ``bins`` quantile bins (each replaced by its mean, one bin edge placed
exactly at the magnitude-pruning cut). A mask of the bins is a mask of the
scores, so the compressed bound never exceeds the exact one; with the default
4096 bins the two agree to about 1e-5. The result is reported relative to
magnitude pruning at the same count: ``D(R) / E[X 1{X in top d}]``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Tuple

import numpy as np
import numpy.typing as npt

from . import _checks, _scores

BINS = 4096
# Information at this fraction of H(d) or more is treated as H(d) (bound 1.0).
_FULL = 1.0 - 1e-9


class Quality(NamedTuple):
    """How good a pruned tensor's mask is, for given scores."""

    retained: float
    """Sum of kept scores over the sum of the top-``nnz`` scores (1.0 = magnitude pruning)."""
    bound: float
    """The rate-distortion bound on ``retained`` at this density and index cost."""
    efficiency: float
    """``retained / bound``."""
    top_pruned: float
    """Share of the top-``nnz`` scores (ties broken by position) that the mask prunes."""


def scores_of(x: Any, score: str, name: str) -> npt.NDArray[np.float64]:
    """Flat float64 scores: ``|x|`` (``"abs"``) or ``x**2`` (``"square"``); refuses NaN/inf."""
    a = _checks.flat(_checks.float_array(x, name)).astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return _scores.values(a, _scores.check(score))


def entropy_bits(d: float) -> float:
    """Binary entropy ``H(d)`` in bits."""
    if d <= 0.0 or d >= 1.0:
        return 0.0
    return -(d * math.log2(d) + (1.0 - d) * math.log2(1.0 - d))


def rd_bound(scores_or_weights: Any, rate: float, bits_per_weight: float, *, score: str = "abs", bins: int = BINS) -> float:
    """The best retained importance any index of ``bits_per_weight`` bits can reach.

    ``scores_or_weights`` are the tensor's weights (their ``|w|``, or ``w**2``
    with ``score="square"``) or non-negative importance scores; ``rate`` is
    the share pruned, so the density is ``1 - rate``. The result is the
    rate-distortion bound on ``sum(kept scores) / sum(top-nnz scores)`` for
    this tensor's own score distribution: 1.0 once ``bits_per_weight`` reaches
    the binary entropy ``H(1 - rate)`` (magnitude pruning is then reachable),
    the random-mask value ``mean / top-mean`` at 0 bits, increasing between.
    The solve (a Blahut-Arimoto fixed point with the keep share pinned, over
    at most ``bins`` quantile bins of the scores) is described in the module
    docstring and the README.
    """
    s = scores_of(scores_or_weights, score, "scores_or_weights")
    rate = _checks.rate(rate)
    r = _checks.real(bits_per_weight, "bits_per_weight")
    if r < 0:
        raise ValueError(f"bits_per_weight = {r}: must be >= 0")
    bins = _checks.integer(bins, "bins", 2)
    x, p, top = _compress(s, 1.0 - rate, bins)
    return _bound(x, p, 1.0 - rate, r, top)


def _compress(s: np.ndarray, d: float, bins: int) -> Tuple[np.ndarray, np.ndarray, float]:
    """Quantile bins of the sorted scores (means ``x``, weights ``p``) and the top-``d`` mean.

    Scores are divided by their maximum so the solve's ``beta`` has a fixed scale.
    """
    n = s.size
    s = np.sort(s)
    peak = s[-1]
    if peak > 0:
        s = s / peak
    cut = min(max(int(round(n * (1.0 - d))), 0), n)
    edges = np.unique(np.concatenate([np.linspace(0, n, min(bins, n) + 1).round().astype(np.int64), [cut]]))
    edges = edges[edges < n]
    counts = np.diff(np.append(edges, n))
    sums = np.add.reduceat(s, edges)
    x, p = sums / counts, counts / n
    top = float(s[cut:].sum() / n)
    # Magnitude pruning with a fractional count: the top nnz/n share of the distribution.
    return x, p, top


def _tilt(x: np.ndarray, p: np.ndarray, d: float, beta: float) -> Tuple[np.ndarray, np.ndarray]:
    """``log p(1|x)``, ``log p(0|x)`` for ``sigmoid(beta x + c)`` with the mean keep share ``d``."""
    lo, hi = math.log(d / (1 - d)) - beta, math.log(d / (1 - d))  # mean(sigmoid) brackets d
    c = 0.5 * (lo + hi)
    for _ in range(200):
        z = beta * x + c
        q = 0.5 * (1.0 + np.tanh(0.5 * z))
        f = float(p @ q) - d
        if abs(f) < 1e-13 * d:
            break
        if f > 0:
            hi = c
        else:
            lo = c
        if hi - lo < 1e-13:
            break
        slope = float(p @ (q * (1.0 - q)))
        step = c - f / slope if slope > 0 else 0.5 * (lo + hi)
        c = step if lo < step < hi else 0.5 * (lo + hi)
    z = beta * x + c
    return -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)


def _point(x: np.ndarray, p: np.ndarray, d: float, beta: float) -> Tuple[float, float]:
    """(information in bits, expected kept score) of the tilt with ``beta``."""
    log1, log0 = _tilt(x, p, d, beta)
    q1, q0 = np.exp(log1), np.exp(log0)
    kl = q1 * (log1 - math.log(d)) + q0 * (log0 - math.log(1 - d))
    return float(p @ kl) / math.log(2.0), float(p @ (q1 * x))


def _bound(x: np.ndarray, p: np.ndarray, d: float, r: float, top: float) -> float:
    if top <= 0.0 or d >= 1.0:
        return 1.0  # nothing to lose (all scores zero, or nothing pruned)
    if d <= 0.0:
        return 1.0
    h = entropy_bits(d)
    if r >= _FULL * h:
        return 1.0
    if r <= 0.0:
        return min(float(p @ x) * d / top, 1.0)
    lo, hi = -12.0, 20.0  # log(beta): the information is increasing in beta
    info, kept = _point(x, p, d, math.exp(hi))
    if info <= r:
        return float(min(kept / top, 1.0))
    kept = d * float(p @ x)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        info, value = _point(x, p, d, math.exp(mid))
        if info > r:
            hi = mid
        else:
            lo, kept = mid, value
        if hi - lo < 1e-7:
            break
    return float(min(kept / top, 1.0))


def quality(mask: np.ndarray, scores: np.ndarray, bits_per_weight: float) -> Quality:
    """:class:`Quality` of a flat bool ``mask`` for flat non-negative float64 ``scores``."""
    n, nnz = scores.size, int(np.count_nonzero(mask))
    if nnz == 0:
        return Quality(1.0, 1.0, 1.0, 0.0)
    # Top nnz by score, ties broken by position (a stable sort), as magnitude pruning would.
    order = np.argsort(-scores, kind="stable")[:nnz]
    retained = _scores.retained(scores, float(scores[mask].sum()), nnz)
    d = nnz / n
    x, p, top_mean = _compress(scores, d, BINS)
    bound = _bound(x, p, d, bits_per_weight, top_mean)
    top_pruned = 1.0 - float(np.count_nonzero(mask[order])) / nnz
    return Quality(retained, bound, retained / bound, top_pruned)
