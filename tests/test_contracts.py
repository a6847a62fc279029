"""Small promises of the Python layer, each checked against an independent
computation so that a plausible slip in one of them fails here: where the kept
values come from, the comparator in ``lam`` mode, the default block length,
index checks, size boundaries, copies and the retained-importance figure."""

import numpy as np
import pytest
from safetensors.numpy import save_file as st_save

import vitrust
from vitrust import _vitrust


def _top_retained(w, sp):
    """Sum of kept |w| over the sum of the nnz largest |w|, by a full sort."""
    a = np.sort(np.abs(w.astype(np.float64)).ravel())[::-1]
    return float(np.abs(w.astype(np.float64))[sp.mask()].sum() / a[: sp.nnz].sum())


@pytest.mark.parametrize("mode", ["rate", "lam"])
def test_values_are_the_weights_even_when_scores_rank_them(mode):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((30, 70)).astype(np.float32)
    s = rng.exponential(size=w.shape)  # unrelated to w: a mix-up cannot go unseen
    kw = {"rate": 0.7} if mode == "rate" else {"lam": 1.0}
    sp = vitrust.prune(w, scores=s, **kw)
    assert sp.dtype == w.dtype
    np.testing.assert_array_equal(sp.values, w[sp.mask()])
    np.testing.assert_array_equal(sp.to_dense()[sp.mask()], w[sp.mask()])


@pytest.mark.parametrize("score", ["abs", "square"])
def test_lam_mode_sizes_the_comparator_by_the_share_above_lam(score):
    w = np.random.default_rng(1).standard_normal(20_000)
    s = np.abs(w) if score == "abs" else w * w
    lam = float(np.quantile(s, 0.8))  # a fifth of the scores above lam: density 0.2, rate 0.8
    density = np.count_nonzero(s > lam) / s.size
    c = vitrust.prune(w, lam=lam, score=score).config
    assert (c.comparator_bits, c.threshold) == vitrust.default_comparator(1.0 - density)
    assert (c.comparator_bits, c.threshold) != vitrust.default_comparator(density)
    c = vitrust.prune(w, lam=lam, score=score, comparator_bits=4).config
    assert (c.comparator_bits, c.threshold) == (4, round(density * 16))


def test_blocks_are_1024_steps_by_default():
    w = np.random.default_rng(2).standard_normal(5 * 1024 * 3 + 7)  # three whole blocks and a short one
    sp = vitrust.prune(w, 0.8)
    assert sp.block_steps == 1024
    n_blocks, words, _ = _vitrust.layout_info(sp.config, w.size, 1024)
    # 16 words per whole block of 1024 one-bit steps; the short block's 2 steps take one word.
    assert n_blocks == 4 and len(sp.index) == words == 3 * 16 + 1
    # expand's default is the same length: the mask of a 1024-step index.
    np.testing.assert_array_equal(vitrust.expand(sp.config, sp.index, w.size), sp.mask())
    other = vitrust.expand(sp.config, sp.index, w.size, 512)
    assert not np.array_equal(other, sp.mask())


def test_expand_takes_non_negative_integer_words_only():
    sp = vitrust.prune(np.random.default_rng(3).standard_normal(3000), 0.5, block_steps=64)
    signed = sp.index.astype(np.int64)  # same bits while the top bit is clear
    signed &= np.int64(2**62 - 1)
    want = vitrust.expand(sp.config, signed.astype(np.uint64), sp.size, 64)
    np.testing.assert_array_equal(vitrust.expand(sp.config, signed, sp.size, 64), want)
    signed[1] = -1
    with pytest.raises(TypeError, match="uint64"):
        vitrust.expand(sp.config, signed, sp.size, 64)
    with pytest.raises(TypeError, match="uint64"):
        vitrust.ViterbiSparse(sp.shape, sp.config, 64, signed, sp.values, sp.lam)


@pytest.mark.parametrize("cols, listed", [(1 << 16, True), ((1 << 16) + 1, False)])
def test_csr16_is_listed_while_a_column_fits_16_bits(cols, listed):
    w = np.random.default_rng(4).standard_normal((2, cols)).astype(np.float32)
    sp = vitrust.prune(w, 0.9, effort="fast")
    assert ("csr16" in sp.storage()) == listed


def test_to_scipy_copies_the_values():
    pytest.importorskip("scipy")
    sp = vitrust.prune(np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32), 0.5)
    before = sp.values.copy()
    csr = sp.to_scipy()
    csr.data[:] = 7.0
    np.testing.assert_array_equal(sp.values, before)


@pytest.mark.parametrize("min_size, pruned", [(288, True), (289, False)])
def test_min_size_is_inclusive(tmp_path, min_size, pruned):
    src, dst = tmp_path / "m.safetensors", tmp_path / "o.safetensors"
    st_save({"conv.weight": np.random.default_rng(6).standard_normal((8, 4, 3, 3)).astype(np.float32)}, str(src))
    res = vitrust.prune_checkpoint(src, dst, 0.5, min_size=min_size)
    assert ([t.name for t in res.tensors] == ["conv.weight"]) == pruned
    assert isinstance(vitrust.load_file(dst)["conv.weight"], vitrust.ViterbiSparse) == pruned


def test_the_reported_retained_importance_is_against_the_top_weights(tmp_path):
    src, dst = tmp_path / "m.safetensors", tmp_path / "o.safetensors"
    w = np.random.default_rng(7).standard_normal((64, 100)).astype(np.float32)
    st_save({"fc.weight": w}, str(src))
    (t,) = vitrust.prune_checkpoint(src, dst, 0.8, report=True).tensors
    sp = vitrust.load_file(dst)["fc.weight"]
    assert t.retained == pytest.approx(_top_retained(w, sp), rel=1e-12)
    assert t.retained == pytest.approx(sp.quality(w).retained, rel=1e-12)


def test_quality_retained_is_against_the_top_scores():
    w = np.random.default_rng(8).standard_normal((40, 50))
    sp = vitrust.prune(w, 0.9)
    assert sp.quality(w).retained == pytest.approx(_top_retained(w, sp), rel=1e-12)


def _signatures(module):
    import inspect

    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            yield name, obj
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    yield f"{name}.{attr}", member
        elif callable(obj):
            yield name, obj


def test_public_signatures_have_no_private_parameters():
    import inspect

    modules = [vitrust]
    try:
        import vitrust.torch as vt
    except ImportError:
        vt = None
    if vt is not None:
        modules.append(vt)
    for module in modules:
        for name, obj in _signatures(module):
            try:
                params = inspect.signature(obj).parameters
            except (TypeError, ValueError):  # compiled callables without a signature
                continue
            assert not [p for p in params if p.startswith("_")], name
