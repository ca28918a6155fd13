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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..embedding.decode import ImageDecodeError, decode_image
from ..embedding.openclip import Embedder
from .catalog import Catalog, content_id
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


class LiveObjects:
    """:func:`live_objects` of a catalog, counted again only when its objects or files changed (the catalog's
    :meth:`~picsift.core.catalog.labels.LabelTables.objects_version`): a search of 100k objects reads one counter
    instead of every object's points."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._version: int | None = None
        self._found: dict[str, LiveObject] = {}

    def __call__(self) -> dict[str, LiveObject]:
        version = self.catalog.labels.objects_version()  # read first: a change while counting is seen next time
        if version != self._version:
            self._found, self._version = live_objects(self.catalog), version
        return self._found


@dataclass
class ObjectReport:
    """What an object pass did: objects embedded, stale vectors dropped, objects skipped with the reason."""

    embedded: int = 0
    dropped: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # ("<path> object <id>", reason)


@dataclass
class CropJob:
    """One image's objects to embed, as a remote worker gets them: its file, content id and (object id, box)s."""

    path: str
    image_id: str
    objects: list[tuple[str, Box]]


@dataclass
class CropResult:
    """One object as a worker left it: its vector, or why it could not be embedded."""

    object_id: str
    vector: np.ndarray | None
    error: str | None = None


#: Embeds crop jobs elsewhere (a Ray cluster: :func:`picsift.core.ray_objects.embed_objects_on_ray`).
RemoteCrops = Callable[[list[CropJob]], Iterator[CropResult]]


def crop_pixels(data: bytes, image_id: str, objects: Sequence[tuple[str, Box]],
                prepare: Callable[[Any], Any]) -> tuple[list[str], list[Any], list[tuple[str, str]]]:
    """Decode one image's bytes once and prepare each object's crop for the model: ``(object ids, pixels,
    [(object id, why it was skipped)])``. Bytes that are not ``image_id``'s content any more (the file changed
    since the scan) give no crop: the next update scans the file again."""
    if content_id(data) != image_id:
        return [], [], [(key, "the file changed since it was scanned; the next update reads it again")
                        for key, _ in objects]
    try:
        picture = decode_image(data).image  # full resolution: small objects need every pixel
    except ImageDecodeError as e:
        return [], [], [(key, f"image unreadable: {e}") for key, _ in objects]
    ids, pixels, skipped = [], [], []
    for key, box in objects:
        reason = degenerate(box, picture.size)
        if reason is not None:
            skipped.append((key, reason))
            continue
        ids.append(key)
        pixels.append(prepare(picture.crop(crop_region(box, *picture.size))))
    return ids, pixels, skipped


def drop_stale(catalog: Catalog, store: EmbeddingStore, live: Iterable[str]) -> int:
    """Forget the vectors of objects that are gone (their label or image was removed, or their box moved)."""
    stale = sorted(store.embedded_ids() - set(live))
    if not stale:
        return 0
    with catalog.transaction() as db:
        EmbeddingTables.drop_ids(db, store.identity, stale)
    return len(stale)


