"""Incremental, crash-safe updates: scan, read, embed and commit in small atomic steps.

Each batch of embedded images is committed in one catalog transaction together with the file rows it
came from (after its vectors are on disk; see :mod:`picsift.core.store`). Killing the process at any point
loses at most the batch in flight; the next run sees those files as new and finishes the job.
"""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..embedding.openclip import Embedder
from ..errors import PicsiftError
from . import video
from .catalog import Catalog, FileRow, FileState, ScanResult, content_id, scan
from .image_files import prepare_image, read_image_file
from .store import EmbeddingStore
from .video import DEFAULT_EVERY, SampledFrame, VideoDecodeError, VideoLink, VideoRow

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
#: Reads and embeds image files elsewhere: (paths relative to the root, ids embedded already) -> results.
RemoteEmbed = Callable[[list[str], set[str]], Iterable[Any]]
T = TypeVar("T")


@dataclass
class UpdateReport:
    """What one :meth:`picsift.Library.update` did."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0  # files whose content already had an embedding (moved or duplicated files)
    frames: int = 0  # frames sampled from new or changed videos (each an image; see picsift.core.video)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) found in this run
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [
            f"{self.embedded} embedded",
            f"{self.added} new",
            f"{self.changed} changed",
            f"{self.removed} removed",
            f"{self.unchanged} unchanged",
        ]
        if self.reused:
            parts.append(f"{self.reused} reused")
        if self.frames:
            parts.append(f"{self.frames} video frames")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts) + f" in {self.seconds:.1f}s"


@dataclass
class _Read:
    """One file after a worker has read it."""

    path: str
    state: FileState | None = None  # None: the file vanished before it could be read
    image_id: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    pixels: Any = None  # preprocessed tensor, when the image needs embedding
    link: VideoLink | None = None  # for a video frame: where it came from
    vector: Any = None  # embedded elsewhere already (a Ray worker: see picsift.core.ray_embed)

    def row(self) -> FileRow:
        assert self.state is not None
        return FileRow(self.path, self.state.size, self.state.mtime_ns, None if self.error else self.image_id,
                       self.width, self.height, self.error)


def run_update(
    catalog: Catalog,
    store: EmbeddingStore,
    embedder: Embedder,
    root: Path,
    skip: Iterable[Path] = (),
    *,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    workers: int | None = None,
    frames_dir: Path | None = None,
    video_every: float = DEFAULT_EVERY,
    remote: RemoteEmbed | None = None,
) -> UpdateReport:
    """Bring the catalog and ``store`` up to date with the files under ``root``.

    Videos are sampled every ``video_every`` seconds and on scene changes; their frames are written to
    ``frames_dir`` (default: ``frames`` beside the catalog) and catalogued as images (see :mod:`picsift.core.video`).
    ``remote`` reads and embeds the image files elsewhere (e.g. :func:`picsift.core.ray_embed.embed_on_ray`);
    its results are committed here, batch by batch, like local ones.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    report = UpdateReport()
    found = scan(root, skip)
    report.skipped.extend(found.problems)
    if "." in found.unreadable:
        raise PicsiftError(f"cannot read the image folder {root} ({found.unreadable['.']}); nothing was changed")
    videos_known, video_links = video.known_videos(catalog.db), video.links(catalog.db)
    # Frame JPEGs and unreadable videos have files rows too, but the video pass below looks after them.
    owned = {k.frame_path for k in video_links} | set(videos_known)
    known = {p: r for p, r in catalog.files().items() if p not in owned}
    embedded = store.embedded_ids()
    noted = found.problems + _warn_about_kept(found, [*known, *videos_known])
    report.skipped.extend(noted[len(found.problems):])

    todo: list[str] = []
    for path, state in found.files.items():
        row = known.get(path)
        if row is None:
            report.added += 1
            todo.append(path)
        elif (row.size, row.mtime_ns) != (state.size, state.mtime_ns):
            report.changed += 1
            todo.append(path)
        else:
            report.unchanged += 1
    # Unchanged files whose content has no embedding for this model yet (new model, earlier crash).
    missing = {r.image_id: p for p, r in known.items()
               if p in found.files and p not in todo and r.image_id and r.image_id not in embedded}
    todo.extend(sorted(set(missing.values())))
    # A folder that cannot be listed or a symlink whose target is gone (an unplugged disk, a permission
    # change) is not a deletion: its files keep their rows and embeddings until it can be read again.
    removed = [p for p in known if p not in found.files and not found.keeps(p)]

    dims = {r.image_id: (r.width, r.height) for r in known.values() if r.image_id}
    pending_rows: list[FileRow] = []
    pending_links: list[VideoLink] = []
    batch: list[_Read] = []
    vanished: list[str] = []

    def flush() -> None:
        import torch

        ids, rows_needed = [b.image_id for b in batch], [b.row() for b in batch]
        vectors_rows = None
        if batch:
            local = [b.pixels for b in batch if b.vector is None]
            computed = iter(embedder.embed_batch(torch.stack(local)) if local else ())
            vectors = np.stack([next(computed) if b.vector is None else b.vector for b in batch])
            vectors_rows = store.write_vectors(vectors)
        with catalog.transaction() as db:
            if vectors_rows is not None:
                store.commit_rows(db, ids, vectors_rows)  # type: ignore[arg-type]
            Catalog.upsert_files(db, rows_needed + pending_rows)
            video.write_links(db, pending_links + [b.link for b in batch if b.link])
        embedded.update(i for i in ids if i)
        report.embedded += len(batch)
        batch.clear()
        pending_rows.clear()
        pending_links.clear()

    def take(item: _Read) -> None:
        """Queue a read file (or prepared video frame) for embedding, or only for its row."""
        if item.state is None:
            vanished.append(item.path)
        elif item.error:
            report.skipped.append((item.path, item.error))
            pending_rows.append(item.row())
        elif (item.pixels is None and item.vector is None) or item.image_id in embedded \
                or any(b.image_id == item.image_id for b in batch):
            item.width, item.height = dims.get(item.image_id or "", (item.width, item.height))
            report.reused += 1  # its content has (or is getting) an embedding already
            pending_rows.append(item.row())
            if item.link:
                pending_links.append(item.link)
        else:
            dims[item.image_id or ""] = (item.width, item.height)
            batch.append(item)
            if len(batch) >= embedder.batch_size:
                flush()

    read = _reader(root, embedded, embedder)
    bar = tqdm(total=len(todo), desc="Embedding images", unit="img", disable=not progress or not todo)
    if on_progress and todo:
        on_progress(0, len(todo))  # the scan is done: now it is known how much there is to read
    workers = workers or min(4, (os.cpu_count() or 2) + 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="picsift-read") as pool:
        items = (map(_from_remote, remote(todo, set(embedded))) if remote and todo
                 else _ordered_map(pool, read, todo, window=max(8, 2 * embedder.batch_size)))
        for done, item in enumerate(items, 1):
            take(item)
            bar.update(1)
            if on_progress:
                on_progress(done, len(todo))
        flush()
        bar.close()
        videos = _VideoPass(catalog, root, frames_dir or catalog.path.parent / "frames", video_every, videos_known,
                            video_links, embedded, report, progress)
        videos.run(found, pool, take, flush, window=max(8, 2 * embedder.batch_size),
                   preprocess=embedder.preprocess)

    for path in vanished:
        report.skipped.append((path, "file vanished before it could be read"))
    gone = removed + [p for p in vanished if p in known]
    with catalog.transaction() as db:
        Catalog.delete_files(db, gone)
        Catalog.set_scan_problems(db, noted)
        orphans = videos.remove(db)
        EmbeddingStore.drop_unreferenced(db)
    videos.tidy(orphans)
    report.removed = len(removed) + len(videos.removed)
    store.compact_if_sparse()
    report.seconds = time.perf_counter() - started
    log.info("update of %s: %s", root, report.summary())
    return report


