"""What an update in progress is doing, visible to every process that shares the workspace.

:meth:`picsift.Library.update` holds the workspace lock (``update.lock``, taken without waiting: a
second updater is refused). While it runs it also holds ``update.running.lock`` and keeps
``update.progress.json`` current, so that a notebook can tell that a ``picsift watch`` in a terminal
is embedding images, and how far it got, without ever competing for the workspace lock itself: probing
the running lock can at worst delay the updater's own acquisition of it, which waits a few seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..workspace_files import SMALL_LIMIT, WorkspaceFiles

RUNNING_LOCK = "update.running.lock"
PROGRESS_FILE = "update.progress.json"
#: progress is written at most this often (seconds); the last step is always written
WRITE_EVERY = 0.25

ProgressWriter = Callable[[int, int], None]


@contextmanager
def announce_update(workspace: Path) -> Iterator[ProgressWriter]:
    """Mark an update as running in ``workspace``; yields ``write(done, total)`` for its progress.

    Call only while holding the workspace lock: it is what makes this process the only writer.
    """
    from filelock import FileLock

    files = WorkspaceFiles(workspace)
    lock = FileLock(files.lock_file(RUNNING_LOCK), timeout=10)
    lock.acquire()
    state: dict[str, Any] = {"pid": os.getpid(), "started": time.time(), "done": 0, "total": None}
    last = [0.0]

    def write(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and done != 0 and now - last[0] < WRITE_EVERY:
            return
        last[0] = now
        state.update(done=done, total=total)
        files.write_json(PROGRESS_FILE, state)

    try:
        files.write_json(PROGRESS_FILE, state)
        yield write
    finally:
        with suppress(OSError):
            files.remove(PROGRESS_FILE)
        lock.release()


def _held(files: WorkspaceFiles) -> bool:
    """Whether a process holds the running update's lock (``filelock``'s ``flock``). Probed with ``flock`` itself
    (every search asks: ``FileLock``'s acquire and release cost about 0.2 ms more); where ``flock`` is not
    supported, by ``filelock``, which then falls back to a lock of its own."""
    import fcntl

    try:  # opened for reading only: a workspace where no update ever ran stays untouched
        handle, _ = files.open_read(RUNNING_LOCK)
    except OSError:  # no lock file, or one that cannot be opened or is planted: nobody can be updating through it
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return _held_by_filelock(files)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def _held_by_filelock(files: WorkspaceFiles) -> bool:
    from filelock import FileLock, Timeout

    lock = FileLock(str(files.path(RUNNING_LOCK)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


def running_update(workspace: Path) -> dict[str, Any] | None:
    """The update running in ``workspace`` (any process): ``{pid, started, done, total}``, or None.

    ``total`` is None while the update still scans the folder, then the number of files to read.
    """
    files = WorkspaceFiles(workspace)
    if not _held(files):
        return None
    idle = {"pid": None, "started": None, "done": 0, "total": None}
    try:
        state = files.read_json(PROGRESS_FILE, SMALL_LIMIT)
    except (OSError, ValueError):  # between taking the lock and the first write
        return idle
    if not isinstance(state, dict) or not all(isinstance(state.get(k), (int, type(None))) for k in ("done", "total")):
        return idle  # not what announce_update writes
    return {**idle, **state, "done": state.get("done") or 0}

