// Explorer: every point in one WebGL2 draw call (raw WebGL2: one shader pair and three buffers need
// no library, and nothing sits between us and the GPU at 1M points). Points arrive once as a float32
// (n, 3) buffer; colours as one float per point, mapped to a palette in the shader.
// Drag rotates (3D) or pans (2D); wheel zooms; click searches similar. In 2D, drag_mode "box" or shift-drag
// selects the points in a box, drag_mode "lasso" or alt-drag those inside a drawn outline.
// Level of detail: above LOD_FROM points the GPU buffers hold the points in a random order, and while
// the view moves only a prefix is drawn (a uniform sample), sized so frames stay near FRAME_TARGET ms;
// a full frame follows as soon as the view stops. On a GPU the budget grows to every point.
/** @typedef {{dims: 2|3, projection: string, projection_state: string, color_by: string, color_fields: string[],
 *   drag_mode: "move"|"box"|"lasso", point_size: number, selection: string[], _points: object, _colors: object,
 *   _color_kind: string, _legend: string[], _selected: object, _autorotate: boolean}} ExplorerTraits */
import { errorLine, formatCount, fromArray, h, requester, send, toArray } from "./protocol.js";

const PALETTE = [[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16], [0.58, 0.4, 0.74],
  [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.09, 0.75, 0.81], [0.74, 0.74, 0.13], [0.5, 0.5, 0.5]]; // last: "other"

const LOD_FROM = 50000, FRAME_TARGET = 50, IDLE_MS = 150;

function shuffled(n) {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
  return perm;
}

function permute(source, perm, stride) {
  if (!perm) return source;
  const out = new source.constructor(perm.length * stride);
  for (let k = 0; k < perm.length; k++) for (let j = 0; j < stride; j++) out[k * stride + j] = source[perm[k] * stride + j];
  return out;
}

const VERTEX = `#version 300 es
in vec3 position; in float value; in float chosen;
uniform mat4 transform; uniform float size; uniform int continuous; uniform vec2 span; uniform int anySelected;
uniform vec3 palette[10];
out vec4 color;
vec3 viridis(float t) {
  vec3 c0 = vec3(0.2777, 0.0054, 0.3341), c1 = vec3(0.1050, 1.4046, 1.3846), c2 = vec3(-0.3309, 0.2148, 0.0951),
       c3 = vec3(-4.6342, -5.7991, -19.3324), c4 = vec3(6.2283, 14.1799, 56.6906), c5 = vec3(4.7764, -13.7451, -65.3530),
       c6 = vec3(-5.4355, 4.6459, 26.3124);
  return c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * (c5 + t * c6)))));
}
void main() {
  gl_Position = transform * vec4(position, 1.0);
  vec3 rgb = continuous == 1 ? viridis(clamp((value - span.x) / max(span.y - span.x, 1e-9), 0.0, 1.0))
                             : palette[int(mod(value, 10.0))];
  float dim = anySelected == 1 && chosen < 0.5 ? 0.4 : 1.0;
  color = vec4(rgb, 0.85 * dim);
  gl_PointSize = chosen > 0.5 ? size * 2.2 : size;
}`;
const FRAGMENT = `#version 300 es
precision mediump float;
in vec4 color; out vec4 outColor;
void main() {
  vec2 d = gl_PointCoord - 0.5;
  if (dot(d, d) > 0.25) discard;
  outColor = vec4(color.rgb * color.a, color.a);
}`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
  return shader;
}

function multiply(a, b) { // column-major 4x4
  const out = new Float32Array(16);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) {
    let s = 0;
    for (let k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
    out[c * 4 + r] = s;
  }
  return out;
}

function orbit(yaw, pitch, distance, aspect) {
  const f = 1 / Math.tan(Math.PI / 8), near = 0.05, far = 50;
  const projection = new Float32Array([f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) / (near - far), -1, 0, 0, (2 * far * near) / (near - far), 0]);
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  // view = translate(0, 0, -distance) * rotateX(pitch) * rotateY(yaw)
  const view = new Float32Array([cy, sp * sy, -cp * sy, 0, 0, cp, sp, 0, sy, -sp * cy, cp * cy, 0, 0, 0, -distance, 1]);
  return multiply(projection, view);
}

function flat(panX, panY, zoom, aspect) {
  return new Float32Array([zoom / aspect, 0, 0, 0, 0, zoom, 0, 0, 0, 0, 1, 0, (-panX * zoom) / aspect, -panY * zoom, 0, 1]);
}

