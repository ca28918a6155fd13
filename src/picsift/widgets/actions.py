"""Actions on the current view: copy or move to a dataset, delete, create a labelling job, export.

The images acted on come from a ``target`` function (in the app: the selected tiles when there are
any, else every tile shown after filters and score range); ``n_selected`` and ``n_shown`` tell the
front-end which ("act on 12 selected" / "act on all 36 shown"). Deleting needs an explicit
confirmation: the front-end asks first, and the message must carry ``confirmed: true`` and the number
of images the user agreed to delete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import traitlets

from ..errors import PicsiftError
from ..library import Library
from ._base import PicsiftWidget

Target = Callable[[], list[str]]
DoneCallback = Callable[[str, list[str], Any], None]


class Actions(PicsiftWidget):
    """Buttons acting on a set of images (given by ``target``) through the library.

    Public traits: ``n_selected``, ``n_shown`` (what the target is: the selection when non-zero),
    ``dataset_names`` (suggestions), ``formats``, ``notice`` (what the last action did). Callbacks
    registered with :meth:`on_done` get ``(action, ids, result)`` after each action succeeds.
    """

    _bundle = "actions"
    events = ("done",)
    n_selected = traitlets.Int(0).tag(sync=True)
    n_shown = traitlets.Int(0).tag(sync=True)
    dataset_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    formats = traitlets.List(traitlets.Unicode(), default_value=list(Library.EXPORT_FORMATS)).tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)

    def __init__(self, library: Library, target: Target | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.library = library
        self._target = target
        self.last_result: Any = None
        self.refresh()

    def on_done(self, callback: DoneCallback) -> None:
        """Call ``callback(action, ids, result)`` after each action succeeds (``on("done", ...)``)."""
        self.on("done", callback)

    def refresh(self) -> None:
        """Reload the dataset names offered for copy / move."""
        self.dataset_names = self.library.labels.dataset_names()

    def images(self) -> list[str]:
        """The ids the next action applies to."""
        if self._target is None:
            raise PicsiftError("these actions have no images to act on: use picsift.app() or pass target=")
        ids = list(self._target())
        if not ids:
            raise PicsiftError("no images to act on: the view is empty (search, sample or show a collection)")
        return ids

    def _what(self, ids: list[str]) -> str:
        return f"{len(ids)} {'selected ' if self.n_selected else ''}image{'s' if len(ids) != 1 else ''}"

    def _done(self, action: str, ids: list[str], result: Any, notice: str) -> Any:
        self.last_result = result
        self.notice = notice
        self.emit("done", action, ids, result)
        return result

    # -- the actions ------------------------------------------------------------------------------
    def copy(self, dataset: str) -> Any:
        """Copy the image files into dataset ``dataset`` (a folder under the library root)."""
        ids = self.images()
        result = self.library.files.copy(ids, _dataset_name(dataset))
        self.refresh()
        return self._done("copy", ids, result, f"copied {self._what(ids)} to {dataset.strip()!r}")

    def move(self, dataset: str) -> Any:
        """Move the image files into dataset ``dataset``."""
        ids = self.images()
        result = self.library.files.move(ids, _dataset_name(dataset))
        self.refresh()
        return self._done("move", ids, result, f"moved {self._what(ids)} to {dataset.strip()!r}")

    def delete(self, *, confirmed: bool = False, count: int | None = None) -> int:
        """Delete the image files (and their catalog rows); needs ``confirmed=True``.

        ``count`` is how many images the user agreed to delete; if the target changed since, nothing
        is deleted.
        """
        ids = self.images()
        if confirmed is not True:
            raise PicsiftError(f"deleting {self._what(ids)} needs confirmation (confirmed=True); nothing was deleted")
        if count is not None and int(count) != len(ids):
            raise PicsiftError(f"you confirmed deleting {count} images but the view now holds {len(ids)}; "
                               "nothing was deleted: press Delete again")
        deleted = int(self.library.files.delete(ids))
        return int(self._done("delete", ids, deleted, f"deleted {deleted} image file{'s' if deleted != 1 else ''}"))

    def create_job(self, name: str) -> str:
        """Create labelling job ``name`` with the images as pending."""
        name = name.strip()
        if not name:
            raise PicsiftError("a labelling job needs a name")
        ids = self.images()
        self.library.labels.create_job(name, ids)
        return str(self._done("create_job", ids, name, f"labelling job {name!r}: added {self._what(ids)}"))

    def export(self, out: str | os.PathLike[str], format: str) -> Path:
        """Export the images (with their annotations) to ``out`` in ``format``."""
        if not str(out).strip():
            raise PicsiftError("export needs an output path")
        ids = self.images()
        path = Path(self.library.export(ids, Path(out).expanduser(), format))
        return Path(self._done("export", ids, path, f"exported {self._what(ids)} as {format} to {path}"))

    # -- messages ---------------------------------------------------------------------------------
    def _on_copy_images(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.copy(str(content.get("dataset", "")))

    def _on_move_images(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.move(str(content.get("dataset", "")))

    def _on_delete_images(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        count = content.get("count")
        self.delete(confirmed=content.get("confirmed") is True, count=None if count is None else int(count))

    def _on_create_job(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.create_job(str(content.get("name", "")))

    def _on_export_images(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.export(str(content.get("path", "")), str(content.get("format", "")))


def _dataset_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise PicsiftError("choose a dataset name to copy or move the images to")
    return name
