"""``prune_checkpoint``: prune a safetensors file, a sharded checkpoint or a
model directory, streaming tensor by tensor, here or on a Dask cluster.

The work is a list of independent shard tasks (``_shard.run_shard``); they run
one after another in this process, or as Dask tasks over a shared filesystem,
and give the same bytes either way. Each shard appears atomically; the index
JSON is written last, so a failed or interrupted run never leaves something
that looks like a complete checkpoint.
"""

from __future__ import annotations

import fnmatch
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import _checks, _format, _layout, _presets, _shard, _values, _vitrust
from ._calibrate import Calibrator
from ._prune import _config
from ._shard import ShardStats, ShardTask, Target, TensorPlan

PRUNABLE = tuple(st for _, st in _checks.VALUE_DTYPES.values())
PRUNE_OPTIONS = ("ratio", "flip_flops", "n_in", "comparator_bits", "threshold", "block_steps", "score", "seed",
                 "threads", "max_memory", "effort", "tap_seeds", "values", "group")
# The global calibration samples about this share of the selected weights,
# and at most this many weights in all (they are held in memory at once).
_SAMPLE_SHARE = 1 / 16
_SAMPLE_MAX = 16 << 20


class CheckpointError(ValueError):
    """A checkpoint or option that cannot be pruned as asked."""


@dataclass
class Result:
    """What ``prune_checkpoint`` did (or, for a dry run, would do)."""

    source: str
    output: str
    rate: float
    tensors: List[_shard.TensorStats]  # pruned ones, in order
    passed_through: int
    bytes_in: int  # files' sizes
    bytes_out: int  # files' sizes (a dry run: the expected size)
    files: List[str] = field(default_factory=list)  # written, relative to the output directory
    lam: Optional[float] = None  # the global multiplier
    passes: float = 0.0  # search work, in passes over the pruned weights
    seconds: float = 0.0
    search_seconds: float = 0.0
    dry_run: bool = False

    @property
    def weights(self) -> int:
        """Weights of the tensors selected for pruning."""
        return sum(t.weights for t in self.tensors)

    @property
    def achieved_rate(self) -> float:
        """The share of the selected weights pruned, over all of them."""
        kept = sum(t.nnz if t.nnz is not None else t.weights for t in self.tensors)
        return 1.0 - kept / max(self.weights, 1)


def _matches(name: str, patterns: Optional[Sequence[str]]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns or ())


