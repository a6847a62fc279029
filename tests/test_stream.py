"""The streamed shard writer and the memory-mapped reader against independent
readers, and the progress line's width."""

import io

import ml_dtypes
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file as st_load

import vitrust
from vitrust import _vitrust
from vitrust._progress import Progress

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "U8": np.uint8, "BOOL": np.bool_,
          "BF16": ml_dtypes.bfloat16}
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12).filter(
    lambda n: n != "__metadata__" and not n.endswith((".vitrust.index", ".vitrust.values")))


@st.composite
def tensors(draw):
    out = {}
    for name in draw(st.lists(names, min_size=0, max_size=5, unique=True)):
        dt = draw(st.sampled_from(sorted(DTYPES)))
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
        raw = np.random.default_rng(len(out)).integers(0, 256, size=int(np.prod(shape)) * np.dtype(DTYPES[dt]).itemsize,
                                                        dtype=np.uint8)
        if dt == "BOOL":
            raw &= 1
        out[name] = (dt, shape, raw)
    return out


@settings(max_examples=40, deadline=None)
@given(tensors(), st.booleans(), st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=2))
def test_streamed_files_read_back_everywhere(tmp_path_factory, ts, planned, meta):
    meta.pop("vitrust", None)
    path = tmp_path_factory.mktemp("s") / "x.safetensors"
    plan = [(n, dt, list(s), 0) for n, (dt, s, _) in ts.items()] if planned else []
    w = _vitrust.ShardWriter(str(path), meta, plan)
    for n, (dt, s, raw) in ts.items():
        w.add_plain(n, dt, list(s), raw)
    data_bytes, stored = w.finish()
    assert sorted(stored) == sorted(ts) and data_bytes == sum(r.size for _, _, r in ts.values())
    theirs = st_load(str(path))  # Hugging Face's reader
    ours = vitrust.load_file(path)
    f = _vitrust.SafeOpen(str(path))
    assert f.metadata() == meta and f.keys() == sorted(ts)
    for n, (dt, s, raw) in ts.items():
        want = raw.view(DTYPES[dt]).reshape(s)
        assert theirs[n].tobytes() == want.tobytes() and ours[n].tobytes() == want.tobytes()
        assert ours[n].shape == s and f.get(n).tobytes() == raw.tobytes() and f.info(n)[:3] == ("plain", dt, list(s))


def test_an_aborted_writer_leaves_nothing(tmp_path):
    w = _vitrust.ShardWriter(str(tmp_path / "a.safetensors"), {}, [])
    w.add_plain("x", "F32", [2], np.zeros(8, np.uint8))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_the_progress_line_fits_80_columns_and_moves_within_a_tensor():
    p = Progress(120, 70_000_000_000, stream=io.StringIO())
    p.t0 = 0.0
    p.advance("model.layers.0.mlp.down_proj.weight", 2_000_000_000)
    p.start("model.layers.1.mlp.gate_proj.weight.with.a.very.long.name.indeed", 1_000_000_000)
    _, w, _ = p._current
    p._current = (p._current[0], w, 10.0)
    line = p.line(now=12.0)  # 2 G weights in 10 s; 2 s into a 1 G tensor
    assert len(line) <= 79 and "ETA" in line and line.endswith("indeed")
    assert "2.4G/70.0G" in line  # 2 G done plus 2 s at 200 M/s of the tensor in progress
    assert p._done(20.0) == p._done(30.0) == 2.95e9  # capped at 95 % of the tensor until it is done
