"""One output shard as an independent task: read tensors from memory-mapped
input one at a time, prune the selected ones, stream everything into the
shard. The same picklable function runs in this process or on a Dask worker;
given the same task it writes the same bytes wherever it runs (results never
depend on the thread count).

While tensor ``i + 1`` is searched, tensor ``i`` is written by a second thread
(the search and the write both release the interpreter) and the OS reads
tensor ``i + 2`` ahead; at most one finished tensor waits, which bounds memory
by a few copies of the largest tensor.
"""

from __future__ import annotations

import sys
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from . import _checks, _format, _scores, _values, _vitrust
from ._calibrate import Part
from ._prune import RateWarning, prune, quantized
from ._sparse import ViterbiSparse
from ._vitrust import VDConfig

# A pruned tensor's target: a rate (rate control per tensor) or a global
# multiplier with the tensor's fixed VD.
Target = Union[float, Tuple[float, VDConfig]]
Progress = Callable[[str, str, int], None]
# Tap masks a pruned tensor's VD may have, at most, for the header's room
# (n_out <= 64 outputs of up to 8 comparator bits): an estimate, never a limit.
_TAPS_BOUND = 5 * 4 * 8


@dataclass(frozen=True)
class TensorPlan:
    """One tensor of a task: where it is read from and whether it is pruned."""

    name: str
    file: str
    kind: str  # "plain" or "sparse" (already pruned: passed through)
    dtype: str
    shape: Tuple[int, ...]
    nbytes: int  # stored bytes in the source
    prune: bool = False


@dataclass(frozen=True)
class ShardTask:
    """One output shard: its path, its tensors in order and the file's metadata."""

    out: str
    tensors: Tuple[TensorPlan, ...]
    metadata: Dict[str, str] = field(default_factory=dict)


