"""The model a library embeds with, its embedding store and the index kept in line with that store: each made
on first use (a library that only reads its status or collections never loads a model)."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from ..core.catalog import Catalog
from ..core.catalog.embeddings import OBJECTS_SUFFIX, REGIONS_SUFFIX
from ..core.store import EmbeddingStore
from ..core.workspace import default_model
from ..embedding.openclip import Embedder
from ..embedding.spec import ModelSpec, parse_model_spec, slug
from ..workspace_files import WorkspaceFiles
from .base import VectorIndex
from .sync import IndexKeeper, open_keeper


class ModelEngine:
    """Lazily: the model spec, the loaded :class:`~picsift.embedding.Embedder`, the
    :class:`~picsift.core.store.EmbeddingStore` and the synced :class:`~picsift.index.VectorIndex`.

    ``model_text`` None means: the default model (:func:`~picsift.core.workspace.default_model`), decided when
    first asked for.
    """

    def __init__(self, catalog: Catalog, workspace: Path, model_text: str | None, index_name: str,
                 index_options: dict[str, Any], device: str | None, batch_size: int | None):
        self.catalog, self.workspace, self.model_text = catalog, workspace, model_text
        self.index_name, self.index_options = index_name, index_options
        self.device, self.batch_size = device, batch_size
        self._spec: ModelSpec | None = None
        self._embedder: Embedder | None = None
        self._store: EmbeddingStore | None = None
        self._object_store: EmbeddingStore | None = None
        self._region_store: EmbeddingStore | None = None
        self._index: VectorIndex | None = None
        self._keeper: IndexKeeper | None = None

    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:
            self.model_text = self.model_text or default_model()
            self._spec = parse_model_spec(self.model_text)
        return self._spec

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.spec, device=self.device, batch_size=self.batch_size)
        return self._embedder

    @property
    def store(self) -> EmbeddingStore:
        if self._store is None:
            identity = self.spec.identity()
            dim = self.catalog.embeddings.model_dim(identity) or self.embedder.dim
            self._store = EmbeddingStore(self.catalog, self.model_folder(), identity, self.spec.text, dim,
                                         files=WorkspaceFiles(self.workspace))
        return self._store

    def object_store(self, create: bool = True) -> EmbeddingStore | None:
        """This model's store of object crops' vectors (``models/<model>/objects``; see :mod:`picsift.core.objects`);
        None when it has none and ``create`` is False."""
        if self._object_store is None:
            self._object_store = self._side_store("objects", OBJECTS_SUFFIX, create)
        return self._object_store

    def region_store(self, create: bool = True) -> EmbeddingStore | None:
        """This model's store of image regions' vectors (``models/<model>/regions``; see :mod:`picsift.core.regions`);
        None when it has none and ``create`` is False."""
        if self._region_store is None:
            self._region_store = self._side_store("regions", REGIONS_SUFFIX, create)
        return self._region_store

    def _side_store(self, folder: str, suffix: str, create: bool) -> EmbeddingStore | None:
        """A second store beside the image store (same model and dimension, its own identity ``+ suffix``)."""
        identity = self.spec.identity() + suffix
        if not create and self.catalog.embeddings.model_dim(identity) is None:
            return None
        return EmbeddingStore(self.catalog, self.model_folder() / folder, identity, self.spec.text + suffix,
                              self.store.dim, files=WorkspaceFiles(self.workspace))

    def model_folder(self) -> Path:
        return self.workspace / "models" / slug(self.spec.identity())

    @property
    def index_opened(self) -> bool:
        return self._index is not None

    @property
    def index(self) -> VectorIndex:
        """The vector index, brought in line with the embedding store (see :mod:`picsift.index.sync`)."""
        return self.sync_index(room_fallback=True)

    def sync_index(self, *, room_fallback: bool) -> VectorIndex:
        """:attr:`index`; with ``room_fallback`` False a disk too full for the index raises (an update says so)."""
        if self._keeper is None:
            self._keeper = open_keeper(self.index_name, self.store.dim, self.model_folder(),
                                       slug(self.spec.identity()), self.index_options)
            # An engine nobody closes still closes its index at exit, while Python can still import: qdrant's
            # local client otherwise closes itself during interpreter shutdown and prints an ImportError.
            self._close_index = weakref.finalize(self, self._keeper.close)
        self._index = self._keeper.sync(self.store, room_fallback=room_fallback)
        return self._index

    def switch_index(self, name: str) -> None:
        """Use backend ``name`` from now on (its index is built from the store when first asked for)."""
        self.close()
        self.index_name = name

    def close(self) -> None:
        if self._keeper is not None:
            self._close_index()  # the finalizer: closes the index once, and no more at exit
            self._keeper = None
        self._index = None
