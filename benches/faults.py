"""Fault injection: memory limits, SIGINT timing and hostile metadata sizes.

Every trial runs in a child process and reports how it ended; the parent
classifies it. Parts:

(a) memory limits: each long call (load_file, prune, search at a fixed lam,
    expand, to_dense, W @ X, X @ W, save_file) under RLIMIT_AS set to the
    child's size plus a sweep of margins; a trial must end normally or in
    MemoryError, never in an abort, a signal or a panic.
(b) SIGINT timing: SIGINT at a few delays into each long call; the latency
    to KeyboardInterrupt is measured (the slowest is printed) and an
    interrupted save must leave no file behind.
(c) hostile metadata: files with an unknown field of millions of zeros, a
    config with tens of millions of taps and 100,000 tiny pruned tensors;
    the peak RSS of loading each (refused or not) over the file's size.
(d) totals: inputs tried, faults injected, and crashes, aborts, panics and
    lost files.

    python benches/faults.py --quick     # a few minutes
    python benches/faults.py             # larger inputs, more margins and delays
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from children import first_line  # noqa: E402
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "python"))

CHILD = r"""
import os, sys, time, resource, numpy as np, vitrust
from vitrust import _vitrust
exec(sys.argv[1])
margin = int(sys.argv[3])
if margin >= 0:
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + margin, vm + margin))
with open("/proc/self/status") as f:
    before = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))
print("ready", flush=True)
try:
    exec(compile(sys.argv[2], "op", "exec"))  # (exec of a string would mark a caught KeyboardInterrupt as unhandled at exit)
    print("done", time.monotonic(), flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
except MemoryError:
    print("memory", time.monotonic(), flush=True)
except ValueError:
    print("refused", time.monotonic(), flush=True)
# The high-water mark of this process's own memory (ru_maxrss would include
# the parent's at fork) over its size just before the call.
with open("/proc/self/status") as f:
    hwm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
print("peak", hwm - before, flush=True)
"""

SPARSE = """
rng = np.random.default_rng(0)
c = vitrust.VDConfig(10, 1, 5, 1, 1)
def sparse(rows, cols):
    n = rows * cols
    idx = rng.integers(0, 2**63, _vitrust.layout_info(c, n, 1024)[1], dtype=np.uint64)
    st = _vitrust.block_starts(c, idx, n, 1024)
    return vitrust.ViterbiSparse((rows, cols), c, 1024, idx, np.ones(int(st[-1]), np.float32), 0.0)
"""


def long_calls(scale: int, tmp: Path) -> dict[str, tuple[str, str]]:
    """(setup, op) per long call; `scale` sets the weights per tensor (2**scale)."""
    side = 1 << (scale // 2)
    src = tmp / "input.safetensors"
    out = tmp / "out.safetensors"
    return {
        "load_file": (f"path = {str(src)!r}", "vitrust.load_file(path)"),
        "prune (rate)": (
            f"w = np.random.default_rng(0).standard_normal({1 << (scale - 4)}).astype(np.float32)",
            "vitrust.prune(w, 0.9, flip_flops=14)",
        ),
        "prune (lam)": (
            f"w = np.random.default_rng(0).standard_normal({1 << (scale - 2)}).astype(np.float32)",
            "vitrust.prune(w, lam=0.5)",
        ),
        "expand": (SPARSE + f"sp = sparse({side}, {side})", "sp.mask()"),
        "to_dense": (SPARSE + f"sp = sparse({side}, {side})", "sp.to_dense()"),
        "W @ X": (SPARSE + f"sp = sparse({side}, {side}); x = np.ones(({side}, 256), np.float32)", "sp @ x"),
        "X @ W": (SPARSE + f"sp = sparse({side}, {side}); x = np.ones((256, {side}), np.float32)", "x @ sp"),
        "save_file": (
            f"path = {str(out)!r}; ws = {{f'w{{i}}': np.full({1 << (scale - 5)}, i, np.float32) for i in range(32)}}",
            "vitrust.save_file(ws, path)",
        ),
    }


class Tally:
    def __init__(self) -> None:
        self.inputs = self.faults = 0
        self.crashes = self.aborts = self.panics = self.lost = self.unstarted = 0
        self.bad: list[str] = []

    def judge(self, what: str, code: int, out: str, err: str) -> str:
        """The child's outcome; a crash, abort or panic is counted and kept."""
        self.inputs += 1
        words = [l.split() for l in out.splitlines() if l.strip()]
        outcome = next((w[0] for w in words if w[0] in ("done", "interrupted", "memory", "refused")), None)
        if not out.startswith("ready") and code == 0 and not err:
            # The limit stopped the interpreter itself before the call began.
            self.unstarted += 1
            return "unstarted"
        if outcome is None and code == -signal.SIGINT and "done" in out:
            return "done"  # finished just before the signal, which then ended the interpreter
        if "PanicException" in err or "panicked" in err:
            self.panics += 1
        elif code == -signal.SIGABRT or "memory allocation of" in err:
            self.aborts += 1
        elif code < 0 or outcome is None:
            self.crashes += 1
        else:
            return outcome
        self.bad.append(f"{what}: status {code}: {err.strip()[-300:]}")
        return "bad"



def run(setup: str, op: str, margin: int = -1, sigint_after: float | None = None) -> tuple[int, str, str, float | None]:
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, setup, op, str(margin)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    first = first_line(p)
    sent = None
    if sigint_after is not None and first.startswith("ready"):
        time.sleep(sigint_after)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=900)
    return p.returncode, first + out, err, sent


