"""What widgets need from a :class:`~picsift.Library` beyond its public search API, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._thumbnails import DETAIL_SIZE, ThumbnailCache, encode

if TYPE_CHECKING:
    from ..library import Library


class ImageSource:
    """Paths, thumbnails and metadata for image ids of one library."""

    def __init__(self, library: Library):
        self.library = library
        self.thumbnails = ThumbnailCache(library.workspace / "thumbnails")

    def paths(self, ids: list[str]) -> dict[str, Path]:
        """Absolute path of each id that a file in the library holds (first file when duplicated)."""
        return self.library.paths(ids)

    def thumbnail_batch(self, ids: list[str]) -> tuple[list[str], list[bytes]]:
        """File names and WebP thumbnails for ``ids`` (an empty buffer for an unreadable image)."""
        paths = self.paths(ids)
        names, buffers = [], []
        for image_id in ids:
            path = paths.get(image_id)
            names.append(path.name if path else image_id)
            try:
                buffers.append(self.thumbnails.get(image_id, path) if path else b"")
            except OSError:
                buffers.append(b"")
        return names, buffers

    def detail(self, image_id: str) -> tuple[dict[str, Any], bytes]:
        """Metadata and a larger WebP of one image."""
        path = self.paths([image_id]).get(image_id)
        if path is None:
            raise KeyError(f"no file in {self.library.root} holds image {image_id}")
        meta = {"id": image_id, "path": str(path), "name": path.name,
                "folder": str(path.parent.relative_to(self.library.root)) if path.is_relative_to(self.library.root)
                else str(path.parent),
                **self.library.image_info(image_id)}
        return meta, encode(path, DETAIL_SIZE)

    def folders(self, ids: np.ndarray) -> list[str]:
        """Top-level folder of each id (the metadata field the explorer can colour by)."""
        paths = self.library.paths([str(i) for i in ids])
        root = self.library.root

        def top(path: Path) -> str:
            parts = path.relative_to(root).parts
            return parts[0] if len(parts) > 1 else "."

        return [top(paths[str(i)]) if str(i) in paths else "?" for i in ids]
