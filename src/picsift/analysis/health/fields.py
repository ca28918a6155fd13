"""The labels the health checks read: one class per image from a *field*, and class names made into words.

Fields:

- an image tag name (``"class"``, or ``"tag:class"``): the tag's value is the image's class (an image tagged
  twice with different values keeps the first);
- ``"folder"``: the first folder level under the library root (``"folder:2"`` the second, ...); images directly
  in the root (or not that deep) have no label;
- ``"objects:image"``: each image's most frequent object class (``"objects"`` reads the same here; the verb
  ``label_mistakes("objects")`` checks each object instead: :mod:`picsift.analysis.health.objects`).

Images without a label are left out (and counted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from ...errors import PicsiftError

if TYPE_CHECKING:
    from ...labels.metadata import Metadata


@dataclass
class FieldLabels:
    """The labelled images of a field: ``ids`` and their ``labels`` (class names), and how many were left out."""

    field: str
    ids: np.ndarray
    labels: np.ndarray
    unlabelled: int = 0

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.tolist()))


def field_choices(metadata: Metadata) -> list[str]:
    """The fields there are: ``folder``, ``folder:2``, ``objects``, ``objects:image`` and each image tag name."""
    return ["folder", "folder:2", "objects", "objects:image", *metadata.tag_names()]


def read_field(metadata: Metadata, field: str, embedded: np.ndarray) -> FieldLabels:
    """Each embedded image's class in ``field`` (see the module docs); ``PicsiftError`` listing the fields for an
    unknown one and saying so when no embedded image has a label."""
    catalog = metadata.catalog
    found: dict[str, str] = {}
    name = field[4:] if field.startswith("tag:") else field
    level = _folder_level(field)
    if level is not None:
        for path, image_id, *_ in catalog.file_table.listing():
            parts = PurePosixPath(path).parts
            if image_id is not None and len(parts) > level:
                found.setdefault(image_id, parts[level - 1])
    elif field in ("objects", "objects:image"):
        found = catalog.summaries.most_frequent_object(by_author=False)
    elif name in metadata.tag_names():
        for image_id, value in catalog.labels.tagged(name):
            if value is not None:
                found.setdefault(str(image_id), str(value))
    else:
        raise PicsiftError(f"unknown field {field!r}; fields: {', '.join(field_choices(metadata))}")
    embedded = np.asarray(embedded, dtype=object)
    labels = np.array([found.get(i) for i in embedded.tolist()], dtype=object)
    has = np.array([label is not None for label in labels.tolist()], dtype=bool)
    if not has.any():
        raise PicsiftError(f"no embedded image has a label in field {field!r} ({len(embedded)} images, none "
                           f"labelled); fields: {', '.join(field_choices(metadata))}")
    return FieldLabels(field, embedded[has], labels[has], int((~has).sum()))


def _folder_level(field: str) -> int | None:
    if field == "folder":
        return 1
    match = re.fullmatch(r"folder:([0-9]{1,3})", field)
    if field.startswith("folder:") and (match is None or int(match.group(1)) < 1):
        raise PicsiftError(f"field {field!r}: the folder level must be a positive number, e.g. 'folder:2'")
    return int(match.group(1)) if match else None


def words(name: str) -> str:
    """A class or folder name as words: ``"sea_animals"`` -> ``"sea animals"``, ``"TrafficSigns"`` ->
    ``"traffic signs"``, ``"03-cars"`` -> ``"cars"``."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    text = re.sub(r"[_\-./]+", " ", text)
    text = re.sub(r"^\s*[0-9]+\s+", "", text)  # a leading ordering number
    return " ".join(text.lower().split()) or name
