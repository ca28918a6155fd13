"""Reading one image file for embedding, the same way wherever it runs (a local update's reader threads or a
Ray worker): a bounded read of a regular file, its content id, then decode and preprocess.

Nothing here raises for one bad file: the reason comes back as ``error`` text, recorded as a skipped file.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..embedding.decode import ImageDecodeError, decode_image
from ..reading import UnreadableFileError, read_regular_file
from .catalog import FileRow, FileState, content_id
from .catalog.videos import VideoLink
from .storage import is_remote, read_object, read_object_version

T = TypeVar("T")


@dataclass
class FileRead:
    """A file's bytes and state, or why it could not be read. ``state`` is None when it vanished."""

    state: FileState | None
    error: str | None = None
    data: bytes = b""


@dataclass
class PreparedImage:
    """A read file's content id, and its size and pixels when it needs embedding (else an error or nothing)."""

    image_id: str
    width: int | None = None
    height: int | None = None
    error: str | None = None
    pixels: Any = None


def read_image_file(root: Path, path: str, listed: FileState | None = None) -> FileRead:
    """At most ``reading.MAX_FILE_BYTES`` of the regular file ``root / path`` (or of the object, for a root on
    another file system: ``listed`` is its state in the listing, see :mod:`picsift.core.storage`)."""
    if is_remote(root):
        return _read_object(root, path, listed)
    try:
        data, st = read_regular_file(root / path)
    except FileNotFoundError:
        return FileRead(None)
    except UnreadableFileError as e:  # a pipe or device swapped in since the scan, or too large to read
        state = FileState(0, 0)
        with suppress(OSError):
            st = os.stat(root / path)
            state = FileState(st.st_size, st.st_mtime_ns)  # unchanged, it stays skipped quietly
        return FileRead(state, str(e))
    except (OSError, MemoryError) as e:  # one file that cannot be read never ends the update
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        return FileRead(FileState(0, 0), f"cannot read file: {reason}")
    return FileRead(FileState(st.st_size, st.st_mtime_ns), data=data)


def _read_object(root: Any, path: str, listed: FileState | None) -> FileRead:
    try:
        data = read_object(root, path, listed)
    except FileNotFoundError:
        return FileRead(None)
    except UnreadableFileError as e:  # too large: it stays skipped until the object changes
        return FileRead(listed or FileState(0, 0), str(e))
    except OSError as e:  # retried already: skipped and reported, and read again by the next update
        return FileRead(FileState(0, 0), str(e))
    return FileRead(listed or FileState(len(data), 0), data=data)


def read_image_object(root: Any, path: str) -> FileRead:
    """The object ``root / path`` (``root`` a URL's path object) with the state of the version read: its size and
    stamp, which the driver of a Ray update compares with its listing (see :mod:`picsift.core.ray_embed`)."""
    try:
        data, state = read_object_version(root, path)
    except FileNotFoundError:
        return FileRead(None)
    except OSError as e:  # too large, or every attempt failed: skipped and reported, read again by the next update
        return FileRead(FileState(0, 0), str(e))
    return FileRead(state, data=data)


def prepare_image(data: bytes, embedded: Container[str], image_size: int,
                  preprocess: Callable[[Any], Any], turns: CpuTurns | None = None) -> PreparedImage:
    """The content id of ``data``; unless it is ``embedded`` already, the decoded size and model-ready pixels.

    With ``turns``, the decoding waits while a forward pass has the CPU (see :class:`CpuTurns`).
    """
    prepared = PreparedImage(content_id(data))
    if prepared.image_id in embedded:
        return prepared
    with turns.decoding() if turns else nullcontext():
        try:
            decoded = decode_image(data, image_size)
            prepared.width, prepared.height = decoded.width, decoded.height
            prepared.pixels = preprocess(decoded.image)
        except ImageDecodeError as e:
            prepared.error = str(e)
        except Exception as e:  # a decoder bug must not end the run; record it like any bad file
            prepared.error = f"cannot decode image: {type(e).__name__}: {e}"
    return prepared


class CpuTurns:
    """Lets the forward passes and the decoding take turns at the CPU instead of running at the same time.

    A forward pass on the CPU keeps every core busy (torch runs one thread per core), and its threads wait
    for each other after every layer: a decoding thread that takes a core from one of them stalls them all,
    so on a machine whose cores torch already uses, overlapping the two is slower than taking turns
    (bench/ingest.py). Decoding starts only while no forward pass runs or waits; a forward pass waits for
    the decodes under way (one picture each) and holds off new ones. Reading files is not held off.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._decoding = 0
        self._forward = False

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Hold while one picture is decoded and preprocessed."""
        with self._changed:
            self._changed.wait_for(lambda: not self._forward)
            self._decoding += 1
        try:
            yield
        finally:
            with self._changed:
                self._decoding -= 1
                self._changed.notify_all()

    @contextmanager
    def forward(self) -> Iterator[None]:
        """Hold while a forward pass runs (from one thread at a time)."""
        with self._changed:
            self._forward = True
            self._changed.wait_for(lambda: self._decoding == 0)
        try:
            yield
        finally:
            with self._changed:
                self._forward = False
                self._changed.notify_all()


@dataclass
class PendingImage:
    """One file (or sampled video frame) on its way into the store, after a worker has read it."""

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


def ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], PendingImage], items: Iterable[T], window: int
) -> Iterator[PendingImage]:
    """``pool.map`` with at most ``window`` tasks in flight, so memory stays bounded."""
    queue: deque[Future[PendingImage]] = deque()
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
