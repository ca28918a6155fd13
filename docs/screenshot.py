"""Take the README's screenshots of the app: the demo images, the offline model, a real JupyterLab.

    .venv/bin/python docs/screenshot.py [--prompt "a picture of vehicles"]

Writes docs/images/app.png (the whole app after a search), docs/images/map.png (the 2D UMAP map
coloured by folder, with a lasso being drawn), and two pictures of the explorer on a DataFrame built from
the same map: docs/images/explorer-legend.png (coloured by folder: names and counts in the legend, the
toolbar, a tooltip with fields and a thumbnail) and docs/images/explorer-colorbar.png (coloured by a
search's score: a colour bar with its range, axes, a lasso selection), and docs/images/explorer-thumbnails.png
(the folder map zoomed in until its points are drawn as their images' thumbnails, one selected). ``--only serve``
takes just docs/images/serve.png: the page ``picsift serve`` shows, in Chromium, after a search and a box selection
on the map.

    .venv/bin/python docs/screenshot.py --thumbnails-only   # only explorer-thumbnails.png
"""

from __future__ import annotations

import argparse
import math
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import chromium, drag_through, free_port, jupyterlab, open_and_run, write_notebook  # noqa: E402

import picsift  # noqa: E402
from picsift.demo import fetch_tuxpaint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompt", default="a picture of vehicles")
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "app.png"))
    parser.add_argument("--map-out", default=str(REPO / "docs" / "images" / "map.png"))
    parser.add_argument("--explorer-out", default=str(REPO / "docs" / "images" / "explorer-legend.png"))
    parser.add_argument("--colorbar-out", default=str(REPO / "docs" / "images" / "explorer-colorbar.png"))
    parser.add_argument("--serve-out", default=str(REPO / "docs" / "images" / "serve.png"))
    parser.add_argument("--only", choices=["all", "serve"], default="all", help="serve: only the served page")
    parser.add_argument("--thumbnails-out", default=str(REPO / "docs" / "images" / "explorer-thumbnails.png"))
    parser.add_argument("--thumbnails-only", action="store_true")
    args = parser.parse_args()
    stamps = fetch_tuxpaint()
    with picsift.Library(stamps, model="picsift-offline") as library:
        library.update(reembed=True)  # the demo cache: a new offline model version embeds it again
    if not args.thumbnails_only:
        served_page(stamps, args.prompt, args.serve_out)
        print(f"wrote {args.serve_out}")
        if args.only == "serve":
            return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.thumbnails_only:
            write_notebook(root / "explorer.ipynb", [EXPLORERS.format(folder=str(stamps), prompt=args.prompt)])
            with jupyterlab(root) as lab, chromium(viewport=(1500, 1700)) as page:
                open_and_run(page, lab, "explorer.ipynb")
                page.wait_for_function("() => document.querySelectorAll('.picsift-explorer[data-first-frame]')"
                                       ".length === 2", timeout=300_000)
                map_with_thumbnails(page, args.thumbnails_out)
            print(f"wrote {args.thumbnails_out}")
            return
        write_notebook(root / "app.ipynb", [
            f"import picsift\npanel = picsift.app({str(stamps)!r}, model='picsift-offline')\npanel",
        ])
        with jupyterlab(root) as lab, chromium(viewport=(1500, 1250)) as page:
            open_and_run(page, lab, "app.ipynb")
            prompt = page.locator(".picsift-prompt-input")
            prompt.wait_for(timeout=120_000)
            page.wait_for_function("() => !document.querySelector('.picsift-prompt-input').disabled",
                                   timeout=120_000)
            prompt.fill(args.prompt)
            prompt.press("Enter")
            page.wait_for_function(
                "() => document.querySelectorAll('.picsift-tile.loaded img[src^=blob]').length >= 12",
                timeout=120_000)
            page.wait_for_timeout(1500)  # let the map finish its first full frame
            page.locator(".jp-OutputArea-output").first.screenshot(path=args.out)
            print(f"wrote {args.out}")
            map_with_lasso(page, args.map_out)
            print(f"wrote {args.map_out}")
        second = root / "explorers"  # a lab of its own: a lab reopens the last one's notebooks from its folder
        second.mkdir()
        write_notebook(second / "explorer.ipynb", [EXPLORERS.format(folder=str(stamps), prompt=args.prompt)])
        with jupyterlab(second) as lab, chromium(viewport=(1500, 1700)) as page:
            open_and_run(page, lab, "explorer.ipynb")
            explorers_on_a_dataframe(page, args.explorer_out, args.colorbar_out)
            map_with_thumbnails(page, args.thumbnails_out)
            print(f"wrote {args.explorer_out}, {args.colorbar_out} and {args.thumbnails_out}")


