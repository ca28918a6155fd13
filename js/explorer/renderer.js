// WebGL2 drawing of the explorer: every point in one draw call, or, while the view moves and the frame
// budget is short, a uniform sample (a prefix of a shuffled index buffer) over a density layer (one square
// per cell of a coarse histogram of every point, its alpha from the count), so the moving picture keeps
// the data's shape. Raw WebGL2: one shader pair and a few buffers need no library.
// Buffers: positions as float32 (n, 2|3), colour codes as uint8 (category slot) or uint16 (continuous
// step; 65535 = no value), selection as uint8.
import { PALETTE } from "./colors.js";

const VERTEX = `#version 300 es
in vec3 position; in float value; in float chosen; in float weight;
uniform mat4 transform; uniform float size; uniform int continuous; uniform int anySelected;
uniform vec3 palette[10]; uniform float cellPixels;
out vec4 color;
vec3 viridis(float t) {
  vec3 c0 = vec3(0.2777, 0.0054, 0.3341), c1 = vec3(0.1050, 1.4046, 1.3846), c2 = vec3(-0.3309, 0.2148, 0.0951),
       c3 = vec3(-4.6342, -5.7991, -19.3324), c4 = vec3(6.2283, 14.1799, 56.6906), c5 = vec3(4.7764, -13.7451, -65.3530),
       c6 = vec3(-5.4355, 4.6459, 26.3124);
  return c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * (c5 + t * c6)))));
}
void main() {
  gl_Position = transform * vec4(position, 1.0);
  vec3 rgb = continuous == 1 ? (value > 65534.5 ? vec3(0.6) : viridis(clamp(value / 65534.0, 0.0, 1.0)))
                             : palette[int(mod(value + 0.5, 10.0))];
  float dim = anySelected == 1 && chosen < 0.5 ? 0.4 : 1.0;
  if (cellPixels > 0.0) {
    gl_PointSize = max(1.0, cellPixels / gl_Position.w);
    color = vec4(rgb, weight * dim);
  } else {
    gl_PointSize = chosen > 0.5 ? size * 2.2 : size;
    color = vec4(rgb, 0.85 * dim);
  }
}`;
const FRAGMENT = `#version 300 es
precision mediump float;
uniform int square;
in vec4 color; out vec4 outColor;
void main() {
  vec2 d = gl_PointCoord - 0.5;
  if (square == 0 && dot(d, d) > 0.25) discard;
  outColor = vec4(color.rgb * color.a, color.a);
}`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
  return shader;
}

function shuffled(n) {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
  return perm;
}

