// Gallery: a virtualised grid over the whole sorted result list. Python sends only the sorted scores;
// tiles ask for thumbnails (WebP bytes in binary buffers) by position, cached as blob URLs (LRU).
/** @typedef {{title: string, limit: number, score_range: number[], selection: string[], tile_size: number,
 *   collection_names: string[], _count: number, _scores: object, _has_scores: boolean, _selected: object,
 *   _version: number}} GalleryTraits */
import { errorLine, formatCount, fromArray, h, requester, send, toArray } from "./protocol.js";

const CAPTION = 20, GAP = 6, OVERSCAN_ROWS = 2, CACHE_SIZE = 3000, BATCH = 96;

/** [start, stop) of the sorted (descending) scores inside [low, high) — [low, high] at the top edge. */
export function rangeSlice(scores, range) {
  if (!scores || !scores.length || range.length !== 2) return [0, scores ? scores.length : 0];
  const [low, high] = range;
  const inclusive = high >= scores[0];
  let a = 0, b = scores.length; // first index with score <= high (or < high)
  while (a < b) {
    const m = (a + b) >> 1;
    if (inclusive ? scores[m] > high : scores[m] >= high) a = m + 1; else b = m;
  }
  const start = a;
  b = scores.length; // first index with score < low
  while (a < b) {
    const m = (a + b) >> 1;
    if (scores[m] >= low) a = m + 1; else b = m;
  }
  return [start, Math.max(start, a)];
}

