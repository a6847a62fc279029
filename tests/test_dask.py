"""The checkpoint pipeline on a real Dask cluster (two worker processes on
this machine, a shared filesystem): the same bytes as a local run."""

import os

import pytest

from test_checkpoint import make_checkpoint

from vitrust._checkpoint import prune_checkpoint

distributed = pytest.importorskip("distributed")  # the test extra installs it


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.mark.parametrize("global_rate", [False, True])
def test_dask_gives_the_shards_of_a_local_run(tmp_path, client, global_rate):
    root = tmp_path / "m"
    make_checkpoint(str(root))
    local = prune_checkpoint(root, tmp_path / "local", 0.6, global_rate=global_rate, min_size=1000)
    dask = prune_checkpoint(root, tmp_path / "dask", 0.6, global_rate=global_rate, min_size=1000, client=client)
    assert local.files == dask.files and len(local.files) == 3
    for f in local.files:
        assert (tmp_path / "local" / f).read_bytes() == (tmp_path / "dask" / f).read_bytes(), f
    assert sorted(os.listdir(tmp_path / "local")) == sorted(os.listdir(tmp_path / "dask"))
    assert dask.lam == local.lam and (dask.lam is not None) == global_rate
