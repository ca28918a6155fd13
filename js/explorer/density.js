// The density layer drawn under the moving sample: a coarse histogram of every point (2D: 256 x 256 cells,
// 3D: 48^3), one square per non-empty cell at its centre, with the cell's most common category (or mean
// continuous value), whether any of its points is selected, and an alpha that grows with log(count).

const MISSING = 65535;

export function densityCells(points, dims, count, codes, chosen) {
  const side = dims === 2 ? 256 : 48;
  const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  for (let i = 0; i < count; i++) {
    for (let k = 0; k < dims; k++) {
      const v = points[i * dims + k];
      if (v < lo[k]) lo[k] = v;
      if (v > hi[k]) hi[k] = v;
    }
  }
  const size = [0, 1, 2].map((k) => (k < dims ? Math.max(hi[k] - lo[k], 1e-12) / side : 1));
  const cellsTotal = side ** dims;
  const cellOf = new Int32Array(count), counts = new Uint32Array(cellsTotal);
  for (let i = 0; i < count; i++) {
    let cell = 0;
    for (let k = dims - 1; k >= 0; k--) {
      const c = Math.min(side - 1, Math.floor((points[i * dims + k] - lo[k]) / size[k]));
      cell = cell * side + c;
    }
    cellOf[i] = cell;
    counts[cell]++;
  }
  const continuous = codes instanceof Uint16Array;
  const slots = continuous ? 1 : 10;
  const tally = new Float64Array(cellsTotal * slots); // per-category counts, or the sum of values
  const valued = continuous ? new Uint32Array(cellsTotal) : null;
  const anyChosen = new Uint8Array(cellsTotal);
  for (let i = 0; i < count; i++) {
    const cell = cellOf[i], code = codes ? codes[i] : 0;
    if (continuous) {
      if (code !== MISSING) { tally[cell] += code; valued[cell]++; }
    } else tally[cell * slots + (code % slots)]++;
    if (chosen && chosen[i]) anyChosen[cell] = 255;
  }
  let used = 0, most = 1;
  for (let c = 0; c < cellsTotal; c++) if (counts[c]) { used++; if (counts[c] > most) most = counts[c]; }
  const positions = new Float32Array(used * dims), weights = new Float32Array(used), chosenOut = new Uint8Array(used);
  const values = continuous ? new Uint16Array(used) : new Uint8Array(used);
  const logMost = Math.log1p(most);
  for (let c = 0, j = 0; c < cellsTotal; c++) {
    if (!counts[c]) continue;
    for (let k = 0, rest = c; k < dims; k++, rest = Math.floor(rest / side)) {
      positions[j * dims + k] = lo[k] + ((rest % side) + 0.5) * size[k];
    }
    if (continuous) values[j] = valued[c] ? Math.round(tally[c] / valued[c]) : MISSING;
    else {
      let best = 0;
      for (let s = 1; s < slots; s++) if (tally[c * slots + s] > tally[c * slots + best]) best = s;
      values[j] = best;
    }
    weights[j] = 0.08 + 0.55 * (Math.log1p(counts[c]) / logMost);
    chosenOut[j] = anyChosen[c];
    j++;
  }
  return { count: used, positions, values, weights, chosen: chosenOut, cellSize: size.slice(0, dims) };
}
