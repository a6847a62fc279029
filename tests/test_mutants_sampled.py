"""Tests for mutants left alive by the sampled mutation run (benches/MUTATION.md):
the sampled choice of stream order, the global configuration's effort, and the
counts that `info` and `unpack` report."""

import re

import numpy as np
import pytest

import vitrust
from vitrust import _checkpoint, _commands, _presets, _unpack
from vitrust._commands import _mib
from vitrust._shard import TensorPlan


def _heavy_rows():
    """A matrix whose large weights fill its first quarter of rows: its C and F
    streams differ, and its transpose swaps them."""
    w = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)
    w[:64, :] *= 50
    return w


def _kept(w, sp):
    return float(np.abs(w[sp.mask().reshape(w.shape)]).sum())


@pytest.mark.parametrize("kw", [dict(rate=0.9), dict(lam=2.0), dict(rate=0.9, block_thresholds=True)])
def test_auto_order_is_chosen_on_sampled_blocks(kw):
    # 256*256 weights in blocks of 64 steps of 5 outputs: 205 blocks, enough for
    # "auto" to choose the order on a sample of blocks instead of searching both.
    w = _heavy_rows()
    chosen = {}
    for name, m in (("w", w), ("w.T", np.ascontiguousarray(w.T))):
        auto = vitrust.prune(m, order="auto", block_steps=64, **kw)
        assert -(-m.size // (64 * auto.config.n_out)) >= 2 * 8
        forced = vitrust.prune(m, order=auto.order, block_steps=64, **kw)
        np.testing.assert_array_equal(auto.index, forced.index)  # the full search in the chosen order
        chosen[name] = auto.order
        if "rate" in kw:  # the sample's verdict holds for the whole matrix here (a 3 % gap)
            other = vitrust.prune(m, order="F" if auto.order == "C" else "C", block_steps=64, **kw)
            assert _kept(m, auto) > _kept(m, other)
    # the C stream of w.T is the F stream of w: the choice must flip with the transpose
    assert sorted(chosen.values()) == ["C", "F"]


def test_global_configs_take_the_effort():
    plans = [TensorPlan(name="a", file="m.safetensors", kind="plain", dtype="F32", shape=(64, 64), nbytes=16384,
                        prune=True)]
    for effort in ("fast", "best"):
        c = _checkpoint._global_configs(plans, 0.9, {"effort": effort})["a"]
        assert c.flip_flops == _presets.EFFORTS[effort].flip_flops
    assert _checkpoint._global_configs(plans, 0.9, {})["a"].flip_flops == _presets.EFFORTS["default"].flip_flops


def _file(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 96)).astype(np.float32)
    b = rng.standard_normal((80, 48)).astype(np.float32)
    d = rng.standard_normal(40).astype(np.float32)
    path = tmp_path / "m.safetensors"
    tensors = {"a": vitrust.prune(a, 0.8), "b": vitrust.prune(b, 0.7, block_thresholds=True), "d": d}
    vitrust.save_file(tensors, path)
    return path, tensors


def test_info_totals_and_threshold_span(tmp_path, capsys):
    path, tensors = _file(tmp_path)
    f = vitrust._vitrust.SafeOpen(str(path))
    stored = sum(f.info(n)[3] for n in f.keys())
    del f
    _commands.info(str(path))
    out = capsys.readouterr().out
    total = [ln for ln in out.splitlines() if ln.startswith("total:")]
    assert total and f"; {_mib(stored)} stored," in total[0], out
    b = vitrust.load_file(path)["b"]
    t = b.thresholds
    assert t is not None and t.size
    assert re.search(rf"^b: order {b.order}, per-block thresholds {int(t.min())}\.\.{int(t.max())}/", out, re.M), out
    sp = tensors["b"]
    assert _commands._stream(sp).startswith(f"order {sp.order}, per-block thresholds {int(sp.thresholds.min())}.."
                                            f"{int(sp.thresholds.max())}/{2 ** sp.config.comparator_bits} ")


def test_unpack_counts_the_expanded_tensors(tmp_path):
    path, tensors = _file(tmp_path)
    res = _unpack.unpack(path, tmp_path / "dense.safetensors")
    assert res["expanded"] == 2 and res["tensors"] == 3
    back = vitrust.load_file(tmp_path / "dense.safetensors")
    np.testing.assert_array_equal(back["a"], tensors["a"].to_dense())


