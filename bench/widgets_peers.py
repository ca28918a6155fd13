"""The explorer against jupyter-scatter in the same JupyterLab, the same Chromium and the same data.

Run by ``bench/widgets.py --peers``. Each contender shows the same 2D points (8 gaussian clusters, a
categorical colour column) as a DataFrame, and is measured the same way, from the outside:

* **first frame**: running the cell -> the first WebGL draw call that draws at least half of the points
  has finished (a hook on ``drawArrays``/``drawElements`` calls ``gl.finish()`` once, on that call);
* **moving**: a 3 s pan drag: the interval between frames (draw calls grouped into frames) and the
  points each frame drew (the explorer draws a sample over a density layer when a frame would be slow);
* **lasso -> Python**: a 64-corner round lasso; from the browser's ``pointerup`` to the Python callback that
  sees the selection (both stamped with the machine's wall clock: ``Date.now()``, ``time.time()``), and on
  to an ``ipywidgets.Label`` the callback sets showing in the page (the round trip); the explorer's count
  is checked against the points inside the drawn outline (counted in the page);
* **memory**: the browser's processes (proportional set size, so shared pages count once) and the JS heap,
  after garbage collection, before the cell and after its first frame;
* **bytes**: what the page received over the kernel's websocket from running the cell to the first frame.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from typing import Any

from common import median, percentile, table

PEERS = ("picsift", "jupyter-scatter")

SETUP = '''
import json, time, numpy as np, pandas as pd, ipywidgets
from picsift.widgets import Explorer
import jscatter
rng = np.random.default_rng(0)
N = MAX_POINTS
centres = rng.normal(scale=4.0, size=(8, 2))
kind = rng.integers(0, 8, N)
xy = (centres[kind] + rng.normal(size=(N, 2))).astype(np.float32)
DF = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "kind": pd.Categorical([f"cluster {k}" for k in range(8)])[kind]})
echo = ipywidgets.Label("")
"ready"
'''

SHOW = {
    "picsift": ('w = Explorer(data=DF.iloc[:{n}], x="x", y="y", color_by="kind", layout={{"width": "900px"}})\n'
                'w.on_select(lambda idx: setattr(echo, "value", json.dumps([len(idx), time.time() * 1000])))\n'
                'ipywidgets.VBox([w, echo])'),
    "jupyter-scatter": ('s = jscatter.Scatter(data=DF.iloc[:{n}], x="x", y="y", color_by="kind", height=560)\n'
                        's.lasso(min_delay=0, min_dist=1)\n'
                        's.widget.observe(lambda c: setattr(echo, "value", json.dumps([0 if c.new is None else'
                        ' len(c.new), time.time() * 1000])), "selection")\n'
                        'ipywidgets.VBox([s.show(), echo], layout={{"width": "900px"}})'),
}
LASSO_MODE = {"picsift": None, "jupyter-scatter": 's.mouse("lasso"); "lasso"'}
CLOSE = {"picsift": 'w.close(); echo.value = ""', "jupyter-scatter": 's.widget.close(); echo.value = ""'}

#: Injected into every page before it loads: records every WebGL draw call (time, points drawn) and
#: finishes the first one that draws at least `window.__bigDraw` points, timing when its pixels are done.
WEBGL_HOOK = """
(() => {
  window.__draws = [];
  window.__bigDraw = Infinity;
  window.__firstBig = null;
  for (const proto of [WebGLRenderingContext.prototype, WebGL2RenderingContext.prototype]) {
    for (const name of ["drawArrays", "drawElements", "drawArraysInstanced", "drawElementsInstanced"]) {
      const original = proto[name];
      if (!original) continue;
      proto[name] = function (...args) {
        const result = original.apply(this, args);
        const instances = name.endsWith("Instanced") ? args[args.length - 1] : 1;
        const count = (name.startsWith("drawArrays") ? args[2] : args[1]) * instances;
        if (window.__firstBig === null && count >= window.__bigDraw) {
          this.finish();
          window.__firstBig = performance.now();
        } else if (window.__finishEach && count >= 1000) this.finish(); // frames that include their pixels
        window.__draws.push([performance.now(), count]);
        if (window.__draws.length > 20000) window.__draws.splice(0, 10000);
        return result;
      };
    }
  }
  window.__pointerUp = [];
  window.addEventListener("pointerup", () => window.__pointerUp.push([performance.now(), Date.now()]), true);
})();
"""


def browser_memory() -> float:
    """MiB held by this process's Chromium (every process of it, proportional set size)."""
    import psutil

    total = 0
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "chrom" in child.name() or "headless_shell" in child.name():
                total += child.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


