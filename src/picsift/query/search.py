"""Scoring the store against a query, the :class:`Results` a search returns, and :class:`SearchMixin`,
which gives :class:`~picsift.Library` its ``search`` and ``similar``.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from ..core.catalog import content_id, looks_like_id
from ..core.store import StoreSnapshot
from ..embedding.decode import ImageDecodeError, decode_image, to_rgb
from ..errors import NotIndexedError, PicsiftError, UnknownImageError
from ..index.base import top_k
from ..index.sync import wider_k
from ..reading import read_regular_file
from .collections import TEMPORARY

if TYPE_CHECKING:
    from ..core.catalog import Catalog
    from ..core.store import EmbeddingStore
    from ..embedding.openclip import Embedder
    from ..embedding.spec import ModelSpec
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
    return normalise(references.mean(axis=0)) if combine == "mean" else references


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

    Each is within ``(1 + negative_weight) * snapshot.scan_error`` of the exact score (a float16
    store is scanned in float16); :func:`exact_top` makes the ones a search shows exact. With
    ``exact``, ``positions`` are scored exactly (float32), for a few rows.
    """
    rows = snapshot.rows if positions is None else snapshot.rows[positions]
    if not len(rows):
        return np.zeros(0, np.float32)

    def best(vectors: np.ndarray) -> np.ndarray:
        queries = query_vectors(vectors, combine)
        if exact:
            scores = snapshot.exact(queries, np.arange(len(snapshot)) if positions is None else positions)
        else:
            scores = snapshot.scan(queries, rows)
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

    A float16 scan is off by at most ``error``; an image can be among the ``limit`` best, or pass a
    threshold, only if its scanned score is within twice that of the last one selected or of the
    threshold. Those few are rescored exactly, so the results, their order and the scores shown
    are those of an exact search.
    """
    error = (1 + (negative_weight if negatives is not None and len(negatives) else 0)) * snapshot.scan_error
    if not error or not len(scores):
        return scores
    picked = select(scores, limit, min_score, max_score)
    lower = -np.inf if min_score is None else min_score - 2 * error
    if limit is not None and len(picked) and len(picked) == limit:
        lower = max(lower, float(scores[picked[-1]]) - 2 * error)
    upper = np.inf if max_score is None else max_score + 2 * error
    band = np.flatnonzero((scores >= lower) & (scores <= upper))
    in_snapshot = band if positions is None else positions[band]
    refined = scores.copy()
    refined[band] = score_scope(snapshot, in_snapshot, positives, negatives, combine=combine,
                                negative_weight=negative_weight, exact=True)
    return refined


def select(scores: np.ndarray, limit: int | None, min_score: float | None, max_score: float | None) -> np.ndarray:
    """Positions of the images that pass the thresholds (both inclusive), best first, at most ``limit``."""
    keep = np.ones(len(scores), dtype=bool)
    if min_score is not None:
        keep &= scores >= min_score
    if max_score is not None:
        keep &= scores <= max_score
    candidates = np.flatnonzero(keep)
    if limit is not None and limit < len(candidates):
        part = np.argpartition(-scores[candidates], limit - 1)[:limit]
        candidates = candidates[part]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]


@dataclass
class Results:
    """A search's results and the score distribution it was drawn from.

    Attributes
    ----------
    df
        One row per result, best first: ``rank``, ``id``, ``path``, ``score``.
    scores
        The score of every image in scope (not only the results), for histograms.
    scope_ids
        The image ids those scores belong to, aligned with :attr:`scores`.
    query
        How the search was made (the recipe saved with collections). ``complete`` is False when the
        library still had images to embed: see :attr:`partial`.
    """

    df: pd.DataFrame
    scores: np.ndarray
    scope_ids: np.ndarray
    query: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.df)

    @property
    def partial(self) -> bool:
        """True when some images were not embedded yet at search time (an update was running or pending):
        the results cover ``query["searched_images"]`` of ``query["total_images"]``."""
        return self.query.get("complete") is False

    @property
    def ids(self) -> list[str]:
        return self.df["id"].tolist()

    @property
    def paths(self) -> list[str]:
        return self.df["path"].tolist()

    def to_pandas(self) -> pd.DataFrame:
        """A copy of the result table (``rank``, ``id``, ``path``, ``score``)."""
        return self.df.copy()

    def histogram(self, bins: int = 50, range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Counts and bin edges of the scores of every image in scope."""
        if not len(self.scores):
            return np.zeros(bins, np.int64), np.linspace(0.0, 1.0, bins + 1)
        return np.histogram(self.scores, bins=bins, range=range)

    def distribution(self, bins: int = 50) -> dict[str, Any]:
        """Summary statistics and a histogram of all scores in scope, JSON-ready."""
        counts, edges = self.histogram(bins)
        stats: dict[str, Any] = {"count": len(self.scores)}
        if len(self.scores):
            stats.update(
                min=float(self.scores.min()), max=float(self.scores.max()),
                mean=float(self.scores.mean()), median=float(np.median(self.scores)),
            )
        stats["histogram"] = {"counts": counts.tolist(), "edges": [round(float(e), 6) for e in edges]}
        return stats

    def __repr__(self) -> str:
        partial = (f", partial: {self.query.get('searched_images')} of {self.query.get('total_images')} images"
                   if self.partial else "")
        return f"<Results: {len(self)} of {len(self.scores)} images, query={self.query.get('summary')!r}{partial}>"

    def _repr_html_(self) -> str:
        partial = (f" (partial: {self.query.get('searched_images')} of {self.query.get('total_images')} images "
                   "embedded so far)") if self.partial else ""
        return f"<p>{len(self)} of {len(self.scores)} images{partial}</p>" + self.df.head(50).to_html(index=False)


