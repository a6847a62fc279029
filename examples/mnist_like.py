"""The paper's claim, end to end, on a dataset that installs offline.

Train a LeNet-300-100-style MLP (64-300-100-10, ReLU) on scikit-learn's bundled
8x8 digits with plain NumPy, prune the hidden layers to 90 % and 95 % (the
small output layer to 50 %, as pruning papers do for LeNet's last layer) with
vitrust and with magnitude pruning, fine-tune with the masks fixed, and report
test accuracy before and after fine-tuning next to the index storage of each
format (vitrust's index against CSR and relative indexing of the magnitude
mask). Several training seeds are averaged because the test split is small
(one sample is 0.28 points).

    pip install ".[examples]" && python examples/mnist_like.py

Runs in under 5 minutes on 2 cores (282 s with ``--scores``, which more than
doubles the pruning work, on a busy 2-core machine). ``--scores`` adds vitrust with
``w**2`` scores and with a caller importance (the empirical Fisher diagonal
times ``w**2``, accumulated during training).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import vitrust

SIZES = (64, 300, 100, 10)


def data(seed: int):
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


def init(seed: int):
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((o, i)) * np.sqrt(2.0 / i)).astype(np.float32) for i, o in zip(SIZES, SIZES[1:])]
    bs = [np.zeros(o, np.float32) for o in SIZES[1:]]
    return ws, bs


def forward(ws, bs, x):
    acts = [x]
    for k, (w, b) in enumerate(zip(ws, bs)):
        z = acts[-1] @ w.T + b
        acts.append(np.maximum(z, 0) if k < len(ws) - 1 else z)
    return acts


def accuracy(ws, bs, x, y) -> float:
    return float((forward(ws, bs, x)[-1].argmax(1) == y).mean())


def train(ws, bs, x, y, epochs, lr, seed, masks=None, fisher=None):
    """Adam on softmax cross-entropy; ``masks`` keep pruned weights at zero."""
    rng = np.random.default_rng(seed)
    params = ws + bs
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            acts = forward(ws, bs, x[idx])
            logits = acts[-1]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            g = p
            g[np.arange(len(idx)), y[idx]] -= 1
            g /= len(idx)
            grads_w, grads_b = [], []
            for k in range(len(ws) - 1, -1, -1):
                grads_w.insert(0, g.T @ acts[k])
                grads_b.insert(0, g.sum(0))
                if k:
                    g = (g @ ws[k]) * (acts[k] > 0)
            if fisher is not None:
                for f, gw in zip(fisher, grads_w):
                    f += gw * gw
            t += 1
            for i, (prm, grd) in enumerate(zip(params, grads_w + grads_b)):
                m[i] = 0.9 * m[i] + 0.1 * grd
                v[i] = 0.999 * v[i] + 0.001 * grd * grd
                prm -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
            if masks is not None:
                for w, mk in zip(ws, masks):
                    w *= mk


def magnitude_mask(w, rate):
    k = int(round((1 - rate) * w.size))
    order = np.argsort(-np.abs(w), axis=None, kind="stable")[:k]
    mask = np.zeros(w.size, bool)
    mask[order] = True
    return mask.reshape(w.shape)


def csr_bits(mask) -> int:
    """scipy's CSR: an int32 column index per kept weight and rows + 1 int32 row pointers."""
    return 32 * (int(mask.sum()) + mask.shape[0] + 1)


def relative_bits(mask, b=5) -> int:
    """Deep Compression's relative index: a ``b``-bit gap per kept weight plus padding entries."""
    pos = np.flatnonzero(mask.ravel())
    gaps = np.diff(np.concatenate([[-1], pos]))
    return b * (len(pos) + int(((gaps - 1) // (2**b - 1)).sum()))


def run(args):
    rows = {}
    storage = {}
    n_weights = sum(i * o for i, o in zip(SIZES, SIZES[1:]))
    for seed in range(args.seeds):
        xtr, xte, ytr, yte = data(seed)
        ws, bs = init(seed)
        fisher = [np.zeros_like(w, dtype=np.float64) for w in ws]
        train(ws, bs, xtr, ytr, args.epochs, 1e-3, seed, fisher=fisher)
        rows.setdefault(("dense", 0.0), []).append((accuracy(ws, bs, xte, yte),) * 2)
        for rate in args.rates:
            methods = {"magnitude": None, "vitrust": dict(score="abs")}
            if args.scores:
                methods["vitrust, w**2"] = dict(score="square")
                methods["vitrust, Fisher*w**2"] = "fisher"
            for name, how in methods.items():
                pw = [w.copy() for w in ws]
                pb = [b.copy() for b in bs]
                rates = [rate] * (len(pw) - 1) + [min(rate, args.output_rate)]
                if how is None:
                    masks = [magnitude_mask(w, r) for w, r in zip(pw, rates)]
                    bits = {"CSR (int32)": sum(csr_bits(m) for m in masks), "relative (5-bit)": sum(relative_bits(m) for m in masks)}
                else:
                    def options(w, f):
                        return dict(scores=(f * w * w).astype(np.float32)) if how == "fisher" else how

                    sps = [vitrust.prune(w, r, effort=args.effort, **options(w, f)) for w, f, r in zip(pw, fisher, rates)]
                    masks = [sp.mask() for sp in sps]
                    bits = {"viterbi": sum(sp.index_bits for sp in sps)}
                for w, mk in zip(pw, masks):
                    w *= mk
                before = accuracy(pw, pb, xte, yte)
                train(pw, pb, xtr, ytr, args.finetune, 1e-3, seed + 1000, masks=masks)
                rows.setdefault((name, rate), []).append((before, accuracy(pw, pb, xte, yte)))
                if seed == 0:
                    kept = sum(int(mk.sum()) for mk in masks)
                    storage.setdefault(rate, {}).update({k: (v, kept) for k, v in bits.items()})
    return rows, storage, n_weights


def report(rows, storage, n_weights, args):
    print(f"\nTest accuracy (%), mean +- sd over {args.seeds} training seeds (64-300-100-10 MLP, sklearn digits);")
    print(f"the rate applies to the two hidden layers, the 100x10 output layer is pruned at {args.output_rate:.0%}:\n")
    print("| pruning | rate | after pruning | after fine-tuning |")
    print("|---|---|---|---|")
    for (name, rate), acc in rows.items():
        a = 100 * np.array(acc)
        fmt = lambda c: f"{a[:, c].mean():.2f} +- {a[:, c].std():.2f}"  # noqa: E731
        print(f"| {name} | {rate:.0%} | {fmt(0)} | {fmt(1)} |")
    print(f"\nIndex storage of all three weight matrices ({n_weights} weights; seed 0):\n")
    print("| rate | index format | bits | bits per weight | bits per kept weight |")
    print("|---|---|---|---|---|")
    for rate, formats in storage.items():
        for name, (bits, kept) in formats.items():
            print(f"| {rate:.0%} | {name} | {bits} | {bits / n_weights:.3f} | {bits / kept:.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.9, 0.95])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--finetune", type=int, default=30)
    ap.add_argument("--output-rate", type=float, default=0.5, help="rate for the small output layer (at most --rates)")
    ap.add_argument("--effort", default="default", choices=["fast", "default", "best"])
    ap.add_argument("--scores", action="store_true", help="also prune with w**2 and Fisher*w**2 scores")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows, storage, n = run(args)
    report(rows, storage, n, args)
    print(f"\n({time.perf_counter() - t0:.0f} s; vitrust effort={args.effort!r})")


if __name__ == "__main__":
    main()
