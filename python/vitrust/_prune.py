"""``prune`` and ``expand``: argument handling around the compiled core."""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

from . import _checks, _presets, _scores, _values, _vitrust
from ._sparse import ViterbiSparse
from ._vitrust import VDConfig

# Scores are counted in pieces of this many elements when only a share is needed.
_CHUNK = 1 << 20
# The promised accuracy of rate control: 0.2 points.
RATE_TOLERANCE = 2e-3


class RateWarning(UserWarning):
    """``prune`` could not reach the requested rate within 0.2 points."""


def prune(
    weights: Any,
    rate: Optional[float] = None,
    *,
    lam: Optional[float] = None,
    ratio: int = 5,
    flip_flops: Optional[int] = None,
    n_in: Optional[int] = None,
    comparator_bits: Optional[int] = None,
    threshold: Optional[int] = None,
    block_steps: int = _checks.DEFAULT_BLOCK_STEPS,
    scores: Any = None,
    score: str = "abs",
    seed: int = 0,
    config: Optional[VDConfig] = None,
    threads: Optional[int] = None,
    max_memory: Optional[int] = None,
    effort: _presets.Effort = "default",
    tap_seeds: Optional[int] = None,
    block_thresholds: Optional[bool] = None,
    order: Optional[str] = None,
    values: str = "raw",
    group: int = _values.DEFAULT_GROUP,
) -> ViterbiSparse:
    """Prune ``weights`` to a VD-reachable mask; the index costs ``1 / ratio`` bit per weight.

    Give exactly one of ``rate`` (share of weights to prune, in [0, 1); the
    multiplier is then found so the achieved rate is within 0.2 points) or
    ``lam`` (search once at that multiplier: one ``lam`` across tensors prunes
    them globally). Each weight's score is ``|w|`` (``score="abs"``), ``w**2``
    (``"square"``) or the caller's non-negative ``scores`` of the same shape;
    the search keeps the reachable mask maximising ``sum over kept (score - lam)``.

    The VD has ``flip_flops`` state bits, reads ``n_in`` bits per step and
    emits ``ratio * n_in`` mask bits; each mask bit compares ``comparator_bits``
    XOR outputs with ``threshold``. By default these two are chosen so that
    ``threshold / 2**comparator_bits`` is close to the kept share (``1 - rate``,
    or the share of scores above ``lam``). Taps come from ``seed``; pass
    ``config`` instead to fix the whole VD. ``threads`` bounds the worker
    threads (default: all cores); the result never depends on it.
    ``max_memory`` (bytes, default 1 GiB) bounds the search's working memory
    (survivor decisions of one block per thread, metrics and tables); a
    configuration that would need more is refused with a ``ValueError``.

    ``effort`` (``"fast"``, ``"default"`` or ``"best"``) picks ``flip_flops``,
    ``n_in`` and ``tap_seeds`` (the number of tap seeds tried, ``seed``,
    ``seed + 1``, ..., keeping the mask that retains the most importance; the
    winner's taps are in the result's config). Each of these three given
    explicitly wins over the preset; ``config`` wins over all of them. Speed
    and quality of each preset are in the README ("Quality"); the search and
    rate control are in docs/algorithm.md ("Search objective", "Rate control",
    "Presets").

    ``block_thresholds`` lets each block choose its own comparator threshold
    (the result's ``thresholds``; ``comparator_bits`` more bits per block), and
    ``order`` is the stream's walk over the 2-D view ``(shape[0], rest)``:
    ``"C"`` row by row, ``"F"`` column by column, ``"auto"`` the better of
    the two on a sample of blocks. Both default to the preset's choice
    (docs/algorithm.md, "Thresholds per block", "Order").

    ``values`` encodes the kept values (``"int8"``, ``"int4"`` with a scale
    per ``group`` values, ``"codebook1"`` .. ``"codebook8"``; default
    ``"raw"``, as they are): see :meth:`ViterbiSparse.quantize`. A
    codebook's k-means weighs each kept value by its score.
    """
    w = _checks.float_array(weights, "weights")
    values, group = _values.encoding_arg(values, group)
    if (rate is None) == (lam is None):
        raise ValueError("give exactly one of rate (share to prune) and lam (multiplier)")
    rate = None if rate is None else _checks.rate(rate)
    lam = None if lam is None else _checks.real(lam, "lam")
    _scores.check(score)
    block_steps = _checks.integer(block_steps, "block_steps", 1, _vitrust.MAX_BLOCK_STEPS)
    threads = _checks.threads(threads)
    budget = _vitrust.DEFAULT_MAX_SEARCH_BYTES if max_memory is None else _checks.integer(max_memory, "max_memory", 1)
    w_flat = _checks.flat(w)
    src, kind = w_flat, score
    if scores is not None:
        s = _checks.float_array(scores, "scores")
        if s.shape != w.shape:
            raise ValueError(f"scores: shape {s.shape} differs from the weights' shape {w.shape}")
        src, kind = _checks.flat(s), "raw"

    preset = _presets.EFFORTS.get(effort) if isinstance(effort, str) else None
    factors, refine, order = _block_choices(preset, block_thresholds, order)
    if config is None:
        flip_flops, n_in, n_seeds = _presets.resolve(effort, flip_flops, n_in, tap_seeds)
        c = _config(src, kind, rate, lam, ratio, flip_flops, n_in, comparator_bits, threshold, seed)
        more = [(seed + i) % 2**64 for i in range(1, n_seeds)]
        configs = [c] + [VDConfig(c.flip_flops, c.n_in, c.n_out, c.comparator_bits, c.threshold, seed=t) for t in more]
    elif not isinstance(config, VDConfig):
        raise TypeError(f"config: expected a vitrust.VDConfig, got {type(config).__name__}")
    else:
        _presets.resolve(effort, None, None, None)
        if tap_seeds not in (None, 1):
            raise ValueError("tap_seeds: config fixes the taps; give one or the other")
        configs = [config]

    rows, cols = _checks.matrix_view(w.shape)
    found, order, stream = _search_orders(configs, src, kind, rate, lam, rows, cols, block_steps, threads, budget,
                                          factors, refine, order)
    index, nnz, lam, config, thresholds = found
    if rate is not None and not _meets(rate, nnz, w.size):
        warnings.warn(RateWarning(
            f"rate {rate:.4f} requested, {1.0 - nnz / w.size:.4f} achieved: no lam in [0, max score] comes "
            f"within 0.2 points with this VD (tied scores, mostly zeros or too few weights); this is the closest"
        ), stacklevel=2)
    kept_from = stream if src is w_flat else _stream(w_flat, rows, cols, order, threads)
    kept, starts = _vitrust.gather(config, index, block_steps, kept_from, threads, thresholds)
    sp = ViterbiSparse._from_core(w.shape, config, block_steps, index, kept, lam, threads=threads, starts=starts,
                                  thresholds=thresholds, order=order)
    kept_scores = None if src is w_flat else _vitrust.gather(config, index, block_steps, stream, threads, thresholds)[0]
    return quantized(sp, values, group, kind, kept_scores)


