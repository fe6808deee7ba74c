// flowtaskd dashboard: plain ES module, no build step. The pages are drawn by the server;
// this keeps them live from /api/v1/events (Server-Sent Events) and sends the actions.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
const page = document.body.dataset.page;
const ICONS = {pending: "○", queued: "○", running: "▶", done: "✓", failed: "✗", timeout: "⏱",
  cancelled: "■", skipped: "↷", upstream_failed: "⊘", interrupted: "■"};

// -- theme ------------------------------------------------------------------------------
const saved = localStorage.getItem("flowtaskd-theme");
if (saved) document.documentElement.dataset.theme = saved;
document.getElementById("theme")?.addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const next = dark ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  localStorage.setItem("flowtaskd-theme", next);
});

// -- API --------------------------------------------------------------------------------
export async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || `${resp.status} ${resp.statusText}`);
  return data;
}

function flash(text, error = false) {
  const el = document.getElementById("flash");
  if (!el) return;
  el.textContent = text;
  el.className = error ? "error" : "ok";
}

function stateHtml(s) {
  const span = document.createElement("span");
  span.className = `state st-${s}`;
  span.dataset.state = s;
  const icon = document.createElement("span");
  icon.className = "icon";
  icon.setAttribute("aria-hidden", "true");
  icon.textContent = ICONS[s] || "?";
  span.append(icon, ` ${s}`);
  return span;
}

// -- actions ----------------------------------------------------------------------------
document.addEventListener("click", async (ev) => {
  const btn = ev.target.closest("[data-action]");
  if (!btn) return;
  const {action, run, task, step} = btn.dataset;
  btn.disabled = true;
  try {
    if (action === "cancel") {
      await api("POST", `/api/v1/runs/${run}/cancel`);
      flash(`cancelling ${run}`);
    } else if (action === "retry" || action === "retry-from") {
      const body = action === "retry-from" ? {from: step} : {};
      const r = await api("POST", `/api/v1/runs/${run}/retry`, body);
      location.href = `/runs/${r.run_id}`;
    } else if (action === "pause" || action === "unpause") {
      await api("POST", `/api/v1/tasks/${encodeURIComponent(task)}/${action}`);
      location.reload();
    }
  } catch (err) {
    flash(String(err.message || err), true);
  } finally {
    btn.disabled = false;
  }
});

document.getElementById("trigger")?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const params = {};
  for (const input of form.querySelectorAll("input[name]")) {
    const kind = input.dataset.kind;
    if (kind === "bool") params[input.name] = input.checked;
    else if (input.value === "" && input.type === "password") continue;
    else if (kind === "number") params[input.name] = Number(input.value);
    else if (kind === "json") {
      try { params[input.name] = JSON.parse(input.value); }
      catch { flash(`${input.name}: not JSON`, true); return; }
    } else params[input.name] = input.value;
  }
  try {
    const r = await api("POST", `/api/v1/tasks/${encodeURIComponent(form.dataset.task)}/runs`, {params});
    location.href = `/runs/${r.run_id}`;
  } catch (err) {
    flash(String(err.message || err), true);
  }
});

// -- live updates -----------------------------------------------------------------------
function connect(query, onEvent) {
  const conn = document.getElementById("conn");
  // resume from the event the page was drawn at: nothing between render and connect is lost
  const last = document.body.dataset.lastEvent;
  const sep = query ? "&" : "?";
  const es = new EventSource(`/api/v1/events${query}${last ? `${sep}last_event_id=${last}` : ""}`);
  es.addEventListener("open", () => { if (conn) { conn.textContent = "● live"; conn.classList.add("on"); } });
  es.addEventListener("error", () => { if (conn) { conn.textContent = "○ reconnecting"; conn.classList.remove("on"); } });
  es.addEventListener("reset", () => location.reload());
  es.onmessage = null;
  const names = ["start", "running", "done", "on_error", "exception", "completed", "cancelled",
    "step_start", "step_done", "step_error", "step_retry", "step_skipped", "task_loaded",
    "task_removed", "task_invalid", "task_rejected", "run_queued", "run_skipped",
    "schedule_missed", "daemon_ready", "daemon_reloaded", "daemon_stopping"];
  for (const n of names) es.addEventListener(n, (m) => onEvent(JSON.parse(m.data)));
  return es;
}

