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
from reference import kept_values

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
            np.testing.assert_array_equal(sp.values, kept_values(t, sp))
        else:
            np.testing.assert_array_equal(loaded[name], t)  # passed through bit for bit
    # the summary names every pruned tensor and the totals; progress went to stderr
    for name in pruned:
        assert name in stdout and f"] {name}" in stderr
    assert "3 tensors pruned" in stdout and "3 passed through" in stdout
    assert os.path.getsize(out) < os.path.getsize(ckpt)

    code, stdout, _ = run(["info", out], capsys)
    assert code == 0
    lines = {ln.split()[0]: ln for ln in stdout.splitlines() if ln.split() and ln.split()[0] in CHECKPOINT}
    # (a format-2 tensor adds a line "NAME: order F, ..." under the table)
    assert "needs vitrust" in stdout.splitlines()[-1]
    assert all(len(ln) <= 79 for ln in stdout.splitlines()[1:]), stdout
    assert set(lines) == set(CHECKPOINT)
    for name in pruned:
        sp = loaded[name]
        index, total, csr32, bitmask, deepc = [float(x) for x in lines[name].split()[4:9]]
        assert index == pytest.approx(sp.bits_per_weight, abs=1e-3)
        assert total == pytest.approx(sp.total_bits / sp.size, rel=1e-3)
        assert bitmask == pytest.approx(1 + sp.nnz * sp.dtype.itemsize * 8 / sp.size, rel=1e-3)
        assert csr32 > bitmask > total
        assert deepc == pytest.approx(sp.storage()["relative-5+codebook5"]["total_bits_per_weight"], rel=1e-3)
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
    # --quiet: no progress; only the 4x4 tensor's rate warning (16 weights cannot be cut to 50.0 +- 0.2 %)
    assert [line.split(":")[2] for line in err.splitlines()] == [" small.weight"]
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
    np.testing.assert_array_equal(sp.values, kept_values(wide, sp))  # exact: bfloat16 is a subset of float32
    assert sp.values.dtype == w.dtype and "BF16" in stdout


def test_plot_writes_a_png(ckpt, tmp_path, capsys):
    pytest.importorskip("matplotlib")
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


