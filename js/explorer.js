// Explorer: every point in one WebGL2 draw call (./explorer/renderer.js). Points arrive once as float32
// (n, 2) or (n, 3); colours as one uint8 category slot or uint16 continuous step per point.
// The view fits the data on first draw and on new points; drag pans (2D) or rotates (3D), the wheel zooms
// around the pointer, double-click or the fit button resets. The toolbar picks what dragging does (pan,
// box, lasso; shift-drag: box, alt-drag: lasso), zooms to the selection, shows axes, downloads a PNG and
// exports the selection. Box and lasso use a grid index (./explorer/picking.js) and send the selection to
// Python as int32 positions or a bit per point (./explorer/selection.js). Hover shows a tooltip (fields and
// a thumbnail from Python, ./explorer/tooltip.js); click picks.
// Level of detail: while the view moves and a full frame would take longer than FRAME_TARGET ms, a uniform
// sample is drawn over a density layer of every point, and the status line says so. Zoomed in, only the
// points on screen are drawn (all of them); with a few hundred on screen and images behind them, each is
// drawn as its thumbnail (./explorer/thumbs.js).
/** @typedef {{dims: 2|3, projection: string, projection_state: string, color_by: string, color_fields: string[],
 *   drag_mode: "move"|"box"|"lasso", point_size: number, axes: boolean, equal_axes: boolean, camera: object, _points: object,
 *   _colors: object, _color_kind: string, _color_span: number[], _color_label: string, _color_choices: string[],
 *   _legend: string[], _selected: object, _own_points: boolean, _autorotate: boolean, map_thumbnails: boolean,
 *   _points_bounds: number[][], _has_images: boolean}} ExplorerTraits */
import { errorLine, formatCount, h, requester, send, toArray } from "./protocol.js";
import { drawAxes } from "./explorer/axes.js";
import { Camera } from "./explorer/camera.js";
import { codeColor, legendItems } from "./explorer/colors.js";
import { densityCells } from "./explorer/density.js";
import { createPicker, downloadPng } from "./explorer/picking.js";
import { boundsOf, createRefiner, maxZoomFor, readPoints } from "./explorer/points.js";
import { createRenderer } from "./explorer/renderer.js";
import { decodeSelection, encodeSelection } from "./explorer/selection.js";
import { toolbar } from "./explorer/toolbar.js";
import { createThumbs } from "./explorer/thumbs.js";
import { createTooltip } from "./explorer/tooltip.js";

const LOD_FROM = 50000, FRAME_TARGET = 50, IDLE_MS = 150, THUMBS_MAX = 500;


