"""Automatic updates: keep a library's embeddings current in the background.

:func:`enable` starts a :class:`Service` for a folder: a thread that runs
:meth:`~picsift.Library.update` now, then every ``interval`` seconds, on :meth:`Service.update_now`,
and (with ``watch=True``) soon after files change. The notebook stays usable meanwhile: searches run
on what is embedded so far and say so (:attr:`picsift.Results.partial`). :func:`disable` stops it
and keeps the embeddings; enabling again resumes from them, embedding only what is new.

The settings live in the workspace (``enabled``, ``interval``, ``watch`` in the catalog's meta table),
so ``picsift status`` shows them and ``picsift watch FOLDER`` (a long-running process outside
notebooks) picks them up. Every run holds the workspace lock: when another process is updating the
workspace, the run is skipped and retried shortly, which is not an error.

Examples
--------
>>> service = picsift.enable("~/photos", interval=300, watch=True)  # doctest: +SKIP
>>> service.status()["progress"]                                    # doctest: +SKIP
{'done': 120, 'total': 2000}
>>> service.wait(); service.library.search("a dog").partial        # doctest: +SKIP
False
>>> picsift.disable("~/photos")                                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core import catalog as _catalog
from .core.catalog import WORKSPACE_DIRNAME
from .core.update import UpdateReport
from .core.workspace import DEFAULT_INTERVAL, automatic_settings, checked_interval, record_automatic
from .embedding.decode import IMAGE_EXTENSIONS
from .errors import MissingDependencyError, PicsiftError, WorkspaceBusyError
from .library import Library

log = logging.getLogger(__name__)

#: a run skipped because another process holds the workspace is retried after at most this long
BUSY_RETRY = 10.0

_services: dict[Path, Service] = {}
_services_lock = threading.Lock()


class _Stopped(Exception):
    """Raised from the progress callback to end a run early when the service stops."""


class Service:
    """Background updates of one :class:`~picsift.Library`; made by :func:`enable`.

    Parameters
    ----------
    library
        The library to keep current. The service shares it: search it as usual meanwhile.
    interval
        Seconds between the end of one run and the start of the next, at least
        :data:`~picsift.core.workspace.MIN_INTERVAL` (1 s); ``None``: no schedule (runs at start, on
        :meth:`update_now` and on file changes only).
    watch
        Also update soon after files change under the folder (needs ``pip install "picsift[watch]"``).
    debounce
        With ``watch``: wait until files stopped changing for this long (seconds) before updating.
    reembed
        Confirms a model change (see :meth:`Library.update <picsift.Library.update>`).
    on_run
        Called with the service after each run that ran (succeeded or failed), in its thread.

    Attributes
    ----------
    last_report
        The :class:`~picsift.UpdateReport` of the last successful run, or None.
    last_error
        ``"ErrorType: message"`` of the last run that failed (kept after later successes; see
        :meth:`status` for whether the last run failed), or None. Failures never stop the service.
    """

    def __init__(
        self,
        library: Library,
        *,
        interval: float | None = DEFAULT_INTERVAL,
        watch: bool = False,
        debounce: float = 1.0,
        reembed: bool = False,
        on_run: Callable[[Service], None] | None = None,
    ):
        if interval is not None:
            interval = checked_interval(interval)
        if watch:
            _require_watchfiles()
        self.library = library
        self.interval = interval
        self.watch = watch
        self.debounce = debounce
        self.reembed = reembed
        self._on_run = on_run
        self.last_report: UpdateReport | None = None
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self.runs = 0
        self._failed = False
        self._last_run: float | None = None
        self._last_finished: float | None = None
        self._next_run: float | None = time.time()
        self._progress: dict[str, int] | None = None
        self._busy_skips = 0
        self._condition = threading.Condition()
        self._requested = True  # the first run starts at once
        self._updating = False
        self._stop = threading.Event()
        self._watching = threading.Event()  # set once file events are being received
        name = self.library.root.name or "library"
        self._thread = threading.Thread(target=self._loop, name=f"picsift-service-{name}", daemon=True)
        self._watcher: threading.Thread | None = None
        if watch:
            self._watcher = threading.Thread(target=self._watch_files, name=f"picsift-watch-{name}", daemon=True)

    def start(self) -> Service:
        """Start the background thread(s); :func:`enable` does this for you."""
        self._thread.start()
        if self._watcher is not None:
            self._watcher.start()
        return self

    def __repr__(self) -> str:
        return f"<Service {self.library.root} {self.status()['state']}, interval={self.interval}, watch={self.watch}>"

    # -- public -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the service is alive (between :meth:`start` and :meth:`stop`)."""
        return self._thread.is_alive() and not self._stop.is_set()

    def update_now(self) -> None:
        """Run an update as soon as the current one (if any) finishes; :meth:`wait` waits for it."""
        if not self.running:
            raise PicsiftError(f"the service for {self.library.root} is stopped; enable it again")
        self._request()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no update runs or is due at once (the first run, :meth:`update_now`, file changes).

        Returns False when ``timeout`` (seconds) passed first.
        """
        with self._condition:
            return self._condition.wait_for(
                lambda: not (self._updating or self._requested) or not self._thread.is_alive(), timeout)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop updating (a run in progress ends after its current batch: committed work is kept).

        The workspace's ``enabled`` setting is left as it is: :func:`disable` clears it.
        """
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._watcher is not None and self._watcher.is_alive():
            self._watcher.join(timeout)
        with _services_lock:
            if _services.get(self.library.workspace) is self:
                del _services[self.library.workspace]

    def status(self) -> dict[str, Any]:
        """Where the service stands, JSON-ready.

        ``state``: ``"updating"``, ``"idle"`` or ``"stopped"``; ``progress``: ``{done, total}`` files
        while a run reads them (else None); ``last_update``, ``next_run``: epoch seconds;
        ``last_report``: the last successful run's summary; ``failing``: whether the last run failed
        (then ``last_error`` says why); ``busy_skips``: runs skipped because another process was updating;
        ``watching``: file events are being received (``watch=True``, about a second after the start).
        """
        with self._condition:
            updating = self._updating
        state = "stopped" if not self.running else "updating" if updating else "idle"
        return {
            "state": state,
            "updating": updating,
            "progress": dict(self._progress) if self._progress and updating else None,
            "interval": self.interval,
            "watch": self.watch,
            "watching": self._watching.is_set() and self._watcher is not None and self._watcher.is_alive(),
            "runs": self.runs,
            "last_run": self._last_run,
            "last_update": self._last_finished,
            "last_report": self.last_report.summary() if self.last_report else None,
            "failing": self._failed,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
            "busy_skips": self._busy_skips,
            "next_run": self._next_run if state == "idle" else None,
        }

    # -- the thread -------------------------------------------------------------------------------
    def _request(self) -> None:
        with self._condition:
            self._requested = True
            self._condition.notify_all()

    def _loop(self) -> None:
        due: float | None = time.monotonic()
        while not self._stop.is_set():
            with self._condition:
                self._condition.wait_for(lambda: self._requested or self._stop.is_set(),
                                         max(0.0, due - time.monotonic()) if due is not None else None)
                if self._stop.is_set():
                    break
                if self.library.catalog.get_meta("enabled") == "0":  # disable() ran, maybe in another process
                    log.info("automatic updates of %s were disabled; stopping", self.library.root)
                    self._stop.set()
                    break
                self._requested = False
                self._updating = True
            busy = False
            try:
                busy = self._run_once()
                if not busy and self._on_run is not None and not self._stop.is_set():
                    self._on_run(self)
            except Exception:
                log.exception("on_run callback of the service for %s failed", self.library.root)
            finally:
                with self._condition:
                    self._updating = False
                    self._condition.notify_all()
            delay = min(self.interval or BUSY_RETRY, BUSY_RETRY) if busy else self.interval
            due = None if delay is None else time.monotonic() + delay
            self._next_run = None if delay is None else time.time() + delay
        with self._condition:
            self._condition.notify_all()

    def _run_once(self) -> bool:
        """One update; True when it was skipped because another process holds the workspace."""
        self._last_run = time.time()
        self._progress = None

        def progress(done: int, total: int) -> None:
            if self._stop.is_set():
                raise _Stopped
            self._progress = {"done": done, "total": total}

        try:
            report = self.library.update(progress=False, on_progress=progress, reembed=self.reembed)
        except _Stopped:
            log.info("update of %s stopped with the service; the next one finishes the job", self.library.root)
        except WorkspaceBusyError as e:
            self._busy_skips += 1
            (log.info if self._busy_skips == 1 else log.debug)("%s; retrying in %.0f s", e,
                                                               min(self.interval or BUSY_RETRY, BUSY_RETRY))
            return True
        except Exception as e:  # a failed run must not end automatic updates: report it and go on
            self._failed = True
            self.last_error = f"{type(e).__name__}: {e}"
            self.last_error_time = time.time()
            log.error("automatic update of %s failed: %s", self.library.root, self.last_error,
                      exc_info=log.isEnabledFor(logging.DEBUG))
        else:
            self.last_report = report
            self.runs += 1
            self._last_finished = time.time()
            self._failed = False  # last: whoever sees the failure cleared also sees this run's report
            log.info("automatic update of %s: %s", self.library.root, report.summary())
        finally:
            self._progress = None
        return False

    def _watch_files(self) -> None:
        from watchfiles import watch

        root, workspace = str(self.library.root), str(self.library.workspace)
        media = IMAGE_EXTENSIONS | getattr(_catalog, "VIDEO_EXTENSIONS", frozenset())

        def relevant(_change: Any, path: str) -> bool:
            if path == workspace or path.startswith(workspace + os.sep):
                return False  # our own writes
            suffix = os.path.splitext(path)[1].lower()
            return suffix in media or not suffix  # images, videos, and folders (moved or deleted)

        try:
            for changes in watch(root, watch_filter=relevant, debounce=int(self.debounce * 1000), step=50,
                                 stop_event=self._stop, rust_timeout=1000, yield_on_timeout=True,
                                 raise_interrupt=False):
                self._watching.set()  # the first (empty) batch comes once the watcher is registered
                if not changes:
                    continue
                log.debug("%d file changes under %s: updating", len(changes), root)
                self._request()
        except Exception as e:  # the schedule keeps running without events
            self.last_error = f"file watching stopped: {type(e).__name__}: {e}"
            self.last_error_time = time.time()
            log.error("watching %s for changes failed (%s); updates continue on the schedule", root, e)


