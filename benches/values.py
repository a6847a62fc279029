"""Total bits per weight and the error of the kept values, per value encoding,
on the real-layer fixture (13 layers of four pretrained models).

    python benches/values.py                     # rates 0.5 and 0.9, group 128
    python benches/values.py --rates 0.9 --group 64 --layers FILE.safetensors

Each layer (2-D or more, at least 4096 weights) is pruned as float32 by
`vitrust.prune` at the default effort, and the pruned tensors are written
with `save_file(values=ENC)`. Printed per encoding: the file's bits per
dense weight (index, values, side tables and the header), its size against
raw values, and the relative error of the kept values as loaded
(sqrt(sum (v - v')^2 / sum v^2) over all layers).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

import numpy as np

import vitrust

ENCODINGS = ("raw", "int8", "int4", "codebook4", "codebook3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                     "real_layers.safetensors"))
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.9])
    ap.add_argument("--group", type=int, default=128)
    args = ap.parse_args()
    layers = vitrust.load_file(args.layers)
    ws = {k: v for k, v in layers.items() if isinstance(v, np.ndarray) and v.ndim >= 2 and v.size >= 4096}
    n = sum(w.size for w in ws.values())
    print(f"{len(ws)} layers, {n} weights, group {args.group}")
    with tempfile.TemporaryDirectory() as d:
        for rate in args.rates:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", vitrust.RateWarning)
                sps = {k: vitrust.prune(w.astype(np.float32), rate) for k, w in ws.items()}
            raw_size = None
            for enc in ENCODINGS:
                path = os.path.join(d, f"{enc}.safetensors")
                vitrust.save_file(sps, path, values=enc, group=args.group)
                size = os.path.getsize(path)
                raw_size = raw_size or size
                got = vitrust.load_file(path)
                err = sum(float(((sp.values.astype(np.float64) - got[k].values) ** 2).sum()) for k, sp in sps.items())
                ref = sum(float((sp.values.astype(np.float64) ** 2).sum()) for sp in sps.values())
                print(f"rate {rate}: {enc:10s} {size * 8 / n:6.3f} bit/weight  {size / raw_size:5.3f} of raw  "
                      f"kept-value error {np.sqrt(err / ref):.4f}")


if __name__ == "__main__":
    main()
