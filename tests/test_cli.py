"""The picsift command line, run as a real subprocess.

Most calls fork from an interpreter that has imported torch and open_clip (``tests/fast_python.py``); the readable
table's test starts ``python -m picsift`` from a fresh interpreter, as a user's shell does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import fast_python


def picsift(*args: str, check: bool = True, fresh: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run if fresh else fast_python.run
    result = run([sys.executable, "-m", "picsift", *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_index_search_similar_status_collections_as_json(image_folder: Path, tiny_model: str) -> None:
    indexed = json.loads(picsift("index", str(image_folder), "--model", tiny_model, "--json").stdout)
    assert indexed["embedded"] == 24 and indexed["skipped"] == [] and indexed["index"] == "ivf"

    found = json.loads(picsift("search", str(image_folder), "a red car", "--model", tiny_model, "--limit", "5",
                               "--json").stdout)
    scores = [r["score"] for r in found["results"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert [r["rank"] for r in found["results"]] == [1, 2, 3, 4, 5]
    assert found["distribution"]["count"] == 24 and sum(found["distribution"]["histogram"]["counts"]) == 24
    assert found["model"].endswith("tiny.pt")

    threshold = scores[2]
    above = json.loads(picsift("search", str(image_folder), "a red car", "--model", tiny_model, "--min-score",
                               str(threshold), "--json").stdout)
    assert [r["id"] for r in above["results"]] == [r["id"] for r in found["results"][:3]]

    first = found["results"][0]
    similar = json.loads(picsift("similar", str(image_folder), first["path"], first["id"], "--model", tiny_model,
                                 "--limit", "3", "--json").stdout)
    assert similar["results"][0]["id"] == first["id"]

    status = json.loads(picsift("status", str(image_folder), "--model", tiny_model, "--json").stdout)
    assert status["ready"] and status["embedded"] == 24 and status["pending"] == 0

    saved = json.loads(picsift("collections", str(image_folder), "--save", "best", "--json").stdout)
    assert [c["name"] for c in saved] == ["best"] and saved[0]["size"] == 3


def test_plain_output_is_a_readable_table(image_folder: Path, tiny_model: str) -> None:
    out = picsift("index", str(image_folder), "--model", tiny_model, "--quiet", fresh=True).stdout
    assert "24 embedded" in out and "picsift-test-tiny" in out
    table = picsift("search", str(image_folder), "a boat", "--model", tiny_model, "--limit", "2",
                    fresh=True).stdout.splitlines()
    assert table[0].startswith("2 of 24 images") and len(table) == 3
    assert table[1].split()[0] == "1" and Path(table[1].split(None, 2)[2]).is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "{folder}", "a cat", "--model", "{model}"], "run update() (CLI: picsift index FOLDER) first"),
        (["index", "{folder}/missing"], "does not exist or is not a folder"),
        (["index", "{folder}", "--model", "NotAnArch:random"], "unknown open_clip architecture 'NotAnArch'"),
        (["index", "{folder}", "--model", "ViT-B-32"], "has no weights part"),
        (["index", "{folder}", "--model", "ViT-B-32:/no/such.pt"], "checkpoint file /no/such.pt does not exist"),
        (["similar", "{folder}", "nope.png", "--model", "{model}"], "neither an image id"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(image_folder: Path, tiny_model: str, args: list[str],
                                               message: str) -> None:
    argv = [a.format(folder=image_folder, model=tiny_model) for a in args]
    result = picsift(*argv, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line, no traceback
    assert result.stderr.startswith("picsift: error: ") and message in result.stderr


def test_offline_the_default_model_falls_back_to_the_offline_model_in_one_line(image_folder: Path) -> None:
    result = picsift("index", str(image_folder), "--json")  # HF_HUB_OFFLINE=1 and nothing cached
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "ViT-B-32:laion2b_s34b_b79k are not cached" in warnings[0] and "picsift-offline" in warnings[0]
    assert "--model" in warnings[0]
    assert json.loads(result.stdout)["model"] == "picsift-offline"


def test_without_any_usable_model_the_error_names_the_model_option(
    image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import picsift as package
    import picsift.core.workspace
    from picsift.errors import ModelUnavailableError

    monkeypatch.setattr(picsift.core.workspace, "offline_model_available", lambda: False)
    with pytest.raises(ModelUnavailableError, match=r"are not cached .*choose a model with --model SPEC"):
        package.Library(image_folder).update(progress=False)


def test_unknown_backend_is_rejected_listing_the_valid_ones(image_folder: Path) -> None:
    result = picsift("index", str(image_folder), "--index", "faiss", check=False)
    assert result.returncode == 2 and "invalid choice: 'faiss'" in result.stderr
    assert "exact" in result.stderr and "hnsw" in result.stderr and "qdrant" in result.stderr
