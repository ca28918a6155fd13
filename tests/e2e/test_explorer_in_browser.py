"""The explorer on a user's own DataFrame, alone and linked, in a real JupyterLab driven through Chromium.

The notebook shows: a DataFrame explorer (three named species far from the origin, a numeric column, image
paths for thumbnails), two linked explorers of the same points, and a 200k-point 3D explorer. An
``ipywidgets.Label`` under each echoes what Python received (``on_select``), so the tests read the kernel's
side from the page. Screenshots: test-artifacts/e2e/.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS
from .harness import chromium, jupyterlab, open_and_run, write_notebook

SPECIES = ("setosa", "versicolor", "virginica")
PER_SPECIES = (120, 80, 40)
DATA = '''
import json, numpy as np, pandas as pd, ipywidgets
from picsift.widgets import Explorer, link
rng = np.random.default_rng(7)
species = np.repeat({species!r}, {per!r})
centre = {{"setosa": (1000.0, 2.0), "versicolor": (1040.0, 3.5), "virginica": (1020.0, 5.0)}}
xy = np.array([centre[s] for s in species]) + rng.normal(scale=(6.0, 0.35), size=(len(species), 2))
images = sorted(__import__("pathlib").Path({stamps!r}).rglob("*.png"))[:len(species)]
df = pd.DataFrame({{"sepal_x": xy[:, 0], "sepal_y": xy[:, 1], "species": species,
                   "petal": rng.uniform(0.1, 2.5, len(species)), "image": [str(p) for p in images]}})
df.index = [f"flower-{{i}}" for i in range(len(df))]
e = Explorer(data=df, x="sepal_x", y="sepal_y", color_by="species", tooltip=["species", "petal"], image="image",
             layout={{"width": "700px"}})
echo = ipywidgets.Label("none")
e.on_select(lambda idx: setattr(echo, "value", json.dumps([len(idx), e.selection[:3]])))
ipywidgets.VBox([e, echo])
'''
LINKED = '''
a = Explorer(data=df, x="sepal_x", y="sepal_y", color_by="species", layout={"width": "460px"})
b = Explorer(data=df, x="sepal_x", y="petal", color_by="petal", layout={"width": "460px"})
linked = link(a, b, camera=False)
echo_b = ipywidgets.Label("none")
b.on_select(lambda idx: setattr(echo_b, "value", str(len(idx))))
ipywidgets.VBox([ipywidgets.HBox([a, b]), echo_b])
'''
SAME = '''
c = Explorer(data=df, x="sepal_x", y="sepal_y", layout={"width": "460px"})
d = Explorer(data=df, x="sepal_x", y="sepal_y", layout={"width": "460px"})
link(c, d)
ipywidgets.HBox([c, d])
'''
BIG = '''
big = Explorer(points=rng.normal(size=(200_000, 3)).astype(np.float32), layout={"width": "600px"})
big
'''


@pytest.fixture(scope="module")
def page(e2e_ready: None, tmp_path_factory: pytest.TempPathFactory, stamps_root: Path) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("explorer-lab")
    write_notebook(root / "explorer.ipynb", [
        DATA.format(species=SPECIES, per=PER_SPECIES, stamps=str(stamps_root)), LINKED, SAME, BIG])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab(root) as lab, chromium(viewport=(1300, 1400)) as browser_page:
        browser_page.set_default_timeout(60_000)
        try:
            open_and_run(browser_page, lab, "explorer.ipynb")
            browser_page.wait_for_selector(".picsift-explorer[data-points='200000'][data-first-frame]",
                                           timeout=120_000)
        except Exception:
            browser_page.screenshot(path=str(ARTIFACTS / "explorer-00-setup-failure.png"))
            print(lab.log.read_text()[-4000:])
            raise
        yield browser_page


def explorer(page: Any, n: int) -> Any:
    return page.locator(".picsift-explorer").nth(n)


def screen_points(page: Any, n: int) -> list[list[float] | None]:
    return explorer(page, n).evaluate(
        "el => Array.from({length: Number(el.dataset.points)}, (_, i) => el.__picsiftScreen(i))")


def echo(page: Any, n: int = 0) -> str:
    return str(page.locator(".widget-label").nth(n).inner_text())


def diamond(centre: tuple[float, float], a: float, b: float, points: list[list[float] | None],
            margin_px: float) -> set[int]:
    """Indices of the points inside the diamond with these half-widths; ValueError if one is within
    ``margin_px`` of its outline (where a pixel's rounding could decide)."""
    edge = a * b / (a * a + b * b) ** 0.5  # distance from the centre to each edge
    inside = set()
    for i, p in enumerate(points):
        if p is None:
            continue
        d = abs(p[0] - centre[0]) / a + abs(p[1] - centre[1]) / b
        if abs(d - 1) * edge < margin_px:
            raise ValueError("a point lies on the outline")
        if d < 1:
            inside.add(i)
    return inside


def drag_lasso(page: Any, corners: list[tuple[float, float]]) -> None:
    """A lasso through exactly these corners (one pointer move each: no rounded points in between)."""
    page.mouse.move(*corners[0])
    page.mouse.down()
    for corner in corners[1:]:
        page.mouse.move(*corner)
    page.mouse.up()


def test_user_points_fit_the_frame_with_names_in_the_legend_and_no_umap(page: Any) -> None:
    e = explorer(page, 0)
    box = e.locator("canvas.picsift-map").bounding_box()
    points = screen_points(page, 0)
    assert len(points) == sum(PER_SPECIES) and all(p is not None for p in points)
    xs, ys = [p[0] for p in points if p], [p[1] for p in points if p]
    inside = [box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]
              for x, y in zip(xs, ys, strict=True)]
    assert all(inside)  # fitted to the data (x around 1000): nothing falls outside the frame
    spread = max(max(xs) - min(xs), 0) / box["width"], max(max(ys) - min(ys), 0) / box["height"]
    assert max(spread) > 0.8  # and the data fills it
    assert e.locator(".picsift-legend-entry").all_inner_texts() == [
        f"{name} ({count})" for name, count in zip(SPECIES, PER_SPECIES, strict=True)]
    assert e.locator(".picsift-umap").is_hidden() and e.locator(".picsift-dims").is_hidden()
    assert e.locator(".picsift-projection-state").inner_text() == f"{sum(PER_SPECIES)} points"  # no "pca"
    assert e.locator(".picsift-tool").count() == 8
    e.locator(".picsift-legend-entry", has_text="versicolor").click()
    page.wait_for_function("() => document.querySelector('.picsift-explorer').dataset.selected === '80'")
    page.wait_for_function("() => document.querySelector('.widget-label').textContent.startsWith('[80,')")
    assert json.loads(echo(page))[1] == ["flower-120", "flower-121", "flower-122"]  # ids: the DataFrame's index
    e.screenshot(path=str(ARTIFACTS / "explorer-01-legend.png"))


