"""Encoded kept values: ``EncodedValues`` and the encodings of
docs/format.md ("Value encodings"), computed by the compiled core."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from . import _checks, _vitrust

ENCODINGS = ("raw", "int8", "int4") + tuple(f"codebook{b}" for b in range(1, 9))
DEFAULT_GROUP = 128


def encoding_arg(values: Any, group: Any) -> Tuple[str, int]:
    """``values`` as an encoding name and ``group`` as a group size, checked."""
    if not isinstance(values, str):
        raise TypeError(f"values: expected an encoding name (str), got {type(values).__name__}")
    if values not in ENCODINGS:
        raise ValueError(f"values = {values!r}: expected one of {', '.join(ENCODINGS)}")
    return values, _checks.integer(group, "group", 1, _vitrust.MAX_GROUP)


def code_bits(encoding: str) -> int:
    """Bits per code of an encoding other than raw."""
    return {"int8": 8, "int4": 4}.get(encoding) or int(encoding[len("codebook"):])


class EncodedValues(NamedTuple):
    """Kept values stored as fixed-width codes and a side table.

    ``codes`` packs one ``bits``-bit code per value in stream order, least
    significant bit first; ``table`` (float32, holding values of
    ``table_dtype``) has the scales of ``int8``/``int4`` (one per ``group``
    consecutive values) or the ``2**bits`` centroids of ``codebookB``;
    ``size`` is the number of values and ``dtype`` the decoded values'
    (docs/format.md, "Value encodings").
    """

    encoding: str
    group: Optional[int]
    size: int
    codes: np.ndarray
    table: np.ndarray
    dtype: np.dtype

    @property
    def bits(self) -> int:
        """Bits per code."""
        return code_bits(self.encoding)

    @property
    def table_dtype(self) -> np.dtype:
        """The side table's stored dtype: the values' own, float32 for float64 values."""
        return np.dtype(np.float32) if self.dtype == np.float64 else self.dtype

    @property
    def stored_bits(self) -> int:
        """Bits of the stored codes and side table."""
        return 8 * (self.codes.nbytes + self.table.size * self.table_dtype.itemsize)

    def side_table(self) -> np.ndarray:
        """The scales or centroids in the table dtype (exactly)."""
        return self.table.astype(self.table_dtype)

    def core(self) -> Any:
        """The form the core's expansion and products take."""
        group = self.group if self.group is not None else 0
        return (self.encoding, group, self.size, self.codes, self.table), value_name(self.dtype)

    def decode(self, threads: Optional[int] = None) -> np.ndarray:
        """The decoded values, one per code, in ``dtype``."""
        return relabel(_vitrust.decode_values(self.core(), threads), self.dtype)


def value_name(dtype: np.dtype) -> str:
    """The safetensors name of a value dtype."""
    name = _checks.value_dtype(dtype)
    if name is None:
        raise TypeError(f"values: expected {_checks.VALUE_NAMES}, got {dtype}")
    return name


def relabel(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A core result in ``dtype``: bfloat16 arrives as its bits."""
    return a if a.dtype == dtype else a.view(dtype)


def encode(values: np.ndarray, encoding: str, group: int, weights: Optional[np.ndarray] = None,
           threads: Optional[int] = None) -> EncodedValues:
    """``values`` (float16, bfloat16, float32 or float64) encoded, a codebook's
    k-means weighted by ``weights`` (one per value; |value| without them)."""
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=np.float32).reshape(-1)
        if weights.size != values.size or not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f"scores: expected {values.size} finite non-negative scores, one per kept value")
    codes, table = _vitrust.encode_values(values, encoding, group, weights, threads)
    return EncodedValues(encoding, group if encoding.startswith("int") else None, values.size, codes, table,
                         values.dtype)


def from_core(stored: Any, dtype: np.dtype) -> EncodedValues:
    """Encoded values as the core hands them out (a loaded file's)."""
    encoding, group, size, codes, table = stored
    return EncodedValues(encoding, group if encoding.startswith("int") else None, size, codes, table, dtype)


def checked(e: EncodedValues) -> EncodedValues:
    """The caller's ``EncodedValues`` with arrays of the right kinds, checked
    by the core as a file's would be (lengths, table entries, scales)."""
    if e.encoding not in ENCODINGS[1:]:
        raise ValueError(f"values: encoding {e.encoding!r}: expected one of {', '.join(ENCODINGS[1:])}")
    dtype = np.dtype(e.dtype)
    if _checks.value_dtype(dtype) not in ("F16", "BF16", "F32", "F64"):
        raise TypeError(f"values: encoded values decode to float16, bfloat16, float32 or float64, not {dtype}")
    group = _checks.integer(e.group, "group", 1, _vitrust.MAX_GROUP) if e.encoding.startswith("int") else None
    codes = np.ascontiguousarray(e.codes)
    if codes.dtype != np.uint8 or codes.ndim != 1:
        raise TypeError(f"values: codes must be a 1-D uint8 array, got {codes.dtype} of shape {codes.shape}")
    table = np.ascontiguousarray(e.table, dtype=np.float32)
    if table.ndim != 1:
        raise ValueError(f"values: table must be 1-D, got shape {table.shape}")
    out = EncodedValues(e.encoding, group, _checks.integer(e.size, "size", 0), codes, table, dtype)
    _vitrust.check_values(out.core())
    return out