function render({ model, el }) {
  el.classList.add("picsift", "picsift-explorer");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const rpc = requester(model);
  const canvas = h("canvas", { class: "picsift-map" });
  const axesCanvas = h("canvas", { class: "picsift-axes", hidden: true });
  const box = h("div", { class: "picsift-box", hidden: true });
  const lasso = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  lasso.classList.add("picsift-lasso");
  const outline = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
  lasso.append(outline);
  lasso.style.display = "none";
  const thumbs = createThumbs({ rpc, redraw: () => schedule() });
  const refiner = createRefiner({ rpc, refined: () => { renderer.updatePoints(points); schedule(); } });
  const area = h("div", { class: "picsift-explorer-canvas" }, canvas, thumbs.el, axesCanvas, box, lasso);
  const dims = h("select", { class: "picsift-dims", "aria-label": "dimensions" }, h("option", { value: "3" }, "3D"), h("option", { value: "2" }, "2D"));
  const colorBy = h("select", { class: "picsift-color-by", "aria-label": "colour by" });
  const fieldLabel = (field) => field.startsWith("tag:") ? `tag ${field.slice(4)}`
    : field.startsWith("job:") ? `job ${field.slice(4)} status` : field === "issues" ? "open issues" : field;
  const colorOptions = () => {
    colorBy.replaceChildren(...model.get("_color_choices").map((field) => h("option", { value: field }, `colour: ${fieldLabel(field)}`)));
    colorBy.value = model.get("color_by");
  };
  const umap = h("button", { class: "picsift-umap", onclick: () => send(model, "compute_umap") }, "Compute UMAP");
  // Once a UMAP map shows, new images are placed on it without moving the others; Refit lays out everything anew.
  const refit = h("button", { class: "picsift-refit", hidden: true, title: "fit UMAP again on every image (the layout changes)",
    onclick: () => send(model, "compute_umap", { refit: true }) }, "Refit");
  const state = h("span", { class: "picsift-muted picsift-projection-state" });
  const lod = h("span", { class: "picsift-lod", hidden: true });
  const notice = h("span", { class: "picsift-muted picsift-notice" });
  const legend = h("div", { class: "picsift-legend picsift-muted" });
  const [error, disposeError] = errorLine(model);
  const tools = toolbar({
    onMode: (mode) => { model.set("drag_mode", mode); model.save_changes(); },
    onFit: () => fitTo(null, true),
    onZoomSelection: () => fitTo(selected),
    onAxes: () => { model.set("axes", !model.get("axes")); model.save_changes(); },
    onDownload: () => { draw(performance.now(), true); downloadPng(canvas, [thumbs.el, axesCanvas], getComputedStyle(el).backgroundColor); },
    onExport: () => send(model, "export"),
  });
  dims.addEventListener("change", () => { model.set("dims", Number(dims.value)); model.save_changes(); });
  colorBy.addEventListener("change", () => { model.set("color_by", colorBy.value); model.save_changes(); });
  el.append(h("div", { class: "picsift-row" }, h("span", { class: "picsift-title" }, "Map"), dims, colorBy, umap, refit, state, lod,
    notice, tools.el), error, area, legend);

  const gl = canvas.getContext("webgl2", { antialias: false, premultipliedAlpha: true, alpha: true });
  if (!gl) {
    error.hidden = false;
    error.textContent = "This browser has no WebGL2: the map cannot be drawn.";
    return () => { rpc.dispose(); disposeError(); };
  }
  const renderer = createRenderer(gl);
  const camera = new Camera();
  let points = null, pointDims = 3, count = 0, steps = [0, 0, 0], codes = null, chosen = new Uint8Array(0), selected = new Int32Array(0);
  let warmed = false, ownSelection = false, density = null, allBounds = null, pendingFit = false, ownCamera = false;
  let drag = null, budget = 250000, lastInteraction = -Infinity, lastFrameAt = 0;
  let frame = 0, idleTimer = 0, saveTimer = 0, noticeTimer = 0;
  const stats = { firstFrame: null, frames: [], draws: [], drawn: [] };
  el.__picsift = stats;
  let pinned = false;
  el.__picsiftBudget = (n) => { pinned = n != null; if (pinned) budget = n; }; // for tests: a slow machine's budget

  const size = () => {
    const dpr = window.devicePixelRatio || 1;
    return [Math.max(1, Math.round(area.clientWidth * dpr)), Math.max(1, Math.round(area.clientHeight * dpr))];
  };
  const writeCamera = (save) => { // the view into the `camera` trait (linked views follow it in the browser)
    ownCamera = true;
    model.set("camera", camera.state());
    ownCamera = false;
    clearTimeout(saveTimer);
    if (save) saveTimer = setTimeout(() => model.save_changes(), 200);
  };
  const fitTo = (pick, resetAngles = false) => { // pick: indices to frame (null: every point)
    const bounds = pick ? boundsOf(points, pointDims, count, pick) : allBounds;
    if (!bounds) return;
    const [w, hgt] = size();
    if (pick && bounds[0].every((v, k) => v === bounds[1][k])) { // one point: zoom in around it
      const pad = pointDims === 2 ? 2 / camera.fitZoom / 40 : camera.radius / 40;
      bounds[0] = bounds[0].map((v) => v - pad);
      bounds[1] = bounds[1].map((v) => v + pad);
      if (bounds.length > 2) bounds[2] = pad * 2;
    }
    camera.fit(bounds, w / hgt, pointDims, { partial: !!pick, resetAngles });
    lastInteraction = performance.now();
    writeCamera(true);
    schedule();
  };

  const draw = (time, full = false) => {
    frame = 0;
    const [width, height] = size();
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    if (pendingFit && area.clientWidth > 1) { // the first frame with a size: fit (or only set the zoom range)
      if (pendingFit === "fit") fitTo(null);
      else camera.reference(allBounds, width / height);
      pendingFit = false;
    }
    const rotating = model.get("_autorotate") && pointDims === 3;
    if (rotating) { camera.rotate(2.5, 0); writeCamera(false); }
    const now = performance.now();
    const moving = !full && (rotating || drag !== null || now - lastInteraction < IDLE_MS);
    if (moving && !pinned && lastFrameAt && now - lastFrameAt < 1000) { // adapt the sample to the frame rate
      const interval = now - lastFrameAt;
      if (interval > FRAME_TARGET * 1.2) budget = Math.max(20000, Math.round(budget * 0.75));
      else if (interval < FRAME_TARGET * 0.6) budget = Math.min(count, Math.round(budget * 1.25));
    }
    lastFrameAt = now;
    const shown = onScreen(moving), subset = shown && count > LOD_FROM ? shown : null, cap = maxZoomFor(steps, camera.stretch, height);
    if (shown && pointDims === 2 && camera.zoom > cap / 2) refiner.want(shown); // exact places before a step shows
    camera.maxZoom = pointDims === 2 && !(shown && refiner.exactAll(shown)) ? cap : Infinity;
    const sampled = !subset && moving && count > LOD_FROM && budget < count;
    const drawn = subset ? subset.length : sampled ? budget : count;
    if (sampled && !density) { density = densityCells(points, pointDims, count, codes, chosen); renderer.setDensity(density); }
    const t0 = performance.now();
    renderer.draw({ width, height, transform: camera.matrix(width / height), drawn, subset,
      pointSize: model.get("point_size") * (window.devicePixelRatio || 1) * (count < 5000 ? 2 : count > 200000 ? 0.6 : 1),
      continuous: model.get("_color_kind") === "continuous", anySelected: selected.length > 0,
      pixelsPerUnit: [camera.pixelsPerUnitX(height), camera.pixelsPerUnit(height)] });
    if (count && (stats.firstFrame === null || rotating)) gl.finish(); // honest timings: wait for the pixels
    const t1 = performance.now();
    if (count && stats.firstFrame === null) { stats.firstFrame = t1; el.dataset.firstFrame = String(t1); }
    if (count && !warmed) { // the pick/lasso index, once the first picture is up
      warmed = true;
      (window.requestIdleCallback || setTimeout)(() => picker.warm(), { timeout: 2000 });
    }
    if (count) {
      stats.frames.push(time ?? t1);
      stats.draws.push(t1 - t0);
      stats.drawn.push(drawn);
      if (stats.frames.length > 600) { stats.frames.shift(); stats.draws.shift(); stats.drawn.shift(); }
    }
    lod.hidden = !sampled;
    if (sampled) lod.textContent = `sampled while moving: ${formatCount(drawn)} of ${formatCount(count)} points over their density`;
    el.dataset.sampled = String(sampled);
    el.dataset.frames = String(stats.frames.length);
    el.dataset.draws = String(Number(el.dataset.draws || 0) + 1); // every frame drawn (tests wait on it)
    drawThumbs(shown);
    drawAxes(axesCanvas, camera, area.clientWidth, area.clientHeight, model.get("axes") && pointDims === 2);
    if (rotating) schedule();
    else if (sampled || (moving && !shown)) { // one full frame once the view has been still for a moment
      clearTimeout(idleTimer);
      idleTimer = setTimeout(schedule, IDLE_MS);
    }
  };
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };
  // Zoomed in, the points on screen (a Uint32Array), or null: draw them alone, as thumbnails if few enough.
  const onScreen = (moving) => {
    const thumbsOn = model.get("map_thumbnails") && model.get("_has_images");
    const zoomedIn = pointDims === 2 ? camera.zoom > camera.fitZoom * 1.5 : camera.distance < camera.fitDistance / 1.5;
    if (!count || !zoomedIn || (!thumbsOn && count <= LOD_FROM)) return null;
    const found = picker.onScreen(Math.max(THUMBS_MAX, count > LOD_FROM ? LOD_FROM : 0), 40, pointDims === 2 || !moving);
    return found && Uint32Array.from(found);
  };
  const drawThumbs = (shown) => {
    const few = shown && shown.length <= THUMBS_MAX && model.get("map_thumbnails") && model.get("_has_images") ? shown : null;
    const continuous = model.get("_color_kind") === "continuous";
    const result = thumbs.draw({ indices: few, camera, points, dims: pointDims, width: area.clientWidth, height: area.clientHeight,
      dpr: window.devicePixelRatio || 1, color: (i) => codeColor(codes[i], continuous), chosen, anySelected: selected.length > 0 });
    Object.assign(el.dataset, { thumbs: result.shown, thumbsDrawn: result.drawn, thumbsMissing: result.missing });
  };

  const loadPoints = () => {
    const value = model.get("_points");
    ({ points, dims: pointDims, steps } = readPoints(value, model.get("_points_bounds")));
    count = points ? points.length / pointDims : 0;
    renderer.setPoints(points || new Float32Array(0), pointDims);
    density = null;
    warmed = false;
    picker.reset();
    thumbs.reset();
    refiner.reset(points, pointDims, steps[0] > 0 || steps[1] > 0);
    allBounds = count ? boundsOf(points, pointDims, count) : null;
    const first = el.dataset.pointsVersion === undefined;
    camera.dims = pointDims;
    camera.equalAxes = model.get("equal_axes");
    const kept = first && camera.apply(model.get("camera")); // another view of this widget, or a camera from Python
    pendingFit = allBounds ? (kept ? "reference" : "fit") : false;
    el.dataset.points = String(count);
    el.dataset.pointsVersion = String(Number(el.dataset.pointsVersion || 0) + 1);
    loadColors();
    loadSelected();
    syncControls();
  };
  const loadColors = () => {
    codes = toArray(model.get("_colors"));
    if (!codes || codes.length !== count) codes = new Uint8Array(count);
    renderer.setValues(codes);
    density = null;
    legend.replaceChildren(...legendItems({ kind: model.get("_color_kind"), legend: model.get("_legend"),
      span: model.get("_color_span"), label: model.get("_color_label"), select: (index) => send(model, "select_category", { index }) }));
    el.dataset.colorBy = model.get("color_by");
    schedule();
  };
  const loadSelected = () => {
    if (ownSelection) { // our own lasso: the kernel has been told; redraw after this event
      ownSelection = false;
      setTimeout(loadSelected, 0);
      return;
    }
    const positions = decodeSelection(model.get("_selected"));
    chosen = new Uint8Array(count);
    const valid = new Int32Array(positions.length);
    let k = 0;
    for (let j = 0; j < positions.length; j++) {
      const p = positions[j];
      if (p >= 0 && p < count && !chosen[p]) { chosen[p] = 255; valid[k++] = p; }
    }
    selected = valid.subarray(0, k);
    renderer.setChosen(chosen);
    density = null;
    el.dataset.selected = String(selected.length);
    el.__picsiftSelected = () => Array.from(selected); // for tests
    syncControls();
  };
  const syncControls = () => {
    const own = model.get("_own_points");
    dims.value = String(model.get("dims"));
    dims.hidden = own;
    colorBy.value = model.get("color_by");
    colorBy.hidden = model.get("_color_choices").length < 2;
    tools.sync({ mode: model.get("drag_mode"), dims: pointDims, axes: model.get("axes"), selected: selected.length });
    canvas.style.cursor = model.get("drag_mode") !== "move" ? "crosshair" : "";
    const projection = model.get("projection_state") || model.get("projection");
    state.textContent = own || !projection ? `${formatCount(count)} points` : `${projection} · ${formatCount(count)} points`;
    const computing = (model.get("projection_state") || "").includes("computing");
    umap.hidden = own;
    umap.disabled = model.get("projection") === "umap" || computing;
    refit.hidden = own || model.get("projection") !== "umap";
    refit.disabled = computing;
    schedule();
  };

  const picker = createPicker(canvas, camera, () => ({ points, dims: pointDims, count }));
  el.__picsiftScreen = (i) => picker.pageOf(i); // for tests: where point i is on the page
  [el.__picsiftThumbs, el.__picsiftThumbSide] = [() => thumbs.debug(), () => thumbs.side]; // for tests
  el.__picsiftView = (state) => { if (camera.apply(state)) { lastInteraction = performance.now(); writeCamera(true); schedule(); } };
  // over thumbnails, the pointer finds a point anywhere on its picture
  const nearest = (x, y, r = 10) => picker.nearest(x, y, thumbs.active ? Math.max(r, thumbs.side / 2) : r);
  const tooltip = createTooltip({ area, rpc, nearest, busy: () => drag !== null,
    delay: () => (count > 200000 ? 150 : 60) });
  area.append(tooltip.el);

  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    const mode = model.get("drag_mode");
    const lassoing = !event.shiftKey && (event.altKey || mode === "lasso");
    drag = { x: event.clientX, y: event.clientY, x0: event.clientX, y0: event.clientY, moved: false,
      box: !lassoing && (event.shiftKey || mode === "box"), lasso: lassoing ? [[event.clientX, event.clientY]] : null };
    tooltip.hide();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) {
      tooltip.moved(event.clientX, event.clientY);
      return;
    }
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(event.clientX - drag.x0) + Math.abs(event.clientY - drag.y0) > 3) drag.moved = true;
    drag.x = event.clientX;
    drag.y = event.clientY;
    const rect = area.getBoundingClientRect();
    if (drag.lasso) {
      drag.lasso.push([event.clientX, event.clientY]);
      outline.setAttribute("points", drag.lasso.map(([x, y]) => `${x - rect.left},${y - rect.top}`).join(" "));
      lasso.style.display = "";
    } else if (drag.box) {
      Object.assign(box.style, { left: `${Math.min(drag.x0, drag.x) - rect.left}px`, top: `${Math.min(drag.y0, drag.y) - rect.top}px`,
        width: `${Math.abs(drag.x - drag.x0)}px`, height: `${Math.abs(drag.y - drag.y0)}px` });
      box.hidden = false;
    } else {
      if (pointDims === 3) camera.rotate(dx, dy);
      else camera.pan(dx, dy, canvas.getBoundingClientRect().height);
      lastInteraction = performance.now();
      writeCamera(false);
      schedule();
    }
  });
  canvas.addEventListener("pointerup", (event) => {
    const ended = drag;
    drag = null;
    box.hidden = true;
    lasso.style.display = "none";
    if (!ended) return;
    if ((ended.lasso && ended.moved && ended.lasso.length >= 3) || (ended.box && ended.moved)) {
      const t0 = performance.now();
      const found = ended.lasso ? picker.inLasso(ended.lasso) : picker.inBox(ended.x0, ended.y0, event.clientX, event.clientY);
      stats.select = { ms: performance.now() - t0, points: count, found: found.length, at: t0 }; // for bench/widgets.py
      ownSelection = true; // send first, draw the highlight afterwards
      model.set("_selected", encodeSelection(found, count));
      model.save_changes();
      stats.select.sent = performance.now() - t0;
    } else if (!ended.moved) {
      const index = nearest(event.clientX, event.clientY);
      if (index >= 0) {
        el.dataset.picked = String(index);
        send(model, "pick", { index });
      }
    } else writeCamera(true);
    schedule();
  });
  canvas.addEventListener("dblclick", () => fitTo(null, true));
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = canvas.getBoundingClientRect(); // zoom around the pointer
    const px = event.clientX - rect.left, py = event.clientY - rect.top;
    camera.zoomBy(Math.exp(-event.deltaY * 0.001), px - rect.width / 2, py - rect.height / 2, rect.height);
    lastInteraction = performance.now();
    writeCamera(true);
    schedule();
  }, { passive: false });
  canvas.addEventListener("pointerleave", () => tooltip.hide());

  const onMessage = (msg) => {
    if (!msg || msg.request_id != null) return;
    if (msg.type === "fit" && msg.bounds) fitBounds(msg.bounds);
    else if (msg.type === "fit") fitTo(null, true);
    else if (msg.type === "notice") {
      notice.textContent = msg.message;
      clearTimeout(noticeTimer);
      noticeTimer = setTimeout(() => { notice.textContent = ""; }, 6000);
    }
  };
  const fitBounds = (bounds) => {
    const [w, hgt] = size();
    camera.fit(bounds, w / hgt, pointDims, { partial: true });
    lastInteraction = performance.now();
    writeCamera(true);
    schedule();
  };
  const onEqualAxes = () => { camera.equalAxes = model.get("equal_axes"); if (pointDims === 2) fitTo(null); };
  const onCamera = () => {
    if (ownCamera) return;
    if (camera.apply(model.get("camera"))) { lastInteraction = performance.now(); schedule(); }
  };

  const resize = new ResizeObserver(schedule);
  resize.observe(area);
  model.on("msg:custom", onMessage);
  let colorsQueued = false;
  const colorsSoon = () => { // one upload for a recolouring that changes several traits at once
    if (colorsQueued) return;
    colorsQueued = true;
    queueMicrotask(() => { colorsQueued = false; loadColors(); });
  };
  const handlers = [["change:_points", loadPoints], ...["_colors", "_color_kind", "_legend", "_color_span", "_color_label"]
    .map((name) => [`change:${name}`, colorsSoon]), ["change:_selected", loadSelected], ["change:dims", syncControls],
    ["change:color_by", syncControls], ["change:_color_choices", colorOptions], ["change:drag_mode", syncControls],
    ["change:axes", syncControls], ["change:_own_points", syncControls], ["change:projection", syncControls],
    ["change:projection_state", syncControls], ["change:point_size", schedule], ["change:_autorotate", schedule],
    ["change:camera", onCamera], ["change:equal_axes", onEqualAxes], ["change:map_thumbnails", schedule],
    ["change:_has_images", schedule]];
  for (const [name, f] of handlers) model.on(name, f);
  colorOptions();
  loadPoints();
  return () => {
    for (const [name, f] of handlers) model.off(name, f);
    model.off("msg:custom", onMessage);
    cancelAnimationFrame(frame);
    for (const timer of [idleTimer, saveTimer, noticeTimer]) clearTimeout(timer);
    tooltip.dispose();
    thumbs.dispose();
    resize.disconnect();
    rpc.dispose();
    disposeError();
    gl.getExtension("WEBGL_lose_context")?.loseContext();
  };
}

export default { render };