def test_an_unreachable_rate_is_flagged(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    # A constant tensor keeps all or the VD's fewest: no lam gets near 50 %.
    path = tmp_path / "tied.safetensors"
    st_save({"const.weight": np.full((64, 64), 0.5, np.float32),
             "fc.weight": RNG.standard_normal((64, 64)).astype(np.float32)}, str(path))
    png = tmp_path / "report.png"
    code, stdout, err = run(["prune", path, "-o", tmp_path / "o.safetensors", "--rate", "0.5", "--plot", png, "-q"],
                            capsys)
    assert code == 0, err
    warned = [line for line in err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "const.weight" in warned[0] and "0.5000 requested" in warned[0]
    rows = {line.split()[0]: line for line in stdout.splitlines() if line.endswith("KiB")}
    assert "%!" in rows["const.weight"] and "%!" not in rows["fc.weight"]
    assert "1 tensor(s) off the requested rate" in stdout
    # The plot labels the tensor with both rates.
    from vitrust import _report
    drawn = []
    monkeypatch.setattr(_report, "plot", lambda rows, path: drawn.extend(rows))
    run(["prune", path, "-o", tmp_path / "o2.safetensors", "--rate", "0.5", "--plot", png, "--force", "-q"], capsys)
    assert [r.missed for r in drawn] == [0.5, None]


def test_prune_and_unpack_keep_the_file_metadata(tmp_path, capsys):
    src = tmp_path / "hf.safetensors"
    st_save(CHECKPOINT, str(src), metadata={"format": "pt", "note": "é"})
    assert vitrust.read_metadata(src) == {"format": "pt", "note": "é"}
    pruned, dense = tmp_path / "p.safetensors", tmp_path / "d.safetensors"
    assert run(["prune", src, "-o", pruned, "--rate", "0.5", "-q"], capsys)[0] == 0
    # vitrust's own key is not the caller's metadata.
    assert vitrust.read_metadata(pruned) == {"format": "pt", "note": "é"}
    assert run(["unpack", pruned, "-o", dense], capsys)[0] == 0
    assert vitrust.read_metadata(dense) == {"format": "pt", "note": "é"}
    from safetensors import safe_open

    with safe_open(str(dense), "np") as f:
        assert f.metadata()["format"] == "pt"


def test_unpack_states_its_size_and_refuses_above_the_limit(tmp_path, capsys):
    # A few KB that expand to 4 MB (2^20 float32 weights, almost all pruned).
    cfg = vitrust.VDConfig(flip_flops=16, n_out=64, comparator_bits=8, threshold=1, seed=1)
    n = 2**20
    index = np.random.default_rng(0).integers(0, 2**63, n // 64 // 64, dtype=np.uint64)
    kept = int(vitrust._vitrust.expand(cfg, index, n, 4096, None).sum())
    sp = vitrust.ViterbiSparse((2**10, 2**10), cfg, 4096, index, np.ones(kept, np.float32), 0.0)
    src, out = tmp_path / "s.safetensors", tmp_path / "d.safetensors"
    vitrust.save_file({"w": sp}, src)
    assert 64 * src.stat().st_size < 4 * 2**20
    code, stdout, err = run(["unpack", src, "-o", out], capsys)
    assert code == 2 and "--max-output" in err and str(4 * 2**20) in err
    assert "4.00 MiB" in stdout and not out.exists()
    assert run(["unpack", src, "-o", out, "--max-output", "3M"], capsys)[0] == 2
    assert run(["unpack", src, "-o", out, "--max-output", "5M"], capsys)[0] == 0
    assert np.array_equal(vitrust.load_file(out)["w"], sp.to_dense())
    assert run(["unpack", src, "-o", out, "--force"], capsys)[0] == 0
    with pytest.raises(SystemExit):
        main(["unpack", str(src), "-o", str(tmp_path / "x"), "--max-output", "lots"])


def test_demo_reports_what_it_did(capsys):
    from vitrust._demo import default_matrix

    code, stdout, err = run(["demo", "--rate", "0.8", "--threads", "2"], capsys)
    assert code == 0, err
    fields = {line.split("  ")[1].strip(): line for line in stdout.splitlines()[2:] if line.strip()}
    w = default_matrix()
    sp = vitrust.prune(w, 0.8)
    assert stdout.splitlines()[0] == "vitrust demo: 1024x1024 float32 (embedded default), target rate 80.00%"
    assert f"({sp.nnz} of {w.size} weights kept)" in fields["achieved rate"]
    assert abs(sp.rate - 0.8) <= 0.002
    assert f"viterbi {sp.bits_per_weight:.4f}" in fields["index bits/weight"]
    assert f"csr32 {32 * (sp.nnz + 1025) / w.size:.4f}" in fields["index bits/weight"]
    a = np.abs(w.astype(np.float64)).ravel()
    want = a[sp.mask().ravel()].sum() / np.sort(a)[::-1][: sp.nnz].sum()
    assert float(fields["retained |w|"].split()[2]) == pytest.approx(want, abs=6e-5)


@pytest.mark.parametrize("min_size, listed", [(288, True), (289, False)])
def test_min_size_counts_a_tensor_of_exactly_that_size(ckpt, tmp_path, capsys, min_size, listed):
    code, stdout, err = run(["prune", ckpt, "-o", tmp_path / "o.safetensors", "--rate", "0.5",
                             "--min-size", min_size, "--dry-run"], capsys)
    assert code == 0, err
    names = {line.split()[0] for line in stdout.splitlines()[1:] if line.split() and "." in line.split()[0]}
    assert ("conv.weight" in names) == listed  # 8x4x3x3: 288 weights
    assert "fc1.weight" in names and "small.weight" not in names
