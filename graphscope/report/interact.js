// Exploring a step: module boxes open in place and close, folded chains unfold, steps that
// were not drawn in advance are drawn here, the search box finds a node by name, op or
// file:line and opens what hides it, and the legend beside the graph lists what it shows.
const states = new Map(), pictures = new Map();
// Steps whose view the user changed here, with the number of nodes drawn now; and the notes
// that describe the picture drawn first (what it collapsed, folded or could not draw).
const explored = new Map(), PICTURE_NOTE = /^(view: |--full: |--depth \d+: )/;
const RESULTS = 20;
let results = [], active = -1;

// Which boxes of step k are open (none until the user opens one); null for a step drawn whole.
function stateOf(k) {
  const graph = payload(k).graph;
  if (graph && !states.has(k)) states.set(k, Explorer.start(graph));
  return graph ? states.get(k) : null;
}

// A line beside the search box: what the explorer is doing, or what it could not do.
function status(text, problem) {
  $("gs-status").textContent = text;
  $("gs-status").classList.toggle("gs-problem", Boolean(problem));
}

// The notes under step k: its own, and those of its first picture until the user changes the view.
function showNotes(k) {
  const info = data.steps[k], drawn = explored.get(k);
  const notes = drawn === undefined ? info.notes : info.notes.filter((n) => !PICTURE_NOTE.test(n)).concat(
    "view: as opened here, " + drawn + " nodes drawn of the step's " + info.nodes + "; Reset shows the first picture");
  $("gs-notes").replaceChildren(...notes.map((n) => el("div", "note: " + n)));
}

// Show step k: its picture as drawn in advance, or the view the explorer was left in.
function drawStep(k) {
  const step = payload(k);
  $("gs-reset").hidden = !step.graph;
  if (pictures.has(k)) { place(pictures.get(k)); showLegend(k); return Promise.resolve(true); }
  if (step.svg) { place(step.svg); showLegend(k); return Promise.resolve(true); }
  return redraw(k);
}

// Lay out step k's current view in the browser and show it; false when it is too big to.
async function redraw(k, focus) {
  const graph = payload(k).graph, shown = Explorer.view(graph, stateOf(k));
  if (shown.tooBig) {
    const labels = shown.cost.labelled ? ", " + shown.cost.dotRanks + " with a rank for each row of edge labels" : "";
    const size = shown.cost.nodes + " nodes on " + shown.cost.ranks + " ranks" + labels + "; " +
      shown.cost.segments + " rank crossings of long edges";
    status("this view is too big to lay out in the browser (" + size + ")", true);
    if (pane.dataset.step !== String(k)) {
      svg = null;
      pane.replaceChildren(el("p", "Step " + data.steps[k].step + " is too big to lay out in the browser (" + size +
        "); session.json holds every node of it.", "gs-empty"));
      $("gs-note").textContent = "(" + (k + 1) + " of " + data.steps.length + "; too big to draw here)";
    }
    return false;
  }
  status("laying out " + shown.nodes.length + " nodes…");
  pane.dataset.drawing = "true";
  try {
    await new Promise((done) => setTimeout(done, 0));
    const text = await Graphviz.render(Explorer.dot(graph, shown));
    if (k !== current) return false;
    pictures.set(k, text);
    place(text);
    showLegend(k);
    if (focus) centerOnElement(focus());
    status("");
    return true;
  } catch (error) {
    status("could not lay out this view: " + error.message, true);
    return false;
  } finally {
    delete pane.dataset.drawing;
  }
}

// Mark module boxes and folded chains, which open when clicked.
function markBoxes(step) {
  if (!step.graph) return;
  const folds = new Set(Explorer.view(step.graph, stateOf(current)).folds.values());
  for (const g of pane.querySelectorAll("g.node")) {
    g.classList.toggle("gs-module", Explorer.isBox(step.graph, g.id));
    g.classList.toggle("gs-fold", folds.has(g.id));
  }
}

// The module path a frame in the picture stands for: its label.
function clusterPath(g) {
  const label = g.querySelector("text");
  return label ? label.textContent : null;
}

// A click in the graph that opens a box or a folded chain, or closes a module's frame: true when handled.
function explore(event) {
  const graph = current >= 0 ? payload(current).graph : null;
  if (!graph) return false;
  const node = event.target.closest("g.node");
  if (node && (node.classList.contains("gs-module") || node.classList.contains("gs-fold"))) {
    openBox(node.id);
    return true;
  }
  const frame = !node && event.target.closest("g.cluster");
  if (!frame) return false;
  const path = clusterPath(frame);
  change((graph, state) => Explorer.close(graph, state, path),
    () => [...pane.querySelectorAll("g.gs-module")].find((g) => described(g.id).title === path));
  return true;
}

// Change the explorer's state of the shown step and draw it; a view too big to draw is undone.
async function change(alter, focus) {
  const state = stateOf(current), before = {closed: new Set(state.closed), unfolded: new Set(state.unfolded)};
  if (!alter(payload(current).graph, state)) return false;
  const drawn = await redraw(current, focus);
  if (!drawn) Object.assign(state, before);
  else explored.set(current, Explorer.view(payload(current).graph, state).cost.nodes);
  showNotes(current);
  return drawn;
}

function openBox(id) {
  const path = (described(id) || {title: null}).title;
  pin(id);
  return change((graph, state) => Explorer.open(graph, state, id),
    () => [...pane.querySelectorAll("g.cluster")].find((g) => clusterPath(g) === path) || nodeElement(id));
}

function closeBox(id) {
  return change((graph, state) => Explorer.close(graph, state, graph.boxes[id].p), () => nodeElement(id));
}

