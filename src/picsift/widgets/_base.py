"""The base of every picsift widget: bundled front-end, typed message dispatch, visible errors, callbacks
registered with :meth:`PicsiftWidget.on`, and the selection kept as both ids and row positions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ._protocol import check_message

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
Handler = Callable[[dict[str, Any], list[bytes]], None]


def bundle(name: str, suffix: str = ".js") -> Path | str:
    """The built front-end ``static/NAME.js`` (or ``.css``) as a path, which anywidget reads (and, with
    ``ANYWIDGET_HMR=1``, watches: a rebuilt front-end shows without restarting the kernel); if it is
    missing, a module that says how to build it."""
    path = STATIC / f"{name}{suffix}"
    if path.is_file():
        return path
    log.warning("%s is missing: build the widget front-ends with `npm ci && npm run build`", path)
    if suffix == ".css":
        return ""
    message = f"picsift: {path.name} is not built; run `npm ci && npm run build` (or `make setup`) and restart"
    return f"export default {{ render({{ el }}) {{ el.textContent = {message!r}; }} }};"


class PicsiftWidget(anywidget.AnyWidget):
    """Dispatches custom messages by ``type`` to ``_on_<type>`` methods and shows their errors.

    ``error`` is the last error message (empty when the last action succeeded); the front-end shows it.
    :meth:`on` registers callbacks for the events a widget names in ``events``.
    """

    _bundle: ClassVar[str] = ""
    #: The events :meth:`on` accepts (each widget documents the arguments its callbacks get).
    events: ClassVar[tuple[str, ...]] = ()
    error = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if cls.__dict__.get("_bundle"):  # before anywidget turns _esm / _css into traits
            cls._esm = bundle(cls._bundle)
            cls._css = bundle("style", ".css")
        super().__init_subclass__(**kwargs)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._callbacks: dict[str, list[Callable[..., Any]]] = {event: [] for event in self.events}
        self.on_msg(self._dispatch)

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback`` whenever ``event`` happens (one of :attr:`events`)."""
        if event not in self._callbacks:
            valid = ", ".join(self.events) or "none"
            raise ValueError(f"{type(self).__name__} has no event {event!r}; valid events: {valid}")
        self._callbacks[event].append(callback)

    def off(self, event: str, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` for ``event`` (nothing happens if it was not registered)."""
        if callback in self._callbacks.get(event, []):
            self._callbacks[event].remove(callback)

    def listened(self, event: str) -> bool:
        """Whether some callback is registered for ``event``."""
        return bool(self._callbacks.get(event))

    def set_by_browser(self, name: str) -> bool:
        """Whether trait ``name`` is being set from the front-end now (in an observer of that change)."""
        return name in self._property_lock

    def emit(self, event: str, *args: Any) -> None:
        """Call the callbacks registered for ``event`` with ``args``, in the order they were registered."""
        for callback in self._callbacks[event]:
            callback(*args)

    def _dispatch(self, _widget: Any, content: Any, buffers: list[bytes] | None) -> None:
        request_id = content.get("request_id") if isinstance(content, dict) else None
        try:
            kind = check_message(content)
            handler: Handler | None = getattr(self, f"_on_{kind}", None)
            if handler is None:
                raise ValueError(f"{type(self).__name__} does not handle {kind!r} messages")
            self.handle(handler, content, list(buffers or []))
        except Exception as e:
            self.report(e, request_id)

    def handle(self, handler: Handler, content: dict[str, Any], buffers: list[bytes]) -> None:
        """Run a message handler with ``busy`` set (errors propagate to :meth:`report`)."""
        self.busy = True
        try:
            handler(content, buffers)
            if content.get("type") not in ("thumbnails", "detail"):
                self.error = ""
        finally:
            self.busy = False

    def report(self, error: BaseException | str, request_id: Any = None) -> None:
        """Show an error in the widget (and log it): never a silent no-op."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        if isinstance(error, BaseException):
            log.warning("%s: %s", type(self).__name__, message, exc_info=error)
        self.error = message
        self.send({"type": "error", "request_id": request_id, "message": message})


class SelectionSync:
    """The selection of a widget of rows (a gallery's tiles, an explorer's points), kept twice: as ``selection``
    (ids, a traitlets list the widget declares) and as ``_selected`` (sorted row positions, what the browser
    sends), each updated from the other.

    A widget mixes this in (before :class:`PicsiftWidget`), declares both traits, calls
    :meth:`_init_selection` in ``__init__`` and :meth:`_rows_changed` when its rows change, and provides
    :meth:`_row_count`, :meth:`_ids_at` and :meth:`_id_rows`. With ``_lazy_selection`` the ids are built only
    when something observes ``selection`` or reads it (1M points selected cost no 1M-string list).
    Callbacks of the ``select`` event get the positions.
    """

    _lazy_selection: ClassVar[bool] = False
    _positions: np.ndarray
    _id_index: pd.Index | None
    _syncing: bool
    selection: list[str]
    _selected: Any
    _trait_notifiers: dict[Any, Any]
    _trait_values: dict[str, Any]
    emit: Callable[..., None]
    observe: Callable[..., None]

    def _init_selection(self) -> None:
        self._positions = np.zeros(0, np.int32)
        self._id_index = None
        self._syncing = False
        self.observe(self._on_selected, "_selected")
        self.observe(self._on_selection, "selection")

    # -- provided by the widget -------------------------------------------------------------------
    def _row_count(self) -> int:
        raise NotImplementedError

    def _ids_at(self, positions: np.ndarray) -> np.ndarray:
        """The ids of rows at ``positions``."""
        raise NotImplementedError

    def _id_rows(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The ids to look ids up in, and (when they are not in row order) the row of each of them."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------
    @property
    def selected_indices(self) -> np.ndarray:
        """The selection as sorted int32 row positions (no ids are built)."""
        return self._positions

    def select_indices(self, positions: Sequence[int] | np.ndarray | None) -> None:
        """Select the rows at ``positions`` (None or empty: nothing), as a selection made in the browser."""
        self._selected = None if positions is None else np.asarray(positions, dtype=np.int32)

    def _rows_changed(self) -> None:
        """The rows changed: forget the id -> row index (rebuilt on the next lookup)."""
        self._id_index = None

    def _positions_of(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Sorted, unique row positions of those of ``ids`` that are shown (one id -> row index, kept)."""
        wanted = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).astype(str)
        known, rows = self._id_rows()
        if self._id_index is None:
            self._id_index = pd.Index(known)
        if self._id_index.is_unique:
            found = self._id_index.get_indexer(wanted)
            found = found[found >= 0]
        else:
            found = np.flatnonzero(np.isin(known, wanted))
        return np.unique(found if rows is None else rows[found]).astype(np.int32)

    def _on_selected(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        n = self._row_count()
        positions = np.asarray(change["new"] if change["new"] is not None else [], dtype=np.int64)
        if len(positions) and not (positions[0] >= 0 and positions[-1] < n and np.all(positions[1:] > positions[:-1])):
            mask = np.zeros(n, bool)  # sorted and unique in O(n); np.unique sorts (1.3 s at 700k)
            mask[positions[(positions >= 0) & (positions < n)]] = True
            positions = np.flatnonzero(mask)
        positions = positions.astype(np.int32)
        self._positions = positions
        others = [h for h in self._trait_notifiers.get("selection", {}).get("change", []) if h != self._on_selection]
        if not self._lazy_selection or others:  # someone listens (the app's gallery): build the ids now
            self._syncing = True
            try:
                self.selection = self._ids_at(positions).tolist()
            finally:
                self._syncing = False
        else:  # built from the positions on first access (traitlets' dynamic default)
            self._trait_values.pop("selection", None)
        self.emit("select", positions)

    def _on_selection(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self._select_ids(change["new"])

    def _select_ids(self, ids: Sequence[str] | np.ndarray) -> None:
        """Set ``_selected`` (and the positions) from ids, without rebuilding ``selection``."""
        self._syncing = True
        try:
            self._positions = self._positions_of(ids)
            self._selected = self._positions
        finally:
            self._syncing = False
        self.emit("select", self._positions)
