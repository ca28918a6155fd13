"""Object embeddings: every labelled object's crop embedded with the library's model, kept fresh by ``update``.

An object's vector lives in a second :class:`~picsift.core.store.EmbeddingStore` per model (its identity ends with
:data:`~picsift.core.catalog.embeddings.OBJECTS_SUFFIX`, its files in ``models/<model>/objects``), so it has the
image store's guarantees: two-phase crash-safe writes, one store per model, compaction. Its rows are keyed by an
**object id**: a hash of the image id and the box (:func:`object_id`), so a vector is content-addressed. A moved box
has a new id (it is embedded again; the old id's row is dropped), and an object whose image or label goes is dropped
by the next update, whether or not it embeds objects.

Crops: a rectangle is its two corners, a polygon its bounding box. The crop adds :data:`MARGIN` of the box's side on
each side (a little context: CLIP models were trained on whole pictures, where an object rarely touches the
border; 10% keeps the edges of the object in the crop without letting neighbours take over a small box) and grows
tiny boxes around their centre to at least :data:`MIN_SIDE` pixels, clipped to the picture. The model's own
transform then resizes the crop to its input. Each image is decoded once, at full resolution, for all its crops.
"""

from __future__ import annotations

import hashlib
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
from .store import EmbeddingStore

log = logging.getLogger(__name__)

#: Context added on each side of a box, as a fraction of its width (left, right) and height (top, bottom).
MARGIN = 0.1
#: A crop's sides are grown (around the box's centre, within the picture) to at least this many pixels.
MIN_SIDE = 32
#: ``[x, y, w, h]`` in pixels.
Box = tuple[float, float, float, float]


def object_id(image_id: str, box: Box) -> str:
    """An object's id: 32 hex digits of a BLAKE2b hash of its image id and its box (rounded to 1/100 pixel)."""
    x, y, w, h = box
    text = f"{image_id}:{x:.2f},{y:.2f},{w:.2f},{h:.2f}"  # rounded to 1/100 pixel by the format
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def bounding_box(points: Iterable[Sequence[float]]) -> Box:
    """``[x, y, w, h]`` of a rectangle's corners or a polygon's points (NaN when there are none or one is not
    finite). Plain Python: a search computes it for every labelled object, and a few points are no work for numpy."""
    xs, ys = [], []
    for point in points:
        xs.append(float(point[0]))
        ys.append(float(point[1]))
    if not xs or not all(math.isfinite(v) for v in (*xs, *ys)):
        return (math.nan, math.nan, math.nan, math.nan)
    left, top = min(xs), min(ys)
    return (left, top, max(xs) - left, max(ys) - top)


def degenerate(box: Box, size: tuple[int, int] | None) -> str | None:
    """Why ``box`` cannot be embedded (not finite, zero area, outside the ``(width, height)`` picture), else None."""
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return "box is not finite (a NaN or infinite coordinate)"
    if w <= 0 or h <= 0:
        return f"box {list(box)} has zero area"
    if size is not None:
        width, height = size
        if min(x + w, width) - max(x, 0) <= 0 or min(y + h, height) - max(y, 0) <= 0:
            return f"box {list(box)} lies outside the {width}x{height} image"
    return None


def crop_region(box: Box, width: int, height: int, margin: float = MARGIN,
                min_side: int = MIN_SIDE) -> tuple[int, int, int, int]:
    """The pixels ``(left, top, right, bottom)`` cut for ``box``: :data:`MARGIN` around it, at least ``min_side``
    on each side where the picture allows, clipped to the picture."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    half_w = max(w * (1 + 2 * margin), min_side) / 2
    half_h = max(h * (1 + 2 * margin), min_side) / 2
    left, right = max(0, math.floor(cx - half_w)), min(width, math.ceil(cx + half_w))
    top, bottom = max(0, math.floor(cy - half_h)), min(height, math.ceil(cy + half_h))
    return left, top, max(right, left + 1), max(bottom, top + 1)


@dataclass
class LiveObject:
    """A labelled object as the store sees it: its id, image, class and box (the first catalog object of that id)."""

    id: str
    image_id: str
    cls: str
    box: Box
    catalog_id: int


def live_objects(catalog: Catalog) -> dict[str, LiveObject]:
    """Every object of an image some file holds, by object id (two labels of one box on one image share it), in
    catalog order. The labels of an image whose files are gone stay (they come back with the file), its objects'
    vectors do not, as its own vector does not."""
    held = {row.image_id for row in catalog.files().values() if row.image_id}
    found: dict[str, LiveObject] = {}
    for catalog_id, image_id, cls, _geometry, points in catalog.labels.object_shapes():
        if image_id not in held:
            continue
        box = bounding_box(points)
        key = object_id(image_id, box)
        if key not in found:
            found[key] = LiveObject(key, image_id, cls, box, catalog_id)
    return found


@dataclass
class ObjectReport:
    """What an object pass did: objects embedded, stale vectors dropped, objects skipped with the reason."""

    embedded: int = 0
    dropped: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # ("<path> object <id>", reason)


@dataclass
class _Crops:
    """One image's crops, prepared for the model, or why it could not be read."""

    ids: list[str]
    pixels: list[Any]
    skipped: list[tuple[str, str]]


