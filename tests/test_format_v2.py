"""Format version 2 files (docs/format.md, "Thresholds per block", "Order",
"Versions"): tensors with per-block thresholds and/or order F, built directly
from random index words and thresholds, go through every path that writes or
reads a file (save_file/load_file, SafeOpen, ShardWriter, the checkpoint
pipeline, vitrust.torch export and load). Expected masks come from the NumPy
reference (``reference.expand_v2``), not from the core; damaged v2 fields
are refused with ``vitrust.FormatError``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file as st_load

import vitrust
from fuzzing import body, join, random_v2, same, set_body, split
from reference import expand_v2
from vitrust import _shard, _vitrust

CFG = vitrust.VDConfig(6, 1, 5, 3, 4, seed=3)
CASES = [("F", True), ("C", True), ("F", False), ("C", False)]


def _expected(sp: vitrust.ViterbiSparse):
    """The mask and dense tensor the reference gives for ``sp``'s index,
    thresholds, order and values (values in stream order)."""
    mask = expand_v2(sp.config, sp.index, sp.shape, sp.block_steps, sp.thresholds, sp.order)
    n = mask.size
    rows = sp.shape[0] if len(sp.shape) >= 2 else 1
    cols = n // rows
    p = np.arange(n)
    flat = p if sp.order == "C" else (p % rows) * cols + p // rows  # stream position -> flat C index
    kept = flat[mask.reshape(-1)[flat]]
    dense = np.zeros(n, dtype=sp.values.dtype)
    dense[kept] = sp.values
    return mask, dense.reshape(sp.shape)


def _check(got: vitrust.ViterbiSparse, want: vitrust.ViterbiSparse) -> None:
    assert got.order == want.order and got.shape == want.shape and got.config == want.config
    if want.thresholds is None:
        assert got.thresholds is None
    else:
        assert got.thresholds.dtype == np.uint8 and np.array_equal(got.thresholds, want.thresholds)
    mask, dense = _expected(want)
    np.testing.assert_array_equal(got.mask(), mask)
    np.testing.assert_array_equal(got.to_dense(), dense)
    assert got.values.tobytes() == want.values.tobytes()


def _version(path) -> int:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(json.loads(f.read(n))["__metadata__"]["vitrust"])["version"]


@pytest.fixture
def v2(tmp_path):
    rng = np.random.default_rng(7)
    return {"a": random_v2((12, 50), CFG, 16, rng), "bias": np.arange(5, dtype=np.float32)}


@pytest.mark.parametrize("order,thresholds", CASES)
def test_save_load_round_trip(tmp_path, order, thresholds):
    rng = np.random.default_rng(1)
    sp = random_v2((10, 37), CFG, 8, rng, order=order, thresholds=thresholds)
    path = tmp_path / "w.safetensors"
    vitrust.save_file({"w": sp}, path)
    got = vitrust.load_file(path)["w"]
    _check(got, sp)
    # Version 2 only for a file that needs it; version 1 readers keep the rest.
    assert _version(path) == (2 if thresholds or order == "F" else 1)
    raw = st_load(str(path))  # any safetensors reader sees the siblings
    assert ("w.vitrust.thresholds" in raw) == thresholds
    if thresholds:
        assert raw["w.vitrust.thresholds"].dtype == np.uint8
        assert raw["w.vitrust.thresholds"].shape == (_vitrust.layout_info(CFG, sp.size, 8)[0],)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        rec = json.loads(json.loads(f.read(n))["__metadata__"]["vitrust"])["sparse"]["w"]
    assert rec.get("order") == ("F" if order == "F" else None)  # written only when F


def test_index_bits_count_the_thresholds(tmp_path):
    sp = random_v2((10, 37), CFG, 8, np.random.default_rng(2))
    n_blocks, _, bits = _vitrust.layout_info(CFG, sp.size, 8)
    assert sp.index_bits == bits + n_blocks * CFG.comparator_bits
    row = sp.storage()["viterbi"]
    assert row["index_bits"] == sp.index_bits
    assert row["total_bytes"] == sp.index.nbytes + n_blocks + sp.values.nbytes
    # The models index the C-order mask whatever the stream's order.
    mask = sp.mask()
    assert sp.storage()["csr32"]["index_bits"] == vitrust.index_cost(mask, "csr32")
    assert sp.storage()["relative-4"]["index_bits"] == vitrust.index_cost(mask, "relative", bits=4)
    c = random_v2((10, 37), CFG, 8, np.random.default_rng(2), order="C")
    assert c.storage()["relative-4"]["index_bits"] == vitrust.index_cost(c.mask(), "relative", bits=4)


def test_a_mixed_file_is_version_2_and_its_v1_tensor_stays_v1(tmp_path, v2):
    w = vitrust.prune(np.random.default_rng(0).standard_normal((8, 40)).astype(np.float32), 0.7, block_steps=8, order="C")
    path = tmp_path / "m.safetensors"
    vitrust.save_file({**v2, "w": w}, path)
    assert _version(path) == 2
    got = vitrust.load_file(path)
    assert same(got, {**v2, "w": w})
    assert got["w"].thresholds is None and got["w"].order == "C"
    _check(got["a"], v2["a"])


def test_safe_open_hands_out_thresholds_and_order(tmp_path, v2):
    path = tmp_path / "m.safetensors"
    vitrust.save_file(v2, path)
    f = _vitrust.SafeOpen(str(path))
    assert f.keys() == ["a", "bias"]
    kind, _, shape, nbytes = f.info("a")
    sp = v2["a"]
    assert (kind, tuple(shape)) == ("sparse", sp.shape)
    assert nbytes == sp.index.nbytes + sp.values.nbytes + sp.thresholds.nbytes
    got = _shard.sparse_from(f.get("a"), "a", None)
    _check(got, sp)
    f.prefetch("a")
    f.release("a")


@pytest.mark.parametrize("order,thresholds", CASES)
def test_the_shard_writer_writes_v2_tensors(tmp_path, order, thresholds):
    sp = random_v2((9, 20), CFG, 4, np.random.default_rng(3), order=order, thresholds=thresholds)
    path = tmp_path / "s.safetensors"
    w = _vitrust.ShardWriter(str(path), {"k": "v"}, [("w", "F32", [9, 20], len(CFG.taps))])
    vals = sp.values.view(np.uint8)
    w.add_sparse("w", "F32", [9, 20], vals, sp.config, sp.block_steps, sp.lam, sp.index, sp.thresholds, sp.order)
    w.add_plain("b", "I32", [2], np.array([1, 2], np.int32).view(np.uint8))
    _, stored = w.finish()
    assert ("w.vitrust.thresholds" in stored) == thresholds
    assert _version(path) == (2 if thresholds or order == "F" else 1)
    got = vitrust.load_file(path)
    _check(got["w"], sp)
    assert vitrust.read_metadata(path) == {"k": "v"}


def test_the_checkpoint_pipeline_carries_v2_tensors_through(tmp_path, v2):
    from vitrust._checkpoint import prune_checkpoint

    src = tmp_path / "in.safetensors"
    dense = np.random.default_rng(4).standard_normal((32, 64)).astype(np.float32)
    vitrust.save_file({**v2, "dense": dense}, src)
    out = tmp_path / "out.safetensors"
    prune_checkpoint(src, out, 0.5, block_steps=16)
    got = vitrust.load_file(out)
    assert isinstance(got["dense"], vitrust.ViterbiSparse)  # pruned here, version 1 alone
    assert same({"a": got["a"], "bias": got["bias"]}, v2)  # already pruned: copied through as it was
    assert _version(out) == 2


def test_cli_info_shows_order_and_per_block_thresholds(tmp_path, v2, capsys):
    from vitrust._cli import main

    path = tmp_path / "m.safetensors"
    vitrust.save_file(v2, path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "a: order F, per-block thresholds" in out and "(3 bits a block)" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("a "))
    assert float(line.split()[4]) == pytest.approx(v2["a"].bits_per_weight, abs=1e-3)
    assert all(len(ln) <= 79 for ln in out.splitlines()[1:])


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
    order=st.sampled_from(["C", "F"]),
    thresholds=st.booleans(),
    nc=st.integers(1, 8),
    n_in=st.integers(1, 2),
    block_steps=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_v2_round_trip_property(tmp_path_factory, shape, order, thresholds, nc, n_in, block_steps, seed):
    rng = np.random.default_rng(seed)
    cfg = vitrust.VDConfig(5, n_in, 4, nc, max(1, 2**nc // 2), seed=seed)  # keeps about half
    sp = random_v2(shape, cfg, block_steps, rng, order=order, thresholds=thresholds)
    path = tmp_path_factory.mktemp("v2") / "p.safetensors"
    vitrust.save_file({"w": sp}, path)
    _check(vitrust.load_file(path)["w"], sp)
    _check(_shard.sparse_from(_vitrust.SafeOpen(str(path)).get("w"), "w", None), sp)


# -- damaged version 2 fields ----------------------------------------------------


def _edit(path, edit_header=None, edit_body=None, recheck=True):
    header, data = split(path.read_bytes())
    if edit_header is not None:
        data = edit_header(header, data)
    if edit_body is not None:
        b = body(header)
        edit_body(b)
        set_body(header, b, recheck)
    path.write_bytes(join(header, data))


def _set_thresholds(value, dtype=None):
    """A header edit that overwrites the thresholds' bytes (and their CRC)."""

    def edit(header, data):
        import zlib

        h = header["a.vitrust.thresholds"]
        lo, hi = h["data_offsets"]
        raw = bytearray(data)
        raw[lo:hi] = bytes([value]) * (hi - lo)
        if dtype is not None:
            h["dtype"] = dtype
        b = body(header)
        b["tensors"]["a.vitrust.thresholds"]["crc32"] = zlib.crc32(bytes(raw[lo:hi]))
        if dtype is not None:
            b["tensors"]["a.vitrust.thresholds"]["dtype"] = dtype
        set_body(header, b)
        return bytes(raw)

    return edit


