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
  document.body.dataset.refreshed = "true";
}

if (page === "run") {
  const runId = document.body.dataset.run;
  const task = document.body.dataset.task;
  connect(`?task=${encodeURIComponent(task)}`, (e) => {
    if (e.run_id !== runId) return;
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
