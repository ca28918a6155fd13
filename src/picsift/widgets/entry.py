"""``picsift.app``: importable without anywidget installed; the widgets load on the first call."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..library import Library
    from .panel import App


def app(folder_or_library: str | os.PathLike[str] | Library, **kwargs: Any) -> App:
    """The picsift panel for an image folder (or an open :class:`~picsift.Library`).

    Keyword arguments for :class:`~picsift.Library` (``model``, ``index``, ``workspace``...) open the
    folder; ``update``, ``explorer`` and ``limit`` go to :class:`~picsift.widgets.App`.

    Examples
    --------
    >>> import picsift
    >>> picsift.app("~/photos")  # doctest: +SKIP
    """
    try:
        from .panel import app as make_app
    except ImportError as e:
        raise ImportError(f'picsift.app() needs the notebook extra ({e}): pip install "picsift[app]"') from e
    return make_app(folder_or_library, **kwargs)
