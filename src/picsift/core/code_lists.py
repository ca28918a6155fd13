"""Inverted lists over the score codes: what the ``ivf`` index (:mod:`picsift.index.ivf`) searches.

The score codes (:mod:`.codes`) already hold one byte per dimension of every stored vector, in store order, for the
histogram under every search. An inverted file over them puts every vector in the list of its nearest centroid
(cosine), and a search scans the codes of the few lists nearest its query, then hands the best to the exact
rescoring every search does. It adds 2 bytes per image (its list's number) and the centroids, where an HNSW graph
keeps its own copy of every vector and its links (qdrant-edge's: 914 B per image at 1M, bench/README.md).

File: ``lists-<generation>.u2`` beside ``codes-<generation>.i8``: the header (magic, version, dim, lists, rows the
centroids were fitted on), the centroids (``lists x dim`` float32), padded to 64 bytes, then one little-endian
uint16 per row of the vectors file: that row's list. It is built when an ``ivf`` index first reads a snapshot
(centroids by spherical k-means on a sample of the rows, :func:`fit_centroids`), and from then on the store writes
a batch's lists right after its codes. On every open the file is checked: a link or special file, a header of
another version or dimension, centroids that are not finite, any list number past the last list, a sampled row
not in its nearest list, or centroids fitted on fewer than an eighth of today's rows: it is rebuilt from the
vectors. A workspace that never uses the ``ivf`` index never gets the file.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..workspace_files import UnsafeWorkspaceFileError, WorkspaceFiles
from .codes import drop_unless_plain, read_rows, rebuilding, sampled

log = logging.getLogger(__name__)

MAGIC = b"PSLISTS1"
VERSION = 1
_FIXED = struct.Struct("<8sIIIQ")  # magic, version, dim, lists, rows fitted on
LISTS_FILE = re.compile(r"lists-[0-9]{1,9}\.u2")
_BUILDING = re.compile(r"\.(lists-[0-9]{1,9}\.u2)\.[0-9a-f]{12}\.tmp")
#: List numbers are uint16.
MOST_LISTS = 65_535
#: Lists per square root of the rows (faiss's guide says 4-16): 4 while that is at most :data:`FEW_LISTS` lists (up to
#: 250,000 rows), then :data:`FEW_LISTS` until 2 per root is more (1M rows). At 100k, 4 per root found 0.98-0.99 of
#: the top 100 scanning the rows 2 per root scans at 0.96-0.97 (bench/ivf.py, bench/library_path.py); at 1M, 2 per
#: root measured best, and k-means costs lists squared (bench/build.py).
LISTS_PER_ROOT, SMALL_LISTS_PER_ROOT, FEW_LISTS = 2, 4, 2000
#: k-means: rounds, and sampled rows per list (as faiss trains IVF lists).
ROUNDS, PER_LIST = 10, 32
#: Refit (rebuild) once the rows are this many times those the centroids were fitted on.
REFIT_GROWTH = 8
#: Rows assigned at a time (a sample of the rows is checked on open: :func:`.codes.sampled`).
BLOCK = 65_536
#: A sampled row agrees when its list's centroid scores within this of its nearest one (sums in another order).
TIE = 1e-4

VectorsOf = Callable[[np.ndarray], np.ndarray]  # rows of the vectors file -> their float32 unit vectors


def lists_name(vectors_file: str) -> str:
    """``vectors-3.f16`` -> ``lists-3.u2``."""
    return f"lists-{vectors_file.split('-', 1)[1].split('.', 1)[0]}.u2"


def is_lists_file(name: str) -> bool:
    """Whether ``name`` is a lists file, or one a killed rebuild left."""
    return bool(LISTS_FILE.fullmatch(name) or _BUILDING.fullmatch(name))


def lists_for(rows: int) -> int:
    """How many lists ``rows`` vectors are split into: ``4 sqrt(rows)`` up to 2,000 lists, ``2 sqrt(rows)`` from 1M
    rows (:data:`LISTS_PER_ROOT`), at least 1, at most :data:`MOST_LISTS`."""
    root = math.sqrt(max(rows, 1))
    wanted = max(LISTS_PER_ROOT * root, min(SMALL_LISTS_PER_ROOT * root, FEW_LISTS))
    return int(min(MOST_LISTS, max(1, round(wanted))))


def _header_size(dim: int, lists: int) -> int:
    return -(-(_FIXED.size + 4 * dim * lists) // 64) * 64


def nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The list (uint16) of each float32 unit vector: its centroid of largest inner product, by torch's matrix product
    (both cores)."""
    import torch

    out = np.empty(len(vectors), np.uint16)
    if not len(vectors):
        return out
    right = torch.from_numpy(np.ascontiguousarray(centroids, np.float32)).T
    with torch.inference_mode():
        for start in range(0, len(vectors), 8192):
            left = torch.from_numpy(np.ascontiguousarray(vectors[start : start + 8192], np.float32))
            out[start : start + len(left)] = (left @ right).argmax(dim=1).numpy()
    return out


