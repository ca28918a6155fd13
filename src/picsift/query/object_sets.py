"""Object sets: image sets whose ids are labelled objects' (a search with ``objects=True`` and what is made from
one: a filtered, cut, combined or saved one).

An object set is an :class:`~picsift.query.imageset.ImageSet` like any other: its recipe records that it holds
objects (:func:`made_of_objects`), so a saved one reads back, re-runs and filters as one, and its :attr:`columns`
carry each object's ``image_id``, ``class`` and ``box`` (``[x, y, w, h]`` in pixels), added from the objects
labelled now (:func:`with_object_columns`). An object no longer labelled (removed, or its box moved) keeps its row
with no image, class or box, as an image deleted from a collection keeps its id without a path. What acts on
images (copy, move, delete, a project export) acts on the set's images, each once (:func:`image_ids`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from ..core.objects import LiveObject
from .imageset import ImageSet
from .steps import Combined, Filtered, Head, Recipe, Step, _Search

#: The recipe info key an object set's recipe carries (a search's options record it too).
OBJECTS_KEY = "objects"


def made_of_objects(recipe: Recipe) -> bool:
    """Whether ``recipe`` makes an object set."""
    return recipe.info.get(OBJECTS_KEY) is True or _step_of_objects(recipe.step)


def _step_of_objects(step: Step) -> bool:
    if isinstance(step, _Search):
        return step.options.objects
    if isinstance(step, (Filtered, Head)):
        return _step_of_objects(step.source)
    if isinstance(step, Combined):
        return _step_of_objects(step.first) and _step_of_objects(step.second)
    return False


def is_object_set(images: ImageSet) -> bool:
    """Whether ``images`` holds objects (its columns, or its recipe, say so)."""
    return "image_id" in images.columns or made_of_objects(images.recipe)


def object_columns(ids: Sequence[str], live: Mapping[str, LiveObject]) -> dict[str, np.ndarray]:
    """``image_id``, ``class`` and ``box`` (rounded to 1/100 px) of each of ``ids``; None where it is gone."""
    found = [live.get(i) for i in ids]
    boxes = np.empty(len(found), dtype=object)
    for n, obj in enumerate(found):
        boxes[n] = None if obj is None else [round(float(v), 2) for v in obj.box]
    return {"image_id": np.array([None if o is None else o.image_id for o in found], dtype=object),
            "class": np.array([None if o is None else o.cls for o in found], dtype=object), "box": boxes}


def with_object_columns(images: ImageSet, live: Mapping[str, LiveObject]) -> ImageSet:
    """``images`` (an object set) with its objects' columns, and its recipe marked as an object set's."""
    recipe = images.recipe if made_of_objects(images.recipe) else images.recipe.with_info(**{OBJECTS_KEY: True})
    if "image_id" in images.columns:
        return images.with_recipe(recipe)
    return replace(images, columns={**images.columns, **object_columns(images.ids.tolist(), live)}, recipe=recipe)


def image_ids(images: ImageSet) -> list[str]:
    """The images of an object set, each once, in the order of their first object (objects gone are left out)."""
    return list(dict.fromkeys(i for i in images.columns["image_id"].tolist() if i is not None))


def image_of(live: Mapping[str, LiveObject]) -> dict[str, str]:
    """Each object's image id."""
    return {key: obj.image_id for key, obj in live.items()}
