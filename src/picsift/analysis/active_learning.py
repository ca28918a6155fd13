"""Active learning in a notebook: label a few images, let a classifier say where it is unsure, label those next.

A round of :class:`ActiveLearningLoop`:

1. :meth:`~ActiveLearningLoop.next_batch` fits a logistic regression on the embeddings of the labelled images
   (once at least two classes are labelled; before that the batch is a ``typical`` diverse sample), scores every
   unlabelled image's uncertainty (``margin``: 1 - (p1 - p2) between the two likeliest classes, by default)
   and draws a batch that is both uncertain and diverse (:func:`picsift.analysis.sampling.sample_positions`: the
   ``10 * n`` most uncertain images, clustered into ``n`` clusters, the most typical image of each, clusters
   holding no labelled image first). On Fashion-MNIST this beat ``kcenter`` among the uncertain images
   (which picks outliers) and plain uncertainty (bench/label_efficiency.py, bench/README.md);
2. you look at the batch (with a library it is the temporary collection, so the gallery shows it) and call
   :meth:`~ActiveLearningLoop.label`;
3. repeat. :attr:`~ActiveLearningLoop.history` records every round.

Example
-------
>>> loop = ActiveLearningLoop.from_library(lib, tag="label")   # labels kept as image tags
>>> batch = loop.next_batch(20)          # DataFrame: rank, id, path, prediction, uncertainty
>>> loop.label(batch.id[:3], "cat"); loop.label(batch.id[3:], ["dog"] * 17)
>>> loop.predict().head()                # every image's predicted class and confidence
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .clustering import Vectors, rows_view
from .sampling import SAMPLING_METHODS, sample_positions


class Library(Protocol):
    """What the loop uses of a :class:`picsift.Library` (a protocol: analysis sits below the facade)."""

    store: Any
    queries: Any
    catalog: Any
    labels: Any

    def sample(self, n: int, **options: Any) -> Any: ...

UNCERTAINTY_MEASURES = ("margin", "entropy", "least_confident")


def uncertainty_scores(probabilities: np.ndarray, measure: str = "margin") -> np.ndarray:
    """Uncertainty of each row of class probabilities, in ``[0, 1]`` (higher = less certain).

    ``margin``: 1 - (p1 - p2) of the two likeliest classes; ``entropy``: normalised by ``log(classes)``;
    ``least_confident``: 1 - p1.
    """
    if measure not in UNCERTAINTY_MEASURES:
        raise ValueError(f"measure={measure!r}; valid choices: {', '.join(UNCERTAINTY_MEASURES)}")
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be (images, classes >= 2), got shape {p.shape}")
    if measure == "entropy":
        return -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1) / np.log(p.shape[1])
    top = -np.sort(-p, axis=1)
    return 1 - top[:, 0] + (top[:, 1] if measure == "margin" else 0)


class ActiveLearningLoop:
    """A labelling loop over ``ids`` and their embedding ``vectors`` (row-aligned; may be a memory map).

    Parameters
    ----------
    labels
        Labels known so far, ``{id: class}``.
    method
        The diversity method among the uncertain candidates (see :data:`picsift.analysis.sampling.SAMPLING_METHODS`).
    start_method
        The method until two classes are labelled: ``typical`` (one dense image per cluster), as farthest
        points alone would start with outliers.
    measure
        ``"margin"``, ``"entropy"`` or ``"least_confident"`` (see :func:`uncertainty_scores`).
    pool
        How many of the most uncertain images each batch is drawn from (default ``10 * n``).
    C
        Inverse regularisation of the logistic regression (embeddings are unit vectors: keep it large).
    seed
        Round ``r`` samples with ``seed + r``: the same labels give the same batches.
    """

    def __init__(self, ids: Sequence[str] | np.ndarray, vectors: Vectors, labels: Mapping[str, str] | None = None,
                 *, method: str = "typical", start_method: str = "typical", measure: str = "margin",
                 pool: int | None = None, C: float = 10.0, seed: int = 0):
        for value in (method, start_method):
            if value not in SAMPLING_METHODS:
                raise ValueError(f"method={value!r}; valid choices: {', '.join(SAMPLING_METHODS)}")
        if measure not in UNCERTAINTY_MEASURES:
            raise ValueError(f"measure={measure!r}; valid choices: {', '.join(UNCERTAINTY_MEASURES)}")
        self.ids = np.asarray(ids).astype(str)
        if len(self.ids) != len(vectors):
            raise ValueError(f"got {len(self.ids)} ids but {len(vectors)} vectors")
        self.vectors = vectors
        self.method, self.start_method, self.measure = method, start_method, measure
        self.pool, self.C, self.seed = pool, C, seed
        self.labels: dict[str, str] = {}
        self.history: list[dict[str, Any]] = []
        self.library: Library | None = None
        self.tag: str | None = None
        self._within: str | Iterable[str] | None = None
        self._position = {image_id: i for i, image_id in enumerate(self.ids.tolist())}
        self._model: Any = None
        if labels:
            self.label(list(labels), list(labels.values()))

    @classmethod
    def from_library(cls, library: Library, labels: Mapping[str, str] | None = None, *,
                     within: str | Iterable[str] | None = None, tag: str | None = None,
                     **options: Any) -> ActiveLearningLoop:
        """A loop over a library's images (or those of collection / ids ``within``).

        With ``tag``, labels are also read from and written to that image tag, so they outlive the notebook.
        Each batch becomes the library's temporary collection.
        """
        snapshot = library.store.snapshot()
        scope = library.queries.scope(within).positions(snapshot)
        positions = np.arange(len(snapshot)) if scope is None else scope
        known = dict(labels or {})
        if tag:
            rows = library.catalog.labels.tagged(tag)
            known = {**{image_id: str(value) for image_id, value in rows if value is not None}, **known}
        loop = cls(snapshot.ids[positions], rows_view(snapshot.matrix, snapshot.rows[positions]), None, **options)
        loop.library, loop.tag = library, tag
        loop.label(list(known), list(known.values()), _write=False)
        loop._within = within
        return loop

    # -- labels -----------------------------------------------------------------------------------
    def label(self, ids: Iterable[str], classes: str | Iterable[str], *, _write: bool = True) -> None:
        """Record labels: one class for all ``ids``, or one per id."""
        ids = [str(i) for i in ids]
        names = [classes] * len(ids) if isinstance(classes, str) else [str(c) for c in classes]
        if len(names) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(names)} classes")
        unknown = [i for i in ids if i not in self._position]
        if unknown:
            raise ValueError(f"{len(unknown)} ids are not in this loop's images, e.g. {unknown[0]!r}")
        for image_id, name in zip(ids, names, strict=True):
            if _write and self.library is not None and self.tag and self.labels.get(image_id) != name:
                self.library.labels.remove_tag(image_id, self.tag)
                self.library.labels.add_tag(image_id, self.tag, name)
            self.labels[image_id] = name
        self._model = None

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.values()))

    # -- model ------------------------------------------------------------------------------------
    def fit(self) -> Any:
        """The logistic regression fitted on the labelled images (needs two classes or more)."""
        if len(self.classes) < 2:
            raise ValueError(f"label images of at least two classes first (have: {self.classes or 'none'})")
        if self._model is None:
            from sklearn.linear_model import LogisticRegression

            ids = list(self.labels)
            x = np.asarray(self.vectors[np.array([self._position[i] for i in ids])], dtype=np.float32)
            self._model = LogisticRegression(C=self.C, max_iter=2000).fit(x, [self.labels[i] for i in ids])
        return self._model

    def probabilities(self) -> np.ndarray:
        """Class probabilities of every image (columns: :attr:`classes`), computed in blocks."""
        model = self.fit()
        out = np.zeros((len(self.ids), len(model.classes_)), np.float32)
        for start in range(0, len(self.ids), 65_536):
            out[start : start + 65_536] = model.predict_proba(np.asarray(self.vectors[start : start + 65_536]))
        return out

    def predict(self) -> pd.DataFrame:
        """Every image's ``prediction``, ``confidence`` and ``uncertainty``, least certain first."""
        p = self.probabilities()
        df = pd.DataFrame({"id": self.ids, "prediction": np.asarray(self.fit().classes_)[p.argmax(axis=1)],
                           "confidence": p.max(axis=1), "uncertainty": uncertainty_scores(p, self.measure),
                           "labelled": np.isin(self.ids, list(self.labels))})
        return df.sort_values("uncertainty", ascending=False, kind="stable").reset_index(drop=True)

    # -- rounds -----------------------------------------------------------------------------------
    def next_batch(self, n: int = 20) -> pd.DataFrame:
        """The next ``n`` images to label: uncertain and diverse (only diverse until two classes are labelled)."""
        round_ = len(self.history)
        labelled = np.isin(self.ids, list(self.labels))
        scores, predictions = None, None
        if len(self.classes) >= 2:
            p = self.probabilities()
            scores = uncertainty_scores(p, self.measure)
            predictions = np.asarray(self.fit().classes_)[p.argmax(axis=1)]
        seed, method = self.seed + round_, self.method if scores is not None else self.start_method
        if self.library is not None:
            within = self._within if self._within is None or isinstance(self._within, str) else self.ids.tolist()
            by_id = None if scores is None else dict(zip(self.ids.tolist(), scores.tolist(), strict=True))
            df = self.library.sample(n, method=method, seed=seed, within=within, exclude=list(self.labels),
                                     uncertainty=by_id, pool=self.pool).to_pandas()
            picked = np.array([self._position[i] for i in df["id"]], dtype=np.int64)
        else:
            picked = sample_positions(self.vectors, n, method=method, seed=seed, exclude=labelled,
                                      uncertainty=scores, pool=self.pool)
            df = pd.DataFrame({"rank": np.arange(1, len(picked) + 1), "id": self.ids[picked]})
        df["prediction"] = None if predictions is None else predictions[picked]
        df["uncertainty"] = np.nan if scores is None else scores[picked]
        self.history.append({
            "round": round_, "labelled": int(labelled.sum()), "classes": len(self.classes),
            "batch": df["id"].tolist(), "method": method, "uncertainty_used": scores is not None,
            "mean_uncertainty": None if scores is None else float(scores[~labelled].mean()),
        })
        return df

    def accuracy(self, labels: Mapping[str, str]) -> float:
        """Accuracy of the current model on other labelled images ``{id: class}`` (e.g. a held-out set)."""
        model = self.fit()
        ids = [i for i in labels if i in self._position]
        if not ids:
            raise ValueError("none of these ids are in this loop's images")
        x = np.asarray(self.vectors[np.sort([self._position[i] for i in ids])], dtype=np.float32)
        truth = [labels[i] for i in sorted(ids, key=self._position.__getitem__)]
        return float(np.mean(model.predict(x) == np.asarray(truth)))
