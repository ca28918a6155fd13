"""A Hugging Face dataset saved with ``save_to_disk``, seen as a read-only file system: its images indexed in place.

``picsift.Library("hfdataset:///abs/path/to/dataset")`` makes a library of the dataset's first ``Image`` column
without writing the images out: each row whose image is stored as bytes is a file ``ROW.EXT`` (``SPLIT/ROW.EXT`` in
a DatasetDict), read straight from the memory-mapped Arrow files. Its version stamp is the dataset's fingerprint
with the row, so saving the dataset again (a new fingerprint) reads it again, and content ids are the hash of the
bytes as for files. Rows whose image is only a path (not bytes) are left out: import those with ``--format hf``.

Costs: no disk beyond the workspace (the images are not copied); a listing computes every image's byte length with
Arrow (no Python copy of the bytes); each read copies one image's bytes out of the memory map. Labels are not read
here: ``import --format hf`` brings ClassLabel and other columns as tags.

The folder is untrusted (SECURITY.md): before ``datasets`` opens it, the files ``state.json`` and
``dataset_dict.json`` name must be plain names of regular files inside it, and nothing in it may be a link.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem

from ..embedding.decode import IMAGE_EXTENSIONS
from ..errors import PicsiftError
from ..reading import read_regular_file

PROTOCOL = "hfdataset"
_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"), (b"II*\x00", ".tif"),
          (b"MM\x00*", ".tif"))


class SavedDatasetFileSystem(AbstractFileSystem):
    """fsspec's view of ``save_to_disk`` folders: one file per image row (see the module's docstring)."""

    protocol = PROTOCOL
    root_marker = "/"

    def __init__(self, **storage_options: Any) -> None:
        super().__init__(**storage_options)
        self._lock = threading.Lock()
        self._opened: dict[str, tuple[Any, str, list[str]]] = {}  # folder -> (dataset, image column, names)

    # -- the dataset behind a path --------------------------------------------------------------------------------
    def _split(self, folder: str) -> tuple[Any, str, list[str]]:
        """The dataset saved in ``folder``, its image column and each row's file name ("" without bytes)."""
        with self._lock:
            if folder not in self._opened:
                self._opened[folder] = _open_split(Path(folder))
            return self._opened[folder]

    def _row(self, path: str) -> tuple[Any, str, int]:
        path = self._strip_protocol(path)
        folder, _, name = path.rpartition("/")
        if not os.path.isfile(os.path.join(folder, "state.json")):
            raise FileNotFoundError(path)
        dataset, column, names = self._split(folder)
        stem = name.split(".", 1)[0]
        if not stem.isdigit() or int(stem) >= len(names) or names[int(stem)] != name:
            raise FileNotFoundError(path)
        return dataset, column, int(stem)

    # -- what fsspec asks -------------------------------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path).rstrip("/") or "/"
        root = Path(path)
        if (root / "dataset_dict.json").is_file():
            entries: list[dict[str, Any]] = [{"name": f"{path}/{split}", "size": 0, "type": "directory"}
                                             for split in _splits(root)]
        elif (root / "state.json").is_file():
            dataset, column, names = self._split(path)
            sizes = _byte_lengths(dataset, column)
            fingerprint = getattr(dataset, "_fingerprint", "")
            entries = [{"name": f"{path}/{name}", "size": size, "type": "file", "ETag": f"{fingerprint}:{row}"}
                       for row, (name, size) in enumerate(zip(names, sizes, strict=True)) if name]
        else:
            raise FileNotFoundError(f"{path} is no folder written by save_to_disk (no state.json or "
                                    "dataset_dict.json)")
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path).rstrip("/")
        if os.path.isdir(path):
            return {"name": path, "size": 0, "type": "directory"}
        dataset, column, row = self._row(path)
        return {"name": path, "size": len(_bytes(dataset, column, row)), "type": "file",
                "ETag": f"{getattr(dataset, '_fingerprint', '')}:{row}"}

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        dataset, column, row = self._row(path)
        return _bytes(dataset, column, row)[start:end]

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        import io

        if mode != "rb":
            raise PermissionError(f"{PROTOCOL}: read only")
        return io.BytesIO(self.cat_file(path))