def embed_objects(catalog: Catalog, store: EmbeddingStore, embedder: Embedder | None, root: Path, *,
                  progress: bool = True, workers: int = 2, on_batch: Callable[[int], None] | None = None,
                  remote: RemoteCrops | None = None, batch_size: int | None = None) -> ObjectReport:
    """Drop stale object vectors, then embed every live object the store lacks (see the module's docstring).

    Each batch's vectors are written, then committed in one transaction (two-phase, like images): a killed run
    keeps every committed batch and the next finishes the job. Degenerate boxes are skipped and reported.
    With ``remote`` the crops are cut and embedded elsewhere (``embedder`` may then be None); this process still
    checks every result and is the only writer (:func:`checked_crops`).
    """
    from tqdm.auto import tqdm

    report = ObjectReport()
    live = live_objects(catalog)
    report.dropped = drop_stale(catalog, store, live)
    embedded = store.embedded_ids()
    where: dict[str, tuple[str, tuple[int, int] | None]] = {}
    for path, row in sorted(catalog.files().items()):
        if row.image_id and row.error is None and row.image_id not in where:
            size = (row.width, row.height) if row.width and row.height else None
            where[row.image_id] = (path, size)
    by_image: dict[str, list[LiveObject]] = {}
    about: dict[str, str] = {}  # object id -> how a report names it
    for obj in live.values():
        if obj.id in embedded or obj.image_id not in where:
            continue  # embedded already, or its image is not in the library (yet)
        about[obj.id] = f"{where[obj.image_id][0]} object {obj.catalog_id}"
        reason = degenerate(obj.box, where[obj.image_id][1])
        if reason is not None:
            report.skipped.append((about[obj.id], reason))
            continue
        by_image.setdefault(obj.image_id, []).append(obj)
    for item, reason in report.skipped:
        log.warning("%s skipped: %s", item, reason)
    if report.dropped:
        log.info("dropped %d object vectors whose object, box or image is gone", report.dropped)
    if not by_image:
        store.compact_if_sparse()
        return report
    if embedder is None and remote is None:
        raise ValueError("embed_objects needs an embedder or a remote")
    jobs = [CropJob(where[image_id][0], image_id, [(o.id, o.box) for o in objects])
            for image_id, objects in by_image.items()]
    batch = batch_size or (embedder.batch_size if embedder is not None else 32)
    ids: list[str] = []
    vectors: list[np.ndarray] = []

    def flush() -> None:
        if not ids:
            return
        rows = store.write_vectors(np.stack(vectors))
        with catalog.transaction() as db:
            store.commit_rows(db, ids, rows)
        report.embedded += len(ids)
        if on_batch is not None:
            on_batch(report.embedded)
        ids.clear()
        vectors.clear()

    bar = tqdm(total=len(about) - len(report.skipped), desc="Embedding objects", unit="obj", disable=not progress)
    if remote is not None:
        results = checked_crops(remote(jobs), about, store.dim)
    else:
        assert embedder is not None
        results = _embed_here(jobs, root, embedder, batch, workers)
    for result in results:
        bar.update(1)
        if result.error is not None or result.vector is None:
            report.skipped.append((about[result.object_id], result.error or "no vector"))
            log.warning("%s skipped: %s", about[result.object_id], result.error)
            continue
        ids.append(result.object_id)
        vectors.append(result.vector)
        if len(ids) >= batch:
            flush()
    flush()
    bar.close()
    store.compact_if_sparse()
    return report


def _embed_here(jobs: list[CropJob], root: Path, embedder: Embedder, batch: int,
                workers: int) -> Iterator[CropResult]:
    """Cut and embed ``jobs``' crops in this process: images decoded on ``workers`` threads, batches embedded."""

    def crops(job: CropJob) -> tuple[list[str], list[Any], list[tuple[str, str]]]:
        file = read_image_file(root, job.path)
        if file.state is None or file.error:
            reason = f"image unreadable: {file.error or 'the file vanished before it could be read'}"
            return [], [], [(key, reason) for key, _ in job.objects]
        return crop_pixels(file.data, job.image_id, job.objects, embedder.prepare)

    ids: list[str] = []
    pixels: list[Any] = []
    window = max(8, workers * 4)  # images decoded ahead of the model: memory stays bounded
    with ThreadPoolExecutor(workers, thread_name_prefix="picsift-crops") as pool:
        for start in range(0, len(jobs), window):
            for cut, prepared, skipped in pool.map(crops, jobs[start : start + window]):
                yield from (CropResult(key, None, reason) for key, reason in skipped)
                ids.extend(cut)
                pixels.extend(prepared)
                while len(ids) >= batch:
                    done = embedder.embed_prepared(pixels[:batch])
                    yield from (CropResult(key, np.asarray(v, np.float32)) for key, v in zip(ids[:batch], done,
                                                                                             strict=True))
                    del ids[:batch], pixels[:batch]
        if ids:
            done = embedder.embed_prepared(pixels)
            yield from (CropResult(key, np.asarray(v, np.float32)) for key, v in zip(ids, done, strict=True))


def checked_crops(results: Iterable[CropResult], asked: Mapping[str, str], dim: int) -> Iterator[CropResult]:
    """The remote results that answer what was asked, each object once: a result for an object not asked for (or
    answered already), or a vector that is not ``dim`` finite numbers, is skipped with a warning (the next update
    embeds that object again). A worker is not trusted to name objects."""
    taken: set[str] = set()
    for result in results:
        key = result.object_id
        problem = None
        if not isinstance(key, str) or key not in asked:
            problem = f"a result for {str(key)[:80]!r}, an object not asked for"
        elif key in taken:
            problem = f"a second result for object {key}"
        elif result.vector is not None and not (result.vector.shape == (dim,) and np.isfinite(result.vector).all()):
            problem = f"a vector for object {key} that is not {dim} finite numbers"
        if problem is not None:
            log.warning("a worker returned %s: skipped it (the next update embeds that object again)", problem)
            continue
        taken.add(key)
        yield result