def test_a_numeric_column_gets_a_colour_bar_with_its_range(page: Any) -> None:
    e = explorer(page, 0)
    e.locator(".picsift-color-by").select_option("petal")
    page.wait_for_function("() => document.querySelector('.picsift-explorer').dataset.colorBy === 'petal'")
    bar = e.locator(".picsift-colorbar")
    bar.wait_for()
    assert bar.get_attribute("data-label") == "petal"
    low, high = float(bar.locator(".picsift-colorbar-min").inner_text()), float(
        bar.locator(".picsift-colorbar-max").inner_text())
    assert 0.1 <= low < 0.2 and 2.4 < high <= 2.5  # uniform(0.1, 2.5) over 240 rows
    assert e.locator(".picsift-legend-entry").count() == 0
    e.screenshot(path=str(ARTIFACTS / "explorer-02-colour-bar.png"))
    e.locator(".picsift-color-by").select_option("species")
    page.wait_for_function("() => document.querySelector('.picsift-explorer').dataset.colorBy === 'species'")


def test_lasso_reaches_python_as_positions_and_zoom_to_selection_frames_them(page: Any) -> None:
    e = explorer(page, 0)
    e.locator(".picsift-tool[data-mode=lasso]").click()
    box = e.locator("canvas.picsift-map").bounding_box()
    points = screen_points(page, 0)
    setosa = [p for p in points[: PER_SPECIES[0]] if p]
    centre = (round(sum(p[0] for p in setosa) / len(setosa)), round(sum(p[1] for p in setosa) / len(setosa)))
    expected: set[int] = set()
    for step in range(60):  # the corners are whole pixels and the outline is straight: a margin of 0.25 px
        a, b = round(box["width"] * 0.15 * (1 - step / 90)), round(box["height"] * 0.2 * (1 - step / 90))
        try:
            expected = diamond(centre, a, b, points, margin_px=0.25)
            break
        except ValueError:
            continue
    assert 5 <= len(expected) < len(points)
    x, y = centre
    drag_lasso(page, [(x - a, y), (x, y - b), (x + a, y), (x, y + b), (x - a, y)])
    page.wait_for_function("n => document.querySelector('.picsift-explorer').dataset.selected === String(n)",
                           arg=len(expected))
    assert set(e.evaluate("el => el.__picsiftSelected()")) == expected
    page.wait_for_function("n => document.querySelector('.widget-label').textContent.startsWith(`[${n},`)",
                           arg=len(expected))
    before = [points[i] for i in expected]
    e.locator(".picsift-tool[data-tool=zoomSelection]").click()
    page.wait_for_timeout(300)
    after = screen_points(page, 0)
    chosen = [after[i] for i in expected]
    assert all(p and box["x"] <= p[0] <= box["x"] + box["width"] and box["y"] <= p[1] <= box["y"] + box["height"]
               for p in chosen)

    def width(ps: list[Any]) -> float:
        return max(p[0] for p in ps) - min(p[0] for p in ps) + max(p[1] for p in ps) - min(p[1] for p in ps)

    assert width(chosen) > 1.5 * width(before)  # zoomed in on them
    e.locator(".picsift-tool[data-tool=export]").click()
    page.wait_for_function("n => document.querySelector('.picsift-notice').textContent"
                           ".startsWith(`${n} rows in explorer.exported`)", arg=len(expected))
    e.screenshot(path=str(ARTIFACTS / "explorer-03-zoomed-to-selection.png"))
    e.locator(".picsift-tool[data-tool=fit]").click()
    page.wait_for_timeout(300)
    reset = screen_points(page, 0)  # the reset view is the first one
    assert all(abs(p[0] - q[0]) < 0.5 and abs(p[1] - q[1]) < 0.5 for p, q in zip(reset, points, strict=True) if p and q)
    e.locator(".picsift-tool[data-mode=move]").click()


