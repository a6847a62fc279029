"""Integer metrics (docs/algorithm.md, "Integer metrics") on real layers:
within the objective's tolerance of the float32 search, most blocks on
integers, and the choice validated."""

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import vitrust
from vitrust import _vitrust

LAYERS = load_file(str(Path(__file__).parent / "data" / "real_layers.safetensors"))


@pytest.mark.parametrize("rate", [0.5, 0.9])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_integer_metrics_stay_within_tolerance_on_real_layers(name, rate):
    w = LAYERS[name].reshape(-1).astype(np.float32)
    sp = vitrust.prune(w, rate)
    cfg, bs, lam = sp.config, sp.block_steps, sp.lam
    auto = _vitrust.search(cfg, w, "abs", lam, bs)
    flt = _vitrust.search(cfg, w, "abs", lam, bs, metrics="float32")
    scale = float(np.abs(np.abs(w.astype(np.float64)) - lam).sum())
    # Each block within 1e-3 of its optimum, float32 within 1e-5 of it.
    assert flt[2] - 1e-3 * scale <= auto[2] <= flt[2] + 1e-5 * scale
    blocks, integer = _vitrust.integer_blocks(cfg, w, "abs", lam, bs)
    assert blocks == -(-w.size // (cfg.n_out * bs))
    assert 0 <= integer <= blocks


def test_most_real_blocks_run_on_integers():
    blocks = integer = 0
    for w in LAYERS.values():
        w = w.reshape(-1).astype(np.float32)
        for rate in (0.5, 0.9):
            sp = vitrust.prune(w, rate)
            b, i = _vitrust.integer_blocks(sp.config, w, "abs", sp.lam, sp.block_steps)
            blocks, integer = blocks + b, integer + i
    assert integer >= 0.8 * blocks, (integer, blocks)


def test_float32_metrics_give_the_float_search_and_bad_names_are_refused():
    w = np.random.default_rng(0).standard_normal(40_000).astype(np.float32)
    cfg = vitrust.VDConfig(10, 1, 5, 5, 3)
    a = _vitrust.search(cfg, w, "abs", 0.8, 256, metrics="float32")
    b = _vitrust.search(cfg, w, "abs", 0.8, 256, metrics="float32", simd="portable")
    assert np.array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="metrics"):
        _vitrust.search(cfg, w, "abs", 0.8, 256, metrics="int8")
    with pytest.raises(ValueError, match="lam"):
        _vitrust.integer_blocks(cfg, w, "abs", float("nan"), 256)