class SearchMixin:
    """``search`` and ``similar`` of :class:`~picsift.Library` (which provides the attributes below)."""

    catalog: Catalog
    root: Path
    if TYPE_CHECKING:
        @property
        def spec(self) -> ModelSpec: ...
        @property
        def embedder(self) -> Embedder: ...
        @property
        def store(self) -> EmbeddingStore: ...
        @property
        def index(self) -> VectorIndex: ...
        def _pending(self, embedded: int) -> int: ...
        def _id_paths(self, ids: list[str]) -> dict[str, str]: ...
        def _with_moments(self, df: pd.DataFrame) -> pd.DataFrame: ...
        def _collection_items(self, name: str) -> tuple[dict[str, Any], list[tuple[str, float | None, int]]]: ...

    def search(
        self,
        text: str | Sequence[str],
        *,
        limit: int | None = 100,
        min_score: float | None = None,
        max_score: float | None = None,
        negative_text: str | Sequence[str] | None = None,
        negative_images: Sequence[ImageRef] | None = None,
        negative_weight: float = 0.5,
        combine: str = "mean",
        within: str | Iterable[str] | None = None,
        distribution: bool = True,
    ) -> Results:
        """Images matching a text prompt (or several prompts, combined like image references).

        Parameters
        ----------
        limit
            At most this many results (``None``: all that qualify).
        min_score, max_score
            Keep scores in ``[min_score, max_score]``: ``min_score`` alone finds the most similar,
            ``max_score`` alone the edge cases below a threshold.
        negative_text, negative_images
            Push results away from these: ``score = sim(query) - negative_weight * sim(negatives)``.
        combine
            ``"mean"`` or ``"max"`` over several prompts or images (see :mod:`picsift.query.search`).
        within
            Search only these image ids, or the images of this collection name.
        distribution
            Compute every image's score exactly (for :meth:`Results.histogram`). ``False`` asks the
            index for the top results only, which is faster for very large libraries.
        """
        prompts = [text] if isinstance(text, str) else list(text)
        if not prompts or not all(p.strip() for p in prompts):
            raise PicsiftError("empty search prompt")
        positives = self.embedder.embed_text(prompts)
        recipe = {"kind": "text", "text": prompts}
        return self._run(positives, recipe, limit, min_score, max_score, negative_text, negative_images,
                         negative_weight, combine, within, distribution, exclude=())

    def similar(
        self,
        images: ImageRef | Sequence[ImageRef],
        *,
        limit: int | None = 100,
        min_score: float | None = None,
        max_score: float | None = None,
        negative_text: str | Sequence[str] | None = None,
        negative_images: Sequence[ImageRef] | None = None,
        negative_weight: float = 0.5,
        combine: str = "mean",
        within: str | Iterable[str] | None = None,
        distribution: bool = True,
        exclude_references: bool = False,
    ) -> Results:
        """Images similar to one or several images: ids, paths or PIL images (see :meth:`search`).

        With ``exclude_references`` the reference images themselves are left out of the results.
        """
        refs = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images)
        if not refs:
            raise PicsiftError("similar() needs at least one image")
        positives, ids = self._reference_vectors(refs)
        recipe = {"kind": "images", "images": [_describe(r) for r in refs]}
        return self._run(positives, recipe, limit, min_score, max_score, negative_text, negative_images,
                         negative_weight, combine, within, distribution,
                         exclude=ids if exclude_references else ())

    def _run(
        self, positives: np.ndarray, recipe: dict[str, Any], limit: int | None, min_score: float | None,
        max_score: float | None, negative_text: str | Sequence[str] | None,
        negative_images: Sequence[ImageRef] | None, negative_weight: float, combine: str,
        within: str | Iterable[str] | None, distribution: bool, exclude: Iterable[str],
    ) -> Results:
        if combine not in COMBINE_CHOICES:
            raise PicsiftError(f"combine={combine!r}; valid choices: {', '.join(COMBINE_CHOICES)}")
        if limit is not None and limit < 0:
            raise PicsiftError(f"limit must be positive, got {limit}")
        negatives = []
        if negative_text:
            negatives.append(self.embedder.embed_text([negative_text] if isinstance(negative_text, str)
                                                      else list(negative_text)))
        if negative_images:
            negatives.append(self._reference_vectors(list(negative_images))[0])
        negative = np.concatenate(negatives) if negatives else None
        snapshot = self.store.snapshot()
        if not len(snapshot):
            raise NotIndexedError(
                f"no images of {self.root} are embedded with {self.spec.label()} yet; "
                "run update() (CLI: picsift index FOLDER) first"
            )
        pending = self._pending(len(snapshot))
        if pending:
            log.warning("partial results: %d of %d images are embedded; embedding continues (search again when "
                        "status()['ready'])", len(snapshot), len(snapshot) + pending)
        scope = self._scope_positions(snapshot, within)
        exclude = set(exclude)
        use_index = (not distribution and max_score is None and scope is None and not exclude
                     and negative is None and combine == "mean" and limit is not None)
        if use_index:
            result_ids, result_scores = self._index_top(snapshot, positives, limit or 0)
            keep = result_scores >= min_score if min_score is not None else np.ones(len(result_ids), bool)
            result_ids, result_scores = result_ids[keep], result_scores[keep]
            all_scores, scope_ids = np.zeros(0, np.float32), np.zeros(0, "<U32")
        else:
            all_scores = score_scope(snapshot, scope, positives, negative, combine=combine,
                                     negative_weight=negative_weight)
            all_scores = exact_top(snapshot, scope, all_scores, None if limit is None else limit + len(exclude),
                                   min_score, max_score, positives, negative, combine, negative_weight)
            scope_ids = snapshot.ids if scope is None else snapshot.ids[scope]
            if exclude:
                eligible = ~np.isin(scope_ids, list(exclude))
                picked = select(np.where(eligible, all_scores, -np.inf), limit, min_score, max_score)
                picked = picked[eligible[picked]]
            else:
                picked = select(all_scores, limit, min_score, max_score)
            result_ids, result_scores = scope_ids[picked], all_scores[picked]
        paths = self._id_paths(result_ids.tolist())
        df = pd.DataFrame({
            "rank": np.arange(1, len(result_ids) + 1),
            "id": result_ids.astype(str),
            "path": [str(self.root / paths[i]) if i in paths else None for i in result_ids],
            "score": np.asarray(result_scores, dtype=np.float32),
        })
        recipe.update(
            model=self.spec.text, limit=limit, min_score=min_score, max_score=max_score, combine=combine,
            negative_text=negative_text, negative_images=[_describe(r) for r in negative_images or []],
            negative_weight=negative_weight, time=time.time(), complete=not pending,
            searched_images=len(snapshot), total_images=len(snapshot) + pending,
            within=within if isinstance(within, str) or within is None else "ids",
            summary=recipe.get("text") or recipe.get("images"),
        )
        df = self._with_moments(df)
        results = Results(df, all_scores, scope_ids, recipe)
        self.catalog.write_collection(TEMPORARY, df["id"].tolist(), df["score"].tolist(), recipe)
        return results

    def _index_top(self, snapshot: StoreSnapshot, positives: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The index's ``limit`` best, rescored exactly from the store (an index may hold coarser vectors,
        e.g. float16 or 8-bit: then it is asked for a few more, and the exact scores pick and order them)."""
        index = self.index
        query = query_vectors(positives, "mean")
        wider = wider_k(limit) if index.score_error else limit
        ids, _ = index.search(query[0], wider)
        rows = self.store.rows_of(ids)
        ids = [i for i in ids if i in rows and rows[i] < snapshot.matrix.shape[0]]
        scores = snapshot.exact_rows(query, np.array([rows[i] for i in ids], dtype=np.int64))[:, 0]
        order = top_k(scores, limit)
        return np.array(ids, dtype="<U32")[order], scores[order]

    def _scope_positions(self, snapshot: StoreSnapshot, within: str | Iterable[str] | None) -> np.ndarray | None:
        if within is None:
            return None
        if isinstance(within, str):
            within = [item[0] for item in self._collection_items(within)[1]]
        return np.flatnonzero(np.isin(snapshot.ids, list(within)))

    def _reference_vectors(self, refs: Sequence[ImageRef]) -> tuple[np.ndarray, list[str]]:
        """Vectors for image references, from the store when the image is in the library."""
        snapshot = self.store.snapshot()
        position = snapshot.position
        vectors, ids = [], []
        for ref in refs:
            if isinstance(ref, Image.Image):
                vectors.append(self.embedder.embed_images([to_rgb(ref)])[0])
                continue
            text = os.fspath(ref)
            if isinstance(ref, str) and looks_like_id(text) and text in position:
                ids.append(text)
                vectors.append(snapshot.vectors(np.array([position[text]]))[0])
                continue
            path = self._locate(text)
            try:
                data = read_regular_file(path)[0]  # a regular file, at most reading.MAX_FILE_BYTES
            except OSError as e:
                raise UnknownImageError(f"cannot use {path} as a query image: {e}") from e
            image_id = content_id(data)
            if image_id in position:
                ids.append(image_id)
                vectors.append(snapshot.vectors(np.array([position[image_id]]))[0])
                continue
            try:
                decoded = decode_image(data, self.embedder.image_size)
            except ImageDecodeError as e:
                raise UnknownImageError(f"cannot use {path} as a query image: {e}") from e
            vectors.append(self.embedder.embed_images([decoded.image])[0])
        return np.stack(vectors), ids

    def _locate(self, text: str) -> Path:
        for candidate in (Path(text).expanduser(), self.root / text):
            if candidate.is_file():
                return candidate
        raise UnknownImageError(
            f"{text!r} is neither an image id embedded in this library nor a readable image file"
        )


def _describe(ref: Any) -> str:
    if isinstance(ref, Image.Image):
        return f"<PIL image {ref.width}x{ref.height}>"
    return os.fspath(ref)
