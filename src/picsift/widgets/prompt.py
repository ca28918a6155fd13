"""The prompt box: text prompt, result limit, search mode, and the library's readiness."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import traitlets

from ..errors import WorkspaceBusyError
from ._base import PicsiftWidget

if TYPE_CHECKING:
    from ..library import Library
    from ..query.imageset import ImageSet

log = logging.getLogger(__name__)

SEARCH_MODES = ("text", "objects", "similar", "diverse")  # objects: the labelled boxes' crops
SubmitCallback = Callable[[str, int, str], None]


class PromptBox(PicsiftWidget):
    """A prompt with Enter-to-submit, a result limit and a mode (text, similar to selection, diverse).

    ``status`` mirrors :meth:`Library.status` plus ``progress`` ``{done, total}`` while an update runs.
    Search is disabled until some images are embedded (``status["searchable"]``); until all are
    (``status["ready"]``) the box says "searching N of M images (embedding continues)" and results are
    flagged :attr:`~picsift.Results.partial`. For a library with automatic updates on (:func:`picsift.enable`,
    ``picsift watch``) the box follows their progress (:meth:`follow_updates`). Alone, a submit runs
    ``library.search`` and keeps the answer in :attr:`results`; inside :class:`App` the app handles
    submits (:meth:`on_submit`).
    """

    _bundle = "prompt"
    events = ("submit",)
    text = traitlets.Unicode("").tag(sync=True)
    limit = traitlets.Int(1000, min=1).tag(sync=True)
    mode = traitlets.Enum(SEARCH_MODES, default_value="text").tag(sync=True)
    status = traitlets.Dict().tag(sync=True)

    def __init__(self, library: Library | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.library = library
        self.results: ImageSet | None = None
        self._update_thread: threading.Thread | None = None
        self._follower: threading.Thread | None = None
        self._closed = threading.Event()
        if library is not None:
            self.refresh_status()
            if self.status.get("enabled") or self.status.get("updating"):
                self.follow_updates()

    @property
    def ready(self) -> bool:
        """Every image is embedded: results are complete."""
        return bool(self.status.get("ready"))

    @property
    def searchable(self) -> bool:
        """Some images are embedded: a search runs (partial until :attr:`ready`)."""
        return bool(self.status.get("searchable", self.status.get("ready")))

    def close(self) -> None:
        self._closed.set()
        super().close()

    def follow_updates(self, every: float = 1.0) -> None:
        """Keep :attr:`status` current while updates run elsewhere (a service, another process).

        Polls cheaply (is an update running, when did the last one end) every ``every`` seconds and
        refreshes the full status only when that changed, until the widget is closed.
        """
        if self.library is None or (self._follower is not None and self._follower.is_alive()):
            return
        library = self.library

        def follow() -> None:
            seen: Any = None
            while not self._closed.wait(every):
                try:
                    now = library.activity()
                    if now != seen and (self._update_thread is None or not self._update_thread.is_alive()):
                        seen = now
                        self.refresh_status()
                except Exception as e:  # a closed library ends following
                    log.debug("stopped following updates of %s: %s", library.root, e)
                    return

        self._follower = threading.Thread(target=follow, name="picsift-follow", daemon=True)
        self._follower.start()

    def on_submit(self, callback: SubmitCallback) -> None:
        """Call ``callback(text, limit, mode)`` on every submit instead of searching here (``on("submit", ...)``)."""
        self.on("submit", callback)

    def refresh_status(self, progress: dict[str, int] | None = None) -> None:
        if self.library is None:
            return
        status = self.library.status()
        status["updating"] = bool(status.get("updating")) or (
            self._update_thread is not None and self._update_thread.is_alive())
        if progress is not None:
            status["progress"] = progress
            status["ready"] = False
        self.status = status

    def update_library(self, *, background: bool = True) -> None:
        """Embed new images with live progress in the box (in a thread unless ``background=False``)."""
        if self.library is None:
            raise ValueError("this PromptBox has no library to update")
        library = self.library

        last = [0.0]

        def progress(done: int, total: int) -> None:
            # status() counts the catalog; a few refreshes a second are plenty for a progress bar
            if done == total or time.monotonic() - last[0] > 0.25:
                last[0] = time.monotonic()
                self.refresh_status({"done": done, "total": total})

        def run() -> None:
            try:
                library.update(progress=False, on_progress=progress)
            except WorkspaceBusyError:  # another process embeds (a second page of picsift serve, a service):
                self.follow_updates()   # show its progress; search enables itself when it is done
            except Exception as e:
                self.report(e)
            finally:
                self._update_thread = None
                self.refresh_status()

        if background:
            self._update_thread = threading.Thread(target=run, name="picsift-update", daemon=True)
            self.refresh_status({"done": 0, "total": int(self.status.get("pending", 0))})
            self._update_thread.start()
        else:
            run()

    def _on_submit(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        text = str(content.get("text", self.text))
        limit = int(content.get("limit", self.limit))
        mode = str(content.get("mode", self.mode))
        if mode not in SEARCH_MODES:
            raise ValueError(f"mode={mode!r}; valid choices: {', '.join(SEARCH_MODES)}")
        self.text, self.limit, self.mode = text, limit, mode
        self.submit()

    def submit(self) -> None:
        """Run the current prompt, as if Enter was pressed."""
        if self.library is not None and not self.searchable:
            raise RuntimeError("the library is not ready yet: no image is embedded so far (embedding continues)")
        if self.listened("submit"):
            self.emit("submit", self.text, self.limit, self.mode)
            return
        if self.library is None:
            raise ValueError("this PromptBox has neither a library nor an on_submit callback")
        if self.mode not in ("text", "objects"):
            raise ValueError(f"mode {self.mode!r} needs the app (selection / sampler); use picsift.app()")
        self.results = self.library.search(self.text, limit=self.limit, objects=self.mode == "objects")
