"""The ``effort`` presets on real layers: efficiency against the bound and time, side by side.

    python benches/presets_real.py                       # the presets as shipped, plus v1 (row-major, one threshold)
    python benches/presets_real.py --try "12,1,3x,refine,auto" "14,1,3x,,auto"   # candidate presets
    python benches/presets_real.py --models minilm rapidocr-det   # whole models from their wheels

Layers: tests/data/real_layers.safetensors (13 layers of MiniLM, PP-OCRv4
detection and recognition, Silero VAD; benches/real_models.py names the
wheels), or whole models with ``--models``. For every layer and rate each
procedure runs ``vitrust.prune`` once; efficiency is retained |w| over
``vitrust.rd_bound`` at the index's own bits per weight (per-block
thresholds included). Times are wall times of ``prune`` summed over the
cells, reported as ratios against the first procedure and ``default`` in the
same run (2 cores; run it on an otherwise idle machine).

A candidate ``--try`` is ``flip_flops[:n_in],tap_seeds,factors,refine,order``:
factors ``v1`` (one threshold), ``pred`` (the predicted one per block) or
``3x`` (0.75, 1, 1.33 times the predicted one per block), refine ``refine`` or empty, order ``C``, ``auto`` or ``both``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

import vitrust
from vitrust import _presets

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402


def candidate(spec: str) -> _presets.Preset:
    ff, seeds, factors, refine, order = spec.split(",")
    ff, _, n_in = ff.partition(":")
    return _presets.Preset(flip_flops=int(ff), n_in=int(n_in or 1), tap_seeds=int(seeds),
                           factors={"v1": None, "pred": (1.0,), "3x": _presets.FACTORS}[factors],
                           refine=refine == "refine",
                           order=order)


def run(w: np.ndarray, rate: float, preset: _presets.Preset) -> Tuple[float, float, float]:
    """(efficiency, seconds, achieved rate) of ``prune`` with ``preset`` as the effort."""
    saved = dict(_presets.EFFORTS)
    _presets.EFFORTS["bench"] = preset
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            sp = vitrust.prune(w, rate, effort="bench")  # type: ignore[arg-type]
            dt = time.perf_counter() - t0
    finally:
        _presets.EFFORTS.clear()
        _presets.EFFORTS.update(saved)
    return sp.quality(w).efficiency, dt, sp.rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=[], choices=list(real_models.MODELS))
    ap.add_argument("--cache", type=Path, default=real_models.DEFAULT_CACHE)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7, 0.9, 0.95])
    ap.add_argument("--efforts", nargs="*", default=["fast", "default", "best"])
    ap.add_argument("--try", dest="tries", nargs="*", default=[])
    args = ap.parse_args()

    procs: Dict[str, _presets.Preset] = {"v1": _presets.EFFORTS["default"]._replace(order="C")}
    procs.update({e: _presets.EFFORTS[e] for e in args.efforts})
    procs.update({t: candidate(t) for t in args.tries})
    eff: Dict[str, Dict[float, List[float]]] = {p: {r: [] for r in args.rates} for p in procs}
    secs = {p: 0.0 for p in procs}
    print("| layer | rate | " + " | ".join(procs) + " |")
    print("|---|---|" + "---|" * len(procs))
    for name, w in sorted(real_models.layers(args.models, args.cache), key=lambda t: t[0]):
        for r in args.rates:
            cells = []
            for p, preset in procs.items():
                e, dt, got = run(w, r, preset)
                eff[p][r].append(e)
                secs[p] += dt
                cells.append(f"{e:.4f}" + ("" if abs(got - r) <= 2e-3 else f" (rate {got:.3f})"))
            print(f"| {name} | {r:.0%} | " + " | ".join(cells) + " |", flush=True)
    print()
    print("| procedure | " + " | ".join(f"{r:.0%}" for r in args.rates) + " | all rates | time (s) | vs v1 | vs default |")
    print("|---|" + "---|" * (len(args.rates) + 4))
    base = secs["v1"]
    default = secs.get("default", base)
    for p in procs:
        allv = [e for r in args.rates for e in eff[p][r]]
        cols = [f"{np.mean(eff[p][r]):.4f} / {np.min(eff[p][r]):.4f}" for r in args.rates]
        print(f"| {p} | " + " | ".join(cols) + f" | {np.mean(allv):.4f} / {np.min(allv):.4f} | {secs[p]:.1f} | "
              f"{secs[p] / base:.2f}x | {secs[p] / default:.2f}x |")
    print("\n(mean / min efficiency over the layers)")


if __name__ == "__main__":
    main()
