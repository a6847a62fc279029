"""Explorations behind the presets: one table each, efficiency against the rate-distortion bound.

    python benches/explore.py comparator   # comparator rule: previous vs current default_comparator
    python benches/explore.py n_in         # n_in = 2 against n_in = 1 at the same ratio 5
    python benches/explore.py seeds        # spread over tap seeds, best of 4 and of 8
    python benches/explore.py scores       # |w| against w**2 scores, measured both ways
    python benches/explore.py ordering     # C order against a transposed and a strided order

Weights: 20000 per tensor from ``benches/quality.py``'s three families.
"""

from __future__ import annotations

import argparse

import numpy as np

import vitrust
from quality import family

FAMILIES = ["gauss", "laplace", "heavy"]


def previous_comparator(rate):
    """The rule before measurements: fewest bits within 10 % of min(d, 1 - d), no raised target."""
    d = 1.0 - rate
    best = (1, 2, np.inf)
    for nc in range(1, 9):
        levels = 2**nc
        k = min(max(round(d * levels), 1), levels)
        err = abs(k / levels - d)
        if err <= 0.1 * min(d, 1 - d):
            return nc, k
        if err < best[2]:
            best = (nc, k, err)
    return best[:2]


def eff(w, rate, ff=10, n_in=1, comp=None, seed=0, score="abs", measure=None):
    nc, k = comp if comp else vitrust.default_comparator(rate)
    cfg = vitrust.VDConfig(ff, n_in, 5 * n_in, nc, k, seed=seed)
    sp = vitrust.prune(w, rate, config=cfg, score=score)
    return sp.quality(w if measure is None else measure, score="abs").efficiency, sp


def comparator(_):
    rates = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]
    print("Comparator rule, flip_flops 10, n_in 1: efficiency, previous rule -> current rule (mean of 2 weight draws).\n")
    print("| family | " + " | ".join(f"{r:.0%}" for r in rates) + " |")
    print("|---" * (len(rates) + 1) + "|")
    for fam in FAMILIES:
        cells = []
        for r in rates:
            old = np.mean([eff(family(fam, 20000, s), r, comp=previous_comparator(r))[0] for s in (0, 1)])
            new = np.mean([eff(family(fam, 20000, s), r)[0] for s in (0, 1)])
            cells.append(f"{old:.4f} -> {new:.4f}")
        print(f"| {fam} | " + " | ".join(cells) + " |", flush=True)
    print("\nComparators (bits, threshold): " + ", ".join(f"{r:.0%}: {previous_comparator(r)} -> {vitrust.default_comparator(r)}" for r in rates))


def n_in(_):
    rates = [0.5, 0.8, 0.9, 0.95]
    print("n_in = 1 against n_in = 2 at ratio 5 (same index bits, same work per weight): efficiency.\n")
    print("| family | flip_flops | " + " | ".join(f"{r:.0%}: n_in 1 / 2" for r in rates) + " |")
    print("|---" * (len(rates) + 2) + "|")
    for fam in FAMILIES:
        w = family(fam, 20000)
        for ff in (8, 10, 12):
            cells = [f"{eff(w, r, ff)[0]:.4f} / {eff(w, r, ff, n_in=2)[0]:.4f}" for r in rates]
            print(f"| {fam} | {ff} | " + " | ".join(cells) + " |", flush=True)


def seeds(_):
    print("Tap seeds 0..7, flip_flops 10, n_in 1: efficiency of seed 0, mean, sd, best of 4, best of 8.\n")
    print("| family | rate | seed 0 | mean | sd | best of 4 | best of 8 |")
    print("|---|---|---|---|---|---|---|")
    for fam in FAMILIES:
        w = family(fam, 20000)
        for r in (0.5, 0.9, 0.95):
            e = [eff(w, r, seed=s)[0] for s in range(8)]
            print(f"| {fam} | {r:.0%} | {e[0]:.4f} | {np.mean(e):.4f} | {np.std(e):.4f} | {max(e[:4]):.4f} | {max(e):.4f} |", flush=True)


def scores(_):
    print("Score choice, flip_flops 10, n_in 1: efficiency measured on |w| and on w**2.\n")
    print("| family | rate | search on | efficiency on abs(w) | efficiency on w**2 |")
    print("|---|---|---|---|---|")
    for fam in FAMILIES:
        w = family(fam, 20000)
        for r in (0.8, 0.9, 0.95):
            for score in ("abs", "square"):
                _, sp = eff(w, r, score=score)
                q1, q2 = sp.quality(w), sp.quality(w, score="square")
                print(f"| {fam} | {r:.0%} | {score} | {q1.efficiency:.4f} | {q2.efficiency:.4f} |", flush=True)


def ordering(_):
    print("Weight order, flip_flops 10, n_in 1, a 100 x 200 matrix: efficiency in C order, transposed (F order),")
    print("and with a fixed stride interleave (position i -> i * 7919 mod n).\n")
    print("| family | rate | C order | transposed | strided |")
    print("|---|---|---|---|---|")
    for fam in FAMILIES:
        w = family(fam, 20000).reshape(100, 200)
        perm = (np.arange(w.size) * 7919) % w.size
        for r in (0.5, 0.9, 0.95):
            c = eff(w, r)[0]
            t = eff(np.ascontiguousarray(w.T), r)[0]
            s = eff(w.ravel()[perm], r)[0]
            print(f"| {fam} | {r:.0%} | {c:.4f} | {t:.4f} | {s:.4f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["comparator", "n_in", "seeds", "scores", "ordering"])
    args = ap.parse_args()
    globals()[args.what](args)


if __name__ == "__main__":
    main()
