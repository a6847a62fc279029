"""A 1-D tensor has one 2-D view everywhere, one row ``(1, N)`` (issue 10,
item 3): products, ``to_scipy()``, the cost models and ``storage()`` agree, and
products follow NumPy's rule for a 1-D operand (the added 1 is dropped)."""

import numpy as np
import pytest

import vitrust

N = 3000


@pytest.fixture(params=[np.float32, np.float64])
def vec(request):
    rng = np.random.default_rng(5)
    sp = vitrust.prune(rng.standard_normal(N).astype(request.param), 0.7)
    return sp, np.asarray(sp), rng


def test_products_follow_numpy(vec):
    sp, d, rng = vec
    x, X = rng.standard_normal(N), rng.standard_normal((N, 3))
    tol = dict(rtol=1e-5, atol=1e-4)
    for got, want in [(sp @ x, d @ x), (sp @ X, d @ X), (x @ sp, x @ d), (X.T @ sp, X.T @ d)]:
        assert np.shape(got) == np.shape(want)
        np.testing.assert_allclose(got, want, **tol)
    assert np.ndim(sp @ x) == 0 and np.ndim(x @ sp) == 0
    # x @ w and w @ x sum the same products in the same order
    assert sp @ x == x @ sp
    with pytest.raises(ValueError, match=r"\(batch, 3000\) on the left"):
        sp @ np.ones(1)  # the (N, 1) view is gone
    with pytest.raises(ValueError):
        np.ones((3, 1)) @ sp


def test_scipy_products_and_costs_share_the_row_view(vec):
    sp, d, rng = vec
    csr = sp.to_scipy()
    assert csr.shape == (1, N)
    np.testing.assert_array_equal(csr.toarray()[0], d)
    X = rng.standard_normal((N, 2))
    np.testing.assert_allclose(sp @ X, (csr @ X)[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(X.T @ sp, (csr @ X)[0], rtol=1e-5, atol=1e-4)
    mask = sp.mask()
    table = sp.storage()
    for fmt, kw in [("csr32", {}), ("csr16", {}), ("csr-min", {}), ("relative", {"bits": 4})]:
        row_cost = vitrust.index_cost(mask.reshape(1, N), fmt, **kw)
        assert vitrust.index_cost(mask, fmt, **kw) == row_cost
        key = "relative-4" if fmt == "relative" else fmt
        assert table[key]["index_bits"] == row_cost
    # CSR of one row: a column index per kept weight and two row pointers
    assert table["csr32"]["index_bits"] == 32 * (sp.nnz + 2) == 32 * (csr.nnz + len(csr.indptr))
