"""One byte per dimension of every stored vector: what the score distribution under a search is scanned from.

A search shows every image's score (its histogram) but only its top results need exact scores. The float16
store costs 2 bytes per dimension to scan; these codes cost one, so a full scan reads half the memory. How a
row is coded, and why every score from the codes is within :attr:`StoreCodes.error` of the exact one, is
:mod:`picsift.core.codes_format`; the scan is :mod:`picsift.core.codes_kernel` (int8 codes x int16 query, summed in
int32). Flagged rows (unlike the rows the header was fitted on) are scored exactly at every scan. Searches rescore
exactly every image that could be selected (:func:`picsift.query.search.exact_top`), so results and their scores
stay exact; only the scores of images no result can reach come from the codes, and of those, the ones close to
an edge of the histogram's bins are rescored too (:func:`near_edges`, :func:`exact_float16`), so its counts stay
within :data:`TARGET_PER_10K` per 10,000 of the exact ones'.

File: ``codes-<generation>.i8`` beside ``vectors-<generation>.f16``: the header (:class:`~.codes_format.Header`),
then row ``i`` holding the ``dim`` codes of the vectors file's row ``i``. It is built from the vectors when a
snapshot of at least ``CODES_FROM`` images is first read, its header fitted on a sample of them, and from then on
the store writes a batch's codes right after its vectors, before the catalog commits their rows. A file that is
missing, of an earlier version (per-row scales, no header), shorter than the rows committed, whose sampled rows
disagree with the vectors (stale, damaged), or fitted on fewer than an eighth of today's rows is repaired or
rebuilt from the vectors; a workspace that cannot be written is scanned from the vectors instead.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from ..workspace_files import UnsafeWorkspaceFileError, WorkspaceFiles
from .codes_format import Header, encode, fit, header_size, query_max

log = logging.getLogger(__name__)

CODES_FILE = re.compile(r"codes-[0-9]{1,9}\.i8")
_BUILDING = re.compile(r"\.(codes-[0-9]{1,9}\.i8)\.[0-9a-f]{12}\.tmp")  # a rebuild's file before its rename
#: Rows checked against the vectors when a snapshot opens the file.
SAMPLE = 48
#: Rows the header is fitted on (spread evenly over the live rows).
FIT_ROWS = 65_536
#: Refit (rebuild) once the rows are this many times those the header was fitted on, if that was fewer than FIT_ROWS.
REFIT_GROWTH = 8
#: Rows encoded at a time when the file is built.
BLOCK = 65_536
#: A histogram's bins from the codes are kept within this many counts per 10,000 images of the exact histogram's
#: (:func:`near_edges` picks the scores to rescore exactly; bench/README.md, Limits, measures it).
TARGET_PER_10K = 1.0
_SIGMAS = 4.0  # how many standard deviations of a bin's count error :func:`near_edges` keeps within the target
_REACHES = np.arange(0.0, 6.01, 0.05)  # the k (typical errors) near_edges chooses among
_CROSSINGS = np.array([2 * (np.exp(-k * k / 2) / np.sqrt(2 * np.pi) - k * 0.5 * math.erfc(k / np.sqrt(2)))
                       for k in _REACHES])  # E[(|Z| - k)+] for a normal Z, decreasing
#: Bytes of flagged rows' float32 vectors a :class:`StoreCodes` keeps between scans (else read at every scan).
FLAGGED_CACHE = 64 << 20

VectorsOf = Callable[[np.ndarray], np.ndarray]  # rows of the vectors file -> their float32 unit vectors


def codes_name(vectors_file: str) -> str:
    """``vectors-3.f16`` -> ``codes-3.i8``."""
    return f"codes-{vectors_file.split('-', 1)[1].split('.', 1)[0]}.i8"


def is_codes_file(name: str) -> bool:
    """Whether ``name`` is a codes file, or one a killed rebuild left."""
    return bool(CODES_FILE.fullmatch(name) or _BUILDING.fullmatch(name))


class StoreCodes:
    """The codes of a vectors file's rows ``[0, rows)``, over a read-only memory map of their file."""

    def __init__(self, codes: np.ndarray, header: Header, vectors_of: VectorsOf):
        self.codes, self.header, self.vectors_of = codes, header, vectors_of  # codes: (rows, dim) int8
        self._flagged: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None

    @property
    def dim(self) -> int:
        return self.header.dim

    @property
    def error(self) -> float:
        """How far a score from :meth:`scan` may be from the exact one, for a unit query."""
        return self.header.error

    def _flagged_of(self, rows: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Positions in ``rows`` of flagged rows (NaN in a scanned ``column``) and their vectors, found once for the
        rows a snapshot scans again and again (the vectors kept when they take at most :data:`FLAGGED_CACHE`)."""
        cached = self._flagged
        if cached is None or cached[0] is not rows:
            positions = np.flatnonzero(np.isnan(column))
            vectors = self.vectors_of(np.asarray(rows)[positions]) \
                if len(positions) * self.dim * 4 <= FLAGGED_CACHE else None
            cached = self._flagged = (rows, positions, vectors)
        return cached[1], cached[2]

    def typical_error(self, query: np.ndarray) -> float:
        """The standard deviation of a score's error from the codes for a unit ``query`` (each code's rounding is
        uniform over one step: ``sqrt(sum((query * scale)^2) / 12)``); :attr:`error` bounds it."""
        weighted = np.asarray(query, np.float64).reshape(-1) * self.header.scale
        return float(np.sqrt((weighted**2).sum() / 12))

    def coded(self, query: np.ndarray) -> tuple[np.ndarray, float, float]:
        """A unit ``query`` as :func:`~.codes_kernel.scan_codes` takes it: int16 weights, the step that scales their
        sum back and the offset the centre adds (``score = step * (codes . weights) + offset``)."""
        weighted = np.asarray(query, np.float32).reshape(-1) * self.header.scale
        peak = float(np.abs(weighted).max()) if self.dim else 0.0
        step = peak / query_max(self.dim) if peak > 0 else 1.0
        offset = float(query.astype(np.float64) @ self.header.centre.astype(np.float64))
        return np.rint(weighted / step).astype(np.int16), step, offset

    def scan(self, queries: np.ndarray, rows: np.ndarray, *, serial: bool = False) -> np.ndarray:
        """Scores of the vectors in ``rows`` with each unit query: ``(len(rows), len(queries))`` float32; ``serial``
        scans on the calling thread (a few thousand rows)."""
        from .codes_kernel import LOCK, SCAN_AHEAD, scan_codes, scan_codes_serial

        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        given = rows
        rows = rows if rows.dtype == np.int64 and rows.flags.c_contiguous else np.ascontiguousarray(rows, np.int64)
        out = np.empty((len(rows), len(queries)), np.float32)
        ahead = SCAN_AHEAD if len(rows) < len(self.codes) // 2 else 0  # a scope's rows lie apart: ask for them early
        for j, query in enumerate(queries):
            weights, step, offset = self.coded(query)
            if serial:
                scan_codes_serial(self.codes, weights, rows, step, offset, out[:, j], ahead)
                continue
            with LOCK:
                scan_codes(self.codes, weights, rows, step, offset, out[:, j], ahead)
        if serial:  # a search's lists: other rows at every call, so none of the flagged rows' vectors are kept
            flagged, vectors = np.flatnonzero(np.isnan(out[:, 0])), None
        else:
            flagged, vectors = self._flagged_of(given, out[:, 0])
        if len(flagged):
            # einsum's own loops, not BLAS: BLAS's threads spin for milliseconds after a call, on the core the numba
            # kernels that follow need (2x their time on two cores; bench/README.md, Limits)
            out[flagged] = np.einsum("ij,kj->ik", self.vectors_of(rows[flagged]) if vectors is None else vectors,
                                     queries)
        return out


def near_edges(scores: np.ndarray, bins: int, typical: float, per_10k: float | None = None) -> np.ndarray:
    """Whether each score should be rescored exactly so that a histogram of ``bins`` equal bins over the scores'
    range (as ``np.histogram(scores, bins)`` bins them) stays within ``per_10k`` (default :data:`TARGET_PER_10K`)
    counts per 10,000 of the exact
    scores' histogram, each score being off by a random error of standard deviation ``typical``.

    Scores within ``k * typical`` of an edge are rescored, ``k`` chosen per edge: the scores left cross it about
    ``density * typical * g(k)`` times (``density`` from the two bins beside it, ``g(k) = E[(|Z| - k)+]`` for a
    normal ``Z``), and a bin's count moves by about the square root of its two edges' crossings; ``k`` is the
    smallest of :data:`_REACHES` that keeps :data:`_SIGMAS` such deviations within the allowed count. Edges in
    the sparse tails and large stores need little; at the peak of a small store, many typical errors."""
    from .codes_kernel import LOCK
    from .codes_kernel import near_edges as kernel

    mask = np.zeros(len(scores), np.bool_)
    edges = _edge_reach(scores, bins, typical, per_10k)
    if edges is not None:
        with LOCK:
            kernel(*edges, mask)
    return mask


def near_edge_rows(scores: np.ndarray, bins: int, typical: float, skip: np.ndarray | None = None,
                   per_10k: float | None = None, span: tuple[float, float] | None = None) -> np.ndarray:
    """Positions (ascending) of the scores :func:`near_edges` picks, but those in ``skip`` (positions, e.g. scores
    already exact), found in one parallel pass without the mask (1 ms less than the mask and its ``flatnonzero``
    at 1M scores). ``span``: the scores' lowest and highest when the caller knows them (two passes fewer)."""
    from .codes_kernel import LOCK, edge_rows

    edges = _edge_reach(scores, bins, typical, per_10k, span)
    if edges is None:
        return np.zeros(0, np.int64)
    skipped = np.zeros(len(scores), np.bool_)
    if skip is not None:
        skipped[skip] = True
    with LOCK:
        return edge_rows(*edges, skipped)


