"""Region search (``search(..., regions=True)``): images scored by their whole picture or their best region.

Each image's score is ``max(whole image, best region)`` (regions: the fixed cells of :mod:`picsift.core.regions`),
so a small thing in a corner lifts its picture. Results are images: their ``.df`` rows carry ``box``, the
``[x, y, w, h]`` pixels of the part that scored (the best region, or the whole picture when it scores higher), and
``image_score``, the whole picture's own score. Every image in scope is scored (the histogram covers them all);
an image whose regions are not embedded yet scores by its whole picture. The scores a search can show are
recomputed exactly (float32), as an image search's are (see :func:`picsift.query.search.exact_top`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.catalog import Catalog
from ..core.regions import PREFIX, cell_of, pixel_box
from ..core.store import StoreSnapshot

#: Score an image snapshot's positions (None: all) against the query; ``exact`` for a few.
Scorer = Callable[[StoreSnapshot, np.ndarray | None, bool], np.ndarray]


@dataclass
class RegionOwners:
    """Which image (a position in the image snapshot) each region row belongs to, and its cell; for one pair of
    snapshots (build it again when either changes: :meth:`fits`)."""

    image_version: int
    region_version: int
    owner: np.ndarray  # (len(region snapshot),) int64 position in the image snapshot, -1 when it holds none
    cell: np.ndarray  # (len(region snapshot),) int64

    @classmethod
    def of(cls, images: StoreSnapshot, regions: StoreSnapshot) -> RegionOwners:
        prefixes = images.ids.astype(f"<U{PREFIX}")
        order = np.argsort(prefixes, kind="stable")
        sorted_prefixes = prefixes[order]
        wanted = regions.ids.astype(f"<U{PREFIX}")
        at = np.minimum(np.searchsorted(sorted_prefixes, wanted), max(len(order) - 1, 0))
        found = (sorted_prefixes[at] == wanted) if len(order) else np.zeros(len(wanted), bool)
        owner = np.where(found, order[at] if len(order) else -1, -1).astype(np.int64)
        return cls(images.version, regions.version, owner, cell_of(regions.ids))

    def fits(self, images: StoreSnapshot, regions: StoreSnapshot) -> bool:
        return (self.image_version, self.region_version) == (images.version, regions.version)


@dataclass
class RegionScores:
    """Every image in scope's score (``max(whole, best region)``), its whole picture's and its best region's."""

    scores: np.ndarray  # aligned with the scope's images
    image_scores: np.ndarray
    best: np.ndarray
    group: np.ndarray  # the scope position of each region row scored
    region_rows: np.ndarray  # positions in the region snapshot
    regions: StoreSnapshot
    owners: RegionOwners
    score: Scorer

    def cells(self, picked: np.ndarray) -> np.ndarray:
        """The winning cell of each of ``picked`` (scope positions; -1 where the whole picture scores higher): only
        their regions are scored again, so a search pays for its results, not for every image in scope."""
        out = np.full(len(picked), -1, np.int64)
        won = self.best[picked] > self.image_scores[picked]
        if won.any():
            out[won] = _winning_cells(picked[won], len(self.best), self.group, self.region_rows, self.regions,
                                      self.owners, self.score)
        return out


def score_regions(images: StoreSnapshot, positions: np.ndarray | None, regions: StoreSnapshot, owners: RegionOwners,
                  score: Scorer, limit: int | None, min_score: float | None, max_score: float | None,
                  error: float) -> RegionScores:
    """Score every image of ``positions`` (None: all) by its whole picture and its regions.

    ``score(snapshot, positions, exact)`` scores positions of a snapshot against the query (negatives included).
    ``error`` bounds how far a scanned score is from the exact one: every image whose combined score could be
    among the ``limit`` best or pass a threshold is scored again exactly, whole picture and regions.
    """
    scope = np.arange(len(images)) if positions is None else positions
    index_in_scope = np.full(len(images), -1, np.int64)
    index_in_scope[scope] = np.arange(len(scope))
    owner_index = np.where(owners.owner >= 0, index_in_scope[np.maximum(owners.owner, 0)], -1)
    region_rows = np.flatnonzero(owner_index >= 0)
    group = owner_index[region_rows]
    image_scores = score(images, positions, False)
    best = _best(score(regions, region_rows, False), group, len(scope))
    combined = np.maximum(image_scores, best)
    if len(combined):
        band = _band(combined, limit, min_score, max_score, error)
        exact_images = score(images, scope[band], True)
        in_band = np.zeros(len(scope), bool)
        in_band[band] = True
        picked = in_band[group]
        exact_best = _best(score(regions, region_rows[picked], True), group[picked], len(scope))
        image_scores = image_scores.copy()
        image_scores[band] = exact_images
        best[band] = exact_best[band]
        combined = np.maximum(image_scores, best)
    return RegionScores(combined.astype(np.float32), image_scores.astype(np.float32), best, group, region_rows,
                        regions, owners, score)


