"""One λ across tensors: ``vitrust._calibrate.calibrate`` and ``vitrust.torch.prune_model``'s global search."""

import copy
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the torch extra; the test extra alone skips these

from torch.nn.utils import prune

import vitrust
import vitrust.torch as vt
import vitrust.torch._pruning
from vitrust import _calibrate


def families(seed=0, k=1):
    """Tensors of different scales and structures (as a model's layers differ); ``k`` times as many rows."""
    rng = np.random.default_rng(seed)
    prof = np.full(64, 0.006)
    prof[24:40] = 0.3
    rows = rng.lognormal(0, 1, size=(300 * k, 1))
    block = np.zeros((256 * k, 512))
    block[: 64 * k, :128] = 1.0
    return [
        rng.standard_normal((400 * k, 300)),                          # Gaussian
        3.0 * rng.laplace(size=(200 * k, 500)),                       # Laplacian, larger
        rng.standard_normal((300 * k, 400)) * rows,                   # row-scaled
        (rng.standard_normal((256 * k, 16, 64)) * prof),              # periodic: 16 of 64 taps carry signal
        rng.standard_normal((256 * k, 512)) * (0.05 + block),         # block-sparse
        np.where(rng.random((300 * k, 300)) < 0.9, 0.0, rng.standard_normal((300 * k, 300))),  # mostly zero
        0.2 * rng.standard_normal((30, 30)),                          # small: searched whole
    ]


def searched(tensors, configs, block_steps=1024):
    """The real total kept at a λ: a plain search of every tensor."""
    def full(lam):
        return sum(vitrust.prune(w, lam=lam, config=c, block_steps=block_steps).nnz for w, c in zip(tensors, configs))
    return full


@pytest.mark.parametrize("rate", [0.5, 0.8, 0.9, 0.95])
def test_calibrate_hits_the_overall_rate_on_mixed_structured_tensors(rate, monkeypatch):
    monkeypatch.setattr(_calibrate, "MIN_PIECES", 8)  # one step in 16 sampled, as in a big model
    ws = [w.astype(np.float32) for w in families()]
    configs = [vt.layer_config(rate)] * len(ws)  # one VD for all: far from each tensor's own rate
    calls = []
    full = searched(ws, configs)
    n = sum(w.size for w in ws)
    cal = _calibrate.Calibrator([(w, c, 1024) for w, c in zip(ws, configs)])
    assert sum(p.whole for p in cal.parts) < len(ws) - 3  # most tensors are sampled, not searched whole
    lam = cal.solve((1 - rate) * n, full=lambda lam: calls.append(lam) or full(lam))
    assert lam in calls
    kept = full(lam)  # independent of the calibrator: plain searches at the λ it returned
    assert abs(1 - kept / n - rate) <= 0.002, (rate, 1 - kept / n)
    assert 0 <= lam <= max(float(np.abs(w).max()) for w in ws)
    assert cal.passes <= 5.0, cal.passes
    assert calibrate_rate(ws, configs, rate) == pytest.approx(lam)


@pytest.mark.parametrize("rate", [0.5, 0.9, 0.95])
def test_global_search_costs_at_most_three_passes(rate, monkeypatch):
    """With each tensor's comparator matched to its rate (as prune_model does), samples plus
    full passes cost at most three full passes, and the rate is within 0.2 points."""
    monkeypatch.setattr(_calibrate, "MIN_PIECES", 8)
    spent = []
    solve = _calibrate.Calibrator.solve

    def recording(self, *a, **k):
        lam = solve(self, *a, **k)
        if k.get("full") is not None:
            spent.append(self.passes)
        return lam

    monkeypatch.setattr(_calibrate.Calibrator, "solve", recording)
    layers = [(torch.from_numpy(w.astype(np.float32)), None) for w in families(seed=2, k=4)]
    layers[0] = (layers[0][0], torch.ones(layers[0][0].shape))  # a layer pruned before (with nothing pruned)
    lam, found = vt.global_search(layers, rate, {})
    n = sum(w.numel() for w, _ in layers)
    kept = sum(vitrust.prune(w.numpy(), lam=lam, config=sp.config, order=sp.order).nnz for (w, _), sp in zip(layers, found))
    assert kept == sum(sp.nnz for sp in found)  # the results are plain searches at λ
    assert abs(1 - kept / n - rate) <= 0.002
    assert spent[-1] <= 3.0, spent