def memory_limits(t: Tally, calls: dict[str, tuple[str, str]], margins: list[int]) -> None:
    print("(a) memory limits: outcomes per margin over the child's size")
    for name, (setup, op) in calls.items():
        seen = []
        for m in margins:
            code, out, err, _ = run(setup, op, margin=m)
            t.faults += 1
            seen.append(t.judge(f"{name} at +{m >> 20} MiB", code, out, err))
        print(f"    {name:14s} " + " ".join(f"{m >> 20}M:{o}" for m, o in zip(margins, seen)))


def interrupts(t: Tally, calls: dict[str, tuple[str, str]], delays: list[float], tmp: Path) -> float:
    print("(b) SIGINT: seconds from the signal to KeyboardInterrupt")
    slowest = 0.0
    for name, (setup, op) in calls.items():
        lat = []
        for d in delays:
            for f in tmp.glob("out.safetensors*"):
                f.unlink()
            code, out, err, sent = run(setup, op, sigint_after=d)
            t.faults += 1
            outcome = t.judge(f"{name} SIGINT at {d} s", code, out, err)
            if outcome == "interrupted" and sent is not None:
                at = float(next(l.split()[1] for l in out.splitlines() if l.startswith("interrupted")))
                lat.append(at - sent)
                if name == "save_file" and any(tmp.glob("out.safetensors*")) | any(p.name.startswith(".") for p in tmp.iterdir()):
                    t.lost += 1
                    t.bad.append(f"{name}: an interrupted save left a file behind")
            elif outcome == "done":
                lat.append(float("nan"))  # finished before the signal
        shown = " ".join("done" if x != x else f"{x:.3f}" for x in lat)
        real = [x for x in lat if x == x]
        slowest = max([slowest] + real)
        print(f"    {name:14s} {shown}")
    return slowest


def header_file(path: Path, metadata: dict[str, str], tensors: dict[str, tuple[str, list[int], bytes]]) -> int:
    """Writes a safetensors file by hand (for headers no writer would produce)."""
    head: dict = {"__metadata__": metadata}
    off, blobs = 0, []
    for name, (dtype, shape, data) in tensors.items():
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    return path.stat().st_size


def hostile_files(tmp: Path, quick: bool) -> list[tuple[str, Path]]:
    """Hostile-metadata files: an unknown field of zeros, a huge taps list, many tiny pruned tensors."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "python"))
    import vitrust

    zeros = 5_000_000 if quick else 49_000_000
    taps = 3_000_000 if quick else 30_000_000
    tiny = 10_000 if quick else 100_000
    files = []
    w = np.ones(64, np.float32)
    sp = vitrust.prune(np.arange(1, 65, dtype=np.float32), 0.5)
    base = tmp / "base.safetensors"
    vitrust.save_file({"sp": sp}, base)
    with open(base, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    meta = json.loads(head["__metadata__"]["vitrust"])

    def rewrite(name: str, edit) -> None:
        m = json.loads(json.dumps(meta))
        edit(m)
        tensors = {k: (v["dtype"], v["shape"], data[v["data_offsets"][0] : v["data_offsets"][1]]) for k, v in head.items() if k != "__metadata__"}
        p = tmp / name
        header_file(p, {"vitrust": json.dumps(m)}, tensors)
        files.append((name, p))

    rewrite(f"unknown field of {zeros:,} zeros", lambda m: m.__setitem__("extra", [0] * zeros))
    rewrite(f"taps of {taps:,} entries", lambda m: m["sparse"]["sp"]["config"].__setitem__("taps", [0] * taps))
    many = tmp / "many.safetensors"
    vitrust.save_file({f"t{i}": sp for i in range(tiny)} | {"w": w}, many)
    files.append((f"{tiny:,} tiny pruned tensors (valid)", many))
    return files


def metadata_sizes(t: Tally, tmp: Path, quick: bool) -> float:
    print("(c) hostile metadata: peak RSS of loading over the file's size")
    worst = 0.0
    for name, path in hostile_files(tmp, quick):
        code, out, err, _ = run(f"path = {str(path)!r}", "vitrust.load_file(path)")
        outcome = t.judge(name, code, out, err)
        peak = int(next((l.split()[1] for l in out.splitlines() if l.startswith("peak")), 0))
        size = path.stat().st_size
        ratio = max(peak, 0) / size  # the child's peak over its size before the call
        worst = max(worst, ratio)
        print(f"    {name:40s} {size / 2**20:8.1f} MiB file  {outcome:9s} peak +{peak / 2**20:8.1f} MiB  ({ratio:.1f}x)")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small inputs, few margins and delays (a few minutes)")
    args = ap.parse_args()
    scale = 26 if args.quick else 30
    margins = [m << 20 for m in ([4, 32, 128] if args.quick else [1, 4, 16, 32, 64, 128, 256, 512])]
    delays = [0.05, 0.3] if args.quick else [0.02, 0.1, 0.3, 0.6, 1.0]
    t0 = time.time()
    t = Tally()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        import numpy as np

        sys.path.insert(0, str(ROOT / "python"))
        import vitrust

        vitrust.save_file({"w": np.ones(1 << (scale - 2), np.float32)}, tmp / "input.safetensors")
        calls = long_calls(scale, tmp)
        memory_limits(t, calls, margins)
        slowest = interrupts(t, calls, delays, tmp)
        worst = metadata_sizes(t, tmp, args.quick)
    print("(d) totals")
    print(f"    inputs tried {t.inputs}, faults injected {t.faults}")
    print(f"    crashes {t.crashes}, aborts {t.aborts}, panics {t.panics}, lost files {t.lost}")
    print(f"    (children the limit stopped before the call began: {t.unstarted})")
    print(f"    slowest interrupt {slowest:.3f} s, worst peak RSS over file size {worst:.1f}x")
    print(f"    ({time.time() - t0:.0f} s)")
    for b in t.bad:
        print("    !", b)


if __name__ == "__main__":
    main()
