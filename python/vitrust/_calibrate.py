"""One multiplier λ for many tensors, calibrated on samples of them.

Each entry is ``(scores or weights, VDConfig, block_steps[, weight])``: a
sample of one tensor (whole blocks of it), the tensor's fixed VD and how many
of the tensor's weights each sampled weight stands for (default 1). With each
VD fixed the kept count never grows with λ, so a bracketing root finder
converges; it works in the magnitude-density domain (λ as the weighted
quantile of the pooled scores), where the VD's kept share is close to linear.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _vitrust

Entry = Tuple[Any, ...]
# Pooled score points used for the quantiles.
_QUANTILE_POINTS = 1 << 20


def _parts(e: Entry) -> Tuple[np.ndarray, Any, int, float]:
    a, config, block_steps = e[0], e[1], int(e[2])
    weight = float(e[3]) if len(e) > 3 else 1.0
    return np.ascontiguousarray(a).reshape(-1), config, block_steps, weight


def _scores(a: np.ndarray, score: str) -> np.ndarray:
    x = a.astype(np.float64)
    return np.abs(x) if score == "abs" else x * x if score == "square" else x


class Pool:
    """The entries with their pooled score quantiles."""

    def __init__(self, entries: Sequence[Entry], score: str = "abs", threads: Optional[int] = None) -> None:
        if not entries:
            raise ValueError("calibrate: no tensors to calibrate on")
        self.entries = [_parts(e) for e in entries]
        self.score, self.threads = score, threads
        self.total = sum(a.size * w for a, _, _, w in self.entries)
        self.searched = 0  # weights searched so far, over all evaluations
        budget = max(1, _QUANTILE_POINTS // len(self.entries))
        vals, wts = [], []
        for a, _, _, w in self.entries:
            stride = max(1, a.size // budget)
            vals.append(_scores(a[::stride], score))
            wts.append(np.full(vals[-1].size, w * a.size / vals[-1].size))
        v, ws = np.concatenate(vals), np.concatenate(wts)
        order = np.argsort(-v, kind="stable")
        self._v, self._cw = v[order], np.cumsum(ws[order]) / ws.sum()

    def lam_at(self, q: float) -> float:
        """The λ above which a share ``q`` of the (weighted) scores lies."""
        return float(np.interp(min(max(q, 0.0), 1.0), self._cw, self._v))

    def kept_share(self, lam: float) -> float:
        kept = 0.0
        for a, config, block_steps, w in self.entries:
            kind = self.score if self.score in ("abs", "square") else "raw"
            _, nnz, _ = _vitrust.search(config, a, kind, lam, block_steps, self.threads)
            kept += nnz * w
            self.searched += a.size
        return kept / self.total


    def solve(self, density: float, tol: float = 5e-4, evals: int = 10) -> Tuple[float, float]:
        """``(λ, kept share)`` with the share within ``tol`` of ``density`` (or
        the closest in ``evals`` searches): secant steps in the magnitude-density
        domain, bisection inside the bracket when a step leaves it."""
        return _solve(self, density, tol, evals)

    def correct(self, lam: float, sample_share: float, full_share: float, density: float) -> float:
        """λ moved so a full pass that kept ``full_share`` at ``lam`` (where the
        samples kept ``sample_share``) keeps ``density``: a Newton step with the
        samples' slope over a 2 % step of λ, which small samples measure more
        reliably than they measure the share itself."""
        step = 0.02 * lam if lam > 0 else 1e-3
        toward = step if full_share > density else -step
        slope = (self.kept_share(lam + toward) - sample_share) / toward
        if slope >= 0:  # a flat stretch: re-solve for the target the full pass implies
            return self.solve(density - (full_share - sample_share))[0]
        return max(lam + (density - full_share) / slope, 0.0)


def _solve(pool: Pool, density: float, tol: float, evals: int) -> Tuple[float, float]:
    # The first two points come from the quantiles (the second corrects the
    # first's miss in the magnitude-density domain); then regula falsi on λ
    # itself (quantiles of 16-bit weights are too coarse to step in), halving
    # the bracket when a step leaves it. f(λ) = kept share - density falls with λ.
    seen: Dict[float, float] = {}

    def f(lam: float) -> float:
        if lam not in seen:
            seen[lam] = pool.kept_share(lam) - density
        return seen[lam]

    lam = pool.lam_at(density)
    f0 = f(lam)
    lo: Optional[Tuple[float, float]] = None  # a λ keeping too many (f > 0)
    hi: Optional[Tuple[float, float]] = None  # a λ keeping too few (f < 0)
    x = lam
    for _ in range(evals - 1):
        fx = f(x)
        if abs(fx) <= tol:
            break
        if fx > 0:
            lo = (x, fx)
        else:
            hi = (x, fx)
        if lo is not None and hi is not None:
            nxt = lo[0] + lo[1] * (hi[0] - lo[0]) / (lo[1] - hi[1])
            if not min(lo[0], hi[0]) < nxt < max(lo[0], hi[0]) or nxt in seen:
                nxt = 0.5 * (lo[0] + hi[0])
        else:
            nxt = pool.lam_at(density - (fx if x != lam else f0))
            if nxt in seen:
                nxt = x * (0.97 if fx < 0 else 1.03) if x != 0 else (1e-6 if fx > 0 else 0.0)
        x = nxt
    best = min(seen, key=lambda k: abs(seen[k]))
    return best, seen[best] + density


def calibrate(entries: Sequence[Entry], rate: float, *, score: str = "abs", threads: Optional[int] = None,
              tol: float = 5e-4, evals: int = 10, stats: Optional[Dict[str, float]] = None) -> float:
    """The λ at which the entries together prune ``rate`` of their (weighted) weights."""
    pool = Pool(entries, score, threads)
    lam, _ = pool.solve(1.0 - rate, tol, evals)
    if stats is not None:
        stats["searched"] = stats.get("searched", 0.0) + pool.searched
    return lam


def rate_at(entries: Sequence[Entry], lam: float, *, score: str = "abs", threads: Optional[int] = None) -> float:
    """The (weighted) share the entries prune at ``lam``."""
    return 1.0 - Pool(entries, score, threads).kept_share(lam)


__all__: List[str] = ["calibrate", "rate_at", "Pool"]
