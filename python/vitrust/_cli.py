"""The ``vitrust`` command line: ``prune``, ``info``, ``unpack`` and ``demo``.

Each command takes a ``.safetensors`` file, a sharded checkpoint's
``*.safetensors.index.json`` or a directory holding either, and streams it
tensor by tensor (plain checkpoints go in and any safetensors reader opens
what comes out). Failures a user can cause (a missing file, a damaged one, an
unsupported dtype, an output that exists) end with one line
``vitrust: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import List, Optional, Sequence

from . import _commands, _layout, _presets, _values

SOURCE_HELP = "a .safetensors file, a *.safetensors.index.json or a model directory"


class CliError(Exception):
    """A failure to report as one line and exit status 2."""


def _size(text: str) -> int:
    """``5GB``, ``500MB``, ``2GiB`` or a byte count."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?)?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 5GB, 500MB or 1000000")
    unit = (m.group(2) or "").lower()
    base = 1024 if unit.endswith("i") else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit[:1]]
    return int(float(m.group(1)) * base**power)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="vitrust",
        description="Viterbi-based pruning with a fixed-rate index, for safetensors checkpoints.",
    )
    p.add_argument("--version", action="version", version=f"vitrust {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="prune an embedded 1024x1024 matrix and compare index costs")
    demo.add_argument("--rate", type=float, default=0.9, help="share of weights to prune (default 0.9)")
    demo.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")

    pr = sub.add_parser("prune", help="prune the weight tensors of a file, checkpoint or model directory",
                        description="Prune a checkpoint; the output mirrors the input (a file for a file, a "
                                    "directory with the same shards, index and other files for a checkpoint).")
    pr.add_argument("input", metavar="SRC", help=SOURCE_HELP)
    pr.add_argument("-o", "--output", required=True, metavar="DST",
                    help="output file (for a file) or directory (for a checkpoint)")
    pr.add_argument("--rate", type=float, required=True, help="share of weights to prune, in [0, 1)")
    pr.add_argument("--global", dest="global_rate", action="store_true",
                    help="one lambda for all selected tensors, so that together they prune --rate")
    pr.add_argument("--rate-map", default=None, metavar="RATES.json",
                    help='JSON object of name globs to rates, e.g. {"*.mlp.*": 0.7}; first match wins')
    pr.add_argument("--ratio", type=int, default=5, help="weights per index bit (default 5: 0.2 bit per weight)")
    pr.add_argument("--effort", default=None, choices=list(_presets.EFFORTS),
                    help="search preset: fast, default or best (see the README's Quality section)")
    pr.add_argument("--values", default="raw", choices=list(_values.ENCODINGS), metavar="ENC",
                    help="store the kept values as raw (default), int8, int4 (a scale per --group values) "
                         "or codebook1 .. codebook8 (2^B shared centroids)")
    pr.add_argument("--group", type=int, default=_values.DEFAULT_GROUP, metavar="G",
                    help=f"values per scale of int8 and int4 (default {_values.DEFAULT_GROUP})")
    pr.add_argument("--include", action="append", default=None, metavar="PATTERN",
                    help="prune only tensors whose name matches this glob (repeatable; default: all)")
    pr.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                    help="never prune tensors whose name matches this glob (repeatable)")
    pr.add_argument("--min-size", type=int, default=1024, metavar="N",
                    help="leave tensors of fewer than N weights dense (default 1024)")
    pr.add_argument("--max-shard-size", type=_size, default=None, metavar="SIZE",
                    help="re-shard the output into files of at most SIZE (e.g. 2GB); default: keep the "
                         "input's shards unless one would exceed 5GB")
    pr.add_argument("--seed", type=int, default=0, help="seed of the VD taps (default 0)")
    pr.add_argument("--threads", type=int, default=None, help="worker threads (default: VITRUST_NUM_THREADS or all cores)")
    pr.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                    help="run the shards on this Dask scheduler's workers (they must see the same paths)")
    pr.add_argument("--dry-run", action="store_true", help="show what would be pruned and the expected size; write nothing")
    pr.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    pr.add_argument("--plot", default=None, metavar="REPORT.png",
                    help="draw storage per format and retained importance per tensor (needs matplotlib)")
    pr.add_argument("--force", action="store_true", help="overwrite DST (and REPORT.png) if they exist")
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    info = sub.add_parser("info", help="per tensor: shape, rate, index cost next to CSR, relative and bitmask")
    info.add_argument("file", metavar="SRC", help=SOURCE_HELP)

    un = sub.add_parser("unpack", help="write the dense tensors of a vitrust file or checkpoint")
    un.add_argument("file", metavar="SRC", help=SOURCE_HELP)
    un.add_argument("-o", "--output", required=True, metavar="DST")
    un.add_argument("--max-output", type=_size, default=None, metavar="BYTES",
                    help="refuse to write more than this (such as 10GB; default 64 times the input's size)")
    un.add_argument("--force", action="store_true",
                    help="overwrite the output if it exists, and write it whatever its size")
    un.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    return p


def _existing(path: str) -> str:
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file or directory")
    return path


def _writable(path: str, force: bool, inputs: Sequence[str] = ()) -> str:
    if os.path.exists(path):
        if any(os.path.exists(i) and os.path.samefile(path, i) for i in inputs):
            raise CliError(f"{path}: is the input; choose another output")
        if not force and not (os.path.isdir(path) and not os.listdir(path)):
            raise CliError(f"{path}: exists (pass --force to overwrite it)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CliError(f"{path}: directory {parent} does not exist")
    return path


def _output(src: str, dst: str, force: bool) -> None:
    """A file's output must be a file path, a checkpoint's a directory path."""
    is_file = _layout.resolve(src).is_file
    if is_file and os.path.isdir(dst):
        raise CliError(f"{dst}: is a directory (the input is one file, so the output is a file)")
    if not is_file and os.path.isfile(dst):
        raise CliError(f"{dst}: is a file (the input is a checkpoint, so the output is a directory)")
    root = _layout.resolve(src).root
    _writable(dst, force, [src] + ([root] if root else []))


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "demo"):
            from . import _demo

            _demo.run(rate=getattr(args, "rate", 0.9), threads=getattr(args, "threads", None))
        elif args.command == "prune":
            _existing(args.input)
            if not args.dry_run:
                _output(args.input, args.output, args.force)
            if args.plot is not None:
                from . import _report

                _writable(args.plot, args.force, [args.input])
                _report.require_matplotlib()
            _commands.prune_file(args)
        elif args.command == "info":
            _commands.info(_existing(args.file))
        elif args.command == "unpack":
            _existing(args.file)
            _output(args.file, args.output, args.force)
            _commands.unpack(args.file, args.output, args.threads, args.force, args.max_output)
    except BrokenPipeError:  # `vitrust info f | head`: the reader left; stay quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (CliError, _commands.CommandError, ImportError, TypeError, ValueError, OSError) as e:
        print(f"vitrust: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitrust: interrupted", file=sys.stderr)
        return 130
    return 0
