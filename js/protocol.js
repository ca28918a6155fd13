// Shared by every picsift widget front-end: message types, binary arrays, request/answer, errors.
// MESSAGE_TYPES mirrors picsift/widgets/_protocol.py (tests/test_widgets.py keeps them equal).

export const MESSAGE_TYPES = [
  "submit", "thumbnails", "detail", "find_similar", "add_to_collection", "remove_from_collection",
  "sample", "pick", "compute_umap", "select_category", "save_collection", "show_collection", "delete_collection", "export",
  "add_filter", "remove_filter", "refresh_choices", "copy_images", "move_images", "delete_images", "create_job",
  "export_images", "coordinates", "fit", "error", "notice",
  "run_health", "show_finding", "accept_suggestion", "open_issue", "add_to_job", "export_finding",
];

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int32: Int32Array, uint32: Uint32Array,
  uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array,
};

/** {view, dtype, shape} from Python -> a typed array (copied only when misaligned). */
export function toArray(value) {
  if (!value || !value.view) return null;
  const Type = ARRAYS[value.dtype];
  if (!Type) throw new Error(`unknown dtype ${value.dtype}`);
  const view = value.view;
  const buffer = view.buffer ?? view;
  const offset = view.byteOffset ?? 0;
  const length = view.byteLength;
  if (offset % Type.BYTES_PER_ELEMENT === 0) return new Type(buffer, offset, length / Type.BYTES_PER_ELEMENT);
  return new Type(buffer.slice(offset, offset + length));
}

/** A typed array -> {view, dtype, shape} for Python (sent as a binary buffer). The view is a DataView:
 * Jupyter's widget managers send any ArrayBuffer view as a binary frame, marimo's only a DataView. */
export function fromArray(array, dtype) {
  return { view: new DataView(array.buffer, array.byteOffset, array.byteLength), dtype, shape: [array.length] };
}

let counter = 0;

/** Request/answer over custom messages: answers carry the request_id; errors reject. */
export function requester(model) {
  const pending = new Map();
  const onMessage = (msg, buffers) => {
    if (!msg || msg.request_id == null || !pending.has(msg.request_id)) return;
    const { resolve, reject } = pending.get(msg.request_id);
    pending.delete(msg.request_id);
    if (msg.type === "error") reject(new Error(msg.message));
    else resolve({ msg, buffers: buffers || [] });
  };
  model.on("msg:custom", onMessage);
  return {
    request(content) {
      const request_id = `${Date.now().toString(36)}-${++counter}`;
      return new Promise((resolve, reject) => {
        pending.set(request_id, { resolve, reject });
        model.send({ ...content, request_id });
      });
    },
    dispose() {
      model.off("msg:custom", onMessage);
      pending.clear();
    },
  };
}

/** Create an element: h("div", {class: "x", onclick: f}, child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "style") el.style.cssText = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child != null) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An error line bound to the model's `error` trait and to error messages; returns [element, cleanup]. */
export function errorLine(model) {
  const el = h("div", { class: "picsift-error", role: "alert" });
  const show = (text) => {
    el.textContent = text || "";
    el.hidden = !text;
  };
  const onTrait = () => show(model.get("error"));
  const onMessage = (msg) => {
    if (msg && msg.type === "error") show(msg.message);
  };
  model.on("change:error", onTrait);
  model.on("msg:custom", onMessage);
  onTrait();
  return [el, () => {
    model.off("change:error", onTrait);
    model.off("msg:custom", onMessage);
  }];
}

/** Send a typed message, and show "busy" on the element until the model's busy flag drops. */
export function send(model, type, content = {}) {
  if (!MESSAGE_TYPES.includes(type)) throw new Error(`unknown message type ${type}`);
  model.send({ type, ...content });
}

export const formatCount = (n) => n.toLocaleString("en-US");

/**
 * Run `callback` now and whenever one of `traits` changes.
 * @returns {() => void} a cleanup that unsubscribes and then runs each of `cleanups`
 */
export function watch(model, traits, callback, ...cleanups) {
  const events = traits.map((t) => `change:${t}`);
  for (const event of events) model.on(event, callback);
  callback();
  return () => {
    for (const event of events) model.off(event, callback);
    for (const cleanup of cleanups) cleanup();
  };
}
