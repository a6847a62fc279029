"""bfloat16 and float8 (ml_dtypes) weights: searched on exactly widened
scores, kept in their dtype through pruning, files, products and interop."""

import json
import os
import pickle
import struct
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vitrust
from vitrust._cli import main

from reference import kept_values

NARROW = [ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2]
ALL = NARROW + [np.float16, np.float32, np.float64]
BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
ST_NAMES = {ml_dtypes.bfloat16: "BF16", ml_dtypes.float8_e4m3fn: "F8_E4M3", ml_dtypes.float8_e5m2: "F8_E5M2"}


def bits(a):
    """The bit patterns of an array (so that -0.0 and 0.0 differ, and NaN equals itself)."""
    return np.ascontiguousarray(a).view(BITS[a.dtype.itemsize])


def random_finite(rng, shape, dtype):
    """Weights of every finite bit pattern of ``dtype`` (subnormals, -0.0 and
    the largest values included) for the narrow types; Gaussian for the rest."""
    dt = np.dtype(dtype)
    if dt.itemsize > 2 or dt == np.float16:
        return (rng.standard_normal(shape) * 3).astype(dt)
    raw = rng.integers(0, 2 ** (8 * dt.itemsize), size=shape, dtype=BITS[dt.itemsize]).view(dt)
    wide = raw.astype(np.float32)
    return np.where(np.isfinite(wide), raw, np.array(1.5, dtype=dt))


def name(dtype):
    return np.dtype(dtype).name


@pytest.mark.parametrize("dtype", ALL, ids=name)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.sampled_from([(1,), (7,), (64, 33), (3, 5, 41), (2000,)]),
    rate=st.sampled_from([0.0, 0.5, 0.9]),
)
def test_prune_save_load_to_dense_keeps_bit_patterns(tmp_path_factory, dtype, seed, shape, rate):
    rng = np.random.default_rng(seed)
    w = random_finite(rng, shape, dtype)
    sp = vitrust.prune(w, rate, block_steps=64)
    assert sp.dtype == w.dtype and sp.values.dtype == w.dtype
    path = tmp_path_factory.mktemp("rt") / "w.safetensors"
    vitrust.save_file({"w": sp, "plain": w}, path)
    back = vitrust.load_file(path)
    assert back["plain"].dtype == w.dtype and np.array_equal(bits(back["plain"]), bits(w))
    got = back["w"]
    assert isinstance(got, vitrust.ViterbiSparse) and got.dtype == w.dtype
    dense, mask = got.to_dense(), got.mask()
    assert dense.dtype == w.dtype and dense.shape == w.shape
    assert np.array_equal(bits(dense)[mask], bits(w)[mask])
    assert not bits(dense)[~mask].any()
    assert np.array_equal(bits(got.values), kept_values(bits(w), got))


@pytest.mark.parametrize("dtype", NARROW, ids=name)
def test_search_runs_on_the_exactly_widened_scores(dtype):
    """Widening is exact, so the narrow array and its float32 copy prune alike."""
    w = random_finite(np.random.default_rng(1), (40, 250), dtype)
    for kwargs in (dict(rate=0.7), dict(lam=0.05), dict(rate=0.5, score="square")):
        a, b = vitrust.prune(w, **kwargs), vitrust.prune(w.astype(np.float32), **kwargs)
        assert np.array_equal(a.index, b.index) and a.lam == b.lam
        assert np.array_equal(a.values.astype(np.float32), b.values)


@pytest.mark.parametrize("dtype", NARROW, ids=name)
def test_non_finite_narrow_weights_are_refused(dtype):
    w = np.ones(100, dtype=np.float32)
    w[17] = np.nan
    with pytest.raises(ValueError, match="finite: element 17"):
        vitrust.prune(w.astype(dtype), 0.5)
    if dtype != ml_dtypes.float8_e4m3fn:  # it has no infinities
        w[17] = -np.inf
        with pytest.raises(ValueError, match="finite: element 17"):
            vitrust.prune(w.astype(dtype), 0.5)


@pytest.mark.parametrize("dtype", ALL, ids=name)
def test_products_match_numpy_on_widened_values(dtype):
    rng = np.random.default_rng(4)
    # bfloat16 patterns reach 3e38, where float32 sums overflow: Gaussian weights instead.
    w = random_finite(rng, (37, 91), np.float32 if dtype == ml_dtypes.bfloat16 else dtype).astype(dtype)
    sp = vitrust.prune(w, 0.6, block_steps=32)
    wide = sp.to_dense().astype(np.float64)
    scale = np.abs(wide).sum()
    for x_dtype in (np.float32, np.float64):
        x = rng.standard_normal((91, 5)).astype(x_dtype)
        y = sp @ x
        assert y.dtype == (np.float64 if np.float64 in (x_dtype, sp.dtype) else np.float32)
        tol = 1e-12 if y.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(y, wide @ x, rtol=0, atol=tol * scale)
        v = rng.standard_normal(91).astype(x_dtype)
        np.testing.assert_allclose(sp @ v, wide @ v, rtol=0, atol=tol * scale)
        xl = rng.standard_normal((6, 37)).astype(x_dtype)
        np.testing.assert_allclose(xl @ sp, xl @ wide, rtol=0, atol=tol * scale)
    # A narrow operand is widened to float32 like the values.
    xn = rng.standard_normal((91, 2)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(sp @ xn, sp @ xn.astype(np.float32))


def test_float8_products_see_every_finite_value_exactly():
    """One weight per finite bit pattern, each multiplied by 1: the product
    reads back each value as ml_dtypes widens it."""
    for dtype in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2):
        patterns = np.arange(256, dtype=np.uint8).view(dtype)
        finite = patterns[np.isfinite(patterns.astype(np.float32))]
        n = finite.size
        sp = vitrust.prune(finite.reshape(n, 1), 0.0)
        assert sp.nnz == n
        np.testing.assert_array_equal(sp @ np.ones(1, np.float32), finite.astype(np.float32))


