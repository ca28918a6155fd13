"""The offline model through picsift's own path: a Library search on real images it never trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

import picsift

pytestmark = pytest.mark.offline_model


def test_text_search_with_the_offline_model_finds_the_category_asked_for(image_folder: Path) -> None:
    """24 Tux Paint stamps (never trained on), 8 each of animals, vehicles and food."""
    with picsift.Library(image_folder, model="picsift-offline") as lib:
        assert lib.update(progress=False).embedded == 24
        assert "offline model" in lib.status()["model_label"]
        results = lib.search("a picture of animals", limit=None)
        animals = sum("/animals/" in p for p in results.paths[:8])
        assert animals >= 5, results.paths[:8]  # chance: 8/3 of 8
        by_folder: dict[str, list[float]] = {}
        for path, score in zip(results.paths, results.df["score"], strict=True):
            by_folder.setdefault(Path(path).parent.name, []).append(score)
        mean = {folder: sum(v) / len(v) for folder, v in by_folder.items()}
        assert mean["animals"] > max(mean["vehicles"], mean["food"]), mean