def _resize_thresholds(delta):
    """Drops (or duplicates) the thresholds' last byte, every offset and record following."""

    def edit(header, data):
        import zlib

        h = header["a.vitrust.thresholds"]
        lo, hi = h["data_offsets"]
        t = data[lo:hi]
        t = t[:-1] if delta < 0 else t + t[-1:]
        for v in header.values():
            if isinstance(v, dict) and "data_offsets" in v and v["data_offsets"][0] >= hi:
                v["data_offsets"] = [o + delta for o in v["data_offsets"]]
        h["data_offsets"] = [lo, hi + delta]
        h["shape"] = [len(t)]
        b = body(header)
        b["tensors"]["a.vitrust.thresholds"].update(crc32=zlib.crc32(t), shape=[len(t)])
        set_body(header, b)
        return data[:lo] + t + data[hi:]

    return edit


def _drop_thresholds(header, data):
    """Removes the thresholds sibling (a shorter file: the order field stays)."""
    h = header.pop("a.vitrust.thresholds")
    lo, hi = h["data_offsets"]
    for v in header.values():
        if isinstance(v, dict) and "data_offsets" in v and v["data_offsets"][0] >= hi:
            v["data_offsets"] = [o - (hi - lo) for o in v["data_offsets"]]
    b = body(header)
    del b["tensors"]["a.vitrust.thresholds"]
    set_body(header, b)
    return data[:lo] + data[hi:]


