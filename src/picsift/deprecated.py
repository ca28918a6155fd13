"""Names that moved in 0.2, kept for one release: each use warns (DeprecationWarning) with the new spelling."""

from __future__ import annotations

import warnings
from typing import Any

#: Library methods that moved to a service, for one release: old name -> (service, new name).
LIBRARY_MOVED: dict[str, tuple[str, str]] = {
    "metadata": ("labels", ""),
    "collection_recipe": ("collections", "recipe"), "save_collection": ("collections", "save"),
    "write_collection": ("collections", "write"), "add_to_collection": ("collections", "add"),
    "remove_from_collection": ("collections", "remove"), "rename_collection": ("collections", "rename"),
    "delete_collection": ("collections", "delete"), "collection_names": ("collections", "names"),
    "combine_collections": ("collections", "combine"), "rerun_collection": ("collections", "rerun"),
    "copy_images": ("files", "copy"), "move_images": ("files", "move"), "delete_images": ("files", "delete"),
    "frames": ("videos", "frames"), "video_moment": ("videos", "moment"),
}


def moved_attribute(library: Any, name: str) -> Any:
    """``library.<name>`` for a name that moved to one of its services, with a warning naming the new place."""
    moved = LIBRARY_MOVED.get(name)
    if moved is None:
        raise AttributeError(f"{type(library).__name__!r} object has no attribute {name!r}")
    service, attribute = moved
    warnings.warn(f"Library.{name} is now Library.{service}{'.' + attribute if attribute else ''}",
                  DeprecationWarning, stacklevel=3)
    found = getattr(library, service)
    return getattr(found, attribute) if attribute else found
