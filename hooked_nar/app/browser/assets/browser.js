// hooked-nar feature browser: plain JavaScript and SVG, no dependencies, works from file://.
// Data: window.NAR_INDEX (meta, concepts, features) and window.NAR_GRAPHS (drawings) from
// data/*.js; each feature's panel data arrives through NAR_FEATURE(...) from
// data/features/fNNNN.js, loaded by a <script> tag when the feature is opened.
"use strict";

(function () {
  const INDEX = window.NAR_INDEX;
  const GRAPHS = window.NAR_GRAPHS;
  const META = INDEX.meta;
  const SVGNS = "http://www.w3.org/2000/svg";
  const loaded = {}; // feature id -> panel data
  const waiting = {}; // feature id -> callbacks
  let sortKey = "id";
  let sortDir = 1;
  let openFeature = null;

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fmt(x, digits = 3) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
  }

  function verdictClass(v) {
    const s = String(v).toLowerCase();
    if (s === "causal") return "causal";
    if (s === "not causal") return "not-causal";
    if (s === "inconclusive") return "inconclusive";
    return "other";
  }

  function verdictSpan(v) {
    return el("span", { class: "verdict " + verdictClass(v.verdict), title: v.unit }, v.verdict);
  }

  function featureLink(f) {
    return el("a", { class: "flink", href: "#feature=" + f }, "f" + f);
  }

  // the strongest of a concept's baselines (the number its AUROC must beat)
  function strongestBaseline(concept) {
    const c = INDEX.concepts.find((x) => x.name === concept);
    return c && c.strongest_baseline !== undefined ? c.strongest_baseline : null;
  }

  // ------------------------------------------------------------------ concepts table

  function renderConcepts() {
    const head = el("tr", {}, ...["concept", "positive rate", "best feature", "AUROC",
      "baselines", "group (live, AUROC ≥ " + META.group_auroc + ", else the best)",
      "causal verdict"].map((h) => el("th", {}, h)));
    document.querySelector("#concepts thead").append(head);
    const body = document.querySelector("#concepts tbody");
    for (const c of INDEX.concepts) {
      const base = Object.entries(c.baselines || {}).map(([k, v]) => k + " " + fmt(v)).join("; ");
      const group = el("td", {});
      (c.group || []).forEach((f, i) => { if (i) group.append(" "); group.append(featureLink(f)); });
      const causal = el("td", {});
      if (c.causal && c.causal.length) c.causal.forEach((v) => causal.append(verdictSpan(v), " " + v.unit + " "));
      else causal.append(el("span", { class: "untested" }, "not tested"));
      const score = c.kind === "bool" ? fmt(c.best_auroc) : "ρ " + fmt(c.best_spearman);
      body.append(el("tr", { "data-concept": c.name },
        el("td", {}, c.name), el("td", { class: "num" }, fmt(c.positive_rate)),
        el("td", {}, featureLink(c.best_feature)), el("td", { class: "num" }, score),
        el("td", {}, c.kind === "bool" ? base || "none" : "–"), group, causal));
    }
    document.getElementById("baseline-note").textContent =
      "AUROC of the best SAE feature beside baselines on the same rows (" + META.baseline_source + "): " +
      (META.baseline_source === "results.json"
        ? "as the study reported them."
        : "the best single neuron of " + META.hook + " and random unit directions (two-sided).") +
      " In the feature index: firing = fraction of rows where the feature fires, mean act. = its mean " +
      "where it fires, baseline = the strongest baseline of its best concept." +
      " Rows: " + META.rows + " held-out (node, step) rows of " + META.graphs + " graphs.";
  }

  // ------------------------------------------------------------------ feature index

  const COLUMNS = [
    { key: "id", label: "feature", value: (f) => f.id, show: (f) => "f" + f.id },
    { key: "firing_rate", label: "firing", value: (f) => f.firing_rate, num: true },
    { key: "mean_activation", label: "mean act.", value: (f) => f.mean_activation, num: true },
    { key: "max_activation", label: "max", value: (f) => f.max_activation, num: true },
    { key: "concept", label: "best concept", value: (f) => (f.best ? f.best.concept : null),
      show: (f) => (f.best ? f.best.concept : "–") },
    { key: "auroc", label: "AUROC", num: true,
      value: (f) => (f.best ? (f.best.auroc !== undefined ? f.best.auroc : f.best.spearman) : null),
      show: (f) => (!f.best ? "–" : f.best.auroc !== undefined ? fmt(f.best.auroc) : "ρ " + fmt(f.best.spearman)) },
    { key: "baseline", label: "baseline", num: true,
      value: (f) => (f.best && f.best.auroc !== undefined ? strongestBaseline(f.best.concept) : null) },
    { key: "causal", label: "causal", value: (f) => (f.causal.length ? f.causal[0].verdict : "~") },
    { key: "groups", label: "groups", value: (f) => f.groups.join(" "), show: (f) => f.groups.join(", ") },
    { key: "flags", label: "flags", value: (f) => (f.dead ? "dead" : f.dense ? "dense" : "") },
  ];

  function cell(col, f) {
    if (col.key === "causal") {
      const td = el("td", {});
      if (f.causal.length) f.causal.forEach((v) => td.append(verdictSpan(v), " "));
      else td.append(el("span", { class: "untested" }, "not tested"));
      return td;
    }
    if (col.key === "flags") {
      const td = el("td", {});
      if (f.dead) td.append(el("span", { class: "flag dead" }, "dead"));
      if (f.dense) td.append(el("span", { class: "flag dense" }, "dense"));
      return td;
    }
    const v = col.value(f);
    const text = col.show ? col.show(f) : col.num ? fmt(v) : v === null ? "–" : v;
    return el("td", { class: col.num ? "num" : "", "data-key": col.key }, text);
  }

  function searchText(f) {
    const verdicts = f.causal.map((v) => v.verdict + " " + v.concept).join(" ") || "not tested";
    return ["f" + f.id, f.best ? f.best.concept : "", f.groups.join(" "), verdicts,
      f.dead ? "dead" : "", f.dense ? "dense" : ""].join(" ").toLowerCase();
  }

  function renderIndexHead() {
    const tr = el("tr", {});
    for (const col of COLUMNS) {
      const th = el("th", { "data-key": col.key, onclick: () => sortBy(col.key) }, col.label);
      if (col.key === sortKey) th.className = sortDir > 0 ? "sorted-asc" : "sorted-desc";
      tr.append(th);
    }
    const thead = document.querySelector("#features thead");
    thead.replaceChildren(tr);
  }

  function renderIndexBody() {
    const col = COLUMNS.find((c) => c.key === sortKey);
    const rows = INDEX.features.slice().sort((a, b) => {
      const x = col.value(a), y = col.value(b);
      if (x === y) return a.id - b.id;
      if (x === null || x === undefined) return 1; // missing values last
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
    const q = document.getElementById("search").value.trim().toLowerCase();
    const body = document.querySelector("#features tbody");
    body.replaceChildren();
    let shown = 0;
    for (const f of rows) {
      if (q && !searchText(f).includes(q)) continue;
      shown++;
      const tr = el("tr", { "data-feature": f.id, onclick: () => { location.hash = "feature=" + f.id; } },
        ...COLUMNS.map((c) => cell(c, f)));
      if (f.id === openFeature) tr.classList.add("selected");
      body.append(tr);
    }
    document.getElementById("shown").textContent = shown + " of " + INDEX.features.length + " features";
  }

  function sortBy(key) {
    if (sortKey === key) sortDir = -sortDir;
    else { sortKey = key; sortDir = key === "id" || key === "concept" ? 1 : -1; }
    renderIndexHead();
    renderIndexBody();
  }

  // ------------------------------------------------------------------ feature data

  window.NAR_FEATURE = function (d) {
    loaded[d.id] = d;
    (waiting[d.id] || []).forEach((cb) => cb(d));
    delete waiting[d.id];
  };

  function withFeature(f, cb) {
    if (loaded[f]) return cb(loaded[f]);
    if (waiting[f]) { waiting[f].push(cb); return; }
    waiting[f] = [cb];
    const s = document.createElement("script");
    s.src = "data/features/f" + String(f).padStart(4, "0") + ".js";
    s.onerror = () => {
      delete waiting[f];
      document.getElementById("feature-pane").replaceChildren(
        el("p", { class: "note" }, "Feature " + f + ": no data file " + s.src));
    };
    document.head.append(s);
  }

  // ------------------------------------------------------------------ charts

  function histogram(h) {
    const W = 300, H = 120, pad = 28;
    const s = svg("svg", { width: W, height: H + 30, class: "histogram" });
    if (!h.counts.length) {
      s.append(svg("text", { x: 10, y: 20 }, "never fires on the held-out rows"));
      return s;
    }
    const maxc = Math.max(...h.counts, 1);
    const bw = (W - pad - 6) / h.counts.length;
    h.counts.forEach((c, i) => {
      const bh = (c / maxc) * H;
      const r = svg("rect", { class: "bar", x: pad + i * bw, y: H - bh + 4, width: Math.max(bw - 1, 1), height: bh });
      r.append(svg("title", {}, fmt(h.edges[i]) + "–" + fmt(h.edges[i + 1]) + ": " + c + " rows"));
      s.append(r);
    });
    s.append(svg("line", { class: "axis", x1: pad, x2: W - 6, y1: H + 4, y2: H + 4 }));
    s.append(svg("text", { x: pad, y: H + 18 }, "0"));
    s.append(svg("text", { x: W - 40, y: H + 18 }, fmt(h.edges[h.edges.length - 1], 2)));
    s.append(svg("text", { x: 0, y: 12 }, maxc));
    s.append(svg("text", { x: pad, y: H + 30 }, "activation where it fires (" + h.zeros + " rows at 0)"));
    return s;
  }

  // horizontal bars in [lo, hi] with a reference line at ref and optional baseline ticks
  function barChart(items, lo, hi, ref, cls) {
    const W = 340, rowH = 18, left = 150;
    const s = svg("svg", { width: W, height: items.length * rowH + 20, class: cls });
    const x = (v) => left + ((v - lo) / (hi - lo)) * (W - left - 40);
    items.forEach((it, i) => {
      const y = i * rowH + 4;
      s.append(svg("text", { x: 0, y: y + 12 }, it.label));
      if (it.value !== null && it.value !== undefined) {
        const a = x(Math.min(ref, it.value)), b = x(Math.max(ref, it.value));
        const r = svg("rect", { class: "bar" + (it.value < ref ? " neg" : ""), x: a, y: y + 2,
          width: Math.max(b - a, 1), height: rowH - 6, "data-row": it.label });
        r.append(svg("title", {}, it.label + ": " + fmt(it.value)));
        s.append(r);
        s.append(svg("text", { x: x(hi) + 4, y: y + 12 }, fmt(it.value)));
      } else {
        s.append(svg("text", { x: left, y: y + 12 }, "not defined on these rows"));
      }
      if (it.tick !== null && it.tick !== undefined) {
        const t = svg("line", { class: "tick", x1: x(it.tick), x2: x(it.tick), y1: y, y2: y + rowH - 2 });
        t.append(svg("title", {}, it.tickLabel + ": " + fmt(it.tick)));
        s.append(t);
      }
    });
    const yb = items.length * rowH + 6;
    s.append(svg("line", { class: "ref", x1: x(ref), x2: x(ref), y1: 0, y2: yb }));
    s.append(svg("text", { x: x(lo) - 4, y: yb + 12 }, lo));
    s.append(svg("text", { x: x(hi) - 4, y: yb + 12 }, hi));
    return s;
  }

  function decoderTable(d) {
    const t = el("table", { class: "grid decoder" },
      el("thead", {}, el("tr", {}, ...["head", "per unit act.", "at max act.", "95th pct. |at max| over live features"]
        .map((h) => el("th", {}, h)))));
    const body = el("tbody", {});
    const p95 = {};
    for (const h of META.decoder_heads) h.rows.forEach((r, k) => { p95[r] = h.p95[k]; });
    for (const r of d.decoder) {
      const strong = Math.abs(r.at_max) > p95[r.row];
      body.append(el("tr", { "data-row": r.row },
        el("td", {}, r.row + (strong ? " ▲" : "")),
        el("td", { class: "num" }, fmt(r.per_unit)),
        el("td", { class: "num" }, fmt(r.at_max)),
        el("td", { class: "num" }, fmt(p95[r.row]))));
    }
    t.append(body);
    return t;
  }

  // ------------------------------------------------------------------ graphs at a step

  const HOT = [217, 72, 1]; // activation colour at the feature's largest value

  function heat(v, vmax) {
    const t = vmax > 0 ? Math.max(0, Math.min(1, v / vmax)) : 0;
    const c = HOT.map((h) => Math.round(255 + (h - 255) * t));
    return "rgb(" + c.join(",") + ")";
  }

  function drawGraph(g, fill, highlight, labelOf) {
    const W = 200, pad = 14;
    const H = Math.max(80, 2 * pad + Math.max(...g.pos.map((p) => p[1])) * (W - 2 * pad));
    const s = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H });
    const P = g.pos.map(([x, y]) => [pad + x * (W - 2 * pad), pad + y * (W - 2 * pad)]);
    for (const [u, v] of g.edges) {
      s.append(svg("line", { class: "edge", x1: P[u][0], y1: P[u][1], x2: P[v][0], y2: P[v][1] }));
    }
    const r = g.n > 24 ? 5 : 8;
    const nodes = [];
    for (let i = 0; i < g.n; i++) {
      const shape = i === g.source
        ? svg("rect", { x: P[i][0] - r, y: P[i][1] - r, width: 2 * r, height: 2 * r })
        : svg("circle", { cx: P[i][0], cy: P[i][1], r: r });
      shape.setAttribute("class", "node" + (i === highlight ? " hl" : ""));
      shape.setAttribute("data-node", i);
      shape.setAttribute("fill", fill(i));
      const title = svg("title", {}, labelOf(i));
      shape.append(title);
      s.append(shape);
      nodes.push(shape);
    }
    return { svg: s, nodes };
  }

  function exampleCard(d, ex, rank, conceptSel) {
    const g = GRAPHS[ex.graph];
    const acts = d.acts[ex.graph];
    const f = INDEX.features[d.id];
    const vmax = f.max_activation || 0;
    const studyIdx = g.study_index === null ? "" : " (study graph " + g.study_index + ")";
    const card = el("div", { class: "example", "data-kind": ex.kind, "data-graph": ex.graph,
      "data-node": ex.node, "data-step": ex.step });
    card.append(el("div", { class: "head" }, ex.kind + " #" + rank + ": graph " + ex.graph + studyIdx +
      ", node " + ex.node + ", step " + ex.step + ", activation " + fmt(acts[ex.step][ex.node])));
    const figs = el("div", { class: "graphs" });
    const readout = el("div", { class: "readout" });
    const slider = el("input", { type: "range", min: 0, max: g.steps - 1, value: ex.step, step: 1,
      "aria-label": "processor step" });
    const stepLabel = el("span", { class: "step-label" });
    let actGraph = null, truthGraph = null;

    function concept() { return conceptSel.value; }

    function truthAt(t, i) {
      const tr = g.truth[concept()];
      return tr ? tr[t][i] === "1" : null;
    }

    function render() {
      const t = Number(slider.value);
      const c = concept();
      card.setAttribute("data-step", t);
      actGraph = drawGraph(g, (i) => heat(acts[t][i], vmax), ex.node,
        (i) => "node " + i + ": activation " + fmt(acts[t][i]));
      actGraph.nodes.forEach((n, i) => n.setAttribute("data-act", acts[t][i]));
      truthGraph = drawGraph(g, (i) => (truthAt(t, i) ? "#24292f" : "#ffffff"), ex.node,
        (i) => "node " + i + ": " + c + " " + truthAt(t, i));
      figs.replaceChildren(
        el("figure", {}, actGraph.svg, el("figcaption", {}, "feature " + d.id + " activation")),
        el("figure", {}, truthGraph.svg, el("figcaption", {}, c + " (black: true)")));
      stepLabel.textContent = "step " + t + " of " + (g.steps - 1) + " (computes hint " + (t + 1) + ")";
      const truth = truthAt(t, ex.node);
      readout.replaceChildren(
        "node " + ex.node + " at step " + t + ": activation ",
        el("b", { class: "act-value" }, fmt(acts[t][ex.node])),
        "; " + c + " ", el("b", { class: "truth-value" }, truth === null ? "–" : String(truth)));
    }

    let timer = null;
    const play = el("button", { type: "button", onclick: () => {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
      play.textContent = "pause";
      slider.value = 0; render();
      timer = setInterval(() => {
        if (Number(slider.value) >= g.steps - 1) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
        slider.value = Number(slider.value) + 1; render();
      }, 700);
    } }, "play");
    slider.addEventListener("input", render);
    conceptSel.addEventListener("change", render);
    card.append(figs, el("div", { class: "controls" }, play, slider, stepLabel), readout);
    render();
    return card;
  }

  // ------------------------------------------------------------------ feature panel

  function renderFeature(d) {
    const f = INDEX.features[d.id];
    const pane = document.getElementById("feature-pane");
    const flags = [f.dead ? "dead" : null, f.dense ? "dense (fires on > " + META.dense_threshold + " of rows)" : null]
      .filter(Boolean).join(", ");
    const causal = el("span", {});
    if (f.causal.length) f.causal.forEach((v) => causal.append(verdictSpan(v), " (" + v.concept + ", " + v.unit + ") "));
    else causal.append(el("span", { class: "untested" }, "not tested"));
    const best = f.best ? f.best.concept + (f.best.auroc !== undefined ? " (AUROC " + fmt(f.best.auroc) + ")"
      : " (Spearman " + fmt(f.best.spearman) + ")") : "–";
    const stats = el("p", { id: "feature-stats" },
      "firing rate ", el("b", { "data-stat": "firing_rate" }, fmt(f.firing_rate)),
      " · mean activation where firing ", el("b", { "data-stat": "mean_activation" }, fmt(f.mean_activation)),
      " · max ", el("b", { "data-stat": "max_activation" }, fmt(f.max_activation)),
      " · best concept ", el("b", { "data-stat": "best" }, best),
      " · groups: " + (f.groups.join(", ") || "none"),
      flags ? " · " + flags : "", " · causal: ", causal);

    const boolConcepts = INDEX.concepts.filter((c) => c.kind === "bool");
    const aurocItems = boolConcepts.map((c) => ({ label: c.name, value: d.auroc[c.name],
      tick: strongestBaseline(c.name), tickLabel: "strongest baseline" }));
    const rhoItems = Object.entries(d.spearman).map(([c, v]) => ({ label: c, value: v, tick: null }));

    const conceptSel = el("select", { id: "truth-concept", "aria-label": "concept shown beside" },
      ...boolConcepts.map((c) => el("option", { value: c.name }, c.name)));
    if (f.best && boolConcepts.some((c) => c.name === f.best.concept)) conceptSel.value = f.best.concept;

    const top = el("div", { class: "examples", id: "top-examples" });
    const rnd = el("div", { class: "examples", id: "random-examples" });
    let nt = 0, nr = 0;
    for (const ex of d.examples) {
      if (ex.kind === "top") top.append(exampleCard(d, ex, ++nt, conceptSel));
      else rnd.append(exampleCard(d, ex, ++nr, conceptSel));
    }
    const charts = el("div", { class: "panel-row" },
      el("div", {}, el("h3", {}, "Activation histogram"), histogram(d.histogram)),
      el("div", {}, el("h3", {}, "Concept AUROC (tick: strongest baseline, dashed: 0.5)"),
        barChart(aurocItems, 0, 1, 0.5, "auroc-bars"),
        rhoItems.length ? el("h3", {}, "Spearman with scalar concepts") : null,
        rhoItems.length ? barChart(rhoItems, -1, 1, 0, "spearman-bars") : null),
      el("div", {}, el("h3", {}, "Decoder direction through the hint heads (logit change)"),
        META.decoder_heads.length ? decoderTable(d) : el("p", { class: "note" }, "no linear node head"),
        el("p", { class: "note" }, "▲: beyond the 95th percentile of live features. " + META.decoder_note)));
    pane.replaceChildren(
      el("h2", { id: "feature-title" }, "Feature " + d.id),
      stats, charts,
      el("h3", {}, "Examples: the graph at each processor step, nodes coloured by activation ",
        "(white 0 → orange " + fmt(f.max_activation) + "), example node ringed in blue, ",
        "square: source; truth of ", conceptSel),
      el("h3", {}, "Top activations"), nt ? top : el("p", { class: "note" }, "none"),
      el("h3", {}, "Random activations (among rows where it fires)"), nr ? rnd : el("p", { class: "note" }, "none"));
  }

  function route() {
    const m = /feature=(\d+)/.exec(location.hash);
    if (!m) return;
    const f = Number(m[1]);
    if (!(f >= 0 && f < INDEX.features.length)) return;
    openFeature = f;
    document.querySelectorAll("#features tbody tr").forEach((tr) =>
      tr.classList.toggle("selected", Number(tr.dataset.feature) === f));
    withFeature(f, renderFeature);
  }

  // ------------------------------------------------------------------ start

  document.getElementById("title").textContent =
    "hooked-nar feature browser: " + META.algorithm + ", " + META.d_sae + " features";
  document.getElementById("meta").textContent = (META.sae_config || "SAE") + " at " + META.hook +
    "; " + META.rows + " held-out (node, step) rows of " + META.graphs + " graphs; model " + META.model;
  renderConcepts();
  renderIndexHead();
  renderIndexBody();
  document.getElementById("search").addEventListener("input", renderIndexBody);
  window.addEventListener("hashchange", route);
  route();
})();
