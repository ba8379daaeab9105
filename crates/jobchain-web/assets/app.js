// jobchain dashboard. Every string from the store is put into the page as text
// (textContent, attributes), never as markup: payloads, errors and kinds are hostile.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const main = document.getElementById("main");
const statusLine = document.getElementById("status");
let refreshTimer = null;
let generation = 0;

// ---- DOM helpers ------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function badge(state) {
  return h("span", { class: "badge " + state, "data-state": state }, state);
}

function table(headers, rows, attrs) {
  return h("div", { class: "scroll" },
    h("table", attrs || {},
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
      h("tbody", {}, rows)));
}

function ago(iso) {
  if (!iso) return "-";
  const secs = (Date.now() - Date.parse(iso)) / 1000;
  return duration(Math.max(0, secs)) + " ago";
}

function duration(secs) {
  if (secs === null || secs === undefined) return "-";
  if (secs < 1) return Math.round(secs * 1000) + "ms";
  if (secs < 60) return secs.toFixed(1) + "s";
  if (secs < 3600) return Math.floor(secs / 60) + "m" + Math.floor(secs % 60) + "s";
  if (secs < 86400) return Math.floor(secs / 3600) + "h" + Math.floor((secs % 3600) / 60) + "m";
  return Math.floor(secs / 86400) + "d" + Math.floor((secs % 86400) / 3600) + "h";
}

function time(iso) {
  return iso ? new Date(iso).toLocaleString() : "-";
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function short(text, n) {
  text = String(text);
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

// ---- API ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title);
    this.status = status;
    this.title = title;
  }
}

async function api(path, options) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem("jobchain-token");
  if (token) headers.Authorization = "Bearer " + token;
  const init = { method: "GET", headers };
  if (options && options.body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(API + path, init);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    throw new ApiError(response.status, body && body.title || response.statusText,
      body && body.detail || text);
  }
  return body;
}

function post(path, body) {
  return api(path, { body: body === undefined ? {} : body });
}

function setStatus(text, error) {
  statusLine.textContent = text;
  statusLine.className = "status" + (error ? " error" : "");
}

// ---- routing ----------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}

function go(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
  const hash = "#" + path + (q.toString() ? "?" + q : "");
  if (location.hash === hash) route(); else location.hash = hash;
}

const views = {
  overview: { nav: "overview", mount: mountOverview },
  jobs: { nav: "jobs", mount: mountJobs },
  job: { nav: "jobs", mount: mountJob },
  workflows: { nav: "workflows", mount: mountWorkflows },
  workflow: { nav: "workflows", mount: mountWorkflow },
  dlq: { nav: "dlq", mount: mountDlq },
};

function route() {
  generation += 1;
  clearTimeout(refreshTimer);
  const { parts, params } = parseHash();
  let view = views.overview;
  let arg = null;
  if (parts[0] === "jobs" && parts[1]) { view = views.job; arg = parts[1]; }
  else if (parts[0] === "jobs") view = views.jobs;
  else if (parts[0] === "workflows" && parts[1]) { view = views.workflow; arg = parts[1]; }
  else if (parts[0] === "workflows") view = views.workflows;
  else if (parts[0] === "dlq") view = views.dlq;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.nav === view.nav);
  }
  main.replaceChildren();
  const refresh = view.mount(main, params, arg);
  schedule(refresh, generation);
}

// Refreshes the data part of a view in place (filters and selections stay) until the
// route changes.
async function schedule(refresh, gen) {
  if (gen !== generation) return;
  try {
    await refresh();
    setStatus("updated " + new Date().toLocaleTimeString());
  } catch (e) {
    if (gen !== generation) return;
    if (e.status === 401 || e.status === 403 && /token/i.test(e.title)) askToken(e);
    else setStatus(e.message, true);
  }
  if (gen === generation) refreshTimer = setTimeout(() => schedule(refresh, gen), REFRESH_MS);
}