def enable(
    folder: str | os.PathLike[str] | Library,
    *,
    interval: float | None = None,
    watch: bool | None = None,
    reembed: bool = False,
    debounce: float = 1.0,
    on_run: Callable[[Service], None] | None = None,
    **library_options: Any,
) -> Service:
    """Turn on AI search for a folder: embed in the background now, then keep it current.

    Records ``enabled``, ``interval`` and ``watch`` in the workspace and returns the running
    :class:`Service` (its :attr:`~Service.library` is ready to search; results say when they are
    partial). Enabling a folder this process already serves replaces its service with the new settings.

    Parameters
    ----------
    folder
        An image folder or an open :class:`~picsift.Library`.
    interval
        Seconds between updates (re-scans), at least 1; default: the workspace's recorded interval (raised to
        1 s, with a warning, when it records less), else 600.
    watch
        Also update soon after files change (``pip install "picsift[watch]"``); default: as recorded, else False.
    reembed
        Confirm embedding every image again when ``model=`` differs from the workspace's model.
    debounce, on_run
        See :class:`Service`.
    library_options
        ``model``, ``workspace``, ``index``... for :class:`~picsift.Library` when ``folder`` is a path.

    Raises
    ------
    ModelMismatchError
        The model changed and ``reembed`` was not given (raised here, not in the background).
    """
    library = folder if isinstance(folder, Library) else Library(folder, **library_options)
    library.check_model(reembed=reembed)
    interval, watch = automatic_settings(library.catalog, interval, watch)
    service = Service(library, interval=interval, watch=watch, debounce=debounce, reembed=reembed, on_run=on_run)
    record_settings(library, interval=interval, watch=watch)
    with _services_lock:
        previous = _services.pop(library.workspace, None)
    if previous is not None:
        previous.stop()
    with _services_lock:
        _services[library.workspace] = service
    return service.start()


