"""Label mistakes: planted flips on the demo stamps come first, with the columns and recipe a user reads, and
bad input gets a clear message."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from picsift import Library
from picsift.analysis.health.fields import words
from picsift.errors import PicsiftError

from .conftest import stamp_files

CATEGORIES = ("animals", "vehicles", "food", "plants")
PER_CATEGORY = 24
FLIPS = 8


@pytest.fixture(scope="module")
def flipped(stamps_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Stamps in a folder per category, 8 of them moved to a wrong folder: file name -> its true category."""
    folder = tmp_path_factory.mktemp("flipped") / "images"
    rng = np.random.default_rng(7)
    files = stamp_files(stamps_root, CATEGORIES, PER_CATEGORY)
    planted = {}
    for i in sorted(rng.choice(len(files), FLIPS, replace=False).tolist()):
        truth = files[i].relative_to(stamps_root).parts[0]
        planted[files[i].name] = CATEGORIES[(CATEGORIES.index(truth) + 1 + i % 3) % len(CATEGORIES)]
    for path in files:
        category = planted.get(path.name, path.relative_to(stamps_root).parts[0])
        (folder / category).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / category / path.name)
    return folder, {name: next(c for c in CATEGORIES if (stamps_root / c) in p.parents)
                    for p in files for name in [p.name] if name in planted}


@pytest.fixture(scope="module")
def library(flipped: tuple[Path, dict[str, str]]) -> Library:
    with Library(flipped[0], model="picsift-offline", index="exact") as lib:
        lib.update(progress=False)
        yield lib


@pytest.mark.offline_model
def test_planted_flips_rank_first_with_their_true_class_suggested(
    library: Library, flipped: tuple[Path, dict[str, str]]
) -> None:
    _, truth = flipped
    found = library.label_mistakes("folder", limit=None)
    df = found.df
    assert len(df) == len(library.store.snapshot()) > 90 and df["score"].is_monotonic_decreasing
    assert list(df.columns[:4]) == ["rank", "id", "path", "score"]
    assert {"given", "suggested", "issue", "reason"} <= set(df.columns)
    assert df["score"].between(0, 1).all()
    names = df["path"].map(lambda p: Path(p).name)
    top = set(names[: 2 * FLIPS])
    assert len(top & set(truth)) >= 6, df.head(2 * FLIPS)  # 6 of the 8 flips among the first 16 of 96
    planted = df[names.isin(list(truth))]
    assert (planted["given"] != planted["suggested"]).mean() >= 0.75
    assert (planted["suggested"] == planted["path"].map(lambda p: truth[Path(p).name])).mean() >= 0.6
    assert planted["issue"].mean() >= 0.75  # cleanlab flags them
    first = df.iloc[0]
    assert f"are {first['suggested']!r}" in first["reason"] and "nearest labelled neighbours" in first["reason"]
    assert library.collection().df["id"].tolist() == df["id"].tolist()  # remembered
    recipe = library.collections.recipe()
    assert recipe["kind"] == "label_mistakes" and recipe["field"] == "folder" and recipe["unlabelled"] == 0
    again = library.collection().recipe.step.replay(library.queries)
    assert again.ids.tolist() == found.ids.tolist()  # the recipe replays
    assert library.label_mistakes("folder").df["id"].tolist() == df["id"].tolist()[:50]


@pytest.mark.offline_model
def test_within_a_collection_and_tags_as_the_field(library: Library) -> None:
    everything = library.label_mistakes("folder", limit=None).df
    some = everything["id"].tolist()[::3]
    within = library.label_mistakes("folder", limit=None, within=some).df
    assert within["id"].tolist() == [i for i in everything["id"] if i in set(some)]
    for image_id, given in zip(everything["id"], everything["given"], strict=True):
        library.labels.add_tag(image_id, "kind", given)
    library.labels.add_tag(everything["id"].iloc[0], "other")  # a tag without a value is no class
    by_tag = library.label_mistakes("kind", limit=None).df
    assert by_tag["id"].tolist() == everything["id"].tolist()
    np.testing.assert_allclose(by_tag["score"], everything["score"], atol=1e-6)


@pytest.mark.offline_model
def test_bad_fields_and_unusable_labels_get_clear_messages(library: Library, tmp_path: Path,
                                                            flipped: tuple[Path, dict[str, str]]) -> None:
    with pytest.raises(PicsiftError, match=r"unknown field 'colour'; fields: folder, folder:2, objects"):
        library.label_mistakes("colour")
    with pytest.raises(PicsiftError, match="no embedded image has a label in field 'folder:2'"):
        library.label_mistakes("folder:2")
    with pytest.raises(PicsiftError, match="positive number"):
        library.label_mistakes("folder:0")
    with pytest.raises(PicsiftError, match="no embedded image has a label in field 'objects:image'"):
        library.label_mistakes("objects:image")
    with pytest.raises(PicsiftError, match=r"no labelled objects are embedded yet.*'objects:image'"):
        library.label_mistakes("objects")
    with pytest.raises(PicsiftError, match="limit=-1"):
        library.label_mistakes("folder", limit=-1)
    one = library.store.snapshot().ids[:3].tolist()
    for image_id, value in zip(one, ("a", "a", "b"), strict=True):
        library.labels.add_tag(image_id, "tiny", value)
    with pytest.raises(PicsiftError, match=r"1 class with at least 2 images \(\['a'\]; one image each: b\)"):
        library.label_mistakes("tiny")


def test_class_names_become_words() -> None:
    assert [words(n) for n in ("sea_animals", "TrafficSigns", "03-cars", "food")] == [
        "sea animals", "traffic signs", "cars", "food"]
