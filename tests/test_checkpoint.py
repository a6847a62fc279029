"""``prune_checkpoint`` and the CLI on small synthetic checkpoints: every input
form, the mirrored layout, the index JSON, metadata, atomicity, bounded
memory, the global λ and rate maps."""

import json
import os
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file as st_save

import vitrust
from vitrust import _shard, _vitrust
from vitrust._checkpoint import prune_checkpoint
from vitrust._cli import main
from reference import kept_values

RNG = np.random.default_rng(11)
OTHER_FILES = {"config.json": b'{"hidden_size": 64}', "tokenizer.json": b'{"v": 1}',
               "generation_config.json": b"{}", "sub/notes.txt": b"kept"}


def _shards():
    """Two shards: bfloat16 and float32 weights, a bias, an integer table."""
    a = {f"layers.{i}.w": (RNG.standard_normal((96, 128)) * (i + 1)).astype(ml_dtypes.bfloat16) for i in range(3)}
    a["layers.0.b"] = RNG.standard_normal(96).astype(np.float32)
    b = {f"layers.{i}.w": RNG.standard_normal((128, 96)).astype(np.float32) for i in range(3, 5)}
    b["embed.ids"] = RNG.integers(0, 9, size=(40, 40)).astype(np.int64)
    return {"model-00001-of-00002.safetensors": a, "model-00002-of-00002.safetensors": b}