function askToken(e) {
  generation += 1;
  const input = h("input", { type: "password", name: "token", autocomplete: "off", placeholder: "token" });
  main.replaceChildren(
    h("h1", {}, "Token required"),
    h("p", {}, e.message),
    h("form", { class: "filters", onsubmit: (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("jobchain-token", input.value.trim());
      route();
    } }, h("label", {}, "Bearer token", input), h("button", { type: "submit" }, "Use token")));
}

async function act(button, what, fn) {
  button.disabled = true;
  try {
    await fn();
    setStatus(what + ": done");
  } catch (e) {
    setStatus(what + " failed: " + e.message, true);
    alertBox(what + " failed: " + e.message);
  } finally {
    button.disabled = false;
  }
}

function alertBox(text) {
  const box = h("div", { class: "notice", role: "alert" }, text);
  main.prepend(box);
  setTimeout(() => box.remove(), 8000);
}

// ---- overview ---------------------------------------------------------------------

const STATES = ["blocked", "pending", "running", "completed", "dead", "cancelled", "skipped"];

function mountOverview(root) {
  const cards = h("div", { class: "cards", id: "totals" });
  const chart = h("div", { id: "throughput" });
  const queues = h("div", { id: "queues" });
  const unhandled = h("div", { id: "unhandled" });
  const workers = h("div", { id: "workers" });
  root.append(h("h1", {}, "Overview"), cards,
    h("h2", {}, "Throughput, last hour (jobs ended per minute)"), chart,
    h("h2", {}, "Queues"), queues, unhandled,
    h("h2", {}, "Live workers"), workers);
  return async () => {
    const [stats, live] = await Promise.all([api("/stats"), api("/workers")]);
    cards.replaceChildren(...STATES.map((st) =>
      h("a", { class: "card", href: "#/jobs?state=" + st, "data-count": st },
        h("div", { class: "n" }, String(stats.totals[st])), h("div", { class: "l" }, st))),
      h("div", { class: "card" }, h("div", { class: "n" }, String(stats.workers)),
        h("div", { class: "l" }, "live workers")));
    chart.replaceChildren(throughputChart(stats.throughput));
    queues.replaceChildren(stats.queues.length === 0 ? h("p", { class: "muted" }, "No jobs yet.") :
      table(["Queue", "", ...STATES, "Oldest pending"], stats.queues.map((q) => {
        const toggle = h("button", { type: "button", class: "secondary pause", "data-queue": q.queue },
          q.paused ? "Resume" : "Pause");
        toggle.addEventListener("click", () => act(toggle, q.paused ? "resume" : "pause",
          () => post(`/queues/${encodeURIComponent(q.queue)}/${q.paused ? "resume" : "pause"}`)));
        return h("tr", { "data-queue": q.queue, "data-paused": q.paused },
          h("td", {}, h("a", { href: "#/jobs?queue=" + encodeURIComponent(q.queue) }, q.queue),
            q.paused ? [" ", h("span", { class: "badge paused" }, "paused")] : null),
          h("td", {}, toggle),
          STATES.map((st) => h("td", {}, String(q.counts[st]))),
          h("td", {}, duration(q.oldest_pending_seconds)));
      })));
    unhandled.replaceChildren(...stats.unhandled.map((u) => h("div", { class: "notice" },
      `${u.count} pending "${u.kind}" job(s) on queue "${u.queue}", oldest ${duration(u.oldest_seconds)}: `,
      u.handled_on.length ? "handled only on queue(s) " + u.handled_on.join(", ") : "no live worker handles this kind")));
    workers.replaceChildren(live.workers.length === 0 ? h("p", { class: "muted" }, "No live workers.") :
      table(["Id", "Host", "Pid", "Queues", "Kinds", "Started", "Last seen"], live.workers.map((w) =>
        h("tr", {}, h("td", {}, w.id), h("td", {}, w.host), h("td", {}, String(w.pid)),
          h("td", { class: "wrap" }, w.queues.join(", ")), h("td", { class: "wrap" }, w.kinds.join(", ")),
          h("td", {}, ago(w.started_at)), h("td", {}, ago(w.last_seen))))));
  };
}

