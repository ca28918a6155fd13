"""What an update in progress is doing, visible to every process that shares the workspace.

:meth:`picsift.Library.update` holds the workspace lock (``update.lock``, taken without waiting: a
second updater is refused). While it runs it also holds ``update.running.lock`` and keeps
``update.progress.json`` current, so that a notebook can tell that a ``picsift watch`` in a terminal
is embedding images, and how far it got, without ever competing for the workspace lock itself: probing
the running lock can at worst delay the updater's own acquisition of it, which waits a few seconds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

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

    lock = FileLock(str(workspace / RUNNING_LOCK), timeout=10)
    lock.acquire()
    path = workspace / PROGRESS_FILE
    state: dict[str, Any] = {"pid": os.getpid(), "started": time.time(), "done": 0, "total": None}
    last = [0.0]

    def write(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and done != 0 and now - last[0] < WRITE_EVERY:
            return
        last[0] = now
        state.update(done=done, total=total)
        _write_json(path, state)

    try:
        _write_json(path, state)
        yield write
    finally:
        with suppress(OSError):
            path.unlink()
        lock.release()


def running_update(workspace: Path) -> dict[str, Any] | None:
    """The update running in ``workspace`` (any process): ``{pid, started, done, total}``, or None.

    ``total`` is None while the update still scans the folder, then the number of files to read.
    """
    from filelock import FileLock, Timeout

    path = workspace / RUNNING_LOCK
    if not path.exists():  # no update ever ran here (and a read-only workspace stays untouched)
        return None
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        pass
    except OSError:  # cannot even open the lock file: nobody can be updating through it
        return None
    else:
        lock.release()
        return None
    idle = {"pid": None, "started": None, "done": 0, "total": None}
    try:
        state = json.loads((workspace / PROGRESS_FILE).read_text())
    except (OSError, ValueError):  # between taking the lock and the first write
        return idle
    if not isinstance(state, dict) or not all(isinstance(state.get(k), (int, type(None))) for k in ("done", "total")):
        return idle  # not what announce_update writes
    return {**idle, **state, "done": state.get("done") or 0}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    # write then rename: a reader never sees half a file
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)
