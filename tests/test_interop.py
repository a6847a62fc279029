"""scipy export, value casts and pickling."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vitrust


@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    rate=st.floats(0.0, 0.95),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
)
def test_to_scipy_is_the_dense_2d_view(shape, rate, dtype):
    w = np.random.default_rng(len(shape)).standard_normal(shape).astype(dtype)
    sp = vitrust.prune(w, rate, flip_flops=5)
    csr = sp.to_scipy()
    rows = shape[0] if len(shape) >= 2 else 1
    assert csr.format == "csr" and csr.shape == (rows, w.size // rows) and csr.dtype == (np.float32 if dtype == np.float16 else dtype)
    assert csr.nnz == sp.nnz
    assert np.array_equal(csr.toarray(), sp.to_dense().reshape(rows, -1))
    assert csr.has_sorted_indices


def test_to_scipy_without_scipy(monkeypatch):
    sp = vitrust.prune(np.arange(1.0, 31.0), 0.5, flip_flops=3)
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    with pytest.raises(ImportError, match="needs scipy"):
        sp.to_scipy()


def test_astype():
    w = np.random.default_rng(0).standard_normal((20, 30))
    sp = vitrust.prune(w, 0.8)
    half = sp.astype(np.float16)
    assert half.dtype == np.float16 and sp.dtype == np.float64
    assert np.array_equal(half.values, sp.values.astype(np.float16))
    assert np.array_equal(half.mask(), sp.mask()) and half.lam == sp.lam
    half.index[0] ^= np.uint64(1)
    assert not np.array_equal(half.index, sp.index)  # a copy, not a view
    big = vitrust.prune(w * 1e6, 0.8)
    with pytest.raises(ValueError, match="overflows float16"):
        big.astype("float16")
    with pytest.raises(TypeError, match="float16, bfloat16, .* or float64"):
        sp.astype(np.int32)


def test_pickling():
    w = np.random.default_rng(3).standard_normal((7, 11)).astype(np.float32)
    sp = vitrust.prune(w, 0.7, n_in=2, ratio=3, flip_flops=6, block_steps=9)
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(sp, protocol=proto))
        assert back.shape == sp.shape and back.config == sp.config and back.lam == sp.lam
        assert back.block_steps == sp.block_steps
        assert np.array_equal(back.index, sp.index) and np.array_equal(back.values, sp.values)
        assert np.array_equal(back.to_dense(), sp.to_dense())
        cfg = pickle.loads(pickle.dumps(sp.config, protocol=proto))
        assert cfg == sp.config and cfg.taps == sp.config.taps


def test_unpickling_validates():
    sp = vitrust.prune(np.arange(1.0, 101.0), 0.5, flip_flops=4)
    data = pickle.dumps(sp)
    cls, args = sp.__reduce__()
    bad = (args[0], args[1], args[2], args[3], args[4][:-1], args[5])
    with pytest.raises(ValueError, match="values"):
        cls(*bad)
    assert pickle.loads(data).nnz == sp.nnz
