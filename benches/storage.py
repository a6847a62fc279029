"""Storage of a realistic layer under each index format (README's storage table).

Prunes a 4096x4096 float32 Gaussian matrix with vitrust at several rates and
prints, per rate, the index bits per weight and the total bytes (index plus
values) of vitrust next to CSR, relative indexing, a bitmask and the entropy
bound, then the index savings set beside the paper's claims.

    python benches/storage.py [--size 4096] [--rates 0.5 0.7 0.9 0.95]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import vitrust

FORMATS = ["viterbi", "csr32", "csr16", "csr-min", "relative-4", "relative-5", "bitmask", "entropy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7, 0.9, 0.95])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    n = args.size
    w = np.random.default_rng(args.seed).standard_normal((n, n)).astype(np.float32)
    tables = []
    t_all = time.perf_counter()
    for rate in args.rates:
        t0 = time.perf_counter()
        sp = vitrust.prune(w, rate)
        t_prune = time.perf_counter() - t0
        tables.append((rate, sp.rate, sp.storage(), t_prune))
        print(f"# rate {rate}: achieved {sp.rate:.4f} in {t_prune:.1f} s", flush=True)
    total = time.perf_counter() - t_all

    print(f"\n{n}x{n} float32 (Gaussian), dense {w.nbytes / 2**20:.1f} MiB; index bits per weight:\n")
    print("| rate | " + " | ".join(FORMATS) + " |")
    print("|---" * (len(FORMATS) + 1) + "|")
    for _, achieved, t, _ in tables:
        print(f"| {achieved:.1%} | " + " | ".join(f"{t[f]['bits_per_weight']:.3f}" for f in FORMATS) + " |")

    print("\nTotal MiB (index + float32 values; relative counts a zero value per padding entry):\n")
    cols = ["dense"] + FORMATS[:-1]
    print("| rate | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for _, achieved, t, _ in tables:
        print(f"| {achieved:.1%} | " + " | ".join(f"{t[f]['total_bytes'] / 2**20:.2f}" for f in cols) + " |")

    print("\nvitrust's index against the others (paper: 85 % smaller than CSR, 35-53 % smaller than relative):\n")
    others = ["csr32", "csr16", "csr-min", "relative-4", "relative-5", "bitmask"]
    print("| rate | " + " | ".join(f"vs {o}" for o in others) + " |")
    print("|---" * (len(others) + 1) + "|")
    for _, achieved, t, _ in tables:
        v = t["viterbi"]["index_bits"]
        print(f"| {achieved:.1%} | " + " | ".join(f"-{1 - v / t[o]['index_bits']:.0%}" for o in others) + " |")
    print(f"\nprune times: " + ", ".join(f"{r:.0%}: {s:.1f} s" for r, _, _, s in tables) + f"; total {total:.1f} s")


if __name__ == "__main__":
    main()