def drop_stale(catalog: Catalog, store: EmbeddingStore, live: Iterable[str]) -> int:
    """Forget the vectors of objects that are gone (their label or image was removed, or their box moved)."""
    stale = sorted(store.embedded_ids() - set(live))
    if not stale:
        return 0
    with catalog.transaction() as db:
        EmbeddingTables.drop_ids(db, store.identity, stale)
    return len(stale)


def embed_objects(catalog: Catalog, store: EmbeddingStore, embedder: Embedder, root: Path, *, progress: bool = True,
                  workers: int = 2, on_batch: Callable[[int], None] | None = None) -> ObjectReport:
    """Drop stale object vectors, then embed every live object the store lacks (see the module's docstring).

    Each batch's vectors are written, then committed in one transaction (two-phase, like images): a killed run
    keeps every committed batch and the next finishes the job. Degenerate boxes are skipped and reported.
    """
    from tqdm.auto import tqdm

    report = ObjectReport()
    live = live_objects(catalog)
    report.dropped = drop_stale(catalog, store, live)
    embedded = store.embedded_ids()
    files = catalog.files()
    where: dict[str, tuple[str, tuple[int, int] | None]] = {}
    for path, row in sorted(files.items()):
        if row.image_id and row.error is None and row.image_id not in where:
            size = (row.width, row.height) if row.width and row.height else None
            where[row.image_id] = (path, size)
    by_image: dict[str, list[LiveObject]] = {}
    for obj in live.values():
        if obj.id in embedded or obj.image_id not in where:
            continue  # embedded already, or its image is not in the library (yet)
        reason = degenerate(obj.box, where[obj.image_id][1])
        if reason is not None:
            report.skipped.append((f"{where[obj.image_id][0]} object {obj.catalog_id}", reason))
            continue
        by_image.setdefault(obj.image_id, []).append(obj)
    for about, reason in report.skipped:
        log.warning("%s skipped: %s", about, reason)
    if report.dropped:
        log.info("dropped %d object vectors whose object, box or image is gone", report.dropped)
    if not by_image:
        store.compact_if_sparse()
        return report

    def crops_of(image_id: str) -> _Crops:
        path = where[image_id][0]
        objects = by_image[image_id]
        file = read_image_file(root, path)
        try:
            if file.state is None or file.error:
                raise ImageDecodeError(file.error or "the file vanished before it could be read")
            picture = decode_image(file.data).image  # full resolution: small objects need every pixel
        except ImageDecodeError as e:
            return _Crops([], [], [(f"{path} object {o.catalog_id}", f"image unreadable: {e}") for o in objects])
        crops = _Crops([], [], [])
        for obj in objects:
            reason = degenerate(obj.box, picture.size)
            if reason is not None:
                crops.skipped.append((f"{path} object {obj.catalog_id}", reason))
                continue
            crops.ids.append(obj.id)
            crops.pixels.append(embedder.prepare(picture.crop(crop_region(obj.box, *picture.size))))
        return crops

    ids: list[str] = []
    pixels: list[Any] = []

    def flush() -> None:
        if not ids:
            return
        rows = store.write_vectors(np.asarray(embedder.embed_prepared(pixels)))
        with catalog.transaction() as db:
            store.commit_rows(db, ids, rows)
        report.embedded += len(ids)
        if on_batch is not None:
            on_batch(report.embedded)
        ids.clear()
        pixels.clear()

    total = sum(map(len, by_image.values()))
    bar = tqdm(total=total, desc="Embedding objects", unit="obj", disable=not progress)
    images = list(by_image)
    window = max(8, workers * 4)  # images decoded ahead of the model: memory stays bounded
    with ThreadPoolExecutor(workers, thread_name_prefix="picsift-crops") as pool:
        for start in range(0, len(images), window):
            for crops in pool.map(crops_of, images[start : start + window]):
                report.skipped.extend(crops.skipped)
                for about, reason in crops.skipped:
                    log.warning("%s skipped: %s", about, reason)
                ids.extend(crops.ids)
                pixels.extend(crops.pixels)
                bar.update(len(crops.ids) + len(crops.skipped))
                if len(ids) >= embedder.batch_size:
                    flush()
        flush()
    bar.close()
    store.compact_if_sparse()
    return report
