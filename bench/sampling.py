"""Time and peak memory of diverse sampling at 100k and 1M vectors (issue 6, item 1).

    .venv/bin/python bench/sampling.py [--sizes 100000,1000000] [--size 100] [--quick]

Data: N unit 512-d float32 vectors around 1000 gaussian centres (cluster sizes vary 1-20x), seeded, written
once as a memory-mapped file in ``~/.cache/picsift/bench`` (like the embedding store's vectors file) and
read through :func:`picsift.analysis.clustering.rows_view`, as ``Library.sample`` does.

Each case runs in its own subprocess, so peaks do not mix: seconds of the sampling call; ``heap peak``:
tracemalloc's peak of Python/numpy allocations during the call (the memory the method adds; numpy reports
its buffers to tracemalloc); ``RSS growth``: peak RSS (VmHWM, reset before the call) minus RSS before it,
which also counts the pages of the memory-mapped file the call touched (page cache, shared and reclaimable,
at most the file size). The baseline, timed in the same subprocess after the case: one exact search,
``vectors @ q`` over the same memory map in 64 MB blocks (the least any full scan costs);
``x search`` = seconds / baseline.
Coverage: mean and max distance from every vector to its nearest sampled one (``picsift.analysis.sampling.coverage``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from common import cache_dir, header, table  # noqa: E402

DIM, CENTRES = 512, 1000
CASES = ["random", "centroids", "kcenter", "typical", "kcenter@1000", "uncertainty+kcenter", "coverage"]


def data_file(n: int) -> Path:
    """The vectors file for ``n`` (generated once, in blocks)."""
    path = cache_dir() / f"sampling-{n}x{DIM}-c{CENTRES}.f32"
    if path.exists() and path.stat().st_size == n * DIM * 4:
        return path
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.uniform(1, 20, CENTRES)
    noise = rng.uniform(0.03, 0.06, CENTRES).astype(np.float32)
    tmp = path.with_suffix(".tmp")
    out = np.memmap(tmp, dtype=np.float32, mode="w+", shape=(n, DIM))
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        which = rng.choice(CENTRES, m, p=weights / weights.sum())
        block = centres[which] + noise[which, None] * rng.normal(size=(m, DIM)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    out.flush()
    del out
    tmp.replace(path)
    return path


def one_case(case: str, n: int, size: int) -> dict[str, float]:
    """Runs in the subprocess: the case, then the baseline, on the memory-mapped vectors."""
    from picsift.analysis.clustering import rows_view
    from picsift.analysis.sampling import coverage, sample_positions

    matrix = np.memmap(data_file(n), dtype=np.float32, mode="r", shape=(n, DIM))
    vectors = rows_view(matrix, np.arange(n))
    uncertainty = np.random.default_rng(1).random(n) if case.startswith("uncertainty") else None
    method = case.split("@")[0].split("+")[-1]
    count = int(case.split("@")[1]) if "@" in case else size
    if case == "coverage":
        sample = sample_positions(vectors, count, method="kcenter")
    import sklearn.cluster  # noqa: F401  (import cost is not the method's)

    rss_before = _reset_peak_rss()
    tracemalloc.start()
    start = time.perf_counter()
    if case == "coverage":
        result = coverage(vectors, sample)
    else:
        picked = sample_positions(vectors, count, method=method, seed=0, uncertainty=uncertainty)
    seconds = time.perf_counter() - start
    heap = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = _status_kib("VmHWM") - rss_before
    if case != "coverage":
        result = coverage(vectors, picked)
    q = np.asarray(matrix[0], np.float32)
    baselines = []
    for _ in range(3):
        begin = time.perf_counter()
        for s in range(0, n, 32_768):
            _ = matrix[s : s + 32_768] @ q
        baselines.append(time.perf_counter() - begin)
    return {"seconds": seconds, "heap_mb": heap / 2**20, "rss_mb": rss / 1024, "baseline": min(baselines),
            "mean": result.mean, "max": result.max}


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(key + ":")).split()[1])


def _reset_peak_rss() -> int:
    """Reset the peak RSS (VmHWM) to the current RSS and return it (KiB); Linux >= 4.0."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--size", type=int, default=100, help="images per sample (kcenter@1000: 1000)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--quick", action="store_true", help="20k vectors only")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(one_case(args.case, args.n, args.size)))
        return 0
    header("diverse sampling: time and peak memory", sys.argv if argv is None else ["bench/sampling.py", *argv])
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        path = data_file(n)
        print(f"# {n:,} x {DIM} float32 vectors: {path} ({path.stat().st_size / 2**20:,.0f} MiB)", flush=True)
        for case in args.cases.split(","):
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
            done = subprocess.run([sys.executable, __file__, "--case", case, "--n", str(n), "--size", str(args.size)],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                raise SystemExit(f"case {case} at {n} failed")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            label = case if "@" in case or case == "coverage" else f"{case}@{args.size}"
            rows.append([f"{n:,}", label, r["seconds"], r["seconds"] / r["baseline"], r["heap_mb"], r["rss_mb"],
                         r["baseline"] * 1000, r["mean"], r["max"]])
            print("  " + " | ".join(str(c) for c in rows[-1]), flush=True)
    print()
    print(table(rows, ["N", "case", "seconds", "x search", "heap peak MiB", "RSS growth MiB", "search ms",
                       "coverage mean", "coverage max"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
