"""``vitrust.torch``: the pruning method, model-wide pruning, export and loading."""

import multiprocessing as mp

import numpy as np
import pytest
from safetensors.numpy import load_file as st_load

torch = pytest.importorskip("torch")  # the torch extra; the test extra alone skips these

from torch.nn.utils import prune

import vitrust
import vitrust.torch as vt


def mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(
        torch.nn.Linear(60, 120), torch.nn.ReLU(), torch.nn.Linear(120, 80), torch.nn.ReLU(), torch.nn.Linear(80, 10)
    )
    with torch.no_grad():
        m[2].weight.mul_(3.0)  # layers of different scale: global pruning must treat them differently
    return m.to(dtype)


def test_viterbi_unstructured_mirrors_l1_unstructured():
    lin = mlp()[0]
    w0 = lin.weight.detach().clone()
    vt.viterbi_unstructured(lin, "weight", amount=0.8)
    assert hasattr(lin, "weight_orig") and hasattr(lin, "weight_mask")
    assert "weight_orig" in dict(lin.named_parameters()) and "weight_mask" in dict(lin.named_buffers())
    assert prune.is_pruned(lin) and len(lin._forward_pre_hooks) == 1
    torch.testing.assert_close(lin.weight_orig.detach(), w0, rtol=0, atol=0)
    mask = lin.weight_mask
    assert abs(1 - mask.mean().item() - 0.8) < 0.01
    # the mask is the one vitrust.prune finds on |w|
    ref = vitrust.prune(w0.numpy(), 0.8)
    np.testing.assert_array_equal(mask.numpy().astype(bool), ref.mask())
    x = torch.randn(5, 60)
    torch.testing.assert_close(lin(x), x @ (w0 * mask).T + lin.bias)
    prune.remove(lin, "weight")
    assert not prune.is_pruned(lin) and "weight" in dict(lin.named_parameters())
    torch.testing.assert_close(lin.weight.detach(), w0 * mask)


def test_amount_as_a_count_and_the_edges():
    lin = mlp()[2]
    vt.viterbi_unstructured(lin, "weight", amount=4800)  # half of 120*80
    assert abs(lin.weight_mask.sum().item() - 4800) < 0.01 * 9600
    lin2 = mlp()[2]
    vt.viterbi_unstructured(lin2, "weight", amount=0.0)
    assert lin2.weight_mask.all()
    vt.viterbi_unstructured(lin2, "weight", amount=1.0)
    assert not lin2.weight_mask.any()
    with pytest.raises(ValueError):
        vt.viterbi_unstructured(mlp()[0], "weight", amount=1.5)
    with pytest.raises(TypeError):
        vt.viterbi_unstructured(mlp()[0], "weight", amount=0.5, colour="red")


def test_second_pruning_sees_the_full_tensor_and_ands_with_the_mask():
    lin = mlp()[0]
    w0 = lin.weight.detach().clone()
    prune.l1_unstructured(lin, "weight", amount=0.3)
    first = lin.weight_mask.clone()
    vt.viterbi_unstructured(lin, "weight", amount=0.8)
    method = vt._method(lin, "weight")
    vd_mask = torch.from_numpy(method.sparse.mask()).float()
    torch.testing.assert_close(lin.weight_mask, first * vd_mask)  # AND with the earlier mask
    assert vd_mask.numel() == w0.numel()  # "global": the whole tensor was searched
    # weights the first mask dropped scored 0, so the search avoided them
    assert (vd_mask * (1 - first)).sum() < 0.02 * w0.numel()
    assert abs(1 - lin.weight_mask.mean().item() - (1 - 0.7 * 0.2)) <= 0.002  # amount counts the remaining weights
    torch.testing.assert_close(lin.weight, w0 * lin.weight_mask)
    prune.remove(lin, "weight")


