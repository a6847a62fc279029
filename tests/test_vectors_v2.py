"""Format v2 conformance: per-block thresholds and the stream order, checked
against the shared vectors (tests/vectors/vd_v2.json) through the API, the
NumPy reference, the products and the dense form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import vitrust
from reference import expand_v2

VECTORS = json.loads((Path(__file__).parent / "vectors" / "vd_v2.json").read_text())["expand_tensor"]


def _bits(text: str) -> np.ndarray:
    return np.array([c == "1" for c in text], dtype=bool)


def _index(v: dict) -> np.ndarray:
    """The index words of the vector's per-block stream bits (docs/format.md, "Index layout")."""
    wpb = math.ceil(v["block_steps"] * v["n_in"] / 64)
    words = np.zeros(wpb * len(v["block_bits"]), dtype=np.uint64)
    for b, text in enumerate(v["block_bits"]):
        for i, c in enumerate(text):
            if c == "1":
                words[b * wpb + i // 64] |= np.uint64(1) << np.uint64(i % 64)
    n = math.prod(v["shape"])
    last = math.ceil((n - (len(v["block_bits"]) - 1) * v["block_steps"] * v["n_out"]) / v["n_out"]) * v["n_in"]
    return words[: (len(v["block_bits"]) - 1) * wpb + math.ceil(last / 64)]


def _config(v: dict) -> vitrust.VDConfig:
    # The config's own threshold is unused once blocks carry theirs.
    return vitrust.VDConfig(v["k"], v["n_in"], v["n_out"], v["nc"], 1, taps=v["taps"])


def _sparse(v: dict, values=None) -> vitrust.ViterbiSparse:
    mask = _bits(v["mask_c_order"])
    if values is None:
        values = np.arange(1, mask.sum() + 1, dtype=np.float32)
    return vitrust.ViterbiSparse(tuple(v["shape"]), _config(v), v["block_steps"], _index(v), values, 0.0,
                                 thresholds=np.array(v["thresholds"], dtype=np.uint8), order=v["order"])


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"k{v['k']}-nin{v['n_in']}-{v['order']}-{v['shape']}")
def test_mask_matches_the_vector_and_the_reference(v):
    sp = _sparse(v)
    want = _bits(v["mask_c_order"]).reshape(v["shape"])
    np.testing.assert_array_equal(sp.mask(), want)
    ref = expand_v2(sp.config, sp.index, tuple(v["shape"]), v["block_steps"], v["thresholds"], v["order"])
    np.testing.assert_array_equal(ref, want)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"k{v['k']}-{v['order']}-{v['shape']}")
def test_dense_and_products_follow_the_stream_order(v):
    sp = _sparse(v)
    mask = _bits(v["mask_c_order"]).reshape(v["shape"])
    # Values are in stream order: rebuild the dense array from the walk itself.
    rows = v["shape"][0] if len(v["shape"]) >= 2 else 1
    n = mask.size
    cols = n // rows
    p = np.arange(n)
    flat = p if v["order"] == "C" else (p % rows) * cols + p // rows
    dense = np.zeros(n, dtype=np.float32)
    kept = flat[mask.reshape(-1)[flat]]
    dense[kept] = sp.values
    dense = dense.reshape(v["shape"])
    np.testing.assert_array_equal(sp.to_dense(), dense)
    w2 = dense.reshape(rows, cols)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((cols, 3))  # float64: exact enough to compare tightly
    y = rng.standard_normal((2, rows))
    if len(v["shape"]) >= 2:
        np.testing.assert_allclose(sp @ x, w2 @ x, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(sp @ x[:, 0], w2 @ x[:, 0], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(y @ sp, y @ w2, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(y[0] @ sp, y[0] @ w2, rtol=1e-12, atol=1e-9)
    else:
        np.testing.assert_allclose(sp @ x[:, 0], dense @ x[:, 0], rtol=1e-12, atol=1e-9)
    csr = sp.to_scipy()
    np.testing.assert_array_equal(csr.toarray(), w2)


def test_expand_with_thresholds_is_the_stream_mask():
    v = next(v for v in VECTORS if v["order"] == "F" and len(v["shape"]) == 2)
    sp = _sparse(v)
    stream = vitrust.expand(sp.config, sp.index, sp.size, sp.block_steps, thresholds=sp.thresholds)
    rows, cols = v["shape"]
    np.testing.assert_array_equal(stream.reshape(cols, rows).T, sp.mask())


def test_thresholds_out_of_range_are_refused():
    v = VECTORS[0]
    th = np.array(v["thresholds"], dtype=np.uint8)
    for bad in (0, 2 ** v["nc"] + 1):
        t = th.copy()
        t[1] = bad
        with pytest.raises(ValueError, match="thresholds"):
            vitrust.ViterbiSparse(tuple(v["shape"]), _config(v), v["block_steps"], _index(v), np.zeros(3, np.float32),
                                  0.0, thresholds=t, order=v["order"])
    with pytest.raises(ValueError, match="thresholds"):
        vitrust.ViterbiSparse(tuple(v["shape"]), _config(v), v["block_steps"], _index(v), np.zeros(3, np.float32),
                              0.0, thresholds=th[:-1], order=v["order"])
    with pytest.raises(ValueError, match="order"):
        _sparse(dict(v, order="K"))


def test_index_bits_count_the_thresholds():
    v = VECTORS[2]
    sp = _sparse(v)
    steps = sum(len(b) for b in v["block_bits"])
    assert sp.index_bits == steps + v["nc"] * len(v["block_bits"])


def test_pickle_and_astype_keep_order_and_thresholds():
    import pickle

    v = VECTORS[5]
    sp = _sparse(v)
    for other in (pickle.loads(pickle.dumps(sp)), sp.astype(np.float16)):
        assert other.order == sp.order
        np.testing.assert_array_equal(other.thresholds, sp.thresholds)
        np.testing.assert_array_equal(other.to_dense().astype(np.float32), sp.to_dense())
