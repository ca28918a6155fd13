"""Take the README's screenshots of the app: the demo images, the offline model, a real JupyterLab.

    .venv/bin/python docs/screenshot.py [--prompt "a picture of vehicles"]

Writes docs/images/app.png (the whole app after a search) and docs/images/map.png (the 2D UMAP map
coloured by folder, with a lasso being drawn).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import chromium, jupyterlab, open_and_run, write_notebook  # noqa: E402

import picsift  # noqa: E402
from picsift.demo import fetch_tuxpaint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompt", default="a picture of vehicles")
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "app.png"))
    parser.add_argument("--map-out", default=str(REPO / "docs" / "images" / "map.png"))
    args = parser.parse_args()
    stamps = fetch_tuxpaint()
    with picsift.Library(stamps, model="picsift-offline") as library:
        library.update()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
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


def map_with_lasso(page: Any, out: str) -> None:
    """The 2D UMAP map coloured by folder, mid-way through a lasso around its densest part."""
    explorer = page.locator(".picsift-explorer")
    explorer.locator(".picsift-dims").select_option("2")
    explorer.locator(".picsift-color-by").select_option("folder")
    explorer.locator(".picsift-drag-mode").select_option("lasso")
    if not explorer.locator(".picsift-umap").is_disabled():
        explorer.locator(".picsift-umap").click()
    page.wait_for_function(
        "() => document.querySelector('.picsift-projection-state').textContent.startsWith('umap ·')",
        timeout=300_000)
    page.wait_for_timeout(1000)
    box = explorer.locator("canvas").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    rx, ry = box["width"] * 0.18, box["height"] * 0.16
    outline = [(cx + rx * math.cos(t) * (1 + 0.25 * math.sin(3 * t)), cy + ry * math.sin(t))
               for t in (2 * math.pi * k / 40 for k in range(40))]
    page.mouse.move(*outline[0])
    page.mouse.down()
    for point in outline[1:]:
        page.mouse.move(*point)
    explorer.screenshot(path=out)
    page.mouse.up()


if __name__ == "__main__":
    main()
