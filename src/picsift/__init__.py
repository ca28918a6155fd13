"""picsift: AI search, curation and diverse sampling for image collections, in Jupyter, locally."""

from __future__ import annotations

from .core.update import UpdateReport
from .embedding import DEFAULT_MODEL, Embedder, parse_model_spec
from .errors import PicsiftError
from .index import available_backends, open_index
from .library import Library, default_model
from .query.filters import HasOpenIssues, ImageTag, JobStatus, ObjectAuthor, ObjectCount, ObjectTag, Score
from .query.search import Results
from .service import Service, disable, enable
from .widgets import app

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "HasOpenIssues",
    "ImageTag",
    "JobStatus",
    "Library",
    "ObjectAuthor",
    "ObjectCount",
    "ObjectTag",
    "PicsiftError",
    "Results",
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