def _best(scores: np.ndarray, group: np.ndarray, size: int) -> np.ndarray:
    """The highest of ``scores`` in each group ``0..size-1`` (-inf for a group with none)."""
    out = np.full(size, -np.inf, np.float32)
    np.maximum.at(out, group, scores.astype(np.float32, copy=False))
    return out


def _band(scores: np.ndarray, limit: int | None, min_score: float | None, max_score: float | None,
          error: float) -> np.ndarray:
    """Positions whose exact score could put them among the ``limit`` best or inside the thresholds."""
    keep = np.ones(len(scores), bool)
    if min_score is not None:
        keep &= scores >= min_score
    if max_score is not None:
        keep &= scores <= max_score
    pool = scores[keep]
    lower = -np.inf if min_score is None else min_score - 2 * error
    if limit is not None and 0 < limit <= len(pool):
        kth = float(np.partition(pool, len(pool) - limit)[len(pool) - limit])  # the limit-th best
        lower = max(lower, kth - 2 * error)
    upper = np.inf if max_score is None else max_score + 2 * error
    return np.flatnonzero((scores >= lower) & (scores <= upper))


def _winning_cells(winners: np.ndarray, size: int, group: np.ndarray, region_rows: np.ndarray,
                   regions: StoreSnapshot, owners: RegionOwners, score: Scorer) -> np.ndarray:
    """The cell whose score is the best of each winning image (scored exactly, only those images' regions)."""
    wanted = np.zeros(size, bool)
    wanted[winners] = True
    mine = wanted[group]
    rows, groups = region_rows[mine], group[mine]
    scores = score(regions, rows, True)
    order = np.lexsort((-scores, groups))  # by image, best region first
    first = np.ones(len(order), bool)
    first[1:] = groups[order][1:] != groups[order][:-1]
    top = order[first]
    cells = dict(zip(groups[top].tolist(), owners.cell[rows[top]].tolist(), strict=True))
    return np.array([cells[g] for g in winners.tolist()], dtype=np.int64)


def region_columns(ids: np.ndarray, cells: np.ndarray, image_scores: np.ndarray,
                   sizes: dict[str, tuple[int | None, int | None]]) -> dict[str, np.ndarray]:
    """``box`` (``[x, y, w, h]`` px of the best region, or of the whole picture) and ``image_score`` per result."""
    boxes = np.empty(len(ids), dtype=object)
    for n, (image_id, cell) in enumerate(zip(ids.tolist(), cells.tolist(), strict=True)):
        width, height = sizes.get(image_id, (None, None))
        if not width or not height:
            boxes[n] = None
        elif cell < 0:
            boxes[n] = [0.0, 0.0, float(width), float(height)]
        else:
            boxes[n] = pixel_box(cell, width, height)
    return {"box": boxes, "image_score": np.asarray(image_scores, dtype=np.float32)}


def image_sizes(catalog: Catalog, ids: list[str]) -> dict[str, tuple[int | None, int | None]]:
    """``(width, height)`` of each image id: looked up one by one for a page of results, from every file for many."""
    if len(ids) <= 2_000:
        return {i: catalog.file_table.size_of(i)[1:] for i in ids}
    sizes: dict[str, tuple[int | None, int | None]] = {}
    for row in catalog.files().values():
        if row.image_id and row.image_id not in sizes:
            sizes[row.image_id] = (row.width, row.height)
    return sizes
