"""Peak memory and time of loading hostile files (``tests/hostile.py``).

For each case, a file of about ``--size`` bytes is written and loaded in a
fresh process; the report gives the file size, the peak resident memory
above the interpreter's own, their ratio, the outcome (loaded or refused)
and the load time. The README promises about twice the file's size.

    python benches/hostile_files.py --size 50e6
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import hostile  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=float, default=50e6, help="bytes per file (default 50e6)")
    p.add_argument("--cases", nargs="*", default=list(hostile.CASES) + ["wide config", "normal"])
    args = p.parse_args()
    builders = dict(hostile.CASES, **{"wide config": hostile.wide_config, "normal": hostile.normal})
    print(f"{'case':<14} {'file MB':>9} {'peak MB':>9} {'ratio':>6} {'outcome':>8} {'s':>7} {'MB/s':>8}")
    with tempfile.TemporaryDirectory() as d:
        for name in args.cases:
            path = os.path.join(d, "f.safetensors")
            builders[name](path, int(args.size))
            size = os.path.getsize(path)
            ok, peak, dt = hostile.measure(path)
            print(f"{name:<14} {size / 1e6:>9.1f} {peak / 1e6:>9.1f} {peak / size:>6.2f} {ok:>8} {dt:>7.2f} "
                  f"{size / 1e6 / dt:>8.1f}", flush=True)
            os.remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
