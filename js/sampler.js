// Diversity sampler: method, clusters (0 = automatic), size, seed; "Sample" sends them to Python.
/** @typedef {{method: "random"|"centroids"|"kcenter"|"typical", n_clusters: number, size: number, seed: number}} SamplerTraits */
import { errorLine, h, send, watch } from "./protocol.js";

function render({ model, el }) {
  el.classList.add("picsift", "picsift-sampler");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const method = h("select", { class: "picsift-method", "aria-label": "method" },
    h("option", { value: "random" }, "Random across clusters"), h("option", { value: "centroids" }, "Cluster centroids"),
    h("option", { value: "kcenter" }, "Farthest point (k-center)"), h("option", { value: "typical" }, "Most typical per cluster"));
  const number = (cls, min) => h("input", { class: cls, type: "number", min, step: "1", style: "width: 5.5em" });
  const clusters = number("picsift-clusters", "0"), size = number("picsift-size", "1"), seed = number("picsift-seed", "0");
  const button = h("button", { class: "picsift-sample picsift-primary" }, "Sample");
  const [error, disposeError] = errorLine(model);
  button.addEventListener("click", () => send(model, "sample", {
    method: method.value, n_clusters: Math.max(0, parseInt(clusters.value, 10) || 0),
    size: Math.max(1, parseInt(size.value, 10) || 1), seed: parseInt(seed.value, 10) || 0,
  }));
  el.append(h("div", { class: "picsift-title" }, "Diverse sample"),
    h("div", { class: "picsift-row" }, method),
    h("div", { class: "picsift-row" }, h("label", {}, "clusters ", clusters), h("label", {}, "size ", size)),
    h("div", { class: "picsift-row" }, h("label", {}, "seed ", seed), button),
    h("div", { class: "picsift-muted" }, "clusters 0 = automatic (random: √(n/2); others: one per image)"), error);
  const sync = () => {
    method.value = model.get("method");
    clusters.value = String(model.get("n_clusters"));
    size.value = String(model.get("size"));
    seed.value = String(model.get("seed"));
    button.disabled = model.get("busy");
    el.dataset.busy = String(model.get("busy"));
  };
  return watch(model, ["method", "n_clusters", "size", "seed", "busy"], sync, disposeError);
}

export default { render };
