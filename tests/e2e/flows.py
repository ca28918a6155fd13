"""What a user does in every front end (JupyterLab, Notebook 7, a served page, marimo): search, see
thumbnails, select on the map, and see the selection come back from Python.

The conditions run on element handles, so they work inside shadow roots too (marimo draws widgets there).
"""

from __future__ import annotations

from typing import Any

#: The parts of the app every front end shows (their CSS classes, after ``picsift-``).
APP_PARTS = ("prompt", "score-range", "filters", "sampler", "collections", "view-actions", "gallery", "explorer")


def parts_shown(page: Any, scope: str = "") -> dict[str, int]:
    """How many elements of each of :data:`APP_PARTS` the page shows (inside ``scope``, a CSS selector), once each
    part has rendered at all: the widgets of one app mount one by one (marimo mounts the prompt, ready to search,
    before the others), so a part not there yet is waited for, up to the page's default timeout."""
    for part in APP_PARTS:
        page.locator(f"{scope} .picsift-{part}".strip()).first.wait_for(state="attached")
    return {part: page.locator(f"{scope} .picsift-{part}".strip()).count() for part in APP_PARTS}


def element(page: Any, selector: str, nth: int = 0) -> Any:
    locator = page.locator(selector).nth(nth)
    locator.wait_for(state="attached")
    return locator.element_handle()


def wait_until_searchable(page: Any, timeout_ms: int = 180_000) -> None:
    page.wait_for_selector(".picsift-prompt[data-ready='true']", timeout=timeout_ms)


def search_and_see_thumbnails(page: Any, text: str, nth: int = 0) -> int:
    """Type ``text`` into the prompt, press Enter; wait for the gallery to title it and show real thumbnails.
    Returns how many images the gallery holds."""
    gallery = element(page, ".picsift-gallery", nth)
    before = int(gallery.get_attribute("data-version") or -1)
    prompt = page.locator(".picsift-prompt-input").nth(nth)
    prompt.fill(text)
    prompt.press("Enter")
    page.wait_for_function(
        "([g, before, title]) => Number(g.dataset.version) > before"
        " && g.querySelector('.picsift-title').textContent.includes(title)"
        " && g.querySelectorAll('.picsift-tile.loaded img[src^=blob]').length >= Math.min(3, Number(g.dataset.shown))",
        arg=[gallery, before, text])
    page.wait_for_function(  # each tile shows its score, best first
        "g => { const s = [...g.querySelectorAll('.picsift-tile')].sort((a, b) => a.dataset.rank - b.dataset.rank)"
        ".map(t => t.querySelector('.picsift-score').textContent);"
        " return s.length > 0 && s.every(x => x !== '')"
        " && s.every((x, i) => i === 0 || Number(x) <= Number(s[i - 1])); }",
        arg=gallery)
    return int(gallery.get_attribute("data-count") or -1)


def box_select_on_map(page: Any, nth: int = 0) -> int:
    """Drag a box around the left half of the points on the map; waits until the map counts them selected and
    returns that count (at least one point, not all)."""
    explorer = element(page, ".picsift-explorer", nth)
    page.wait_for_function("e => e.dataset.firstFrame !== undefined && Number(e.dataset.points) > 0", arg=explorer)
    draws = int(explorer.get_attribute("data-draws") or 0)
    page.locator(".picsift-explorer").nth(nth).locator(".picsift-tool[data-mode=box]").click()
    page.wait_for_function("([e, n]) => Number(e.dataset.draws) > n", arg=[explorer, draws])
    canvas = page.locator(".picsift-explorer canvas.picsift-map").nth(nth).bounding_box()
    points = [p for p in explorer.evaluate(
        "el => Array.from({length: Number(el.dataset.points)}, (_, i) => el.__picsiftScreen(i))") if p]
    inside = [p for p in points if canvas["x"] < p[0] < canvas["x"] + canvas["width"]
              and canvas["y"] < p[1] < canvas["y"] + canvas["height"]]
    xs = sorted(p[0] for p in inside)
    split = (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2  # between two points: none sits on the edge
    expected = sum(1 for p in inside if p[0] < split)
    assert 0 < expected < len(points), "the box must hold some points and leave some out"
    left, top = canvas["x"] + 2, canvas["y"] + 2
    page.mouse.move(left, top)
    page.mouse.down()
    page.mouse.move(split, canvas["y"] + canvas["height"] - 2, steps=8)
    page.mouse.up()
    page.wait_for_function("([e, n]) => e.dataset.selected === String(n)", arg=[explorer, expected])
    return expected


def wait_for_selection_from_python(page: Any, count: int, nth: int = 0) -> None:
    """The actions bar counts the gallery's selected images in Python (App._count_targets): seeing ``count``
    there means the map's selection reached Python and came back."""
    actions = element(page, ".picsift-actions", nth)
    page.wait_for_function("([a, n]) => a.dataset.selected === String(n)", arg=[actions, count])
