"""What the ``vitrust`` commands do (``_cli`` only parses arguments).

``prune_file`` prunes a file, a sharded checkpoint or a model directory
through ``prune_checkpoint`` (streamed, bounded memory); ``info`` prints the
storage of each tensor; ``unpack`` writes the dense tensors back out. Tables
fit 80 columns: long names and shapes are cut from the left.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _checks, _layout, _progress, _shard, _unpack, _vitrust
from ._checkpoint import CheckpointError, Result, prune_checkpoint
from ._progress import _fit

# The storage formats whose totals are shown beside vitrust's (keys of
# ViterbiSparse.storage(); the last is Deep Compression's relative-5+codebookB).
COMPARED = ("csr32", "bitmask", "relative-5+")
WIDTH = 79


class CommandError(Exception):
    """A failure caused by the command's input or options."""


@dataclass
class Row:
    """One pruned tensor in the report plot."""

    name: str
    shape: Tuple[int, ...]
    dtype: str
    rate: float
    bits_per_weight: float
    bytes_before: int
    bytes_after: int
    retained: float
    storage: Dict[str, Dict[str, float]]
    # The rate asked for, when no lam came within 0.2 points of it (a RateWarning).
    missed: Optional[float] = None


def _mib(n: float) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.2f} {unit}" if unit != "KiB" else f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def _shape(s: Sequence[int]) -> str:
    return "x".join(map(str, s))


def table(rows: List[List[str]], widths: List[int], right: Sequence[bool], sep: int = 2) -> List[str]:
    """Lines of a table whose first column takes what the others leave of 79 columns."""
    fixed = sum(widths[1:]) + sep * (len(widths) - 1)
    first = max(6, min(max(len(r[0]) for r in rows), WIDTH - fixed))
    out = []
    for r in rows:
        cells = [_fit(r[0], first).ljust(first)]
        for c, w, rt in zip(r[1:], widths[1:], right[1:]):
            c = _fit(c, w)
            cells.append(c.rjust(w) if rt else c.ljust(w))
        out.append((" " * sep).join(cells).rstrip())
    return out


def _rate_map(path: Optional[str]) -> Optional[Dict[str, float]]:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CommandError(f"--rate-map {path}: not a readable JSON file ({e})") from None
    if not isinstance(doc, dict):
        raise CommandError(f"--rate-map {path}: expected a JSON object of name globs to rates")
    return doc


def _client(address: Optional[str]) -> Any:
    if address is None:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise CommandError('--scheduler needs Dask: pip install "vitrust[dask]"') from None
    return Client(address)  # type: ignore[no-untyped-call]


def _options(args: Any) -> Dict[str, Any]:
    opts: Dict[str, Any] = {"ratio": args.ratio, "seed": args.seed, "threads": args.threads}
    if args.effort is not None:
        opts["effort"] = args.effort
    if args.values != "raw":
        opts.update(values=args.values, group=args.group)
    return opts


