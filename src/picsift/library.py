"""The :class:`Library`: one folder of images, its workspace, its embeddings and its index."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import signing
from .analysis.maps import Maps
from .analysis.sampling import SAMPLING_METHODS
from .analysis.verbs import AnalysisMixin
from .core.activity import announce_update, running_update
from .core.catalog import WORKSPACE_DIRNAME, Catalog
from .core.files import FileActions, FileActionsMixin
from .core.store import EmbeddingStore
from .core.update import ProgressCallback, UpdateReport, run_update
from .core.video import DEFAULT_EVERY, VideoMixin
from .embedding.decode import decode_image
from .embedding.openclip import DEFAULT_MODEL, Embedder, pretrained_weights_available
from .embedding.spec import OFFLINE_MODEL, ModelSpec, offline_model_available, parse_model_spec, slug
from .errors import (
    ModelMismatchError,
    ModelUnavailableError,
    PicsiftError,
    WorkspaceBusyError,
    workspace_space,
)
from .index import DEFAULT_BACKEND, VectorIndex, backend_class
from .index.sync import IndexKeeper
from .labels.export import EXPORT_FORMATS, ExportMixin
from .labels.metadata import JOB_STATUSES, Metadata
from .query.collections import TEMPORARY, CollectionsMixin, describe_recipe
from .query.search import SearchMixin
from .reading import read_regular_file

log = logging.getLogger(__name__)

#: A meta key present while an update runs, and left behind by one that was killed or failed.
UNFINISHED_KEY = "update_unfinished"


def default_model() -> str:
    """The model used when none is named.

    :data:`DEFAULT_MODEL` (a standard CLIP) when its weights are cached or can be fetched; otherwise
    picsift's own offline model, announced in one line; otherwise an error naming ``--model``.
    """
    spec = parse_model_spec(DEFAULT_MODEL)
    ok, reason = pretrained_weights_available(spec)
    if ok:
        return DEFAULT_MODEL
    if offline_model_available():
        log.warning("%s: using picsift's offline model %r instead (--model to choose another)", reason, OFFLINE_MODEL)
        return OFFLINE_MODEL
    raise ModelUnavailableError(f"{reason}; choose a model with --model SPEC (Python: model=...)")


class Library(SearchMixin, CollectionsMixin, FileActionsMixin, ExportMixin, AnalysisMixin, VideoMixin):
    """A folder of images made searchable.

    Parameters
    ----------
    root
        The image folder (scanned recursively).
    workspace
        Where picsift keeps its catalog, embeddings and index; defaults to ``ROOT/.picsift``. Point it
        elsewhere for read-only image folders.
    model
        A model spec (see :mod:`picsift.embedding.spec`). Defaults to the model this workspace was
        last updated with, else :func:`default_model`.
    index
        ``"hnsw"`` (default), ``"qdrant-edge"`` (Qdrant's engine in-process; a quarter of hnsw's bytes), ``"qdrant"``
        (a Qdrant server) or ``"exact"``; see :mod:`picsift.index`.
    index_options
        Passed to the backend, e.g. ``{"url": "http://qdrant:6333"}`` for a Qdrant server.
    device, batch_size
        Passed to :class:`~picsift.embedding.Embedder`.
    video_every
        Videos under ``root`` are sampled every this many seconds, and on scene changes (see
        :mod:`picsift.core.video`). Defaults to the value this workspace was last updated with, else 2.

    Examples
    --------
    >>> lib = Library("~/photos")
    >>> lib.update()
    >>> lib.search("a dog on a beach", limit=20).df
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        workspace: str | os.PathLike[str] | None = None,
        model: str | None = None,
        index: str | None = None,
        index_options: dict[str, Any] | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        video_every: float | None = None,
    ):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise PicsiftError(f"image folder {self.root} does not exist or is not a folder")
        self.workspace = Path(workspace).expanduser().resolve() if workspace else self.root / WORKSPACE_DIRNAME
        if self.root.is_relative_to(self.workspace):
            where = "is the image folder" if self.root == self.workspace else f"holds the image folder {self.root}"
            raise PicsiftError(
                f"workspace {self.workspace} {where}: picsift writes and deletes its own files there, so it needs "
                f"a folder of its own; leave workspace out (default {self.root / WORKSPACE_DIRNAME}) or choose a "
                "new folder (CLI: --workspace DIR)"
            )
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PicsiftError(
                f"cannot create workspace {self.workspace} ({e.strerror}); pass workspace=... (CLI: --workspace)"
            ) from e
        with workspace_space(self.workspace, "try again"):
            self.catalog = Catalog(self.workspace / "catalog.sqlite")
        self._model_text = model or self.catalog.get_meta("model")
        self.index_name = index or self.catalog.get_meta("index") or DEFAULT_BACKEND
        backend_class(self.index_name)  # fail now, listing the valid names, not at the first search
        self.index_options = index_options or {}
        self._device, self._batch_size = device, batch_size
        self.video_every = float(video_every or self.catalog.get_meta("video_every") or DEFAULT_EVERY)
        if not self.video_every > 0:
            raise PicsiftError(f"video_every must be a positive number of seconds, got {video_every!r}")
        self._spec: ModelSpec | None = None
        self._embedder: Embedder | None = None
        self._store: EmbeddingStore | None = None
        self._index: VectorIndex | None = None
        self._index_keeper: IndexKeeper | None = None
        self._paths: dict[str, str] | None = None
        self._image_count: tuple[tuple[int, str | None], int] | None = None  # (store version, last update), count
        if self.catalog.journal.has_pending():
            with suppress(WorkspaceBusyError), self._exclusive():  # busy: its holder recovers them
                FileActions(self.catalog, self.root).recover()

    def __repr__(self) -> str:
        return f"Library({str(self.root)!r}, model={self._model_text!r}, index={self.index_name!r})"

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._index_keeper is not None:
            self._close_index()  # the finalizer: closes the index once, and no more at exit
            self._index_keeper = None
        self._index = None
        self.catalog.close()

    # -- model, store, index ----------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:
            self._model_text = self._model_text or default_model()
            self._spec = parse_model_spec(self._model_text)
        return self._spec

    @property
    def embedder(self) -> Embedder:
        """The loaded model (loaded on first use)."""
        if self._embedder is None:
            self._embedder = Embedder(self.spec, device=self._device, batch_size=self._batch_size)
        return self._embedder

    @property
    def store(self) -> EmbeddingStore:
        if self._store is None:
            identity = self.spec.identity()
            dim = self.catalog.embeddings.model_dim(identity) or self.embedder.dim
            self._store = EmbeddingStore(self.catalog, self._model_folder(), identity, self.spec.text, dim)
        return self._store

    def _model_folder(self) -> Path:
        return self.workspace / "models" / slug(self.spec.identity())

    @property
    def index(self) -> VectorIndex:
        """The vector index, brought in line with the embedding store (see :mod:`picsift.index.sync`)."""
        if self._index_keeper is None:
            options = dict(self.index_options)
            path = None
            if self.index_name == "qdrant":
                options.setdefault("collection", f"picsift_{slug(self.spec.identity())}")
                if not options.get("url"):
                    path = self._model_folder() / "qdrant"
                    _open_only_if_signed(path)
            elif self.index_name != "exact":  # exact rebuilds from the store faster than it reloads
                path = self._model_folder() / self.index_name
            if self.index_name == "qdrant-edge":  # 512 B per vector: searches rescore its candidates from the store
                options.setdefault("datatype", "uint8")
            state_file = self._model_folder() / f"{self.index_name}.state.json"
            # qdrant's local mode keeps pickles: sign what we wrote, so that only our own storage is ever opened
            on_save = signing.sign_folder if self.index_name == "qdrant" else None
            self._index_keeper = IndexKeeper(self.index_name, self.store.dim, path, state_file, options, on_save)
            # A library nobody closes still closes its index at exit, while Python can still import: qdrant's
            # local client otherwise closes itself during interpreter shutdown and prints an ImportError.
            self._close_index = weakref.finalize(self, self._index_keeper.close)
        self._index = self._index_keeper.sync(self.store)
        return self._index

    # -- updating ---------------------------------------------------------------------------------
    def update(
        self, *, progress: bool = True, on_progress: ProgressCallback | None = None, reembed: bool = False,
        ray: str | None = None, ray_send_files: bool = False,
    ) -> UpdateReport:
        """Embed new and changed images, forget removed ones, skip unchanged ones.

        Safe to interrupt: run it again and it finishes the job. Only one process updates a
        workspace at a time; a second one gets :class:`~picsift.errors.WorkspaceBusyError`.

        Parameters
        ----------
        reembed
            Confirm a model change: when this library's model differs from the one the workspace was
            last updated with, images already embedded with that one would be embedded again (costly),
            so ``update`` refuses with :class:`~picsift.errors.ModelMismatchError` (saying how many and
            how long) unless ``reembed=True``. Each model keeps its own embeddings: switching back to a
            model whose embeddings are still there only embeds what is new, without confirmation.
        ray
            Embed the images on a Ray cluster (``pip install "picsift[ray]"``): ``"auto"`` for ``ray.init()``
            defaults, or a cluster address (``"HOST:PORT"``) to join. Reading, decoding and embedding run on
            the cluster's workers (one model per actor; with GPUs, a GPU per model actor and CPU actors on
            every node decode for them); this process commits the results as a local update does (see
            :mod:`picsift.core.ray_embed`).
        ray_send_files
            With ``ray``: the workers cannot see the image folder at the same path, so tasks on this
            machine's node read the files and send their bytes (default: the workers read them).
        """
        resume = "run the update again: it continues where it stopped"
        with workspace_space(self.workspace, resume), self._exclusive(), announce_update(self.workspace) as announce:
            FileActions(self.catalog, self.root).recover()
            self.check_model(reembed=reembed)
            self.store.remove_stray_files()
            with self.catalog.transaction() as db:  # now, so that even a killed first update names its model
                self._record_settings(db)
                self.catalog.set_meta(UNFINISHED_KEY, repr(time.time()), db)  # until it finishes

            def report_progress(done: int, total: int) -> None:
                announce(done, total)
                if on_progress is not None:
                    on_progress(done, total)

            remote = None
            if ray is not None:
                from .core import ray_embed

                remote = partial(ray_embed.embed_on_ray, ray, self.spec.text, self.root,
                                 batch_size=self._batch_size, send_files=ray_send_files,
                                 preprocess=self.embedder.preprocess, image_size=self.embedder.image_size)
            report = run_update(self.catalog, self.store, self.embedder, self.root, [self.workspace],
                                progress=progress, on_progress=report_progress,
                                frames_dir=self.workspace / "frames", video_every=self.video_every, remote=remote)
            with self.catalog.transaction() as db:
                self._record_settings(db)
                self.catalog.set_meta("last_update", repr(time.time()), db)
                self.catalog.set_meta("last_report", report.summary(), db)
                self.catalog.delete_meta(UNFINISHED_KEY, db)
            self._paths = None
            if self._index is not None or len(self.store):
                _ = self.index  # sync now, so the first search is fast
            return report

    def _record_settings(self, db: Any) -> None:
        """The model, index and video sampling this workspace is updated with (read when they are not given)."""
        self.catalog.set_meta("video_every", repr(self.video_every), db)
        self.catalog.set_meta("model", self.spec.text, db)
        self.catalog.set_meta("model_identity", self.spec.identity(), db)
        self.catalog.set_meta("index", self.index_name, db)

    def check_model(self, *, reembed: bool = False) -> None:
        """Refuse a model change that would embed images again, unless ``reembed`` confirms it.

        Raises :class:`~picsift.errors.ModelMismatchError` naming the number of images, an estimate
        of the time (measured on a few of them with the new model) and how to confirm.
        """
        previous_spec = self.catalog.get_meta("model")
        if not previous_spec:
            return
        previous = self.catalog.get_meta("model_identity") or self.catalog.embeddings.latest_identity(previous_spec)
        identity = self.spec.identity()
        if previous is None or previous == identity:
            return
        again = self.catalog.embeddings.missing_from(identity, previous)
        if not again:  # back to a model whose embeddings are all there: only new images get embedded
            return
        if reembed:
            log.warning("model changed from %s to %s: embedding %d images again (the embeddings of %s are kept)",
                        previous_spec, self.spec.text, len(again), previous_spec)
            return
        if previous_spec == self.spec.text:  # the same name, new weights (e.g. a new picsift-offline)
            raise ModelMismatchError(
                f"this workspace was embedded with an earlier version of {previous_spec}; the installed one "
                f"embeds {len(again)} images again{self._estimate(again)} (the earlier embeddings are kept). "
                f"Confirm with update(reembed=True) (CLI: picsift update FOLDER --reembed)"
            )
        raise ModelMismatchError(
            f"this workspace was embedded with {previous_spec}; switching to {self.spec.text} embeds "
            f"{len(again)} images again{self._estimate(again)} (the embeddings of {previous_spec} are kept). "
            f"Confirm with update(reembed=True) (CLI: picsift update FOLDER --model {self.spec.text} --reembed), "
            "or open the library without model= to keep the current model"
        )

    def _estimate(self, ids: list[str], sample: int = 8) -> str:
        """", about 3 min at 120 images/s measured just now", from embedding a few of ``ids``."""
        try:
            paths = self.catalog.paths_for(ids[:sample])
            embedder = self.embedder
            started: float | None = None
            for attempt in range(2):  # the first pass warms the model up and is not timed
                started = time.perf_counter() if attempt else None
                images = [decode_image(read_regular_file(self.root / p)[0], embedder.image_size).image
                          for p in paths.values()]
                if not images:
                    return ""
                embedder.embed_images(images if attempt else images[:1])
            assert started is not None
            rate = len(paths) / max(time.perf_counter() - started, 1e-6)
        except Exception as e:  # an estimate is a courtesy; the refusal stands without it
            log.debug("no time estimate for re-embedding: %s", e)
            return ""
        seconds = len(ids) / rate
        return f", about {_duration(seconds)} at {rate:.1f} images/s measured just now"

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the workspace lock: one process at a time updates it or acts on its files."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.workspace / "update.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout as e:
            raise WorkspaceBusyError(
                f"another process is updating {self.workspace} or acting on its files; wait for it to finish"
            ) from e
        try:
            yield
        finally:
            lock.release()

    def paths(self, ids: Sequence[str]) -> dict[str, Path]:
        """Absolute path of each id a file holds (the first file, for duplicated content)."""
        found = self._id_paths(list(ids))
        return {i: self.root / found[i] for i in ids if i in found}

    def _id_paths(self, ids: list[str]) -> dict[str, str]:
        """Paths of these ids: looked up one by one for a page of results, from a full map for many."""
        if self._paths is None and len(ids) <= 20_000:
            return self.catalog.paths_for(ids)
        if self._paths is None:
            self._paths = self.catalog.paths_by_id()
        return self._paths

    @property
    def metadata(self) -> Metadata:
        """Datasets, tags, objects, labelling jobs, issues, filters and formats: see :mod:`picsift.labels.metadata`."""
        return Metadata(self.catalog, self.root)

    # -- maps, and what front ends (the widgets) read --------------------------------------------
    @property
    def maps(self) -> Maps:
        """2D/3D maps of the embedded images (PCA, UMAP) and their clusters (:class:`~picsift.analysis.maps.Maps`)."""
        return Maps(lambda: self.store.snapshot(), self.store.folder / "projections")

    def clusters(self, k: int | None = None, *, ids: Sequence[str] | np.ndarray | None = None,
                 seed: int = 0) -> np.ndarray | None:
        """The k-means cluster of each embedded image (or of ``ids``, in their order): :meth:`Maps.clusters`."""
        return self.maps.clusters(k, ids=ids, seed=seed)

    def image_info(self, image_id: str) -> dict[str, Any]:
        """Size in bytes, width and height of an image (its first file), each None when unknown."""
        return dict(zip(("bytes", "width", "height"), self.catalog.file_table.size_of(image_id), strict=True))

    def activity(self) -> tuple[dict[str, Any] | None, str | None]:
        """Cheap to poll: the update running now (any process; see ``status()["progress"]``) and when the
        last one finished. A change means :meth:`status` has news."""
        return running_update(self.workspace), self.catalog.get_meta("last_update")

    def collection_rows(self) -> list[tuple[str, dict[str, Any], int]]:
        """Every collection, the temporary one included, oldest first: (name, recipe, size)."""
        rows = self.catalog.collection_names()
        return [(name, json.loads(recipe), int(size)) for name, _created, recipe, size in rows]

    def collection_summary(self, name: str) -> tuple[dict[str, Any], int]:
        """One collection's recipe and size, without reading its images (KeyError if there is none)."""
        return self.catalog.collection_summary(name)

    #: Values the widgets offer as choices (each module's own list).
    TEMPORARY = TEMPORARY
    SAMPLING_METHODS = SAMPLING_METHODS
    EXPORT_FORMATS = EXPORT_FORMATS
    JOB_STATUSES = JOB_STATUSES
    describe_recipe = staticmethod(describe_recipe)

    # -- inspecting -------------------------------------------------------------------------------
    def images(self) -> pd.DataFrame:
        """Every file in the catalog: path, id, size, width, height, error."""
        df = pd.DataFrame(self.catalog.file_table.listing(), columns=["path", "id", "size", "width", "height", "error"])
        df["path"] = [str(self.root / p) for p in df["path"]]
        return df

    def skipped(self) -> list[tuple[str, str]]:
        """Files that could not be embedded, with the reason, by path: files that could not be read or
        decoded, and what the last update's scan could not look at (names that are not UTF-8, broken
        symlinks, special files, unreadable folders)."""
        return sorted(self.catalog.errors() + self.catalog.scan_problems())

    def status(self) -> dict[str, Any]:
        """Counts and settings, JSON-ready. Does not load the model.

        ``ready`` means complete: every image found is embedded and no update (in any process) is
        still embedding; ``searchable`` means some are (a search then says it is partial). While an
        update runs, ``updating`` is True and ``progress`` holds ``{done, total}`` files once the scan
        found what to read; ``pending`` counts images not embedded yet, including those the running
        update has still to read. ``interrupted``: the last update did not finish (it was killed or
        failed), so images it had still to read are not counted yet; the next update finishes the job.
        ``enabled``, ``interval``, ``watch``: automatic updates (see :func:`picsift.enable`);
        ``last_update``: when the last update finished (epoch seconds).
        """
        files = self.catalog.file_table.counts()
        unique = self.catalog.file_table.image_count()
        models = self.catalog.embeddings.counts_by_spec()
        model = self._model_text
        spec = self.spec if model else None  # parsed once per Library: a checkpoint is hashed once
        embedded = 0
        if spec is not None:
            embedded = self.catalog.embeddings.count(spec.identity())
        running = running_update(self.workspace)
        pending = max(0, unique - embedded, _remaining(running))
        meta: dict[str, Any] = self.catalog.meta_values(
            ["enabled", "interval", "watch", "last_update", "last_report", UNFINISHED_KEY])
        interrupted = UNFINISHED_KEY in meta and running is None
        automatic = {
            "enabled": meta.get("enabled") == "1",
            "interval": float(meta["interval"]) if meta.get("interval") else None,
            "watch": meta.get("watch") == "1",
            "last_update": float(meta["last_update"]) if meta.get("last_update") else None,
            "last_report": meta.get("last_report"),
            "updating": running is not None,
            "interrupted": interrupted,
        }
        if running is not None and running.get("total") is not None:
            automatic["progress"] = {"done": int(running["done"]), "total": int(running["total"])}
        return {
            "root": str(self.root),
            "workspace": str(self.workspace),
            "model": model,
            "model_label": spec.label() if spec else None,
            "index": self.index_name,
            "files": files[0],
            "images": unique,
            "embedded": embedded,
            "pending": pending,
            "skipped": files[2] + len(self.catalog.scan_problems()),
            "videos": self.catalog.videos.counts()[0],
            "video_frames": self.catalog.videos.counts()[1],
            "ready": bool(model) and embedded > 0 and pending == 0 and not interrupted,
            "searchable": bool(model) and embedded > 0,
            "models": {spec: count for spec, count in models},
            "collections": self.collection_names(),
            **automatic,
        }

    def _pending(self, embedded: int) -> int:
        """Images not embedded yet with this model: in the catalog, or still to be read by a running update."""
        return max(0, self._catalogued_images() - embedded, _remaining(running_update(self.workspace)))

    def _catalogued_images(self) -> int:
        """Distinct images in the catalog. Every search asks (110 ms at 1M files), so the count is kept until
        the store or the catalog's files change: an update (which records ``last_update``) or a delete."""
        key = (self.store.version, self.catalog.get_meta("last_update"))
        if self._image_count is None or self._image_count[0] != key:
            self._image_count = (key, self.catalog.file_table.image_count())
        return self._image_count[1]


def _open_only_if_signed(folder: Path) -> None:
    """Delete a local index folder this user's picsift did not sign, before anything reads it.

    qdrant's local mode unpickles its points when it opens a folder, so a crafted folder in a shared
    workspace would run code; the index is only an accelerator, rebuilt from the embedding store.
    """
    if not (folder.exists() or folder.is_symlink()) or signing.verify_folder(folder):
        return
    log.warning("%s was not written by picsift for this user (or an update stopped while writing it): "
                "rebuilding it from the embedding store", folder)
    if folder.is_symlink() or not folder.is_dir():
        folder.unlink()
    else:
        shutil.rmtree(folder)
    signing.signature_file(folder).unlink(missing_ok=True)


def _remaining(running: dict[str, Any] | None) -> int:
    """Files a running update has still to read (0 while it scans: nothing is known to be missing yet)."""
    if running is None or running.get("total") is None:
        return 0
    return max(0, int(running["total"]) - int(running["done"]))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"

