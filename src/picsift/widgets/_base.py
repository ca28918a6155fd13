"""The base of every picsift widget: bundled front-end, typed message dispatch, visible errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import anywidget
import traitlets

from ._protocol import check_message

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
Handler = Callable[[dict[str, Any], list[bytes]], None]


def bundle(name: str, suffix: str = ".js") -> str:
    """The built front-end ``static/NAME.js`` (or ``.css``); a module that says how to build it if missing."""
    path = STATIC / f"{name}{suffix}"
    if path.exists():
        return path.read_text(encoding="utf-8")
    log.warning("%s is missing: build the widget front-ends with `npm ci && npm run build`", path)
    if suffix == ".css":
        return ""
    message = f"picsift: {path.name} is not built; run `npm ci && npm run build` (or `make setup`) and restart"
    return f"export default {{ render({{ el }}) {{ el.textContent = {message!r}; }} }};"


class PicsiftWidget(anywidget.AnyWidget):
    """Dispatches custom messages by ``type`` to ``_on_<type>`` methods and shows their errors.

    ``error`` is the last error message (empty when the last action succeeded); the front-end shows it.
    """

    _bundle: ClassVar[str] = ""
    error = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if cls.__dict__.get("_bundle"):  # before anywidget turns _esm / _css into traits
            cls._esm = bundle(cls._bundle)
            cls._css = bundle("style", ".css")
        super().__init_subclass__(**kwargs)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.on_msg(self._dispatch)

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