def prune_file(args: Any) -> Result:
    _checks.rate(args.rate)
    if args.min_size < 0:
        raise CommandError(f"--min-size {args.min_size}: must be >= 0")
    client = _client(args.scheduler)
    bar = None
    try:
        plan = prune_checkpoint(args.input, args.output, args.rate, global_rate=args.global_rate,
                                rate_map=_rate_map(args.rate_map), include=args.include, exclude=args.exclude,
                                min_size=args.min_size, max_shard_size=args.max_shard_size, dry_run=True,
                                **_options(args))
        if not plan.tensors:
            print("vitrust: warning: no tensor matched the selection (floating point, 2+ dimensions, "
                  f"at least --min-size {args.min_size} weights, --include/--exclude); "
                  "the output would be a copy of the input", file=sys.stderr)
        if args.dry_run:
            _print(plan, args, dry=True)
            return plan
        quiet = args.quiet or args.json
        bar = _progress.Progress(len(plan.tensors), plan.weights, enabled=not quiet)
        res = prune_checkpoint(args.input, args.output, args.rate, global_rate=args.global_rate,
                               rate_map=_rate_map(args.rate_map), client=client, include=args.include,
                               exclude=args.exclude, min_size=args.min_size, max_shard_size=args.max_shard_size,
                               force=args.force, progress=bar, report=bool(args.plot), **_options(args))
    except CheckpointError as e:
        raise CommandError(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
        if client is not None:
            client.close()
    _print(res, args, dry=False)
    if args.plot:
        from . import _report

        rows = [Row(t.name, t.shape, t.dtype, t.rate, t.bits_per_weight, t.bytes_before, t.bytes_after,
                    t.retained if t.retained is not None else 1.0, t.storage,
                    None if t.warning is None else t.requested) for t in res.tensors]
        _report.plot(rows, args.plot)
        print(f"report: {args.plot}")
    return res


def summary(res: Result) -> Dict[str, Any]:
    """The result as plain JSON data (``--json``)."""
    return {
        "input": res.source, "output": res.output, "dry_run": res.dry_run, "rate_target": res.rate,
        "rate": res.achieved_rate, "lam": res.lam, "passes": res.passes,
        "tensors": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "rate": t.rate, "nnz": t.nnz,
                     "bits_per_weight": t.bits_per_weight, "bytes_before": t.bytes_before,
                     "bytes_after": t.bytes_after} for t in res.tensors],
        "pruned": len(res.tensors), "passed_through": res.passed_through, "weights": res.weights,
        "bytes_in": res.bytes_in, "bytes_out": res.bytes_out, "files": res.files,
        "seconds": res.seconds, "search_seconds": res.search_seconds,
        "weights_per_second": res.weights / res.seconds if res.seconds > 0 else None,
    }


def _print(res: Result, args: Any, dry: bool) -> None:
    if args.json:
        print(json.dumps(summary(res), indent=2))
        return
    if res.tensors:
        head = ["tensor", "shape", "dtype", "rate", "idx b/w", "before", "after"]
        rows = [head] + [[t.name, _shape(t.shape), t.dtype, f"{t.rate:.2%}" + ("!" if t.warning else ""),
                          "-" if dry else f"{t.bits_per_weight:.3f}", _mib(t.bytes_before), _mib(t.bytes_after)]
                         for t in res.tensors]
        for line in table(rows, [0, 11, 5, 6, 7, 10, 10], [False, True, True, True, True, True, True]):
            print(line)
    off = [t for t in res.tensors if t.warning]
    for t in off:
        print(f"vitrust: warning: {t.name}: {t.warning}", file=sys.stderr)
    if off:
        print(f"! {len(off)} tensor(s) off the requested rate by more than 0.2 points: no lam reaches it "
              "with their VD (the closest was kept)")
    n = len(res.tensors)
    verb = "would be pruned" if dry else "pruned"
    print(f"total: {n} tensors {verb} ({_count(res.weights)} weights, rate "
          f"{res.achieved_rate:.2%}), {res.passed_through} passed through")
    if res.lam is not None:
        print(f"global: one lambda = {res.lam:.6g} for all, {res.passes:.2f} search passes")
    what = "expected output" if dry else "output"
    print(f"input {_mib(res.bytes_in)} -> {what} {_mib(res.bytes_out)} ({res.bytes_out / max(res.bytes_in, 1):.1%})")
    if dry:
        print("dry run: nothing written")
    else:
        print(f"wrote {res.output}" + (f" ({len(res.files)} files)" if len(res.files) > 1 else ""))


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else str(n)