// Buttons under a module box's details: open it, or close the module it belongs to.
function boxActions(id) {
  const graph = payload(current).graph;
  if (!graph || !Explorer.isBox(graph, id)) return [];
  const drawnClosed = nodeElement(id) !== null && nodeElement(id).id === id;
  const button = el("button", drawnClosed ? "open this box" : "close " + graph.boxes[id].p);
  button.type = "button";
  button.addEventListener("click", () => (drawnClosed ? openBox(id) : closeBox(id)));
  return [button];
}

// The legend beside the graph: one line per fill and border the shown view's nodes have.
function showLegend(k) {
  const graph = payload(k).graph, card = $("gs-legend-card");
  card.hidden = !graph;
  if (!graph) return;
  const shown = Explorer.view(graph, stateOf(k)), fills = new Set(), borders = new Set();
  for (const n of shown.nodes) { fills.add(n.l[0]); if (n.l[1]) borders.add(n.l[1]); }
  const rows = [];
  const row = ([text, style]) => {
    const swatch = el("span", null, "gs-swatch");
    swatch.style.background = style.fillcolor;
    swatch.style.border = Math.round(Number(style.penwidth || 1)) + "px " +
      (String(style.style || "").includes("dashed") ? "dashed " : "solid ") + style.color;
    const line = el("div", null, "gs-row");
    line.append(swatch, el("span", text));
    rows.push(line);
  };
  for (const [key, entry] of Object.entries(graph.legend.fills)) if (fills.has(key)) row(entry);
  for (const [key, entry] of Object.entries(graph.legend.borders)) if (borders.has(key)) row(entry);
  if (shown.cost.labelled) {
    rows.push(el("p", "edge label: the gradient that flowed back; edge width: log ‖grad‖", "gs-empty"));
  }
  $("gs-legend").replaceChildren(...rows);
}

// The nodes and boxes of the shown step whose name, op, source line or module holds the query.
function find(query) {
  const wanted = query.trim().toLowerCase();
  if (!wanted) return [];
  const found = [];
  for (const [id, node] of Object.entries(payload(current).nodes)) {
    if (/~\d+$/.test(id)) continue;
    const fields = node.rows.filter(([label]) => ["name", "op", "source line", "module"].includes(label));
    const texts = [node.title, ...fields.map(([, text]) => text)].map((t) => String(t).toLowerCase());
    const rank = texts.some((t) => t === wanted) ? 0 : texts.some((t) => t.endsWith(wanted)) ? 1 : 2;
    if (texts.some((t) => t.includes(wanted))) found.push([rank, node.title.length, id, node]);
  }
  return found.sort((a, b) => a[0] - b[0] || a[1] - b[1]).slice(0, RESULTS).map(([, , id, node]) => [id, node]);
}

// The list under the search box, the first entry chosen by Enter.
function showResults(list) {
  results = list;
  active = list.length ? 0 : -1;
  const box = $("gs-search-results");
  box.hidden = !$("gs-search").value.trim();
  box.replaceChildren(...(list.length ? list.map(([id, node], k) => {
    const item = el("li", node.title, k === active ? "gs-active" : "");
    const source = node.rows.find(([label]) => label === "source line");
    const op = node.rows.find(([label]) => label === "op");
    item.append(el("span", [op && op[1], source && source[1]].filter(Boolean).join(" · "), "gs-where"));
    item.addEventListener("mousedown", (event) => { event.preventDefault(); choose(id); });
    return item;
  }) : [el("li", "nothing in this step matches", "gs-empty")]));
}

// Select a node found by the search: open what hides it, centre it, show its details.
async function choose(id) {
  $("gs-search-results").hidden = true;
  if (payload(current).graph) await change((graph, state) => Explorer.reveal(graph, state, id));
  pin(id);
  centerOn(id);
}

$("gs-search").addEventListener("input", (event) => showResults(find(event.target.value)));
$("gs-search").addEventListener("keydown", (event) => {
  const moves = {ArrowDown: 1, ArrowUp: -1};
  if (event.key in moves && results.length) {
    event.preventDefault();
    active = (active + moves[event.key] + results.length) % results.length;
    [...$("gs-search-results").children].forEach((li, k) => li.classList.toggle("gs-active", k === active));
  } else if (event.key === "Enter" && active >= 0) {
    event.preventDefault();
    choose(results[active][0]);
  } else if (event.key === "Escape") {
    $("gs-search-results").hidden = true;
  }
});
$("gs-search").addEventListener("blur", () => { $("gs-search-results").hidden = true; });
$("gs-reset").addEventListener("click", () => {
  if (!payload(current).graph) return;
  states.delete(current);
  pictures.delete(current);
  explored.delete(current);
  showNotes(current);
  drawStep(current);
});

$("gs-summary").textContent = data.summary;
$("gs-slider").max = String(Math.max(data.steps.length - 1, 0));
$("gs-selection").textContent = data.note;
const chart = $("gs-growth").querySelector("svg");
if (chart) chart.addEventListener("click", chartClick);
renderFindings();

// A run with no step to show says why.
function showNothing() {
  for (const id of ["gs-prev", "gs-next", "gs-slider", "gs-view-changes", "gs-search", "gs-reset"]) $(id).disabled = true;
  pane.replaceChildren(el("p", data.captured
    ? "No step was drawn (" + data.note + "); session.json holds every captured step."
    : "Nothing was captured: the script made no backward() or autograd.grad() call.", "gs-empty"));
}

(data.steps.length ? show(0) : Promise.resolve(showNothing()))
  .finally(() => { document.documentElement.dataset.ready = "true"; });
