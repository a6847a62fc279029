"""``prune`` and ``ViterbiSparse``: round trips, rate control, determinism, dtypes."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vitrust

from reference import expand, kept_values, retained, stream_order

DTYPES = [np.float16, np.float32, np.float64]


@st.composite
def small_tensors(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32))
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@given(small_tensors(), st.floats(0.0, 0.99), st.integers(1, 3), st.integers(2, 8), st.integers(1, 64))
def test_round_trips(w, rate, n_in, flip_flops, block_steps):
    w0 = w.copy()
    sp = vitrust.prune(w, rate, n_in=n_in, flip_flops=max(flip_flops, n_in), ratio=3, block_steps=block_steps)
    np.testing.assert_array_equal(w, w0)  # the input is never modified
    mask = sp.mask()
    assert mask.shape == w.shape and mask.dtype == bool
    stream_mask = stream_order(mask, sp.order)  # expand gives the stream's order
    np.testing.assert_array_equal(vitrust.expand(sp.config, sp.index, w.size, block_steps), stream_mask)
    np.testing.assert_array_equal(expand(sp.config, sp.index, w.size, block_steps), stream_mask)
    assert sp.nnz == mask.sum() and sp.values.dtype == w.dtype
    np.testing.assert_array_equal(sp.values, kept_values(w, sp))  # stream order
    dense = sp.to_dense()
    assert dense.dtype == w.dtype and dense.shape == w.shape
    np.testing.assert_array_equal(dense[mask], w[mask])
    assert np.all(dense[~mask] == 0)
    np.testing.assert_array_equal(np.asarray(sp), dense)
    assert sp.rate == pytest.approx(1 - mask.sum() / w.size)
    steps = sum(math.ceil(min(block_steps * sp.config.n_out, w.size - s) / sp.config.n_out)
                for s in range(0, w.size, block_steps * sp.config.n_out))
    assert sp.index_bits == steps * n_in


@given(
    st.tuples(st.integers(100, 400), st.integers(100, 300)),
    st.floats(0.3, 0.95),
    st.sampled_from(["gauss", "laplace", "rows"]),
    st.integers(0, 1000),
)
def test_rate_is_within_tolerance(shape, rate, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        w = rng.standard_normal(shape)
    elif kind == "laplace":
        w = rng.laplace(size=shape)
    else:  # rows of very different scale
        w = rng.standard_normal(shape) * rng.lognormal(0, 0.5, size=(shape[0], 1))
    w = w.astype(np.float32)
    assert w.size >= 10_000
    sp = vitrust.prune(w, rate, flip_flops=10, n_in=1)
    assert abs(sp.rate - rate) <= 0.002, (sp.rate, rate)


def test_rate_on_a_larger_tensor():
    w = np.random.default_rng(1).standard_normal((700, 1000)).astype(np.float32)
    for rate in (0.5, 0.9, 0.95):
        sp = vitrust.prune(w, rate, flip_flops=10, n_in=1)
        assert abs(sp.rate - rate) <= 0.002
        # Far better than chance; close to what the paper's VD reaches.
        assert retained(sp.mask(), np.abs(w)) > 0.75


def test_rate_zero_keeps_everything():
    w = np.random.default_rng(0).standard_normal((30, 40))
    sp = vitrust.prune(w, 0.0)
    assert sp.nnz == w.size and sp.rate == 0.0
    np.testing.assert_array_equal(sp.to_dense(), w)


def test_lam_mode_and_scores():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 80)).astype(np.float32)
    a = vitrust.prune(w, lam=1.0)
    b = vitrust.prune(w, lam=1.0, score="square")
    c = vitrust.prune(w, lam=1.0, scores=np.abs(w))
    assert a.lam == 1.0 and 0.0 < a.rate < 1.0
    np.testing.assert_array_equal(a.index, c.index)  # caller scores |w| == default
    assert b.nnz != a.nnz or not np.array_equal(a.index, b.index)
    # A larger multiplier never keeps more.
    assert vitrust.prune(w, lam=1.5, config=a.config).nnz <= a.nnz


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_and_threads_give_identical_bits(dtype):
    w = np.random.default_rng(3).standard_normal((300, 256)).astype(dtype)
    one = vitrust.prune(w, 0.9, threads=1, flip_flops=10, n_in=1)
    two = vitrust.prune(w, 0.9, threads=2, flip_flops=10, n_in=1)
    default = vitrust.prune(w, 0.9, flip_flops=10, n_in=1)
    np.testing.assert_array_equal(one.index, two.index)
    np.testing.assert_array_equal(one.index, default.index)
    assert one.lam == two.lam and one.values.dtype == dtype
    np.testing.assert_array_equal(one.values, two.values)


def test_seed_changes_taps_and_index():
    w = np.random.default_rng(4).standard_normal(20_000)
    a, b = vitrust.prune(w, 0.8, seed=1, effort="fast"), vitrust.prune(w, 0.8, seed=2, effort="fast")
    assert a.config.taps != b.config.taps
    assert not np.array_equal(a.index, b.index)


def test_non_contiguous_input():
    w = np.random.default_rng(5).standard_normal((90, 120)).astype(np.float32)
    view = w.T
    sp = vitrust.prune(view, 0.7)
    np.testing.assert_array_equal(sp.to_dense()[sp.mask()], view[sp.mask()])


def test_repr_and_config():
    sp = vitrust.prune(np.random.default_rng(6).standard_normal((50, 50)), 0.9)
    r = repr(sp)
    assert "rate=" in r and "bit/weight" in r and "(50, 50)" in r
    c = sp.config
    assert (c.flip_flops, c.n_in, c.n_out) == (10, 1, 5)  # effort="default", the signature of issue 2
    assert (c.comparator_bits, c.threshold) == vitrust.default_comparator(0.9)
    assert c.ratio == 5.0 and len(c.taps) == c.n_out * c.comparator_bits
    assert sp.bits_per_weight == pytest.approx(0.2, abs=0.01)
    assert "VDConfig(flip_flops=10" in repr(c)


def test_viterbi_sparse_from_parts():
    w = np.random.default_rng(7).standard_normal((40, 60)).astype(np.float32)
    sp = vitrust.prune(w, 0.8)
    again = vitrust.ViterbiSparse(sp.shape, sp.config, sp.block_steps, sp.index, sp.values, sp.lam)
    np.testing.assert_array_equal(again.to_dense(), sp.to_dense())
    with pytest.raises(ValueError, match="values has"):
        vitrust.ViterbiSparse(sp.shape, sp.config, sp.block_steps, sp.index, sp.values[1:], sp.lam)
    with pytest.raises(ValueError, match="index has"):
        vitrust.ViterbiSparse(sp.shape, sp.config, sp.block_steps, sp.index[1:], sp.values, sp.lam)
