"""The dataset health report (:meth:`picsift.Library.health`): every check over the one neighbour graph, each
finding an :class:`~picsift.query.imageset.ImageSet`.

Checks (each a small function of the graph, the labels and the splits):

- ``label_mistakes`` (with a field): cleanlab's issues (see :mod:`picsift.analysis.health.signals`), per class;
- ``near_duplicates``: groups at the model's duplicate threshold;
- ``leaks`` (with a split): near-duplicate groups whose images lie in different splits, as FiftyOne Brain's
  ``compute_leaky_splits`` finds them (a test image whose twin is in train inflates the test score);
- ``outliers``: images whose outlier score (``1 - mean similarity`` to their 10 nearest) is above the upper
  Tukey fence (``Q3 + 1.5 IQR``) of the library's scores;
- ``confusable_classes`` (with a field): class pairs whose images' labelled neighbours mix (at least
  :data:`CONFUSABLE_SHARE` of one class's neighbour votes go to the other), with the clearest example of each side;
- ``class_balance`` (with a field): classes with under a fifth of the largest class's images.

Per image (:attr:`HealthReport.images`):

- ``uniqueness``: ``1 - similarity`` to the nearest other image, 0..1: 0 for an exact duplicate, near 1 for an
  image nothing resembles (FiftyOne Brain weighs its 3 nearest; the nearest alone says what a user asks:
  "is there another one like it?");
- ``representativeness``: the percentile (0..1) of the image's local density (mean similarity to its 10 nearest)
  among the library's: 1 for the most typical images, the ones a small sample should start from.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...query.imageset import ImageSet
from ...query.steps import Recipe
from ..graph import NeighbourGraph
from ..neighbours import outlier_scores
from .fields import read_field
from .mistakes import LabelChecks, LabelVerdict

#: A class pair is confusable when at least this share of one class's neighbour votes goes to the other.
CONFUSABLE_SHARE = 0.2
#: A class is rare below this fraction of the largest class.
RARE_FRACTION = 0.2
DENSITY_NEIGHBOURS = 10


@dataclass
class Finding:
    """One check's result: how many, what it means, the images (an :class:`ImageSet`, one call from the gallery)
    and a table of details (per class, per pair...)."""

    count: int
    description: str
    images: ImageSet
    details: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "description": self.description, "ids": self.images.ids.tolist(),
                "details": self.details}


@dataclass
class HealthReport:
    """What :meth:`picsift.Library.health` found: ``findings`` (name -> :class:`Finding`), ``images`` (one row per
    embedded image: ``id``, ``uniqueness``, ``representativeness``, and ``label``/``split`` when given) and
    ``summary`` (counts and settings)."""

    findings: dict[str, Finding]
    images: pd.DataFrame
    summary: dict[str, Any]

    def __getitem__(self, name: str) -> Finding:
        return self.findings[name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary, each finding (with its image ids) and the per-image table."""
        return {"summary": self.summary, "findings": {k: f.to_dict() for k, f in self.findings.items()},
                "images": self.images.to_dict(orient="records")}

    def __str__(self) -> str:
        lines = [f"{self.summary['images']} images" + (f", field {self.summary['field']!r}"
                                                        if self.summary.get("field") else "")]
        lines += [f"  {name}: {f.count} - {f.description}" for name, f in self.findings.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<HealthReport: {', '.join(f'{k} {f.count}' for k, f in self.findings.items())}>"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><b>{html.escape(name)}</b></td><td style='text-align:right'>{f.count}</td>"
                       f"<td>{html.escape(f.description)}</td></tr>" for name, f in self.findings.items())
        head = html.escape(str(self).splitlines()[0])
        return (f"<div><p>Health: {head}</p><table><tr><th>finding</th><th>count</th><th>what it means</th></tr>"
                f"{rows}</table><p><code>report.findings[name].images</code> is an ImageSet.</p></div>")


