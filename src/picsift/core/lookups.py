"""What every search asks the catalog, kept until it changes: the paths of image ids and the number of images."""

from __future__ import annotations

from .catalog import Catalog


class ImageLookups:
    """Paths by image id and the count of distinct images, cached for one library.

    Parameters
    ----------
    catalog
        The workspace's catalog.
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._paths: dict[str, str] | None = None
        self._count: tuple[tuple[int, str | None], int] | None = None  # (store version, last update), count

    def paths(self, ids: list[str]) -> dict[str, str]:
        """Paths of these ids (relative to the root): looked up one by one for a page of results, from a full map
        for many (kept until :meth:`forget`)."""
        if self._paths is None and len(ids) <= 20_000:
            return self.catalog.paths_for(ids)
        if self._paths is None:
            self._paths = self.catalog.paths_by_id()
        return self._paths

    def forget(self) -> None:
        """Drop the map of paths: files were added, moved or deleted."""
        self._paths = None

    def image_count(self, store_version: int) -> int:
        """Distinct images in the catalog. Every search asks (110 ms at 1M files), so the count is kept until
        the store or the catalog's files change: an update (which records ``last_update``) or a delete."""
        key = (store_version, self.catalog.get_meta("last_update"))
        if self._count is None or self._count[0] != key:
            self._count = (key, self.catalog.file_table.image_count())
        return self._count[1]
