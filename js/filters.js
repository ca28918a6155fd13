// Filters panel: the active metadata filters as removable chips, and an "Add filter" row (field,
// condition, Add). Python validates each filter (errors show below) and ANDs them on the current view.
/** @typedef {{filters: object[], summary: string, _descriptions: string[], _passing: number, _total: number,
 *   _choices: {classes?: string[], tags?: Object<string, any[]>, object_tags?: Object<string, any[]>,
 *   jobs?: string[], statuses?: string[], authors?: string[]}}} FiltersTraits */
import { errorLine, formatCount, h, send, watch } from "./protocol.js";

const FIELDS = [
  ["count", "object class count"], ["tag", "image tag is"], ["not_tag", "image tag is not"],
  ["object_tag", "object tag is"], ["not_object_tag", "object tag is not"], ["job", "labelling job status"],
  ["author", "object author"], ["issues", "open issues"],
];

/** A <select> of `options` ([value, label] or plain values); `empty` labels an extra "" option. */
function picker(cls, label, options, empty) {
  const select = h("select", { class: cls, "aria-label": label });
  if (empty != null) select.append(h("option", { value: "" }, empty));
  for (const option of options) {
    const [value, text] = Array.isArray(option) ? option : [option, option];
    select.append(h("option", { value }, text));
  }
  if (!options.length && empty == null) select.append(h("option", { value: "", disabled: true }, "(none labelled yet)"));
  return select;
}

/** A text input suggesting `values`; its value keeps the stored type (a number stays a number). */
function valueInput(cls, values) {
  const input = h("input", { class: cls, type: "text", placeholder: "any value", style: "width: 7em" });
  const list = h("datalist", {}, values.map((v) => h("option", { value: String(v) })));
  list.id = `picsift-values-${Math.random().toString(36).slice(2)}`;
  input.setAttribute("list", list.id);
  const read = () => {
    const text = input.value.trim();
    if (!text) return null;
    const known = values.find((v) => String(v) === text);
    return known !== undefined ? known : text;
  };
  return { elements: [input, list], read };
}

const wholeNumber = (input, fallback) => {
  const text = input.value.trim();
  if (!text) return fallback;
  const n = Number(text);
  return Number.isFinite(n) ? n : text; // Python names what is wrong with anything else
};

/** The condition inputs of one field, and how to read them into a filter dict. */
function condition(field, choices) {
  const tagValues = (table, select) => (choices[table] || {})[select.value] || [];
  if (field === "count") {
    const cls = picker("picsift-filter-class", "class", choices.classes || []);
    const min = h("input", { class: "picsift-filter-min", type: "number", min: "0", step: "1", value: "1", style: "width: 4.5em", "aria-label": "at least" });
    const max = h("input", { class: "picsift-filter-max", type: "number", min: "0", step: "1", placeholder: "any", style: "width: 4.5em", "aria-label": "at most" });
    return { elements: [cls, h("label", {}, "from ", min), h("label", {}, "to ", max)],
      read: () => ({ type: "ObjectCount", cls: cls.value, min: wholeNumber(min, 1), max: wholeNumber(max, null) }) };
  }
  if (field === "tag" || field === "not_tag" || field === "object_tag" || field === "not_object_tag") {
    const table = field.endsWith("object_tag") ? "object_tags" : "tags";
    const name = picker("picsift-filter-name", "tag", Object.keys(choices[table] || {}));
    const holder = h("span", {});
    let value = valueInput("picsift-filter-value", tagValues(table, name));
    holder.append(...value.elements);
    name.addEventListener("change", () => {
      value = valueInput("picsift-filter-value", tagValues(table, name));
      holder.replaceChildren(...value.elements);
    });
    const negate = field.startsWith("not_");
    if (table === "tags") {
      return { elements: [name, h("label", {}, "= ", holder)],
        read: () => ({ type: "ImageTag", name: name.value, value: value.read(), negate }) };
    }
    const cls = picker("picsift-filter-object-class", "object class", choices.classes || [], "any class");
    return { elements: [name, h("label", {}, "= ", holder), h("label", {}, "on ", cls)],
      read: () => ({ type: "ObjectTag", name: name.value, value: value.read(), negate, cls: cls.value || null }) };
  }
  if (field === "job") {
    const job = picker("picsift-filter-job", "job", choices.jobs || []);
    const boxes = (choices.statuses || []).map((s) => h("label", { class: "picsift-filter-status" },
      h("input", { type: "checkbox", value: s }), ` ${s.replace("_", " ")}`));
    return { elements: [job, h("span", { class: "picsift-muted" }, "status (none = any):"), ...boxes],
      read: () => {
        const status = boxes.map((b) => b.querySelector("input")).filter((b) => b.checked).map((b) => b.value);
        return { type: "JobStatus", job: job.value, status: status.length ? status : null };
      } };
  }
  if (field === "author") {
    const author = picker("picsift-filter-author", "author", choices.authors || []);
    return { elements: [author], read: () => ({ type: "ObjectAuthor", author: author.value }) };
  }
  const issues = picker("picsift-filter-issues", "open issues", [["yes", "yes, has some"], ["no", "none"]]);
  return { elements: [issues], read: () => ({ type: "HasOpenIssues", value: issues.value === "yes" }) };
}

function render({ model, el }) {
  el.classList.add("picsift", "picsift-filters");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const chips = h("div", { class: "picsift-row picsift-chips" });
  const summary = h("div", { class: "picsift-filter-summary picsift-muted" });
  const field = picker("picsift-filter-field", "field", FIELDS);
  const inputs = h("span", { class: "picsift-row picsift-filter-condition" });
  const add = h("button", { class: "picsift-filter-add picsift-primary" }, "Add");
  const refresh = h("button", { class: "picsift-filter-refresh", title: "reload classes, tags, jobs and authors" }, "↻");
  const [error, disposeError] = errorLine(model);
  el.append(h("div", { class: "picsift-title" }, "Filters"), chips, summary,
    h("div", { class: "picsift-row" }, h("span", {}, "Add filter:"), field, refresh), h("div", { class: "picsift-row" }, inputs, add), error);

  let current = null;
  const build = () => {
    current = condition(field.value, model.get("_choices") || {});
    inputs.replaceChildren(...current.elements);
  };
  field.addEventListener("change", build);
  add.addEventListener("click", () => send(model, "add_filter", { filter: current.read() }));
  refresh.addEventListener("click", () => send(model, "refresh_choices"));

  const sync = () => {
    const descriptions = model.get("_descriptions");
    chips.replaceChildren(...descriptions.map((text, index) => h("span", { class: "picsift-chip", "data-index": String(index) },
      h("span", { class: "picsift-chip-text" }, text), h("button", { class: "picsift-chip-remove", title: `remove filter: ${text}`, "aria-label": `remove ${text}`,
        onclick: () => send(model, "remove_filter", { index }) }, "✕"))));
    if (!descriptions.length) chips.append(h("span", { class: "picsift-muted" }, "no filters"));
    const [passing, total] = [model.get("_passing"), model.get("_total")];
    summary.textContent = model.get("summary") || (total >= 0 ? `${formatCount(total)} images` : "");
    summary.dataset.passing = String(passing);
    summary.dataset.total = String(total);
    el.dataset.filters = String(descriptions.length);
    add.disabled = model.get("busy");
  };
  const disposeChoices = watch(model, ["_choices"], build);
  return watch(model, ["_descriptions", "summary", "_passing", "_total", "busy"], sync, disposeChoices, disposeError);
}

export default { render };
