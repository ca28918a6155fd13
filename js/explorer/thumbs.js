// Pictures on the map: zoomed in until few enough points are on screen to stand apart, each is drawn as
// its image's thumbnail, a square with the point's colour as its border, on a 2D canvas over the WebGL one.
// Thumbnails are asked of Python for the points on screen only (the `thumbnails` request the tooltip uses,
// 16 at a time, a few requests in flight, nearest the centre first), decoded once into ImageBitmaps and kept
// in a least-recently-used cache in the browser; zoomed out, nothing is drawn or asked for. Each picture is
// scaled once per zoom into a sprite of the thumbnail's inner size, so a panning frame only copies pixels.
import { h } from "../protocol.js";
import { toScreen } from "./camera.js";

const PER_REQUEST = 16, IN_FLIGHT = 4, CAPACITY = 3000;

/**
 * @param {{rpc: {request: (c: object) => Promise<{msg: object, buffers: ArrayBuffer[]}>}, redraw: () => void}} options
 */
export function createThumbs({ rpc, redraw }) {
  const el = h("canvas", { class: "picsift-thumbs" });
  const ctx = el.getContext("2d");
  /** index -> ImageBitmap, or null: no picture (the point stays a point) */
  const cache = new Map();
  const pending = new Set(), requested = new Set();
  let sprites = new Map(), spriteSide = 0; // index -> canvas of the picture fitted into (side - 4) pixels squared
  let inFlight = 0, wanted = [], generation = 0, shown = 0, drawnLast = [], side = 0, sideZoom = 0;

  const store = (index, bitmap) => {
    cache.delete(index);
    cache.set(index, bitmap);
    for (const [old, picture] of cache) { // the least recently drawn go first
      if (cache.size <= CAPACITY) break;
      cache.delete(old);
      sprites.delete(old);
      if (picture) picture.close();
    }
  };
  const spriteOf = (index, inner) => { // the picture fitted (centred) into a white square, drawn once per zoom
    const picture = cache.get(index), sprite = document.createElement("canvas");
    sprite.width = sprite.height = inner;
    const c = sprite.getContext("2d"), fit = inner / Math.max(picture.width, picture.height);
    c.fillStyle = "#fff";
    c.fillRect(0, 0, inner, inner);
    const pw = picture.width * fit, ph = picture.height * fit;
    c.drawImage(picture, (inner - pw) / 2, (inner - ph) / 2, pw, ph);
    sprites.set(index, sprite);
    return sprite;
  };
  const pump = () => {
    while (inFlight < IN_FLIGHT && wanted.length) {
      const batch = [];
      while (batch.length < PER_REQUEST && wanted.length) {
        const i = wanted.shift();
        if (!cache.has(i) && !pending.has(i)) batch.push(i);
      }
      if (!batch.length) break;
      const mine = generation;
      inFlight++;
      for (const i of batch) { pending.add(i); requested.add(i); }
      rpc.request({ type: "thumbnails", indices: batch }).then(async ({ buffers }) => {
        const pictures = await Promise.all(batch.map((_, k) => (buffers[k] && buffers[k].byteLength
          ? createImageBitmap(new Blob([buffers[k]], { type: "image/webp" })).catch(() => null) : null)));
        if (mine !== generation) { for (const p of pictures) if (p) p.close(); return; }
        batch.forEach((i, k) => store(i, pictures[k]));
      }).catch(() => { // an error answer: these stay points (asked again once the points change)
        if (mine === generation) for (const i of batch) store(i, null);
      }).finally(() => {
        inFlight--;
        for (const i of batch) pending.delete(i);
        if (mine === generation) { redraw(); pump(); }
      });
    }
  };

  return {
    el,
    /** Forget every picture (new points: indices mean other images now). */
    reset() {
      generation++;
      for (const picture of cache.values()) if (picture) picture.close();
      cache.clear();
      sprites.clear();
      pending.clear();
      requested.clear();
      wanted = [];
    },
    /**
     * Draw the thumbnails of `indices` (null: none, zoomed out) and ask for the missing ones. Their side
     * follows how many share the screen, chosen again when the zoom changes (not while panning).
     * @param {{indices: ArrayLike<number> | null, camera: import("./camera.js").Camera, points: Float32Array,
     *   dims: number, width: number, height: number, dpr: number, color: (i: number) => string,
     *   chosen: Uint8Array, anySelected: boolean}} frame (width, height: CSS pixels)
     * @returns {{shown: number, drawn: number, missing: number}}
     */
    draw({ indices, camera, points, dims, width, height, dpr, color, chosen, anySelected }) {
      if (el.width !== Math.round(width * dpr) || el.height !== Math.round(height * dpr)) {
        el.width = Math.round(width * dpr);
        el.height = Math.round(height * dpr);
      }
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, el.width, el.height);
      drawnLast = [];
      if (!indices || !indices.length) {
        wanted = [];
        shown = side = 0;
        return { shown: 0, drawn: 0, missing: 0 };
      }
      const zoom = dims === 2 ? camera.zoom : camera.distance;
      if (!side || zoom !== sideZoom) {
        side = Math.round(Math.max(28, Math.min(80, 0.8 * Math.sqrt((width * height) / indices.length))));
        sideZoom = zoom;
      }
      const m = camera.matrix(width / height);
      const screenOf = (i) => toScreen(m, points[i * dims], points[i * dims + 1], dims === 3 ? points[i * 3 + 2] : 0, width, height);
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      const places = [], missing = [];
      for (let k = 0; k < indices.length; k++) {
        const i = indices[k], at = screenOf(i);
        if (!at) continue;
        if (!cache.has(i)) missing.push([i, (at[0] - width / 2) ** 2 + (at[1] - height / 2) ** 2]);
        else if (cache.get(i)) places.push([i, at]);
      }
      places.sort((a, b) => (chosen[a[0]] ? 1 : 0) - (chosen[b[0]] ? 1 : 0)); // the selected on top
      const inner = Math.max(1, Math.round((side - 4) * dpr));
      if (inner !== spriteSide) { sprites = new Map(); spriteSide = inner; }
      for (const [i, [x, y]] of places) {
        const on = chosen[i] > 0;
        store(i, cache.get(i));
        ctx.globalAlpha = anySelected && !on ? 0.5 : 1;
        ctx.fillStyle = color(i);
        ctx.fillRect(x - side / 2, y - side / 2, side, side);
        const sprite = sprites.get(i) || spriteOf(i, inner), cut = on ? 2 : 0; // selected: a 4 px frame
        const s = inner / dpr - 2 * cut, from = cut * dpr, size = inner - 2 * from;
        ctx.drawImage(sprite, from, from, size, size, x - s / 2, y - s / 2, s, s);
        drawnLast.push(i);
      }
      ctx.globalAlpha = 1;
      missing.sort((a, b) => a[1] - b[1]); // the centre of the view first
      wanted = missing.map(([i]) => i);
      shown = indices.length;
      pump();
      return { shown, drawn: places.length, missing: missing.filter(([i]) => !cache.has(i)).length };
    },
    /** For tests: the indices asked of Python so far and those drawn as pictures in the last frame. */
    debug: () => ({ requested: Array.from(requested), drawn: drawnLast.slice(), cached: cache.size }),
    get active() { return shown > 0; },
    /** The side of a thumbnail now, in CSS pixels (0: none shown). */
    get side() { return side; },
    dispose() {
      generation++;
      for (const picture of cache.values()) if (picture) picture.close();
      cache.clear();
      sprites.clear();
    },
  };
}
