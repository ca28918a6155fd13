"""Exceptions raised by picsift. Every message names the offending value and, where useful, the choices."""

from __future__ import annotations


class PicsiftError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ModelUnavailableError(PicsiftError):
    """A model's weights are neither cached locally nor reachable."""


class ModelMismatchError(PicsiftError):
    """Embeddings made with one model were about to be used with another."""


class NotIndexedError(PicsiftError):
    """A search was asked for before any image of the library was embedded."""


class UnknownImageError(PicsiftError):
    """An image reference is neither an id in the library nor a readable file."""


class WorkspaceBusyError(PicsiftError):
    """Another process is updating the same workspace."""


class MissingDependencyError(PicsiftError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""


class UnsafePathError(PicsiftError):
    """A path from a project, a workspace or an argument would lead outside the folder it must stay in."""
