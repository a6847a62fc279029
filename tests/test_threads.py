"""Thread control: ``threads=``, ``VITRUST_NUM_THREADS`` and forked workers."""

import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest

import vitrust

W = np.random.default_rng(7).standard_normal((300, 400)).astype(np.float32)


def _run(code, env_value):
    env = dict(os.environ)
    env.pop("VITRUST_NUM_THREADS", None)
    if env_value is not None:
        env["VITRUST_NUM_THREADS"] = env_value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value, threads", [("1", 1), ("3", 3), (" 2 ", 2)])
def test_environment_variable_sets_the_default_pool(value, threads):
    r = _run("import vitrust; print(vitrust.default_threads())", value)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == threads


def test_unset_environment_variable_means_one_thread_per_core():
    r = _run("import vitrust; print(vitrust.default_threads())", None)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == len(os.sched_getaffinity(0)) or int(r.stdout) == os.cpu_count()


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5", "4096"])
def test_garbage_in_the_environment_variable_is_a_clear_error(value):
    code = (
        "import numpy as np, vitrust\n"
        "try:\n"
        "    vitrust.prune(np.ones((10, 10), np.float32), 0.5)\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e)\n"
        "print(vitrust.prune(np.ones((10, 10), np.float32), 0.5, threads=2).nnz > 0)\n"
    )
    r = _run(code, value)
    assert r.returncode == 0, r.stderr
    assert "ValueError: VITRUST_NUM_THREADS" in r.stdout and repr(value.strip()) in r.stdout.replace('"', "'")
    assert r.stdout.strip().endswith("True")  # an explicit thread count still works


def test_results_do_not_depend_on_the_environment_variable():
    code = "import numpy as np, vitrust, sys; w = np.random.default_rng(1).standard_normal((200, 300)); " \
           "sys.stdout.write(vitrust.prune(w, 0.8).index.tobytes().hex())"
    one, three = _run(code, "1"), _run(code, "3")
    assert one.returncode == 0 and three.returncode == 0, one.stderr + three.stderr
    assert one.stdout == three.stdout and len(one.stdout) > 0


def _child(q):
    # Both the default pool (a fresh one in this process) and an explicit one.
    sp = vitrust.prune(W, 0.9)
    sp2 = vitrust.prune(W, 0.9, threads=2)
    q.put((sp.index.tobytes(), sp2.index.tobytes(), int(vitrust.default_threads())))


def test_forked_children_prune_after_the_parent_used_its_pool():
    parent = vitrust.prune(W, 0.9)  # the parent's default pool now has running threads
    assert vitrust.default_threads() >= 1
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(q,)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for idx, idx2, n in results:
        assert idx == parent.index.tobytes() and idx2 == idx and n == vitrust.default_threads()
    # and the parent's own pool still works afterwards
    np.testing.assert_array_equal(vitrust.prune(W, 0.9).index, parent.index)


def test_fork_pool_workers_expand_and_save(tmp_path):
    sp = vitrust.prune(W, 0.7)
    with mp.get_context("fork").Pool(2) as pool:
        masks = pool.map(_mask_of, [sp] * 4)
    for m in masks:
        np.testing.assert_array_equal(m, sp.mask())


def _mask_of(sp):
    return sp.mask()
