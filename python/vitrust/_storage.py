"""Index-cost models and storage tables (the VD index as docs/format.md, "Index layout", lays it out).

``index_cost(mask, fmt, **params)`` gives the bits an index of ``mask`` costs
under one format; ``StorageTable`` (from ``ViterbiSparse.storage()``) sets the
formats side by side with the bits and bytes they need including the values.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Tuple

import numpy as np

from . import _checks, _vitrust

FORMATS = ("viterbi", "bitmask", "csr32", "csr16", "csr-min", "relative", "entropy")
_PARAMS = {"viterbi": {"ratio", "n_in", "block_steps"}, "relative": {"bits"}}
# Deep Compression's codebook bits for fully connected layers, for its row
# of a tensor whose values are not encoded.
DC_CODE_BITS = 5
# Relative indexing's entries are at most a 32-bit gap each.
MAX_RELATIVE_BITS = 32


def _mask(mask: Any) -> np.ndarray:
    m = mask if isinstance(mask, np.ndarray) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"mask: expected a bool array, got {m.dtype}")
    if m.ndim == 0 or m.size == 0:
        raise ValueError(f"mask: expected a non-empty array with at least one dimension, got shape {m.shape}")
    return m


def _cost(m: np.ndarray, fmt: str, params: Dict[str, Any]) -> Tuple[int, int]:
    """``(bits, padding entries)`` of a checked bool mask."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt = {fmt!r}: expected one of {', '.join(FORMATS)}")
    unknown = set(params) - _PARAMS.get(fmt, set())
    if unknown:
        raise TypeError(f"index_cost({fmt!r}): unexpected parameter(s) {', '.join(sorted(unknown))}")
    flat = np.ascontiguousarray(m).reshape(-1)
    rows, _ = _checks.matrix_view(m.shape)
    if fmt == "viterbi":
        if "ratio" not in params:
            raise TypeError("index_cost('viterbi') needs ratio= (weights per index bit, e.g. 5)")
        ratio = _checks.integer(params["ratio"], "ratio", 1, _checks.MAX_N_OUT)
        n_in = _checks.integer(params.get("n_in", 1), "n_in", 1, _checks.MAX_N_IN)
        # The cost does not depend on block_steps (every block but the last is
        # whole steps), but a given value is still checked.
        _checks.integer(params.get("block_steps", _checks.DEFAULT_BLOCK_STEPS), "block_steps", 1, _vitrust.MAX_BLOCK_STEPS)
        if ratio * n_in > _checks.MAX_N_OUT:
            raise ValueError(f"ratio * n_in = {ratio * n_in}: must be at most {_checks.MAX_N_OUT}")
        return _vitrust.index_cost(flat, rows, fmt, n_out=ratio * n_in, n_in=n_in)
    if fmt == "relative":
        if "bits" not in params:
            raise TypeError("index_cost('relative') needs bits= (bits per gap entry, e.g. 4)")
        return _vitrust.index_cost(flat, rows, fmt, bits=_checks.integer(params["bits"], "bits", 1, MAX_RELATIVE_BITS))
    return _vitrust.index_cost(flat, rows, fmt)


def index_cost(mask: Any, fmt: str, **params: Any) -> int:
    """Index bits of the keep-``mask`` under ``fmt``, by the definitions below.

    A tensor of more than two dimensions is viewed as ``(shape[0], rest)``, a
    1-D one as one row. Formats: ``"viterbi"`` (``ratio=``, optional
    ``n_in=1`` and ``block_steps``: ``ceil(N / (ratio * n_in)) * n_in`` bits,
    equal to a ``ViterbiSparse``'s ``index_bits``), ``"bitmask"`` (``N``),
    ``"csr32"`` / ``"csr16"`` (``32`` / ``16`` bits per kept weight and per row
    pointer, ``rows + 1`` of them), ``"csr-min"`` (the fewest bits holding a
    column index, and a row pointer), ``"relative"`` (``bits=b``: the gap
    from the previous kept weight in the flattened C-order stream, the first
    from -1, plus ``(gap - 1) // (2**b - 1)`` padding entries, ``b`` bits
    each) and ``"entropy"`` (``ceil(N * H(nnz / N))``).
    A ``ViterbiSparse`` may be passed instead of a mask.
    """
    if hasattr(mask, "index_bits") and hasattr(mask, "mask"):
        if fmt == "viterbi" and not params:
            return int(mask.index_bits)
        mask = mask.mask()
    return int(_cost(_mask(mask), fmt, params)[0])