DAMAGE = [
    (dict(edit_header=_set_thresholds(0)), r"thresholds\[0\] = 0"),
    (dict(edit_header=_set_thresholds(9)), r"thresholds\[0\] = 9: must be in 1..=8"),
    (dict(edit_header=_set_thresholds(1, dtype="I8")), "must be a 1-D U8 tensor"),
    (dict(edit_header=_resize_thresholds(-1)), "entries, but the layout has"),
    (dict(edit_header=_resize_thresholds(+1)), "entries, but the layout has"),
    (dict(edit_body=lambda b: b["sparse"]["a"].update(order="G")), "order = \"G\": must be"),
    (dict(edit_body=lambda b: b["sparse"]["a"].update(order=1)), "order"),
    (dict(edit_body=lambda b: b.update(version=1)), "version 1 file has no"),
    (dict(edit_header=_drop_thresholds, edit_body=lambda b: b.update(version=1)), "version 1 file has no \"order\""),
    (dict(edit_body=lambda b: b.update(version=4)), "unsupported vitrust format version 4"),
    (dict(edit_body=lambda b: b["sparse"].pop("a")), "belongs to no pruned tensor"),
    (dict(edit_body=lambda b: b["sparse"]["a"].update(nnz=b["sparse"]["a"]["nnz"] + 1)), "nnz"),
    (dict(edit_body=lambda b: b["sparse"]["a"].update(order="C"), recheck=False), "checksum mismatch"),
]


