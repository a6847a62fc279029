"""Dense conversion through NumPy and the torch loader's index checks."""

import json

import numpy as np
import pytest

import vitrust

RNG = np.random.default_rng(8)


def test_array_protocol_dtype_and_copy():
    w = RNG.standard_normal((16, 40)).astype(np.float32)
    sp = vitrust.prune(w, 0.5)
    want = np.where(sp.mask().reshape(w.shape), w, 0)
    a = np.asarray(sp)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, want)
    h = np.asarray(sp, dtype=np.float16)
    assert h.dtype == np.float16
    np.testing.assert_array_equal(h, want.astype(np.float16))
    np.testing.assert_array_equal(np.array(sp, copy=True), want)
    with pytest.raises(ValueError, match="^a ViterbiSparse cannot be viewed as a dense array without a copy$"):
        sp.__array__(copy=False)
    np.testing.assert_array_equal(sp.__array__(np.float64, copy=True), want.astype(np.float64))


@pytest.fixture
def read_index():
    pytest.importorskip("torch")
    from vitrust.torch._load import _read_index

    return _read_index


@pytest.mark.parametrize("doc", [[1, 2], {"weight_map": 5}, {"weight_map": {"a": 5}}, {"weight_map": {"a": ["x"]}},
                                 {"nothing": {}}, "text"])
def test_index_without_a_weight_map_of_strings(tmp_path, read_index, doc):
    p = tmp_path / "model.safetensors.index.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"no weight_map mapping tensor names to shard files$"):
        read_index(p)


@pytest.mark.parametrize("shard", ["..", "sub/x.safetensors", "/abs.safetensors", "."])
def test_index_shards_must_be_file_names(tmp_path, read_index, shard):
    p = tmp_path / "model.safetensors.index.json"
    p.write_text(json.dumps({"weight_map": {"a": shard}}))
    with pytest.raises(ValueError, match="is not a file name in the index's directory"):
        read_index(p)


def test_index_groups_names_by_shard_in_order(tmp_path, read_index):
    p = tmp_path / "model.safetensors.index.json"
    p.write_text(json.dumps({"weight_map": {"b.weight": "2.safetensors", "a.weight": "1.safetensors",
                                            "c.weight": "2.safetensors"}}), encoding="utf-8")
    got = read_index(p)
    assert [f for f, _ in got] == [tmp_path / "2.safetensors", tmp_path / "1.safetensors"]
    assert got[0][1] == {"b.weight", "c.weight"} and got[1][1] == {"a.weight"}
    p.write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match="not a readable index JSON"):
        read_index(p)


def test_shard_names():
    from vitrust._layout import shard_names

    assert shard_names("model", 1) == ["model.safetensors"]
    assert shard_names("model", 2) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert shard_names("m", 3)[2] == "m-00003-of-00003.safetensors"


@pytest.mark.parametrize("sizes, limit, groups", [
    ([5, 5, 5], 10, [0, 0, 1]), ([10, 1], 10, [0, 1]), ([3, 3], 3, [0, 1]), ([12], 10, [0]), ([12, 1], 10, [0, 1]),
    ([5, 5], 10, [0, 0]), ([5, 5, 9, 1], 10, [0, 0, 1, 1]), ([0, 3], 3, [0, 0]), ([], 10, []),
])
def test_split_sizes_greedy_groups(sizes, limit, groups):
    from vitrust._layout import split_sizes

    assert split_sizes(sizes, limit) == groups


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_share_above_counts_every_chunk_strictly(monkeypatch, chunk):
    from vitrust import _prune

    monkeypatch.setattr(_prune, "_CHUNK", chunk)
    x = RNG.standard_normal(50).astype(np.float32)
    x[0] = 3.0  # the first element counts
    x[1] = 0.5  # a tie does not
    for lam in (0.5, 1.0, 2.5):
        assert _prune._share_above(x, "abs", lam) == np.count_nonzero(np.abs(x) > lam) / x.size
    assert _prune._share_above(x, "square", 0.25) == np.count_nonzero(x.astype(np.float64) ** 2 > 0.25) / x.size