def _target_rate(name: str, rate: float, rate_map: Optional[Mapping[str, float]]) -> Tuple[float, bool]:
    """The rate for ``name`` and whether ``rate_map`` set it (first matching glob wins)."""
    for pattern, r in (rate_map or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            return r, True
    return rate, False


def select(name: str, kind: str, dtype: str, shape: Sequence[int], include: Optional[Sequence[str]],
           exclude: Sequence[str], min_size: int) -> bool:
    """Whether a tensor is pruned; an explicitly included non-float tensor is an error."""
    if kind != "plain" or _matches(name, exclude):
        return False
    if include is not None and not _matches(name, include):
        return False
    if len(shape) < 2 or math.prod(shape) < min_size:
        return False
    if dtype not in PRUNABLE:
        if include is not None:
            np_name = {v: k for k, v in _format._NAMES.items()}.get(dtype, dtype)
            raise CheckpointError(f"tensor {name!r} has dtype {dtype} ({np_name}); only {_checks.VALUE_NAMES} "
                                  "weights can be pruned (narrow the include patterns)")
        return False
    return True


def _check_options(options: Dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(PRUNE_OPTIONS))
    if unknown:
        raise TypeError(f"prune_checkpoint: unknown option(s) {', '.join(unknown)} (prune options: "
                        f"{', '.join(PRUNE_OPTIONS)})")
    # Checked here, before any file is read or written.
    _values.encoding_arg(options.get("values", "raw"), options.get("group", _values.DEFAULT_GROUP))


def _check_rate_map(rate_map: Optional[Mapping[str, float]]) -> Optional[Dict[str, float]]:
    if rate_map is None:
        return None
    if not isinstance(rate_map, Mapping):
        raise TypeError(f"rate_map: expected a mapping of globs to rates, got {type(rate_map).__name__}")
    out = {}
    for k, v in rate_map.items():
        if not isinstance(k, str):
            raise TypeError(f"rate_map: keys are name globs (str), got {type(k).__name__}")
        try:
            out[k] = _checks.rate(v)
        except (TypeError, ValueError) as e:
            raise type(e)(f"rate_map[{k!r}]: {e}") from None
    return out


def _expected_bytes(t: TensorPlan, rate: float, options: Dict[str, Any]) -> int:
    """A pruned tensor's expected stored size: its index (exact) plus its kept values."""
    if not t.prune:
        return t.nbytes
    n = math.prod(t.shape)
    ratio, n_in = int(options.get("ratio", 5)), int(options.get("n_in") or 1)
    steps = int(options.get("block_steps", _checks.DEFAULT_BLOCK_STEPS))
    # Whole blocks of `steps` steps, then a last one of what is left (docs/format.md, "Index layout").
    full, rest = divmod(math.ceil(n / (ratio * n_in)), steps)
    words = full * math.ceil(steps * n_in / 64) + math.ceil(rest * n_in / 64)
    item = {st: size for size, st in _checks.VALUE_DTYPES.values()}[t.dtype]
    kept, enc = round(n * (1.0 - rate)), options.get("values", "raw")
    if enc == "raw" or item == 1:
        return 8 * words + kept * item
    table = math.ceil(kept / int(options.get("group", _values.DEFAULT_GROUP))) if enc.startswith("int") \
        else 1 << _values.code_bits(enc)
    return 8 * words + math.ceil(kept * _values.code_bits(enc) / 8) + table * min(item, 4)


def _list_tensors(src: _layout.Source, select_args: Tuple[Any, ...]) -> Tuple[List[TensorPlan], Dict[str, Dict[str, str]]]:
    """Every tensor of every shard, in shard order, names sorted within a shard."""
    plans: List[TensorPlan] = []
    metadata: Dict[str, Dict[str, str]] = {}
    names_by_shard: Dict[str, List[str]] = {}
    for path in src.shards:
        f = _vitrust.SafeOpen(path)
        metadata[path] = f.metadata()
        names_by_shard[path] = f.keys()
        for name in f.keys():
            kind, dtype, shape, nbytes = f.info(name)
            chosen = select(name, kind, dtype, shape, *select_args)
            plans.append(TensorPlan(name, path, kind, dtype, tuple(shape), nbytes, chosen))
        del f
    _layout.check_index_matches(src, names_by_shard)
    seen: Dict[str, str] = {}
    for t in plans:
        if t.name in seen:
            raise CheckpointError(f"tensor {t.name!r} is in both {seen[t.name]} and {t.file}")
        seen[t.name] = t.file
    return plans, metadata


def _tasks(src: _layout.Source, dst: str, plans: List[TensorPlan], metadata: Dict[str, Dict[str, str]],
           sizes: Dict[str, int], max_shard_size: Optional[int]) -> List[ShardTask]:
    """Output shards: the input's (same names), or new ones of at most ``max_shard_size`` bytes."""
    if src.is_file:
        return [ShardTask(dst, tuple(plans), metadata[src.shards[0]])]
    by_file: Dict[str, List[TensorPlan]] = {}
    for t in plans:
        by_file.setdefault(t.file, []).append(t)
    limit = max_shard_size if max_shard_size is not None else _layout.DEFAULT_MAX_SHARD
    mirrored = all(sum(sizes[t.name] for t in ts) <= limit for ts in by_file.values())
    if max_shard_size is None and mirrored:
        return [ShardTask(os.path.join(dst, os.path.basename(f)), tuple(ts), metadata[f]) for f, ts in by_file.items()]
    groups = _layout.split_sizes([sizes[t.name] for t in plans], limit)
    n = groups[-1] + 1 if groups else 1
    stem = os.path.basename(src.shards[0]).split("-0")[0].removesuffix(".safetensors")
    names = _layout.shard_names(stem, n)
    tasks = []
    for g in range(n):
        ts = tuple(t for t, gg in zip(plans, groups) if gg == g)
        meta = metadata[ts[0].file] if ts else {}
        tasks.append(ShardTask(os.path.join(dst, names[g]), ts, meta))
    return tasks


def _global_configs(plans: List[TensorPlan], rate: float, options: Dict[str, Any]) -> Dict[str, Any]:
    """Each globally pruned tensor's fixed VD: the comparator for the global rate, taps from ``seed``."""
    flip_flops, n_in, _ = _presets.resolve(options.get("effort", "default"), options.get("flip_flops"),
                                           options.get("n_in"), 1)
    config = _config(None, "abs", rate, None, options.get("ratio", 5), flip_flops, n_in,
                     options.get("comparator_bits"), options.get("threshold"), options.get("seed", 0))
    return {t.name: config for t in plans}


def _run(tasks: List[ShardTask], targets: Dict[str, Target], options: Dict[str, Any], client: Any,
         progress: Optional[_shard.Progress], report: bool) -> List[ShardStats]:
    per_task = [{t.name: targets[t.name] for t in task.tensors if t.prune} for task in tasks]
    if client is None:
        return [_shard.run_shard(task, tg, options, progress, report) for task, tg in zip(tasks, per_task)]
    return _run_dask(tasks, targets, options, client, progress, report)


def _run_dask(tasks: List[ShardTask], targets: Dict[str, Target], options: Dict[str, Any], client: Any,
              progress: Optional[_shard.Progress], report: bool) -> List[ShardStats]:
    """Each pruned tensor is a task writing a part file; each shard a task
    copying its parts and the rest of the source into place (so a checkpoint
    of few large shards still keeps many workers busy)."""
    from distributed import as_completed

    parts_dir = os.path.join(os.path.dirname(os.path.abspath(tasks[0].out)), f".vitrust-parts-{os.getpid()}")
    os.makedirs(parts_dir, exist_ok=True)
    futures: List[Any] = []
    try:
        shards = []
        for si, task in enumerate(tasks):
            paths, parts = {}, []
            for ti, t in enumerate(task.tensors):
                if t.prune:
                    paths[t.name] = os.path.join(parts_dir, f"{si}-{ti}.safetensors")
                    parts.append(client.submit(_shard.prune_part, t, targets[t.name], options, paths[t.name],
                                               report, pure=False, retries=2))
            futures += parts
            shards.append(client.submit(_shard.assemble_shard, task, paths, *parts, pure=False, retries=2))
        futures += shards
        for fut in as_completed(futures):  # type: ignore[no-untyped-call]
            r = fut.result()
            if progress and isinstance(r, _shard.TensorStats):
                progress("done", r.name, r.weights)
        return [f.result() for f in shards]
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def _calibrator(tasks: List[ShardTask], plans: List[TensorPlan], rate: float, options: Dict[str, Any],
                client: Any) -> Tuple[Calibrator, Dict[str, Any]]:
    """The global λ's calibration, summarised shard by shard (on the workers
    with a client), and each globally pruned tensor's fixed VD."""
    configs = _global_configs(plans, rate, options)
    steps = int(options.get("block_steps", _checks.DEFAULT_BLOCK_STEPS))
    total = sum(math.prod(t.shape) for t in plans)
    share = min(_SAMPLE_SHARE, _SAMPLE_MAX / max(total, 1))
    score = options.get("score", "abs")
    cal = Calibrator(score=score, share=share, threads=options.get("threads"))
    per_task = [{t.name: (configs[t.name], steps) for t in task.tensors if t.name in configs} for task in tasks]
    if client is None:
        parts = [_shard.sample_shard(task, share, c, score) for task, c in zip(tasks, per_task)]
    else:
        futures = client.map(_shard.sample_shard, tasks, [share] * len(tasks), per_task, [score] * len(tasks),
                             pure=False, retries=2)
        parts = client.gather(futures)
    for _, part in (p for ps in parts for p in ps):
        cal.add_part(part)
    return cal, configs


def prune_checkpoint(src: Any, dst: Any, rate: float, *, global_rate: bool = False,
                     rate_map: Optional[Mapping[str, float]] = None, client: Any = None,
                     include: Optional[Sequence[str]] = None, exclude: Sequence[str] = (), min_size: int = 1024,
                     max_shard_size: Optional[int] = None, force: bool = False, dry_run: bool = False,
                     progress: Optional[_shard.Progress] = None, report: bool = False,
                     **prune_options: Any) -> Result:
    """Prune every selected tensor of a checkpoint; the output mirrors the input.

    ``src`` is a ``.safetensors`` file, a ``*.safetensors.index.json`` or a
    directory holding either. A file gives the file ``dst``; a checkpoint the
    directory ``dst`` with the same shard names (or new shards of at most
    ``max_shard_size`` bytes; by default only when a shard would exceed 5 GB),
    a rewritten index naming every stored tensor, and every other file of the
    source directory copied. Each file keeps its metadata.

    Selected are floating-point tensors of two or more dimensions and at least
    ``min_size`` weights matching an ``include`` glob (default: all) and no
    ``exclude`` glob; the rest pass through bit for bit. Each is pruned to
    ``rate``, or to the rate of the first ``rate_map`` glob matching its name.
    ``global_rate=True`` finds one multiplier λ for all selected tensors not in
    ``rate_map`` so that together they prune ``rate`` (calibrated on samples).
    ``client`` (a ``dask.distributed.Client``) runs the shards on its workers,
    which must see the same paths; the bytes are those of a local run.
    ``prune_options`` go to ``vitrust.prune`` (``ratio``, ``effort``, ``seed``,
    ``threads``...). ``dry_run`` returns the plan and the expected output size
    and writes nothing.
    """
    t0 = time.perf_counter()
    rate = _checks.rate(rate)
    rmap = _check_rate_map(rate_map)
    _check_options(prune_options)
    min_size = _checks.integer(min_size, "min_size", 0)
    if max_shard_size is not None:
        max_shard_size = _checks.integer(max_shard_size, "max_shard_size", 1)
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    include = [include] if isinstance(include, str) else include
    source = _layout.resolve(os.fspath(src))
    dst = os.fspath(dst)
    plans, metadata = _list_tensors(source, (include, exclude, min_size))
    rates = {t.name: _target_rate(t.name, rate, rmap) for t in plans if t.prune}
    sizes = {t.name: _expected_bytes(t, rates.get(t.name, (rate, False))[0], prune_options) for t in plans}
    tasks = _tasks(source, dst, plans, metadata, sizes, max_shard_size)
    bytes_in = sum(os.path.getsize(p) for p in source.shards)
    pruned = [t for t in plans if t.prune]
    result = Result(source.path, dst, rate, [], len(plans) - len(pruned), bytes_in, 0, dry_run=dry_run)
    if dry_run:
        for t in pruned:
            r = rates[t.name][0]
            result.tensors.append(_shard.TensorStats(t.name, t.shape, t.dtype, t.nbytes, sizes[t.name],
                                                     nnz=round(math.prod(t.shape) * (1 - r))))
        result.bytes_out = sum(sizes.values())
        result.files = [os.path.relpath(task.out, dst) if not source.is_file else dst for task in tasks]
        return result

    if source.is_file:
        if os.path.exists(dst) and os.path.samefile(dst, source.shards[0]):
            raise CheckpointError(f"{dst}: is the input file; choose another output")
        if os.path.exists(dst) and not force:
            raise CheckpointError(f"{dst}: exists (pass force=True / --force to overwrite it)")
    else:
        _layout.prepare_dir(dst, source, force)
        _layout.copy_others(source, dst, _layout.other_files(source, dst))

    targets: Dict[str, Target] = {n: r for n, (r, _) in rates.items()}
    glob_names = [t for t in pruned if not rates[t.name][1]] if global_rate else []
    if not glob_names:
        stats = _run(tasks, targets, prune_options, client, progress, report)
        _finish(source, dst, stats, result)
        result.seconds = time.perf_counter() - t0
        return result

    # One λ for the global tensors: every full pass writes the shards, and
    # the λ the calibration settles on is one of those passes (rerun in the
    # rare case where it was not the last).
    cal, configs = _calibrator(tasks, glob_names, rate, prune_options, client)
    names = set(configs)
    again = [i for i, task in enumerate(tasks) if any(t.name in names for t in task.tensors)]
    stats = []
    last = [math.nan]

    def full(lam: float) -> int:
        targets.update({n: (lam, configs[n]) for n in names})
        if not stats:
            stats.extend(_run(tasks, targets, prune_options, client, progress, report))
        else:
            for i, st in zip(again, _run([tasks[i] for i in again], targets, prune_options, client, None, report)):
                stats[i] = st
        last[0] = lam
        return sum(t.nnz or 0 for st in stats for t in st.tensors if t.name in names)

    weights = sum(math.prod(t.shape) for t in glob_names)
    lam = cal.solve((1.0 - rate) * weights, full=full)
    if lam != last[0]:
        full(lam)
        cal.passes += 1.0
    result.lam = lam
    _finish(source, dst, stats, result)
    result.passes = cal.passes
    result.seconds = time.perf_counter() - t0
    return result


def _finish(source: _layout.Source, dst: str, stats: List[ShardStats], result: Result) -> None:
    """Collects the tensors' statistics and, for a checkpoint, writes the index last."""
    for st in stats:
        result.tensors.extend(t for t in st.tensors if t.nnz is not None)
        result.search_seconds += sum(t.search_seconds for t in st.tensors)
    if source.is_file:
        result.bytes_out = os.path.getsize(dst)
        result.files = [dst]
        return
    weight_map = {n: os.path.basename(st.out) for st in stats for n in st.stored}
    result.files = [os.path.basename(st.out) for st in stats]
    result.bytes_out = sum(os.path.getsize(st.out) for st in stats)
    if source.index_name is not None or len(stats) > 1:
        total = sum(st.data_bytes for st in stats)
        name = _layout.index_name_for(source)
        _layout.write_index(os.path.join(dst, name), weight_map, total, source.index_metadata)
        result.files.append(name)
    _layout.remove_stale_temps(dst)
