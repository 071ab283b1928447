// Switchyard operator console: task search and timelines, retry and re-drive, dead letters,
// circuit breakers, KPI and model-health charts, over /api/operator. The server forwards the
// API key to the service owning each view, which applies its roles and tenancy; only admins
// see the action buttons. Everything from the server is rendered as text.
"use strict";

const op = {
  key: storedKey(),
  session: null,
  view: "tasks",
  tasks: [],
  tasksToken: "",
  task: null,          // the task whose timeline is open
  letter: null,        // the dead letter open
};

async function opApi(method, path, body) {
  try {
    return await apiCall(method, path, body, op.key);
  } catch (err) {
    if (err.status === 401) opSignOut(op.key ? "Your API key was refused." : "");
    throw err;
  }
}

// "message (field: detail; ...)" of a refusal, as the services worded it
function problemText(err) {
  const errors = err.body && Array.isArray(err.body.errors) ? err.body.errors : [];
  const fields = errors.map((e) => (e.field ? `${e.field}: ${e.detail}` : e.detail)).join("; ");
  return `${err.status ? `HTTP ${err.status}: ` : ""}${err.message}${fields ? ` (${fields})` : ""}`;
}

function setLine(id, text, error) {
  $(id).textContent = text;
  $(id).classList.toggle("error", Boolean(error));
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "";
}

// -- sign in ---------------------------------------------------------------------------------
function opShow(signedIn) {
  $("login").hidden = signedIn;
  $("op-view").hidden = !signedIn;
  $("logout").hidden = !signedIn;
}

function opSignOut(message) {
  sessionStorage.removeItem("sy.key");
  op.key = "";
  op.session = null;
  $("who").textContent = "";
  $("login-error").textContent = message || "";
  opShow(false);
  $("api-key").focus();
}

async function opSignIn() {
  try {
    op.session = await opApi("GET", "/api/operator/session");
  } catch (err) {
    if (err.status !== 401) opSignOut(err.status === 403 ? "This key may not use the operator console (admins and auditors may)." : err.message);
    return;
  }
  const s = op.session;
  $("who").textContent = `${s.key_id} · ${s.role}${s.may_act ? "" : " (read-only)"} · tenant ${s.tenant}`;
  document.body.classList.toggle("read-only", !s.may_act);
  if (s.tenant !== "*") {
    for (const id of ["s-tenant", "dl-tenant", "k-tenant", "m-tenant"]) $(id).value = s.tenant;
  }
  opShow(true);
  showView(op.view);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  op.key = $("api-key").value.trim();
  sessionStorage.setItem("sy.key", op.key);
  opSignIn();
});
$("logout").addEventListener("click", () => opSignOut(""));

// -- views -----------------------------------------------------------------------------------
function showView(name) {
  op.view = name;
  for (const button of document.querySelectorAll(".tabs button")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === name));
  }
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  if (name === "dead-letters") loadDeadLetters();
  if (name === "breakers") loadBreakers();
}

for (const button of document.querySelectorAll(".tabs button")) {
  button.addEventListener("click", () => showView(button.dataset.view));
}

// -- tasks -----------------------------------------------------------------------------------
function searchParams() {
  const form = $("search");
  const params = new URLSearchParams();
  for (const name of ["tenant", "status", "kind", "metadata"]) params.set(name, form[name].value.trim());
  params.set("page_size", "50");
  return params;
}

async function searchTasks(more) {
  const params = searchParams();
  if (more && op.tasksToken) params.set("page_token", op.tasksToken);
  try {
    const data = await opApi("GET", `/api/operator/tasks?${params}`);
    op.tasks = more ? op.tasks.concat(data.tasks) : data.tasks;
    op.tasksToken = data.next_page_token;
    renderTasks();
    setLine("search-status", `${op.tasks.length} task${op.tasks.length === 1 ? "" : "s"} found${op.tasksToken ? " (more below)" : ""}.`);
  } catch (err) {
    setLine("search-status", problemText(err), true);
  }
}

