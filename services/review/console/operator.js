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
  tried: false,        // the sign-in form was sent (an empty key then gets an answer)
};

//: The tenant of the README's path: the search and charts start there when the key is bound
//: to no single tenant (an operator key, or auth off).
const DEFAULT_TENANT = "default";
//: The services answer at most this many buckets for a window (switchyard/_kpis.py,
//: services/decision/health.py).
const MAX_BUCKETS = 500;
//: Statuses a task can be retried from, and those a re-drive applies to (the server checks).
const RETRYABLE = new Set(["FAILED", "CANCELLED"]);
const UNFINISHED = new Set(["QUEUED", "IN_PROGRESS", "BLOCKED"]);

async function opApi(method, path, body) {
  try {
    return await apiCall(method, path, body, op.key);
  } catch (err) {
    if (err.status === 401) {
      opSignOut(op.key ? "Your API key was refused."
        : (op.tried ? "An API key is required: this server has API keys on." : ""));
    }
    throw err;
  }
}

// "message (field: detail; ...)" of a refusal, as the services worded it; a field error the
// message already says is not said twice
function problemText(err) {
  const errors = err.body && Array.isArray(err.body.errors) ? err.body.errors : [];
  const message = err.message || "";
  const fields = errors.map((e) => (e.field ? `${e.field}: ${e.detail}` : e.detail))
    .filter((text) => text && !message.includes(text) && !message.includes(text.replace(/^[^:]*: /, "")))
    .join("; ");
  return `${err.status ? `HTTP ${err.status}: ` : ""}${message}${fields ? ` (${fields})` : ""}`;
}

function setLine(id, text, error) {
  $(id).textContent = text;
  $(id).classList.toggle("error", Boolean(error));
}

// A new action starts: the result lines of earlier ones go (each action then writes its own).
function clearLines() {
  for (const line of document.querySelectorAll("#op-view .status")) setLine(line.id, "");
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
  // the key's own tenant, or (operator key, auth off) the README's
  const tenant = s.tenant !== "*" ? s.tenant : DEFAULT_TENANT;
  for (const id of ["s-tenant", "k-tenant", "m-tenant"]) if (!$(id).value) $(id).value = tenant;
  if (s.tenant !== "*") $("dl-tenant").value = s.tenant;
  opShow(true);
  showView(op.view);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  op.key = $("api-key").value.trim();
  op.tried = true;
  sessionStorage.setItem("sy.key", op.key);
  opSignIn();
});
$("logout").addEventListener("click", () => opSignOut(""));

// -- views -----------------------------------------------------------------------------------
function showView(name) {
  op.view = name;
  clearLines();
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
  clearLines();
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
$("open-task").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("o-task").value.trim();
  clearLines();
  if (!id) { setLine("search-status", "Type a task id to open it.", true); return; }
  openTimeline(id);
});
$("tasks-more").addEventListener("click", () => searchTasks(true));

// An entry's cell: ingest's one-line summary, and the recorded detail behind a disclosure.
function whatCell(entry) {
  const cell = el("td");
  cell.append(el("span", entry.summary || entry.action, "summary"));
  const detail = entry.detail || {};
  if (Object.keys(detail).length) {
    const more = el("details", null, "entry-detail");
    more.append(el("summary", "details"), el("pre", JSON.stringify(detail, null, 2)));
    cell.append(more);
  }
  return cell;
}

async function openTimeline(taskId, keepStatus) {
  if (!keepStatus) clearLines();
  let data;
  try {
    data = await opApi("GET", `/api/operator/tasks/${encodeURIComponent(taskId)}/timeline`);
  } catch (err) {
    if (op.task) {
      $("timeline-view").hidden = false;
      setLine("t-status-line", problemText(err), true);
    } else {
      setLine("search-status", problemText(err), true);
    }
    return;
  }
  const task = data.task;
  op.task = task;
  $("timeline-view").hidden = false;
  setText($("t-id"), task.task_id);
  setText($("t-tenant"), task.tenant_id);
  setText($("t-kind"), task.kind || "unknown");
  $("t-status").textContent = `${task.status.toLowerCase()} (${task.stage.toLowerCase()})`;
  setText($("t-reason"), task.reason || "–");
  $("t-created").textContent = when(task.created_at);
  $("t-attempt").textContent = String(task.attempt);
  // only what the task's status allows (the services refuse the rest anyway)
  const mayAct = Boolean(op.session && op.session.may_act);
  $("retry-box").hidden = !RETRYABLE.has(task.status);
  $("redrive-box").hidden = !UNFINISHED.has(task.status);
  $("t-actions").hidden = !mayAct || ($("retry-box").hidden && $("redrive-box").hidden);
  const body = document.querySelector("#timeline tbody");
  body.replaceChildren(...data.entries.map((entry) => {
    const row = el("tr");
    row.dataset.source = entry.source;
    row.dataset.action = entry.action;
    row.append(el("td", when(entry.occurred_at)), el("td", entry.source.toLowerCase()), el("td", entry.action),
      el("td", entry.actor), whatCell(entry));
    return row;
  }));
  $("timeline-view").scrollIntoView({ block: "nearest" });
  // keyboard users land on the task (Tab goes on to its actions)
  if (!keepStatus) $("h-timeline").focus();
}

