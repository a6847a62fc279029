"""Bad input gives a ValueError or TypeError that names the problem."""

import numpy as np
import pytest

import vitrust

W = np.random.default_rng(0).standard_normal((20, 30)).astype(np.float32)


@pytest.mark.parametrize(
    "weights, exc, match",
    [
        (np.array([1.0, np.nan, 2.0]), ValueError, "finite"),
        (np.array([1.0, np.inf]), ValueError, "finite"),
        (np.array([1.0, -np.inf], dtype=np.float16), ValueError, "finite"),
        (np.zeros((0, 5)), ValueError, "empty"),
        (np.float32(3.0), ValueError, "0-d"),
        (np.array([1, 2, 3]), TypeError, "integer"),
        (np.array([1 + 2j]), TypeError, "complex"),
        (np.array(["a", "b"]), TypeError, "string"),
        (np.array([True, False]), TypeError, "bool"),
        ([[1.0, 2.0], [3.0]], TypeError, "weights"),
        (np.array([1.0], dtype=np.longdouble), TypeError, "float"),
    ],
)
def test_bad_weights(weights, exc, match):
    with pytest.raises(exc, match=match):
        vitrust.prune(weights, 0.5)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(rate=1.0), ValueError, "rate"),
        (dict(rate=-0.1), ValueError, "rate"),
        (dict(rate=float("nan")), ValueError, "rate"),
        (dict(rate="0.5"), TypeError, "rate"),
        (dict(), ValueError, "exactly one"),
        (dict(rate=0.5, lam=0.1), ValueError, "exactly one"),
        (dict(lam=float("inf")), ValueError, "lam"),
        (dict(rate=0.5, flip_flops=0), ValueError, "flip_flops"),
        (dict(rate=0.5, flip_flops=17), ValueError, "flip_flops"),
        (dict(rate=0.5, flip_flops=2, n_in=3), ValueError, "n_in"),
        (dict(rate=0.5, n_in=5), ValueError, "n_in"),
        (dict(rate=0.5, ratio=0), ValueError, "ratio"),
        (dict(rate=0.5, ratio=2.5), TypeError, "ratio"),
        (dict(rate=0.5, ratio=65), ValueError, "ratio"),
        (dict(rate=0.5, comparator_bits=9), ValueError, "comparator_bits"),
        (dict(rate=0.5, comparator_bits=3, threshold=9), ValueError, "threshold"),
        (dict(rate=0.5, threshold=2), ValueError, "threshold needs"),
        (dict(rate=0.5, block_steps=0), ValueError, "block_steps"),
        (dict(rate=0.5, score="cube"), ValueError, "score"),
        (dict(rate=0.5, scores=np.ones((30, 20))), ValueError, "shape"),
        (dict(rate=0.5, scores=-np.ones((20, 30))), ValueError, "non-negative"),
        (dict(rate=0.5, scores=np.full((20, 30), np.nan)), ValueError, "finite"),
        (dict(rate=0.5, threads=0), ValueError, "threads"),
        (dict(rate=0.5, config="10 flip-flops"), TypeError, "config"),
        (dict(rate=0.5, flip_flops=16, n_in=4, block_steps=1 << 20), ValueError, "search memory"),
        (dict(rate=0.5, flip_flops=10, max_memory=100_000), ValueError, "max_memory"),
        (dict(rate=0.5, max_memory=0), ValueError, "max_memory"),
    ],
)
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        vitrust.prune(W, **kwargs)


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 1, 5, 1, 1), "flip_flops"),
        ((17, 1, 5, 1, 1), "flip_flops"),
        ((4, 5, 5, 1, 1), "n_in"),
        ((2, 3, 5, 1, 1), "n_in"),
        ((4, 1, 0, 1, 1), "n_out"),
        ((4, 1, 5, 0, 1), "comparator_bits"),
        ((4, 1, 5, 2, 5), "threshold"),
        ((4, 1, 5, 2, 0), "threshold"),
        ((-1, 1, 5, 1, 1), "flip_flops"),
    ],
)
def test_bad_config(args, match):
    with pytest.raises(ValueError, match=match):
        vitrust.VDConfig(*args)


def test_bad_taps():
    with pytest.raises(ValueError, match="taps"):
        vitrust.VDConfig(2, 1, 1, 1, 1, taps=[8])
    with pytest.raises(ValueError, match="taps"):
        vitrust.VDConfig(2, 1, 1, 1, 1, taps=[0])
    with pytest.raises(ValueError, match="taps"):
        vitrust.VDConfig(2, 1, 1, 1, 1, taps=[1, 2])
    with pytest.raises(ValueError, match="taps"):
        vitrust.VDConfig(2, 1, 1, 1, 1, taps=[-3])


def test_bad_index():
    cfg = vitrust.VDConfig(4, 1, 5, 1, 1)
    with pytest.raises(ValueError, match="too short"):
        vitrust.expand(cfg, np.zeros(1, np.uint64), 10_000, 1024)
    with pytest.raises(ValueError, match="too long"):
        vitrust.expand(cfg, np.zeros(10, np.uint64), 10, 1024)
    with pytest.raises(TypeError, match="uint64"):
        vitrust.expand(cfg, np.zeros(2, np.float64), 10, 1024)
    with pytest.raises(ValueError, match="1-D"):
        vitrust.expand(cfg, np.zeros((2, 2), np.uint64), 10, 1024)
    with pytest.raises(ValueError, match="n_weights"):
        vitrust.expand(cfg, np.zeros(0, np.uint64), 0, 1024)
    with pytest.raises(TypeError, match="config"):
        vitrust.expand("cfg", np.zeros(1, np.uint64), 10, 1024)
