"""Take the README's picture of the Health tab: the demo images labelled by folder, the offline model, a real
JupyterLab.

    .venv/bin/python docs/screenshot_health.py

Writes docs/images/health.png: the checks run on the folder labels, the label mistakes in the gallery with the
given and suggested class on each card.
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
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "health.png"))
    args = parser.parse_args()
    stamps = fetch_tuxpaint()
    with picsift.Library(stamps, model="picsift-offline") as library:
        library.update(reembed=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_notebook(root / "app.ipynb", [
            f"import picsift\npanel = picsift.app({str(stamps)!r}, model='picsift-offline', explorer=False)\npanel",
        ])
        with jupyterlab(root) as lab, chromium(viewport=(1300, 1500)) as page:
            open_and_run(page, lab, "app.ipynb")
            page.wait_for_selector(".picsift-prompt[data-ready='true']", timeout=180_000)
            page.select_option(".picsift-health-field", "folder")
            page.locator(".picsift-run-health").click()
            page.wait_for_function(
                "() => document.querySelector('.picsift-gallery .picsift-title').textContent.includes('health')"
                " && document.querySelectorAll('.picsift-tile.loaded[data-note]').length >= 12", timeout=300_000)
            page.wait_for_timeout(1000)
            page.locator(".jp-OutputArea-output").first.screenshot(path=args.out)
            print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