function throughputChart(minutes) {
  const W = 720, H = 140, pad = 24;
  const now = Math.floor(Date.now() / 60000);
  const byMinute = new Map(minutes.map((m) => [Math.floor(Date.parse(m.minute) / 60000), m]));
  let max = 1;
  for (const m of minutes) max = Math.max(max, m.completed + m.dead);
  const bw = (W - pad) / 60;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": "jobs ended per minute over the last hour" });
  svg.append(s("line", { class: "axis", x1: pad, y1: H - 14, x2: W, y2: H - 14 }));
  svg.append(s("text", { x: 0, y: 10 }, String(max)));
  svg.append(s("text", { x: pad, y: H - 2 }, "-60m"));
  svg.append(s("text", { x: W - 24, y: H - 2 }, "now"));
  const scale = (H - 28) / max;
  for (let i = 0; i < 60; i++) {
    const m = byMinute.get(now - 59 + i);
    if (!m) continue;
    const x = pad + i * bw;
    const hc = m.completed * scale, hd = m.dead * scale;
    const g = s("g", { "data-minute": m.minute },
      s("title", {}, `${time(m.minute)}: ${m.completed} completed, ${m.dead} dead`));
    g.append(s("rect", { class: "c", x, y: H - 14 - hc, width: Math.max(1, bw - 1), height: hc }));
    if (hd > 0) g.append(s("rect", { class: "d", x, y: H - 14 - hc - hd, width: Math.max(1, bw - 1), height: hd }));
    svg.append(g);
  }
  return svg;
}

// ---- job lists ----------------------------------------------------------------------

function filterForm(fields, params, path) {
  const inputs = {};
  const form = h("form", { class: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    const values = {};
    for (const [k, el] of Object.entries(inputs)) values[k] = el.value.trim();
    go(path, values);
  } });
  for (const f of fields) {
    let el;
    if (f.options) {
      el = h("select", { name: f.name }, h("option", { value: "" }, "any"),
        f.options.map((o) => h("option", { value: o }, o)));
    } else {
      el = h("input", { name: f.name, placeholder: f.placeholder || "", size: 14 });
    }
    el.value = params.get(f.name) || "";
    if (f.options) el.addEventListener("change", () => form.requestSubmit());
    inputs[f.name] = el;
    form.append(h("label", {}, f.label, el));
  }
  form.append(h("button", { type: "submit" }, "Filter"));
  return form;
}

function jobRow(j, extra) {
  return h("tr", { "data-job-id": j.id },
    extra || null,
    h("td", {}, h("a", { href: "#/jobs/" + j.id }, "#" + j.id)),
    h("td", { class: "wrap" }, j.kind),
    h("td", {}, j.queue),
    h("td", {}, badge(j.state)),
    h("td", {}, `${j.attempts}/${j.max_attempts}`),
    h("td", {}, j.workflow_id ? h("a", { href: "#/workflows/" + j.workflow_id }, j.step || j.workflow_id.slice(0, 8)) : "-"),
    h("td", {}, ago(j.created_at)),
    h("td", { class: "wrap" }, j.errors.length ? short(j.errors[j.errors.length - 1].message, 120) : ""));
}

const JOB_HEADERS = ["Id", "Kind", "Queue", "State", "Attempts", "Workflow", "Created", "Last error"];

// A list that refreshes its first page and keeps pages loaded with "More".
function pagedList(root, load, render) {
  const body = h("div", {});
  const more = h("button", { class: "secondary more", type: "button" }, "More");
  let cursor = null, extra = [], first = [];
  more.addEventListener("click", () => act(more, "loading more", async () => {
    const page = await load(cursor);
    extra = extra.concat(page.items);
    cursor = page.next;
    draw();
  }));
  function draw() {
    body.replaceChildren(render(first.concat(extra)));
    more.hidden = !cursor;
  }
  root.append(body, more);
  return async () => {
    const page = await load(null);
    first = page.items;
    if (extra.length === 0) cursor = page.next;
    draw();
  };
}

