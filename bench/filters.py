"""Filter benchmark: AND filters over labelled data at 100k and 1M images.

A real catalog (``picsift.core.catalog.Catalog``, SQLite) is filled with N images and synthetic labels:
30% of the images carry 1-4 objects of 20 classes (some by one of 50 authors), 20% an image tag with
a value, 10% sit in a labelling job with a status, 1% have an open issue. A search's scope is every
image with a score (what ``Library.search`` returns by default), in score order.

Measured, each the median of ``--repeat`` interleaved runs, as ratios against the **baseline**: the
exact score of every image for one query (a float32 mat-vec over N x 512 in RAM), which is what a
search costs before any filter runs:

* ``first filter after the library changed``: one ObjectCount filter within a search of a new store
  snapshot (the id -> position map of the scope is built, once per snapshot);
* ``first filter on a new search``: the same within another search of the same snapshot (the map is
  reused: searches share the snapshot's ids array);
* ``changing filters``: then two and three filters on the same ImageSet (what the app does as the
  user edits filters);
* ``whole library``: three filters with no scope.

    python bench/filters.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import header, median, table

from picsift.core.catalog import Catalog
from picsift.query.filters import HasOpenIssues, ImageTag, JobStatus, ObjectAuthor, ObjectCount, apply_filters
from picsift.query.imageset import ImageSet
from picsift.query.scope import Scope


def build_catalog(path: Path, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = [f"{i:032x}" for i in rng.permutation(n * 4)[:n]]
    catalog = Catalog(path)
    now = time.time()
    with catalog.transaction() as db:
        db.executemany("INSERT INTO files(path, size, mtime_ns, image_id, width, height, indexed_at)"
                       " VALUES (?, 1000, 0, ?, 64, 64, ?)",
                       ((f"images/{i // 1000:04d}/{i:07d}.jpg", image_id, now) for i, image_id in enumerate(ids)))
        labelled = rng.random(n) < 0.30
        objects = []
        for i in np.flatnonzero(labelled):
            for _ in range(int(rng.integers(1, 5))):
                author = f"user{int(rng.integers(50))}" if rng.random() < 0.5 else None
                objects.append((ids[i], f"class{int(rng.integers(20))}", "rectangle", "[[0,0],[1,1]]", author))
        db.executemany("INSERT INTO objects(image_id, class, geometry, points, author) VALUES (?, ?, ?, ?, ?)",
                       objects)
        tagged = np.flatnonzero(rng.random(n) < 0.20)
        db.executemany("INSERT INTO image_tags(image_id, name, value) VALUES (?, 'weather', ?)",
                       ((ids[i], ["rain", "sun", "snow", "fog"][i % 4]) for i in tagged))
        db.execute("INSERT INTO jobs(name, created) VALUES ('review', ?)", (now,))
        statuses = ["pending", "in_progress", "accepted", "rejected"]
        db.executemany("INSERT INTO job_items(job, image_id, status, updated) VALUES ('review', ?, ?, ?)",
                       ((ids[i], statuses[i % 4], now) for i in np.flatnonzero(rng.random(n) < 0.10)))
        db.executemany("INSERT INTO issues(image_id, text, status, created) VALUES (?, 'check', 'open', ?)",
                       ((ids[i], now) for i in np.flatnonzero(rng.random(n) < 0.01)))
    catalog.db.execute("ANALYZE")
    catalog.close()
    return ids


def run(n: int, repeat: int, folder: Path) -> list[list[object]]:
    started = time.perf_counter()
    ids = build_catalog(folder / f"catalog-{n}.sqlite", n)
    catalog = Catalog(folder / f"catalog-{n}.sqlite")
    print(f"N={n:,}: catalog with labels built in {time.perf_counter() - started:.1f}s", flush=True)
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((n, 512), dtype=np.float32)
    query = rng.standard_normal(512, dtype=np.float32)
    scope_ids = np.array(ids, dtype="<U32")

    one = [ObjectCount("class3", 2, 3)]
    two = [*one, ImageTag("weather", "rain", negate=True)]
    three = [*two, ObjectAuthor("user7")]
    library_wide = [ObjectCount("class3", 1), JobStatus("review", ["accepted", "rejected"]), HasOpenIssues(False)]
    times: dict[str, list[float]] = {k: [] for k in ("baseline", "changed", "new", "two", "three", "library")}
    counts: dict[str, int] = {}

    def scope_of(within: ImageSet | None) -> Scope:  # resolving the scope is part of filtering, as in the app
        return Scope.resolve(within, catalog.collection_items, scored=True)

    for _ in range(repeat):
        fresh_ids = scope_ids.copy()  # what a new store snapshot brings
        fresh = ImageSet(np.zeros(0, str), np.zeros(0, np.float32), matrix[:, 0], fresh_ids)
        t = time.perf_counter()
        counts["changed"] = len(apply_filters(catalog, one, scope_of(fresh)))
        times["changed"].append(time.perf_counter() - t)
        t = time.perf_counter()
        scores = matrix @ query
        times["baseline"].append(time.perf_counter() - t)
        results = ImageSet(np.zeros(0, str), np.zeros(0, np.float32), scores, scope_ids)
        for key, filters, within in (("new", one, results), ("two", two, results), ("three", three, results),
                                     ("library", library_wide, None)):
            t = time.perf_counter()
            counts[key] = len(apply_filters(catalog, filters, scope_of(within)))
            times[key].append(time.perf_counter() - t)
    base = median(times["baseline"])
    labels = {"changed": "1 filter, first search after the library changed", "new": "1 filter, new search",
              "two": "2 filters, same search",
              "three": "3 filters, same search", "library": "3 filters, whole library"}
    rows: list[list[object]] = [[f"{n:,}", "baseline: score every image (mat-vec)", base * 1000, 1.0, n]]
    for key, label in labels.items():
        rows.append([f"{n:,}", label, median(times[key]) * 1000, median(times[key]) / base, counts[key]])
    catalog.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    header("picsift filter benchmark", sys.argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="picsift-bench-filters-") as folder:
        for n in args.sizes:
            rows.extend(run(n, args.repeat, Path(folder)))
    print(table(rows, ["N", "case", "median ms", "x baseline", "images passing"]))


if __name__ == "__main__":
    main()
