"""The thumbnails-on-the-map part of ``bench/widgets.py`` (``--parts thumbs``), apart to keep files small.

A 1M-point 2D DataFrame explorer with an image column (the Tux Paint stamps, cycled): first frame; frames
while panning the fitted view, with the moving sample adaptive and pinned at 10% of the points; a lasso in 2D
(in the page); then the view set on a region of about 300 points: time until the first and every one is drawn
as its thumbnail, cold (the kernel encodes each WebP) and warm (zoomed out and back: the browser's cache);
frames while panning there with thumbnails, against the same pan with ``map_thumbnails = False`` (points only).
Pans are driven in the page (one pointer move per animation frame), so frame times are the map's own.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from common import median, percentile, table
from tests.e2e.harness import drag_through

CELL = '''
import pandas as pd
XY = rng.normal(size=(N_POINTS, 2)).astype(np.float32)
names = np.array([str(p) for p in source.files], dtype=object)
tdf = pd.DataFrame({"x": XY[:, 0], "y": XY[:, 1], "c": rng.integers(0, 8, N_POINTS),
                    "image": names[np.arange(N_POINTS) % len(names)]})
t = Explorer(data=tdf, x="x", y="y", color_by="c", image="image", layout={"width": "900px"}); t
'''



PAN = """(el, ms) => new Promise((resolve) => {
    const c = el.querySelector('canvas.picsift-map'), r = c.getBoundingClientRect();
    const x0 = r.left + r.width * 0.4, y0 = r.top + r.height * 0.5, t0 = performance.now();
    let k = 0;
    const step = () => {
        if (performance.now() - t0 > ms) { resolve(t0); return; }
        k++;
        c.dispatchEvent(new PointerEvent('pointermove', {clientX: x0 + 120 * Math.sin(k / 40),
            clientY: y0 + 50 * Math.sin(k / 55), pointerId: 1, pointerType: 'mouse', bubbles: true}));
        requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
})"""


def pan(page: Any, explorer: Any, seconds: float, budget: int | None = None) -> dict[str, float]:
    """Pan the map for ``seconds``, one pointer move per animation frame (dispatched in the page, so the
    frame rate is the map's, not the test driver's); frame intervals and points drawn per frame meanwhile.
    ``budget`` pins the moving sample's size (None: the explorer adapts it to the frame rate)."""
    explorer.evaluate("(el, n) => el.__picsiftBudget(n)", budget)
    box = explorer.locator("canvas.picsift-map").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    page.mouse.down()  # a real press: the explorer captures the pointer, then the page's moves drag
    since = explorer.evaluate(PAN, seconds * 1000)
    page.mouse.up()
    explorer.evaluate("el => el.__picsiftBudget(null)")
    frames, drawn = explorer.evaluate(
        "(el, t) => { const s = el.__picsift, keep = s.frames.map((f) => f > t + 200);"
        " return [s.frames.filter((_, i) => keep[i]), s.drawn.filter((_, i) => keep[i])]; }", since)
    intervals = [b - a for a, b in itertools.pairwise(frames)]
    return {"frame_ms": median(intervals), "frame_p90_ms": percentile(intervals, 90), "frames": len(intervals),
            "drawn": median(drawn) if drawn else 0}


def thumbs(nb: Any, n: int, seconds: float) -> dict[str, Any]:
    page = nb.page
    start = nb.run_next()
    e = page.locator(f".picsift-explorer[data-points='{n}']")
    e.wait_for(timeout=300_000)
    page.wait_for_selector(f".picsift-explorer[data-points='{n}'][data-first-frame]", timeout=300_000)
    first = float(e.evaluate("el => Number(el.dataset.firstFrame)")) - start
    e.locator("canvas.picsift-map").scroll_into_view_if_needed()
    page.wait_for_timeout(1500)  # the lasso/hover index is built when the page is idle
    fitted = pan(page, e, seconds)
    tenth = pan(page, e, seconds, budget=n // 10)
    e.locator(".picsift-tool[data-tool=fit]").click()
    page.wait_for_timeout(500)
    select = lasso(page, e)
    e.locator(".picsift-tool[data-tool=fit]").click()
    view = {"center": [2.0, 1.5], "zoom": 12.0, "stretch": 1}  # about 300 of the 1M normal points on screen
    done = ("el => Number(el.dataset.thumbs) > 0 && el.dataset.thumbsMissing === '0'"
            " && el.dataset.thumbsDrawn === el.dataset.thumbs && performance.now()")
    times, firsts = [], []
    for _ in ("cold", "warm"):
        page.wait_for_function("el => el.dataset.thumbs === '0'", arg=e.element_handle())
        t0 = e.evaluate("(el, v) => { const t = performance.now(); el.__picsiftView(v); return t; }", view)
        firsts.append(float(page.wait_for_function("el => Number(el.dataset.thumbsDrawn) > 0 && performance.now()",
                                                   arg=e.element_handle(), polling=10).json_value()) - t0)
        times.append(float(page.wait_for_function(done, arg=e.element_handle(), polling=10).json_value()) - t0)
        shown = int(e.evaluate("el => Number(el.dataset.thumbs)"))
        if len(times) == 1:
            e.locator(".picsift-tool[data-tool=fit]").click()
    with_thumbs = pan(page, e, seconds)
    with_thumbs["shown"] = int(e.evaluate("el => Number(el.dataset.thumbs)"))
    nb.run_next()  # map_thumbnails = False
    page.wait_for_function("el => el.dataset.thumbs === '0'", arg=e.element_handle())
    e.evaluate("(el, v) => el.__picsiftView(v)", view)
    points_only = pan(page, e, seconds)
    nb.run_next()  # close
    return {"first_frame_ms": first, "fitted": fitted, "tenth": tenth, "lasso_ms": select["ms"],
            "lasso_found": select["found"], "cold_ms": times[0], "warm_ms": times[1], "first_cold_ms": firsts[0],
            "shown": shown, "thumbs": with_thumbs, "points": points_only}


def report(nb: Any, n: int, seconds: float) -> None:
    r = thumbs(nb, n, seconds)
    print(f"\n## Thumbnails on a {n:,}-point 2D map (DataFrame with an image column)\n")
    print(table([[f"{n:,}", r["first_frame_ms"], f"{moved['drawn']:,.0f} ({moved['drawn'] / n:.0%})",
                  moved["frame_ms"], moved["frame_p90_ms"], r["lasso_ms"], f"{r['lasso_found']:,}"]
                 for moved in (r["fitted"], r["tenth"])],
                ["points", "first frame ms", "points drawn per moving frame", "pan frame ms (median)", "p90 ms",
                 "lasso 2D ms (in the page)", "points inside"]))
    print()
    t, p = r["thumbs"], r["points"]
    print(table([[f"{r['shown']:,}", r["first_cold_ms"], r["cold_ms"], r["warm_ms"], t["frame_ms"], t["frame_p90_ms"],
                  1000 / t["frame_ms"], p["frame_ms"], t["frame_ms"] / p["frame_ms"]]],
                ["thumbnails on screen", "zoom -> first drawn ms (cold)", "-> all drawn ms (cold)", "... (warm)",
                 "pan frame ms (median)", "p90 ms", "frames/s", "points-only pan frame ms", "x points only"]))


def lasso(page: Any, explorer: Any, vertices: int = 64) -> dict[str, float]:
    """Drag a round lasso (``vertices`` corners, radius 12% of the map's side) over the middle of the 3D map
    (the view fits every point, so the gaussian's core is small); the front-end's time to
    find the points inside (a grid of the points' screen positions, then a point-in-polygon test only in
    the cells the outline crosses)."""
    explorer.locator(".picsift-tool[data-mode=lasso]").click()
    box = explorer.locator("canvas.picsift-map").bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) * 0.12
    corners = [(cx + r * math.cos(2 * math.pi * k / vertices), cy + r * math.sin(2 * math.pi * k / vertices))
               for k in range(vertices + 1)]
    drag_through(page, corners)
    page.wait_for_function("el => el.__picsift.select", arg=explorer.element_handle())
    result = explorer.evaluate("el => el.__picsift.select")
    explorer.locator(".picsift-tool[data-mode=move]").click()
    return result
