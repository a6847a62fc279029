"""Fuzz the file loader for a while: valid vitrust files, damaged at random
(bit flips, truncation, overwritten or appended bytes, a bad length prefix,
edited header and metadata fields; files of format versions 1 and 2, the
latter with per-block thresholds and order F), must each load as exactly the original
data or raise ValueError. Any other exception, a crash, a hang (a case slower
than --case-timeout seconds) or a damaged file loading as different data
fails. Forged edits (vitrust's metadata check recomputed to match, which no
unkeyed checksum can catch) may load, but only as valid, self-consistent
tensors; they are counted separately.

    python benches/fuzz_format.py --minutes 5 [--seed 1]
"""

from __future__ import annotations

import argparse
import faulthandler
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fuzzing import consistent, mutate, same, sample_tensors, sample_tensors_v2  # noqa: E402

import vitrust  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--case-timeout", type=float, default=5.0)
    args = ap.parse_args()
    # A hang or crash prints every thread's stack instead of dying silently.
    faulthandler.enable()
    faulthandler.dump_traceback_later(args.case_timeout * 4, repeat=True)

    rng = np.random.default_rng(args.seed)
    draw = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    outcomes: Counter = Counter()
    slowest = 0.0
    with tempfile.TemporaryDirectory() as d:
        originals = []
        for s in range(6):  # a few different valid files, of format versions 1 and 2
            p = Path(d) / f"orig{s}.safetensors"
            vitrust.save_file(sample_tensors(s) if s % 2 == 0 else sample_tensors_v2(s), p)
            originals.append((p.read_bytes(), vitrust.load_file(p)))
        path = Path(d) / "case.safetensors"
        start = time.perf_counter()
        end = start + 60 * args.minutes
        cases = 0
        while time.perf_counter() < end:
            buf, want = originals[cases % len(originals)]
            damaged, forged = mutate(buf, draw)
            path.write_bytes(damaged)
            t0 = time.perf_counter()
            try:
                got = vitrust.load_file(path)
            except ValueError as e:
                outcomes[re.sub(r'"[^"]*"', '"…"', str(e)).split(":")[0][:70]] += 1
            except Exception as e:  # anything but ValueError is a failure
                (Path(d).parent / "fuzz-failure.safetensors").write_bytes(damaged)
                print(f"FAIL after {cases} cases: {type(e).__name__}: {e}", file=sys.stderr)
                return 1
            else:
                if same(got, want):
                    outcomes["loaded as the original"] += 1
                elif forged and consistent(got):
                    outcomes["forged (check recomputed): loaded as other valid tensors"] += 1
                else:
                    (Path(d).parent / "fuzz-failure.safetensors").write_bytes(damaged)
                    print(f"FAIL after {cases} cases: a damaged file loaded as different data", file=sys.stderr)
                    return 1
            dt = time.perf_counter() - t0
            slowest = max(slowest, dt)
            if dt > args.case_timeout:
                print(f"FAIL: one case took {dt:.1f} s", file=sys.stderr)
                return 1
            cases += 1
            faulthandler.dump_traceback_later(args.case_timeout * 4, repeat=True)
        elapsed = time.perf_counter() - start
    faulthandler.cancel_dump_traceback_later()
    print(f"{cases} cases in {elapsed:.0f} s ({cases / elapsed:.0f}/s), no failure; slowest case {slowest * 1e3:.1f} ms")
    print("outcomes (first words of the error):")
    for k, v in outcomes.most_common(25):
        print(f"  {v:8d}  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
