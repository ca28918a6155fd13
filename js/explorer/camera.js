// The explorer's view: a 2D pan/zoom or a 3D orbit around a centre, its matrix (column-major 4x4, the
// same one the GPU uses and the CPU picks with), fitting to bounds, and a JSON state for the `camera` trait.
// 2D: x_ndc = (x - cx) * zoom * stretch / aspect, y_ndc = (y - cy) * zoom (zoom: NDC per data unit of y;
// stretch: how much larger an x unit is drawn than a y unit, 1 for equal axes).
// 3D: view = translate(0, 0, -distance) * rotateX(pitch) * rotateY(yaw) * translate(-centre).

export const FOV = Math.PI / 4;
const F = 1 / Math.tan(FOV / 2);

function multiply(a, b) {
  const out = new Float32Array(16);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) {
    let s = 0;
    for (let k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
    out[c * 4 + r] = s;
  }
  return out;
}

export class Camera {
  constructor() {
    this.dims = 3;
    this.center = [0, 0, 0];
    this.zoom = 0.9;
    this.stretch = 1;
    this.equalAxes = true;
    this.distance = 3.2;
    this.yaw = 0.6;
    this.pitch = 0.35;
    this.fitZoom = 0.9; // what "fit" chose: bounds for zooming in and out
    this.fitDistance = 3.2;
    this.radius = 1;
    this.maxZoom = Infinity; // 2D: where quantised points would stop being exact (./points.js)
    this.version = 0; // bumped on every change (screen-space caches key on it)
  }

  changed() { this.version++; }

  matrix(aspect) {
    const [cx, cy, cz] = this.center;
    if (this.dims === 2) {
      const z = this.zoom, zx = (this.zoom * this.stretch) / aspect;
      return new Float32Array([zx, 0, 0, 0, 0, z, 0, 0, 0, 0, 1, 0, -cx * zx, -cy * z, 0, 1]);
    }
    const near = this.distance * 0.01, far = this.distance + this.radius * 20 + 1;
    const projection = new Float32Array([F / aspect, 0, 0, 0, 0, F, 0, 0, 0, 0, (far + near) / (near - far), -1,
      0, 0, (2 * far * near) / (near - far), 0]);
    const y = this.yaw, p = this.pitch;
    const cyw = Math.cos(y), syw = Math.sin(y), cp = Math.cos(p), sp = Math.sin(p);
    const rotation = [cyw, sp * syw, -cp * syw, 0, 0, cp, sp, 0, syw, -sp * cyw, cp * cyw, 0];
    const view = new Float32Array([...rotation,
      -(rotation[0] * cx + rotation[4] * cy + rotation[8] * cz),
      -(rotation[1] * cx + rotation[5] * cy + rotation[9] * cz),
      -(rotation[2] * cx + rotation[6] * cy + rotation[10] * cz) - this.distance, 1]);
    return multiply(projection, view);
  }

  /** Pixels per data unit (of y, in 2D) at depth w = 1 (2D: everywhere), for a canvas `height` pixels tall. */
  pixelsPerUnit(height) { return (this.dims === 2 ? this.zoom : F) * height / 2; }

  /** Pixels per data unit of x (2D). */
  pixelsPerUnitX(height) { return this.pixelsPerUnit(height) * (this.dims === 2 ? this.stretch : 1); }

