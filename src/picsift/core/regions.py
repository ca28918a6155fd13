"""Region embeddings: a few fixed crops of every image, so that a small thing in a corner can be found.

With ``regions=True`` (:class:`picsift.Library`, ``picsift update --regions``) each image also gets the embeddings
of the cells of :data:`GRIDS`: a 2x2 grid of cells 0.6 of each side (they overlap by a fifth) and a 3x3 grid of
cells 0.4 of each side (overlapping by a tenth), 13 crops in all (``bench/objects.py`` measured this choice
against each grid alone). A cell has the picture's proportions; the model's own transform resizes it to its input.

They live in a third :class:`~picsift.core.store.EmbeddingStore` per model (identity ending with
:data:`~picsift.core.catalog.embeddings.REGIONS_SUFFIX`, files in ``models/<model>/regions``), so they have the
image store's guarantees (two-phase crash-safe writes, compaction). A row's id is content-addressed:
the first :data:`PREFIX` hex digits of its image's id, ``r`` and the cell's number in two hex digits
(:func:`region_id`), so the image a region belongs to is read from its id, and regions of content that no file
holds any more are dropped by the next update. All cells of an image are committed in one transaction: a killed
run keeps whole images, and the next finishes the job. Each image is decoded once for all its cells (JPEGs at the
smallest scale that keeps the smallest cell at the model's input size).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..embedding.decode import ImageDecodeError, decode_image
from ..embedding.openclip import Embedder
from .catalog import Catalog
from .catalog.embeddings import EmbeddingTables
from .image_files import read_image_file
from .report import UpdateReport
from .store import EmbeddingStore

log = logging.getLogger(__name__)

#: ``(cells per side, cell side as a fraction of the picture's side)`` of each grid.
GRIDS: tuple[tuple[int, float], ...] = ((2, 0.6), (3, 0.4))
#: Hex digits of the image id a region id starts with (the rest: ``r`` and the cell's number).
PREFIX = 29
#: ``[x, y, w, h]`` as fractions of the picture.
Fraction = tuple[float, float, float, float]


def grid_cells(grids: Sequence[tuple[int, float]] = GRIDS) -> list[Fraction]:
    """The cells of ``grids`` as ``[x, y, w, h]`` fractions, grid by grid, row by row."""
    cells: list[Fraction] = []
    for n, side in grids:
        starts = [0.0] if n == 1 else [i * (1 - side) / (n - 1) for i in range(n)]
        cells.extend((x, y, side, side) for y in starts for x in starts)
    return cells


#: Every image's cells, numbered as in :func:`region_id`.
CELLS: list[Fraction] = grid_cells()


def region_id(image_id: str, cell: int) -> str:
    """The id of cell ``cell`` of image ``image_id``: 32 characters, never an image id (``r`` is no hex digit)."""
    return f"{image_id[:PREFIX]}r{cell:02x}"


def cell_of(ids: np.ndarray) -> np.ndarray:
    """The cell number of each region id."""
    return np.array([int(i[PREFIX + 1 :], 16) for i in ids.tolist()], dtype=np.int64)


def pixel_box(cell: int, width: int, height: int) -> list[float]:
    """Cell ``cell`` of a ``width`` x ``height`` picture as ``[x, y, w, h]`` pixels (rounded to 1/100)."""
    x, y, w, h = CELLS[cell]
    return [round(x * width, 2), round(y * height, 2), round(w * width, 2), round(h * height, 2)]


def crop_pixels(cell: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` cut from a decoded ``width`` x ``height`` picture for ``cell``."""
    x, y, w, h = CELLS[cell]
    left, top = math.floor(x * width), math.floor(y * height)
    right, bottom = min(width, math.ceil((x + w) * width)), min(height, math.ceil((y + h) * height))
    return left, top, max(right, left + 1), max(bottom, top + 1)


@dataclass
class RegionReport:
    """What a region pass did: images whose cells it embedded, stale region vectors dropped, images skipped."""

    images: int = 0
    regions: int = 0
    dropped: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def held_images(catalog: Catalog) -> dict[str, str]:
    """The first path (in path order) of every image some readable file holds, by image id."""
    where: dict[str, str] = {}
    for path, row in sorted(catalog.files().items()):
        if row.image_id and row.error is None and row.image_id not in where:
            where[row.image_id] = path
    return where


