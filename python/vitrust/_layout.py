"""Checkpoint layouts: what a source path holds and how the output mirrors it.

A source is a ``.safetensors`` file, a sharded checkpoint given by its
``*.safetensors.index.json`` (Hugging Face's layout: ``weight_map`` names the
shard of each tensor), or a directory holding either. The output of a file is
a file; of a checkpoint, a directory with the same shard names (or new ones
when re-sharded), a rewritten index and every other file of the source
directory copied.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

INDEX_SUFFIX = ".safetensors.index.json"
# Hugging Face's default shard limit.
DEFAULT_MAX_SHARD = 5 * 10**9


class LayoutError(ValueError):
    """A source or destination that is not a usable checkpoint."""


@dataclass
class Source:
    """A resolved input: its shard files, and for a checkpoint its directory and index."""

    path: str
    shards: List[str]  # absolute paths, in index order
    root: Optional[str] = None  # the directory of a checkpoint (None: a single file)
    index_name: Optional[str] = None  # the index file's name, if there is one
    index_metadata: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        """Whether the source is one ``.safetensors`` file (not a checkpoint directory or index)."""
        return self.root is None


def _read_index(path: str) -> Tuple[Dict[str, str], Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LayoutError(f"{path}: not a readable index JSON ({e})") from None
    wm = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise LayoutError(f"{path}: the index has no weight_map of tensor names to shard files")
    for shard in set(wm.values()):
        if os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise LayoutError(f"{path}: shard {shard!r} is not a file name in the index's directory")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise LayoutError(f"{path}: the index's metadata is not a JSON object")
    return wm, meta


def resolve(path: str) -> Source:
    """What ``path`` holds; raises ``LayoutError`` (or ``OSError``) naming the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        indexes = [n for n in names if n.endswith(INDEX_SUFFIX)]
        if len(indexes) > 1:
            raise LayoutError(f"{path}: holds several index files ({', '.join(indexes)}); give one of them")
        if indexes:
            return resolve(os.path.join(path, indexes[0]))
        files = [n for n in names if n.endswith(".safetensors") and os.path.isfile(os.path.join(path, n))]
        if len(files) != 1:
            what = "no .safetensors file" if not files else f"{len(files)} .safetensors files but no index JSON"
            raise LayoutError(f"{path}: holds {what}")
        root = os.path.abspath(path)
        return Source(path, [os.path.join(root, files[0])], root=root)
    if path.endswith(INDEX_SUFFIX):
        wm, meta = _read_index(path)
        root = os.path.dirname(os.path.abspath(path))
        shards = list(dict.fromkeys(wm.values()))
        for s in shards:
            if not os.path.isfile(os.path.join(root, s)):
                raise LayoutError(f"{path}: shard {s} is missing from {root}")
        meta = {k: v for k, v in meta.items() if k != "total_size"}
        return Source(path, [os.path.join(root, s) for s in shards], root=root,
                      index_name=os.path.basename(path), index_metadata=meta)
    if not os.path.isfile(path):
        raise LayoutError(f"{path}: not a regular file")
    return Source(path, [os.path.abspath(path)])


def check_index_matches(src: Source, names_by_shard: Dict[str, List[str]]) -> None:
    """The index's weight_map must agree with what the shards hold."""
    if src.index_name is None:
        return
    assert src.root is not None
    wm, _ = _read_index(os.path.join(src.root, src.index_name))
    for shard, names in names_by_shard.items():
        base = os.path.basename(shard)
        for n in names:
            if wm.get(n, base) != base:
                raise LayoutError(f"{src.path}: tensor {n!r} is in {base}, but the index names {wm[n]}")


def other_files(src: Source, dst: Optional[str] = None) -> List[str]:
    """Paths (relative to the checkpoint's directory) of everything that is not
    a shard or the index (nor inside ``dst``, should the output be within the input)."""
    if src.root is None:
        return []
    skip = {os.path.basename(s) for s in src.shards} | {src.index_name}
    out = []
    for dirpath, dirnames, filenames in os.walk(src.root):
        dirnames[:] = sorted(d for d in dirnames if dst is None or os.path.abspath(os.path.join(dirpath, d))
                             != os.path.abspath(dst))
        rel = os.path.relpath(dirpath, src.root)
        for f in sorted(filenames):
            r = f if rel == "." else os.path.join(rel, f)
            if r in skip or ".vitrust-tmp" in f:
                continue
            out.append(r)
    return out


def copy_others(src: Source, dst: str, files: List[str]) -> None:
    assert src.root is not None
    for rel in files:
        target = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        shutil.copy2(os.path.join(src.root, rel), target)


def shard_names(stem: str, n: int) -> List[str]:
    """Hugging Face's shard names: ``model-00001-of-00003.safetensors``."""
    if n == 1:
        return [f"{stem}.safetensors"]
    return [f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def split_sizes(sizes: List[int], limit: int) -> List[int]:
    """Greedy groups of consecutive items under ``limit`` bytes: the group index of each."""
    out, group, used = [], 0, 0
    for s in sizes:
        if used and used + s > limit:
            group, used = group + 1, 0
        out.append(group)
        used += s
    return out


def index_name_for(src: Source) -> str:
    if src.index_name is not None:
        return src.index_name
    stem = os.path.basename(src.shards[0])[: -len(".safetensors")]
    return stem + INDEX_SUFFIX


def write_index(path: str, weight_map: Dict[str, str], total_size: int, metadata: Dict[str, Any]) -> None:
    """The index JSON, written atomically (it is what makes the output a checkpoint)."""
    doc = {"metadata": {**metadata, "total_size": int(total_size)}, "weight_map": dict(sorted(weight_map.items()))}
    tmp = f"{path}.{os.getpid()}.vitrust-tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def prepare_dir(dst: str, src: Source, force: bool) -> None:
    """Creates the output directory; an existing one must be empty, or ``force``
    given, and then loses its index first so a failed run never looks complete."""
    if os.path.exists(dst):
        if not os.path.isdir(dst):
            raise LayoutError(f"{dst}: exists and is not a directory (a checkpoint's output is a directory)")
        assert src.root is not None
        if os.path.samefile(dst, src.root):
            raise LayoutError(f"{dst}: is the input checkpoint's directory; choose another output")
        if os.listdir(dst) and not force:
            raise LayoutError(f"{dst}: exists and is not empty (pass force=True / --force to overwrite)")
        for n in os.listdir(dst):
            if n.endswith(INDEX_SUFFIX):
                os.remove(os.path.join(dst, n))
    else:
        os.makedirs(dst)


def remove_stale_temps(dst: str) -> None:
    """Temporary files a killed worker may have left."""
    for n in os.listdir(dst):
        if n.endswith(".vitrust-tmp"):
            try:
                os.remove(os.path.join(dst, n))
            except OSError:
                pass
