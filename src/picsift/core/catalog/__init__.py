"""The catalog: scanning folders, content ids, and the workspace's SQLite database.

One SQLite file (``catalog.sqlite`` in the workspace) holds every row picsift keeps about images:
files and their content ids, which ids have embeddings for which model (the vectors themselves live
in :mod:`picsift.core.store`), and collections. Writes happen in short transactions so that a killed
process leaves the database as of its last commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..embedding.decode import IMAGE_EXTENSIONS
from ..reading import special_file_kind

#: The default workspace folder, created inside the image folder.
WORKSPACE_DIRNAME = ".picsift"
ID_HEX_LENGTH = 32
#: The meta key holding what the last scan could not look at (see :meth:`Catalog.scan_problems`).
SCAN_PROBLEMS_KEY = "scan_problems"
#: Videos are found by the scan too; their frames become images (see :mod:`picsift.core.video`).
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})

_MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE files(
        path TEXT PRIMARY KEY,          -- relative to the library root, '/'-separated
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        image_id TEXT,                  -- content hash; NULL when the file could not be read
        width INTEGER,
        height INTEGER,
        error TEXT,                     -- why the file was skipped, NULL when it is fine
        indexed_at REAL NOT NULL
    );
    CREATE INDEX files_by_image ON files(image_id);
    CREATE TABLE models(
        identity TEXT PRIMARY KEY,      -- see ModelSpec.identity()
        spec TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vectors_file TEXT NOT NULL,     -- file name inside the model's folder
        next_row INTEGER NOT NULL,      -- rows below this are allocated in vectors_file
        version INTEGER NOT NULL,       -- bumped on every change; indexes record the version they hold
        created REAL NOT NULL
    );
    CREATE TABLE embeddings(
        model TEXT NOT NULL REFERENCES models(identity),
        image_id TEXT NOT NULL,
        row INTEGER NOT NULL,
        PRIMARY KEY(model, image_id)
    );
    CREATE TABLE collections(
        name TEXT PRIMARY KEY,
        created REAL NOT NULL,
        recipe TEXT NOT NULL            -- JSON: how the collection was made
    );
    CREATE TABLE collection_items(
        collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        score REAL,
        rank INTEGER NOT NULL,
        PRIMARY KEY(collection, image_id)
    );
    """,
    # 2: labelled data (see picsift.labels.metadata). Annotations are keyed by image id (content hash), like
    # embeddings and collections: filters join them without going through paths, and a moved file keeps them.
    """
    CREATE TABLE datasets(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        folder TEXT,                    -- where its images live, relative to the library root
        source TEXT,                    -- JSON: format and project it was imported from
        created REAL NOT NULL
    );
    CREATE TABLE dataset_items(
        dataset INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        path TEXT NOT NULL,             -- relative to the library root, '/'-separated
        image_id TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        PRIMARY KEY(dataset, path)
    );
    CREATE INDEX dataset_items_by_image ON dataset_items(image_id);
    CREATE TABLE classes(
        name TEXT PRIMARY KEY,
        shape TEXT NOT NULL,            -- rectangle | polygon | any
        color TEXT
    );
    CREATE TABLE tag_names(
        name TEXT PRIMARY KEY,
        value_type TEXT NOT NULL        -- none | any_string | any_number | oneof_string
    );
    CREATE TABLE image_tags(
        id INTEGER PRIMARY KEY,
        image_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value,                          -- no type affinity: NULL, text or number as given
        author TEXT
    );
    CREATE INDEX image_tags_by_name ON image_tags(name, value, image_id);
    CREATE INDEX image_tags_by_image ON image_tags(image_id);
    CREATE TABLE objects(
        id INTEGER PRIMARY KEY,
        image_id TEXT NOT NULL,
        class TEXT NOT NULL,
        geometry TEXT NOT NULL,         -- rectangle | polygon
        points TEXT NOT NULL,           -- JSON [[x, y], ...] in pixels; a rectangle is [[x1, y1], [x2, y2]]
        author TEXT
    );
    CREATE INDEX objects_by_class ON objects(class, image_id);
    CREATE INDEX objects_by_image ON objects(image_id);
    CREATE INDEX objects_by_author ON objects(author, image_id);
    CREATE TABLE object_tags(
        object INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value,
        author TEXT
    );
    CREATE INDEX object_tags_by_name ON object_tags(name, value, object);
    CREATE INDEX object_tags_by_object ON object_tags(object);
    CREATE TABLE jobs(
        name TEXT PRIMARY KEY,
        description TEXT,
        created REAL NOT NULL
    );
    CREATE TABLE job_items(
        job TEXT NOT NULL REFERENCES jobs(name) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        status TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY(job, image_id)
    );
    CREATE INDEX job_items_by_status ON job_items(job, status, image_id);
    CREATE TABLE issues(
        id INTEGER PRIMARY KEY,
        image_id TEXT NOT NULL,
        text TEXT NOT NULL,
        status TEXT NOT NULL,           -- open | closed
        author TEXT,
        created REAL NOT NULL
    );
    CREATE INDEX issues_by_status ON issues(status, image_id);
    CREATE INDEX issues_by_image ON issues(image_id);
    """,
    # 3: a journal of file actions (copy, move, delete; see picsift.core.files) so a crash mid-action is finished
    # or undone on the next open instead of leaving files and catalog disagreeing
    """
    CREATE TABLE file_actions(
        id INTEGER PRIMARY KEY,
        action TEXT NOT NULL,           -- copy | move | delete
        source TEXT NOT NULL,           -- relative to the library root
        target TEXT,                    -- relative to the library root; NULL for delete
        image_id TEXT NOT NULL,
        dataset TEXT                    -- the dataset the target joins
    );
    """,
    # 4: videos (see picsift.core.video). Their sampled frames are JPEGs in the workspace with ordinary files rows;
    # video_frames links each frame back to its video and moment. A video that cannot be read also has a
    # files row carrying the error, like a bad image.
    """
    CREATE TABLE videos(
        path TEXT PRIMARY KEY,          -- relative to the library root, '/'-separated
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        video_id TEXT,                  -- content hash of the whole file; NULL when it could not be read
        sampling TEXT NOT NULL,         -- JSON: the settings its frames were sampled with
        duration REAL,
        error TEXT,
        indexed_at REAL NOT NULL        -- set only once every frame is committed
    );
    CREATE TABLE video_frames(
        image_id TEXT NOT NULL,
        frame_path TEXT NOT NULL,       -- files.path of the frame JPEG (absolute when outside the root)
        video_path TEXT NOT NULL,       -- relative to the library root
        t_seconds REAL NOT NULL,
        PRIMARY KEY(video_path, frame_path)
    );
    CREATE INDEX video_frames_by_image ON video_frames(image_id);
    CREATE INDEX video_frames_by_frame ON video_frames(frame_path);
    """,
]


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """What a scan found: image and video files with their size and mtime, and files it could not look at.

    ``unreadable`` holds the paths (folders or files) that exist but could not be read: folders that
    cannot be listed, and symlinks whose target is missing (an unplugged disk, an unmounted share).
    What the catalog knows under them is not deleted: it is kept until they can be read again.
    """

    files: dict[str, FileState] = field(default_factory=dict)
    videos: dict[str, FileState] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why

    def keeps(self, path: str) -> bool:
        """Whether ``path`` is, or lies under, a path that could not be read (so its rows stay)."""
        return self.unreadable_ancestor(path) is not None

    def unreadable_ancestor(self, path: str) -> str | None:
        """The unreadable path that ``path`` is or lies under, if any (as many lookups as ``path`` has parts)."""
        if not self.unreadable:
            return None
        if "." in self.unreadable:
            return "."
        while path:
            if path in self.unreadable:
                return path
            path = path.rpartition("/")[0]
        return None


