"""The safetensors file: round trips, an independent reader, atomic saves and
every refusal of a damaged or hostile file."""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import load_file as st_load
from safetensors.numpy import save_file as st_save

import vitrust
from fuzzing import body, join, same, sample_tensors, set_body, split

DTYPES = [np.float16, np.float32, np.float64]


@pytest.fixture(scope="module")
def tensors():
    return sample_tensors()


@pytest.fixture
def saved(tmp_path, tensors):
    path = tmp_path / "model.safetensors"
    vitrust.save_file(tensors, path, metadata={"note": "hello"})
    return path


def rewrite(path, edit):
    header, data = split(path.read_bytes())
    edit(header)
    path.write_bytes(join(header, data))


def edit_body(path, edit, recheck=True):
    def f(header):
        b = body(header)
        edit(b)
        set_body(header, b, recheck)

    rewrite(path, f)


@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    rate=st.floats(0.0, 0.95),
    dtype=st.sampled_from(DTYPES),
    n_in=st.integers(1, 2),
    block_steps=st.integers(1, 40),
    seed=st.integers(0, 2**32),
)
def test_round_trip(tmp_path_factory, shape, rate, dtype, n_in, block_steps, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(dtype)
    sp = vitrust.prune(w, rate, flip_flops=5, n_in=n_in, block_steps=block_steps, seed=seed)
    plain = rng.integers(-9, 9, size=shape).astype(np.int8)
    path = tmp_path_factory.mktemp("rt") / "f.safetensors"
    vitrust.save_file({"w": sp, "p": plain}, path)
    got = vitrust.load_file(path)
    assert same(got, {"w": sp, "p": plain})
    assert np.array_equal(got["w"].to_dense(), sp.to_dense()) and got["w"].dtype == dtype


def test_plain_dtypes_and_shapes_pass_through(tmp_path):
    arrays = {
        "bool": np.array([[True, False], [False, True]]),
        "u8": np.arange(5, dtype=np.uint8), "i8": np.array([-1, 2], np.int8),
        "u16": np.array([65535], np.uint16), "i16": np.array([-3], np.int16),
        "u32": np.array([2**32 - 1], np.uint32), "i32": np.array([-7], np.int32),
        "u64": np.array([2**64 - 1], np.uint64), "i64": np.array([-(2**63)], np.int64),
        "f16": np.array([1.5], np.float16), "f32": np.array([np.pi], np.float32), "f64": np.array([np.e]),
        "scalar": np.float32(3.0), "empty": np.zeros((0, 3), np.float32),
        "big_endian": np.arange(4, dtype=">f4"), "strided": np.arange(20.0).reshape(4, 5)[:, ::2],
    }
    path = tmp_path / "p.safetensors"
    vitrust.save_file(arrays, path)
    got = vitrust.load_file(path)
    assert sorted(got) == sorted(arrays)
    for k, a in arrays.items():
        a = np.asarray(a)
        assert got[k].shape == a.shape and np.array_equal(got[k], a), k
        assert got[k].dtype == a.dtype.newbyteorder("="), k


def test_an_independent_reader_opens_the_file(saved, tensors):
    # The reference safetensors implementation, through its numpy API.
    raw = st_load(saved)
    assert set(raw) == {"bias", "steps", "w.vitrust.index", "w.vitrust.values", "v.vitrust.index", "v.vitrust.values"}
    for name in ("w", "v"):
        sp = tensors[name]
        assert raw[f"{name}.vitrust.index"].dtype == np.uint64
        assert np.array_equal(raw[f"{name}.vitrust.index"], sp.index)
        assert raw[f"{name}.vitrust.values"].dtype == sp.dtype
        assert np.array_equal(raw[f"{name}.vitrust.values"], sp.values)
    assert np.array_equal(raw["bias"], tensors["bias"]) and np.array_equal(raw["steps"], tensors["steps"])
    with safe_open(saved, framework="np") as f:
        meta = f.metadata()
    assert meta["note"] == "hello"
    b = json.loads(meta["vitrust"])
    # Nothing here needs version 2, so the file stays version 1 for v1 readers.
    assert b["version"] == vitrust._vitrust.FORMAT_VERSION_1 == 1
    assert vitrust._vitrust.FORMAT_VERSION == 3
    rec = b["sparse"]["w"]
    w = tensors["w"]
    assert rec["shape"] == list(w.shape) and rec["dtype"] == "F32" and rec["nnz"] == w.nnz
    assert rec["block_steps"] == w.block_steps and rec["lam"] == w.lam
    assert rec["config"]["taps"] == w.config.taps and rec["config"]["threshold"] == w.config.threshold
    # The container read by hand (8-byte length, JSON header, data) agrees too.
    header, data = split(saved.read_bytes())
    for name, arr in raw.items():
        start, end = header[name]["data_offsets"]
        assert data[start:end] == arr.tobytes() and header[name]["shape"] == list(arr.shape)
    # The checksums are plain CRC-32 of the stored bytes, checkable by anyone.
    for name, arr in raw.items():
        assert b["tensors"][name]["crc32"] == zlib.crc32(arr.tobytes())
        assert b["tensors"][name]["shape"] == list(arr.shape)


def test_files_from_the_reference_writer_load(tmp_path):
    path = tmp_path / "plain.safetensors"
    a = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": np.array([1, 2], np.int64)}
    st_save(a, path)
    got = vitrust.load_file(path)
    assert same(got, a)


def test_failed_save_keeps_the_old_file(saved, tensors):
    before = saved.read_bytes()
    with pytest.raises(TypeError, match="complex"):
        vitrust.save_file({"z": np.zeros(3, np.complex64)}, saved)
    with pytest.raises(ValueError, match="reserved"):
        vitrust.save_file({"x.vitrust.index": np.zeros(3)}, saved)
    with pytest.raises(ValueError, match="reserved"):
        vitrust.save_file({"x": np.zeros(3)}, saved, metadata={"vitrust": "mine"})
    with pytest.raises(TypeError, match="metadata"):
        vitrust.save_file({"x": np.zeros(3)}, saved, metadata={"n": 1})
    bad = vitrust.ViterbiSparse.__new__(vitrust.ViterbiSparse)
    w = tensors["w"]
    for slot in ("shape", "config", "block_steps", "index", "lam", "thresholds", "order", "_threads"):
        setattr(bad, slot, getattr(w, slot))
    bad._raw, bad._encoded = w.values[:-1], None  # one value short of what the index keeps
    with pytest.raises(ValueError, match="values"):
        vitrust.save_file({"w": bad}, saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]  # no temporary file left behind
    with pytest.raises(OSError, match="No such file"):
        vitrust.save_file({"x": np.zeros(3)}, saved.parent / "missing" / "f.safetensors")


def test_overwrite_replaces_the_file(saved):
    vitrust.save_file({"only": np.ones(2)}, saved)
    assert list(vitrust.load_file(saved)) == ["only"]


def test_missing_and_odd_paths(tmp_path):
    with pytest.raises(OSError, match="No such file"):
        vitrust.load_file(tmp_path / "nope.safetensors")
    with pytest.raises(vitrust.FormatError, match="not a regular file"):
        vitrust.load_file(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        vitrust.load_file(tmp_path / "empty")


def test_truncation_and_data_damage_are_refused(saved):
    buf = saved.read_bytes()
    for cut in (1, 8, 9, len(buf) // 2, len(buf) - 1):
        saved.write_bytes(buf[:cut])
        with pytest.raises(vitrust.FormatError, match="not a valid safetensors file"):
            vitrust.load_file(saved)
    saved.write_bytes(buf[:-1] + bytes([buf[-1] ^ 0x10]))
    with pytest.raises(ValueError, match="checksum mismatch"):
        vitrust.load_file(saved)
    saved.write_bytes(struct.pack("<Q", 2**63) + buf[8:])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        vitrust.load_file(saved)


HOSTILE = [
    (lambda b: b.update(version=4), "unsupported vitrust format version 4"),
    (lambda b: b.update(version=0), "unsupported vitrust format version 0"),
    (lambda b: b["sparse"]["w"].update(order="F"), "version 1 file has no \"order\""),
    (lambda b: b["sparse"]["w"]["config"].update(flip_flops=17), "flip_flops = 17"),
    (lambda b: b["sparse"]["w"]["config"].update(n_in=3, flip_flops=2), "n_in = 3"),
    (lambda b: b["sparse"]["w"]["config"].update(taps=[0] * 5000), "tap masks"),
    (lambda b: b["sparse"]["w"]["config"]["taps"].append(1), "taps"),
    (lambda b: b["sparse"]["w"].update(block_steps=0), "block_steps = 0"),
    (lambda b: b["sparse"]["w"].update(block_steps=2**40), "block_steps"),
    (lambda b: b["sparse"]["w"].update(shape=[24, 50]), "index too short"),
    (lambda b: b["sparse"]["w"].update(shape=[2**40, 2**40]), "index too long|overflow"),
    (lambda b: b["sparse"]["w"].update(shape=[2**62] * 4), "overflows"),
    (lambda b: b["sparse"]["w"].update(shape=[1] * 65), "dimensions"),
    (lambda b: b["sparse"]["w"].update(shape=[]), "at least one dimension"),
    (lambda b: b["sparse"]["w"].update(nnz=3), "nnz"),
    (lambda b: b["sparse"]["w"].update(dtype="F64"), "F64"),
    (lambda b: b["sparse"]["w"].update(dtype="C64"), "unsupported dtype"),
    (lambda b: b["sparse"]["w"].update(lam="x"), "lam"),
    (lambda b: b["sparse"]["w"].update(extra=1), "unknown field"),
    (lambda b: b["sparse"]["w"]["config"].update(threshold=0), "threshold = 0"),
    (lambda b: b["sparse"]["w"]["config"].update(comparator_bits=2**40), "out of range"),
    (lambda b: b["sparse"].pop("w"), "belongs to no pruned tensor"),
    (lambda b: b["sparse"].update(bias=b["sparse"]["w"]), "both as a plain and as a pruned"),
    (lambda b: b["tensors"].pop("bias"), "not recorded"),
    (lambda b: b["tensors"].update(ghost=b["tensors"]["bias"]), "missing from the file"),
    (lambda b: b["tensors"]["bias"].update(shape=[1, 7]), "shape"),
    (lambda b: b["tensors"]["bias"].update(dtype="I64"), "metadata records"),
    (lambda b: b["tensors"]["bias"].update(crc32=b["tensors"]["bias"]["crc32"] ^ 1), "checksum mismatch"),
    (lambda b: b.pop("sparse"), "missing field"),
]


@pytest.mark.parametrize("edit,message", HOSTILE)
def test_hostile_metadata_is_refused(saved, edit, message):
    # The metadata's own check is recomputed, so each edit reaches its own test.
    edit_body(saved, edit)
    with pytest.raises(ValueError, match=message):
        vitrust.load_file(saved)


def test_metadata_edits_without_a_new_check_are_refused(saved):
    edit_body(saved, lambda b: b["sparse"]["w"].update(lam=b["sparse"]["w"]["lam"] * 2), recheck=False)
    with pytest.raises(ValueError, match="metadata checksum mismatch"):
        vitrust.load_file(saved)


def test_container_edits_are_refused(saved):
    def retype(h):
        h["steps"]["dtype"] = "U32"

    rewrite(saved, retype)
    with pytest.raises(ValueError, match="stored as U32"):
        vitrust.load_file(saved)


def test_orphan_siblings_without_metadata_are_refused(saved):
    rewrite(saved, lambda h: h["__metadata__"].pop("vitrust"))
    with pytest.raises(ValueError, match="vitrust metadata is missing"):
        vitrust.load_file(saved)
    rewrite(saved, lambda h: h["__metadata__"].update(vitrust="{"))
    with pytest.raises(ValueError, match="not valid JSON"):
        vitrust.load_file(saved)


def test_bad_bool_bytes_are_refused(tmp_path):
    path = tmp_path / "b.safetensors"
    st_save({"m": np.array([True, False])}, path)
    buf = bytearray(path.read_bytes())
    buf[-1] = 2
    path.write_bytes(bytes(buf))
    with pytest.raises(ValueError, match="BOOL"):
        vitrust.load_file(path)


def test_bfloat16_loads_with_ml_dtypes_and_is_refused_clearly_without(tmp_path, monkeypatch):
    pytest.importorskip("ml_dtypes")
    path = tmp_path / "bf.safetensors"
    header = {"x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}
    path.write_bytes(join(header, b"\x80\x3f\x00\x40"))
    assert vitrust.load_file(path)["x"].astype(np.float32).tolist() == [1.0, 2.0]
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # `import ml_dtypes` now fails, as when not installed
    with pytest.raises(ValueError, match="bfloat16.*ml_dtypes"):
        vitrust.load_file(path)


def test_argument_types(saved):
    with pytest.raises(TypeError, match="mapping"):
        vitrust.save_file([np.zeros(2)], saved)
    with pytest.raises(TypeError, match="names must be str"):
        vitrust.save_file({1: np.zeros(2)}, saved)
    with pytest.raises(TypeError, match="object"):
        vitrust.save_file({"o": np.array([None])}, saved)


def test_other_json_spellings_load_the_same_and_duplicates_are_refused(saved):
    import fuzzing

    buf = saved.read_bytes()
    want = vitrust.load_file(saved)
    for op in range(3):
        for key in range(4):
            picks = iter([op, key])
            saved.write_bytes(fuzzing.reencode(buf, lambda lo, hi: next(picks))[0])
            if op < 2:
                assert fuzzing.same(vitrust.load_file(saved), want), op
                break
            with pytest.raises(vitrust.FormatError, match="twice|unsupported|missing|checksum"):
                vitrust.load_file(saved)
