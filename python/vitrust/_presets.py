"""``effort`` presets for ``prune`` and the tap-seed trial that ``"best"`` uses.

Each preset fixes the VD's size (``flip_flops``, ``n_in``) and how many tap
seeds are tried per tensor; the comparator always follows the rate
(:func:`vitrust.default_comparator`). The choices come from
``benches/explore.py`` and ``benches/quality.py`` (figures in the README,
"Quality", and ``benches/QUALITY.md``): efficiency against the
rate-distortion bound grows by about 0.25 points per added flip-flop from 10
to 16 (more below), ``n_in = 2`` at the same ratio adds up to 1 point at high
rates on Gaussian draws (0.2 on real layers) for 2x the time per weight,
and the best of 4 tap seeds 0-0.2 points, while the
search costs ``2^k`` per step, so each preset buys quality with time
(docs/algorithm.md, "Presets" and "Effort and speed").
"""

from __future__ import annotations

from typing import Any, Dict, Literal, NamedTuple, Optional, Tuple

import numpy as np
import numpy.typing as npt

from . import _checks, _scores, _vitrust


# The presets' names, for type checkers (``prune(effort=...)``).
Effort = Literal["fast", "default", "best"]


class Preset(NamedTuple):
    """One ``effort`` preset: the VD's size, the number of tap seeds tried, how
    blocks choose their thresholds and how the stream order is chosen."""

    flip_flops: int
    n_in: int
    tap_seeds: int
    # Multiples of each block's predicted threshold the search tries (None:
    # the config's threshold for every block), then the winner's neighbours
    # while they improve when `refine` (docs/algorithm.md, "Thresholds per block").
    factors: Optional[Tuple[float, ...]]
    refine: bool
    # "C", "auto" (chosen on a sample of blocks) or "both" (searched in full).
    order: str


# What `block_thresholds=True` tries: the predicted threshold scaled by each.
FACTORS = (0.75, 1.0, 1.33)

# n_in = 1 throughout: n_in = 2 at the same index cost buys about what one
# more flip-flop buys (+0.2 points on real layers) for about what it costs
# (2x per pass: two table lookups per branch in the vectorised search). The order is
# chosen per tensor from "default" on (format v2: +0.6 points against the
# bound on real layers for 1.8x the time); "fast" keeps row-major order for
# speed. "best" spends its time on per-block thresholds (three candidates)
# at 13 flip-flops rather than on 16 flip-flops and two tap seeds: over all
# 98 layers of four real models at 50-95 %, 0.986 of the bound for 20x the
# default's time, where 12 flip-flops with refined thresholds gave 0.985
# for 14x and 16 flip-flops with two seeds 0.984 for 94x (benches/presets_real.py,
# figures in benches/QUALITY.md, "Presets on real layers").
EFFORTS: Dict[str, Preset] = {
    "fast": Preset(flip_flops=8, n_in=1, tap_seeds=1, factors=None, refine=False, order="C"),
    "default": Preset(flip_flops=10, n_in=1, tap_seeds=1, factors=None, refine=False, order="auto"),
    "best": Preset(flip_flops=13, n_in=1, tap_seeds=1, factors=FACTORS, refine=False, order="auto"),
}


def resolve(effort: Any, flip_flops: Optional[int], n_in: Optional[int], tap_seeds: Optional[int]) -> Tuple[int, int, int]:
    """The preset's values, each replaced by the caller's when given.

    When only ``flip_flops`` is given and it is below the preset's ``n_in``,
    ``n_in`` drops to fit (``n_in <= flip_flops``).
    """
    if not isinstance(effort, str) or effort not in EFFORTS:
        raise ValueError(f"effort = {effort!r}: expected one of {tuple(EFFORTS)}")
    p = EFFORTS[effort]
    ff = p.flip_flops if flip_flops is None else flip_flops
    if n_in is None:
        fits = p.n_in if flip_flops is None else _checks.integer(ff, "flip_flops", 1, _checks.MAX_FLIP_FLOPS)
        n_in = min(p.n_in, max(fits, 1))
    seeds = p.tap_seeds if tap_seeds is None else _checks.integer(tap_seeds, "tap_seeds", 1, _checks.MAX_TAP_SEEDS)
    return ff, n_in, seeds


def kept_score(config: _vitrust.VDConfig, index: npt.NDArray[np.uint64], block_steps: int, src: np.ndarray, kind: str,
               threads: Optional[int], thresholds: Optional[npt.NDArray[np.uint8]] = None) -> float:
    """Sum of the kept weights' scores."""
    v = _vitrust.gather(config, index, block_steps, src, threads, thresholds)[0]
    return float(_scores.values(v, kind).sum())
