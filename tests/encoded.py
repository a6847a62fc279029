"""Encoded values for the tests: a plain NumPy reference of the decoding in
docs/format.md ("Value encodings") and a writer of format 3 files through the
core's encoder (the Python API for encoded tensors builds on these calls)."""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import numpy as np

import vitrust
from vitrust import _checks

ENCODINGS = ("int8", "int4", "codebook1", "codebook2", "codebook4", "codebook8")


def bits_of(encoding: str) -> int:
    return 8 if encoding == "int8" else 4 if encoding == "int4" else int(encoding[len("codebook"):])


def unpack(codes: np.ndarray, n: int, bits: int) -> np.ndarray:
    """Code j is bits j*b .. j*b + b of the byte stream, least significant first."""
    stream = np.unpackbits(codes, bitorder="little")
    pos = np.arange(n)[:, None] * bits + np.arange(bits)[None, :]
    return (stream[pos].astype(np.int64) << np.arange(bits)).sum(axis=1)


def reference_decode(encoding: str, group: int, n: int, codes: np.ndarray, table: np.ndarray,
                     dtype: Any) -> np.ndarray:
    """Decoded values in ``dtype``: code * scale in float32 (codes as two's
    complement, -q - 1 read as -q) or the code's centroid, rounded to the dtype."""
    bits = bits_of(encoding)
    c = unpack(codes, n, bits)
    table = table.astype(np.float32)
    if encoding.startswith("int"):
        c = np.where(c >= 1 << (bits - 1), c - (1 << bits), c)
        c = np.maximum(c, 1 - (1 << (bits - 1)))  # -q - 1 decodes as -q
        wide = c.astype(np.float32) * table[np.arange(n) // group]
    else:
        wide = table[c]
    return wide.astype(dtype)


def encode(values: np.ndarray, encoding: str, group: int = 16) -> Tuple[str, int, int, np.ndarray, np.ndarray]:
    """``values`` encoded by the core, weighted by |value|, as save_file takes them."""
    weights = np.abs(values.astype(np.float32))
    codes, table = vitrust._vitrust.encode_values(values, encoding, group, weights)
    return encoding, group, len(values), codes, table


def save_encoded(tensors: Dict[str, Any], encodings: Dict[str, str], path: "os.PathLike[str]",
                 group: int = 16) -> None:
    """Writes ``tensors`` with the pruned ones named in ``encodings`` encoded."""
    from vitrust._format import _dtype_name, _le_bytes

    plain, sparse = [], []
    for name, t in tensors.items():
        if isinstance(t, vitrust.ViterbiSparse):
            enc = encodings.get(name)
            values = encode(t.values, enc, group) if enc else _le_bytes(t.values)
            sparse.append((name, _checks.value_dtype(t.values.dtype), list(t.shape), values, t.config,
                           t.block_steps, t.lam, t.index, t.thresholds, t.order))
        else:
            a = np.asarray(t)
            plain.append((name, _dtype_name(a, name), list(a.shape), _le_bytes(a)))
    vitrust._vitrust.save_file(os.fspath(path), plain, sparse, {})
