// Collections list: the temporary collection (the last search or sample) and saved collections (click to
// show), save the current view as, delete, export.
/** @typedef {{name: string, size: number, query: string}} Row */
/** @typedef {{rows: Row[], temporary: Row | {}, current: string, notice: string}} CollectionsTraits */
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
  const show = (name) => (e) => { e.preventDefault(); send(model, "show_collection", { name }); };
  const sync = () => {
    const current = model.get("current"), temporary = model.get("temporary");
    body.replaceChildren(...model.get("rows").map((row) => h("tr", { class: row.name === current ? "picsift-current" : "" },
      h("td", { title: row.query }, h("a", { href: "#", class: "picsift-show", onclick: show(row.name) }, row.name)),
      h("td", { class: "picsift-muted" }, formatCount(row.size)),
      h("td", {}, h("button", { class: "picsift-delete", title: `delete ${row.name}`, onclick: () => send(model, "delete_collection", { name: row.name }) }, "✕")))));
    if (!model.get("rows").length) body.append(h("tr", {}, h("td", { class: "picsift-muted", colspan: 3 }, "none saved yet")));
    if (temporary.name) { // first: the last search or sample, replaced by the next one until saved
      body.prepend(h("tr", { class: `picsift-temporary ${temporary.name === current ? "picsift-current" : ""}` },
        h("td", { title: "the last search or sample; the next one replaces it (Save view as keeps it)" },
          h("a", { href: "#", class: "picsift-show", onclick: show(temporary.name) }, "last result"),
          h("span", { class: "picsift-muted" }, ` · ${temporary.query}`)),
        h("td", { class: "picsift-muted" }, formatCount(temporary.size)), h("td", {})));
    }
    notice.textContent = model.get("notice");
  };
  return watch(model, ["rows", "temporary", "current", "notice"], sync, disposeError);
}

export default { render };