def drop_stale(catalog: Catalog, store: EmbeddingStore, held: Iterable[str]) -> int:
    """Forget the regions of images no file holds any more."""
    prefixes = {i[:PREFIX] for i in held}
    stale = sorted(r for r in store.embedded_ids() if r[:PREFIX] not in prefixes)
    if not stale:
        return 0
    with catalog.transaction() as db:
        EmbeddingTables.drop_ids(db, store.identity, stale)
    return len(stale)


def embed_regions(catalog: Catalog, store: EmbeddingStore, embedder: Embedder, root: Path, *, progress: bool = True,
                  workers: int = 2) -> RegionReport:
    """Drop the regions of images that are gone, then embed every cell the store lacks (see the module)."""
    from tqdm.auto import tqdm

    report = RegionReport()
    where = held_images(catalog)
    report.dropped = drop_stale(catalog, store, where)
    embedded = store.embedded_ids()
    todo: dict[str, list[int]] = {}
    for image_id in where:
        missing = [k for k in range(len(CELLS)) if region_id(image_id, k) not in embedded]
        if missing:
            todo[image_id] = missing
    if not todo:
        store.compact_if_sparse()
        return report
    smallest = min(side for _, side in GRIDS)
    decode_side = math.ceil(embedder.image_size / smallest)

    def cells_of(image_id: str) -> tuple[str, list[str], list[Any], str | None]:
        path = where[image_id]
        file = read_image_file(root, path)
        try:
            if file.state is None or file.error:
                raise ImageDecodeError(file.error or "the file vanished before it could be read")
            picture = decode_image(file.data, decode_side).image
        except ImageDecodeError as e:
            return path, [], [], str(e)
        cells = todo[image_id]
        crops = [embedder.prepare(picture.crop(crop_pixels(k, *picture.size))) for k in cells]
        return path, [region_id(image_id, k) for k in cells], crops, None

    ids: list[str] = []
    pixels: list[Any] = []

    def flush() -> None:
        if not ids:
            return
        vectors = np.concatenate([embedder.embed_prepared(pixels[s : s + embedder.batch_size])
                                  for s in range(0, len(pixels), embedder.batch_size)])
        rows = store.write_vectors(vectors)
        with catalog.transaction() as db:
            store.commit_rows(db, ids, rows)
        report.regions += len(ids)
        ids.clear()
        pixels.clear()

    bar = tqdm(total=len(todo), desc="Embedding regions", unit="img", disable=not progress)
    images = list(todo)
    window = max(4, workers * 2)  # images decoded ahead of the model: memory stays bounded
    with ThreadPoolExecutor(workers, thread_name_prefix="picsift-regions") as pool:
        for start in range(0, len(images), window):
            for path, found, crops, error in pool.map(cells_of, images[start : start + window]):
                bar.update(1)
                if error is not None:
                    report.skipped.append((path, f"regions not embedded: {error}"))
                    log.warning("%s: regions not embedded: %s", path, error)
                    continue
                ids.extend(found)  # every cell of an image goes into one commit
                pixels.extend(crops)
                report.images += 1
                if len(ids) >= embedder.batch_size:
                    flush()
        flush()
    bar.close()
    store.compact_if_sparse()
    return report


def region_pass(catalog: Catalog, store: EmbeddingStore | None, embedder: Callable[[], Embedder], root: Path,
                regions: bool, report: UpdateReport, *, progress: bool = True) -> None:
    """An update's region step: with ``regions``, embed what ``store`` lacks (``report.regions``); without, only drop
    the regions of images that are gone (the others are kept for when regions are turned on again)."""
    if store is None:
        return  # regions off and never on: no store is made
    store.remove_stray_files()
    if not regions:
        drop_stale(catalog, store, held_images(catalog))
        store.compact_if_sparse()
        return
    found = embed_regions(catalog, store, embedder(), root, progress=progress)
    report.regions = found.regions
    noted = {path for path, _ in report.skipped}
    report.skipped.extend((path, reason) for path, reason in found.skipped if path not in noted)