async function taskAction(action) {
  const task = op.task;
  if (!task) return;
  clearLines();
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
$("redrive-reason").addEventListener("keydown", (event) => {
  if (event.key === "Enter") { event.preventDefault(); taskAction("redrive"); }
});

// -- dead letters ------------------------------------------------------------------------------
async function loadDeadLetters(keepStatus) {
  if (keepStatus !== true) clearLines();
  const params = new URLSearchParams({ tenant: $("dl-tenant").value.trim(), state: $("dl-state").value, page_size: "100" });
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
      row.append(first, el("td", letter.tenant_id || "–"), el("td", letter.source_topic),
        el("td", `${letter.reason_code}: ${letter.reason}`), el("td", when(letter.failed_at)), el("td", letterState(letter), "state"));
      return row;
    }));
    setLine("dl-status", `${data.dead_letters.length} letter${data.dead_letters.length === 1 ? "" : "s"}.`);
  } catch (err) {
    setLine("dl-status", problemText(err), true);
  }
}

function letterState(letter) {
  const parts = [letter.state];
  if (letter.resolved_at) parts.push(`by ${letter.resolved_by}: ${letter.resolution}`);
  if (letter.replay_count) parts.push(`replayed ${letter.replay_count}× (last by ${letter.replayed_by})`);
  return parts.join("; ");
}

async function openLetter(id, keepStatus) {
  if (!keepStatus) clearLines();
  try {
    const data = await opApi("GET", `/api/operator/dead-letters/${encodeURIComponent(id)}`);
    const letter = data.dead_letter;
    op.letter = letter;
    $("dl-detail").hidden = false;
    setText($("dl-id"), letter.dead_letter_id);
    setText($("dl-reason"), `${letter.reason_code}: ${letter.reason} (from ${letter.source_topic}[${letter.partition}]@${letter.offset}, ${letter.service}); ${letterState(letter)}`);
    setText($("dl-headers"), Object.entries(letter.headers).map(([k, v]) => `${k}: ${v}`).join("\n") || "(none)");
    setText($("dl-value"), letter.purged ? "(purged by retention)" : letter.value);
    $("dl-actions").hidden = !(op.session && op.session.may_act);
    if (!keepStatus) setLine("dl-action-status", "");
  } catch (err) {
    setLine("dl-action-status", problemText(err), true);
  }
}

$("dl-filter").addEventListener("submit", (event) => { event.preventDefault(); loadDeadLetters(); });
// Replay or resolve the open letter: POST its action, show the letter as marked, list again.
async function letterAction(action, body, done, refused) {
  const letter = op.letter;
  if (!letter) return;
  clearLines();
  try {
    const data = await opApi("POST", `/api/operator/dead-letters/${encodeURIComponent(letter.dead_letter_id)}/${action}`, body);
    await openLetter(letter.dead_letter_id, true);
    setLine("dl-action-status", done(data.dead_letter));
    loadDeadLetters(true);
  } catch (err) {
    setLine("dl-action-status", `${refused} refused: ${problemText(err)}`, true);
  }
}

$("replay").addEventListener("click", () => letterAction("replay", { force: $("dl-force").checked },
  (marked) => `Replayed to ${marked.source_topic} (${marked.replay_count}× in all, by ${marked.replayed_by}).`, "Replay"));
$("resolve").addEventListener("click", () => letterAction("resolve", { reason: $("dl-resolution").value },
  (marked) => `Resolved by ${marked.resolved_by}: ${marked.resolution}`, "Resolve"));

// -- breakers --------------------------------------------------------------------------------
async function loadBreakers(keepStatus) {
  if (keepStatus !== true) clearLines();
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
  clearLines();
  try {
    const data = await opApi("POST", "/api/operator/breakers/reset", { name });
    setLine("br-status", `Breaker ${data.breaker.name} is ${data.breaker.status.toLowerCase()}.`);
    await loadBreakers(true);
  } catch (err) {
    setLine("br-status", `Reset refused: ${problemText(err)}`, true);
  }
}

