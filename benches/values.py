"""Total bits per weight and the error of the kept values, per value encoding,
on the real-layer fixture (13 layers of four pretrained models).

    python benches/values.py                     # rates 0.5 and 0.9, group 128
    python benches/values.py --rates 0.9 --group 64 --layers FILE.safetensors

Each layer (2-D or more, at least 4096 weights) is pruned as float32 by
`vitrust.prune` at the default effort, and the pruned tensors are written
with `save_file(values=ENC)`. Printed per encoding: the file's bits per
dense weight (index, values, side tables and the header), its size against
raw values, the relative error of the kept values as loaded
(sqrt(sum (v - v')^2 / sum v^2) over all layers), the same weighted by
|v| (the importance the search keeps), the whole tensors' reconstruction
error (pruning and encoding: ||W - W'|| / ||W||), and the bits per weight
the codes would take entropy-coded (the empirical entropy of each tensor's
codes: what per-block Huffman tables could approach, before their own cost).
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
                e = {k: (sp.values.astype(np.float64), got[k].values.astype(np.float64)) for k, sp in sps.items()}
                err = sum(float(((v - d) ** 2).sum()) for v, d in e.values())
                ref = sum(float((v ** 2).sum()) for v, _ in e.values())
                werr = sum(float((np.abs(v) * (v - d) ** 2).sum()) for v, d in e.values())
                wref = sum(float((np.abs(v) ** 3).sum()) for v, _ in e.values())
                terr = sum(float(((ws[k] - got[k].to_dense()) ** 2).sum()) for k in sps)
                tref = sum(float((w.astype(np.float64) ** 2).sum()) for w in ws.values())
                line = (f"rate {rate}: {enc:10s} {size * 8 / n:6.3f} bit/weight  {size / raw_size:5.3f} of raw  "
                        f"kept-value error {np.sqrt(err / ref):.4f}  |v|-weighted {np.sqrt(werr / wref):.4f}  "
                        f"tensor error {np.sqrt(terr / tref):.4f}")
                if enc != "raw":
                    line += f"  codes entropy-coded {sum(_entropy_bits(got[k]) for k in sps) / n:.3f} bit/weight"
                print(line)


def _entropy_bits(sp: vitrust.ViterbiSparse) -> float:
    """The empirical entropy of a tensor's codes times their number."""
    e = sp.encoded
    assert e is not None
    bits = np.unpackbits(e.codes, bitorder="little")[: e.size * e.bits].reshape(e.size, e.bits)
    codes = bits.astype(np.int64) @ (1 << np.arange(e.bits))
    p = np.bincount(codes, minlength=1 << e.bits) / max(e.size, 1)
    p = p[p > 0]
    return float(e.size * -(p * np.log2(p)).sum())


if __name__ == "__main__":
    main()
