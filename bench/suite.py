"""The test suite's child processes: forked from the test zygote (tests/fast_python.py) vs fresh interpreters.

Runs the same pytest selection with ``PICSIFT_TEST_FRESH_PYTHON=1`` (every ``python -m picsift`` / ``python -c``
child starts a new interpreter, as before) and without it (children fork from an interpreter that has imported
torch, transformers and open_clip), alternating, and prints wall and CPU seconds (pytest and all its children) and
the ratio. The default selection is the modules that start the most children.

    nice -n 10 .venv/bin/python bench/suite.py [--rounds 2] [-- pytest args]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import header, median, table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["tests/test_cli.py", "tests/test_crash_safety.py", "tests/test_bad_input.py", "tests/test_serve.py",
           "tests/test_security_untrusted.py", "-k", "not full_disk and not without_room"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], fresh: bool) -> tuple[float, float, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PICSIFT_TEST_FRESH_PYTHON", None)
    if fresh:
        env["PICSIFT_TEST_FRESH_PYTHON"] = "1"
    wall, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({'fresh' if fresh else 'zygote'}): {summary}")
    return time.perf_counter() - wall, children_cpu() - cpu, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("pytest_args", nargs="*", default=DEFAULT)
    args = parser.parse_args(argv)
    header("test children: forked from the zygote vs fresh interpreters", sys.argv)
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for fresh in (True, False):
            wall, cpu, summary = run(args.pytest_args, fresh)
            results[fresh].append((wall, cpu))
            print(f"  {'fresh' if fresh else 'zygote'}: {wall:.1f} s wall, {cpu:.1f} CPU s ({summary})", flush=True)
    rows = []
    for fresh in (True, False):
        wall = median([w for w, _ in results[fresh]])
        cpu = median([c for _, c in results[fresh]])
        rows.append(["fresh interpreters" if fresh else "forked from the zygote", f"{wall:.1f}", f"{cpu:.1f}"])
    base_wall, base_cpu = (float(x) for x in rows[0][1:])
    for row in rows:
        row += [f"{float(row[1]) / base_wall:.2f}x", f"{float(row[2]) / base_cpu:.2f}x"]
    print(table(rows, ["children", "wall s (median)", "CPU s (median)", "wall ratio", "CPU ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
