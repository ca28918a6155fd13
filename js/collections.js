// Collections list: saved collections (click to show), save the current view as, delete, export.
/** @typedef {{rows: {name: string, size: number, query: string}[], current: string, notice: string}} CollectionsTraits */
import { errorLine, formatCount, h, send, watch } from "./protocol.js";

function render({ model, el }) {
  el.classList.add("picsift", "picsift-collections");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const name = h("input", { class: "picsift-save-name", type: "text", placeholder: "name", style: "width: 9em" });
  const body = h("tbody", {});
  const notice = h("div", { class: "picsift-notice picsift-muted" });
  const [error, disposeError] = errorLine(model);
  el.append(h("div", { class: "picsift-title" }, "Collections"),
    h("div", { class: "picsift-row" }, name,
      h("button", { class: "picsift-save", onclick: () => send(model, "save_collection", { name: name.value }) }, "Save view as"),
      h("button", { class: "picsift-export", onclick: () => send(model, "export") }, "To pandas")),
    h("table", {}, body), notice, error);
  const sync = () => {
    const current = model.get("current");
    body.replaceChildren(...model.get("rows").map((row) => h("tr", { class: row.name === current ? "picsift-current" : "" },
      h("td", {}, h("a", { href: "#", class: "picsift-show", onclick: (e) => { e.preventDefault(); send(model, "show_collection", { name: row.name }); } }, row.name)),
      h("td", { class: "picsift-muted" }, formatCount(row.size)),
      h("td", {}, h("button", { class: "picsift-delete", title: `delete ${row.name}`, onclick: () => send(model, "delete_collection", { name: row.name }) }, "✕")))));
    if (!model.get("rows").length) body.append(h("tr", {}, h("td", { class: "picsift-muted" }, "none saved yet")));
    notice.textContent = model.get("notice");
  };
  return watch(model, ["rows", "current", "notice"], sync, disposeError);
}

export default { render };
