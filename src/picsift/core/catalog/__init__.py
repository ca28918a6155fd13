"""The catalog: scanning folders, content ids, and the workspace's SQLite database.

One SQLite file (``catalog.sqlite`` in the workspace) holds every row picsift keeps about images:
files and their content ids, which ids have embeddings for which model (the vectors themselves live
in :mod:`picsift.core.store`), labels, collections, videos and the file-action journal. Writes happen
in short transactions so that a killed process leaves the database as of its last commit.

This package is the only place that writes SQL: one module per table group, each reached from a
:class:`Catalog` (``catalog.file_table``, ``.labels``, ``.summaries``, ``.selections``, ``.collections``,
``.videos``, ``.journal``, ``.embeddings``), and :mod:`.schema` for the tables themselves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from .collections import CollectionTables
from .connection import Database
from .embeddings import EmbeddingTables
from .files import SCAN_PROBLEMS_KEY, FileRow, FileTable
from .journal import Journal
from .labels import LabelTables
from .scanning import (
    ID_HEX_LENGTH,
    VIDEO_EXTENSIONS,
    WORKSPACE_DIRNAME,
    FileState,
    ScanResult,
    content_id,
    looks_like_id,
    scan,
)
from .selections import Selection, Selections
from .summaries import Summaries
from .videos import VideoTables

__all__ = [
    "ID_HEX_LENGTH", "SCAN_PROBLEMS_KEY", "VIDEO_EXTENSIONS", "WORKSPACE_DIRNAME", "Catalog", "FileRow", "FileState",
    "ScanResult", "Selection", "content_id", "looks_like_id", "scan",
]


class Catalog(Database):
    """The workspace database with its table groups. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.file_table = FileTable(self)
        self.labels = LabelTables(self)
        self.summaries = Summaries(self)
        self.selections = Selections(self)
        self.collections = CollectionTables(self)
        self.videos = VideoTables(self)
        self.journal = Journal(self)
        self.embeddings = EmbeddingTables(self)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files (see FileTable) --------------------------------------------------------------------
    def files(self) -> dict[str, FileRow]:
        return self.file_table.rows()

    @staticmethod
    def upsert_files(db: sqlite3.Connection, rows: Iterable[FileRow]) -> None:
        FileTable.upsert(db, rows)

    @staticmethod
    def delete_files(db: sqlite3.Connection, paths: Iterable[str]) -> None:
        FileTable.delete(db, paths)

    def paths_by_id(self) -> dict[str, str]:
        return self.file_table.paths_by_id()

    def paths_for(self, ids: list[str]) -> dict[str, str]:
        return self.file_table.paths_for(ids)

    def id_for_path(self, path: str) -> str | None:
        return self.file_table.id_for_path(path)

    def errors(self) -> list[tuple[str, str]]:
        return self.file_table.errors()

    def scan_problems(self) -> list[tuple[str, str]]:
        return self.file_table.scan_problems()

    @staticmethod
    def set_scan_problems(db: sqlite3.Connection, problems: Iterable[tuple[str, str]]) -> None:
        FileTable.set_scan_problems(db, problems)

    # -- collections (see CollectionTables) -------------------------------------------------------
    def write_collection(
        self, name: str, ids: list[str], scores: list[float | None] | None, recipe: dict[str, object]
    ) -> None:
        self.collections.write(name, ids, scores, recipe)

    def copy_collection(self, source: str, target: str) -> None:
        self.collections.copy(source, target)

    def collection_names(self) -> list[tuple[str, float, str, int]]:
        return self.collections.names()

    def collection_summary(self, name: str) -> tuple[dict[str, object], int]:
        return self.collections.summary(name)

    def collection_items(self, name: str) -> tuple[dict[str, object], list[tuple[str, float | None, int]]]:
        return self.collections.items(name)

    def delete_collection(self, name: str) -> bool:
        return self.collections.delete(name)