def fit_centroids(sample: np.ndarray, lists: int, rounds: int = ROUNDS, seed: int = 0) -> np.ndarray:
    """``lists`` unit centroids of the float32 unit vectors ``sample`` by spherical k-means (Lloyd's rounds, each
    centroid the normalised mean of its vectors; an empty list takes a vector its centroid fits worst).

    Written here rather than taken from scikit-learn (picsift's ``app`` extra) or faiss (not a dependency): the
    base install has neither, and these few rounds over a sample are what faiss's own IVF training does."""
    import torch

    sample = np.ascontiguousarray(sample[np.isfinite(sample).all(axis=1)], np.float32)
    dim = sample.shape[1]
    lists = min(lists, len(sample))
    if lists < 1:
        return np.eye(1, dim, dtype=np.float32)
    rng = np.random.default_rng(seed)
    points = torch.from_numpy(sample)
    centroids = points[torch.from_numpy(np.sort(rng.choice(len(sample), lists, replace=False)))].clone()
    with torch.inference_mode():
        for _ in range(rounds):
            scores = points @ centroids.T
            best, labels = scores.max(dim=1)
            sums = torch.zeros_like(centroids).index_add_(0, labels, points)
            counts = torch.bincount(labels, minlength=lists)
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):  # each empty list restarts at a vector its centroid fits worst
                sums[empty] = points[torch.argsort(best)[: len(empty)]]
            centroids = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return centroids.numpy().astype(np.float32)


