"""What the ``vitrust`` commands do (``_cli`` only parses arguments).

``prune_file`` prunes every selected tensor of a checkpoint (floating point,
two or more dimensions, at least ``--min-size`` weights, matching the name
patterns) and passes the rest through; ``info`` prints a file's storage per
tensor; ``unpack`` writes the dense tensors back out.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _checks, _progress, load_file, prune, read_metadata, save_file
from ._sparse import ViterbiSparse

# The storage formats shown beside vitrust's own (keys of ViterbiSparse.storage()).
COMPARED = ("csr32", "relative-4", "bitmask")
_PRUNABLE = ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float32", "float64")


class CommandError(Exception):
    """A failure caused by the command's input or options."""


@dataclass
class Row:
    """One pruned tensor in the summary."""

    name: str
    shape: Tuple[int, ...]
    dtype: str
    rate: float
    bits_per_weight: float
    bytes_before: int
    bytes_after: int
    retained: float
    storage: Dict[str, Dict[str, float]]


def _matches(name: str, patterns: Optional[List[str]]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns or ())


def select(tensors: Dict[str, Any], include: Optional[List[str]], exclude: List[str], min_size: int) -> List[str]:
    """Names of the tensors to prune; an explicitly included non-float tensor is an error."""
    chosen = []
    for name, t in tensors.items():
        if isinstance(t, ViterbiSparse) or _matches(name, exclude):
            continue
        if include is not None and not _matches(name, include):
            continue
        if t.ndim < 2 or t.size < min_size:
            continue
        if t.dtype.name not in _PRUNABLE:
            if include is not None:
                raise CommandError(
                    f"tensor {name!r} has dtype {t.dtype}; only float16, bfloat16, float8, float32 and float64 "
                    "weights can be pruned (narrow --include)"
                )
            continue
        chosen.append(name)
    return chosen


def _retained(w: np.ndarray, sp: ViterbiSparse) -> float:
    """Sum of kept |w| over the sum of the ``nnz`` largest |w| (magnitude pruning)."""
    a = np.abs(w.astype(np.float64, copy=False)).ravel()
    k = sp.nnz
    if k == 0:
        return 1.0
    top = float(np.partition(a, a.size - k)[a.size - k :].sum())
    kept = float(np.abs(sp.values.astype(np.float64)).sum())
    return kept / top if top > 0 else 1.0


def _effort_options(effort: Optional[str]) -> Dict[str, Any]:
    if effort is None:
        return {}
    if "effort" not in inspect.signature(prune).parameters:
        raise CommandError("--effort: this version of vitrust.prune has no effort presets")
    return {"effort": effort}


def prune_file(args: Any) -> List[Row]:
    _checks.rate(args.rate)
    tensors = load_file(args.input, threads=args.threads)
    metadata = read_metadata(args.input)
    options = _effort_options(args.effort)
    if args.min_size < 0:
        raise CommandError(f"--min-size {args.min_size}: must be >= 0")
    names = select(tensors, args.include, args.exclude, args.min_size)
    if not names:
        print("vitrust: warning: no tensor matched; the output is a copy of the input", file=sys.stderr)
    total = sum(tensors[n].size for n in names)
    bar = _progress.Progress(len(names), total, enabled=not args.quiet)
    rows = []
    out: Dict[str, Any] = dict(tensors)
    try:
        for name in names:
            a = tensors[name]
            bar.start(name)
            sp = prune(a, args.rate, ratio=args.ratio, seed=args.seed, threads=args.threads, **options)
            out[name] = sp
            after = sp.index.nbytes + sp.values.nbytes
            rows.append(Row(name, tuple(a.shape), a.dtype.name, sp.rate, sp.bits_per_weight, a.nbytes, after,
                            _retained(a, sp), dict(sp.storage()) if args.plot else {}))
            bar.advance(name, a.size)
    finally:
        bar.close()
    save_file(out, args.output, metadata=metadata)
    _print_prune_summary(rows, tensors, names, args.input, args.output)
    if args.plot:
        from . import _report

        _report.plot(rows, args.plot)
        print(f"report: {args.plot}")
    return rows


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{int(n)} B"


def _shape(s: Tuple[int, ...]) -> str:
    return "x".join(map(str, s))


