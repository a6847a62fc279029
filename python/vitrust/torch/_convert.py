"""Tensors to numpy and back: dtypes, 0-d tensors and scores."""

from __future__ import annotations

import functools
import warnings
from typing import Any, Optional

import numpy as np

from .. import _scores

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("vitrust.torch needs PyTorch: pip install 'vitrust[torch]'") from e


@functools.lru_cache(maxsize=None)
def _bfloat16_dtype() -> Any:
    """numpy's ``ml_dtypes.bfloat16`` when installed and ``vitrust.prune`` takes it, else ``None``.

    The one place that decides how bfloat16 values travel: as 16-bit patterns
    when vitrust keeps them bfloat16, otherwise widened to float32 (exact).
    """
    try:
        import ml_dtypes
    except ImportError:
        return None
    from .._prune import prune

    probe = np.linspace(1.0, 2.0, 64).astype(ml_dtypes.bfloat16)
    try:
        prune(probe, 0.5)
    except (TypeError, ValueError):
        return None
    return np.dtype(ml_dtypes.bfloat16)


def to_numpy(t: "torch.Tensor") -> np.ndarray:
    """A CPU numpy array of ``t`` of the same shape (0-d stays 0-d).

    bfloat16 becomes an ``ml_dtypes.bfloat16`` view of the same bits when
    vitrust stores bfloat16 values, float32 (exactly) otherwise.
    """
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        bf16 = _bfloat16_dtype()
        if bf16 is None:
            return t.float().numpy()
        return t.view(torch.int16).numpy().view(bf16)
    return t.numpy()


def to_torch(a: np.ndarray) -> "torch.Tensor":
    """A CPU tensor of ``a``'s values and shape (0-d stays 0-d; bfloat16 moved bit for bit).

    ``np.ascontiguousarray`` would turn a 0-d array into shape ``(1,)``, so
    contiguity is asked of the array itself.
    """
    a = np.asarray(a)
    if not a.flags.c_contiguous or a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("="), order="C")
    bf16 = a.dtype.name == "bfloat16" and a.dtype.itemsize == 2
    with warnings.catch_warnings():  # read-only arrays from files: the tensor is only read from
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        t = torch.from_numpy(a.view(np.int16) if bf16 else a)
    return t.view(torch.bfloat16) if bf16 else t


def scores(t: "torch.Tensor", default_mask: Optional["torch.Tensor"], score: str) -> np.ndarray:
    """Non-negative float32 scores (exact for 16-bit weights); weights the mask (if any) dropped score 0."""
    s = _scores.values(t.detach().float().cpu().numpy(), _scores.check(score), np.float32)
    if default_mask is not None:
        s *= (default_mask != 0).cpu().numpy()
    return np.ascontiguousarray(s)
