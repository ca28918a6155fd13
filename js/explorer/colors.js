// Palette, colour scale and the explorer's legend: named categories with counts (click: select them) or a
// colour bar with the value range for a continuous field.
import { h } from "../protocol.js";

export const PALETTE = [[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16], [0.58, 0.4, 0.74],
  [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.09, 0.75, 0.81], [0.74, 0.74, 0.13], [0.5, 0.5, 0.5]]; // last: "other"

const VIRIDIS = [[0.2777, 0.0054, 0.3341], [0.105, 1.4046, 1.3846], [-0.3309, 0.2148, 0.0951],
  [-4.6342, -5.7991, -19.3324], [6.2283, 14.1799, 56.6906], [4.7764, -13.7451, -65.353], [-5.4355, 4.6459, 26.3124]];

/** The shader's viridis approximation, for t in [0, 1]: [r, g, b] in [0, 1]. */
export function viridis(t) {
  return [0, 1, 2].map((k) => {
    let v = VIRIDIS[6][k];
    for (let c = 5; c >= 0; c--) v = VIRIDIS[c][k] + t * v;
    return Math.min(1, Math.max(0, v));
  });
}

/** The CSS colour of a point's code (a palette slot, or a continuous step; 65535: no value). */
export function codeColor(code, continuous) {
  if (!continuous) return css(PALETTE[code % 10]);
  return code === 65535 ? css([0.6, 0.6, 0.6]) : css(viridis(code / 65534));
}

const css = (rgb) => `rgb(${rgb.map((c) => Math.round(c * 255)).join(",")})`;

export function formatNumber(x) {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(2);
  return Number(x.toPrecision(4)).toLocaleString("en-US", { maximumFractionDigits: 4 });
}

/**
 * Legend children: category entries ("name (count)", a click selects them) or a colour bar.
 * @param {{kind: string, legend: string[], span: number[], label: string, select: (i: number) => void}} c
 */
export function legendItems({ kind, legend, span, label, select }) {
  if (kind === "continuous") {
    const stops = Array.from({ length: 11 }, (_, k) => `${css(viridis(k / 10))} ${k * 10}%`).join(", ");
    const missing = legend.filter(Boolean).map((name) => h("span", { class: "picsift-legend-missing" },
      h("i", { style: `background: ${css(PALETTE[9])}` }), name));
    return [h("div", { class: "picsift-colorbar", "data-label": label },
      label ? h("span", { class: "picsift-colorbar-label" }, label) : null,
      h("span", { class: "picsift-colorbar-min" }, formatNumber(span[0])),
      h("span", { class: "picsift-colorbar-ramp", style: `background: linear-gradient(to right, ${stops})`,
        title: `${label || "value"}: ${formatNumber(span[0])} (dark) to ${formatNumber(span[1])} (bright)` }),
      h("span", { class: "picsift-colorbar-max" }, formatNumber(span[1]))), ...missing];
  }
  return legend.slice(0, 20).map((name, i) => name && h("span", {
    class: "picsift-legend-entry", title: `select every ${name.replace(/ \([\d,]+\)$/, "")} point`,
    onclick: () => select(i),
  }, h("i", { style: `background: ${css(PALETTE[i % 10])}` }), name)).filter(Boolean);
}
