"""picsift: AI search, curation and diverse sampling for image collections, in Jupyter, locally."""

from __future__ import annotations

import warnings
from typing import Any

from .core.update import UpdateReport
from .embedding import DEFAULT_MODEL, Embedder, parse_model_spec
from .errors import PicsiftError
from .index import available_backends, open_index
from .library import Library, default_model
from .query.filters import (
    HasOpenIssues,
    ImageTag,
    JobStatus,
    ObjectAuthor,
    ObjectClass,
    ObjectCount,
    ObjectTag,
    Score,
)
from .query.imageset import ImageSet
from .query.scope import Scope
from .service import Service, disable, enable
from .widgets import app

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "HasOpenIssues",
    "ImageSet",
    "ImageTag",
    "JobStatus",
    "Library",
    "ObjectAuthor",
    "ObjectClass",
    "ObjectCount",
    "ObjectTag",
    "PicsiftError",
    "Scope",
    "Score",
    "Service",
    "UpdateReport",
    "app",
    "available_backends",
    "default_model",
    "disable",
    "enable",
    "open_index",
    "parse_model_spec",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Results":  # the name of ImageSet before 0.2
        warnings.warn("picsift.Results is now picsift.ImageSet", DeprecationWarning, stacklevel=2)
        return ImageSet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
