"""Take the README's screenshot of the app: the demo images, the offline model, a real JupyterLab.

    .venv/bin/python docs/screenshot.py [--prompt "a picture of vehicles"]

Writes docs/images/app.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import chromium, jupyterlab, open_and_run, write_notebook  # noqa: E402

import picsift  # noqa: E402
from picsift.demo import fetch_tuxpaint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompt", default="a picture of vehicles")
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "app.png"))
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


if __name__ == "__main__":
    main()
