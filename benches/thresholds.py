"""Per-block thresholds and the stream order: quality against time for each procedure.

For every layer and rate, the search runs with one threshold for the whole
tensor (v1) and with each block choosing its own among candidates
(docs/algorithm.md, "Thresholds per block"), in both stream orders; each
cell reports efficiency (retained |w| over the rate-distortion bound at the
index's own bits per weight, thresholds included) and the time of rate
control relative to v1's in the same run.

    python benches/thresholds.py                 # the committed real layers (tests/data/real_layers.safetensors)
    python benches/thresholds.py --models minilm rapidocr-det   # whole models from their wheels (benches/real_models.py)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

import vitrust
from vitrust import _checks, _prune, _vitrust

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

# name -> (threshold factors or None for v1, refine)
PROCEDURES: Dict[str, Tuple[Optional[List[float]], bool]] = {
    "v1": (None, False),
    "pred": ([1.0], False),
    "pred+refine": ([1.0], True),
    "3x": ([0.75, 1.0, 1.33], False),
    "3x+refine": ([0.75, 1.0, 1.33], True),
}


def run(w: np.ndarray, rate: float, proc: str, order: str) -> Tuple[float, float, float]:
    """(efficiency, seconds, achieved rate) of one procedure and order."""
    factors, refine = PROCEDURES[proc]
    sp0 = vitrust.prune(w, rate)  # the config prune would choose
    config = sp0.config
    rows, cols = _checks.matrix_view(w.shape)
    t0 = time.perf_counter()
    if order == "auto":  # as prune(order="auto") chooses: on a sample of blocks
        streams = {o: _prune._stream(w.reshape(-1), rows, cols, o) for o in "CF"}
        order = _prune._choose_order(config, streams, "abs", rate, None, sp0.block_steps, None,
                                     _vitrust.DEFAULT_MAX_SEARCH_BYTES, None if factors is None else tuple(factors))
    flat = w.reshape(rows, cols).T.reshape(-1).copy() if order == "F" else w.reshape(-1)
    index, nnz, lam, _, th = _vitrust.search_rate(config, flat, "abs", rate, sp0.block_steps, None,
                                                  _vitrust.DEFAULT_MAX_SEARCH_BYTES, factors, refine)
    dt = time.perf_counter() - t0
    values, starts = _vitrust.gather(config, index, sp0.block_steps, flat, None, th)
    sp = vitrust.ViterbiSparse._from_core(w.shape, config, sp0.block_steps, index, values, lam, starts=starts,
                                          thresholds=th, order=order)
    return sp.quality(w).efficiency, dt, sp.rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=[], choices=list(real_models.MODELS))
    ap.add_argument("--cache", type=Path, default=real_models.DEFAULT_CACHE)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7, 0.9, 0.95])
    ap.add_argument("--procedures", nargs="+", default=["v1", "3x", "3x+refine"])
    ap.add_argument("--orders", nargs="+", default=["C", "F", "auto"])
    args = ap.parse_args()
    cols = [(p, o) for p in args.procedures for o in args.orders]
    eff: Dict[Tuple[str, str, float], List[float]] = {}
    tim: Dict[Tuple[str, str, float], List[float]] = {}
    print("| layer | rate | " + " | ".join(f"{p} {o}" for p, o in cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for name, w in real_models.layers(args.models, args.cache):
        for rate in args.rates:
            cells = {c: run(w, rate, *c) for c in cols}
            base = cells.get(("v1", "C"), next(iter(cells.values())))[1]
            for (p, o), (e, t, _) in cells.items():
                eff.setdefault((p, o, rate), []).append(e)
                tim.setdefault((p, o, rate), []).append(t / base)
            print(f"| {name} | {rate:.0%} | " + " | ".join(f"{e:.4f} ({t / base:.1f}x)" for e, t, _ in cells.values())
                  + " |", flush=True)
    print("\n## Summary: efficiency mean / min, time relative to v1 C (mean)\n")
    print("| procedure | order | " + " | ".join(f"{r:.0%}" for r in args.rates) + " | all |")
    print("|---" * (len(args.rates) + 3) + "|")
    for p, o in cols:
        row = []
        for r in args.rates:
            e, t = eff[(p, o, r)], tim[(p, o, r)]
            row.append(f"{np.mean(e):.4f} / {np.min(e):.4f} ({np.mean(t):.1f}x)")
        e_all = [x for r in args.rates for x in eff[(p, o, r)]]
        t_all = [x for r in args.rates for x in tim[(p, o, r)]]
        row.append(f"{np.mean(e_all):.4f} / {np.min(e_all):.4f} ({np.mean(t_all):.1f}x)")
        print(f"| {p} | {o} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
