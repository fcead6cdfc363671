// kubetune dashboard: reads the JSON API and draws it with Plotly. Read-only; no build step.
"use strict";

const COLOURS = {
  Completed: "#2ca02c", NotPromoted: "#ff7f0e", Paused: "#ff7f0e", Stopped: "#7f7f7f",
  Running: "#1f77b4", Failed: "#d62728",
};
const PLOT_CONFIG = { displaylogo: false, responsive: true };

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  return String(value);
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.error || response.statusText);
  return doc;
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "study" && parts.length === 2) return { view: "study", study: parts[1] };
  if (parts[0] === "study" && parts[2] === "trial" && parts.length === 4) {
    return { view: "trial", study: parts[1], trial: parts[3] };
  }
  return { view: "list" };
}

function studyLink(key) { return `#/study/${encodeURIComponent(key)}`; }
function trialLink(key, trial) { return `${studyLink(key)}/trial/${encodeURIComponent(trial)}`; }

function bestText(s) {
  if (!s.best_trial) return "—";
  const m = s.objectives[0].metric;
  return `${esc(s.best_trial)}: ${esc(m)}=${fmt(s.best_metrics[m])} at ${esc(s.resource_metric)}=${fmt(s.best_resource)}`;
}

async function renderList(main) {
  const rows = await getJSON("/api/studies");
  document.getElementById("crumb").textContent = "studies";
  const body = rows.map((s) => s.error
    ? `<tr><td>${esc(s.key)}</td><td class="error" colspan="6">${esc(s.error)}</td></tr>`
    : `<tr><td><a href="${studyLink(s.key)}">${esc(s.name)}</a></td>
         <td class="phase-${esc(s.phase)}">${esc(s.phase)}</td><td>${esc(s.algorithm)}</td>
         <td class="num">${s.trials}${s.max_trials ? " / " + s.max_trials : ""}</td>
         <td class="num">${s.running}</td><td>${bestText(s)}</td>
         <td class="num">${fmt(s.gpu_hours)}</td></tr>`).join("");
  main.innerHTML = `<h2>Studies</h2><table id="studies"><thead><tr><th>study</th><th>phase</th>
    <th>algorithm</th><th>trials</th><th>running</th><th>best</th><th>GPU-hours</th></tr></thead>
    <tbody>${body}</tbody></table>`;
}

function card(id, title, extra = "") {
  return `<div class="card"><h3>${esc(title)}</h3>${extra}<div id="${id}" class="chart"></div></div>`;
}

function curveTraces(doc, key) {
  const c = doc.curves;
  const traces = c.lines.map((l) => ({
    type: "scatter", mode: "lines", name: l.trial, x: l.x, y: l.y, meta: "curve",
    connectgaps: false, showlegend: false,
    line: { color: COLOURS[l.outcome] || "#444", width: l.best ? 3 : 1 },
    opacity: l.best ? 1 : 0.5, customdata: l.x.map(() => l.trial),
    hovertemplate: `%{customdata}: ${c.metric}=%{y:.4g} at ${c.xTitle}=%{x}<extra>${l.outcome}</extra>`,
  }));
  const symbols = { paused: "circle-open", stopped: "x", promoted: "triangle-up", exploited: "diamond" };
  for (const [kind, m] of Object.entries(c.marks)) {
    if (!m.x.length) continue;
    traces.push({
      type: "scatter", mode: "markers", name: kind, x: m.x, y: m.y, meta: "mark",
      customdata: m.trial, marker: { symbol: symbols[kind], size: 8, color: "#333" },
      hovertemplate: `%{customdata} ${kind} at %{x}<extra></extra>`,
    });
  }
  return traces;
}