class Health:
    """Runs the health checks (see the module docs) for :meth:`picsift.Library.health`.

    Parameters
    ----------
    graph
        Gives the up-to-date neighbour graph.
    checks
        The label checks (:class:`~picsift.analysis.health.mistakes.LabelChecks`).
    near_duplicates
        The library's near-duplicate query (groups, from the graph) at the model's threshold.
    bind
        Binds an image set to the library's queries (paths, saving).
    """

    def __init__(self, graph: Callable[[], NeighbourGraph], checks: LabelChecks,
                 near_duplicates: Callable[[], ImageSet], bind: Callable[[ImageSet], ImageSet]):
        self._graph, self.checks, self._near_duplicates, self._bind = graph, checks, near_duplicates, bind

    def report(self, field: str | None = None, split: str | None = None) -> HealthReport:
        graph = self._graph()
        density = graph.similarities[:, :DENSITY_NEIGHBOURS].astype(np.float32)
        images = pd.DataFrame({"id": graph.ids, "uniqueness": self._uniqueness(graph),
                               "representativeness": _percentile(-outlier_scores(density))})
        findings: dict[str, Finding] = {}
        verdict = self.checks.verdict(field) if field is not None else None
        if verdict is not None:
            images["label"] = pd.Series(dict(zip(verdict.labels.ids, verdict.labels.labels, strict=True)))\
                .reindex(graph.ids).to_numpy()
            findings["label_mistakes"] = self._mistakes(verdict)
        duplicates = self._near_duplicates()
        findings["near_duplicates"] = Finding(
            len(set(duplicates.columns["group"].tolist())) if len(duplicates) else 0,
            "groups of near-identical images (count: groups)", duplicates,
            [{"group": int(g), "size": int(n)} for g, n in zip(*np.unique(duplicates.columns["group"],
                                                                            return_counts=True), strict=True)]
            if len(duplicates) else [])
        if split is not None:
            splits = read_field(self.checks.metadata, split, graph.ids)
            images["split"] = pd.Series(dict(zip(splits.ids, splits.labels, strict=True))).reindex(graph.ids)\
                .to_numpy()
            findings["leaks"] = self._leaks(duplicates, dict(zip(splits.ids.tolist(), splits.labels.tolist(),
                                                                 strict=True)), split)
        findings["outliers"] = self._outliers(graph)
        if verdict is not None:
            findings["confusable_classes"] = self._confusable(verdict)
            findings["class_balance"] = self._balance(verdict)
        summary = {"images": len(graph), "field": field, "split": split, "graph_k": graph.k,
                   "graph_exact": graph.exact, "graph_recall": graph.recall,
                   **({"labelled": len(verdict.codes), **verdict.left_out} if verdict is not None else {})}
        return HealthReport(findings, images, summary)

    @staticmethod
    def _uniqueness(graph: NeighbourGraph) -> np.ndarray:
        nearest = graph.similarities[:, 0].astype(np.float32)
        return np.clip(np.where(np.isfinite(nearest), 1.0 - nearest, 1.0), 0.0, 1.0).astype(np.float32)

    def _set(self, ids: Any, scores: Any, summary: str, **columns: Any) -> ImageSet:
        return self._bind(ImageSet(np.asarray(ids, dtype=object), np.asarray(scores, np.float32),
                                   recipe=Recipe(info={"summary": summary}),
                                   columns={k: np.asarray(v) for k, v in columns.items()}))

    def _mistakes(self, verdict: LabelVerdict) -> Finding:
        flagged = np.flatnonzero(verdict.issues)
        flagged = flagged[np.lexsort((flagged, -verdict.scores[flagged]))]
        classes = np.asarray(verdict.classes, dtype=object)
        images = self._set(verdict.labels.ids[flagged], verdict.scores[flagged], "label mistakes",
                           given=classes[verdict.codes[flagged]], suggested=classes[verdict.suggested[flagged]],
                           reason=np.array([verdict.reason(int(i)) for i in flagged], dtype=object))
        per_class = [{"class": c, "images": int((verdict.codes == k).sum()),
                      "issues": int(verdict.issues[verdict.codes == k].sum())} for k, c in enumerate(verdict.classes)]
        return Finding(len(flagged), "labels that their neighbours and the class prompts disagree with (cleanlab)",
                       images, per_class)

    def _leaks(self, duplicates: ImageSet, split_of: dict[str, str], split: str) -> Finding:
        ids, groups = duplicates.ids.tolist(), duplicates.columns.get("group", np.zeros(0, np.int64)).tolist()
        by_group: dict[int, list[str]] = {}
        for image_id, group in zip(ids, groups, strict=True):
            by_group.setdefault(int(group), []).append(image_id)
        leaking = [(g, members) for g, members in by_group.items()
                   if len({split_of[m] for m in members if m in split_of}) > 1]
        leak_ids = [m for _, members in leaking for m in members]
        details = [{"group": g, "splits": sorted({split_of[m] for m in members if m in split_of})}
                   for g, members in leaking]
        return Finding(len(leaking), f"near-duplicate groups that cross {split!r} values (count: groups)",
                       self._set(leak_ids, np.ones(len(leak_ids)), "leaks across splits",
                                 split=np.array([split_of.get(m) for m in leak_ids], dtype=object)), details)

    def _outliers(self, graph: NeighbourGraph) -> Finding:
        scores = outlier_scores(graph.similarities[:, :DENSITY_NEIGHBOURS].astype(np.float32))
        finite = scores[np.isfinite(scores)]
        q1, q3 = np.percentile(finite, [25, 75]) if len(finite) else (0.0, 0.0)
        fence = q3 + 1.5 * (q3 - q1)
        found = np.flatnonzero(scores > fence)
        found = found[np.lexsort((found, -scores[found]))]
        return Finding(len(found), f"images farther from their 10 nearest than the upper fence ({fence:.3f})",
                       self._set(graph.ids[found], scores[found], "outliers"))

    def _confusable(self, verdict: LabelVerdict) -> Finding:
        counts, voters = verdict.votes.counts, np.maximum(verdict.votes.voters, 1)[:, None]
        share = counts / voters
        classes = len(verdict.classes)
        mixing = np.array([[share[verdict.codes == a, b].mean() for b in range(classes)] for a in range(classes)])
        pairs: list[dict[str, Any]] = []
        examples: list[int] = []
        overlap: list[float] = []
        for a in range(classes):
            for b in range(a + 1, classes):
                if max(mixing[a, b], mixing[b, a]) < CONFUSABLE_SHARE:
                    continue
                sides = []
                for x, y in ((a, b), (b, a)):
                    members = np.flatnonzero(verdict.codes == x)
                    sides.append(int(members[np.argmax(share[members, y])]))
                examples += sides
                overlap.append(float(max(mixing[a, b], mixing[b, a])))
                pairs.append({"classes": [verdict.classes[a], verdict.classes[b]],
                              "overlap": round(float(max(mixing[a, b], mixing[b, a])), 3),
                              "examples": [str(verdict.labels.ids[i]) for i in sides]})
        order = sorted(range(len(pairs)), key=lambda i: -overlap[i])
        pairs = [pairs[i] for i in order]
        examples = [e for i in order for e in examples[2 * i : 2 * i + 2]]
        classes_of = np.asarray(verdict.classes, dtype=object)
        return Finding(len(pairs), f"class pairs whose images' neighbours mix (>= {CONFUSABLE_SHARE:.0%} of the "
                       "votes; images: the clearest example of each side)",
                       self._set(verdict.labels.ids[examples], share[examples].max(axis=1) if examples else [],
                                 "confusable classes", given=classes_of[verdict.codes[examples]]), pairs)

    def _balance(self, verdict: LabelVerdict) -> Finding:
        sizes = np.bincount(verdict.codes, minlength=len(verdict.classes))
        rare = np.flatnonzero(sizes < RARE_FRACTION * sizes.max())
        members = np.flatnonzero(np.isin(verdict.codes, rare))
        details = [{"class": c, "images": int(n), "share": round(float(n / sizes.sum()), 4)}
                   for c, n in zip(verdict.classes, sizes, strict=True)]
        classes_of = np.asarray(verdict.classes, dtype=object)
        return Finding(len(rare), f"classes with under {RARE_FRACTION:.0%} of the largest class's images "
                       "(images: theirs)", self._set(verdict.labels.ids[members], np.zeros(len(members)),
                                                    "rare classes", given=classes_of[verdict.codes[members]]),
                       details)


def _percentile(values: np.ndarray) -> np.ndarray:
    """Each value's rank among all, as 0..1 (ties share the mean rank)."""
    if len(values) < 2:
        return np.ones(len(values), np.float32)
    return ((pd.Series(values).rank(method="average").to_numpy() - 1) / (len(values) - 1)).astype(np.float32)