@pytest.mark.parametrize("edit,message", DAMAGE)
def test_damaged_v2_fields_are_refused(tmp_path, v2, edit, message):
    path = tmp_path / "m.safetensors"
    vitrust.save_file(v2, path)
    _edit(path, **edit)
    with pytest.raises(vitrust.FormatError, match=message):
        vitrust.load_file(path)
    with pytest.raises(vitrust.FormatError, match=message):
        _vitrust.SafeOpen(str(path))


def test_thresholds_that_change_the_kept_count_are_refused(tmp_path, v2):
    # Every threshold 8/8 keeps every weight: the stored values fall short.
    path = tmp_path / "m.safetensors"
    vitrust.save_file(v2, path)
    _edit(path, edit_header=_set_thresholds(8))
    with pytest.raises(vitrust.FormatError, match="values, but the index keeps"):
        vitrust.load_file(path)


def test_an_explicit_order_c_loads_as_written(tmp_path, v2):
    # "order" is written only for F, but a reader accepts "C" spelled out.
    path = tmp_path / "m.safetensors"
    v = {"a": random_v2((12, 50), CFG, 16, np.random.default_rng(7), order="C"), "bias": v2["bias"]}
    vitrust.save_file(v, path)
    _edit(path, edit_body=lambda b: b["sparse"]["a"].update(order="C"))
    assert same(vitrust.load_file(path), v)


def test_reserved_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        vitrust.save_file({"x.vitrust.thresholds": np.zeros(3, np.uint8)}, tmp_path / "r.safetensors")
    from safetensors.numpy import save_file as st_save

    st_save({"x.vitrust.thresholds": np.ones(3, np.uint8)}, str(tmp_path / "p.safetensors"))
    with pytest.raises(vitrust.FormatError, match="part of a pruned tensor"):
        vitrust.load_file(tmp_path / "p.safetensors")


@pytest.mark.parametrize("order,thresholds", [("F", True), ("C", True), ("F", False)])
def test_torch_export_and_load_carry_thresholds_and_order(tmp_path, order, thresholds):
    torch = pytest.importorskip("torch")
    import vitrust.torch as vt
    from vitrust.torch._pruning import _Searched

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(37, 10))
    sp = random_v2((10, 37), CFG, 8, np.random.default_rng(5), order=order, thresholds=thresholds)
    _Searched.apply(model[0], "weight", sp)  # a vitrust pruning whose search gave `sp`
    mask, _ = _expected(sp)
    np.testing.assert_array_equal(model[0].weight_mask.numpy() != 0, mask)
    path = tmp_path / "model.safetensors"
    written = vt.export(model, path)
    out = written["0.weight"]
    assert isinstance(out, vitrust.ViterbiSparse) and out.order == order
    assert (out.thresholds is None) == (not thresholds)
    dense = model[0].weight.detach().numpy()
    np.testing.assert_array_equal(out.to_dense(), dense)  # the current weights, in the stream's order
    got = vitrust.load_file(path)["0.weight"]
    np.testing.assert_array_equal(got.mask(), mask)
    np.testing.assert_array_equal(got.to_dense(), dense)

    fresh = torch.nn.Sequential(torch.nn.Linear(37, 10))
    vt.load(fresh, path)
    np.testing.assert_array_equal(fresh[0].weight.detach().numpy(), dense)
    np.testing.assert_array_equal(fresh[0].weight_mask.numpy() != 0, mask)
    np.testing.assert_array_equal(fresh[0].bias.detach().numpy(), model[0].bias.detach().numpy())


def test_cli_unpack_expands_v2_tensors(tmp_path, v2, capsys):
    from vitrust._cli import main

    path, out = tmp_path / "m.safetensors", tmp_path / "dense.safetensors"
    vitrust.save_file(v2, path)
    assert main(["unpack", str(path), "-o", str(out)]) == 0
    raw = st_load(str(out))  # an independent reader
    np.testing.assert_array_equal(raw["a"], _expected(v2["a"])[1])
    np.testing.assert_array_equal(raw["bias"], v2["bias"])
