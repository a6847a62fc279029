"""``unpack``: the dense tensors of a vitrust file or checkpoint, streamed
tensor by tensor into the same layout (shard names, index, other files)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from . import _format, _layout, _shard, _vitrust


def _unpack_file(src: str, dst: str, threads: Optional[int]) -> Tuple[int, List[str], int]:
    f = _vitrust.SafeOpen(src)
    plan = []
    for name in f.keys():
        kind, dtype, shape, _ = f.info(name)
        plan.append((name, dtype, list(shape), 0))
    w = _vitrust.ShardWriter(dst, f.metadata(), plan)
    expanded = 0
    try:
        for name in f.keys():
            kind, dtype, shape, _ = f.info(name)
            if kind == "sparse":
                dense = _shard.sparse_from(f.get(name), name, threads).to_dense(threads=threads)
                w.add_plain(name, _format._dtype_name(dense, name), list(dense.shape), _format._le_bytes(dense))
                expanded += 1
                del dense
            else:
                w.add_plain(name, dtype, list(shape), f.get(name))
            f.release(name)
        data_bytes, stored = w.finish()
    except BaseException:
        w.abort()
        raise
    return data_bytes, stored, expanded


def unpack(src: Any, dst: Any, *, force: bool = False, threads: Optional[int] = None) -> Dict[str, Any]:
    """Writes the dense form of ``src`` (any input form) to ``dst`` in the same layout."""
    source = _layout.resolve(os.fspath(src))
    dst = os.fspath(dst)
    if source.is_file:
        data, stored, expanded = _unpack_file(source.shards[0], dst, threads)
        return {"files": [dst], "tensors": len(stored), "expanded": expanded, "bytes": os.path.getsize(dst)}
    _layout.prepare_dir(dst, source, force)
    _layout.copy_others(source, dst, _layout.other_files(source, dst))
    weight_map: Dict[str, str] = {}
    total = expanded = 0
    files = []
    for shard in source.shards:
        out = os.path.join(dst, os.path.basename(shard))
        data, stored, n = _unpack_file(shard, out, threads)
        weight_map.update({s: os.path.basename(out) for s in stored})
        total, expanded = total + data, expanded + n
        files.append(out)
    if source.index_name is not None:
        _layout.write_index(os.path.join(dst, source.index_name), weight_map, total, source.index_metadata)
    size = sum(os.path.getsize(p) for p in files)
    return {"files": files, "tensors": len(weight_map), "expanded": expanded, "bytes": size}
