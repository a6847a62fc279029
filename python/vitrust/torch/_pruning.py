"""The ``torch.nn.utils.prune`` method: :class:`ViterbiUnstructured`."""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Union, cast

import numpy as np
import torch
from torch.nn.utils import prune as _tprune

from .._calibrate import FULL_AIM, TOLERANCE
from .._prune import RateWarning
from .._prune import prune as _prune
from .._sparse import ViterbiSparse
from ._convert import scores

# Keyword options of vitrust.prune a pruning method may pass on.
OPTIONS = ("ratio", "flip_flops", "n_in", "comparator_bits", "threshold", "block_steps", "score", "seed",
           "threads", "effort", "tap_seeds", "config", "max_memory")
# Rate control's aim on the final mask (after the AND with an earlier mask), and what it guarantees.
_AIM = FULL_AIM


class ViterbiUnstructured(_tprune.BasePruningMethod):
    """Prunes a whole tensor to a Viterbi-decompressor-reachable mask.

    ``amount`` follows torch's own methods: a float in [0, 1] is the share of
    the weights still unpruned to prune now, an int their number; or give
    ``lam`` (the search's multiplier) instead for global pruning across
    tensors. On a tensor whose mask already dropped a share ``old``, a float
    ``amount`` leaves ``1 - (1 - old) * (1 - amount)`` of the whole tensor
    pruned (within 0.2 points). ``PRUNING_TYPE = "global"`` makes the search
    see the full tensor, as a VD mask covers it all: weights an earlier mask
    dropped score 0, so the new search avoids them, and the result is ANDed
    with that mask. Other keyword options go to ``vitrust.prune``
    (``ratio``, ``flip_flops``, ``score``, ``seed``, ...).

    After ``compute_mask``, ``sparse`` holds the search's ``ViterbiSparse``
    (its index describes a superset of the final mask, which ``export`` uses
    to store the tensor compressed).
    """

    PRUNING_TYPE = "global"

    def __init__(self, amount: Union[int, float, None] = None, *, lam: Optional[float] = None,
                 **options: Any) -> None:
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise TypeError(f"ViterbiUnstructured: unexpected option(s) {', '.join(sorted(unknown))}")
        if (amount is None) == (lam is None):
            raise ValueError("give exactly one of amount (share or count to prune) and lam (multiplier)")
        if amount is not None:
            _tprune._validate_pruning_amount_init(amount)
        self.amount, self.lam, self.options = amount, lam, options
        self.sparse: Optional[ViterbiSparse] = None
        self._found: Optional[ViterbiSparse] = None  # a search already done (see _Searched)

    def compute_mask(self, t: "torch.Tensor", default_mask: "torch.Tensor") -> "torch.Tensor":
        options = dict(self.options)
        score = options.pop("score", "abs")
        if self._found is not None:
            self.sparse, self._found = self._found, None
        elif self.amount is not None:
            remaining = int(torch.count_nonzero(default_mask))
            _tprune._validate_pruning_amount(self.amount, remaining)
            k = _tprune._compute_nparams_toprune(self.amount, remaining)
            if k == 0:
                return default_mask.clone(memory_format=torch.contiguous_format)
            if k >= remaining:
                return torch.zeros_like(default_mask)
            fresh = remaining == t.numel()
            prior = None if fresh else (default_mask != 0).cpu().reshape(-1).numpy()
            s = scores(t, None if fresh else default_mask, score)
            self.sparse = _prune_to_count(s, remaining - k, prior, options)
        else:
            s = scores(t, default_mask, score)
            self.sparse = _prune(s, lam=self.lam, scores=s, **options)
        keep = torch.from_numpy(self.sparse.mask()).to(device=default_mask.device, dtype=default_mask.dtype)
        return keep * default_mask

    @classmethod
    def apply(cls, module: Any, name: Any, *args: Any, importance_scores: Any = None,
              **options: Any) -> "ViterbiUnstructured":
        """Prunes ``module.name`` with a new method made from ``args`` and ``options``
        (``amount`` or ``lam``, then ``vitrust.prune``'s options), as torch's methods do."""
        method = super().apply(module, name, *args, importance_scores=importance_scores, **options)
        return cast(ViterbiUnstructured, method)


class _Searched(ViterbiUnstructured):
    """The method of a tensor whose search is done already (``prune_model``'s
    global λ): its first mask is that search's, so the tensor is not searched twice."""

    def __init__(self, found: ViterbiSparse, **options: Any) -> None:
        super().__init__(lam=found.lam, **options)
        self._found = found


def _prune_to_count(s: np.ndarray, kept: int, prior: Optional[np.ndarray], options: Dict[str, Any]) -> ViterbiSparse:
    """The search keeping ``kept`` weights of the final mask (the VD mask ANDed with ``prior``).

    The VD sometimes keeps weights ``prior`` already dropped (score 0), which
    the AND removes again; so the VD's own rate is corrected by that surplus
    and searched again, a few times at most, and the closest result wins.
    """
    n = s.size
    rate, best, last = 1.0 - kept / n, None, None
    for _ in range(6):
        with warnings.catch_warnings():
            if prior is not None:  # the VD's own rate is only a means here; the final mask is checked below
                warnings.simplefilter("ignore", RateWarning)
            sp = _prune(s, rate, scores=s, **options)
        got = sp.nnz if prior is None else int(np.count_nonzero(sp.mask().reshape(-1) & prior))
        if best is None or abs(got - kept) < best[0]:
            best = (abs(got - kept), got, sp)
        if prior is None or abs(got - kept) <= _AIM * n:
            break
        # Kept falls with the rate: a secant step, or at first the share of the VD's
        # kept weights the AND leaves (how much one more kept by the VD adds).
        slope = (got - last[1]) / (rate - last[0]) if last is not None and rate != last[0] else 0.0
        if not slope < 0:
            slope = -n * max(got / max(sp.nnz, 1), 0.05)
        last, rate = (rate, got), min(max(rate + (kept - got) / slope, 0.0), 0.999999)
    assert best is not None
    miss, got, sp = best
    if prior is not None and miss > TOLERANCE * n:
        warnings.warn(f"viterbi_unstructured: requested rate {1 - kept / n:.2%}, achieved {1 - got / n:.2%} "
                      "(the closest VD mask found)", RateWarning, stacklevel=5)
    return sp


def viterbi_unstructured(module: "torch.nn.Module", name: str, amount: Union[int, float],
                         importance_scores: Optional["torch.Tensor"] = None, **options: Any) -> "torch.nn.Module":
    """Prunes ``module.name`` like ``torch.nn.utils.prune.l1_unstructured``, to a VD-reachable mask.

    ``amount``: the share (float) or number (int) of the still unpruned
    weights to prune, as in torch. ``importance_scores`` (same shape) replace
    ``|w|`` as the importance; ``options`` go to ``vitrust.prune``. Returns the
    module.
    """
    ViterbiUnstructured.apply(module, name, amount=amount, importance_scores=importance_scores, **options)
    return module


def attached(m: "torch.nn.Module", name: str) -> Optional[ViterbiUnstructured]:
    """The most recent vitrust pruning of ``m.name`` still attached, if any."""
    found = None
    for hook in m._forward_pre_hooks.values():
        methods = getattr(hook, "_pruning_methods", (hook,))
        for method in methods:
            if isinstance(method, ViterbiUnstructured) and getattr(method, "_tensor_name", None) == name:
                found = method
    return found
