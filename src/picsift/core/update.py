"""Incremental, crash-safe updates: scan, read, embed and commit in small atomic steps.

Each batch of embedded images is committed in one catalog transaction together with the file rows it
came from (after its vectors are on disk; see :mod:`picsift.core.store`). Killing the process at any point
loses at most the batch in flight; the next run sees those files as new and finishes the job.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..embedding.openclip import Embedder
from ..errors import PicsiftError
from .catalog import Catalog, FileRow, FileState, ScanResult, scan
from .catalog import videos as video_rows
from .catalog.videos import VideoLink
from .image_files import CpuTurns, PendingImage, ordered_map, prepare_image, read_image_file
from .report import UpdateReport
from .storage import REMOTE_READERS, is_remote, list_objects
from .store import EmbeddingStore
from .video import DEFAULT_EVERY
from .video_update import VideoPass

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
#: Reads and embeds image files elsewhere: (paths relative to the root, ids embedded already) -> results.
RemoteEmbed = Callable[[list[str], set[str]], Iterable[Any]]
T = TypeVar("T")


class RemoteStopped(PicsiftError):
    """A :data:`RemoteEmbed` that cannot go on (e.g. its cluster is gone) raises this while it yields.

    :func:`run_update` then commits every result it had received and raises it again with :attr:`committed` set,
    so that the message says how much of the work this run kept and how to finish it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.committed: int | None = None  # images this run embedded and committed, once known

    def __str__(self) -> str:
        if self.committed is None:
            return self.reason
        images = "1 image embedded in this run is" if self.committed == 1 else \
            f"{self.committed} images embedded in this run are"
        return (f"{self.reason}; {images} committed and kept: run the same update again to resume (images committed "
                "already are skipped)")


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
    found = list_objects(root, progress=progress) if is_remote(root) else scan(root, skip)
    report.skipped.extend(found.problems)
    if "." in found.unreadable:
        raise PicsiftError(f"cannot read the image folder {root} ({found.unreadable['.']}); nothing was changed")
    videos_known, video_links = video_rows.known_videos(catalog.db), video_rows.links(catalog.db)
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
    batch: list[PendingImage] = []
    vanished: list[str] = []

    def flush() -> None:
        ids, rows_needed = [b.image_id for b in batch], [b.row() for b in batch]
        vectors_rows = None
        if batch:
            local = [b.pixels for b in batch if b.vector is None]
            with turns.forward() if turns else nullcontext():
                computed = iter(embedder.embed_prepared(local))
            vectors = np.stack([next(computed) if b.vector is None else b.vector for b in batch])
            vectors_rows = store.write_vectors(vectors)
        with catalog.transaction() as db:
            if vectors_rows is not None:
                store.commit_rows(db, ids, vectors_rows)  # type: ignore[arg-type]
            Catalog.upsert_files(db, rows_needed + pending_rows)
            video_rows.write_links(db, pending_links + [b.link for b in batch if b.link])
        embedded.update(i for i in ids if i)
        report.embedded += len(batch)
        batch.clear()
        pending_rows.clear()
        pending_links.clear()

    def take(item: PendingImage) -> None:
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

    turns = _cpu_turns(embedder)
    read = _reader(root, embedded, embedder, turns, found.files)
    bar = tqdm(total=len(todo), desc="Embedding images", unit="img", disable=not progress or not todo)
    if on_progress and todo:
        on_progress(0, len(todo))  # the scan is done: now it is known how much there is to read
    cores = _usable_cores()
    # Taking turns, every core decodes while no forward pass runs; a few more threads keep slow disks busy.
    workers = workers or max(min(4, cores + 1), cores if turns else 0, REMOTE_READERS if is_remote(root) else 0)
    with ThreadPoolExecutor(workers, thread_name_prefix="picsift-read") as pool:
        items = ((_as_listed(_from_remote(r), found.files) if is_remote(root) else _from_remote(r)
                  for r in remote(todo, set(embedded))) if remote and todo
                 else ordered_map(pool, read, todo, window=max(8, 2 * embedder.batch_size, 2 * workers)))
        try:
            for done, item in enumerate(items, 1):
                take(item)
                bar.update(1)
                if on_progress:
                    on_progress(done, len(todo))
        except RemoteStopped as stopped:  # what came back before is embedded already: keep it
            flush()
            bar.close()
            stopped.committed = report.embedded
            raise
        flush()
        bar.close()
        videos = VideoPass(catalog, root, frames_dir or catalog.path.parent / "frames", video_every, videos_known,
                            video_links, embedded, report, progress)
        videos.run(found, pool, take, flush, window=max(8, 2 * embedder.batch_size),
                   preprocess=embedder.prepare)

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


def _usable_cores() -> int:
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    return len(sched_getaffinity(0)) if sched_getaffinity else os.cpu_count() or 1


def _cpu_turns(embedder: Embedder) -> CpuTurns | None:
    """Turns between decoding and forward passes when these run on every core this process may use."""
    import torch

    if embedder.device != "cpu" or torch.get_num_threads() < _usable_cores():
        return None  # a GPU computes, or torch leaves cores free: decoding overlaps the forward passes
    return CpuTurns()


def _reader(root: Path, embedded: set[str], embedder: Embedder, turns: CpuTurns | None = None,
            listed: dict[str, FileState] | None = None) -> Callable[[str], PendingImage]:
    def read(path: str) -> PendingImage:
        file = read_image_file(root, path, (listed or {}).get(path))
        item = PendingImage(path, file.state, error=file.error)
        if file.state is None or file.error:
            return item
        prepared = prepare_image(file.data, embedded, embedder.image_size, embedder.prepare, turns)
        item.image_id, item.width, item.height = prepared.image_id, prepared.width, prepared.height
        item.error, item.pixels = prepared.error, prepared.pixels
        return item

    return read


def _as_listed(item: PendingImage, listed: dict[str, FileState]) -> PendingImage:
    """An object read elsewhere (a Ray worker), skipped unless it is the version the listing named.

    The worker says which version it read (its size and stamp, see :func:`.storage.read_object_version`); an object
    changed since the listing is reported and read again by the next update, whose listing names the new version.
    """
    if item.state is None or item.error or item.state == listed.get(item.path):
        return item
    return PendingImage(item.path, FileState(0, 0),  # a state no listing gives: read again next time
                        error="object changed while the update read it (it is not the version listed); the next "
                              "update reads it again")


def _from_remote(result: Any) -> PendingImage:
    """A file read and embedded elsewhere (a :class:`picsift.core.ray_embed.EmbeddedFile`)."""
    state = None if result.size is None else FileState(result.size, result.mtime_ns)
    return PendingImage(result.path, state, result.image_id, result.width, result.height, result.error,
                 vector=result.vector)
