"""Diverse sampling: pick a subset of images that covers the collection instead of its densest part.

Methods (all seeded: the same inputs and seed give the same sample):

- ``random``: k-means clusters (default ``sqrt(n / 2)``), then draw evenly across them (always from the
  cluster holding the fewest sampled or excluded images, random within it), so small clusters are
  represented as well as big ones;
- ``centroids``: k-means with one cluster per image wanted; the image nearest each cluster centre;
- ``kcenter``: greedy farthest point (the k-center coreset): each pick is the image farthest from every
  image picked or excluded so far. Best worst-case coverage; it also picks outliers;
- ``typical``: one cluster per image wanted, and in each the *most typical* image (highest local density:
  smallest mean distance to its nearest neighbours in the cluster), largest clusters first. This is
  TypiClust (Hacohen et al., 2022), which beats coverage-first picks when few labels exist.

``exclude`` marks images already labelled or already sampled: they are never picked, and they count as
covering their neighbourhood (kcenter starts from them; cluster methods fill clusters that hold none first).

Active learning: ``uncertainty`` (one score per image, higher = the model is less sure) narrows the
candidates to the ``pool`` most uncertain images (default ``10 * size``); the method then picks a diverse
batch among them (``centroids`` / ``typical``: ``size`` clusters of the pool, one image each; ``kcenter``
starts at the most uncertain one; ``random`` takes the most uncertain image of each cluster in turn).
Uncertain-only batches are redundant (near-duplicates near the decision boundary); diversity-only batches
ignore the model; this pre-filter then diversify scheme (Zhdanov 2019, "Diverse mini-batch active
learning") gets both at the cost of one top-k.

Scale: vectors may be a memory map or a :class:`RowsLike` view of one; they are read in blocks, never all
at once. k-means fits on at most ``max(50k, 64 k)`` sampled vectors and assigns the rest in blocks; kcenter
keeps one distance per vector and skips, by the triangle inequality, vectors the new pick cannot be
nearer to, so late picks read only a small part of the data.

Pure numpy / scikit-learn: no catalog, store or widget imports. Vectors are expected L2-normalised
(as picsift stores them), so Euclidean k-means matches cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .clustering import (
    Clustering,
    Vectors,
    cluster,
    default_clusters,
    nearest_target,
    read_blocks,
    take_rows,
    unit_distance,
    vector_dim,
)

SAMPLING_METHODS = ("random", "centroids", "kcenter", "typical")
POOL_FACTOR = 10  # uncertainty: diversify among the POOL_FACTOR * size most uncertain images
TYPICAL_NEIGHBOURS = 20
TYPICAL_CANDIDATES, TYPICAL_REFERENCE = 1000, 5000  # per cluster: who may be picked, whom density counts


@dataclass
class Coverage:
    """How well a sample covers the images in scope (Euclidean distances between unit vectors, 0..2).

    ``mean`` and ``max`` distance from each image to its nearest sampled image; ``within``: the fraction of
    images within ``radius`` of a sampled one (``None`` without a radius).
    """

    mean: float
    max: float
    within: float | None = None
    radius: float | None = None


def kcenter(
    vectors: Vectors,
    size: int,
    *,
    covered: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    first: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Greedy farthest-point sampling (k-center coreset) of ``size`` positions of ``vectors``.

    Parameters
    ----------
    covered
        Positions already labelled or sampled: never picked, and the first pick is the vector farthest from them.
    candidates
        Only these positions may be picked (distances are then kept for them only).
    first
        The first pick when nothing is covered (default: a seeded random eligible position).

    Returns
    -------
    numpy.ndarray
        Picked positions into ``vectors``, in pick order.
    """
    n = len(vectors)
    covered = np.unique(np.zeros(0, np.int64) if covered is None else np.asarray(covered, np.int64))
    seen = take_rows(vectors, covered)
    if candidates is not None:  # a small pool: gather it and run on that
        candidates = np.setdiff1d(np.asarray(candidates, np.int64), covered)
        start = None if first is None or first not in candidates else int(np.searchsorted(candidates, first))
        pool = take_rows(vectors, candidates)
        return candidates[_farthest_points(pool, size, seen, np.zeros(0, np.int64), start, seed)]
    return _farthest_points(vectors, min(size, n - len(covered)), seen, covered, first, seed)