function setStep(sid, s, payload) {
  for (const g of document.querySelectorAll(`svg.dag g.node[data-step="${CSS.escape(sid)}"]`)) {
    g.setAttribute("class", `node st-${s}`);
    g.dataset.state = s;
    const icon = g.querySelector("tspan.icon");
    if (icon) icon.textContent = ICONS[s] || "?";
    const title = g.querySelector("title");
    if (title) title.textContent = `${sid}: ${s}`;
  }
  const row = document.querySelector(`tr[data-step="${CSS.escape(sid)}"]`);
  if (row) {
    row.querySelector("td.st").replaceChildren(stateHtml(s));
    if (payload.attempt) row.querySelector("td.attempts").textContent = payload.attempt;
    if (payload.exit_code !== undefined && payload.exit_code !== null)
      row.querySelector("td.exit").textContent = payload.exit_code;
  }
}

const STEP_STATE = {step_start: "running", step_retry: "running"};

// -- the run's timeline: the server draws it, step events redraw it in place ------------
// Same geometry as pages.gantt: a label column, 640 px of time, one row per step.
const SVGNS = "http://www.w3.org/2000/svg";
const G = {width: 640, row: 20, label: 170};

function secs(v) {
  if (typeof v !== "number") return "—";
  if (v < 1) return `${(v * 1000).toFixed(0)} ms`;
  if (v < 120) return `${v.toFixed(1)} s`;
  return `${(v / 60).toFixed(1)} min`;
}

class Timeline {
  constructor(runStart) {
    this.runStart = runStart;
    this.read();
  }

  // (re)seed from what the server drew: after the first paint and after each refresh()
  read() {
    const section = document.getElementById("timeline");
    const serverNow = Number(section?.dataset.now);
    // the browser's clock may differ from the daemon's: each time stamp from the server
    // (the render, then every event) is a lower bound of the offset, and the best is the max
    const skew = serverNow ? serverNow - Date.now() / 1000 : -Infinity;
    this.skew = Math.max(this.skew ?? -Infinity, skew);
    const svg = section?.querySelector("svg.gantt");
    this.t0 = svg ? Number(svg.dataset.t0) : this.runStart;
    this.bars = new Map();
    this.rows = [];
    for (const r of section?.querySelectorAll("rect.bar") || []) {
      const d = r.dataset;
      this.put({step: d.step, item: d.item, attempt: Number(d.attempt), state: d.state,
        start: Number(d.start), end: d.end ? Number(d.end) : null});
    }
  }

  put(bar) {
    const key = `${bar.step}\u0000${bar.item ?? ""}\u0000${bar.attempt}`;
    if (!this.rows.includes(bar.step)) this.rows.push(bar.step);
    this.bars.set(key, {...this.bars.get(key), ...bar});
  }

  now() { return Date.now() / 1000 + (Number.isFinite(this.skew) ? this.skew : 0); }

  onEvent(e) {
    if (typeof e.ts === "number") this.skew = Math.max(this.skew, e.ts - Date.now() / 1000);
    const item = e.item === undefined || e.item === null ? "" : String(e.item);
    const at = {step: e.step, item, attempt: e.attempt || 1};
    if (e.event === "start") {
      if (!this.t0) this.t0 = e.ts;
      return;
    } else if (e.event === "step_start") {
      this.put({...at, state: "running", start: e.ts, end: null});
      if (!this.t0) this.t0 = e.ts;
    } else if (["step_retry", "step_done", "step_error"].includes(e.event)) {
      const key = `${e.step}\u0000${item}\u0000${at.attempt}`;
      if (!this.bars.has(key)) return;  // it started before the page and its stream
      this.put({...at, state: e.status, end: e.ts});
    } else if (e.event === "completed") {
      for (const b of this.bars.values()) if (b.end === null) { b.end = e.ts; b.state = e.status; }
    } else return;
    this.draw();
  }

