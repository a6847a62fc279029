"""Efficiency against the rate-distortion bound, with times.

    python benches/quality.py grid      # flip_flops x ratio, Gaussian weights at 90 %
    python benches/quality.py presets   # effort presets on three weight families, rates 0.5-0.95

Efficiency is ``retained / rd_bound`` (``ViterbiSparse.quality``): the share
of the best retained importance that any index of ``1 / ratio`` bit per weight
could reach at that density. Tensors are small (the search costs ``2^k`` per
step); the times are wall-clock seconds of the whole ``prune`` (rate control
included) on this machine's cores and depend on the search's speed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import vitrust


def family(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Gaussian, Laplacian, or heavy-tailed trained-layer-like weights (Student t3, per-row scales)."""
    rng = np.random.default_rng(seed)
    if name == "gauss":
        return rng.standard_normal(n).astype(np.float32)
    if name == "laplace":
        return rng.laplace(size=n).astype(np.float32)
    rows = max(n // 200, 1)
    w = rng.standard_t(3, size=(rows, n // rows)) * rng.lognormal(0.0, 0.3, size=(rows, 1))
    return w.astype(np.float32).ravel()


def measure(w, rate, **kw):
    t0 = time.perf_counter()
    sp = vitrust.prune(w, rate, **kw)
    dt = time.perf_counter() - t0
    return sp.quality(w), sp, dt


def grid(args):
    ffs = list(range(6, 17, 1 if args.all else 2))
    ratios = [2, 3, 4, 5, 6, 8, 10]
    print(f"Efficiency against the bound (time in s), Gaussian weights, rate {args.rate:.0%}, n_in 1, one tap seed;")
    print("n = 20000 weights for flip_flops <= 12, 10000 for 14, 5000 for 16.\n")
    print("| flip_flops | " + " | ".join(f"ratio {r} ({1 / r:.2f} bit)" for r in ratios) + " |")
    print("|---" * (len(ratios) + 1) + "|")
    for ff in ffs:
        n = 20000 if ff <= 12 else 10000 if ff <= 14 else 5000
        w = family("gauss", n)
        cells = []
        for r in ratios:
            q, sp, dt = measure(w, args.rate, flip_flops=ff, n_in=1, ratio=r, tap_seeds=1)
            cells.append(f"{q.efficiency:.4f} ({dt:.1f})")
        print(f"| {ff} | " + " | ".join(cells) + " |", flush=True)
    print("\nBound (retained importance) per ratio at this rate:", ", ".join(f"{r}: {vitrust.rd_bound(family('gauss', 20000), args.rate, 1 / r):.4f}" for r in ratios))


def presets(args):
    rates = args.rates
    efforts = args.efforts
    print("Efficiency against the bound at ratio 5 (0.2 bit/weight); worst |rate error| and total time per preset.\n")
    print("| family | effort | n | " + " | ".join(f"{r:.0%}" for r in rates) + " | max rate error (points) | time (s) |")
    print("|---" * (len(rates) + 5) + "|")
    for fam in ["gauss", "laplace", "heavy"]:
        for effort in efforts:
            n = args.n_best if effort == "best" else args.n
            w = family(fam, n)
            cells, err, total = [], 0.0, 0.0
            for r in rates:
                q, sp, dt = measure(w, r, effort=effort)
                cells.append(f"{q.efficiency:.4f}")
                err, total = max(err, abs(sp.rate - r) * 100), total + dt
            print(f"| {fam} | {effort} | {n} | " + " | ".join(cells) + f" | {err:.3f} | {total:.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["grid", "presets"])
    ap.add_argument("--rate", type=float, default=0.9, help="grid: the pruning rate")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95], help="presets: the rates")
    ap.add_argument("--all", action="store_true", help="every flip_flops value, not only even ones")
    ap.add_argument("--efforts", nargs="+", default=["fast", "default", "best"])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--n-best", type=int, default=10000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    grid(args) if args.what == "grid" else presets(args)
    print(f"\n(vitrust {vitrust.__version__}; {time.perf_counter() - t0:.0f} s in all; times are from the search as built)")


if __name__ == "__main__":
    main()
