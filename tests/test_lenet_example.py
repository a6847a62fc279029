"""examples/lenet_mnist.py --quick on a small synthetic MNIST written here (no network)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lenet_mnist.py"


def _example():
    spec = importlib.util.spec_from_file_location("lenet_mnist", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def _digits(n: int, rng) -> tuple:
    """Images whose label is which of ten bands is bright, plus noise: learnable in one epoch."""
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, 28, 28))
    for i, label in enumerate(y):
        x[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return x, y


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        x, y = _digits(n, rng)
        _write_idx(d / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(d / f"{prefix}-labels-idx1-ubyte", y)
    return d


def test_read_idx_round_trip(mnist_dir):
    mod = _example()
    x = mod.read_idx(mnist_dir / "train-images-idx3-ubyte")
    assert x.shape == (600, 28, 28) and x.dtype == np.uint8


def test_quick_run(mnist_dir, tmp_path, capsys):
    mod, out = _example(), tmp_path / "runs.json"
    mod.main(["--quick", "--data", str(mnist_dir), "--json", str(out)])
    printed = capsys.readouterr().out
    runs = json.loads(out.read_text())
    pruned = [r for r in runs if r["method"] != "dense"]
    # Both models, both scopes, one rate, three methods; plus a dense line per model.
    assert len(pruned) == 2 * 2 * 3 and len(runs) == len(pruned) + 2

    lines = [ln for ln in printed.splitlines() if ln.startswith("|")]
    assert lines[0] == mod.HEADER
    width = lines[0].count("|")
    assert set(lines[1]) == {"|", "-"} and lines[1].count("|") == width
    assert all(ln.count("|") == width for ln in lines[2:])
    assert len(lines) == 2 + len(runs)
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert cells[0] in mod.MODELS and "±" in cells[5]
        if cells[3] == "magnitude":
            assert cells[6] == "-" and all(float(c) > 0 for c in cells[7:10])
        elif cells[3].startswith("vitrust"):
            # vitrust's index is a fixed fraction of a bit per weight (1/5 at ratio 5).
            assert abs(float(cells[6]) - 0.2) < 0.01

    for r in pruned:
        assert r["masks_fixed"], r
        assert abs(r["achieved"] - r["rate"]) <= 0.002, r
        if r["scope"] == "per-layer":
            # vitrust's 0.2-point promise holds for layers of some size; on a
            # 1000-weight layer one VD step is 0.5 points, so those get 2 points.
            for name, got in r["layer_rates"].items():
                tol = 0.002 if r["layer_sizes"][name] >= 10000 else 0.02
                assert abs(got - r["rate"]) <= tol, (name, r)
        assert 0 <= r["accuracy"] <= 100
        bits = r["bits"]
        assert bits["csr32"] > bits["csr16"] > 0 and bits["relative5"] > 0


def test_fine_tuning_keeps_pruned_weights_zero(mnist_dir):
    """After fine-tuning, every weight the mask dropped is still exactly zero, the mask unchanged."""
    import torch

    mod = _example()
    data = mod.load(mnist_dir)
    torch.manual_seed(0)
    model = mod.LeNet300()
    mod.prune_with(model, "vitrust-default", 0.9, "global")
    before = mod.masks(model)
    start = {n: m.weight.detach().clone() for n, m in mod.layers(model)}
    mod.train(model, data, 1, 1e-2, 0)
    assert mod.still_pruned(model, before)
    for name, m in mod.layers(model):
        assert not torch.any(m.weight.detach()[~before[name]])
    # Fine-tuning moved the kept weights (the check above is not vacuous).
    assert all(not torch.equal(m.weight.detach(), start[n]) for n, m in mod.layers(model))


def test_existing_directory_is_used_without_download(mnist_dir, monkeypatch):
    mod = _example()

    def no_network(*a, **k):
        raise AssertionError("downloaded although the files were present")

    monkeypatch.setattr(mod.subprocess, "run", no_network)
    assert mod.fetch(mnist_dir) == mnist_dir


def test_quick_run_with_shared_centroids(mnist_dir, tmp_path, capsys):
    mod, out = _example(), tmp_path / "runs.json"
    mod.main(["--quick", "--data", str(mnist_dir), "--json", str(out), "--models", "lenet300", "--scopes", "global",
              "--methods", "magnitude", "vitrust-default", "--values", "codebook3", "--centroid-epochs", "1"])
    printed = capsys.readouterr().out
    runs = json.loads(out.read_text())
    (vit,) = [r for r in runs if r["method"] == "vitrust-default"]
    (mag,) = [r for r in runs if r["method"] == "magnitude"]
    assert "compression" not in mag  # only vitrust's masks have an index to store
    # The file holds 0.2 bit of index and 3 bits per kept weight plus float32 biases and the header.
    weights, kept = vit["weights"], vit["weights"] * (1 - vit["achieved"])
    assert vit["file_bytes"] > (0.2 * weights + 3 * kept) / 8
    assert vit["compression"] == pytest.approx(4 * (weights + 410) / vit["file_bytes"])
    assert 0 <= vit["accuracy_stored"] <= 100
    rows = [ln for ln in printed.splitlines() if ln.startswith("| lenet300 | global | 90.0% | vitrust-default | codebook3")]
    assert len(rows) == 1 and rows[0].rstrip().endswith(f"{vit['compression']:.1f}x |")
