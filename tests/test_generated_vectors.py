"""The compiled core against the project's own vectors (tests/vectors/vd_v1_extra.json).

``tests/vectors/generate.py`` derives them from the scalar reference
(``tests/reference.py``) after checking it against the shared vectors; they
cover what those leave out: 16 flip-flops, more than 16 mask bits per step,
4 input bits per step and whole tensors of several blocks.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import vitrust
from vitrust import _vitrust

from test_vectors import as_bools, config_of, pack

VECTORS = Path(__file__).parent / "vectors"
EXTRA = json.loads((VECTORS / "vd_v1_extra.json").read_text())


def load_generator():
    spec = importlib.util.spec_from_file_location("generate", VECTORS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def words(hex_words):
    return np.array([int(w, 16) for w in hex_words], dtype=np.uint64)


def test_the_vectors_cover_the_ranges_the_shared_ones_leave_out():
    records = EXTRA["expand"] + EXTRA["tensors"]
    assert any(v["k"] == 16 for v in records)
    assert {24, 32, 64} <= {v["n_out"] for v in records}
    assert any(v["n_in"] == 4 for v in records)
    assert any(v["n_out"] * v["nc"] == 512 for v in records)
    assert any(v["K"] == 2 ** v["nc"] for v in records)


@pytest.mark.parametrize("v", EXTRA["expand"], ids=lambda v: f"k{v['k']}-in{v['n_in']}-out{v['n_out']}-nc{v['nc']}")
def test_block_vectors(v):
    cfg = config_of(v)
    want = as_bools(v["mask"])
    index = pack(v["bits"])
    np.testing.assert_array_equal(vitrust.expand(cfg, index, len(want), v["steps"]), want)
    np.testing.assert_array_equal(_vitrust.expand(cfg, index, len(want), v["steps"], 1), want)
    assert _vitrust.block_starts(cfg, index, len(want), v["steps"]).tolist() == [0, want.sum()]
    # The taps are the pinned generator's, as docs/format.md describes it.
    assert _vitrust.generate_taps(v["k"], v["n_in"], v["n_out"], v["nc"], v["tap_seed"]) == v["taps"]


@pytest.mark.parametrize("v", EXTRA["tensors"], ids=lambda v: f"k{v['k']}-in{v['n_in']}-out{v['n_out']}-n{v['n_weights']}")
def test_tensor_vectors(v, tmp_path):
    cfg = config_of(v)
    want = as_bools(v["mask"])
    n, steps = v["n_weights"], v["block_steps"]
    index = words(v["index"])
    for threads in (None, 1, 3):
        np.testing.assert_array_equal(vitrust.expand(cfg, index, n, steps, threads=threads), want)
    block = steps * v["n_out"]
    counts = [want[b : b + block].sum() for b in range(0, n, block)]
    assert _vitrust.block_starts(cfg, index, n, steps).tolist() == np.cumsum([0] + counts).tolist()
    # The file's count check decodes the same mask: a file holding these
    # values loads, and one with a value too many is refused.
    values = np.arange(want.sum(), dtype=np.float32)
    sp = vitrust.ViterbiSparse((n,), cfg, steps, index, values, 0.5)
    path = tmp_path / "t.safetensors"
    vitrust.save_file({"t": sp}, path)
    back = vitrust.load_file(path)["t"]
    np.testing.assert_array_equal(back.mask(), want)
    np.testing.assert_array_equal(back.to_dense()[want], values)
    with pytest.raises(ValueError):
        vitrust.ViterbiSparse((n,), cfg, steps, index, np.append(values, 1.0), 0.5)


def test_regenerating_gives_the_same_file():
    assert load_generator().build() == (VECTORS / "vd_v1_extra.json").read_text()


def test_the_generator_refuses_a_reference_that_disagrees_with_the_shared_vectors(monkeypatch):
    gen = load_generator()
    real = gen.expand_block
    monkeypatch.setattr(gen, "expand_block", lambda *a: ~real(*a))
    with pytest.raises(SystemExit, match="disagrees"):
        gen.build()
