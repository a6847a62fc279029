"""prune with per-block thresholds and the column-major order (format v2), checked
against the NumPy reference, the dense form and the v1 search block by block."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vitrust
from reference import expand_v2
from vitrust import _vitrust

RNG = np.random.default_rng(13)
# Rows of very different scale: what per-block thresholds are for.
W = (RNG.standard_normal((300, 200)) * np.exp(RNG.uniform(-2, 2, (300, 1)))).astype(np.float32)


def _stream(a: np.ndarray, order: str) -> np.ndarray:
    return (a.T if order == "F" else a).reshape(-1)


@pytest.mark.parametrize("order", ["C", "F"])
def test_block_thresholds_and_order_round_trip(order):
    sp = vitrust.prune(W, 0.9, block_thresholds=True, order=order)
    assert sp.order == order and sp.thresholds is not None and sp.thresholds.dtype == np.uint8
    n_blocks = -(-W.size // (sp.block_steps * sp.config.n_out))
    assert len(sp.thresholds) == n_blocks
    assert len(np.unique(sp.thresholds)) > 1  # rows of different scale want different thresholds
    mask = expand_v2(sp.config, sp.index, W.shape, sp.block_steps, sp.thresholds, order)
    np.testing.assert_array_equal(sp.mask(), mask)
    # Values are the kept weights in stream order.
    np.testing.assert_array_equal(sp.values, _stream(W, order)[_stream(mask, order)])
    np.testing.assert_array_equal(sp.to_dense(), np.where(mask, W, 0))
    assert abs(sp.rate - 0.9) <= 2e-3
    dense = np.where(mask, W, 0).astype(np.float64)
    x = RNG.standard_normal((200, 4))
    y = RNG.standard_normal((3, 300))
    np.testing.assert_allclose(sp @ x, dense @ x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(y @ sp, y @ dense, rtol=1e-9, atol=1e-9)
    steps = -(-W.size // sp.config.n_out)
    assert sp.index_bits == steps * sp.config.n_in + n_blocks * sp.config.comparator_bits


def test_block_thresholds_do_not_depend_on_threads():
    a = vitrust.prune(W, 0.8, block_thresholds=True, order="F", threads=1)
    b = vitrust.prune(W, 0.8, block_thresholds=True, order="F", threads=2)
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    assert a.lam == b.lam


def test_each_block_keeps_the_best_candidate():
    """Two candidates per block give, block by block, the better of the two
    single-candidate searches: the same bits and the larger objective."""
    config = vitrust.VDConfig(8, 1, 5, 5, 6, seed=3)
    w = W.reshape(-1)[: 40 * 512].copy()
    lam, bs = 0.6, 40
    one = [_vitrust.search(config, w, "abs", lam, bs, None, 1 << 30, None, [f]) for f in (0.7, 1.4)]
    both = _vitrust.search(config, w, "abs", lam, bs, None, 1 << 30, None, [0.7, 1.4])
    n_blocks = len(both[3])
    wpb = 1  # 40 steps of one input bit: one word per block
    for b in range(n_blocks):
        # Each block alone, searched v1-style at the threshold each candidate chose.
        piece = w[b * bs * 5 : (b + 1) * bs * 5]
        metrics = []
        for idx, _, _, th in one:
            c = vitrust.VDConfig(8, 1, 5, 5, int(th[b]), taps=config.taps)
            ref = _vitrust.search(c, piece, "abs", lam, bs)
            np.testing.assert_array_equal(ref[0], idx[b * wpb : (b + 1) * wpb])
            metrics.append(ref[2])
        pick = int(np.argmax(metrics))  # the first on ties, as the search does
        assert both[3][b] == one[pick][3][b]
        np.testing.assert_array_equal(both[0][b * wpb : (b + 1) * wpb], one[pick][0][b * wpb : (b + 1) * wpb])


def test_auto_order_is_one_of_the_explicit_ones():
    sp = vitrust.prune(W, 0.9, order="auto")
    explicit = vitrust.prune(W, 0.9, order=sp.order)
    np.testing.assert_array_equal(sp.index, explicit.index)
    assert sp.thresholds is None


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="order"):
        vitrust.prune(W, 0.9, order="K")
    with pytest.raises(TypeError, match="block_thresholds"):
        vitrust.prune(W, 0.9, block_thresholds="yes")
    with pytest.raises(ValueError, match="factors"):
        _vitrust.search(vitrust.VDConfig(8, 1, 5, 5, 6), W.reshape(-1), "abs", 0.5, 64, None, 1 << 30, None, [])


@pytest.mark.parametrize("rate", [0.5, 0.7, 0.9])
def test_rate_is_met_on_structured_tensors(rate):
    """Mostly-zero and block-sparse tensors of 10^4+ weights: thresholds switching
    with lam make the kept count jump; rate control still lands within 0.2 points."""
    rng = np.random.default_rng(int(rate * 10))
    mostly_zero = np.where(rng.random((120, 100)) < 0.3, rng.standard_normal((120, 100)), 0.0).astype(np.float32)
    blocks = np.kron(rng.random((12, 10)) < 0.4, np.ones((10, 10))) * rng.standard_normal((120, 100))
    for w in (mostly_zero, blocks.astype(np.float32)):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sp = vitrust.prune(w, rate, block_thresholds=True)
        assert abs(sp.rate - rate) <= 2e-3
        np.testing.assert_array_equal(sp.mask(), expand_v2(sp.config, sp.index, w.shape, sp.block_steps,
                                                           sp.thresholds, sp.order))


@pytest.mark.parametrize("order", ["C", "F"])
def test_mask_and_dense_are_c_contiguous_in_either_order(order):
    """Writers and the buffer protocol take C-contiguous arrays; an order-F
    tensor's outputs must not be transposed views of its stream."""
    w = np.random.default_rng(5).standard_normal((40, 3, 7)).astype(np.float32)
    sp = vitrust.prune(w, 0.7, order=order, block_steps=16)
    assert sp.order == order
    for a in (sp.mask(), sp.to_dense(), np.asarray(sp)):
        assert a.shape == w.shape and a.flags.c_contiguous
    np.testing.assert_array_equal(sp.to_dense(), np.where(sp.mask(), w, 0))


