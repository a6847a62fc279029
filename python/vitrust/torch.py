"""PyTorch integration: a ``torch.nn.utils.prune`` method, model-wide pruning,
and export to / loading from vitrust safetensors files.

``import vitrust`` never imports torch; ``import vitrust.torch`` does (install
it with ``pip install 'vitrust[torch]'``).

- :class:`ViterbiUnstructured` and :func:`viterbi_unstructured` work like
  ``torch.nn.utils.prune.l1_unstructured``: the module gets ``name_orig``
  (a parameter), ``name_mask`` (a buffer) and a forward pre-hook, and
  ``prune.remove`` makes the pruning permanent.
- :func:`prune_model` prunes every weight of two or more dimensions, with one
  multiplier λ across layers (global pruning) or per-layer rates.
- :func:`export` writes the pruned model to a vitrust file (pruned weights as
  index plus kept values, everything else dense); :func:`load` puts such a
  file back into a model.

Dtypes: the search needs only scores, so it always runs on float32 copies of
float16 and bfloat16 parameters (exact for both); stored values keep float16,
float32 and float64, and bfloat16 values are stored as float32 (exact; numpy
has no bfloat16 of its own). Loading casts back to each parameter's dtype.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

try:
    import torch
    from torch.nn.utils import prune as _tprune
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("vitrust.torch needs PyTorch: pip install 'vitrust[torch]'") from e

from . import _checks
from ._prune import RateWarning
from ._prune import prune as _prune
from ._sparse import ViterbiSparse
from ._vitrust import VDConfig

__all__ = [
    "ViterbiUnstructured",
    "viterbi_unstructured",
    "prune_model",
    "prunable_layers",
    "export",
    "load",
    "to_numpy",
]

# Keyword options of vitrust.prune a pruning method may pass on.
_OPTIONS = ("ratio", "flip_flops", "n_in", "comparator_bits", "threshold", "block_steps", "score", "seed",
            "threads", "effort", "tap_seeds", "config")


def to_numpy(t: "torch.Tensor") -> np.ndarray:
    """A CPU numpy copy of ``t``; bfloat16 becomes float32 (exactly)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.cpu().contiguous().numpy()


def _scores(t: "torch.Tensor", default_mask: "torch.Tensor", score: str) -> np.ndarray:
    """Non-negative float32 scores; weights the mask already dropped score 0."""
    s = t.detach().float().abs() if score == "abs" else t.detach().float() ** 2
    return (s * (default_mask != 0)).cpu().contiguous().numpy()


class ViterbiUnstructured(_tprune.BasePruningMethod):
    """Prunes a whole tensor to a Viterbi-decompressor-reachable mask.

    ``amount`` is the share of the tensor to prune (a float in [0, 1]) or the
    number of weights (an int), counted over the whole tensor; or give ``lam``
    (the search's multiplier) instead for global pruning across tensors.
    ``PRUNING_TYPE = "global"`` makes an iterative pruning see the full tensor:
    weights an earlier mask dropped score 0, so the new search avoids them, and
    the result is ANDed with that mask. Other keyword options go to
    ``vitrust.prune`` (``ratio``, ``flip_flops``, ``score``, ``seed``, ...).

    After ``compute_mask``, ``sparse`` holds the search's ``ViterbiSparse``
    (its index describes a superset of the final mask, which :func:`export`
    uses to store the tensor compressed).
    """

    PRUNING_TYPE = "global"

    def __init__(self, amount: Union[int, float, None] = None, *, lam: Optional[float] = None, **options: Any) -> None:
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(f"ViterbiUnstructured: unexpected option(s) {', '.join(sorted(unknown))}")
        if (amount is None) == (lam is None):
            raise ValueError("give exactly one of amount (share or count to prune) and lam (multiplier)")
        if amount is not None:
            _tprune._validate_pruning_amount_init(amount)
        self.amount, self.lam, self.options = amount, lam, options
        self.sparse: Optional[ViterbiSparse] = None

    def compute_mask(self, t: "torch.Tensor", default_mask: "torch.Tensor") -> "torch.Tensor":
        n = t.numel()
        options = dict(self.options)
        score = options.pop("score", "abs")
        if score not in ("abs", "square"):
            raise ValueError(f"score = {score!r}: expected 'abs' or 'square'")
        if self.amount is not None:
            _tprune._validate_pruning_amount(self.amount, n)
            k = _tprune._compute_nparams_toprune(self.amount, n)
            if k == 0:
                return default_mask.clone(memory_format=torch.contiguous_format)
            if k >= n:
                return torch.zeros_like(default_mask)
            spec: Dict[str, Any] = {"rate": k / n}
        else:
            spec = {"lam": self.lam}
        s = _scores(t, default_mask, score)
        self.sparse = _prune(s, scores=s, **spec, **options)
        keep = torch.from_numpy(self.sparse.mask()).to(device=default_mask.device, dtype=default_mask.dtype)
        return keep * default_mask

    @classmethod
    def apply(cls, module: "torch.nn.Module", name: str, amount: Any = None, importance_scores: Any = None,
              **options: Any) -> "ViterbiUnstructured":
        return super().apply(module, name, amount=amount, importance_scores=importance_scores, **options)


