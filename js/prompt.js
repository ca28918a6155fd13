// Prompt box: Enter submits {text, limit, mode}; disabled with progress while embeddings are computed.
/** @typedef {{text: string, limit: number, mode: "text"|"objects"|"similar"|"diverse", status: object, busy: boolean, error: string}} PromptTraits */
import { errorLine, formatCount, h, send, watch } from "./protocol.js";

function render({ model, el }) {
  el.classList.add("picsift", "picsift-prompt");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const input = h("input", { class: "picsift-prompt-input", type: "text", placeholder: "Describe the images to find…", "aria-label": "prompt" });
  const mode = h("select", { class: "picsift-mode", "aria-label": "mode" },
    h("option", { value: "text" }, "Text"), h("option", { value: "objects" }, "Text, in labelled objects"),
    h("option", { value: "similar" }, "Similar to selected"),
    h("option", { value: "diverse" }, "Diverse sample"));
  const limit = h("input", { class: "picsift-limit", type: "number", min: "1", step: "1", style: "width: 6em", "aria-label": "limit", title: "result limit" });
  const button = h("button", { class: "picsift-primary picsift-search", type: "submit" }, "Search");
  const status = h("div", { class: "picsift-status picsift-muted" });
  const [error, disposeError] = errorLine(model);
  const submit = () => {
    if (button.disabled) return;
    const text = input.value.trim();
    if ((mode.value === "text" || mode.value === "objects") && !text) return;
    send(model, "submit", { text, limit: Math.max(1, parseInt(limit.value, 10) || 1), mode: mode.value });
  };
  // Enter is ours, not JupyterLab's (which would otherwise treat it as a notebook shortcut)
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      event.stopPropagation();
      submit();
    }
  });
  const form = h("form", { class: "picsift-row", onsubmit: (event) => { event.preventDefault(); submit(); } }, input, mode, h("label", { class: "picsift-muted" }, "limit ", limit), button);
  el.append(form, status, error);

  const sync = () => {
    if (document.activeElement !== input) input.value = model.get("text");
    mode.value = model.get("mode");
    limit.value = String(model.get("limit"));
    const s = model.get("status") || {};
    const ready = Boolean(s.ready) || s.ready === undefined;
    // partial search: some images are embedded, more are coming (results say so too)
    const searchable = ready || Boolean(s.searchable);
    const busy = model.get("busy");
    input.disabled = !searchable;
    button.disabled = !searchable || busy;
    button.textContent = busy ? "Searching…" : "Search";
    el.dataset.ready = String(ready);
    el.dataset.searchable = String(searchable);
    el.dataset.busy = String(busy);
    status.replaceChildren();
    if (!ready && searchable) {
      const embedded = s.embedded ?? 0;
      const more = s.progress || s.updating ? " (embedding continues)" : " (update to embed the rest)";
      status.append(h("span", {}, `Searching ${formatCount(embedded)} of ${formatCount(embedded + (s.pending ?? 0))} images${more}`));
      if (s.progress) status.append(h("progress", { max: String(Math.max(s.progress.total, 1)), value: String(s.progress.done) }));
    } else if (s.progress) {
      const { done, total } = s.progress;
      status.append(h("span", {}, `Computing embeddings: ${formatCount(done)} / ${formatCount(total)} — search is available when done`),
        h("progress", { max: String(Math.max(total, 1)), value: String(done) }));
    } else if (s.ready === false) {
      status.append(`Not searchable yet: ${formatCount(s.pending ?? 0)} of ${formatCount(s.images ?? 0)} images still need embeddings`);
    } else if (s.model_label) {
      status.append(`${s.model_label} · ${formatCount(s.embedded ?? 0)} images · ${s.index}`);
    }
  };
  return watch(model, ["status", "busy", "text", "mode", "limit"], sync, disposeError);
}

export default { render };
