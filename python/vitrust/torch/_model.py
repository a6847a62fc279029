"""Model-wide pruning: layer discovery and the global λ search."""

from __future__ import annotations

import fnmatch
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import torch

from .. import _checks, _presets, _vitrust
from .._calibrate import TOLERANCE, Calibrator
from .._prune import RateWarning, _config
from .._sparse import ViterbiSparse
from .._vitrust import VDConfig
from ._convert import scores, to_numpy
from ._pruning import OPTIONS, ViterbiUnstructured, _Searched
from ._export import sparse_of


def _matches(name: str, module: "torch.nn.Module", ignore: Iterable[Any]) -> bool:
    for pat in ignore:
        if isinstance(pat, str) and fnmatch.fnmatchcase(name, pat):
            return True
        if isinstance(pat, type) and isinstance(module, pat):
            return True
    return False


def prunable_layers(model: "torch.nn.Module", ignore: Iterable[Any] = (),
                    name: str = "weight") -> List[Tuple[str, "torch.nn.Module"]]:
    """``(module name, module)`` of each module whose ``name`` parameter is floating point with 2+ dims.

    ``ignore`` holds module-name globs (``"classifier.*"``) and module types.
    """
    out = []
    for mname, m in model.named_modules():
        p = getattr(m, name + "_orig", None)
        if p is None:
            p = m._parameters.get(name)
        if p is None or p.dim() < 2 or not p.is_floating_point() or _matches(mname, m, ignore):
            continue
        out.append((mname, m))
    return out


def _current(m: "torch.nn.Module", name: str) -> Tuple["torch.Tensor", Optional["torch.Tensor"]]:
    """``(weights, mask)`` of a maybe already pruned module (mask ``None`` when it is not)."""
    w = getattr(m, name + "_orig", None)
    if w is None:
        return getattr(m, name), None
    return w, getattr(m, name + "_mask")


def layer_config(rate: float, **options: Any) -> VDConfig:
    """The VD ``vitrust.prune(..., rate=rate, **options)`` would pick (its first tap seed)."""
    given = options.get("config")
    if isinstance(given, VDConfig):
        return given
    ff, n_in, _ = _presets.resolve(options.get("effort", "default"), options.get("flip_flops"),
                                   options.get("n_in"), options.get("tap_seeds"))
    rate = min(max(float(rate), 0.0), 0.999999)
    return _config(None, "raw", rate, None, options.get("ratio", 5), ff, n_in, options.get("comparator_bits"),
                   options.get("threshold"), options.get("seed", 0))


# A matched comparator always prunes something, so λ can still move every layer.
MIN_MATCHED_RATE = 0.01

def global_search(layers: List[Tuple["torch.Tensor", Optional["torch.Tensor"]]], rate: float, options: Mapping[str, Any],
                  configs: Optional[List[VDConfig]] = None) -> Tuple[float, List[ViterbiSparse]]:
    """One λ at which the layers together prune ``rate`` of their unpruned weights.

    λ is first found on samples with every layer on the VD for ``rate``; then
    each layer gets the comparator for magnitude pruning's density at λ, and
    :func:`vitrust._calibrate.calibrate`'s procedure finds λ again, on samples and
    then with one full pass per layer (two when the first misses by more than
    0.1 point). Returns
    ``(λ, the search result per layer)``; results hold scores as values.
    ``configs`` fixes the VDs instead.
    """
    score = options.get("score", "abs")
    threads = _checks.threads(options.get("threads"))
    bs = _checks.integer(options.get("block_steps", _checks.DEFAULT_BLOCK_STEPS), "block_steps", 1,
                         _vitrust.MAX_BLOCK_STEPS)
    budget = options.get("max_memory")
    budget = _vitrust.DEFAULT_MAX_SEARCH_BYTES if budget is None else _checks.integer(budget, "max_memory", 1)
    vd_opts = {k: v for k, v in options.items() if k not in ("score", "block_steps", "threads", "max_memory")}
    s = [scores(w, mask, score).reshape(-1) for w, mask in layers]
    priors = [None if mask is None else (mask != 0).cpu().reshape(-1).numpy() for _, mask in layers]
    target = (1.0 - rate) * sum(w.numel() if p is None else int(np.count_nonzero(p)) for (w, _), p in zip(layers, priors))
    fixed = configs is not None or "config" in vd_opts or vd_opts.get("threshold") is not None
    if configs is None:
        configs = [layer_config(rate, **vd_opts)] * len(layers)
    elif len(configs) != len(layers):
        raise ValueError(f"configs: {len(configs)} for {len(layers)} layers")
    cal = Calibrator([(x, c, bs) for x, c in zip(s, configs)], score="raw", threads=threads, max_memory=budget)
    lam = cal.solve(target, tolerance=0.005)  # on samples, roughly: it only picks the comparators
    if not fixed:
        # Each layer's comparator matched to magnitude pruning's density at λ
        # (the rule of ``vitrust.prune(lam=...)``), then λ again. The VD's own
        # kept share at λ is no guide: on the global rate's VD it is far steeper
        # in λ, so a layer of large weights would reach density 1 and get a VD
        # that keeps everything, which no λ can prune.
        new = [layer_config(min(max(1.0 - k, MIN_MATCHED_RATE), 1.0), **vd_opts) for k in cal.share_above(lam)]
        if new != configs:
            cal.reconfigure(new)
            configs = new

    found: Dict[float, Tuple[List[np.ndarray], int]] = {}

    def full(lam: float) -> int:
        out, total = [], 0
        for x, c, prior in zip(s, configs, priors):
            index, kept, _, _ = _vitrust.search(c, x, "raw", lam, bs, threads, budget)
            if prior is not None:  # the final mask is ANDed with the earlier one
                kept = int(np.count_nonzero(_vitrust.expand(c, index, x.size, bs, threads) & prior))
            out.append(index)
            total += kept
        found[lam] = (out, total)
        return total

    lam = cal.solve(target, full=full, x0=cal.x)
    indices, kept = found[lam]
    n = sum(x.size for x in s)
    if abs(kept - target) > TOLERANCE * n:
        warnings.warn(f"prune_model: requested rate {rate:.2%} of the unpruned weights, achieved "
                      f"{1 - kept / max(target / (1 - rate), 1):.2%} (the closest one λ gives)",
                      RateWarning, stacklevel=3)
    out = []
    for (w, _), x, c, index in zip(layers, s, configs, indices):
        values, starts = _vitrust.gather(c, index, bs, x, threads)
        out.append(ViterbiSparse._from_core(tuple(w.shape), c, bs, index, values, lam, threads=threads,
                                            starts=starts))
    return lam, out