function render({ model, el }) {
  el.classList.add("picsift", "picsift-explorer");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const rpc = requester(model);
  const canvas = h("canvas", {});
  const tooltip = h("div", { class: "picsift-tooltip", hidden: true });
  const box = h("div", { class: "picsift-box", hidden: true });
  const lasso = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  lasso.classList.add("picsift-lasso");
  const outline = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
  lasso.append(outline);
  lasso.style.display = "none";
  const area = h("div", { class: "picsift-explorer-canvas" }, canvas, tooltip, box, lasso);
  const dims = h("select", { class: "picsift-dims", "aria-label": "dimensions" }, h("option", { value: "3" }, "3D"), h("option", { value: "2" }, "2D"));
  const colorBy = h("select", { class: "picsift-color-by", "aria-label": "colour by" });
  const fieldLabel = (field) => field.startsWith("tag:") ? `tag ${field.slice(4)}`
    : field.startsWith("job:") ? `job ${field.slice(4)} status` : field === "issues" ? "open issues" : field;
  const colorOptions = () => {
    colorBy.replaceChildren(...["cluster", "score", "folder", ...model.get("color_fields")].map((field) =>
      h("option", { value: field }, `colour: ${fieldLabel(field)}`)));
    colorBy.value = model.get("color_by");
  };
  const dragMode = h("select", { class: "picsift-drag-mode", "aria-label": "drag to",
    title: "what dragging on the 2D map does (shift-drag: box select, alt-drag: lasso select)" },
    h("option", { value: "move" }, "drag: pan"), h("option", { value: "box" }, "drag: box select"),
    h("option", { value: "lasso" }, "drag: lasso select"));
  const umap = h("button", { class: "picsift-umap", onclick: () => send(model, "compute_umap") }, "Compute UMAP");
  // Once a UMAP map shows, new images are placed on it without moving the others; Refit lays out everything anew.
  const refit = h("button", { class: "picsift-refit", hidden: true,
    title: "fit UMAP again on every image (the layout changes)",
    onclick: () => send(model, "compute_umap", { refit: true }) }, "Refit");
  const state = h("span", { class: "picsift-muted picsift-projection-state" });
  const legend = h("div", { class: "picsift-legend picsift-muted" });
  const [error, disposeError] = errorLine(model);
  dims.addEventListener("change", () => { model.set("dims", Number(dims.value)); model.save_changes(); });
  colorBy.addEventListener("change", () => { model.set("color_by", colorBy.value); model.save_changes(); });
  dragMode.addEventListener("change", () => { model.set("drag_mode", dragMode.value); model.save_changes(); });
  el.append(h("div", { class: "picsift-row" }, h("span", { class: "picsift-title" }, "Map"), dims, colorBy, dragMode, umap, refit, state), error, area, legend);

  const gl = canvas.getContext("webgl2", { antialias: false, premultipliedAlpha: true, alpha: true });
  if (!gl) {
    error.hidden = false;
    error.textContent = "This browser has no WebGL2: the map cannot be drawn.";
    return () => { rpc.dispose(); disposeError(); };
  }
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  gl.useProgram(program);
  const uniform = (name) => gl.getUniformLocation(program, name);
  const u = { transform: uniform("transform"), size: uniform("size"), continuous: uniform("continuous"), span: uniform("span"), anySelected: uniform("anySelected"), palette: uniform("palette") };
  gl.uniform3fv(u.palette, new Float32Array(PALETTE.flat()));
  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const attribute = (name, size, type, normalized) => {
    const buffer = gl.createBuffer();
    const location = gl.getAttribLocation(program, name);
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.enableVertexAttribArray(location);
    gl.vertexAttribPointer(location, size, type, normalized, 0, 0);
    return buffer;
  };
  const positionBuffer = attribute("position", 3, gl.FLOAT, false);
  const valueBuffer = attribute("value", 1, gl.FLOAT, false);
  const chosenBuffer = attribute("chosen", 1, gl.UNSIGNED_BYTE, true);
  gl.enable(gl.BLEND);
  gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);

  let drag = null, hoverTimer = 0, hovered = -1;
  let perm = null, budget = 250000, lastInteraction = -Infinity, lastFrameAt = 0, idleTimer = 0;
  let points = null, count = 0, chosen = new Uint8Array(0), anySelected = false, span = [0, 1], continuous = false;
  let yaw = 0.6, pitch = 0.35, distance = 3.2, panX = 0, panY = 0, zoom = 0.9, frame = 0, transform = null;
  const stats = { firstFrame: null, frames: [], draws: [], drawn: [] };
  el.__picsift = stats;

  const draw = (time) => {
    frame = 0;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(area.clientWidth * dpr)), height = Math.max(1, Math.round(area.clientHeight * dpr));
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const rotating = model.get("_autorotate") && model.get("dims") === 3;
    if (rotating) yaw += 0.02;
    const aspect = width / height;
    const now = performance.now();
    const moving = rotating || drag !== null || now - lastInteraction < IDLE_MS;
    if (moving && perm && lastFrameAt && now - lastFrameAt < 1000) { // adapt the sample to the frame rate
      const interval = now - lastFrameAt;
      if (interval > FRAME_TARGET * 1.2) budget = Math.max(20000, Math.round(budget * 0.75));
      else if (interval < FRAME_TARGET * 0.6) budget = Math.min(count, Math.round(budget * 1.25));
    }
    lastFrameAt = now;
    const drawn = moving && perm ? Math.min(count, budget) : count;
    transform = model.get("dims") === 3 ? orbit(yaw, pitch, distance, aspect) : flat(panX, panY, zoom, aspect);
    const t0 = performance.now();
    gl.viewport(0, 0, width, height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.uniformMatrix4fv(u.transform, false, transform);
    gl.uniform1f(u.size, model.get("point_size") * dpr * (count < 5000 ? 2 : count > 200000 ? 0.6 : 1));
    gl.uniform1i(u.continuous, continuous ? 1 : 0);
    gl.uniform2f(u.span, span[0], span[1]);
    gl.uniform1i(u.anySelected, anySelected ? 1 : 0);
    gl.drawArrays(gl.POINTS, 0, drawn);
    if (count && (stats.firstFrame === null || rotating)) gl.finish(); // honest timings: wait for the pixels
    const t1 = performance.now();
    if (count && stats.firstFrame === null) {
      stats.firstFrame = t1;
      el.dataset.firstFrame = String(t1);
    }
    if (count) {
      stats.frames.push(time ?? t1);
      stats.draws.push(t1 - t0);
      stats.drawn.push(drawn);
      if (stats.frames.length > 600) { stats.frames.shift(); stats.draws.shift(); stats.drawn.shift(); }
    }
    el.dataset.frames = String(stats.frames.length);
    el.dataset.draws = String(Number(el.dataset.draws || 0) + 1); // every frame drawn (tests wait on it)
    if (rotating) schedule();
    else if (drawn < count) { // one full frame once the view has been still for a moment
      clearTimeout(idleTimer);
      idleTimer = setTimeout(schedule, IDLE_MS);
    }
  };
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };

  const loadPoints = () => {
    points = toArray(model.get("_points"));
    count = points ? points.length / 3 : 0;
    gl.bindBuffer(gl.ARRAY_BUFFER, positionBuffer);
    perm = count > LOD_FROM ? shuffled(count) : null;
    gl.bufferData(gl.ARRAY_BUFFER, points ? permute(points, perm, 3) : new Float32Array(0), gl.STATIC_DRAW);
    el.dataset.points = String(count);
    el.dataset.pointsVersion = String(Number(el.dataset.pointsVersion || 0) + 1);
    loadColors();
    loadSelected();
  };
  const loadColors = () => {
    let values = toArray(model.get("_colors"));
    if (!values || values.length !== count) values = new Float32Array(count);
    continuous = model.get("_color_kind") === "continuous";
    let lo = Infinity, hi = -Infinity;
    if (continuous) for (let i = 0; i < values.length; i++) { const v = values[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
    span = continuous && values.length ? [lo, hi] : [0, 1];
    gl.bindBuffer(gl.ARRAY_BUFFER, valueBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, permute(values, perm, 1), gl.DYNAMIC_DRAW);
    legend.replaceChildren(...(continuous
      ? [h("span", {}, `score ${span[0].toFixed(3)} (dark) … ${span[1].toFixed(3)} (bright)`)]
      : model.get("_legend").slice(0, 20).map((name, i) => name && h("span", {
        class: "picsift-legend-entry", title: `select every ${name.replace(/ \([\d,]+\)$/, "")} point`,
        onclick: () => send(model, "select_category", { index: i }),
      }, h("i", { style: `background: rgb(${PALETTE[i % 10].map((c) => Math.round(c * 255)).join(",")})` }), name)).filter(Boolean)));
    el.dataset.colorBy = model.get("color_by");
    schedule();
  };
  const loadSelected = () => {
    const positions = toArray(model.get("_selected"));
    chosen = new Uint8Array(count);
    anySelected = false;
    if (positions) for (const p of positions) if (p < count) { chosen[p] = 255; anySelected = true; }
    gl.bindBuffer(gl.ARRAY_BUFFER, chosenBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, permute(chosen, perm, 1), gl.DYNAMIC_DRAW);
    el.dataset.selected = String(positions ? positions.length : 0);
    el.__picsiftSelected = () => (positions ? Array.from(positions) : []); // for tests
    schedule();
  };
  const syncControls = () => {
    dims.value = String(model.get("dims"));
    colorBy.value = model.get("color_by");
    dragMode.value = model.get("drag_mode");
    dragMode.hidden = model.get("dims") !== 2;
    canvas.style.cursor = model.get("dims") === 2 && model.get("drag_mode") !== "move" ? "crosshair" : "";
    state.textContent = `${model.get("projection_state") || model.get("projection")} · ${formatCount(count)} points`;
    const computing = (model.get("projection_state") || "").includes("computing");
    umap.disabled = model.get("projection") === "umap" || computing;
    refit.hidden = model.get("projection") !== "umap";
    refit.disabled = computing;
    schedule();
  };

  // -- picking: project on the CPU with the same matrix the GPU used ---------------------------
  const screenOf = (i, w, hgt) => {
    const m = transform, x = points[3 * i], y = points[3 * i + 1], z = points[3 * i + 2];
    const cw = m[3] * x + m[7] * y + m[11] * z + m[15];
    if (cw <= 0) return null;
    return [((m[0] * x + m[4] * y + m[8] * z + m[12]) / cw + 1) * 0.5 * w, (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / cw) * 0.5 * hgt];
  };
  const pick = (clientX, clientY, radius = 10) => {
    if (!points || !transform) return -1;
    const rect = canvas.getBoundingClientRect();
    const px = clientX - rect.left, py = clientY - rect.top;
    let best = -1, bestDistance = radius * radius;
    for (let i = 0; i < count; i++) {
      const s = screenOf(i, rect.width, rect.height);
      if (!s) continue;
      const d = (s[0] - px) ** 2 + (s[1] - py) ** 2;
      if (d < bestDistance) { bestDistance = d; best = i; }
    }
    return best;
  };
  const inBox = (x0, y0, x1, y1) => {
    const rect = canvas.getBoundingClientRect();
    const [ax, bx] = [Math.min(x0, x1) - rect.left, Math.max(x0, x1) - rect.left];
    const [ay, by] = [Math.min(y0, y1) - rect.top, Math.max(y0, y1) - rect.top];
    const found = [];
    for (let i = 0; i < count; i++) {
      const s = screenOf(i, rect.width, rect.height);
      if (s && s[0] >= ax && s[0] <= bx && s[1] >= ay && s[1] <= by) found.push(i);
    }
    return Int32Array.from(found);
  };
  const inLasso = (polygon) => { // ray casting against the outline, after a bounding-box test
    const rect = canvas.getBoundingClientRect();
    const xs = polygon.map((p) => p[0] - rect.left), ys = polygon.map((p) => p[1] - rect.top);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const found = [];
    for (let i = 0; i < count; i++) {
      const s = screenOf(i, rect.width, rect.height);
      if (!s || s[0] < x0 || s[0] > x1 || s[1] < y0 || s[1] > y1) continue;
      let inside = false;
      for (let a = 0, b = xs.length - 1; a < xs.length; b = a++) {
        if ((ys[a] > s[1]) !== (ys[b] > s[1]) && s[0] < ((xs[b] - xs[a]) * (s[1] - ys[a])) / (ys[b] - ys[a]) + xs[a]) inside = !inside;
      }
      if (inside) found.push(i);
    }
    return Int32Array.from(found);
  };
  el.__picsiftScreen = (i) => { // for tests: where point i is on the page
    const rect = canvas.getBoundingClientRect();
    const s = transform && points ? screenOf(i, rect.width, rect.height) : null;
    return s ? [rect.left + s[0], rect.top + s[1]] : null;
  };

  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    const flat2d = model.get("dims") === 2, mode = model.get("drag_mode");
    const lassoing = flat2d && !event.shiftKey && (event.altKey || mode === "lasso");
    drag = { x: event.clientX, y: event.clientY, x0: event.clientX, y0: event.clientY, moved: false,
      box: flat2d && !lassoing && (event.shiftKey || mode === "box"), lasso: lassoing ? [[event.clientX, event.clientY]] : null };
    tooltip.hidden = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) {
      clearTimeout(hoverTimer);
      hoverTimer = setTimeout(() => hover(event.clientX, event.clientY), count > 200000 ? 150 : 60);
      return;
    }
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(event.clientX - drag.x0) + Math.abs(event.clientY - drag.y0) > 3) drag.moved = true;
    drag.x = event.clientX;
    drag.y = event.clientY;
    lastInteraction = performance.now();
    if (drag.lasso) {
      drag.lasso.push([event.clientX, event.clientY]);
      const rect = area.getBoundingClientRect();
      outline.setAttribute("points", drag.lasso.map(([x, y]) => `${x - rect.left},${y - rect.top}`).join(" "));
      lasso.style.display = "";
    } else if (drag.box) {
      const rect = area.getBoundingClientRect();
      Object.assign(box.style, { left: `${Math.min(drag.x0, drag.x) - rect.left}px`, top: `${Math.min(drag.y0, drag.y) - rect.top}px`, width: `${Math.abs(drag.x - drag.x0)}px`, height: `${Math.abs(drag.y - drag.y0)}px` });
      box.hidden = false;
    } else if (model.get("dims") === 3) {
      yaw += dx * 0.008;
      pitch = Math.max(-1.5, Math.min(1.5, pitch + dy * 0.008));
    } else {
      const rect = canvas.getBoundingClientRect();
      panX -= (2 * dx * (rect.width / rect.height)) / (rect.width * zoom);
      panY += (2 * dy) / (rect.height * zoom);
    }
    schedule();
  });
  canvas.addEventListener("pointerup", (event) => {
    const ended = drag;
    drag = null;
    schedule();
    box.hidden = true;
    lasso.style.display = "none";
    if (!ended) return;
    if ((ended.lasso && ended.moved && ended.lasso.length >= 3) || (ended.box && ended.moved)) {
      const t0 = performance.now();
      const found = ended.lasso ? inLasso(ended.lasso) : inBox(ended.x0, ended.y0, event.clientX, event.clientY);
      stats.select = { ms: performance.now() - t0, points: count, found: found.length }; // for bench/widgets.py
      model.set("_selected", fromArray(found, "int32"));
      model.save_changes();
    } else if (!ended.moved) {
      const index = pick(event.clientX, event.clientY);
      if (index >= 0) {
        el.dataset.picked = String(index);
        send(model, "pick", { index });
      }
    }
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const factor = Math.exp(-event.deltaY * 0.001);
    if (model.get("dims") === 3) distance = Math.max(0.3, Math.min(20, distance / factor));
    else zoom = Math.max(0.05, Math.min(500, zoom * factor));
    lastInteraction = performance.now();
    schedule();
  }, { passive: false });
  canvas.addEventListener("pointerleave", () => { clearTimeout(hoverTimer); tooltip.hidden = true; hovered = -1; });

  const hover = (x, y) => {
    const index = pick(x, y, 8);
    const rect = area.getBoundingClientRect();
    if (index < 0) { tooltip.hidden = true; hovered = -1; return; }
    Object.assign(tooltip.style, { left: `${Math.min(x - rect.left + 12, rect.width - 150)}px`, top: `${Math.min(y - rect.top + 12, rect.height - 160)}px` });
    if (index === hovered) return;
    hovered = index;
    rpc.request({ type: "thumbnails", indices: [index] }).then(({ msg, buffers }) => {
      if (hovered !== index) return;
      const old = tooltip.querySelector("img");
      if (old) URL.revokeObjectURL(old.src);
      const url = buffers[0] && buffers[0].byteLength ? URL.createObjectURL(new Blob([buffers[0]], { type: "image/webp" })) : "";
      tooltip.replaceChildren(...(url ? [h("img", { src: url })] : []), h("div", {}, msg.names[0]));
      tooltip.hidden = false;
    }).catch(() => {});
  };

  const resize = new ResizeObserver(schedule);
  resize.observe(area);
  const handlers = [["change:_points", loadPoints], ["change:_colors", loadColors], ["change:_color_kind", loadColors],
    ["change:_selected", loadSelected], ["change:dims", syncControls], ["change:color_by", syncControls],
    ["change:color_fields", colorOptions], ["change:drag_mode", syncControls],
    ["change:projection", syncControls], ["change:projection_state", syncControls], ["change:point_size", schedule],
    ["change:_autorotate", schedule]];
  for (const [name, f] of handlers) model.on(name, f);
  colorOptions();
  loadPoints();
  syncControls();
  return () => {
    for (const [name, f] of handlers) model.off(name, f);
    cancelAnimationFrame(frame);
    clearTimeout(hoverTimer);
    clearTimeout(idleTimer);
    resize.disconnect();
    rpc.dispose();
    disposeError();
    gl.getExtension("WEBGL_lose_context")?.loseContext();
  };
}

export default { render };
