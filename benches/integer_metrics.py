"""Integer metrics on real layers (docs/algorithm.md, "Integer metrics"):
how many blocks fall back to float32, and a whole fixed-lam pass on integer
metrics against the same pass on float32 alone, in one run.

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


def speed(rows: int = 2048, cols: int = 2048, rep: int = 7) -> None:
    """ns per state-step per core of one pass at flip_flops 10 (both cores and one)."""
    w = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32).ravel()
    sp = vitrust.prune(w, 0.9)
    cfg, bs = sp.config, sp.block_steps
    state_steps = w.size / cfg.n_out * cfg.n_in * 2**cfg.flip_flops
    cores = os.cpu_count() or 1
    print(f"one pass over {rows}x{cols} at flip_flops {cfg.flip_flops}, ns per state-step per core:")
    for metrics in ("auto", "float32"):
        for threads, n in ((None, cores), (1, 1)):
            t = best_of(lambda: _vitrust.search(cfg, w, "abs", sp.lam, bs, threads, metrics=metrics), rep)
            print(f"  {metrics:8s} {n} thread(s): {t * 1e9 * n / state_steps:.3f}")


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