def test_json_summary_of_a_dry_run(tmp_path, capsys):
    from safetensors.numpy import save_file as st_save

    from vitrust._cli import main

    src = tmp_path / "m.safetensors"
    tensors = {"a.weight": RNG.standard_normal((40, 40)).astype(np.float32),
               "b.weight": RNG.standard_normal((50, 30)).astype(np.float32),
               "c.bias": RNG.standard_normal(40).astype(np.float32)}
    st_save(tensors, str(src))
    out = tmp_path / "o.safetensors"
    assert main(["prune", str(src), "-o", str(out), "--rate", "0.5", "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["input"] == str(src) and doc["output"] == str(out)
    assert doc["dry_run"] is True and doc["rate_target"] == 0.5
    assert doc["pruned"] == 2 and doc["passed_through"] == 1
    assert doc["weights"] == 40 * 40 + 50 * 30
    assert doc["bytes_in"] == src.stat().st_size
    assert [(t["name"], t["shape"], t["dtype"]) for t in doc["tensors"]] == [("a.weight", [40, 40], "F32"),
                                                                             ("b.weight", [50, 30], "F32")]
    for t in doc["tensors"]:
        assert t["bytes_before"] == np.prod(t["shape"]) * 4
    assert set(doc) >= {"rate", "lam", "passes", "files", "bytes_out", "seconds", "search_seconds",
                        "weights_per_second"}
    assert doc["lam"] is None
    assert doc["weights_per_second"] is None or doc["weights_per_second"] == pytest.approx(
        doc["weights"] / doc["seconds"])


def test_array_protocol_called_with_a_dtype():
    w = RNG.standard_normal((8, 30)).astype(np.float32)
    sp = vitrust.prune(w, 0.5)
    want = np.where(sp.mask().reshape(w.shape), w, 0)
    for dt in (np.float16, np.float64):
        a = sp.__array__(dt)
        assert a.dtype == dt
        np.testing.assert_array_equal(a, want.astype(dt))


def test_repr_names_the_comparator():
    sp = vitrust.prune(RNG.standard_normal((8, 30)).astype(np.float32), 0.5)
    c = sp.config
    assert f"comparator={c.threshold}/{2 ** c.comparator_bits})" in repr(sp)


def test_constructor_names_bad_values():
    sp = vitrust.prune(RNG.standard_normal((8, 30)).astype(np.float32), 0.5)
    with pytest.raises(TypeError, match="^values: "):
        vitrust.ViterbiSparse(sp.shape, sp.config, sp.block_steps, sp.index, np.array(["a"] * sp.nnz), sp.lam)


def test_astype_overflow_is_refused_without_a_numpy_warning():
    import warnings

    w = np.full((4, 40), 1e6, dtype=np.float32) * RNG.uniform(1, 2, (4, 40)).astype(np.float32)
    sp = vitrust.prune(w, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="overflows float16"):
            sp.astype(np.float16)


def test_to_scipy_index_types_and_missing_scipy(monkeypatch):
    import sys

    pytest.importorskip("scipy")
    sp = vitrust.prune(RNG.standard_normal((8, 30)).astype(np.float32), 0.5)
    m = sp.to_scipy()
    assert m.indices.dtype == np.int32 and m.indptr.dtype == np.int32
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    with pytest.raises(ImportError, match=r"^ViterbiSparse\.to_scipy\(\) needs scipy: pip install scipy$"):
        sp.to_scipy()


def test_dask_path_with_a_single_file(tmp_path, monkeypatch):
    from safetensors.numpy import save_file as st_save

    from test_mutants_client import InlineClient

    monkeypatch.setattr(pytest.importorskip("distributed"), "as_completed", lambda fs: iter(list(fs)))
    src = tmp_path / "one.safetensors"
    st_save({"a.weight": RNG.standard_normal((40, 40)).astype(np.float32)}, str(src))
    local = vitrust.prune_checkpoint(src, tmp_path / "l.safetensors", 0.5, min_size=10)
    res = vitrust.prune_checkpoint(src, tmp_path / "c.safetensors", 0.5, min_size=10, client=InlineClient())
    assert (tmp_path / "l.safetensors").read_bytes() == (tmp_path / "c.safetensors").read_bytes()
    assert [t.nnz for t in res.tensors] == [t.nnz for t in local.tensors]


def test_info_header_and_json_tensor_fields(tmp_path, capsys):
    from safetensors.numpy import save_file as st_save

    from vitrust._cli import main

    src = tmp_path / "m.safetensors"
    st_save({"a.weight": RNG.standard_normal((40, 40)).astype(np.float32)}, str(src))
    out = tmp_path / "o.safetensors"
    assert main(["prune", str(src), "-o", str(out), "--rate", "0.5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (t,) = doc["tensors"]
    loaded = vitrust.load_file(out)["a.weight"]
    assert set(t) == {"name", "shape", "dtype", "rate", "nnz", "bits_per_weight", "bytes_before", "bytes_after"}
    assert t["nnz"] == loaded.nnz and t["bits_per_weight"] == pytest.approx(loaded.bits_per_weight)
    assert t["rate"] == pytest.approx(1 - loaded.nnz / 1600)
    assert 0 < t["bytes_after"] < t["bytes_before"] == 1600 * 4
    assert doc["seconds"] > 0 and doc["weights_per_second"] == pytest.approx(1600 / doc["seconds"])
    assert main(["info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["---", "bits", "per", "weight:", "index,", "index", "+", "values", "---"]
    assert lines[2].split() == ["tensor", "shape", "dtype", "rate", "index", "total", "csr32", "bmask", "deepc",
                                "bytes"]