def _farthest_points(vectors: Vectors, size: int, seen: np.ndarray, forbidden: np.ndarray,
                     first: int | None, seed: int) -> np.ndarray:
    n = len(vectors)
    size = max(0, min(size, n - len(forbidden)))
    if size == 0:
        return np.zeros(0, np.int64)
    # centres: the covered vectors, then the picks; reach: each vector's distance to its nearest centre
    centres = np.zeros((len(seen) + size, vector_dim(vectors)), np.float32)
    centres[: len(seen)] = seen
    reach = np.full(n, np.inf, np.float32)
    nearest = np.full(n, -1, np.int64)
    if len(seen):
        dots, nearest = nearest_target(vectors, seen)
        reach = unit_distance(dots).astype(np.float32)
    pickable = np.ones(n, bool)
    pickable[forbidden] = False
    picks = np.zeros(size, np.int64)
    for p in range(size):
        if p == 0 and not len(seen):
            if first is not None and pickable[first]:
                pick = int(first)
            else:
                pick = int(np.random.default_rng(seed).choice(np.flatnonzero(pickable)))
        else:
            pick = int(np.argmax(np.where(pickable, reach, -1.0)))
        c = len(seen) + p
        picks[p], pickable[pick] = pick, False
        centre = centres[c] = np.asarray(vectors[pick : pick + 1], np.float32)[0]
        # triangle inequality: d(x, new) >= d(c_x, new) - d(x, c_x), so x cannot get nearer to the new pick
        # when d(c_x, new) >= 2 d(x, c_x); only the other vectors are read
        between = unit_distance(centres[:c] @ centre).astype(np.float32)
        check = np.ones(n, bool) if c == 0 else (nearest < 0) | (between[nearest] < 2 * reach + 1e-5)
        if check.mean() > 0.25:
            for begin, block in read_blocks(vectors):
                part = slice(begin, begin + len(block))
                _closer(unit_distance(block @ centre), reach, nearest, part, c, check[part])
        else:
            idx = np.flatnonzero(check)
            for begin in range(0, len(idx), 32_768):
                part_idx = idx[begin : begin + 32_768]
                _closer(unit_distance(np.asarray(vectors[part_idx], np.float32) @ centre), reach, nearest, part_idx, c,
                        None)
    return picks


def _closer(distance: np.ndarray, reach: np.ndarray, nearest: np.ndarray, where: Any, centre: int,
            mask: np.ndarray | None) -> None:
    better = distance < reach[where]
    if mask is not None:
        better &= mask
    reach[where] = np.where(better, distance, reach[where])
    nearest[where] = np.where(better, centre, nearest[where])


def coverage(vectors: Vectors, sample: Sequence[int] | np.ndarray, *, radius: float | None = None) -> Coverage:
    """Mean and max distance from every vector to its nearest sampled vector (positions ``sample``)."""
    sample = np.asarray(sample, np.int64)
    if not len(vectors):
        return Coverage(0.0, 0.0, None if radius is None else 1.0, radius)
    if not len(sample):
        return Coverage(float("inf"), float("inf"), None if radius is None else 0.0, radius)
    distances = unit_distance(nearest_target(vectors, take_rows(vectors, sample))[0])
    within = None if radius is None else float(np.mean(distances <= radius))
    return Coverage(float(distances.mean()), float(distances.max()), within, radius)