def viterbi_unstructured(module: "torch.nn.Module", name: str, amount: Union[int, float],
                         importance_scores: Optional["torch.Tensor"] = None, **options: Any) -> "torch.nn.Module":
    """Prunes ``module.name`` like ``torch.nn.utils.prune.l1_unstructured``, to a VD-reachable mask.

    ``importance_scores`` (same shape) replace ``|w|`` as the importance;
    ``options`` go to ``vitrust.prune``. Returns the module.
    """
    ViterbiUnstructured.apply(module, name, amount=amount, importance_scores=importance_scores, **options)
    return module


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


def _current(m: "torch.nn.Module", name: str) -> Tuple["torch.Tensor", "torch.Tensor"]:
    """``(weights, mask)`` of a maybe already pruned module (mask of ones otherwise)."""
    w = getattr(m, name + "_orig", None)
    if w is None:
        w = getattr(m, name)
        return w, torch.ones_like(w)
    return w, getattr(m, name + "_mask")


def layer_config(rate: float, **options: Any) -> VDConfig:
    """The VD ``vitrust.prune(..., rate=rate, **options)`` would use (found on a small stand-in tensor)."""
    stand_in = np.linspace(1.0, 2.0, 4096, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RateWarning)  # only the config matters, not the stand-in's rate
        return _prune(stand_in, min(max(rate, 0.0), 0.999), **options).config


def _kept_at(layers: List[Tuple["torch.Tensor", "torch.Tensor"]], configs: List[VDConfig], lam: float,
             score: str, options: Mapping[str, Any]) -> List[int]:
    """Kept weights per layer at ``lam`` (each layer on its fixed VD)."""
    kept = []
    for (w, mask), config in zip(layers, configs):
        s = _scores(w, mask, score)
        sp = _prune(s, lam=lam, scores=s, config=config, **options)
        kept.append(int(np.count_nonzero(sp.mask() & (s > 0))))
    return kept


def global_lam(layers: List[Tuple["torch.Tensor", "torch.Tensor"]], rate: float, configs: List[VDConfig], *,
               score: str = "abs", start: Optional[float] = None, max_iter: int = 50,
               **options: Any) -> Tuple[float, List[int]]:
    """The one multiplier λ at which the layers together prune ``rate`` of their weights.

    Each layer keeps its VD (``configs``) fixed, so the kept count only falls
    as λ grows, and λ is found by bisection (geometric once both ends are
    positive) from ``start`` (default: the magnitude-pruning threshold). It
    stops within 0.2 points of the request, or when the bracket is exhausted,
    and returns ``(λ, kept per layer)`` of the closest λ tried. ``options``:
    ``block_steps``, ``threads``.
    """
    rate = _checks.rate(rate)
    n = sum(w.numel() for w, _ in layers)
    target, tol = (1.0 - rate) * n, max(0.002 * n, 0.5)
    all_s = np.concatenate([_scores(w, m, score).ravel() for w, m in layers])
    lo, hi = 0.0, float(all_s.max()) * 1.0001 + 1e-30
    if start is None:
        start = float(np.partition(all_s, int(rate * (n - 1)))[int(rate * (n - 1))])
    lam, best = start, (math.inf, start, [])
    for _ in range(max_iter):
        kept = _kept_at(layers, configs, lam, score, options)
        err = sum(kept) - target
        best = min(best, (abs(err), lam, kept), key=lambda b: b[0])
        if abs(err) <= tol:
            break
        if err > 0:
            lo = lam  # too many kept: raise λ
        else:
            hi = lam
        nxt = math.sqrt(lo * hi) if lo > 0 else hi / 4
        if not lo < nxt < hi or hi - lo <= 1e-12 * hi:
            break
        lam = nxt
    return best[1], best[2]


