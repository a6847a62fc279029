"""A pruned model as vitrust tensors, and writing them to a file."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from .. import _values
from .._sparse import ViterbiSparse
from ._centroids import shared, shared_tensors
from ._convert import to_numpy
from ._pruning import attached


def sparse_of(m: "torch.nn.Module", name: str, dense: np.ndarray) -> Optional[ViterbiSparse]:
    """``dense`` (the masked weights) stored on the VD index of ``m.name``'s vitrust pruning.

    The index describes a superset of the current mask (an AND with other masks
    only removes weights), so the values at the extra positions are zeros and
    the dense tensor is reproduced exactly. ``None`` when no such index exists.
    """
    method = attached(m, name)
    if method is None or method.sparse is None or method.sparse.shape != dense.shape:
        return None
    sp = method.sparse
    vd_mask = sp.mask()
    if np.count_nonzero(dense[~vd_mask]):
        return None  # weights outside the VD mask: not ours to compress
    # Values in the stream's order (C, or column by column for order "F"):
    # boolean indexing gives a fresh 1-D array.
    values = sp._to_stream(dense)[sp._to_stream(vd_mask)]
    return ViterbiSparse._from_core(sp.shape, sp.config, sp.block_steps, sp.index, values, sp.lam, starts=sp._starts,
                                    thresholds=sp.thresholds, order=sp.order)


def _pair(sd: Mapping[str, Any], key: str) -> Optional[str]:
    """The plain name of ``key`` when it is half of a ``name_orig`` + ``name_mask`` pair."""
    for half, other in (("_orig", "_mask"), ("_mask", "_orig")):
        if key.endswith(half) and key[: -len(half)] + other in sd:
            return key[: -len(half)]
    return None


def state_tensors(model: "torch.nn.Module") -> Dict[str, Any]:
    """The model's state as vitrust tensors: pruned weights (vitrust masks) as
    ``ViterbiSparse`` under their plain names, everything else as numpy arrays
    of the tensors' shapes (0-d included)."""
    sd = model.state_dict()
    out: Dict[str, Any] = {}
    held = shared_tensors(model)
    for plain in held:  # shared centroids: encoded with exactly their codes and centroids
        prefix, _, attr = plain.rpartition(".")
        m = model.get_submodule(prefix)
        out[plain] = shared(m, attr).encoded(m)  # type: ignore[union-attr]
    skip = {k for keys in held.values() for k in keys}
    for key, value in sd.items():
        if key in skip:
            continue
        base = _pair(sd, key)
        if base is None:
            out[key] = to_numpy(value)
        elif key.endswith("_orig"):
            prefix, _, attr = base.rpartition(".")
            dense = to_numpy(value * sd[base + "_mask"])
            floating = dense.dtype.kind == "f" or dense.dtype.name == "bfloat16"
            sp = sparse_of(model.get_submodule(prefix), attr, dense) if floating else None
            out[base] = dense if sp is None else sp
    return out


def state_tensors_names(model: "torch.nn.Module") -> List[str]:
    """The plain names of the model's state (``weight`` for ``weight_orig`` + ``weight_mask``)."""
    sd = model.state_dict()
    held = shared_tensors(model)
    names = list(held)
    skip = {k for keys in held.values() for k in keys}
    for key in sd:
        if key in skip:
            continue
        base = _pair(sd, key)
        if base is None:
            names.append(key)
        elif key.endswith("_orig"):
            names.append(base)
    return names


def export(model: "torch.nn.Module", path: Any, metadata: Optional[Mapping[str, str]] = None, *,
           values: Optional[str] = None, group: int = _values.DEFAULT_GROUP) -> Dict[str, Any]:
    """Writes ``model`` to a vitrust safetensors file; returns what was written.

    Weights pruned with vitrust are stored as index plus kept values; the rest
    (including weights pruned by other methods, as their masked dense values)
    are plain tensors under their usual ``state_dict`` names. ``values``
    encodes the kept values as :func:`vitrust.save_file` does (``"int8"``,
    ``"codebook4"``, ...); weights with shared centroids
    (:func:`share_centroids`) are stored with exactly their centroids and
    codes unless ``values`` asks for another encoding.
    """
    from .. import save_file

    tensors = state_tensors(model)
    save_file(tensors, path, metadata, values=values, group=group)
    return tensors
