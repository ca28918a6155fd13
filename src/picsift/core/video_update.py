"""The video part of an update: sample new and changed videos into the embedding pipeline, drop removed ones."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import video
from .catalog import Catalog, FileRow, FileState, ScanResult, content_id
from .catalog import videos as video_rows
from .catalog.videos import VideoLink, VideoRow
from .image_files import PendingImage, ordered_map
from .report import UpdateReport
from .video import SampledFrame, VideoDecodeError

log = logging.getLogger(__name__)


class VideoPass:
    """The videos of one update: sample new and changed ones into the embedding pipeline, drop removed ones.

    A video's frames are committed batch by batch like images (files rows and ``video_frames`` links);
    its ``videos`` row is written last, so a killed update samples it again next time (the frames come
    out byte-identical, so their embeddings are reused). A video whose content is already sampled under
    another path (moved or copied) reuses those frames without decoding.
    """

    def __init__(self, catalog: Catalog, root: Path, frames_dir: Path, every: float,
                 known: dict[str, VideoRow], video_links: list[VideoLink], embedded: set[str],
                 report: UpdateReport, progress: bool) -> None:
        self.catalog, self.root, self.frames = catalog, root, video.FrameCache(frames_dir)
        self.sampling, self.every = video.sampling_key(every), every
        self.known, self.embedded = known, embedded
        self.report, self.progress = report, progress
        self.by_video: dict[str, list[VideoLink]] = {}
        for link in video_links:
            self.by_video.setdefault(link.video_path, []).append(link)
        self.removed: list[str] = []
        self.sampled = False

    def run(self, scanned: ScanResult, pool: ThreadPoolExecutor,
            take: Callable[[PendingImage], None], flush: Callable[[], None], window: int,
            preprocess: Callable[[Any], Any]) -> None:
        found = scanned.videos
        todo: list[str] = []
        for path, state in found.items():
            row = self.known.get(path)
            if row is None:
                self.report.added += 1
                todo.append(path)
            elif (row.size, row.mtime_ns) != (state.size, state.mtime_ns):
                self.report.changed += 1
                todo.append(path)
            else:
                self.report.unchanged += 1
                frames = self.by_video.get(path, [])
                if row.error is None and (row.sampling != self.sampling
                                          or any(k.image_id not in self.embedded for k in frames)
                                          or not all(self.frames.intact(self.root / k.frame_path) for k in frames)):
                    todo.append(path)  # new sampling settings, a new model, or frame files not as written: again
        self.removed = [p for p in self.known if p not in found and not scanned.keeps(p)]
        if todo and not video.av_available():
            log.warning("%d videos left out: reading videos needs PyAV", len(todo))
            self.report.skipped.extend((p, 'reading videos needs PyAV: pip install "picsift[video]"') for p in todo)
            return
        for path in todo:
            self._sample(path, pool, take, flush, window, preprocess)
        self.sampled = bool(todo)

    def _sample(self, path: str, pool: ThreadPoolExecutor, take: Callable[[PendingImage], None],
                flush: Callable[[], None], window: int, preprocess: Callable[[Any], Any]) -> None:
        full = self.root / path
        try:
            st = os.stat(full)
            video_id = video.file_content_id(full)
        except FileNotFoundError:
            self.report.skipped.append((path, "file vanished before it could be read"))
            self.removed.extend([path] if path in self.known else [])
            return
        except OSError as e:
            self._failed(VideoRow(path, 0, 0, None, self.sampling, None, f"cannot read file: {e.strerror or e}"))
            return
        row = VideoRow(path, st.st_size, st.st_mtime_ns, video_id, self.sampling, None, None)
        twin = self._twin(video_id, path)
        if twin is not None:
            copied = [VideoLink(k.image_id, k.frame_path, path, k.t) for k in self.by_video[twin.path]]
            self.report.reused += len(copied)
            self._finish(replace(row, duration=twin.duration), copied)
            return
        def prepare(frame: SampledFrame) -> PendingImage:
            buffer = io.BytesIO()
            frame.image.save(buffer, "JPEG", quality=video.FRAME_QUALITY)
            data = buffer.getvalue()
            file = self.frames.write(video_id, frame.t, data)
            item = PendingImage(self._relative(file), FileState(len(data), os.stat(file).st_mtime_ns), content_id(data),
                         frame.image.width, frame.image.height)
            item.link = VideoLink(item.image_id or "", item.path, path, frame.t)
            if item.image_id not in self.embedded:
                item.pixels = preprocess(frame.image)
            return item

        new: list[VideoLink] = []
        duration = 0.0
        frames = video.sample_frames(full, self.every, progress=self.progress)
        try:
            for item in ordered_map(pool, prepare, frames, window):
                take(item)
                assert item.link is not None
                new.append(item.link)
                duration = max(duration, item.link.t)
        except VideoDecodeError as e:
            self._failed(replace(row, error=str(e)))
            return
        flush()
        self.report.frames += len(new)
        self._finish(replace(row, duration=duration), new)

    def _twin(self, video_id: str, path: str) -> VideoRow | None:
        """Another path holding the same video, sampled the same way, whose frames are all in place."""
        for other in self.known.values():
            if other.path == path or other.video_id != video_id or other.error or other.sampling != self.sampling:
                continue
            frames = self.by_video.get(other.path, [])
            if frames and all(k.image_id in self.embedded and self.frames.intact(self.root / k.frame_path)
                              for k in frames):
                return other
        return None

    def _finish(self, row: VideoRow, new: list[VideoLink]) -> None:
        with self.catalog.transaction() as db:
            video_rows.write_links(db, new)
            video_rows.write_video(db, row)
            Catalog.delete_files(db, [row.path])  # the error row of an earlier, unreadable version
            orphans = video_rows.forget(db, row.path, keep={k.frame_path for k in new})
        self.delete_frame_files(orphans)
        self.known[row.path], self.by_video[row.path] = row, new

    def _failed(self, row: VideoRow) -> None:
        assert row.error is not None
        self.report.skipped.append((row.path, row.error))
        with self.catalog.transaction() as db:
            video_rows.write_video(db, row)
            orphans = video_rows.forget(db, row.path)
            Catalog.upsert_files(db, [FileRow(row.path, row.size, row.mtime_ns, None, None, None, row.error)])
        self.delete_frame_files(orphans)
        self.known[row.path], self.by_video[row.path] = row, []

    def remove(self, db: sqlite3.Connection) -> list[str]:
        """Forget the removed videos inside ``db``'s transaction; returns the frame files to delete after it."""
        orphans: list[str] = []
        for path in self.removed:
            orphans += video_rows.forget(db, path)
            video_rows.delete_video(db, path)
        Catalog.delete_files(db, self.removed)
        return orphans

    def tidy(self, orphans: list[str]) -> None:
        """Delete the frame files of forgotten frames and, when videos changed, any a killed update left."""
        self.delete_frame_files(orphans)
        if not (self.sampled or self.removed or self.catalog.get_meta(video_rows.SWEEP_KEY)):
            return
        linked = {str(self.root / p) for p in self.catalog.videos.frame_paths()}
        self.frames.sweep(linked)
        self.catalog.videos.clear_sweep()

    def delete_frame_files(self, paths: Iterable[str]) -> None:
        """Delete these frames' files: only those picsift wrote (see :class:`picsift.core.video.FrameCache`)."""
        self.frames.delete(self.root / path for path in paths)

    def _relative(self, file: Path) -> str:
        """A frame's files.path: relative to the root when the workspace is inside it, else absolute."""
        try:
            return file.relative_to(self.root).as_posix()
        except ValueError:
            return file.as_posix()