def calibrate_rate(ws, configs, rate):
    return _calibrate.calibrate([(w, c, 1024) for w, c in zip(ws, configs)], rate, full=searched(ws, configs))


def test_calibrate_scores_kinds_and_a_kept_count():
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal((100, 300)), 2.0 * rng.standard_normal((200, 100))]
    configs = [vt.layer_config(0.7)] * 2
    n = sum(w.size for w in ws)
    for score in ("abs", "square"):
        lam = _calibrate.calibrate([(w, c, 512) for w, c in zip(ws, configs)], kept=0.3 * n, score=score)
        kept = sum(vitrust.prune(w, lam=lam, config=c, block_steps=512, score=score).nnz for w, c in zip(ws, configs))
        assert abs(kept / n - 0.3) < 0.01  # samples alone come close (small tensors are searched whole)
    raw = [np.abs(w).astype(np.float32) for w in ws]
    lam_raw = _calibrate.calibrate([(s, c, 512) for s, c in zip(raw, configs)], kept=0.3 * n, score="raw")
    assert lam_raw == pytest.approx(_calibrate.calibrate([(w, c, 512) for w, c in zip(ws, configs)], kept=0.3 * n),
                                    rel=1e-3)
    with pytest.raises(ValueError, match="exactly one"):
        _calibrate.calibrate([(ws[0], configs[0], 512)], 0.5, kept=10)
    with pytest.raises(ValueError, match="score"):
        _calibrate.calibrate([(ws[0], configs[0], 512)], 0.5, score="cube")
    with pytest.raises(TypeError, match="VDConfig"):
        _calibrate.calibrate([(ws[0], "vd", 512)], 0.5)


def test_tensors_added_one_by_one_calibrate_alike(tmp_path):
    """Streaming: pieces and subsamples are taken as each tensor comes (here from memory-mapped files)."""
    ws = [w.astype(np.float32) for w in families(seed=3)]
    configs = [vt.layer_config(0.8)] * len(ws)
    at_once = _calibrate.Calibrator([(w, c, 1024) for w, c in zip(ws, configs)], share=0.1)
    streamed = _calibrate.Calibrator(share=0.1)
    for i, (w, c) in enumerate(zip(ws, configs)):
        np.save(tmp_path / f"{i}.npy", w)
        streamed.add(np.load(tmp_path / f"{i}.npy", mmap_mode="r"), c, 1024)
    n = sum(w.size for w in ws)
    assert streamed.n == at_once.n == n
    assert streamed.solve(0.2 * n) == at_once.solve(0.2 * n)
    with pytest.raises(ValueError, match="share"):
        _calibrate.Calibrator(share=0.0)
    with pytest.raises(ValueError, match="no tensors"):
        _calibrate.Calibrator()


def test_calibrate_returns_the_closest_when_no_lambda_reaches_the_rate():
    ws = [np.full((100, 100), 0.5), np.full((50, 100), 2.0)]  # ties: the kept count jumps
    configs = [vt.layer_config(0.5)] * 2
    full = searched(ws, configs)
    tried = {}
    lam = _calibrate.calibrate([(w, c, 1024) for w, c in zip(ws, configs)], 0.5,
                            full=lambda lam: tried.setdefault(lam, full(lam)))
    n = 15000
    assert 0 <= lam <= 2.0
    assert abs(tried[lam] - 0.5 * n) == min(abs(k - 0.5 * n) for k in tried.values())


def cnn(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3),
        torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64 * 4, 300), torch.nn.ReLU(), torch.nn.Linear(300, 10))


def masks_of(model):
    return [m.weight_mask for _, m in vt.prunable_layers(model)]