  draw() {
    const box = document.getElementById("gantt-box");
    if (!box || !this.bars.size) return;
    const now = this.now();
    const bars = [...this.bars.values()];
    const t0 = this.t0 || Math.min(...bars.map((b) => b.start));
    const end = Math.max(...bars.map((b) => Math.max(b.start, b.end ?? now)));
    const span = Math.max(end - t0, 1e-3);
    const n = this.rows.length;
    const el = (name, attrs, text) => {
      const x = document.createElementNS(SVGNS, name);
      for (const [k, v] of Object.entries(attrs)) x.setAttribute(k, v);
      if (text !== undefined) x.textContent = text;
      return x;
    };
    const svg = el("svg", {class: "gantt", width: G.label + G.width + 10, height: n * G.row + 24,
      role: "img", "aria-label": "timeline of the steps", "data-t0": t0.toFixed(3)});
    this.rows.forEach((sid, i) => svg.append(el("text", {x: 0, y: i * G.row + 14}, sid.slice(0, 22))));
    for (const b of bars) {
      const i = this.rows.indexOf(b.step);
      const x = G.label + (b.start - t0) / span * G.width;
      const w = Math.max(((b.end ?? Math.max(now, b.start)) - b.start) / span * G.width, 2);
      const rect = el("rect", {class: `bar st-${b.state}`, x: x.toFixed(1), y: i * G.row + 3,
        width: w.toFixed(1), height: G.row - 6, "data-step": b.step, "data-attempt": b.attempt,
        "data-item": b.item ?? "", "data-state": b.state, "data-start": b.start,
        "data-end": b.end ?? ""});
      const dur = b.end === null ? null : b.end - b.start;
      rect.append(el("title", {}, `${b.step} attempt ${b.attempt}: ${b.state} (${secs(dur)})`));
      svg.append(rect);
    }
    svg.append(el("text", {x: G.label, y: n * G.row + 18}, "0"),
      el("text", {x: G.label + G.width - 40, y: n * G.row + 18}, secs(span)));
    box.replaceChildren(svg);
    // while an attempt runs its bar grows: redraw a few times a second, until none runs
    const running = bars.some((b) => b.end === null);
    if (running && !this.tick) this.tick = setInterval(() => this.draw(), 250);
    if (!running && this.tick) { clearInterval(this.tick); this.tick = null; }
  }
}

// redraw the parts of this page that the server computes (timeline, figures), in place
async function refresh() {
  const resp = await fetch(location.pathname, {credentials: "same-origin"});
  if (!resp.ok) return;
  const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
  for (const id of ["run-facts", "timeline", "steps-table"]) {
    const fresh = doc.getElementById(id);
    const old = document.getElementById(id);
    if (fresh && old) old.replaceWith(document.importNode(fresh, true));
  }
  timeline?.read();
  document.body.dataset.refreshed = "true";
}

let timeline = null;

if (page === "run") {
  const runId = document.body.dataset.run;
  const task = document.body.dataset.task;
  timeline = new Timeline(Number(document.body.dataset.started) || null);
  timeline.draw();  // a running attempt's bar grows from the first paint on
  connect(`?task=${encodeURIComponent(task)}`, (e) => {
    if (e.run_id !== runId) return;
    timeline.onEvent(e);
    if (e.event.startsWith("step_") && e.step) {
      setStep(e.step, STEP_STATE[e.event] || e.status, e);
    } else if (e.event === "start") {
      document.getElementById("run-state").replaceChildren(stateHtml("running"));
    } else if (e.event === "completed") {
      document.getElementById("run-state").replaceChildren(stateHtml(e.status));
      const d = e.stats && e.stats.duration;
      if (d != null) document.getElementById("run-duration").textContent = `${d.toFixed(1)} s`;
      document.getElementById("cancel")?.setAttribute("hidden", "");
      document.getElementById("retry")?.removeAttribute("hidden");
      for (const [sid, s] of Object.entries((e.stats && e.stats.steps) || {})) setStep(sid, s.status, s);
      refresh();
    }
  });
  initLog(runId);
}

