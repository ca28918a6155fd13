"""Shared helpers for picsift's benchmarks: timing, machine description, tables.

The machines these run on are often shared, so every benchmark reports *ratios* against a baseline
measured in the same process, with the measurements interleaved and repeated (best or median).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """Where generated benchmark inputs are kept between runs (``~/.cache/picsift/bench``)."""
    base = Path(os.environ.get("PICSIFT_CACHE", Path.home() / ".cache" / "picsift"))
    folder = base / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def machine() -> str:
    """One line describing the machine and its load right now."""
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load n/a"
    threads = ""
    try:
        import torch

        threads = f", torch {torch.__version__} with {torch.get_num_threads()} threads"
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            total = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) / 2**20
        mem = f", {total:.0f} GiB RAM"
    except (OSError, StopIteration):
        mem = ""
    return (f"{cpu}, {os.cpu_count()} cores{mem}; python {platform.python_version()}, "
            f"numpy {np.__version__}{threads}; {load}")


def header(title: str, argv: Sequence[str]) -> None:
    print(f"# {title}")
    print(f"# {_dt.datetime.now().isoformat(timespec='seconds')}  {machine()}")
    print(f"# command: python {' '.join(argv)}")
    print(flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``fn`` takes, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds (every thread of the process) of one call of ``fn``, and what it returned."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text (also Markdown) table."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join([line, rule, *body])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
        return f"{value:.2g}"
    return str(value)


def folder_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def datalab(x: Any, noisy: Any) -> Any:
    """cleanlab Datalab's label-issue ranking from features alone (its own neighbours): higher = more likely wrong."""
    import warnings

    from cleanlab import Datalab

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = Datalab(data={"label": noisy}, label_name="label", verbosity=0)
        lab.find_issues(features=x, issue_types={"label": {}})
        return 1.0 - lab.get_issues("label")["label_score"].to_numpy()