@pytest.mark.parametrize("first, second", [(0.9, 0.5), (0.5, 0.8), (0.3, 0.95), (0.6, 7000), (0.9, 3000), (20000, 0.5)])
def test_amount_is_a_share_of_the_remaining_weights_as_in_torch(first, second):
    """Regression: ``amount=0.5`` on a tensor pruned to 90 % left 90.2 % (it counted the whole tensor)."""
    def layer():
        torch.manual_seed(5)
        return torch.nn.Linear(200, 300)  # 60000 weights

    ref, lin = layer(), layer()
    prune.l1_unstructured(ref, "weight", amount=first)
    prune.l1_unstructured(lin, "weight", amount=first)
    prune.l1_unstructured(ref, "weight", amount=second)
    vt.viterbi_unstructured(lin, "weight", amount=second)
    n = lin.weight.numel()
    want = int(ref.weight_mask.sum())  # torch's count: 1 - (1 - old) * (1 - amount) pruned, or old + an int
    assert abs(int(lin.weight_mask.sum()) - want) <= 0.002 * n, (int(lin.weight_mask.sum()), want)
    first_mask = layer()
    prune.l1_unstructured(first_mask, "weight", amount=first)
    assert not (lin.weight_mask.bool() & ~first_mask.weight_mask.bool()).any()  # ANDed with the earlier mask


def test_importance_scores_replace_magnitude():
    lin = mlp()[0]
    scores = torch.rand_like(lin.weight)
    vt.viterbi_unstructured(lin, "weight", amount=0.7, importance_scores=scores)
    ref = vitrust.prune(scores.numpy(), 0.7)
    np.testing.assert_array_equal(lin.weight_mask.numpy().astype(bool), ref.mask())


def test_prune_model_global_rate_uses_one_lambda():
    m = mlp()
    out = vt.prune_model(m, 0.85)
    assert set(out) == {"0.weight", "2.weight", "4.weight"}
    lams = {sp.lam for sp in out.values()}
    assert len(lams) == 1  # one multiplier for all layers
    masks = [m[i].weight_mask for i in (0, 2, 4)]
    total = sum(x.numel() for x in masks)
    kept = sum(x.sum().item() for x in masks)
    assert abs(1 - kept / total - 0.85) <= 0.0021
    # the layer scaled up keeps more than the others: the rate is global, not per layer
    rates = [1 - x.mean().item() for x in masks]
    assert rates[1] < rates[0] - 0.1
    for i in (0, 2, 4):  # the returned sparse holds the masked weights on the layer's mask
        sp = out[f"{i}.weight"]
        np.testing.assert_array_equal(sp.mask(), m[i].weight_mask.numpy().astype(bool))
        np.testing.assert_array_equal(sp.to_dense(), m[i].weight.detach().numpy())


def test_prune_model_per_layer_and_ignore():
    m = mlp()
    out = vt.prune_model(m, 0.6, per_layer={"4": 0.3}, ignore=("0",), global_rate=False)
    assert set(out) == {"2.weight", "4.weight"} and not prune.is_pruned(m[0])
    assert abs(1 - m[2].weight_mask.mean().item() - 0.6) < 0.01
    assert abs(1 - m[4].weight_mask.mean().item() - 0.3) < 0.02
    m2 = mlp()
    vt.prune_model(m2, 0.6, ignore=(torch.nn.Linear,))
    assert not any(prune.is_pruned(x) for x in m2)
    with pytest.raises(ValueError, match="no prunable layer"):
        vt.prune_model(mlp(), 0.5, per_layer={"nope": 0.5})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_export_and_load_round_trip(tmp_path, dtype):
    m = mlp(dtype)
    vt.prune_model(m, 0.9)
    with torch.no_grad():  # fine-tuning after pruning changes the kept weights: export takes the current ones
        m[0].weight_orig.add_(0.01)
    path = tmp_path / "model.safetensors"
    written = vt.export(m, path)
    assert set(written) == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"}
    assert all(isinstance(written[f"{i}.weight"], vitrust.ViterbiSparse) for i in (0, 2, 4))
    raw = st_load(str(path))  # any safetensors reader opens it
    assert "0.weight.vitrust.index" in raw and "0.bias" in raw
    dense_bytes = sum(p.numel() * p.element_size() for p in mlp(dtype).parameters())
    assert path.stat().st_size < 0.5 * dense_bytes

    fresh = mlp(dtype, seed=1)
    vt.load(fresh, path)
    x = torch.randn(4, 60).to(dtype)
    torch.testing.assert_close(fresh(x), m(x), rtol=0, atol=0)
    for i in (0, 2, 4):
        assert fresh[i].weight.dtype == dtype
        torch.testing.assert_close(fresh[i].weight_mask, m[i].weight_mask)  # masks attached for fine-tuning
    # loading into an already pruned model, and without masks
    vt.load(m, path)
    plain = mlp(dtype, seed=2)
    vt.load(plain, path, masks=False)
    assert not prune.is_pruned(plain)
    torch.testing.assert_close(plain(x), m(x), rtol=0, atol=0)


