"""Incremental, crash-safe updates: scan, read, embed and commit in small atomic steps.

Each batch of embedded images is committed in one catalog transaction together with the file rows it
came from (after its vectors are on disk; see :mod:`picsift.store`). Killing the process at any point
loses at most the batch in flight; the next run sees those files as new and finishes the job.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Catalog, FileRow, FileState, content_id, scan
from .embedding.decode import ImageDecodeError, decode_image
from .embedding.openclip import Embedder
from .store import EmbeddingStore

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass
class UpdateReport:
    """What one :meth:`picsift.Library.update` did."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0  # files whose content already had an embedding (moved or duplicated files)
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
) -> UpdateReport:
    """Bring the catalog and ``store`` up to date with the files under ``root``."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    report = UpdateReport()
    found = scan(root, skip)
    report.skipped.extend(found.problems)
    known = catalog.files()
    embedded = store.embedded_ids()

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
    removed = [p for p in known if p not in found.files]

    dims = {r.image_id: (r.width, r.height) for r in known.values() if r.image_id}
    pending_rows: list[FileRow] = []
    batch: list[_Read] = []
    vanished: list[str] = []

    def flush() -> None:
        import torch

        ids, rows_needed = [b.image_id for b in batch], [b.row() for b in batch]
        vectors_rows = None
        if batch:
            vectors = embedder.embed_batch(torch.stack([b.pixels for b in batch]))
            vectors_rows = store.write_vectors(vectors)
        with catalog.transaction() as db:
            if vectors_rows is not None:
                store.commit_rows(db, ids, vectors_rows)  # type: ignore[arg-type]
            Catalog.upsert_files(db, rows_needed + pending_rows)
        embedded.update(i for i in ids if i)
        report.embedded += len(batch)
        batch.clear()
        pending_rows.clear()

    read = _reader(root, embedded, embedder)
    bar = tqdm(total=len(todo), desc="Embedding images", unit="img", disable=not progress or not todo)
    workers = workers or min(4, (os.cpu_count() or 2) + 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="picsift-read") as pool:
        for done, item in enumerate(_ordered_map(pool, read, todo, window=max(8, 2 * embedder.batch_size)), 1):
            if item.state is None:
                vanished.append(item.path)
            elif item.error:
                report.skipped.append((item.path, item.error))
                pending_rows.append(item.row())
            elif item.pixels is None or item.image_id in embedded or any(b.image_id == item.image_id for b in batch):
                item.width, item.height = dims.get(item.image_id or "", (item.width, item.height))
                report.reused += 1  # its content has (or is getting) an embedding already
                pending_rows.append(item.row())
            else:
                dims[item.image_id or ""] = (item.width, item.height)
                batch.append(item)
                if len(batch) >= embedder.batch_size:
                    flush()
            bar.update(1)
            if on_progress:
                on_progress(done, len(todo))
        flush()
    bar.close()

    for path in vanished:
        report.skipped.append((path, "file vanished before it could be read"))
    gone = removed + [p for p in vanished if p in known]
    with catalog.transaction() as db:
        Catalog.delete_files(db, gone)
        EmbeddingStore.drop_unreferenced(db)
    report.removed = len(removed)
    store.compact_if_sparse()
    report.seconds = time.perf_counter() - started
    log.info("update of %s: %s", root, report.summary())
    return report


def _reader(root: Path, embedded: set[str], embedder: Embedder) -> Callable[[str], _Read]:
    target = embedder.image_size
    preprocess = embedder.preprocess

    def read(path: str) -> _Read:
        item = _Read(path)
        full = root / path
        try:
            st = os.stat(full)
            with open(full, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return item
        except OSError as e:
            item.state = FileState(0, 0)
            item.error = f"cannot read file: {e.strerror or e}"
            return item
        item.state = FileState(st.st_size, st.st_mtime_ns)
        item.image_id = content_id(data)
        if item.image_id in embedded:
            return item
        try:
            decoded = decode_image(data, target)
            item.width, item.height = decoded.width, decoded.height
            item.pixels = preprocess(decoded.image)
        except ImageDecodeError as e:
            item.error = str(e)
        except Exception as e:  # a decoder bug must not end the run; record it like any bad file
            item.error = f"cannot decode image: {type(e).__name__}: {e}"
        return item

    return read


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[str], _Read], items: list[str], window: int
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
