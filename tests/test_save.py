"""Saving: atomic replacement, temporary files, names and permissions."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import vitrust

SMALL = {"w": np.arange(6, dtype=np.float32)}


def entries(d):
    return sorted(os.listdir(d))


def test_names_up_to_the_filesystem_limit_save_and_replace(tmp_path):
    for n in (200, 235, 254, 255):
        path = tmp_path / ("n" * (n - 12) + ".safetensors")
        vitrust.save_file(SMALL, path)
        vitrust.save_file({"w": np.ones(3)}, path)
        assert np.array_equal(vitrust.load_file(path)["w"], np.ones(3))
    assert len(entries(tmp_path)) == 4


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_new_files_follow_the_umask(tmp_path):
    code = textwrap.dedent(
        """
        import os, sys, numpy as np, vitrust
        os.umask(int(sys.argv[2], 8))
        vitrust.save_file({"w": np.zeros(2)}, sys.argv[1])
        """
    )
    for umask, want in (("077", 0o600), ("022", 0o644), ("002", 0o664)):
        path = tmp_path / f"u{umask}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(path), umask], check=True)
        assert stat.S_IMODE(path.stat().st_mode) == want, umask


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_replacing_keeps_permission_bits_only(tmp_path):
    path = tmp_path / "m.safetensors"
    vitrust.save_file(SMALL, path)
    for mode, want in ((0o4755, 0o755), (0o2640, 0o640), (0o1600, 0o600), (0o604, 0o604)):
        os.chmod(path, mode)
        vitrust.save_file(SMALL, path)
        assert stat.S_IMODE(path.stat().st_mode) == want, oct(mode)


def test_stale_temporary_files_are_removed_live_ones_kept(tmp_path):
    # A pid above the kernel's largest pid_max (2^22) belongs to no process.
    dead = tmp_path / ".vitrust-4194399-3.tmp"
    live = tmp_path / f".vitrust-{os.getpid()}-77.tmp"
    for p in (dead, live):
        p.write_bytes(b"partial")
    vitrust.save_file(SMALL, tmp_path / "m.safetensors")
    assert entries(tmp_path) == sorted([live.name, "m.safetensors"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL timing on Linux")
def test_a_save_killed_midway_leaves_nothing_behind(tmp_path):
    path = tmp_path / "big.safetensors"
    vitrust.save_file(SMALL, path)
    before = path.read_bytes()
    code = textwrap.dedent(
        """
        import sys, numpy as np, vitrust
        w = np.ones(2**26, dtype=np.float32)  # 256 MiB
        print("ready", flush=True)
        for _ in range(20):
            vitrust.save_file({"w": w}, sys.argv[1])
        """
    )
    for delay in (0.05, 0.3, 0.8):
        p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        # Only the target remains: the old file or a complete new one.
        assert entries(tmp_path) == ["big.safetensors"], delay
        loaded = vitrust.load_file(path)
        assert path.read_bytes() == before or loaded["w"].shape == (2**26,)