def test_plot_labels_the_storage_bars(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from vitrust import _report
    from vitrust._cli import main

    src = tmp_path / "m.safetensors"
    rng = np.random.default_rng(5)
    vitrust.save_file({"fc.weight": rng.standard_normal((64, 64)).astype(np.float32),
                       "fc2.weight": rng.standard_normal((32, 64)).astype(np.float32)}, src)
    drawn = []
    with monkeypatch.context() as m:
        m.setattr(_report, "plot", lambda rows, path: drawn.extend(rows))
        assert main(["prune", str(src), "-o", str(tmp_path / "o.safetensors"), "--rate", "0.5", "--plot",
                     str(tmp_path / "r.png"), "-q"]) == 0
    assert len(drawn) == 2
    plt = _report.require_matplotlib()
    figs = []
    close = plt.close
    monkeypatch.setattr(plt, "close", figs.append)
    png = tmp_path / "r.png"
    _report.plot(drawn, str(png))
    assert png.stat().st_size > 0
    ax1, ax2 = figs[0].axes
    close(figs[0])
    mib = [sum(float(r.storage[k]["total_bytes"]) for r in drawn for k in r.storage if k.startswith(key)) / 2**20
           for key, _ in _report.FORMATS]
    assert [t.get_text() for t in ax1.texts] == [f"{v:.2f} MiB" for v in mib]
    assert [t.get_text() for t in ax1.get_yticklabels()] == [label for _, label in _report.FORMATS]
    assert [p.get_width() for p in ax2.patches] == pytest.approx([r.retained for r in drawn])


class _Sink:
    """A text stream without ``isatty`` (a log handler's stream, say)."""

    def __init__(self):
        self.parts = []

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass


def test_progress_on_a_stream_without_isatty():
    from vitrust._progress import Progress

    p = Progress(2, 100, stream=_Sink())
    assert p.tty is False and p._ticker is None


class _Linear:
    """A model class as ``from_pretrained`` takes one: ``from_config`` builds it."""

    @staticmethod
    def from_config(config):
        import torch

        torch.manual_seed(0)
        return torch.nn.Linear(config.hidden_size, 3)


def test_from_pretrained_is_strict_by_default(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import vitrust.torch as vt

    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 2}')
    w = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    vitrust.save_file({"weight": vitrust.prune(w, 0.5)}, tmp_path / "model.safetensors")  # no "bias"
    with pytest.raises(Exception, match="bias"):
        vt.from_pretrained(_Linear, tmp_path)
    got = vt.from_pretrained(_Linear, tmp_path, strict=False)
    np.testing.assert_array_equal(got.weight.detach().numpy(), vitrust.load_file(tmp_path / "model.safetensors")
                                  ["weight"].to_dense())


def test_cli_help_texts(capsys):
    from vitrust._cli import _parser, main

    assert _parser().format_usage().startswith("usage: vitrust ")
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    assert re.search(r"(^| )Prune a checkpoint; the output mirrors the input \(a file for a file, a [a-z]", flat), out
    assert "output file (for a file) or directory (for a checkpoint)" in flat
    assert "[--rate-map RATES.json]" in flat
    for text in ("never prune tensors whose name matches this glob (repeatable)", "seed of the VD taps (default 0)"):
        assert re.search(rf"(^| ){re.escape(text)}( |$)", flat), text


@pytest.mark.parametrize("n, text", [(3 * 2**30, "3.00 GiB"), (2**30 - 2**20, "1023.00 MiB"), (1536, "1.5 KiB"),
                                     (1023, "1023 B")])
def test_mib_units(n, text):
    assert _mib(n) == text


@pytest.mark.parametrize("dry", [False, True])
def test_prune_summary_names_the_output(tmp_path, capsys, dry):
    from vitrust._cli import main

    src = tmp_path / "m.safetensors"
    vitrust.save_file({"fc.weight": np.random.default_rng(6).standard_normal((64, 64)).astype(np.float32)}, src)
    args = ["prune", str(src), "-o", str(tmp_path / "o.safetensors"), "--rate", "0.5", "-q"]
    assert main(args + (["--dry-run"] if dry else [])) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^input \S+ \S+ -> {'expected output' if dry else 'output'} [0-9.]+ \S+ \(", out, re.M), out



def test_checkpoint_result_files_are_relative_to_the_output(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "out" / "pruned"
    src.mkdir()
    w = np.random.default_rng(7).standard_normal((64, 64)).astype(np.float32)
    vitrust.save_file({"fc.weight": w}, src / "model.safetensors")
    monkeypatch.chdir(src)  # elsewhere than the output
    for dry in (True, False):
        res = vitrust.prune_checkpoint(src, dst, 0.5, dry_run=dry)
        assert res.files == ["model.safetensors"] and (dst / "model.safetensors").is_file() is not dry


def test_index_naming_the_wrong_shard(tmp_path):
    import json

    from vitrust import _layout

    for name, t in (("model-a.safetensors", "x"), ("model-b.safetensors", "y")):
        vitrust.save_file({t: np.zeros(4, np.float32)}, tmp_path / name)
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"x": "model-b.safetensors", "y": "model-b.safetensors"}}))
    src = _layout.resolve(str(tmp_path))
    a = str(tmp_path / "model-a.safetensors")  # where "x" really is; the index sends readers to model-b
    with pytest.raises(_layout.LayoutError,
                       match=r": tensor 'x' is in model-a\.safetensors, but the index names model-b\.safetensors$"):
        _layout.check_index_matches(src, {a: ["x"]})
