"""Vector index backends, registered by name and imported only when chosen.

>>> from picsift.index import open_index, available_backends
>>> index = open_index("qdrant-edge", dim=512, path=None)

``ivf``, the default, is different: it holds no vectors but follows a store's snapshots (``attach``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from .base import VectorIndex

#: name -> (dotted path of the class, pip extra that provides its dependency)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "exact": ("picsift.index.exact:ExactIndex", None),
    "hnsw": ("picsift.index.hnsw:HnswIndex", "hnsw"),
    "ivf": ("picsift.index.ivf:IvfIndex", None),
    "qdrant": ("picsift.index.qdrant:QdrantIndex", "qdrant"),
    "qdrant-edge": ("picsift.index.qdrant_edge:QdrantEdgeIndex", "qdrant-edge"),
}
#: The compact layout: a float16 store, its one-byte score codes and picsift's inverted lists over them (``ivf``);
#: hnsw until 2026-12, then qdrant-edge until 2026-12-07 (see .layout).
DEFAULT_BACKEND = "ivf"


def available_backends() -> list[str]:
    return sorted(BACKENDS)


def backend_class(name: str) -> type[VectorIndex]:
    """The class registered under ``name``; unknown names raise ``ValueError`` listing valid ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown index backend {name!r}; valid backends: {', '.join(available_backends())}")
    target, extra = BACKENDS[name]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise MissingDependencyError(
            f"index backend {name!r} needs a package that is not installed ({e.name}); "
            f'install it with: pip install "picsift[{extra}]"'
        ) from e
    cls: type[VectorIndex] = getattr(module, class_name)
    return cls


def open_index(name: str, dim: int, path: Path | None = None, **options: Any) -> VectorIndex:
    """Create or reopen the index backend ``name``."""
    return backend_class(name)(dim, path, **options)


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "VectorIndex", "available_backends", "backend_class", "open_index"]
