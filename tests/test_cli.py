"""The ``vitrust`` command line on generated safetensors checkpoints."""

import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file as st_load
from safetensors.numpy import save_file as st_save

import vitrust
from vitrust._cli import main

RNG = np.random.default_rng(3)
CHECKPOINT = {
    "fc1.weight": RNG.standard_normal((64, 100)).astype(np.float32),
    "fc1.bias": RNG.standard_normal(64).astype(np.float32),
    "conv.weight": RNG.standard_normal((8, 4, 3, 3)).astype(np.float16),
    "head.weight": RNG.standard_normal((10, 64)).astype(np.float64),
    "small.weight": RNG.standard_normal((4, 4)).astype(np.float32),
    "embed.ids": RNG.integers(0, 9, size=(40, 40)).astype(np.int64),
}


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "model.safetensors"
    st_save(CHECKPOINT, str(path))
    return path


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_prune_info_unpack_round_trip(ckpt, tmp_path, capsys):
    out = tmp_path / "pruned.safetensors"
    code, stdout, stderr = run(["prune", ckpt, "-o", out, "--rate", "0.8", "--min-size", "200"], capsys)
    assert code == 0, stderr
    loaded = vitrust.load_file(out)
    pruned = {n for n, t in loaded.items() if isinstance(t, vitrust.ViterbiSparse)}
    assert pruned == {"fc1.weight", "conv.weight", "head.weight"}  # floats of 2+ dims and >= 200 weights
    for name, t in CHECKPOINT.items():
        if name in pruned:
            sp = loaded[name]
            assert sp.shape == t.shape and sp.dtype == t.dtype and abs(sp.rate - 0.8) < 0.05
            np.testing.assert_array_equal(sp.values, t[sp.mask()])
        else:
            np.testing.assert_array_equal(loaded[name], t)  # passed through bit for bit
    # the summary names every pruned tensor and the totals; progress went to stderr
    for name in pruned:
        assert name in stdout and f"] {name}" in stderr
    assert "3 tensors pruned" in stdout and "3 passed through" in stdout
    assert os.path.getsize(out) < os.path.getsize(ckpt)

    code, stdout, _ = run(["info", out], capsys)
    assert code == 0
    lines = {ln.split()[0]: ln for ln in stdout.splitlines()[3:-3]}
    assert "needs vitrust" in stdout.splitlines()[-1]
    assert all(len(ln) <= 79 for ln in stdout.splitlines()[1:]), stdout
    assert set(lines) == set(CHECKPOINT)
    for name in pruned:
        bpw = [float(x) for x in lines[name].split()[4:8]]  # viterbi, csr32, relative, bitmask
        assert bpw[0] == pytest.approx(loaded[name].bits_per_weight, abs=1e-3)
        assert bpw[3] == 1.0 and bpw[1] > bpw[2] > bpw[0]
    assert "dense" in lines["fc1.bias"]

    dense_path = tmp_path / "dense.safetensors"
    code, stdout, stderr = run(["unpack", out, "-o", dense_path], capsys)
    assert code == 0, stderr
    dense = st_load(str(dense_path))  # an independent reader
    for name, t in CHECKPOINT.items():
        want = loaded[name].to_dense() if name in pruned else t
        assert dense[name].dtype == t.dtype
        np.testing.assert_array_equal(dense[name], want)
        if name in pruned:
            m = loaded[name].mask()
            np.testing.assert_array_equal(dense[name][m], t[m])
            assert not dense[name][~m].any()