function drawStudy(doc, key) {
  const s = doc.study;
  const layout = (title, x, y, extra = {}) => ({
    margin: { t: 10, r: 10, b: 45, l: 60 }, xaxis: { title: { text: x } },
    yaxis: { title: { text: y } }, legend: { orientation: "h" }, ...extra,
  });
  Plotly.react("curves", curveTraces(doc, key), layout("", doc.curves.xTitle, doc.curves.metric, {
    yaxis: { title: { text: doc.curves.metric }, type: doc.curves.log ? "log" : "linear" },
  }), PLOT_CONFIG);
  const rungs = Object.entries(doc.rungs.byOutcome).map(([outcome, counts]) => ({
    type: "bar", name: outcome, x: doc.rungs.levels.map((l) => `${s.resource_metric}=${l}`), y: counts, meta: "rung",
    marker: { color: COLOURS[outcome] || "#444" },
  }));
  Plotly.react("rungs", rungs, layout("", s.resource_metric, "trials that reached it", { barmode: "stack" }), PLOT_CONFIG);
  if (document.getElementById("schedules")) drawSchedule(doc);
  if (document.getElementById("lineage")) {
    const index = Object.fromEntries(doc.lineage.trials.map((t, i) => [t, i]));
    const x = [], y = [], text = [];
    for (const e of doc.lineage.edges) {
      x.push(e.resource, e.resource, null); y.push(index[e.from], index[e.to], null);
      text.push(`${e.from} → ${e.to}`, `${e.from} → ${e.to}`, null);
    }
    Plotly.react("lineage", [{
      type: "scatter", mode: "lines+markers", x, y, text, meta: "edge", hoverinfo: "text",
      line: { color: "#1f77b4" }, marker: { size: 6 },
    }], layout("", s.resource_metric, "member (donor → receiver)", {
      yaxis: { tickvals: doc.lineage.trials.map((_, i) => i), ticktext: doc.lineage.trials },
    }), PLOT_CONFIG);
  }
  if (doc.pareto) {
    const p = doc.pareto;
    Plotly.react("pareto", [
      { type: "scatter", mode: "markers", name: "final result", meta: "point",
        x: p.points.map((q) => q.x), y: p.points.map((q) => q.y), text: p.points.map((q) => q.trial),
        marker: { color: "#999" }, hovertemplate: "%{text}<extra></extra>" },
      { type: "scatter", mode: "lines+markers+text", name: "Pareto front", meta: "front",
        x: p.front.map((q) => q.x), y: p.front.map((q) => q.y), text: p.front.map((q) => q.trial),
        textposition: "top right", marker: { color: "#d62728", size: 9 }, line: { color: "#d62728" } },
    ], layout("", `${p.x.metric} (${p.x.goal})`, `${p.y.metric} (${p.y.goal})`), PLOT_CONFIG);
  }
}

function drawSchedule(doc) {
  const select = document.getElementById("param");
  const name = select.value || doc.schedules.params[0];
  const series = doc.schedules.series[name] || [];
  Plotly.react("schedules", series.map((t) => ({
    type: "scatter", mode: "lines", name: t.trial, x: t.x, y: t.y, meta: "schedule",
    line: { width: t.best ? 3 : 1, shape: "hv" }, opacity: t.best ? 1 : 0.5, showlegend: false,
  })), {
    margin: { t: 10, r: 10, b: 45, l: 60 }, xaxis: { title: { text: doc.study.resource_metric } },
    yaxis: { title: { text: name }, type: doc.schedules.log.includes(name) ? "log" : "linear" },
  }, PLOT_CONFIG);
}

async function renderStudy(main, key) {
  const doc = await getJSON(`/api/studies/${encodeURIComponent(key)}`);
  const s = doc.study;
  document.getElementById("crumb").innerHTML = `/ <a href="${studyLink(key)}">${esc(s.name)}</a>`;
  const pbt = s.algorithm === "pbt" || s.algorithm === "mopbt";
  const options = doc.schedules.params.map((p) => `<option>${esc(p)}</option>`).join("");
  const rows = doc.trials.map((t) => `<tr><td><a href="${trialLink(key, t.trial)}">${esc(t.trial)}</a></td>
    <td>${esc(t.outcome)}</td><td class="num">${t.resource}</td><td class="num">${fmt(t.final)}</td>
    <td>${esc(Object.entries(t.params).map(([k, v]) => `${k}=${fmt(v)}`).join(" "))}</td></tr>`).join("");
  if (!document.getElementById("curves") || main.dataset.study !== key) {
    main.dataset.study = key;
    main.innerHTML = `<h2>${esc(s.name)} <small class="phase-${esc(s.phase)}">${esc(s.phase)}</small></h2>
      <p id="summary"></p>
      <div class="grid">
        ${card("curves", "Learning curves (colour: outcome; marks: paused ○, stopped ×, promoted ▲, exploited ◆)")}
        ${card("rungs", "Rung occupancy")}
        ${pbt ? card("schedules", "Hyperparameter schedules", `<select id="param">${options}</select>`) : ""}
        ${pbt ? card("lineage", "PBT lineage (exploits)") : ""}
        ${doc.pareto ? card("pareto", "Pareto front") : ""}
      </div>
      <h3>Trials</h3><div class="scroll"><table id="trials"><thead><tr><th>trial</th><th>outcome</th>
      <th>${esc(s.resource_metric)}</th><th>${esc(s.objectives[0].metric)}</th><th>params</th></tr></thead>
      <tbody></tbody></table></div>`;
    const select = document.getElementById("param");
    if (select) select.addEventListener("change", () => drawSchedule(window.kubetuneDoc));
  }
  document.getElementById("summary").innerHTML = `${esc(s.algorithm)} · ${s.trials}${s.max_trials ? " / " + s.max_trials : ""} trials
    (${esc(Object.entries(s.phases).map(([k, v]) => `${k} ${v}`).join(", "))}) · best ${bestText(s)}
    · GPU-hours ${fmt(s.gpu_hours)} · ${esc(s.message)}`;
  document.querySelector("#trials tbody").innerHTML = rows;
  window.kubetuneDoc = doc;
  drawStudy(doc, key);
}

