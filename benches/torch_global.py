"""Global pruning of a CNN: ``vitrust.torch.prune_model`` beside
``torch.nn.utils.prune.global_unstructured`` (L1), side by side in one run.

    python benches/torch_global.py               # ~23 M weights (VGG-like), rate 0.9, best of 3
    python benches/torch_global.py --width 0.25 --repeat 1   # a quick check

Prints each one's time (best of ``--repeat``, each on a fresh copy of the
model), the achieved overall rate, the search work vitrust spent (in full
passes over the model) and the time ratio; the goal is a ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.nn.utils import prune

import vitrust.torch as vt
from vitrust import _calibrate


def cnn(width: float = 1.0, seed: int = 0) -> torch.nn.Module:
    """A VGG-11-like network for 32x32 inputs (about 23 M weights at width 1)."""
    torch.manual_seed(seed)
    c = [max(4, int(x * width)) for x in (64, 128, 256, 256, 512, 512, 512, 512)]
    layers, prev = [], 3
    for i, ch in enumerate(c):
        layers += [torch.nn.Conv2d(prev, ch, 3, padding=1), torch.nn.BatchNorm2d(ch), torch.nn.ReLU()]
        if i in (0, 1, 3, 5, 7):
            layers.append(torch.nn.MaxPool2d(2))
        prev = ch
    hidden = max(16, int(3072 * width))
    layers += [torch.nn.Flatten(), torch.nn.Linear(prev, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
               torch.nn.ReLU(), torch.nn.Linear(hidden, 1000)]
    return torch.nn.Sequential(*layers)


def weights_of(model: torch.nn.Module):
    return [(m, "weight") for _, m in vt.prunable_layers(model)]


def overall_rate(model: torch.nn.Module) -> float:
    masks = [m.weight_mask for m, _ in weights_of(model)]
    return 1.0 - sum(float(x.sum()) for x in masks) / sum(x.numel() for x in masks)


def run_torch(model: torch.nn.Module, rate: float) -> None:
    prune.global_unstructured(weights_of(model), pruning_method=prune.L1Unstructured, amount=rate)


def run_vitrust(model: torch.nn.Module, rate: float) -> None:
    vt.prune_model(model, rate)


def timed(fn, base: torch.nn.Module, rate: float, repeat: int):
    best, model = float("inf"), None
    for _ in range(repeat):
        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        fn(model, rate)
        best = min(best, time.perf_counter() - t0)
    return best, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (1: about 23 M weights)")
    ap.add_argument("--rate", type=float, default=0.9)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = cnn(args.width)
    n = sum(m.weight.numel() for m, _ in weights_of(base))
    print(f"model: {len(weights_of(base))} layers, {n / 1e6:.2f} M prunable weights, rate {args.rate}, "
          f"{torch.get_num_threads()} torch threads")
    t_torch, m_torch = timed(run_torch, base, args.rate, args.repeat)
    passes = []
    solve = _calibrate.Calibrator.solve

    def counting(self, *a, **k):  # records the search work of the final solve
        lam = solve(self, *a, **k)
        if k.get("full") is not None:
            passes.append(self.passes)
        return lam

    _calibrate.Calibrator.solve = counting  # type: ignore[method-assign]
    try:
        t_vt, m_vt = timed(run_vitrust, base, args.rate, args.repeat)
    finally:
        _calibrate.Calibrator.solve = solve  # type: ignore[method-assign]
    print(f"{'method':<36} {'time (s)':>9} {'rate':>8}")
    print(f"{'torch global_unstructured (L1)':<36} {t_torch:>9.3f} {overall_rate(m_torch):>8.2%}")
    print(f"{'vitrust.torch.prune_model':<36} {t_vt:>9.3f} {overall_rate(m_vt):>8.2%}")
    print(f"vitrust search work: {passes[-1]:.2f} full passes; ratio vitrust / torch: {t_vt / t_torch:.2f}x")


if __name__ == "__main__":
    main()
