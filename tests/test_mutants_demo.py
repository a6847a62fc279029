"""The demo's embedded matrix and report lines, and ``vitrust info``'s bits-per-weight cells,
against NumPy."""

import time

import numpy as np

import vitrust
from vitrust._cli import main


def test_default_matrix_is_laplacian_rows_with_lognormal_scales():
    from vitrust._demo import default_matrix

    rng = np.random.default_rng(0)
    scale = rng.lognormal(0.0, 0.3, size=(1024, 1))
    want = (rng.laplace(0.0, 0.05, size=(1024, 1024)) * scale).astype(np.float32)
    got = default_matrix()
    assert got.dtype == np.float32 and got.shape == (1024, 1024)
    np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(4)
    scale = rng.lognormal(0.0, 0.3, size=(3, 1))
    np.testing.assert_array_equal(default_matrix(3, 5, seed=4),
                                  (rng.laplace(0.0, 0.05, size=(3, 5)) * scale).astype(np.float32))


def test_demo_lines(capsys):
    from vitrust._demo import default_matrix

    t0 = time.perf_counter()
    assert main(["demo", "--rate", "0.9"]) == 0
    wall = time.perf_counter() - t0
    lines = capsys.readouterr().out.splitlines()
    sp = vitrust.prune(default_matrix(), 0.9)
    n = 1024 * 1024
    assert lines[1] == "  " + repr(sp)
    assert lines[3] == (f"  index bits/weight  viterbi {sp.bits_per_weight:.4f}   bitmask 1.0000   "
                        f"csr32 {32 * (sp.nnz + 1025) / n:.4f}")
    assert lines[4].startswith("  retained |w|       ")
    assert lines[5].startswith("  time               ")
    ms = float(lines[5].split()[1])
    rate = float(lines[5].split("(")[1].split()[0])
    assert 0 < ms <= wall * 1e3 + 1
    # Both figures are printed to 0.1: the rate is off by up to 0.05 by its own rounding,
    # and by up to rate * 0.05 / ms through the rounding of the time it is checked against.
    assert abs(rate - n / (ms / 1e3) / 1e6) <= 0.05 + rate * 0.05 / (ms - 0.05) + 1e-9


def test_info_bits_per_weight_cells(tmp_path, capsys):
    w = np.random.default_rng(2).standard_normal((4, 400)).astype(np.float32)
    sp = vitrust.prune(w, 0.675)
    b = 32 * (sp.nnz + 4 + 1) / w.size  # csr32: a 32-bit column per kept weight and rows + 1 row pointers
    assert 10 < b < 11
    path = tmp_path / "s.safetensors"
    vitrust.save_file({"w": sp}, path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("w ")]
    cells = row.split()
    values = 32 * sp.nnz / w.size
    assert 10 < values < 11  # so the totals print with 2 decimals, the index (under 10) with 3
    assert cells[4] == f"{sp.bits_per_weight:.3f}"
    assert cells[5] == f"{sp.total_bits / w.size:.2f}"
    assert cells[6] == f"{b + values:.2f}"
    assert cells[7] == f"{1 + values:.2f}"
