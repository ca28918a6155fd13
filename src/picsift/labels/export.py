"""Handing images on: one DataFrame row per image with its labels, and files in CSV, Parquet or a labelled
project format (COCO, YOLO, Supervisely, Pascal VOC, CVAT, Label Studio, a Hugging Face dataset).

:meth:`Export.to_pandas` joins a collection (or an image set, or ids) with the catalog's labels:
path, score, dataset, size, tags, object count per class and open issues. CSV and Parquet write that
table; the project formats write the images with their annotations (see :mod:`picsift.labels.formats`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import PicsiftError
from .formats import FORMATS, export_project

if TYPE_CHECKING:
    from ..core.catalog import Catalog
    from .metadata import Metadata

TABLE_FORMATS = ("csv", "parquet")
EXPORT_FORMATS = TABLE_FORMATS + FORMATS
#: Per-class object counts are columns named ``objects.<class>``.
CLASS_COLUMN = "objects.{}"
#: A spreadsheet opening a CSV runs a cell that starts with one of these as a formula: such text cells (and those
#: starting with the escape itself, so that :func:`read_table` can undo it) are written after a ``'``.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"

class Export:
    """``to_pandas`` and ``export`` of a library's images (``Library.to_pandas``, ``Library.export``).

    Parameters
    ----------
    catalog
        The workspace catalog.
    labels
        The library's labels (project formats write their annotations).
    frame
        The ``rank, id, path, score`` table of what a caller passes as ``images`` (a collection's name, an
        image set, ids...: see :class:`picsift.query.scope.Scope`).
    """

    def __init__(self, catalog: Catalog, labels: Metadata, frame: Callable[[Any], pd.DataFrame]):
        self.catalog, self.labels, self._frame = catalog, labels, frame

    def to_pandas(self, images: Any) -> pd.DataFrame:
        """One row per image with what picsift knows about it.

        Parameters
        ----------
        images
            A collection's name, an :class:`~picsift.query.imageset.ImageSet`, a DataFrame with an ``id``
            column or image ids.

        Returns
        -------
        pandas.DataFrame
            ``rank, id, path, score`` (NaN without a score), ``dataset`` (the first one holding the
            image), ``width, height``, ``tags`` (a list of ``name`` or ``name=value``), ``objects``
            (how many), ``objects.<class>`` (how many of each class) and ``open_issues``.
        """
        frame = self._frame(images)
        if "image_id" in frame.columns:
            return self._object_rows(frame)
        base = frame[["rank", "id", "path", "score"]].reset_index(drop=True)
        ids = base["id"].astype(str).tolist()
        found = self.catalog.summaries.of(ids)
        sizes, datasets, issues = found.sizes, found.datasets, found.open_issues
        tags = {image_id: [name if value is None else f"{name}={value}" for name, value in pairs]
                for image_id, pairs in found.tags.items()}
        counts = pd.DataFrame(found.object_counts, columns=["id", "class", "n"])
        df = base.copy()
        df["dataset"] = [datasets.get(i) for i in ids]
        df["width"] = pd.array([sizes.get(i, (None, None))[0] for i in ids], dtype="Int64")
        df["height"] = pd.array([sizes.get(i, (None, None))[1] for i in ids], dtype="Int64")
        df["tags"] = [tags.get(i, []) for i in ids]
        per_class = counts.pivot(index="id", columns="class", values="n") if len(counts) else pd.DataFrame()
        df["objects"] = per_class.sum(axis=1).reindex(ids).fillna(0).astype(int).to_numpy() if len(counts) \
            else np.zeros(len(ids), int)
        for cls in sorted(per_class.columns):
            df[CLASS_COLUMN.format(cls)] = per_class[cls].reindex(ids).fillna(0).astype(int).to_numpy()
        df["open_issues"] = [int(issues.get(i, 0)) for i in ids]
        return df

    def _object_rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """An object set's table: ``rank, id`` (the object's), ``image_id, path, class, box`` (``[x, y, w, h]`` px),
        ``score``, then its image's ``dataset, width, height``."""
        df = frame[["rank", "id", "image_id", "path", "class", "box", "score"]].reset_index(drop=True).copy()
        images = [i for i in dict.fromkeys(df["image_id"].tolist()) if i is not None]
        found = self.catalog.summaries.of(images)
        df["dataset"] = [found.datasets.get(i) for i in df["image_id"]]
        df["width"] = pd.array([found.sizes.get(i, (None, None))[0] for i in df["image_id"]], dtype="Int64")
        df["height"] = pd.array([found.sizes.get(i, (None, None))[1] for i in df["image_id"]], dtype="Int64")
        return df

    def export(self, images: Any, out: str | os.PathLike[str], format: str) -> Path:
        """Write images as a table (``csv``, ``parquet``) or a labelled project (``coco``, ``yolo``,
        ``supervisely``, ``voc``, ``cvat``, ``labelstudio``, ``hf``: the image files and their annotations).

        Parameters
        ----------
        images
            A collection's name, an :class:`~picsift.query.imageset.ImageSet`, a DataFrame with an ``id``
            column or image ids.
        out
            A file for tables, a new (or empty) folder for projects.
        format
            One of :data:`EXPORT_FORMATS`.

        Returns
        -------
        pathlib.Path
            What was written.
        """
        if format not in EXPORT_FORMATS:
            raise PicsiftError(f"unknown export format {format!r}; valid choices: {', '.join(EXPORT_FORMATS)}")
        out = Path(out).expanduser()
        if format in FORMATS:
            frame = self._frame(images)
            if "image_id" in frame.columns:  # an object set: its images, each once, with only its objects
                ids = [i for i in dict.fromkeys(frame["image_id"].tolist()) if i is not None]
                return export_project(self.labels, ids, out, format, objects=set(frame["id"].astype(str)))
            return export_project(self.labels, frame["id"].astype(str).tolist(), out, format)
        df = self.to_pandas(images)
        if out.is_dir():
            raise PicsiftError(f"{out} is a folder; give a file name for {format} (e.g. {out / ('export.' + format)})")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")  # a failed export leaves no half-written file
        try:
            if format == "csv":
                if "tags" in df:
                    df = df.assign(tags=[";".join(t) for t in df["tags"]])
                if "box" in df:  # an object set's boxes as JSON lists, read back by read_table
                    df = df.assign(box=[None if b is None else json.dumps(list(b)) for b in df["box"]])
                _text_escaped(df).to_csv(partial, index=False)
            else:
                _require_pyarrow()
                df.to_parquet(partial, index=False)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
        return out


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read back a CSV or Parquet export (CSV tags, and an object set's boxes, become lists again)."""
    path = Path(path)
    if path.suffix == ".parquet":
        _require_pyarrow()
        df = pd.read_parquet(path)
        for column in ("tags", "box"):
            if column in df:
                df[column] = [None if t is None else list(t) for t in df[column]]
        return df
    df = pd.read_csv(path)
    for column in df.columns:
        if not pd.api.types.is_numeric_dtype(df[column]):
            df[column] = [v[1:] if isinstance(v, str) and v.startswith(_ESCAPE) else v for v in df[column]]
    if "tags" in df:
        df["tags"] = [[] if pd.isna(t) or t == "" else str(t).split(";") for t in df["tags"]]
    if "box" in df:
        df["box"] = [None if pd.isna(b) else json.loads(b) for b in df["box"]]
    return df


def _text_escaped(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell a spreadsheet would run as a formula escaped with ``'`` (numbers, negative
    scores included, stay numbers: only text columns are touched)."""
    escaped = df.copy()
    for column in df.columns:
        if not pd.api.types.is_numeric_dtype(df[column]):
            escaped[column] = [_ESCAPE + v if isinstance(v, str) and v.startswith((*FORMULA_STARTS, _ESCAPE)) else v
                               for v in df[column]]
    return escaped


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError('Parquet export needs pyarrow: pip install "picsift[parquet]"') from e

