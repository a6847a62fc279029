"""Command line: ``vitrust demo`` (also ``python -m vitrust``)."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="vitrust", description="Viterbi-based pruning with a fixed-rate index.")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="prune an embedded 1024x1024 matrix and compare index costs")
    demo.add_argument("--rate", type=float, default=0.9, help="share of weights to prune (default 0.9)")
    demo.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    args = parser.parse_args(argv)
    from . import _demo

    if args.command in (None, "demo"):
        rate = getattr(args, "rate", 0.9)
        threads = getattr(args, "threads", None)
        try:
            _demo.run(rate=rate, threads=threads)
        except (TypeError, ValueError) as e:
            print(f"vitrust: error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
