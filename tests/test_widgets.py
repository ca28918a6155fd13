"""The notebook widgets' traits, message handlers and serialisers, on a real library (tiny model)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import traitlets

pytest.importorskip("anywidget")

from picsift import Library, PicsiftError
from picsift.analysis.clustering import cluster, default_clusters
from picsift.analysis.projection import RowsView, cached_projection, pca
from picsift.analysis.sampling import diverse_sample
from picsift.query.filters import ImageTag, ObjectCount
from picsift.widgets import (
    Actions,
    App,
    CollectionsList,
    Explorer,
    FiltersPanel,
    Gallery,
    PromptBox,
    Sampler,
    ScoreRange,
    app,
)
from picsift.widgets._protocol import MESSAGE_TYPES, array_from_json, array_to_json
from picsift.widgets._source import ImageSource
from picsift.widgets.explorer import categories
from picsift.widgets.score_range import count_in_range, suggest_threshold

from .conftest import ids_by_folder

ROOT = Path(__file__).resolve().parent.parent


class Sent:
    """Captures what a widget sends to the front-end."""

    def __init__(self, widget: Any):
        self.messages: list[tuple[dict[str, Any], list[bytes]]] = []
        widget.send = lambda content, buffers=None: self.messages.append((content, list(buffers or [])))

    def last(self, kind: str) -> tuple[dict[str, Any], list[bytes]]:
        return next(m for m in reversed(self.messages) if m[0]["type"] == kind)


def message(widget: Any, content: dict[str, Any]) -> None:
    """Deliver a front-end message the way ipywidgets does."""
    widget._dispatch(widget, content, [])


@pytest.fixture
def library(image_folder: Path, tiny_model: str) -> Library:
    lib = Library(image_folder, model=tiny_model, index="exact")
    lib.update(progress=False)
    return lib


@pytest.fixture
def panel(library: Library) -> App:
    return App(library, update=False)


# -- protocol -------------------------------------------------------------------------------------
def test_message_table_matches_the_front_end() -> None:
    js = (ROOT / "js" / "protocol.js").read_text()
    listed = re.search(r"MESSAGE_TYPES = \[(.*?)\];", js, re.S)
    assert listed is not None
    assert re.findall(r'"(\w+)"', listed.group(1)) == list(MESSAGE_TYPES)


@pytest.mark.parametrize("dtype", ["float32", "int32", "float64", "uint8"])
def test_arrays_travel_as_binary_buffers(dtype: str) -> None:
    array = np.arange(12, dtype=dtype).reshape(4, 3)
    sent = array_to_json(array)
    assert sent is not None and isinstance(sent["view"], memoryview)
    assert sent["dtype"] == dtype and sent["shape"] == [4, 3]
    back = array_from_json({**sent, "view": sent["view"].tobytes()})
    assert back is not None
    np.testing.assert_array_equal(back, array)
    assert array_to_json(None) is None


def test_unsupported_dtype_is_named() -> None:
    with pytest.raises(TypeError, match="float16"):
        array_to_json(np.zeros(3, np.float16))


def test_unknown_message_type_shows_an_error_listing_valid_ones(library: Library) -> None:
    box = PromptBox(library)
    sent = Sent(box)
    message(box, {"type": "launch_rockets"})
    assert "launch_rockets" in box.error and "submit" in box.error
    assert sent.last("error")[0]["message"] == box.error


# -- prompt box -----------------------------------------------------------------------------------
def test_prompt_box_reports_status_and_searches(library: Library) -> None:
    box = PromptBox(library)
    assert box.status["ready"] is True and box.status["embedded"] == 24
    message(box, {"type": "submit", "text": "a red car", "limit": 5, "mode": "text"})
    assert box.error == ""
    assert box.text == "a red car" and box.limit == 5
    assert box.results is not None and len(box.results) == 5


def test_prompt_box_is_unavailable_while_embedding(image_folder: Path, tiny_model: str) -> None:
    lib = Library(image_folder, model=tiny_model, index="exact")
    box = PromptBox(lib)
    assert box.status["ready"] is False and not box.ready
    message(box, {"type": "submit", "text": "a cat"})
    assert "not ready" in box.error
    seen: list[dict[str, Any]] = []
    box.observe(lambda change: seen.append(dict(change["new"])), "status")
    box.update_library(background=False)
    assert box.ready and box.status["embedded"] == 24
    progress = [s["progress"] for s in seen if "progress" in s]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 24


def test_prompt_box_updates_in_the_background(image_folder: Path, tiny_model: str) -> None:
    box = PromptBox(Library(image_folder, model=tiny_model, index="exact"))
    box.update_library()
    thread = box._update_thread
    assert thread is not None and box.status["progress"] == {"done": 0, "total": 0} and not box.ready
    thread.join(timeout=300)
    assert box.ready and box.status["embedded"] == 24 and "progress" not in box.status and box.error == ""


def test_prompt_box_rejects_unknown_mode(library: Library) -> None:
    box = PromptBox(library)
    message(box, {"type": "submit", "text": "x", "mode": "telepathy"})
    assert "telepathy" in box.error and "diverse" in box.error


# -- score range ----------------------------------------------------------------------------------
def test_score_range_histogram_and_presets() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.2, 0.02, 1000), rng.normal(0.6, 0.02, 30)]).astype(np.float32)
    widget = ScoreRange(scores, bins=40)
    counts = array_from_json({**array_to_json(widget._counts), "view": array_to_json(widget._counts)["view"].tobytes()})
    assert counts is not None and counts.sum() == len(scores)
    assert widget.score_range == [pytest.approx(scores.min()), pytest.approx(scores.max())]
    assert widget.count == len(scores)
    assert widget.suggested is not None and 0.3 < widget.suggested < 0.6  # in the gap between the modes
    assert widget.suggested in widget._edges  # snapped to a bin edge
    widget.select_above()
    assert widget.count == 30
    widget.select_below()
    assert widget.count == 1000
    widget.select_all()
    assert widget.count == len(scores)
    widget.set_scores(None)
    assert widget.score_range == [] and widget._counts is None


def test_count_in_range_matches_histogram_bins() -> None:
    scores = np.random.default_rng(1).random(5000).astype(np.float32)
    counts, edges = np.histogram(scores, bins=25, range=(float(scores.min()), float(scores.max())))
    for lo, hi in [(0, 25), (3, 10), (24, 25), (0, 1)]:
        assert count_in_range(scores, edges[lo], edges[hi], top=edges[-1]) == counts[lo:hi].sum()


def test_suggest_threshold_edge_cases() -> None:
    assert suggest_threshold(np.zeros(0)) is None
    assert suggest_threshold(np.full(10, 0.3)) is None


# -- gallery --------------------------------------------------------------------------------------
def test_gallery_sorts_filters_and_sends_thumbnails(library: Library) -> None:
    gallery = Gallery(ImageSource(library), limit=10)
    sent = Sent(gallery)
    ids = library.store.snapshot().ids
    scores = np.linspace(0.0, 1.0, len(ids)).astype(np.float32)
    gallery.show(ids, scores, "test")
    assert gallery._count == 24 and gallery.title == "test"
    assert np.all(np.diff(gallery.scores) <= 0) and gallery.ids[0] == ids[-1]
    assert len(gallery.view()) == 10 and gallery.count_in_range() == 24
    gallery.score_range = [0.5, 1.0]
    assert gallery.count_in_range() == int((scores >= 0.5).sum())
    message(gallery, {"type": "thumbnails", "request_id": "r1", "indices": [0, 1, 2]})
    content, buffers = sent.last("thumbnails")
    assert content["request_id"] == "r1" and content["ids"] == gallery.ids[:3].tolist()
    assert len(buffers) == 3 and all(b[:4] == b"RIFF" and b[8:12] == b"WEBP" for b in buffers)
    message(gallery, {"type": "thumbnails", "request_id": "r2", "indices": [99]})
    assert sent.last("error")[0]["request_id"] == "r2" and "out of range" in gallery.error
    message(gallery, {"type": "detail", "request_id": "r3", "index": 0})
    content, buffers = sent.last("detail")
    assert content["meta"]["rank"] == 1 and content["meta"]["width"] > 0 and buffers[0][:4] == b"RIFF"
    df = gallery.to_pandas()
    assert list(df.columns) == ["rank", "id", "path", "score"] and df["path"].notna().all()


def test_thumbnails_are_cached(library: Library) -> None:
    source = ImageSource(library)
    image_id = library.store.snapshot().ids[0]
    first = source.thumbnail_batch([image_id])[1][0]
    assert len(source.thumbnails) == 1
    assert (library.workspace / "thumbnails" / "160" / f"{image_id}.webp").read_bytes() == first
    assert source.thumbnail_batch([image_id])[1][0] is first


def test_gallery_selection_round_trip(library: Library) -> None:
    gallery = Gallery(ImageSource(library))
    ids = library.store.snapshot().ids
    gallery.show(ids, np.arange(len(ids), dtype=np.float32))
    gallery._selected = np.array([0, 2], np.int32)  # what the front-end sends
    assert gallery.selection == [gallery.ids[0], gallery.ids[2]]
    gallery.selection = [str(gallery.ids[5])]
    np.testing.assert_array_equal(gallery._selected, [5])


def test_gallery_action_without_selection_is_an_error(library: Library) -> None:
    gallery = Gallery(ImageSource(library))
    message(gallery, {"type": "find_similar"})
    assert "select" in gallery.error


# -- sampler --------------------------------------------------------------------------------------
def test_sampling_is_diverse_seeded_and_complete() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    sizes = [500, 20, 20, 20]
    vectors = np.concatenate([c + 0.01 * rng.normal(size=(n, 16)) for c, n in zip(centres, sizes, strict=True)])
    ids = np.array([f"id{i}" for i in range(len(vectors))])
    sample = diverse_sample(ids, vectors, 8, n_clusters=4, seed=3)
    assert len(sample) == len(set(sample)) == 8
    groups = [int(s[2:]) for s in sample]
    assert sum(g < 500 for g in groups) == 2  # evenly across clusters, not 7 of 8 from the big one
    assert diverse_sample(ids, vectors, 8, n_clusters=4, seed=3) == sample
    centroids = diverse_sample(ids, vectors, method="centroids", n_clusters=4)
    assert len(centroids) == 4 and len({int(s[2:]) >= 500 for s in centroids}) == 2
    assert diverse_sample(ids[:0], vectors[:0], 5) == []
    assert default_clusters(800) == 20 and len(cluster(vectors[:1]).centres) == 1
    with pytest.raises(ValueError, match=r"kcentre.*random, centroids"):
        diverse_sample(ids, vectors, 3, method="kcentre")


def test_sampler_widget_writes_a_collection(library: Library) -> None:
    sampler = Sampler(library)
    got: list[list[str]] = []
    sampler.on_sample(lambda ids, recipe: got.append(ids))
    message(sampler, {"type": "sample", "method": "random", "n_clusters": 3, "size": 6, "seed": 1})
    assert sampler.error == "" and len(sampler.sample) == 6 and got == [sampler.sample]
    assert library.collection().df["id"].tolist() == sampler.sample
    message(sampler, {"type": "sample", "method": "centroids", "n_clusters": 4})
    assert len(sampler.sample) == 4


# -- explorer and projection ----------------------------------------------------------------------
def test_projection_pca_and_cache(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).normal(size=(100, 32)).astype(np.float32)
    coords = pca(vectors, 3)
    assert coords.shape == (100, 3) and coords.dtype == np.float32 and np.abs(coords).max() == pytest.approx(1.0)
    calls: list[int] = []

    def load() -> np.ndarray:
        calls.append(1)
        return vectors

    rows = np.array([5, 1, 99, 42])
    np.testing.assert_allclose(pca(RowsView(vectors, rows), 3, chunk=3), pca(vectors[rows], 3), atol=1e-6)
    first = cached_projection(tmp_path, 7, load, "pca", 2)
    again = cached_projection(tmp_path, 7, load, "pca", 2)
    np.testing.assert_array_equal(first, again)
    assert len(calls) == 1 and first.shape == (100, 2)
    cached_projection(tmp_path, 8, load, "pca", 2)
    assert [p.name for p in tmp_path.iterdir()] == ["pca-2d-v8.npy"]  # the stale version is gone


def test_explorer_points_colours_and_pick(library: Library) -> None:
    explorer = Explorer(ImageSource(library))
    points = explorer._points
    assert points.shape == (24, 3) and points.dtype == np.float32
    assert explorer.projection == "pca" and explorer._color_kind == "category"
    explorer.color_by = "folder"
    assert explorer._legend == ["animals (8)", "food (8)", "vehicles (8)"]  # most frequent first, with counts
    explorer.set_scores(np.arange(24, dtype=np.float32))
    assert explorer.color_by == "score" and explorer._color_kind == "continuous"
    picked: list[str] = []
    explorer.on_pick(picked.append)
    message(explorer, {"type": "pick", "index": 3})
    assert picked == [explorer.ids[3]]
    message(explorer, {"type": "pick", "index": 999})
    assert "out of range" in explorer.error
    explorer.dims = 2
    assert explorer._points.shape == (24, 2) and explorer._points.dtype == np.float32  # 8 bytes a 2D point
    explorer.compute_umap(background=False)
    assert explorer.projection == "umap" and explorer._points.shape == (24, 2)


def test_explorer_from_points_only() -> None:
    coords = np.random.default_rng(0).random((1000, 3)).astype(np.float32)
    explorer = Explorer(points=coords)
    assert explorer._points.shape == (1000, 3) and len(explorer.ids) == 1000


# -- collections and the app ----------------------------------------------------------------------
def test_app_links_search_histogram_gallery_and_explorer(panel: App) -> None:
    results = panel.search("a red car", limit=10)
    assert len(results) == 10
    assert panel.score_range._counts.sum() == 24
    assert panel.gallery._count == 24 and len(panel.gallery.view()) == 10
    assert panel.explorer is not None and panel.explorer.color_by == "score"
    edges = panel.score_range._edges
    panel.score_range.score_range = [float(edges[25]), float(edges[-1])]
    assert panel.gallery.score_range == panel.score_range.score_range
    assert panel.gallery.count_in_range() == panel.score_range.count == panel.score_range._counts[25:].sum()


def test_a_range_dragged_in_the_browser_is_not_sent_back_to_the_gallery(panel: App) -> None:
    # while dragging, the browser links the range to the gallery itself and saves the gallery's range;
    # Python forwarding the (older) range it received would make the gallery jump back on screen
    panel.search("a red car")
    edges = panel.score_range._edges
    dragged, on_screen = [float(edges[10]), float(edges[-1])], [float(edges[20]), float(edges[-1])]
    panel.gallery.set_state({"score_range": on_screen})
    sent: list[dict] = []
    panel.gallery.send_state = lambda key=None: sent.append({"key": key})  # type: ignore[method-assign]
    panel.score_range.set_state({"score_range": dragged})
    assert panel.gallery.score_range == on_screen and sent == []


def test_app_selection_is_shared_and_find_similar_runs(panel: App) -> None:
    panel.search("a cat")
    panel.gallery._selected = np.array([0, 1, 2], np.int32)
    assert panel.explorer is not None and len(panel.explorer.selection) == 3
    np.testing.assert_array_equal(np.sort(panel.explorer._selected),
                                  np.sort(np.flatnonzero(np.isin(panel.explorer.ids, panel.gallery.selection))))
    message(panel.gallery, {"type": "find_similar"})
    assert panel.gallery.error == "" and panel.results is not None
    assert panel.results.query["kind"] == "images" and panel.gallery.title == "similar to 3 selected"


def test_app_pick_sample_and_collections(panel: App, library: Library) -> None:
    assert panel.explorer is not None
    message(panel.explorer, {"type": "pick", "index": 0})
    assert panel.results is not None and panel.results.query["kind"] == "images"
    message(panel.sampler, {"type": "sample", "size": 5})
    assert panel.gallery._count == 5 and not panel.gallery._has_scores and panel.score_range._counts is None
    message(panel.prompt, {"type": "submit", "text": "", "limit": 7, "mode": "diverse"})
    assert panel.gallery._count == 7
    panel.gallery._selected = np.array([0, 1], np.int32)
    message(panel.gallery, {"type": "add_to_collection", "name": "keep"})
    assert library.collection("keep").df["id"].tolist() == panel.gallery.selection
    message(panel.gallery, {"type": "remove_from_collection", "name": "keep"})
    assert len(library.collection("keep")) == 0
    message(panel.collections, {"type": "save_collection", "name": "seven"})
    assert [r["name"] for r in panel.collections.rows] == ["keep", "seven"]
    assert len(library.collection("seven")) == 7
    message(panel.collections, {"type": "save_collection", "name": "_bad"})
    assert "_bad" in panel.collections.error
    message(panel.collections, {"type": "export"})
    assert panel.collections.exported is not None and len(panel.collections.exported) == 7
    message(panel.collections, {"type": "show_collection", "name": "seven"})
    assert panel.gallery._count == 7 and panel.collections.current == "seven"
    message(panel.collections, {"type": "delete_collection", "name": "seven"})
    assert library.collections.names() == ["keep"]


def test_mode_similar_needs_a_selection(panel: App) -> None:
    message(panel.prompt, {"type": "submit", "text": "", "mode": "similar"})
    assert "select" in panel.prompt.error


def test_app_entry_point(image_folder: Path, tiny_model: str) -> None:
    import picsift

    assert picsift.app is app
    panel = picsift.app(image_folder, model=tiny_model, index="exact", update=False, explorer=False, limit=50)
    assert isinstance(panel, App) and panel.explorer is None and panel.gallery.limit == 50
    assert isinstance(panel.collections, CollectionsList)


# -- filters panel and actions --------------------------------------------------------------------
#: Labels of the 8 vehicles (by position in path order): car objects and image tags.
CARS = [0, 1, 2, 3, 0, 1, 2, 3]
OUTDOOR = {0, 2, 4, 6}


@pytest.fixture
def labelled(library: Library) -> dict[str, list[str]]:
    """Cars and an "outdoor" tag on the vehicles (see CARS, OUTDOOR); ids of each folder in path order."""
    by_folder = ids_by_folder(library)
    meta = library.labels
    for i, image_id in enumerate(by_folder["vehicles"]):
        for k in range(CARS[i]):
            meta.add_object(image_id, "car", bbox=(k, k, k + 10, k + 10), author="ann" if k else "bob")
        if i in OUTDOOR:
            meta.add_tag(image_id, "outdoor")
    meta.add_tag(by_folder["animals"][0], "outdoor")
    return by_folder


def test_filters_panel_narrows_the_gallery_and_keeps_scores(panel: App, labelled: dict[str, list[str]]) -> None:
    vehicles = labelled["vehicles"]
    results = panel.search("a red car")
    assert panel.gallery._count == 24 and panel.filters.summary == ""
    assert panel.filters._choices["classes"] == []  # labelled after the app opened: the refresh button
    message(panel.filters, {"type": "refresh_choices"})
    choices = panel.filters._choices
    assert choices["classes"] == ["car"] and list(choices["tags"]) == ["outdoor"]
    assert choices["authors"] == ["ann", "bob"]
    count_filter = {"type": "ObjectCount", "cls": "car", "min": 2, "max": None}
    message(panel.filters, {"type": "add_filter", "filter": count_filter})
    two_or_more = {vehicles[i] for i in range(8) if CARS[i] >= 2}
    assert panel.filters.error == "" and set(panel.gallery.ids) == two_or_more and len(two_or_more) == 4
    message(panel.filters, {"type": "add_filter", "filter": {"type": "ImageTag", "name": "outdoor", "value": None,
                                                             "negate": False}})
    both = {vehicles[i] for i in range(8) if CARS[i] >= 2 and i in OUTDOOR}
    assert panel.gallery._count == len(both) == 2 and set(panel.gallery.ids) == both
    assert panel.filters._descriptions == ["2+ × car", "tag outdoor"]
    assert panel.filters.summary == "2 of 24 images pass 2 filters"
    assert (panel.filters._passing, panel.filters._total) == (2, 24)
    assert panel.score_range._counts.sum() == 2  # the histogram shows the filtered distribution
    by_id = dict(zip(results.scope_ids.tolist(), results.scores.tolist(), strict=True))
    assert panel.gallery.scores.tolist() == sorted((by_id[i] for i in both), reverse=True)
    assert panel.gallery.scores.tolist() == pytest.approx([by_id[i] for i in panel.gallery.ids])
    assert set(panel.df["id"]) == both and panel.actions.n_shown == 2
    assert [type(f) for f in panel.filters.active] == [ObjectCount, ImageTag]

    message(panel.filters, {"type": "remove_filter", "index": 1})
    assert panel.gallery._count == 4 and set(panel.gallery.ids) == two_or_more
    assert panel.filters.summary == "4 of 24 images pass 1 filter"
    panel.filters.clear()
    assert panel.gallery._count == 24 and panel.filters.summary == ""


def test_every_field_of_the_add_filter_row(panel: App, library: Library, labelled: dict[str, list[str]]) -> None:
    vehicles = labelled["vehicles"]
    meta = library.labels
    meta.set_status("review", vehicles[:3], "labelled")
    meta.set_status("review", vehicles[3:5], "pending")
    meta.open_issue(vehicles[1], "blurry")
    first_car = int(meta.objects(vehicles[1])["id"][0])
    meta.tag_object(first_car, "colour", "red")
    message(panel.filters, {"type": "refresh_choices"})
    assert panel.filters._choices["jobs"] == ["review"] and panel.filters._choices["object_tags"] == {"colour": ["red"]}
    panel.search("a red car")
    # the dicts the front-end's fields send, and who passes each (worked out from the labels above)
    for sent, expected in [
        ({"type": "JobStatus", "job": "review", "status": ["labelled", "in_review"]}, vehicles[:3]),
        ({"type": "JobStatus", "job": "review", "status": None}, vehicles[:5]),
        ({"type": "ObjectAuthor", "author": "ann"}, [v for i, v in enumerate(vehicles) if CARS[i] >= 2]),
        ({"type": "HasOpenIssues", "value": True}, [vehicles[1]]),
        ({"type": "ObjectTag", "name": "colour", "value": "red", "negate": False, "cls": "car"}, [vehicles[1]]),
        ({"type": "ObjectTag", "name": "colour", "value": None, "negate": True, "cls": None},
         [i for i in panel.view.ids if i != vehicles[1]] if panel.view else []),
        ({"type": "ImageTag", "name": "outdoor", "value": None, "negate": True},
         [i for i in library.images()["id"] if i not in {labelled["animals"][0], *(vehicles[j] for j in OUTDOOR)}]),
    ]:
        message(panel.filters, {"type": "add_filter", "filter": sent})
        assert panel.filters.error == "" and set(panel.gallery.ids) == set(expected), sent
        panel.filters.clear()
    assert panel.gallery._count == 24


def test_invalid_filters_show_an_error_and_change_nothing(panel: App, labelled: dict[str, list[str]]) -> None:
    panel.search("a red car")
    panel.filters.filters = [ObjectCount("car", 1)]  # Python sets filters too (objects or dicts)
    assert panel.filters.filters == [{"type": "ObjectCount", "cls": "car", "min": 1, "max": None}]
    before = panel.gallery.ids.tolist()
    assert len(before) == 6
    for bad, words in [({"type": "ObjectCount", "cls": "car", "min": 3, "max": 1}, ["min=3", "max=1"]),
                       ({"type": "Telepathy"}, ["Telepathy", "ObjectCount", "HasOpenIssues"]),
                       ({"type": "ImageTag", "name": "outdoor", "colour": "red"}, ["colour", "negate"]),
                       ({"type": "ObjectCount", "cls": "", "min": 1, "max": None}, ["cls"]),
                       ({"type": "ObjectCount", "cls": "car", "min": "two", "max": None}, ["whole number", "two"])]:
        message(panel.filters, {"type": "add_filter", "filter": bad})
        assert all(word in panel.filters.error for word in words), panel.filters.error
        assert len(panel.filters.filters) == 1 and panel.gallery.ids.tolist() == before
    message(panel.filters, {"type": "remove_filter", "index": 5})
    assert "position 5" in panel.filters.error and len(panel.filters.filters) == 1
    with pytest.raises(Exception, match="Telepathy"):
        panel.filters.filters = [{"type": "Telepathy"}]


def test_filters_apply_to_samples_and_collections(panel: App, library: Library,
                                                  labelled: dict[str, list[str]]) -> None:
    outdoor = {labelled["vehicles"][i] for i in OUTDOOR} | {labelled["animals"][0]}
    panel.filters.add(ImageTag("outdoor"))
    message(panel.sampler, {"type": "sample", "size": 24})  # every image, in sample order
    assert set(panel.gallery.ids) == outdoor and panel.filters.summary == "5 of 24 images pass 1 filter"
    assert panel.gallery.ids.tolist() == [i for i in panel.sampler.sample if i in outdoor]
    library.collections.write("half", labelled["vehicles"][:4], [0.4, 0.3, 0.2, 0.1])
    panel.collections.refresh()
    message(panel.collections, {"type": "show_collection", "name": "half"})
    assert panel.gallery.ids.tolist() == [labelled["vehicles"][0], labelled["vehicles"][2]]
    assert panel.gallery.scores.tolist() == pytest.approx([0.4, 0.2])


def test_saving_a_filtered_view_records_filters_and_score_range(panel: App, library: Library,
                                                               labelled: dict[str, list[str]]) -> None:
    panel.search("a red car")
    panel.filters.add(ObjectCount("car", 1))
    edges = panel.score_range._edges
    panel.score_range.score_range = [float(edges[10]), float(edges[-1])]
    shown = panel.df
    assert 0 < len(shown) < 6
    message(panel.collections, {"type": "save_collection", "name": "some cars"})
    assert panel.collections.error == ""
    assert library.collection("some cars").df["id"].tolist() == shown["id"].tolist()
    recipe = library.collections.recipe("some cars")
    assert recipe["filters"] == [{"type": "ObjectCount", "cls": "car", "min": 1, "max": None}]
    assert recipe["score_range"] == pytest.approx([edges[10], edges[-1]])
    assert recipe["kind"] == "text" and recipe["text"] == ["a red car"]


def test_actions_target_the_selection_or_everything_shown(panel: App, labelled: dict[str, list[str]]) -> None:
    panel.search("a red car")
    panel.filters.add(ObjectCount("car", 1))
    assert (panel.actions.n_selected, panel.actions.n_shown) == (0, 6)
    assert panel._action_target() == panel.gallery.ids.tolist()
    panel.gallery._selected = np.array([0, 2], np.int32)
    assert panel.actions.n_selected == 2 and panel._action_target() == panel.gallery.ids[[0, 2]].tolist()
    panel.gallery.selection = [*panel.gallery.selection, labelled["food"][0]]  # not in the view: not acted on
    assert panel.actions.n_selected == 2


def test_delete_needs_confirmation_and_removes_only_the_target(panel: App, library: Library,
                                                              labelled: dict[str, list[str]]) -> None:
    panel.search("a red car")
    panel.gallery._selected = np.array([0], np.int32)
    victim = panel.gallery.selection[0]
    path = library.paths([victim])[victim]
    files_before = sorted(p for p in library.root.rglob("*.png"))
    for content in ({"type": "delete_images"}, {"type": "delete_images", "confirmed": "yes"},
                    {"type": "delete_images", "confirmed": True, "count": 3}):
        message(panel.actions, content)
        assert "nothing was deleted" in panel.actions.error
        assert sorted(library.root.rglob("*.png")) == files_before and panel.gallery._count == 24
    message(panel.actions, {"type": "delete_images", "confirmed": True, "count": 1})
    assert panel.actions.error == "" and panel.actions.notice == "deleted 1 image file"
    assert not path.exists() and sorted(library.root.rglob("*.png")) == [p for p in files_before if p != path]
    assert panel.gallery._count == 23 and victim not in panel.gallery.ids and panel.gallery.selection == []
    assert panel.results is not None and victim not in panel.results.scope_ids
    assert panel.explorer is not None and len(panel.explorer.ids) == 23


def test_copy_move_job_and_export_act_on_the_view(panel: App, library: Library, labelled: dict[str, list[str]],
                                                  tmp_path: Path) -> None:
    panel.search("a red car")
    panel.filters.add(ObjectCount("car", 2))
    assert panel.actions.n_shown == 4
    message(panel.actions, {"type": "create_job", "name": "check cars"})
    assert library.labels.job_names() == ["check cars"] and panel.filters._choices["jobs"] == ["check cars"]
    assert set(library.labels.job_status("check cars")) == set(panel.gallery.ids)
    panel.gallery._selected = np.array([0, 1], np.int32)
    moved = panel.gallery.selection
    message(panel.actions, {"type": "move_images", "dataset": "cars"})
    assert panel.actions.error == "" and panel.actions.notice == "moved 2 selected images to 'cars'"
    assert all(p.parent == library.root / "cars" for p in library.paths(moved).values())
    assert panel.gallery._count == 4 and panel.actions.dataset_names == ["cars"]
    message(panel.actions, {"type": "copy_images", "dataset": ""})
    assert "dataset name" in panel.actions.error
    panel.gallery.selection = []
    out = tmp_path / "cars.csv"
    message(panel.actions, {"type": "export_images", "format": "csv", "path": str(out)})
    assert panel.actions.error == "" and out.exists() and panel.actions.notice.startswith("exported 4 images as csv")
    message(panel.actions, {"type": "export_images", "format": "pdf", "path": str(out)})
    assert "pdf" in panel.actions.error and "parquet" in panel.actions.error


def test_explorer_colours_by_metadata_fields(library: Library, labelled: dict[str, list[str]]) -> None:
    explorer = Explorer(ImageSource(library))
    assert explorer.color_fields == ["dataset", "class", "author", "issues", "tag:outdoor"]
    outdoor = {labelled["vehicles"][i] for i in OUTDOOR} | {labelled["animals"][0]}

    def shown() -> dict[str, str]:  # each point's legend entry, without its count
        names = [entry.rsplit(" (", 1)[0] for entry in explorer._legend]
        return {str(i): names[int(c)] for i, c in zip(explorer.ids, explorer._colors, strict=True)}

    def legend() -> list[str]:  # "no value" has the last slot, the grey one: the legend is padded up to it
        assert len(explorer._legend) == 10 and explorer._legend[-1].startswith("(")
        return [entry for entry in explorer._legend if entry]

    explorer.color_by = "tag:outdoor"
    assert explorer._color_kind == "category" and legend() == ["outdoor (5)", "(no outdoor) (19)"]
    assert {i for i, name in shown().items() if name == "outdoor"} == outdoor
    message(explorer, {"type": "select_category", "index": 0})  # a click on the legend's "outdoor"
    assert set(explorer.selection) == outdoor and explorer.error == ""
    message(explorer, {"type": "select_category", "index": 5})  # a padding slot, not an entry
    assert "no legend entry 5" in explorer.error and set(explorer.selection) == outdoor
    explorer.color_by = "class"
    with_cars = {labelled["vehicles"][i] for i, n in enumerate(CARS) if n}
    assert legend() == ["car (6)", "(no objects) (18)"]
    assert {i for i, name in shown().items() if name == "car"} == with_cars
    explorer.color_by = "author"  # who made most of an image's objects (a tie goes to the first name)
    by_bob = {labelled["vehicles"][i] for i, n in enumerate(CARS) if n == 1}
    assert legend() == ["ann (4)", "bob (2)", "(no objects) (18)"]
    assert {i for i, name in shown().items() if name == "bob"} == by_bob
    library.labels.set_status("review", labelled["food"][:3], "labelled")  # a job made after the map opened
    library.labels.open_issue(labelled["food"][0], "blurry")
    explorer.color_by = "job:review"
    assert legend() == ["labelled (3)", "(not in job) (21)"]
    assert {i for i, name in shown().items() if name == "labelled"} == set(labelled["food"][:3])
    explorer.color_by = "issues"
    assert legend() == ["open issues (1)", "(no open issue) (23)"]
    with pytest.raises(traitlets.TraitError, match=r"'tag:nope'; valid choices: cluster, score, folder, dataset"):
        explorer.color_by = "tag:nope"
    assert explorer.color_by == "issues"
    with pytest.raises(PicsiftError, match="unknown field 'tag:nope'; fields: dataset, class"):
        library.labels.field_values("tag:nope", explorer.ids)


def test_colour_categories_keep_the_most_frequent_and_merge_the_rest() -> None:
    labels = [f"c{i}" for i in range(12) for _ in range(12 - i)]  # c0 12 times ... c11 once
    legend, codes = categories(labels)
    assert legend == [f"c{i} ({12 - i})" for i in range(9)] + ["other (6)"]
    assert codes.dtype == np.float32 and len(codes) == len(labels)
    assert all(legend[int(c)].startswith(f"{label} ") or (int(c) == 9 and label in ("c9", "c10", "c11"))
               for label, c in zip(labels, codes, strict=True))
    legend, codes = categories([*labels, "(none)", "(none)"])  # "no value" keeps the last (grey) slot
    assert legend == [f"c{i} ({12 - i})" for i in range(8)] + ["other (10)", "(none) (2)"]
    assert codes[-1] == codes[-2] == 9 and codes[labels.index("c8")] == 8
    legend, codes = categories(["b", "(none)", "a", "b"])
    assert legend == ["b (2)", "a (1)", *[""] * 7, "(none) (1)"] and codes.tolist() == [0, 9, 1, 0]


def test_collections_list_shows_the_temporary_collection_and_goes_back_to_it(panel: App, library: Library) -> None:
    assert panel.collections.temporary == {}  # nothing searched yet
    results = panel.search("a red car", limit=5)
    assert panel.collections.temporary == {"name": "_temporary", "size": 5, "query": "a red car"}
    assert panel.collections.current == "_temporary"
    panel.gallery._selected = np.array([0, 1], np.int32)
    message(panel.gallery, {"type": "add_to_collection", "name": "two"})
    message(panel.collections, {"type": "show_collection", "name": "two"})
    assert panel.gallery._count == 2 and panel.collections.current == "two"
    message(panel.collections, {"type": "show_collection", "name": "_temporary"})  # back to the search
    assert panel.collections.current == "_temporary" and panel.gallery._count == 24
    assert panel.score_range._counts.sum() == 24 and panel.results is results
    message(panel.prompt, {"type": "submit", "text": "", "limit": 3, "mode": "similar"})
    assert panel.collections.temporary["query"] == "similar to 2 images"
    message(panel.sampler, {"type": "sample", "size": 4})
    assert panel.collections.temporary["size"] == 4 and "diverse sample" in panel.collections.temporary["query"]
    message(panel.collections, {"type": "show_collection", "name": "two"})
    message(panel.collections, {"type": "show_collection", "name": "_temporary"})  # a sample has no scores
    assert panel.gallery._count == 4 and not panel.gallery._has_scores
    assert panel.gallery.ids.tolist() == library.collection().df["id"].tolist()
    panel.search("a red car", limit=5)
    library.search("a boat", limit=2)  # a search from code replaces the app's last one as the temporary
    panel.collections.refresh()
    message(panel.collections, {"type": "show_collection", "name": "_temporary"})
    assert panel.gallery._count == 2 and panel.gallery.ids.tolist() == library.collection().df["id"].tolist()
    assert [row["name"] for row in panel.collections.rows] == ["two"]  # saved ones only


def test_standalone_filters_panel_and_actions(library: Library) -> None:
    assert FiltersPanel()._choices == {"statuses": ["pending", "in_progress", "labelled", "in_review", "accepted",
                                                    "rejected", "skipped"]}
    actions = Actions(library)
    message(actions, {"type": "create_job", "name": "x"})
    assert "no images to act on" in actions.error
