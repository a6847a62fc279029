"""Mutation score of the Python layer from a uniform random sample of mutmut's mutants.

mutmut 3 checks mutants in order of the estimated time of their tests, so a run stopped
early measures the functions with the fastest tests. This script lists every mutant
mutmut generates for ``python/vitrust``, draws a uniform sample with a fixed seed, has
mutmut check exactly those, and prints killed / survived / no tests / timeout per module
and in total, with the killed fraction and its 95 % Wilson score interval.

Run from the repository root, in the environment the tests run in::

    python benches/mutation_sample.py --n 200 --seed 20261202          # sample, run, report
    python benches/mutation_sample.py --n 200 --seed 20261202 --report # report only
    python benches/mutation_sample.py --n 200 --seed 20261202 --list   # print the sample

``--skip-done`` passes mutmut only the sampled mutants that have no result yet (resume an
interrupted run); without it the whole sample is checked again. ``--equivalent FILE``
(one mutant name a line, or benches/MUTATION.md: the names in its "equivalent"
sections) also reports the fraction without the mutants
judged equivalent. The setup is the one of benches/MUTATION.md: a ``src`` link to
``python`` (mutmut strips only a leading ``src.`` from module names) and ``mutants/src``
on ``PYTHONPATH`` so that subprocesses started by the tests load the mutated copy.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# mutmut's statuses; "timeout" and "segfault" end the tests abnormally: counted as killed
# in the totals (as mutmut's own summary does), but shown in their own column.
KILLED_LIKE = {"killed", "timeout", "segfault"}


def setup() -> dict[str, str]:
    src = ROOT / "src"
    if not src.exists():
        src.symlink_to("python")
    (ROOT / "mutants" / "src").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "mutants" / "src")
    return env


GENERATE = """
from mutmut.__main__ import (copy_src_dir, copy_also_copy_files, setup_source_paths,
    store_lines_covered_by_tests, create_mutants, set_mutant_under_test)