async function renderTrial(main, key, id) {
  const t = await getJSON(`/api/studies/${encodeURIComponent(key)}/trials/${encodeURIComponent(id)}`);
  document.getElementById("crumb").innerHTML =
    `/ <a href="${studyLink(key)}">${esc(key)}</a> / ${esc(t.trial_id)}`;
  const params = Object.entries(t.params).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmt(v))}</td></tr>`).join("");
  const segs = t.segments.map((s, i) => `<tr><td class="num">${i}</td><td class="num">${s.start}</td>
    <td class="num">${s.stop_at}</td><td>${esc(s.reason)}</td><td>${esc(s.restore_from)}</td>
    <td>${esc(Object.entries(s.params).map(([k, v]) => `${k}=${fmt(v)}`).join(" "))}</td></tr>`).join("");
  const events = t.events.map((e) => `<li>${esc(e)}</li>`).join("");
  main.innerHTML = `<h2>${esc(t.trial_id)} <small>${esc(t.outcome)}</small></h2>
    ${t.failure ? `<p class="error">${esc(t.failure)}</p>` : ""}
    <div class="grid"><div class="card"><h3>Params</h3><table id="params">${params}</table>
      <p>checkpoint: <code>${esc(t.checkpoint || "—")}</code></p></div>
      ${card("trial-curve", "Observed metrics")}</div>
    <h3>Segments</h3><table id="segments"><thead><tr><th>#</th><th>start</th><th>stop at</th><th>reason</th>
      <th>restored from</th><th>params</th></tr></thead><tbody>${segs}</tbody></table>
    <h3>Events</h3><ul id="events">${events}</ul>
    <h3>Log tail</h3><pre class="log" id="log">${esc(t.logTail || t.logError || "(no log: a simulated or not yet started trial)")}</pre>`;
  const steps = Object.keys(t.curve).map(Number).sort((a, b) => a - b);
  const metrics = [...new Set(steps.flatMap((s) => Object.keys(t.curve[s])))];
  Plotly.react("trial-curve", metrics.map((m) => ({
    type: "scatter", mode: "lines+markers", name: m, meta: "metric",
    x: steps.filter((s) => t.curve[s][m] !== undefined), y: steps.map((s) => t.curve[s][m]).filter((v) => v !== undefined),
  })), { margin: { t: 10, r: 10, b: 40, l: 50 }, legend: { orientation: "h" } }, PLOT_CONFIG);
}

let busy = false;
async function render() {
  if (busy) return;
  busy = true;
  const main = document.getElementById("main");
  const r = route();
  try {
    if (r.view === "study") await renderStudy(main, r.study);
    else if (r.view === "trial") await renderTrial(main, r.study, r.trial);
    else await renderList(main);
    window.kubetuneRendered = location.hash || "#/";
  } catch (err) {
    main.innerHTML = `<p class="error">${esc(err.message)}</p>`;
    window.kubetuneRendered = "error";
  } finally {
    busy = false;
  }
}

window.addEventListener("hashchange", () => { window.kubetuneRendered = null; delete document.getElementById("main").dataset.study; render(); });
setInterval(() => { if (document.getElementById("live").checked && route().view !== "trial") render(); }, 5000);
render();
