"""What a fixed-rate index can reach on a layer with dead output channels.

    python benches/dead_rows.py                      # rapidocr-rec/conv2d_106.w_0
    python benches/dead_rows.py --layer NAME --rates 0.9 0.95

The bound `vitrust.rd_bound` assumes a memoryless source and an index that
may spend its bits anywhere: on a tensor whose rows are partly dead (every
|w| below 1e-6), it spends none on the dead rows, so the live weights get
`bits / N_live` each. A VD in row order cannot: an input bit reaches only
the next `flip_flops` steps' mask bits, so the bits entered along a dead
row longer than that (a row of 240 weights is 48 steps at 5 outputs per
step) decide only dead weights' mask bits, and the live weights get about
`bits / N` each. This prints each preset's retained importance against both
bounds: the memoryless one over all weights and the one over the live
weights at the VD's bits per weight (an argument, not a proof, for column
order, where dead and live weights interleave).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import safetensors.numpy as stn

import vitrust

LAYERS = Path(__file__).resolve().parent.parent / "tests" / "data" / "real_layers.safetensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", default="rapidocr-rec/conv2d_106.w_0")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7, 0.9, 0.95])
    ap.add_argument("--efforts", nargs="+", default=["default", "best"])
    args = ap.parse_args()
    w = stn.load_file(str(LAYERS))[args.layer].astype(np.float32)
    rows = np.abs(w.reshape(w.shape[0], -1))
    dead = rows.max(axis=1) < 1e-6
    live = rows[~dead].ravel()
    n = rows.size
    print(f"{args.layer} {w.shape}: {dead.sum()} of {len(dead)} rows dead, {live.size} of {n} weights live\n")
    print("| rate | effort | retained | bound, all weights | efficiency | bound, live weights at the VD's bits/weight | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for rate in args.rates:
        for effort in args.efforts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", vitrust.RateWarning)
                sp = vitrust.prune(w, rate, effort=effort)
            kept = int(sp.mask().sum())
            retained = sp.quality(w).retained
            bits = sp.index_bits / n
            every = vitrust.rd_bound(w, 1 - kept / n, bits)
            alive = vitrust.rd_bound(live, max(0.0, 1 - kept / live.size), bits)
            print(f"| {rate:.0%} | {effort} | {retained:.4f} | {every:.4f} | {retained / every:.4f} | "
                  f"{alive:.4f} | {retained / alive:.4f} |")


if __name__ == "__main__":
    main()
