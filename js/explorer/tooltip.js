// The explorer's hover tooltip: after the pointer rests on a point, ask Python for its title, fields and
// thumbnail (a `thumbnails` request) and show them next to the pointer; no picture when there is none.
import { h } from "../protocol.js";

/**
 * @param {{area: HTMLElement, rpc: {request: (c: object) => Promise<{msg: object, buffers: ArrayBuffer[]}>},
 *   nearest: (x: number, y: number, radius: number) => number, busy: () => boolean, delay: () => number}} options
 */
export function createTooltip({ area, rpc, nearest, busy, delay }) {
  const el = h("div", { class: "picsift-tooltip", hidden: true });
  let timer = 0, hovered = -1;
  const hide = () => { clearTimeout(timer); el.hidden = true; hovered = -1; };
  const show = (x, y) => {
    const index = nearest(x, y, 8);
    const rect = area.getBoundingClientRect();
    if (index < 0) { hide(); return; }
    Object.assign(el.style, { left: `${Math.min(x - rect.left + 12, rect.width - 170)}px`,
      top: `${Math.min(y - rect.top + 12, rect.height - 180)}px` });
    if (index === hovered) return;
    hovered = index;
    rpc.request({ type: "thumbnails", indices: [index] }).then(({ msg, buffers }) => {
      if (hovered !== index || busy()) return; // the pointer moved on, or a drag began
      const old = el.querySelector("img");
      if (old) URL.revokeObjectURL(old.src);
      const url = buffers[0] && buffers[0].byteLength ? URL.createObjectURL(new Blob([buffers[0]], { type: "image/webp" })) : "";
      const fields = (msg.fields && msg.fields[0]) || [];
      el.replaceChildren(...(url ? [h("img", { src: url })] : []), h("div", { class: "picsift-tooltip-title" }, msg.names[0]),
        ...fields.map(([name, text]) => h("div", { class: "picsift-tooltip-field" }, h("span", { class: "picsift-muted" }, `${name} `), text)));
      el.hidden = false;
    }).catch(hide);
  };
  return {
    el,
    hide,
    /** The pointer moved to (x, y) (client coordinates): show the point under it once it rests. */
    moved(x, y) { clearTimeout(timer); timer = setTimeout(() => show(x, y), delay()); },
    dispose() { clearTimeout(timer); const img = el.querySelector("img"); if (img) URL.revokeObjectURL(img.src); },
  };
}
