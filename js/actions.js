// Actions on the current view (the selection, or else every image shown): copy or move to a dataset,
// create a labelling job, export, delete. Delete asks first; only Confirm sends the message.
/** @typedef {{n_selected: number, n_shown: number, dataset_names: string[], formats: string[],
 *   notice: string}} ActionsTraits */
import { errorLine, formatCount, h, send, watch } from "./protocol.js";

function render({ model, el }) {
  el.classList.add("picsift", "picsift-view-actions");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const target = h("span", { class: "picsift-target picsift-title" });
  const dataset = h("input", { class: "picsift-dataset", type: "text", placeholder: "dataset", style: "width: 8em" });
  const datasets = h("datalist", {});
  datasets.id = `picsift-datasets-${Math.random().toString(36).slice(2)}`;
  dataset.setAttribute("list", datasets.id);
  const jobName = h("input", { class: "picsift-job-name", type: "text", placeholder: "job name", style: "width: 8em" });
  const format = h("select", { class: "picsift-export-format", "aria-label": "export format" });
  const path = h("input", { class: "picsift-export-path", type: "text", placeholder: "output path", style: "width: 10em" });
  const count = () => model.get("n_selected") || model.get("n_shown");
  const button = (cls, text, onclick) => h("button", { class: cls, onclick }, text);
  const confirmText = h("span", { class: "picsift-confirm-text" });
  let confirming = 0;
  const confirm = h("div", { class: "picsift-row picsift-confirm", hidden: true }, confirmText,
    button("picsift-confirm-delete picsift-danger", "Confirm", () => {
      send(model, "delete_images", { confirmed: true, count: confirming });
      closeConfirm();
    }),
    button("picsift-cancel-delete", "Cancel", () => closeConfirm()));
  const closeConfirm = () => { confirming = 0; confirm.hidden = true; el.dataset.confirming = "false"; };
  const askDelete = () => {
    confirming = count();
    if (!confirming) return;
    confirmText.textContent = `Delete ${formatCount(confirming)} image file${confirming === 1 ? "" : "s"}? This cannot be undone`;
    confirm.hidden = false;
    el.dataset.confirming = "true";
  };
  const notice = h("div", { class: "picsift-actions-notice picsift-muted" });
  const [error, disposeError] = errorLine(model);
  const buttons = [
    button("picsift-copy", "Copy to", () => send(model, "copy_images", { dataset: dataset.value.trim() })),
    button("picsift-move", "Move to", () => send(model, "move_images", { dataset: dataset.value.trim() })),
    button("picsift-create-job", "Create job", () => send(model, "create_job", { name: jobName.value.trim() })),
    button("picsift-export-images", "Export", () => send(model, "export_images", { format: format.value, path: path.value.trim() })),
    button("picsift-delete-images picsift-danger", "Delete…", askDelete),
  ];
  el.append(h("div", { class: "picsift-row" }, target, dataset, datasets, buttons[0], buttons[1],
    h("span", { class: "picsift-sep" }), jobName, buttons[2], h("span", { class: "picsift-sep" }), format, path, buttons[3],
    h("span", { class: "picsift-sep" }), buttons[4]), confirm, notice, error);

  let lastCount = -1;
  const sync = () => {
    const [selected, shown] = [model.get("n_selected"), model.get("n_shown")];
    target.textContent = selected ? `Act on ${formatCount(selected)} selected:` : `Act on all ${formatCount(shown)} shown:`;
    el.dataset.target = selected ? "selected" : "shown";
    el.dataset.count = String(count());
    if (count() !== lastCount && confirming) closeConfirm(); // what was confirmed is no longer what would go
    lastCount = count();
    for (const b of buttons) b.disabled = !count() || model.get("busy");
    notice.textContent = model.get("notice");
  };
  const syncChoices = () => {
    datasets.replaceChildren(...model.get("dataset_names").map((n) => h("option", { value: n })));
    const chosen = format.value;
    format.replaceChildren(...model.get("formats").map((f) => h("option", { value: f }, f)));
    if (chosen) format.value = chosen;
  };
  closeConfirm();
  const disposeChoices = watch(model, ["dataset_names", "formats"], syncChoices);
  return watch(model, ["n_selected", "n_shown", "notice", "busy"], sync, disposeChoices, disposeError);
}

export default { render };