@pytest.mark.parametrize("dtype", NARROW, ids=name)
def test_interop_keeps_or_widens_exactly(dtype):
    w = random_finite(np.random.default_rng(5), (30, 70), dtype)
    sp = vitrust.prune(w, 0.5)
    again = pickle.loads(pickle.dumps(sp))
    assert again.dtype == sp.dtype and np.array_equal(bits(again.values), bits(sp.values))
    csr = sp.to_scipy()
    assert csr.dtype == np.float32
    np.testing.assert_array_equal(csr.toarray(), sp.to_dense().astype(np.float32))
    wide = sp.astype(np.float32)
    assert wide.dtype == np.float32 and np.array_equal(wide.values, sp.values.astype(np.float32))
    back = wide.astype(dtype)
    assert back.dtype == sp.dtype and np.array_equal(bits(back.values), bits(sp.values))
    table = sp.storage()
    item = np.dtype(dtype).itemsize
    assert table.itemsize == item
    assert table["viterbi"]["total_bytes"] == sp.index.nbytes + sp.nnz * item
    assert table["dense"]["total_bytes"] == sp.size * item
    assert np.array_equal(np.asarray(sp).view(BITS[item]), bits(sp.to_dense()))


def test_astype_refuses_casts_that_overflow_narrow_types():
    sp = vitrust.prune(np.linspace(1, 1000, 500, dtype=np.float32), 0.5)
    with pytest.raises(ValueError, match="overflows float8_e4m3fn"):
        sp.astype(ml_dtypes.float8_e4m3fn)  # beyond 448: NaN, e4m3fn has no infinity
    assert sp.astype(ml_dtypes.bfloat16).dtype == ml_dtypes.bfloat16
    with pytest.raises(TypeError, match="bfloat16"):
        sp.astype(ml_dtypes.int4)


@pytest.mark.parametrize("dtype", NARROW, ids=name)
def test_files_store_values_in_their_safetensors_dtype(tmp_path, dtype):
    w = random_finite(np.random.default_rng(6), (50, 60), dtype)
    path = tmp_path / "w.safetensors"
    vitrust.save_file({"w": vitrust.prune(w, 0.5), "p": w}, path)
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    assert header["w.vitrust.values"]["dtype"] == ST_NAMES[dtype]
    assert header["p"]["dtype"] == ST_NAMES[dtype]
    # The stored bytes are the little-endian bit patterns, as any reader sees them.
    start, end = header["p"]["data_offsets"]
    body = raw[8 + struct.unpack("<Q", raw[:8])[0] :]
    assert body[start:end] == bits(w).astype(bits(w).dtype.newbyteorder("<")).tobytes()


def test_bfloat16_file_pruned_at_half_is_about_half_its_size(tmp_path, capsys):
    """Values of 2 bytes each plus 0.2 bit of index per weight: 0.5125x."""
    rng = np.random.default_rng(7)
    w = {f"layer{i}.weight": rng.standard_normal((512, 512)).astype(ml_dtypes.bfloat16) for i in range(2)}
    src, out, dense = tmp_path / "bf.safetensors", tmp_path / "bf.vt.safetensors", tmp_path / "dense.safetensors"
    vitrust.save_file(w, src)
    assert main(["prune", str(src), "-o", str(out), "--rate", "0.5", "-q"]) == 0
    ratio = os.path.getsize(out) / os.path.getsize(src)
    assert 0.5 <= ratio <= 0.53, ratio
    pruned = vitrust.load_file(out)
    assert all(t.dtype == ml_dtypes.bfloat16 for t in pruned.values())
    assert main(["unpack", str(out), "-o", str(dense)]) == 0
    unpacked = vitrust.load_file(dense)
    for n, t in unpacked.items():
        assert t.dtype == ml_dtypes.bfloat16
        m = pruned[n].mask()
        assert np.array_equal(bits(t)[m], bits(w[n])[m]) and not bits(t)[~m].any()
    capsys.readouterr()


def test_cli_prunes_float8_tensors_in_their_dtype(tmp_path, capsys):
    w = random_finite(np.random.default_rng(8), (64, 64), ml_dtypes.float8_e4m3fn)
    src, out = tmp_path / "f8.safetensors", tmp_path / "f8.vt.safetensors"
    vitrust.save_file({"w": w}, src)
    assert main(["prune", str(src), "-o", str(out), "--rate", "0.5", "-q"]) == 0
    sp = vitrust.load_file(out)["w"]
    assert sp.dtype == ml_dtypes.float8_e4m3fn
    assert np.array_equal(bits(sp.values), bits(w)[sp.mask()])
    capsys.readouterr()


def test_vitrust_works_without_ml_dtypes(tmp_path):
    """vitrust imports and prunes without ml_dtypes; only loading a narrow
    tensor needs it, and says so."""
    path = tmp_path / "bf.safetensors"
    vitrust.save_file({"w": vitrust.prune(np.ones((10, 10), ml_dtypes.bfloat16), 0.5)}, path)
    code = f"""
import sys
sys.modules["ml_dtypes"] = None  # any import of it fails
import numpy as np, vitrust
sp = vitrust.prune(np.random.default_rng(0).standard_normal((20, 20)).astype(np.float32), 0.5)
assert sp.dtype == np.float32
try:
    vitrust.load_file({str(path)!r})
except ValueError as e:
    assert "bfloat16" in str(e) and "ml_dtypes" in str(e), e
else:
    raise AssertionError("loaded bfloat16 without ml_dtypes")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
