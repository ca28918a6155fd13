"""The ``videos`` and ``video_frames`` tables: videos found by the scan, and which frame image came from
which video at which second (see :mod:`picsift.core.video`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .connection import TableGroup
from .files import CHUNK

#: A meta key set while frame files of forgotten frames may still be on disk.
SWEEP_KEY = "frames_sweep"


@dataclass
class VideoRow:
    path: str
    size: int
    mtime_ns: int
    video_id: str | None
    sampling: str
    duration: float | None
    error: str | None


@dataclass
class VideoLink:
    image_id: str
    frame_path: str  # files.path of the frame JPEG
    video_path: str  # relative to the library root
    t: float


def known_videos(db: sqlite3.Connection) -> dict[str, VideoRow]:
    rows = db.execute("SELECT path, size, mtime_ns, video_id, sampling, duration, error FROM videos").fetchall()
    return {r[0]: VideoRow(*r) for r in rows}


def links(db: sqlite3.Connection) -> list[VideoLink]:
    rows = db.execute("SELECT image_id, frame_path, video_path, t_seconds FROM video_frames").fetchall()
    return [VideoLink(*r) for r in rows]


def write_links(db: sqlite3.Connection, new: Iterable[VideoLink]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO video_frames(image_id, frame_path, video_path, t_seconds) VALUES (?, ?, ?, ?)",
        [(k.image_id, k.frame_path, k.video_path, k.t) for k in new],
    )


def write_video(db: sqlite3.Connection, row: VideoRow) -> None:
    db.execute(
        "INSERT OR REPLACE INTO videos(path, size, mtime_ns, video_id, sampling, duration, error, indexed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (row.path, row.size, row.mtime_ns, row.video_id, row.sampling, row.duration, row.error, time.time()),
    )


def delete_video(db: sqlite3.Connection, path: str) -> None:
    db.execute("DELETE FROM videos WHERE path=?", (path,))


def forget(db: sqlite3.Connection, video_path: str, keep: Iterable[str] = ()) -> list[str]:
    """Unlink the frames of ``video_path`` except ``keep``; returns frame paths no video links any more.

    Their ``files`` rows go in the same transaction; the caller deletes the JPEGs after it commits.
    """
    keep = set(keep)
    old = [r[0] for r in db.execute("SELECT frame_path FROM video_frames WHERE video_path=?", (video_path,))]
    dropped = [p for p in old if p not in keep]
    db.executemany("DELETE FROM video_frames WHERE video_path=? AND frame_path=?",
                   [(video_path, p) for p in dropped])
    orphans = [p for p in dropped
               if not db.execute("SELECT 1 FROM video_frames WHERE frame_path=? LIMIT 1", (p,)).fetchone()]
    db.executemany("DELETE FROM files WHERE path=?", [(p,) for p in orphans])
    if orphans:  # until their files are deleted: a killed process leaves the next update a note to sweep
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, '1')", (SWEEP_KEY,))
    return orphans


def moments(db: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[str, float]]:
    """For each id that is a video frame: (video path relative to the root, seconds), its first link."""
    found: dict[str, tuple[str, float]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(
            f"SELECT image_id, video_path, t_seconds FROM video_frames WHERE image_id IN ({marks})"
            " ORDER BY frame_path DESC, video_path DESC", chunk
        ).fetchall()
        found.update((image_id, (video, t)) for image_id, video, t in rows)  # the last wins: MIN(frame_path)
    return found


class VideoTables(TableGroup):
    """Reading videos and their frames (``Catalog.videos``); the update writes with the functions above."""

    def has_frames(self) -> bool:
        """Whether any frame of a video is catalogued."""
        return self._db.execute("SELECT 1 FROM video_frames LIMIT 1").fetchone() is not None

    def frames(self, video_path: str | None = None) -> list[tuple[str, str, str, float]]:
        """``(image_id, frame_path, video_path, t)`` of every frame (of one video), in video and time order."""
        query = "SELECT image_id, frame_path, video_path, t_seconds FROM video_frames"
        args: tuple[str, ...] = ()
        if video_path is not None:
            query, args = query + " WHERE video_path=?", (video_path,)
        return self._db.execute(query + " ORDER BY video_path, t_seconds", args).fetchall()

    def frame_paths(self) -> list[str]:
        """The ``files.path`` of every linked frame."""
        return [r[0] for r in self._db.execute("SELECT frame_path FROM video_frames")]

    def moments(self, ids: list[str]) -> dict[str, tuple[str, float]]:
        """See :func:`moments`."""
        return moments(self._db, ids)

    def counts(self) -> tuple[int, int]:
        """How many videos could be read, and how many distinct frames are catalogued."""
        videos = self._db.execute("SELECT COUNT(*) FROM videos WHERE error IS NULL").fetchone()[0]
        frames = self._db.execute("SELECT COUNT(DISTINCT frame_path) FROM video_frames").fetchone()[0]
        return int(videos), int(frames)

    def clear_sweep(self) -> None:
        """Forget the note that frame files may be left on disk (once they are deleted)."""
        self._database.delete_meta(SWEEP_KEY)
