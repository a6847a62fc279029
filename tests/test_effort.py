"""``effort`` presets and the tap-seed trial: explicit arguments win, the winner is the best seed."""

import numpy as np
import pytest

import vitrust
from vitrust._presets import EFFORTS


@pytest.mark.parametrize("effort", list(EFFORTS))
def test_presets_set_the_vd(effort):
    p = EFFORTS[effort]
    w = np.random.default_rng(0).standard_normal(12_000)
    sp = vitrust.prune(w, 0.8, effort=effort, tap_seeds=1)
    c = sp.config
    assert (c.flip_flops, c.n_in, c.n_out) == (p.flip_flops, p.n_in, 5 * p.n_in)
    assert (c.comparator_bits, c.threshold) == vitrust.default_comparator(0.8)
    assert abs(sp.rate - 0.8) <= 0.002


def test_explicit_arguments_win():
    w = np.random.default_rng(1).standard_normal(3000)
    c = vitrust.prune(w, 0.8, effort="best", flip_flops=6, tap_seeds=1).config
    assert (c.flip_flops, c.n_in) == (6, EFFORTS["best"].n_in)
    c = vitrust.prune(w, 0.8, effort="default", flip_flops=1).config
    assert (c.flip_flops, c.n_in) == (1, 1)  # n_in follows a smaller register
    c = vitrust.prune(w, 0.8, effort="fast", n_in=3, comparator_bits=4, threshold=5).config
    assert (c.flip_flops, c.n_in, c.comparator_bits, c.threshold) == (8, 3, 4, 5)
    cfg = vitrust.VDConfig(5, 1, 5, 2, 1, seed=3)
    assert vitrust.prune(w, 0.8, effort="best", config=cfg).config == cfg


@pytest.mark.parametrize("mode", ["rate", "lam"])
def test_tap_seeds_keep_the_best_seed(mode):
    w = np.random.default_rng(2).standard_normal((60, 100)).astype(np.float32)
    s = np.abs(w.astype(np.float64)).ravel()
    top = np.concatenate([[0.0], np.cumsum(np.sort(s)[::-1])])
    kw = {"rate": 0.85} if mode == "rate" else {"lam": 1.4}

    def value(sp):
        kept = s[sp.mask().ravel()].sum()
        return kept / top[sp.nnz] if mode == "rate" else kept - 1.4 * sp.nnz

    singles = [vitrust.prune(w, **kw, effort="fast", flip_flops=6, seed=k, tap_seeds=1) for k in range(5, 9)]
    best = vitrust.prune(w, **kw, effort="fast", flip_flops=6, seed=5, tap_seeds=4)
    values = [value(sp) for sp in singles]
    winner = singles[int(np.argmax(values))]
    assert value(best) == pytest.approx(max(values))
    assert best.config == winner.config  # the winner's taps are stored
    np.testing.assert_array_equal(best.mask(), winner.mask())
    np.testing.assert_array_equal(best.values, w[best.mask()])


def test_bad_effort_and_seeds():
    w = np.ones(100)
    with pytest.raises(ValueError, match="effort"):
        vitrust.prune(w, 0.5, effort="max")
    with pytest.raises(ValueError, match="effort"):
        vitrust.prune(w, 0.5, effort="max", config=vitrust.VDConfig(5, 1, 5, 1, 1))
    with pytest.raises(ValueError, match="tap_seeds"):
        vitrust.prune(w, 0.5, tap_seeds=0)
    with pytest.raises(TypeError, match="tap_seeds"):
        vitrust.prune(w, 0.5, tap_seeds=2.0)
    with pytest.raises(ValueError, match="tap_seeds"):
        vitrust.prune(w, 0.5, tap_seeds=2, config=vitrust.VDConfig(5, 1, 5, 1, 1))


def test_tap_seed_trial_is_deterministic_across_threads():
    w = np.random.default_rng(4).standard_normal(12_000).astype(np.float32)
    one = vitrust.prune(w, 0.9, flip_flops=6, n_in=2, tap_seeds=3, threads=1)
    two = vitrust.prune(w, 0.9, flip_flops=6, n_in=2, tap_seeds=3, threads=2)
    assert one.config == two.config
    np.testing.assert_array_equal(one.index, two.index)
    assert abs(one.rate - 0.9) <= 0.002
