"""Label mistakes without a trained model: neighbours and prompts give class probabilities, cleanlab judges.

See :mod:`picsift.analysis.health.signals` for how the probabilities are made and combined, and
:meth:`picsift.Library.label_mistakes` for the verb.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...errors import NotIndexedError, PicsiftError
from ...query.imageset import ImageSet
from ...query.scope import Scope
from ...query.steps import LabelMistakes, Recipe
from ..graph import NeighbourGraph
from .fields import FieldLabels, read_field, words
from .signals import (
    PROMPTS,
    Combined,
    Votes,
    class_text_vectors,
    cleanlab_issues,
    combine,
    neighbour_probabilities,
    standardised_prompt_scores,
)

if TYPE_CHECKING:
    from ...core.store import EmbeddingStore
    from ...labels.metadata import Metadata

log = logging.getLogger(__name__)

#: The prompt scores are standardised over at most this many of the library's images (a seeded sample).
REFERENCE_ROWS = 50_000


@dataclass
class LabelVerdict:
    """Everything the label checks computed for one field: the labelled images, their class probabilities
    (neighbours, prompts, combined), cleanlab's issues and scores, and the suggested class of each."""

    labels: FieldLabels
    classes: list[str]
    codes: np.ndarray
    rows: np.ndarray
    votes: Votes
    prompt_scores: np.ndarray | None
    combined: Combined
    issues: np.ndarray
    scores: np.ndarray
    left_out: dict[str, int]

    @property
    def suggested(self) -> np.ndarray:
        return self.combined.probabilities.argmax(axis=1)

    def reason(self, i: int) -> str:
        """Why image ``i``'s label looks wrong (or right), in words."""
        given, suggested = int(self.codes[i]), int(self.suggested[i])
        target = suggested if suggested != given else given
        voters = int(self.votes.voters[i])
        agree = int(self.votes.counts[i, target])
        text = (f"{agree} of {voters} nearest labelled neighbours are {self.classes[target]!r}" if voters
                else "no labelled neighbours")
        if self.prompt_scores is not None and self.combined.weight > 0 and suggested != given:
            scores = self.prompt_scores[i]
            if scores[suggested] > scores[given]:
                template = PROMPTS[0]
                text += (f"; the prompt {template.format(words(self.classes[suggested]))!r} fits better than "
                         f"{template.format(words(self.classes[given]))!r}")
        return text