def _splits(root: Path) -> list[str]:
    listing = _json(root / "dataset_dict.json")
    splits = listing.get("splits") if isinstance(listing, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) and _plain(s) for s in splits):
        raise PicsiftError(f"{root / 'dataset_dict.json'}: 'splits' must be a list of plain folder names")
    return splits


def _open_split(folder: Path) -> tuple[Any, str, list[str]]:
    try:
        import datasets
    except ImportError as e:
        raise PicsiftError('a saved Hugging Face dataset needs the datasets package: pip install "picsift[hf]"') from e
    _check_folder(folder)
    dataset = datasets.load_from_disk(str(folder))
    if not isinstance(dataset, datasets.Dataset):
        raise PicsiftError(f"{folder} holds a DatasetDict: open its parent folder")
    column = next((name for name, feature in dataset.features.items() if isinstance(feature, datasets.Image)), None)
    if column is None:
        raise PicsiftError(f"{folder}: the dataset has no Image column (columns: {', '.join(dataset.features)})")
    dataset = dataset.cast_column(column, datasets.Image(decode=False))
    names = []
    for row, cell in enumerate(_cells(dataset, column)):
        names.append(f"{row:08d}{_extension(cell)}" if cell["has_bytes"] else "")
    return dataset, column, names


def _cells(dataset: Any, column: str) -> list[dict[str, Any]]:
    """Per row: whether the image has bytes, its stored path and its first bytes (for the file's extension)."""
    import pyarrow.compute as pc

    images = dataset.data.column(column).combine_chunks()
    data, paths = pc.struct_field(images, "bytes"), pc.struct_field(images, "path")
    heads = pc.binary_slice(data, 0, 8).to_pylist()
    return [{"has_bytes": head is not None, "path": path, "head": head or b""}
            for head, path in zip(heads, paths.to_pylist(), strict=True)]


def _byte_lengths(dataset: Any, column: str) -> list[int]:
    import pyarrow.compute as pc

    lengths = pc.binary_length(pc.struct_field(dataset.data.column(column).combine_chunks(), "bytes"))
    return [n or 0 for n in lengths.to_pylist()]


def _bytes(dataset: Any, column: str, row: int) -> bytes:
    data = dataset.data.column(column)[row]["bytes"].as_py()
    if data is None:
        raise FileNotFoundError(f"row {row} has no image bytes")
    return bytes(data)


def _extension(cell: dict[str, Any]) -> str:
    suffix = os.path.splitext(cell.get("path") or "")[1].lower()
    if suffix in IMAGE_EXTENSIONS:
        return suffix
    head = cell.get("head") or b""
    if head[:4] == b"RIFF" or head[8:12] == b"WEBP":
        return ".webp"
    return next((extension for magic, extension in _MAGIC if head.startswith(magic)), ".png")


def _check_folder(folder: Path) -> None:
    """Refuse a folder whose state names files outside it, or that holds links or special files."""
    for entry in folder.iterdir():
        if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
            raise PicsiftError(f"{entry}: a dataset folder may hold only regular files (no link or special file)")
    state = _json(folder / "state.json")
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list) or not files:
        raise PicsiftError(f"{folder / 'state.json'}: '_data_files' must list the dataset's arrow files")
    for entry in files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _plain(name) or not (folder / name).is_file():
            raise PicsiftError(f"{folder / 'state.json'}: {name!r} is not a plain name of a file in the folder")


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\x00" not in name


def _json(path: Path) -> Any:
    try:
        return json.loads(read_regular_file(path, 16 * 2**20)[0])
    except (OSError, ValueError) as e:
        raise PicsiftError(f"cannot read {path}: {e}") from e