def test_hover_shows_fields_and_thumbnail_and_nothing_red(page: Any) -> None:
    e = explorer(page, 0)
    # a setosa point with no other within 12 px on screen (the tooltip takes the point nearest the pointer within
    # 8 px; in the dense setosa cluster a fixed point can sit a pixel from another, as flower-3 from flower-101)
    points = screen_points(page, 0)
    clear = [i for i, p in enumerate(points[: PER_SPECIES[0]]) if p and all(
        max(abs(p[0] - q[0]), abs(p[1] - q[1])) > 12 for j, q in enumerate(points) if q and j != i)]
    assert clear
    x, y = points[clear[0]]
    page.mouse.move(x + 30, y + 30)
    page.mouse.move(x, y, steps=4)
    tooltip = e.locator(".picsift-tooltip:not([hidden])")
    tooltip.wait_for()
    page.wait_for_selector(".picsift-explorer .picsift-tooltip:not([hidden]) img")
    fields = tooltip.locator(".picsift-tooltip-field").all_inner_texts()
    assert fields[0] == "species setosa" and fields[1].startswith("petal ")
    assert tooltip.locator(".picsift-tooltip-title").inner_text() == f"flower-{clear[0]}"
    assert e.locator(".picsift-error").is_hidden()
    big = explorer(page, 5)  # bare points, no image source: a tooltip with coordinates, no error
    big.scroll_into_view_if_needed()
    x, y = big.evaluate("el => el.__picsiftScreen(0)")
    page.mouse.move(x + 30, y + 30)
    page.mouse.move(x, y, steps=4)
    big.locator(".picsift-tooltip:not([hidden]) .picsift-tooltip-field").first.wait_for()
    assert [f.split(" ")[0] for f in big.locator(".picsift-tooltip-field").all_inner_texts()] == ["x", "y", "z"]
    assert big.locator(".picsift-error").is_hidden()
    page.mouse.move(5, 5)