def global_lam(layers: List[Tuple["torch.Tensor", Optional["torch.Tensor"]]], rate: float,
               configs: Optional[List[VDConfig]] = None, **options: Any) -> Tuple[float, List[int]]:
    """The one multiplier λ at which the layers (``(weights, mask or None)`` pairs) together prune
    ``rate`` of their unpruned weights, and the kept count per layer (see :func:`global_search`).

    ``configs`` fixes each layer's VD (default: matched to its density at λ).
    """
    lam, found = global_search(layers, _checks.rate(rate), options, configs)
    return lam, [sp.nnz if m is None else int(np.count_nonzero(sp.mask() & (m != 0).cpu().numpy()))
                 for sp, (_, m) in zip(found, layers)]


def prune_model(model: "torch.nn.Module", rate: float, *, per_layer: Optional[Mapping[str, float]] = None,
                ignore: Iterable[Any] = (), global_rate: bool = True, name: str = "weight",
                **options: Any) -> Dict[str, ViterbiSparse]:
    """Prunes every floating-point weight of 2+ dimensions in ``model``.

    ``global_rate=True`` (the default) finds one multiplier λ at which all
    these layers together prune ``rate`` of their weights (within 0.2 points;
    counted, as in ``torch.nn.utils.prune.global_unstructured``, among the
    weights earlier masks kept): layers with many small weights lose more. The
    search is calibrated on samples of every layer and costs about two to three
    full search passes over the model. ``global_rate=False`` prunes each layer
    to ``rate``. ``per_layer`` maps module names to their own rates (those
    layers leave the global pool). ``ignore`` holds module-name globs and
    module types left alone. ``options`` go to ``vitrust.prune`` (with a global
    λ, ``effort="best"`` uses its VD size but only the first tap seed). Returns
    the search result per pruned parameter (``"fc1.weight"`` ->
    ``ViterbiSparse`` holding the masked weights).
    """
    rate = _checks.rate(rate)
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TypeError(f"prune_model: unexpected option(s) {', '.join(sorted(unknown))}")
    per_layer = dict(per_layer or {})
    layers = prunable_layers(model, ignore, name)
    known = {n for n, _ in layers}
    unknown = set(per_layer) - known
    if unknown:
        raise ValueError(f"per_layer: no prunable layer named {', '.join(sorted(unknown))}")
    rest = [(n, m) for n, m in layers if n not in per_layer]
    plan = [(m, _checks.rate(per_layer[n])) for n, m in layers if n in per_layer]
    if global_rate and rest:
        _, found = global_search([_current(m, name) for _, m in rest], rate, options)
        run = {k: options[k] for k in ("block_steps", "threads", "score") if k in options}
        for (_, m), sp in zip(rest, found):
            _Searched.apply(m, name, sp, config=sp.config, **run)
    else:
        plan += [(m, rate) for _, m in rest]
    for m, amount in plan:
        ViterbiUnstructured.apply(m, name, amount=amount, **options)
    out = {}
    for n, m in layers:
        stored = sparse_of(m, name, to_numpy(getattr(m, name)))
        if stored is not None:
            out[f"{n}.{name}" if n else name] = stored
    return out
