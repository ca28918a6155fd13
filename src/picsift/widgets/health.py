"""The Health tab: run the dataset checks (:meth:`Library.health <picsift.Library.health>`), show a finding's images
in the gallery with their given and suggested labels and the reason on each card, and act on them: accept the
suggestion (set the tag), open an issue, add them to a labelling job, export them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import traitlets

from ..library import Library
from ..query.imageset import ImageSet
from ._base import PicsiftWidget

#: ``callback(images, notes, title)``: show a finding's images; notes map ids to ``(caption, tooltip)``.
ShowCallback = Callable[[ImageSet, dict[str, tuple[str, str]], str], None]
#: Fields whose labels are not tags: a suggestion there is accepted by moving files, not by setting a tag.
FOLDER_FIELDS = ("folder", "folder:2", "folder:3")
FINDING_TITLES = {
    "label_mistakes": "Label mistakes", "near_duplicates": "Near duplicates", "leaks": "Leaks across splits",
    "outliers": "Outliers", "confusable_classes": "Confusable classes", "class_balance": "Rare classes",
    "object_mistakes": "Object label mistakes", "duplicate_boxes": "Duplicate boxes", "empty_boxes": "Empty boxes",
}


def notes_for(images: ImageSet) -> dict[str, tuple[str, str]]:
    """Each image's card caption and tooltip from a finding's columns (given -> suggested, reason, split...)."""
    columns, ids = images.columns, images.ids.tolist()
    given, suggested = columns.get("given"), columns.get("suggested")
    reason, split, group = columns.get("reason"), columns.get("split"), columns.get("group")
    notes: dict[str, tuple[str, str]] = {}
    for i, image_id in enumerate(ids):
        if given is not None and suggested is not None:
            caption = f"{given[i]} → {suggested[i]}"
        elif given is not None:
            caption = str(given[i])
        elif split is not None:
            caption = f"split {split[i]}"
        elif group is not None:
            caption = f"group {group[i]}"
        else:
            continue
        notes[image_id] = (caption, str(reason[i]) if reason is not None else caption)
    return notes


def object_images(objects: ImageSet) -> tuple[ImageSet, dict[str, tuple[str, str]]]:
    """An object finding as the gallery shows it: the images holding its objects (best score first, each image
    once, with its best object's score), and per image a caption and a tooltip naming each object and its box."""
    columns, ids = objects.columns, objects.columns["image_id"].tolist()
    scores = np.asarray(objects.result_scores if objects.result_scores is not None else np.zeros(len(ids)))
    given, suggested, reason = columns.get("given"), columns.get("suggested"), columns.get("reason")
    order: dict[str, float] = {}
    notes: dict[str, tuple[list[str], list[str]]] = {}
    for n, image_id in enumerate(ids):
        order[image_id] = max(order.get(image_id, -np.inf), float(scores[n]))
        cls = str(columns["class"][n])
        if given is not None and suggested is not None:
            caption = f"{given[n]} → {suggested[n]}"
        elif "duplicate_of" in columns:
            caption = f"duplicate {cls} box"
        else:
            caption = f"empty {cls} box"
        tip = f"{caption} at {list(columns['box'][n])}" + (f": {reason[n]}" if reason is not None else "")
        captions, tips = notes.setdefault(image_id, ([], []))
        captions.append(caption)
        tips.append(tip)
    shown = sorted(order, key=lambda i: -order[i])
    images = ImageSet(np.array(shown, dtype=object), np.array([order[i] for i in shown], np.float32),
                      recipe=objects.recipe, _owner=objects._owner)
    return images, {i: ("; ".join(c), "\n".join(t)) for i, (c, t) in notes.items()}


class HealthPanel(PicsiftWidget):
    """Dataset health checks and actions on their findings.

    Public traits: ``field`` (where each image's class is: a tag name, ``"folder"``...; ``""``: no label checks),
    ``split`` (a tag or folder level holding train/val/test...; ``""``: none), ``fields`` (the choices),
    ``findings`` (one ``{name, title, count, description}`` per check of the last run), ``shown`` (the finding in
    the gallery), ``job`` (the labelling job that "add to job" fills), ``export_path`` and ``notice``.

    Callbacks registered with :meth:`on_show` receive ``(images, notes, title)`` when a finding is chosen (the app
    shows it in its gallery). Actions act on ``target()`` (the app's selection, else the finding's images).
    """

    _bundle = "health"
    events = ("show",)
    field = traitlets.Unicode("").tag(sync=True)
    split = traitlets.Unicode("").tag(sync=True)
    fields = traitlets.List(traitlets.Unicode()).tag(sync=True)
    findings = traitlets.List(traitlets.Dict()).tag(sync=True)
    shown = traitlets.Unicode("").tag(sync=True)
    job = traitlets.Unicode("label-review").tag(sync=True)
    export_path = traitlets.Unicode("health.csv").tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)

    def __init__(self, library: Library | None = None, target: Callable[[], list[str]] | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.library = library
        self.target = target
        self.health_report: Any = None
        self._shown_images: ImageSet | None = None  # an object finding's images, as the gallery shows them
        self.refresh_fields()

    def refresh_fields(self) -> None:
        """Reload the field choices: the image tags of the library and the folder levels."""
        tags = self.library.labels.tag_names() if self.library is not None else []
        self.fields = [*FOLDER_FIELDS[:2], *(t for t in tags if t not in FOLDER_FIELDS)]

    def on_show(self, callback: ShowCallback) -> None:
        """Call ``callback(images, notes, title)`` when a finding is chosen (``on("show", ...)``)."""
        self.on("show", callback)

    # -- checks -----------------------------------------------------------------------------------
    def run(self, field: str | None = None, split: str | None = None) -> Any:
        """Run the checks (``None``: the current ``field`` / ``split``); returns the report, shows its findings."""
        library = self._library()
        self.field = self.field if field is None else field
        self.split = self.split if split is None else split
        self.health_report = library.health(self.field or None, self.split or None)
        self.findings = [{"name": name, "title": FINDING_TITLES.get(name, name.replace("_", " ")),
                          "count": int(finding.count), "description": finding.description}
                         for name, finding in self.health_report.findings.items()]
        labelled = self.health_report.summary.get("labelled")
        self.notice = (f"{self.health_report.summary['images']} images checked"
                       + (f", {labelled} labelled in {self.field!r}" if labelled is not None else ""))
        first = next((f["name"] for f in self.findings if f["count"]), None)
        if first is not None:
            self.show_finding(first)
        return self.health_report

    def show_finding(self, name: str) -> ImageSet:
        """Show finding ``name`` of the last run (its images, given and suggested labels, reasons)."""
        if self.health_report is None:
            raise ValueError("run the checks first")
        if name not in self.health_report.findings:
            raise ValueError(f"no finding {name!r}; findings: {', '.join(self.health_report.findings)}")
        images = self.health_report.findings[name].images
        self.shown = name
        shown, notes = object_images(images) if "image_id" in images.columns else (images, notes_for(images))
        self._shown_images = shown
        self.emit("show", shown, notes, f"health: {FINDING_TITLES.get(name, name)}")
        return images

    # -- actions ----------------------------------------------------------------------------------
    def _finding(self) -> ImageSet:
        if self.health_report is None or self.shown not in self.health_report.findings:
            raise ValueError("choose a finding first")
        images: ImageSet = self.health_report.findings[self.shown].images
        return self._shown_images if "image_id" in images.columns and self._shown_images is not None else images

    def _targets(self, ids: list[str] | None) -> list[str]:
        chosen = list(ids) if ids is not None else (self.target() if self.target is not None else [])
        if not chosen:
            chosen = self._finding().ids.tolist()
        if not chosen:
            raise ValueError("no images to act on: this finding is empty")
        return chosen

    def accept(self, ids: list[str] | None = None) -> int:
        """Set tag ``field`` to the suggested class on these images of the shown label mistakes; returns how many."""
        library, images = self._library(), self._finding()
        assert self.health_report is not None
        objects = self.health_report.findings[self.shown].images
        if "image_id" in objects.columns and "suggested" in objects.columns:
            return self._accept_objects(objects, self._targets(ids))
        if "suggested" not in images.columns:
            raise ValueError(f"the finding {self.shown!r} has no suggested labels; show the label mistakes")
        if self.field in FOLDER_FIELDS or self.field.startswith("folder:"):
            raise ValueError(f"labels of {self.field!r} come from folders: accept a suggestion by moving the files "
                             "(Actions: move into a dataset); accepting sets tags only")
        suggested = dict(zip(images.ids.tolist(), images.columns["suggested"].tolist(), strict=True))
        chosen = [i for i in self._targets(ids) if i in suggested]
        for image_id in chosen:
            library.labels.remove_tag(image_id, self.field)
            library.labels.add_tag(image_id, self.field, str(suggested[image_id]))
        self.notice = f"set {self.field!r} to the suggested class on {len(chosen)} images"
        notes = notes_for(images)
        notes.update({i: (f"✓ {suggested[i]}", f"accepted: {self.field} = {suggested[i]}") for i in chosen})
        self.emit("show", images, notes, f"health: {FINDING_TITLES.get(self.shown, self.shown)}")
        return len(chosen)

    def _accept_objects(self, objects: ImageSet, images: list[str]) -> int:
        """Give each object of the shown object finding on ``images`` its suggested class."""
        library, columns = self._library(), objects.columns
        wanted = set(images)
        chosen = [n for n, image_id in enumerate(columns["image_id"].tolist()) if image_id in wanted]
        for n in chosen:
            library.labels.set_object_class(int(columns["label_id"][n]), str(columns["suggested"][n]))
        self.notice = f"set the suggested class on {len(chosen)} objects"
        shown, notes = object_images(objects)
        for n in chosen:
            image_id = str(columns["image_id"][n])
            notes[image_id] = (f"✓ {columns['suggested'][n]}", f"accepted: object at {list(columns['box'][n])} "
                               f"is now {columns['suggested'][n]!r}")
        self.emit("show", shown, notes, f"health: {FINDING_TITLES.get(self.shown, self.shown)}")
        return len(chosen)

    def open_issues(self, ids: list[str] | None = None) -> int:
        """Open an issue on each of these images, saying what the check found; returns how many."""
        library, images = self._library(), self._finding()
        notes = notes_for(images)
        chosen = self._targets(ids)
        for image_id in chosen:
            caption, tip = notes.get(image_id, (FINDING_TITLES.get(self.shown, self.shown), ""))
            text = f"{FINDING_TITLES.get(self.shown, self.shown)}: {caption}" + (f" ({tip})" if tip != caption else "")
            library.labels.open_issue(image_id, text, author="picsift health")
        self.notice = f"opened {len(chosen)} issues"
        return len(chosen)

    def add_to_job(self, ids: list[str] | None = None, job: str | None = None) -> int:
        """Add these images to labelling job ``job`` (default the ``job`` trait) as pending; returns how many."""
        library, job = self._library(), (job or self.job).strip()
        if not job:
            raise ValueError("name the labelling job first")
        chosen = self._targets(ids)
        library.labels.create_job(job, chosen)
        self.job = job
        self.notice = f"added {len(chosen)} images to job {job!r}"
        return len(chosen)

    def export(self, ids: list[str] | None = None, path: str | None = None) -> Path:
        """Export these images of the shown finding (with its columns) to ``path`` (csv or parquet by suffix)."""
        library, images = self._library(), self._finding()
        chosen = set(self._targets(ids))
        keep = np.isin(images.ids, list(chosen))
        path = (path or self.export_path).strip()
        fmt = "parquet" if path.endswith(".parquet") else "csv"
        out = library.export(images.ids[keep].tolist() if not keep.all() else images, path, fmt)
        self.export_path = path
        self.notice = f"exported {int(keep.sum())} images to {out}"
        return Path(out)

    def _library(self) -> Library:
        if self.library is None:
            raise ValueError("this HealthPanel has no library")
        return self.library

    # -- messages ---------------------------------------------------------------------------------
    def _on_run_health(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.run(str(content.get("field", self.field)), str(content.get("split", self.split)))

    def _on_show_finding(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.show_finding(str(content.get("name", "")))

    def _on_accept_suggestion(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.accept()

    def _on_open_issue(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.open_issues()

    def _on_add_to_job(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.add_to_job(job=str(content.get("job", self.job)))

    def _on_export_finding(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        self.export(path=str(content.get("path", self.export_path)))