def prune_model(model: "torch.nn.Module", rate: float, *, per_layer: Optional[Mapping[str, float]] = None,
                ignore: Iterable[Any] = (), global_rate: bool = True, name: str = "weight",
                **options: Any) -> Dict[str, ViterbiSparse]:
    """Prunes every floating-point weight of 2+ dimensions in ``model``.

    ``global_rate=True`` (the default) finds one multiplier λ at which all
    these layers together prune ``rate`` of their weights (:func:`global_lam`):
    layers with many small weights lose more. ``global_rate=False`` prunes each
    layer to ``rate``. ``per_layer`` maps module names to their own rates
    (those layers leave the global pool). ``ignore`` holds module-name globs and
    module types left alone. ``options`` go to ``vitrust.prune``. Returns the
    search result per pruned parameter (``"fc1.weight"`` -> ``ViterbiSparse``).
    """
    rate = _checks.rate(rate)
    per_layer = dict(per_layer or {})
    layers = prunable_layers(model, ignore, name)
    known = {n for n, _ in layers}
    unknown = set(per_layer) - known
    if unknown:
        raise ValueError(f"per_layer: no prunable layer named {', '.join(sorted(unknown))}")
    rest = [(n, m) for n, m in layers if n not in per_layer]
    plan: List[Tuple[str, "torch.nn.Module", Dict[str, Any]]] = [
        (n, m, {"amount": _checks.rate(per_layer[n])}) for n, m in layers if n in per_layer
    ]
    if global_rate and rest:
        lam, configs = _global_plan([_current(m, name) for _, m in rest], rate, options)
        run = {k: options[k] for k in ("block_steps", "threads", "score") if k in options}
        for (n, m), config in zip(rest, configs):
            ViterbiUnstructured.apply(m, name, lam=lam, config=config, **run)
    else:
        plan += [(n, m, {"amount": rate}) for n, m in rest]
    for n, m, spec in plan:
        ViterbiUnstructured.apply(m, name, amount=spec["amount"], **options)
    out = {}
    for n, m in layers:
        if n in per_layer or n in {r for r, _ in rest}:
            sp = _sparse_of(m, name, to_numpy(getattr(m, name)))
            if sp is not None:
                out[f"{n}.{name}" if n else name] = sp
    return out


def _global_plan(layers: List[Tuple["torch.Tensor", "torch.Tensor"]], rate: float,
                 options: Mapping[str, Any]) -> Tuple[float, List[VDConfig]]:
    """λ and the per-layer VDs for global pruning.

    Round one gives every layer the VD for the global rate and solves λ; round
    two gives each layer the VD (comparator) for the rate it reached and
    solves λ again from there, since a comparator matched to a layer's own
    density keeps more of its importance.
    """
    score = options.get("score", "abs")
    vd_opts = {k: v for k, v in options.items() if k not in ("score", "block_steps", "threads", "config")}
    run = {k: options[k] for k in ("block_steps", "threads") if k in options}
    configs = [layer_config(rate, **vd_opts)] * len(layers)
    lam, kept = global_lam(layers, rate, configs, score=score, **run)
    configs = [layer_config(1.0 - k / w.numel(), **vd_opts) for k, (w, _) in zip(kept, layers)]
    lam, kept = global_lam(layers, rate, configs, score=score, start=lam, **run)
    achieved = 1.0 - sum(kept) / sum(w.numel() for w, _ in layers)
    if abs(achieved - rate) > 0.002:
        warnings.warn(RateWarning(f"global rate {rate:.4f} requested, {achieved:.4f} achieved: no lam reaches it "
                                  "within 0.2 points; this is the closest"), stacklevel=3)
    return lam, configs


def _method(m: "torch.nn.Module", name: str) -> Optional[ViterbiUnstructured]:
    """The most recent vitrust pruning of ``m.name`` still attached, if any."""
    found = None
    for hook in m._forward_pre_hooks.values():
        methods = getattr(hook, "_pruning_methods", (hook,))
        for method in methods:
            if isinstance(method, ViterbiUnstructured) and getattr(method, "_tensor_name", None) == name:
                found = method
    return found


def _sparse_of(m: "torch.nn.Module", name: str, dense: np.ndarray) -> Optional[ViterbiSparse]:
    """``dense`` (the masked weights) stored on the VD index of ``m.name``'s vitrust pruning.

    The index describes a superset of the current mask (an AND with other masks
    only removes weights), so the values at the extra positions are zeros and
    the dense tensor is reproduced exactly. ``None`` when no such index exists.
    """
    method = _method(m, name)
    if method is None or method.sparse is None or method.sparse.shape != dense.shape:
        return None
    sp = method.sparse
    vd_mask = sp.mask()
    if np.count_nonzero(dense[~vd_mask]):
        return None  # weights outside the VD mask: not ours to compress
    values = np.ascontiguousarray(dense[vd_mask])
    return ViterbiSparse(sp.shape, sp.config, sp.block_steps, sp.index, values, sp.lam, _trusted=True, _starts=sp._starts)


