"""``vitrust.torch``: 0-d tensors (BatchNorm), checkpoint directories and ``from_pretrained``."""

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file as st_load

torch = pytest.importorskip("torch")  # the torch extra; the test extra alone skips these

from torch.nn.utils import prune

import vitrust
import vitrust.torch as vt


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10),
    )


def trained(model):
    """A few forward passes in train mode: running statistics and num_batches_tracked move."""
    model.train()
    with torch.no_grad():
        for i in range(3):
            model(torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(i)))
    return model.eval()


def test_batchnorm_model_exports_and_loads_with_0d_tensors(tmp_path):
    """Regression: load crashed on num_batches_tracked (0-d became shape (1,))."""
    m = trained(small_cnn())
    vt.prune_model(m, 0.7, global_rate=False)
    path = tmp_path / "cnn.safetensors"
    written = vt.export(m, path)
    assert written["1.num_batches_tracked"].shape == () and int(written["1.num_batches_tracked"]) == 3
    assert st_load(str(path))["1.num_batches_tracked"].shape == ()  # 0-d in the file too
    assert vitrust.load_file(path)["4.num_batches_tracked"].shape == ()

    fresh = small_cnn(seed=1)
    vt.load(fresh, path)
    want, got = m.state_dict(), fresh.state_dict()
    assert set(want) == set(got)
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        if k.endswith("_orig"):  # the file holds the pruned weights: compare them masked
            mask = k[: -len("_orig")] + "_mask"
            torch.testing.assert_close(got[k] * got[mask], want[k] * want[mask], rtol=0, atol=0)
        else:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fresh.eval()(x), m(x), rtol=0, atol=0)
    plain = small_cnn(seed=2)
    vt.load(plain, path, masks=False)
    assert plain.state_dict()["1.num_batches_tracked"].shape == ()
    torch.testing.assert_close(plain.eval()(x), m(x), rtol=0, atol=0)


def test_0d_arrays_round_trip_through_files_and_the_cli(tmp_path):
    from safetensors.torch import save_file

    from vitrust._cli import main

    tensors = {"step": np.array(7, dtype=np.int64), "scale": np.array(0.5, dtype=np.float32),
               "w": np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)}
    vitrust.save_file(tensors, tmp_path / "a.safetensors")
    back = vitrust.load_file(tmp_path / "a.safetensors")
    for k in ("step", "scale"):
        assert back[k].shape == () and back[k].dtype == tensors[k].dtype and back[k] == tensors[k]
    save_file({"n": torch.tensor(5), "w": torch.randn(64, 64)}, str(tmp_path / "t.safetensors"))
    args = ["prune", str(tmp_path / "t.safetensors"), "-o", str(tmp_path / "p.safetensors"), "--rate", "0.5",
            "--min-size", "16", "-q"]
    assert main(args) == 0
    out = st_load(str(tmp_path / "p.safetensors"))
    assert out["n"].shape == () and int(out["n"]) == 5


def test_to_torch_keeps_shape_dtype_and_bfloat16_bits():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for a in (np.array(3, np.int64), np.array(2.5, np.float16), np.arange(6.0).reshape(2, 3)[:, ::2],
              np.arange(4, dtype=">f4")):
        t = vt.to_torch(a)
        assert tuple(t.shape) == a.shape
        np.testing.assert_array_equal(t.numpy(), a)
    b = np.array([1.5, -2.0, 3e38], dtype=ml_dtypes.bfloat16)
    t = vt.to_torch(b)
    assert t.dtype == torch.bfloat16
    np.testing.assert_array_equal(t.view(torch.int16).numpy(), b.view(np.int16))
    zero_d = vt.to_numpy(torch.tensor(4))
    assert zero_d.shape == () and zero_d == 4


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple),
       dtype=st.sampled_from([torch.int64, torch.bool, torch.float16, torch.bfloat16, torch.float32, torch.float64]),
       seed=st.integers(0, 2**31 - 1))
def test_tensors_round_trip_through_numpy_bit_for_bit(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(shape, generator=g) * 100).to(dtype)
    a = vt.to_numpy(t)
    assert a.shape == tuple(shape)
    back = vt.to_torch(a).to(dtype)
    assert back.shape == t.shape and back.dtype == t.dtype
    assert torch.equal(back, t)


# A tiny Llama built from a config: no hub access.
def tiny_llama(seed=0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, vocab_size=100,
                                      max_position_embeddings=64, tie_word_embeddings=False)
    return transformers.LlamaForCausalLM(config).eval()


def prune_checkpoint(src, dst, rate=0.6):
    """Prunes every 2-D weight of each shard with vitrust, shard by shard, and
    rewrites the index naming the stored (sibling) tensors; other files copied."""
    dst.mkdir()
    index = json.loads((src / "model.safetensors.index.json").read_text())
    weight_map = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors = vitrust.load_file(src / shard)
        out = {}
        for name, a in tensors.items():
            if a.ndim == 2 and "embed" not in name:
                out[name] = vitrust.prune(a, rate)
                weight_map[f"{name}.vitrust.index"] = weight_map[f"{name}.vitrust.values"] = shard
            else:
                out[name] = a
                weight_map[name] = shard
        vitrust.save_file(out, dst / shard, {"format": "pt"})
    index["weight_map"] = weight_map
    (dst / "model.safetensors.index.json").write_text(json.dumps(index))
    for f in src.iterdir():
        if not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json":
            shutil.copy(f, dst / f.name)