class StorageTable(Dict[str, Dict[str, float]]):
    """Format name -> ``{"index_bits", "bits_per_weight", "padding",
    "value_bits", "total_bits_per_weight", "total_bytes"}``.

    ``bits_per_weight`` is the index's, ``total_bits_per_weight`` the
    index's and the values' together, per dense weight. The index formats
    store the values at their dtype; ``viterbi`` stores them as the tensor
    holds them (raw or encoded), its index as stored (whole ``u64`` words
    per block), the models ``ceil(index_bits / 8)``; relative indexing also
    stores a zero value per padding entry. ``dense`` is the unpruned
    tensor, and ``relative-5+codebookB`` Deep Compression's storage before
    Huffman coding: 5-bit relative gaps, a ``B``-bit code per entry and
    ``2**B`` centroids (``B`` the tensor's code bits if encoded, else 5).
    """

    def __init__(self, rows: Iterable[Tuple[str, Dict[str, float]]], n_weights: int, nnz: int, itemsize: int,
                 encoding: str = "raw"):
        super().__init__(rows)
        self.n_weights, self.nnz, self.itemsize, self.encoding = n_weights, nnz, itemsize, encoding

    def __str__(self) -> str:
        ref = self["viterbi"]["index_bits"] if "viterbi" in self else None
        held = "" if self.encoding == "raw" else f", vitrust's as {self.encoding}"
        lines = [
            f"{self.n_weights} weights, {self.nnz} kept ({1 - self.nnz / self.n_weights:.2%} pruned), "
            f"values {self.itemsize} bytes each{held}",
            f"{'format':<22}{'index bits':>14}{'bits/weight':>13}{'padding':>10}{'total bits/weight':>19}"
            f"{'total bytes':>14}{'index vs viterbi':>18}",
        ]
        for name, r in self.items():
            vs = f"{r['index_bits'] / ref:.2f}x" if ref and name != "dense" else ""
            lines.append(
                f"{name:<22}{r['index_bits']:>14,}{r['bits_per_weight']:>13.4f}{r['padding']:>10,}"
                f"{r['total_bits_per_weight']:>19.4f}{r['total_bytes']:>14,}{vs:>18}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"StorageTable({dict(self)!r})"


def _named_cost(flat: np.ndarray, rows: int, name: str) -> Tuple[int, int]:
    """``(bits, padding)`` of a flat C-order mask under a storage-table format name."""
    if name.startswith("relative-"):
        return _vitrust.index_cost(flat, rows, "relative", bits=int(name[len("relative-"):]))
    return _vitrust.index_cost(flat, rows, name)


def storage(sp: Any, relative_bits: Iterable[int] = (4, 5)) -> StorageTable:
    """The storage table of a ``ViterbiSparse`` (see ``StorageTable``).

    The models are computed from the index block by block, without building
    the mask: memory stays small whatever the tensor's size (for order
    ``"F"``, whose stream is not the models' C order, from the mask). The
    ``viterbi`` row counts per-block thresholds at ``comparator_bits`` each.
    """
    n, nnz, item = sp.size, sp.nnz, sp.dtype.itemsize
    n_rows, cols = _checks.matrix_view(sp.shape)
    names = ["csr32"] + (["csr16"] if cols <= 1 << 16 else []) + ["csr-min"]
    names += [f"relative-{b}" for b in relative_bits] + ["entropy"]
    extra = [] if "relative-5" in names else ["relative-5"]  # for Deep Compression's row
    if sp._transposed():
        # Order "F": the models index the mask in C order, which is not the
        # stream's; they are computed from the mask itself.
        flat = np.ascontiguousarray(sp.mask()).reshape(-1)
        costs = {name: _named_cost(flat, n_rows, name) for name in names + extra}
    else:
        costs = dict(zip(names + extra, _vitrust.index_costs(sp.config, sp.index, n, sp.block_steps, n_rows,
                                                             names + extra, sp._threads, sp.thresholds)))

    def row(bits: int, total_bytes: int, value_bits: int, padding: int = 0) -> Dict[str, float]:
        return {"index_bits": bits, "bits_per_weight": bits / n, "padding": padding, "value_bits": value_bits,
                "total_bits_per_weight": (bits + value_bits) / n, "total_bytes": total_bytes}

    def model(bits: int, padding: int = 0) -> Dict[str, float]:
        vbits = (nnz + padding) * item * 8
        return row(bits, math.ceil(bits / 8) + vbits // 8, vbits, padding)

    e = sp.encoded
    b = e.bits if e is not None else DC_CODE_BITS
    dc_bits, dc_padding = costs["relative-5"]
    dc_values = (nnz + dc_padding) * b + (1 << b) * 8 * (e.table_dtype.itemsize if e is not None else min(item, 4))
    rows = [
        ("dense", row(0, n * item, n * item * 8)),
        # index_bits counts comparator_bits per block for per-block thresholds
        # (stored as one byte each), as the core's cost::viterbi_bits does.
        ("viterbi", row(sp.index_bits, sp.nbytes, sp.value_bits)),
        ("bitmask", model(n)),
    ]
    rows += [(name, model(*costs[name])) for name in names]
    rows.append((f"relative-5+codebook{b}", row(dc_bits, math.ceil((dc_bits + dc_values) / 8), dc_values,
                                                dc_padding)))
    return StorageTable(rows, n, nnz, item, sp.encoding)
