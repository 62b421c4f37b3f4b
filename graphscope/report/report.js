// The page: timeline, the graph with pan and zoom, details, changes, findings and growth chart.
const data = JSON.parse(document.getElementById("gs-data").textContent);
const $ = (id) => document.getElementById(id);
const pane = $("gs-graph");
const loaded = new Map();
const LIST_LIMIT = 40;
const READABLE = 0.75;  // below this scale a picture's labels are too small to read: it opens at scale 1
let current = -1, pinned = null, mode = "graph", svg = null, home = null, view = null, drag = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// Step k's block, read when first shown; its explorer graph gets the rules every step shares.
function payload(k) {
  if (!loaded.has(k)) {
    const step = JSON.parse($("gs-step-" + k).textContent);
    if (step.graph) Object.assign(step.graph, data.explorer);
    loaded.set(k, step);
  }
  return loaded.get(k);
}

// The element drawing a node: the node itself, or the first copy of it drawn beside a use.
function nodeElement(id) {
  const nodes = [...pane.querySelectorAll("g.node")];
  return nodes.find((g) => g.id === id) || nodes.find((g) => g.id.startsWith(id + "~")) || null;
}

// What the page knows of a node drawn under `id` (a copy is described as its original).
function described(id) {
  const nodes = payload(current).nodes;
  return nodes[id] || nodes[id.replace(/~\d+$/, "")] || null;
}

function show(k) {
  if (!data.steps.length) return;
  k = Math.max(0, Math.min(data.steps.length - 1, k));
  const info = data.steps[k], step = payload(k);
  current = k;
  $("gs-slider").value = String(k);
  $("gs-prev").disabled = k === 0;
  $("gs-next").disabled = k === data.steps.length - 1;
  $("gs-step-label").textContent = "step " + info.step + " · " + info.call + " · " + info.nodes + " nodes";
  $("gs-note").textContent = "(" + (k + 1) + " of " + data.steps.length + (step.svg ? "; drawn by graphscope)" : "; drawn in your browser)");
  showNotes(k);
  markChart(info);
  renderChanges(step.changes);
  return drawStep(k);
}

// Put a picture in the pane, fitted when its labels stay readable, else at scale 1 from its
// top left corner (title and notes first); `keep` keeps the part of the graph in view.
function place(text, keep) {
  pane.innerHTML = text;  // Graphviz output: every name in it is escaped
  pane.dataset.step = String(current);
  svg = pane.querySelector("svg");
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  home = svg.getAttribute("viewBox").split(/[\s,]+/).map(Number);
  view = keep ? keep.slice() : readableView(home);
  applyView();
  const step = payload(current);
  for (const g of pane.querySelectorAll("g.node")) if (described(g.id)) g.classList.add("gs-node");
  markBoxes(step);
  setMode(mode);
  const kept = pinned && described(pinned) ? pinned : null;
  pinned = null;
  if (kept) pin(kept); else details(null);
}

function readableView(box) {
  const size = pane.getBoundingClientRect();
  const scale = Math.min(size.width / box[2], size.height / box[3]);
  if (!(scale < READABLE) || !size.width) return box.slice();
  return [box[0], box[1], size.width, size.height];
}

function details(id) {
  const box = $("gs-details");
  if (id === null) {
    box.replaceChildren(el("p", "Hover over a box in the graph to see what it is and the gradient it received. Click a box to keep it here.", "gs-empty"));
    return;
  }
  const node = described(id);
  const head = el("h3");
  const chip = el("span", null, "gs-chip");
  const drawn = nodeElement(id), shape = drawn && drawn.querySelector("polygon,path,ellipse");
  chip.style.background = shape ? shape.getAttribute("fill") : "none";
  head.append(chip, el("span", node.title));
  const table = el("table");
  for (const [label, text] of node.rows) {
    const tr = el("tr");
    tr.append(el("th", label), el("td", text));
    table.append(tr);
  }
  box.replaceChildren(head, table, ...boxActions(id));
}

function hover(id) {
  for (const g of pane.querySelectorAll("g.gs-hover")) g.classList.remove("gs-hover");
  if (id === null) return;
  nodeElement(id).classList.add("gs-hover");
  if (pinned === null) details(id);
}

function pin(id) {
  for (const g of pane.querySelectorAll("g.gs-pinned")) g.classList.remove("gs-pinned");
  pinned = id;
  const drawn = id !== null ? nodeElement(id) : null;
  if (drawn) drawn.classList.add("gs-pinned");
  details(id);
}

