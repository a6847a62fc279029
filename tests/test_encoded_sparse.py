"""A ``ViterbiSparse`` holding encoded values: ``quantize``, ``prune(values=)``,
the stored form, its bits, expansion and products decoding on the fly
(checked against plain NumPy on the reference decoding and against the same
tensor with the decoded values held raw), files, pickling and bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vitrust
from vitrust import EncodedValues
from encoded import ENCODINGS, bits_of, reference_decode

ml_dtypes = pytest.importorskip("ml_dtypes")
DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16, np.float64]
RNG = np.random.default_rng(14)
pytestmark = pytest.mark.filterwarnings("ignore::vitrust.RateWarning")


def _raw_twin(q: vitrust.ViterbiSparse) -> vitrust.ViterbiSparse:
    """``q`` with its decoded values held as they are."""
    return vitrust.ViterbiSparse(q.shape, q.config, q.block_steps, q.index, q.values, q.lam,
                                 thresholds=q.thresholds, order=q.order)


def _dense_reference(q: vitrust.ViterbiSparse) -> np.ndarray:
    """Plain NumPy: the reference decoding placed on the mask in stream order."""
    e = q.encoded
    v = reference_decode(e.encoding, e.group or 1, e.size, e.codes, e.table, q.dtype)
    mask = q.mask()
    stream_mask = mask.T.reshape(-1) if q.order == "F" and mask.ndim == 2 else mask.reshape(-1)
    out = np.zeros(q.size, q.dtype)
    out[stream_mask] = v
    if q.order == "F" and mask.ndim == 2:
        return np.ascontiguousarray(out.reshape(mask.T.shape).T)
    return out.reshape(q.shape)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 60), enc=st.sampled_from(ENCODINGS),
       group=st.integers(1, 200), dt=st.sampled_from(DTYPES), order=st.sampled_from(["C", "F"]),
       per_block=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_encoded_tensors_expand_and_multiply_as_their_decoding(rows, cols, enc, group, dt, order, per_block, seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows, cols)) * rng.uniform(0.1, 3, (rows, 1))).astype(dt)
    sp = vitrust.prune(w, 0.7, block_steps=16, order=order, block_thresholds=per_block)
    q = sp.quantize(enc, group=group)
    e = q.encoded
    assert q.encoding == enc and e.size == q.nnz == sp.nnz and e.dtype == q.dtype == sp.dtype
    assert np.array_equal(q.mask(), sp.mask())
    ref = reference_decode(enc, e.group or 1, e.size, e.codes, e.table, dt)
    assert np.array_equal(q.values.view(np.uint8), ref.view(np.uint8))
    dense = q.to_dense()
    assert dense.dtype == dt and np.array_equal(dense.view(np.uint8), _dense_reference(q).view(np.uint8))
    # The products read exactly the decoded values: the same bits as the raw twin.
    twin = _raw_twin(q)
    x = rng.standard_normal((cols, 3)).astype(np.float64 if dt == np.float64 else np.float32)
    xl = rng.standard_normal((2, rows)).astype(x.dtype)
    assert np.array_equal(q @ x, twin @ x) and np.array_equal(xl @ q, xl @ twin)
    np.testing.assert_allclose(q @ x, dense.astype(np.float64) @ x.astype(np.float64), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("enc", ENCODINGS)
def test_stored_form_and_bits(enc):
    w = RNG.standard_normal((64, 90)).astype(np.float32)
    sp = vitrust.prune(w, 0.8)
    q = sp.quantize(enc, group=50)
    b = bits_of(enc)
    assert q.codes.dtype == np.uint8 and q.codes.nbytes == -(-sp.nnz * b // 8)
    if enc.startswith("int"):
        assert q.codebook is None and q.scales.dtype == np.float32 and q.scales.size == -(-sp.nnz // 50)
        assert q.encoded.group == 50
    else:
        assert q.scales is None and q.codebook.size == 2**b and q.encoded.group is None
        assert np.all(np.diff(q.codebook) >= 0)  # ascending
    table = q.encoded.table.size * 32
    assert q.value_bits == 8 * q.codes.nbytes + table
    assert q.total_bits == q.index_bits + q.value_bits
    assert q.nbytes == q.index.nbytes + q.codes.nbytes + table // 8
    assert sp.value_bits == 32 * sp.nnz and q.total_bits < sp.total_bits
    assert f"values={enc}" in repr(q) and "values=" not in repr(sp)
    # raw gives the decoded values back, held as they are
    r = q.quantize("raw")
    assert r.encoded is None and np.array_equal(r.values, q.values) and r.codes is None


def test_bfloat16_tables_are_bfloat16():
    w = RNG.standard_normal((32, 64)).astype(ml_dtypes.bfloat16)
    q = vitrust.prune(w, 0.5, values="int8", group=32)
    assert q.scales.dtype == ml_dtypes.bfloat16 and q.values.dtype == ml_dtypes.bfloat16
    assert q.value_bits == 8 * q.nnz + 16 * q.scales.size


def test_prune_values_weights_the_codebook_by_the_scores():
    w = RNG.standard_normal((48, 80)).astype(np.float32)
    s = RNG.uniform(0, 1, w.shape).astype(np.float32) * np.abs(w)
    assert np.array_equal(vitrust.prune(w, 0.8, values="codebook3").to_dense(),
                          vitrust.prune(w, 0.8).quantize("codebook3").to_dense())
    sp = vitrust.prune(w, 0.8, scores=s)
    kept_scores = s.reshape(-1)[sp.mask().reshape(-1)]
    by_scores = vitrust.prune(w, 0.8, scores=s, values="codebook3")
    assert np.array_equal(by_scores.codebook, sp.quantize("codebook3", scores=kept_scores).codebook)
    assert not np.array_equal(by_scores.codebook, sp.quantize("codebook3").codebook)
    sq = vitrust.prune(w, 0.8, score="square", values="codebook3")
    kept = sp.values if np.array_equal(sq.mask(), sp.mask()) else vitrust.prune(w, 0.8, score="square").values
    assert np.array_equal(sq.codebook, vitrust.prune(w, 0.8, score="square").quantize(
        "codebook3", scores=kept.astype(np.float32) ** 2).codebook)


@pytest.mark.parametrize("enc", ["int4", "codebook4"])
def test_files_and_pickles_keep_the_encoding(tmp_path, enc):
    w = RNG.standard_normal((30, 70)).astype(np.float16)
    q = vitrust.prune(w, 0.75, values=enc, group=20, order="F")
    p1, p2 = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    vitrust.save_file({"w": q}, p1)
    got = vitrust.load_file(p1)["w"]
    assert got.encoding == enc and got.encoded.group == q.encoded.group
    assert np.array_equal(got.codes, q.codes) and np.array_equal(got.encoded.table, q.encoded.table)
    vitrust.save_file({"w": got}, p2)  # loaded and saved again: the same file
    assert p1.read_bytes() == p2.read_bytes()
    back = pickle.loads(pickle.dumps(q))
    assert back.encoding == enc and np.array_equal(back.to_dense(), q.to_dense())
    # values="raw" decodes; another encoding re-encodes from the decoding
    vitrust.save_file({"w": got}, p2, values="raw")
    raw = vitrust.load_file(p2)["w"]
    assert raw.encoded is None and np.array_equal(raw.values, q.values)
    vitrust.save_file({"w": got}, p2, values="int8", group=7)
    assert vitrust.load_file(p2)["w"].encoded.group == 7


def test_the_constructor_takes_and_checks_encoded_values():
    q = vitrust.prune(RNG.standard_normal((20, 50)).astype(np.float32), 0.6, values="int8", group=16)
    e = q.encoded
    args = (q.shape, q.config, q.block_steps, q.index)
    again = vitrust.ViterbiSparse(*args, e, q.lam)
    assert np.array_equal(again.to_dense(), q.to_dense())
    with pytest.raises(ValueError, match="code bytes"):
        vitrust.ViterbiSparse(*args, e._replace(codes=e.codes[:-1]), q.lam)
    with pytest.raises(ValueError, match="entries"):
        vitrust.ViterbiSparse(*args, e._replace(size=e.size - 1, codes=e.codes[:-1]), q.lam)
    with pytest.raises(ValueError, match="non-finite"):
        vitrust.ViterbiSparse(*args, e._replace(table=np.full_like(e.table, np.inf)), q.lam)
    with pytest.raises(TypeError, match="uint8"):
        vitrust.ViterbiSparse(*args, e._replace(codes=e.codes.astype(np.int16)), q.lam)
    with pytest.raises(ValueError, match="encoding"):
        vitrust.ViterbiSparse(*args, e._replace(encoding="int3"), q.lam)
    # A float16 scale whose codes would overflow float16 is refused, as in a file.
    h = vitrust.prune(RNG.standard_normal((20, 50)).astype(np.float16), 0.6, values="int8", group=16)
    big = h.encoded._replace(table=np.full_like(h.encoded.table, 1024.0))
    with pytest.raises(ValueError, match="overflow"):
        vitrust.ViterbiSparse(h.shape, h.config, h.block_steps, h.index, big, h.lam)


def test_bad_encodings_are_refused():
    sp = vitrust.prune(RNG.standard_normal((20, 50)).astype(np.float32), 0.6)
    with pytest.raises(ValueError, match="int8"):
        sp.quantize("int2")
    with pytest.raises(TypeError, match="encoding name"):
        sp.quantize(4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group"):
        sp.quantize("int8", group=0)
    with pytest.raises(ValueError, match="scores"):
        sp.quantize("codebook2", scores=np.ones(sp.nnz - 1))
    with pytest.raises(ValueError, match="scores"):
        sp.quantize("codebook2", scores=np.full(sp.nnz, np.nan))
    with pytest.raises(ValueError, match="values"):
        vitrust.prune(np.ones((4, 8), np.float32), 0.5, values="codebook9")
    f8 = sp.astype(ml_dtypes.float8_e4m3fn)
    with pytest.raises(TypeError, match="8 bits"):
        f8.quantize("int8")


def test_astype_decodes():
    q = vitrust.prune(RNG.standard_normal((20, 50)).astype(np.float32), 0.6, values="codebook2")
    h = q.astype(np.float16)
    assert h.encoded is None and np.array_equal(h.values, q.values.astype(np.float16))


def test_storage_rows_count_the_encoded_values():
    w = RNG.standard_normal((64, 128)).astype(np.float32)
    q = vitrust.prune(w, 0.9, values="codebook4")
    t = q.storage()
    n, nnz = q.size, q.nnz
    assert t["viterbi"]["total_bytes"] == q.nbytes
    assert t["viterbi"]["total_bits_per_weight"] == pytest.approx(q.total_bits / n)
    assert t["csr32"]["total_bits_per_weight"] == pytest.approx((t["csr32"]["index_bits"] + 32 * nnz) / n)
    dc = t["relative-5+codebook4"]
    bits, padding = t["relative-5"]["index_bits"], t["relative-5"]["padding"]
    assert dc["index_bits"] == bits and dc["padding"] == padding
    assert dc["value_bits"] == (nnz + padding) * 4 + 16 * 32
    assert "vitrust's as codebook4" in str(t).splitlines()[0]
    assert "relative-5+codebook5" in vitrust.prune(w, 0.9).storage()


@pytest.mark.parametrize("global_rate", [False, True])
def test_checkpoints_and_the_cli_store_encoded_values(tmp_path, capsys, global_rate):
    from safetensors.numpy import save_file as st_save

    from vitrust._cli import main

    src = tmp_path / "m.safetensors"
    tensors = {"a.weight": RNG.standard_normal((64, 96)).astype(np.float32),
               "b.weight": RNG.standard_normal((32, 64)).astype(np.float16), "b.bias": np.ones(32, np.float32)}
    st_save(tensors, str(src))
    out = tmp_path / "o.safetensors"
    args = ["prune", str(src), "-o", str(out), "--rate", "0.8", "--values", "int4", "--group", "32", "-q"]
    assert main(args + (["--global"] if global_rate else [])) == 0
    got = vitrust.load_file(out)
    for name in ("a.weight", "b.weight"):
        sp = got[name]
        assert sp.encoding == "int4" and sp.encoded.group == 32
        # the same mask as a raw prune, its values encoded from the weights
        raw = vitrust.prune_checkpoint(src, tmp_path / f"raw{name}.safetensors", 0.8, global_rate=global_rate)
        assert raw is not None
    ref = vitrust.load_file(tmp_path / "rawa.weight.safetensors")
    for name in ("a.weight", "b.weight"):
        assert np.array_equal(got[name].mask(), ref[name].mask())
        assert np.array_equal(got[name].codes, ref[name].quantize("int4", group=32).codes)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "a.weight: values int4, group 32" in text and "b.weight: values int4, group 32" in text
    # The dry run's expected size counts the encoded values.
    plan = vitrust.prune_checkpoint(src, tmp_path / "dry", 0.8, dry_run=True, values="int4", group=32)
    stored = got["a.weight"].nbytes + got["b.weight"].nbytes + got["b.bias"].nbytes
    assert abs(plan.bytes_out - stored) < 0.05 * stored
    with pytest.raises(ValueError, match="values"):
        vitrust.prune_checkpoint(src, tmp_path / "bad.safetensors", 0.8, values="int5")
    with pytest.raises(SystemExit) as exit_:  # argparse refuses the choice
        main(["prune", str(src), "-o", str(tmp_path / "x.safetensors"), "--rate", "0.8", "--values", "int5"])
    assert exit_.value.code == 2
