"""Expansion and products on encoded values against raw values, in one run.

    python benches/decode.py                  # 2048x2048 float32 at 90 % and 50 %
    python benches/decode.py --n 4096 --dtype bfloat16 --rates 0.9

The same pruned tensor is held raw and encoded (int8, int4 and codebook4,
group 128); `to_dense()`, `sp @ x` (a vector), `sp @ X` (64 columns) and
`X @ sp` (64 rows) are timed on each, interleaved, best of `--repeat`.
Printed: each encoding's time over raw's for the same operation (the goal
is at most 1.3x: decoding is per block, into a buffer the block reuses).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

import vitrust

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import best_of  # noqa: E402

ENCODINGS = ("raw", "int8", "int4", "codebook4")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.9, 0.5])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    dtype = np.dtype(args.dtype) if args.dtype != "bfloat16" else np.dtype(__import__("ml_dtypes").bfloat16)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((args.n, args.n)).astype(np.float32).astype(dtype)
    x1 = rng.standard_normal(args.n).astype(np.float32)
    xr = rng.standard_normal((args.n, 64)).astype(np.float32)
    xl = rng.standard_normal((64, args.n)).astype(np.float32)
    print(f"{args.n}x{args.n} {args.dtype}, {vitrust.default_threads()} threads, best of {args.repeat}")
    for rate in args.rates:
        sp = vitrust.prune(w, rate)
        held = {enc: sp if enc == "raw" else sp.quantize(enc) for enc in ENCODINGS}
        ops: Dict[str, Callable[[vitrust.ViterbiSparse], object]] = {
            "to_dense": lambda s: s.to_dense(),
            "sp @ x": lambda s: s @ x1,
            "sp @ X64": lambda s: s @ xr,
            "X64 @ sp": lambda s: xl @ s,
        }
        for name, op in ops.items():
            times: Dict[str, List[float]] = {enc: [] for enc in ENCODINGS}
            for _ in range(args.repeat):  # interleaved, so drift hits every encoding alike
                for enc, s in held.items():
                    times[enc].append(best_of(lambda: op(s), 1))
            raw = min(times["raw"])
            cells = "  ".join(f"{enc} {min(t) / raw:4.2f}x" for enc, t in times.items() if enc != "raw")
            print(f"rate {rate}: {name:9s} raw {raw * 1e3:7.2f} ms  {cells}")


if __name__ == "__main__":
    main()
