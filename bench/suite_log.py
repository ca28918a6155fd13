"""A pytest plugin that logs every test phase of a run, for "The suite" in bench/README.md: one tab-separated line
per phase (test id, setup/call/teardown, seconds, outcome, xdist worker, end time) appended to
``$PICSIFT_SUITE_LOG`` (default ``bench/results/suite-log.tsv``). Each xdist worker writes its own lines.

    PYTHONPATH=bench PYTEST_ADDOPTS="-p suite_log" make test
    python bench/suite_log.py bench/results/suite-log.tsv     # busy seconds per worker, the slowest modules
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

LOG = Path(os.environ.get("PICSIFT_SUITE_LOG", Path(__file__).parent / "results" / "suite-log.tsv"))


def pytest_runtest_logreport(report: Any) -> None:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG, "a") as f:
        f.write(f"{report.nodeid}\t{report.when}\t{report.duration:.2f}\t{report.outcome}\t"
                f"{os.environ.get('PYTEST_XDIST_WORKER', '-')}\t{time.time():.1f}\n")


def summary(path: Path) -> None:
    busy: dict[str, float] = defaultdict(float)
    modules: dict[str, float] = defaultdict(float)
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    xdist = any(row[4] != "-" for row in rows)
    for nodeid, _, seconds, _, worker, _ in rows:
        if xdist and worker == "-":
            continue  # the controller's copy of a worker's report
        busy[worker] += float(seconds)
        modules[nodeid.split("::")[0]] += float(seconds)
    for worker, seconds in sorted(busy.items()):
        print(f"worker {worker}: busy {seconds:.1f} s")
    print(f"all tests: {sum(busy.values()):.1f} s")
    for module, seconds in sorted(modules.items(), key=lambda item: -item[1])[:15]:
        print(f"{seconds:8.1f} s  {module}")


if __name__ == "__main__":
    summary(Path(sys.argv[1]) if len(sys.argv) > 1 else LOG)