def test_export_after_an_extra_mask_stays_exact(tmp_path):
    m = mlp()
    vt.prune_model(m, 0.7, global_rate=False)
    prune.l1_unstructured(m[2], "weight", amount=0.5)  # ANDs another mask in: not VD-reachable any more
    written = vt.export(m, tmp_path / "m.safetensors")
    assert isinstance(written["2.weight"], vitrust.ViterbiSparse)
    np.testing.assert_array_equal(written["2.weight"].to_dense(), m[2].weight.detach().numpy())
    fresh = mlp(seed=3)
    vt.load(fresh, tmp_path / "m.safetensors", masks=False)
    torch.testing.assert_close(fresh[2].weight, m[2].weight, rtol=0, atol=0)


def test_load_refuses_a_mismatched_model(tmp_path):
    m = mlp()
    vt.prune_model(m, 0.5)
    vt.export(m, tmp_path / "m.safetensors")
    other = torch.nn.Sequential(torch.nn.Linear(60, 120))
    with pytest.raises(ValueError, match="does not match"):
        vt.load(other, tmp_path / "m.safetensors")
    wrong = torch.nn.Sequential(torch.nn.Linear(60, 121), torch.nn.ReLU(), torch.nn.Linear(121, 80), torch.nn.ReLU(),
                                torch.nn.Linear(80, 10))
    with pytest.raises(ValueError, match="shape"):
        vt.load(wrong, tmp_path / "m.safetensors")


def test_cli_output_loads_into_the_model(tmp_path):
    from safetensors.torch import save_file

    from vitrust._cli import main

    m = mlp()
    save_file(m.state_dict(), str(tmp_path / "ckpt.safetensors"))
    args = ["prune", str(tmp_path / "ckpt.safetensors"), "-o", str(tmp_path / "p.safetensors"), "--rate", "0.8", "-q"]
    assert main(args) == 0
    vt.load(m, tmp_path / "p.safetensors")
    assert prune.is_pruned(m[0]) and prune.is_pruned(m[2])
    assert not hasattr(m[4], "weight_mask")  # 800 weights: under the CLI's default --min-size
    assert abs(1 - m[2].weight_mask.mean().item() - 0.8) < 0.01


class PruningDataset(torch.utils.data.Dataset):
    """Each item prunes a small tensor with vitrust inside the worker."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        w = np.random.default_rng(i).standard_normal((50, 80)).astype(np.float32)
        sp = vitrust.prune(w, 0.9)
        return torch.from_numpy(sp.to_dense())


def test_dataloader_workers_use_vitrust_after_the_parent_did():
    vitrust.prune(np.random.default_rng(0).standard_normal((400, 400)), 0.9)  # parent pool running
    ctx = mp.get_context("fork")
    loader = torch.utils.data.DataLoader(PruningDataset(), batch_size=2, num_workers=2, multiprocessing_context=ctx,
                                         timeout=120)
    batches = list(loader)
    assert len(batches) == 3
    for b, batch in enumerate(batches):
        for j in range(2):
            want = PruningDataset()[2 * b + j]  # the same in the parent
            torch.testing.assert_close(batch[j], want, rtol=0, atol=0)


def test_import_vitrust_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, vitrust, vitrust._cli; assert 'torch' not in sys.modules; import vitrust.torch; " \
           "assert 'torch' in sys.modules; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_an_unreachable_amount_warns():
    # Tied weights: no lam prunes half of a constant layer; torch users are told too.
    layer = torch.nn.Linear(128, 128)
    with torch.no_grad():
        layer.weight.fill_(0.5)
    with pytest.warns(vitrust.RateWarning, match="0.5000 requested"):
        vt.viterbi_unstructured(layer, "weight", amount=0.5)
    model = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.Linear(128, 128))
    with torch.no_grad():
        for lin in model:
            lin.weight.fill_(0.5)
    with pytest.warns(vitrust.RateWarning, match="prune_model: requested rate 50.00%"):
        vt.prune_model(model, 0.5)