set_mutant_under_test("mutant_generation")
copy_src_dir(); copy_also_copy_files(); setup_source_paths()
store_lines_covered_by_tests()
s = create_mutants(1)
print("mutated", s.mutated, "ignored", s.ignored, "unmodified", s.unmodified)
"""


def results(env: dict[str, str]) -> dict[str, str]:
    """Every mutant mutmut knows, with its status ("not checked" when it has none)."""
    out = subprocess.run(
        ["mutmut", "results", "--all", "true"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    status = {}
    for line in out.splitlines():
        name, sep, st = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            status[name] = st
    return status


def all_mutants(env: dict[str, str]) -> dict[str, str]:
    # Generate the mutants (no tests run) so the list is complete even before the first run.
    subprocess.run([sys.executable, "-c", GENERATE], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return results(env)


def draw(names: list[str], n: int, seed: int) -> list[str]:
    names = sorted(names)
    return sorted(random.Random(seed).sample(names, min(n, len(names))))


def module_of(name: str) -> str:
    return name.split("__mutmut_")[0].rsplit(".", 1)[0]


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def report(sample: list[str], status: dict[str, str], total: int, equivalent: set[str]) -> None:
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name in sample:
        st = status.get(name, "not checked")
        by_module[module_of(name)][st] += 1
        if name in equivalent and st not in KILLED_LIKE:
            by_module[module_of(name)]["equivalent"] += 1
    cols = ["killed", "timeout", "survived", "no tests", "equivalent", "other"]
    print(f"{total} mutants in all; sample of {len(sample)}")
    print()
    print("| module | sampled | " + " | ".join(cols) + " | killed % |")
    print("|---" * (len(cols) + 3) + "|")
    grand: Counter = Counter()
    for mod in sorted(by_module):
        c = by_module[mod]
        n = sum(v for k, v in c.items() if k != "equivalent")
        other = n - sum(c[k] for k in ("killed", "timeout", "survived", "no tests"))
        killed = sum(c[k] for k in KILLED_LIKE)
        row = [c["killed"], c["timeout"], c["survived"], c["no tests"], c["equivalent"], other]
        print(f"| {mod} | {n} | " + " | ".join(map(str, row)) + f" | {100 * killed / n:.1f} |")
        grand.update(c)
    n = len(sample)
    killed = sum(grand[k] for k in KILLED_LIKE)
    lo, hi = wilson(killed, n)
    print()
    print(
        f"killed {killed} (of which timeout {grand['timeout']}), survived {grand['survived']}, "
        f"no tests {grand['no tests']}, other {n - killed - grand['survived'] - grand['no tests']}"
    )
    print(f"killed / sampled: {killed} / {n} = {100 * killed / n:.1f} %  (95 % Wilson: {100 * lo:.1f}-{100 * hi:.1f} %)")
    eq = grand["equivalent"]
    if eq:
        lo, hi = wilson(killed, n - eq)
        print(
            f"killed / (sampled - equivalent): {killed} / {n - eq} = {100 * killed / (n - eq):.1f} %"
            f"  (95 % Wilson: {100 * lo:.1f}-{100 * hi:.1f} %)"
        )
    left = [s for s in sample if status.get(s) not in KILLED_LIKE and s not in equivalent]
    if left:
        print()
        print("not killed (and not listed as equivalent):")
        for s in left:
            print(f"  {s}: {status.get(s, 'not checked')}")


RUST_EXCLUDE = ["rust/arch/**", "rust/python/**"]  # the SIMD kernels and the Python binding

# The release profile, built without LTO and with parallel, incremental codegen: the same
# optimised tests, but a mutant rebuilds in seconds instead of minutes.
RUST_ENV = {
    "CARGO_PROFILE_RELEASE_LTO": "off",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16",
    "CARGO_PROFILE_RELEASE_INCREMENTAL": "true",
}


def rust_main(a: argparse.Namespace) -> None:
    """cargo-mutants on the core without rust/arch and rust/python: seeded uniform sample."""
    import json
    import re

    excl = [x for e in RUST_EXCLUDE for x in ("-e", e)]
    names = subprocess.run(
        ["cargo", "mutants", "--list", *excl], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    sample = draw(names, a.n, a.seed)
    if a.list:
        print("\n".join(sample))
        return
    out = ROOT / "mutants.out"
    if not a.report:
        env = dict(os.environ, **RUST_ENV)
        res = [x for s in sample for x in ("-F", "^" + re.escape(s) + "$")]
        cmd = ["cargo", "mutants", "-j", str(a.max_children), "--profile", "release", "--shuffle", *excl, *res]
        subprocess.run(cmd, cwd=ROOT, env=env)
    outcomes = json.loads((out / "outcomes.json").read_text())
    # cargo-mutants tests its "delete field" mutants whatever -F says: only the sampled
    # names count; the others are listed apart. Not yet tested: "not run" (interrupted run,
    # which --shuffle keeps a uniform subsample of the sample).
    in_sample = set(sample)
    by_file: dict[str, Counter] = defaultdict(Counter)
    done, extra = set(), []
    for o in outcomes["outcomes"]:
        sc = o["scenario"]
        if isinstance(sc, dict) and "Mutant" in sc:
            name = sc["Mutant"]["name"]
            if name in in_sample:
                by_file[sc["Mutant"]["file"]][o["summary"]] += 1
                done.add(name)
                if o["summary"] != "CaughtMutant":
                    print(f"{o['summary']}: {name}")
            else:
                extra.append(f"{o['summary']}: {name}")
    print(f"{len(done)} of the {len(sample)} sampled mutants tested")
    if extra:
        print("tested outside the sample:", *extra, sep="\n  ")
    cols = ["CaughtMutant", "MissedMutant", "Unviable", "Timeout"]
    print(f"{len(names)} mutants in all; sample of {len(sample)}, seed {a.seed}")
    print()
    print("| file | tested | caught | missed | unviable | timeout |")
    print("|---|---|---|---|---|---|")
    grand: Counter = Counter()
    for f in sorted(by_file):
        c = by_file[f]
        print(f"| {f} | {sum(c.values())} | " + " | ".join(str(c[k]) for k in cols) + " |")
        grand.update(c)
    viable = grand["CaughtMutant"] + grand["MissedMutant"] + grand["Timeout"]
    caught = grand["CaughtMutant"] + grand["Timeout"]
    lo, hi = wilson(caught, viable)
    print()
    print(" ".join(f"{k} {grand[k]}" for k in cols))
    if viable:
        print(
            f"caught (with timeouts) / viable: {caught} / {viable} = {100 * caught / viable:.1f} %"
            f"  (95 % Wilson: {100 * lo:.1f}-{100 * hi:.1f} %)"
        )
    print()
    print("missed: see mutants.out/missed.txt")


def read_equivalent(path: Path) -> set[str]:
    """Mutant names judged equivalent: a plain list (one a line, ``#`` comments), or the
    names in the sections of a Markdown file whose heading says "equivalent"."""
    import re

    text = path.read_text(encoding="utf-8")
    if path.suffix != ".md":
        return {ln.split("#")[0].strip() for ln in text.splitlines() if ln.split("#")[0].strip()}
    names, inside = set(), False
    for line in text.splitlines():
        if line.startswith("#"):
            inside = "equivalent" in line.lower()
        elif inside:
            names.update(re.findall(r"vitrust\.[\w.ǁ]+?__mutmut_\d+", line))
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rust", action="store_true", help="sample cargo-mutants on the core instead")
    ap.add_argument("--n", type=int, default=200, help="sample size")
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--max-children", type=int, default=1)
    ap.add_argument("--list", action="store_true", help="print the sampled names and stop")
    ap.add_argument("--report", action="store_true", help="report the stored results, run nothing")
    ap.add_argument("--skip-done", action="store_true", help="check only sampled mutants without a result")
    ap.add_argument("--equivalent", type=Path, help="file of mutant names judged equivalent")
    a = ap.parse_args()
    if a.rust:
        rust_main(a)
        return

    env = setup()
    # --list and --report read the mutants already generated (the mutated copy is left
    # alone, a run may be writing to it); a run regenerates them first.
    status = results(env) if a.list or a.report else {}
    if not status:
        status = all_mutants(env)
    sample = draw(list(status), a.n, a.seed)
    if a.list:
        print("\n".join(sample))
        return
    if not a.report:
        todo = [s for s in sample if not a.skip_done or status[s] == "not checked"]
        if todo:
            subprocess.run(["mutmut", "run", "--max-children", str(a.max_children), *todo], cwd=ROOT, env=env)
        status = results(env)
    equivalent = read_equivalent(a.equivalent) if a.equivalent else set()
    report(sample, status, len(status), equivalent)


if __name__ == "__main__":
    main()
