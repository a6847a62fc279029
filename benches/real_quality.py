"""Rate control and quality of ``vitrust.prune`` on real pretrained layers.

    python benches/real_quality.py            # every tensor of every model in real_models.py
    python benches/real_quality.py --quick    # the layers of tests/data/real_layers.safetensors
    python benches/real_quality.py --wide     # one row per layer, rate / efficiency per requested rate

Per layer and requested rate (default effort): the achieved rate and its miss
in points, the multiplier ``lam``, the search passes rate control took,
the retained importance against magnitude pruning at the same count, the
rate-distortion bound at the achieved density (``vitrust.rd_bound``), their
ratio (efficiency), any warning ``prune`` gave, and the wall time of
``prune`` (rough: a shared machine). Everything but the time is
deterministic. The full run downloads the wheels (see real_models.py).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, Iterator, Tuple

import numpy as np

import vitrust
from vitrust import _vitrust

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

RATES = (0.5, 0.7, 0.9, 0.95)


def layers(args) -> Iterator[Tuple[str, np.ndarray]]:
    if args.quick:
        from safetensors.numpy import load_file

        yield from sorted(load_file(str(args.fixture)).items())
        return
    for model in args.models:
        for key, w in sorted(real_models.tensors(model, args.cache).items()):
            yield f"{model}/{key}", w


def passes(sp: vitrust.ViterbiSparse, w: np.ndarray, rate: float) -> float:
    """Search work rate control spends on ``w``, in full passes (sampled passes count by their
    share), with the config ``prune`` chose (one tap seed at the default effort)."""
    out = _vitrust.search_rate(sp.config, w.reshape(-1), "abs", rate, sp.block_steps, None, _vitrust.DEFAULT_MAX_SEARCH_BYTES)
    return float(out[3])


def measure(w: np.ndarray, rate: float) -> Dict[str, object]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        sp = vitrust.prune(w, rate)
        dt = time.perf_counter() - t0
    q = sp.quality(w)
    return {
        "rate": sp.rate, "miss": 100 * (sp.rate - rate), "lam": sp.lam, "passes": passes(sp, w, rate),
        "retained": q.retained, "bound": q.bound, "eff": q.efficiency, "warned": "; ".join(str(c.message) for c in caught),
        "time": dt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the committed fixture's layers")
    ap.add_argument("--fixture", type=Path, default=real_models.FIXTURE)
    ap.add_argument("--cache", type=Path, default=real_models.DEFAULT_CACHE)
    ap.add_argument("--models", nargs="+", default=list(real_models.MODELS), choices=list(real_models.MODELS))
    ap.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    ap.add_argument("--wide", action="store_true", help="one row per layer: achieved rate / efficiency per rate")
    args = ap.parse_args()
    args.cache = args.cache.expanduser()

    if args.wide:
        print("| layer | shape | " + " | ".join(f"{r:.0%}: rate / eff" for r in args.rates) + " |")
        print("|---" * (len(args.rates) + 2) + "|")
    else:
        print("| layer | shape | request | achieved | miss (pts) | lam | passes | retained | bound | efficiency | time (s, rough) | warning |")
        print("|---" * 12 + "|")
    worst = []
    for name, w in layers(args):
        cells = []
        for rate in args.rates:
            m = measure(w, rate)
            worst.append((abs(m["miss"]), name, rate, m["miss"]))
            if args.wide:
                flag = "**" if abs(m["miss"]) > 0.2 else ""
                cells.append(f"{flag}{m['rate']:.2%}{flag} / {m['eff']:.3f}")
            else:
                print(
                    f"| {name} | {'x'.join(map(str, w.shape))} | {rate:.0%} | {m['rate']:.2%} | {m['miss']:+.2f} | {m['lam']:.4g} | "
                    f"{m['passes']:.1f} | {m['retained']:.4f} | {m['bound']:.4f} | {m['eff']:.4f} | {m['time']:.2f} | {m['warned']} |",
                    flush=True,
                )
        if args.wide:
            print(f"| {name} | {'x'.join(map(str, w.shape))} | " + " | ".join(cells) + " |", flush=True)
    missed = sorted((x for x in worst if x[0] > 0.2), reverse=True)
    print(f"\n{len(missed)} of {len(worst)} cells miss the requested rate by more than 0.2 points" + (":" if missed else "."))
    for _, name, rate, miss in missed:
        print(f"  {name} at {rate:.0%}: {miss:+.2f} points")


if __name__ == "__main__":
    main()