def _edge_reach(scores: np.ndarray, bins: int, typical: float, per_10k: float | None,
                span: tuple[float, float] | None = None) -> tuple[np.ndarray, float, float, np.ndarray] | None:
    """``(scores, low, width, reach)`` of :func:`near_edges`' rule (float32 scores, the bins' first edge and width,
    how far from each edge a score is rescored); None when nothing is (one score, all equal, no error)."""
    from .codes_kernel import LOCK, bin_counts

    if span is not None:
        low, high = span
    else:
        low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 0.0)
    if not high > low or not typical > 0:
        return None
    scores = np.ascontiguousarray(scores, np.float32)
    width = (high - low) / bins
    with LOCK:
        counts = bin_counts(scores, low, width, bins).astype(np.float64)
    beside = np.concatenate([[0.0], counts[:-1] + counts[1:], [0.0]])  # rows in the two bins around each edge
    crossings = beside / (2 * width) * typical  # per unit of g(k)
    per_10k = TARGET_PER_10K if per_10k is None else per_10k
    allowed = (per_10k * len(scores) / 10_000 / _SIGMAS) ** 2 / 2  # crossings an edge may leave
    needed = np.searchsorted(-_CROSSINGS, -(allowed / np.maximum(crossings, 1e-300)))
    return scores, low, width, _REACHES[np.minimum(needed, len(_REACHES) - 1)] * typical


