// Which points lie under the pointer, in a box or in a lasso. 2D queries a grid over the data, built once
// per point set (the view's transform is affine, so screen shapes map to data space exactly); 3D queries a
// grid over the points' screen positions, built once per still view and reused until the camera moves.
import { toScreen } from "./camera.js";
import { Grid } from "./grid.js";

/**
 * @param {HTMLCanvasElement} canvas
 * @param {import("./camera.js").Camera} camera
 * @param {() => {points: Float32Array | null, dims: number, count: number}} current
 */
export function createPicker(canvas, camera, current) {
  let dataGrid = null, screen = null;
  const local = (clientX, clientY) => {
    const rect = canvas.getBoundingClientRect();
    return [clientX - rect.left, clientY - rect.top, rect.width, rect.height];
  };
  // 2D: the inverse of the camera's affine map, into the grid's space (x drawn `stretch` times a y unit)
  const toGrid = (px, py, w, hgt) => {
    const unit = camera.pixelsPerUnit(hgt);
    return [(camera.center[0] + (px - w / 2) / (unit * camera.stretch)) * camera.stretch,
      camera.center[1] - (py - hgt / 2) / unit];
  };
  const projected = (w, hgt) => {
    if (screen && screen.version === camera.version && screen.w === w && screen.h === hgt) return screen.grid;
    const { points, count } = current();
    const m = camera.matrix(w / hgt), xy = new Float32Array(count * 2);
    for (let i = 0; i < count; i++) { // toScreen, inlined: no array per point
      const x = points[3 * i], y = points[3 * i + 1], z = points[3 * i + 2];
      const cw = m[3] * x + m[7] * y + m[11] * z + m[15];
      xy[2 * i] = cw > 0 ? ((m[0] * x + m[4] * y + m[8] * z + m[12]) / cw + 1) * 0.5 * w : NaN;
      xy[2 * i + 1] = cw > 0 ? (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / cw) * 0.5 * hgt : NaN;
    }
    screen = { version: camera.version, w, h: hgt, grid: new Grid(xy, 2, count, 2) };
    return screen.grid;
  };
  const grid2d = () => { // over the data, with x scaled by the stretch so distances are isotropic on screen
    if (dataGrid && dataGrid.stretch === camera.stretch) return dataGrid.grid;
    const { points, count } = current();
    let coords = points;
    if (camera.stretch !== 1) {
      coords = new Float32Array(count * 2);
      for (let i = 0; i < 2 * count; i += 2) { coords[i] = points[i] * camera.stretch; coords[i + 1] = points[i + 1]; }
    }
    dataGrid = { stretch: camera.stretch, grid: new Grid(coords, 2, count) };
    return dataGrid.grid;
  };
  return {
    /** Forget the grids (new points). */
    reset() { dataGrid = screen = null; },
    /** Build the 2D grid ahead of the first hover or lasso (when the browser is idle). */
    warm() { if (current().dims === 2 && current().count) grid2d(); },
    /** The point nearest the pointer within `radius` pixels, or -1. */
    nearest(clientX, clientY, radius = 10) {
      if (!current().count) return -1;
      const [px, py, w, hgt] = local(clientX, clientY);
      if (current().dims === 3) return projected(w, hgt).nearest(px, py, radius);
      const [x, y] = toGrid(px, py, w, hgt);
      return grid2d().nearest(x, y, radius / camera.pixelsPerUnit(hgt));
    },
    /** Indices of the points in the box between two pointer positions. */
    inBox(x0, y0, x1, y1) {
      if (!current().count) return new Int32Array(0);
      const [ax, ay, w, hgt] = local(Math.min(x0, x1), Math.min(y0, y1)), [bx, by] = local(Math.max(x0, x1), Math.max(y0, y1));
      if (current().dims === 3) return projected(w, hgt).inRect(ax, ay, bx, by);
      const [dx0, dy1] = toGrid(ax, ay, w, hgt), [dx1, dy0] = toGrid(bx, by, w, hgt);
      return grid2d().inRect(dx0, dy0, dx1, dy1);
    },
    /** Indices of the points inside a lasso drawn through these pointer positions. */
    inLasso(polygon) {
      if (!current().count) return new Int32Array(0);
      const [, , w, hgt] = local(0, 0);
      const corners = polygon.map(([x, y]) => local(x, y));
      if (current().dims === 3) return projected(w, hgt).inPolygon(corners.map((c) => c[0]), corners.map((c) => c[1]));
      const data = corners.map(([px, py]) => toGrid(px, py, w, hgt));
      return grid2d().inPolygon(data.map((d) => d[0]), data.map((d) => d[1]));
    },
    /**
     * Indices of the points within the canvas grown by `margin` CSS pixels, or null when more than `limit`
     * may lie there. Without `build`, it answers only from a grid built already (2D: over the data, once;
     * 3D: for this very view): projecting or sorting every point is too slow for a first or a moving frame.
     */
    onScreen(limit, margin = 0, build = true) {
      if (!current().count) return new Int32Array(0);
      const rect = canvas.getBoundingClientRect();
      const w = rect.width, hgt = rect.height;
      if (current().dims === 3) {
        if (!build && !(screen && screen.version === camera.version && screen.w === w && screen.h === hgt)) return null;
        const grid = projected(w, hgt);
        if (grid.countRect(-margin, -margin, w + margin, hgt + margin) > limit * 4) return null;
        const found = grid.inRect(-margin, -margin, w + margin, hgt + margin);
        return found.length <= limit ? found : null;
      }
      const [x0, y1] = toGrid(-margin, -margin, w, hgt), [x1, y0] = toGrid(w + margin, hgt + margin, w, hgt);
      if (!build && !(dataGrid && dataGrid.stretch === camera.stretch)) return null;
      const grid = grid2d();
      if (grid.countRect(x0, y0, x1, y1) > limit * 4) return null;
      const found = grid.inRect(x0, y0, x1, y1);
      return found.length <= limit ? found : null;
    },
    /** Where point i is on the page (for tests), or null. */
    pageOf(i) {
      const { points, dims, count } = current();
      if (!points || i >= count) return null;
      const rect = canvas.getBoundingClientRect();
      const p = [0, 1, 2].map((k) => (k < dims ? points[i * dims + k] : 0));
      const s = toScreen(camera.matrix(rect.width / rect.height), p[0], p[1], p[2], rect.width, rect.height);
      return s ? [rect.left + s[0], rect.top + s[1]] : null;
    },
  };
}

/** Save the WebGL canvas (just drawn, in this task) as a PNG on an opaque background, with overlays. */
export function downloadPng(canvas, overlays, background, name = "picsift-map.png") {
  const out = document.createElement("canvas");
  out.width = canvas.width;
  out.height = canvas.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = !background || background === "rgba(0, 0, 0, 0)" ? "#fff" : background;
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(canvas, 0, 0);
  for (const overlay of overlays) if (!overlay.hidden) ctx.drawImage(overlay, 0, 0, out.width, out.height);
  out.toBlob((blob) => {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }, "image/png");
}
