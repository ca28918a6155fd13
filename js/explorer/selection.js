// How a selection crosses between browser and kernel (mirrors picsift/widgets/_selection.py): int32
// positions when few points are selected, else one bit per point (little-endian bit order), whichever is
// smaller: 700k of 1M points are 125 kB instead of 2.9 MB.
import { fromArray, toArray } from "../protocol.js";

/** Positions (an Int32Array) -> the `_selected` trait value for `count` points. */
export function encodeSelection(found, count) {
  if (found.length * 32 <= count) return fromArray(found, "int32");
  const bytes = new Uint8Array(Math.ceil(count / 8));
  for (let k = 0; k < found.length; k++) bytes[found[k] >> 3] |= 1 << (found[k] & 7);
  return { ...fromArray(bytes, "uint8"), bits: count }; // a DataView: binary in every widget manager (marimo too)
}

/** The `_selected` trait value -> positions (an Int32Array, ascending for bits). */
export function decodeSelection(value) {
  const data = toArray(value);
  if (!data) return new Int32Array(0);
  if (value.bits == null) return data;
  let total = 0;
  for (let byte = 0; byte < data.length; byte++) for (let b = data[byte]; b; b &= b - 1) total++;
  const out = new Int32Array(total);
  for (let byte = 0, k = 0; byte < data.length; byte++) {
    for (let b = data[byte]; b; b &= b - 1) out[k++] = byte * 8 + (31 - Math.clz32(b & -b));
  }
  return out;
}
