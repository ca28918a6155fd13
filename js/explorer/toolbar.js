// The explorer's toolbar, laid out like the plotting tools people know: drag modes (pan or rotate / box /
// lasso), then fit, zoom to selection, axes, download PNG and export selection. Icons are small SVG paths.
import { h } from "../protocol.js";

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  move: "M8 1.5v13M1.5 8h13M8 1.5 6 3.5M8 1.5l2 2M8 14.5l-2-2M8 14.5l2-2M1.5 8l2-2M1.5 8l2 2M14.5 8l-2-2M14.5 8l-2 2",
  box: "M2.5 3.5h3M7 3.5h2.5M11 3.5h2.5v2.5M13.5 7.5v2M13.5 11v1.5H11M9.5 12.5H7M5.5 12.5h-3V10M2.5 8.5V7M2.5 5.5v-2",
  lasso: "M8 3c3.3 0 5.5 1.5 5.5 3.3S11.3 9.6 8 9.6 2.5 8.1 2.5 6.3 4.7 3 8 3zM4.6 9c-.6 1.2-.4 2.5.7 3.2M5.3 12.2l-.8 2",
  fit: "M2 6V2h4M10 2h4v4M14 10v4h-4M6 14H2v-4M5.5 5.5h5v5h-5z",
  zoomSelection: "M7 2.5a4.5 4.5 0 1 1 0 9 4.5 4.5 0 0 1 0-9zM10.3 10.3l3.7 3.7M5 7h4M7 5v4",
  axes: "M3 1.5v11.5h11.5M3 4.5h1.5M3 8h1.5M6.5 13v-1.5M10 13v-1.5",
  download: "M8 2v8M4.5 6.5 8 10l3.5-3.5M2.5 13.5h11",
  export: "M3 2.5h7l3 3v8H3zM5.5 8h5M5.5 10.5h5M5.5 5.5h2",
};

function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

/**
 * @param {{onMode: (mode: string) => void, onFit: () => void, onZoomSelection: () => void,
 *   onAxes: () => void, onDownload: () => void, onExport: () => void}} actions
 * @returns {{el: HTMLElement, sync: (state: {mode: string, dims: number, axes: boolean, selected: number}) => void}}
 */
export function toolbar(actions) {
  const tool = (name, title, onclick, extra = {}) =>
    h("button", { class: "picsift-tool", type: "button", title, "aria-label": title, "data-tool": name, onclick, ...extra },
      icon(name));
  const modes = ["move", "box", "lasso"].map((mode) => tool(mode, {
    move: "pan (drag); in 3D: rotate", box: "box select (or shift-drag)", lasso: "lasso select (or alt-drag)",
  }[mode], () => actions.onMode(mode), { "data-mode": mode, "aria-pressed": "false" }));
  const fit = tool("fit", "fit every point in view (reset)", actions.onFit);
  const zoomSelection = tool("zoomSelection", "zoom to the selection", actions.onZoomSelection);
  const axes = tool("axes", "show axes (2D)", actions.onAxes, { "aria-pressed": "false" });
  const download = tool("download", "download the picture as PNG", actions.onDownload);
  const exportSelection = tool("export", "export the selection as a DataFrame (explorer.exported)", actions.onExport);
  const el = h("div", { class: "picsift-toolbar", role: "toolbar", "aria-label": "map tools" },
    h("span", { class: "picsift-tool-group" }, ...modes), h("span", { class: "picsift-tool-group" }, fit, zoomSelection, axes),
    h("span", { class: "picsift-tool-group" }, download, exportSelection));
  return {
    el,
    sync({ mode, dims, axes: axesOn, selected }) {
      for (const button of modes) {
        const on = button.dataset.mode === mode;
        button.setAttribute("aria-pressed", String(on));
        button.classList.toggle("picsift-tool-on", on);
      }
      modes[0].title = dims === 3 ? "rotate (drag)" : "pan (drag)";
      axes.hidden = dims !== 2;
      axes.setAttribute("aria-pressed", String(axesOn));
      axes.classList.toggle("picsift-tool-on", axesOn);
      zoomSelection.disabled = !selected;
      exportSelection.disabled = !selected;
    },
  };
}
