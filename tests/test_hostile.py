"""Hostile files cost memory and time in proportion to their size: peak
memory stays within about twice the file's size (the README's promise), and
a wide config validates about as fast per byte as an ordinary one."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hostile
import vitrust

SIZE = 12_000_000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory read from /proc")
@pytest.mark.parametrize("case", sorted(hostile.CASES))
def test_loading_costs_at_most_about_twice_the_file(tmp_path, case):
    path = str(tmp_path / "f.safetensors")
    hostile.CASES[case](path, SIZE)
    size = os.path.getsize(path)
    outcome, peak, seconds = hostile.measure(path)
    assert outcome == ("loaded" if case in hostile.VALID else "refused")
    assert peak < 3 * size, f"{case}: peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
    # Linear work: about 0.3 s here (a tree of the unknown field took 7 s).
    assert seconds < 3, f"{case}: {seconds:.1f} s"


def test_a_wide_config_validates_at_the_speed_of_a_table(tmp_path):
    # About 8 MB of tensors of flip_flops 16, n_out 64, comparator_bits 8;
    # stepping each gate of each step took 6 s for such a file, the shared
    # keep table about 0.1 s (the bound leaves room for a slow machine).
    path = str(tmp_path / "wide.safetensors")
    hostile.wide_config(path, 1_200_000)
    assert os.path.getsize(path) > 6_000_000
    _, _, seconds = hostile.measure(path)
    assert seconds < 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory read from /proc")
def test_info_on_a_huge_declared_tensor_stays_small(tmp_path):
    # 2^24 weights kept about 1 in 256: a file of ~170 KB whose mask alone is 16 MB.
    cfg = vitrust.VDConfig(flip_flops=8, n_out=64, comparator_bits=8, threshold=1, seed=1)
    n = 2**24
    index = np.random.default_rng(0).integers(0, 2**63, n // 64 // 64, dtype=np.uint64)
    kept = int(vitrust._vitrust.expand(cfg, index, n, 64, None).sum())
    sp = vitrust.ViterbiSparse((2**12, 2**12), cfg, 64, index, np.ones(kept, np.float16), 0.0)
    path = str(tmp_path / "huge.safetensors")
    vitrust.save_file({"w": sp}, path)
    probe = textwrap.dedent(
        """
        import io, sys, contextlib
        from vitrust._cli import main

        def hwm():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

        base = hwm()
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["info", sys.argv[1]]) == 0
        print(hwm() - base, "relative-4" in out.getvalue() or "csr32" in out.getvalue())
        """
    )
    out = subprocess.run([sys.executable, "-c", probe, path], check=True, capture_output=True, text=True)
    grown, _ = out.stdout.split()
    assert int(grown) < 6 * 2**20, f"info grew by {int(grown) / 2**20:.1f} MiB"
    # The costs agree with those of the expanded mask.
    table = sp.storage()
    mask = sp.mask()
    assert table["csr32"]["index_bits"] == vitrust.index_cost(mask, "csr32")
    assert table["relative-4"]["index_bits"] == vitrust.index_cost(mask, "relative", bits=4)