def info(path: str) -> None:
    source = _layout.resolve(path)
    head = ["tensor", "shape", "dtype", "rate", "index", "total", "csr32", "bmask", "deepc", "bytes"]
    rows: List[List[str]] = [head]
    pruned = dense_bytes = stored = n = 0
    notes: List[str] = []
    for shard in source.shards:
        f = _vitrust.SafeOpen(shard)
        for name in f.keys():
            kind, dtype, shape, nbytes = f.info(name)
            n += 1
            stored += nbytes
            if kind == "sparse":
                sp = _shard.sparse_from(f.get(name), name, None)
                st = sp.storage()  # the vitrust column counts per-block thresholds' bits
                if sp.thresholds is not None or sp.order != "C":
                    notes.append(f"{name}: {_stream(sp)}")
                if sp.encoded is not None:
                    e = sp.encoded
                    notes.append(f"{name}: values {e.encoding}" + (f", group {e.group}" if e.group else ""))
                cols = [_bpw(st, "viterbi")] + [_bpw(st, fmt, "total_bits_per_weight")
                                                for fmt in ("viterbi",) + COMPARED]
                pruned += 1
                dense_bytes += sp.size * sp.dtype.itemsize
                rows.append([name, _shape(shape), dtype, f"{sp.rate:.2%}", *cols, _mib(nbytes)])
                del sp
            else:
                dense_bytes += nbytes
                rows.append([name, _shape(shape), dtype, "dense", "", "", "", "", "", _mib(nbytes)])
            f.release(name)
        del f
    size = sum(os.path.getsize(s) for s in source.shards)
    files = f" in {len(source.shards)} files" if len(source.shards) > 1 else ""
    print(f"{path}: {n} tensors{files}, {_mib(size)}")
    lines = table(rows, [0, 11, 5, 6, 5, 5, 5, 5, 5, 9], [False] + [True] * 9, sep=1)
    banner = "--- bits per weight: index, index + values ---"
    print(" " * max(0, len(lines[0]) - 10 - len(banner)) + banner)
    for line in lines:
        print(line)
    for note in notes:
        print(note)
    print(f"total: {pruned} pruned, {n - pruned} dense; {_mib(stored)} stored, "
          f"{_mib(dense_bytes)} as dense ({stored / max(dense_bytes, 1):.1%})")
    if pruned:
        print("index, total: vitrust's index, and index + values (as stored)\n"
              "csr32, bmask: total of CSR (32-bit) or a bitmask, the values at their dtype\n"
              "deepc: total of Deep Compression's 5-bit relative index and codebook (B bits,\n"
              "       the tensor's if encoded, else 5), before Huffman coding")
        print("note: pruned tensors are stored as NAME.vitrust.index, .values or .codes, ...;\n"
              "other readers see those: expanding it needs vitrust (`vitrust unpack`)")


def _stream(sp: Any) -> str:
    """A format 2 tensor's order and comparator, for ``info``: the per-block
    thresholds cost ``comparator_bits`` each, counted in the vitrust column."""
    c = sp.config
    if sp.thresholds is None:
        comparator = f"threshold {c.threshold}/{2 ** c.comparator_bits}"
    else:
        t = sp.thresholds
        span = f"{int(t.min())}..{int(t.max())}" if t.size else "none"
        comparator = (f"per-block thresholds {span}/{2 ** c.comparator_bits} "
                      f"({c.comparator_bits} bits a block)")
    return f"order {sp.order}, {comparator}"


def _bpw(table_: Dict[str, Dict[str, float]], fmt: str, column: str = "bits_per_weight") -> str:
    """A bits-per-weight ``column`` of ``fmt`` in a storage table (the first key starting with ``fmt``)."""
    for key, row in table_.items():
        if key == fmt or key.startswith(fmt):
            b = row[column]
            return f"{b:.3f}" if b < 10 else f"{b:.2f}"
    return "-"


def unpack(path: str, output: str, threads: Optional[int], force: bool = False,
           max_output: Optional[int] = None) -> None:
    dense, _ = _unpack.sizes(path)
    print(f"{output}: writing {_mib(dense)} of tensors", flush=True)
    r = _unpack.unpack(path, output, force=force, threads=threads, max_output=max_output)
    print(f"{output}: {r['tensors']} tensors ({r['expanded']} expanded), {_mib(r['bytes'])}")


