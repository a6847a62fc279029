"""The checkpoint pipeline's cluster path, run in this process by a client that executes each
task as it is submitted: the bytes must be those of a local run, the parts directory removed,
progress reported per tensor, and a failing task cancels the rest."""

import os

import pytest

from test_checkpoint import make_checkpoint

from vitrust import _checkpoint
from vitrust._checkpoint import prune_checkpoint

distributed = pytest.importorskip("distributed")


class Done:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


def _resolve(x):
    return x.result() if isinstance(x, Done) else x


class InlineClient:
    """submit/map/gather/cancel run at once in this process, as a cluster would run them."""

    def __init__(self, fail_on=None):
        self.submitted, self.cancelled, self.fail_on = [], None, fail_on
        self.kwargs = []

    def submit(self, fn, *args, **kwargs):
        self.submitted.append(fn.__name__)
        self.kwargs.append(kwargs)
        try:
            if self.fail_on == fn.__name__:
                raise RuntimeError("worker lost")
            return Done(fn(*[_resolve(a) for a in args]))
        except Exception as e:  # a task's failure surfaces from its result
            return Done(error=e)

    def map(self, fn, *iterables, **kwargs):
        return [self.submit(fn, *args, **kwargs) for args in zip(*iterables)]

    def gather(self, futures):
        return [f.result() for f in futures]

    def cancel(self, futures):
        self.cancelled = list(futures)


@pytest.fixture
def inline(monkeypatch):
    monkeypatch.setattr(distributed, "as_completed", lambda fs: iter(list(fs)))


def _files(root):
    return sorted(os.listdir(root))


@pytest.mark.parametrize("global_rate", [False, True])
def test_inline_client_gives_the_bytes_of_a_local_run(tmp_path, inline, global_rate):
    root = tmp_path / "m"
    make_checkpoint(str(root))
    local = prune_checkpoint(root, tmp_path / "local", 0.6, global_rate=global_rate, min_size=1000, report=True)
    client = InlineClient()
    events = []
    out = tmp_path / "cl"
    res = prune_checkpoint(root, out, 0.6, global_rate=global_rate, min_size=1000, client=client, report=True,
                           progress=lambda *e: events.append(e))
    assert res.files == local.files and len(local.files) == 3
    for f in local.files:
        assert (tmp_path / "local" / f).read_bytes() == (out / f).read_bytes(), f
    assert _files(tmp_path / "local") == _files(out)
    assert not [n for n in os.listdir(out) if n.startswith(".vitrust-parts")]
    assert res.lam == local.lam
    pruned = [t for t in local.tensors if t.nnz is not None]
    shards = [f for f in local.files if f.endswith(".safetensors")]
    runs, rest = divmod(client.submitted.count("prune_part"), len(pruned))  # a global λ may take more passes
    assert runs >= 1 and rest == 0 and (runs == 1 or global_rate)
    assert client.submitted.count("assemble_shard") == len(shards) * runs
    for fn, kw in zip(client.submitted, client.kwargs):
        if fn in ("prune_part", "assemble_shard"):
            assert kw == {"pure": False, "retries": 2}
    by_name = {t.name: t for t in res.tensors}
    for t in pruned:
        c = by_name[t.name]
        assert (c.nnz, c.shape, c.dtype, c.bytes_after) == (t.nnz, t.shape, t.dtype, t.bytes_after)
        assert c.retained == pytest.approx(t.retained)
        assert c.storage == t.storage
    done = [e for e in events if e[0] == "done"]
    assert sorted((n, w) for _, n, w in done) == sorted((t.name, t.weights) for t in pruned)  # the final pass
    assert client.cancelled is None


def test_a_failing_task_cancels_the_rest_and_removes_the_parts(tmp_path, inline):
    root = tmp_path / "m"
    make_checkpoint(str(root))
    client = InlineClient(fail_on="assemble_shard")
    out = tmp_path / "cl"
    with pytest.raises(RuntimeError, match="worker lost"):
        prune_checkpoint(root, out, 0.6, min_size=1000, client=client)
    assert client.cancelled is not None and len(client.cancelled) == len(client.submitted)
    assert not os.path.exists(out) or not [n for n in os.listdir(out) if n.startswith(".vitrust-parts")]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".vitrust-parts")]


def test_run_dask_places_parts_beside_the_output(tmp_path, inline, monkeypatch):
    root = tmp_path / "m"
    make_checkpoint(str(root))
    seen = []
    real = _checkpoint._shard.prune_part

    def spy(t, target, options, path, report=False):
        seen.append((os.path.dirname(path), os.path.basename(path), report))
        return real(t, target, options, path, report)

    monkeypatch.setattr(_checkpoint._shard, "prune_part", spy)
    out = tmp_path / "cl"
    prune_checkpoint(root, out, 0.6, min_size=1000, client=InlineClient())
    assert seen
    dirs = {d for d, _, _ in seen}
    assert dirs == {os.path.join(str(out), f".vitrust-parts-{os.getpid()}")}
    names = [n for _, n, _ in seen]
    assert len(set(names)) == len(names)
    assert all(n.endswith(".safetensors") and len(n.split("-")) == 2 for n in names)
    assert all(r is False for _, _, r in seen)
