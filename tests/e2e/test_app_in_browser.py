"""The app in a real JupyterLab, driven through its UI in Chromium. Screenshots: test-artifacts/e2e/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import ARTIFACTS, OUTDOOR_ANIMALS, OUTDOOR_VEHICLES, VEHICLE_CARS

expect = pytest.importorskip("playwright.sync_api").expect
# each part of the app re-renders on a frame of its own, later on a loaded machine: assertions on what the page shows
# wait for it (Playwright's web-first assertions), as long as the page's own waits
expect.set_options(timeout=60_000)

GALLERY = ".picsift-gallery"


def shot(page: Any, name: str) -> None:
    page.locator(".jp-OutputArea-output").first.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def gallery_version(page: Any) -> int:
    return int(page.get_attribute(GALLERY, "data-version") or -1)


def wait_for_new_gallery(page: Any, before: int, title: str) -> None:
    page.wait_for_function(
        "([before, title]) => { const g = document.querySelector('.picsift-gallery');"
        " return Number(g.dataset.version) > before && g.querySelector('.picsift-title').textContent.includes(title)"
        " && g.querySelectorAll('.picsift-tile.loaded').length >= Math.min(3, Number(g.dataset.shown)); }",
        arg=[before, title])


def tile_scores(page: Any) -> list[float]:
    return page.eval_on_selector_all(
        f"{GALLERY} .picsift-tile",
        "tiles => tiles.sort((a, b) => a.dataset.rank - b.dataset.rank).map(t => Number(t.dataset.score))")


def all_tile_scores(page: Any) -> list[float]:
    """Scores of every tile in rank order, scrolling the virtualised gallery from top to bottom."""
    seen: dict[int, float] = {}
    scroller = f"{GALLERY} .picsift-gallery-scroller"
    landed = ("() => { const s = document.querySelector('.picsift-gallery .picsift-gallery-scroller');"
              " const g = document.querySelector('.picsift-gallery');"
              " return g.dataset.renderedScroll === String(Math.round(s.scrollTop)); }")
    page.eval_on_selector(scroller, "el => { el.scrollTop = 0; }")
    while True:
        page.wait_for_function(landed)
        rows = page.eval_on_selector_all(f"{GALLERY} .picsift-tile",
                                         "ts => ts.map(t => [Number(t.dataset.rank), Number(t.dataset.score)])")
        seen.update({int(rank): score for rank, score in rows})
        at_end = page.eval_on_selector(
            scroller, "el => { const end = el.scrollTop + el.clientHeight >= el.scrollHeight - 1;"
            " el.scrollTop += el.clientHeight; return end; }")
        if at_end:
            break
    page.eval_on_selector(scroller, "el => { el.scrollTop = 0; }")
    page.wait_for_function(landed)
    return [seen[rank] for rank in sorted(seen)]


def search(page: Any, text: str) -> None:
    before = gallery_version(page)
    prompt = page.locator(".picsift-prompt-input")
    prompt.fill(text)
    prompt.press("Enter")
    wait_for_new_gallery(page, before, text)


def test_prompt_search_fills_the_gallery_in_score_order(lab_page: Any) -> None:
    page = lab_page
    search(page, "a red car")
    expect(page.locator(GALLERY)).to_have_attribute("data-count", "36")  # limit 100, 36 images in scope
    visible = tile_scores(page)
    assert 0 < len(visible) <= 36 and visible == sorted(visible, reverse=True)
    scores = all_tile_scores(page)  # virtualised: only the rows in view exist, so scroll through
    assert len(scores) == 36 and scores == sorted(scores, reverse=True)
    expect(page.locator(".picsift-range-count")).to_have_attribute("data-count", "36")
    page.wait_for_function("() => document.querySelectorAll('.picsift-tile.loaded img[src^=blob]').length >= 12")
    shot(page, "01-search")


def test_slider_filters_the_gallery_to_the_histogram_count(lab_page: Any) -> None:
    page = lab_page
    search(page, "a flower")
    hist = page.locator(".picsift-hist").bounding_box()
    handle = page.locator(".picsift-handle-low").bounding_box()
    assert hist is not None and handle is not None
    page.mouse.move(handle["x"] + handle["width"] / 2, hist["y"] + hist["height"] / 2)
    page.mouse.down()
    page.mouse.move(hist["x"] + 0.45 * hist["width"], hist["y"] + hist["height"] / 2, steps=8)
    page.mouse.up()
    # the handle applies the last pointer position on the next animation frame; wait for it to land
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.wait_for_function(
        "() => { const h = document.querySelector('.picsift-handle-low');"
        " return Math.abs(parseFloat(h.style.left) - 45) < 2.6; }")
    page.wait_for_function(
        "() => { const g = document.querySelector('.picsift-gallery');"
        " const c = document.querySelector('.picsift-range-count').dataset.count;"
        " return Number(c) < 36 && g.dataset.count === c; }")
    page.wait_for_timeout(500)  # nothing may move the gallery off that range afterwards
    bars = page.eval_on_selector_all(".picsift-hist rect.in", "r => r.map(x => x.dataset.count)")
    in_bars = sum(int(c) for c in bars)
    count = int(page.get_attribute(GALLERY, "data-count") or -1)
    assert count == in_bars == int(page.get_attribute(".picsift-range-count", "data-count") or -2)
    low = float(page.locator(".picsift-range-count").inner_text().split("score ")[1].split(" ")[0])
    scores = all_tile_scores(page)
    assert len(scores) == count and all(s >= low - 1e-3 for s in scores)
    page.locator(".picsift-export").click()  # Python sees the same range: the pandas export has those rows
    page.wait_for_function(
        f"() => document.querySelector('.picsift-notice').textContent.startsWith('exported {count} rows')")
    shot(page, "02-slider")


def test_select_three_tiles_and_find_similar(lab_page: Any) -> None:
    page = lab_page
    search(page, "an animal")
    boxes = page.locator(f"{GALLERY} .picsift-tile input[type=checkbox]")
    for i in range(3):
        boxes.nth(i).click()
    page.wait_for_selector(".picsift-actions[data-selected='3']")
    page.wait_for_function("() => document.querySelector('.picsift-explorer').dataset.selected === '3'")
    shot(page, "03a-selected")
    before = gallery_version(page)
    page.locator(".picsift-find-similar").click()
    wait_for_new_gallery(page, before, "similar to 3 selected")
    scores = tile_scores(page)
    assert scores == sorted(scores, reverse=True)
    assert page.locator(f"{GALLERY} .picsift-tile.selected").count() == 3  # the selection follows the images
    shot(page, "03b-similar")


def test_diversity_sampler_shows_the_sample(lab_page: Any) -> None:
    page = lab_page
    before = gallery_version(page)
    page.locator(".picsift-sampler .picsift-size").fill("6")
    page.locator(".picsift-sampler .picsift-clusters").fill("4")
    page.locator(".picsift-sampler .picsift-sample").click()
    wait_for_new_gallery(page, before, "diverse sample")
    expect(page.locator(GALLERY)).to_have_attribute("data-count", "6")
    expect(page.locator(".picsift-score-range")).to_have_attribute("data-empty", "true")
    page.wait_for_function("() => document.querySelector('.picsift-explorer').dataset.selected === '6'")
    shot(page, "04-sample")


def test_clicking_a_point_in_the_explorer_searches(lab_page: Any) -> None:
    page = lab_page
    before = gallery_version(page)
    x, y = page.eval_on_selector(".picsift-explorer", "el => el.__picsiftScreen(5)")
    page.mouse.click(x, y)
    wait_for_new_gallery(page, before, "similar to picked point")
    expect(page.locator(".picsift-explorer")).to_have_attribute("data-color-by", "score")
    expect(page.locator(".picsift-range-count")).to_have_attribute("data-count", "36")
    x, y = page.eval_on_selector(".picsift-explorer", "el => el.__picsiftScreen(5)")  # the layout may have moved
    page.mouse.move(x + 40, y + 40)
    page.mouse.move(x, y, steps=4)  # hover shows the thumbnail
    page.wait_for_selector(".picsift-tooltip:not([hidden]) img")
    shot(page, "05-explorer-pick")


def gallery_count_is(page: Any, count: int) -> None:
    page.wait_for_function("n => document.querySelector('.picsift-gallery').dataset.count === String(n)", arg=count)


def remove_all_filters(page: Any) -> None:
    """Clean-up between tests (removing a chip is asserted in the filter test itself): a click that lands while
    the panel re-renders under the pointer is tried again."""
    chips = page.locator(".picsift-filters .picsift-chip")
    for _ in range(10):
        before = chips.count()
        if not before:
            return
        page.locator(".picsift-filters .picsift-chip-remove").last.click()
        try:
            page.wait_for_function("n => document.querySelectorAll('.picsift-filters .picsift-chip').length < n",
                                   arg=before, timeout=20_000)
        except Exception:  # playwright's TimeoutError: click again
            continue
    assert chips.count() == 0, "the filters could not be removed"


def test_two_filters_narrow_the_gallery(lab_page: Any, labelled_counts: dict[str, int]) -> None:
    page = lab_page
    panel = page.locator(".picsift-filters")
    search(page, "a red car")
    expect(page.locator(GALLERY)).to_have_attribute("data-count", "36")
    try:
        panel.locator(".picsift-filter-field").select_option("count")
        panel.locator(".picsift-filter-class").select_option("car")
        panel.locator(".picsift-filter-min").fill("2")
        panel.locator(".picsift-filter-add").click()
        cars = labelled_counts["cars>=2"]
        gallery_count_is(page, cars)
        panel.locator(".picsift-filter-field").select_option("tag")
        panel.locator(".picsift-filter-name").select_option("outdoor")
        panel.locator(".picsift-filter-add").click()
        both = labelled_counts["cars>=2 and outdoor"]
        gallery_count_is(page, both)
        expect(panel.locator(".picsift-chip-text")).to_have_text(["2+ × car", "tag outdoor"])
        expect(panel.locator(".picsift-filter-summary")).to_have_text(f"{both} of 36 images pass 2 filters")
        expect(page.locator(".picsift-range-count")).to_have_attribute("data-count", str(both))  # what passes
        expect(page.locator(".picsift-view-actions .picsift-target")).to_have_text(f"Act on all {both} shown:")
        page.wait_for_function(
            "n => document.querySelectorAll('.picsift-gallery .picsift-tile.loaded').length === n", arg=both)
        scores = tile_scores(page)
        assert len(scores) == both and scores == sorted(scores, reverse=True)
        shot(page, "06-filters")
        panel.locator(".picsift-chip[data-index='1'] .picsift-chip-remove").click()  # "tag outdoor"
        gallery_count_is(page, cars)
        expect(panel.locator(".picsift-filter-summary")).to_have_text(f"{cars} of 36 images pass 1 filter")
        panel.locator(".picsift-filter-field").select_option("count")  # a bad condition: shown, nothing changes
        panel.locator(".picsift-filter-class").select_option("car")
        panel.locator(".picsift-filter-min").fill("3")
        panel.locator(".picsift-filter-max").fill("1")
        panel.locator(".picsift-filter-add").click()
        page.wait_for_function(
            "() => document.querySelector('.picsift-filters .picsift-error').textContent.includes('max=1')")
        assert panel.locator(".picsift-chip").count() == 1 and page.get_attribute(GALLERY, "data-count") == str(cars)
    finally:
        remove_all_filters(page)
    gallery_count_is(page, 36)


def test_umap_replaces_pca_from_a_background_thread(lab_page: Any) -> None:
    page = lab_page
    before = int(page.get_attribute(".picsift-explorer", "data-frames") or 0)
    page.locator(".picsift-umap").click()
    page.wait_for_function(
        "() => document.querySelector('.picsift-projection-state').textContent.startsWith('umap ·')", timeout=120_000)
    page.wait_for_function(f"() => Number(document.querySelector('.picsift-explorer').dataset.frames) > {before}")
    assert page.locator(".picsift-umap").is_disabled()
    shot(page, "06-umap")


def diamond(centre: tuple[float, float], a: float, b: float, points: list[list[float] | None]) -> set[int]:
    """Indices of the points inside the diamond with these half-widths; none may lie within 3% of its edge."""
    inside = set()
    for i, p in enumerate(points):
        if p is None:
            continue
        d = abs(p[0] - centre[0]) / a + abs(p[1] - centre[1]) / b
        if abs(d - 1) < 0.03:
            raise ValueError("a point lies on the outline")
        if d < 1:
            inside.add(i)
    return inside


def test_lasso_on_the_2d_map_selects_the_points_inside_into_a_collection(lab_page: Any) -> None:
    page = lab_page
    explorer = page.locator(".picsift-explorer")
    search(page, "a blue boat")
    version = int(explorer.get_attribute("data-points-version") or 0)
    page.locator(".picsift-dims").select_option("2")
    page.wait_for_function("v => Number(document.querySelector('.picsift-explorer').dataset.pointsVersion) > v",
                           arg=version)
    page.wait_for_function("() => !document.querySelector('.picsift-projection-state').textContent.includes('comput')")
    draws = int(explorer.get_attribute("data-draws") or 0)
    page.locator(".picsift-tool[data-mode=lasso]").click()  # first: choosing may scroll the page
    page.wait_for_function("n => Number(document.querySelector('.picsift-explorer').dataset.draws) > n", arg=draws)
    points = page.eval_on_selector(".picsift-explorer", "el => Array.from({length: Number(el.dataset.points)},"
                                   " (_, i) => el.__picsiftScreen(i))")
    box = page.locator(".picsift-explorer canvas.picsift-map").bounding_box()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    nearest = min((p for p in points if p), key=lambda p: (p[0] - middle[0]) ** 2 + (p[1] - middle[1]) ** 2)
    centre = (round(nearest[0]), round(nearest[1]))  # so at least that point is inside
    assert box["x"] + box["width"] * 0.25 < centre[0] < box["x"] + box["width"] * 0.75  # the lasso fits the map
    assert box["y"] + box["height"] * 0.25 < centre[1] < box["y"] + box["height"] * 0.75
    for shrink in (1.0, 0.9, 0.8, 0.7, 0.6):
        a, b = round(box["width"] * 0.22 * shrink), round(box["height"] * 0.22 * shrink)
        try:
            expected = diamond(centre, a, b, points)
            break
        except ValueError:
            continue
    assert 0 < len(expected) < len(points), "the lasso must leave some points out"
    x, y = centre
    corners = [(x - a, y), (x, y - b), (x + a, y), (x, y + b), (x - a, y)]
    page.mouse.move(*corners[0])
    page.mouse.down()
    for corner in corners[1:]:
        page.mouse.move(*corner, steps=6)
    shot(page, "07-lasso")
    page.mouse.up()
    page.wait_for_function("n => document.querySelector('.picsift-explorer').dataset.selected === String(n)",
                           arg=len(expected))
    assert set(page.eval_on_selector(".picsift-explorer", "el => el.__picsiftSelected()")) == expected
    page.wait_for_selector(f".picsift-actions[data-selected='{len(expected)}']")  # the selection everywhere
    page.locator(f"{GALLERY} .picsift-collection-name").fill("lassoed")
    page.locator(f"{GALLERY} .picsift-add").click()
    row = page.locator(".picsift-collections tr", has=page.locator(".picsift-show", has_text="lassoed"))
    row.wait_for()
    expect(row.locator("td").nth(1)).to_have_text(str(len(expected)))
    before = gallery_version(page)
    row.locator(".picsift-show").click()
    wait_for_new_gallery(page, before, "collection 'lassoed'")
    expect(page.locator(GALLERY)).to_have_attribute("data-count", str(len(expected)))
    temporary = page.locator(".picsift-collections .picsift-temporary")
    assert "last result" in temporary.inner_text() and "a blue boat" in temporary.inner_text()
    before = gallery_version(page)
    temporary.locator(".picsift-show").click()  # back to the search, every image with its score
    wait_for_new_gallery(page, before, "a blue boat")
    gallery_count_is(page, 36)
    page.locator(".picsift-tool[data-mode=move]").click()
    page.locator(f"{GALLERY} .picsift-clear").click()


def test_colour_the_map_by_a_tag(lab_page: Any) -> None:
    page = lab_page
    options = page.eval_on_selector_all(".picsift-color-by option", "os => os.map(o => o.value)")
    assert options[:3] == ["cluster", "score", "folder"] and "tag:outdoor" in options and "class" in options
    page.locator(".picsift-color-by").select_option("tag:outdoor")
    page.wait_for_function("() => document.querySelector('.picsift-explorer').dataset.colorBy === 'tag:outdoor'")
    outdoor = len(OUTDOOR_VEHICLES) + OUTDOOR_ANIMALS
    assert page.locator(".picsift-legend span").all_inner_texts() == [f"outdoor ({outdoor})",
                                                                      f"(no outdoor) ({36 - outdoor})"]
    shot(page, "07-colour-by-tag")
    page.locator(".picsift-legend-entry", has_text=f"outdoor ({outdoor})").first.click()  # select them all
    page.wait_for_selector(f".picsift-explorer[data-selected='{outdoor}']")
    page.wait_for_selector(f".picsift-actions[data-selected='{outdoor}']")  # the gallery's selection too
    page.locator(f"{GALLERY} .picsift-clear").click()
    page.locator(".picsift-dims").select_option("3")


def test_health_tab_shows_findings_and_acts_on_the_selection(lab_page: Any) -> None:
    page = lab_page
    health = ".picsift-health"
    page.select_option(f"{health} .picsift-health-field", "folder")
    before = gallery_version(page)
    page.locator(f"{health} .picsift-run-health").click()
    page.wait_for_selector(f"{health} .picsift-finding[data-name='near_duplicates']")
    counts = dict(page.eval_on_selector_all(f"{health} .picsift-finding",
                                            "fs => fs.map(f => [f.dataset.name, Number(f.dataset.count)])"))
    assert {"label_mistakes", "near_duplicates", "outliers", "confusable_classes", "class_balance"} <= set(counts)
    assert counts["label_mistakes"] > 0, counts  # the tiny model's random embeddings disagree with most folders
    page.locator(f"{health} .picsift-finding[data-name='label_mistakes']").click()
    wait_for_new_gallery(page, before, "health: Label mistakes")
    expect(page.locator(GALLERY)).to_have_attribute("data-count", str(counts["label_mistakes"]))
    page.wait_for_function("() => document.querySelectorAll('.picsift-gallery .picsift-tile[data-note]').length >= 3")
    # thumbnails (and their notes) arrive in batches in any order, and the virtualised gallery may re-create a
    # tile's element: read the note and the title from the first tile once it is filled
    first = page.locator(f"{GALLERY} .picsift-tile[data-rank='1'][data-note]")
    given, suggested = (first.get_attribute("data-note") or "").split(" → ")
    assert {given, suggested} <= {"animals", "vehicles", "food", "plants"} and given != suggested
    expect(first).to_have_attribute("title", re.compile("neighbour"))
    page.locator(f"{GALLERY} .picsift-tile[data-rank='1'] input[type=checkbox]").click()
    page.wait_for_selector(".picsift-actions[data-selected='1']")
    page.locator(f"{health} .picsift-open-issue").click()
    page.wait_for_function("() => document.querySelector('.picsift-health-notice').textContent === 'opened 1 issues'")
    page.locator(f"{health} .picsift-health-job").fill("recheck")
    page.locator(f"{health} .picsift-add-to-job").click()
    page.wait_for_function(
        "() => document.querySelector('.picsift-health-notice').textContent === \"added 1 images to job 'recheck'\"")
    page.locator(f"{health} .picsift-accept-suggestion").click()  # folder labels: moving files relabels them
    page.wait_for_function(f"() => document.querySelector('{health} .picsift-error').textContent.includes('folders')")
    page.locator(f"{GALLERY} .picsift-tile[data-rank='1'] input[type=checkbox]").click()  # leave nothing selected
    page.wait_for_selector(".picsift-actions[data-selected='0']")
    shot(page, "14-health")


def test_python_errors_show_in_the_widget(lab_page: Any) -> None:
    page = lab_page
    page.locator(".picsift-mode").select_option("similar")
    page.locator(".picsift-gallery .picsift-clear").click()
    page.wait_for_selector(".picsift-actions[data-selected='0']")
    page.locator(".picsift-prompt .picsift-search").click()
    page.wait_for_function(
        "() => document.querySelector('.picsift-prompt .picsift-error').textContent.includes('select')")
    shot(page, "07-error")
    page.locator(".picsift-mode").select_option("text")


def test_dark_theme(lab_page: Any) -> None:
    page = lab_page
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.click()
    page.get_by_text("JupyterLab Dark", exact=True).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    search(page, "a cat")  # a fresh render in the dark theme (and it clears the last error)
    page.wait_for_function("() => document.querySelectorAll('.picsift-tile.loaded').length >= 12")
    color = page.eval_on_selector(".picsift-gallery", "el => getComputedStyle(el).backgroundColor")
    assert color not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)")
    shot(page, "08-dark-theme")


def test_an_object_set_shows_crops_and_a_click_opens_the_image_with_its_boxes(lab_page: Any) -> None:
    page = lab_page
    page.locator(".jp-Notebook .jp-CodeCell").last.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below, then type into it
    page.keyboard.press("Enter")
    page.keyboard.insert_text("panel.library.update(progress=False)")  # the car boxes were labelled after it
    page.keyboard.press("Shift+Enter")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"
                           ".filter(p => /\\[\\d+\\]/.test(p.textContent)).length >= 2")  # the app's cell, and it
    page.locator(".picsift-mode").select_option("objects")
    search(page, "a car")
    page.locator(".picsift-mode").select_option("text")
    names = page.eval_on_selector_all(f"{GALLERY} .picsift-tile .picsift-name", "els => els.map(e => e.textContent)")
    assert len(names) == sum(VEHICLE_CARS) and all(n.startswith("car · ") for n in names), names
    page.wait_for_function(f"() => [...document.querySelectorAll('{GALLERY} .picsift-tile img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    sizes = page.eval_on_selector_all(f"{GALLERY} .picsift-tile img", "ims => ims.map(i => [i.naturalWidth, "
                                      "i.naturalHeight])")
    assert all(w <= 32 and h <= 32 for w, h in sizes), sizes  # the crops: 8 px boxes grown to 32 px, not pictures
    shot(page, "08a-object-crops")
    page.locator(f"{GALLERY} .picsift-tile img").first.click()
    detail = page.locator(".picsift-detail")
    detail.wait_for()
    page.wait_for_function("() => document.querySelector('.picsift-detail img').naturalWidth > 64")  # the picture
    text = detail.locator("table").inner_text()
    assert "objects" in text and "car [" in text, text  # every box of the image, listed as drawn
    shot(page, "08b-object-detail")
    detail.locator(".picsift-close").click()


def test_delete_asks_first_and_removes_only_the_selected_image(lab_page: Any) -> None:
    # last: it deletes a file of the shared library
    page = lab_page
    search(page, "a dog")
    actions = page.locator(".picsift-view-actions")
    page.locator(f"{GALLERY} .picsift-tile input[type=checkbox]").first.click()
    page.wait_for_selector(".picsift-view-actions[data-target='selected'][data-count='1']")
    expect(actions.locator(".picsift-target")).to_have_text("Act on 1 selected:")
    actions.locator(".picsift-delete-images").click()
    confirm = actions.locator(".picsift-confirm")
    assert confirm.is_visible()
    expect(confirm.locator(".picsift-confirm-text")).to_have_text("Delete 1 image file? This cannot be undone")
    shot(page, "09-delete-confirm")
    actions.locator(".picsift-cancel-delete").click()
    assert not confirm.is_visible()
    page.wait_for_timeout(300)
    expect(page.locator(GALLERY)).to_have_attribute("data-count", "36")
    expect(actions.locator(".picsift-actions-notice")).to_have_text("")
    actions.locator(".picsift-delete-images").click()
    actions.locator(".picsift-confirm-delete").click()
    gallery_count_is(page, 35)
    page.wait_for_function(
        "() => document.querySelector('.picsift-actions-notice').textContent === 'deleted 1 image file'")
    page.wait_for_selector(".picsift-view-actions[data-target='shown']")