def test_include_exclude_and_min_size(ckpt, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    code, _, err = run(["prune", ckpt, "-o", out, "--rate", "0.5", "--include", "*.weight", "--exclude", "head.*",
                        "--min-size", "0", "-q"], capsys)
    assert code == 0, err
    assert err == ""  # --quiet: no progress
    loaded = vitrust.load_file(out)
    pruned = {n for n, t in loaded.items() if isinstance(t, vitrust.ViterbiSparse)}
    assert pruned == {"fc1.weight", "conv.weight", "small.weight"}


def test_bfloat16_tensors_are_pruned(tmp_path, capsys):
    w = RNG.standard_normal((48, 80)).astype(ml_dtypes.bfloat16)
    src, out = tmp_path / "bf.safetensors", tmp_path / "bf.vt.safetensors"
    vitrust.save_file({"w": w}, src)
    code, stdout, err = run(["prune", src, "-o", out, "--rate", "0.7", "-q"], capsys)
    assert code == 0, err
    sp = vitrust.load_file(out)["w"]
    wide = w.astype(np.float32)
    np.testing.assert_array_equal(sp.values, wide[sp.mask()])  # exact: bfloat16 is a subset of float32
    assert sp.values.dtype == w.dtype and "BF16" in stdout


def test_plot_writes_a_png(ckpt, tmp_path, capsys):
    png = tmp_path / "report.png"
    code, stdout, err = run(["prune", ckpt, "-o", tmp_path / "o.safetensors", "--rate", "0.9", "--plot", png,
                             "--min-size", "200", "-q"], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_errors_are_one_clear_line(ckpt, tmp_path, capsys):
    out = tmp_path / "o.safetensors"
    code, _, err = run(["prune", tmp_path / "missing.safetensors", "-o", out, "--rate", "0.9"], capsys)
    assert code == 2 and "no such file" in err and "Traceback" not in err

    out.write_bytes(b"precious")
    code, _, err = run(["prune", ckpt, "-o", out, "--rate", "0.9"], capsys)
    assert code == 2 and "exists" in err and "--force" in err
    assert out.read_bytes() == b"precious"  # untouched
    code, _, err = run(["prune", ckpt, "-o", out, "--rate", "0.9", "--force", "-q"], capsys)
    assert code == 0, err
    assert isinstance(vitrust.load_file(out)["fc1.weight"], vitrust.ViterbiSparse)

    code, _, err = run(["prune", ckpt, "-o", ckpt, "--rate", "0.9", "--force"], capsys)
    assert code == 2 and "input" in err

    code, _, err = run(["prune", ckpt, "-o", tmp_path / "x.safetensors", "--rate", "0.9", "--include", "embed.*",
                        "--min-size", "0"], capsys)
    assert code == 2 and "int64" in err and "embed.ids" in err
    assert not (tmp_path / "x.safetensors").exists()

    for rate in ("1.0", "-0.1"):
        code, _, err = run(["prune", ckpt, "-o", tmp_path / "y.safetensors", "--rate", rate, "-q"], capsys)
        assert code == 2 and "rate" in err

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(ckpt.read_bytes()[:100])
    for cmd in (["info", bad], ["unpack", bad, "-o", tmp_path / "z.safetensors"]):
        code, _, err = run(cmd, capsys)
        assert code == 2 and err.startswith("vitrust: error:") and "Traceback" not in err

    code, _, err = run(["info", tmp_path], capsys)  # a directory of several files and no index
    assert code == 2 and str(tmp_path) in err and "no index" in err


def test_effort_is_passed_only_when_prune_knows_it(ckpt, tmp_path, capsys, monkeypatch):
    import inspect

    from vitrust import _shard

    out = tmp_path / "e.safetensors"
    code, _, err = run(["prune", ckpt, "-o", out, "--rate", "0.9", "--effort", "best", "-q"], capsys)
    if "effort" in inspect.signature(vitrust.prune).parameters:
        assert code == 0, err
    else:
        assert code == 2 and "--effort" in err and not out.exists()
    seen = {}

    def fake_prune(w, rate, *, effort="default", **kw):
        seen["effort"] = effort
        return vitrust.prune(w, rate, **kw)

    monkeypatch.setattr(_shard, "prune", fake_prune)
    code, _, err = run(["prune", ckpt, "-o", out, "--rate", "0.9", "--effort", "fast", "-q", "--force"], capsys)
    assert code == 0, err
    assert seen["effort"] == "fast"


def test_entry_points_run_as_a_new_user_would(ckpt, tmp_path):
    out = tmp_path / "m.safetensors"
    r = subprocess.run([sys.executable, "-m", "vitrust", "prune", str(ckpt), "-o", str(out), "--rate", "0.9"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "fc1.weight" in r.stdout and "[1/" in r.stderr
    r = subprocess.run([sys.executable, "-m", "vitrust", "info", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "fc1.weight" in r.stdout
    r = subprocess.run([sys.executable, "-m", "vitrust", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and all(c in r.stdout for c in ("prune", "info", "unpack", "demo"))
