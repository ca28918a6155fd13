"""The image ids filters select (see :mod:`picsift.query.filters`): one indexed query per label filter, and
one query that ANDs them within the library or a collection.

A filter asks the functions below for its :class:`Selection`, with plain arguments; only this package
reads a selection's query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .connection import TableGroup
from .labels import TagValue

#: An upper bound no object count reaches, for "at least ``min``".
_NO_LIMIT = 2**62


@dataclass(frozen=True)
class Selection:
    """The image ids one label filter picks; ``negated``: the filter keeps every image but those."""

    query: str
    params: tuple[Any, ...]
    negated: bool = False


def object_count(cls: str, min: int, max: int | None) -> Selection | None:
    """Images with ``min`` to ``max`` (None: no bound) objects of class ``cls``; None when every image passes."""
    counts = "SELECT image_id FROM objects WHERE class=? GROUP BY image_id HAVING COUNT(*)"
    if min > 0:
        return Selection(f"{counts} BETWEEN ? AND ?", (cls, min, _NO_LIMIT if max is None else max))
    if max is None:
        return None
    return Selection(f"{counts} > ?", (cls, max), negated=True)  # images with no object count as 0


def image_tag(name: str, value: TagValue = None, negate: bool = False) -> Selection:
    """Images with tag ``name`` (= ``value``, when given)."""
    if value is None:
        return Selection("SELECT image_id FROM image_tags WHERE name=?", (name,), negate)
    return Selection("SELECT image_id FROM image_tags WHERE name=? AND value=?", (name, value), negate)


def object_tag(name: str, value: TagValue = None, cls: str | None = None, negate: bool = False) -> Selection:
    """Images with an object (of class ``cls``, when given) tagged ``name`` (= ``value``, when given)."""
    return Selection(*_tagged_objects("o.image_id", name, value, cls), negate)


def job_status(job: str, statuses: Sequence[str] | None = None) -> Selection:
    """Images of labelling job ``job`` (with one of ``statuses``, when given)."""
    if statuses is None:
        return Selection("SELECT image_id FROM job_items WHERE job=?", (job,))
    marks = ",".join("?" * len(statuses))
    return Selection(f"SELECT image_id FROM job_items WHERE job=? AND status IN ({marks})", (job, *statuses))


def object_author(author: str) -> Selection:
    """Images with an object made by ``author``."""
    return Selection("SELECT image_id FROM objects WHERE author=?", (author,))


def open_issues(present: bool = True) -> Selection:
    """Images with an open issue (``present=False``: with none)."""
    return Selection("SELECT image_id FROM issues WHERE status='open'", (), not present)


def objects_of_class(cls: str) -> Selection:
    """Objects of class ``cls``: object-level, :meth:`Selections.objects` gives their image ids and points."""
    return Selection("SELECT image_id, points FROM objects WHERE class=?", (cls,))


def objects_tagged(name: str, value: TagValue = None, cls: str | None = None) -> Selection:
    """Objects (of class ``cls``, when given) tagged ``name`` (= ``value``, when given): object-level."""
    return Selection(*_tagged_objects("o.image_id, o.points", name, value, cls))


def _tagged_objects(columns: str, name: str, value: TagValue, cls: str | None) -> tuple[str, tuple[Any, ...]]:
    """The query (selecting ``columns`` of ``objects o``) and parameters for objects tagged ``name`` [= ``value``]."""
    query = f"SELECT {columns} FROM object_tags t JOIN objects o ON o.id = t.object WHERE t.name=?"
    params: list[Any] = [name]
    if value is not None:
        query += " AND t.value=?"
        params.append(value)
    if cls is not None:
        query += " AND o.class=?"
        params.append(cls)
    return query, tuple(params)


def objects_by(author: str) -> Selection:
    """Objects made by ``author``: object-level."""
    return Selection("SELECT image_id, points FROM objects WHERE author=?", (author,))


#: Every image of the library (catalogued files and dataset items), ordered by id.
_LIBRARY = ("SELECT image_id, NULL AS score, image_id AS ord FROM"
            " (SELECT image_id FROM files WHERE image_id IS NOT NULL UNION SELECT image_id FROM dataset_items)")
_COLLECTION = "SELECT image_id, score, rank AS ord FROM collection_items WHERE collection=?"


class Selections(TableGroup):
    """Running selections (``Catalog.selections``)."""

    def ids(self, selection: Selection) -> Iterator[str]:
        """The ids ``selection`` picks (as many as carry the label, whatever the scope), ignoring ``negated``."""
        return (r[0] for r in self._db.execute(selection.query, selection.params))

    def objects(self, selection: Selection) -> Iterator[tuple[str, list[list[float]]]]:
        """``(image id, points)`` of each object an object-level selection picks (:func:`objects_of_class`...)."""
        return ((r[0], json.loads(r[1])) for r in self._db.execute(selection.query, selection.params))

    def filter(self, collection: str | None, selections: Sequence[Selection],
               scores: Sequence[tuple[float | None, float | None]] = ()) -> list[str]:
        """Ids of the library (``collection=None``, by id) or of a collection (by rank) that every selection
        keeps and whose score lies in every ``(min, max)`` range (either end open; no score fails), in one query.

        Raises KeyError when there is no such collection.
        """
        scope, params = _LIBRARY, list[Any]()
        if collection is not None:
            if not self._db.execute("SELECT 1 FROM collections WHERE name=?", (collection,)).fetchone():
                raise KeyError(collection)
            scope, params = _COLLECTION, [collection]
        conditions = []
        for selection in selections:
            conditions.append(f"image_id {'NOT IN' if selection.negated else 'IN'} ({selection.query})")
            params.extend(selection.params)
        for low, high in scores:
            conditions.append("score IS NOT NULL")
            for bound, operator in ((low, ">="), (high, "<=")):
                if bound is not None:
                    conditions.append(f"score {operator} ?")
                    params.append(float(bound))
        where = " AND ".join(f"({c})" for c in conditions) or "1=1"
        return [r[0] for r in self._db.execute(f"SELECT image_id FROM ({scope}) WHERE {where} ORDER BY ord", params)]
