// A uniform grid over 2D coordinates (a counting sort of point indices by cell): nearest point, points in
// a rectangle, points in a polygon. Built once per point set over the data in 2D (the view's transform is
// affine, so screen queries map to data space), and once per still view over projected points in 3D.
// Cells wholly inside a rectangle or polygon are taken without testing their points; only the cells the
// outline crosses are tested point by point, so a lasso around 200k of 1M points tests a few thousand.

export class Grid {
  /**
   * @param {ArrayLike<number>} coords x, y of point i at coords[i * stride], coords[i * stride + 1] (NaN: skip)
   * @param {number} stride
   * @param {number} count
   */
  constructor(coords, stride, count, perCell = 4) {
    this.coords = coords;
    this.stride = stride;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < count; i++) {
      const x = coords[i * stride], y = coords[i * stride + 1];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y; // NaN fails every test
    }
    if (!(x1 >= x0)) { x0 = y0 = 0; x1 = y1 = 1; }
    const w = Math.max(x1 - x0, 1e-12), h = Math.max(y1 - y0, 1e-12);
    const cells = Math.max(1, Math.min(1 << 20, Math.ceil(count / perCell)));
    this.nx = Math.max(1, Math.min(2048, Math.round(Math.sqrt((cells * w) / h))));
    this.ny = Math.max(1, Math.min(2048, Math.round(cells / this.nx)));
    Object.assign(this, { x0, y0, cw: w / this.nx, ch: h / this.ny });
    const cellOf = new Int32Array(count), start = new Uint32Array(this.nx * this.ny + 1);
    for (let i = 0; i < count; i++) {
      const c = this.cell(coords[i * stride], coords[i * stride + 1]);
      cellOf[i] = c;
      if (c >= 0) start[c + 1]++;
    }
    for (let c = 0; c < this.nx * this.ny; c++) start[c + 1] += start[c];
    const fill = start.slice(0, -1), order = new Int32Array(start[this.nx * this.ny]); // int32: copied as is into results
    for (let i = 0; i < count; i++) if (cellOf[i] >= 0) order[fill[cellOf[i]]++] = i;
    this.start = start;
    this.order = order;
  }

  column(x) { return Math.min(this.nx - 1, Math.max(0, Math.floor((x - this.x0) / this.cw))); }
  row(y) { return Math.min(this.ny - 1, Math.max(0, Math.floor((y - this.y0) / this.ch))); }
  cell(x, y) { return x === x && y === y ? this.row(y) * this.nx + this.column(x) : -1; }

  /** The point nearest (x, y) within `radius` (grid units), or -1. */
  nearest(x, y, radius) {
    const { coords, stride, start, order } = this;
    let best = -1, bestDistance = radius * radius;
    for (let r = this.row(y - radius); r <= this.row(y + radius); r++) {
      for (let c = this.column(x - radius); c <= this.column(x + radius); c++) {
        const cell = r * this.nx + c;
        for (let k = start[cell]; k < start[cell + 1]; k++) {
          const i = order[k], dx = coords[i * stride] - x, dy = coords[i * stride + 1] - y;
          const d = dx * dx + dy * dy;
          if (d < bestDistance) { bestDistance = d; best = i; }
        }
      }
    }
    return best;
  }

  /** How many points the cells touching the rectangle hold (at least as many as lie inside it): O(rows). */
  countRect(ax, ay, bx, by) {
    const c0 = this.column(ax), c1 = this.column(bx);
    let total = 0;
    for (let r = this.row(ay); r <= this.row(by); r++) total += this.start[r * this.nx + c1 + 1] - this.start[r * this.nx + c0];
    return total;
  }

  /** Indices of the points with ax <= x <= bx and ay <= y <= by. */
  inRect(ax, ay, bx, by) {
    const { coords, stride, start, order } = this;
    const found = new Int32Array(this.countRect(ax, ay, bx, by));
    let n = 0;
    const c0 = this.column(ax), c1 = this.column(bx), r0 = this.row(ay), r1 = this.row(by);
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cell = r * this.nx + c;
        if (c > c0 && c < c1 && r > r0 && r < r1) { // strictly inner cells lie within the rectangle
          found.set(order.subarray(start[cell], start[cell + 1]), n);
          n += start[cell + 1] - start[cell];
          continue;
        }
        for (let k = start[cell]; k < start[cell + 1]; k++) {
          const i = order[k], x = coords[i * stride], y = coords[i * stride + 1];
          if (x >= ax && x <= bx && y >= ay && y <= by) found[n++] = i;
        }
      }
    }
    return found.slice(0, n);
  }

  /** Indices of the points inside the polygon with vertices (xs[k], ys[k]) (even-odd rule). */
  inPolygon(xs, ys) {
    const { coords, stride, start, order } = this;
    const c0 = this.column(Math.min(...xs)), c1 = this.column(Math.max(...xs));
    const r0 = this.row(Math.min(...ys)), r1 = this.row(Math.max(...ys));
    const cols = c1 - c0 + 1;
    // Cells an edge may cross: each edge cut into pieces shorter than a cell marks its pieces' bounding
    // cells (at most 2 x 2 each), a superset of the cells it passes through.
    const crossed = new Uint8Array(cols * (r1 - r0 + 1));
    const step = Math.min(this.cw, this.ch);
    for (let a = 0, b = xs.length - 1; a < xs.length; b = a++) {
      const pieces = Math.max(1, Math.ceil(Math.hypot(xs[a] - xs[b], ys[a] - ys[b]) / step));
      for (let p = 0; p < pieces; p++) {
        const t0 = p / pieces, t1 = (p + 1) / pieces;
        const px0 = xs[b] + (xs[a] - xs[b]) * t0, py0 = ys[b] + (ys[a] - ys[b]) * t0;
        const px1 = xs[b] + (xs[a] - xs[b]) * t1, py1 = ys[b] + (ys[a] - ys[b]) * t1;
        for (let r = this.row(Math.min(py0, py1)); r <= this.row(Math.max(py0, py1)); r++) {
          for (let c = this.column(Math.min(px0, px1)); c <= this.column(Math.max(px0, px1)); c++) {
            crossed[(r - r0) * cols + (c - c0)] = 1;
          }
        }
      }
    }
    const found = new Int32Array(this.countRect(Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)));
    let n = 0;
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cell = r * this.nx + c;
        if (start[cell] === start[cell + 1]) continue;
        if (!crossed[(r - r0) * cols + (c - c0)]) { // wholly inside or wholly outside: its centre decides
          if (insidePolygon(this.x0 + (c + 0.5) * this.cw, this.y0 + (r + 0.5) * this.ch, xs, ys)) {
            found.set(order.subarray(start[cell], start[cell + 1]), n);
            n += start[cell + 1] - start[cell];
          }
          continue;
        }
        for (let k = start[cell]; k < start[cell + 1]; k++) {
          const i = order[k];
          if (insidePolygon(coords[i * stride], coords[i * stride + 1], xs, ys)) found[n++] = i;
        }
      }
    }
    return found.slice(0, n);
  }
}

export function insidePolygon(x, y, xs, ys) {
  let inside = false;
  for (let a = 0, b = xs.length - 1; a < xs.length; b = a++) {
    if ((ys[a] > y) !== (ys[b] > y) && x < ((xs[b] - xs[a]) * (y - ys[a])) / (ys[b] - ys[a]) + xs[a]) inside = !inside;
  }
  return inside;
}
