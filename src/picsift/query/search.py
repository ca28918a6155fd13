"""Scoring the store against a query, and :class:`Searcher`, the pure ``search`` and ``similar`` behind
:class:`~picsift.Library`'s (which returns an :class:`~picsift.query.imageset.ImageSet` and writes nothing).

Scores are cosine similarities. For several reference vectors, ``combine="mean"`` scores against the
normalised mean of the references (one direction that sits between them) and ``combine="max"``
takes each image's best similarity to any single reference (finds images like *any* of them).
Negative references subtract: ``score = sim(positives) - negative_weight * sim(negatives)``, with
negatives combined the same way as positives.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from ..core.catalog import content_id, looks_like_id
from ..core.codes import exact_float16, near_edge_rows
from ..core.store import StoreSnapshot
from ..embedding.decode import ImageDecodeError, decode_image, to_rgb
from ..errors import NotIndexedError, PicsiftError, UnknownImageError
from ..index.base import top_k
from ..index.sync import wider_k
from ..reading import read_file_bytes
from .imageset import HISTOGRAM_BINS, ImageSet
from .object_search import ObjectScope
from .options import SearchOptions
from .region_search import RegionOwners, RegionScores, region_columns, score_regions
from .scope import Scope
from .steps import ImageSearch, Recipe, TextSearch

if TYPE_CHECKING:
    from ..core.objects import LiveObject
    from ..core.store import EmbeddingStore
    from ..embedding.openclip import Embedder
    from ..index import VectorIndex

log = logging.getLogger(__name__)

#: An image given as a query: an id in the library, a path, or a PIL image.
ImageRef = str | os.PathLike[str] | Image.Image


Combine = Literal["mean", "max"]
COMBINE_CHOICES = ("mean", "max")


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def query_vectors(references: np.ndarray, combine: str) -> np.ndarray:
    """The vectors a set of references is scored with: one for ``mean``, all of them for ``max``."""
    if combine not in COMBINE_CHOICES:
        raise ValueError(f"combine={combine!r}; valid choices: {', '.join(COMBINE_CHOICES)}")
    references = normalise(references)
    if combine == "max" or len(references) == 1:  # the mean of one unit vector is itself
        return references
    return normalise(references.mean(axis=0))


def score_scope(
    snapshot: StoreSnapshot,
    positions: np.ndarray | None,
    positives: np.ndarray,
    negatives: np.ndarray | None = None,
    *,
    combine: str = "mean",
    negative_weight: float = 0.5,
    exact: bool = False,
) -> np.ndarray:
    """Scores of every image in scope (``positions`` into the snapshot; None: all).

    Each is within ``(1 + negative_weight) * snapshot.coarse_error(len(scores))`` of the exact score (many
    rows are scanned from the store's one-byte codes, a few in float16); :func:`exact_top` makes the ones a
    search shows exact. With ``exact``, ``positions`` are scored exactly (float32), for a few rows.
    """
    rows = snapshot.rows if positions is None else snapshot.rows[positions]
    if not len(rows):
        return np.zeros(0, np.float32)

    def best(vectors: np.ndarray) -> np.ndarray:
        queries = query_vectors(vectors, combine)
        if exact:
            scores = snapshot.exact(queries, np.arange(len(snapshot)) if positions is None else positions)
        else:
            scores = snapshot.coarse_scan(queries, rows)
        return scores.max(axis=1) if scores.shape[1] > 1 else scores[:, 0]

    scores = best(positives)
    if negatives is not None and len(negatives):
        scores = scores - negative_weight * best(negatives)
    return scores.astype(np.float32, copy=False)


def exact_top(
    snapshot: StoreSnapshot, positions: np.ndarray | None, scores: np.ndarray, limit: int | None,
    min_score: float | None, max_score: float | None, positives: np.ndarray, negatives: np.ndarray | None,
    combine: str, negative_weight: float,
) -> np.ndarray:
    """``scores`` with every score that could be selected recomputed exactly (float32).

    A scan is off by at most ``error`` (codes or float16; a float32 one by BLAS's order of sums); an image can be among
    the ``limit`` best, or pass a threshold, only if its scanned score is within twice that of the last one
    selected or of the threshold. Those few are rescored exactly, so the results, their order (ties in store
    order) and the scores shown are those of an exact search. So are the lowest and the highest score (the
    images within twice that of either end): a histogram's bins span them, and an end a little off would move
    every edge, and bins at the distribution's peak by many counts. From one-byte codes, so are the scores near an
    edge of :data:`HISTOGRAM_BINS` bins over that range (:func:`~picsift.core.codes.near_edges`; one positive
    query, no negatives), so the histogram's counts are those of the exact scores but for about one per 10,000;
    and so they are from a float16 scan, which rounds each score to float16.
    """
    from ..core.codes_kernel import LOCK, rows_within, score_range  # numba: on first use, not at import

    terms = 1 + (negative_weight if negatives is not None and len(negatives) else 0)
    error = terms * (snapshot.coarse_error(len(scores)) + snapshot.sum_error)
    if not len(scores):
        return scores
    picked = select(scores, limit, min_score, max_score)
    lower = -np.inf if min_score is None else min_score - 2 * error
    if limit is not None and len(picked) and len(picked) == limit:
        lower = max(lower, float(scores[picked[-1]]) - 2 * error)
    upper = np.inf if max_score is None else max_score + 2 * error
    contiguous = np.ascontiguousarray(scores)
    with LOCK:  # one pass each on every core, not numpy's seven (min, max, four comparisons, their positions)
        low, high = score_range(contiguous)
        band = rows_within(contiguous, lower, upper, low + 2 * error, high - 2 * error)
    in_snapshot = band if positions is None else positions[band]
    refined = scores.copy()
    refined[band] = score_scope(snapshot, in_snapshot, positives, negatives, combine=combine,
                                negative_weight=negative_weight, exact=True)
    query = query_vectors(positives, combine)
    if snapshot.matrix.dtype == np.float16 and len(query) == 1 and (negatives is None or not len(negatives)):
        # the histogram's bins: scores near an edge rescored exactly, as many as keep it within its target
        # the band is exact already (and kept as the results' own exact path scored them). The band holds both
        # ends, and a score outside it is over 2 errors from either end, so the refined range is the band's.
        span = (float(refined[band].min()), float(refined[band].max())) if np.isfinite(low) else None
        at = near_edge_rows(refined, HISTOGRAM_BINS, snapshot.coarse_typical_error(query[0], refined), skip=band,
                            span=span)
        refined[at] = exact_float16(snapshot.matrix, snapshot.rows[at if positions is None else positions[at]],
                                    query[0])
    return refined


def _top(scores: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the ``limit`` highest scores, in no order; of the scores tied at the edge, the first in store
    order (so a search's results do not depend on how they were picked).

    Of many scores, a strided sample of 8,192 gives a threshold about twice ``limit`` scores pass, and only those
    are partitioned: about 7x less time than torch's top-k over a million (0.25 vs 1.7 ms). When the sample
    misjudges (fewer than ``limit`` pass, or far more) every score is partitioned."""
    if limit <= 0:
        return np.zeros(0, np.int64)
    candidates = None
    if len(scores) >= 65_536:
        step = len(scores) // 8192
        sample = scores[::step]
        rank = min(len(sample), 2 * limit // step + 8)
        if rank < len(sample) // 4:
            threshold = np.partition(sample, len(sample) - rank)[len(sample) - rank]
            passed = np.flatnonzero(scores >= threshold)
            if limit <= len(passed) <= 64 * limit + 65_536:
                candidates = passed
    pool = scores if candidates is None else scores[candidates]
    edge = np.partition(pool, len(pool) - limit)[len(pool) - limit]  # the limit-th highest
    if np.isnan(edge):  # NaN scores (a search never makes them) rank below every number
        pool = np.where(np.isnan(pool), -np.inf, pool)
        edge = np.partition(pool, len(pool) - limit)[len(pool) - limit]
    above = np.flatnonzero(pool > edge)
    picked = np.concatenate([above, np.flatnonzero(pool == edge)[: limit - len(above)]])
    return picked if candidates is None else candidates[picked]


def select(scores: np.ndarray, limit: int | None, min_score: float | None, max_score: float | None) -> np.ndarray:
    """Positions of the images that pass the thresholds (both inclusive), best first, at most ``limit``."""
    keep = None  # no threshold: every image, and no mask to build
    if min_score is not None:
        keep = scores >= min_score
    if max_score is not None:
        keep = scores <= max_score if keep is None else keep & (scores <= max_score)
    candidates = None if keep is None else np.flatnonzero(keep)
    pool = scores if candidates is None else scores[candidates]
    if limit is not None and limit < len(pool):
        top = _top(pool, limit)
        candidates = top if candidates is None else candidates[top]
    elif candidates is None:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]


class Searcher:
    """``search`` and ``similar`` over an embedding store: pure queries that return an
    :class:`~picsift.query.imageset.ImageSet` and write nothing (the library remembers results).

    Parameters
    ----------
    store, embedder, index
        Give the embedding store, the loaded model and the vector index when asked (they load lazily).
    root
        The image folder (query images may be given relative to it).
    pending
        How many images are not embedded yet, given how many are: a search then says it is partial.
    model
        The model spec's text, recorded in recipes.
    object_store, live_objects
        The model's object store (None when it has none yet) and the objects labelled now, by object id, for
        searches with ``options.objects`` (see :mod:`picsift.query.object_search`).
    region_store, image_sizes
        The model's region store (None when it has none yet) and ``(width, height)`` of image ids, for searches
        with ``options.regions`` (see :mod:`picsift.query.region_search`).
    """

    def __init__(self, store: Callable[[], EmbeddingStore], embedder: Callable[[], Embedder],
                 index: Callable[[], VectorIndex], root: Path, pending: Callable[[int], int],
                 model: Callable[[], str], label: Callable[[], str], *,
                 object_store: Callable[[], EmbeddingStore | None] | None = None,
                 live_objects: Callable[[], Mapping[str, LiveObject]] | None = None,
                 region_store: Callable[[], EmbeddingStore | None] | None = None,
                 image_sizes: Callable[[list[str]], dict[str, tuple[int | None, int | None]]] | None = None):
        self._store, self._embedder, self._index = store, embedder, index
        self.root, self._pending, self._model, self._label = root, pending, model, label
        self._object_store, self._live_objects = object_store, live_objects
        self._region_store, self._image_sizes = region_store, image_sizes
        self._owners: RegionOwners | None = None

    def search(self, text: str | Sequence[str], options: SearchOptions, scope: Scope) -> ImageSet:
        """Images matching a text prompt (or several prompts, combined like image references)."""
        prompts = [text] if isinstance(text, str) else list(text)
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise PicsiftError(f"empty search prompt: {text!r}")
        positives = self._embedder().embed_text(prompts)
        return self._run(positives, TextSearch(text=tuple(prompts)), options, scope, exclude=())

    def similar(self, images: ImageRef | Sequence[ImageRef], options: SearchOptions, scope: Scope,
                exclude_references: bool = False) -> ImageSet:
        """Images similar to one or several images: ids, paths or PIL images."""
        refs = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images)
        if not refs:
            raise PicsiftError("similar() needs at least one image")
        positives, ids = self.reference_vectors(refs, objects=options.objects)
        step = ImageSearch(images=tuple(_describe(r) for r in refs))
        return self._run(positives, step, options, scope, exclude=ids if exclude_references else ())

    def _run(self, positives: np.ndarray, step: TextSearch | ImageSearch, options: SearchOptions, scope: Scope,
             exclude: Iterable[str]) -> ImageSet:
        o = options
        if o.combine not in COMBINE_CHOICES:
            raise PicsiftError(f"combine={o.combine!r}; valid choices: {', '.join(COMBINE_CHOICES)}")
        if o.limit is not None and o.limit < 0:
            raise PicsiftError(f"limit must be positive, got {o.limit}")
        negatives = []
        if o.negative_text:
            negatives.append(self._embedder().embed_text([o.negative_text] if isinstance(o.negative_text, str)
                                                         else list(o.negative_text)))
        if o.negative_images:
            negatives.append(self.reference_vectors(list(o.negative_images), objects=o.objects)[0])
        negative = np.concatenate(negatives) if negatives else None
        objects = self._objects(scope) if o.objects else None
        snapshot = objects.snapshot if objects is not None else self._store().snapshot()
        what = "labelled objects" if objects is not None else "images"
        if not len(snapshot):
            raise NotIndexedError(
                f"no {what} of {self.root} are embedded with {self._label()} yet; "
                "run update() (CLI: picsift index FOLDER) first"
            )
        pending = objects.pending if objects is not None else self._pending(len(snapshot))
        searched = len(objects.positions) if objects is not None else len(snapshot)
        if pending:
            log.warning("partial results: %d of %d %s are embedded; embedding continues (search again when "
                        "status()['ready'])", searched, searched + pending, what)
        positions = objects.positions if objects is not None else scope.positions(snapshot)
        exclude = set(exclude)
        if o.regions and objects is not None:
            raise PicsiftError("search objects or regions, not both: objects are scored by their own crops")
        use_index = (not o.distribution and o.max_score is None and positions is None and not exclude
                     and negative is None and o.combine == "mean" and o.limit is not None and not o.regions)
        regions: RegionScores | None = None
        region_info: dict[str, np.ndarray] = {}
        if use_index:
            result_ids, result_scores = self._index_top(snapshot, positives, o.limit or 0)
            keep = result_scores >= o.min_score if o.min_score is not None else np.ones(len(result_ids), bool)
            result_ids, result_scores = result_ids[keep], result_scores[keep]
            all_scores, scope_ids = np.zeros(0, np.float32), np.zeros(0, "<U32")
        else:
            if o.regions:
                regions = self._score_regions(snapshot, positions, positives, negative, o, len(exclude))
                all_scores = regions.scores
            else:
                all_scores = score_scope(snapshot, positions, positives, negative, combine=o.combine,
                                         negative_weight=o.negative_weight)
                all_scores = exact_top(snapshot, positions, all_scores,
                                       None if o.limit is None else o.limit + len(exclude), o.min_score, o.max_score,
                                       positives, negative, o.combine, o.negative_weight)
            scope_ids = snapshot.ids if positions is None else snapshot.ids[positions]
            if exclude:
                eligible = ~np.isin(scope_ids, list(exclude))
                picked = select(np.where(eligible, all_scores, -np.inf), o.limit, o.min_score, o.max_score)
                picked = picked[eligible[picked]]
            else:
                picked = select(all_scores, o.limit, o.min_score, o.max_score)
            result_ids, result_scores = scope_ids[picked], all_scores[picked]
            if regions is not None:
                sizes = self._image_sizes(result_ids.tolist()) if self._image_sizes is not None else {}
                region_info = region_columns(result_ids, regions.cells(picked), regions.image_scores[picked], sizes)
        recorded = replace(o, negative_images=tuple(_describe(r) for r in o.negative_images))
        step = replace(step, options=recorded, within=scope.label, model=self._model())
        info = {"time": time.time(), "complete": not pending, "searched_images": searched,
                "total_images": searched + pending, "summary": step.query}
        if objects is not None:
            info["objects"] = True  # an object set (see picsift.query.object_sets)
        columns = objects.columns(result_ids) if objects is not None else region_info
        return ImageSet(result_ids, result_scores, all_scores, scope_ids, Recipe(step, info), columns)

    def _score_regions(self, snapshot: StoreSnapshot, positions: np.ndarray | None, positives: np.ndarray,
                       negative: np.ndarray | None, o: SearchOptions, excluded: int) -> RegionScores:
        """Every image of ``positions`` scored by its whole picture and its best region."""
        store = self._region_store() if self._region_store is not None else None
        if store is None:
            raise NotIndexedError(f"no regions of {self.root}'s images are embedded with {self._label()} yet; "
                                  "run update(regions=True) (CLI: picsift update FOLDER --regions) first")
        regions = store.snapshot()
        if self._owners is None or not self._owners.fits(snapshot, regions):
            self._owners = RegionOwners.of(snapshot, regions)

        def score(of: StoreSnapshot, at: np.ndarray | None, exact: bool) -> np.ndarray:
            return score_scope(of, at, positives, negative, combine=o.combine, negative_weight=o.negative_weight,
                               exact=exact)

        terms = 1 + (o.negative_weight if negative is not None and len(negative) else 0)
        error = terms * max(snapshot.scan_error + snapshot.sum_error, regions.scan_error + regions.sum_error)
        return score_regions(snapshot, positions, regions, self._owners, score,
                             None if o.limit is None else o.limit + excluded, o.min_score, o.max_score, error)

    def _objects(self, scope: Scope) -> ObjectScope:
        """The labelled objects of ``scope`` that a search over objects scores."""
        if self._object_store is None or self._live_objects is None:
            raise PicsiftError("this searcher has no object store: search objects through a Library")
        store = self._object_store()
        if store is None:
            raise NotIndexedError(f"no labelled objects of {self.root} are embedded with {self._label()} yet; "
                                  "label some (labels.add_object, labels.import_project), then run update()")
        return ObjectScope.of(store.snapshot(), self._live_objects(), scope)

    def _index_top(self, snapshot: StoreSnapshot, positives: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The index's ``limit`` best, rescored exactly from the store (an index may hold coarser vectors,
        e.g. float16 or 8-bit: then it is asked for a few more, and the exact scores pick and order them)."""
        index = self._index()
        query = query_vectors(positives, "mean")
        wider = wider_k(limit) if index.score_error else limit
        found, _ = index.search(query[0], wider)
        # the snapshot's id index finds their rows (no catalog query); ids the index holds but the snapshot does
        # not (an update between the two) are left out
        positions = snapshot.positions_of(np.asarray(found, dtype="<U32"))
        scores = snapshot.exact_rows(query, snapshot.rows[positions])[:, 0]
        order = top_k(scores, limit)
        return snapshot.ids[positions[order]], scores[order]

    def reference_vectors(self, refs: Sequence[ImageRef], *, objects: bool = False) -> tuple[np.ndarray, list[str]]:
        """Vectors for image references, from the store when the image is in the library; with ``objects``, an
        object id's vector comes from the object store (images still work: objects like a whole picture)."""
        snapshot = self._store().snapshot()
        position = snapshot.position
        object_store = self._object_store() if objects and self._object_store is not None else None
        object_snapshot = object_store.snapshot() if object_store is not None else None
        vectors, ids = [], []
        for ref in refs:
            if isinstance(ref, Image.Image):
                vectors.append(self._embedder().embed_images([to_rgb(ref)])[0])
                continue
            text = os.fspath(ref)
            if object_snapshot is not None and isinstance(ref, str) and text in object_snapshot.position:
                ids.append(text)
                vectors.append(object_snapshot.vectors(np.array([object_snapshot.position[text]]))[0])
                continue
            if isinstance(ref, str) and looks_like_id(text) and text in position:
                ids.append(text)
                vectors.append(snapshot.vectors(np.array([position[text]]))[0])
                continue
            path = self._locate(text)
            try:
                data = read_file_bytes(path)  # a regular file (or an object), at most reading.MAX_FILE_BYTES
            except OSError as e:
                raise UnknownImageError(f"cannot use {path} as a query image: {e}") from e
            image_id = content_id(data)
            if image_id in position:
                ids.append(image_id)
                vectors.append(snapshot.vectors(np.array([position[image_id]]))[0])
                continue
            try:
                decoded = decode_image(data, self._embedder().image_size)
            except ImageDecodeError as e:
                raise UnknownImageError(f"cannot use {path} as a query image: {e}") from e
            vectors.append(self._embedder().embed_images([decoded.image])[0])
        return np.stack(vectors), ids

    def _locate(self, text: str) -> Path:
        prefix = f"{self.root}/"  # a path (or URL) under the root, as results show it, is found under the root
        relative = text[len(prefix):] if text.startswith(prefix) else text
        for candidate in (Path(text).expanduser(), self.root / relative):
            if candidate.is_file():
                return candidate
        raise UnknownImageError(
            f"{text!r} is neither an image id embedded in this library nor a readable image file"
        )


def _describe(ref: Any) -> str:
    if isinstance(ref, Image.Image):
        return f"<PIL image {ref.width}x{ref.height}>"
    return os.fspath(ref)


def __getattr__(name: str) -> Any:
    if name == "Results":  # the name of ImageSet before 0.2
        warnings.warn("picsift.query.search.Results is now picsift.query.imageset.ImageSet", DeprecationWarning,
                      stacklevel=2)
        return ImageSet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