class Probe:
    """Memory, heap and websocket bytes of one page, with garbage collected first."""

    def __init__(self, page: Any):
        self.page = page
        self.cdp = page.context.new_cdp_session(page)
        self.received = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._count))

    def _count(self, payload: Any) -> None:
        self.received += len(payload)

    def snapshot(self) -> tuple[float, float]:
        self.cdp.send("HeapProfiler.collectGarbage")
        time.sleep(0.5)
        heap = self.cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20
        return browser_memory(), heap


def frames_of(draws: list[list[float]], least: float, gap_ms: float = 5.0) -> list[tuple[float, float]]:
    """(start time, most points drawn) of each frame: draw calls of at least ``least`` points (not a hovered
    point or a lasso outline) closer than ``gap_ms`` share a frame."""
    frames: list[list[float]] = []
    for t, count in draws:
        if count < least:
            continue
        if frames and t - frames[-1][2] < gap_ms:
            frames[-1][1] = max(frames[-1][1], count)
            frames[-1][2] = t
        else:
            frames.append([t, count, t])
    return [(f[0], f[1]) for f in frames]


def canvas_box(page: Any, cell: int) -> dict[str, float]:
    """The bounding box of the biggest canvas in a cell's output (the plot), scrolled to the middle."""
    return page.evaluate(
        "i => { const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[i];"
        " const cs = [...cell.querySelectorAll('.jp-OutputArea canvas')].filter(c => c.offsetWidth > 0);"
        " const c = cs.sort((a, b) => b.offsetWidth * b.offsetHeight - a.offsetWidth * a.offsetHeight)[0];"
        " c.scrollIntoView({block: 'center'}); const r = c.getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; }", cell)


def pan(page: Any, box: dict[str, float], seconds: float, n: int, contender: str) -> dict[str, float]:
    """Drag across the plot for ``seconds``; frame intervals with each frame's pixels finished (for both)."""
    page.evaluate("() => { window.__draws = []; window.__finishEach = true; }")
    started = page.evaluate("() => performance.now()")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    t0 = time.perf_counter()
    k = 0
    least = max(1000, n / 100)
    big_frames = "l => window.__draws.filter(d => d[1] >= l).length"
    while time.perf_counter() - t0 < seconds or (  # at least 5 frames, however slow, up to a minute
            page.evaluate(big_frames, least) < 5 and time.perf_counter() - t0 < 60):
        k += 1
        page.mouse.move(cx + 120 * math.sin(k / 15), cy + 80 * math.sin(k / 23))
    ended = page.evaluate("() => performance.now()")
    page.mouse.up()
    page.wait_for_timeout(300)
    page.evaluate("() => { window.__finishEach = false; }")
    frames = [f for f in frames_of(page.evaluate("() => window.__draws.slice()"), least) if f[0] < ended]
    skip = 2 if len(frames) > 4 else 1  # the first frames of a drag are not yet steady
    intervals = [b[0] - a[0] for a, b in itertools.pairwise(frames[skip:])]
    drawn = [f[1] for f in frames[skip:]]
    if contender == "picsift":  # its own count: the sample, not the density layer's cells drawn with it
        drawn = page.evaluate("([t0, t1]) => { const s = [...document.querySelectorAll('.picsift-explorer')].pop()"
                              ".__picsift; return s.drawn.filter((_, i) => s.frames[i] > t0 && s.frames[i] < t1); }",
                              [started, ended])[skip:]
    return {"frame_ms": median(intervals), "frame_p90_ms": percentile(intervals, 90),
            "drawn": median(drawn), "frames": len(frames)}


def lasso(page: Any, box: dict[str, float], vertices: int = 64) -> dict[str, float]:
    page.evaluate("() => { window.__pointerUp = []; window.__echo = null;"
                  " const label = [...document.querySelectorAll('.widget-label')].pop();"
                  " const before = label.textContent;"
                  " new MutationObserver((_, obs) => { if (label.textContent !== before) {"
                  "   window.__echo = [performance.now(), label.textContent]; obs.disconnect(); } })"
                  ".observe(label, {childList: true, characterData: true, subtree: true}); }")
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) * 0.3
    angles = [2 * math.pi * k / vertices for k in range(vertices + 1)]
    corners = [(round(cx + r * math.cos(a)), round(cy + r * math.sin(a))) for a in angles]
    page.mouse.move(*corners[0])
    page.mouse.down()
    for corner in corners[1:]:
        page.mouse.move(*corner)
    page.mouse.up()
    page.wait_for_function("() => window.__echo", timeout=120_000)
    echoed, up = page.evaluate("() => [window.__echo, window.__pointerUp[window.__pointerUp.length - 1]]")
    found, python_ms = json.loads(echoed[1])
    return {"lasso_ms": python_ms - up[1], "round_trip_ms": echoed[0] - up[0], "found": int(found), "corners": corners}


