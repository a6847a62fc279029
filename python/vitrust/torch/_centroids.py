"""Shared centroids: Deep Compression's trained quantization on vitrust masks.

:func:`share_centroids` replaces each vitrust-pruned weight ``name`` by
``name_centroids`` (a parameter of ``2**B`` entries), ``name_codes`` (each
weight's centroid, a buffer) and its ``name_mask``: the forward pass uses
``centroids[codes] * mask``, so a gradient step moves each centroid by the
sum of the gradients of the weights sharing it, and the mask and the codes
stay fixed. :func:`vitrust.torch.export` stores such a weight encoded with
exactly those centroids and codes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import _values
from .._sparse import ViterbiSparse
from ._convert import to_numpy, to_torch
from ._pruning import attached


class SharedCentroids:
    """The forward pre-hook that forms ``name`` from its centroids, codes and mask.

    ``sparse`` is the VD index the weight lives on (its values are those of
    the time of sharing; :meth:`encoded` gives the current ones)."""

    def __init__(self, name: str, sparse: ViterbiSparse) -> None:
        self.name, self.sparse = name, sparse

    def weight(self, module: "torch.nn.Module") -> "torch.Tensor":
        n = self.name
        centroids: torch.Tensor = getattr(module, n + "_centroids")
        w: torch.Tensor = centroids[getattr(module, n + "_codes")] * getattr(module, n + "_mask")
        return w

    def __call__(self, module: "torch.nn.Module", inputs: Any) -> None:
        setattr(module, self.name, self.weight(module))

    def encoded(self, module: "torch.nn.Module") -> ViterbiSparse:
        """The weight as a ``ViterbiSparse`` whose values are encoded with the
        module's current centroids (sorted) and its codes."""
        n, sp = self.name, self.sparse
        centroids = to_numpy(getattr(module, n + "_centroids").detach())
        dtype = sp.dtype
        order = np.argsort(centroids.astype(np.float32), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        dense_codes = getattr(module, n + "_codes").cpu().numpy()
        kept = rank[sp._to_stream(dense_codes)[sp._to_stream(sp.mask())]]
        bits = _values.code_bits(self._encoding(centroids.size))
        packed = np.packbits(((kept[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1),
                             bitorder="little")
        table = centroids[order].astype(dtype).astype(np.float32)
        e = _values.EncodedValues(self._encoding(centroids.size), None, kept.size, packed, table, dtype)
        return ViterbiSparse(sp.shape, sp.config, sp.block_steps, sp.index, e, sp.lam, thresholds=sp.thresholds,
                             order=sp.order)

    @staticmethod
    def _encoding(n_centroids: int) -> str:
        return f"codebook{n_centroids.bit_length() - 1}"


def shared(m: "torch.nn.Module", name: str) -> Optional[SharedCentroids]:
    """The shared-centroid hook of ``m.name``, if any."""
    for hook in m._forward_pre_hooks.values():
        if isinstance(hook, SharedCentroids) and hook.name == name:
            return hook
    return None


def _codes_of(sp: ViterbiSparse, q: ViterbiSparse) -> np.ndarray:
    """Each weight's code in ``q`` (``sp`` quantized), as a dense int64 array (0 where pruned)."""
    e = q.encoded
    assert e is not None
    bits = np.unpackbits(e.codes, bitorder="little")[: e.size * e.bits].reshape(e.size, e.bits)
    kept = bits.astype(np.int64) @ (1 << np.arange(e.bits, dtype=np.int64))
    as_values = ViterbiSparse._from_core(sp.shape, sp.config, sp.block_steps, sp.index, kept.astype(np.float32),
                                         sp.lam, starts=sp._starts, thresholds=sp.thresholds, order=sp.order)
    return as_values.to_dense().astype(np.int64)


def share_centroids(model: "torch.nn.Module", values: str = "codebook5") -> List[str]:
    """Shares centroids in every vitrust-pruned weight of ``model`` whose mask
    is its VD's: ``values`` (``"codebook1"`` .. ``"codebook8"``) centroids
    fitted by k-means weighted by |weight| (as :meth:`ViterbiSparse.quantize`),
    each weight tied to its nearest. Returns the names of the weights shared.

    Fine-tune afterwards as usual: the optimiser sees ``name_centroids``
    (the pruned ``name_orig`` is gone), and export stores the result exactly.
    """
    from ._export import sparse_of

    values, _ = _values.encoding_arg(values, _values.DEFAULT_GROUP)
    if not values.startswith("codebook"):
        raise ValueError(f"values = {values!r}: centroids are shared by a codebook (codebook1 .. codebook8)")
    done = []
    for prefix, m in model.named_modules():
        for name, method in _vitrust_pruned(m):
            mask = getattr(m, name + "_mask")
            dense = to_numpy((getattr(m, name + "_orig") * mask).detach())
            sp = sparse_of(m, name, dense)
            if sp is None or not np.array_equal(sp.mask(), to_numpy(mask != 0)):
                continue  # another mask cut into the VD's: no index holds exactly this tensor
            q = sp.quantize(values)
            _replace(m, name, method, sp, q)
            done.append(f"{prefix}.{name}" if prefix else name)
    return done


def _vitrust_pruned(m: "torch.nn.Module") -> List[Tuple[str, Any]]:
    names = {getattr(h, "_tensor_name", None) for h in m._forward_pre_hooks.values()}
    return [(n, attached(m, n)) for n in sorted(x for x in names if x) if attached(m, n) is not None]


def _replace(m: "torch.nn.Module", name: str, method: Any, sp: ViterbiSparse, q: ViterbiSparse) -> None:
    """``m.name`` formed from ``q``'s centroids and codes instead of ``name_orig``."""
    orig = getattr(m, name + "_orig")
    for k, hook in list(m._forward_pre_hooks.items()):
        if hook is method or method in getattr(hook, "_pruning_methods", ()):
            del m._forward_pre_hooks[k]
    del m._parameters[name + "_orig"]
    if hasattr(m, name):
        delattr(m, name)
    assert q.codebook is not None
    centroids = to_torch(q.codebook).to(dtype=orig.dtype, device=orig.device)
    m.register_parameter(name + "_centroids", torch.nn.Parameter(centroids))
    m.register_buffer(name + "_codes", torch.from_numpy(_codes_of(sp, q)).to(orig.device))
    hook = SharedCentroids(name, sp)
    m.register_forward_pre_hook(hook)
    setattr(m, name, hook.weight(m))


def shared_tensors(model: "torch.nn.Module") -> Dict[str, Tuple[str, ...]]:
    """Plain name -> the state keys holding it, for each shared weight."""
    out = {}
    for prefix, m in model.named_modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, SharedCentroids):
                base = f"{prefix}.{hook.name}" if prefix else hook.name
                out[base] = tuple(base + s for s in ("_centroids", "_codes", "_mask"))
    return out