$("breakers-refresh").addEventListener("click", () => loadBreakers());

// -- charts ----------------------------------------------------------------------------------
const percent = (v) => `${(v * 100).toFixed(0)}%`;
const seconds = (v) => (v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(1)} s`);
const perHour = (v) => `${v.toFixed(1)}/h`;
const money = (v) => v.toFixed(4);

// Offer only the buckets the services accept for the window chosen (at most MAX_BUCKETS of
// them): the others are disabled, and a choice the window no longer allows moves to the
// finest allowed one, saying so.
function fitBuckets(prefix) {
  const hours = Number($(`${prefix}-window`).value);
  const select = $(`${prefix}-bucket`);
  const fits = (option) => Math.ceil((hours * 60) / Number(option.value)) <= MAX_BUCKETS;
  for (const option of select.options) option.disabled = !fits(option);
  if (select.selectedOptions[0] && !select.selectedOptions[0].disabled) return "";
  const before = select.selectedOptions[0] ? select.selectedOptions[0].textContent : "";
  const first = [...select.options].find(fits);
  select.value = first.value;
  return `${before} buckets would be more than ${MAX_BUCKETS} in ${$(`${prefix}-window`).selectedOptions[0].textContent}: using ${first.textContent} buckets.`;
}

for (const prefix of ["k", "m"]) {
  fitBuckets(prefix);
  $(`${prefix}-window`).addEventListener("change", () => {
    const note = fitBuckets(prefix);
    setLine(prefix === "k" ? "kpi-status" : "model-status", note);
  });
}

function windowParams(prefix) {
  return new URLSearchParams({ tenant: $(`${prefix}-tenant`).value.trim(),
    window_h: $(`${prefix}-window`).value, bucket_m: $(`${prefix}-bucket`).value });
}

async function loadKpis() {
  clearLines();
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
      lineChart("Cost per task (in the unit of the SWITCHYARD_KPI_*_COST settings)", one("cost per task", "cost_per_task"), { format: money }),
    );
    const tasks = points.reduce((n, p) => n + p.tasks, 0);
    setLine("kpi-status", `${tasks} task${tasks === 1 ? "" : "s"} of tenant ${data.tenant} in ${points.length} buckets.`);
  } catch (err) {
    setLine("kpi-status", problemText(err), true);
  }
}

async function loadModelHealth() {
  clearLines();
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
    const shadow = bySeries(data.shadow, (r) => `${r.model} v${r.live_version} vs v${r.shadow_version}`, (r) => r.agreement);
    const drift = bySeries(data.drift, (r) => `${r.model} v${r.version} ${r.feature}`, (r) => r.psi);
    // live accuracy: each version's agreement with reviewers, and the confidence it claimed
    const human = [
      ...bySeries(data.human, (r) => `${r.model} v${r.version} agreed`, (r) => r.agreement),
      ...bySeries(data.human, (r) => `${r.model} v${r.version} confidence`, (r) => r.mean_confidence),
    ];
    $("model-charts").replaceChildren(
      lineChart("Shadow agreement with the live model", shadow, { yMax: 1, format: percent, ...axis }),
      lineChart("Input drift (population stability index; above 0.25: inputs unlike training)", drift,
        { format: (v) => v.toFixed(3), ...axis,
          thresholds: [{ y: 0.1, label: "0.1 some drift" }, { y: 0.25, label: "0.25 inputs unlike training" }] }),
      lineChart("Agreement with reviewers and mean confidence (escalated tasks; calibrated: the two lines meet)",
        human, { yMax: 1, format: percent, ...axis }),
    );
    // what is drawn: one point per series and bucket with a measurement
    const drawn = (series) => series.reduce((n, one) => n + one.points.filter((p) => p.y !== null && p.y !== undefined).length, 0);
    const lines = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
    setLine("model-status", `Drawn for tenant ${data.tenant}: ${lines(drawn(shadow), "shadow agreement point")} in ${lines(shadow.length, "line")}, ${lines(drawn(drift), "drift point")} in ${lines(drift.length, "line")}, ${lines(drawn(human), "reviewer agreement point")} in ${lines(human.length, "line")}.`);
  } catch (err) {
    setLine("model-status", problemText(err), true);
  }
}

$("kpi-form").addEventListener("submit", (event) => { event.preventDefault(); loadKpis(); });
$("model-form").addEventListener("submit", (event) => { event.preventDefault(); loadModelHealth(); });

// -- start -----------------------------------------------------------------------------------
opSignIn();
