"""umap-learn's numba functions are compiled once per machine, not in every process (picsift turns numba's disk
cache on for them: :func:`picsift.analysis.projection_umap.cache_umap_kernels`)."""

from __future__ import annotations

import json
import sys
import textwrap

from . import fast_python

# A new process fits a small UMAP map, then reports how numba got the function that runs UMAP's epochs.
CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    import umap.layouts
    from picsift.analysis.projection import umap as umap_map
    vectors = np.random.default_rng(0).standard_normal((120, 32)).astype(np.float32)
    coords = umap_map(vectors, 2)
    epoch = umap.layouts._nb_optimize_layout_euclidean_single_epoch
    print(json.dumps({"cache": type(epoch._cache).__name__, "hits": sum(epoch.stats.cache_hits.values()),
                      "misses": sum(epoch.stats.cache_misses.values()), "shape": list(coords.shape)}))
    """
)


def test_a_second_process_loads_umaps_compiled_functions_instead_of_compiling_them() -> None:
    runs = []
    for _ in range(2):
        child = fast_python.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
        assert child.returncode == 0, child.stderr[-3000:]
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["cache"] == second["cache"] == "FunctionCache"  # umap-learn ships it without (NullCache)
    assert first["shape"] == second["shape"] == [120, 2]
    assert second["hits"] >= 1 and second["misses"] == 0, runs  # loaded from the first one's (or an earlier) compile
