"""Index-cost models against plain-NumPy references written from their definitions (``vitrust.index_cost``),
and the storage table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vitrust


def view2d(mask):
    rows = mask.shape[0] if mask.ndim >= 2 else 1
    return rows, mask.size // rows


def ref_cost(mask, fmt, **p):
    """The definitions in ``vitrust.index_cost``'s docstring, literally."""
    rows, cols = view2d(mask)
    n, nnz = mask.size, int(mask.sum())
    if fmt == "viterbi":
        n_out = p["ratio"] * p.get("n_in", 1)
        return math.ceil(n / n_out) * p.get("n_in", 1)
    if fmt == "bitmask":
        return n
    if fmt == "csr32":
        return 32 * nnz + 32 * (rows + 1)
    if fmt == "csr16":
        return 16 * nnz + 16 * (rows + 1)
    if fmt == "csr-min":
        col_bits = max(1, math.ceil(math.log2(cols))) if cols > 1 else 1
        ptr_bits = max(1, math.ceil(math.log2(nnz + 1)))
        return nnz * col_bits + (rows + 1) * ptr_bits
    if fmt == "relative":
        b = p["bits"]
        pos = np.flatnonzero(mask.reshape(-1))
        gaps = np.diff(np.concatenate([[-1], pos]))
        return b * int(len(gaps) + ((gaps - 1) // (2**b - 1)).sum())
    if fmt == "entropy":
        if nnz in (0, n):
            return 0
        q = nnz / n
        return math.ceil(n * (-q * math.log2(q) - (1 - q) * math.log2(1 - q)))
    raise AssertionError(fmt)


masks = st.builds(
    lambda shape, density, seed: np.random.default_rng(seed).random(shape) < density,
    st.lists(st.integers(1, 12), min_size=1, max_size=4),
    st.sampled_from([0.0, 0.02, 0.1, 0.5, 0.9, 1.0]),
    st.integers(0, 2**32),
)


@given(mask=masks)
def test_models_match_the_reference(mask):
    for fmt in ("bitmask", "csr32", "csr16", "csr-min", "entropy"):
        assert vitrust.index_cost(mask, fmt) == ref_cost(mask, fmt), fmt
    for b in (1, 2, 4, 5, 8):
        assert vitrust.index_cost(mask, "relative", bits=b) == ref_cost(mask, "relative", bits=b), b
    for ratio, n_in in ((5, 1), (3, 2), (1, 4)):
        got = vitrust.index_cost(mask, "viterbi", ratio=ratio, n_in=n_in)
        assert got == ref_cost(mask, "viterbi", ratio=ratio, n_in=n_in)


def test_relative_padding_by_hand():
    m = np.zeros(40, bool)
    m[[0, 20, 21]] = True  # gaps 1, 20, 1: with b = 4 (span 15) one padding entry
    assert vitrust.index_cost(m, "relative", bits=4) == 4 * 4
    assert vitrust.index_cost(m, "relative", bits=2) == 2 * (3 + 19 // 3)


@given(
    shape=st.lists(st.integers(1, 30), min_size=1, max_size=3),
    ratio=st.integers(1, 8),
    n_in=st.integers(1, 2),
    block_steps=st.integers(1, 50),
)
def test_viterbi_cost_is_the_layouts_index_bits(shape, ratio, n_in, block_steps):
    w = np.random.default_rng(0).standard_normal(shape)
    sp = vitrust.prune(w, 0.5, ratio=ratio, n_in=n_in, flip_flops=4, block_steps=block_steps)
    assert vitrust.index_cost(sp.mask(), "viterbi", ratio=ratio, n_in=n_in, block_steps=block_steps) == sp.index_bits
    # n_in bits per step of n_out = ratio * n_in weights; only the last step is short.
    assert vitrust.index_cost(sp, "viterbi") == math.ceil(w.size / (ratio * n_in)) * n_in
    assert vitrust.index_cost(sp, "csr32") == ref_cost(sp.mask(), "csr32")


def test_storage_table():
    w = np.random.default_rng(1).standard_normal((40, 90)).astype(np.float16)
    sp = vitrust.prune(w, 0.9)
    t = sp.storage()
    assert isinstance(t, dict) and isinstance(t, vitrust.StorageTable)
    n, nnz, m = w.size, sp.nnz, sp.mask()
    assert t["dense"]["total_bytes"] == n * 2
    assert t["viterbi"]["index_bits"] == sp.index_bits
    assert t["viterbi"]["total_bytes"] == sp.index.nbytes + 2 * nnz
    for fmt in ("bitmask", "csr32", "csr16", "csr-min", "entropy"):
        bits = ref_cost(m, fmt)
        assert t[fmt]["index_bits"] == bits and t[fmt]["bits_per_weight"] == bits / n
        assert t[fmt]["total_bytes"] == math.ceil(bits / 8) + 2 * nnz, fmt
    for b in (4, 5):
        r = t[f"relative-{b}"]
        bits = ref_cost(m, "relative", bits=b)
        padding = bits // b - nnz
        assert r["index_bits"] == bits and r["padding"] == padding
        assert r["total_bytes"] == math.ceil(bits / 8) + 2 * (nnz + padding)
    text = str(t)
    assert "viterbi" in text and "relative-5" in text and f"{nnz} kept" in text
    assert set(sp.storage(relative_bits=(3,))) >= {"relative-3"}


def test_csr16_left_out_of_tables_when_columns_do_not_fit():
    sp = vitrust.prune(np.random.default_rng(2).standard_normal(70000), 0.5, flip_flops=4)
    assert "csr16" not in sp.storage() and "csr32" in sp.storage()
    with pytest.raises(ValueError, match="16-bit"):
        vitrust.index_cost(sp.mask(), "csr16")


def test_bad_arguments():
    m = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match="expected one of"):
        vitrust.index_cost(m, "coo")
    with pytest.raises(TypeError, match="ratio"):
        vitrust.index_cost(m, "viterbi")
    with pytest.raises(TypeError, match="bits"):
        vitrust.index_cost(m, "relative")
    with pytest.raises(TypeError, match="unexpected"):
        vitrust.index_cost(m, "csr32", bits=3)
    with pytest.raises(ValueError, match="bits = 0"):
        vitrust.index_cost(m, "relative", bits=0)
    with pytest.raises(ValueError, match="ratio = 0"):
        vitrust.index_cost(m, "viterbi", ratio=0)
    with pytest.raises(TypeError, match="bool"):
        vitrust.index_cost(np.ones(3), "bitmask")
    with pytest.raises(ValueError, match="non-empty"):
        vitrust.index_cost(np.ones(0, bool), "bitmask")
    with pytest.raises(ValueError, match="non-empty"):
        vitrust.index_cost(np.bool_(True), "bitmask")
