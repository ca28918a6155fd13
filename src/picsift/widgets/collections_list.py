"""The collections list: the temporary collection, saved ones, save-as, delete and pandas export."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import traitlets

from ..errors import PicsiftError
from ..library import Library
from ._base import PicsiftWidget

TEMPORARY = Library.TEMPORARY

ViewProvider = Callable[[], pd.DataFrame]
RecipeProvider = Callable[[], dict[str, Any]]
ShowCallback = Callable[[str], None]


class CollectionsList(PicsiftWidget):
    """Lists the temporary collection (``temporary``: the last search or sample, which each new one
    replaces; size and query) and the saved ones (``rows``: name, size, query), and acts on them.

    Click the temporary one to go back to the last search after showing a saved one. "Save" stores
    the current view (given by ``view``, a function returning the shown DataFrame; default: the
    temporary collection) with how it was made (given by ``recipe``; default: the temporary
    collection's recipe); "export" puts it into :attr:`exported`.
    """

    _bundle = "collections"
    events = ("show",)
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    temporary = traitlets.Dict().tag(sync=True)
    current = traitlets.Unicode("").tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)

    def __init__(self, library: Library, view: ViewProvider | None = None, recipe: RecipeProvider | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.library = library
        self._view = view
        self._recipe = recipe
        self.exported: pd.DataFrame | None = None
        self.refresh()

    def on_show(self, callback: ShowCallback) -> None:
        """Call ``callback(name)`` when a collection is clicked (``on("show", ...)``)."""
        self.on("show", callback)

    def refresh(self) -> None:
        rows = [_row(name, recipe, size) for name, recipe, size in self.library.collections.rows()]
        self.rows = [row for row in rows if row["name"] != TEMPORARY]
        self.temporary = next((row for row in rows if row["name"] == TEMPORARY), {})

    def refresh_temporary(self) -> None:
        """Re-read the temporary row only: a search or sample replaced it, the saved ones are as they were."""
        try:
            self.temporary = _row(TEMPORARY, *self.library.collections.summary(TEMPORARY))
        except KeyError:
            self.temporary = {}

    def view(self) -> pd.DataFrame:
        return self._view() if self._view is not None else self.library.collection().df

    def save(self, name: str) -> None:
        """Save the current view as collection ``name`` (replacing one of that name)."""
        name = name.strip()
        if not name or name.startswith("_"):
            raise ValueError(f"invalid collection name {name!r}: it must be non-empty and not start with '_'")
        df = self.view()
        try:
            recipe = dict(self._recipe() if self._recipe is not None else self.library.collections.recipe())
        except PicsiftError:  # no search yet
            recipe = {}
        recipe["summary"] = recipe.get("summary") or name
        scores = [None if pd.isna(s) else float(s) for s in df["score"]]
        self.library.collections.write(name, df["id"].tolist(), scores, recipe)
        self.current = name
        self.notice = f"saved {len(df)} images as {name!r}"
        self.refresh()

    def _on_save_collection(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.save(str(content.get("name", "")))

    def _on_delete_collection(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        name = str(content.get("name", ""))
        self.library.collections.delete(name)
        self.notice = f"deleted {name!r}"
        self.refresh()

    def _on_show_collection(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        name = str(content.get("name", ""))
        self.library.collection(name)  # raises, naming the valid ones, if there is none
        self.current = name
        self.emit("show", name)

    def _on_export(self, _content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.exported = self.view()
        self.notice = f"exported {len(self.exported)} rows: .exported (a pandas DataFrame)"


def _row(name: str, recipe: dict[str, Any], size: int) -> dict[str, Any]:
    return {"name": name, "size": int(size), "query": Library.describe_recipe(recipe)}
