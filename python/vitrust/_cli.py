"""The ``vitrust`` command line: ``prune``, ``info``, ``unpack`` and ``demo``.

Every command reads and writes safetensors files through ``vitrust.load_file``
and ``vitrust.save_file`` (so plain checkpoints go in and any safetensors
reader opens what comes out). Failures a user can cause (a missing file, a
damaged one, an unsupported dtype, an output that exists) end with one line
``vitrust: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

from . import _commands



class CliError(Exception):
    """A failure to report as one line and exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vitrust",
        description="Viterbi-based pruning with a fixed-rate index, for safetensors checkpoints.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="prune an embedded 1024x1024 matrix and compare index costs")
    demo.add_argument("--rate", type=float, default=0.9, help="share of weights to prune (default 0.9)")
    demo.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")

    pr = sub.add_parser("prune", help="prune the weight tensors of a safetensors file")
    pr.add_argument("input", metavar="IN.safetensors")
    pr.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    pr.add_argument("--rate", type=float, required=True, help="share of weights to prune per tensor, in [0, 1)")
    pr.add_argument("--ratio", type=int, default=5, help="weights per index bit (default 5: 0.2 bit per weight)")
    pr.add_argument("--effort", default=None, help="search preset, if this version of prune() has presets")
    pr.add_argument("--include", action="append", default=None, metavar="PATTERN",
                    help="prune only tensors whose name matches this glob (repeatable; default: all)")
    pr.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                    help="never prune tensors whose name matches this glob (repeatable)")
    pr.add_argument("--min-size", type=int, default=1024, metavar="N",
                    help="leave tensors of fewer than N weights dense (default 1024)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the VD taps (default 0)")
    pr.add_argument("--threads", type=int, default=None, help="worker threads (default: VITRUST_NUM_THREADS or all cores)")
    pr.add_argument("--plot", default=None, metavar="REPORT.png",
                    help="draw storage per format and retained importance per tensor (needs matplotlib)")
    pr.add_argument("--force", action="store_true", help="overwrite OUT (and REPORT.png) if they exist")
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    info = sub.add_parser("info", help="per tensor: shape, rate, index cost next to CSR, relative and bitmask")
    info.add_argument("file", metavar="FILE")

    un = sub.add_parser("unpack", help="write the dense tensors of a vitrust file")
    un.add_argument("file", metavar="FILE")
    un.add_argument("-o", "--output", required=True, metavar="DENSE.safetensors")
    un.add_argument("--max-output", type=_size, default=None, metavar="BYTES",
                    help="refuse to write more than this (suffixes K, M, G, T; default 64 times the input's size)")
    un.add_argument("--force", action="store_true",
                    help="overwrite the output if it exists, and write it whatever its size")
    un.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    return p


def _size(text: str) -> int:
    """A byte count such as ``1000``, ``512K`` or ``2G`` (powers of 1024)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        n = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 1000, 512K or 2G") from None
    if not n >= 0 or n == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative size")
    return int(n * units[unit])


def _existing(path: str) -> str:
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CliError(f"{path}: not a regular file")
    return path


def _writable(path: str, force: bool, inputs: Sequence[str] = ()) -> str:
    if os.path.exists(path):
        if any(os.path.exists(i) and os.path.samefile(path, i) for i in inputs):
            raise CliError(f"{path}: is the input file; choose another output")
        if not force:
            raise CliError(f"{path}: exists (pass --force to overwrite it)")
        if os.path.isdir(path):
            raise CliError(f"{path}: is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CliError(f"{path}: directory {parent} does not exist")
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "demo"):
            from . import _demo

            _demo.run(rate=getattr(args, "rate", 0.9), threads=getattr(args, "threads", None))
        elif args.command == "prune":
            _existing(args.input)
            _writable(args.output, args.force, [args.input])
            if args.plot is not None:
                from . import _report

                _writable(args.plot, args.force, [args.input])
                _report.require_matplotlib()
            _commands.prune_file(args)
        elif args.command == "info":
            _commands.info(_existing(args.file))
        elif args.command == "unpack":
            _existing(args.file)
            _writable(args.output, args.force, [args.file])
            _commands.unpack(args.file, args.output, args.threads, args.max_output, args.force)
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
