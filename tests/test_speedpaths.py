"""Optimised paths against plain references: every instruction set gives the
same bits, and products on the compressed form match dense products."""

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vitrust
from vitrust import _vitrust

from reference import brute_force_optimum

LEVELS = _vitrust.simd_levels()


def test_portable_is_always_available():
    assert LEVELS[0] == "portable"


@given(st.integers(6, 12), st.integers(1, 5), st.integers(0, 2**32), st.floats(0.0, 1.0))
def test_levels_give_identical_bits(k, n_out, seed, lam):
    cfg = vitrust.VDConfig(k, 1, n_out, 3, 2, seed=seed)
    w = np.random.default_rng(seed).standard_normal(7_001).astype(np.float32)
    results = [_vitrust.search(cfg, w, "abs", lam, 200, simd=level) for level in LEVELS]
    for index, nnz, metric, _ in results[1:]:
        np.testing.assert_array_equal(index, results[0][0])
        assert (nnz, metric) == results[0][1:3]


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_is_optimal(level):
    rng = np.random.default_rng(8)
    for seed in range(4):
        cfg = vitrust.VDConfig(6, 1, 5, 5, 3, seed=seed)
        scores = rng.exponential(size=60)
        index, _, _, _ = _vitrust.search(cfg, scores, "raw", 0.8, 12, simd=level)
        mask = vitrust.expand(cfg, index, 60, 12)
        best = brute_force_optimum(cfg, scores, 0.8, 12)
        # The float32 search's bound (docs/algorithm.md, "Search objective").
        assert abs((scores - 0.8)[mask].sum() - best) <= 1e-5 * np.abs(scores - 0.8).sum()


def test_unknown_level():
    cfg = vitrust.VDConfig(6, 1, 5, 5, 3)
    with pytest.raises(ValueError, match="simd"):
        _vitrust.search(cfg, np.ones(10), "abs", 0.5, 8, simd="mmx")


# Each product of W, shape (r, c): the operator, the operand's shape and the
# result's, for a batch of b (b = 0: a vector).
PRODUCTS = {
    "W @ X": (lambda w, x: w @ x, lambda r, c, b: (c, b) if b else (c,), lambda r, c, b: (r, b) if b else (r,)),
    "X @ W": (lambda w, x: x @ w, lambda r, c, b: (b, r) if b else (r,), lambda r, c, b: (b, c) if b else (c,)),
}


@pytest.mark.parametrize("product", list(PRODUCTS))
@given(
    st.tuples(st.integers(1, 40), st.integers(1, 70)),
    st.sampled_from([np.float16, np.float32, np.float64]),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 40),
    st.floats(0.0, 0.95),
    st.integers(0, 2**32),
)
def test_products_match_dense(product, shape, wdtype, xdtype, batch, rate, seed):
    op, operand, result = PRODUCTS[product]
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(wdtype)
    sp = vitrust.prune(w, rate, block_steps=7, flip_flops=6)
    x = rng.standard_normal(operand(*shape, batch)).astype(xdtype)
    got = op(sp, x)
    dt = np.float64 if np.float64 in (np.dtype(wdtype), np.dtype(xdtype)) else np.float32
    assert got.dtype == dt and got.shape == result(*shape, batch)
    want = op(sp.to_dense().astype(np.float64), x.astype(np.float64))
    tol = 1e-5 if dt == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("product", list(PRODUCTS))
def test_products_are_thread_independent_and_view_nd_tensors(product):
    op, operand, _ = PRODUCTS[product]
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 4, 8, 8)).astype(np.float32)
    x = rng.standard_normal(operand(64, 256, 33)).astype(np.float32)
    a = vitrust.prune(w, 0.8, threads=1)
    b = vitrust.prune(w, 0.8, threads=2)
    np.testing.assert_array_equal(op(a, x), op(b, x))
    np.testing.assert_allclose(op(a, x), op(a.to_dense().reshape(64, 256), x), rtol=1e-5, atol=1e-5)