def test_the_order_sample_reads_the_streams_blocks(monkeypatch):
    """order="auto" samples the same blocks of each stream (the scores in C
    order and the transposed copy): they must be those blocks of the actual
    streams, the ragged last one included."""
    from vitrust import _prune

    rows, cols, bs = 37, 53, 8  # 1961 weights, blocks of 40: 50 blocks, a ragged last one
    src = np.random.default_rng(9).standard_normal(rows * cols).astype(np.float32)
    config = vitrust.VDConfig(6, 1, 5, 5, 10)
    seen = []
    search = _prune._vitrust.search

    def recording(cfg, sample, *a, **k):
        seen.append(np.array(sample))
        return search(cfg, sample, *a, **k)

    monkeypatch.setattr(_prune._vitrust, "search", recording)
    streams = {o: _prune._stream(src, rows, cols, o) for o in "CF"}
    _prune._choose_order(config, streams, "abs", None, 0.8, bs, None, 1 << 30, None)
    bw = bs * config.n_out
    n_blocks = -(-src.size // bw)
    picks = np.linspace(0, n_blocks - 1, max(_prune.SAMPLE_BLOCKS, n_blocks // _prune.SAMPLE_SHARE)).round()
    for o, got in zip("CF", seen):
        stream = src.reshape(rows, cols).reshape(-1) if o == "C" else src.reshape(rows, cols).T.reshape(-1)
        want = np.concatenate([stream[int(b) * bw : (int(b) + 1) * bw] for b in picks])
        np.testing.assert_array_equal(got, want)
    assert len(seen) == 2 and picks[-1] == n_blocks - 1  # the ragged last block is sampled


def test_core_transpose_argument_is_checked_and_matches_numpy():
    from vitrust import _vitrust

    w = np.random.default_rng(12).standard_normal((30, 70)).astype(np.float32)
    sp = vitrust.prune(w, 0.8, order="F", block_steps=16)
    stream = _vitrust.expand(sp.config, sp.index, w.size, 16)
    got = _vitrust.expand(sp.config, sp.index, w.size, 16, None, None, (70, 30))
    np.testing.assert_array_equal(got, stream.reshape(70, 30).T.reshape(-1))
    dense = _vitrust.scatter(sp.config, sp.index, 16, sp.values, w.size, None, None, None, (70, 30))
    np.testing.assert_array_equal(dense.reshape(w.shape), np.where(got.reshape(w.shape), w, 0))
    for bad in [(70, 31), (0, 0), (2**40, 2**40)]:
        with pytest.raises(ValueError, match="transpose"):
            _vitrust.expand(sp.config, sp.index, w.size, 16, None, None, bad)
        with pytest.raises(ValueError, match="transpose"):
            _vitrust.scatter(sp.config, sp.index, 16, sp.values, w.size, None, None, None, bad)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 90), st.integers(1, 90), st.sampled_from(["float16", "bfloat16", "float32", "float64"]),
       st.sampled_from([0.5, 0.9]), st.integers(0, 2**32 - 1))
def test_order_f_mask_and_dense_against_the_reference(rows, cols, dtype, rate, seed):
    """mask() and to_dense() of an order-F tensor, written straight in tensor
    order from the stream's bits, against the NumPy reference expansion."""
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    w = np.random.default_rng(seed).standard_normal((rows, cols)).astype(dt)
    sp = vitrust.prune(w, rate, order="F", block_steps=8)
    mask = expand_v2(sp.config, sp.index, w.shape, sp.block_steps, sp.thresholds, "F")
    np.testing.assert_array_equal(sp.mask(), mask)
    np.testing.assert_array_equal(sp.to_dense(), np.where(mask, w, np.zeros((), dt)))
