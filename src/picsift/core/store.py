"""The embedding store: the source of truth for vectors, one store per model.

Vectors live in a flat file (``vectors-<generation>.f16``, or ``.f32`` in workspaces written before
float16 became the default) in the model's folder, rows allocated by the catalog's ``models.next_row``;
which image owns which row is a catalog table. float16 halves the bytes (1 KB per 512-d image) and
the memory a full scan reads; unit vectors lose nothing a search can see in it (each component keeps
11 significant bits; a cosine moves by ~1e-5). A float32 store is read as it is and rewritten as
float16 by the next update that writes vectors.
Writing is two-phase: vectors go to the file first (flushed and fsynced), then one catalog
transaction records their rows together with the files they came from. A process killed between
the two leaves only unreferenced bytes past ``next_row``, which the next write overwrites.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelMismatchError
from ..workspace_files import VECTORS_FILE, UnsafeWorkspaceFileError, WorkspaceFiles, checked_name
from .catalog import Catalog
from .catalog.embeddings import EmbeddingTables
from .code_lists import CodeLists, ListsFile, is_lists_file, lists_name
from .codes import CodesFile, StoreCodes, codes_name, is_codes_file
from .id_index import IdIndex

log = logging.getLogger(__name__)

#: Rewrite the vectors file when fewer than this fraction of its rows are still in use.
COMPACT_BELOW = 0.75
#: Element type of a vectors file, by its suffix.
PRECISIONS: dict[str, tuple[str, type[np.floating]]] = {"float16": ("f16", np.float16), "float32": ("f32", np.float32)}
#: Precision of new vectors files.
DEFAULT_PRECISION = "float16"
#: Bound on how far a float16 scan's score is from the exact one, for unit vectors: the query rounded to
#: float16 (relative error <= 2^-11 per component: <= 2^-11 in all), the stored vector's norm (rounding moved
#: it by <= 2^-11; exact scores divide by it), the score rounded to float16 (<= 2^-11 below 1.0) and float32
#: accumulation over a few thousand terms.
FLOAT16_SCAN_ERROR = 3 * 2.0**-11 + 2.0**-14


#: Up to this many rows, a float16 scan converts them to float32; above, torch's float16 mat-vec is faster (10k
#: rows: 1.6 ms on one thread vs 8-13 ms converting; on a busy machine, waking its second thread can add
#: milliseconds to a call).
SMALL_SCAN = 2048

#: From this many rows on, a search's score distribution is scanned from the one-byte codes (:mod:`.codes`);
#: below, the float16 scan is as quick and its error bound 5x tighter (fewer rows rescored exactly).
CODES_FROM = 50_000


def file_dtype(name: str) -> type[np.floating]:
    """The element type of the vectors file ``name`` (``vectors-3.f16``), from its suffix."""
    suffix = name.rsplit(".", 1)[-1]
    for tag, dtype in PRECISIONS.values():
        if suffix == tag:
            return dtype
    valid = ", ".join(tag for tag, _ in PRECISIONS.values())
    raise ValueError(f"vectors file {name!r} has an unknown suffix; valid: {valid}")


@dataclass
class StoreSnapshot:
    """Live ids and their rows, and the matrix they index into (a read-only memory map)."""

    ids: np.ndarray  # (n,) str
    rows: np.ndarray  # (n,) int64
    matrix: np.ndarray  # (next_row, dim) float16 or float32 memory map; rows not in ``rows`` are unused
    version: int
    codes: StoreCodes | None = field(default=None, repr=False)  # one byte per dimension of each row, if kept
    open_lists: Callable[[], CodeLists | None] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Image id -> position in :attr:`ids` (built once per snapshot)."""
        return {image_id: i for i, image_id in enumerate(self.ids.tolist())}

    @functools.cached_property
    def lists(self) -> CodeLists | None:
        """The inverted lists over :attr:`codes` (:mod:`.code_lists`), built on first use: what the ``ivf`` index
        searches; None without codes (fewer than ``CODES_FROM`` images) or a workspace that cannot be written."""
        return self.open_lists() if self.codes is not None and self.open_lists is not None else None

    @functools.cached_property
    def id_index(self) -> IdIndex:
        """Finds many ids at once (built once per snapshot): see :meth:`positions_of`."""
        return IdIndex(self.ids)

    def positions_of(self, ids: np.ndarray) -> np.ndarray:
        """Positions in :attr:`ids` of those of ``ids`` this snapshot holds: ascending (store order), each once.

        Ids it does not hold are left out.
        """
        return self.id_index.positions(ids)

    @property
    def sum_error(self) -> float:
        """How far two float32 sums of one inner product, in different orders, may be apart (BLAS orders its
        sums by where a row sits in the matrix): ``dim`` float32 roundings of terms whose magnitudes add to <= 1."""
        return self.dim * 2.0**-24

    @property
    def scan_error(self) -> float:
        """How far a score from :meth:`scan` may be from the exact one (0 for a float32 store)."""
        return FLOAT16_SCAN_ERROR if self.matrix.dtype == np.float16 else 0.0

    def coarse_scan(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Like :meth:`scan`, from the one-byte codes when many rows are scanned: within :meth:`coarse_error`."""
        rows = self.rows if rows is None else rows
        if self.codes is not None and len(rows) >= CODES_FROM:
            return self.codes.scan(queries, rows)
        return self.scan(queries, rows)

    def coarse_error(self, count: int) -> float:
        """How far a score from :meth:`coarse_scan` over ``count`` rows may be from the exact one."""
        return self.codes.error if self.codes is not None and count >= CODES_FROM else self.scan_error

    def coarse_typical_error(self, query: np.ndarray, scores: np.ndarray) -> float:
        """The standard deviation of a score's error in ``scores``, a :meth:`coarse_scan` with one unit ``query``:
        the codes' (each code's rounding), else the float16 scan's (torch rounds each score to float16: uniform over
        one float16 step at the largest magnitude)."""
        if self.codes is not None and len(scores) >= CODES_FROM:
            return self.codes.typical_error(query)
        largest = float(np.abs(scores).max()) if len(scores) else 0.0
        return float(np.spacing(np.float16(max(largest, 2.0**-14)))) / np.sqrt(12)

    def vectors(self, positions: np.ndarray | None = None) -> np.ndarray:
        """float32 vectors at these positions (all when None).

        A float16 store holds the directions of unit vectors (embeddings are L2-normalised): its
        vectors come back at unit length again (rounding moved each norm by up to 2^-11), so an
        image's similarity to itself is 1 and every score is a cosine.
        """
        rows = self.rows if positions is None else self.rows[positions]
        return _float32_rows(self.matrix, rows)

    def scan(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Inner products of the vectors in ``rows`` (default: every live one) with each query.

        ``(len(rows), len(queries))`` float32, each within :attr:`scan_error` of the exact score.
        The whole matrix is streamed once and the rows picked afterwards (gathering rows first
        would copy them), unless ``rows`` is a small part of it. A float16 store is scanned by
        torch's float16 kernels, which read half the bytes of a float32 scan.
        """
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        rows = self.rows if rows is None else rows
        if not len(rows) or not len(queries):
            return np.zeros((len(rows), len(queries)), np.float32)
        gather = len(rows) < 0.3 * self.matrix.shape[0]
        if self.matrix.dtype == np.float16 and (len(rows) if gather else len(self.matrix)) <= SMALL_SCAN:
            # a few rows: converting them costs less than a call to torch's float16 kernel
            return _float32_rows(self.matrix, rows) @ queries.T
        matrix = np.asarray(self.matrix).take(rows, axis=0) if gather else self.matrix
        if matrix.dtype != np.float16:
            scores = np.asarray(matrix @ queries.T, dtype=np.float32)
        else:
            scores = _scan_float16(matrix, queries)
        return scores if gather else scores[rows]

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Exact float32 inner products of every live vector with each query: ``(len(self), len(queries))``."""
        if not self.scan_error:
            return self.scan(queries)
        return self.exact(queries, np.arange(len(self)))

    def exact(self, queries: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Exact float32 inner products of the vectors at ``positions`` with each query."""
        return self.exact_rows(queries, self.rows[positions])

    def exact_rows(self, queries: np.ndarray, rows: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """Exact float32 scores of the vectors in ``rows`` of the matrix with each query.

        Inner products with the vectors :meth:`vectors` gives (unit length for a float16 store). For a
        search's few queries, copies of one vector score the same wherever their rows are (see :func:`_dots`).
        """
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        out = np.empty((len(rows), len(queries)), np.float32)
        for start in range(0, len(rows), chunk):
            part = np.asarray(rows[start : start + chunk])
            order = np.argsort(part, kind="stable")  # sorted reads are sequential on a memory map
            out[start + order] = _dots(_float32_rows(self.matrix, part[order]), queries)
        return out


def _float32_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of the matrix as float32; float16 rows are scaled back to unit length (rounding moved their norm).

    Gathered with ``take`` (faster than memmap indexing) and converted by torch a few rows at a time: its
    float16 conversion is vectorised (numpy's is about 5x slower here), and a copy below torch's parallel grain
    (32,768 elements) never wakes its thread pool, which on a busy machine costs milliseconds per call."""
    source = np.asarray(matrix)  # a plain view of the memory map
    if source.dtype != np.float16:
        return np.asarray(source.take(rows, axis=0), dtype=np.float32)
    import torch

    out = np.empty((len(rows), source.shape[1]), np.float32)
    converted = torch.from_numpy(out)
    block = max(1, 16_384 // max(1, source.shape[1]))
    for start in range(0, len(rows), block):
        converted[start : start + block].copy_(torch.from_numpy(source.take(rows[start : start + block], axis=0)))
        part = out[start : start + block]
        part /= np.maximum(np.linalg.norm(part, axis=-1, keepdims=True), 1e-12)
    return out


def _dots(vectors: np.ndarray, queries: np.ndarray, block: int = 1024) -> np.ndarray:
    """``vectors @ queries.T`` (float32), each score summed in one order wherever its row sits, for a few queries.

    BLAS sums a block's last rows in another order than the others, so two copies of one vector could score a
    float32 ulp apart and a tie be broken out of store order. A product and a pairwise sum per row cost about
    what BLAS's matrix-vector product does; many queries (calibration, analysis) still go to BLAS.
    """
    if len(queries) > 8:
        return np.asarray(vectors @ queries.T, dtype=np.float32)
    out = np.empty((len(vectors), len(queries)), np.float32)
    product = np.empty((min(block, len(vectors)), vectors.shape[1]), np.float32)
    for start in range(0, len(vectors), block):
        part = vectors[start : start + block]
        for j, query in enumerate(queries):
            np.multiply(part, query, out=product[: len(part)])
            out[start : start + len(part), j] = product[: len(part)].sum(axis=1)
    return out


def _scan_float16(matrix: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``matrix @ queries.T`` for a float16 matrix, by torch's float16 mat-vec (numpy has no fast float16 kernel)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only memory map: torch only reads it
        left = torch.from_numpy(matrix)
    out = np.empty((len(matrix), len(queries)), np.float32)
    with torch.inference_mode():
        for j, query in enumerate(torch.from_numpy(queries.astype(np.float16))):
            out[:, j] = torch.mv(left, query).numpy()
    return out


class EmbeddingStore:
    """Vectors of one model inside a workspace.

    Parameters
    ----------
    precision
        Element type of the vectors files this store writes: ``"float16"`` (default) or ``"float32"``.
        A file of the other precision is read as it is and rewritten by the next :meth:`write_vectors`.
    files
        The workspace's files (:class:`~picsift.workspace_files.WorkspaceFiles`), through which the vectors
        files are reached without following links; default: rooted at ``folder``'s parent.
    """

    def __init__(self, catalog: Catalog, folder: Path, identity: str, spec: str, dim: int,
                 precision: str = DEFAULT_PRECISION, files: WorkspaceFiles | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown store precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        self.catalog = catalog
        self.folder = Path(folder)
        self.identity = identity
        self.dim = dim
        self.precision = precision
        self._snapshot: StoreSnapshot | None = None
        self.files = files if files is not None else WorkspaceFiles(self.folder.parent)
        self.files.make_folder(self.folder)
        stored_dim = catalog.embeddings.model_dim(identity)
        if stored_dim is None:
            catalog.embeddings.add_model(identity, spec, dim, self._first_file())
        elif stored_dim != dim:
            raise ModelMismatchError(
                f"model {identity} produced {dim}-d vectors but its store holds {stored_dim}-d ones; "
                f"delete {self.folder} to re-embed"
            )
        else:
            self._check_vectors_file()

    def _first_file(self) -> str:
        return f"vectors-0.{PRECISIONS[self.precision][0]}"

    def _check_vectors_file(self) -> None:
        """Start this model's store afresh (its images are embedded again) when the catalog names a vectors file
        that is no picsift name, or the file is a link, special, hard-linked or shorter than the rows recorded.

        A workspace may come from anyone: such a file is never followed or written through, and nothing outside
        the workspace is touched; embeddings are derived data, so the next update makes them again.
        """
        vectors_file, next_row, _ = self.catalog.embeddings.state(self.identity)
        try:
            checked_name(vectors_file, VECTORS_FILE, "vectors file")
            info = self.files.lstat(self.folder / vectors_file)
            if info is None:
                if next_row == 0:
                    return
                raise UnsafeWorkspaceFileError(f"{self.folder / vectors_file} is missing")
            f, info = self.files.open_read(self.folder / vectors_file)
            f.close()
            needed = next_row * self.dim * np.dtype(file_dtype(vectors_file)).itemsize
            if info.st_size < needed:
                raise UnsafeWorkspaceFileError(f"{self.folder / vectors_file} holds {info.st_size} bytes where "
                                               f"{next_row} rows need {needed}")
        except UnsafeWorkspaceFileError as e:
            log.warning("%s: embedding this model's images again (nothing outside the workspace is touched)", e)
            if isinstance(vectors_file, str) and VECTORS_FILE.fullmatch(vectors_file):
                self.files.remove(self.folder / vectors_file)
            self.catalog.embeddings.reset_model(self.identity, self._first_file())
            self.files.remove(self.folder / self._first_file())
            self.files.remove(self.folder / codes_name(self._first_file()))
            self.files.remove(self.folder / lists_name(self._first_file()))

    # -- reading ----------------------------------------------------------------------------------
    def _state(self) -> tuple[str, int, int]:
        vectors_file, next_row, version = self.catalog.embeddings.state(self.identity)
        return checked_name(vectors_file, VECTORS_FILE, "vectors file"), next_row, version

    @property
    def version(self) -> int:
        return int(self._state()[2])

    def __len__(self) -> int:
        return self.catalog.embeddings.count(self.identity)

    def rows_of(self, ids: list[str]) -> dict[str, int]:
        """Rows of those of ``ids`` that are embedded, looked up in the catalog: for a page of results."""
        return self.catalog.embeddings.rows_of(self.identity, ids)

    def embedded_ids(self) -> set[str]:
        return self.catalog.embeddings.embedded_ids(self.identity)

    def snapshot(self) -> StoreSnapshot:
        """Everything needed to score the whole store, consistent as of the last commit.

        Cached until the store changes (every write bumps its version), so repeated searches do
        not re-read a million rows.
        """
        cached = self._snapshot
        if cached is not None and cached.version == self.version:
            return cached
        self._snapshot = self._read_snapshot()
        return self._snapshot

    def _read_snapshot(self) -> StoreSnapshot:
        # rows and next_row from the same commit
        (vectors_file, next_row, version), pairs = self.catalog.embeddings.snapshot(self.identity)
        checked_name(vectors_file, VECTORS_FILE, "vectors file")
        ids = np.array([p[0] for p in pairs], dtype="<U32")
        rows = np.array([p[1] for p in pairs], dtype=np.int64)
        path = self.folder / vectors_file
        dtype = file_dtype(vectors_file)
        if next_row == 0 or not self.files.exists(path):
            matrix = np.zeros((0, self.dim), dtype)
        else:
            f, _ = self.files.open_read(path)  # a regular file with one link, reached without following links
            with f:
                matrix = np.memmap(f, dtype=dtype, mode="r", shape=(next_row, self.dim))
        codes = None

        def vectors_of(picked: np.ndarray) -> np.ndarray:
            return _float32_rows(matrix, picked)

        if len(ids) >= CODES_FROM:
            codes = CodesFile(self.files, self.folder, vectors_file, self.dim).open(next_row, rows, vectors_of)
        lists = ListsFile(self.files, self.folder, vectors_file, self.dim)
        return StoreSnapshot(ids, rows, matrix, version, codes, lambda: lists.open(next_row, rows, vectors_of))

    # -- writing ----------------------------------------------------------------------------------
    def write_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Phase 1: put vectors on disk past ``next_row``; returns the rows to commit with :meth:`commit_rows`."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        vectors_file, next_row, _ = self._state()
        if file_dtype(vectors_file) != PRECISIONS[self.precision][1]:
            self._rewrite(keep_unused=True)  # a store of the other precision: convert it first
            vectors_file, next_row, _ = self._state()
        dtype = file_dtype(vectors_file)
        vectors = np.ascontiguousarray(vectors, dtype=dtype)
        with self.files.open_update(self.folder / vectors_file) as f:  # never through a link or a hard link
            f.seek(next_row * self.dim * np.dtype(dtype).itemsize)
            f.write(vectors.tobytes())
            f.flush()
            os.fsync(f.fileno())
        # the codes of the rows as stored (what exact scores are computed from), before the rows are committed
        codes = CodesFile(self.files, self.folder, vectors_file, self.dim)
        lists = ListsFile(self.files, self.folder, vectors_file, self.dim)  # kept only where an ivf index searched
        for start in range(0, len(vectors), 65_536):
            part = vectors[start : start + 65_536]
            unit = _float32_rows(part, np.arange(len(part)))
            codes.append(next_row + start, unit)
            lists.append(next_row + start, unit)
        return np.arange(next_row, next_row + len(vectors), dtype=np.int64)

    def commit_rows(self, db: sqlite3.Connection, ids: list[str], rows: np.ndarray) -> None:
        """Phase 2, inside the caller's transaction: record rows and advance ``next_row``."""
        if not ids:
            return
        EmbeddingTables.commit_rows(db, self.identity, ids, [int(r) for r in rows])

    @staticmethod
    def drop_unreferenced(db: sqlite3.Connection) -> int:
        """Delete embeddings (of every model) whose image no file refers to any more."""
        return EmbeddingTables.drop_unreferenced(db)

    def compact_if_sparse(self) -> bool:
        """Rewrite the vectors file without unused rows when they are a quarter or more of it."""
        snapshot = self.snapshot()
        total = snapshot.matrix.shape[0]
        if total < 1024 or len(snapshot) >= COMPACT_BELOW * total:
            return False
        self._rewrite(keep_unused=False)
        return True

    def _rewrite(self, *, keep_unused: bool) -> None:
        """Write the vectors into a new file of this store's precision, then switch to it in one transaction.

        ``keep_unused`` keeps every row number (a precision change); otherwise live rows are packed
        (compaction). A crash before the commit leaves a stray file that :meth:`remove_stray_files` deletes.
        """
        snapshot = self.snapshot()
        vectors_file, _, _ = self._state()
        generation = int(vectors_file.split("-")[1].split(".")[0]) + 1
        tag, dtype = PRECISIONS[self.precision]
        new_file = f"vectors-{generation}.{tag}"
        count = snapshot.matrix.shape[0] if keep_unused else len(snapshot)
        self.files.remove(self.folder / new_file)  # left by a killed rewrite: start it anew
        with self.files.open_update(self.folder / new_file) as f:
            for start in range(0, count, 65536):
                chunk = np.arange(start, min(start + 65536, count))
                block = snapshot.matrix[chunk if keep_unused else snapshot.rows[chunk]]  # as stored, not rescaled
                f.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
            f.flush()
            os.fsync(f.fileno())
        self.catalog.embeddings.switch_file(self.identity, new_file, count,
                                            None if keep_unused else snapshot.ids.tolist())
        self.remove_stray_files()

    def remove_stray_files(self) -> None:
        """Delete vectors files left by a killed compaction, and codes and lists files of other vectors files. Call
        only while holding the update lock."""
        current = self._state()[0]
        for name in self.files.list(self.folder):
            if ((VECTORS_FILE.fullmatch(name) and name != current)
                    or (is_codes_file(name) and name != codes_name(current))
                    or (is_lists_file(name) and name != lists_name(current))):
                self.files.remove(self.folder / name)
