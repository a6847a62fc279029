"""``vitrust prune --plot``: storage per format and retained importance per tensor.

matplotlib is optional; without it the command fails with a message saying
how to install it, before any work is done.
"""

from __future__ import annotations

from typing import Any, Dict, List

# Formats drawn, in order: (storage-table key prefix, label).
FORMATS = (
    ("dense", "dense"),
    ("csr32", "CSR (int32)"),
    ("relative-4", "relative (4-bit)"),
    ("bitmask", "bitmask"),
    ("viterbi", "vitrust"),
)


def require_matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install matplotlib (or pip install 'vitrust[plot]')") from None
    return plt


def _bytes(table: Dict[str, Dict[str, float]], prefix: str) -> float:
    for key, row in table.items():
        if key == prefix or key.startswith(prefix):
            return float(row["total_bytes"])
    return float("nan")


def plot(rows: List[Any], path: str) -> None:
    """Writes a two-panel PNG: total bytes per format, retained |w| per tensor."""
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, max(4.0, 0.3 * len(rows) + 2)))
    totals = [sum(_bytes(r.storage, key) for r in rows) / 2**20 for key, _ in FORMATS]
    labels = [label for _, label in FORMATS]
    bars = ax1.barh(labels, totals, color=["#999999"] * (len(FORMATS) - 1) + ["#d62728"])
    ax1.bar_label(bars, fmt="%.2f MiB", padding=3)
    ax1.set_xlabel("MiB (index + values) over the pruned tensors")
    ax1.set_title("storage by index format")
    ax1.set_xlim(0, max(totals) * 1.3 if rows else 1)
    # A tensor whose rate missed the request is drawn orange and labelled with both rates.
    names = [r.name if r.missed is None else f"{r.name} (rate {r.rate:.1%}, asked {r.missed:.1%})" for r in rows]
    colors = ["#1f77b4" if r.missed is None else "#ff7f0e" for r in rows]
    ax2.barh(names, [r.retained for r in rows], color=colors)
    ax2.invert_yaxis()
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("retained |w| relative to magnitude pruning at the same count")
    ax2.set_title("retained importance per tensor")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
