"""Object label checks: the label-mistake ranking over labelled objects, duplicate boxes and empty boxes.

**Object label mistakes** (``lib.label_mistakes("objects")``): the same two signals and cleanlab as for images
(:mod:`picsift.analysis.health.signals`), over the object store (each object's crop embedding,
:mod:`picsift.core.objects`) and the objects' own neighbour graph (``lib.object_neighbours``, kept fresh by
``update``). Each object's class is its label; an object's neighbours vote, the class names as prompts judge its
crop. Rows are objects: ``id`` (the object's), ``image_id``, ``path``, ``class``, ``box`` ``[x, y, w, h]``,
``label_id`` (its catalog id: ``labels.set_object_class(label_id, ...)`` accepts a suggestion), ``given``,
``suggested``, ``score``, ``issue``, ``reason``. The image-level field (each image's most frequent object class)
is ``"objects:image"``.

**Duplicate boxes** (:func:`duplicate_boxes`): two labels of one class on one image whose boxes overlap with IoU
above :data:`DUPLICATE_IOU` (two identical boxes count too); the later label is reported, with the earlier one's
object id in ``duplicate_of``.

**Empty boxes** (:meth:`ObjectLabelChecks.empty_boxes`): boxes whose crop holds nothing like their class. The
reference for "nothing like class c" is how the boxes of the *other* classes fit c's prompts (the background of
c, as far as the model can tell); the fit of a crop is placed between that level (0) and how c's own boxes fit
(1), and a box below :data:`EMPTY_FIT` is reported, least fitting first. Measured (``bench/label_mistakes.py
--objects 96``: 96 scenes of pasted stamps, 288 boxes, the offline model) against 96 planted empty boxes (each
scene's empty cell, given the class of an object of that scene): this rule flags 81% of the empty boxes and 4% of
the real ones. The literal "the crop fits its class worse than the background" flags 79% / 21% with the whole
image as the background (a small object's picture often fits its class better than its tight crop), and 27% /
1% with the image outside the boxes (boxes filled with its mean colour): an empty box looks like the rest of its
picture, so "worse than it" is a coin toss.
A mislabelled box also fits its class poorly, so it often shows here too (and in the label mistakes, with the
class that fits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.objects import LiveObject, bounding_box, object_id
from ...errors import NotIndexedError, PicsiftError
from ...query.imageset import ImageSet
from ...query.scope import Scope
from ...query.steps import Recipe
from ..graph import NeighbourGraph
from .fields import FieldLabels, words
from .mistakes import LabelChecks, LabelVerdict
from .report import Finding
from .signals import class_text_vectors

if TYPE_CHECKING:
    from ...core.store import EmbeddingStore
    from ...labels.metadata import Metadata

log = logging.getLogger(__name__)

#: The field of object-level checks, and the image-level one (each image's most frequent object class).
OBJECTS_FIELD = "objects"
IMAGE_FIELD = "objects:image"
#: Two boxes of one class on one image overlapping more than this (intersection over union) are duplicates.
DUPLICATE_IOU = 0.7
#: A box whose crop fits its class below this (0: as other classes' boxes do, 1: as its own class's do) is empty.
EMPTY_FIT = 0.25


def iou(a: tuple[float, ...] | list[float], b: tuple[float, ...] | list[float]) -> float:
    """Intersection over union of two ``[x, y, w, h]`` boxes (0 when either has no area)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(w, 0.0) * max(h, 0.0)
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 and inter > 0 else 0.0


def _boxes(objects: list[LiveObject]) -> np.ndarray:
    boxes = np.empty(len(objects), dtype=object)
    for n, obj in enumerate(objects):
        boxes[n] = [round(float(v), 2) for v in obj.box]
    return boxes


