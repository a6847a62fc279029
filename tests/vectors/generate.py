"""Derives ``vd_v1_extra.json`` from the project's scalar reference.

The shared vectors (``vd_v1.json``) stop at 12 flip-flops, 16 mask bits per
step and 3 input bits per step. This script extends them to the rest of the
v1 ranges (docs/format.md, "The Viterbi decompressor"): 16 flip-flops, up to
64 mask bits per step, 4 input bits per step, 512 gates, comparators that
keep everything, and whole tensors of several blocks (docs/format.md,
"Blocks" and "Index layout").

The masks come from ``tests/reference.py``, a plain NumPy transcription of
the VD that shares no code with the core. Before writing anything the script
checks that reference against every expansion record of the shared vectors,
so the new vectors are anchored to them. Inputs are drawn from a pinned
SplitMix64 stream (not numpy's generators, whose streams may change between
releases), so the file is the same on every run and machine.

Run from anywhere: ``python tests/vectors/generate.py`` rewrites the file;
``--check`` only reports whether it is up to date.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from reference import expand, expand_block  # noqa: E402

SHARED = HERE / "vd_v1.json"
EXTRA = HERE / "vd_v1_extra.json"
MASK64 = (1 << 64) - 1

# One block each: (k, n_in, n_out, nc, K, steps). Chosen for what the
# shared vectors leave out: k = 16, n_out > 16 (up to 64, the step's word),
# n_in = 4 (also n_in = k), 512 gates (n_out = 64, nc = 8), a comparator that
# keeps everything (K = 2^nc), and steps whose bits straddle u64 words.
BLOCKS = [
    (16, 1, 5, 5, 3, 150),
    (16, 4, 20, 3, 2, 40),
    (16, 2, 16, 7, 100, 70),
    (16, 3, 64, 1, 1, 30),
    (15, 4, 24, 4, 5, 50),
    (12, 1, 24, 4, 5, 90),
    (10, 2, 32, 2, 1, 60),
    (14, 4, 40, 5, 20, 40),
    (8, 1, 64, 8, 77, 40),
    (9, 3, 17, 6, 64, 45),
    (4, 4, 8, 1, 1, 70),
    (6, 4, 48, 3, 3, 35),
]

# Whole tensors: (k, n_in, n_out, nc, K, n_weights, block_steps). Several
# blocks, a short last block, a last step past the tensor's end, and blocks
# whose bits are not a whole number of words (padding bits are drawn at
# random too: a decoder must ignore them).
TENSORS = [
    (16, 1, 5, 5, 3, 1234, 70),
    (11, 4, 20, 3, 2, 2001, 17),
    (13, 3, 24, 4, 5, 1500, 21),
    (10, 2, 64, 8, 77, 3000, 9),
    (16, 4, 32, 2, 1, 999, 10),
]


class SplitMix64:
    """The generator ``rust/vd.rs`` pins for taps, reimplemented."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def bits(self, n: int) -> List[int]:
        out: List[int] = []
        while len(out) < n:
            w = self.next()
            out.extend((w >> i) & 1 for i in range(64))
        return out[:n]


def taps_of(k: int, n_in: int, n_out: int, nc: int, seed: int) -> List[int]:
    """The tap generator of docs/format.md ("The Viterbi decompressor")."""
    rng = SplitMix64(seed)
    width, inputs = (1 << (k + n_in)) - 1, (1 << n_in) - 1
    taps = []
    for _ in range(n_out * nc):
        t = (rng.next() >> 32) & width
        while t & inputs == 0:
            t = (rng.next() >> 32) & width
        taps.append(t)
    return taps


def bit_string(bits: Any) -> str:
    return "".join("1" if b else "0" for b in bits)


def check_shared() -> int:
    """Checks the reference against every shared expansion record."""
    shared = json.loads(SHARED.read_text())
    for i, v in enumerate(shared["expand"]):
        bits = np.array([c == "1" for c in v["bits"]], dtype=np.uint8)
        got = expand_block(v["k"], v["n_in"], v["n_out"], v["nc"], v["K"], v["taps"], bits)
        if bit_string(got) != v["mask"]:
            raise SystemExit(f"the reference disagrees with {SHARED.name} expand[{i}]: not generating")
    return len(shared["expand"])


def block_records() -> Iterator[Dict[str, Any]]:
    for i, (k, n_in, n_out, nc, K, steps) in enumerate(BLOCKS):
        taps = taps_of(k, n_in, n_out, nc, seed=1000 + i)
        bits = SplitMix64(2000 + i).bits(steps * n_in)
        mask = expand_block(k, n_in, n_out, nc, K, taps, np.array(bits, dtype=np.uint8))
        yield {"k": k, "n_in": n_in, "n_out": n_out, "nc": nc, "K": K, "taps": taps, "tap_seed": 1000 + i,
               "steps": steps, "bits": bit_string(bits), "mask": bit_string(mask)}


def tensor_records() -> Iterator[Dict[str, Any]]:
    for i, (k, n_in, n_out, nc, K, n_weights, block_steps) in enumerate(TENSORS):
        taps = taps_of(k, n_in, n_out, nc, seed=3000 + i)
        per_block = math.ceil(block_steps * n_in / 64)
        n_blocks = math.ceil(n_weights / (block_steps * n_out))
        last_steps = math.ceil((n_weights - (n_blocks - 1) * block_steps * n_out) / n_out)
        n_words = (n_blocks - 1) * per_block + math.ceil(last_steps * n_in / 64)
        rng = SplitMix64(4000 + i)
        words = [rng.next() for _ in range(n_words)]
        config = SimpleNamespace(flip_flops=k, n_in=n_in, n_out=n_out, comparator_bits=nc, threshold=K, taps=taps)
        mask = expand(config, np.array(words, dtype=np.uint64), n_weights, block_steps)
        yield {"k": k, "n_in": n_in, "n_out": n_out, "nc": nc, "K": K, "taps": taps, "tap_seed": 3000 + i,
               "n_weights": n_weights, "block_steps": block_steps,
               "index": [f"{w:016x}" for w in words], "mask": bit_string(mask)}


def build() -> str:
    """The file's text: the shared vectors are checked first."""
    n = check_shared()
    doc = {
        "spec": "vitrust VD v1 (docs/format.md), extra vectors derived by tests/vectors/generate.py "
                f"from tests/reference.py, which reproduces all {n} expansion records of vd_v1.json",
        "expand": list(block_records()),
        "tensors": list(tensor_records()),
    }
    return dump(doc)


def dump(doc: Dict[str, Any]) -> str:
    """JSON with one record per line: short to read, stable to diff."""
    lines = ["{"]
    for i, (key, value) in enumerate(doc.items()):
        end = "," if i < len(doc) - 1 else ""
        if isinstance(value, list):
            rows = [" " + json.dumps(r, separators=(",", ":")) for r in value]
            lines += [f" {json.dumps(key)}: [", ",\n".join(rows), f" ]{end}"]
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}{end}")
    return "\n".join(lines + ["}"]) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only report whether the file is up to date")
    args = p.parse_args()
    text = build()
    if args.check:
        same = EXTRA.exists() and EXTRA.read_text() == text
        print(f"{EXTRA.name} is {'up to date' if same else 'stale: run without --check'}")
        raise SystemExit(0 if same else 1)
    EXTRA.write_text(text)
    print(f"wrote {EXTRA.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