def state_tensors(model: "torch.nn.Module") -> Dict[str, Any]:
    """The model's state as vitrust tensors: pruned weights (vitrust masks) as
    ``ViterbiSparse`` under their plain names, everything else as numpy arrays."""
    sd = model.state_dict()
    out: Dict[str, Any] = {}
    for key, value in sd.items():
        if key.endswith("_mask") and key[: -len("_mask")] + "_orig" in sd:
            continue
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in sd:
            base = key[: -len("_orig")]
            prefix, _, attr = base.rpartition(".")
            m = model.get_submodule(prefix)
            dense = to_numpy(value * sd[base + "_mask"])
            if not np.issubdtype(dense.dtype, np.floating):
                out[base] = dense
                continue
            sp = _sparse_of(m, attr, dense)
            out[base] = sp if sp is not None else dense
        else:
            out[key] = to_numpy(value)
    return out


def export(model: "torch.nn.Module", path: Any, metadata: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Writes ``model`` to a vitrust safetensors file; returns what was written.

    Weights pruned with vitrust are stored as index plus kept values; the rest
    (including weights pruned by other methods, as their masked dense values)
    are plain tensors under their usual ``state_dict`` names.
    """
    from . import save_file

    tensors = state_tensors(model)
    save_file(tensors, path, metadata)
    return tensors


def load(model: "torch.nn.Module", path: Any, *, masks: bool = True, strict: bool = True) -> "torch.nn.Module":
    """Loads a vitrust file (from :func:`export` or ``vitrust prune``) into ``model``.

    Each tensor is cast to its parameter's dtype and device. With ``masks``,
    every pruned tensor's mask is attached as a ``torch.nn.utils.prune`` mask
    (so fine-tuning keeps it); without, the dense pruned weights are copied in.
    ``strict`` refuses names the model lacks and model tensors the file lacks.
    """
    from . import load_file

    tensors = load_file(path)
    expected = set(state_tensors_names(model))
    if strict:
        missing, extra = expected - set(tensors), set(tensors) - expected
        if missing or extra:
            raise ValueError(
                f"{path}: does not match the model (missing: {sorted(missing) or 'none'}, "
                f"unexpected: {sorted(extra) or 'none'})"
            )
    with torch.no_grad():
        for key, t in tensors.items():
            if key not in expected:
                continue
            prefix, _, attr = key.rpartition(".")
            m = model.get_submodule(prefix)
            _load_one(m, attr, t, masks, key)
    return model


def state_tensors_names(model: "torch.nn.Module") -> List[str]:
    """The plain names of the model's state (``weight`` for ``weight_orig`` + ``weight_mask``)."""
    sd = model.state_dict()
    names = []
    for key in sd:
        if key.endswith("_mask") and key[: -len("_mask")] + "_orig" in sd:
            continue
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in sd:
            key = key[: -len("_orig")]
        names.append(key)
    return names


def _load_one(m: "torch.nn.Module", attr: str, t: Any, masks: bool, key: str) -> None:
    orig = getattr(m, attr + "_orig", None)
    target = orig if orig is not None else getattr(m, attr)
    dense = t.to_dense() if isinstance(t, ViterbiSparse) else np.asarray(t)
    if tuple(dense.shape) != tuple(target.shape):
        raise ValueError(f"{key}: shape {tuple(dense.shape)} in the file, {tuple(target.shape)} in the model")
    if dense.dtype.name == "bfloat16":
        dense = dense.astype(np.float32)
    target.copy_(torch.from_numpy(np.ascontiguousarray(dense)).to(dtype=target.dtype, device=target.device))
    if not isinstance(t, ViterbiSparse) or not masks:
        if orig is not None:  # a pruned module getting dense weights: keep its mask consistent
            getattr(m, attr + "_mask").copy_((target != 0).to(getattr(m, attr + "_mask").dtype))
        return
    mask = torch.from_numpy(t.mask()).to(device=target.device)
    if orig is not None:
        getattr(m, attr + "_mask").copy_(mask.to(getattr(m, attr + "_mask").dtype))
        setattr(m, attr, orig * getattr(m, attr + "_mask"))
    else:
        _tprune.custom_from_mask(m, attr, mask)