function renderTasks() {
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren(...op.tasks.map((task) => {
    const row = el("tr");
    row.dataset.taskId = task.task_id;
    const open = el("button", task.task_id, "link");
    open.type = "button";
    open.setAttribute("aria-label", `Open the timeline of task ${task.task_id}`);
    open.addEventListener("click", () => openTimeline(task.task_id));
    const first = el("td"); first.append(open);
    const meta = Object.entries(task.metadata).map(([k, v]) => `${k}=${v}`).join(", ");
    row.append(first, el("td", task.tenant_id), el("td", task.kind), el("td", task.status.toLowerCase(), "task-status"),
      el("td", task.stage.toLowerCase()), el("td", task.reason), el("td", when(task.created_at)), el("td", meta));
    return row;
  }));
  $("tasks-more").hidden = !op.tasksToken;
}

$("search").addEventListener("submit", (event) => { event.preventDefault(); searchTasks(false); });
$("tasks-more").addEventListener("click", () => searchTasks(true));

// What an audit entry says, in a line (decisions: outcome, rule, pack, models).
function detailText(entry) {
  const d = entry.detail || {};
  if (entry.source === "STATUS") return [entry.stage ? `stage ${entry.stage.toLowerCase()}` : "", entry.reason].filter(Boolean).join(" · ");
  if (entry.action === "decision.made") {
    const models = (d.models || []).map((m) => `${m.name} v${m.version} → ${m.label} (${(Number(m.confidence) * 100).toFixed(1)}%)`).join("; ");
    return `${d.outcome || "?"} by rule ${d.rule || "?"}${d.pack ? ` (pack ${d.pack} v${d.pack_version})` : ""}; label ${d.label || "?"}; models: ${models || "none"}`;
  }
  if (entry.action && entry.action.startsWith("step.")) {
    return `step ${d.step_id || "?"}: ${d.outcome || ""}${d.attempts !== undefined ? ` after ${d.attempts} attempt(s)` : ""}`;
  }
  return Object.entries(d).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

async function openTimeline(taskId, keepStatus) {
  let data;
  try {
    data = await opApi("GET", `/api/operator/tasks/${encodeURIComponent(taskId)}/timeline`);
  } catch (err) {
    $("timeline-view").hidden = false;
    setLine("t-status-line", problemText(err), true);
    return;
  }
  const task = data.task;
  op.task = task;
  $("timeline-view").hidden = false;
  $("t-id").textContent = task.task_id;
  $("t-tenant").textContent = task.tenant_id;
  $("t-kind").textContent = task.kind || "unknown";
  $("t-status").textContent = `${task.status.toLowerCase()} (${task.stage.toLowerCase()})`;
  $("t-reason").textContent = task.reason || "–";
  $("t-created").textContent = when(task.created_at);
  $("t-attempt").textContent = String(task.attempt);
  $("t-actions").hidden = !(op.session && op.session.may_act);
  if (!keepStatus) setLine("t-status-line", "");
  const body = document.querySelector("#timeline tbody");
  body.replaceChildren(...data.entries.map((entry) => {
    const row = el("tr");
    row.dataset.source = entry.source;
    row.dataset.action = entry.action;
    const what = entry.source === "STATUS" ? `→ ${entry.status.toLowerCase()}` : entry.action;
    row.append(el("td", when(entry.occurred_at)), el("td", entry.source.toLowerCase()), el("td", what),
      el("td", entry.actor), el("td", detailText(entry)));
    return row;
  }));
  $("timeline-view").scrollIntoView({ block: "nearest" });
}

async function taskAction(action) {
  const task = op.task;
  if (!task) return;
  try {
    if (action === "retry") {
      const data = await opApi("POST", `/api/operator/tasks/${encodeURIComponent(task.task_id)}/retry`);
      const retried = data.task;
      setLine("t-status-line", `${data.created ? "Retried" : "Already retried"}: new task ${retried.task_id} (${retried.status.toLowerCase()}).`);
      const link = el("button", `Open task ${retried.task_id}`, "link");
      link.type = "button";
      link.id = "open-retried";
      link.addEventListener("click", () => openTimeline(retried.task_id));
      $("t-status-line").append(" ", link);
    } else {
      const data = await opApi("POST", `/api/operator/tasks/${encodeURIComponent(task.task_id)}/redrive`,
        { reason: $("redrive-reason").value.trim() });
      await openTimeline(task.task_id, true);
      setLine("t-status-line", `Re-driven: task ${data.task.task_id} published again (${data.task.status.toLowerCase()}).`);
    }
  } catch (err) {
    setLine("t-status-line", `${action === "retry" ? "Retry" : "Re-drive"} refused: ${problemText(err)}`, true);
  }
}

$("retry").addEventListener("click", () => taskAction("retry"));
$("redrive").addEventListener("click", () => taskAction("redrive"));

// -- dead letters ------------------------------------------------------------------------------
async function loadDeadLetters() {
  const params = new URLSearchParams({ tenant: $("dl-tenant").value.trim(), page_size: "100" });
  try {
    const data = await opApi("GET", `/api/operator/dead-letters?${params}`);
    const body = document.querySelector("#dead-letters tbody");
    body.replaceChildren(...data.dead_letters.map((letter) => {
      const row = el("tr");
      row.dataset.deadLetterId = letter.dead_letter_id;
      const open = el("button", letter.dead_letter_id, "link");
      open.type = "button";
      open.setAttribute("aria-label", `Show dead letter ${letter.dead_letter_id}`);
      open.addEventListener("click", () => openLetter(letter.dead_letter_id));
      const first = el("td"); first.append(open);
      const replayed = letter.replay_count ? `${letter.replay_count}× (last by ${letter.replayed_by})` : "never";
      row.append(first, el("td", letter.tenant_id || "–"), el("td", letter.source_topic),
        el("td", `${letter.reason_code}: ${letter.reason}`), el("td", when(letter.failed_at)), el("td", replayed, "replayed"));
      return row;
    }));
    setLine("dl-status", `${data.dead_letters.length} letter${data.dead_letters.length === 1 ? "" : "s"}.`);
  } catch (err) {
    setLine("dl-status", problemText(err), true);
  }
}

async function openLetter(id, keepStatus) {
  try {
    const data = await opApi("GET", `/api/operator/dead-letters/${encodeURIComponent(id)}`);
    const letter = data.dead_letter;
    op.letter = letter;
    $("dl-detail").hidden = false;
    $("dl-id").textContent = letter.dead_letter_id;
    $("dl-reason").textContent = `${letter.reason_code}: ${letter.reason} (from ${letter.source_topic}[${letter.partition}]@${letter.offset}, ${letter.service})`;
    $("dl-headers").textContent = Object.entries(letter.headers).map(([k, v]) => `${k}: ${v}`).join("\n") || "(none)";
    $("dl-value").textContent = letter.purged ? "(purged by retention)" : letter.value;
    $("dl-actions").hidden = !(op.session && op.session.may_act);
    if (!keepStatus) setLine("dl-action-status", "");
  } catch (err) {
    setLine("dl-action-status", problemText(err), true);
  }
}

$("dl-filter").addEventListener("submit", (event) => { event.preventDefault(); loadDeadLetters(); });
$("replay").addEventListener("click", async () => {
  const letter = op.letter;
  if (!letter) return;
  try {
    const data = await opApi("POST", `/api/operator/dead-letters/${encodeURIComponent(letter.dead_letter_id)}/replay`,
      { force: $("dl-force").checked });
    await openLetter(letter.dead_letter_id, true);
    setLine("dl-action-status", `Replayed to ${data.dead_letter.source_topic} (${data.dead_letter.replay_count}× in all, by ${data.dead_letter.replayed_by}).`);
    loadDeadLetters();
  } catch (err) {
    setLine("dl-action-status", `Replay refused: ${problemText(err)}`, true);
  }
});

// -- breakers --------------------------------------------------------------------------------
async function loadBreakers() {
  try {
    const data = await opApi("GET", "/api/operator/breakers");
    const body = document.querySelector("#breakers tbody");
    body.replaceChildren(...data.breakers.map((b) => {
      const row = el("tr");
      row.dataset.breaker = b.name;
      const state = el("td", b.status.toLowerCase().replace("_", "-"), `breaker-state ${b.status.toLowerCase()}`);
      const action = el("td");
      if (op.session && op.session.may_act) {
        const reset = el("button", "Reset", "reset");
        reset.type = "button";
        reset.setAttribute("aria-label", `Reset (close) the breaker of ${b.name}`);
        reset.addEventListener("click", () => resetBreaker(b.name));
        action.append(reset);
      }
      row.append(el("td", b.name), state, el("td", String(b.failure_count)), el("td", String(b.blocked_tasks)),
        el("td", when(b.opened_at)), el("td", when(b.probe_at)), el("td", b.updated_by), action);
      return row;
    }));
    $("breakers-empty").hidden = data.breakers.length > 0;
  } catch (err) {
    setLine("br-status", problemText(err), true);
  }
}

async function resetBreaker(name) {
  try {
    const data = await opApi("POST", "/api/operator/breakers/reset", { name });
    setLine("br-status", `Breaker ${data.breaker.name} is ${data.breaker.status.toLowerCase()}.`);
    await loadBreakers();
  } catch (err) {
    setLine("br-status", `Reset refused: ${problemText(err)}`, true);
  }
}

$("breakers-refresh").addEventListener("click", loadBreakers);

// -- charts ----------------------------------------------------------------------------------
const percent = (v) => `${(v * 100).toFixed(0)}%`;
const seconds = (v) => (v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(1)} s`);
const perHour = (v) => `${v.toFixed(1)}/h`;
const money = (v) => v.toFixed(4);

function windowParams(prefix) {
  return new URLSearchParams({ tenant: $(`${prefix}-tenant`).value.trim(),
    window_h: $(`${prefix}-window`).value, bucket_m: $(`${prefix}-bucket`).value });
}

async function loadKpis() {
  try {
    const data = await opApi("GET", `/api/operator/kpis?${windowParams("k")}`);
    const points = data.points.map((p) => ({ ...p, t: Date.parse(p.start) }));
    const reasons = [...new Set(points.flatMap((p) => Object.keys(p.escalations_per_hour)))].sort();
    const one = (name, key) => [{ name, points: points.map((p) => ({ t: p.t, y: p[key] })) }];
    $("kpi-charts").replaceChildren(
      lineChart("Automation rate (finished tasks completed without a person)", one("automation rate", "automation_rate"), { yMax: 1, format: percent }),
      lineChart("P95 end-to-end latency", one("p95 latency", "p95_seconds"), { format: seconds }),
      lineChart("Escalations per hour by reason",
        reasons.length ? reasons.map((r) => ({ name: r.replaceAll("_", " "), points: points.map((p) => ({ t: p.t, y: p.escalations_per_hour[r] || 0 })) }))
          : [{ name: "escalations", points: points.map((p) => ({ t: p.t, y: 0 })) }], { format: perHour }),
      lineChart("Cost per task", one("cost per task", "cost_per_task"), { format: money }),
    );
    const tasks = points.reduce((n, p) => n + p.tasks, 0);
    setLine("kpi-status", `${tasks} task${tasks === 1 ? "" : "s"} of tenant ${data.tenant} in ${points.length} buckets.`);
  } catch (err) {
    setLine("kpi-status", problemText(err), true);
  }
}

async function loadModelHealth() {
  try {
    const data = await opApi("GET", `/api/operator/model-health?${windowParams("m")}`);
    const bySeries = (rows, nameOf, valueOf) => {
      const series = new Map();
      for (const row of rows) {
        const name = nameOf(row);
        if (!series.has(name)) series.set(name, []);
        series.get(name).push({ t: Date.parse(row.start), y: valueOf(row) });
      }
      return [...series].map(([name, points]) => ({ name, points }));
    };
    // only buckets with measurements come back: the time axis shows the whole window
    const axis = { tMax: Date.now(), tMin: Date.now() - Number($("m-window").value) * 3600000 };
    $("model-charts").replaceChildren(
      lineChart("Shadow agreement with the live model",
        bySeries(data.shadow, (r) => `${r.model} v${r.live_version} vs v${r.shadow_version}`, (r) => r.agreement),
        { yMax: 1, format: percent, ...axis }),
      lineChart("Input drift (population stability index; above 0.25: inputs unlike training)",
        bySeries(data.drift, (r) => `${r.model} v${r.version} ${r.feature}`, (r) => r.psi),
        { format: (v) => v.toFixed(3), ...axis }),
    );
    setLine("model-status", `${data.shadow.length} shadow and ${data.drift.length} drift buckets for tenant ${data.tenant}.`);
  } catch (err) {
    setLine("model-status", problemText(err), true);
  }
}

$("kpi-form").addEventListener("submit", (event) => { event.preventDefault(); loadKpis(); });
$("model-form").addEventListener("submit", (event) => { event.preventDefault(); loadModelHealth(); });

// -- start -----------------------------------------------------------------------------------
opSignIn();
