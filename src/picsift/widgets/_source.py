"""What widgets need from a :class:`~picsift.Library` beyond its public search API, in one place.

An id may be a labelled object's (an object set's, see :mod:`picsift.query.object_sets`): its thumbnail is its
crop, cut as the model saw it (``lib.objects.crop_region``), so a small object fills its tile (on the
whole picture a 20 px box would be a few pixels of a 160 px tile); its detail is the whole image with every
labelled box drawn, its own in a brighter colour.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._thumbnails import DETAIL_SIZE, ThumbnailCache, encode

if TYPE_CHECKING:
    from ..library import Library


class ImageSource:
    """Paths, thumbnails and metadata for image ids of one library."""

    def __init__(self, library: Library):
        self.library = library
        self.thumbnails = ThumbnailCache(library.workspace / "thumbnails")
        self.crops = ThumbnailCache(library.workspace / "object-thumbnails")

    def objects(self, ids: list[str]) -> dict[str, Any]:
        """The labelled objects among ``ids`` (image ids are left out): ``.image_id``, ``.cls``, ``.box``."""
        return self.library.objects.of(ids)

    def paths(self, ids: list[str]) -> dict[str, Path]:
        """Absolute path of each id that a file in the library holds (first file when duplicated); of an object
        id, its image's."""
        found = self.library.paths(ids)
        objects = {key: obj.image_id for key, obj in self.objects([i for i in ids if i not in found]).items()}
        if objects:
            images = self.library.paths(list(set(objects.values())))
            found.update({key: images[image] for key, image in objects.items() if image in images})
        return found

    def thumbnail_batch(self, ids: list[str]) -> tuple[list[str], list[bytes]]:
        """File names and WebP thumbnails for ``ids`` (an empty buffer for an unreadable image)."""
        objects = self.objects(ids)
        paths = self.paths(ids)
        names, buffers = [], []
        for key in ids:
            obj = objects.get(key)
            path = paths.get(key)
            names.append((path.name if path else key) if obj is None else f"{obj.cls} · {path.name if path else ''}")
            try:
                if path is None:
                    buffers.append(b"")
                elif obj is not None:
                    buffers.append(self.crops.get(key, path, crop=partial(self.library.objects.crop_region, obj.box)))
                else:
                    buffers.append(self.thumbnails.get(key, path))
            except OSError:
                buffers.append(b"")
        return names, buffers

    def detail(self, image_id: str) -> tuple[dict[str, Any], bytes]:
        """Metadata and a larger WebP of one image; of an object: its image with every labelled box drawn."""
        obj = self.objects([image_id]).get(image_id)
        shown = obj.image_id if obj is not None else image_id
        path = self.paths([image_id]).get(image_id)
        if path is None:
            raise KeyError(f"no file in {self.library.root} holds image {shown}")
        meta = {"id": image_id, "path": str(path), "name": path.name,
                "folder": str(path.parent.relative_to(self.library.root)) if path.is_relative_to(self.library.root)
                else str(path.parent),
                **self.library.image_info(shown)}
        if obj is None:
            return meta, encode(path, DETAIL_SIZE)
        boxes = [(o.box, o.cls, o.id == image_id) for o in self.library.objects.on_image(shown)]
        # shown as text in the detail's table: "car [10, 10, 8, 8]; person [...]"
        meta.update({"image_id": shown, "class": obj.cls, "box": [round(v, 2) for v in obj.box],
                     "objects": "; ".join(f"{cls} {[round(v, 2) for v in box]}" for box, cls, _ in boxes)})
        return meta, encode(path, DETAIL_SIZE, boxes=boxes)

    def object_points(self, dims: int = 2, within: Any = None) -> pd.DataFrame:
        """``lib.objects.map`` with each object's image ``path``: ``id, image_id, class, path, x, y[, z]``."""
        frame = self.library.objects.map(dims, within)
        paths = self.paths(frame["id"].tolist())
        frame.insert(3, "path", [str(paths.get(i, "")) for i in frame["id"]])
        return frame

    def folders(self, ids: np.ndarray) -> list[str]:
        """Top-level folder of each id (the metadata field the explorer can colour by)."""
        paths = self.library.paths([str(i) for i in ids])
        root = self.library.root

        def top(path: Path) -> str:
            parts = path.relative_to(root).parts
            return parts[0] if len(parts) > 1 else "."

        return [top(paths[str(i)]) if str(i) in paths else "?" for i in ids]