@dataclass(frozen=True)
class CodeLists:
    """The centroids and each row's list, over rows ``[0, rows)`` of a vectors file (a read-only memory map)."""

    centroids: np.ndarray  # (lists, dim) float32 unit
    of_row: np.ndarray  # (rows,) uint16, each < lists
    fitted_rows: int

    @property
    def count(self) -> int:
        return len(self.centroids)

    def grouped(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` (a snapshot's live rows) grouped by list: the positions in ``rows`` ordered by list (store order
        within one) and where each list starts in them (``count + 1`` offsets)."""
        lists = np.asarray(self.of_row)[rows]
        order = np.argsort(lists, kind="stable")
        offsets = np.zeros(self.count + 1, np.int64)
        np.cumsum(np.bincount(lists, minlength=self.count), out=offsets[1:])
        return order, offsets


class ListsFile:
    """Reads, checks, builds and appends to the lists file of one vectors file, through the workspace's files."""

    def __init__(self, files: WorkspaceFiles, folder: Path, vectors_file: str, dim: int):
        self.files, self.folder, self.dim = files, folder, dim
        self.path = folder / lists_name(vectors_file)

    def _header(self) -> tuple[np.ndarray, int, int] | None:
        """``(centroids, fitted rows, header bytes)``, or None when the file is missing or its header is not one of
        this version and dimension with finite centroids."""
        if self.files.lstat(self.path) is None:
            return None
        f, info = self.files.open_read(self.path)
        with f:
            fixed = f.read(_FIXED.size)
            if len(fixed) < _FIXED.size or fixed[:8] != MAGIC:
                log.info("%s: no lists header", self.path)
                return None
            _, version, dim, lists, fitted = _FIXED.unpack(fixed)
            if version != VERSION or dim != self.dim or not 1 <= lists <= MOST_LISTS:
                log.info("%s: a lists header of version %d for %d dimensions and %d lists", self.path, version, dim,
                         lists)
                return None
            size = _header_size(dim, lists)
            if info.st_size < size:
                return None
            centroids = np.frombuffer(f.read(4 * dim * lists), "<f4").astype(np.float32).reshape(lists, dim)
        if not np.isfinite(centroids).all():
            return None
        return centroids, int(fitted), size

    def _covered(self, size: int) -> int:
        info = self.files.lstat(self.path)
        return 0 if info is None else max(0, int((info.st_size - size) // 2))

    def append(self, first_row: int, vectors: np.ndarray) -> None:
        """Write the lists of float32 unit ``vectors`` at rows ``first_row...``, if the file exists and holds every
        row before them (else the next ``ivf`` search builds or extends it)."""
        header = self._header()
        if header is None or self._covered(header[2]) < first_row:
            return
        self._write(header[2], first_row, nearest(vectors, header[0]))

    def _write(self, size: int, first_row: int, lists: np.ndarray) -> None:
        with self.files.open_update(self.path) as f:
            f.seek(size + 2 * first_row)
            f.write(lists.astype("<u2").tobytes())
            f.flush()
            os.fsync(f.fileno())

    def open(self, next_row: int, live_rows: np.ndarray, vectors_of: VectorsOf) -> CodeLists | None:
        """The lists of rows ``[0, next_row)``, built, extended or rebuilt first when needed; None when the workspace
        cannot be written (the ``ivf`` index then searches the store exactly)."""
        try:
            drop_unless_plain(self.files, self.path)
            header = self._header()
            if header is None or len(live_rows) >= REFIT_GROWTH * max(1, header[1]):
                header = self._rebuild(next_row, live_rows, vectors_of)
            else:
                covered = min(self._covered(header[2]), next_row)
                if covered and not self._agrees(header, covered, live_rows, vectors_of):
                    log.warning("%s does not match the vectors: building it again", self.path)
                    header = self._rebuild(next_row, live_rows, vectors_of)
                elif covered < next_row:
                    self._extend(header, covered, next_row, vectors_of)
            lists = self._map(header, next_row)
            if lists is None:
                log.warning("%s names a list past its last: building it again", self.path)
                lists = self._map(self._rebuild(next_row, live_rows, vectors_of), next_row)
            return lists
        except (OSError, UnsafeWorkspaceFileError, ValueError) as e:
            log.warning("no inverted lists for %s (%s): ivf searches scan the store exactly", self.folder, e)
            return None

    def _map(self, header: tuple[np.ndarray, int, int], next_row: int) -> CodeLists | None:
        """The file's lists over a memory map; None when a list number is past the last list."""
        centroids, fitted, size = header
        f, info = self.files.open_read(self.path)
        with f:
            if info.st_size < size + 2 * next_row:
                raise ValueError(f"{self.path} holds {info.st_size} bytes where {next_row} rows need more")
            of_row = np.memmap(f, dtype="<u2", mode="r", offset=size, shape=(next_row,)) if next_row \
                else np.zeros(0, np.uint16)
        if next_row and int(of_row.max()) >= len(centroids):  # 2 MB read at 1M rows: no list number goes astray
            return None
        return CodeLists(centroids, of_row, fitted)

    def _agrees(self, header: tuple[np.ndarray, int, int], rows: int, live_rows: np.ndarray,
                vectors_of: VectorsOf) -> bool:
        """Whether a sample of the live rows below ``rows`` (and the last of them) are in their nearest list."""
        centroids, _, size = header
        picked = sampled(live_rows, rows)
        if not len(picked):
            return True
        stored = read_rows(self.files, self.path, np.dtype("<u2"), size, (rows,), picked).astype(int)
        if stored.max() >= len(centroids):
            return False
        scores = vectors_of(picked) @ centroids.T
        return bool((scores[np.arange(len(picked)), stored] >= scores.max(axis=1) - TIE).all())

    def _extend(self, header: tuple[np.ndarray, int, int], start: int, stop: int, vectors_of: VectorsOf) -> None:
        with tqdm(total=stop - start, desc="inverted lists", unit="img", disable=stop - start < 4 * BLOCK) as bar:
            for first in range(start, stop, BLOCK):
                rows = np.arange(first, min(first + BLOCK, stop))
                self._write(header[2], first, nearest(vectors_of(rows), header[0]))
                bar.update(len(rows))

    def _rebuild(self, next_row: int, live_rows: np.ndarray, vectors_of: VectorsOf) -> tuple[np.ndarray, int, int]:
        """Centroids fitted on a sample of the live rows and every row's list, in a new file renamed over the old."""
        lists = lists_for(len(live_rows))
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(live_rows, min(len(live_rows), PER_LIST * lists), replace=False)) \
            if len(live_rows) else live_rows
        centroids = fit_centroids(vectors_of(sample), lists) if len(sample) \
            else np.eye(1, self.dim, dtype=np.float32)
        size = _header_size(self.dim, len(centroids))
        head = _FIXED.pack(MAGIC, VERSION, self.dim, len(centroids), len(live_rows)) + centroids.astype("<f4").tobytes()
        header = (centroids, len(live_rows), size)
        with rebuilding(self):
            with self.files.open_update(self.path) as f:
                f.write(head + bytes(size - len(head)))
            self._extend(header, 0, next_row, vectors_of)
        return header


__all__ = ["CodeLists", "ListsFile", "fit_centroids", "is_lists_file", "lists_for", "lists_name", "nearest"]
