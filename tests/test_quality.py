"""``rd_bound`` and ``ViterbiSparse.quality``: known values, invariants, an independent reference."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vitrust
from vitrust._quality import entropy_bits


def top_mean(s, d):
    s = np.sort(np.abs(s))[::-1]
    k = int(round(d * s.size))
    return s[:k].sum() / s.size


def reference_bound(s, d, r, betas=np.exp(np.linspace(-6, 10, 1601))):
    """Brute force: the tilt family on a grid of beta (c by plain bisection), best kept score with I <= r."""
    x = np.sort(np.abs(s).astype(np.float64))
    x = x / x[-1]
    b = betas[:, None]
    lo = np.full_like(b, math.log(d / (1 - d))) - b
    hi = np.full_like(b, math.log(d / (1 - d)))
    for _ in range(60):
        c = 0.5 * (lo + hi)
        above = (0.5 * (1 + np.tanh(0.5 * (b * x + c)))).mean(axis=1, keepdims=True) > d
        hi, lo = np.where(above, c, hi), np.where(above, lo, c)
    q = np.clip(0.5 * (1 + np.tanh(0.5 * (b * x + c))), 1e-300, 1 - 1e-16)
    info = np.mean(q * np.log2(q / d) + (1 - q) * np.log2((1 - q) / (1 - d)), axis=1)
    kept = (q * x).mean(axis=1)
    best = max(d * x.mean(), kept[info <= r].max(initial=0.0))
    return best / top_mean(x, d)


scores = st.integers(0, 2**32).map(lambda seed: np.random.default_rng(seed))


def test_gaussian_at_90_percent_and_a_fifth_of_a_bit():
    w = np.random.default_rng(0).standard_normal(200_000)
    assert vitrust.rd_bound(w, 0.9, 0.2) == pytest.approx(0.871, abs=0.003)


@given(scores, st.floats(0.05, 0.95), st.sampled_from(["normal", "laplace", "exponential"]))
def test_endpoints(rng, rate, kind):
    s = getattr(rng, kind)(size=2000)
    d = 1 - rate
    # Enough bits for the magnitude mask itself: magnitude pruning is reachable.
    assert vitrust.rd_bound(s, rate, entropy_bits(d)) == 1.0
    assert vitrust.rd_bound(s, rate, 1.0) == 1.0
    # No bits: a random mask of density d keeps d * mean per weight.
    expected = d * np.abs(s).mean() / top_mean(s, d)
    assert vitrust.rd_bound(s, rate, 0.0) == pytest.approx(expected, rel=1e-9)


@given(scores, st.floats(0.3, 0.95), st.lists(st.floats(0.0, 0.6), min_size=2, max_size=6))
def test_monotone_in_bits(rng, rate, rs):
    s = rng.laplace(size=1500)
    values = [vitrust.rd_bound(s, rate, r) for r in sorted(rs)]
    assert all(b >= a - 1e-9 for a, b in zip(values, values[1:]))
    assert all(0.0 < v <= 1.0 for v in values)


@settings(max_examples=10)
@given(scores, st.sampled_from([0.5, 0.8, 0.9]), st.sampled_from([0.05, 0.2, 0.35]))
def test_matches_a_brute_force_reference(rng, rate, r):
    s = rng.standard_normal(600)
    d = 1 - rate
    if r >= entropy_bits(d):
        return
    # Unbinned (600 scores < 4096 bins) against a grid search over the same family:
    # the grid can only miss the optimum, by little.
    got, ref = vitrust.rd_bound(s, rate, r), reference_bound(s, d, r)
    assert ref - 1e-6 <= got <= ref + 3e-3


@settings(max_examples=5)
@given(scores)
def test_binning_only_lowers_the_bound_a_little(rng):
    s = rng.standard_t(3, size=8000)
    exact = vitrust.rd_bound(s, 0.9, 0.2, bins=8000)
    coarse = vitrust.rd_bound(s, 0.9, 0.2, bins=256)
    assert coarse <= exact + 1e-9
    assert exact - coarse < 2e-3
    assert vitrust.rd_bound(s, 0.9, 0.2) == pytest.approx(exact, abs=2e-4)


def test_scale_invariant_and_square_scores():
    s = np.random.default_rng(1).standard_normal(5000)
    b = vitrust.rd_bound(s, 0.8, 0.2)
    assert vitrust.rd_bound(7.5 * s, 0.8, 0.2) == pytest.approx(b, abs=1e-9)
    assert vitrust.rd_bound(-s, 0.8, 0.2) == pytest.approx(b, abs=1e-12)
    assert vitrust.rd_bound(s, 0.8, 0.2, score="square") == pytest.approx(vitrust.rd_bound(s * s, 0.8, 0.2), abs=1e-12)


def test_degenerate_scores():
    assert vitrust.rd_bound(np.zeros(100), 0.5, 0.1) == 1.0
    assert vitrust.rd_bound(np.ones(100), 0.0, 0.1) == 1.0
    # Equal scores: every mask of the right count is as good as magnitude pruning.
    assert vitrust.rd_bound(np.ones(1000), 0.5, 0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, error",
    [
        ((np.array([1.0, np.nan]), 0.5, 0.2), ValueError),
        ((np.array([1, 2]), 0.5, 0.2), TypeError),
        ((np.zeros(0), 0.5, 0.2), ValueError),
        ((np.ones(4), 1.0, 0.2), ValueError),
        ((np.ones(4), 0.5, -0.1), ValueError),
        ((np.ones(4), 0.5, float("nan")), ValueError),
    ],
)
def test_bad_input(args, error):
    with pytest.raises(error):
        vitrust.rd_bound(*args)
    with pytest.raises(ValueError):
        vitrust.rd_bound(np.ones(4), 0.5, 0.2, score="cube")


@given(scores, st.sampled_from([0.5, 0.8, 0.9]), st.integers(3, 8))
def test_quality_of_a_pruned_tensor(rng, rate, flip_flops):
    w = rng.standard_normal((40, 100)).astype(np.float32)
    sp = vitrust.prune(w, rate, flip_flops=flip_flops)
    q = sp.quality(w)
    mask = sp.mask()
    s = np.abs(w.astype(np.float64)).ravel()
    top = np.sort(s)[::-1][: sp.nnz]
    assert q.retained == pytest.approx(s[mask.ravel()].sum() / top.sum())
    # The bound lies between the random mask's value and 1 (the grid reference is checked below).
    assert d_mean(s, sp.nnz) - 1e-12 <= q.bound <= 1.0
    assert q.efficiency == pytest.approx(s[mask.ravel()].sum() / top.sum() / q.bound)
    assert 0.0 < q.retained <= 1.0 + 1e-12
    # Pruned top share from first principles (no ties in continuous scores).
    threshold = top[-1]
    assert q.top_pruned == pytest.approx(np.count_nonzero((s >= threshold) & ~mask.ravel()) / sp.nnz)
    # Squared scores are a different importance: the same mask, measured against w**2.
    q2 = sp.quality(w, score="square")
    assert q2.retained == pytest.approx((s[mask.ravel()] ** 2).sum() / (top**2).sum())


def d_mean(s, nnz):
    """A random mask's retained importance: ``nnz`` weights of mean score over the top ``nnz``."""
    return nnz * s.mean() / np.sort(s)[::-1][:nnz].sum()


@pytest.mark.parametrize("rate, flip_flops", [(0.9, 8), (0.7, 6)])
def test_quality_bound_matches_the_grid_reference(rate, flip_flops):
    w = np.random.default_rng(11).standard_normal((20, 100))
    sp = vitrust.prune(w, rate, flip_flops=flip_flops)
    s = np.abs(w).ravel()
    # At this density and index cost, unbinned (2000 scores), from the grid reference.
    ref = reference_bound(s, sp.nnz / s.size, sp.bits_per_weight)
    assert ref - 1e-6 <= sp.quality(w).bound <= ref + 3e-3


def test_quality_of_the_magnitude_mask_is_perfect():
    w = np.random.default_rng(3).standard_normal(10_000)
    sp = vitrust.prune(w, 0.0)
    q = sp.quality(w)
    assert q.retained == 1.0 and q.top_pruned == 0.0 and q.efficiency == 1.0


def test_quality_checks_its_input():
    w = np.random.default_rng(3).standard_normal((10, 10))
    sp = vitrust.prune(w, 0.5)
    with pytest.raises(ValueError):
        sp.quality(w.ravel())
    with pytest.raises(ValueError):
        sp.quality(np.full((10, 10), np.inf))
