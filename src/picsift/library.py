"""The :class:`Library`: one folder of images, its workspace, its embeddings and its index."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .analysis.graph_service import Neighbours
from .analysis.health.mistakes import LabelChecks
from .analysis.health.objects import ObjectLabelChecks, object_findings
from .analysis.health.report import Health, HealthReport
from .analysis.maps import Maps
from .analysis.object_views import Objects
from .analysis.queries import Queries
from .analysis.sampling import SAMPLING_METHODS
from .analysis.verbs import Analysis
from .core.activity import announce_update, running_update
from .core.files import FileActions, Files
from .core.location import open_location
from .core.lookups import ImageLookups
from .core.objects import LiveObjects
from .core.store import EmbeddingStore
from .core.update import ProgressCallback, UpdateReport
from .core.video import DEFAULT_EVERY, Videos
from .core.workspace import (
    UNFINISHED_KEY,
    check_model,
    default_model,
    estimate_embedding,
    exclusive,
    remaining,
    update_workspace,
    workspace_status,
)
from .deprecated import moved_attribute
from .embedding.openclip import Embedder, refuse_unnamed_model
from .embedding.spec import ModelSpec
from .errors import PicsiftError, WorkspaceBusyError, workspace_space
from .index import VectorIndex, backend_class
from .index.engine import ModelEngine
from .index.layout import begin_update, finish_update, read_choice
from .labels.export import EXPORT_FORMATS, Export
from .labels.metadata import JOB_STATUSES, Metadata
from .query.collections import TEMPORARY, Collections, describe_recipe
from .query.filters import Filter
from .query.imageset import ImageSet
from .query.options import SearchOptions
from .query.region_search import image_sizes
from .query.search import ImageRef, Searcher

log = logging.getLogger(__name__)

__all__ = ["UNFINISHED_KEY", "Library", "default_model"]


class Library:
    """A folder of images made searchable.

    Parameters
    ----------
    root
        The image folder (scanned recursively), or a URL fsspec understands: ``"s3://bucket/prefix"``,
        ``"gs://bucket/prefix"``, an ``"https://..."`` page listing its images, any fsspec URL
        (``pip install "picsift[cloud]"``; see :mod:`picsift.core.storage`). Results' ``path`` is then the object's URL.
    workspace
        Where picsift keeps its catalog, embeddings and index; defaults to ``ROOT/.picsift`` (for a URL: a folder
        named after it in the user's cache, announced once). Point it elsewhere for read-only image folders.
    storage_options
        For a URL: the file system's options (credentials, ``endpoint_url``...), as fsspec takes them. They stay in
        memory: never written to the workspace or shown.
    model
        A model spec (see :mod:`picsift.embedding.spec`). Defaults to the model this workspace was
        last updated with when that is picsift's own or open_clip's pretrained ``ARCH:TAG`` (any other must
        be named: :class:`~picsift.errors.UnnamedModelError`), else :func:`default_model`.
    index
        ``"ivf"`` (the default: picsift's inverted lists over the store's one-byte score codes, candidates rescored
        exactly from the store), ``"qdrant-edge"`` (Qdrant's engine in-process over one byte per dimension),
        ``"hnsw"`` (hnswlib, its own float32 copy), ``"qdrant"`` (a Qdrant server) or ``"exact"``; see
        :mod:`picsift.index`. Defaults to the backend this workspace was last updated with; one it
        got by default follows the default on the next :meth:`update` (:mod:`picsift.index.layout`).
    index_options
        Passed to the backend, e.g. ``{"url": "http://qdrant:6333"}`` for a Qdrant server.
    device, batch_size
        Passed to :class:`~picsift.embedding.Embedder`.
    video_every
        Videos under ``root`` are sampled every this many seconds, and on scene changes (see
        :mod:`picsift.core.video`). Defaults to the value this workspace was last updated with, else 2.
    regions
        Updates also embed 13 fixed regions of every image, for ``search(..., regions=True)`` (see
        :mod:`picsift.core.regions`; about 14x the embedding work). Defaults to what this workspace was last
        updated with, else False.

    Attributes
    ----------
    neighbours
        The neighbour graph every all-pairs analysis reads (:class:`~picsift.analysis.graph_service.Neighbours`).
    object_neighbours
        The labelled objects' neighbour graph (exact; ``models/<model>/objects/neighbours.npz``), which
        ``label_mistakes("objects")`` reads; kept fresh by :meth:`update` as objects come, go or move.
    collections, labels, files, videos
        Saved collections (:class:`~picsift.query.collections.Collections`); datasets, tags, objects, jobs and
        issues (:class:`~picsift.labels.metadata.Metadata`); copying, moving and deleting images
        (:class:`~picsift.core.files.Files`); video frames (:class:`~picsift.core.video.Videos`).
    queries
        Every query, pure (:class:`~picsift.analysis.queries.Queries`): the verbs run them, then :meth:`remember`.

    Examples
    --------
    >>> lib = Library("~/photos")
    >>> lib.update()
    >>> lib.search("a dog on a beach", limit=20).df
    """

    def __init__(
        self, root: str | os.PathLike[str], *, workspace: str | os.PathLike[str] | None = None,
        model: str | None = None, index: str | None = None, index_options: dict[str, Any] | None = None,
        device: str | None = None, batch_size: int | None = None, video_every: float | None = None,
        storage_options: dict[str, Any] | None = None,
        regions: bool | None = None,
    ):
        self.root, self.workspace, self.catalog = open_location(root, workspace, storage_options)
        self._index_choice = read_choice(self.catalog, index)  # a default backend follows the default at update
        self.index_name = self._index_choice.name
        backend_class(self.index_name)  # fail now, listing the valid names, not at the first search
        self._unnamed_model = None if model else self.catalog.get_meta("model")  # checked before it is used
        self._engine = ModelEngine(self.catalog, self.workspace, model or self._unnamed_model,
                                   self.index_name, index_options or {}, device, batch_size)
        self.video_every = float(video_every or self.catalog.get_meta("video_every") or DEFAULT_EVERY)
        if not self.video_every > 0:
            raise PicsiftError(f"video_every must be a positive number of seconds, got {video_every!r}")
        self._lookups = ImageLookups(self.catalog)
        self._regions = regions
        self._remembered: ImageSet | None = None
        self.collections = Collections(self.catalog, lambda images: self.queries.bind(images), lambda: self.queries)
        self._live_objects = LiveObjects(self.catalog)  # the objects labelled now, counted again after a change
        self.videos = Videos(self.catalog, self.root)
        self.files = Files(self.catalog, self.root, self._exclusive, lambda images: self.queries.ids(images),
                           self._lookups.forget)
        self.labels = Metadata(self.catalog, self.root, filter=lambda *f, within: self.filter(*f, within=within).ids
                               .tolist(), export=self.export)
        searcher = Searcher(lambda: self.store, lambda: self.embedder, lambda: self.index, self.root, self._pending,
                            lambda: self.spec.text, lambda: self.spec.label(),
                            object_store=lambda: self._engine.object_store(create=False),
                            live_objects=self._live_objects,
                            region_store=lambda: self._engine.region_store(create=False),
                            image_sizes=lambda ids: image_sizes(self.catalog, ids))
        self.neighbours = Neighbours(lambda: self.store, lambda: self.index, self.index_name, self.workspace)
        analysis = Analysis(lambda: self.store, lambda: self.index, self.index_name, self.root, lambda: self.spec.text,
                            self.labels.labelled, lambda progress: self.neighbours.graph(progress=progress))
        checks = LabelChecks(lambda: self.store, lambda: self.neighbours.graph(), self.labels,
                             lambda prompts: self.embedder.embed_text(prompts), lambda: self.spec.text)
        object_checks = ObjectLabelChecks(lambda: self._engine.object_store(create=False),
                                          lambda: self.object_neighbours.graph(), self._live_objects,
                                          self.labels, lambda prompts: self.embedder.embed_text(prompts),
                                          lambda: self.spec.text)
        self._object_checks = object_checks
        #: The labelled objects' neighbour graph (exact; beside the object store), kept fresh by update.
        self.object_neighbours = Neighbours(object_checks.object_store, lambda: self.index, "exact", self.workspace)
        self.queries = Queries(self.catalog, searcher, analysis, self.collections, self.videos, self.paths,
                               lambda: self.spec.text, checks, object_checks, self._live_objects)
        self._export = Export(self.catalog, self.labels, lambda images: self.queries.image_set(images).df)
        #: The labelled objects as front ends see them (:class:`~picsift.analysis.object_views.Objects`).
        self.objects = Objects(self._live_objects, lambda: self._engine.object_store(create=False),
                               lambda within: self.queries.image_set(within).ids)
        if self.catalog.journal.has_pending():
            with suppress(WorkspaceBusyError), self._exclusive():  # busy: its holder recovers them
                FileActions(self.catalog, self.root).recover()

    def __repr__(self) -> str:
        return f"Library({str(self.root)!r}, model={self._engine.model_text!r}, index={self.index_name!r})"

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.close()
        self.catalog.close()

    # -- model, store, index ----------------------------------------------------------------------
    def _model(self, *, loading: bool = False) -> ModelEngine:
        """The engine, once its model is one the user named or one a workspace may choose (SECURITY.md)."""
        if self._unnamed_model is not None:
            refuse_unnamed_model(self._unnamed_model)
            if loading:  # now that open_clip is imported anyway: does it ship these weights?
                refuse_unnamed_model(self._unnamed_model, self._engine.spec)
        return self._engine

    @property
    def spec(self) -> ModelSpec:
        """The parsed model spec (the workspace's model, else :func:`default_model`)."""
        return self._model().spec

    @property
    def embedder(self) -> Embedder:
        """The loaded model (loaded on first use)."""
        return self._model(loading=True).embedder

    @property
    def store(self) -> EmbeddingStore:
        """This model's embedding store (:class:`~picsift.core.store.EmbeddingStore`)."""
        return self._model().store

    @property
    def index(self) -> VectorIndex:
        """The vector index, brought in line with the embedding store (see :mod:`picsift.index.sync`)."""
        return self._model().index

    # -- updating ---------------------------------------------------------------------------------
    def update(
        self, *, progress: bool = True, on_progress: ProgressCallback | None = None, reembed: bool = False,
        ray: str | None = None, ray_send_files: bool = False, objects: bool = True,
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
            Embed the images on a Ray cluster (``pip install "picsift[ray]"``): a cluster address (``"HOST:PORT"``)
            to join, or ``"auto"`` for the one ``ray.init()`` finds (``RAY_ADDRESS``, or a running ``ray start``
            cluster of this machine; picsift starts none). Every node of it is trusted (SECURITY.md). Reading,
            decoding and embedding run on the cluster's workers (one model per actor; with GPUs, a GPU per model
            actor and CPU actors on every node decode for them); this process commits the results as a local
            update does (see :mod:`picsift.core.ray_embed`). A library over a URL: the workers read the objects
            from it, with the storage options (held in memory only).
        ray_send_files
            With ``ray``: the workers cannot see the image folder (or reach the URL), so tasks on this
            machine's node read the files and send their bytes (default: the workers read them).
        objects
            Embed labelled objects' crops (:mod:`picsift.core.objects`; ``report.objects``, degenerate boxes in
            ``report.objects_skipped``); ``False`` embeds none but still drops vectors of objects that are gone.
        """
        resume = "run the update again: it continues where it stopped"
        with workspace_space(self.workspace, resume), self._exclusive(), announce_update(self.workspace) as announce:
            self._index_choice = begin_update(self.catalog, self._index_choice)
            if self._index_choice.name != self.index_name:  # the default moved on: this update moves the index
                self._use_index(self._index_choice.name)
            report = update_workspace(
                self.catalog, self.root, self.workspace, lambda: self.spec, lambda: self.store, lambda: self.embedder,
                announce, reembed=reembed, index_name=self.index_name, video_every=self.video_every,
                progress=progress, on_progress=on_progress, ray=ray, ray_send_files=ray_send_files,
                batch_size=self._engine.batch_size, object_store=self._engine.object_store, objects=objects,
                region_store=self._engine.region_store, regions=self.regions)
            self._lookups.forget()
            if self._engine.index_opened or len(self.store):
                self._model().sync_index(room_fallback=False)  # now, so the first search is fast
            finish_update(self.catalog, self.workspace, self.index_name)
            if len(self.store):
                self.neighbours.refresh(progress=progress)  # new images enter it, removed ones leave it
            if self._object_checks.has_objects():
                self.object_neighbours.refresh(progress=progress)  # and objects theirs
            return report

    @property
    def regions(self) -> bool:
        """Whether updates embed image regions: as given to the constructor, else as the last update did."""
        return self._regions if self._regions is not None else self.catalog.get_meta("regions") == "1"

    def _use_index(self, name: str) -> None:
        self.index_name = self.neighbours.index_name = self.queries.analysis.index_name = name
        self._engine.switch_index(name)

    def check_model(self, *, reembed: bool = False) -> None:
        """Refuse a model change that would embed images again, unless ``reembed`` confirms it.

        Raises :class:`~picsift.errors.ModelMismatchError` naming the number of images, an estimate
        of the time (measured on a few of them with the new model) and how to confirm.
        """
        check_model(self.catalog, self.spec, lambda ids: estimate_embedding(self.catalog, self.root,
                                                                            lambda: self.embedder, ids),
                    reembed=reembed)

    def _exclusive(self) -> AbstractContextManager[None]:
        """Hold the workspace lock: one process at a time updates it or acts on its files."""
        return exclusive(self.workspace)

    def paths(self, ids: Sequence[str]) -> dict[str, Path]:
        """Absolute path of each id a file holds (the first file, for duplicated content)."""
        found = self._lookups.paths(list(ids))
        return {i: self.root / found[i] for i in ids if i in found}

    # -- the verbs people use most ----------------------------------------------------------------
    def search(
        self, text: str | Sequence[str], *, limit: int | None = 100, min_score: float | None = None,
        max_score: float | None = None, negative_text: str | Sequence[str] | None = None,
        negative_images: Sequence[ImageRef] | None = None, negative_weight: float = 0.5, combine: str = "mean",
        within: Any = None, distribution: bool = True, objects: bool = False, regions: bool = False,
    ) -> ImageSet:
        """Images matching a text prompt (or several prompts, combined like image references), remembered as
        the temporary collection.

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
            Search only these images: a collection's name, an image set, a DataFrame with an ``id`` column or
            image ids (see :class:`~picsift.query.scope.Scope`).
        distribution
            Compute every image's score exactly (for :meth:`ImageSet.histogram`). ``False`` asks the
            index for the top results only, which is faster for very large libraries.
        objects
            Search the labelled objects' crops: ``.df`` rows carry ``id`` (the object's), ``image_id``, ``path``,
            ``class``, ``box`` (``[x, y, w, h]`` px), ``score`` (see :mod:`picsift.query.object_search`).
        regions
            Score each image by its whole picture or its best region, whichever is higher (needs an update with
            ``regions=True``): ``.df`` adds ``box`` (``[x, y, w, h]`` px of the part that scored) and
            ``image_score`` (see :mod:`picsift.query.region_search`).
        """
        options = SearchOptions.of(limit, min_score, max_score, negative_text, negative_images, negative_weight,
                                   combine, distribution, objects, regions)
        return self.remember(self.queries.search(text, options, within))

    def similar(
        self, images: ImageRef | Sequence[ImageRef], *, limit: int | None = 100, min_score: float | None = None,
        max_score: float | None = None, negative_text: str | Sequence[str] | None = None,
        negative_images: Sequence[ImageRef] | None = None, negative_weight: float = 0.5, combine: str = "mean",
        within: Any = None, distribution: bool = True, exclude_references: bool = False, objects: bool = False,
        regions: bool = False,
    ) -> ImageSet:
        """Images similar to one or several images: ids, paths or PIL images (see :meth:`search`).

        With ``exclude_references`` the references are left out; with ``objects`` they may be object ids.
        """
        options = SearchOptions.of(limit, min_score, max_score, negative_text, negative_images, negative_weight,
                                   combine, distribution, objects, regions)
        return self.remember(self.queries.similar(images, options, within, exclude_references))

    def sample(
        self, n: int = 50, *, method: str = "random", clusters: int | None = None, seed: int = 0, within: Any = None,
        exclude: Any = None, exclude_labelled: bool = False,
        uncertainty: Mapping[str, float] | Sequence[float] | np.ndarray | None = None, pool: int | None = None,
    ) -> ImageSet:
        """A diverse sample of ``n`` images, remembered as the temporary collection (see
        :mod:`picsift.analysis.sampling`).

        Parameters
        ----------
        method
            ``"random"`` (evenly across clusters), ``"centroids"``, ``"kcenter"`` or ``"typical"``.
        clusters
            Number of k-means clusters (default: ``sqrt(n_scope / 2)`` for random, ``n`` otherwise).
        within
            Sample only these images (a collection's name, an image set, ids...; see :meth:`search`).
        exclude, exclude_labelled
            Images already labelled or sampled (the same kinds as ``within``; with ``exclude_labelled`` also
            every image with objects or image tags): never picked, and they count as covered.
        uncertainty
            Active learning: a score per image (higher = less certain), as ``{id: score}`` or aligned with
            ``within``; the sample is then drawn diversely among the ``pool`` most uncertain images.
        """
        return self.remember(self.queries.sample(n, method=method, clusters=clusters, seed=seed, within=within,
                                                 exclude=exclude, exclude_labelled=exclude_labelled,
                                                 uncertainty=uncertainty, pool=pool))

    def outliers(self, n: int = 50, k: int = 10, within: Any = None, save_as: str | None = None, *,
                 progress: bool = True) -> ImageSet:
        """The ``n`` images farthest from their ``k`` nearest neighbours, most isolated first, remembered (and,
        with ``save_as``, saved under that name). ``score`` is ``1 - mean cosine similarity`` to those neighbours;
        ``within`` limits the images (neighbours are found among them)."""
        return self._keep(self.queries.outliers(n, k, within, progress=progress), save_as)

    def near_duplicates(self, threshold: float | None = None, within: Any = None, save_as: str | None = None, *,
                        progress: bool = True) -> ImageSet:
        """Groups of near-identical images (cosine similarity >= ``threshold``, joined transitively), remembered
        (and, with ``save_as``, saved under that name).

        ``threshold`` defaults to the model's own (``ModelSpec.duplicate_threshold``, 0.95). Largest groups
        first; in each group the first image is the one the store holds first. The table has ``group`` (1, 2,
        ...) and ``similarity`` (to that first image, also the ``score``) columns.
        """
        threshold = self.spec.duplicate_threshold() if threshold is None else threshold
        return self._keep(self.queries.near_duplicates(threshold, within, progress=progress), save_as)

    def label_mistakes(self, field: str, *, limit: int | None = 50, within: Any = None) -> ImageSet:
        """Labelled images ranked most likely mislabelled first, remembered; no trained model needed.

        Parameters
        ----------
        field
            Where each image's class is: an image tag name (its values are the classes), ``"folder"`` (the first
            folder level under the root; ``"folder:2"`` the second), ``"objects"`` (each labelled object: rows are
            objects with ``image_id``, ``class``, ``box``, ``label_id``; see :mod:`picsift.analysis.health.objects`)
            or ``"objects:image"`` (each image's most frequent object class).
        limit
            The first so many (``None``: every labelled image, ranked).
        within
            Report only these images (a collection's name, an image set, ids...; with ``"objects"`` also object
            ids); every label still votes.

        Returns an :class:`ImageSet` whose ``df`` has ``given``, ``suggested``, ``score`` (0..1, higher = more
        likely wrong), ``issue`` (cleanlab's confident-learning verdict) and ``reason`` (in words). Each label is
        judged by its labelled neighbours in :attr:`neighbours` and by how well the class names fit as prompts;
        cleanlab turns both into issues and scores (see :mod:`picsift.analysis.health.signals`). Unlabelled
        images are left out (counted in ``recipe.info["unlabelled"]``).
        """
        return self.remember(self.queries.label_mistakes(field, limit=limit, within=within))

    def health(self, field: str | None = None, split: str | None = None) -> HealthReport:
        """A dataset health report: label mistakes (with ``field``, as :meth:`label_mistakes`), near duplicates,
        leaks across ``split`` (a tag or folder level, e.g. ``"folder"`` holding train/val/test), outliers,
        confusable classes, class balance, and per-image ``uniqueness`` and ``representativeness``.

        Returns a :class:`~picsift.analysis.health.report.HealthReport`: ``report.findings[name]`` is a
        ``Finding(count, description, images, details)`` whose ``images`` is an :class:`ImageSet`;
        ``report.images`` the per-image table; ``report.to_dict()`` JSON-ready; it renders as HTML in Jupyter.
        With labelled objects embedded, also ``object_mistakes``, ``duplicate_boxes`` and ``empty_boxes`` (their
        images are objects; see :mod:`picsift.analysis.health.objects`); ``field="objects"`` adds no image-level check.
        """
        checks = self.queries.label_checks
        assert checks is not None
        threshold = self.spec.duplicate_threshold()
        bind = lambda images: images.bound(self.queries)  # noqa: E731
        report = Health(lambda: self.neighbours.graph(), checks,
                        lambda: self.queries.near_duplicates(threshold, progress=False), bind
                        ).report(None if field == "objects" else field, split)
        found = object_findings(self._object_checks, bind)
        report.findings.update(found)
        report.summary["field"] = field
        if found:
            report.summary["objects"] = len(self._object_checks.object_store().snapshot())
        return report

    def _keep(self, images: ImageSet, save_as: str | None) -> ImageSet:
        if save_as is not None:
            images.save(save_as)  # first: a bad name fails before any write
        return self.remember(images)

    def filter(self, *filters: Filter, within: Any = TEMPORARY, save_as: str | None = None) -> ImageSet:
        """The images of ``within`` that pass every filter (AND), in ``within``'s order, with their scores.

        Parameters
        ----------
        filters
            Filters from :mod:`picsift.query.filters` (``Score``, ``ObjectCount``, ``ImageTag``...).
        within
            A collection's name (default: the temporary one, the last result), an image set (a search's
            every scored image, so ``Score`` sees the full distribution), a DataFrame, image ids, or
            ``None`` for the whole library.
        save_as
            Also save the result as this collection, with a recipe that can be re-run.
        """
        found = self.queries.filter(*filters, within=within)
        return found.save(save_as) if save_as is not None else found

    def collection(self, name: str = TEMPORARY) -> ImageSet:
        """A saved collection (or the temporary one: the last result remembered)."""
        return self.queries.collection(name)

    def remember(self, images: ImageSet) -> ImageSet:
        """Keep ``images`` as the temporary collection (what the app shows as the last result) and return it.

        The one place that writes the temporary collection: :meth:`search`, :meth:`similar`, :meth:`sample`,
        :meth:`outliers`, :meth:`near_duplicates` and the app call it; the queries below the library are pure.
        """
        self.collections.write_temporary(images)
        self._remembered = images
        return images

    @property
    def last(self) -> ImageSet | None:
        """The image set this library remembered last (None before the first), as it was returned."""
        return self._remembered

    def to_pandas(self, images: Any = TEMPORARY) -> pd.DataFrame:
        """One row per image with its labels: see :meth:`picsift.labels.export.Export.to_pandas`. ``images``: a
        collection's name (default: the temporary one), an image set, a DataFrame or image ids."""
        return self._export.to_pandas(images)

    def export(self, images: Any, out: str | os.PathLike[str], format: str) -> Path:
        """Write images as a table (``csv``, ``parquet``) or a labelled project (``coco``, ``yolo``,
        ``supervisely``): see :meth:`picsift.labels.export.Export.export`."""
        return self._export.export(images, out, format)

    def __getattr__(self, name: str) -> Any:
        return moved_attribute(self, name)  # a name that moved to a service, for one release

    # -- maps, and what front ends (the widgets) read --------------------------------------------
    @property
    def maps(self) -> Maps:
        """2D/3D maps of the embedded images (PCA, UMAP) and their clusters (:class:`~picsift.analysis.maps.Maps`)."""
        return Maps(lambda: self.store.snapshot(), self.store.folder / "projections",
                    knn=lambda: self.neighbours.graph().nearest())

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
        """Counts and settings, JSON-ready (``ready``, ``searchable``, ``pending``, ``updating``, ``progress``...:
        see :func:`picsift.core.workspace.workspace_status`). Does not load the model."""
        return workspace_status(self.catalog, self.workspace, self.root, self._engine.model_text, lambda: self.spec,
                                self.index_name, self.collections.names())

    def _pending(self, embedded: int) -> int:
        """Images not embedded yet with this model: in the catalog, or still to be read by a running update."""
        catalogued = self._lookups.image_count(self.store.version)
        return max(0, catalogued - embedded, remaining(running_update(self.workspace)))
