"""picsift's notebook widgets (anywidget): each part alone, or all of them linked by :func:`app`.

:func:`link` shares the camera and selection of two explorers (or an explorer and a gallery).

Imported lazily, so ``import picsift`` works without the ``app`` extra installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from .entry import app

_CLASSES = {
    "Actions": "actions", "App": "panel", "CollectionsList": "collections_list", "Explorer": "explorer",
    "FiltersPanel": "filters_panel", "Gallery": "gallery", "HealthPanel": "health", "PromptBox": "prompt",
    "Sampler": "sampler", "ScoreRange": "score_range", "link": "_link", "object_explorer": "object_map",
}
__all__ = [*_CLASSES, "app"]


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        try:
            module = importlib.import_module(f".{_CLASSES[name]}", __name__)
        except ImportError as e:
            raise ImportError(f'picsift.widgets.{name} needs the notebook extra: pip install "picsift[app]"') from e
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
