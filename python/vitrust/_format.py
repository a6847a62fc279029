"""``save_file`` and ``load_file``: vitrust's safetensors files.

A pruned tensor ``name`` is stored as the sibling tensors ``name.vitrust.index``
(U64), ``name.vitrust.values`` (its dtype) or, encoded, ``name.vitrust.codes``
and ``.scales`` or ``.codebook``, and, when its blocks have their own
thresholds, ``name.vitrust.thresholds`` (U8); plain arrays pass through, so any
safetensors reader opens the file. A file is format version 3 when a tensor's
values are encoded, 2 when a tensor has per-block thresholds or order ``"F"``,
1 otherwise. Writing, parsing and every check happen in the compiled core
(the Rust ``safetensors`` crate underneath). The layout and its versions are
in docs/format.md ("File format", "Value encodings", "Versions").
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _checks, _values, _vitrust
from ._sparse import ViterbiSparse

PathLike = Union[str, "os.PathLike[str]"]

# numpy dtype -> safetensors name, for plain tensors; the value dtypes
# (bfloat16 and float8 from the ml_dtypes package among them) come from
# _checks.VALUE_DTYPES.
_NAMES = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint16): "U16",
    np.dtype(np.int16): "I16",
    np.dtype(np.uint32): "U32",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint64): "U64",
    np.dtype(np.int64): "I64",
}
# safetensors name -> numpy's name for the value dtypes.
_VALUE_NUMPY = {st: name for name, (_, st) in _checks.VALUE_DTYPES.items()}


def _dtype_name(a: np.ndarray, what: str) -> str:
    name = _checks.value_dtype(a.dtype) or _NAMES.get(a.dtype.newbyteorder("="))
    if name is None:
        raise TypeError(f"{what}: dtype {a.dtype} cannot be stored (bool, integers, {_checks.VALUE_NAMES})")
    return name


def _le_bytes(a: np.ndarray) -> np.ndarray:
    """The array's elements as little-endian bytes in C order (a view when possible)."""
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _from_bytes(name: str, dtype_name: str, data: np.ndarray) -> np.ndarray:
    """Loaded data in its numpy dtype: bfloat16 and float8 arrive as their bits."""
    numpy_name = _VALUE_NUMPY.get(dtype_name)
    if numpy_name is not None and data.dtype.name != numpy_name:
        return data.view(_checks.ml_dtype(numpy_name, f"tensor {name!r}"))
    return data


def stored_values(t: ViterbiSparse, values: Optional[str], group: int) -> Any:
    """A pruned tensor's values as the core stores them: as the tensor holds
    them (``values=None``, or the encoding and group it has), their bytes
    (``"raw"``), or encoded (weighted by |value|, so the largest weights are
    fitted best). 8-bit floats stay raw: they are as small as int8 already."""
    e = t.encoded
    if e is not None and values in (None, e.encoding) and (e.group is None or values is None or e.group == group):
        return e.core()[0]
    if values in (None, "raw") or t.dtype.itemsize == 1:
        return _le_bytes(t.values)
    return t.quantize(values, group=group).encoded.core()[0]  # type: ignore[union-attr]


def encoding_args(values: Optional[str], group: int) -> Tuple[Optional[str], int]:
    """save_file's ``values`` (``None``: as each tensor holds them) and ``group``, checked."""
    return (None, _checks.integer(group, "group", 1, _vitrust.MAX_GROUP)) if values is None \
        else _values.encoding_arg(values, group)


def save_file(tensors: Mapping[str, Any], path: PathLike, metadata: Optional[Mapping[str, str]] = None, *,
              values: Optional[str] = None, group: int = _values.DEFAULT_GROUP) -> None:
    """Write ``tensors`` (names to ``ViterbiSparse`` or arrays) to a safetensors file.

    Pruned tensors are stored as index and values (and per-block thresholds
    when they have them) with their config, shape, λ, order and a CRC-32 per
    stored tensor in the metadata; arrays pass through.
    ``metadata`` is your own string metadata (the key ``"vitrust"`` is
    reserved). The write is atomic: a temporary file in the same directory is
    renamed over ``path`` only when complete, so a failed save leaves an
    existing file untouched.

    ``values`` stores the pruned tensors' kept values as each holds them
    (``None``: encoded ones as they are encoded, see
    :meth:`ViterbiSparse.quantize`), as themselves (``"raw"``, decoding
    encoded ones) or encoded: ``"int8"`` / ``"int4"`` (a scale per ``group``
    consecutive values) or ``"codebook1"`` .. ``"codebook8"`` (2^B shared
    centroids, fitted weighted by |value|). Encoding is lossy; the file
    loads with the values encoded as stored (docs/format.md, "Value
    encodings"). float8 values are always raw.
    """
    values, group = encoding_args(values, group)
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors: expected a mapping of names to arrays, got {type(tensors).__name__}")
    meta = {} if metadata is None else metadata
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise TypeError("metadata: expected a mapping of str to str")
    plain: List[Tuple[Any, ...]] = []
    sparse: List[Tuple[Any, ...]] = []
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {type(name).__name__}")
        if isinstance(t, ViterbiSparse):
            dt = _values.value_name(t.dtype)
            sparse.append(
                (name, dt, list(t.shape), stored_values(t, values, group), t.config, t.block_steps, t.lam,
                 t.index, t.thresholds, t.order)
            )
        else:
            a = t if isinstance(t, np.ndarray) else np.asarray(t)
            plain.append((name, _dtype_name(a, f"tensor {name!r}"), list(a.shape), _le_bytes(a)))
    _vitrust.save_file(os.fspath(path), plain, sparse, dict(meta))


def sparse_values(name: str, dtype_name: str, values: Any) -> Any:
    """A loaded pruned tensor's values: an array of its dtype, or encoded."""
    if isinstance(values, tuple):
        return _values.from_core(values, _checks.stored_dtype(dtype_name, f"tensor {name!r}"))
    return _from_bytes(name, dtype_name, values)


def read_metadata(path: PathLike) -> Dict[str, str]:
    """The string metadata ``save_file`` stored in ``path`` (its ``metadata``
    argument; vitrust's own key is left out), or any safetensors file's
    ``__metadata__``, such as Hugging Face's ``{"format": "pt"}``. Only the
    header is read; ``load_file`` validates the whole file.
    """
    return _vitrust.read_metadata(os.fspath(path))


def load_file(path: PathLike, *, threads: Optional[int] = None) -> Dict[str, Any]:
    """Load a safetensors file: pruned tensors as ``ViterbiSparse``, the rest as arrays.

    Everything is validated before anything is returned: the container, the
    format version, every config and layout, each tensor's dtype, shape and
    CRC-32, and each pruned tensor's value count against its index. A damaged,
    truncated or hostile file raises ``ValueError`` naming the problem.
    Encoded values stay encoded (``ViterbiSparse.encoded``).
    """
    t = _checks.threads(threads)
    plain, sparse = _vitrust.load_file(os.fspath(path), t)
    out: Dict[str, Any] = {}
    for name, dt, shape, data in plain:
        out[name] = _from_bytes(name, dt, data).reshape(shape)
    for name, dt, shape, values, config, block_steps, lam, index, thresholds, order in sparse:
        values = sparse_values(name, dt, values)
        out[name] = ViterbiSparse._from_core(tuple(shape), config, block_steps, index, values, lam, threads=t,
                                             thresholds=thresholds, order=order)
    return dict(sorted(out.items()))