def scan(root: Path, skip: Iterable[Path] = ()) -> ScanResult:
    """Find image and video files under ``root`` recursively (extensions case-insensitive).

    Symlinked folders are followed once (loops are detected); hidden files and folders are skipped,
    as are the folders in ``skip`` (the workspace). Only regular files are listed: a named pipe or a
    device named like an image is a problem, never opened.
    """
    root = Path(root)
    skipped = {os.path.realpath(p) for p in skip}
    result = ScanResult()
    seen_dirs: set[tuple[int, int]] = set()

    def unreadable(relative: str, reason: str, report: bool = True) -> None:
        result.unreadable[relative or "."] = reason
        if report:
            result.problems.append((relative or ".", reason))

    def walk(folder: str, relative: str) -> None:
        try:
            info = os.stat(folder)
        except OSError as e:
            unreadable(relative, f"cannot read folder: {e.strerror}")
            return
        key = (info.st_dev, info.st_ino)
        if key in seen_dirs:
            return  # a symlink loop or a second link to a folder already scanned
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            unreadable(relative, f"cannot list folder: {e.strerror}")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = f"{relative}/{entry.name}" if relative else entry.name
            extension = os.path.splitext(entry.name)[1].lower()
            media = extension in IMAGE_EXTENSIONS or extension in VIDEO_EXTENSIONS
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                target = entry.stat(follow_symlinks=True) if not is_dir and (media or entry.is_symlink()) else None
            except OSError as e:
                # A symlink whose target is gone or cannot be reached: an unplugged disk is not a deletion.
                # A link without an image's name may be a folder: its rows are kept quietly (the update
                # warns when the catalog holds images under it).
                reason = ("cannot read folder or file: symlink target is missing (a disk that is not mounted?)"
                          if isinstance(e, FileNotFoundError) else f"cannot read folder or file: {e.strerror}")
                unreadable(_printable_path(rel), reason, report=media)
                continue
            if is_dir:
                if os.path.realpath(entry.path) not in skipped:
                    walk(entry.path, rel)
                continue
            if not media or target is None:
                continue
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                result.problems.append((_printable_path(rel), "file name is not valid UTF-8"))
                continue
            kind = special_file_kind(target.st_mode)
            if kind is not None:
                result.problems.append((rel, f"not a regular file ({kind}); only regular files are read"))
                continue
            (result.videos if extension in VIDEO_EXTENSIONS else result.files)[rel] = FileState(
                target.st_size, target.st_mtime_ns)

    walk(str(root), "")
    return result


