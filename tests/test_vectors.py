"""The shared conformance vectors (tests/vectors/vd_v1.json)."""

import numpy as np
import pytest

import vitrust
from vitrust import _vitrust

from reference import expand_block


def config_of(v):
    return vitrust.VDConfig(v["k"], v["n_in"], v["n_out"], v["nc"], v["K"], taps=v["taps"])


def pack(bits: str) -> np.ndarray:
    b = np.array([c == "1" for c in bits], dtype=np.uint64)
    words = np.zeros((len(b) + 63) // 64, dtype=np.uint64)
    for i, bit in enumerate(b):
        words[i // 64] |= bit << np.uint64(i % 64)
    return words


def as_bools(s: str) -> np.ndarray:
    return np.array([c == "1" for c in s])


def test_expand_vectors(vectors):
    for v in vectors["expand"]:
        cfg = config_of(v)
        want = as_bools(v["mask"])
        got = vitrust.expand(cfg, pack(v["bits"]), len(want), v["steps"])
        np.testing.assert_array_equal(got, want)
        # The NumPy reference agrees too, so it can be trusted elsewhere.
        bits = np.array([c == "1" for c in v["bits"]], dtype=np.uint8)
        np.testing.assert_array_equal(expand_block(v["k"], v["n_in"], v["n_out"], v["nc"], v["K"], v["taps"], bits), want)


@pytest.mark.parametrize("via", ["core", "prune"])
def test_search_vectors(vectors, via):
    for v in vectors["search"]:
        cfg = config_of(v)
        scores = np.array(v["scores"], dtype=np.float64)
        lam, steps = v["lam"], v["steps"]
        # The float32 search's bound (docs/algorithm.md, "Search objective"):
        # within 1e-5 of the total |score - lam| of the optimum.
        tol = 1e-5 * np.abs(scores - lam).sum()
        ref_mask = as_bools(v["mask"])
        assert abs((scores - lam)[ref_mask].sum() - v["metric"]) <= tol
        if via == "core":
            index, nnz, metric, _ = _vitrust.search(cfg, scores, "raw", lam, steps)
            mask = vitrust.expand(cfg, index, len(scores), steps)
            # The reported metric sums float32 gains: exact up to float32 rounding.
            assert abs(metric - (scores - lam)[mask].sum()) <= 1e-6 * np.abs(scores - lam).sum()
        else:
            sp = vitrust.prune(np.ones_like(scores), lam=lam, scores=scores, config=cfg, block_steps=steps)
            mask = sp.mask()
            nnz = sp.nnz
        assert nnz == mask.sum()
        assert abs((scores - lam)[mask].sum() - v["metric"]) <= tol