def _warn_about_kept(found: ScanResult, known: Iterable[str]) -> list[tuple[str, str]]:
    """Which unreadable paths (e.g. a symlinked folder whose disk is unplugged) hold images that are kept."""
    kept: dict[str, int] = {}
    for path in known:
        folder = found.unreadable_ancestor(path)
        if folder is not None:
            kept[folder] = kept.get(folder, 0) + 1
    reported = {path for path, _ in found.problems}
    notes = []
    for folder, count in sorted(kept.items()):
        if folder not in reported:
            reason = f"{found.unreadable[folder]}; its {count} catalogued files are kept until it can be read again"
            log.warning("%s: %s", folder, reason)
            notes.append((folder, reason))
    return notes


def _reader(root: Path, embedded: set[str], embedder: Embedder) -> Callable[[str], _Read]:
    def read(path: str) -> _Read:
        file = read_image_file(root, path)
        item = _Read(path, file.state, error=file.error)
        if file.state is None or file.error:
            return item
        prepared = prepare_image(file.data, embedded, embedder.image_size, embedder.preprocess)
        item.image_id, item.width, item.height = prepared.image_id, prepared.width, prepared.height
        item.error, item.pixels = prepared.error, prepared.pixels
        return item

    return read


def _from_remote(result: Any) -> _Read:
    """A file read and embedded elsewhere (a :class:`picsift.core.ray_embed.EmbeddedFile`)."""
    state = None if result.size is None else FileState(result.size, result.mtime_ns)
    return _Read(result.path, state, result.image_id, result.width, result.height, result.error,
                 vector=result.vector)


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], _Read], items: Iterable[T], window: int
) -> Iterator[_Read]:
    """``pool.map`` with at most ``window`` tasks in flight, so memory stays bounded."""
    queue: deque[Future[_Read]] = deque()
    iterator = iter(items)
    for item in iterator:
        queue.append(pool.submit(fn, item))
        if len(queue) >= window:
            break
    while queue:
        result = queue.popleft().result()
        next_item = next(iterator, None)
        if next_item is not None:
            queue.append(pool.submit(fn, next_item))
        yield result


