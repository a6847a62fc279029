"""Behaviour pinned against plain NumPy: values, comparator density, defaults, index checks,
format boundaries, copies and the retained-importance figure."""

import numpy as np
import pytest

import vitrust
from vitrust import _scores
from reference import kept_values, stream_order

RNG = np.random.default_rng(11)
W = RNG.standard_normal((48, 96)).astype(np.float32)


def test_values_come_from_the_weights_when_scores_are_given():
    scores = RNG.uniform(0.0, 1.0, W.shape)
    sp = vitrust.prune(W, 0.6, scores=scores)
    mask = sp.mask().reshape(-1)
    np.testing.assert_array_equal(sp.values, kept_values(W, sp))
    np.testing.assert_array_equal(sp.to_dense(), np.where(mask.reshape(W.shape), W, 0))
    # the mask follows the scores, not |w|: the kept scores beat the pruned ones on average
    s = scores.reshape(-1)
    assert s[mask].mean() > s[~mask].mean() + 0.2


@pytest.mark.parametrize("lam", [0.4, 1.3])
def test_lam_mode_comparator_density_is_the_share_above_lam(lam):
    density = float(np.mean(np.abs(W) > lam))
    sp = vitrust.prune(W, lam=lam)
    c = sp.config
    assert abs(c.threshold / 2**c.comparator_bits - density) < 0.05
    sp4 = vitrust.prune(W, lam=lam, comparator_bits=4)
    assert sp4.config.comparator_bits == 4
    assert sp4.config.threshold == min(max(round(density * 16), 1), 16)


def test_lam_mode_density_on_squared_scores():
    lam = 0.5
    density = float(np.mean(W.astype(np.float64) ** 2 > lam))
    c = vitrust.prune(W, lam=lam, score="square").config
    assert abs(c.threshold / 2**c.comparator_bits - density) < 0.05


def test_default_block_steps_is_the_documented_1024():
    sp = vitrust.prune(W, 0.5)
    assert sp.block_steps == 1024
    ref = vitrust.prune(W, 0.5, block_steps=1024)
    np.testing.assert_array_equal(sp.index, ref.index)
    other = vitrust.prune(W, 0.5, block_steps=7)
    assert other.block_steps == 7
    np.testing.assert_array_equal(vitrust.expand(sp.config, sp.index, W.size), stream_order(sp.mask(), sp.order))
    np.testing.assert_array_equal(vitrust.expand(other.config, other.index, W.size, 7),
                                  stream_order(other.mask(), other.order))
    with pytest.raises(ValueError, match="blocks of 1024 steps"):
        vitrust.expand(other.config, other.index, W.size)


def test_expand_takes_non_negative_signed_words_and_refuses_negative_ones():
    sp = vitrust.prune(W, 0.5)
    words = sp.index & np.uint64(2**63 - 1)
    want = vitrust.expand(sp.config, words, W.size, sp.block_steps)
    signed = words.astype(np.int64)
    signed[0] = 0
    want0 = vitrust.expand(sp.config, signed.astype(np.uint64), W.size, sp.block_steps)
    np.testing.assert_array_equal(vitrust.expand(sp.config, signed, W.size, sp.block_steps), want0)
    np.testing.assert_array_equal(vitrust.expand(sp.config, words.astype(np.int64), W.size, sp.block_steps), want)
    zeros = np.zeros(sp.index.size, dtype=np.int32)
    np.testing.assert_array_equal(vitrust.expand(sp.config, zeros, W.size, sp.block_steps),
                                  vitrust.expand(sp.config, zeros.astype(np.uint64), W.size, sp.block_steps))
    neg = words.astype(np.int64)
    neg[-1] = -1
    with pytest.raises(TypeError, match="uint64"):
        vitrust.expand(sp.config, neg, W.size, sp.block_steps)
    with pytest.raises(TypeError, match="uint64"):
        vitrust.expand(sp.config, words.astype(np.float64), W.size, sp.block_steps)
    with pytest.raises(ValueError, match="1-D"):
        vitrust.expand(sp.config, words.reshape(1, -1), W.size, sp.block_steps)


@pytest.mark.parametrize("cols, has_csr16", [(1 << 16, True), ((1 << 16) + 1, False)])
def test_csr16_is_listed_up_to_65536_columns(cols, has_csr16):
    w = np.random.default_rng(cols).standard_normal((1, cols)).astype(np.float32)
    sp = vitrust.prune(w, 0.9)
    table = sp.storage()
    assert ("csr16" in table) == has_csr16
    assert "csr32" in table