function mountJobs(root, params) {
  root.append(h("h1", {}, "Jobs"), filterForm([
    { name: "state", label: "State", options: STATES },
    { name: "kind", label: "Kind" },
    { name: "queue", label: "Queue" },
    { name: "workflow", label: "Workflow id" },
  ], params, "/jobs"));
  return pagedList(root, async (cursor) => {
    const q = new URLSearchParams();
    for (const k of ["state", "kind", "queue", "workflow"]) if (params.get(k)) q.set(k, params.get(k));
    if (cursor) q.set("cursor", cursor);
    const page = await api("/jobs?" + q);
    return { items: page.jobs, next: page.next_cursor };
  }, (jobs) => jobs.length === 0 ? h("p", { class: "muted" }, "No jobs match.") :
    table(JOB_HEADERS, jobs.map((j) => jobRow(j)), { id: "jobs-table" }));
}

// ---- one job ------------------------------------------------------------------------

function mountJob(root, _params, id) {
  const body = h("div", {});
  root.append(body);
  return async () => {
    const j = await api("/jobs/" + encodeURIComponent(id));
    const actions = h("div", { class: "actions" });
    if (j.state === "dead") {
      const b = h("button", { type: "button", id: "retry-job" }, "Retry");
      b.addEventListener("click", () => act(b, "retry", () => post(`/jobs/${j.id}/retry`)));
      actions.append(b);
    }
    if (["blocked", "pending", "running", "dead"].includes(j.state)) {
      const b = h("button", { type: "button", class: "danger", id: "cancel-job" }, j.state === "dead" ? "Discard" : "Cancel");
      b.addEventListener("click", () => act(b, "cancel", () => post(`/jobs/${j.id}/cancel`)));
      actions.append(b);
    }
    const ran = j.started_at && j.finished_at ? (Date.parse(j.finished_at) - Date.parse(j.started_at)) / 1000 : null;
    body.replaceChildren(
      h("h1", {}, `Job #${j.id} `, h("span", { class: "kind" }, j.kind), " ", badge(j.state)),
      actions,
      h("dl", {},
        h("dt", {}, "Queue"), h("dd", {}, j.queue),
        h("dt", {}, "Priority"), h("dd", {}, String(j.priority)),
        h("dt", {}, "Attempts"), h("dd", {}, `${j.attempts} of ${j.max_attempts}`),
        h("dt", {}, "Workflow"), h("dd", {}, j.workflow_id ?
          h("a", { href: "#/workflows/" + j.workflow_id }, (j.step ? j.step + " in " : "") + j.workflow_id) : "-"),
        h("dt", {}, "Parent"), h("dd", {}, j.parent_id ? h("a", { href: "#/jobs/" + j.parent_id }, "#" + j.parent_id) : "-"),
        h("dt", {}, "Unique key"), h("dd", {}, j.unique_key || "-"),
        h("dt", {}, "Created"), h("dd", {}, time(j.created_at)),
        h("dt", {}, "Run at"), h("dd", {}, time(j.run_at)),
        h("dt", {}, "Started"), h("dd", {}, time(j.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, time(j.finished_at)),
        h("dt", {}, "Last attempt ran"), h("dd", {}, ran === null ? "-" : duration(ran)),
        h("dt", {}, "Worker"), h("dd", {}, j.worker || "-"),
        j.cancel_reason ? [h("dt", {}, "Cancelled"), h("dd", {}, j.cancel_reason)] : null),
      h("h2", {}, "Payload"), h("pre", { id: "payload" }, json(j.payload)),
      h("h2", {}, "Output"), j.output === null ? h("p", { class: "muted" }, "none") : h("pre", { id: "output" }, json(j.output)),
      h("h2", {}, "Errors"), j.errors.length === 0 ? h("p", { class: "muted" }, "none") :
        table(["Attempt", "At", "Message"], j.errors.map((e) =>
          h("tr", {}, h("td", {}, String(e.attempt)), h("td", {}, time(e.at)), h("td", { class: "wrap error-text" }, e.message)))));
  };
}

// ---- workflows --------------------------------------------------------------------

function mountWorkflows(root, params) {
  root.append(h("h1", {}, "Workflows"), filterForm([
    { name: "state", label: "State", options: ["running", "completed", "failed", "cancelled"] },
    { name: "name", label: "Name" },
  ], params, "/workflows"));
  return pagedList(root, async (cursor) => {
    const q = new URLSearchParams();
    for (const k of ["state", "name"]) if (params.get(k)) q.set(k, params.get(k));
    if (cursor) q.set("cursor", cursor);
    const page = await api("/workflows?" + q);
    return { items: page.workflows, next: page.next_cursor };
  }, (list) => list.length === 0 ? h("p", { class: "muted" }, "No workflows match.") :
    table(["Id", "Name", "State", "Jobs", "Completed", "Dead", "Started", "Finished"], list.map((w) =>
      h("tr", { "data-workflow-id": w.id },
        h("td", {}, h("a", { href: "#/workflows/" + w.id }, w.id.slice(0, 8) + "…")),
        h("td", { class: "wrap" }, w.name), h("td", {}, badge(w.state)),
        h("td", {}, String(STATES.reduce((n, st) => n + w.counts[st], 0))),
        h("td", {}, String(w.counts.completed)), h("td", {}, String(w.counts.dead)),
        h("td", {}, ago(w.created_at)), h("td", {}, w.finished_at ? ago(w.finished_at) : "-"))),
    { id: "workflows-table" }));
}

function mountWorkflow(root, _params, id) {
  const head = h("div", {});
  const graphBox = h("div", { class: "graph-box", id: "graph" });
  const jobs = h("div", {});
  root.append(head, h("h2", {}, "Graph"),
    h("div", { class: "legend" }, "solid: required · dashed: optional · dotted: enqueued by a handler · grey: not run yet · hover a step for details"),
    graphBox, h("h2", {}, "Jobs"), jobs);
  return async () => {
    const d = await api("/workflows/" + encodeURIComponent(id));
    const w = d.workflow;
    const actions = h("div", { class: "actions" });
    if (w.state === "running") {
      const b = h("button", { type: "button", class: "danger", id: "cancel-workflow" }, "Cancel workflow");
      b.addEventListener("click", () => act(b, "cancel workflow", () => post(`/workflows/${w.id}/cancel`)));
      actions.append(b);
    }
    head.replaceChildren(
      h("h1", {}, `Workflow ${w.name} `, h("span", { id: "workflow-state" }, badge(w.state))),
      h("p", { class: "muted" }, `${w.id} · started ${time(w.created_at)}` +
        (w.finished_at ? ` · finished ${time(w.finished_at)}` : "") +
        (w.tolerated_failures ? ` · ${w.tolerated_failures} tolerated failure(s)` : "")),
      actions);
    graphBox.replaceChildren(drawGraph(d.jobs, d.edges));
    jobs.replaceChildren(table(["Id", "Step", "Kind", "State", "Attempts", "Last error"], d.jobs.map((j) =>
      h("tr", { "data-job-id": j.id },
        h("td", {}, h("a", { href: "#/jobs/" + j.id }, "#" + j.id)),
        h("td", {}, j.step || "-"), h("td", { class: "wrap" }, j.kind), h("td", {}, badge(j.state)),
        h("td", {}, `${j.attempts}/${j.max_attempts}`),
        h("td", { class: "wrap" }, j.errors.length ? short(j.errors[j.errors.length - 1].message, 120) : "")))));
  };
}

// Layered left to right: a step's column is one past its furthest dependency (declared
// edges, or the job that enqueued it); within a column steps follow their dependencies'
// rows, so dynamic children sit beside their parent.
function drawGraph(jobs, edges) {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const preds = new Map(jobs.map((j) => [j.id, []]));
  const links = [];
  for (const e of edges) {
    if (!byId.has(e.job) || !byId.has(e.depends_on)) continue;
    preds.get(e.job).push(e.depends_on);
    links.push({ from: e.depends_on, to: e.job, kind: e.policy });
  }
  for (const j of jobs) {
    if (preds.get(j.id).length === 0 && j.parent_id && byId.has(j.parent_id)) {
      preds.get(j.id).push(j.parent_id);
      links.push({ from: j.parent_id, to: j.id, kind: "spawned" });
    }
  }
  const layer = new Map();
  const visiting = new Set();
  function depth(id) {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0;
    visiting.add(id);
    let d = 0;
    for (const p of preds.get(id)) d = Math.max(d, depth(p) + 1);
    visiting.delete(id);
    layer.set(id, d);
    return d;
  }
  jobs.forEach((j) => depth(j.id));
  const columns = [];
  for (const j of jobs) {
    const d = layer.get(j.id);
    (columns[d] = columns[d] || []).push(j);
  }
  const NW = 150, NH = 44, GX = 60, GY = 16, PAD = 12;
  const row = new Map();
  columns.forEach((col) => {
    const key = (j) => {
      const ps = preds.get(j.id).filter((p) => row.has(p));
      return ps.length ? ps.reduce((a, p) => a + row.get(p), 0) / ps.length : -1;
    };
    col.sort((a, b) => key(a) - key(b) || a.id - b.id);
    col.forEach((j, i) => row.set(j.id, i));
  });
  const pos = new Map();
  columns.forEach((col, c) => col.forEach((j, r) =>
    pos.set(j.id, { x: PAD + c * (NW + GX), y: PAD + r * (NH + GY) })));
  const width = PAD * 2 + columns.length * (NW + GX) - GX;
  const height = PAD * 2 + Math.max(1, ...columns.map((c) => c.length)) * (NH + GY) - GY;
  const svg = s("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": "workflow graph" });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L8,4 L0,8 z", class: "arrow" }))));
  let low = height;
  for (const l of links) {
    const a = pos.get(l.from), b = pos.get(l.to);
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x - 2, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    let d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
    if (layer.get(l.to) - layer.get(l.from) > 1) {
      // Past the columns between: below the nodes of the rows it spans.
      const under = Math.max(a.y, b.y) + NH + GY / 2;
      low = Math.max(low, under + PAD);
      const h1 = x1 + GX / 2, h2 = x2 - GX / 2;
      d = `M${x1},${y1} C${h1},${y1} ${h1},${under} ${x1 + GX},${under} L${x2 - GX},${under} ` +
        `C${h2},${under} ${h2},${y2} ${x2},${y2}`;
    }
    svg.append(s("path", { class: "edge " + l.kind, "data-from": l.from, "data-to": l.to, "data-policy": l.kind,
      d, "marker-end": "url(#arrow)" }));
  }
  if (low > height) {
    svg.setAttribute("height", low);
    svg.setAttribute("viewBox", `0 0 ${width} ${low}`);
  }
  for (const j of jobs) {
    const p = pos.get(j.id);
    const tip = [`#${j.id} ${j.step || j.kind}`, `kind: ${j.kind}`, `state: ${j.state}`,
      `attempts: ${j.attempts}/${j.max_attempts}`];
    if (j.optional) tip.push("optional: its failure is tolerated");
    if (j.cancel_reason) tip.push(j.state === "skipped" ? j.cancel_reason : `cancelled: ${j.cancel_reason}`);
    if (j.errors.length) tip.push(`last error: ${j.errors[j.errors.length - 1].message}`);
    const g = s("g", { class: "node state-" + j.state, "data-job-id": j.id, "data-state": j.state,
      "data-step": j.step || j.kind, transform: `translate(${p.x},${p.y})`, tabindex: 0 },
      s("title", {}, tip.join("\n")),
      s("rect", { width: NW, height: NH, rx: 8 }),
      s("text", { x: 10, y: 18 }, short(j.step || j.kind, 20)),
      s("text", { class: "sub", x: 10, y: 34 }, j.state + (j.attempts > 1 ? ` · ${j.attempts} attempts` : "")));
    g.addEventListener("click", () => go("/jobs/" + j.id));
    svg.append(g);
  }
  return svg;
}

