"""Scores beyond float32's range (issue 10, item 2): the search runs in float32,
so scores are scaled per tensor by a power of two (exact: the mask is the one
of the rescaled tensor) or, when the score itself overflows, refused."""

import numpy as np
import pytest

import vitrust

TOL = 2e-3


def same_search(a, b, factor, **kw):
    """``prune(a)`` and ``prune(b)`` with ``a = b * factor`` agree exactly, lam scaled."""
    sa, sb = vitrust.prune(a, **kw), vitrust.prune(b, **kw)
    np.testing.assert_array_equal(sa.mask(), sb.mask())
    assert np.isfinite(sa.lam) and sa.lam == sb.lam * factor
    return sa


def test_float64_beyond_float32_range():
    w = np.random.default_rng(0).standard_normal(4000)
    w[0] = 1e39
    sp = same_search(w, w * 2.0**-130, 2.0**130, rate=0.8)
    assert abs(sp.rate - 0.8) <= TOL and sp.mask()[0]


def test_float32_near_its_limit():
    w = np.random.default_rng(1).uniform(-3.3e38, 3.3e38, 20000).astype(np.float32)
    sp = same_search(w, (w.astype(np.float64) * 2.0**-128), 2.0**128, rate=0.8)
    assert abs(sp.rate - 0.8) <= TOL


def test_tiny_scores_do_not_flush_to_zero():
    w = np.random.default_rng(2).standard_normal(20000) * 1e-300
    sp = same_search(w, w * 2.0**1000, 2.0**-1000, rate=0.8)
    assert abs(sp.rate - 0.8) <= TOL


def test_square_scores():
    w = np.random.default_rng(3).standard_normal(20000)
    sp = same_search(w * 2.0**500, w, 2.0**1000, rate=0.8, score="square")
    assert abs(sp.rate - 0.8) <= TOL
    # |w| near 1e300: w**2 is not a float64; refused, never lam = nan.
    with pytest.raises(ValueError, match="square"):
        vitrust.prune(w * 1e300, 0.8, score="square")
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="square"):
        vitrust.prune(w * 1e300, lam=1.0, score="square")


def test_lam_mode_scales_lam_by_the_same_factor():
    w = np.random.default_rng(4).standard_normal(20000)
    for factor in (2.0**200, 2.0**-200):
        a = vitrust.prune(w * factor, lam=factor)
        b = vitrust.prune(w, lam=1.0, config=a.config)
        np.testing.assert_array_equal(a.mask(), b.mask())
    f32 = (w * 5e37).astype(np.float32)  # |w| < 5: below float32.max
    a = vitrust.prune(f32, lam=5e37)
    b = vitrust.prune(f32.astype(np.float64) * 2.0**-126, lam=5e37 * 2.0**-126, config=a.config)
    np.testing.assert_array_equal(a.mask(), b.mask())
    assert 0.0 < a.rate < 1.0
