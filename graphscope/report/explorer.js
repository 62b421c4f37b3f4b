// The explorer: which module boxes of a step are open, the view that gives, and its DOT text.
// It follows graphscope's own views: a node is drawn inside the outermost closed box around
// it; chains of one op are folded when the picture folded them; a leaf whose edges would cross
// many ranks is drawn beside each use, and when a view is still too big for a quick layout,
// any node is drawn again beside its far neighbours, or the view is refused with its size.
const Explorer = (() => {
  "use strict";

  // A DOT double-quoted string, escaped as graphscope's renderers escape it.
  function quote(text) {
    const escaped = String(text).replace(/&/g, "&amp;").replace(/\\/g, "\\\\").replace(/"/g, '\\"')
      .replace(/\r\n?/g, "\n").replace(/\n/g, "\\n");
    return '"' + escaped + '"';
  }

  // `[a="1", b="2"]` with keys sorted, as in graphscope's DOT.
  function attributes(attrs) {
    const keys = Object.keys(attrs).sort();
    return "[" + keys.map((key) => key + "=" + quote(attrs[key])).join(", ") + "]";
  }

  function index(graph) {
    if (!graph.byId) graph.byId = new Map(graph.nodes.map((n) => [n.i, n]));
    return graph.byId;
  }

  // A fresh state: the boxes the picture drew closed, nothing unfolded.
  function start(graph) {
    return {closed: new Set(graph.closed), unfolded: new Set()};
  }

  // The outermost closed box around a node, or the node itself.
  function representative(node, closed) {
    for (const box of node.c || []) if (closed.has(box)) return box;
    return node.i;
  }

  // A closed box as a node of the view.
  function boxNode(graph, id) {
    const box = graph.boxes[id];
    return {i: id, k: "module", t: box.p, a: box.a, m: box.m, l: box.l};
  }

  // Edges between what is drawn, from [source, target, edge] triples: parallel ones merged
  // (a merged edge keeps no gradient, as in the pictures), none from a node to itself.
  function merged(pairs) {
    const count = new Map();
    for (const [s, t] of pairs) count.set(s + "\u0000" + t, (count.get(s + "\u0000" + t) || 0) + 1);
    const edges = [], done = new Set();
    for (const [s, t, e] of pairs) {
      const key = s + "\u0000" + t;
      if (s === t || done.has(key)) continue;
      done.add(key);
      edges.push(count.get(key) === 1 ? {s, t, a: e.a, w: e.w, p: e.p} : {s, t, a: e.p, w: null, p: e.p});
    }
    return edges;
  }

  // Nodes drawn as themselves or inside their outermost closed box, and the edges between them.
  function collapsed(graph, state) {
    const rep = new Map(), nodes = [], seen = new Set();
    for (const node of graph.nodes) {
      const id = representative(node, state.closed);
      rep.set(node.i, id);
      if (!seen.has(id)) { seen.add(id); nodes.push(id === node.i ? node : boxNode(graph, id)); }
    }
    const pairs = graph.edges.map(([s, t, a, w, saved]) => {
      const plain = graph.plain[rep.get(s) === s ? saved : 0];
      return [rep.get(s), rep.get(t), {a: w === null && a === null ? plain : a, w, p: plain}];
    });
    return {nodes, edges: merged(pairs)};
  }

  // Each node's inputs and users in a view.
  function adjacency(view) {
    const inputs = new Map(view.nodes.map((n) => [n.i, []])), users = new Map(view.nodes.map((n) => [n.i, []]));
    for (const e of view.edges) { users.get(e.s).push(e.t); inputs.get(e.t).push(e.s); }
    return {inputs, users};
  }

  // Runs of at least `chain` unnamed function nodes of one op, each feeding only the next.
  function chains(view, limit, unfolded) {
    const {inputs, users} = adjacency(view), byId = new Map(view.nodes.map((n) => [n.i, n]));
    const linkable = (a, b) => a.k === "function" && b.k === "function" && a.o === b.o &&
      users.get(a.i).length === 1 && users.get(a.i)[0] === b.i && inputs.get(b.i).length === 1;
    const runs = [], placed = new Set();
    for (const node of view.nodes) {
      if (placed.has(node.i) || node.k !== "function") continue;
      const after = [node.i];
      for (let u = users.get(node.i); u.length === 1 && linkable(byId.get(after[after.length - 1]), byId.get(u[0]));
        u = users.get(after[after.length - 1])) after.push(u[0]);
      const before = [];
      for (let first = node.i, i = inputs.get(first); i.length === 1 && linkable(byId.get(i[0]), byId.get(first));
        i = inputs.get(first)) { first = i[0]; before.push(first); }
      const run = before.reverse().concat(after);
      run.forEach((id) => placed.add(id));
      if (run.length >= limit && !unfolded.has(run[0])) runs.push(run);
    }
    return runs;
  }

  // The view with each run drawn as its first node, `× N op`; `folds` maps each member to it.
  function folded(view, runs) {
    if (!runs.length) return {view, folds: new Map()};
    const target = new Map(), first = new Map(runs.map((run) => [run[0], run.length]));
    for (const run of runs) for (const id of run) target.set(id, run[0]);
    const nodes = [];
    for (const node of view.nodes) {
      if (target.has(node.i) && target.get(node.i) !== node.i) continue;
      const length = first.get(node.i);
      nodes.push(length ? {...node, a: {...node.a, label: "× " + length + " " + node.a.label}} : node);
    }
    const at = (id) => target.get(id) || id;
    return {view: {nodes, edges: merged(view.edges.map((e) => [at(e.s), at(e.t), e]))}, folds: target};
  }

  // Each node's rank as dot roughly places it (as in graphscope.analysis.spans.ranks).
  function ranks(view) {
    const {inputs, users} = adjacency(view);
    const waiting = new Map(view.nodes.map((n) => [n.i, users.get(n.i).length])), height = new Map();
    const ready = view.nodes.filter((n) => waiting.get(n.i) === 0).map((n) => n.i);
    for (const n of view.nodes) height.set(n.i, 0);
    while (ready.length) {
      const id = ready.pop();
      for (const source of inputs.get(id)) {
        height.set(source, Math.max(height.get(source), height.get(id) + 1));
        waiting.set(source, waiting.get(source) - 1);
        if (waiting.get(source) === 0) ready.push(source);
      }
    }
    let top = 0;
    for (const h of height.values()) top = Math.max(top, h);
    const rank = new Map();
    for (const [id, h] of height) rank.set(id, top - h);
    for (const n of view.nodes) {
      if (inputs.get(n.i).length && !users.get(n.i).length) rank.set(n.i, Math.max(...inputs.get(n.i).map((i) => rank.get(i))) + 1);
    }
    return rank;
  }

  // What a layout of the view would place (as graphscope.analysis.spans.layout_cost).
  function cost(view, limits) {
    const rank = ranks(view);
    let segments = 0;
    for (const e of view.edges) segments += Math.max(Math.abs(rank.get(e.t) - rank.get(e.s)) - 1, 0);
    let low = Infinity, high = -Infinity;
    for (const r of rank.values()) { low = Math.min(low, r); high = Math.max(high, r); }
    const levels = rank.size ? high - low + 1 : 0;
    const labelled = view.edges.some((e) => e.a.label !== undefined);  // dot gives each row of labels a rank
    return {nodes: view.nodes.length, edges: view.edges.length, segments, ranks: levels, labelled,
      dotRanks: labelled ? 2 * levels - 1 : levels,
      units: view.nodes.length + view.edges.length + limits.weight * segments};
  }

  // Copy `number` of `count` of a node drawn again beside a far neighbour.
  function copy(node, number, count) {
    const what = node.k === "leaf" ? "use" : "copy";
    const lines = String(node.a.label).split("\n");
    lines[0] += " (" + what + " " + (number + 1) + " of " + count + ")";
    return {...node, i: node.i + "~" + number, a: {...node.a, id: node.i + "~" + number, label: lines.join("\n")}};
  }

  // Draw a node again beside each far neighbour (a leaf: beside each use, instead of once).
  function split(view, span, leavesOnly) {
    const rank = ranks(view), byId = new Map(view.nodes.map((n) => [n.i, n]));
    const degree = new Map(view.nodes.map((n) => [n.i, 0]));
    for (const e of view.edges) { degree.set(e.s, degree.get(e.s) + 1); degree.set(e.t, degree.get(e.t) + 1); }
    const far = new Map(), leaves = new Set();
    const add = (hub, k) => { if (!far.has(hub)) far.set(hub, []); far.get(hub).push(k); };
    view.edges.forEach((e, k) => {
      if (Math.abs(rank.get(e.t) - rank.get(e.s)) <= span) return;
      const hub = byId.get(e.s).k === "leaf" || degree.get(e.s) >= degree.get(e.t) ? e.s : e.t;
      if (byId.get(hub).k === "leaf") leaves.add(hub);
      else if (!leavesOnly) add(hub, k);
    });
    view.edges.forEach((e, k) => { if (leaves.has(e.s)) add(e.s, k); });
    if (!far.size) return view;
    const copies = new Map(), moved = new Map();
    for (const [hub, edges] of far) {
      const other = (k) => rank.get(view.edges[k].s === hub ? view.edges[k].t : view.edges[k].s);
      edges.sort((a, b) => other(a) - other(b));
      copies.set(hub, edges.map((k, n) => copy(byId.get(hub), n, edges.length)));
      edges.forEach((k, n) => moved.set(k, [view.edges[k].s === hub ? "s" : "t", copies.get(hub)[n].i]));
    }
    const nodes = view.nodes.flatMap((n) => [...(leaves.has(n.i) ? [] : [n]), ...(copies.get(n.i) || [])]);
    const edges = view.edges.map((e, k) => moved.has(k) ? {...e, [moved.get(k)[0]]: moved.get(k)[1]} : e);
    return {nodes, edges};
  }

  // True when a layout of this size finishes in seconds here.
  function fits(c, limits) {
    return c.units <= limits.units && c.dotRanks <= limits.ranks;
  }

  // The view of a step in a state: nodes and edges to draw, the folded chains, its cost,
  // and `tooBig` when not even copies beside far neighbours make it quick to lay out.
  function view(graph, state) {
    let shown = collapsed(graph, state), folds = new Map();
    if (graph.chains) ({view: shown, folds} = folded(shown, chains(shown, graph.limits.chain, state.unfolded)));
    for (const leavesOnly of [true, false]) {
      const drawn = split(shown, graph.limits.span, leavesOnly), size = cost(drawn, graph.limits);
      if (fits(size, graph.limits)) return {...drawn, folds, cost: size, tooBig: false};
    }
    return {...shown, folds, cost: cost(shown, graph.limits), tooBig: true};
  }

  // Nested cluster blocks, one per module path, parents around children (as dot.py's).
  function clusterLines(graph, paths, members, statements) {
    const lines = [], open = [];
    const sorted = [...paths].sort((a, b) => {
      const x = a.split("."), y = b.split(".");
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
      return x.length - y.length;
    });
    sorted.forEach((path, number) => {
      while (open.length && !path.startsWith(open[open.length - 1] + ".")) {
        open.pop();
        lines.push("  ".repeat(open.length + 1) + "}");
      }
      const indent = "  ".repeat(open.length + 1);
      lines.push(indent + "subgraph " + quote("cluster_" + number) + " {");
      lines.push(indent + "  graph " + attributes({...graph.cluster, label: path}) + ";");
      for (const id of members.get(path) || []) { lines.push(indent + "  " + statements.get(id)); statements.delete(id); }
      open.push(path);
    });
    while (open.length) { open.pop(); lines.push("  ".repeat(open.length + 1) + "}"); }
    return lines;
  }

  // Edge width on a log scale of the gradient norm, as in the pictures.
  function penwidth(w, scale, pen) {
    if (scale === null || w === null) return pen[0];
    if (scale[1] - scale[0] < 1e-12) return (pen[0] + pen[1]) / 2;
    return pen[0] + (pen[1] - pen[0]) * (Math.log10(w) - scale[0]) / (scale[1] - scale[0]);
  }

  // DOT text of a view, laid out as graphscope lays out its pictures (no legend: it is beside the graph).
  function dot(graph, shown) {
    const statements = new Map(shown.nodes.map((n) => [n.i, quote(n.i) + " " + attributes({...n.a, id: n.i}) + ";"]));
    const members = new Map();
    for (const n of shown.nodes) {
      if (!n.m || (n.k !== "function" && n.k !== "module")) continue;
      if (!members.has(n.m)) members.set(n.m, []);
      members.get(n.m).push(n.i);
    }
    const paths = new Set();
    for (const path of members.keys()) {
      const parts = path.split(".");
      for (let k = 1; k <= parts.length; k++) paths.add(parts.slice(0, k).join("."));
    }
    const clusters = clusterLines(graph, paths, members, statements);
    const logs = shown.edges.filter((e) => e.w !== null).map((e) => Math.log10(e.w));
    const scale = logs.length ? logs.reduce(([low, high], v) => [Math.min(low, v), Math.max(high, v)], [Infinity, -Infinity]) : null;
    const edges = shown.edges.map((e) => {
      const attrs = e.w === null ? e.a : {...e.a, penwidth: penwidth(e.w, scale, graph.limits.pen).toFixed(2)};
      return "  " + quote(e.s) + " -> " + quote(e.t) + " " + attributes(attrs) + ";";
    });
    const header = ["digraph graphscope {", "  graph " + attributes({...graph.graph, label: graph.title, tooltip: graph.title}) + ";",
      ...graph.defaults];
    return [...header, ...[...statements.values()].map((s) => "  " + s), ...clusters, ...edges, "}"].join("\n") + "\n";
  }

  // True for the id of a module box (or of a run of identical calls).
  function isBox(graph, id) {
    return Object.prototype.hasOwnProperty.call(graph.boxes, id);
  }

  // Open a closed box: its contents are drawn in its place, boxes inside it closed (a box
  // holding nothing but one box opens that one too). True when something changed.
  function open(graph, state, id) {
    if (isBox(graph, id) && state.closed.has(id)) {
      state.closed.delete(id);
      const box = graph.boxes[id];
      for (const kid of box.k) state.closed.add(kid);
      if (box.k.length === 1 && graph.boxes[box.k[0]].n === box.n) open(graph, state, box.k[0]);
      return true;
    }
    if (isBox(graph, id) || state.unfolded.has(id)) return false;
    state.unfolded.add(id);
    return true;
  }

  // Close every box drawn open as the cluster `path`. True when something changed.
  function close(graph, state, path) {
    let changed = false;
    for (const [id, box] of Object.entries(graph.boxes)) {
      if (box.p === path && !state.closed.has(id)) { state.closed.add(id); changed = true; }
    }
    return changed;
  }

  // Open whatever hides a node: the boxes around it, outermost first, and its folded chain.
  function reveal(graph, state, id) {
    const node = index(graph).get(id);
    if (!node) return isBox(graph, id) ? revealBox(graph, state, id) : false;
    let changed = false;
    for (const box of node.c || []) if (state.closed.has(box)) changed = open(graph, state, box) || changed;
    const fold = view(graph, state).folds.get(id);
    if (fold !== undefined) { state.unfolded.add(fold); changed = true; }
    return changed;
  }

  // Open the boxes around a box.
  function revealBox(graph, state, id) {
    const holder = graph.nodes.find((n) => (n.c || []).includes(id));
    let changed = false;
    for (const box of holder ? holder.c : []) {
      if (box === id) break;
      if (state.closed.has(box)) changed = open(graph, state, box) || changed;
    }
    return changed;
  }

  return {start, view, dot, open, close, reveal, isBox};
})();