class _VideoPass:
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
            take: Callable[[_Read], None], flush: Callable[[], None], window: int,
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
                                          or any(k.image_id not in self.embedded for k in frames)):
                    todo.append(path)  # new sampling settings or a new model: sample it again
        self.removed = [p for p in self.known if p not in found and not scanned.keeps(p)]
        if todo and not video.av_available():
            log.warning("%d videos left out: reading videos needs PyAV", len(todo))
            self.report.skipped.extend((p, 'reading videos needs PyAV: pip install "picsift[video]"') for p in todo)
            return
        for path in todo:
            self._sample(path, pool, take, flush, window, preprocess)
        self.sampled = bool(todo)

    def _sample(self, path: str, pool: ThreadPoolExecutor, take: Callable[[_Read], None],
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
        def prepare(frame: SampledFrame) -> _Read:
            buffer = io.BytesIO()
            frame.image.save(buffer, "JPEG", quality=video.FRAME_QUALITY)
            data = buffer.getvalue()
            file = self.frames.write(video_id, frame.t, data)
            item = _Read(self._relative(file), FileState(len(data), os.stat(file).st_mtime_ns), content_id(data),
                         frame.image.width, frame.image.height)
            item.link = VideoLink(item.image_id or "", item.path, path, frame.t)
            if item.image_id not in self.embedded:
                item.pixels = preprocess(frame.image)
            return item

        new: list[VideoLink] = []
        duration = 0.0
        frames = video.sample_frames(full, self.every, progress=self.progress)
        try:
            for item in _ordered_map(pool, prepare, frames, window):
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
            if frames and all(k.image_id in self.embedded and (self.root / k.frame_path).is_file() for k in frames):
                return other
        return None

    def _finish(self, row: VideoRow, new: list[VideoLink]) -> None:
        with self.catalog.transaction() as db:
            video.write_links(db, new)
            video.write_video(db, row)
            Catalog.delete_files(db, [row.path])  # the error row of an earlier, unreadable version
            orphans = video.forget(db, row.path, keep={k.frame_path for k in new})
        self.delete_frame_files(orphans)
        self.known[row.path], self.by_video[row.path] = row, new

    def _failed(self, row: VideoRow) -> None:
        assert row.error is not None
        self.report.skipped.append((row.path, row.error))
        with self.catalog.transaction() as db:
            video.write_video(db, row)
            orphans = video.forget(db, row.path)
            Catalog.upsert_files(db, [FileRow(row.path, row.size, row.mtime_ns, None, None, None, row.error)])
        self.delete_frame_files(orphans)
        self.known[row.path], self.by_video[row.path] = row, []

    def remove(self, db: sqlite3.Connection) -> list[str]:
        """Forget the removed videos inside ``db``'s transaction; returns the frame files to delete after it."""
        orphans: list[str] = []
        for path in self.removed:
            orphans += video.forget(db, path)
            video.delete_video(db, path)
        Catalog.delete_files(db, self.removed)
        return orphans

    def tidy(self, orphans: list[str]) -> None:
        """Delete the frame files of forgotten frames and, when videos changed, any a killed update left."""
        self.delete_frame_files(orphans)
        if not (self.sampled or self.removed or self.catalog.get_meta(video.SWEEP_KEY)):
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
