"""``qdrant-edge``: Qdrant's own engine (HNSW, payload filters) running inside this process.

`qdrant-edge-py <https://pypi.org/project/qdrant-edge-py/>`_ embeds Qdrant's Rust engine: no
server, one shard folder in the workspace. Unlike qdrant-client's local mode (a pure-Python brute
force) this is the engine a Qdrant server runs, so picsift's Qdrant path is exercised for real here.
Point ids are the image ids as UUIDs, as in the ``qdrant`` backend.

Moving a workspace between this backend and a Qdrant server needs no export: the embedding store
is the source of truth, and a :class:`~picsift.Library` opened with the other backend builds it
from the store (``Library(root, index="qdrant", index_options={"url": ...})``, then any search or
``update()``).

Vector storage (``datatype``):

* ``"float32"`` (default): scores exact to float32; 2 KB per 512-d vector.
* ``"float16"``: 1 KB per vector; scores within ~1e-3.
* ``"uint8"``: 512 B per vector (a quarter); for callers that rescore the candidates exactly from
  their own copy, as :class:`~picsift.Library` does from its store. Each vector is stored as
  ``round(scale * (v - centre) + 128)`` (centre and scale fixed from the first vectors added, kept
  in ``picsift.json``) under Euclidean distance, which the shift does not change and the scale only
  multiplies: for unit vectors the ranking is the cosine's, up to rounding.

The graph is built from codes (``build_bits``; by default Qdrant's scalar quantization, one byte per dimension,
512 B per 512-d vector) and searched over the stored vectors (the codes are ignored at search time): scoring
int8 codes costs about half the CPU of scoring the uint8 vectors, and the graph comes out as good for search.
Qdrant's 2-bit binary codes (128 B) cost only 10% less CPU again, but cannot tell close neighbours apart inside a
cluster: at 1M clustered vectors their graph reached text-like recall@100 0.90 at ef 600, the int8 codes' 0.98
(bench/README.md, limits).

The engine allows one open handle per shard folder: a second process gets
:class:`~picsift.index.base.IndexBusyError` (the library then searches its store exactly).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
from filelock import FileLock, Timeout

from ..workspace_files import SMALL_LIMIT, WorkspaceFiles
from .base import IndexBusyError, NoRoomForIndexError, UnreadableIndexError, VectorIndex, check_vectors, folder_lock

log = logging.getLogger(__name__)

_BATCH = 2_000
#: The engine preallocates its files in chunks of 32 MiB (vectors, build codes, payload pages, two write-ahead log
#: segments) and maps them: reading or writing a page the disk has no room for kills the process (SIGBUS). The free
#: space kept before opening or writing a shard is what its files may still claim, plus one chunk of each.
_CHUNK, _CHUNKS = 32 * 2**20, 5
#: build_bits -> the codes Qdrant builds the graph from (0: none, the graph is built from the stored vectors; 1, 1.5,
#: 2: binary quantization; 4: TurboQuant's 4 bits per dimension; 8: scalar quantization, one byte per dimension)
_ENCODINGS: dict[float, Any] = {
    0: None,
    1: qe.BinaryQuantizationConfig(always_ram=True, encoding=qe.BinaryQuantizationEncoding.OneBit),
    1.5: qe.BinaryQuantizationConfig(always_ram=True, encoding=qe.BinaryQuantizationEncoding.OneAndHalfBits),
    2: qe.BinaryQuantizationConfig(always_ram=True, encoding=qe.BinaryQuantizationEncoding.TwoBits),
    4: qe.TurboQuantQuantizationConfig(always_ram=True, bits=qe.TurboQuantBitSize.Bits4),
    8: qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True),
}
#: searches walk the graph over the stored vectors, never over the build codes
_SEARCH_STORED = qe.QuantizationSearchParams(ignore=True)
DATATYPES = ("float32", "float16", "uint8")
#: uint8 mode: the centre-to-component span that maps to the 0..255 range is this quantile of the first
#: vectors' |v - centre|, widened by this margin, so later vectors rarely clip.
_SPAN_QUANTILE, _SPAN_MARGIN = 0.99999, 1.25
#: The graph's default degree, build-time beam width and build codes (see :class:`QdrantEdgeIndex`).
M, EF_CONSTRUCT, BUILD_BITS = 16, 128, 8
#: :meth:`QdrantEdgeIndex.calibrate`: a sample query whose recall is below this is lost (its beam missed its images)
LOST = 0.5


def point_id(image_id: str) -> str:
    return str(uuid.UUID(hex=image_id))


def image_id(point: Any) -> str:
    return point.hex if isinstance(point, uuid.UUID) else uuid.UUID(str(point)).hex


def _hole_bytes(fd: int, size: int, most: int = 10_000) -> int:
    """Bytes of the file's holes (never written, no disk behind them), from ``SEEK_HOLE`` and ``SEEK_DATA``: 0 where
    the file system cannot tell (it then reports one hole, at the end), and counting at most ``most`` holes."""
    holes = offset = 0
    for _ in range(most):
        if offset >= size:
            break
        try:
            start = os.lseek(fd, offset, os.SEEK_HOLE)
        except OSError:  # not supported here (or the file shrank)
            return holes
        if start >= size:
            break
        try:
            end = os.lseek(fd, start, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after it, a hole to the end
            end = size
        holes += end - start
        offset = end
    return holes


class QdrantEdgeIndex(VectorIndex):
    """A Qdrant Edge shard of image vectors.

    Parameters
    ----------
    m, ef_construct
        HNSW graph degree and build-time beam width. At 1M clustered vectors ``ef_construct=64`` left parts
        of the graph unreachable: from the uint8 vectors recall@100 stuck near 0.90 at any ``ef``; from 2-bit codes
        (204 CPU s of graph) 0.85 for image-like and 0.75 for text-like queries at ef 600 (2026-12-06). 128 reached
        0.99 from the uint8 vectors (about 6 min on 2 cores) and 0.98 from int8 codes for 1.1x the CPU of 2-bit
        codes (bench/README.md, limits).
    ef
        Query-time beam width (at least ``k`` is used). :meth:`calibrate` tunes it.
    datatype
        ``"float32"``, ``"float16"`` or ``"uint8"`` (see the module's documentation).
    full_scan_threshold
        Segments below this many KB are searched exactly, and get no graph (building one would not pay).
    build_bits
        Bits per dimension of the codes the graph is built from: 8 (Qdrant's scalar int8 quantization, the
        default), 4 (TurboQuant), 1, 1.5 or 2 (binary quantization); 0 builds it from the stored vectors (about 2x
        the CPU). Searches always walk the graph over the stored vectors. Fixed when the shard is made: a shard made
        with other codes keeps them.
    threads
        Threads for building the graph (0: one per core).
    """

    name = "qdrant-edge"

    def __init__(
        self, dim: int, path: Path | None = None, *, m: int = M, ef_construct: int = EF_CONSTRUCT, ef: int = 128,
        datatype: str = "float32", full_scan_threshold: int = 10_000, threads: int = 0, build_bits: float = BUILD_BITS,
        **options: Any,
    ):
        super().__init__(dim, path)
        if datatype not in DATATYPES:
            raise ValueError(f"unknown qdrant-edge datatype {datatype!r}; valid: {', '.join(DATATYPES)}")
        if build_bits not in _ENCODINGS:
            raise ValueError(f"unknown qdrant-edge build_bits {build_bits!r}; valid: {', '.join(map(str, _ENCODINGS))}")
        self.ef, self.datatype = ef, datatype
        self.score_error = {"float32": 0.0, "float16": 2e-3, "uint8": 2e-2}[datatype]
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if self.path is None:  # the engine always works in a folder
            self._temporary = tempfile.TemporaryDirectory(prefix="picsift-qdrant-edge-")
            self._folder = Path(self._temporary.name) / "shard"
        else:
            self._folder = self.path
        storage = {"float32": qe.VectorStorageDatatype.Float32, "float16": qe.VectorStorageDatatype.Float16,
                   "uint8": qe.VectorStorageDatatype.Uint8}[datatype]
        distance = qe.Distance.Euclid if datatype == "uint8" else qe.Distance.Dot
        codes = _ENCODINGS[build_bits]
        self._config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=distance, datatype=storage, quantization_config=codes),
            hnsw_config=qe.HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=full_scan_threshold,
                                           max_indexing_threads=threads),
            optimizers=qe.EdgeOptimizersConfig(default_segment_number=1, indexing_threshold=full_scan_threshold),
            # no write-ahead log (fixed when a shard is made; older shards keep theirs): the index is rebuilt from the
            # store, and an add() a crash cut short is finished by the next sync, which compares ids with the store
            wal_enabled=False,
        )
        self._centre: np.ndarray | None = None
        self._scale = 0.0
        self._shard: Any = None
        self._handle: FileLock | None = None
        self._lock = threading.RLock()  # see _open
        self._dirty = False
        with self._open():
            pass

    # -- the shard's one handle -----------------------------------------------------------------------
    @contextmanager
    def _open(self) -> Iterator[Any]:
        """The open shard, for one operation at a time in this process.

        Opening it takes the folder's lock (another process may be saving or removing the folder) and
        ``<shard>.open.lock``, held until :meth:`release`: while it is held no other process can open the shard, so
        an operation on the open shard needs only this object's thread lock (the folder's file lock, about 0.5 ms
        a call, was taken around every search). Both are taken in one order, the folder's first."""
        with self._lock:
            shard = self._shard
            if shard is not None:
                yield shard
                return
        with folder_lock(self._folder), self._lock:
            if self._shard is None:
                self._hold()
                try:
                    self._shard = self._load()
                except BaseException:
                    self._let_go()
                    raise
            yield self._shard

    def _hold(self) -> None:
        """Take ``<shard>.open.lock``, held while this object has the shard open: the engine keeps no lock of its
        own once the write-ahead log is off, and two handles on one shard would corrupt it."""
        name = f"{self._folder.name}.open.lock"
        handle = FileLock(WorkspaceFiles(self._folder.parent).lock_file(name), timeout=0)
        try:
            handle.acquire()
        except Timeout as e:
            raise IndexBusyError(f"qdrant-edge index at {self._folder} is open in another process") from e
        self._handle = handle

    def _let_go(self) -> None:
        if self._handle is not None:
            self._handle.release()
            self._handle = None

    def _files(self) -> list[tuple[Path, os.stat_result]]:
        """The shard's regular files (links are not followed) with their ``lstat``."""
        found = [(path, path.lstat()) for path in self._folder.rglob("*")] if self._folder.is_dir() else []
        return [(path, info) for path, info in found if stat.S_ISREG(info.st_mode)]

    def _check_room(self, writes: int = 0, *, new: bool = False,
                    files: list[tuple[Path, os.stat_result]] | None = None) -> None:
        """Refuse (:class:`NoRoomForIndexError`) when the disk lacks room for the shard's mapped files (``files``,
        else :meth:`_files`): their unallocated (sparse) part (a ``new`` shard: one chunk of each), plus ``writes``
        bytes about to be written."""
        stats = [] if new else [info for _, info in (self._files() if files is None else files)]
        sparse = sum(max(0, s.st_size - 512 * s.st_blocks) for s in stats) if stats else _CHUNKS * _CHUNK
        needed = sparse + writes
        free = shutil.disk_usage(self._folder if self._folder.is_dir() else self._folder.parent).free
        if free < needed:
            raise NoRoomForIndexError(f"the disk holding the qdrant-edge index {self._folder} has {free / 2**20:.0f} "
                                      f"MiB free; the index needs {needed / 2**20:.0f} MiB for the files it maps")

    def _unwritten_problem(self, files: list[tuple[Path, os.stat_result]]) -> str | None:
        """Why the shard holds a file the engine cannot have made, or None: the engine grows its mapped files one
        chunk at a time, so no file of its own leaves more than a chunk unwritten (sparse); a larger hole is a file
        planted there, which would make the room check ask for disk the index never uses.

        A file that takes less disk than its size is looked at hole by hole (``SEEK_HOLE``): on a compressing
        file system (ZFS, btrfs) an engine file takes less disk than its size without any hole."""
        folder = WorkspaceFiles(self._folder)
        for path, info in files:
            if info.st_size - 512 * info.st_blocks <= 2 * _CHUNK:
                continue
            handle, _ = folder.open_read(path.relative_to(self._folder))
            with handle:
                hole = _hole_bytes(handle.fileno(), info.st_size)
            if hole > 2 * _CHUNK:
                return f"{path} has {hole / 2**20:.0f} MiB never written; the engine's files leave at most one " \
                       f"{_CHUNK // 2**20} MiB chunk unwritten"
        return None

    def _load(self) -> Any:
        files = WorkspaceFiles(self._folder.parent)
        name = self._folder.name
        if files.exists(name) and not files.is_folder(name):
            files.remove(name)  # a link or a file where the shard's folder belongs: never followed
        if not files.exists(f"{name}/segments"):
            self._check_room(new=True)
            files.make_folder(name)
            files.write_json(f"{name}/picsift.json", {"dim": self.dim, "datatype": self.datatype})
            return qe.EdgeShard.create(str(self._folder), self._config)
        # The engine opens its files by name: hand it only a folder of real folders and single-link regular files.
        problem = files.tree_problem(name)
        if problem is None:  # only real folders and single-link files: walked once, for both checks
            shard_files = self._files()
            problem = self._unwritten_problem(shard_files)
        if problem is not None:
            raise UnreadableIndexError(f"qdrant-edge index at {self._folder} cannot be used ({problem})")
        self._check_room(files=shard_files)
        try:
            saved = self._settings(files.read_json(f"{name}/picsift.json", SMALL_LIMIT + 64 * self.dim))
            shard = qe.EdgeShard.load(str(self._folder))
        except (OSError, ValueError) as e:
            raise UnreadableIndexError(f"qdrant-edge index at {self._folder} cannot be read ({e})") from e
        except Exception as e:  # the engine raises plain Exceptions
            if "WouldBlock" in str(e):
                raise IndexBusyError(f"qdrant-edge index at {self._folder} is open in another process") from e
            raise UnreadableIndexError(f"qdrant-edge index at {self._folder} cannot be read ({e})") from e
        if saved.get("dim") != self.dim or saved.get("datatype") != self.datatype:
            shard.close()
            raise UnreadableIndexError(
                f"qdrant-edge index at {self._folder} holds {saved.get('dim')}-d {saved.get('datatype')} vectors, "
                f"not {self.dim}-d {self.datatype}")
        if "centre" in saved:
            self._centre, self._scale = saved["centre"], saved["scale"]
        self.ef = saved.get("ef", self.ef)
        return shard

    def _write_settings(self) -> None:
        """``picsift.json``: what the engine does not keep (the uint8 coding, the ef :meth:`calibrate` chose)."""
        settings: dict[str, Any] = {"dim": self.dim, "datatype": self.datatype, "ef": self.ef}
        if self._centre is not None:
            settings.update(centre=np.asarray(self._centre).tolist(), scale=self._scale)
        WorkspaceFiles(self._folder).write_json("picsift.json", settings)

    def _settings(self, saved: Any) -> dict[str, Any]:
        """``picsift.json`` checked: a mapping whose ef (if any) is a whole number, whose centre (if any) has ``dim``
        finite numbers and whose scale is a finite positive number; ``ValueError`` naming what is wrong otherwise (the
        index is then rebuilt)."""
        if not isinstance(saved, dict):
            raise ValueError(f"picsift.json holds {type(saved).__name__}, not an object")
        checked = {"dim": saved.get("dim"), "datatype": saved.get("datatype")}
        if checked["dim"] != self.dim or checked["datatype"] != self.datatype:
            return checked  # refused with its own message
        if "ef" in saved:
            if type(saved["ef"]) is not int or not 1 <= saved["ef"] <= 1_000_000:
                raise ValueError(f"picsift.json's ef is {saved['ef']!r}, not a whole number from 1 to 1,000,000")
            checked["ef"] = saved["ef"]
        if "centre" in saved or "scale" in saved:
            try:
                centre = np.asarray(saved["centre"], np.float64)
                scale = float(saved["scale"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"picsift.json's centre and scale are not numbers ({e})") from e
            if centre.shape != (self.dim,) or not np.isfinite(centre).all():
                raise ValueError(f"picsift.json's centre has shape {centre.shape}, not {self.dim} finite numbers")
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError(f"picsift.json's scale is {scale!r}, not a finite number > 0")
            checked.update(centre=centre.astype(np.float32), scale=scale)
        return checked

    def release(self) -> None:
        """Close the shard (flushing it) so another process can open it; the next call reopens it."""
        with folder_lock(self._folder), self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None
            self._let_go()

    # -- uint8 encoding ------------------------------------------------------------------------------
    def _encode(self, vectors: np.ndarray, *, clip: bool = True) -> np.ndarray:
        if self.datatype != "uint8":
            return vectors
        if self._centre is None:  # fixed once, from the first vectors added, and kept with the shard
            centre = vectors.mean(axis=0) if len(vectors) >= 100 else np.zeros(self.dim, np.float32)
            span = float(np.quantile(np.abs(vectors - centre), _SPAN_QUANTILE)) if len(vectors) else 0.0
            self._centre = centre.astype(np.float32)
            self._scale = 127.0 / (_SPAN_MARGIN * max(span, 4.0 / np.sqrt(self.dim)))
            self._write_settings()
        coded = (vectors - self._centre) * self._scale + 128.0
        return np.clip(np.rint(coded), 0, 255) if clip else coded  # the query keeps its fractions

    def _scores(self, engine: np.ndarray) -> np.ndarray:
        """Inner products (float32) from the engine's scores: for uint8 codes, Euclidean distances between codes."""
        if self.datatype == "uint8":  # |u - v|^2 = 2 - 2 u.v for unit vectors
            engine = 1.0 - engine * engine / (2.0 * self._scale**2)
        return engine.astype(np.float32)

    # -- the contract -------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = check_vectors(ids, vectors, self.dim)
        with self._open() as shard:
            self._check_room(_CHUNK + 3 * self.dim * len(ids))  # the log, the segment, the codes; a new chunk
            stored = self._encode(vectors).astype(np.float32)
            for start in range(0, len(ids), _BATCH):
                points = [qe.Point(point_id(i), v) for i, v in zip(ids[start : start + _BATCH],
                                                                    stored[start : start + _BATCH], strict=True)]
                shard.update(qe.UpdateOperation.upsert_points(points))
            self._dirty = True

    def remove(self, ids: Sequence[str]) -> None:
        with self._open() as shard:
            for start in range(0, len(ids), _BATCH):
                shard.update(qe.UpdateOperation.delete_points([point_id(i) for i in ids[start : start + _BATCH]]))
            self._dirty = True

    def search(
        self, query: np.ndarray, k: int, restrict_to: Collection[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        query_filter = None
        if restrict_to is not None:
            if not restrict_to:
                return [], np.zeros(0, np.float32)
            query_filter = qe.Filter(must=[qe.HasIdCondition({point_id(i) for i in restrict_to})])
        if k <= 0:
            return [], np.zeros(0, np.float32)
        with self._open() as shard:
            self._optimize(shard)
            if self.datatype == "uint8" and self._centre is None:
                return [], np.zeros(0, np.float32)  # nothing was ever added
            found = shard.query(self._request(query, k, query_filter))
        return ([image_id(p.id) for p in found],
                self._scores(np.fromiter((p.score for p in found), np.float64, len(found))))

    def _request(self, query: np.ndarray, k: int, query_filter: Any = None) -> Any:
        """The engine's request for the ``k`` nearest points to ``query``, coded as the stored vectors are."""
        coded = self._encode(np.asarray(query, dtype=np.float32).reshape(1, -1), clip=False)[0].astype(np.float32)
        params = qe.SearchParams(hnsw_ef=max(self.ef, k), quantization=_SEARCH_STORED)
        return qe.QueryRequest(limit=k, query=qe.Query.Nearest(coded), filter=query_filter, params=params)

    def _optimize(self, shard: Any) -> None:
        """Build the HNSW graph of what was added (blocks); searches before it would scan exactly."""
        if self._dirty:
            # the optimised segment is written anew: its vectors, codes and graph, in new chunks
            self._check_room(3 * _CHUNK + 2 * self.dim * int(shard.count(qe.CountRequest(exact=True))))
            shard.optimize()
            self._dirty = False

    def calibrate(
        self, queries: np.ndarray, exact_ids: list[list[str]], k: int, target: float = 0.95, wider: int | None = None
    ) -> int:
        """Raise ``ef`` until mean recall@k against ``exact_ids`` reaches ``target`` and no query is lost (recall
        below :data:`LOST`); returns the ef chosen.

        With ``wider``, recall counts the true top ``k`` among the ``wider`` best found: what a caller
        that rescores those exactly (as the library does for ``uint8``) ends up with. A lost query is a beam that
        never reached the images the query is about, which a user sees as a failed search; the mean hides it: at 1M
        clustered vectors ef 600 gave a mean of 0.972 on the sample with 2 of 100 queries lost (held out: 0.970, 1
        of 40 at 0.00), ef 1200 0.993 with none lost (held out: 0.995, none; bench/README.md, limits).
        """
        recall, lost = 0.0, 0
        for ef in sorted({k, int(1.5 * k), 2 * k, 3 * k, 4 * k, 6 * k, 8 * k, 12 * k, 16 * k}):
            self.ef = ef
            recalls = np.array([len(set(self.search(q, wider or k)[0]) & set(truth)) / max(1, len(truth))
                                for q, truth in zip(queries, exact_ids, strict=True)])
            recall, lost = float(recalls.mean()), int((recalls < LOST).sum())
            if recall >= target and not lost:
                break
        with self._open():
            self._write_settings()  # a reopened index searches with the ef chosen here
        level = logging.INFO if recall >= target and not lost else logging.WARNING
        log.log(level, "qdrant-edge: ef=%d gives recall@%d=%.3f on %d text-like sample queries, %d of them lost "
                "(recall < %.1f; target %.2f, none lost)", self.ef, k, recall, len(queries), lost, LOST, target)
        return self.ef

    def ids(self) -> set[str]:
        found: set[str] = set()
        offset = None
        with self._open() as shard:
            while True:
                points, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=10_000, with_payload=False,
                                                               with_vector=False))
                found.update(image_id(p.id) for p in points)
                if offset is None:
                    return found

    def __len__(self) -> int:
        with self._open() as shard:
            return int(shard.count(qe.CountRequest(exact=True)))

    def save(self) -> None:
        """Build the graph of what was added and flush everything to the shard folder."""
        with self._open() as shard:
            self._optimize(shard)
            shard.flush()

    def close(self) -> None:
        self.release()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None


__all__ = ["BUILD_BITS", "DATATYPES", "EF_CONSTRUCT", "M", "QdrantEdgeIndex", "image_id", "point_id"]