@dataclass
class TensorStats:
    """What happened to one tensor: sizes before and after, and for a pruned one its figures."""

    name: str
    shape: Tuple[int, ...]
    dtype: str
    bytes_before: int
    bytes_after: int
    nnz: Optional[int] = None  # None: passed through
    lam: Optional[float] = None
    bits_per_weight: float = 0.0
    search_seconds: float = 0.0  # in vitrust.prune
    retained: Optional[float] = None
    storage: Dict[str, Dict[str, float]] = field(default_factory=dict)
    # The RateWarning's text when no lam came within 0.2 points of the requested rate.
    warning: Optional[str] = None
    requested: Optional[float] = None  # the rate asked for (None under a global lam)

    @property
    def weights(self) -> int:
        """Number of weights (dense elements)."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def rate(self) -> float:
        """The share of weights pruned (0 for a tensor passed through)."""
        return 1.0 - (self.nnz if self.nnz is not None else self.weights) / max(self.weights, 1)


@dataclass
class ShardStats:
    """One written shard: its path, data bytes, stored names, tensors and time taken."""

    out: str
    data_bytes: int
    stored: List[str]
    tensors: List[TensorStats]
    seconds: float


_ITEMSIZE = {st: size for size, st in _checks.VALUE_DTYPES.values()}
_PLAIN_NUMPY = {v: k for k, v in _format._NAMES.items()}


def plain_array(raw: np.ndarray, dtype: str, shape: Tuple[int, ...], name: str) -> np.ndarray:
    """A tensor's bytes viewed as its own numpy dtype (no copy unless the file
    places it at an offset its dtype does not divide: safetensors packs tensors
    without padding, and the core takes aligned arrays only); bfloat16 and
    float8 need the ml_dtypes package."""
    dt: np.dtype
    if dtype in _format._VALUE_NUMPY:
        dt = _checks.stored_dtype(dtype, f"tensor {name!r}")
    elif dtype in _PLAIN_NUMPY:
        dt = _PLAIN_NUMPY[dtype]
    else:
        raise TypeError(f"tensor {name!r}: dtype {dtype} is not supported here")
    a = raw.view(dt.newbyteorder("<")).reshape(shape)
    return a if a.flags.aligned else a.copy()


def sparse_from(item: Tuple[Any, ...], name: str, threads: Optional[int]) -> ViterbiSparse:
    """A ``ViterbiSparse`` from ``SafeOpen.get``'s tuple for a pruned tensor."""
    dt, shape, values, config, block_steps, lam, index, thresholds, order = item
    if isinstance(values, tuple):
        vals: Any = _format.sparse_values(name, dt, values)
    else:  # raw bytes of the mapped file, viewed (and aligned) here
        vals = plain_array(values, dt, (values.size // _ITEMSIZE[dt],), name)
    return ViterbiSparse._from_core(tuple(shape), config, block_steps, index, vals, lam, threads=threads,
                                    thresholds=thresholds, order=order)


class Sources:
    """Source files opened once per task (memory-mapped, validated at open)."""

    def __init__(self) -> None:
        self._open: Dict[str, _vitrust.SafeOpen] = {}

    def __call__(self, path: str) -> _vitrust.SafeOpen:
        f = self._open.get(path)
        if f is None:
            f = self._open[path] = _vitrust.SafeOpen(path)
        return f


def worker_threads(threads: Optional[int]) -> Optional[int]:
    """On a Dask worker, its own thread count unless one was given."""
    distributed = sys.modules.get("distributed")  # a worker has it; importing it costs ~30 MB
    if threads is not None or distributed is None:
        return threads
    try:
        return int(distributed.get_worker().state.nthreads)
    except (ValueError, AttributeError):
        return None


def _writer_plan(t: TensorPlan, f: _vitrust.SafeOpen) -> Tuple[str, str, List[int], int]:
    if t.prune:
        return (t.name, t.dtype, list(t.shape), _TAPS_BOUND)
    if t.kind == "sparse":
        item = f.get(t.name)
        return (t.name, item[0], list(t.shape), len(item[3].taps))
    return (t.name, t.dtype, list(t.shape), 0)


def _prune_one(w: np.ndarray, target: Target, options: Dict[str, Any]) -> ViterbiSparse:
    if isinstance(target, tuple):
        lam, config = target
        keep = {k: options[k] for k in ("block_steps", "score", "threads", "max_memory", "values", "group")
                if k in options}
        # λ was calibrated on the row-major stream; the other order would move the global count.
        return prune(w, lam=lam, config=config, order="C", **keep)
    return prune(w, float(target), **options)


def _write(w: _vitrust.ShardWriter, f: _vitrust.SafeOpen, t: TensorPlan, sp: Optional[ViterbiSparse],
           part: Optional[str] = None) -> None:
    if sp is not None:
        values = _format.stored_values(sp, None, _values.DEFAULT_GROUP)  # as pruned: raw or encoded
        w.add_sparse(t.name, _values.value_name(sp.dtype), list(sp.shape), values,
                     sp.config, sp.block_steps, sp.lam, sp.index, sp.thresholds, sp.order)
    elif t.kind == "sparse" or part is not None:
        g = f if part is None else _vitrust.SafeOpen(part)
        dt, shape, values, config, block_steps, lam, index, thresholds, order = g.get(t.name)
        w.add_sparse(t.name, dt, list(shape), values, config, block_steps, lam, index, thresholds, order)
    else:
        w.add_plain(t.name, t.dtype, list(t.shape), f.get(t.name))
    f.release(t.name)


def _search(f: _vitrust.SafeOpen, t: TensorPlan, target: Target, options: Dict[str, Any],
            report: bool) -> Tuple[ViterbiSparse, TensorStats]:
    """Prunes one tensor read from ``f``; its pages are handed back as soon as they are not needed."""
    st = TensorStats(t.name, t.shape, t.dtype, t.nbytes, t.nbytes)
    st.requested = None if isinstance(target, tuple) else float(target)
    w = plain_array(f.get(t.name), t.dtype, t.shape, t.name)
    s0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RateWarning)
        # Encoded after the statistics, which are the mask's.
        sp = _prune_one(w, target, dict(options, values="raw"))
    for c in caught:
        if issubclass(c.category, RateWarning):
            st.warning = str(c.message)
        else:
            warnings.warn_explicit(c.message, c.category, c.filename, c.lineno)
    st.search_seconds = time.perf_counter() - s0
    st.nnz, st.lam, st.bits_per_weight = sp.nnz, sp.lam, sp.bits_per_weight
    if report:
        st.retained = _scores.retained_of(w, sp.values)
    sp = quantized(sp, options.get("values", "raw"), options.get("group", _values.DEFAULT_GROUP),
                   options.get("score", "abs"))
    st.bytes_after = sp.nbytes
    if report:
        st.storage = dict(sp.storage())
    return sp, st


def run_shard(task: ShardTask, targets: Dict[str, Target], options: Dict[str, Any],
              progress: Optional[Progress] = None, report: bool = False,
              parts: Optional[Dict[str, Tuple[str, TensorStats]]] = None) -> ShardStats:
    """Writes ``task.out``: pruned tensors at their ``targets``, the rest passed through.

    ``options`` go to ``vitrust.prune``; ``report`` adds retained importance
    and the storage table per pruned tensor (costly on large tensors).
    ``parts`` gives, for tensors already pruned by ``prune_part``, the file
    holding the result and its statistics: they are copied, not searched.
    """
    t0 = time.perf_counter()
    options = dict(options, threads=worker_threads(options.get("threads")))
    parts = parts or {}
    files = Sources()
    plan = [_writer_plan(t, files(t.file)) for t in task.tensors]
    writer = _vitrust.ShardWriter(task.out, dict(task.metadata), plan)
    stats: List[TensorStats] = []
    pending: Optional[Future[None]] = None
    try:
        with ThreadPoolExecutor(1) as pool:
            for i, t in enumerate(task.tensors):
                f = files(t.file)
                if i + 1 < len(task.tensors):
                    nxt = task.tensors[i + 1]
                    files(nxt.file).prefetch(nxt.name)
                sp, st, part = None, TensorStats(t.name, t.shape, t.dtype, t.nbytes, t.nbytes), None
                if t.name in parts:
                    part, st = parts[t.name]
                elif t.prune:
                    if progress:
                        progress("start", t.name, st.weights)
                    sp, st = _search(f, t, targets[t.name], options, report)
                    if progress:
                        progress("done", t.name, st.weights)
                stats.append(st)
                if pending is not None:
                    pending.result()
                pending = pool.submit(_write, writer, f, t, sp, part)
                del sp
            if pending is not None:
                pending.result()
        data_bytes, stored = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return ShardStats(task.out, data_bytes, stored, stats, time.perf_counter() - t0)


def prune_part(t: TensorPlan, target: Target, options: Dict[str, Any], path: str, report: bool = False) -> TensorStats:
    """Prunes one tensor into a file of its own (a task finer than a shard, for
    a cluster): ``assemble_shard`` copies it into its shard, bytes unchanged."""
    options = dict(options, threads=worker_threads(options.get("threads")))
    f = _vitrust.SafeOpen(t.file)
    sp, st = _search(f, t, target, options, report)
    w = _vitrust.ShardWriter(path, {}, [_writer_plan(t, f)])
    try:
        _write(w, f, t, sp)
        w.finish()
    except BaseException:
        w.abort()
        raise
    return st


def assemble_shard(task: ShardTask, paths: Dict[str, str], *stats: TensorStats) -> ShardStats:
    """Writes a shard from its pruned parts (``paths``: name to part file) and
    the source; ``stats`` are the parts' statistics (Dask passes the results of
    the ``prune_part`` tasks here, which makes this task wait for them)."""
    by_name = {s.name: s for s in stats}
    return run_shard(task, {}, {}, parts={n: (p, by_name[n]) for n, p in paths.items()})


def sample_shard(task: ShardTask, share: float, configs: Dict[str, Tuple[VDConfig, int]],
                 score: str) -> List[Tuple[str, Part]]:
    """The calibration's summary of each tensor named in ``configs`` (its
    fixed VD and block steps): its pieces, about ``share`` of its steps, and a
    strided subsample of its scores (see ``vitrust._calibrate``)."""
    files = Sources()
    out = []
    for t in task.tensors:
        if t.name not in configs:
            continue
        config, steps = configs[t.name]
        f = files(t.file)
        flat = plain_array(f.get(t.name), t.dtype, t.shape, t.name).reshape(-1)
        out.append((t.name, Part(flat, config, steps, score, share)))
        f.release(t.name)
    return out
