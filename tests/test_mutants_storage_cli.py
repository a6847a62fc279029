"""The storage table's text and the index-cost argument checks, and the CLI's size parser,
against figures computed here from their definitions."""

import argparse
import math
import re

import numpy as np
import pytest

import vitrust
from vitrust import _checks
from vitrust._cli import _size
from vitrust._storage import FORMATS, index_cost

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("text, n", [
    ("5GB", 5 * 10**9), ("500MB", 500 * 10**6), ("2GiB", 2 * 1024**3), ("1000000", 10**6), ("1.5k", 1500),
    ("3KiB", 3 * 1024), ("1T", 10**12), ("2TiB", 2 * 1024**4), (" 7 mb ", 7 * 10**6), ("4g", 4 * 10**9),
    ("10b", 10), ("10", 10), ("1MiB", 1024**2), ("2m", 2 * 10**6), ("3Gi", 3 * 1024**3), ("1tb", 10**12),
])
def test_size_parser(text, n):
    assert _size(text) == n


@pytest.mark.parametrize("text", ["5XB", "abc", "", "1.2.3GB", "-5MB", "5 G B"])
def test_size_parser_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text)) + ": expected a size"):
        _size(text)


def _cells(line):
    return re.split(r"\s{2,}|(?<=\S)\s(?=\S*\d)", line.strip())


def test_storage_table_text():
    w = RNG.standard_normal((32, 50)).astype(np.float32)
    sp = vitrust.prune(w, 0.75)
    table = sp.storage()
    text = str(table).splitlines()
    n, nnz = w.size, sp.nnz
    assert text[0] == f"{n} weights, {nnz} kept ({100 * (1 - nnz / n):.2f}% pruned), values 4 bytes each"
    assert text[1].split() == ["format", "index", "bits", "bits/weight", "padding", "total", "bits/weight", "total",
                               "bytes", "index", "vs", "viterbi"]
    assert len(text) == 2 + len(table)
    ref = table["viterbi"]["index_bits"]
    for line, (name, r) in zip(text[2:], table.items()):
        assert line[:22].rstrip() == name
        fields = line[22:].split()
        assert int(fields[0].replace(",", "")) == r["index_bits"]
        assert float(fields[1]) == pytest.approx(r["index_bits"] / n, abs=6e-5)
        assert int(fields[2].replace(",", "")) == r["padding"]
        assert float(fields[3]) == pytest.approx((r["index_bits"] + r["value_bits"]) / n, abs=6e-5)
        assert int(fields[4].replace(",", "")) == r["total_bytes"]
        if name == "dense":
            assert len(fields) == 5
        else:
            assert fields[5] == f"{r['index_bits'] / ref:.2f}x"
        assert len(line) <= 22 + 14 + 13 + 10 + 19 + 14 + 18
    assert text[2].startswith("dense ")
    # dense: no index, every value stored
    assert table["dense"]["total_bytes"] == n * 4


def test_storage_table_without_a_viterbi_row():
    w = RNG.standard_normal((4, 10)).astype(np.float32)
    table = vitrust.prune(w, 0.5).storage()
    rows = [(k, v) for k, v in table.items() if k != "viterbi"]
    other = type(table)(rows, table.n_weights, table.nnz, table.itemsize)
    for line in str(other).splitlines()[2:]:
        assert not line.endswith("x")


def test_index_cost_argument_checks():
    m = RNG.random((6, 20)) < 0.3
    with pytest.raises(ValueError, match="expected one of " + re.escape(", ".join(FORMATS))):
        index_cost(m, "csr8")
    with pytest.raises(TypeError, match=re.escape("index_cost('relative'): unexpected parameter(s) a, zeta")):
        index_cost(m, "relative", bits=4, zeta=1, a=2)
    with pytest.raises(TypeError, match=re.escape("index_cost('bitmask'): unexpected parameter(s) ratio")):
        index_cost(m, "bitmask", ratio=5)
    with pytest.raises(TypeError, match=r"^index_cost\('viterbi'\) needs ratio= \(weights per index bit, e\.g\. 5\)$"):
        index_cost(m, "viterbi")
    with pytest.raises(TypeError, match=r"^index_cost\('relative'\) needs bits= \(bits per gap entry, e\.g\. 4\)$"):
        index_cost(m, "relative")
    with pytest.raises(ValueError, match=r"^ratio = "):
        index_cost(m, "viterbi", ratio=_checks.MAX_N_OUT + 1)
    with pytest.raises(ValueError, match=r"^n_in = "):
        index_cost(m, "viterbi", ratio=1, n_in=_checks.MAX_N_IN + 1)
    with pytest.raises(ValueError, match=r"^block_steps = "):
        index_cost(m, "viterbi", ratio=5, block_steps=0)
    with pytest.raises(ValueError, match=rf"^ratio \* n_in = {2 * _checks.MAX_N_OUT}: must be at most "):
        index_cost(m, "viterbi", ratio=_checks.MAX_N_OUT, n_in=2)
    assert index_cost(m, "viterbi", ratio=_checks.MAX_N_OUT) == math.ceil(m.size / _checks.MAX_N_OUT)
    with pytest.raises(ValueError, match=r"^block_steps = "):
        index_cost(m, "viterbi", ratio=5, block_steps=vitrust._vitrust.MAX_BLOCK_STEPS + 1)

    class OnlyMask:
        def mask(self):
            return np.ones(4, dtype=bool)

    with pytest.raises(TypeError, match="bool array"):
        index_cost(OnlyMask(), "bitmask")
    with pytest.raises(ValueError, match=r"^bits = "):
        index_cost(m, "relative", bits=33)
    with pytest.raises(TypeError, match="bool array"):
        index_cost(m.astype(np.uint8), "bitmask")
    with pytest.raises(ValueError, match="non-empty"):
        index_cost(np.zeros(0, dtype=bool), "bitmask")


def test_index_cost_definitions():
    m = RNG.random((6, 4, 5)) < 0.3
    n, nnz, rows = m.size, int(m.sum()), 6
    assert index_cost(m, "viterbi", ratio=5) == math.ceil(n / 5)
    m125 = RNG.random((5, 25)) < 0.5
    assert index_cost(m125, "viterbi", ratio=5) == 25
    assert index_cost(m, "viterbi", ratio=3, n_in=2) == math.ceil(n / 6) * 2
    assert index_cost(m, "viterbi", ratio=7, block_steps=3) == math.ceil(n / 7)
    assert index_cost(m, "bitmask") == n
    assert index_cost(m, "csr32") == 32 * (nnz + rows + 1)
    assert index_cost(m, "csr16") == 16 * (nnz + rows + 1)
    assert index_cost(m.tolist(), "csr32") == 32 * (nnz + rows + 1)
    flat = m.reshape(-1)
    pos = np.flatnonzero(flat)
    gaps = np.diff(np.concatenate([[-1], pos]))
    for b in (2, 4):
        entries = len(gaps) + int(((gaps - 1) // (2**b - 1)).sum())
        assert index_cost(m, "relative", bits=b) == b * entries
    p = nnz / n
    assert index_cost(m, "entropy") == math.ceil(n * -(p * math.log2(p) + (1 - p) * math.log2(1 - p)))
    v = RNG.random(40) < 0.5
    assert index_cost(v, "csr32") == 32 * (int(v.sum()) + 2)