def make_checkpoint(root, shards=None):
    shards = shards or _shards()
    os.makedirs(root, exist_ok=True)
    wm = {}
    for fname, tensors in shards.items():
        st_save(tensors, os.path.join(root, fname), metadata={"format": "pt"})
        wm.update({k: fname for k in tensors})
    index = {"metadata": {"total_size": 1, "source": "test"}, "weight_map": wm}
    with open(os.path.join(root, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    for rel, data in OTHER_FILES.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    return {k: v for t in shards.values() for k, v in t.items()}


@pytest.fixture
def ckpt(tmp_path):
    root = tmp_path / "model"
    return root, make_checkpoint(str(root))


def _data_bytes(path):
    """Tensor bytes of a safetensors file, from its own header (independent of vitrust)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    return os.path.getsize(path) - 8 - n


def _check_output(out, original):
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    stored = {}
    for s in shards:
        with safe_open(str(out / s), "np") as f:  # an independent reader opens every shard
            assert f.metadata()["format"] == "pt"
            stored.update({k: s for k in f.keys()})
    assert index["weight_map"] == stored  # every stored tensor, siblings included
    assert index["metadata"] == {"source": "test", "total_size": sum(_data_bytes(out / s) for s in shards)}
    for rel, data in OTHER_FILES.items():
        assert (out / rel).read_bytes() == data
    loaded = {}
    for s in shards:
        loaded.update(vitrust.load_file(out / s))
    assert set(loaded) == set(original)
    for name, t in original.items():
        got = loaded[name]
        if isinstance(got, vitrust.ViterbiSparse):
            assert got.values.dtype == t.dtype  # bfloat16 values stay bfloat16
            np.testing.assert_array_equal(got.values, kept_values(t, got))
        else:
            assert got.dtype == t.dtype
            np.testing.assert_array_equal(got, t)
    return loaded


@pytest.mark.parametrize("form", ["dir", "index"])
def test_a_checkpoint_comes_out_mirrored(ckpt, tmp_path, form):
    root, original = ckpt
    src = root if form == "dir" else root / "model.safetensors.index.json"
    out = tmp_path / "out"
    res = prune_checkpoint(src, out, 0.6, min_size=1000)
    loaded = _check_output(out, original)
    pruned = {n for n, t in loaded.items() if isinstance(t, vitrust.ViterbiSparse)}
    assert pruned == {f"layers.{i}.w" for i in range(5)}
    assert all(abs(loaded[n].rate - 0.6) < 0.02 for n in pruned)
    assert [t.name for t in res.tensors] == sorted(pruned, key=lambda n: (n not in _shards()["model-00001-of-00002.safetensors"], n))
    assert not list(out.glob("**/*vitrust-tmp*"))


def test_a_file_gives_a_file_and_a_directory_of_one_file_a_directory(tmp_path):
    t = {"w": RNG.standard_normal((64, 80)).astype(np.float32), "b": np.arange(5, dtype=np.int32)}
    st_save(t, str(tmp_path / "m.safetensors"), metadata={"format": "pt", "note": "x"})
    prune_checkpoint(tmp_path / "m.safetensors", tmp_path / "o.safetensors", 0.5)
    with safe_open(str(tmp_path / "o.safetensors"), "np") as f:
        assert f.metadata()["note"] == "x" and "w.vitrust.index" in f.keys()
    d = tmp_path / "d"
    d.mkdir()
    os.replace(tmp_path / "m.safetensors", d / "model.safetensors")
    (d / "config.json").write_text("{}")
    prune_checkpoint(d, tmp_path / "dout", 0.5)
    assert sorted(os.listdir(tmp_path / "dout")) == ["config.json", "model.safetensors"]  # no index: none in the input
    assert (tmp_path / "dout" / "model.safetensors").read_bytes() == (tmp_path / "o.safetensors").read_bytes()


def test_resharding_by_size_writes_a_consistent_index(ckpt, tmp_path):
    root, original = ckpt
    out = tmp_path / "out"
    res = prune_checkpoint(root, out, 0.5, max_shard_size=40_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards == sorted(p.name for p in out.glob("*.safetensors"))
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == sum(_data_bytes(out / s) for s in shards)
    loaded = {}
    for s in shards:
        loaded.update(vitrust.load_file(out / s))
    assert set(loaded) == set(original) and res.files[-1] == "model.safetensors.index.json"


def test_a_failure_mid_run_leaves_no_index_and_no_partial_shard(ckpt, tmp_path, monkeypatch):
    root, _ = ckpt
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors.index.json").write_text("{}")  # an old run's index: must not survive
    calls = []
    real = _shard.prune

    def failing(w, *a, **kw):
        calls.append(1)
        if len(calls) == 4:  # in the second shard
            raise RuntimeError("injected failure")
        return real(w, *a, **kw)

    monkeypatch.setattr(_shard, "prune", failing)
    with pytest.raises(RuntimeError, match="injected"):
        prune_checkpoint(root, out, 0.5, force=True)
    names = sorted(os.listdir(out))
    assert "model.safetensors.index.json" not in names
    assert not [n for n in names if "vitrust-tmp" in n]
    assert "model-00002-of-00002.safetensors" not in names
    vitrust.load_file(out / "model-00001-of-00002.safetensors")  # what was finished is whole


def test_existing_output_needs_force_and_errors_name_the_file(ckpt, tmp_path):
    root, _ = ckpt
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        prune_checkpoint(root, out, 0.5)
    assert (out / "x").read_text() == "mine"
    shard = root / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(vitrust.FormatError, match="model-00002-of-00002.safetensors"):
        prune_checkpoint(root, tmp_path / "o2", 0.5)
    shard.unlink()
    with pytest.raises(ValueError, match="model-00002-of-00002.safetensors is missing"):
        prune_checkpoint(root, tmp_path / "o3", 0.5)
    with pytest.raises(TypeError, match="unknown option"):
        prune_checkpoint(root, tmp_path / "o4", 0.5, ratoi=4)


def test_dry_run_writes_nothing_and_predicts_the_size(ckpt, tmp_path):
    root, _ = ckpt
    plan = prune_checkpoint(root, tmp_path / "out", 0.7, dry_run=True)
    assert not (tmp_path / "out").exists() and len(plan.tensors) == 5
    res = prune_checkpoint(root, tmp_path / "out", 0.7)
    data = sum(_data_bytes(tmp_path / "out" / f) for f in res.files if f.endswith(".safetensors"))
    assert abs(plan.bytes_out - data) < 0.05 * data


def _count_search(monkeypatch):
    """Counts the weights every search call goes over."""
    seen = {"weights": 0, "rate_calls": 0}
    real_search, real_rate = _vitrust.search, _vitrust.search_rate

    def search(config, w, *a, **kw):
        seen["weights"] += np.asarray(w).size
        return real_search(config, w, *a, **kw)

    def search_rate(*a, **kw):
        seen["rate_calls"] += 1
        return real_rate(*a, **kw)

    monkeypatch.setattr(_vitrust, "search", search)
    monkeypatch.setattr(_vitrust, "search_rate", search_rate)
    return seen


def test_global_rate_is_met_within_0_2_points_in_at_most_3_passes(tmp_path, monkeypatch):
    # Layers of very different scales: one λ prunes the small ones much harder.
    shards = {f"model-0000{s + 1}-of-00002.safetensors":
              {f"l{s}.{i}": (RNG.standard_normal((512, 640)) * 0.5 ** i).astype(np.float32) for i in range(4)}
              for s in range(2)}
    original = make_checkpoint(str(tmp_path / "m"), shards)
    seen = _count_search(monkeypatch)
    res = prune_checkpoint(tmp_path / "m", tmp_path / "out", 0.7, global_rate=True)
    total = sum(t.size for t in original.values())
    kept = 0
    for f in res.files[:-1]:
        kept += sum(t.nnz for t in vitrust.load_file(tmp_path / "out" / f).values())
    assert abs(1 - kept / total - 0.7) <= 0.002
    assert seen["rate_calls"] == 0 and seen["weights"] <= 3 * total
    assert res.passes == pytest.approx(seen["weights"] / total)
    rates = {t.name: t.rate for t in res.tensors}
    assert rates["l0.3"] > rates["l0.0"] + 0.1  # one λ, not one rate per tensor
    lams = {vitrust.load_file(tmp_path / "out" / f)[n].lam for f in res.files[:-1] for n in ("l0.0", "l1.0")
            if n in vitrust.load_file(tmp_path / "out" / f)}
    assert lams == {res.lam}


def test_rate_map_overrides_per_tensor(ckpt, tmp_path):
    root, _ = ckpt
    res = prune_checkpoint(root, tmp_path / "out", 0.5, rate_map={"layers.[34].*": 0.9, "layers.0.*": 0.2})
    rates = {t.name: t.rate for t in res.tensors}
    for name, want in [("layers.0.w", 0.2), ("layers.1.w", 0.5), ("layers.3.w", 0.9), ("layers.4.w", 0.9)]:
        assert abs(rates[name] - want) < 0.02, name
    with pytest.raises(ValueError, match="rate_map"):
        prune_checkpoint(root, tmp_path / "o2", 0.5, rate_map={"*": 1.5})


def test_cli_on_a_directory_with_global_rate_map_and_json(ckpt, tmp_path, capsys):
    root, original = ckpt
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"layers.4.*": 0.3}))
    out = tmp_path / "out"
    code = main(["prune", str(root), "-o", str(out), "--rate", "0.6", "--global", "--rate-map", str(rates), "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["pruned"] == 5 and doc["passed_through"] == 2 and doc["lam"] is not None
    by_name = {t["name"]: t for t in doc["tensors"]}
    assert abs(by_name["layers.4.w"]["rate"] - 0.3) < 0.02
    _check_output(out, original)
    code = main(["info", str(out)])
    stdout, _ = capsys.readouterr()
    assert code == 0 and "in 2 files" in stdout and "needs vitrust" in stdout
    assert all(len(line) <= 79 for line in stdout.splitlines()[1:])
    code = main(["unpack", str(out), "-o", str(tmp_path / "dense")])
    assert code == 0
    dense = json.loads((tmp_path / "dense" / "model.safetensors.index.json").read_text())
    assert set(dense["weight_map"]) == set(original)
    with safe_open(str(tmp_path / "dense" / "model-00002-of-00002.safetensors"), "np") as f:
        assert f.get_tensor("embed.ids").dtype == np.int64


def test_cli_warns_when_nothing_matches_and_dry_run_writes_nothing(ckpt, tmp_path, capsys):
    root, _ = ckpt
    code = main(["prune", str(root), "-o", str(tmp_path / "o"), "--rate", "0.5", "--include", "nothing*", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0 and "no tensor matched" in err and "0 tensors pruned" not in out
    assert "dry run" in out and not (tmp_path / "o").exists()
    code = main(["prune", str(root), "-o", str(tmp_path / "o"), "--rate", "0.5", "--dry-run"])
    out, _ = capsys.readouterr()
    assert code == 0 and "5 tensors would be pruned" in out and "expected output" in out
    assert all(len(line) <= 79 for line in out.splitlines())


def test_memory_stays_bounded_by_the_largest_tensor(tmp_path):
    """Peak RSS over the interpreter's grows with the largest tensor, not the
    checkpoint: 52 tensors of 4 MB (208 MB, 20x the 2.5x bound) go through."""
    root = tmp_path / "big"
    shards = {}
    for s in range(4):
        t = {f"s{s}.keep{i}": RNG.standard_normal((1024, 1024), dtype=np.float32) for i in range(12)}
        t[f"s{s}.w"] = RNG.standard_normal((1024, 1024), dtype=np.float32)
        shards[f"model-{s + 1:05d}-of-00004.safetensors"] = t
    make_checkpoint(str(root), shards)
    del shards
    script = textwrap.dedent(f"""
        import resource, vitrust
        from vitrust._checkpoint import prune_checkpoint
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        prune_checkpoint({str(root)!r}, {str(tmp_path / 'out')!r}, 0.5, exclude=["*keep*"])
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    largest = 4 * 2**20
    assert int(r.stdout.split()[-1]) <= 2.5 * largest + 16 * 2**20
    assert len(list((tmp_path / "out").glob("*.safetensors"))) == 4


def test_an_output_inside_the_input_directory_is_not_copied_into_itself(ckpt):
    root, _ = ckpt
    prune_checkpoint(root, root / "pruned", 0.5)
    assert not (root / "pruned" / "pruned").exists()
    assert (root / "pruned" / "config.json").read_bytes() == OTHER_FILES["config.json"]


def test_bfloat16_and_float8_checkpoints_get_smaller(tmp_path):
    t = {f"l.{i}": RNG.standard_normal((256, 320)).astype(ml_dtypes.bfloat16) for i in range(4)}
    t["f8"] = RNG.standard_normal((256, 320)).astype(ml_dtypes.float8_e4m3fn)
    t["f8.kept"] = RNG.standard_normal((64,)).astype(ml_dtypes.float8_e5m2)
    st_save(t, str(tmp_path / "m.safetensors"))
    prune_checkpoint(tmp_path / "m.safetensors", tmp_path / "o.safetensors", 0.5)
    assert os.path.getsize(tmp_path / "o.safetensors") <= 0.55 * os.path.getsize(tmp_path / "m.safetensors")
    out = vitrust.load_file(tmp_path / "o.safetensors")
    for name, a in t.items():
        if a.ndim == 2:
            assert out[name].values.dtype == a.dtype
            np.testing.assert_array_equal(out[name].to_dense(), np.where(out[name].mask(), a, 0).astype(a.dtype))
        else:
            assert out[name].dtype == a.dtype and out[name].tobytes() == a.tobytes()
