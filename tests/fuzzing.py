"""Valid vitrust files and ways to damage them, for the fuzz test and
``benches/fuzz_format.py``. A mutation draws its choices from ``draw(lo, hi)``
(an integer in ``lo..=hi``), so hypothesis or a seeded RNG can drive it."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Callable, Dict, Tuple

import numpy as np

import vitrust

Draw = Callable[[int, int], int]


# -- the container ---------------------------------------------------------------
def split(buf: bytes) -> Tuple[Dict[str, Any], bytes]:
    """A safetensors image as (header JSON, data bytes)."""
    (n,) = struct.unpack("<Q", buf[:8])
    return json.loads(buf[8 : 8 + n]), buf[8 + n :]


def join(header: Dict[str, Any], data: bytes) -> bytes:
    text = json.dumps(header, ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def canonical(body: Dict[str, Any]) -> bytes:
    """The serialisation vitrust's metadata check is computed over: sorted keys, compact."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body(header: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads(header["__metadata__"]["vitrust"])


def set_body(header: Dict[str, Any], b: Dict[str, Any], recheck: bool = True) -> None:
    """Stores ``b`` as the vitrust metadata, with a matching check if ``recheck``
    (so the edit reaches the deeper validation)."""
    if recheck and isinstance(b, dict):
        b = dict(b)
        b.pop("check", None)
        b["check"] = zlib.crc32(canonical(b))
    header["__metadata__"]["vitrust"] = json.dumps(b)


# -- a valid file ----------------------------------------------------------------
def sample_tensors(seed: int = 0) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((12, 50)).astype(np.float32)
    v = rng.standard_normal(333).astype(np.float16)
    return {
        "w": vitrust.prune(w, 0.8, flip_flops=6, block_steps=16),
        "v": vitrust.prune(v, 0.5, flip_flops=4, n_in=2, ratio=3, block_steps=8),
        "bias": rng.standard_normal(7),
        "steps": np.arange(6, dtype=np.int32).reshape(2, 3),
    }


def random_v2(shape: Tuple[int, ...], config: "vitrust.VDConfig", block_steps: int, rng: np.random.Generator,
              order: str = "F", thresholds: bool = True, dtype: Any = np.float32) -> "vitrust.ViterbiSparse":
    """A format 2 tensor built directly: random index words, random per-block
    thresholds (or none) and random values, one per weight the index keeps."""
    n = int(np.prod(shape))
    n_blocks, words, _ = vitrust._vitrust.layout_info(config, n, block_steps)
    kept = 0
    while kept == 0:  # a tensor keeps at least one weight
        index = rng.integers(0, 2**64, words, dtype=np.uint64)
        th = None
        if thresholds:
            top = min(2**config.comparator_bits, vitrust._vitrust.MAX_BLOCK_THRESHOLD)
            th = rng.integers(1, top + 1, n_blocks).astype(np.uint8)
        kept = int(vitrust._vitrust.block_starts(config, index, n, block_steps, None, th)[-1])
    values = rng.standard_normal(kept).astype(dtype)
    return vitrust.ViterbiSparse(shape, config, block_steps, index, values, 0.25, thresholds=th, order=order)


def sample_tensors_v2(seed: int = 0) -> Dict[str, Any]:
    """A format 2 file's tensors: one with thresholds and order F, one with
    thresholds only, one with order F only, a version 1 tensor and a plain one."""
    rng = np.random.default_rng(seed)
    c = vitrust.VDConfig(6, 1, 5, 3, 4, seed=seed)
    c2 = vitrust.VDConfig(4, 2, 6, 2, 3, seed=seed + 1)
    w = rng.standard_normal((12, 50)).astype(np.float32)
    return {
        "a": random_v2((12, 50), c, 16, rng),
        "b": random_v2((7, 3, 5), c2, 4, rng, order="C", dtype=np.float16),
        "c": random_v2((9, 11), c, 8, rng, thresholds=False),
        "w": vitrust.prune(w, 0.8, flip_flops=6, block_steps=16),
        "bias": rng.standard_normal(7),
    }


def same(a: Any, b: Any) -> bool:
    """Bit-for-bit equality of two loaded dicts."""
    if sorted(a) != sorted(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, vitrust.ViterbiSparse) != isinstance(y, vitrust.ViterbiSparse):
            return False
        if isinstance(x, vitrust.ViterbiSparse):
            ok = (
                x.shape == y.shape and x.config == y.config and x.block_steps == y.block_steps
                and x.lam == y.lam and x.dtype == y.dtype
                and np.array_equal(x.index, y.index) and x.values.tobytes() == y.values.tobytes()
                and x.order == y.order and (x.thresholds is None) == (y.thresholds is None)
                and (x.thresholds is None or np.array_equal(x.thresholds, y.thresholds))
            )
        else:
            ok = x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        if not ok:
            return False
    return True