class ObjectLabelChecks(LabelChecks):
    """Label checks over objects (see the module docs).

    Parameters
    ----------
    store
        Gives the model's object store (None while no object is embedded).
    graph
        Gives the objects' neighbour graph, up to date with the object store.
    live
        Gives the objects labelled now, by object id (:func:`picsift.core.objects.live_objects`).
    metadata, embed_text, model
        As for :class:`~picsift.analysis.health.mistakes.LabelChecks`.
    """

    noun = "objects"

    def __init__(self, store: Callable[[], EmbeddingStore | None], graph: Callable[[], NeighbourGraph],
                 live: Callable[[], Mapping[str, LiveObject]], metadata: Metadata,
                 embed_text: Callable[[list[str]], np.ndarray] | None, model: Callable[[], str]):
        super().__init__(lambda: self.object_store(), graph, metadata, embed_text, model)
        self._object_store, self._live = store, live
        self._seen: Mapping[str, LiveObject] = {}

    def object_store(self) -> EmbeddingStore:
        """The object store, or a clear error when no object is embedded."""
        store = self._object_store()
        if store is None or not len(store.snapshot()):
            raise NotIndexedError(f"no labelled objects are embedded yet: label some (labels.add_object, "
                                  f"labels.import_project), then run update(); field {IMAGE_FIELD!r} checks each "
                                  "image's most frequent object class")
        return store

    def has_objects(self) -> bool:
        store = self._object_store()
        return store is not None and len(store.snapshot()) > 0

    def verdict(self, field: str = OBJECTS_FIELD) -> LabelVerdict:
        self.object_store()
        self._seen = self._live()
        return super().verdict(OBJECTS_FIELD)

    def read(self, field: str, ids: np.ndarray) -> FieldLabels:
        live = self._seen or self._live()
        labels = np.array([live[i].cls if i in live else None for i in ids.tolist()], dtype=object)
        has = np.array([label is not None for label in labels.tolist()], dtype=bool)
        if not has.any():
            raise PicsiftError(f"no embedded object is labelled now ({len(ids)} object vectors, their labels gone); "
                               "run update()")
        return FieldLabels(OBJECTS_FIELD, np.asarray(ids, dtype=object)[has], labels[has], int((~has).sum()))

    def in_scope(self, ids: np.ndarray, scope: Scope) -> np.ndarray:
        if scope.ids is None:
            return np.ones(len(ids), bool)
        live = self._seen or self._live()
        images = np.array([live[i].image_id for i in ids.tolist()], dtype=object)
        return np.isin(ids, scope.ids) | np.isin(images, scope.ids)

    def columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """``image_id``, ``class``, ``box`` and ``label_id`` (the catalog id) of each object."""
        live = self._seen or self._live()
        objects = [live[i] for i in ids.tolist()]
        return {"image_id": np.array([o.image_id for o in objects], dtype=object),
                "class": np.array([o.cls for o in objects], dtype=object), "box": _boxes(objects),
                "label_id": np.array([o.catalog_id for o in objects], dtype=np.int64)}

    # -- boxes ------------------------------------------------------------------------------------
    def duplicate_boxes(self, threshold: float = DUPLICATE_IOU) -> ImageSet:
        """Labels of one class on one image whose box overlaps an earlier one's by IoU > ``threshold``: the later
        label, best overlap first (columns ``duplicate_of``, ``iou``, ``reason``; ``score`` is the IoU)."""
        live = self._live()
        held = {o.image_id for o in live.values()}
        by_image: dict[tuple[str, str], list[tuple[int, tuple[float, float, float, float]]]] = {}
        for catalog_id, image_id, cls, _geometry, points in self.metadata.catalog.labels.object_shapes():
            box = bounding_box(points)
            if image_id in held and all(np.isfinite(box)) and box[2] > 0 and box[3] > 0:
                by_image.setdefault((image_id, cls), []).append((catalog_id, box))
        found: dict[str, tuple[float, LiveObject, str]] = {}
        for (image_id, cls), labels in by_image.items():
            for n in range(1, len(labels)):
                catalog_id, box = labels[n]
                best = max(((iou(box, other), other) for _, other in labels[:n]), key=lambda x: x[0])
                key = object_id(image_id, box)
                if best[0] > threshold and key not in found:
                    obj = LiveObject(key, image_id, cls, box, catalog_id)
                    found[key] = (best[0], obj, object_id(image_id, best[1]))
        order = sorted(found, key=lambda k: (-found[k][0], k))
        objects = [found[k][1] for k in order]
        overlaps = np.array([found[k][0] for k in order], np.float32)
        return ImageSet(np.array(order, dtype=object), overlaps, recipe=Recipe(info={"summary": "duplicate boxes"}),
                        columns={"image_id": np.array([o.image_id for o in objects], dtype=object),
                                 "class": np.array([o.cls for o in objects], dtype=object), "box": _boxes(objects),
                                 "label_id": np.array([o.catalog_id for o in objects], np.int64),
                                 "duplicate_of": np.array([found[k][2] for k in order], dtype=object),
                                 "iou": overlaps,
                                 "reason": np.array([f"overlaps another {o.cls!r} box on its image (IoU "
                                                     f"{v:.2f})" for o, v in zip(objects, overlaps, strict=True)],
                                                    dtype=object)})

    def box_fit(self) -> tuple[np.ndarray, np.ndarray]:
        """Object ids and how each crop fits its class's prompts: 0 as the other classes' boxes fit them, 1 as its
        own class's boxes do (NaN for a class whose prompts do not separate its boxes from the others')."""
        if self._embed_text is None:
            raise PicsiftError("empty boxes are found with the class prompts: this library has no text model")
        snapshot = self.object_store().snapshot()
        live = self._live()
        keep = np.array([i in live for i in snapshot.ids.tolist()], dtype=bool)
        ids = snapshot.ids[keep]
        classes = sorted({live[i].cls for i in ids.tolist()})
        if len(classes) < 2:
            return ids, np.full(len(ids), np.nan)
        codes = np.searchsorted(np.asarray(classes), np.array([live[i].cls for i in ids.tolist()]))
        text = class_text_vectors([words(c) for c in classes], self._embed_text)
        scores = snapshot.vectors(np.flatnonzero(keep)) @ text.T
        own = np.array([scores[codes == c, c].mean() for c in range(len(classes))])
        other = np.array([scores[codes != c, c].mean() for c in range(len(classes))])
        spread = own - other
        fit = (scores[np.arange(len(ids)), codes] - other[codes]) / np.where(spread > 0, spread, np.nan)[codes]
        for c in np.flatnonzero(spread <= 0):
            log.info("the prompts of class %r fit its boxes no better than other boxes: no empty-box check for it",
                     classes[c])
        return ids, fit

    def empty_boxes(self, threshold: float = EMPTY_FIT) -> ImageSet:
        """Boxes whose crop fits its class below ``threshold`` (see the module docs), least fitting first
        (``score`` is ``1 - fit``; columns ``fit``, ``reason``)."""
        ids, fit = self.box_fit()
        live = self._live()
        found = np.flatnonzero(np.nan_to_num(fit, nan=np.inf) < threshold)
        found = found[np.lexsort((ids[found].astype(str), fit[found]))]
        objects = [live[i] for i in ids[found].tolist()]
        reasons = [f"its crop fits {words(o.cls)!r} about as boxes of other classes do (fit {f:.2f}; its class's "
                   f"boxes: 1)" for o, f in zip(objects, fit[found], strict=True)]
        return ImageSet(ids[found].astype(object), (1 - fit[found]).astype(np.float32),
                        recipe=Recipe(info={"summary": "empty boxes"}),
                        columns={"image_id": np.array([o.image_id for o in objects], dtype=object),
                                 "class": np.array([o.cls for o in objects], dtype=object), "box": _boxes(objects),
                                 "label_id": np.array([o.catalog_id for o in objects], np.int64),
                                 "fit": fit[found].astype(np.float32), "reason": np.array(reasons, dtype=object)})


