"""Widget benchmarks in a real JupyterLab + headless Chromium (Debian's, driven by Playwright).

* **explorer**: from running the cell that displays an ``Explorer`` to its first drawn frame (WebGL,
  ``gl.finish()`` included), the time a 64-corner lasso in 2D takes to find the points inside, and the
  frame time while it rotates (rAF interval and draw time), at 100k and 1M points (random 3D
  coordinates; the point count is what matters to the renderer).
  Baseline: the same measurement at 1k points in the same browser session, as a ratio.
* **thumbs**: a 1M-point 2D DataFrame explorer with an image column (the Tux Paint stamps, cycled): first
  frame; frames while panning the fitted view (points drawn per frame); a lasso in 2D (in the page); then the
  view set on a region of about 300 points: time until every one is drawn as its thumbnail, cold (the kernel
  encodes each WebP) and warm (zoomed out and back: the browser's cache); frames while panning there with
  thumbnails, against the same pan with ``map_thumbnails = False`` (points only) as the baseline.
* **gallery**: 10k results (ids cycling over the ~800 Tux Paint stamps, so thumbnails are real WebP
  bytes: the first screens encode them, later ones hit the memory cache): time from running the
  cell to the first screen of thumbnails, and to scroll through all 10k a screen at a time, waiting
  for each screen's thumbnails.
* **slider**: a ``ScoreRange`` linked to a ``Gallery`` over 1M scores: time from a pointer move on
  the slider handle to the gallery's count changing (a kernel round trip + a binary search in JS).
  Baseline: the same with 1k scores.
* **peers** (``--peers``): the explorer against jupyter-scatter on the same 2D DataFrame at 100k and 1M
  points: first frame, moving frame time and points drawn, lasso -> Python, browser memory and bytes
  received (see ``bench/widgets_peers.py``). jupyter-scatter comes with the dev extra
  (``pip install -e ".[dev]"``).

The machine has no GPU: Chromium draws WebGL with SwiftShader (CPU), so frame times here are an
upper bound for any machine with a GPU.

    python bench/widgets.py            # everything but the peers (a few minutes)
    python bench/widgets.py --quick    # 100k points only, 2k gallery results
    python bench/widgets.py --parts thumbs   # only the thumbnails on a 1M-point map
    python bench/widgets.py --parts peers --peers   # only the comparison with jupyter-scatter
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import widgets_thumbs  # noqa: E402
from common import header, median, percentile, table  # noqa: E402
from tests.e2e.harness import chromium, jupyterlab, write_notebook  # noqa: E402
from widgets_thumbs import lasso  # noqa: E402

SETUP = '''
import numpy as np, traitlets, ipywidgets
from pathlib import Path
from picsift.demo import fetch_tuxpaint
from picsift.widgets import Explorer, Gallery, ScoreRange
from picsift.widgets._thumbnails import ThumbnailCache

class StampSource:
    """Ids "i<n>" cycling over the Tux Paint stamps (what Gallery needs of an ImageSource)."""
    def __init__(self):
        self.files = sorted(fetch_tuxpaint().rglob("*.png"))
        self.thumbnails = ThumbnailCache(None)
    def path(self, image_id):
        return self.files[int(image_id[1:]) % len(self.files)]
    def paths(self, ids):
        return {i: self.path(i) for i in ids}
    def thumbnail_batch(self, ids):
        return [self.path(i).name for i in ids], [self.thumbnails.get(str(self.path(i)), self.path(i)) for i in ids]

rng = np.random.default_rng(0)
POINTS = rng.normal(size=(MAX_POINTS, 3)).astype(np.float32)
source = StampSource()
"ready"
'''


def cells(sizes: list[int], gallery_n: int, parts: set[str], thumbs_n: int = 1_000_000) -> list[tuple[str, str]]:
    """(name, source) of each notebook cell, run one at a time."""
    out = [("setup", SETUP.replace("MAX_POINTS", str(max(sizes))))]
    for n in [1000, *sizes] if "explorer" in parts else []:
        out.append((f"explorer-{n}", f"e{n} = Explorer(points=POINTS[:{n}], layout={{'width': '900px'}}); e{n}"))
        out.append((f"rotate-{n}", f"e{n}._autorotate = True"))
        out.append((f"stop-{n}", f"e{n}._autorotate = False; e{n}.close()"))
    if "thumbs" in parts:
        out.append(("thumbs", widgets_thumbs.CELL.replace("N_POINTS", str(thumbs_n))))
        out.append(("thumbs-off", "t.map_thumbnails = False"))
        out.append(("thumbs-close", "t.close()"))
    if "gallery" in parts:
        out.append(("gallery", f"g = Gallery(source, limit={gallery_n});"
                               f" g.show([f'i{{k}}' for k in range({gallery_n})],"
                               f" np.linspace(1, 0, {gallery_n}, dtype=np.float32)); g"))
        out.append(("gallery-close", "g.close()"))
    for n in (1000, 1_000_000) if "slider" in parts else ():
        out.append((f"slider-{n}", f"s = ScoreRange(rng.random({n}).astype(np.float32)); gs = Gallery(source);"
                                   f" gs.show([f'i{{k}}' for k in range({n})], s.scores);"
                                   " traitlets.dlink((s, 'score_range'), (gs, 'score_range'));"
                                   " ipywidgets.jsdlink((s, 'score_range'), (gs, 'score_range'));"
                                   " ipywidgets.VBox([s, gs])"))
        out.append((f"slider-close-{n}", "s.close(); gs.close()"))
    return out


class Notebook:
    """Runs the cells of the open notebook one at a time (Shift+Enter) and waits on DOM state."""

    def __init__(self, page: Any):
        self.page = page
        self.index = 0

    def run_next(self) -> float:
        """Run the next cell; returns performance.now() in the page just before the keypress."""
        cell = self.page.locator(".jp-Notebook .jp-CodeCell").nth(self.index)
        cell.locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Escape")
        start = self.page.evaluate("() => performance.now()")
        self.page.keyboard.press("Shift+Enter")
        self.page.wait_for_function(
            f"() => /\\[\\d+\\]/.test(document.querySelectorAll('.jp-Notebook .jp-CodeCell')[{self.index}]"
            ".querySelector('.jp-InputPrompt').textContent)", timeout=300_000)
        self.index += 1
        return float(start)


def explorer(nb: Notebook, n: int, seconds: float) -> dict[str, float]:
    page = nb.page
    start = nb.run_next()
    selector = ".picsift-explorer[data-first-frame]"
    page.wait_for_selector(f"{selector}[data-points='{n}']", timeout=300_000)
    first = float(page.eval_on_selector(f".picsift-explorer[data-points='{n}']", "el => Number(el.dataset.firstFrame)"))
    page.locator(f".picsift-explorer[data-points='{n}'] canvas.picsift-map").scroll_into_view_if_needed()
    select = lasso(page, page.locator(f".picsift-explorer[data-points='{n}']"))
    nb.run_next()  # _autorotate = True
    page.wait_for_timeout(seconds * 1000)
    stats = page.eval_on_selector(f".picsift-explorer[data-points='{n}']",
                                  "el => ({frames: el.__picsift.frames.slice(), draws: el.__picsift.draws.slice(),"
                                  " drawn: el.__picsift.drawn.slice()})")
    nb.run_next()  # stop, close
    frames = stats["frames"][3:]  # skip the frames before the rotation settled
    intervals = [b - a for a, b in itertools.pairwise(frames)]
    return {"first_frame_ms": first - start, "frame_ms": median(intervals), "frame_p90_ms": percentile(intervals, 90),
            "draw_ms": median(stats["draws"][3:]), "frames": len(intervals), "drawn": median(stats["drawn"][-20:]),
            "lasso_ms": select["ms"], "lasso_found": select["found"]}


def gallery(nb: Notebook, n: int) -> dict[str, float]:
    page = nb.page
    start = nb.run_next()
    page.wait_for_selector(f".picsift-gallery[data-count='{n}']", timeout=120_000)
    loaded = ("() => { const g = [...document.querySelectorAll('.picsift-gallery')].pop();"
              " const s = g.querySelector('.picsift-gallery-scroller');"
              " if (g.dataset.renderedScroll !== String(Math.round(s.scrollTop))) return false;"
              " const top = s.scrollTop, bottom = top + s.clientHeight;"
              " const tiles = [...g.querySelectorAll('.picsift-tile')].filter(t => {"
              "   const y = new DOMMatrix(getComputedStyle(t).transform).m42;"
              "   return y + t.offsetHeight > top && y < bottom; });"
              " return tiles.length > 0 && tiles.every(t => t.classList.contains('loaded'))"
              "   ? performance.now() : false; }")
    first = float(page.wait_for_function(loaded, timeout=120_000).json_value())
    scroller = ".picsift-gallery .picsift-gallery-scroller"
    page.locator(scroller).scroll_into_view_if_needed()
    t0 = time.perf_counter()
    screens = 0
    while True:
        at_end = page.eval_on_selector(scroller,
                                       "el => { const end = el.scrollTop + el.clientHeight >= el.scrollHeight - 1;"
                                                 " el.scrollTop += el.clientHeight; return end; }")
        if at_end:
            break
        page.wait_for_function(loaded, timeout=60_000)
        screens += 1
    total = time.perf_counter() - t0
    nb.run_next()
    return {"first_thumbnails_ms": first - start, "scroll_s": total, "screens": screens,
            "per_screen_ms": 1000 * total / max(screens, 1)}


def slider(nb: Notebook, n: int, moves: int = 12) -> dict[str, float]:
    page = nb.page
    nb.run_next()
    page.wait_for_selector(f".picsift-gallery[data-count='{n}']", timeout=300_000)
    page.evaluate("""() => {
        window.__moves = []; window.__changes = [];
        window.addEventListener('pointermove', () => window.__moves.push(performance.now()), true);
        const g = [...document.querySelectorAll('.picsift-gallery')].pop();
        new MutationObserver(() => window.__changes.push([performance.now(), g.dataset.count]))
            .observe(g, {attributes: true, attributeFilter: ['data-count']});
    }""")
    page.locator(".picsift-score-range").last.scroll_into_view_if_needed()  # mouse events need it on screen
    hist = page.locator(".picsift-hist").last.bounding_box()
    handle = page.locator(".picsift-handle-low").last.bounding_box()
    assert hist is not None and handle is not None
    y = hist["y"] + hist["height"] / 2
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    latencies = []
    for k in range(1, moves + 1):
        before = page.evaluate("() => window.__changes.length")
        page.mouse.move(hist["x"] + hist["width"] * (0.04 * k), y)
        page.wait_for_function(f"() => window.__changes.length > {before}", timeout=30_000)
        moved, changed = page.evaluate("() => [window.__moves[window.__moves.length - 1], "
                                       "window.__changes[window.__changes.length - 1][0]]")
        latencies.append(changed - moved)
    page.mouse.up()
    nb.run_next()
    return {"latency_ms": median(latencies), "p90_ms": percentile(latencies, 90), "moves": len(latencies)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rotate-seconds", type=float, default=4.0)
    parser.add_argument("--parts", default="explorer,thumbs,gallery,slider", help="comma-separated subset to run")
    parser.add_argument("--peers", action="store_true", help="also compare the explorer with jupyter-scatter")
    parser.add_argument("--peer-sizes", default="100000,1000000", help="point counts of the peer comparison")
    parser.add_argument("--pan-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    header("picsift widget benchmarks (JupyterLab + headless Chromium, SwiftShader WebGL)", ["bench/widgets.py", *argv])
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    gallery_n = 2_000 if args.quick else 10_000
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parts = set(args.parts.split(",")) | ({"peers"} if args.peers else set())
    if "peers" in parts:
        try:
            import jscatter  # noqa: F401
        except ImportError as e:
            raise SystemExit('--peers needs jupyter-scatter: pip install -e ".[dev]"') from e
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if parts & {"explorer", "thumbs", "gallery", "slider"}:
            run_own(root, sizes, gallery_n, parts, args.rotate_seconds)
        if "peers" in parts:  # a lab of its own (a lab restores the last one's open notebooks from its folder)
            (root / "peers").mkdir()
            run_peers(root / "peers", [int(n) for n in args.peer_sizes.split(",")], args.pan_seconds)


def open_notebook(page: Any, lab: Any, name: str) -> str:
    page.goto(lab.url(name))
    page.wait_for_function("() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                           ".some(e => /\\|\\s*Idle/.test(e.textContent))")
    return str(page.evaluate("() => { const gl = document.createElement('canvas').getContext('webgl2');"
                             " const d = gl && gl.getExtension('WEBGL_debug_renderer_info');"
                             " return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : 'unknown'; }"))


def run_own(root: Path, sizes: list[int], gallery_n: int, parts: set[str], rotate_seconds: float) -> None:
    notebook_cells = cells(sizes, gallery_n, parts)
    write_notebook(root / "bench.ipynb", [source for _, source in notebook_cells])
    with jupyterlab(root) as lab, chromium(viewport=(1400, 1000)) as page:
        page.set_default_timeout(120_000)
        print(f"# WebGL renderer: {open_notebook(page, lab, 'bench.ipynb')}\n")
        nb = Notebook(page)
        nb.run_next()  # setup
        if "explorer" in parts:
            report_explorer(nb, sizes, rotate_seconds)
        if "thumbs" in parts:
            widgets_thumbs.report(nb, 1_000_000, rotate_seconds)
        if "gallery" in parts:
            report_gallery(nb, gallery_n)
        if "slider" in parts:
            report_slider(nb)


def run_peers(root: Path, sizes: list[int], pan_seconds: float) -> None:
    import widgets_peers as peers

    write_notebook(root / "peers.ipynb", peers.cells(sizes))
    with jupyterlab(root) as lab, chromium(viewport=(1400, 1000)) as page:
        page.set_default_timeout(120_000)
        page.add_init_script(peers.WEBGL_HOOK)
        probe = peers.Probe(page)
        print(f"# WebGL renderer (peers): {open_notebook(page, lab, 'peers.ipynb')}")
        peers.report(Notebook(page), probe, sizes, pan_seconds)


def report_explorer(nb: Notebook, sizes: list[int], seconds: float) -> None:
    rows = []
    results = {n: explorer(nb, n, seconds) for n in [1000, *sizes]}
    base = results[1000]
    for n, r in results.items():
        rows.append([f"{n:,}", r["first_frame_ms"], r["first_frame_ms"] / base["first_frame_ms"],
                     r["frame_ms"], r["frame_p90_ms"], f"{r['drawn']:,.0f}", r["frame_ms"] / base["frame_ms"],
                     r["lasso_ms"], f"{r['lasso_found']:,}", r["lasso_ms"] / base["lasso_ms"]])
    print("## Explorer: display() -> first frame, frame time while rotating, lasso select in 3D\n")
    print(table(rows, ["points", "first frame ms", "x 1k", "frame ms (median)", "frame p90 ms",
                       "points drawn per frame while moving", "frame x 1k", "lasso ms", "points inside",
                       "lasso x 1k"]))


def report_gallery(nb: Notebook, gallery_n: int) -> None:
    g = gallery(nb, gallery_n)
    print(f"\n## Gallery: {gallery_n:,} results\n")
    print(table([[f"{gallery_n:,}", g["first_thumbnails_ms"], g["screens"], g["scroll_s"], g["per_screen_ms"]]],
                ["results", "first thumbnails ms", "screens scrolled", "scroll all s", "per screen ms"]))


def report_slider(nb: Notebook) -> None:
    sliders = {n: slider(nb, n) for n in (1000, 1_000_000)}
    print("\n## Slider: pointer move -> gallery updated\n")
    print(table([[f"{n:,}", s["latency_ms"], s["p90_ms"], s["latency_ms"] / sliders[1000]["latency_ms"],
                  s["moves"]] for n, s in sliders.items()],
                ["scores", "latency ms (median)", "p90 ms", "x 1k", "moves"]))


if __name__ == "__main__":
    main(sys.argv[1:])