def _print_prune_summary(rows: List[Row], tensors: Dict[str, Any], names: List[str], src: str, dst: str) -> None:
    width = max([len(r.name) for r in rows] + [6])
    print(f"{'tensor':<{width}}  {'shape':>12}  {'dtype':>8}  {'rate':>7}  {'index b/w':>9}  "
          f"{'retained':>8}  {'before':>10}  {'after':>10}")
    for r in rows:
        print(f"{r.name:<{width}}  {_shape(r.shape):>12}  {r.dtype:>8}  {r.rate:>7.2%}  {r.bits_per_weight:>9.4f}  "
              f"{r.retained:>8.4f}  {_mib(r.bytes_before):>10}  {_mib(r.bytes_after):>10}")
    rest = [n for n in tensors if n not in set(names)]
    before = sum(r.bytes_before for r in rows)
    after = sum(r.bytes_after for r in rows)
    n_w = sum(math.prod(r.shape) for r in rows)
    kept = sum(math.prod(r.shape) * (1 - r.rate) for r in rows)
    print(f"total: {len(rows)} tensors pruned ({n_w} weights, rate {1 - kept / max(n_w, 1):.2%}), "
          f"{len(rest)} passed through")
    if rows:
        print(f"pruned tensors: {_mib(before)} -> {_mib(after)} ({after / before:.1%})")
    print(f"file: {src} {_mib(os.path.getsize(src))} -> {dst} {_mib(os.path.getsize(dst))}")


def info(path: str) -> None:
    tensors = load_file(path)
    names = list(tensors)
    width = max([len(n) for n in names] + [6])
    fmt_cols = "".join(f"{f:>11}" for f in ("viterbi",) + COMPARED)
    print(f"{path}: {len(names)} tensors, {_mib(os.path.getsize(path))}")
    print(f"{'':<{width}}  {'':>12}  {'':>8}  {'':>7}  {'---- index bits per weight ----':^44}")
    print(f"{'tensor':<{width}}  {'shape':>12}  {'dtype':>8}  {'rate':>7}{fmt_cols}  {'bytes':>10}")
    pruned = dense_bytes = stored = 0
    for name, t in tensors.items():
        if isinstance(t, ViterbiSparse):
            st = t.storage()
            cols = "".join(f"{_bpw(st, f):>11}" for f in ("viterbi",) + COMPARED)
            nbytes = t.index.nbytes + t.values.nbytes
            pruned += 1
            dense_bytes += t.size * t.values.itemsize
            print(f"{name:<{width}}  {_shape(t.shape):>12}  {str(t.dtype):>8}  {t.rate:>7.2%}{cols}  "
                  f"{_mib(nbytes):>10}")
        else:
            nbytes = t.nbytes
            dense_bytes += nbytes
            print(f"{name:<{width}}  {_shape(t.shape):>12}  {t.dtype.name:>8}  {'dense':>7}"
                  f"{'':>{11 * (1 + len(COMPARED))}}  {_mib(nbytes):>10}")
        stored += nbytes
    print(f"total: {pruned} pruned, {len(names) - pruned} dense; {_mib(stored)} stored, "
          f"{_mib(dense_bytes)} as dense ({stored / max(dense_bytes, 1):.1%})")


def _bpw(table: Dict[str, Dict[str, float]], fmt: str) -> str:
    """Bits per weight of ``fmt`` in a storage table (the first key starting with ``fmt``)."""
    for key, row in table.items():
        if key == fmt or key.startswith(fmt):
            return f"{row['bits_per_weight']:.4f}"
    return "-"


def unpack(path: str, output: str, threads: Optional[int], max_output: Optional[int] = None,
           force: bool = False) -> None:
    """Writes the dense tensors of ``path`` to ``output``, with its metadata.

    A pruned tensor expands to its full dense size, which a small file can
    declare by the gigabyte: the size to write is stated first, and above
    ``max_output`` (default 64 times the input's size) refused unless ``force``.
    """
    tensors = load_file(path, threads=threads)
    metadata = read_metadata(path)
    size = sum(t.size * t.values.itemsize if isinstance(t, ViterbiSparse) else t.nbytes for t in tensors.values())
    limit = 64 * os.path.getsize(path) if max_output is None else max_output
    print(f"{output}: writing {_mib(size)} of tensors", flush=True)
    if size > limit and not force:
        raise CommandError(f"{output}: the dense tensors take {size} bytes, more than --max-output {limit} "
                           "(raise --max-output or pass --force)")
    dense = {n: (t.to_dense(threads=threads) if isinstance(t, ViterbiSparse) else t) for n, t in tensors.items()}
    n_sparse = sum(isinstance(t, ViterbiSparse) for t in tensors.values())
    save_file(dense, output, metadata=metadata)
    print(f"{output}: {len(dense)} tensors ({n_sparse} expanded), {_mib(os.path.getsize(output))}")