def test_cached_block_starts_survive_pickling_casts_and_a_rewritten_index():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((96, 700)).astype(np.float32)
    sp = vitrust.prune(w, 0.9, block_steps=64)
    starts = _vitrust.block_starts(sp.config, sp.index, sp.size, sp.block_steps)
    np.testing.assert_array_equal(sp._starts, starts)
    dense, x = sp.to_dense(), rng.standard_normal((700, 5)).astype(np.float32)
    for other in (pickle.loads(pickle.dumps(sp)), sp.astype(np.float64)):
        np.testing.assert_array_equal(other.to_dense(), dense.astype(other.dtype))
    # Swap two blocks of the index: the same number of kept weights, but the
    # cached starts are now wrong for both blocks, and results follow the index.
    n_blocks = len(starts) - 1
    counts = np.diff(starts.astype(np.int64))
    a, b = 0, int(np.argmax(counts[: n_blocks - 1] != counts[0]))
    assert b > 0, "the test needs two full blocks that keep different numbers of weights"
    words = -(-sp.block_steps * sp.config.n_in // 64)
    blk_a, blk_b = sp.index[a * words:(a + 1) * words].copy(), sp.index[b * words:(b + 1) * words].copy()
    sp.index[a * words:(a + 1) * words], sp.index[b * words:(b + 1) * words] = blk_b, blk_a
    want = np.zeros(sp.size, np.float32)
    want[sp.mask().ravel()] = sp.values
    np.testing.assert_array_equal(sp.to_dense().ravel(), want)
    np.testing.assert_allclose(sp @ x, want.reshape(sp.shape) @ x, rtol=1e-5, atol=1e-5)


def test_matmul_errors():
    sp = vitrust.prune(np.random.default_rng(2).standard_normal((10, 12)), 0.5)
    with pytest.raises(ValueError, match="shape"):
        sp @ np.ones((11, 2))
    with pytest.raises(ValueError, match="shape"):
        sp @ np.ones((12, 2, 2))
    with pytest.raises(ValueError, match="finite"):
        sp @ np.full(12, np.nan)
    with pytest.raises(TypeError, match="operand"):
        sp @ np.ones(12, dtype=complex)
    with pytest.raises(ValueError, match="shape"):
        np.ones((2, 9)) @ sp
    with pytest.raises(ValueError, match="finite"):
        np.full(10, np.inf) @ sp


@given(st.integers(1, 150), st.integers(1, 150), st.sampled_from(["float16", "bfloat16", "float32", "float64",
                                                                  "float8_e4m3fn"]),
       st.integers(1, 2), st.integers(0, 2**32))
def test_transposed_is_numpys_transpose(rows, cols, dtype, threads, seed):
    """The tiled transpose behind order "F" against NumPy's, in every value
    dtype (ragged tiles on both sides) and thread count."""
    import ml_dtypes

    dt = np.dtype(getattr(ml_dtypes, dtype)) if dtype in ("bfloat16", "float8_e4m3fn") else np.dtype(dtype)
    a = np.random.default_rng(seed).standard_normal(rows * cols).astype(dt)
    got = _vitrust.transposed(a, rows, cols, threads)
    assert got.dtype == dt and got.shape == (rows * cols,)
    np.testing.assert_array_equal(got.view(f"u{dt.itemsize}"),
                                  np.ascontiguousarray(a.reshape(rows, cols).T).reshape(-1).view(f"u{dt.itemsize}"))


def test_transposed_refuses_a_shape_that_does_not_hold_the_array():
    a = np.zeros(12, np.float32)
    with pytest.raises(ValueError, match="transpose: 5 x 3"):
        _vitrust.transposed(a, 5, 3)
    with pytest.raises(TypeError, match="a: expected a 1-D"):
        _vitrust.transposed(np.zeros(12, np.int32), 3, 4)
