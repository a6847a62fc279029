"""Loading vitrust files and checkpoints (a file, a sharded index, a model directory) into models."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
import torch
from torch.nn.utils import prune as _tprune

from .._sparse import ViterbiSparse
from ._convert import to_torch
from ._export import state_tensors_names

INDEX, SINGLE = "model.safetensors.index.json", "model.safetensors"
# A pruned tensor `name` is stored as `name.vitrust.index`, `name.vitrust.values`, ...
_SIBLING = re.compile(r"\.vitrust\.[A-Za-z0-9_]+$")


def plain_name(stored: str) -> str:
    """The tensor name a stored name belongs to (``w.vitrust.index`` -> ``w``)."""
    return _SIBLING.sub("", stored)


def _read_index(index: Path) -> List[Tuple[Path, Optional[Set[str]]]]:
    """The shards an index JSON names, in order, each with the tensor names it holds."""
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{index}: not a readable index JSON ({e})") from None
    wm = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise ValueError(f"{index}: no weight_map mapping tensor names to shard files")
    shards: Dict[str, Set[str]] = {}
    for stored, shard in wm.items():
        if Path(shard).name != shard or shard in (".", ".."):
            raise ValueError(f"{index}: shard {shard!r} is not a file name in the index's directory")
        shards.setdefault(shard, set()).add(plain_name(stored))
    return [(index.parent / f, names) for f, names in shards.items()]


def checkpoint_files(path: Any) -> List[Tuple[Path, Optional[Set[str]]]]:
    """The safetensors files of a checkpoint, each with the names its index promises (``None``: no index).

    ``path`` is a ``.safetensors`` file, a ``*.safetensors.index.json``, or a
    directory holding ``model.safetensors.index.json``, ``model.safetensors``
    or exactly one index JSON (Hugging Face's layout).
    """
    p = Path(os.fspath(path))
    if p.is_dir():
        if (p / INDEX).is_file():
            return _read_index(p / INDEX)
        if (p / SINGLE).is_file():
            return [(p / SINGLE, None)]
        indexes = sorted(p.glob("*.safetensors.index.json"))
        if len(indexes) == 1:
            return _read_index(indexes[0])
        raise ValueError(f"{p}: a directory without {INDEX} or {SINGLE}"
                         + (f" (several index files: {', '.join(i.name for i in indexes)})" if indexes else ""))
    if p.name.endswith(".index.json"):
        return _read_index(p)
    return [(p, None)]


def _aliases(model: "torch.nn.Module") -> Dict[str, Set[str]]:
    """Names of the model's state grouped by the storage they share (tied weights)."""
    sd = model.state_dict()
    by_ptr: Dict[Tuple[int, Tuple[int, ...]], Set[str]] = {}
    for key in state_tensors_names(model):
        t = sd.get(key + "_orig", sd.get(key))
        if t is not None and t.numel():
            by_ptr.setdefault((t.data_ptr(), tuple(t.shape)), set()).add(key)
    return {k: names for names in by_ptr.values() for k in names}


def load(model: "torch.nn.Module", path: Any, *, masks: bool = True, strict: bool = True) -> "torch.nn.Module":
    """Loads a vitrust file or checkpoint (from :func:`export`, ``vitrust prune``, or a
    Hugging Face directory of shards) into ``model``.

    ``path``: a ``.safetensors`` file, a ``*.safetensors.index.json`` or a
    directory holding one of them. Each tensor is cast to its parameter's
    dtype and device; shards are read one at a time. With ``masks``, every
    pruned tensor's mask is attached as a ``torch.nn.utils.prune`` mask (so
    fine-tuning keeps it); without, the dense pruned weights are copied in.
    ``strict`` refuses names the model lacks and model tensors the checkpoint
    lacks (tied weights stored once count as present).
    """
    from .. import load_file

    files = checkpoint_files(path)
    expected = set(state_tensors_names(model))
    first: Optional[Dict[str, Any]] = None
    if all(names is not None for _, names in files):
        promised: Set[str] = set().union(*(names for _, names in files))  # type: ignore[arg-type]
    else:
        first = load_file(files[0][0])
        promised = set(first)
    if strict:
        tied = _aliases(model)
        missing = {k for k in expected - promised if not tied.get(k, set()) & promised}
        extra = promised - expected
        if missing or extra:
            raise ValueError(f"{path}: does not match the model (missing: {sorted(missing) or 'none'}, "
                             f"unexpected: {sorted(extra) or 'none'})")
    for shard, names in files:
        tensors = first if first is not None else load_file(shard)
        first = None
        if names is not None and set(tensors) != names:
            diff = sorted(set(tensors) ^ names)
            raise ValueError(f"{shard}: holds other tensors than its index says ({', '.join(diff[:5])})")
        with torch.no_grad():
            for key, t in tensors.items():
                if key in expected:
                    prefix, _, attr = key.rpartition(".")
                    _load_one(model.get_submodule(prefix), attr, t, masks, key)
    return model


def _load_one(m: "torch.nn.Module", attr: str, t: Any, masks: bool, key: str) -> None:
    orig = getattr(m, attr + "_orig", None)
    target = orig if orig is not None else getattr(m, attr)
    dense = t.to_dense() if isinstance(t, ViterbiSparse) else np.asarray(t)
    if tuple(dense.shape) != tuple(target.shape):
        raise ValueError(f"{key}: shape {tuple(dense.shape)} in the file, {tuple(target.shape)} in the model")
    target.copy_(to_torch(dense).to(dtype=target.dtype, device=target.device))
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


def from_pretrained(cls: Any, path: Any, *, masks: bool = False, dtype: Any = None, strict: bool = True,
                    **config_options: Any) -> Any:
    """A ``transformers`` model built from ``path``'s ``config.json`` and filled with its weights.

    ``cls`` is a model class (``LlamaForCausalLM``) or an auto class
    (``AutoModelForCausalLM``); ``path`` a checkpoint directory written by
    ``vitrust prune`` (or any safetensors checkpoint), or a file in it.
    Nothing is fetched from the hub. Pruned tensors are expanded; ``masks``
    attaches their masks for fine-tuning. ``dtype``: the model's dtype
    (``"auto"``: the config's; default float32, as in ``transformers``).
    ``config_options`` override config fields. The model is in eval mode.
    """
    from transformers import AutoConfig

    p = Path(os.fspath(path))
    folder = p if p.is_dir() else p.parent
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True, **config_options)
    model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    if dtype == "auto":
        dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if dtype is not None:
        model = model.to(dtype)
    load(model, path, masks=masks, strict=strict)
    return model.eval()
