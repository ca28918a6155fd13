"""``qdrant``: qdrant-client, against a Qdrant server or cluster (``url=``) or in local mode.

Local mode (``path`` on disk, or ``location=":memory:"``) speaks the same API as a server but is a
pure-Python brute force, fine for small libraries. For millions of images, run a Qdrant server or
cluster and pass its URL; picsift keeps its embedding store locally either way.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from .base import VectorIndex, check_vectors

log = logging.getLogger(__name__)

_BATCH = 512


def _point_id(image_id: str) -> str:
    return str(uuid.UUID(hex=image_id))


def _image_id(point_id: Any) -> str:
    return uuid.UUID(str(point_id)).hex


class QdrantIndex(VectorIndex):
    """A Qdrant collection of image vectors (cosine distance), point ids derived from image ids.

    Parameters
    ----------
    url
        A Qdrant server or cluster, e.g. ``http://localhost:6333``. Without it, local mode stores
        the collection under ``path`` (or in memory when ``path`` is None).
    collection
        Collection name; defaults to ``picsift``.
    api_key
        For servers that require one.
    """

    name = "qdrant"

    def __init__(
        self, dim: int, path: Path | None = None, *, url: str | None = None, collection: str = "picsift",
        api_key: str | None = None, **options: Any,
    ):
        super().__init__(dim, path)
        self.url = url
        self.collection = collection
        if url:
            self.client = QdrantClient(url=url, api_key=api_key, **options)
        elif self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self.client = QdrantClient(path=str(self.path), **options)
        else:
            self.client = QdrantClient(location=":memory:", **options)
        if not self.client.collection_exists(collection):
            self.client.create_collection(
                collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
            )
        else:
            size = self.client.get_collection(collection).config.params.vectors.size  # type: ignore[union-attr]
            if size != dim:
                raise ValueError(f"qdrant collection {collection!r} holds {size}-d vectors, not {dim}-d")

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = check_vectors(ids, vectors, self.dim)
        for start in range(0, len(ids), _BATCH):
            chunk = list(ids[start : start + _BATCH])
            self.client.upsert(
                self.collection,
                points=models.Batch(
                    ids=[_point_id(i) for i in chunk],
                    vectors=vectors[start : start + _BATCH].tolist(),
                ),
                wait=True,
            )

    def remove(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), _BATCH):
            chunk: list[Any] = [_point_id(i) for i in ids[start : start + _BATCH]]
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=chunk), wait=True)

    def search(
        self, query: np.ndarray, k: int, restrict_to: Collection[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        query_filter = None
        if restrict_to is not None:
            if not restrict_to:
                return [], np.zeros(0, np.float32)
            query_filter = models.Filter(must=[models.HasIdCondition(has_id=[_point_id(i) for i in restrict_to])])
        if k <= 0:
            return [], np.zeros(0, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode's "use a server above 20k points"
            response = self.client.query_points(
                self.collection,
                query=np.asarray(query, np.float32).reshape(-1).tolist(),
                limit=k,
                query_filter=query_filter,
                with_payload=False,
                search_params=models.SearchParams(hnsw_ef=max(128, k)),
            )
        points = response.points
        return [_image_id(p.id) for p in points], np.array([p.score for p in points], dtype=np.float32)

    def ids(self) -> set[str]:
        found: set[str] = set()
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection, limit=10_000, offset=offset, with_payload=False, with_vectors=False
            )
            found.update(_image_id(p.id) for p in points)
            if offset is None:
                return found

    def __len__(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    @property
    def persistent(self) -> bool:
        return self.url is not None or self.path is not None

    def close(self) -> None:
        self.client.close()