def disable(folder: str | os.PathLike[str] | Library, **library_options: Any) -> None:
    """Turn automatic updates off for a folder; its embeddings stay, and searching keeps working.

    Stops this process's service for it (if any) and records ``enabled=0`` in the workspace; a service
    of another process (``picsift watch``) sees that before its next run and stops. Enabling again
    resumes from the stored embeddings. ``library_options``: ``workspace=`` when the workspace is not in the folder.
    """
    library = folder if isinstance(folder, Library) else Library(folder, **library_options)
    try:
        service = service_for(library)
        if service is not None:
            service.stop()
        library.catalog.set_meta("enabled", "0")
    finally:
        if library is not folder:
            library.close()


def record_settings(library: Library, *, interval: float | None = None, watch: bool | None = None,
                    enabled: bool = True) -> None:
    """Record automatic-update settings in the workspace (``None``: keep the recorded value or default)."""
    record_automatic(library.catalog, interval, watch, enabled)


def service_for(folder: str | os.PathLike[str] | Library, workspace: str | os.PathLike[str] | None = None
                ) -> Service | None:
    """This process's running service for a folder (or library), or None."""
    if isinstance(folder, Library):
        key = folder.workspace
    else:
        root = Path(folder).expanduser().resolve()
        key = Path(workspace).expanduser().resolve() if workspace else root / WORKSPACE_DIRNAME
    with _services_lock:
        return _services.get(key)


def _require_watchfiles() -> None:
    try:
        import watchfiles  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            'watching folders for changes needs watchfiles: pip install "picsift[watch]"'
        ) from e
