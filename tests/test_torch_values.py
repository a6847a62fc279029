"""``vitrust.torch`` with encoded values: shared centroids trained as Deep
Compression does (each centroid's gradient the sum of its weights'), export
storing them exactly or encoding on request, and load decoding."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils import prune

import vitrust
import vitrust.torch as vt

pytestmark = pytest.mark.filterwarnings("ignore::vitrust.RateWarning")


def mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(60, 120), torch.nn.ReLU(), torch.nn.Linear(120, 10))
    return m.to(dtype)


def test_shared_centroids_are_the_quantized_weights():
    m = mlp()
    vt.prune_model(m, 0.8)
    expected = {}
    for i in (0, 2):
        sp = vt._sparse_of(m[i], "weight", vt.to_numpy((m[i].weight_orig * m[i].weight_mask).detach()))
        expected[i] = sp.quantize("codebook3").to_dense()
    assert vt.share_centroids(m, "codebook3") == ["0.weight", "2.weight"]
    names = dict(m.named_parameters())
    assert set(names) == {"0.bias", "0.weight_centroids", "2.bias", "2.weight_centroids"}
    for i in (0, 2):
        np.testing.assert_array_equal(m[i].weight.detach().numpy(), expected[i])
        assert m[i].weight_centroids.shape == (8,)


def test_each_centroid_gets_the_sum_of_its_weights_gradients():
    m = mlp()
    vt.prune_model(m, 0.7)
    vt.share_centroids(m, "codebook4")
    x = torch.randn(7, 60)
    out = m[0](x)  # the pre-hook forms weight before the call
    w = m[0].weight
    w.retain_grad()
    (out.pow(2).sum()).backward()
    codes, mask = m[0].weight_codes, m[0].weight_mask
    g = w.grad * mask
    want = torch.zeros(16).index_add_(0, codes.reshape(-1), g.reshape(-1))
    torch.testing.assert_close(m[0].weight_centroids.grad, want)


def test_fine_tuned_centroids_export_exactly_and_load_decoded(tmp_path):
    m = mlp()
    vt.prune_model(m, 0.8)
    vt.share_centroids(m, "codebook4")
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    x, y = torch.randn(32, 60), torch.randint(0, 10, (32,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    m(x)  # weight is formed in the forward pass, from the stepped centroids
    path = tmp_path / "m.safetensors"
    vt.export(m, path)
    got = vitrust.load_file(path)
    for i in (0, 2):
        sp = got[f"{i}.weight"]
        assert sp.encoding == "codebook4"
        np.testing.assert_array_equal(np.sort(m[i].weight_centroids.detach().numpy()), sp.codebook)
        np.testing.assert_array_equal(sp.to_dense(), m[i].weight.detach().numpy())
    fresh = mlp(seed=1)
    vt.load(fresh, path)
    torch.testing.assert_close(fresh(x), m(x), rtol=0, atol=0)
    # Another encoding on request re-encodes (int8 of 16 distinct values is near exact).
    vt.export(m, tmp_path / "i.safetensors", values="int8", group=64)
    assert vitrust.load_file(tmp_path / "i.safetensors")["0.weight"].encoding == "int8"


def test_export_encodes_plain_vitrust_pruning_on_request(tmp_path):
    m = mlp(torch.bfloat16)
    vt.prune_model(m, 0.9)
    vt.export(m, tmp_path / "b.safetensors", values="codebook5")
    got = vitrust.load_file(tmp_path / "b.safetensors")
    sp = got["0.weight"]
    assert sp.encoding == "codebook5" and sp.codebook.dtype.name == "bfloat16"
    assert np.array_equal(sp.mask(), m[0].weight_mask.float().numpy().astype(bool))
    with pytest.raises(ValueError, match="codebook"):
        vt.share_centroids(m, "int8")


def test_weights_another_mask_cut_into_are_not_shared():
    m = mlp()
    vt.prune_model(m, 0.6)
    prune.random_unstructured(m[0], "weight", amount=0.3)  # ANDs a second mask into layer 0
    assert vt.share_centroids(m, "codebook2") == ["2.weight"]
    assert hasattr(m[0], "weight_orig") and not hasattr(m[2], "weight_orig")
