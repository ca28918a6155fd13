"""Object search at scale: does a search recount every labelled object? (issue 22, item 2)

A workspace with ``--n`` labelled objects (``--per-image`` boxes on each of n / per-image catalogued images; the
image files need not exist: a search reads only the catalog and the object store) and an object store of as
many random unit vectors. Then, in one process:

* **recount**: the objects labelled now, counted from the catalog as every search did before the cache
  (``picsift.core.objects.live_objects``);
* **search, recounting**: ``lib.search(text, objects=True, limit=10)`` with the cache emptied before each;
* **search, cached**: the same search as a user repeats it (the catalog's change counter has not moved);
* **search after a label change**: one object added, then a search (it recounts once).

    python bench/object_search.py              # 100k objects
    python bench/object_search.py --n 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import header, median, table, timed

from picsift import Library
from picsift.core.catalog import FileRow
from picsift.core.objects import live_objects, object_id

MODEL = "ViT-B-32:random"
PROMPT = "a photo of a bicycle"


def build(folder: Path, n: int, per_image: int, dim: int, seed: int = 0) -> Library:
    rng = np.random.default_rng(seed)
    lib = Library(folder, workspace=folder.parent / "ws", model=MODEL, index="exact")
    images = [f"{i:032x}" for i in range(1, n // per_image + 1)]
    classes = [f"class{c}" for c in range(20)]
    ids, started = [], time.perf_counter()
    with lib.catalog.transaction() as db:
        lib.catalog.upsert_files(db, [FileRow(f"img/{i}.jpg", 1000, 0, i, 640, 480, None) for i in images])
        for image_id in images:
            for _ in range(per_image):
                x, y = (float(v) for v in rng.integers(0, 500, 2))
                w, h = (float(v) for v in rng.integers(8, 140, 2))
                lib.catalog.labels.add_object(image_id, classes[int(rng.integers(20))], "rectangle",
                                              [[x, y], [x + w, y + h]], [], None)
                ids.append(object_id(image_id, (x, y, w, h)))
    store = lib._engine.object_store(create=True)
    assert store is not None
    vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    unique = list(dict.fromkeys(ids))
    rows = store.write_vectors(vectors[: len(unique)])
    with lib.catalog.transaction() as db:
        store.commit_rows(db, unique, rows)
    print(f"built {len(unique)} objects on {len(images)} images in {time.perf_counter() - started:.0f}s", flush=True)
    return lib


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="labelled objects")
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    header("picsift object search at scale", sys.argv)
    with tempfile.TemporaryDirectory(prefix="picsift-bench-objects-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        lib = build(folder, args.n, args.per_image, 512)
        lib.search(PROMPT, objects=True, limit=10)  # loads the model, fills the cache
        recount, cold, warm = [], [], []
        for _ in range(args.rounds):
            recount.append(timed(lambda: live_objects(lib.catalog))[0])
            lib._live_objects._version = None  # as before the cache: every search counts again
            cold.append(timed(lambda: lib.search(PROMPT, objects=True, limit=10))[0])
            warm.append(timed(lambda: lib.search(PROMPT, objects=True, limit=10))[0])
        image_id = f"{1:032x}"
        lib.catalog.labels.add_object(image_id, "class0", "rectangle", [[1.0, 1.0], [30.0, 30.0]], [], None)
        lib.catalog.db.commit()
        changed = timed(lambda: lib.search(PROMPT, objects=True, limit=10))
        assert changed[1].partial  # the new object counts (not embedded yet): the cache saw the change
        after = timed(lambda: lib.search(PROMPT, objects=True, limit=10))[0]
        rows = [["recount of live objects (live_objects)", median(recount) * 1e3, ""],
                ["search, recounting each time (before)", median(cold) * 1e3, "1.00x"],
                ["search, cached (now)", median(warm) * 1e3, f"{median(cold) / median(warm):.1f}x faster"],
                ["first search after a label change", changed[0] * 1e3, ""],
                ["the search after it", after * 1e3, ""]]
        print(f"\n{args.n} objects, median of {args.rounds} rounds, ms:")
        print(table(rows, ["what", "ms", "vs recounting"]))
        lib.close()


if __name__ == "__main__":
    main()