def test_to_scipy_copies_the_values():
    pytest.importorskip("scipy")
    sp = vitrust.prune(W, 0.7)
    before = sp.values.copy()
    m = sp.to_scipy()
    np.testing.assert_array_equal(m.toarray(), np.where(sp.mask().reshape(W.shape), W, 0))
    m.data[:] = 123.0
    np.testing.assert_array_equal(sp.values, before)


def test_to_scipy_of_a_1d_and_a_3d_tensor():
    pytest.importorskip("scipy")
    w = RNG.standard_normal((6, 5, 8)).astype(np.float64)
    sp = vitrust.prune(w, 0.5)
    m = sp.to_scipy()
    assert m.shape == (6, 40)
    np.testing.assert_array_equal(m.toarray(), np.where(sp.mask().reshape(w.shape), w, 0).reshape(6, 40))
    v = RNG.standard_normal(300).astype(np.float16)
    spv = vitrust.prune(v, 0.5)
    mv = spv.to_scipy()
    assert mv.shape == (1, 300) and mv.dtype == np.float32
    np.testing.assert_array_equal(mv.toarray()[0], np.where(spv.mask(), v, 0).astype(np.float32))


@pytest.mark.parametrize("k", [1, 5, 40, 200])
def test_retained_is_kept_over_the_k_largest(k):
    s = RNG.uniform(0.0, 2.0, 200)
    kept = float(s[:k].sum())
    want = kept / np.sort(s)[::-1][:k].sum()
    assert _scores.retained(s, kept, k) == pytest.approx(want, rel=1e-12)
    assert _scores.top_sum(s, k) == pytest.approx(np.sort(s)[::-1][:k].sum(), rel=1e-12)


def test_retained_edge_cases():
    s = RNG.uniform(0.0, 1.0, 50)
    assert _scores.top_sum(s, 0) == 0.0
    assert _scores.top_sum(s, -3) == 0.0
    assert _scores.retained(s, 0.0, 0) == 1.0
    assert _scores.retained(np.zeros(10), 0.0, 4) == 1.0


def test_retained_of_a_pruned_tensor_matches_numpy():
    sp = vitrust.prune(W, 0.8)
    a = np.abs(W.astype(np.float64)).reshape(-1)
    want = a[sp.mask().reshape(-1)].sum() / np.sort(a)[::-1][: sp.nnz].sum()
    assert _scores.retained_of(W, sp.values) == pytest.approx(want, rel=1e-9)
    a2 = W.astype(np.float64).reshape(-1) ** 2
    want2 = a2[sp.mask().reshape(-1)].sum() / np.sort(a2)[::-1][: sp.nnz].sum()
    assert _scores.retained_of(W, sp.values, "square") == pytest.approx(want2, rel=1e-9)


def test_checkpoint_report_retained_matches_numpy(tmp_path):
    from safetensors.numpy import save_file as st_save

    w = RNG.standard_normal((40, 50)).astype(np.float32)
    src = tmp_path / "m.safetensors"
    st_save({"a.weight": w}, str(src))
    res = vitrust.prune_checkpoint(src, tmp_path / "o.safetensors", 0.75, report=True)
    (t,) = [t for t in res.tensors if t.name == "a.weight"]
    sp = vitrust.prune(w, 0.75)
    assert t.nnz == sp.nnz
    a = np.abs(w.astype(np.float64)).reshape(-1)
    want = a[sp.mask().reshape(-1)].sum() / np.sort(a)[::-1][: sp.nnz].sum()
    assert t.retained == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("min_size", [0, 63, 64, 65])
def test_checkpoint_min_size_boundary(tmp_path, min_size):
    from safetensors.numpy import save_file as st_save

    src = tmp_path / "m.safetensors"
    st_save({"sq.weight": RNG.standard_normal((8, 8)).astype(np.float32),
             "odd.weight": RNG.standard_normal((7, 9)).astype(np.float32)}, str(src))
    res = vitrust.prune_checkpoint(src, tmp_path / "o.safetensors", 0.5, min_size=min_size, dry_run=True)
    names = {t.name for t in res.tensors}
    assert ("sq.weight" in names) == (64 >= min_size)
    assert ("odd.weight" in names) == (63 >= min_size)
