"""One byte per dimension of every stored vector: what the score distribution under a search is scanned from.

A search shows every image's score (its histogram) but only its top results need exact scores. The float16
store costs 2 bytes per dimension to scan; these codes cost one, so a full scan reads half the memory. Each
row ``x`` (as :meth:`~picsift.core.store.StoreSnapshot.vectors` gives it: float32, unit length) is kept as
``int8`` codes ``c = rint(x / s)`` with its own scale ``s = max|x| / 127`` (a row's scale depends on nothing
else, so appending rows never touches the others) and its residual ``r = ||x - s c||``. A query is rounded to
int16 the same way; the scan (:mod:`picsift.core.codes_kernel`) sums ``c . q`` in int32.

The codes' score of an image is within :attr:`StoreCodes.error` of the exact one, a bound and not an estimate:
``|q.x - s c.q'| <= ||q|| r + ||s c|| ||q - q'||`` (Cauchy-Schwarz). Searches rescore every image that could be
selected exactly from the store (:func:`picsift.query.search.exact_top`), so results and their scores stay
exact; only the scores of images no result can reach come from the codes. The bound is a worst case (about
20x the typical error), so the histogram is far closer than it: see bench/README.md.

File: ``codes-<generation>.i8`` beside ``vectors-<generation>.f16``, row ``i`` holding the codes of the vectors
file's row ``i`` (``dim`` int8 padded to 4 bytes, then scale and residual as float32). The store writes a batch's
codes right after its vectors, before the catalog commits their rows, so committed rows always have codes. A file
that is missing, shorter than the rows committed (written by a version without codes), or whose sampled rows
disagree with the vectors (stale, damaged) is repaired or rebuilt from the vectors when a snapshot is read; a
workspace that cannot be written is scanned from the vectors instead.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..workspace_files import UnsafeWorkspaceFileError, WorkspaceFiles

log = logging.getLogger(__name__)

CODES_FILE = re.compile(r"codes-[0-9]{1,9}\.i8")
_BUILDING = re.compile(r"\.(codes-[0-9]{1,9}\.i8)\.[0-9a-f]{12}\.tmp")  # a rebuild's file before its rename
#: Bytes after a row's codes: its scale and residual, float32.
TAIL = 8
#: Rows checked against the vectors when a snapshot opens the file.
SAMPLE = 48
#: Rows encoded at a time when the file is built.
BLOCK = 65_536
_KERNEL_LOCK = threading.Lock()  # numba's default thread pool (workqueue) must not be entered by two threads


def codes_name(vectors_file: str) -> str:
    """``vectors-3.f16`` -> ``codes-3.i8``."""
    return f"codes-{vectors_file.split('-', 1)[1].split('.', 1)[0]}.i8"


def is_codes_file(name: str) -> bool:
    """Whether ``name`` is a codes file, or one a killed rebuild left."""
    return bool(CODES_FILE.fullmatch(name) or _BUILDING.fullmatch(name))


def encode(vectors: np.ndarray) -> np.ndarray:
    """Rows of the codes file for float32 unit ``vectors``: ``(n, stride(dim))`` uint8."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    out = np.zeros((n, stride(dim)), np.uint8)
    pad = _padded(dim)
    peak = np.abs(vectors).max(axis=1) if dim else np.zeros(n, np.float32)
    scale = (peak / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    codes = np.clip(np.rint(vectors / safe[:, None]), -127, 127).astype(np.int8)
    decoded = codes.astype(np.float64) * scale[:, None].astype(np.float64)
    residual = np.sqrt(((vectors.astype(np.float64) - decoded) ** 2).sum(axis=1))
    # rounded up to float32, so the stored residual is never below the true one
    residual32 = residual.astype(np.float32)
    residual32 = np.where(residual32.astype(np.float64) < residual, np.nextafter(residual32, np.float32(np.inf)),
                          residual32).astype(np.float32)
    out[:, :dim] = codes.view(np.uint8)
    out[:, pad : pad + 4] = scale.view(np.uint8).reshape(n, 4)
    out[:, pad + 4 :] = residual32.view(np.uint8).reshape(n, 4)
    return out


def query_max(dim: int) -> int:
    """The largest int16 a query component is rounded to: ``127 * dim * query_max`` stays within int32."""
    return int(min(32767, (2**31 - 1) // (127 * max(1, dim))))


def stride(dim: int) -> int:
    """Bytes per row: the codes, padded to 4 bytes, then scale and residual."""
    return _padded(dim) + TAIL


def _padded(dim: int) -> int:
    return -(-dim // 4) * 4


class StoreCodes:
    """The codes of a vectors file's rows ``[0, rows)``, over a read-only memory map of their file."""

    def __init__(self, raw: np.ndarray, dim: int):
        self.raw, self.dim = raw, dim  # (rows, stride(dim)) uint8
        self._gathered: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def _floats(self) -> np.ndarray:
        return self.raw.view(np.float32)  # (rows, stride / 4): a row's scale and residual are its last two

    @functools.cached_property
    def _scales(self) -> np.ndarray:
        return np.ascontiguousarray(self._floats[:, _padded(self.dim) // 4], dtype=np.float32)

    def residuals(self) -> np.ndarray:
        return np.asarray(self._floats[:, _padded(self.dim) // 4 + 1], dtype=np.float32)

    def _scales_of(self, rows: np.ndarray) -> np.ndarray:
        """The scales of ``rows``, gathered once for the rows a snapshot scans again and again."""
        cached = self._gathered
        if cached is None or cached[0] is not rows:
            cached = self._gathered = (rows, self._scales[rows])
        return cached[1]

    @functools.cached_property
    def error(self) -> float:
        """How far a score from :meth:`scan` may be from the exact one, for a unit query (see the module)."""
        residuals = self.residuals()
        worst = float(residuals.max()) if len(residuals) else 0.0
        if not np.isfinite(worst):
            return float("inf")  # a damaged file: every score is rescored exactly
        query_rounding = np.sqrt(self.dim) / (2 * query_max(self.dim))  # ||q - q'|| for max|q| <= 1
        return (1 + 1e-6) * worst + (1 + worst) * query_rounding + 1e-6

    def scan(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scores of the vectors in ``rows`` with each unit query: ``(len(rows), len(queries))`` float32."""
        from .codes_kernel import dot_codes

        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        scales = self._scales_of(rows)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty((len(rows), len(queries)), np.float32)
        limit = query_max(self.dim)
        totals = np.empty(len(rows), np.int32)
        for j, query in enumerate(queries):
            peak = float(np.abs(query).max()) if self.dim else 0.0
            step = peak / limit if peak > 0 else 1.0
            with _KERNEL_LOCK:
                dot_codes(self.raw.view(np.int8), np.rint(query / step).astype(np.int16), rows, totals)
            column = totals.astype(np.float32)
            column *= scales
            column *= np.float32(step)
            out[:, j] = column
        return out


class CodesFile:
    """Reads, checks, repairs and appends to the codes file of one vectors file, through the workspace's files."""

    def __init__(self, files: WorkspaceFiles, folder: Path, vectors_file: str, dim: int):
        self.files, self.folder, self.dim = files, folder, dim
        self.path = folder / codes_name(vectors_file)
        self.stride = stride(dim)

    def covered(self) -> int:
        """Rows the file holds (0 when it is missing)."""
        info = self.files.lstat(self.path)
        return 0 if info is None else int(info.st_size // self.stride)

    def append(self, first_row: int, vectors: np.ndarray) -> None:
        """Write the codes of ``vectors`` at rows ``first_row...``, if the file holds every row before them (else
        it is left short, and the next snapshot repairs it from the vectors)."""
        if self.covered() < first_row:
            return
        for start in range(0, len(vectors), BLOCK):
            self._write(first_row + start, encode(vectors[start : start + BLOCK]))

    def _write(self, first_row: int, block: np.ndarray) -> None:
        with self.files.open_update(self.path) as f:
            f.seek(first_row * self.stride)
            f.write(block.tobytes())
            f.flush()
            os.fsync(f.fileno())

    def open(self, next_row: int, live_rows: np.ndarray,
             vectors_of: Callable[[np.ndarray], np.ndarray]) -> StoreCodes | None:
        """The codes of rows ``[0, next_row)``, repaired or rebuilt first when needed; None when the workspace
        cannot be written (searches then scan the vectors)."""
        try:
            info = self.files.lstat(self.path)
            if info is not None and not (stat.S_ISREG(info.st_mode) and info.st_nlink == 1):
                log.warning("%s is not a plain file: building it again (nothing it points to is touched)", self.path)
                self.files.remove(self.path)  # a link itself, never its target
            covered = self.covered()
            if covered and not self._agrees(min(covered, next_row), live_rows, vectors_of):
                log.warning("%s does not match the vectors: building it again", self.path)
                self._rebuild(next_row, vectors_of)
            elif covered < next_row:
                self._extend(covered, next_row, vectors_of)
            return self._map(next_row)
        except (OSError, UnsafeWorkspaceFileError, ValueError) as e:
            log.warning("no score codes for %s (%s): searches scan the vectors", self.folder, e)
            return None

    def _map(self, next_row: int) -> StoreCodes:
        f, info = self.files.open_read(self.path)
        with f:
            if info.st_size < next_row * self.stride:
                raise ValueError(f"{self.path} holds {info.st_size} bytes where {next_row} rows need more")
            raw = np.memmap(f, dtype=np.uint8, mode="r", shape=(next_row, self.stride)) if next_row else \
                np.zeros((0, self.stride), np.uint8)
        return StoreCodes(raw, self.dim)

    def _agrees(self, rows: int, live_rows: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray]) -> bool:
        """Whether a sample of the live rows below ``rows`` (and the last of them) hold the codes of their vectors."""
        held = live_rows[live_rows < rows]
        if not len(held):
            return True
        picked = np.unique(np.concatenate([held[np.linspace(0, len(held) - 1, min(SAMPLE, len(held))).astype(int)],
                                           [held.max()]]))
        f, _ = self.files.open_read(self.path)
        with f:
            raw = np.memmap(f, dtype=np.uint8, mode="r", shape=(rows, self.stride))
            stored = np.asarray(raw[picked])
        return bool(np.array_equal(stored, encode(vectors_of(picked))))

    def _extend(self, start: int, stop: int, vectors_of: Callable[[np.ndarray], np.ndarray]) -> None:
        with tqdm(total=stop - start, desc="score codes", unit="img", disable=stop - start < 4 * BLOCK) as bar:
            for first in range(start, stop, BLOCK):
                rows = np.arange(first, min(first + BLOCK, stop))
                self._write(first, encode(vectors_of(rows)))
                bar.update(len(rows))

    def _rebuild(self, next_row: int, vectors_of: Callable[[np.ndarray], np.ndarray]) -> None:
        """A new file under a temporary name, renamed over the old one in one step."""
        final = self.path
        self.path = self.folder / f".{final.name}.{secrets.token_hex(6)}.tmp"
        try:
            self.files.remove(self.path)
            self._extend(0, next_row, vectors_of)
            self.files.rename(self.path, final)
        except BaseException:
            self.files.remove(self.path)
            raise
        finally:
            self.path = final
