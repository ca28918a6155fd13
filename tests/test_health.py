"""The health report and the CLI: leaks across splits, planted mistakes, outliers, per-image columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsift import Library
from picsift.errors import PicsiftError
from picsift.query.imageset import ImageSet

from .conftest import stamp_files
from .test_cli import picsift

pytestmark = pytest.mark.offline_model


@pytest.fixture(scope="module")
def dataset(stamps_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """train/ and test/ folders of three categories (tag "class"), one test image a JPEG twin of a train image,
    and two train images tagged with the wrong class."""
    folder = tmp_path_factory.mktemp("health") / "images"
    files = stamp_files(stamps_root, ("animals", "vehicles", "food"), 14)
    for i, path in enumerate(files):
        target = folder / ("test" if i % 4 == 0 else "train") / f"{i:03d}-{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    twin_of = sorted((folder / "train").glob("*.png"))[5]
    image = Image.open(twin_of).convert("RGBA")
    flat = Image.new("RGB", image.size, "white")
    flat.paste(image, mask=image.getchannel("A"))
    flat.save(folder / "test" / "twin.jpg", quality=92)
    return {"folder": folder, "files": files, "twin": ("train/" + twin_of.name, "test/twin.jpg")}


@pytest.fixture(scope="module")
def library(dataset: dict[str, object]) -> Library:
    folder = dataset["folder"]
    assert isinstance(folder, Path)
    with Library(folder, model="picsift-offline", index="exact") as lib:
        lib.update(progress=False)
        wrong = {}
        for path, image_id in zip(lib.images()["path"], lib.images()["id"], strict=True):
            name = Path(path).name
            number = int(name[:3]) if name[:3].isdigit() else None
            category = ("animals", "vehicles", "food")[number // 14] if number is not None else "animals"
            if number in (1, 30):  # an animal called food, a food called vehicles
                category = {1: "food", 30: "vehicles"}[number]
                wrong[image_id] = category
            lib.labels.add_tag(image_id, "class", category)
        lib.wrong = wrong  # type: ignore[attr-defined]
        yield lib


def test_the_report_finds_the_leak_the_planted_mistakes_and_scores_every_image(
    library: Library, dataset: dict[str, object]
) -> None:
    report = library.health(field="class", split="folder")
    assert {"label_mistakes", "near_duplicates", "leaks", "outliers", "confusable_classes",
            "class_balance"} <= set(report.findings)
    for finding in report.findings.values():
        assert isinstance(finding.images, ImageSet) and finding.count >= 0 and finding.description
    leaks = report.findings["leaks"]
    assert leaks.count == 1
    paths = {str(Path(p).relative_to(library.root)) for p in leaks.images.df["path"]}
    assert paths == set(dataset["twin"])  # type: ignore[arg-type]
    assert sorted(leaks.details[0]["splits"]) == ["test", "train"]
    mistakes = report.findings["label_mistakes"]
    assert set(library.wrong) <= set(mistakes.images.ids.tolist()[:6])  # type: ignore[attr-defined]
    assert {"given", "suggested", "reason"} <= set(mistakes.images.df.columns)
    assert sum(d["issues"] for d in mistakes.details) == mistakes.count
    images = report.images
    assert len(images) == len(library.store.snapshot())
    assert images["uniqueness"].between(0, 1).all() and images["representativeness"].between(0, 1).all()
    twins = images[images["id"].isin(leaks.images.ids)]
    assert (twins["uniqueness"] < images["uniqueness"].quantile(0.1)).all()  # a twin is not unique
    assert set(images["split"]) == {"train", "test"} and images["label"].notna().all()
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["findings"]["leaks"]["count"] == 1 and as_json["summary"]["field"] == "class"
    html = report._repr_html_()
    assert "leaks" in html and "<table>" in html
    plain = library.health()
    assert "label_mistakes" not in plain.findings and "leaks" not in plain.findings
    with pytest.raises(PicsiftError, match="unknown field 'nope'"):
        library.health(split="nope")


def test_cli_mistakes_and_health(library: Library) -> None:
    root = str(library.root)
    found = json.loads(picsift("mistakes", root, "--field", "class", "--limit", "5", "--json").stdout)
    assert [r["rank"] for r in found["results"]] == [1, 2, 3, 4, 5]
    assert set(library.wrong) <= {r["id"] for r in found["results"]}  # type: ignore[attr-defined]
    plain = picsift("mistakes", root, "--field", "class", "--limit", "3").stdout.splitlines()
    assert "likely label mistakes among" in plain[0] and len(plain) == 4
    report = json.loads(picsift("health", root, "--field", "class", "--split", "folder", "--json").stdout)
    assert report["findings"]["leaks"]["count"] == 1
    text = picsift("health", root, "--split", "folder").stdout
    assert "leaks: 1" in text
    bad = picsift("mistakes", root, "--field", "colour", check=False)
    assert bad.returncode != 0 and "fields: folder, folder:2, objects, objects:image, class" in bad.stderr
    assert np.isfinite([r["score"] for r in found["results"]]).all()