function renderChanges(change) {
  const box = $("gs-changes");
  $("gs-view-changes").disabled = change === null;
  if (change === null) {
    $("gs-changes-title").textContent = "Changes";
    $("gs-view-changes").textContent = "Changes since previous step";
    box.replaceChildren(el("p", "This is the first captured step: there is nothing before it to compare with.", "gs-empty"));
    return;
  }
  $("gs-changes-title").textContent = "Changes since step " + change.from;
  $("gs-view-changes").textContent = "Changes since step " + change.from;
  const parts = [];
  const summary = change.added.length + " new, " + change.removed.length + " removed, " +
    change.carried.length + " carried over from earlier steps";
  parts.push(el("p", summary));
  const list = (title, cls, items) => {
    if (!items.length) return;
    parts.push(el("div", title, cls));
    const ul = el("ul");
    for (const item of items.slice(0, LIST_LIMIT)) ul.append(Array.isArray(item) ? nodeLink(item) : el("li", item));
    if (items.length > LIST_LIMIT) ul.append(el("li", "… and " + (items.length - LIST_LIMIT) + " more"));
    parts.push(ul);
  };
  list("new in this graph (green border)", "gs-added-text", change.added);
  list("carried over (orange border): made in an earlier step, still in this graph", "gs-carried-text", change.carried);
  list("removed since step " + change.from, "gs-removed-text", change.removed);
  list("tensors that changed kind", "", change.kinds);
  if (!change.added.length && !change.removed.length && !change.kinds.length) parts.push(el("p", "Same structure as the step before.", "gs-empty"));
  box.replaceChildren(...parts);
}

function nodeLink([id, text]) {
  const item = el("li", text, "gs-link");
  item.title = "show it in the graph";
  item.addEventListener("click", () => { pin(id); centerOn(id); });
  return item;
}

function setMode(next) {
  const change = current >= 0 ? payload(current).changes : null;
  mode = change === null ? "graph" : next;
  $("gs-view-graph").classList.toggle("gs-on", mode === "graph");
  $("gs-view-changes").classList.toggle("gs-on", mode === "changes");
  pane.classList.toggle("gs-changes", mode === "changes");
  const ids = (items) => new Set(items.map(([id]) => id));
  const added = ids(change ? change.added : []), carried = ids(change ? change.carried : []);
  for (const g of pane.querySelectorAll("g.gs-node")) {
    g.classList.toggle("gs-added", added.has(g.id));
    g.classList.toggle("gs-carried", carried.has(g.id));
    g.classList.toggle("gs-same", !added.has(g.id) && !carried.has(g.id));
  }
}

function applyView() {
  svg.setAttribute("viewBox", view.join(" "));
}

function toGraph(clientX, clientY) {
  const point = new DOMPoint(clientX, clientY).matrixTransform(svg.getScreenCTM().inverse());
  return [point.x, point.y];
}

function zoom(factor, clientX, clientY) {
  if (!svg) return;
  const box = pane.getBoundingClientRect();
  const [px, py] = toGraph(clientX ?? box.left + box.width / 2, clientY ?? box.top + box.height / 2);
  const width = Math.min(Math.max(view[2] * factor, home[2] / 40), home[2] * 4);
  const scale = width / view[2];
  view = [px - (px - view[0]) * scale, py - (py - view[1]) * scale, view[2] * scale, view[3] * scale];
  applyView();
}

function fit() {
  if (!svg) return;
  view = home.slice();
  applyView();
}

function centerOn(id) {
  centerOnElement(nodeElement(id));
}

// Move the view onto an element: centred, or from its top when it is taller than the view.
function centerOnElement(target) {
  if (!target) return;
  const box = target.getBBox();
  const m = svg.getCTM().inverse().multiply(target.getCTM());
  const top = new DOMPoint(box.x, box.y).matrixTransform(m), end = new DOMPoint(box.x + box.width, box.y + box.height).matrixTransform(m);
  const x = (top.x + end.x) / 2 - view[2] / 2;
  const tall = end.y - top.y > view[3] * 0.9;
  view = [x, tall ? top.y - 12 : (top.y + end.y) / 2 - view[3] / 2, view[2], view[3]];
  applyView();
}