class LabelChecks:
    """Label mistakes of a library (what :meth:`picsift.Library.label_mistakes` and the health report run).

    Parameters
    ----------
    store, graph
        Give the embedding store and the neighbour graph (up to date with the store).
    metadata
        The library's labels (tags, objects) and catalog (folders).
    embed_text
        Text prompts -> unit vectors with the library's model (None: neighbours only).
    model
        The model spec's text, recorded in recipes.
    """

    #: What the labels are on, in the result's summary.
    noun = "images"

    def __init__(self, store: Callable[[], EmbeddingStore], graph: Callable[[], NeighbourGraph], metadata: Metadata,
                 embed_text: Callable[[list[str]], np.ndarray] | None, model: Callable[[], str]):
        self._store, self._graph, self.metadata = store, graph, metadata
        self._embed_text, self._model = embed_text, model

    def verdict(self, field: str) -> LabelVerdict:
        """Class probabilities and cleanlab's verdict for every labelled image of ``field``."""
        snapshot = self._store().snapshot()
        if not len(snapshot):
            raise NotIndexedError("no images are embedded yet; run update() first")
        graph = self._graph()
        labels = self.read(field, graph.ids)
        names, counts = np.unique(labels.labels.astype(str), return_counts=True)
        small = {str(n): int(c) for n, c in zip(names, counts, strict=True) if c < 2}
        if small:
            keep = ~np.isin(labels.labels.astype(str), list(small))
            log.warning("classes with one image are left out of the label checks: %s", ", ".join(small))
            labels = FieldLabels(labels.field, labels.ids[keep], labels.labels[keep], labels.unlabelled)
        classes = [str(n) for n in names if str(n) not in small]
        if len(classes) < 2:
            raise PicsiftError(f"field {field!r} has {len(classes)} class with at least 2 images ({classes}"
                               f"{'; one image each: ' + ', '.join(small) if small else ''}); label checks "
                               "compare classes, so they need at least 2 with 2 images or more")
        codes = np.searchsorted(np.asarray(classes), labels.labels.astype(str))
        rows = graph.rows_of(labels.ids)
        votes = neighbour_probabilities(graph.positions, graph.similarities, rows, codes, len(classes))
        prompt_scores = self._prompt_scores(labels.ids, classes) if self._embed_text else None
        combined = combine(votes.probabilities, prompt_scores, codes)
        issues, scores = cleanlab_issues(codes, combined.probabilities)
        return LabelVerdict(labels, classes, codes, rows, votes, prompt_scores, combined, issues, scores,
                            {"unlabelled": labels.unlabelled, "one_image_classes": len(small)})

    def read(self, field: str, ids: np.ndarray) -> FieldLabels:
        """The class of each of ``ids`` (the graph's, in its order) in ``field``: see :mod:`.fields`."""
        return read_field(self.metadata, field, ids)

    def in_scope(self, ids: np.ndarray, scope: Scope) -> np.ndarray:
        """Which of the labelled ``ids`` a ``within`` scope keeps."""
        return np.ones(len(ids), bool) if scope.ids is None else np.isin(ids, scope.ids)

    def columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Columns the result carries before ``given`` (none for images; an object's image, class and box)."""
        return {}

    def _prompt_scores(self, ids: np.ndarray, classes: list[str]) -> np.ndarray:
        assert self._embed_text is not None
        text = class_text_vectors([words(c) for c in classes], self._embed_text)
        snapshot = self._store().snapshot()
        positions = snapshot.positions_of(ids)  # ids are in store order (the graph's), so positions are too
        if len(positions) != len(ids):
            raise PicsiftError("the store changed while checking labels; run it again")
        n = len(snapshot)
        sample = np.sort(np.random.default_rng(0).choice(n, min(n, REFERENCE_ROWS), replace=False))
        return standardised_prompt_scores(snapshot.vectors(positions), text,
                                          snapshot.vectors(sample)).astype(np.float32)

    def mistakes(self, field: str, limit: int | None = 50, scope: Scope | None = None) -> ImageSet:
        """The labelled images of ``field`` (within ``scope``) ranked most likely wrong first."""
        if limit is not None and limit < 0:
            raise PicsiftError(f"limit={limit!r}; valid: a number >= 0, or None for every labelled image")
        verdict = self.verdict(field)
        keep = np.arange(len(verdict.codes))
        if scope is not None and scope.ids is not None:
            keep = keep[self.in_scope(verdict.labels.ids, scope)]
        order = keep[np.lexsort((keep, -verdict.scores[keep]))]
        order = order if limit is None else order[:limit]
        classes = np.asarray(verdict.classes, dtype=object)
        suggested = verdict.suggested[order]
        info = {"model": self._model(), "time": time.time(), **verdict.left_out,
                "labelled": len(verdict.codes), "issues": int(verdict.issues.sum()),
                "prompt_weight": verdict.combined.weight, "prompt_temperature": verdict.combined.temperature,
                "prompt_signal": verdict.combined.prompts,
                "summary": f"label mistakes in {field!r} ({int(verdict.issues.sum())} issues among "
                           f"{len(verdict.codes)} labelled {self.noun})"}
        step = LabelMistakes(field, limit, None if scope is None else scope.label)
        return ImageSet(verdict.labels.ids[order], verdict.scores[order].astype(np.float32),
                        recipe=Recipe(step, info),
                        columns={**self.columns(verdict.labels.ids[order]), "given": classes[verdict.codes[order]],
                                 "suggested": classes[suggested],
                                 "issue": verdict.issues[order],
                                 "reason": np.array([verdict.reason(int(i)) for i in order], dtype=object)})
