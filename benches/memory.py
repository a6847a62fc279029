"""Peak memory of pruning: how much `prune` adds to the process's peak RSS.

    python benches/memory.py [--size 4096] [--rate 0.9]

Runs in a fresh interpreter per measurement so earlier peaks do not hide it.
The goal: pruning a 4096x4096 float32 matrix adds at most 3x the input's size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import numpy as np
import vitrust
n, rate, what = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
w = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sp = vitrust.prune(w, rate)
if what == "dense":
    d = sp.to_dense()
elif what == "mask":
    m = sp.mask()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"input": w.nbytes, "added": (after - before) * 1024, "nnz": sp.nnz}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rate", type=float, default=0.9)
    args = ap.parse_args()
    print(f"| step ({args.size}x{args.size} float32, rate {args.rate}) | input MB | added peak RSS MB | x input |")
    print("|---|---:|---:|---:|")
    for what, label in [("prune", "prune"), ("mask", "prune + mask()"), ("dense", "prune + to_dense()")]:
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.size), str(args.rate), what], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        print(f"| {label} | {r['input'] / 2**20:.1f} | {r['added'] / 2**20:.1f} | {r['added'] / r['input']:.2f} |")


if __name__ == "__main__":
    main()