function markChart(info) {
  const chart = $("gs-growth").querySelector("svg");
  if (!chart) { $("gs-growth-card").hidden = true; return; }
  let line = chart.querySelector("#gs-marker");
  if (!line) {
    line = document.createElementNS(chart.namespaceURI, "line");
    line.id = "gs-marker";
    line.setAttribute("stroke", "#212121");
    line.setAttribute("stroke-dasharray", "4 3");
    line.setAttribute("y1", data.chart.top);
    line.setAttribute("y2", data.chart.bottom);
    chart.append(line);
  }
  line.setAttribute("x1", info.x);
  line.setAttribute("x2", info.x);
}

function chartClick(event) {
  const chart = event.currentTarget;
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(chart.getScreenCTM().inverse());
  let best = 0;
  data.steps.forEach((s, k) => { if (Math.abs(s.x - point.x) < Math.abs(data.steps[best].x - point.x)) best = k; });
  show(best);
}

function renderFindings() {
  const box = $("gs-findings");
  $("gs-findings-card").hidden = !data.findings.length;
  box.replaceChildren(...data.findings.map(renderFinding));
}

function renderFinding(f) {
  const card = el("div", null, "gs-finding gs-" + String(f.severity || "info").toLowerCase());
  const head = el("p");
  head.append(el("span", f.severity || "note", "gs-badge"), el("strong", f.rule));
  card.append(head, el("p", f.message));
  if (f.fix) card.append(el("p", "Fix: " + f.fix, "gs-fix"));
  const where = [f.location, f.step === null ? null : "step " + f.step].filter((x) => x !== null && x !== "");
  if (where.length) card.append(el("p", where.join(" · "), "gs-where"));
  if (f.target) {
    const go = el("button", "show in the graph of step " + data.steps[f.target.index].step);
    go.type = "button";
    go.addEventListener("click", () => reveal(f.target));
    card.append(go);
  }
  return card;
}

async function reveal(target) {
  await show(target.index);
  for (const id of target.nodes) { const drawn = nodeElement(id); if (drawn) drawn.classList.add("gs-flagged"); }
  if (target.nodes.length) { pin(target.nodes[0]); centerOn(target.nodes[0]); }
}

function graphNode(event) {
  const g = event.target.closest("g.gs-node");
  return g ? g.id : null;
}

pane.addEventListener("mouseover", (event) => hover(graphNode(event)));
pane.addEventListener("click", (event) => {
  if (drag && drag.moved) return;
  if (explore(event)) return;
  const id = graphNode(event);
  pin(id !== null && id !== pinned ? id : null);
});
pane.addEventListener("wheel", (event) => {
  event.preventDefault();
  zoom(Math.exp(event.deltaY * 0.0015), event.clientX, event.clientY);
}, {passive: false});
pane.addEventListener("pointerdown", (event) => {
  if (!svg) return;
  drag = {x: event.clientX, y: event.clientY, view: view.slice(), scale: svg.getScreenCTM().a, moved: false};
});
window.addEventListener("pointermove", (event) => {
  if (!drag || event.buttons !== 1) return;
  const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
  if (!drag.moved && Math.hypot(dx, dy) < 4) return;
  drag.moved = true;
  pane.classList.add("gs-dragging");
  view = [drag.view[0] - dx / drag.scale, drag.view[1] - dy / drag.scale, view[2], view[3]];
  applyView();
});
window.addEventListener("pointerup", () => {
  pane.classList.remove("gs-dragging");
  setTimeout(() => { drag = null; }, 0);
});
$("gs-prev").addEventListener("click", () => show(current - 1));
$("gs-next").addEventListener("click", () => show(current + 1));
$("gs-slider").addEventListener("input", (event) => show(Number(event.target.value)));
$("gs-view-graph").addEventListener("click", () => setMode("graph"));
$("gs-view-changes").addEventListener("click", () => setMode("changes"));
$("gs-zoom-in").addEventListener("click", () => zoom(1 / 1.25));
$("gs-zoom-out").addEventListener("click", () => zoom(1.25));
$("gs-fit").addEventListener("click", fit);
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.altKey || event.ctrlKey || event.metaKey) return;
  const keys = {ArrowLeft: () => show(current - 1), ArrowRight: () => show(current + 1),
    Home: () => show(0), End: () => show(data.steps.length - 1), Escape: () => pin(null),
    "+": () => zoom(1 / 1.25), "=": () => zoom(1 / 1.25), "-": () => zoom(1.25), "0": fit};
  if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
});
