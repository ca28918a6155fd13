// The explorer's points on the CPU side: read from the `_points` trait (float32, or uint16 steps between
// `_points_bounds` for big maps: 4 bytes a 2D point instead of 8), their bounds, and the zoom at which a
// quantisation step would start to show.
import { toArray } from "../protocol.js";

const STEPS = 65535;

/**
 * Float32 coordinates (n * dims) from the `_points` value, and the size of one quantisation step per axis
 * (0 for float32 points).
 * @returns {{points: Float32Array | null, dims: number, steps: number[]}}
 */
export function readPoints(value, bounds) {
  const raw = toArray(value);
  const dims = value && value.shape && value.shape[1] === 2 ? 2 : 3;
  if (!raw || !(raw instanceof Uint16Array) || !bounds || bounds.length !== 2) {
    return { points: raw, dims, steps: [0, 0, 0] };
  }
  const [lo, hi] = bounds;
  const scale = lo.map((v, k) => (hi[k] > v ? (hi[k] - v) / STEPS : 0));
  const points = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i += dims) {
    for (let k = 0; k < dims; k++) points[i + k] = lo[k] + raw[i + k] * scale[k];
  }
  return { points, dims, steps: scale };
}

/**
 * The largest 2D zoom (NDC per data unit of y) at which half a quantisation step spans at most half a device
 * pixel on either axis, so no point is drawn more than 0.71 px from its float32 place; Infinity for float32.
 */
export function maxZoomFor(steps, stretch, heightPx) {
  const widest = Math.max(steps[0] * stretch, steps[1]);
  return widest > 0 ? 2 / (heightPx * widest) : Infinity;
}

/** [min, max] of the points (or of those in `pick`), and in 3D the radius of the sphere about the box's
 * centre that holds them all (tighter than the box's half-diagonal: the view can come closer). */
export function boundsOf(points, dims, count, pick = null) {
  const lo = Array(dims).fill(Infinity), hi = Array(dims).fill(-Infinity);
  const n = pick ? pick.length : count;
  for (let j = 0; j < n; j++) {
    const i = pick ? pick[j] : j;
    for (let k = 0; k < dims; k++) {
      const v = points[i * dims + k];
      if (v < lo[k]) lo[k] = v;
      if (v > hi[k]) hi[k] = v;
    }
  }
  if (!n) return null;
  if (dims !== 3) return [lo, hi];
  const c = lo.map((v, k) => (v + hi[k]) / 2);
  let far = 0;
  for (let j = 0; j < n; j++) {
    const i = pick ? pick[j] : j;
    const dx = points[3 * i] - c[0], dy = points[3 * i + 1] - c[1], dz = points[3 * i + 2] - c[2];
    const d = dx * dx + dy * dy + dz * dz;
    if (d > far) far = d;
  }
  return [lo, hi, Math.sqrt(far)];
}

/**
 * Exact coordinates for quantised points, asked of Python (`coordinates` requests, one at a time) for the
 * points on screen once the view comes within reach of the zoom where a step could show: the zoom cap then
 * lifts for a view whose points are all exact.
 * @param {{rpc: {request: (c: object) => Promise<{buffers: (ArrayBuffer | DataView)[]}>}, refined: () => void}} options
 */
export function createRefiner({ rpc, refined }) {
  let exact = null, target = null, dims = 2, busy = false, generation = 0;
  return {
    /** New points: `quantised` ones (a Float32Array written in place as answers come) can be refined. */
    reset(points, d, quantised) {
      generation++;
      busy = false;
      [target, dims] = [quantised ? points : null, d];
      exact = quantised && points ? new Uint8Array(points.length / d) : null;
    },
    /** Whether every point of `indices` is where float32 would put it. */
    exactAll(indices) {
      if (!exact) return true;
      for (let k = 0; k < indices.length; k++) if (!exact[indices[k]]) return false;
      return true;
    },
    /** Ask for the exact coordinates of the points of `indices` that are not exact yet. */
    want(indices) {
      if (!exact || busy) return;
      const missing = [];
      for (let k = 0; k < indices.length && missing.length < 8192; k++) if (!exact[indices[k]]) missing.push(indices[k]);
      if (!missing.length) return;
      busy = true;
      const mine = generation;
      rpc.request({ type: "coordinates", indices: missing }).then(({ buffers }) => {
        if (mine !== generation) return;
        const b = buffers[0], values = new Float32Array(b.buffer ? b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) : b);
        missing.forEach((i, k) => {
          for (let j = 0; j < dims; j++) target[i * dims + j] = values[k * dims + j];
          exact[i] = 1;
        });
        refined();
      }).catch(() => {}).finally(() => { if (mine === generation) busy = false; });
    },
  };
}
