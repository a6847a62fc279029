"""vitrust side by side with the tools people use today, measured in one run.

    python benches/compare.py [--size 4096] [--batch 64] [--rate 0.9] [--repeat 5]

Prints one table: best-of-N wall times for pruning, expansion to a mask and to
a dense array (for the tensor pruned in each order), and products with a dense matrix, next to NumPy magnitude
pruning, np.unpackbits, np.copy, scipy CSR and dense BLAS on the same shapes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import vitrust
from vitrust import _vitrust


def best_of(f, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rate", type=float, default=0.9)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, rate, rep = args.size, args.rate, args.repeat
    rng = np.random.default_rng(0)
    w = rng.standard_normal((n, n), dtype=np.float32)
    x = rng.standard_normal((n, args.batch), dtype=np.float32)
    rows = []

    def row(what, seconds, items, unit, peer=None, peer_s=None):
        rows.append((what, seconds, items / seconds, unit, peer, peer_s))

    # Pruning.
    sp = vitrust.prune(w, rate)
    t_prune = best_of(lambda: vitrust.prune(w, rate), max(1, rep // 2))

    def magnitude():
        a = np.abs(w).ravel()
        k = int(round((1 - rate) * a.size))
        thr = np.partition(a, a.size - k)[a.size - k]
        return np.where(np.abs(w) >= thr, w, 0)

    row(f"prune {n}x{n} to {rate:.0%} (rate control incl.)", t_prune, w.size, "weights/s", "numpy magnitude pruning", best_of(magnitude, rep))

    # Search alone: one pass at the found multiplier.
    cfg = sp.config
    flat = w.reshape(-1)
    t_pass = best_of(lambda: _vitrust.search(cfg, flat, "abs", sp.lam, sp.block_steps), rep)
    blocks, _, bits = _vitrust.layout_info(cfg, w.size, sp.block_steps)
    state_steps = bits / cfg.n_in * 2**cfg.flip_flops
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    t_pass1 = best_of(lambda: _vitrust.search(cfg, flat, "abs", sp.lam, sp.block_steps, threads=1), max(1, rep // 2))
    row("one search pass, all cores", t_pass, state_steps, "state-steps/s")
    row("one search pass, 1 thread", t_pass1, state_steps, "state-steps/s")

    # Expansion, in both orders (auto chose one of them for `sp`).
    packed = np.packbits(sp.mask())
    src = sp.to_dense()
    other = "F" if sp.order == "C" else "C"
    by_order = {sp.order: sp, other: vitrust.prune(w, rate, order=other)}
    for o in "CF":
        s_o = by_order[o]
        row(f"mask() (order {o})", best_of(s_o.mask, rep), w.size, "weights/s", "np.unpackbits of a bitmask",
            best_of(lambda: np.unpackbits(packed), rep))
        row(f"to_dense() (order {o})", best_of(s_o.to_dense, rep), w.size, "weights/s", "np.copy of the weights",
            best_of(lambda: np.copy(w), rep))

    # Products.
    peer_csr = None
    try:
        import scipy.sparse as sps

        csr = sps.csr_array(src)
        row("scipy CSR toarray()", best_of(csr.toarray, rep), w.size, "weights/s")
        peer_csr = best_of(lambda: csr @ x, rep)
    except ImportError:
        pass
    row(f"sp @ X, X {n}x{args.batch}", best_of(lambda: sp @ x, rep), sp.nnz * args.batch, "MAC/s", "scipy CSR @ X", peer_csr)
    row(f"dense W @ X (BLAS)", best_of(lambda: src @ x, rep), w.size * args.batch, "MAC/s")
    xl = np.ascontiguousarray(x.T)
    peer_r = best_of(lambda: xl @ csr, rep) if peer_csr is not None else None
    row(f"X @ sp, X {args.batch}x{n}", best_of(lambda: xl @ sp, rep), sp.nnz * args.batch, "MAC/s", "X @ scipy CSR", peer_r)

    print(f"vitrust {vitrust.__version__} on {cpu_name()}, {cores} cores, SIMD {_vitrust.simd_levels()[-1]}, numpy {np.__version__}")
    print(f"{n}x{n} float32 Gaussian, rate {rate}, flip_flops {cfg.flip_flops}, ratio {cfg.n_out // cfg.n_in}, batch {args.batch}, order {sp.order} (auto); best of {rep}")
    print(f"search: {t_pass * 1e9 / state_steps * cores:.3f} ns per state-step per core (all cores), "
          f"{t_pass1 * 1e9 / state_steps:.3f} ns (1 thread), 1 -> {cores} threads {t_pass1 / t_pass:.2f}x")
    print()
    print(f"| {'operation':44} | {'vitrust':>10} | {'throughput':>22} | {'peer':32} | {'peer time':>10} | {'ratio':>6} |")
    print(f"|{'-' * 46}|{'-' * 12}:|{'-' * 24}:|{'-' * 34}|{'-' * 11}:|{'-' * 7}:|")
    for what, s, tput, unit, peer, peer_s in rows:
        ratio = f"{s / peer_s:.2f}x" if peer_s else ""
        pt = f"{peer_s * 1e3:.1f} ms" if peer_s else ""
        print(f"| {what:44} | {s * 1e3:7.1f} ms | {tput / 1e9:8.2f} G{unit:13} | {peer or '':32} | {pt:>10} | {ratio:>6} |")


if __name__ == "__main__":
    main()