function render({ model, el }) {
  el.classList.add("picsift", "picsift-gallery");
  el.dataset.lmSuppressShortcuts = "true"; // typing in our inputs must not trigger notebook shortcuts
  const rpc = requester(model);
  const title = h("span", { class: "picsift-title" });
  const counter = h("span", { class: "picsift-gallery-count picsift-muted" });
  const selectedLabel = h("span", { class: "picsift-selected-count" });
  const nameInput = h("input", { class: "picsift-collection-name", type: "text", placeholder: "collection", list: "", style: "width: 9em" });
  const datalist = h("datalist", {});
  datalist.id = `picsift-names-${Math.random().toString(36).slice(2)}`;
  nameInput.setAttribute("list", datalist.id);
  const act = (type) => () => send(model, type, { name: nameInput.value.trim() });
  const actions = h("div", { class: "picsift-row picsift-actions" }, selectedLabel,
    h("button", { class: "picsift-find-similar picsift-primary", onclick: act("find_similar") }, "Find similar"),
    nameInput, datalist,
    h("button", { class: "picsift-add", onclick: act("add_to_collection") }, "Add to"),
    h("button", { class: "picsift-remove", onclick: act("remove_from_collection") }, "Remove from"),
    h("button", { class: "picsift-clear", onclick: () => setSelected(new Set()) }, "Clear"));
  const spacer = h("div", { class: "picsift-spacer" });
  const scroller = h("div", { class: "picsift-gallery-scroller", tabindex: "0" }, spacer);
  const wrap = h("div", { class: "picsift-gallery-wrap" }, scroller);
  const [error, disposeError] = errorLine(model);
  el.append(h("div", { class: "picsift-row" }, title, counter), actions, error, wrap);

  let scores = null, start = 0, shown = 0, version = -1, selected = new Set(), anchor = null;
  const tiles = new Map(); // position -> element
  const cache = new Map(); // `${version}:${position}` -> {url, name, id}; insertion order = LRU
  const pending = new Set();
  let wanted = new Set(), requestTimer = 0, frame = 0;

  const cacheGet = (key) => {
    const hit = cache.get(key);
    if (hit) { cache.delete(key); cache.set(key, hit); }
    return hit;
  };
  const cachePut = (key, value) => {
    cache.set(key, value);
    while (cache.size > CACHE_SIZE) {
      const [oldKey, old] = cache.entries().next().value;
      if (old.url) URL.revokeObjectURL(old.url);
      cache.delete(oldKey);
    }
  };
  const geometry = () => {
    const size = model.get("tile_size");
    const width = Math.max(1, scroller.clientWidth - GAP);
    const cols = Math.max(1, Math.floor(width / (size + GAP)));
    return { size, cols, rowHeight: size + CAPTION + GAP };
  };

  const fill = (tile, position) => {
    const entry = cacheGet(`${version}:${position}`);
    const img = tile.querySelector("img");
    if (entry) {
      if (img.getAttribute("src") !== entry.url) img.src = entry.url;
      img.alt = entry.name;
      tile.dataset.id = entry.id;
      tile.querySelector(".picsift-name").textContent = entry.note ? entry.note[0] : entry.name;
      tile.title = entry.note ? `${entry.note[1]}\n${entry.name}` : "";
      if (entry.note) tile.dataset.note = entry.note[0]; else delete tile.dataset.note;
      tile.classList.add("loaded");
    } else {
      wanted.add(position);
    }
    tile.classList.toggle("selected", selected.has(position));
    tile.querySelector("input").checked = selected.has(position);
  };

  const layout = () => {
    frame = 0;
    const { size, cols, rowHeight } = geometry();
    const rows = Math.ceil(shown / cols);
    spacer.style.height = `${rows * rowHeight + GAP}px`;
    const first = Math.max(0, Math.floor(scroller.scrollTop / rowHeight) - OVERSCAN_ROWS);
    const last = Math.min(rows, Math.ceil((scroller.scrollTop + scroller.clientHeight) / rowHeight) + OVERSCAN_ROWS);
    const visible = new Set();
    for (let i = first * cols; i < Math.min(shown, last * cols); i++) visible.add(start + i);
    for (const [position, tile] of tiles) if (!visible.has(position)) { tile.remove(); tiles.delete(position); }
    wanted = new Set();
    for (const position of visible) {
      let tile = tiles.get(position);
      if (!tile) {
        tile = h("div", { class: "picsift-tile" },
          h("img", { draggable: "false", alt: "" }),
          h("input", { type: "checkbox", "aria-label": "select" }),
          h("div", { class: "picsift-caption" }, h("b", { class: "picsift-score" }), " ", h("span", { class: "picsift-name" })));
        tile.dataset.position = String(position);
        tiles.set(position, tile);
        scroller.append(tile);
      }
      const i = position - start;
      tile.style.width = `${size}px`;
      tile.style.height = `${size + CAPTION}px`;
      tile.querySelector("img").style.height = `${size}px`;
      tile.style.transform = `translate(${GAP + (i % cols) * (size + GAP)}px, ${GAP + Math.floor(i / cols) * rowHeight}px)`;
      tile.dataset.rank = String(position + 1);
      if (scores) {
        tile.dataset.score = String(scores[position]);
        tile.querySelector(".picsift-score").textContent = scores[position].toFixed(3);
      }
      fill(tile, position);
    }
    el.dataset.rendered = String(tiles.size);
    el.dataset.renderedScroll = String(Math.round(scroller.scrollTop)); // lets tests wait for a scroll to land
    if (wanted.size) {
      clearTimeout(requestTimer);
      requestTimer = setTimeout(requestThumbnails, 16);
    }
  };
  const schedule = () => { if (!frame) frame = requestAnimationFrame(layout); };

  const requestThumbnails = () => {
    const need = [...wanted].filter((p) => !pending.has(`${version}:${p}`));
    for (let i = 0; i < need.length; i += BATCH) {
      const batch = need.slice(i, i + BATCH);
      const asked = version;
      for (const p of batch) pending.add(`${asked}:${p}`);
      rpc.request({ type: "thumbnails", indices: batch }).then(({ msg, buffers }) => {
        msg.indices.forEach((p, k) => {
          pending.delete(`${asked}:${p}`);
          const bytes = buffers[k];
          const url = bytes && bytes.byteLength ? URL.createObjectURL(new Blob([bytes], { type: "image/webp" })) : "";
          cachePut(`${asked}:${p}`, { url, name: msg.names[k], id: msg.ids[k], note: msg.notes ? msg.notes[k] : null });
          const tile = tiles.get(p);
          if (tile && asked === version) fill(tile, p);
        });
        el.dataset.thumbnails = String(scroller.querySelectorAll(".picsift-tile.loaded").length);
      }).catch(() => { for (const p of batch) pending.delete(`${asked}:${p}`); });
    }
  };

  let scoresSource = null;
  const update = () => {
    const newVersion = model.get("_version");
    // Some widget managers (marimo's) announce each changed trait of one update as it lands, so a new
    // _version can arrive before its _scores: new scores redraw the tiles too.
    const newScores = model.get("_has_scores") ? model.get("_scores") : null;
    if (newVersion !== version || newScores !== scoresSource) {
      if (newVersion !== version) scroller.scrollTop = 0;
      version = newVersion;
      scoresSource = newScores;
      for (const tile of tiles.values()) tile.remove();
      tiles.clear();
      pending.clear();
      scores = newScores ? toArray(newScores) : null;
    }
    const count = model.get("_count");
    const [a, b] = scores ? rangeSlice(scores, model.get("score_range")) : [0, count];
    const inRange = b - a;
    const limit = model.get("limit");
    if (a !== start) { for (const tile of tiles.values()) tile.remove(); tiles.clear(); }
    start = a;
    shown = Math.min(inRange, limit);
    title.textContent = model.get("title") || "Gallery";
    counter.textContent = shown < inRange ? `showing ${formatCount(shown)} of ${formatCount(inRange)} in range` : `${formatCount(inRange)} images`;
    el.dataset.count = String(inRange);
    el.dataset.shown = String(shown);
    el.dataset.version = String(version);
    schedule();
  };

  const setSelected = (next) => {
    selected = next;
    const positions = Int32Array.from([...selected].sort((x, y) => x - y));
    model.set("_selected", fromArray(positions, "int32"));
    model.save_changes();
    refreshSelection();
  };
  const refreshSelection = () => {
    selectedLabel.textContent = `With ${formatCount(selected.size)} selected:`;
    actions.dataset.selected = String(selected.size);
    for (const button of actions.querySelectorAll("button:not(.picsift-clear)")) button.disabled = !selected.size;
    for (const [position, tile] of tiles) {
      tile.classList.toggle("selected", selected.has(position));
      tile.querySelector("input").checked = selected.has(position);
    }
  };
  const onSelectedTrait = () => {
    const positions = toArray(model.get("_selected"));
    selected = new Set(positions ? Array.from(positions) : []);
    refreshSelection();
  };

  const openDetail = (position) => {
    rpc.request({ type: "detail", index: position }).then(({ msg, buffers }) => {
      const url = URL.createObjectURL(new Blob([buffers[0]], { type: "image/webp" }));
      const rows = Object.entries(msg.meta).map(([k, v]) => h("tr", {}, h("td", { class: "picsift-muted" }, k), h("td", {}, String(v))));
      const close = () => { panel.remove(); URL.revokeObjectURL(url); };
      const panel = h("div", { class: "picsift-detail", onclick: (e) => { if (e.target === panel) close(); } },
        h("img", { src: url, alt: msg.meta.name }),
        h("div", {}, h("button", { class: "picsift-close", onclick: close }, "Close"), h("table", {}, rows)));
      wrap.append(panel);
    }).catch(() => {});
  };

  scroller.addEventListener("click", (event) => {
    const tile = event.target.closest(".picsift-tile");
    if (!tile) return;
    const position = Number(tile.dataset.position);
    if (event.target.matches("input[type=checkbox]")) {
      const next = new Set(selected);
      if (event.shiftKey && anchor != null) {
        const [a, b] = anchor < position ? [anchor, position] : [position, anchor];
        for (let p = a; p <= b; p++) next.add(p);
      } else if (next.has(position)) next.delete(position);
      else next.add(position);
      anchor = position;
      setSelected(next);
    } else {
      openDetail(position);
    }
  });
  scroller.addEventListener("scroll", schedule, { passive: true });
  const resize = new ResizeObserver(schedule);
  resize.observe(scroller);

  const names = ["change:_version", "change:_count", "change:score_range", "change:limit", "change:title", "change:_scores",
    "change:_has_scores", "change:tile_size"];
  for (const name of names) model.on(name, update);
  const onNames = () => datalist.replaceChildren(...model.get("collection_names").map((n) => h("option", { value: n })));
  model.on("change:_selected", onSelectedTrait);
  model.on("change:collection_names", onNames);
  update();
  onSelectedTrait();
  onNames();
  return () => {
    for (const name of names) model.off(name, update);
    model.off("change:_selected", onSelectedTrait);
    model.off("change:collection_names", onNames);
    resize.disconnect();
    cancelAnimationFrame(frame);
    clearTimeout(requestTimer);
    rpc.dispose();
    disposeError();
    for (const entry of cache.values()) if (entry.url) URL.revokeObjectURL(entry.url);
  };
}

export default { render };