def quantized(sp: ViterbiSparse, values: str, group: int, kind: str, kept_scores: Any = None) -> ViterbiSparse:
    """``sp`` with its values encoded as ``values``, a codebook fitted weighted
    by the kept weights' scores (``kept_scores`` for the caller's own)."""
    if values == "raw":
        return sp
    weights = kept_scores if kept_scores is not None else _scores.values(sp.values, kind, np.float32)
    return sp.quantize(values, group=group, scores=weights)


Found = Tuple[npt.NDArray[np.uint64], int, float, VDConfig, Optional[npt.NDArray[np.uint8]]]
Factors = Optional[Tuple[float, ...]]


def _block_choices(preset: Optional[_presets.Preset], block_thresholds: Optional[bool],
                   order: Optional[str]) -> Tuple[Factors, bool, str]:
    """Threshold candidates, refinement and order mode: the caller's where given, else the preset's."""
    factors = preset.factors if preset else None
    refine = preset.refine if preset else False
    if block_thresholds is not None:
        if not isinstance(block_thresholds, bool):
            raise TypeError(f"block_thresholds: expected True, False or None, got {block_thresholds!r}")
        factors = (factors or _presets.FACTORS) if block_thresholds else None
        refine = refine and block_thresholds
    if order is None:
        order = preset.order if preset else "C"
    elif order not in ("C", "F", "auto"):
        raise ValueError(f"order = {order!r}: must be 'C', 'F' or 'auto'")
    return factors, refine, order


