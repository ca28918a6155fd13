// Score range: histogram of every score in scope (computed in Python), two handles snapping to bin
// edges, presets and the suggested threshold. The count shown is exact: handles sit on bin edges.
/** @typedef {{score_range: number[], suggested: number|null, bins: number, _counts: object, _edges: object}} ScoreRangeTraits */
import { errorLine, formatCount, h, toArray, watch } from "./protocol.js";

const SVG = "http://www.w3.org/2000/svg";

function render({ model, el }) {
  el.classList.add("picsift", "picsift-score-range");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("preserveAspectRatio", "none");
  const low = h("div", { class: "picsift-handle picsift-handle-low", "aria-label": "minimum score" });
  const high = h("div", { class: "picsift-handle picsift-handle-high", "aria-label": "maximum score" });
  const marker = h("div", { class: "picsift-suggested", title: "suggested threshold" });
  const hist = h("div", { class: "picsift-hist" }, svg, marker, low, high);
  const axisLow = h("span", {}), axisHigh = h("span", {});
  const summary = h("span", { class: "picsift-range-count" });
  const axis = h("div", { class: "picsift-axis picsift-muted" }, axisLow, axisHigh);
  const preset = (which) => () => {
    const edges = toArray(model.get("_edges"));
    if (!edges) return;
    const t = model.get("suggested") ?? edges[Math.floor(edges.length / 2)];
    setRange(which === "above" ? [t, edges[edges.length - 1]] : which === "below" ? [edges[0], t] : [edges[0], edges[edges.length - 1]]);
  };
  const accept = h("button", { class: "picsift-accept", onclick: preset("above"), title: "keep the images above the suggested threshold" });
  const [error, disposeError] = errorLine(model);
  el.append(
    h("div", { class: "picsift-row" }, h("span", { class: "picsift-title" }, "Scores"), summary),
    hist, axis,
    h("div", { class: "picsift-row" },
      h("button", { class: "picsift-preset-above", onclick: preset("above") }, "Most similar"),
      h("button", { class: "picsift-preset-below", onclick: preset("below") }, "Edge cases"),
      h("button", { class: "picsift-preset-all", onclick: preset("all") }, "Full range"), accept),
    error);

  let edges = null, counts = null, lo = 0, hi = 0; // lo, hi: bin-edge indices

  const nearestEdge = (value) => {
    let best = 0;
    for (let i = 1; i < edges.length; i++) if (Math.abs(edges[i] - value) < Math.abs(edges[best] - value)) best = i;
    return best;
  };
  const draw = () => {
    edges = toArray(model.get("_edges"));
    counts = toArray(model.get("_counts"));
    el.dataset.empty = String(!counts);
    hist.hidden = !counts;
    axis.hidden = !counts;
    if (!counts) {
      summary.textContent = "no scores yet";
      summary.dataset.count = "0";
      accept.hidden = true;
      return;
    }
    const range = model.get("score_range");
    lo = range.length === 2 ? nearestEdge(range[0]) : 0;
    hi = range.length === 2 ? nearestEdge(range[1]) : edges.length - 1;
    const n = counts.length;
    const max = Math.max(1, ...counts);
    svg.setAttribute("viewBox", `0 0 ${n} 100`);
    svg.replaceChildren();
    for (let i = 0; i < n; i++) {
      const rect = document.createElementNS(SVG, "rect");
      const height = counts[i] ? Math.max(1.5, (100 * counts[i]) / max) : 0;
      rect.setAttribute("x", String(i + 0.06));
      rect.setAttribute("width", "0.88");
      rect.setAttribute("y", String(100 - height));
      rect.setAttribute("height", String(height));
      rect.setAttribute("class", i >= lo && i < hi ? "in" : "out");
      rect.dataset.count = String(counts[i]);
      svg.append(rect);
    }
    low.style.left = `${(100 * lo) / n}%`;
    high.style.left = `${(100 * hi) / n}%`;
    let inRange = 0;
    for (let i = lo; i < hi; i++) inRange += counts[i];
    summary.textContent = `${formatCount(inRange)} images with score ${edges[lo].toFixed(3)} – ${edges[hi].toFixed(3)}`;
    summary.dataset.count = String(inRange);
    axisLow.textContent = edges[0].toFixed(3);
    axisHigh.textContent = edges[n].toFixed(3);
    const suggested = model.get("suggested");
    marker.hidden = suggested == null;
    accept.hidden = suggested == null;
    if (suggested != null) {
      marker.style.left = `${(100 * (suggested - edges[0])) / (edges[n] - edges[0])}%`;
      accept.textContent = `Accept suggested ≥ ${suggested.toFixed(3)}`;
    }
  };
  const setRange = ([a, b]) => {
    model.set("score_range", [a, b]);
    model.save_changes();
  };

  let dragging = null, frame = 0;
  const onMove = (event) => {
    if (!dragging || !edges) return;
    const box = hist.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    const index = Math.round(fraction * (edges.length - 1));
    if (dragging === "low") lo = Math.min(index, hi - 1);
    else hi = Math.max(index, lo + 1);
    if (!frame) frame = requestAnimationFrame(() => {
      frame = 0;
      setRange([edges[lo], edges[hi]]);
    });
  };
  const onUp = () => {
    dragging = null;
    window.removeEventListener("pointermove", onMove);
    window.removeEventListener("pointerup", onUp);
  };
  const start = (which) => (event) => {
    event.preventDefault();
    dragging = which;
    window.addEventListener("pointermove", onMove);
    window.addEventListener("pointerup", onUp);
  };
  low.addEventListener("pointerdown", start("low"));
  high.addEventListener("pointerdown", start("high"));

  return watch(model, ["_counts", "_edges", "score_range", "suggested"], draw,
    onUp, () => cancelAnimationFrame(frame), disposeError);
}

export default { render };