def test_download_png_and_axes(page: Any, tmp_path: Path) -> None:
    from PIL import Image

    e = explorer(page, 0)
    e.locator(".picsift-tool[data-tool=axes]").click()
    e.locator("canvas.picsift-axes:not([hidden])").wait_for()
    with page.expect_download() as download:
        e.locator(".picsift-tool[data-tool=download]").click()
    target = tmp_path / "map.png"
    download.value.save_as(target)
    image = Image.open(io.BytesIO(target.read_bytes())).convert("RGB")
    canvas = e.locator("canvas.picsift-map").evaluate("c => [c.width, c.height]")
    assert list(image.size) == canvas
    colours = image.getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 20  # the points (three palette colours, blended) and the axes, on white
    e.screenshot(path=str(ARTIFACTS / "explorer-04-axes.png"))
    e.locator(".picsift-tool[data-tool=axes]").click()


def test_linked_explorers_share_selection_and_camera(page: Any) -> None:
    a = explorer(page, 1)
    a.locator(".picsift-legend-entry", has_text="virginica").click()
    page.wait_for_function("() => document.querySelectorAll('.picsift-explorer')[2].dataset.selected === '40'")
    page.wait_for_function("() => document.querySelectorAll('.widget-label')[1].textContent === '40'")
    c, d = explorer(page, 3), explorer(page, 4)
    c.scroll_into_view_if_needed()
    before = screen_points(page, 4)
    start = c.locator("canvas.picsift-map").bounding_box()
    x, y = start["x"] + start["width"] / 2, start["y"] + start["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 80, y + 40, steps=5)
    page.mouse.up()
    page.wait_for_timeout(400)
    moved = screen_points(page, 4)
    shift = [(m[0] - p[0], m[1] - p[1]) for m, p in zip(moved, before, strict=True) if m and p]
    assert all(abs(dx - 80) < 2 and abs(dy - 40) < 2 for dx, dy in shift)  # the linked view panned too
    assert d.evaluate("el => el.dataset.selected") == "0"


def test_a_big_map_says_when_it_draws_a_sample_while_moving(page: Any) -> None:
    big = explorer(page, 5)
    big.scroll_into_view_if_needed()
    big.evaluate("el => el.__picsiftBudget(20000)")  # as a slow machine would settle on
    box = big.locator("canvas.picsift-map").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 10, steps=3)
    page.wait_for_function("el => el.dataset.sampled === 'true'", arg=big.element_handle())
    lod = big.locator(".picsift-lod")
    assert lod.is_visible() and lod.inner_text() == "sampled while moving: 20,000 of 200,000 points over their density"
    big.screenshot(path=str(ARTIFACTS / "explorer-05-sampled-while-moving.png"))
    page.mouse.up()
    page.wait_for_function("el => el.dataset.sampled === 'false'", arg=big.element_handle())
    assert lod.is_hidden()


def thumbs_canvas(e: Any, x: float, y: float, dx: int = 0) -> list[int]:
    """RGBA of the thumbnail layer's pixel that holds page position (x, y), moved ``dx`` pixels right."""
    return list(e.evaluate("""(el, [x, y, dx]) => {
        const c = el.querySelector('canvas.picsift-thumbs'), r = c.getBoundingClientRect(), k = c.width / r.width;
        const px = Math.floor((x - r.left) * k) + dx, py = Math.floor((y - r.top) * k);
        return Array.from(c.getContext('2d').getImageData(px, py, 1, 1).data);
    }""", [x, y, dx]))


