"""One multiplier λ for many tensors (global pruning), at a few full search passes.

Used by ``vitrust.torch.prune_model`` on a model's tensors and by
``vitrust.prune_checkpoint`` on a checkpoint's, where each worker summarises
its shard's tensors as :class:`Part` objects (so only the pieces travel).

At one λ every tensor keeps the weights whose score beats λ in the search's
objective, ``sum over kept (score - lam)``; with each tensor's VD fixed, the
total kept count never grows with λ. :func:`calibrate` finds the λ that keeps
a requested count:

1. on samples: evenly spaced block-long pieces of every tensor (about one
   step in 16 overall, each tensor in proportion to its size; small tensors
   whole), each searched as a block from state 0. A piece's kept count is
   scaled to its tensor and corrected by how far the pieces' share of scores
   above λ strays from the tensor's (a control variate: rows differ). Root
   finding runs in the magnitude-density domain (λ as a quantile of all
   scores), where the kept share is close to linear;
2. one full pass per tensor at that λ (the caller's ``full``, which keeps its
   results); when the total misses by more than 0.1 point, one secant step
   with the samples' slope and one more full pass;
3. only if that misses too, full passes bracket and bisect (always
   converging: the count is monotone), returning the closest λ found.

So the whole usually costs the equivalent of two to three full passes. The
API is array based: ``(weights or scores, VDConfig, block_steps)`` per tensor;
:class:`Calibrator` keeps only the pieces and a bounded float32 subsample of
each tensor, so tensors may be added one at a time (memory-mapped, streamed)
when the sampled ``share`` is given up front. docs/algorithm.md ("Global λ")
says why.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _checks, _scores, _vitrust
from ._vitrust import VDConfig

Tensor = Tuple[Any, VDConfig, int]

SAMPLE_SHARE = 1 / 16
# At least this many pieces over all tensors (all blocks when there are fewer).
MIN_PIECES = 64
# Strided subsamples of each tensor's scores (at most SUB_MAX of them, float32)
# count the share above λ; a prime stride stays even on periodic layouts (3x3
# kernels, heads, channel groups).
SUB_STRIDE = 7
SUB_MIN, SUB_MAX = 1 << 15, 1 << 18
# Matched on the sample; aimed at on full passes; the promise (0.2 points).
SAMPLE_TOLERANCE, FULL_AIM, TOLERANCE = 4e-4, 1e-3, 2e-3
SAMPLE_EVALS, FULL_EVALS = 12, 12


def _max_score(flat: np.ndarray, kind: str) -> float:
    if flat.dtype.itemsize <= 2 and flat.dtype.kind != "i" and flat.dtype.kind != "u":
        # 16- and 8-bit floats (bfloat16, float16, float8) are sign-magnitude:
        # the largest |x| has the largest bits without the sign, found by an
        # integer reduction (ml_dtypes' own reductions are far slower).
        bits = np.dtype(f"u{flat.dtype.itemsize}")
        sign = 1 << (8 * flat.dtype.itemsize - 1)
        top_bits = np.max(flat.view(bits) & bits.type(~sign & (2 * sign - 1)))
        top = float(np.array([top_bits], bits).view(flat.dtype)[0])
    else:
        top = max(float(np.max(flat)), -float(np.min(flat)))
    return top * top if kind == "square" else top


def _prime_at_least(k: int) -> int:
    while k > 2 and any(k % d == 0 for d in range(2, int(k**0.5) + 1)):
        k += 1
    return k


class Part:
    """One tensor: its pieces (or itself, when small) and a strided subsample of its scores.

    Only the pieces are copied, so a memory-mapped tensor is read, not held.
    """

    def __init__(self, weights: Any, config: VDConfig, block_steps: int, kind: str, share: float) -> None:
        if not isinstance(config, VDConfig):
            raise TypeError(f"config: expected a vitrust.VDConfig, got {type(config).__name__}")
        flat = _checks.flat(weights) if isinstance(weights, np.ndarray) else _checks.flat(np.asarray(weights))
        if flat.size == 0:
            raise ValueError("calibrate: a tensor is empty")
        block_steps = _checks.integer(block_steps, "block_steps", 1, _vitrust.MAX_BLOCK_STEPS)
        self.n, self.config, self.block_steps = flat.size, config, block_steps
        n_out, length = config.n_out, block_steps
        steps = -(-self.n // n_out)
        m = max(1, round(steps * share / length))
        self.whole = share >= 1 or 2 * m * length >= steps
        if self.whole:
            self.sample, self.w = flat, self.n
        else:
            first = (2 * np.arange(m) + 1) * steps // (2 * m) - length // 2
            first = np.minimum(first, self.n // n_out - length) * n_out  # pieces of whole steps only
            self.sample = flat[first[:, None] + np.arange(length * n_out)].reshape(-1)
            self.w = self.sample.size
            self.sample_scores = _scores.values(self.sample, kind, np.float32)
        stride = 1 if self.n < SUB_STRIDE * SUB_MIN else _prime_at_least(max(SUB_STRIDE, -(-self.n // SUB_MAX)))
        self.sub = _scores.values(flat[::stride], kind, np.float32)
        self.top = _max_score(flat, kind)

    def share_above(self, lam: float) -> float:
        return float(np.count_nonzero(self.sub > lam)) / self.sub.size


def _sign(v: float) -> int:
    return int(v > 0) - int(v < 0)


def _solve(f: Callable[[float], float], x0: float, slope0: float, tol: float, evals: int,
           known: Sequence[Tuple[float, float]] = ()) -> Tuple[Tuple[float, float], float]:
    """Finds ``x`` with ``f(x)`` (increasing) within ``tol`` of zero: secant steps from
    ``x0`` until the root is bracketed (``known`` points may bracket it already),
    then Illinois regula falsi. Returns the best ``(x, f(x))`` seen and the last slope."""
    a = (x0, f(x0))
    best, slope, n = a, slope0, 1
    b = None
    for p in known:
        best = min(best, p, key=lambda q: abs(q[1]))
        if _sign(p[1]) != _sign(a[1]) and p[0] != a[0]:
            b = p
    while b is None:
        if abs(best[1]) <= tol or n >= evals:
            return best, slope
        x = min(max(a[0] - a[1] / slope, -1.0), 2.0)
        p = (x, f(x))
        n += 1
        best = min(best, p, key=lambda q: abs(q[1]))
        s = (p[1] - a[1]) / (p[0] - a[0]) if p[0] != a[0] else math.nan
        # A flat or inverted secant (a step of the count function) doubles the step.
        slope = s if math.isfinite(s) and s > 0 else 0.5 * slope
        if _sign(p[1]) != _sign(a[1]):
            b = p
        elif p[0] == a[0]:
            return best, slope  # pinned at the domain's edge
        else:
            a = p
    stale = 0
    while abs(best[1]) > tol and n < evals and a[0] != b[0]:
        x = b[0] - b[1] * (b[0] - a[0]) / (b[1] - a[1])
        if not math.isfinite(x) or x in (a[0], b[0]):
            x = 0.5 * (a[0] + b[0])
        p = (x, f(x))
        n += 1
        best = min(best, p, key=lambda q: abs(q[1]))
        if _sign(p[1]) == _sign(b[1]):
            b = p  # Illinois: halve the weight of an end kept twice in a row
            if stale == -1:
                a = (a[0], 0.5 * a[1])
            stale = -1
        else:
            a, b, stale = b, p, 1
    return best, slope


class Calibrator:
    """The sample model of the total kept count as a function of λ (see the module doc).

    ``tensors``: ``(weights or scores, VDConfig, block_steps)`` each; ``score``
    as in ``vitrust.prune`` (``"raw"`` for arrays of scores). ``share``: the
    share of steps sampled (default: one in 16, at least ``MIN_PIECES`` pieces
    in all, found from ``tensors``). :meth:`reconfigure` may change the VDs
    (e.g. their comparators; same ``n_out``) while the pieces stay.
    """

    def __init__(self, tensors: Sequence[Tensor] = (), *, score: str = "abs", share: Optional[float] = None,
                 threads: Optional[int] = None, max_memory: Optional[int] = None) -> None:
        self.kind, self.threads = _scores.check(score, raw=True), _checks.threads(threads)
        self.budget = _vitrust.DEFAULT_MAX_SEARCH_BYTES if max_memory is None else \
            _checks.integer(max_memory, "max_memory", 1)
        if share is None:
            if not tensors:
                raise ValueError("calibrate: no tensors (give them, or a share to add them one by one)")
            for _, c, _ in tensors:
                if not isinstance(c, VDConfig):
                    raise TypeError(f"config: expected a vitrust.VDConfig, got {type(c).__name__}")
            blocks = sum(-(-np.size(w) // (c.n_out * max(int(bs), 1))) for w, c, bs in tensors)
            share = max(SAMPLE_SHARE, min(1.0, MIN_PIECES / max(blocks, 1)))
        self.share = _checks.real(share, "share")
        if not 0 < self.share <= 1:
            raise ValueError(f"share = {share}: must be in (0, 1]")
        self.parts: List[Part] = []
        self.n, self.top = 0, 0.0
        self.passes = 0.0  # search work spent, in full passes over all tensors
        self.x, self._slope = math.nan, 1.0  # where the last solve ended (magnitude density) and its slope
        self._estimates: Dict[float, List[float]] = {}
        self._quantiles: Optional[np.ndarray] = None
        for w, c, bs in tensors:
            self.add(w, c, bs)

    def add(self, weights: Any, config: VDConfig, block_steps: int) -> None:
        """Adds one tensor (its pieces and subsample are kept, not the tensor): for
        streaming, build with a ``share`` and add tensors as they are read."""
        self.add_part(Part(weights, config, block_steps, self.kind, self.share))

    def add_part(self, part: Part) -> None:
        """Adds one tensor's summary, made elsewhere (a worker) with this ``share`` and score."""
        self.parts.append(part)
        self.n += part.n
        self.top = max(self.top, part.top)
        self._estimates.clear()
        self._quantiles = None

    @property
    def quantiles(self) -> np.ndarray:
        """Sorted scores standing for all tensors, each in proportion to its size."""
        if self._quantiles is None:
            if not self.parts:
                raise ValueError("calibrate: no tensors")
            picks = [p.sub[:: max(1, round(p.sub.size / max(1.0, (1 << 16) * p.n / self.n)))] for p in self.parts]
            self._quantiles = np.sort(np.concatenate(picks))
        return self._quantiles

    def reconfigure(self, configs: Sequence[VDConfig]) -> None:
        """Gives the tensors other VDs (same ``n_out``: the pieces stay)."""
        if len(configs) != len(self.parts) or any(c.n_out != p.config.n_out for c, p in zip(configs, self.parts)):
            raise ValueError("reconfigure: one config per tensor, each with the tensor's n_out")
        for c, p in zip(configs, self.parts):
            p.config = c
        self._estimates.clear()

    def lam(self, x: float) -> float:
        """The score threshold that keeps a share ``x`` of all scores (within ``[0, max score]``)."""
        xs = self.quantiles
        last = xs.size - 1
        span = max(float(xs[last] - xs[0]), 1e-30)
        p = (1.0 - x) * last
        if p <= 0:
            v = float(xs[0]) + p * span
        elif p >= last:
            v = float(xs[last]) + (p - last) * span
        else:
            i = int(p)
            v = float(xs[i]) + (p - i) * float(xs[min(i + 1, last)] - xs[i])
        return min(max(v, 0.0), self.top)

    def share_above(self, lam: float) -> List[float]:
        """Per tensor, the share of scores above ``lam`` (magnitude pruning's density)."""
        return [p.share_above(lam) for p in self.parts]

    def kept_shares(self, lam: float) -> List[float]:
        """Per tensor, the estimated share of its weights kept at ``lam``."""
        return [k / p.n for k, p in zip(self._estimate(lam), self.parts)]

    def estimate(self, lam: float) -> float:
        """The estimated total kept count at ``lam``."""
        return float(sum(self._estimate(lam)))

    def _estimate(self, lam: float) -> List[float]:
        if lam in self._estimates:
            return self._estimates[lam]
        out = []
        for p in self.parts:
            kept = _vitrust.search(p.config, p.sample, self.kind, lam, p.block_steps, self.threads, self.budget)[1]
            self.passes += p.w / self.n
            if p.whole:
                out.append(float(kept))
            else:
                stray = np.count_nonzero(p.sample_scores > lam) / p.w - np.count_nonzero(p.sub > lam) / p.sub.size
                out.append(float(min(max(kept / p.w - stray, 0.0), 1.0) * p.n))
        self._estimates[lam] = out
        return out

    def solve(self, kept: float, *, full: Optional[Callable[[float], int]] = None, x0: Optional[float] = None,
              tolerance: float = SAMPLE_TOLERANCE) -> float:
        """The λ keeping ``kept`` weights in total: on the samples, then (with ``full``,
        which searches every tensor at a λ and returns the total kept) checked and
        corrected on full passes; the λ returned is one ``full`` was called at.
        ``x0`` starts from a magnitude density (:attr:`x`: where the last solve ended);
        ``tolerance`` is the match asked of the samples (a share of all weights)."""
        d = kept / self.n
        x, slope = (d, 1.0) if x0 is None else (x0, self._slope)
        seen: List[Tuple[float, float]] = []

        def on_sample(y: float) -> float:
            seen.append((y, self.estimate(self.lam(y)) / self.n - d))
            return seen[-1][1]

        (x, _), slope = _solve(on_sample, x, slope, tolerance, SAMPLE_EVALS)
        self.x, self._slope = x, slope
        if full is None:
            return self.lam(x)
        done: Dict[float, float] = {}

        def on_full(y: float) -> float:
            lam = self.lam(y)
            if lam not in done:
                done[lam] = full(lam) / self.n - d
                self.passes += 1.0
            return done[lam]

        f1 = on_full(x)
        if abs(f1) > FULL_AIM:
            # The full count's slope is close to the samples' around x, measured
            # over a base as wide as the miss (single secants of a step function
            # are noisy); in the density domain it is near 1, which stands in
            # when the samples' slope is far from it.
            h = max(2 * abs(f1), 0.01)
            wide = (on_sample(x + h) - on_sample(x - h)) / (2 * h)
            wide = wide if 0.25 <= wide <= 4.0 else 1.0
            x2 = min(max(x - f1 / wide, -1.0), 2.0)
            # A second pass within the promise ends it (a third costs more than it gains).
            if abs(on_full(x2)) > TOLERANCE:
                _solve(on_full, x2, wide, FULL_AIM, FULL_EVALS, known=[(x, f1)])
        return min(done, key=lambda k: abs(done[k]))


def calibrate(tensors: Sequence[Tensor], rate: Optional[float] = None, *, kept: Optional[float] = None,
              score: str = "abs", full: Optional[Callable[[float], int]] = None, threads: Optional[int] = None,
              max_memory: Optional[int] = None) -> float:
    """The one λ at which ``tensors`` together prune ``rate`` of their weights (or keep ``kept``).

    ``tensors``: ``(weights or scores, VDConfig, block_steps)`` each, searched
    with ``score`` (``"abs"``, ``"square"``, or ``"raw"`` for score arrays).
    Without ``full`` the λ comes from the samples alone. With it, ``full(lam)``
    must search every tensor at ``lam`` and return the total kept count; it is
    called once or twice in the usual case, and the λ returned is one it was
    called at, so the caller keeps its results per λ (an index is small). When
    no λ comes within 0.2 points, the closest one found is returned.
    """
    c = Calibrator(tensors, score=score, threads=threads, max_memory=max_memory)
    if (rate is None) == (kept is None):
        raise ValueError("give exactly one of rate (share to prune) and kept (count to keep)")
    target = (1.0 - _checks.rate(rate)) * c.n if rate is not None else float(kept)  # type: ignore[arg-type]
    return c.solve(target, full=full)