# -- mutations -------------------------------------------------------------------
def _edit_value(v: Any, draw: Draw) -> Any:
    """A plausible hostile replacement for a JSON value."""
    choice = draw(0, 9)
    if isinstance(v, bool) or choice == 0:
        return [None, "", {}, [], True, -1, 2**64, 1e308][draw(0, 7)]
    if isinstance(v, int):
        return [v + 1, v - 1, v * 2, 0, 2**63, v ^ 1 << draw(0, 40)][draw(0, 5)]
    if isinstance(v, float):
        return [v * 2, -v, 0.0, v + 1e-9][draw(0, 3)]
    if isinstance(v, str):
        return [v + "x", "F32", "U64", "BF16", "I32", v[:-1], "F64"][draw(0, 6)]
    if isinstance(v, list):
        if not v:
            return [0]
        i = draw(0, len(v) - 1)
        return [v[:i] + v[i + 1 :], v + [v[i]], v[:i] + [_edit_value(v[i], draw)] + v[i + 1 :], v[::-1]][draw(0, 3)]
    if isinstance(v, dict):
        if not v:
            return {"x": 1}
        keys = sorted(v)
        k = keys[draw(0, len(keys) - 1)]
        out = dict(v)
        op = draw(0, 3)
        if op == 0:
            del out[k]
        elif op == 1:
            out[k + "x"] = out.pop(k)
        else:
            out[k] = _edit_value(v[k], draw)
        return out
    return v


def header_edit(buf: bytes, draw: Draw) -> Tuple[bytes, bool]:
    """Edits one field of the safetensors header or of vitrust's metadata,
    re-framed so the file still parses as far as possible. Returns the file
    and whether the edit was forged (the metadata check recomputed to match)."""
    header, data = split(buf)
    forged = False
    if draw(0, 1):
        b = body(header)
        edited = _edit_value(b, draw) if draw(0, 3) else {**b, "sparse": _edit_value(b["sparse"], draw)}
        forged = bool(draw(0, 3))
        set_body(header, edited, recheck=forged)
    else:
        header = _edit_value(header, draw)
    return join(header, data), forged


def _reversed(v: Any) -> Any:
    """``v`` with every object's keys in reverse order."""
    if isinstance(v, dict):
        return {k: _reversed(v[k]) for k in reversed(list(v))}
    return v


def reencode(buf: bytes, draw: Draw) -> Tuple[bytes, bool]:
    """The same file in other JSON spellings: ``\\u`` and ``\\/`` escapes,
    reversed key order (the check is over the canonical form, so these load
    the same), or a duplicated key (refused)."""
    header, data = split(buf)
    b = body(header)
    op = draw(0, 2)
    if op == 0:
        text = json.dumps(b, ensure_ascii=True).replace("/", "\\/")
    elif op == 1:
        text = json.dumps(_reversed(b))
    else:
        text = json.dumps(b)
        key = ['"version": 1', '"sparse": {}', '"tensors": {}', '"check": 0'][draw(0, 3)]
        text = "{" + key + ", " + text[1:]
    header["__metadata__"]["vitrust"] = text
    if op == 0:
        raw = json.dumps(header, ensure_ascii=True).encode()
        raw += b" " * (-len(raw) % 8)
        return struct.pack("<Q", len(raw)) + raw + data, False
    return join(header, data), False


def mutate(buf: bytes, draw: Draw) -> Tuple[bytes, bool]:
    """A damaged copy of ``buf``, and whether the damage is a forgery: an edit
    whose metadata check was recomputed. Damage must never load as different
    data; a forgery can (no unkeyed checksum stops a forger), but must still
    load only as valid, self-consistent tensors."""
    kind = draw(0, 6)
    b = bytearray(buf)
    if kind == 0:  # bit flips anywhere
        for _ in range(draw(1, 4)):
            i = draw(0, len(b) * 8 - 1)
            b[i // 8] ^= 1 << (i % 8)
    elif kind == 1:  # truncation
        del b[draw(0, len(b) - 1) :]
    elif kind == 2:  # random bytes at a random place
        i = draw(0, len(b) - 1)
        for j in range(i, min(len(b), i + draw(1, 8))):
            b[j] = draw(0, 255)
    elif kind == 3:  # appended garbage
        b += bytes(draw(0, 255) for _ in range(draw(1, 16)))
    elif kind == 4:  # header length prefix
        b[:8] = struct.pack("<Q", [0, 1, 2**63, 2**64 - 1, len(b), struct.unpack("<Q", buf[:8])[0] + draw(-9, 9)][draw(0, 5)] % 2**64)
    elif kind == 5:
        return reencode(buf, draw)
    else:
        return header_edit(buf, draw)
    return bytes(b), False


def consistent(loaded: Dict[str, Any]) -> bool:
    """Every pruned tensor passes the constructor's full validation again."""
    for x in loaded.values():
        if isinstance(x, vitrust.ViterbiSparse):
            y = vitrust.ViterbiSparse(x.shape, x.config, x.block_steps, x.index, x.values, x.lam,
                                      thresholds=x.thresholds, order=x.order)
            if y.to_dense().shape != x.shape:
                return False
    return True
