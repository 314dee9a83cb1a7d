// Workflow graphs: dagre (from npm) lays the nodes out, we draw SVG coloured by node state.
"use strict";

(function () {
  const SY = (window.SY = window.SY || {});
  const NODE_H = 46;
  const EDGE_QUIET = new Set(["success"]);

  function targetsOf(value) {
    if (!value) return [];
    return Array.isArray(value) ? value.map(String) : [String(value)];
  }

  // Nodes and edges of a definition (as stored: {nodes: [{id, type, action, on: {...}}]}).
  SY.graphFromDefinition = function (definition) {
    const nodes = [];
    const edges = [];
    for (const node of (definition && definition.nodes) || []) {
      if (!node || typeof node !== "object" || node.id === undefined) continue;
      nodes.push({ id: String(node.id), type: node.type || (node.action ? "action" : "action"), action: node.action || null });
      const on = node.on && typeof node.on === "object" ? node.on : {};
      for (const [outcome, value] of Object.entries(on)) {
        for (const target of targetsOf(value)) edges.push({ from: String(node.id), to: target, outcome });
      }
    }
    return { nodes, edges };
  };

  function textWidth(text, size) {
    return Math.ceil(String(text).length * size * 0.62);
  }

  // render(container, {nodes, edges}, {status: {id: status}, sub: {id: text}, onClick(id), selected})
  SY.renderGraph = function (container, graph, options) {
    options = options || {};
    SY.clear(container);
    if (!window.dagre) {
      container.appendChild(SY.el("p", { class: "empty" }, "The graph library did not load (run `npm ci`)."));
      return;
    }
    if (!graph.nodes.length) {
      container.appendChild(SY.el("p", { class: "empty" }, "No nodes."));
      return;
    }
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: options.rankdir || "LR", nodesep: 22, ranksep: 56, edgesep: 12, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(() => ({}));
    const known = new Set(graph.nodes.map((n) => n.id));
    for (const node of graph.nodes) {
      const sub = (options.sub && options.sub[node.id]) || node.action || node.type || "";
      const status = options.status ? options.status[node.id] : null;
      const subText = status ? `${sub} · ${SY.statusLabel(status)}` : sub;
      const width = Math.max(120, Math.min(280, Math.max(textWidth(node.id, 12.5), textWidth(subText, 11)) + 44));
      g.setNode(node.id, { width, height: NODE_H, node, sub });
    }
    graph.edges.forEach((edge, index) => {
      if (!known.has(edge.to)) return;
      const quiet = EDGE_QUIET.has(edge.outcome);
      g.setEdge(edge.from, edge.to, { outcome: edge.outcome, width: quiet ? 0 : textWidth(edge.outcome, 10.5) + 8, height: quiet ? 0 : 14, labelpos: "c" }, `${edge.outcome}:${index}`);
    });
    dagre.layout(g);
    const size = g.graph();
    const svg = SY.el("svg", {
      class: "graph-svg",
      width: "100%",
      viewBox: `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`,
      role: "img",
      "aria-label": options.label || "Workflow graph",
    });
    const markerId = `arrow-${Math.random().toString(36).slice(2, 8)}`;
    svg.appendChild(SY.el("defs", {}, SY.el("marker", { id: markerId, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      SY.el("path", { d: "M0,0 L10,5 L0,10 z", class: "graph-arrow" }))));
    for (const e of g.edges()) {
      const edge = g.edge(e);
      const points = edge.points || [];
      if (!points.length) continue;
      let d = `M${points[0].x},${points[0].y}`;
      if (points.length > 2) {
        for (let i = 1; i < points.length - 1; i++) {
          const p = points[i];
          const q = points[i + 1];
          const mx = i === points.length - 2 ? q.x : (p.x + q.x) / 2;
          const my = i === points.length - 2 ? q.y : (p.y + q.y) / 2;
          d += ` Q${p.x},${p.y} ${mx},${my}`;
        }
      } else {
        d += ` L${points[1].x},${points[1].y}`;
      }
      const group = SY.el("g", { class: `graph-edge edge-${edge.outcome}` }, SY.el("path", { d, "marker-end": `url(#${markerId})` }));
      if (!EDGE_QUIET.has(edge.outcome) && edge.x !== undefined) {
        const w = textWidth(edge.outcome, 10.5) + 6;
        group.appendChild(SY.el("rect", { class: "label-bg", x: edge.x - w / 2, y: edge.y - 8, width: w, height: 15, rx: 3 }));
        group.appendChild(SY.el("text", { x: edge.x, y: edge.y + 3.5, "text-anchor": "middle" }, edge.outcome));
      }
      svg.appendChild(group);
    }
    for (const id of g.nodes()) {
      const layout = g.node(id);
      if (!layout || !layout.node) continue;
      const status = options.status ? options.status[id] : null;
      const x = layout.x - layout.width / 2;
      const y = layout.y - layout.height / 2;
      const clickable = !!options.onClick;
      const group = SY.el("g", {
        class: `graph-node${status ? ` has-status st-${status}` : ""}${clickable ? " clickable" : ""}`,
        transform: `translate(${x},${y})`,
        tabindex: clickable ? 0 : null,
        role: clickable ? "button" : null,
        "aria-label": `${id}${status ? `: ${SY.statusLabel(status)}` : ""}`,
        dataset: { node: id },
      });
      group.appendChild(SY.el("title", {}, `${id} (${layout.node.type}${layout.node.action ? `: ${layout.node.action}` : ""})${status ? ` — ${SY.statusLabel(status)}` : ""}`));
      group.appendChild(SY.el("rect", { width: layout.width, height: layout.height, rx: layout.node.type === "condition" ? 14 : 7 }));
      group.appendChild(SY.el("circle", { class: "status-dot", cx: 14, cy: layout.height / 2, r: 5 }));
      group.appendChild(SY.el("text", { x: 26, y: 19 }, id));
      group.appendChild(SY.el("text", { class: "sub", x: 26, y: 34 }, status ? `${layout.sub} · ${SY.statusLabel(status)}` : layout.sub));
      if (clickable) {
        group.addEventListener("click", () => options.onClick(id));
        group.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            options.onClick(id);
          }
        });
      }
      svg.appendChild(group);
    }
    // Shrinks to fit narrow containers, never grows past its natural size.
    svg.style.maxWidth = `${Math.ceil(size.width)}px`;
    container.appendChild(svg);
  };
})();
