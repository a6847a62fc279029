"""Rate control's cost and accuracy per weight family: achieved rate and
search passes (full-pass equivalents, sample included) from the core's
``search_rate``, at the default VD for each rate.

    python benches/rate_passes.py [--rows 4096] [--reproducer] [--layers FILE]

``--rows`` sets the families' size (rows x 256 weights; above ~0.5 M weights
the sample path runs); ``--reproducer`` adds issue 10's 8192x16x64 filters;
``--layers`` measures every tensor of a safetensors file instead (real
layers: ``benches/real_models.py write FILE model:tensor ...``);
``--models`` every tensor of >= 10^4 weights of real models at full size
(``benches/real_models.py``: minilm, rapidocr-det, rapidocr-rec, silero), with
the mean weighted by size beside the plain mean.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))

import vitrust  # noqa: E402
from vitrust import _vitrust  # noqa: E402

from rate_families import families, periodic  # noqa: E402

RATES = (0.5, 0.7, 0.9, 0.95)


def run(name: str, w: np.ndarray) -> float:
    """Prints a row for ``w`` and returns its mean passes over the rates."""
    flat = np.ascontiguousarray(w).ravel()
    cells, passes = [], []
    for rate in RATES:
        nc, k = _vitrust.default_comparator(rate)
        config = vitrust.VDConfig(10, 1, 5, nc, k, seed=0)
        _, nnz, lam, p, _ = _vitrust.search_rate(config, flat, "abs", rate, 1024)
        got = 1 - nnz / flat.size
        cells.append(f"{got:.4f}{'*' if abs(got - rate) > 2e-3 else ' '} ({p:4.1f})")
        passes.append(p)
    print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(passes):.2f} |", flush=True)
    return float(np.mean(passes))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--reproducer", action="store_true")
    ap.add_argument("--layers", help="a safetensors file whose tensors are measured")
    ap.add_argument("--models", nargs="+", help="real models whose every layer is measured")
    args = ap.parse_args()
    if args.layers or args.models:
        if args.models:
            from real_models import layers

            ws = list(layers(args.models))
        else:
            from safetensors.numpy import load_file

            ws = list(load_file(args.layers).items())
        print("cells: achieved rate (* more than 0.2 points off) and (passes)")
        print("| layer | weights | " + " | ".join(f"{r:.0%}" for r in RATES) + " | mean passes |")
        print("|---|---|" + "---|" * (len(RATES) + 1))
        means = [run(f"{k.split('/')[-1][-22:]} | {w.size}", w.astype(np.float32)) for k, w in ws]
        sizes = [w.size for _, w in ws]
        print(f"mean over {len(ws)} layers: {np.mean(means):.2f} passes; weighted by size: "
              f"{np.average(means, weights=sizes):.2f}")
        return
    print(f"rows {args.rows}; cells: achieved rate (* more than 0.2 points off) and (passes)")
    print("| family | " + " | ".join(f"{r:.0%}" for r in RATES) + " | mean passes |")
    print("|---|" + "---|" * (len(RATES) + 1))
    for name, gen in families(args.rows).items():
        run(name, gen(np.random.default_rng(1)))
    if args.reproducer:
        run("issue 10", periodic(np.random.default_rng(0), 8192))


if __name__ == "__main__":
    main()