def _printable_path(relative: str) -> str:
    """A scanned path as text that can be stored and printed (undecodable bytes become U+FFFD)."""
    return os.fsencode(relative).decode("utf-8", "replace")


def content_id(data: bytes) -> str:
    """An image's id: a 128-bit BLAKE2b hash of its bytes, as 32 hex digits."""
    return hashlib.blake2b(data, digest_size=ID_HEX_LENGTH // 2).hexdigest()


def looks_like_id(text: str) -> bool:
    return len(text) == ID_HEX_LENGTH and all(c in "0123456789abcdef" for c in text)


@dataclass
class FileRow:
    path: str
    size: int
    mtime_ns: int
    image_id: str | None
    width: int | None
    height: int | None
    error: str | None


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


class Catalog:
    """The workspace database. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per thread: a background update and searches from the notebook each get
        # their own, and SQLite's WAL mode lets readers proceed while the writer commits.
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._migrate()

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

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this picsift ({len(_MIGRATIONS)}); "
                "upgrade picsift"
            )
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
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

    # -- meta -------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str, db: sqlite3.Connection | None = None) -> None:
        (db or self.db).execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- files ------------------------------------------------------------------------------------
    def files(self) -> dict[str, FileRow]:
        rows = self.db.execute(
            "SELECT path, size, mtime_ns, image_id, width, height, error FROM files"
        ).fetchall()
        return {r[0]: FileRow(*r) for r in rows}

    @staticmethod
    def upsert_files(db: sqlite3.Connection, rows: Iterable[FileRow]) -> None:
        now = time.time()
        db.executemany(
            "INSERT OR REPLACE INTO files(path, size, mtime_ns, image_id, width, height, error, indexed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.path, r.size, r.mtime_ns, r.image_id, r.width, r.height, r.error, now) for r in rows],
        )

    @staticmethod
    def delete_files(db: sqlite3.Connection, paths: Iterable[str]) -> None:
        db.executemany("DELETE FROM files WHERE path=?", [(p,) for p in paths])

    def paths_by_id(self) -> dict[str, str]:
        """For each image id, its first path (ids shared by duplicate files show one of them)."""
        rows = self.db.execute(
            "SELECT image_id, MIN(path) FROM files WHERE image_id IS NOT NULL GROUP BY image_id"
        )
        return dict(rows.fetchall())

    def paths_for(self, ids: list[str]) -> dict[str, str]:
        """:meth:`paths_by_id` for a few ids, without reading the whole table."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(
                f"SELECT image_id, MIN(path) FROM files WHERE image_id IN ({marks}) GROUP BY image_id", chunk
            ).fetchall())
        return found

    def id_for_path(self, path: str) -> str | None:
        row = self.db.execute("SELECT image_id FROM files WHERE path=?", (path,)).fetchone()
        return row[0] if row else None

    def errors(self) -> list[tuple[str, str]]:
        return self.db.execute("SELECT path, error FROM files WHERE error IS NOT NULL ORDER BY path").fetchall()

    def scan_problems(self) -> list[tuple[str, str]]:
        """What the last update's scan could not look at (names that are not UTF-8, broken symlinks,
        unreadable folders): they have no files row, so the scan's list is kept on its own."""
        try:
            found = json.loads(self.get_meta(SCAN_PROBLEMS_KEY) or "[]")
        except ValueError:
            return []
        if not isinstance(found, list):
            return []
        return [(p, r) for p, r in (item for item in found if isinstance(item, list) and len(item) == 2)
                if isinstance(p, str) and isinstance(r, str)]

    @staticmethod
    def set_scan_problems(db: sqlite3.Connection, problems: Iterable[tuple[str, str]]) -> None:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                   (SCAN_PROBLEMS_KEY, json.dumps(sorted(problems))))

    # -- collections ------------------------------------------------------------------------------
    def write_collection(
        self, name: str, ids: list[str], scores: list[float | None] | None, recipe: dict[str, object]
    ) -> None:
        """Create or replace a collection; ``ids`` in rank order (duplicates keep their first place)."""
        with self.transaction() as db:
            db.execute("DELETE FROM collections WHERE name=?", (name,))
            db.execute(
                "INSERT INTO collections(name, created, recipe) VALUES (?, ?, ?)",
                (name, time.time(), json.dumps(recipe, default=str)),
            )
            db.executemany(
                "INSERT OR IGNORE INTO collection_items(collection, image_id, score, rank) VALUES (?, ?, ?, ?)",
                [
                    (name, image_id, None if scores is None else _float_or_none(scores[i]), i + 1)
                    for i, image_id in enumerate(ids)
                ],
            )

    def copy_collection(self, source: str, target: str) -> None:
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM collections WHERE name=?", (source,)).fetchone():
                raise KeyError(source)
            db.execute("DELETE FROM collections WHERE name=?", (target,))
            db.execute(
                "INSERT INTO collections(name, created, recipe) SELECT ?, ?, recipe FROM collections WHERE name=?",
                (target, time.time(), source),
            )
            db.execute(
                "INSERT INTO collection_items(collection, image_id, score, rank)"
                " SELECT ?, image_id, score, rank FROM collection_items WHERE collection=?",
                (target, source),
            )

    def collection_names(self) -> list[tuple[str, float, str, int]]:
        return self.db.execute(
            "SELECT c.name, c.created, c.recipe, COUNT(i.image_id) FROM collections c"
            " LEFT JOIN collection_items i ON i.collection = c.name GROUP BY c.name ORDER BY c.created"
        ).fetchall()

    def collection_summary(self, name: str) -> tuple[dict[str, object], int]:
        """One collection's recipe and size (KeyError if there is none), without reading the others."""
        row = self.db.execute("SELECT recipe FROM collections WHERE name=?", (name,)).fetchone()
        if row is None:
            raise KeyError(name)
        size = self.db.execute("SELECT COUNT(*) FROM collection_items WHERE collection=?", (name,)).fetchone()[0]
        return json.loads(row[0]), int(size)

    def collection_items(self, name: str) -> tuple[dict[str, object], list[tuple[str, float | None, int]]]:
        row = self.db.execute("SELECT recipe FROM collections WHERE name=?", (name,)).fetchone()
        if row is None:
            raise KeyError(name)
        items = self.db.execute(
            "SELECT image_id, score, rank FROM collection_items WHERE collection=? ORDER BY rank", (name,)
        ).fetchall()
        return json.loads(row[0]), items

    def delete_collection(self, name: str) -> bool:
        with self.transaction() as db:
            return db.execute("DELETE FROM collections WHERE name=?", (name,)).rowcount > 0