def test_zoomed_in_points_become_thumbnails_that_hover_and_select_like_points(page: Any) -> None:
    e = explorer(page, 0)
    e.scroll_into_view_if_needed()
    assert e.evaluate("el => el.dataset.thumbs") == "0"  # the fitted view: points
    e.locator(".picsift-tool[data-mode=box]").click()  # a box around nothing clears the selection
    corner = e.locator("canvas.picsift-map").bounding_box()
    drag_lasso(page, [(corner["x"] + 2, corner["y"] + 2), (corner["x"] + 12, corner["y"] + 12)])
    page.wait_for_function("el => el.dataset.selected === '0'", arg=e.element_handle())
    e.locator(".picsift-tool[data-mode=move]").click()
    points = screen_points(page, 0)
    setosa = [p for p in points[: PER_SPECIES[0]] if p]
    centre = (sum(p[0] for p in setosa) / len(setosa), sum(p[1] for p in setosa) / len(setosa))
    page.mouse.move(*centre)
    isolated, seen = None, set()  # seen: points on screen (or within 40 px of it) at some zoom
    earlier = set(e.evaluate("el => el.__picsiftThumbs().requested"))  # zoom to selection in an earlier test
    box = e.locator("canvas.picsift-map").bounding_box()
    for _ in range(8):  # zoom in around setosa until one drawn thumbnail stands clear of the others
        page.mouse.wheel(0, -600)  # x1.8 a turn
        page.wait_for_function("el => Number(el.dataset.thumbs) > 0 && el.dataset.thumbsMissing === '0'",
                               arg=e.element_handle())
        page.wait_for_timeout(300)  # let the view settle (the wheel ends)
        shown = e.evaluate("el => ({debug: el.__picsiftThumbs(), thumbs: Number(el.dataset.thumbs)})")
        drawn = shown["debug"]["drawn"]
        assert len(drawn) == shown["thumbs"]  # every row has an image: every point on screen is a picture
        side = e.evaluate("el => el.__picsiftThumbSide()")
        box = e.locator("canvas.picsift-map").bounding_box()
        seen |= {i for i, p in enumerate(screen_points(page, 0)) if p and box["x"] - 41 <= p[0]
                 <= box["x"] + box["width"] + 41 and box["y"] - 41 <= p[1] <= box["y"] + box["height"] + 41}
        at = {i: e.evaluate(f"el => el.__picsiftScreen({i})") for i in drawn}
        inner = [i for i, p in at.items() if box["x"] + side < p[0] < box["x"] + box["width"] - side
                 and box["y"] + side < p[1] < box["y"] + box["height"] - side]
        clear = [i for i in inner if all(max(abs(at[i][0] - q[0]), abs(at[i][1] - q[1])) > side * 1.05
                                         for j, q in at.items() if j != i)]
        if clear:
            isolated = clear[0]
            break
    assert isolated is not None
    requested = set(e.evaluate("el => el.__picsiftThumbs().requested")) - earlier
    assert requested <= seen and len(requested) < len(points)  # asked for what was on screen only
    assert set(drawn) <= requested | earlier  # each picture came from the kernel
    x, y = at[isolated]
    colours = {tuple(thumbs_canvas(e, x + dx * side / 5, y + dy * side / 5)) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    assert all(c[3] == 255 for c in colours) and len(colours) > 1  # an opaque picture, not a flat dot
    border = thumbs_canvas(e, x - side / 2, y, 1)
    assert border == [31, 120, 181, 255]  # setosa's palette colour frames it
    assert thumbs_canvas(e, x - side / 2, y, 3) != border  # in a 2 px frame
    page.mouse.move(5, 5)  # off the map: the tooltip of a point hovered while zooming goes
    e.locator(".picsift-tooltip").wait_for(state="hidden")
    page.mouse.move(x + side * 0.35, y + side * 0.35)  # on the picture, far from its point's centre
    tooltip = e.locator(".picsift-tooltip:not([hidden])")
    tooltip.wait_for()
    assert tooltip.locator(".picsift-tooltip-title").inner_text() == f"flower-{isolated}"
    e.screenshot(path=str(ARTIFACTS / "explorer-06-thumbnails.png"))
    e.locator(".picsift-tool[data-mode=box]").click()
    half = side * 0.45
    drag_lasso(page, [(x - half, y - half), (x + half, y + half)])
    page.wait_for_function("el => el.dataset.selected === '1'", arg=e.element_handle())
    assert e.evaluate("el => el.__picsiftSelected()") == [isolated]
    page.wait_for_function("() => document.querySelector('.widget-label').textContent.startsWith('[1,')")
    assert json.loads(echo(page))[1] == [f"flower-{isolated}"]
    page.wait_for_function("el => el.__picsiftThumbs().drawn.length > 0", arg=e.element_handle())
    assert thumbs_canvas(e, x - side / 2, y, 3) == border  # a selected thumbnail: a thicker frame
    e.screenshot(path=str(ARTIFACTS / "explorer-07-thumbnail-selected.png"))
    e.locator(".picsift-tool[data-mode=move]").click()
    e.locator(".picsift-tool[data-tool=fit]").click()  # zoomed out: points again, no pictures
    page.wait_for_function("el => el.dataset.thumbs === '0'", arg=e.element_handle())
    assert thumbs_canvas(e, x, y)[3] == 0
    page.mouse.move(5, 5)
