"""Format version 3: pruned tensors whose values are stored as codes and a
side table load encoded, their values decoding as a NumPy reference of the
decoding does, from whole files and from the mapped reader; the file is a
valid safetensors file with the encoding in its record."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import vitrust
from vitrust._shard import sparse_from
from encoded import ENCODINGS, bits_of, encode, reference_decode, save_encoded
from fuzzing import sample_tensors_v2

ml_dtypes = pytest.importorskip("ml_dtypes")
DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16, np.float64]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 700), enc=st.sampled_from(ENCODINGS), group=st.integers(1, 300),
       dt=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 1.0, 300.0]))
def test_the_core_encoder_decodes_as_the_reference(n, enc, group, dt, seed, scale):
    v = (np.random.default_rng(seed).standard_normal(n) * scale).astype(dt)
    name, g, count, codes, table = encode(v, enc, group)
    assert count == n and len(codes) == -(-n * bits_of(enc) // 8)
    assert len(table) == (-(-n // group) if enc.startswith("int") else 2 ** bits_of(enc))
    # Every table entry is a value of the table's dtype (float32 for float64).
    tdt = np.float32 if dt == np.float64 else dt
    assert np.array_equal(table.astype(tdt).astype(np.float32), table)
    d = reference_decode(enc, g, n, codes, table, dt).astype(np.float64)
    err = np.abs(d - v.astype(np.float64))
    if enc == "int8":  # within half a step of the group's scale (plus the dtype's rounding)
        step = np.repeat(table.astype(np.float64), g)[:n]
        assert (err <= 0.5 * step + 1e-2 * np.abs(v.astype(np.float64)) + 1e-30).all()


@pytest.mark.parametrize("enc", ENCODINGS)
def test_encoded_files_load_decoded(tmp_path, enc):
    tensors = sample_tensors_v2()
    path = tmp_path / "v3.safetensors"
    save_encoded(tensors, {"a": enc, "b": enc}, path)
    got = vitrust.load_file(path)
    for name in ("a", "b"):
        sp, orig = got[name], tensors[name]
        assert sp.dtype == orig.dtype and sp.nnz == orig.nnz and sp.order == orig.order
        assert np.array_equal(sp.index, orig.index) and np.array_equal(sp.thresholds, orig.thresholds)
        e, g, n, codes, table = encode(orig.values, enc)
        assert np.array_equal(sp.values, reference_decode(e, g, n, codes, table, orig.dtype))
    # Unencoded tensors are untouched.
    assert np.array_equal(got["w"].values, tensors["w"].values) and np.array_equal(got["c"].values, tensors["c"].values)
    with safe_open(path, framework="np") as f:
        keys = set(f.keys())
        meta = json.loads(f.metadata()["vitrust"])
    assert meta["version"] == 3 and meta["sparse"]["a"]["values"] == enc
    table = "scales" if enc.startswith("int") else "codebook"
    assert {"a.vitrust.codes", f"a.vitrust.{table}"} <= keys and "a.vitrust.values" not in keys
    # The mapped reader gives the same decoded values.
    f = vitrust._vitrust.SafeOpen(str(path))
    mapped = sparse_from(f.get("a"), "a", None)
    assert np.array_equal(mapped.values, got["a"].values) and mapped.dtype == got["a"].dtype


def test_float8_values_are_not_encoded():
    v = np.ones(10, dtype=ml_dtypes.float8_e4m3fn)
    with pytest.raises(TypeError, match="float8"):
        vitrust._vitrust.encode_values(v, "codebook2")
    with pytest.raises(ValueError, match="expected raw, int8"):
        vitrust._vitrust.encode_values(np.ones(10, np.float32), "int3")
    with pytest.raises(ValueError, match="NaN"):
        vitrust._vitrust.encode_values(np.array([np.nan], np.float32), "int8")


@pytest.mark.parametrize("enc", ["int8", "int4", "codebook4"])
def test_save_file_encodes_values_on_request(tmp_path, enc):
    tensors = sample_tensors_v2()
    tensors["f8"] = tensors["c"].astype(ml_dtypes.float8_e4m3fn)
    raw, coded = tmp_path / "raw.safetensors", tmp_path / "coded.safetensors"
    vitrust.save_file(tensors, raw)
    vitrust.save_file(tensors, coded, values=enc, group=32)
    got = vitrust.load_file(coded)
    for name in ("a", "b", "c", "w"):
        orig = tensors[name]
        e, g, n, codes, table = encode(orig.values, enc, 32)
        assert np.array_equal(got[name].values, reference_decode(e, g, n, codes, table, orig.dtype)), name
        assert np.array_equal(got[name].mask(), orig.mask())
    # float8 values stay raw, plain arrays pass through, the file shrinks.
    assert np.array_equal(got["f8"].values, tensors["f8"].values)
    assert np.array_equal(got["bias"], tensors["bias"])
    assert coded.stat().st_size < raw.stat().st_size
    assert vitrust.read_metadata(coded) == {}  # no user metadata was added
    with safe_open(coded, framework="np") as f:
        meta = json.loads(f.metadata()["vitrust"])
    assert meta["sparse"]["a"]["values"] == enc and "values" not in meta["sparse"]["f8"]


def test_save_file_refuses_bad_encodings(tmp_path):
    t = sample_tensors_v2()
    with pytest.raises(ValueError, match="values = 'int5'"):
        vitrust.save_file(t, tmp_path / "x.safetensors", values="int5")
    with pytest.raises(TypeError, match="values"):
        vitrust.save_file(t, tmp_path / "x.safetensors", values=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group"):
        vitrust.save_file(t, tmp_path / "x.safetensors", values="int8", group=0)
    assert not (tmp_path / "x.safetensors").exists()


def test_the_encoder_weights_by_magnitude_by_default():
    v = np.random.default_rng(3).standard_normal(900).astype(np.float32) ** 3
    for enc in ("codebook4", "int4"):
        got = vitrust._vitrust.encode_values(v, enc, 64)
        want = vitrust._vitrust.encode_values(v, enc, 64, np.abs(v))
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
    flat = vitrust._vitrust.encode_values(v, "codebook4", 64, np.ones_like(v))
    assert not np.array_equal(flat[1], vitrust._vitrust.encode_values(v, "codebook4")[1])