def served_page(stamps: Path, prompt: str, out: str) -> None:
    """``picsift serve`` on the demo images (127.0.0.1, a free port), photographed after a search and a box
    selection on the map; the server is stopped with Ctrl-C (SIGINT), as a person would."""
    port, token = free_port(), secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with open(log, "wb") as output:
            server = subprocess.Popen(
                [sys.executable, "-m", "picsift", "serve", str(stamps), "--model", "picsift-offline", "--no-browser",
                 "--port", str(port), "--token", token], stdout=output, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            while not re.search(r"picsift: open (\S+)", log.read_text()):
                if server.poll() is not None:
                    raise RuntimeError(f"picsift serve exited:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            with chromium(viewport=(1500, 1400)) as page:
                page.set_default_timeout(180_000)
                page.goto(f"http://127.0.0.1:{port}/?token={token}")
                page.wait_for_selector(".picsift-prompt[data-ready='true']")
                page.wait_for_selector(".picsift-explorer[data-first-frame]")
                prompt_box = page.locator(".picsift-prompt-input")
                prompt_box.fill(prompt)
                prompt_box.press("Enter")
                page.wait_for_function(
                    "() => document.querySelectorAll('.picsift-tile.loaded img[src^=blob]').length >= 12")
                box = page.locator(".picsift-explorer canvas.picsift-map").bounding_box()
                page.locator(".picsift-tool[data-mode=box]").click()
                drag_through(page, [(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1),
                                    (box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.45)])
                page.wait_for_function("() => Number(document.querySelector('.picsift-actions').dataset.selected) > 0")
                page.wait_for_timeout(1500)  # let the map finish its full frame
                page.locator(".picsift-page").screenshot(path=out)
        finally:
            server.send_signal(2)  # SIGINT: Voila shuts its kernels down
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()


EXPLORERS = """
import pandas as pd, picsift, ipywidgets
from picsift.analysis.projection import update_map
from picsift.widgets import Explorer
lib = picsift.Library({folder!r}, model="picsift-offline")
snapshot = lib.store.snapshot()
coords = update_map(lib.store.folder / "projections", snapshot, "umap", dims=2).coords
paths = lib.paths(snapshot.ids.tolist())
hits = lib.search({prompt!r}, limit=None)
df = pd.DataFrame({{"x": coords[:, 0], "y": coords[:, 1],
                   "folder": [paths[i].parent.name for i in snapshot.ids],
                   "path": [str(paths[i]) for i in snapshot.ids],
                   "score": pd.Series(hits.scores, index=hits.scope_ids).reindex(snapshot.ids).to_numpy()}},
                  index=[paths[i].stem for i in snapshot.ids])  # the tooltip's title
by_folder = Explorer(data=df, x="x", y="y", color_by="folder", tooltip=["folder", "score"], image="path",
                     layout={{"width": "900px"}})
by_score = Explorer(data=df, x="x", y="y", color_by="score", tooltip=["folder", "score"], axes=True,
                    layout={{"width": "900px"}})
ipywidgets.VBox([by_folder, by_score])
"""


def explorers_on_a_dataframe(page: Any, legend_out: str, colorbar_out: str) -> None:
    """A DataFrame of the UMAP map: by folder with a tooltip, then by score with axes and a lasso."""
    page.wait_for_function("() => document.querySelectorAll('.picsift-explorer[data-first-frame]').length === 2",
                           timeout=300_000)
    by_folder, by_score = page.locator(".picsift-explorer").nth(0), page.locator(".picsift-explorer").nth(1)
    by_folder.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    box = by_folder.locator("canvas.picsift-map").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    points = by_folder.evaluate(
        "el => Array.from({length: Number(el.dataset.points)}, (_, i) => el.__picsiftScreen(i))")
    x, y = min((p for p in points if p), key=lambda p: (p[0] - centre[0] - 60) ** 2 + (p[1] - centre[1]) ** 2)
    page.mouse.move(x + 30, y + 30)
    page.mouse.move(x, y, steps=4)
    page.wait_for_selector(".picsift-explorer .picsift-tooltip:not([hidden]) img", timeout=60_000)
    by_folder.screenshot(path=legend_out)
    page.mouse.move(5, 5)
    by_score.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    by_score.locator(".picsift-tool[data-mode=lasso]").click()
    box = by_score.locator("canvas.picsift-map").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5
    rx, ry = box["width"] * 0.16, box["height"] * 0.18
    outline = [(cx + rx * math.cos(t) * (1 + 0.2 * math.sin(2 * t)), cy + ry * math.sin(t))
               for t in (2 * math.pi * k / 48 for k in range(49))]
    drag_through(page, outline)
    page.wait_for_function("el => Number(el.dataset.selected) > 0", arg=by_score.element_handle())
    page.wait_for_timeout(500)
    by_score.screenshot(path=colorbar_out)


def map_with_thumbnails(page: Any, out: str) -> None:
    """The folder map zoomed in (the wheel, around a point right of the centre) until a few dozen points are
    on screen: each drawn as its thumbnail framed in its folder's colour; one is selected, another hovered."""
    explorer = page.locator(".picsift-explorer").nth(0)
    explorer.scroll_into_view_if_needed()
    page.mouse.move(5, 5)
    explorer.locator(".picsift-tool[data-tool=fit]").click()
    box = explorer.locator("canvas.picsift-map").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    points = explorer.evaluate("el => Array.from({length: Number(el.dataset.points)}, (_, i) => el.__picsiftScreen(i))")
    x, y = min((p for p in points if p), key=lambda p: (p[0] - centre[0] - 120) ** 2 + (p[1] - centre[1]) ** 2)
    page.mouse.move(x, y)
    for _ in range(20):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(200)
        shown = int(explorer.evaluate("el => Number(el.dataset.thumbs)"))
        if 0 < shown <= 45:
            break
    page.wait_for_function("el => el.dataset.thumbsMissing === '0' && Number(el.dataset.thumbsDrawn) > 0",
                           arg=explorer.element_handle(), timeout=60_000)
    drawn = explorer.evaluate("el => el.__picsiftThumbs().drawn")
    at = {i: explorer.evaluate(f"el => el.__picsiftScreen({i})") for i in drawn}
    inside = [i for i, p in at.items() if box["x"] + 80 < p[0] < box["x"] + box["width"] - 80
              and box["y"] + 80 < p[1] < box["y"] + box["height"] - 80]
    chosen, hovered = inside[0], inside[len(inside) // 2]
    explorer.locator(".picsift-tool[data-mode=box]").click()
    cx, cy = at[chosen]
    drag_through(page, [(cx - 4, cy - 4), (cx + 4, cy + 4)])
    page.wait_for_function("el => el.dataset.selected === '1'", arg=explorer.element_handle())
    explorer.locator(".picsift-tool[data-mode=move]").click()
    page.mouse.move(*at[hovered])
    page.wait_for_selector(".picsift-explorer .picsift-tooltip:not([hidden]) img", timeout=60_000)
    page.wait_for_timeout(300)
    explorer.screenshot(path=out)
    page.mouse.move(5, 5)


def map_with_lasso(page: Any, out: str) -> None:
    """The 2D UMAP map coloured by folder, mid-way through a lasso around its densest part."""
    explorer = page.locator(".picsift-explorer")
    explorer.locator(".picsift-dims").select_option("2")
    explorer.locator(".picsift-color-by").select_option("folder")
    explorer.locator(".picsift-tool[data-mode=lasso]").click()
    if not explorer.locator(".picsift-umap").is_disabled():
        explorer.locator(".picsift-umap").click()
    page.wait_for_function(
        "() => document.querySelector('.picsift-projection-state').textContent.startsWith('umap ·')",
        timeout=300_000)
    page.wait_for_timeout(1000)
    box = explorer.locator("canvas.picsift-map").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    rx, ry = box["width"] * 0.18, box["height"] * 0.16
    outline = [(cx + rx * math.cos(t) * (1 + 0.25 * math.sin(3 * t)), cy + ry * math.sin(t))
               for t in (2 * math.pi * k / 40 for k in range(40))]
    drag_through(page, outline, release=False)
    explorer.screenshot(path=out)
    page.mouse.up()


if __name__ == "__main__":
    main()