def test_prune_model_global_matches_global_unstructured_counts_on_a_pruned_model():
    """Both count ``rate`` among the weights earlier masks kept."""
    ref, m = cnn(), cnn()
    for model in (ref, m):
        prune.global_unstructured([(x, "weight") for _, x in vt.prunable_layers(model)],
                                  pruning_method=prune.L1Unstructured, amount=0.5)
    prune.global_unstructured([(x, "weight") for _, x in vt.prunable_layers(ref)],
                              pruning_method=prune.L1Unstructured, amount=0.8)
    earlier = [x.clone() for x in masks_of(m)]
    out = vt.prune_model(m, 0.8)
    n = sum(x.numel() for x in masks_of(m))
    want = sum(int(x.sum()) for x in masks_of(ref))  # 1 - 0.5 * 0.2 pruned
    got = sum(int(x.sum()) for x in masks_of(m))
    assert abs(got - want) <= 0.002 * n, (got, want)
    assert len({sp.lam for sp in out.values()}) == 1
    for old, new in zip(earlier, masks_of(m)):
        assert not (new.bool() & ~old.bool()).any()  # ANDed with the earlier masks


def test_prune_model_global_searches_once_per_layer_at_the_final_lambda(monkeypatch):
    """The masks come from the calibration's own full passes: no extra search per layer."""
    fulls = []
    solve = _calibrate.Calibrator.solve

    def counting(self, kept, *, full=None, **k):
        wrapped = None if full is None else (lambda lam: fulls.append(lam) or full(lam))
        return solve(self, kept, full=wrapped, **k)

    def refuse(*a, **k):
        raise AssertionError("searched again outside the calibration")

    monkeypatch.setattr(_calibrate.Calibrator, "solve", counting)
    m = cnn()
    monkeypatch.setattr(vitrust.torch._pruning, "_prune", refuse)
    out = vt.prune_model(m, 0.9)
    rates = [1 - x.mean().item() for x in masks_of(m)]
    assert abs(1 - sum(x.sum().item() for x in masks_of(m)) / sum(x.numel() for x in masks_of(m)) - 0.9) <= 0.002
    assert len(set(round(r, 3) for r in rates)) > 1  # one λ, different rates per layer
    assert 1 <= len(fulls) <= 2 and next(iter(out.values())).lam in fulls


def test_prune_model_warns_when_no_lambda_reaches_the_rate():
    lin = torch.nn.Sequential(torch.nn.Linear(100, 100))
    with torch.no_grad():
        lin[0].weight.fill_(0.25)
    with pytest.warns(UserWarning, match="requested rate 50.00%"):
        vt.prune_model(lin, 0.5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "float32"])
@pytest.mark.parametrize("kind", ["abs", "square"])
def test_the_largest_score_matches_a_float64_reference(dtype, kind):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(getattr(ml_dtypes, dtype, None) or dtype)
    rng = np.random.default_rng(3)
    for scale in (1.0, 1e-3, 8.0):
        w = (rng.standard_normal(5001) * scale).astype(dt)
        w[rng.integers(0, w.size)] = -abs(w.astype(np.float64)).max() * 1.5  # the largest is negative
        ref = np.abs(w.astype(np.float64)).max()
        assert _calibrate._max_score(w, kind) == (ref * ref if kind == "square" else ref)


def test_a_small_layer_of_large_weights_is_pruned_like_magnitude_would():
    # LeNet-300-100's shape: the last layer is small and its weights are larger.
    # Magnitude pruning at one global threshold prunes about half of it; before
    # the comparator was matched to magnitude's density it was kept whole.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 300), torch.nn.Linear(300, 100), torch.nn.Linear(100, 10))
    with torch.no_grad():
        for layer, std in zip(model, (0.03, 0.03, 0.08)):
            layer.weight.normal_(0.0, std)
    ref = copy.deepcopy(model)
    prune.global_unstructured([(m, "weight") for m in ref], prune.L1Unstructured, amount=0.9)
    magnitude = 1.0 - float(ref[2].weight_mask.mean())
    vt.prune_model(model, 0.9)
    small = 1.0 - float((model[2].weight != 0).float().mean())
    assert magnitude > 0.3
    assert small > 0.5 * magnitude, (small, magnitude)