export function createRenderer(gl) {
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  gl.useProgram(program);
  const u = Object.fromEntries(["transform", "size", "continuous", "anySelected", "palette", "cellPixels", "square"]
    .map((name) => [name, gl.getUniformLocation(program, name)]));
  gl.uniform3fv(u.palette, new Float32Array(PALETTE.flat()));
  const loc = Object.fromEntries(["position", "value", "chosen", "weight"].map((n) => [n, gl.getAttribLocation(program, n)]));
  gl.enable(gl.BLEND);
  gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);

  const layer = () => {
    const vao = gl.createVertexArray();
    const buffers = { position: gl.createBuffer(), value: gl.createBuffer(), chosen: gl.createBuffer(), weight: gl.createBuffer() };
    return { vao, buffers, count: 0 };
  };
  const points = layer(), density = layer();
  let dims = 3, count = 0, perm = null, indexBuffer = null, subsetBuffer = null, valueType = gl.UNSIGNED_BYTE;

  const upload = (target, name, data, size, type, normalized) => {
    gl.bindVertexArray(target.vao);
    gl.bindBuffer(gl.ARRAY_BUFFER, target.buffers[name]);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    gl.enableVertexAttribArray(loc[name]);
    gl.vertexAttribPointer(loc[name], size, type, normalized, 0, 0);
    gl.bindVertexArray(null);
  };

  return {
    /** Points as float32 (n * d), d = 2 or 3. */
    setPoints(data, d) {
      dims = d;
      count = data.length / d;
      upload(points, "position", data, d, gl.FLOAT, false);
      perm = null;
      points.count = count;
    },
    /** The same points, some moved (exact coordinates arrived): only the positions are uploaded again. */
    updatePoints(data) { upload(points, "position", data, dims, gl.FLOAT, false); },
    /** Colour codes: Uint8Array (category slots) or Uint16Array (continuous steps). */
    setValues(codes) {
      valueType = codes instanceof Uint16Array ? gl.UNSIGNED_SHORT : gl.UNSIGNED_BYTE;
      upload(points, "value", codes, 1, valueType, false);
    },
    setChosen(chosen) { upload(points, "chosen", chosen, 1, gl.UNSIGNED_BYTE, true); },
    /** The density layer: cell centres (float32 * dims), codes, chosen (uint8) and alpha per cell. */
    setDensity(cells) {
      density.count = cells.count;
      upload(density, "position", cells.positions, dims, gl.FLOAT, false);
      upload(density, "value", cells.values, 1, valueType, false);
      upload(density, "chosen", cells.chosen, 1, gl.UNSIGNED_BYTE, true);
      upload(density, "weight", cells.weights, 1, gl.FLOAT, false);
      density.cellSize = cells.cellSize;
    },
    /**
     * Draw a frame. `drawn` < count draws that many points of a shuffled order over the density layer;
     * `subset` (a Uint32Array of point indices: those on screen) draws exactly those points instead.
     * @param {{width: number, height: number, transform: Float32Array, pointSize: number, continuous: boolean,
     *   anySelected: boolean, drawn: number, pixelsPerUnit: number[], subset?: Uint32Array}} frame
     *   (pixelsPerUnit: [x, y] at w = 1)
     */
    draw(frame) {
      gl.viewport(0, 0, frame.width, frame.height);
      gl.clearColor(0, 0, 0, 0);
      gl.clear(gl.COLOR_BUFFER_BIT);
      gl.uniformMatrix4fv(u.transform, false, frame.transform);
      gl.uniform1f(u.size, frame.pointSize);
      gl.uniform1i(u.continuous, frame.continuous ? 1 : 0);
      gl.uniform1i(u.anySelected, frame.anySelected ? 1 : 0);
      if (!count) return;
      if (frame.subset) { // zoomed in: only the points on screen, every one of them
        gl.bindVertexArray(points.vao);
        subsetBuffer = subsetBuffer || gl.createBuffer();
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, subsetBuffer);
        gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, frame.subset, gl.STREAM_DRAW);
        gl.vertexAttrib1f(loc.weight, 1);
        gl.uniform1f(u.cellPixels, 0);
        gl.uniform1i(u.square, 0);
        gl.drawElements(gl.POINTS, frame.subset.length, gl.UNSIGNED_INT, 0);
        gl.bindVertexArray(null);
        return;
      }
      if (frame.drawn >= count) {
        gl.bindVertexArray(points.vao);
        gl.vertexAttrib1f(loc.weight, 1);
        gl.uniform1f(u.cellPixels, 0);
        gl.uniform1i(u.square, frame.pointSize < 2.5 ? 1 : 0); // a dot of 2 pixels is as round as a square
        gl.drawArrays(gl.POINTS, 0, count);
        gl.bindVertexArray(null);
        return;
      }
      if (density.count) {
        gl.bindVertexArray(density.vao);
        const [unitX, unitY] = frame.pixelsPerUnit; // a square covering the cell (its longer side)
        gl.uniform1f(u.cellPixels, Math.max(...density.cellSize.map((c, k) => c * (k === 0 ? unitX : unitY))));
        gl.uniform1i(u.square, 1);
        gl.drawArrays(gl.POINTS, 0, density.count);
      }
      gl.bindVertexArray(points.vao);
      if (!perm) {
        perm = shuffled(count);
        indexBuffer = indexBuffer || gl.createBuffer();
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, indexBuffer);
        gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, perm, gl.STATIC_DRAW);
      }
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, indexBuffer);
      gl.vertexAttrib1f(loc.weight, 1);
      gl.uniform1f(u.cellPixels, 0);
      gl.uniform1i(u.square, frame.pointSize < 2.5 ? 1 : 0);
      gl.drawElements(gl.POINTS, frame.drawn, gl.UNSIGNED_INT, 0);
      gl.bindVertexArray(null);
    },
    get dims() { return dims; },
  };
}
