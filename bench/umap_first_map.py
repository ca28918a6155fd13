"""The first UMAP map in a new Python process, with umap-learn's numba functions compiled in that process (as
before picsift turned numba's disk cache on for them: the baseline) vs loaded from that cache (today).

Each contender is a fresh interpreter (``python -c``), alternating, that imports picsift, fits one map of N
random unit vectors with ``picsift.analysis.projection.umap`` and then a second one; it reports the import, the
first fit (what a user waits for before the first map of a session) and the second (the fit alone). The
baseline turns picsift's ``cache_umap_kernels`` off in its process.

    .venv/bin/python bench/umap_first_map.py [--n 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

from common import header, median, table

CHILD = textwrap.dedent(
    """
    import json, sys, time
    start = time.perf_counter()
    import numpy as np
    from picsift.analysis import projection_umap
    from picsift.analysis.projection import umap
    if sys.argv[2] == "compiled":
        projection_umap.cache_umap_kernels = lambda: None
    imported = time.perf_counter()
    vectors = np.random.default_rng(0).standard_normal((int(sys.argv[1]), 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    umap(vectors, 2)
    first = time.perf_counter()
    umap(vectors, 2)
    second = time.perf_counter()
    print(json.dumps({"import": imported - start, "first": first - imported, "second": second - first}))
    """
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    header(f"first UMAP map in a new process, {args.n} points", sys.argv)
    subprocess.run([sys.executable, "-c", CHILD, str(args.n), "cached"], check=True, capture_output=True)  # fill it
    runs: dict[str, list[dict[str, float]]] = {"compiled in the process (before)": [], "loaded from the cache": []}
    for _ in range(args.rounds):
        for name, mode in (("compiled in the process (before)", "compiled"), ("loaded from the cache", "cached")):
            child = subprocess.run([sys.executable, "-c", CHILD, str(args.n), mode], check=True, capture_output=True,
                                   text=True)
            runs[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
    base = median([r["first"] for r in runs["compiled in the process (before)"]])
    print(table([[name, f"{median([r['import'] for r in v]):.2f}", f"{median([r['first'] for r in v]):.2f}",
                  f"{median([r['second'] for r in v]):.2f}", f"{median([r['first'] for r in v]) / base:.2f}x"]
                 for name, v in runs.items()],
                ["umap-learn's kernels", "import s", "first map s", "second map s", "first map vs before"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
