"""``ivf``: picsift's own inverted file over the embedding store's one-byte score codes.

Every search already scans the score codes (:mod:`picsift.core.codes`: one byte per dimension of every image, in
store order) for the histogram under its results. This index puts every image in the list of its nearest centroid
(:mod:`picsift.core.code_lists`: 2 bytes per image and the centroids, beside the codes), and a search scans the
codes of the ``nprobe`` lists nearest its query and hands its best to the exact rescoring every
:class:`~picsift.Library` search does, so results and their scores stay exact. The index holds no copy of any
vector: it adds about 2 bytes per image to the store, where qdrant-edge's graph added 914 and hnsw's 2.4 KB
(bench/README.md), and builds in one pass of k-means and assignment (bench/ivf.py).

It follows the store instead of taking vectors: the library's :class:`~picsift.index.sync.IndexKeeper` attaches each
new store snapshot (:meth:`IvfIndex.attach`), and :meth:`add` and :meth:`remove` refuse. Below the store's
``CODES_FROM`` images (no codes) it searches the store exactly, as quick there. ``nprobe`` is tuned on text-like
queries by :meth:`calibrate` (as qdrant-edge's ``ef``) and kept in ``settings.json`` in the index's folder.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..workspace_files import SMALL_LIMIT, WorkspaceFiles
from .base import VectorIndex, top_k
from .sync import StoreIndex

if TYPE_CHECKING:
    from ..core.store import StoreSnapshot

log = logging.getLogger(__name__)

#: :meth:`IvfIndex.calibrate`: a sample query is lost (its lists missed its images) when fewer than this fraction of
#: the results the library would keep score within :data:`TIE` of its exact k-th best. Scores that close are a tie,
#: not a miss: a query far from every image (a prompt between clusters) has hundreds of images within 1e-3 of its
#: 100th, and which of them come back is arbitrary (ann-benchmarks' epsilon recall); counting those as lost held
#: nprobe at a third of the lists at 100k for one such sample query of 100 (2026-12-07).
LOST, TIE = 0.5, 1e-3
#: A lost sample query may raise nprobe to this many times what the mean recall needs, no more: a query whose exact
#: neighbours are scattered over the whole collection (no group of images near it; at 100k, one of the 100 sample
#: queries had its top 100 in lists ranked up to 344 of 632 by their centroids) is found only by scanning nearly
#: everything, and holding every search to that (a third of the lists) would cost it 6x.
LOST_REACH = 2
_SETTINGS = "settings.json"


class IvfIndex(VectorIndex):
    """Inverted lists over the store's score codes, searched ``nprobe`` lists at a time.

    Parameters
    ----------
    nprobe
        Lists scanned per search (at least enough to hold ``k`` images), kept as given (:meth:`calibrate` then leaves
        it); None: what :meth:`calibrate` chose last, else an eighth of the lists.
    """

    name = "ivf"
    follows_store = True
    #: A wider scan costs little here (at 100k, 23 of 1,265 lists for 0.97 against 3 for 0.95: 0.3 ms more), so
    #: ``ivf`` aims for the library path's goal of 0.97 (issue 25), not the graphs' 0.95 (bench/library_path.py).
    recall_target = 0.97

    def __init__(self, dim: int, path: Path | None = None, *, nprobe: int | None = None, **options: Any):
        super().__init__(dim, path)
        self.nprobe = nprobe
        self.fixed = nprobe is not None  # asked for by a person: never tuned away
        self._snapshot: StoreSnapshot | None = None
        self._groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if nprobe is None and self.path is not None and WorkspaceFiles(self.path.parent).exists(
                f"{self.path.name}/{_SETTINGS}"):
            try:
                saved = WorkspaceFiles(self.path).read_json(_SETTINGS, SMALL_LIMIT)
            except (OSError, ValueError) as e:
                log.info("ivf settings in %s are unreadable (%s): nprobe is tuned again", self.path, e)
                saved = {}
            value = saved.get("nprobe") if isinstance(saved, dict) else None
            self.nprobe = value if type(value) is int and value > 0 else None

    # -- following the store ------------------------------------------------------------------------
    def attach(self, snapshot: StoreSnapshot) -> None:
        """Search ``snapshot`` from now on (its lists are built or brought up to date on first use)."""
        if snapshot is self._snapshot:
            return
        self._snapshot, self._groups = snapshot, None
        lists = snapshot.lists
        # a score from the codes may be this far from the exact one: the library asks for more and rescores them
        self.score_error = snapshot.codes.error if lists is not None and snapshot.codes is not None else 0.0

    @property
    def attached_version(self) -> int | None:
        """The store version of the snapshot searched (None before :meth:`attach`)."""
        return self._snapshot.version if self._snapshot is not None else None

    def _attached(self) -> StoreSnapshot:
        if self._snapshot is None:
            raise RuntimeError("the ivf index searches an embedding store: attach(snapshot) first (a Library does)")
        return self._snapshot

    def _grouped(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(positions by list, their rows, list offsets)`` of the attached snapshot (made once per snapshot)."""
        snapshot = self._attached()
        if self._groups is None and snapshot.lists is not None:
            order, offsets = snapshot.lists.grouped(snapshot.rows)
            self._groups = (order, np.ascontiguousarray(snapshot.rows[order]), offsets)
        return self._groups

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        raise NotImplementedError("the ivf index follows an embedding store: write vectors to the store, then "
                                  "attach its snapshot")

    def remove(self, ids: Sequence[str]) -> None:
        raise NotImplementedError("the ivf index follows an embedding store: remove vectors from the store, then "
                                  "attach its snapshot")

    # -- searching ------------------------------------------------------------------------------------
    def _probe(self, query: np.ndarray, k: int, nprobe: int | None, offsets: np.ndarray) -> np.ndarray:
        """The lists a search for ``query`` scans: the ``nprobe`` nearest, more while they hold fewer than ``k``."""
        lists = self._attached().lists
        assert lists is not None
        near = np.einsum("ij,j->i", lists.centroids, query)  # not BLAS: its threads spin after a call
        sizes = np.diff(offsets)
        wanted = max(1, min(nprobe or self.default_nprobe(), len(near)))
        if wanted < len(near):
            nearest = np.argpartition(-near, wanted - 1)[:wanted]
            if sizes[nearest].sum() >= min(k, int(offsets[-1])):
                return nearest
        order = np.argsort(-near, kind="stable")  # a few small lists: as many more as hold k images
        enough = int(np.searchsorted(np.cumsum(sizes[order]), min(k, int(offsets[-1])))) + 1
        return order[: max(wanted, enough)]

    def default_nprobe(self) -> int:
        """:attr:`nprobe`, else an eighth of the lists."""
        lists = self._attached().lists
        return self.nprobe or max(1, (lists.count if lists is not None else 8) // 8)

    def search(
        self, query: np.ndarray, k: int, restrict_to: Collection[str] | None = None, *, nprobe: int | None = None
    ) -> tuple[list[str], np.ndarray]:
        snapshot = self._attached()
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        groups = self._grouped()
        if restrict_to is not None or groups is None or snapshot.codes is None:
            return StoreIndex(snapshot).search(query, k, restrict_to)  # exact: a scope, or a store without codes
        if k <= 0 or not len(snapshot):
            return [], np.zeros(0, np.float32)
        from ..core.codes_kernel import list_rows

        order, rows, offsets = groups
        positions, picked = list_rows(order, rows, offsets, self._probe(query, k, nprobe, offsets))
        scores = snapshot.codes.scan(query, picked, serial=True)[:, 0]
        best = top_k(scores, k)
        return snapshot.ids[positions[best]].tolist(), scores[best]

    def calibrate(self, queries: np.ndarray, exact_ids: list[list[str]], k: int, target: float = 0.95,
                  wider: int | None = None) -> int:
        """The smallest ``nprobe`` whose mean recall@k reaches ``target`` (up a ladder of fractions of the lists, then
        the last step halved twice: recall only grows with nprobe, a search scanning every list a smaller one scans),
        raised until no sample query is lost (:data:`LOST`), by at most :data:`LOST_REACH` times. Returns it (saved
        by :meth:`save`).

        Recall is that of what the library keeps (the k best of the ``wider`` candidates by their exact scores)
        against ``exact_ids``, a result within :data:`TIE` of the exact k-th counting as found (ann-benchmarks'
        epsilon recall): a sample query far from every image has hundreds of images about as close as its k-th, and
        which of them come back is a tie. Counting only the exact ids held nprobe at 263 of 1,265 lists on 100k real
        embeddings where held-out real prompts reach 0.97 at 32; with ties, 105 (synthetic data: 23 -> 16, held-out
        text-like recall 0.983 -> 0.980; a one-off script, 2026-12-07)."""
        snapshot = self._attached()
        lists = snapshot.lists
        if lists is None or self.fixed:
            return self.nprobe or 1
        queries = np.asarray(queries, np.float32).reshape(len(exact_ids), -1)
        last = np.array([snapshot.exact(q[None], snapshot.positions_of(np.array(truth[-1:], "<U32")))[0, 0]
                         if len(truth) else np.inf for q, truth in zip(queries, exact_ids, strict=True)])

        def measured(nprobe: int) -> tuple[float, int, bool]:
            near = []
            for q, truth, edge in zip(queries, exact_ids, last, strict=True):
                found = self.search(q, wider or k, nprobe=nprobe)[0]
                # as the library keeps them: the k best of the candidates by their exact scores
                exact = np.sort(snapshot.exact(q[None], snapshot.positions_of(np.array(found, "<U32")))[:, 0])[::-1]
                near.append(float((exact[: len(truth)] >= edge - TIE).sum()) / max(1, len(truth)))
            recall, lost = float(np.mean(near)), int((np.array(near) < LOST).sum())
            return recall, lost, recall >= target and not lost

        ladder = sorted({max(1, round(lists.count * f)) for f in
                         (1 / 256, 1 / 128, 1 / 96, 1 / 64, 1 / 48, 1 / 32, 1 / 24, 1 / 16, 1 / 12, 1 / 8, 1 / 6,
                          1 / 4, 1 / 3, 1 / 2, 1)})
        below, results = 0, {}
        for nprobe in ladder:  # the mean first: up the ladder, then the last step halved twice
            results[nprobe] = measured(nprobe)
            if results[nprobe][0] >= target:
                break
            below = nprobe
        for _ in range(2):
            middle = (below + nprobe) // 2
            if results[nprobe][0] < target or not below < middle < nprobe:
                break
            results[middle] = measured(middle)
            below, nprobe = (below, middle) if results[middle][0] >= target else (middle, nprobe)
        if results[nprobe][1]:  # then no query lost, for at most twice the lists: see LOST_REACH
            most = min(lists.count, LOST_REACH * nprobe)
            for wider_probe in sorted({r for r in ladder if nprobe < r < most} | {most}):
                results[wider_probe] = measured(wider_probe)
                nprobe = wider_probe
                if not results[nprobe][1]:
                    break
        recall, lost, _ = results[nprobe]
        self.nprobe = nprobe
        level = logging.INFO if recall >= target else logging.WARNING
        log.log(level, "ivf: nprobe=%d of %d lists gives recall@%d=%.3f (ties within %g found) on %d text-like sample "
                "queries, %d of them lost (fewer than %.0f%% of the results so found; target %.2f, none lost)", nprobe,
                lists.count, k, recall, TIE, len(queries), lost, 100 * LOST, target)
        return nprobe

    def ids(self) -> set[str]:
        return set(self._snapshot.ids.tolist()) if self._snapshot is not None else set()

    def __len__(self) -> int:
        return len(self._snapshot) if self._snapshot is not None else 0

    def save(self) -> None:
        """Keep the tuned ``nprobe`` (the lists themselves are kept by the store as it writes)."""
        if self.path is None or self.nprobe is None:
            return
        WorkspaceFiles(self.path.parent).make_folder(self.path.name)
        WorkspaceFiles(self.path).write_json(_SETTINGS, {"nprobe": int(self.nprobe)})


__all__ = ["IvfIndex"]