  /**
   * Frame `bounds` ([[min...], [max...], radius?]) in a canvas of this aspect, with a margin. A fit to every point
   * (not `partial`) also sets the zoom range; `resetAngles` turns a 3D view back to its first angle.
   */
  fit(bounds, aspect, dims, { partial = false, resetAngles = false } = {}) {
    this.dims = dims;
    const [lo, hi] = bounds;
    const size = [0, 1, 2].map((k) => (k < lo.length ? hi[k] - lo[k] : 0));
    this.center = [0, 1, 2].map((k) => (k < lo.length ? (lo[k] + hi[k]) / 2 : 0));
    if (dims === 2) {
      const w = size[0] * 1.08, h = size[1] * 1.08;
      if (!partial) this.stretch = !this.equalAxes && w > 0 && h > 0 ? (aspect * h) / w : 1;
      const zoom = Math.min(h > 0 ? 2 / h : Infinity, w > 0 ? (2 * aspect) / (w * this.stretch) : Infinity);
      this.zoom = Math.min(Number.isFinite(zoom) ? zoom : partial ? this.fitZoom * 20 : 1, this.maxZoom);
      if (!partial) this.fitZoom = this.zoom;
    } else {
      const radius = Math.max(bounds[2] ?? Math.hypot(...size) / 2, 1e-6); // [2]: the points' bounding sphere
      this.distance = (radius / Math.sin(FOV / 2)) * 1.05 * Math.max(1, 1 / aspect);
      if (!partial) { this.radius = radius; this.fitDistance = this.distance; }
      if (resetAngles) { this.yaw = 0.6; this.pitch = 0.35; }
    }
    this.changed();
  }

  /** Set the zoom range from `bounds` as `fit` would, keeping the view. */
  reference(bounds, aspect) {
    const keep = this.state();
    this.fit(bounds, aspect, this.dims);
    this.apply(keep);
  }

  pan(dx, dy, height) { // a drag of (dx, dy) pixels moves the points with the pointer
    const unit = this.pixelsPerUnit(height);
    this.center = [this.center[0] - dx / (unit * this.stretch), this.center[1] + dy / unit, this.center[2]];
    this.changed();
  }

  rotate(dx, dy) {
    this.yaw += dx * 0.008;
    this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + dy * 0.008));
    this.changed();
  }

  /** Zoom by `factor` keeping the data point under (px, py) (pixels from the canvas centre) in place (2D). */
  zoomBy(factor, px = 0, py = 0, height = 1) {
    if (this.dims === 2) {
      const before = this.pixelsPerUnit(height), s = this.stretch;
      this.zoom = Math.max(this.fitZoom / 50, Math.min(this.fitZoom * 1e5, this.maxZoom, this.zoom * factor));
      const after = this.pixelsPerUnit(height);
      this.center = [this.center[0] + px / (before * s) - px / (after * s), this.center[1] - py / before + py / after,
        this.center[2]];
    } else {
      this.distance = Math.max(this.fitDistance / 100, Math.min(this.fitDistance * 20, this.distance / factor));
    }
    this.changed();
  }

  state() {
    return this.dims === 2 ? { center: this.center.slice(0, 2), zoom: this.zoom, stretch: this.stretch }
      : { center: this.center.slice(), distance: this.distance, yaw: this.yaw, pitch: this.pitch };
  }

  /** Apply a `camera` trait value; false when it does not fit these points' dimension. */
  apply(state) {
    if (!state || !Array.isArray(state.center) || state.center.length !== this.dims) return false;
    const numbers = (...xs) => xs.every((x) => typeof x === "number" && Number.isFinite(x));
    if (!numbers(...state.center)) return false;
    if (this.dims === 2) {
      if (!numbers(state.zoom) || state.zoom <= 0) return false;
      this.center = [state.center[0], state.center[1], 0];
      this.zoom = state.zoom;
      this.stretch = numbers(state.stretch) && state.stretch > 0 ? state.stretch : 1;
    } else {
      if (!numbers(state.distance, state.yaw, state.pitch) || state.distance <= 0) return false;
      this.center = state.center.slice();
      Object.assign(this, { distance: state.distance, yaw: state.yaw, pitch: state.pitch });
    }
    this.changed();
    return true;
  }
}

/** Where data point (x, y, z) lands on a width x height canvas under matrix m, or null behind the eye. */
export function toScreen(m, x, y, z, width, height) {
  const w = m[3] * x + m[7] * y + m[11] * z + m[15];
  if (w <= 0) return null;
  return [((m[0] * x + m[4] * y + m[8] * z + m[12]) / w + 1) * 0.5 * width,
    (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / w) * 0.5 * height];
}