// ---- dead-letter queue ------------------------------------------------------------

function mountDlq(root, params) {
  const selected = new Set();
  const kind = params.get("kind") || "";
  const retrySel = h("button", { type: "button", id: "retry-selected" }, "Retry selected");
  const cancelSel = h("button", { type: "button", class: "danger", id: "cancel-selected" }, "Discard selected");
  const retryAll = h("button", { type: "button", class: "secondary", id: "retry-all" }, kind ? `Retry all "${kind}"` : "Retry all");
  const cancelAll = h("button", { type: "button", class: "secondary", id: "cancel-all" }, kind ? `Discard all "${kind}"` : "Discard all");
  const summarize = (r) => `${r.done.length} done` + (r.failed.length ? `, ${r.failed.length} refused: ${r.failed[0].detail}` : "");
  const bulk = (button, path, body, what) => act(button, what, async () => {
    const r = await post(path, body);
    selected.clear();
    alertBox(what + ": " + summarize(r));
  });
  retrySel.addEventListener("click", () => bulk(retrySel, "/dlq/retry", { ids: [...selected] }, "retry"));
  cancelSel.addEventListener("click", () => bulk(cancelSel, "/dlq/cancel", { ids: [...selected] }, "discard"));
  retryAll.addEventListener("click", () => bulk(retryAll, "/dlq/retry", kind ? { all: true, kind } : { all: true }, "retry all"));
  cancelAll.addEventListener("click", () => {
    if (confirm("Discard every dead job" + (kind ? ` of kind "${kind}"` : "") + "? They become cancelled.")) {
      bulk(cancelAll, "/dlq/cancel", kind ? { all: true, kind } : { all: true }, "discard all");
    }
  });
  root.append(h("h1", {}, "Dead letters"),
    filterForm([{ name: "kind", label: "Kind" }], params, "/dlq"),
    h("div", { class: "actions" }, retrySel, cancelSel, retryAll, cancelAll));
  return pagedList(root, async (cursor) => {
    const q = new URLSearchParams({ state: "dead" });
    if (kind) q.set("kind", kind);
    if (cursor) q.set("cursor", cursor);
    const page = await api("/jobs?" + q);
    return { items: page.jobs, next: page.next_cursor };
  }, (jobs) => {
    for (const id of [...selected]) if (!jobs.some((j) => j.id === id)) selected.delete(id);
    if (jobs.length === 0) return h("p", { class: "muted", id: "dlq-empty" }, "The dead-letter queue is empty.");
    return table(["", "Id", "Kind", "Queue", "State", "Attempts", "Workflow", "Created", "Last error", ""], jobs.map((j) => {
      const box = h("input", { type: "checkbox", "aria-label": "select job " + j.id });
      box.checked = selected.has(j.id);
      box.addEventListener("change", () => box.checked ? selected.add(j.id) : selected.delete(j.id));
      const retry = h("button", { type: "button", class: "retry" }, "Retry");
      retry.addEventListener("click", () => act(retry, "retry", () => post(`/jobs/${j.id}/retry`)));
      const discard = h("button", { type: "button", class: "danger discard" }, "Discard");
      discard.addEventListener("click", () => act(discard, "discard", () => post(`/jobs/${j.id}/cancel`)));
      const row = jobRow(j, h("td", {}, box));
      row.append(h("td", {}, h("div", { class: "actions" }, retry, discard)));
      return row;
    }), { id: "dlq-table" });
  });
}

window.addEventListener("hashchange", route);
route();
