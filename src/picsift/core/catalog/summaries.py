"""Labels summarised per image: the columns of an export table, and the value of a field for each image (what
a map is coloured by)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .connection import TableGroup
from .labels import TagValue


@dataclass
class ImageSummaries:
    """What :meth:`Summaries.of` found for a set of images, by image id."""

    sizes: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)  # the first dataset holding the image
    tags: dict[str, list[tuple[str, TagValue]]] = field(default_factory=dict)  # in the order they were added
    object_counts: list[tuple[str, str, int]] = field(default_factory=list)  # (image id, class, count)
    open_issues: dict[str, int] = field(default_factory=dict)


class Summaries(TableGroup):
    """Per-image summaries of labels (``Catalog.summaries``)."""

    @contextmanager
    def _scope(self, ids: list[str]) -> Iterator[str]:
        """A temporary table of ``ids``; yields the join that keeps a table's rows (alias ``t``) of those."""
        db = self._db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS export_scope(image_id TEXT PRIMARY KEY)")
        db.execute("DELETE FROM export_scope")
        db.executemany("INSERT OR IGNORE INTO export_scope(image_id) VALUES (?)", [(i,) for i in ids])
        yield "JOIN temp.export_scope s ON s.image_id = t.image_id"

    def of(self, ids: list[str]) -> ImageSummaries:
        """Size, first dataset, tags, object counts per class and open issues of the images ``ids``."""
        found = ImageSummaries()
        with self._scope(ids) as join:
            db = self._db
            found.sizes = {r[0]: (r[1], r[2]) for r in db.execute(
                f"SELECT t.image_id, MAX(t.width), MAX(t.height) FROM files t {join} GROUP BY t.image_id")}
            found.datasets = dict(db.execute(
                "SELECT t.image_id, MIN(d.name) FROM dataset_items t JOIN datasets d ON d.id = t.dataset"
                f" {join} GROUP BY t.image_id").fetchall())
            for image_id, name, value in db.execute(
                    f"SELECT t.image_id, t.name, t.value FROM image_tags t {join} ORDER BY t.id"):
                found.tags.setdefault(image_id, []).append((name, value))
            found.object_counts = db.execute(
                f"SELECT t.image_id, t.class, COUNT(*) FROM objects t {join} GROUP BY t.image_id, t.class").fetchall()
            found.open_issues = dict(db.execute(
                f"SELECT t.image_id, COUNT(*) FROM issues t {join} WHERE t.status='open' GROUP BY t.image_id"
            ).fetchall())
        return found

    # -- one field of every image -----------------------------------------------------------------
    def first_dataset(self) -> dict[str, str]:
        """Each image's first dataset (by name)."""
        return dict(self._db.execute("SELECT t.image_id, MIN(d.name) FROM dataset_items t"
                                     " JOIN datasets d ON d.id = t.dataset GROUP BY t.image_id").fetchall())

    def most_frequent_object(self, by_author: bool) -> dict[str, str]:
        """Each image's most frequent object class (or object author, ``(unknown author)`` for none);
        ties go to the first in alphabetical order."""
        column = "COALESCE(author, '(unknown author)')" if by_author else "class"
        found: dict[str, str] = {}
        for image_id, value, _n in self._db.execute(f"SELECT image_id, {column}, COUNT(*) FROM objects"
                                                    " GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2"):
            found.setdefault(image_id, str(value))  # each image's rows come most frequent first
        return found

    def with_open_issues(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT DISTINCT image_id FROM issues WHERE status='open'")}