def sample_positions(
    vectors: Vectors,
    size: int | None = None,
    *,
    method: str = "random",
    n_clusters: int | None = None,
    seed: int = 0,
    exclude: np.ndarray | None = None,
    uncertainty: np.ndarray | None = None,
    pool: int | None = None,
    typicality: np.ndarray | None = None,
) -> np.ndarray:
    """A diverse sample of positions into ``vectors``; see the module docstring for the methods.

    Parameters
    ----------
    size
        How many to return (default: the number of clusters for ``random`` and ``centroids``, else 1).
        ``centroids`` and ``typical`` with ``n_clusters`` given return at most one image per cluster.
    n_clusters
        Number of k-means clusters (``random``: default ``sqrt(n / 2)``; ``centroids`` and ``typical``:
        default ``size`` plus the excluded images, up to ``max(size, 1024)``).
    exclude
        A boolean mask or positions of images already labelled or sampled.
    uncertainty
        One score per vector, higher = less certain (NaN: unknown, never picked); see the module docstring.
    pool
        With ``uncertainty``: how many of the most uncertain images to diversify among (default ``10 * size``).
    typicality
        ``typical``: one score per vector, higher = more typical (from the neighbour graph, see
        :func:`picsift.analysis.graph.graph_typicality`); without it, typicality is computed within each cluster.
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"method={method!r}; valid choices: {', '.join(SAMPLING_METHODS)}")
    if size is not None and size < 0:
        raise ValueError(f"size must be positive, got {size}")
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    n = len(vectors)
    excluded = np.zeros(n, bool)
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.dtype == bool:
            if len(exclude) != n:
                raise ValueError(f"exclude mask has {len(exclude)} entries for {n} vectors")
            excluded = exclude.copy()
        else:
            excluded[exclude.astype(np.int64)] = True
    if size is None:
        size = (n_clusters or default_clusters(n)) if method in ("random", "centroids") else 1
    size = min(size, int((~excluded).sum()))
    if size <= 0:
        return np.zeros(0, np.int64)
    candidates, order = None, None
    if uncertainty is not None:
        uncertainty = np.asarray(uncertainty, np.float64)
        if uncertainty.shape != (n,):
            raise ValueError(f"uncertainty has shape {uncertainty.shape}; expected one score per vector ({n},)")
        score = np.where(excluded | np.isnan(uncertainty), -np.inf, uncertainty)
        wanted = min(int(np.isfinite(score).sum()), max(size, pool or POOL_FACTOR * size))
        size = min(size, wanted)
        if size <= 0:
            return np.zeros(0, np.int64)
        top = np.argpartition(-score, wanted - 1)[:wanted] if wanted < n else np.arange(n)
        order = top[np.lexsort((top, -score[top]))]  # most uncertain first, ties by position
        candidates = np.sort(order)
    covered = np.flatnonzero(excluded)
    if method == "kcenter":
        first = int(order[0]) if order is not None else None
        return kcenter(vectors, size, covered=covered, candidates=candidates, first=first, seed=seed)
    if typicality is not None and np.shape(typicality) != (n,):
        raise ValueError(f"typicality has shape {np.shape(typicality)}; expected one score per vector ({n},)")
    return _cluster_sample(vectors, size, method, n_clusters, seed, excluded, candidates, uncertainty, typicality)


def _cluster_sample(vectors: Vectors, size: int, method: str, n_clusters: int | None, seed: int,
                    excluded: np.ndarray, candidates: np.ndarray | None, uncertainty: np.ndarray | None,
                    typicality: np.ndarray | None = None) -> np.ndarray:
    covered = np.flatnonzero(excluded)
    space = vectors if candidates is None else take_rows(vectors, candidates)
    members = np.arange(len(space))
    k = n_clusters
    if k is None and method == "random":
        k = default_clusters(len(space))
    elif k is None:  # TypiClust: as many clusters as labelled + wanted, so unlabelled clusters exist; a pool: size
        k = size if candidates is not None else min(size + len(covered), max(size, 1024))
    clustering = cluster(space, k, seed=seed)
    k = len(clustering.centres)
    if candidates is None:
        counts = np.bincount(clustering.labels[covered], minlength=k)
        eligible = ~excluded
    else:  # the pool holds no excluded image: count the excluded ones in the pool's clusters
        counts = np.zeros(k, np.int64)
        half = 0.5 * np.einsum("ij,ij->i", clustering.centres, clustering.centres)
        for begin in range(0, len(covered), 32_768):
            block = take_rows(vectors, covered[begin : begin + 32_768])
            counts += np.bincount((block @ clustering.centres.T - half).argmax(axis=1), minlength=k)
        eligible = np.ones(len(space), bool)
    rng = np.random.default_rng(seed)
    if method == "random":
        if uncertainty is not None and candidates is not None:
            priority = -uncertainty[candidates]  # the most uncertain of each cluster first
        else:
            priority = rng.random(len(space))
        picked = _balanced(clustering.labels, k, counts, eligible, priority, size, rng)
    else:
        typical = None if typicality is None else typicality if candidates is None else typicality[candidates]
        picked = _one_per_cluster(space, clustering, counts, eligible, size, method, rng, typical)
        if len(picked) < size and n_clusters is None:  # empty or duplicate clusters: top up, nearest centre first
            left = eligible.copy()
            left[picked] = False
            counts = counts + np.bincount(clustering.labels[picked], minlength=k)
            distances = clustering.distances if clustering.distances is not None else rng.random(len(space))
            more = _balanced(clustering.labels, k, counts, left, distances, size - len(picked), rng)
            picked = np.concatenate([picked, more])
    picked = members[picked]
    return picked if candidates is None else candidates[picked]


def _balanced(labels: np.ndarray, k: int, counts: np.ndarray, eligible: np.ndarray, priority: np.ndarray,
              size: int, rng: np.random.Generator) -> np.ndarray:
    """Always draw from the cluster with the fewest images so far (covered + picked); ties in a seeded order."""
    positions = np.flatnonzero(eligible)
    positions = positions[np.lexsort((priority[positions], labels[positions]))]
    starts = np.searchsorted(labels[positions], np.arange(k + 1))
    taken = np.zeros(k, np.int64)
    counts = counts.astype(np.int64).copy()
    tiebreak = rng.permutation(k)
    picked: list[int] = []
    available = starts[1:] - starts[:-1]
    while len(picked) < size:
        open_ = np.flatnonzero(taken < available)
        if not len(open_):
            break
        # one round: every open cluster at the lowest count gives one image, in the seeded order
        low = counts[open_].min()
        chosen = open_[counts[open_] == low]
        for c in chosen[np.argsort(tiebreak[chosen])]:
            picked.append(int(positions[starts[c] + taken[c]]))
            taken[c] += 1
            counts[c] += 1
            if len(picked) == size:
                break
    return np.asarray(picked, np.int64)


def _one_per_cluster(vectors: Vectors, clustering: Clustering, counts: np.ndarray, eligible: np.ndarray,
                     size: int, method: str, rng: np.random.Generator,
                     typicality: np.ndarray | None = None) -> np.ndarray:
    """The image nearest the centre (centroids) or most typical (typical) of each cluster, visiting clusters
    with the fewest covered images first, then the largest."""
    labels, k = clustering.labels, len(clustering.centres)
    sizes = np.bincount(labels, minlength=k)
    distances = clustering.distances if clustering.distances is not None else np.zeros(len(labels), np.float32)
    by_cluster = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[by_cluster], np.arange(k + 1))
    picked: list[int] = []
    for c in np.lexsort((np.arange(k), -sizes, counts)):
        everyone = by_cluster[starts[c] : starts[c + 1]]
        members = everyone[eligible[everyone]]
        if not len(members):
            continue
        if method == "centroids":
            picked.append(int(members[np.argmin(distances[members])]))
        elif typicality is not None:  # the graph's: every member scored against the whole library
            picked.append(int(members[np.lexsort((members, -typicality[members]))[0]]))
        else:
            picked.append(_most_typical(vectors, everyone, members, rng))
        if len(picked) == size:
            break
    return np.asarray(picked, np.int64)


def _most_typical(vectors: Vectors, cluster_members: np.ndarray, eligible: np.ndarray,
                  rng: np.random.Generator) -> int:
    """The eligible member with the smallest mean distance to its nearest neighbours within the cluster."""
    if len(eligible) > TYPICAL_CANDIDATES:
        eligible = np.sort(rng.choice(eligible, TYPICAL_CANDIDATES, replace=False))
    reference = cluster_members
    if len(reference) > TYPICAL_REFERENCE:  # every candidate is in the reference, so its nearest is itself
        reference = np.union1d(eligible, rng.choice(reference, TYPICAL_REFERENCE, replace=False))
    if len(reference) < 2:
        return int(eligible[0])
    neighbours = min(TYPICAL_NEIGHBOURS, len(reference) - 1)
    distances = unit_distance(take_rows(vectors, eligible) @ take_rows(vectors, reference).T)
    # each candidate is its own nearest neighbour (distance 0): take one more
    nearest = np.partition(distances, neighbours, axis=1)[:, : neighbours + 1]
    mean = nearest.sum(axis=1) / neighbours
    return int(eligible[np.argmin(mean)])


def diverse_sample(
    ids: Sequence[str] | np.ndarray,
    vectors: Vectors,
    size: int | None = None,
    *,
    method: str = "random",
    n_clusters: int | None = None,
    seed: int = 0,
    exclude: Sequence[str] | None = None,
    uncertainty: np.ndarray | None = None,
) -> list[str]:
    """A diverse sample of ``ids`` (one vector per id): :func:`sample_positions` by id.

    Parameters
    ----------
    ids, vectors
        The images to sample from and their embeddings, row-aligned.
    exclude
        Ids already labelled or sampled (never picked; they count as covered).
    uncertainty
        One score per id, higher = less certain (active learning).

    Returns
    -------
    list of str
        Sampled ids, in draw order (no duplicates).
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"method={method!r}; valid choices: {', '.join(SAMPLING_METHODS)}")
    ids = np.asarray(ids)
    if len(ids) != len(vectors):
        raise ValueError(f"got {len(ids)} ids but {len(vectors)} vectors")
    if len(ids) == 0 or size == 0:
        return []
    mask = np.isin(ids, list(exclude)) if exclude else None
    picked = sample_positions(vectors, size, method=method, n_clusters=n_clusters, seed=seed, exclude=mask,
                              uncertainty=uncertainty)
    return [str(ids[i]) for i in picked]