def _search_orders(configs: List[VDConfig], src: np.ndarray, kind: str, rate: Optional[float], lam: Optional[float],
                   rows: int, cols: int, block_steps: int, threads: Optional[int], budget: int, factors: Factors,
                   refine: bool, order: str) -> Tuple[Found, str, np.ndarray]:
    """The search in the order(s) ``order`` asks for: the result, its order and ``src`` in that order.

    "auto" on a tensor of at least ``2 * SAMPLE_BLOCKS`` blocks searches the
    order its sample prefers, and the other only when that one misses the
    rate; on fewer blocks (the sample would be the whole tensor) and for
    "both" it searches both in full. Of two results, one that meets the rate
    wins, then the one `_value` rates higher, the first on ties.
    """
    both = order in ("auto", "both") and rows > 1 and cols > 1
    orders = ["C", "F"] if both else [order if order != "auto" else "C"]
    n_blocks = -(-src.size // (block_steps * configs[0].n_out))
    sampled = both and order == "auto" and n_blocks >= 2 * SAMPLE_BLOCKS
    streams = {o: _stream(src, rows, cols, o, threads) for o in orders}
    if sampled:
        first = _choose_order(configs[0], streams, kind, rate, lam, block_steps, threads, budget, factors)
        orders = [first, "F" if first == "C" else "C"]
    tried = []
    for o in orders:
        stream = streams[o]
        res = _search_best(configs, stream, kind, rate, lam, block_steps, threads, budget, factors, refine)
        tried.append((res, o, stream))
        if sampled and (rate is None or _meets(rate, res[1], src.size)):
            break
    if len(tried) == 1:
        return tried[0]
    return max(tried, key=lambda t: _value(t[0], t[2], kind, rate, block_steps, threads))


def _stream(flat: np.ndarray, rows: int, cols: int, order: str, threads: Optional[int] = None) -> np.ndarray:
    """``flat`` (C order) in stream order: a column-major copy for order "F"."""
    if order == "F" and rows > 1 and cols > 1:
        return _vitrust.transposed(flat, rows, cols, threads)
    return flat


# Order "auto" compares the orders on this share of the blocks (at least SAMPLE_BLOCKS).
SAMPLE_SHARE = 16
SAMPLE_BLOCKS = 8


def _choose_order(config: VDConfig, streams: Dict[str, np.ndarray], kind: str, rate: Optional[float],
                  lam: Optional[float], block_steps: int, threads: Optional[int], budget: int, factors: Factors) -> str:
    """The order whose sampled blocks (of ``streams``, the scores in each
    order) do better: retained importance at the target rate (rate control
    run on the sample), or the objective ``sum over kept (score - lam)`` at a
    given ``lam``. C wins ties."""
    bw = block_steps * config.n_out
    size = streams["C"].size
    n_blocks = -(-size // bw)
    if n_blocks < 2 * SAMPLE_BLOCKS:
        picks = np.arange(n_blocks)
    else:
        picks = np.linspace(0, n_blocks - 1, max(SAMPLE_BLOCKS, n_blocks // SAMPLE_SHARE)).round().astype(np.int64)
    fs = None if factors is None else list(factors)
    best, best_value = "C", -np.inf
    for o in ("C", "F"):
        sample = _blocks_of(streams[o], picks, bw)
        if rate is None:
            assert lam is not None
            value = _vitrust.search(config, sample, kind, lam, block_steps, threads, budget, None, fs)[2]
        else:
            index, nnz, _, _, th = _vitrust.search_rate(config, sample, kind, rate, block_steps, threads, budget, fs)
            kept = _presets.kept_score(config, index, block_steps, sample, kind, threads, th)
            # float32 scores (a new array, partitioned in place): half the
            # partition's time, and within 1e-7 of float64's sum.
            value = _scores.retained(_scores.values(sample, kind, np.float32), kept, nnz, overwrite=True)
        if value > best_value:
            best, best_value = o, value
    return best


def _blocks_of(stream: np.ndarray, picks: npt.NDArray[np.int64], bw: int) -> np.ndarray:
    """Blocks ``picks`` (ascending) of ``bw`` weights of ``stream``, one after
    another; the last block may be short."""
    full = stream.size // bw
    whole = picks[picks < full]
    out = stream[: full * bw].reshape(full, bw)[whole].reshape(-1)
    return np.concatenate([out, stream[full * bw :]]) if whole.size < picks.size else out


def _meets(rate: float, nnz: int, size: int) -> bool:
    """Whether ``nnz`` kept of ``size`` is within the rate tolerance of ``rate``."""
    return abs(1.0 - nnz / size - rate) <= RATE_TOLERANCE


def _value(res: Found, stream: np.ndarray, kind: str, rate: Optional[float], block_steps: int,
           threads: Optional[int]) -> Tuple[bool, float]:
    """How good one search's result is, to pick between orders: whether it
    meets the rate (a small tensor's kept count can jump past the target in
    one order and not the other), then retained importance at a target rate or
    the objective at a fixed ``lam``."""
    index, nnz, lam, config, thresholds = res
    kept = _presets.kept_score(config, index, block_steps, stream, kind, threads, thresholds)
    if rate is None:
        return True, kept - lam * nnz
    return _meets(rate, nnz, stream.size), _scores.retained(_scores.values(stream, kind), kept, nnz)


def _search_best(configs: List[VDConfig], src: np.ndarray, kind: str, rate: Optional[float], lam: Optional[float],
                 block_steps: int, threads: Optional[int], budget: int, factors: Factors = None,
                 refine: bool = False) -> Found:
    """Search with each config and keep the result retaining the most importance (first on ties).

    At a fixed ``lam`` that is the search's own objective, ``sum over kept
    (score - lam)``; at a target rate the achieved counts differ slightly, so
    the kept score is taken relative to magnitude pruning at the same count.
    """
    best: Optional[Found] = None
    best_value = -np.inf
    scores = _scores.values(src, kind) if len(configs) > 1 and rate is not None else None
    fs = None if factors is None else list(factors)
    for config in configs:
        if rate is not None:
            index, nnz, found_lam, _, th = _vitrust.search_rate(config, src, kind, rate, block_steps, threads, budget,
                                                                fs, refine)
        else:
            assert lam is not None
            index, nnz, _, th = _vitrust.search(config, src, kind, lam, block_steps, threads, budget, None, fs, refine)
            found_lam = lam
        if len(configs) > 1:
            kept = _presets.kept_score(config, index, block_steps, src, kind, threads, th)
            value = kept - found_lam * nnz if scores is None else _scores.retained(scores, kept, nnz)
            if value <= best_value:
                continue
            best_value = value
        best = (index, nnz, found_lam, config, th)
    assert best is not None  # the first config always wins against -inf
    return best


def _config(src: Optional[np.ndarray], kind: str, rate: Optional[float], lam: Optional[float], ratio: Any, flip_flops: Any,
            n_in: Any, comparator_bits: Any, threshold: Any, seed: Any) -> VDConfig:
    """The VD for ``prune``'s keyword arguments."""
    n_in = _checks.integer(n_in, "n_in", 1, _checks.MAX_N_IN)
    ratio = _checks.integer(ratio, "ratio", 1)
    if ratio * n_in > _checks.MAX_N_OUT:
        raise ValueError(f"ratio = {ratio} with n_in = {n_in} gives {ratio * n_in} mask bits per step; "
                         f"at most {_checks.MAX_N_OUT}")
    _checks.integer(flip_flops, "flip_flops", 1, _checks.MAX_FLIP_FLOPS)
    if n_in > flip_flops:
        raise ValueError(f"n_in = {n_in} exceeds flip_flops = {flip_flops}: need n_in <= flip_flops")
    if threshold is not None and comparator_bits is None:
        raise ValueError("threshold needs comparator_bits")
    if comparator_bits is None or threshold is None:
        if rate is not None:
            density = 1.0 - rate
        else:
            assert src is not None and lam is not None  # prune passes both when it passes no rate
            density = _share_above(src, kind, lam)
        if comparator_bits is None:
            comparator_bits, threshold = _vitrust.default_comparator(min(1.0 - density, 0.999999))
        else:
            nc = _checks.integer(comparator_bits, "comparator_bits", 1, _checks.MAX_COMPARATOR_BITS)
            threshold = int(min(max(round(density * 2**nc), 1), 2**nc))
    seed = _checks.integer(seed, "seed", 0, 2**64 - 1)
    return VDConfig(flip_flops, n_in, ratio * n_in, comparator_bits, threshold, seed=seed)


def _share_above(src: np.ndarray, kind: str, lam: float) -> float:
    """Share of scores above ``lam``: the density magnitude pruning would give."""
    above = 0
    for start in range(0, src.size, _CHUNK):
        s = _scores.values(src[start : start + _CHUNK], kind)
        above += int(np.count_nonzero(s > lam))
    return above / src.size


def expand(config: VDConfig, index: Any, n_weights: int, block_steps: int = _checks.DEFAULT_BLOCK_STEPS, *,
           threads: Optional[int] = None, thresholds: Any = None) -> np.ndarray:
    """The 1-D bool keep-mask of ``n_weights`` weights described by ``index``, in
    stream order; block ``b`` compares with ``thresholds[b]`` when given."""
    if not isinstance(config, VDConfig):
        raise TypeError(f"config: expected a vitrust.VDConfig, got {type(config).__name__}")
    n_weights = _checks.integer(n_weights, "n_weights", 1)
    block_steps = _checks.integer(block_steps, "block_steps", 1, _vitrust.MAX_BLOCK_STEPS)
    th = None if thresholds is None else _checks.thresholds_array(thresholds)
    return _vitrust.expand(config, _checks.index_array(index), n_weights, block_steps, _checks.threads(threads), th)
