"""Expansion against the NumPy reference, and search optimality by brute force."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import vitrust

from reference import brute_force_optimum, expand


@st.composite
def configs(draw, max_k=12, max_n_in=4):
    k = draw(st.integers(1, max_k))
    n_in = draw(st.integers(1, min(max_n_in, k)))
    n_out = draw(st.integers(1, 12))
    nc = draw(st.integers(1, 6))
    threshold = draw(st.integers(1, 2**nc))
    seed = draw(st.integers(0, 2**64 - 1))
    return vitrust.VDConfig(k, n_in, n_out, nc, threshold, seed=seed)


@given(configs(), st.integers(1, 3000), st.integers(1, 300), st.integers(0, 2**32))
def test_expand_matches_reference(cfg, n_weights, block_steps, seed):
    _, index_len, bits = vitrust._vitrust.layout_info(cfg, n_weights, block_steps)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, 2**64, size=index_len, dtype=np.uint64)
    got = vitrust.expand(cfg, index, n_weights, block_steps)
    np.testing.assert_array_equal(got, expand(cfg, index, n_weights, block_steps))
    blocks = math.ceil(n_weights / (block_steps * cfg.n_out))
    last = math.ceil((n_weights - (blocks - 1) * block_steps * cfg.n_out) / cfg.n_out)
    assert bits == ((blocks - 1) * block_steps + last) * cfg.n_in


def test_generated_taps_see_the_input():
    for k, n_in in [(1, 1), (6, 2), (10, 1), (16, 4)]:
        cfg = vitrust.VDConfig(k, n_in, 5 * n_in, 5, 3, seed=11)
        assert cfg.taps == vitrust.generate_taps(k, n_in, 5 * n_in, 5, 11)
        assert all(t & ((1 << n_in) - 1) and t < 2 ** (k + n_in) for t in cfg.taps)
    assert vitrust.generate_taps(10, 1, 5, 5, 1) != vitrust.generate_taps(10, 1, 5, 5, 2)


BRUTE_CONFIGS = [
    # (k, n_in, n_out, nc, K, steps)
    (1, 1, 2, 1, 1, 12),
    (3, 1, 3, 2, 1, 12),
    (4, 1, 5, 3, 2, 11),
    (6, 1, 5, 5, 3, 12),
    (4, 2, 4, 2, 1, 7),
    (6, 2, 10, 5, 3, 6),
    (5, 3, 6, 2, 1, 4),
    (4, 4, 8, 3, 3, 3),
]


@given(st.sampled_from(BRUTE_CONFIGS), st.integers(0, 2**32), st.floats(0.0, 1.5), st.booleans())
def test_search_is_optimal(case, seed, lam, ragged):
    k, n_in, n_out, nc, K, steps = case
    cfg = vitrust.VDConfig(k, n_in, n_out, nc, K, seed=seed)
    rng = np.random.default_rng(seed)
    n = steps * n_out - (1 if ragged and n_out > 1 else 0)
    scores = rng.exponential(size=n)
    best = brute_force_optimum(cfg, scores, lam, steps)
    sp = vitrust.prune(np.ones(n), lam=lam, scores=scores, config=cfg, block_steps=steps)
    got = (scores - lam)[sp.mask()].sum()
    assert abs(got - best) <= 1e-5 * np.abs(scores - lam).sum()  # docs/algorithm.md, "Search objective"


def test_search_is_optimal_per_block():
    # Several blocks: each block is optimal on its own.
    cfg = vitrust.VDConfig(4, 1, 3, 2, 1, seed=5)
    steps, blocks = 8, 5
    scores = np.random.default_rng(3).exponential(size=steps * 3 * blocks - 2)
    sp = vitrust.prune(np.ones_like(scores), lam=0.7, scores=scores, config=cfg, block_steps=steps)
    mask = sp.mask()
    for b in range(blocks):
        sl = slice(b * steps * 3, (b + 1) * steps * 3)
        s = scores[sl]
        best = brute_force_optimum(cfg, s, 0.7, steps)
        assert abs((s - 0.7)[mask[sl]].sum() - best) <= 1e-5 * np.abs(s - 0.7).sum()
