"""Plain-NumPy references, written straight from docs/format.md ("The Viterbi decompressor",
"Blocks", "Index layout"), to check the core against."""

from __future__ import annotations

import itertools
import math

import numpy as np


def parity(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    out = np.zeros_like(x)
    while np.any(x):
        out ^= x & np.uint64(1)
        x = x >> np.uint64(1)
    return out


def expand_block(k, n_in, n_out, nc, K, taps, bits: np.ndarray) -> np.ndarray:
    """VD v1 on input bit sequences: ``bits`` is (..., steps * n_in) of 0/1, the
    result (..., steps * n_out) bool. Vectorised over the leading axes."""
    bits = np.asarray(bits, dtype=np.uint64)
    steps = bits.shape[-1] // n_in
    s = np.zeros(bits.shape[:-1], dtype=np.uint64)
    taps = np.asarray(taps, dtype=np.uint64)
    out = []
    for t in range(steps):
        u = sum(bits[..., t * n_in + i] << np.uint64(i) for i in range(n_in))
        r = (s << np.uint64(n_in)) | u
        x = parity(r[..., None] & taps)  # (..., n_out * nc)
        v = (x.reshape(*x.shape[:-1], n_out, nc) << np.arange(nc, dtype=np.uint64)).sum(-1)
        out.append(v < K)
        s = r & np.uint64((1 << k) - 1)
    return np.concatenate(out, axis=-1)


def unpack(words: np.ndarray, nbits: int, start_bit: int = 0) -> np.ndarray:
    """Bits ``start_bit ..`` of a little-endian u64 stream as 0/1."""
    idx = np.arange(start_bit, start_bit + nbits)
    return ((words[idx // 64] >> (idx % 64).astype(np.uint64)) & np.uint64(1)).astype(np.uint8)


def expand(config, index: np.ndarray, n_weights: int, block_steps: int) -> np.ndarray:
    """The whole tensor's mask, block by block as docs/format.md ("Blocks") lays them out."""
    return expand_v2(config, index, (n_weights,), block_steps, None, "C")


def brute_force_optimum(config, scores: np.ndarray, lam: float, steps: int) -> float:
    """Max over every input sequence of ``sum over kept (score - lam)`` for one block."""
    c = config
    nbits = steps * c.n_in
    seqs = np.array(list(itertools.product([0, 1], repeat=nbits)), dtype=np.uint8)
    masks = expand_block(c.flip_flops, c.n_in, c.n_out, c.comparator_bits, c.threshold, c.taps, seqs)
    masks = masks[:, : len(scores)]
    return float((masks * (scores - lam)).sum(axis=1).max())


def retained(mask: np.ndarray, scores: np.ndarray) -> float:
    """sum(kept scores) / sum(top-nnz scores)."""
    nnz = int(mask.sum())
    s = scores.ravel().astype(np.float64)
    top = np.sort(s)[::-1][:nnz].sum()
    return float(s[mask.ravel()].sum() / top) if top else 1.0


def expand_v2(config, index: np.ndarray, shape, block_steps: int, thresholds, order: str) -> np.ndarray:
    """Format v2 (docs/format.md, "Thresholds per block", "Order"): block ``b``
    compares with ``thresholds[b]`` (the config's threshold if ``None``); the
    stream walks the 2-D view ``(shape[0], rest)`` row by row ("C") or column
    by column ("F"). Returns the mask in C order, of ``shape``."""
    c = config
    n = math.prod(shape)
    rows = shape[0] if len(shape) >= 2 else 1
    cols = n // rows
    bw = block_steps * c.n_out
    wpb = math.ceil(block_steps * c.n_in / 64)
    stream = []
    for b in range(math.ceil(n / bw)):
        m = min(bw, n - b * bw)
        steps = math.ceil(m / c.n_out)
        K = c.threshold if thresholds is None else int(thresholds[b])
        bits = unpack(index, steps * c.n_in, b * wpb * 64)
        stream.append(expand_block(c.flip_flops, c.n_in, c.n_out, c.comparator_bits, K, c.taps, bits)[:m])
    s = np.concatenate(stream)
    out = np.zeros(n, dtype=bool)
    p = np.arange(n)
    # Stream position p is flat C index p ("C") or (p mod R) * C + p div R ("F").
    out[p if order == "C" else (p % rows) * cols + p // rows] = s
    return out.reshape(shape)


def stream_order(a: np.ndarray, order: str) -> np.ndarray:
    """``a`` flattened in stream order: its 2-D view ``(shape[0], rest)`` row
    by row ("C") or column by column ("F")."""
    a = np.asarray(a)
    if a.ndim < 2:
        return a.reshape(-1)
    view = a.reshape(a.shape[0], -1)
    return (view if order == "C" else view.T).reshape(-1)


def kept_values(w: np.ndarray, sp) -> np.ndarray:
    """The weights ``sp`` keeps, in its stream order (``sp.values``' order)."""
    return stream_order(w, sp.order)[stream_order(sp.mask(), sp.order)]