def object_findings(checks: ObjectLabelChecks, bind: Callable[[ImageSet], ImageSet]) -> dict[str, Finding]:
    """The health report's object findings: ``object_mistakes`` (cleanlab's issues among the objects' labels),
    ``duplicate_boxes`` and ``empty_boxes``; none when the library has no embedded object."""
    if not checks.has_objects():
        return {}
    findings: dict[str, Finding] = {}
    try:
        ranked = checks.mistakes(OBJECTS_FIELD, limit=None)
    except PicsiftError as e:  # e.g. one class: nothing to compare, the box checks still run
        log.info("no object label mistakes: %s", e)
    else:
        flagged = ranked.columns["issue"].astype(bool)
        images = ImageSet(ranked.ids[flagged], np.asarray(ranked.result_scores)[flagged],
                          recipe=Recipe(info={"summary": "object label mistakes"}),
                          columns={k: np.asarray(v)[flagged] for k, v in ranked.columns.items()})
        given = images.columns["given"]
        per_class: list[dict[str, Any]] = [{"class": c, "issues": int((given == c).sum())}
                                           for c in sorted(set(ranked.columns["given"].tolist()))]
        findings["object_mistakes"] = Finding(
            len(images), "object labels that their neighbours and the class prompts disagree with (cleanlab)",
            bind(images), per_class)
    duplicates = checks.duplicate_boxes()
    findings["duplicate_boxes"] = Finding(len(duplicates), f"boxes of one class overlapping another on their image "
                                          f"(IoU > {DUPLICATE_IOU})", bind(duplicates))
    if checks._embed_text is not None:
        empty = checks.empty_boxes()
        findings["empty_boxes"] = Finding(len(empty), "boxes whose crop holds nothing like their class (fits its "
                                          "prompts as other classes' boxes do)", bind(empty))
    return findings
