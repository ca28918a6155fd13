"""Which index backend a workspace uses, and moving a workspace off a backend that was only ever the default.

A library names its backend (``Library(root, index="hnsw")``), or it gets the one the workspace was last updated
with, or the default (:data:`~picsift.index.DEFAULT_BACKEND`: ``ivf``, the compact layout). The catalog records, next
to the backend (meta ``index``), whether a person chose it or it was the default then (``index_chosen_by``:
``"user"`` or ``"default"``). A backend that came by default follows the default when it changes: the next
:meth:`~picsift.Library.update` builds the new default's index from the embedding store (the source of truth: no
vector is lost), removes the old index's files and logs one line saying so. Until that update, searches keep using
the old index, which is built and fast.

The defaults so far: ``hnsw``, then ``qdrant-edge`` (2026-12), then ``ivf`` (2026-12-07). Workspaces updated before
``index_chosen_by`` existed record only the backend: ``hnsw``, the default of that time, moves; any other backend
was chosen by a person and stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..core.catalog import Catalog
from ..workspace_files import WorkspaceFiles
from . import DEFAULT_BACKEND
from .base import remove_folder

log = logging.getLogger(__name__)

#: The default before the compact layout (until 2026-12).
PREVIOUS_DEFAULT = "hnsw"
#: Catalog meta keys: who chose the recorded backend, and a backend whose files a move has yet to remove.
CHOSEN_BY_KEY, RETIRE_KEY = "index_chosen_by", "index_retire"
USER, DEFAULT = "user", "default"


@dataclass(frozen=True)
class IndexChoice:
    """The backend to use now, who chose it, and the backend the next update moves to (None: stays)."""

    name: str
    chosen_by: str
    move_to: str | None = None


def choose_index(asked: str | None, recorded: str | None, recorded_chosen_by: str | None) -> IndexChoice:
    """The backend a library opened with ``index=asked`` uses, given what the catalog records.

    Parameters
    ----------
    asked
        The ``index`` argument (None: not given).
    recorded
        The backend the workspace was last updated with (meta ``index``; None for a new workspace).
    recorded_chosen_by
        Meta ``index_chosen_by`` (None in workspaces updated before it existed).
    """
    if asked:
        return IndexChoice(asked, USER)
    if not recorded:
        return IndexChoice(DEFAULT_BACKEND, DEFAULT)
    came_by_default = recorded_chosen_by == DEFAULT or (recorded_chosen_by is None and recorded == PREVIOUS_DEFAULT)
    if came_by_default and recorded != DEFAULT_BACKEND:
        return IndexChoice(recorded, DEFAULT, move_to=DEFAULT_BACKEND)
    return IndexChoice(recorded, recorded_chosen_by or USER)


def read_choice(catalog: Catalog, asked: str | None) -> IndexChoice:
    """:func:`choose_index` from what ``catalog`` records."""
    return choose_index(asked, catalog.get_meta("index"), catalog.get_meta(CHOSEN_BY_KEY))


def begin_update(catalog: Catalog, choice: IndexChoice) -> IndexChoice:
    """Record who chose the backend, and, when the default moved on, start the move: one line logged, the old
    backend recorded for :func:`finish_update` to remove. Returns the choice this update uses."""
    with catalog.transaction() as db:
        if choice.move_to is not None:
            announce_move(choice.name, choice.move_to)
            catalog.set_meta(RETIRE_KEY, choice.name, db)
            choice = IndexChoice(choice.move_to, choice.chosen_by)
        catalog.set_meta(CHOSEN_BY_KEY, choice.chosen_by, db)
    return choice


def finish_update(catalog: Catalog, workspace: Path, current: str) -> None:
    """After the new backend's index is built: remove the files of the one moved from (also when an earlier
    update was stopped before it could)."""
    retired = catalog.get_meta(RETIRE_KEY)
    if retired is None:
        return
    if retired != current:
        retire_index(workspace, retired)
    with catalog.transaction() as db:
        catalog.delete_meta(RETIRE_KEY, db)


def announce_move(old: str, new: str) -> None:
    """The one line a workspace's move to the new default backend logs."""
    log.warning("picsift: this workspace's index moves from %s (a previous default) to %s (the compact layout: "
                "inverted lists over the store's one-byte score codes, about 2 bytes per image beside the store), "
                "built once from the embedding store; Library(..., index=%r) keeps %s", old, new, old, old)


def retire_index(workspace: Path, name: str) -> None:
    """Remove backend ``name``'s index folder and state file from every model's folder of ``workspace`` (after a
    move; a model used later gets the new backend's index, built from its store)."""
    files = WorkspaceFiles(workspace)
    if not files.is_folder("models"):
        return
    for model in files.list("models"):
        folder = f"models/{model}"
        if not files.is_folder(folder):
            continue
        if files.exists(f"{folder}/{name}") or files.exists(f"{folder}/{name}.old"):
            remove_folder(workspace / folder / name)
        files.remove(f"{folder}/{name}.state.json")


__all__ = ["CHOSEN_BY_KEY", "PREVIOUS_DEFAULT", "RETIRE_KEY", "IndexChoice", "announce_move", "begin_update",
           "choose_index", "finish_update", "read_choice", "retire_index"]
