// The Health tab: choose the label field and the split, run the checks, pick a finding (its images go to the
// gallery with given -> suggested and the reason on each card), act on the selection or the whole finding.
/** @typedef {{field: string, split: string, fields: string[], findings: {name: string, title: string,
 *   count: number, description: string}[], shown: string, job: string, export_path: string, notice: string,
 *   busy: boolean, error: string}} HealthTraits */
import { errorLine, formatCount, h, send, watch } from "./protocol.js";

function render({ model, el }) {
  el.classList.add("picsift", "picsift-health");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const choice = (cls, label) => h("select", { class: cls, "aria-label": label });
  const field = choice("picsift-health-field", "label field"), split = choice("picsift-health-split", "split");
  const run = h("button", { class: "picsift-run-health picsift-primary" }, "Check");
  run.addEventListener("click", () => send(model, "run_health", { field: field.value, split: split.value }));
  const list = h("div", { class: "picsift-findings", role: "list" });
  const job = h("input", { class: "picsift-health-job", type: "text", placeholder: "job name", style: "width: 8em" });
  const path = h("input", { class: "picsift-health-path", type: "text", placeholder: "out.csv", style: "width: 8em" });
  const act = (cls, text, type, extra = () => ({})) =>
    h("button", { class: cls, onclick: () => send(model, type, extra()) }, text);
  const actions = [
    act("picsift-accept-suggestion", "Accept suggestion", "accept_suggestion"),
    act("picsift-open-issue", "Open issue", "open_issue"),
    act("picsift-add-to-job", "Add to job", "add_to_job", () => ({ job: job.value.trim() })),
    act("picsift-export-finding", "Export", "export_finding", () => ({ path: path.value.trim() })),
  ];
  const notice = h("div", { class: "picsift-health-notice picsift-muted" });
  const [error, disposeError] = errorLine(model);
  el.append(h("div", { class: "picsift-title" }, "Dataset health"),
    h("div", { class: "picsift-row" }, h("label", {}, "labels ", field), h("label", {}, "split ", split), run),
    list,
    h("div", { class: "picsift-row" }, actions[0], actions[1]),
    h("div", { class: "picsift-row" }, job, actions[2]),
    h("div", { class: "picsift-row" }, path, actions[3]),
    notice, error);

  const options = (select, values, current, none) => {
    select.replaceChildren(h("option", { value: "" }, none), ...values.map((v) => h("option", { value: v }, v)));
    select.value = values.includes(current) ? current : "";
  };
  const syncChoices = () => {
    options(field, model.get("fields"), model.get("field"), "(none)");
    options(split, model.get("fields"), model.get("split"), "(none)");
  };
  const sync = () => {
    const shown = model.get("shown");
    list.replaceChildren(...model.get("findings").map((f) => {
      const item = h("button", { class: "picsift-finding", role: "listitem", title: f.description,
        "data-name": f.name, "data-count": String(f.count) }, `${f.title} `, h("b", {}, formatCount(f.count)));
      item.classList.toggle("active", f.name === shown);
      item.addEventListener("click", () => send(model, "show_finding", { name: f.name }));
      return item;
    }));
    if (document.activeElement !== job) job.value = model.get("job");
    if (document.activeElement !== path) path.value = model.get("export_path");
    notice.textContent = model.get("notice");
    const busy = model.get("busy");
    run.disabled = busy;
    for (const b of actions) b.disabled = busy || !shown;
    el.dataset.busy = String(busy);
    el.dataset.shown = shown;
  };
  const disposeChoices = watch(model, ["fields", "field", "split"], syncChoices);
  return watch(model, ["findings", "shown", "job", "export_path", "notice", "busy"], sync, disposeError,
    disposeChoices);
}

export default { render };