def exact_float16(matrix: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact float32 scores of the float16 rows ``rows`` of ``matrix`` (unit length again, as
    :meth:`~picsift.core.store.StoreSnapshot.vectors` gives them) with one unit ``query``, within the store's
    ``sum_error`` of :meth:`~picsift.core.store.StoreSnapshot.exact`'s (another order of sums), read straight from
    the memory map: about 5x less CPU than gathering and converting the rows first."""
    from .codes_kernel import LOCK, float16_dots

    rows = np.ascontiguousarray(rows, np.int64)
    out = np.empty(len(rows), np.float32)
    if len(rows):
        with LOCK:
            float16_dots(np.asarray(matrix).view(np.uint16), rows, np.ascontiguousarray(query, np.float64), out)
    return out


class CodesFile:
    """Reads, checks, repairs and appends to the codes file of one vectors file, through the workspace's files."""

    def __init__(self, files: WorkspaceFiles, folder: Path, vectors_file: str, dim: int):
        self.files, self.folder, self.dim = files, folder, dim
        self.path = folder / codes_name(vectors_file)

    def _header(self) -> Header | None:
        """The file's header, or None when it is missing or not a header of this version and dimension."""
        if self.files.lstat(self.path) is None:
            return None
        f, _ = self.files.open_read(self.path)
        with f:
            data = f.read(header_size(self.dim))
        try:
            return Header.from_bytes(data, self.dim)
        except ValueError as e:
            log.info("%s: %s", self.path, e)
            return None

    def _covered(self, header: Header) -> int:
        info = self.files.lstat(self.path)
        return 0 if info is None else max(0, int((info.st_size - header.size) // max(1, self.dim)))

    def append(self, first_row: int, vectors: np.ndarray) -> None:
        """Write the codes of ``vectors`` at rows ``first_row...``, if the file exists and holds every row before
        them (else the next snapshot builds or repairs it from the vectors)."""
        header = self._header()
        if header is None or self._covered(header) < first_row:
            return
        for start in range(0, len(vectors), BLOCK):
            self._write(header, first_row + start, encode(vectors[start : start + BLOCK], header))

    def _write(self, header: Header, first_row: int, block: np.ndarray) -> None:
        with self.files.open_update(self.path) as f:
            f.seek(header.size + first_row * self.dim)
            f.write(block.tobytes())
            f.flush()
            os.fsync(f.fileno())

    def open(self, next_row: int, live_rows: np.ndarray, vectors_of: VectorsOf) -> StoreCodes | None:
        """The codes of rows ``[0, next_row)``, built, repaired or rebuilt first when needed; None when the
        workspace cannot be written (searches then scan the vectors)."""
        try:
            drop_unless_plain(self.files, self.path)
            header = self._header()
            covered = 0 if header is None else self._covered(header)
            if header is None or (header.fitted_rows < FIT_ROWS
                                  and len(live_rows) >= REFIT_GROWTH * max(1, header.fitted_rows)):
                header = self._rebuild(next_row, live_rows, vectors_of)
            elif covered and not self._agrees(header, min(covered, next_row), live_rows, vectors_of):
                log.warning("%s does not match the vectors: building it again", self.path)
                header = self._rebuild(next_row, live_rows, vectors_of)
            elif covered < next_row:
                self._extend(header, covered, next_row, vectors_of)
            return self._map(header, next_row, vectors_of)
        except (OSError, UnsafeWorkspaceFileError, ValueError) as e:
            log.warning("no score codes for %s (%s): searches scan the vectors", self.folder, e)
            return None

    def _map(self, header: Header, next_row: int, vectors_of: VectorsOf) -> StoreCodes:
        f, info = self.files.open_read(self.path)
        with f:
            if info.st_size < header.size + next_row * self.dim:
                raise ValueError(f"{self.path} holds {info.st_size} bytes where {next_row} rows need more")
            codes = np.memmap(f, dtype=np.int8, mode="r", offset=header.size, shape=(next_row, self.dim)) \
                if next_row and self.dim else np.zeros((next_row, self.dim), np.int8)
        return StoreCodes(codes, header, vectors_of)

    def _agrees(self, header: Header, rows: int, live_rows: np.ndarray, vectors_of: VectorsOf) -> bool:
        """Whether a sample of the live rows below ``rows`` (and the last of them) hold the codes of their vectors."""
        picked = sampled(live_rows, rows)
        if not len(picked):
            return True
        stored = read_rows(self.files, self.path, np.dtype(np.int8), header.size, (rows, self.dim), picked)
        return bool(np.array_equal(stored, encode(vectors_of(picked), header)))

    def _extend(self, header: Header, start: int, stop: int, vectors_of: VectorsOf) -> None:
        with tqdm(total=stop - start, desc="score codes", unit="img", disable=stop - start < 4 * BLOCK) as bar:
            for first in range(start, stop, BLOCK):
                rows = np.arange(first, min(first + BLOCK, stop))
                self._write(header, first, encode(vectors_of(rows), header))
                bar.update(len(rows))

    def _rebuild(self, next_row: int, live_rows: np.ndarray, vectors_of: VectorsOf) -> Header:
        """A header fitted on the live rows and every row's codes, in a new file renamed over the old one."""
        sample = live_rows[np.unique(np.linspace(0, len(live_rows) - 1, min(FIT_ROWS, len(live_rows))).astype(int))] \
            if len(live_rows) else live_rows
        header = fit(vectors_of(np.sort(sample)) if len(sample) else np.zeros((0, self.dim), np.float32),
                     len(live_rows))
        with rebuilding(self):
            with self.files.open_update(self.path) as f:
                f.write(header.to_bytes())
            self._extend(header, 0, next_row, vectors_of)
        return header


def drop_unless_plain(files: WorkspaceFiles, path: Path) -> None:
    """Remove ``path`` when it is a link or anything but a regular file with one link (the next open builds it again;
    nothing a link points to is touched)."""
    info = files.lstat(path)
    if info is not None and not (stat.S_ISREG(info.st_mode) and info.st_nlink == 1):
        log.warning("%s is not a plain file: building it again (nothing it points to is touched)", path)
        files.remove(path)  # a link itself, never its target


def sampled(live_rows: np.ndarray, rows: int) -> np.ndarray:
    """The live rows below ``rows`` a file's check reads: :data:`SAMPLE` spread evenly, and the last (ascending)."""
    held = live_rows[live_rows < rows]
    if not len(held):
        return held
    return np.unique(np.concatenate([held[np.linspace(0, len(held) - 1, min(SAMPLE, len(held))).astype(int)],
                                     [held.max()]]))


def read_rows(files: WorkspaceFiles, path: Path, dtype: np.dtype, offset: int, shape: tuple[int, ...],
              picked: np.ndarray) -> np.ndarray:
    """Rows ``picked`` of the array of ``shape`` stored at ``offset`` of the file ``path`` (read through ``files``)."""
    f, _ = files.open_read(path)
    with f:
        return np.asarray(np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape)[picked])


class Rebuilt(Protocol):
    """A file of the store's folder that :func:`rebuilding` writes anew (:class:`CodesFile`, its lists' file)."""

    files: WorkspaceFiles
    folder: Path
    path: Path


@contextmanager
def rebuilding(target: Rebuilt) -> Iterator[None]:
    """While the block writes ``target`` anew, its ``path`` names a hidden file beside it (``.<name>.<random>.tmp``),
    renamed over the old file when the block ends and removed when it fails: a reader never sees a half-built file,
    and two processes never write the same one."""
    final = target.path
    target.path = target.folder / f".{final.name}.{secrets.token_hex(6)}.tmp"
    try:
        target.files.remove(target.path)
        yield
        target.files.rename(target.path, final)
    except BaseException:
        target.files.remove(target.path)
        raise
    finally:
        target.path = final