def inside_count(page: Any, corners: list[tuple[int, int]]) -> int:
    """How many of the explorer's points lie inside the polygon, from their drawn positions (in the page)."""
    return int(page.evaluate(
        "corners => { const el = [...document.querySelectorAll('.picsift-explorer')].pop();"
        " const xs = corners.map(c => c[0]), ys = corners.map(c => c[1]); let n = 0;"
        " for (let i = 0; i < Number(el.dataset.points); i++) { const p = el.__picsiftScreen(i); if (!p) continue;"
        "   let inside = false; for (let a = 0, b = xs.length - 1; a < xs.length; b = a++) {"
        "     if ((ys[a] > p[1]) !== (ys[b] > p[1])"
        "         && p[0] < (xs[b] - xs[a]) * (p[1] - ys[a]) / (ys[b] - ys[a]) + xs[a]) inside = !inside; }"
        "   if (inside) n++; } return n; }", corners))


def measure(nb: Any, probe: Probe, contender: str, n: int, seconds: float) -> dict[str, Any]:
    page = nb.page
    print(f"  {contender} at {n:,} points...", file=sys.stderr, flush=True)
    page.evaluate(f"() => {{ window.__draws = []; window.__firstBig = null; window.__bigDraw = {n // 2}; }}")
    memory0, heap0 = probe.snapshot()
    probe.received = 0
    cell = nb.index
    start = nb.run_next()
    page.wait_for_function("() => window.__firstBig !== null", timeout=600_000, polling=50)
    first = float(page.evaluate("() => window.__firstBig")) - start
    received = probe.received
    page.wait_for_timeout(1500)
    memory1, heap1 = probe.snapshot()
    box = canvas_box(page, cell)
    page.mouse.move(box["x"] + 5, box["y"] - 40)
    moving = pan(page, box, seconds, n, contender)
    if contender == "picsift":
        page.locator(".picsift-explorer").last.locator(".picsift-tool[data-mode=lasso]").click()
        page.wait_for_timeout(300)
    else:
        nb.run_next()  # s.mouse("lasso")
        page.wait_for_timeout(500)
    box = canvas_box(page, cell)  # running a cell may have scrolled the notebook
    page.mouse.move(box["x"] + 5, box["y"] - 40)
    try:
        selected = lasso(page, box)
    except Exception:
        page.screenshot(path=f"peers-{contender}-{n}-lasso-failure.png")
        raise
    expected = inside_count(page, selected["corners"]) if contender == "picsift" else None
    nb.run_next()  # close
    return {"first_ms": first, **moving, "lasso_ms": selected["lasso_ms"], "found": selected["found"],
            "round_trip_ms": selected["round_trip_ms"],
            "expected": expected, "memory_mb": memory1 - memory0, "heap_mb": heap1 - heap0,
            "received_mb": received / 2**20}


def cells(sizes: list[int]) -> list[str]:
    out = [SETUP.replace("MAX_POINTS", str(max(sizes)))]
    for n in sizes:
        for contender in PEERS:
            out.append(SHOW[contender].format(n=n))
            if LASSO_MODE[contender]:
                out.append(LASSO_MODE[contender])
            out.append(CLOSE[contender])
    return out


def report(nb: Any, probe: Probe, sizes: list[int], seconds: float) -> None:
    import importlib.metadata as md

    nb.run_next()  # setup
    results = {(c, n): measure(nb, probe, c, n, seconds) for n in sizes for c in PEERS}
    print(f"\n## Explorer vs jupyter-scatter {md.version('jupyter-scatter')} (2D, categorical colour,"
          " same page and data)\n")
    rows = []
    for (contender, n), r in results.items():
        inside = f"{r['found']:,}" + ("" if r["expected"] is None else f" (drawn inside: {r['expected']:,})")
        rows.append([contender, f"{n:,}", r["first_ms"], r["frame_ms"], r["frame_p90_ms"],
                     f"{r['drawn']:,.0f} ({r['drawn'] / n:.0%})", r["lasso_ms"], r["round_trip_ms"], inside,
                     r["memory_mb"],
                     r["heap_mb"], r["received_mb"]])
    print(table(rows, ["widget", "points", "first frame ms", "moving frame ms (median)", "p90", "points drawn per"
                       " moving frame", "lasso -> Python ms", "... -> page ms", "points selected", "browser memory MiB",
                       "JS heap MiB", "MiB received"]))
    print("\nRatios (picsift / jupyter-scatter; below 1 is better for picsift):\n")
    ratio_rows = []
    for n in sizes:
        ours, theirs = results[("picsift", n)], results[("jupyter-scatter", n)]
        ratio_rows.append([f"{n:,}", *(ours[k] / theirs[k] if theirs[k] else float("nan") for k in
                                       ("first_ms", "frame_ms", "lasso_ms", "memory_mb", "received_mb"))])
    print(table(ratio_rows, ["points", "first frame", "moving frame", "lasso -> Python", "browser memory",
                             "bytes received"]))