def dense_reference(pruned_dir, seed=3):
    """The pruned model, dense: a fresh model given each shard's expanded tensors by hand."""
    ref = tiny_llama(seed)
    state = {}
    for shard in pruned_dir.glob("*.safetensors"):
        for name, t in vitrust.load_file(shard).items():
            state[name] = torch.from_numpy(np.array(t.to_dense() if isinstance(t, vitrust.ViterbiSparse) else t))
    ref.load_state_dict(state, strict=True)
    return ref


def test_sharded_checkpoint_directory_loads_with_from_pretrained(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_llama()
    model.save_pretrained(tmp_path / "dense", max_shard_size="50KB", safe_serialization=True)
    shards = list((tmp_path / "dense").glob("*.safetensors"))
    assert len(shards) > 3 and (tmp_path / "dense" / "model.safetensors.index.json").is_file()
    prune_checkpoint(tmp_path / "dense", tmp_path / "pruned")
    ref = dense_reference(tmp_path / "pruned")
    ids = torch.tensor([[1, 5, 9, 42, 7, 3]])

    got = vt.from_pretrained(transformers.LlamaForCausalLM, tmp_path / "pruned")
    assert not got.training and not prune.is_pruned(got)
    torch.testing.assert_close(got(ids).logits, ref(ids).logits, rtol=0, atol=0)
    # differs from the dense model: the pruned weights really were loaded
    assert not torch.allclose(got(ids).logits, model(ids).logits)
    auto = vt.from_pretrained(transformers.AutoModelForCausalLM, tmp_path / "pruned", masks=True)
    assert prune.is_pruned(auto)
    q = auto.model.layers[0].self_attn.q_proj
    assert abs(1 - q.weight_mask.mean().item() - 0.6) < 0.02
    torch.testing.assert_close(auto(ids).logits, ref(ids).logits, rtol=0, atol=0)
    # load() takes the directory or its index file, into an existing model
    for path in (tmp_path / "pruned", tmp_path / "pruned" / "model.safetensors.index.json"):
        into = tiny_llama(seed=4)
        vt.load(into, path, masks=False)
        torch.testing.assert_close(into(ids).logits, ref(ids).logits, rtol=0, atol=0)


def test_directory_with_one_model_safetensors_and_tied_weights(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_llama()
    model.config.tie_word_embeddings = True
    model = transformers.LlamaForCausalLM(model.config).eval()
    model.save_pretrained(tmp_path / "dense", safe_serialization=True)
    st = vitrust.load_file(tmp_path / "dense" / "model.safetensors")
    assert "lm_head.weight" not in st  # stored once, tied
    pruned = {k: vitrust.prune(a, 0.5) if a.ndim == 2 and "embed" not in k else a for k, a in st.items()}
    (tmp_path / "pruned").mkdir()
    vitrust.save_file(pruned, tmp_path / "pruned" / "model.safetensors")
    shutil.copy(tmp_path / "dense" / "config.json", tmp_path / "pruned" / "config.json")
    got = vt.from_pretrained(transformers.LlamaForCausalLM, tmp_path / "pruned")
    assert got.lm_head.weight is got.model.embed_tokens.weight
    want = {k: (t.to_dense() if isinstance(t, vitrust.ViterbiSparse) else t) for k, t in pruned.items()}
    for k, v in got.state_dict().items():
        key = "model.embed_tokens.weight" if k == "lm_head.weight" else k
        np.testing.assert_array_equal(v.numpy(), want[key], err_msg=k)


def test_checkpoint_errors_name_the_file(tmp_path):
    model = small_cnn()
    with pytest.raises(ValueError, match="without model.safetensors"):
        vt.load(model, tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match="index.json"):
        vt.load(model, tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"0.weight": "../x"}}))
    with pytest.raises(ValueError, match="not a file name"):
        vt.load(model, tmp_path)
    vt.export(model, tmp_path / "a.safetensors")
    wm = {k: "a.safetensors" for k in vt.state_tensors_names(model) if k != "8.bias"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    with pytest.raises(ValueError, match="missing: \\['8.bias'\\]"):
        vt.load(model, tmp_path)
    with pytest.raises(ValueError, match="other tensors than its index"):
        vt.load(model, tmp_path, strict=False)


def test_index_names_of_siblings_map_back():
    assert vt.checkpoint_files  # documented helper exists
    from vitrust.torch._load import plain_name

    assert plain_name("a.b.weight.vitrust.index") == "a.b.weight"
    assert plain_name("a.b.weight.vitrust.values") == "a.b.weight"
    assert plain_name("a.b.weight.vitrust.thresholds") == "a.b.weight"
    assert plain_name("a.vitrust_x.weight") == "a.vitrust_x.weight"
