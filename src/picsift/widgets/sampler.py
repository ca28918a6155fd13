"""The diversity sampler: method, number of clusters, sample size; the sample becomes a collection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import traitlets

from ..library import Library
from ._base import PicsiftWidget

SampleCallback = Callable[[list[str], dict[str, Any]], None]
SAMPLE_COLLECTION = Library.TEMPORARY  # like a search, a sample replaces the temporary collection


class Sampler(PicsiftWidget):
    """Draws a diverse sample of the library with :meth:`Library.sample <picsift.Library.sample>`.

    Methods: ``random`` (evenly across k-means clusters; ``n_clusters=0``: automatic, ``sqrt(n/2)``),
    ``centroids`` (nearest each centre), ``kcenter`` (farthest point), ``typical`` (densest in each cluster).

    The sample is written as the temporary collection (so it can be saved like a search) and kept
    in :attr:`sample`; callbacks registered with :meth:`on_sample` receive it (the app shows it).
    """

    _bundle = "sampler"
    events = ("sample",)
    method = traitlets.Enum(Library.SAMPLING_METHODS, default_value="random").tag(sync=True)
    n_clusters = traitlets.Int(0, min=0).tag(sync=True)
    size = traitlets.Int(24, min=1).tag(sync=True)
    seed = traitlets.Int(0).tag(sync=True)

    def __init__(self, library: Library | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.library = library
        self.sample: list[str] = []

    def on_sample(self, callback: SampleCallback) -> None:
        """Call ``callback(ids, recipe)`` after each sample (``on("sample", ...)``)."""
        self.on("sample", callback)

    def _on_sample(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        with self.hold_trait_notifications():
            for name in ("method", "n_clusters", "size", "seed"):
                if name in content:
                    setattr(self, name, content[name])
        self.draw()

    def draw(self, within: list[str] | None = None) -> list[str]:
        """Draw a sample with the current settings (from ``within`` ids, default the whole library)."""
        if self.library is None:
            raise ValueError("this Sampler has no library to sample from")
        drawn = self.library.sample(self.size, method=self.method, clusters=self.n_clusters or None, seed=self.seed,
                                    within=within)
        self.sample = drawn.ids.tolist()
        recipe = self.library.collections.recipe(SAMPLE_COLLECTION)
        self.emit("sample", self.sample, recipe)
        return self.sample
