"""The app's Health tab (issue 21, item 4) in Python: findings with counts, a finding shown in the gallery with
given -> suggested and the reason on each card, and the actions on a selection. In the real browser:
tests/e2e/test_health_in_browser.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from picsift import Library

from .test_health import dataset, library  # noqa: F401 - the fixtures: 42 stamps tagged "class", 2 of them wrong

pytestmark = pytest.mark.offline_model
anywidget = pytest.importorskip("anywidget")


@pytest.fixture
def app(library: Library):  # noqa: F811
    from picsift.widgets import App

    panel = App(library, update=False, explorer=False)
    yield panel


def test_the_health_tab_shows_label_mistakes_with_given_and_suggested_labels(app, library: Library) -> None:  # noqa: F811
    health = app.health
    assert {"folder", "folder:2", "class"} <= set(health.fields)
    health._dispatch(health, {"type": "run_health", "field": "class", "split": "folder"}, [])
    assert not health.error, health.error
    counts = {f["name"]: f["count"] for f in health.findings}
    assert counts["leaks"] == 1 and counts["label_mistakes"] >= 2
    assert health.shown == "label_mistakes"  # the first finding with images is shown at once
    assert app.gallery.title == "health: Label mistakes" and len(app.gallery) == counts["label_mistakes"]
    top = app.gallery.ids[:6].tolist()
    assert set(library.wrong) <= set(top)  # type: ignore[attr-defined]  the planted flips, most likely first
    for image_id, wrong in library.wrong.items():  # type: ignore[attr-defined]
        caption, reason = app.gallery.notes[image_id]
        assert caption.startswith(f"{wrong} → ") and not caption.endswith(wrong) and reason
    health._dispatch(health, {"type": "show_finding", "name": "leaks"}, [])
    assert len(app.gallery) == 2 and all(app.gallery.notes[i][0].startswith("split ") for i in app.gallery.ids)


def test_accept_issue_job_and_export_act_on_the_selection(app, library: Library, tmp_path: Path) -> None:  # noqa: F811
    health = app.health
    health.run("class", "folder")
    flipped = sorted(library.wrong)  # type: ignore[attr-defined]
    app.gallery.selection = flipped[:1]
    suggested = app.gallery.notes[flipped[0]][0].split(" → ")[1]
    assert health.accept() == 1
    assert library.labels.tags(flipped[0]) == [("class", suggested)]  # the tag now holds the suggestion
    assert app.gallery.notes[flipped[0]][0] == f"✓ {suggested}"
    app.gallery.selection = flipped
    assert health.open_issues() == 2
    issues = library.labels.issues(status="open")
    assert set(issues["image_id"]) >= set(flipped) and issues["text"].str.startswith("Label mistakes: ").all()
    health._dispatch(health, {"type": "add_to_job", "job": "relabel"}, [])
    assert set(library.labels.job_status("relabel")) == set(flipped)
    app.gallery.selection = []  # no selection: the whole finding
    out = health.export(path=str(tmp_path / "mistakes.csv"))
    assert len(pd.read_csv(out)) == len(health.health_report.findings["label_mistakes"].images)
    health.field = "folder"
    health._dispatch(health, {"type": "accept_suggestion"}, [])
    assert "come from folders" in health.error
