"use strict";
const data = JSON.parse(document.getElementById("gs-data").textContent);
const $ = (id) => document.getElementById(id);
const pane = $("gs-graph");
const loaded = new Map();
const LIST_LIMIT = 40;
let current = -1, pinned = null, mode = "graph", svg = null, home = null, view = null, drag = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function payload(k) {
  if (!loaded.has(k)) loaded.set(k, JSON.parse($("gs-step-" + k).textContent));
  return loaded.get(k);
}

function nodeElement(id) {
  return [...pane.querySelectorAll("g.node")].find((g) => g.id === id) || null;
}

function show(k) {
  if (!data.steps.length) return;
  k = Math.max(0, Math.min(data.steps.length - 1, k));
  const info = data.steps[k], step = payload(k);
  current = k;
  pane.innerHTML = step.svg;  // Graphviz output: every name in it is escaped
  svg = pane.querySelector("svg");
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  home = svg.getAttribute("viewBox").split(/[\s,]+/).map(Number);
  view = home.slice();
  for (const g of pane.querySelectorAll("g.node")) if (step.nodes[g.id]) g.classList.add("gs-node");
  $("gs-slider").value = String(k);
  $("gs-prev").disabled = k === 0;
  $("gs-next").disabled = k === data.steps.length - 1;
  $("gs-step-label").textContent = "step " + info.step + " · " + info.call + " · " + info.nodes + " nodes";
  $("gs-note").textContent = "(" + (k + 1) + " of " + data.steps.length + " drawn)";
  $("gs-notes").replaceChildren(...info.notes.map((n) => el("div", "note: " + n)));
  markChart(info);
  renderChanges(step.changes);
  setMode(mode);
  const keep = pinned && step.nodes[pinned] ? pinned : null;
  pinned = null;
  if (keep) pin(keep); else details(null);
}

function details(id) {
  const box = $("gs-details");
  if (id === null) {
    box.replaceChildren(el("p", "Hover over a box in the graph to see what it is and the gradient it received. Click a box to keep it here.", "gs-empty"));
    return;
  }
  const node = payload(current).nodes[id];
  const head = el("h3");
  const chip = el("span", null, "gs-chip");
  const shape = nodeElement(id).querySelector("polygon,path,ellipse");
  chip.style.background = shape ? shape.getAttribute("fill") : "none";
  head.append(chip, el("span", node.title));
  const table = el("table");
  for (const [label, text] of node.rows) {
    const tr = el("tr");
    tr.append(el("th", label), el("td", text));
    table.append(tr);
  }
  box.replaceChildren(head, table);
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
  if (id !== null) nodeElement(id).classList.add("gs-pinned");
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
  const box = nodeElement(id).getBBox();
  const ctm = nodeElement(id).getCTM(), root = svg.getCTM();
  const m = root.inverse().multiply(ctm);
  const c = new DOMPoint(box.x + box.width / 2, box.y + box.height / 2).matrixTransform(m);
  view = [c.x - view[2] / 2, c.y - view[3] / 2, view[2], view[3]];
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

function reveal(target) {
  show(target.index);
  for (const id of target.nodes) nodeElement(id).classList.add("gs-flagged");
  if (target.nodes.length) { pin(target.nodes[0]); centerOn(target.nodes[0]); }
}

function graphNode(event) {
  const g = event.target.closest("g.gs-node");
  return g ? g.id : null;
}

pane.addEventListener("mouseover", (event) => hover(graphNode(event)));
pane.addEventListener("click", (event) => {
  if (drag && drag.moved) return;
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

$("gs-summary").textContent = data.summary;
$("gs-slider").max = String(Math.max(data.steps.length - 1, 0));
$("gs-selection").textContent = data.note;
const chart = $("gs-growth").querySelector("svg");
if (chart) chart.addEventListener("click", chartClick);
renderFindings();
function showNothing() {
  for (const id of ["gs-prev", "gs-next", "gs-slider", "gs-view-changes"]) $(id).disabled = true;
  pane.replaceChildren(el("p", data.captured
    ? "No step was drawn (" + data.note + "); session.json holds every captured step."
    : "Nothing was captured: the script made no backward() or autograd.grad() call.", "gs-empty"));
}

if (data.steps.length) show(0);
else showNothing();
document.documentElement.dataset.ready = "true";