if (page === "tasks") {
  connect("?events=completed,task_loaded,task_removed,task_invalid", (e) => {
    const row = document.querySelector(`tr[data-task="${CSS.escape(e.task || "")}"]`);
    if (e.event === "completed" && row) {
      const cell = row.querySelector("td.recent");
      const a = document.createElement("a");
      a.className = `sq st-${e.status}`;
      a.href = `/runs/${e.run_id}`;
      a.title = `${e.run_id}: ${e.status}`;
      a.textContent = ICONS[e.status] || "?";
      cell.prepend(a);
      while (cell.children.length > 20) cell.lastElementChild.remove();
    } else if (e.event !== "completed") {
      flash(`${e.event}: ${e.task || e.file} (reload to see)`);
    }
  });
}

if (page === "task") {
  const task = document.body.dataset.task;
  connect(`?task=${encodeURIComponent(task)}&events=completed,run_queued`, (e) => {
    flash(`${e.event}: run ${e.run_id} ${e.status || ""}`);
  });
}

if (page === "live") {
  let es = null;
  const body = document.getElementById("events");
  const start = () => {
    const f = document.getElementById("live-filter");
    const q = new URLSearchParams();
    if (f.task.value) q.set("task", f.task.value);
    if (f.events.value) q.set("events", f.events.value.replace(/\s+/g, ""));
    if (es) es.close();
    es = connect(q.toString() ? `?${q}` : "", (e) => {
      const tr = document.createElement("tr");
      const when = new Date(e.ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      for (const v of [when, e.event, e.task || "", "", e.step || "", e.status || ""]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      if (e.run_id) {
        const a = document.createElement("a");
        a.href = `/runs/${e.run_id}`;
        a.textContent = e.run_id;
        tr.children[3].append(a);
      }
      body.prepend(tr);
      while (body.children.length > 500) body.lastElementChild.remove();
    });
  };
  document.getElementById("live-filter").addEventListener("submit", (ev) => { ev.preventDefault(); start(); });
  start();
}

// -- step log with live tail ------------------------------------------------------------
function initLog(runId) {
  const panel = document.getElementById("logpanel");
  const pre = document.getElementById("log");
  const live = document.getElementById("log-live");
  let current = null;
  let ctrl = null;
  async function open(step) {
    current = step;
    if (ctrl) ctrl.abort();
    ctrl = new AbortController();
    panel.hidden = false;
    document.getElementById("log-step").textContent = step;
    pre.textContent = "";
    const q = new URLSearchParams({stream: document.getElementById("log-stream").value, follow: "true"});
    const attempt = document.getElementById("log-attempt").value;
    if (attempt) q.set("attempt", attempt);
    live.textContent = "following…";
    try {
      const resp = await fetch(`/api/v1/runs/${runId}/steps/${encodeURIComponent(step)}/log?${q}`,
        {credentials: "same-origin", signal: ctrl.signal});
      if (!resp.ok) {
        const data = await resp.json().catch(() => ({}));
        pre.textContent = data.error || `${resp.status}`;
        live.textContent = "";
        return;
      }
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        pre.textContent += dec.decode(value, {stream: true});
        pre.scrollTop = pre.scrollHeight;
      }
      live.textContent = pre.textContent ? "ended" : "(no output)";
    } catch (err) {
      if (err.name !== "AbortError") live.textContent = String(err);
    }
  }
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.log-open");
    if (b) open(b.dataset.step);
  });
  for (const id of ["log-stream", "log-attempt"])
    document.getElementById(id).addEventListener("change", () => current && open(current));
}
