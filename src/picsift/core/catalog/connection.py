"""The workspace's SQLite file: one connection per thread, its schema brought up to date, short transactions.

Every table group of the catalog (files, labels, collections, videos, the file-action journal, embeddings)
reads and writes through one :class:`Database`; the :class:`~picsift.core.catalog.Catalog` is that database
with the groups attached.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...errors import PicsiftError
from ...workspace_files import UnsafeWorkspaceFileError, WorkspaceFiles
from .schema import MIGRATIONS

log = logging.getLogger(__name__)

#: Files SQLite keeps beside the database (opened by name, following links): checked before it opens them.
_COMPANIONS = ("-wal", "-shm", "-journal")


def _check_database_files(path: Path) -> None:
    """Refuse a database file that is a link, special or hard-linked (SQLite would write through it); remove such a
    file planted where SQLite keeps its journal (a link is removed, never followed; a real journal is kept)."""
    files = WorkspaceFiles(path.parent)
    try:
        files.checked_file_path(path.name)
    except UnsafeWorkspaceFileError as e:
        raise PicsiftError(
            f"{e}: picsift does not open a catalog through a link. Replace {path} with the real file (or move "
            "the workspace away to start afresh)") from e
    for suffix in _COMPANIONS:
        try:
            files.checked_file_path(path.name + suffix)
        except UnsafeWorkspaceFileError as e:
            log.warning("%s: removing it (SQLite makes a new one)", e)
            files.remove(path.name + suffix)


class Database:
    """The workspace database file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _check_database_files(self.path)
        # One connection per thread: a background update and searches from the notebook each get
        # their own, and SQLite's WAL mode lets readers proceed while the writer commits.
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self._migrate()
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):  # locked, disk full...: said as it is
                raise
            self.close()
            raise PicsiftError(f"the catalog {self.path} is not a picsift catalog ({e}); move the workspace away to "
                               "start afresh") from e

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use :meth:`transaction` for atomic writes)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this picsift ({len(MIGRATIONS)}); "
                "upgrade picsift"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # One script per migration, schema change and version bump committed together.
            self.db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same commit."""
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    # -- meta -------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str, db: sqlite3.Connection | None = None) -> None:
        (db or self.db).execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str, db: sqlite3.Connection | None = None) -> None:
        (db or self.db).execute("DELETE FROM meta WHERE key=?", (key,))

    def meta_values(self, keys: list[str]) -> dict[str, str]:
        """The meta values of those of ``keys`` that are set."""
        marks = ",".join("?" * len(keys))
        return dict(self.db.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys).fetchall())


class TableGroup:
    """Base of the catalog's table groups (``Catalog.files``, ``.labels``...): SQL over one connection."""

    def __init__(self, database: Database):
        self._database = database

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.db
