"""Acting on images as files: copy or move them into a dataset, or delete them.

Files, catalog rows, dataset membership, annotations and embeddings stay consistent, even when the
process dies half-way. Every action runs in three steps:

1. **plan**: each image becomes one journal row in ``file_actions`` (action, source, target), all
   committed in one transaction before any file is touched;
2. **act** on the files: a copy is written under a temporary name and renamed into place, a move is a
   rename (a copy, then an unlink, across file systems), a delete is an unlink;
3. **record**: one transaction updates ``files`` and ``dataset_items`` (and, for deletes, drops the
   annotations and embeddings of images no file holds any more) and clears the journal.

:func:`recover` looks at the files behind any journal row left by a crash: an action whose file
operation happened is recorded, one that did not is dropped. Libraries run it before every update
and file action (under the workspace lock), and when they open.

Images are ids (or a collection's name). Copy and move take one file per image, the one the library
shows for it (its dataset file, else its first path); delete removes every file holding the image,
so it is really gone, and nothing else.

Every path read from the catalog or the journal goes through :func:`~picsift.safe_paths.library_path`: a
workspace is untrusted input, and a crafted row naming a file outside the library is refused (or, in the
journal, dropped with a warning), never acted on. A move whose target is its source reached another way
(a symlinked folder, a case-insensitive file system) never unlinks that one file.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import PicsiftError, UnsafePathError
from ..safe_paths import check_folder_name, library_path
from .catalog import content_id
from .catalog.journal import Journal
from .catalog.labels import forget_images
from .storage import is_remote

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger(__name__)

ACTIONS = ("copy", "move", "delete")


@dataclass(frozen=True)
class Action:
    id: int
    action: str
    source: str
    target: str | None
    image_id: str
    dataset: str | None


class FileActions:
    """Copy, move and delete files of one library (``Library.copy_images`` etc. lock and call these)."""

    def __init__(self, catalog: Catalog, root: Path):
        self.catalog, self.root = catalog, root
        self.workspace = catalog.path.parent  # video frames are catalogued there, by absolute path when outside

    def _path(self, path: str, what: str = "catalog path") -> Path:
        """The file a catalog path names, refused when it would be outside the library."""
        return library_path(self.root, path, what=what, workspace=self.workspace)

    # -- planning ---------------------------------------------------------------------------------
    def source_paths(self, ids: Sequence[str], every_file: bool) -> list[tuple[str, str]]:
        """``(image_id, path)`` of each image: its dataset file or first file, or every file it has."""
        table = self.catalog.file_table
        found: list[tuple[str, str]] = []
        missing = []
        for image_id in dict.fromkeys(ids):
            paths = table.paths_of(image_id)
            if not paths:
                missing.append(image_id)
                continue
            if not every_file:
                paths = [table.dataset_path_of(image_id) or paths[0]]
            for path in paths:
                self._path(path, f"catalog path of image {image_id}")
            found.extend((image_id, p) for p in paths)
        if missing:
            raise PicsiftError(f"{len(missing)} image(s) have no file in this library, e.g. {missing[0]!r}")
        return found

    def dataset_folder(self, dataset: str) -> str:
        """The folder (relative to the root) of dataset ``dataset``, creating the dataset if needed."""
        check_folder_name(dataset)
        folder = self.catalog.journal.dataset_folder(dataset)
        self._path(folder, f"folder of dataset {dataset!r}")
        return folder

    def plan(self, action: str, ids: Sequence[str], dataset: str | None = None) -> list[Action]:
        """Journal one row per file to act on (nothing is touched yet)."""
        if action not in ACTIONS:
            raise PicsiftError(f"unknown file action {action!r}; valid choices: {', '.join(ACTIONS)}")
        sources = self.source_paths(ids, every_file=action == "delete")
        rows: list[tuple[str, str, str | None, str, str | None]] = []
        if action == "delete":
            rows = [(action, path, None, image_id, None) for image_id, path in sources]
        else:
            assert dataset is not None
            folder = self.dataset_folder(dataset)
            taken: set[str] = set()
            for image_id, path in sources:
                target = self._target(folder, path, image_id, taken)
                if target != path:
                    rows.append((action, path, target, image_id, dataset))
                    taken.add(target)
                elif action == "copy":  # already in the folder: it only joins the dataset
                    rows.append((action, path, path, image_id, dataset))
        first = self.catalog.journal.append(rows)
        return [Action(first + i, *row) for i, row in enumerate(rows)]

    def _target(self, folder: str, source: str, image_id: str, taken: set[str]) -> str:
        """A free path in ``folder`` for ``source``'s file (or a file there with the same content)."""
        name = Path(source).name
        stem, suffix = Path(name).stem, Path(name).suffix
        tagged = f"{stem}-{image_id[:8]}"
        for candidate_name in [name, tagged + suffix, *(f"{tagged}-{n}{suffix}" for n in range(2, 100))]:
            candidate = f"{folder}/{candidate_name}"
            if candidate == source:
                return candidate
            if candidate in taken:
                continue
            full = self._path(candidate, "target")
            if not full.exists() or (full.is_file() and content_id(full.read_bytes()) == image_id):
                return candidate
        raise PicsiftError(f"no free file name for {source} in {folder}")

    # -- acting -----------------------------------------------------------------------------------
    def run(self, actions: list[Action]) -> None:
        """Do the file operations of journalled actions, then record them all in one transaction."""
        for action in actions:
            self._act(action)
        self.record(actions)

    def _act(self, action: Action) -> None:
        source = self._path(action.source)
        if action.action == "delete":
            source.unlink(missing_ok=True)
            return
        assert action.target is not None
        target = self._path(action.target)
        if action.target == action.source:
            return
        if target.exists():  # the same content is there already (see _target)
            if action.action == "move" and not _same_file(source, target):
                source.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if action.action == "move":
            try:
                os.rename(source, target)
                return
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise PicsiftError(f"cannot move {source} to {target}: {e.strerror}") from e
        _copy_durably(source, target)
        if action.action == "move":
            source.unlink()

    def record(self, actions: list[Action]) -> None:
        """Bring the catalog in line with actions whose file operations are done, clear their journal rows."""
        if not actions:
            return
        with self.catalog.transaction() as db:
            deleted: set[str] = set()
            for action in actions:
                if action.action == "delete":
                    Journal.record_delete(db, action.source)
                    deleted.add(action.image_id)
                else:
                    assert action.target is not None and action.dataset is not None
                    Journal.record_copy_or_move(db, action.action, action.source, action.target, action.image_id,
                                                action.dataset, functools.partial(os.stat, self._path(action.target)))
            Journal.clear(db, [a.id for a in actions])
            if deleted:
                forget_images(db, deleted)

    # -- recovery ---------------------------------------------------------------------------------
    def pending(self) -> list[Action]:
        return [Action(*r) for r in self.catalog.journal.pending()]

    def recover(self) -> int:
        """Finish or drop actions a crash left in the journal; returns how many there were.

        A row naming a path outside the library (a crafted workspace) is dropped untouched, with a warning.
        """
        actions = self.pending()
        done: list[Action] = []
        undone: list[Action] = []
        for action in actions:
            try:
                finished = self._finish(action)
            except UnsafePathError as e:
                log.warning("dropped file action %d without acting on it: %s", action.id, e)
                finished = False
            (done if finished else undone).append(action)
        self.record(done)
        if undone:
            with self.catalog.transaction() as db:
                Journal.clear(db, [a.id for a in undone])
        if actions:
            log.warning("finished %d and rolled back %d file actions interrupted earlier", len(done), len(undone))
        return len(actions)

    def _finish(self, action: Action) -> bool:
        """Complete what can be completed of an interrupted action; True when it is then done."""
        source = self._path(action.source, "journalled source")
        if action.action == "delete":
            return not source.exists()
        assert action.target is not None
        target = self._path(action.target, "journalled target")
        for leftover in target.parent.glob(f".{target.name}.*.picsift-partial"):
            leftover.unlink(missing_ok=True)
        target_ok = target.is_file() and content_id(target.read_bytes()) == action.image_id
        if action.action == "copy" or action.target == action.source:
            return target_ok
        if target_ok and source.exists() and not _same_file(source, target):
            source.unlink()  # a cross-device move died between copy and unlink
        return target_ok


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths reach one file (a symlinked folder, a case-insensitive file system, a hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _copy_durably(source: Path, target: Path) -> None:
    """Copy to a hidden partial name, fsync, then rename into place: the target is whole or absent."""
    partial = target.parent / f".{target.name}.{os.getpid()}.picsift-partial"
    try:
        shutil.copy2(source, partial)
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise PicsiftError(f"cannot copy {source} to {target}: {e.strerror or e}") from e


def actions_frame(actions: list[Action], root: Path) -> pd.DataFrame:
    """What :meth:`Library.copy_images` / ``move_images`` return: id, source and new path of each image."""
    return pd.DataFrame({
        "id": [a.image_id for a in actions],
        "source": [str(root / a.source) for a in actions],
        "path": [str(root / a.target) if a.target else None for a in actions],
    })


class Files:
    """Copying, moving and deleting a library's images (``Library.files``).

    Parameters
    ----------
    catalog, root
        The workspace catalog and the image folder.
    exclusive
        Holds the workspace lock while files change (one process at a time acts on them).
    resolve
        Image ids of what a caller passes as ``images`` (ids, a collection's name...: see
        :class:`picsift.query.scope.Scope`); default: ids only.
    changed
        Called after files changed (the library forgets the paths it keeps).
    """

    def __init__(self, catalog: Catalog, root: Path, exclusive: Callable[[], AbstractContextManager[None]],
                 resolve: Callable[[Any], list[str]] | None = None, changed: Callable[[], None] = lambda: None):
        self.catalog, self.root, self._exclusive = catalog, root, exclusive
        self._resolve = resolve or _ids_only
        self._changed = changed

    def copy(self, images: str | Iterable[str], dataset: str) -> pd.DataFrame:
        """Copy images (ids, or a collection's name) into dataset ``dataset`` (a folder under the root).

        Annotations follow by content (they are keyed by image id) and the copies share the originals'
        embeddings. Returns one row per image: id, source, path (of the copy).
        """
        return self._file_action("copy", images, dataset)

    def move(self, images: str | Iterable[str], dataset: str) -> pd.DataFrame:
        """Move images (ids, or a collection's name) into dataset ``dataset``; see :meth:`copy`."""
        return self._file_action("move", images, dataset)

    def delete(self, images: str | Iterable[str]) -> int:
        """Delete every file of these images (ids, or a collection's name), with their annotations and
        embeddings. Returns the number of files deleted. Irreversible: the app asks first."""
        return len(self._file_action("delete", images, None))

    def _file_action(self, action: str, images: Any, dataset: str | None) -> pd.DataFrame:
        if is_remote(self.root):
            raise PicsiftError(f"{action}: picsift copies, moves and deletes files in local folders only, not in "
                               f"{self.root} (nothing was changed)")
        ids = self._resolve(images)
        files = FileActions(self.catalog, self.root)
        with self._exclusive():
            files.recover()
            planned = files.plan(action, ids, dataset)
            try:
                files.run(planned)
            finally:
                self._changed()
                if files.pending():  # an error part-way: record what happened, drop the rest
                    files.recover()
        log.info("%s: %d file(s)%s", action, len(planned), f" into {dataset!r}" if dataset else "")
        return actions_frame(planned, self.root)


def _ids_only(images: Any) -> list[str]:
    if isinstance(images, (str, os.PathLike)) or not all(isinstance(i, str) for i in images):
        raise PicsiftError(f"give image ids, got {images!r}")
    return list(images)
