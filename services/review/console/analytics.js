// Switchyard classroom analytics: a class session's engagement over time (tumbling windows;
// windows with fewer than k students are gaps, with the reason), the classroom's attendance
// per session, the session's alerts and the engagement model's fairness, over /api/analytics
// (the server forwards the API key to the decision service's AnalyticsService). Admins and
// auditors only, like the operator console. Everything from the server is rendered as text.
"use strict";

const an = { key: storedKey(), session: null, tried: false, open: null };
//: The tenant of the README's path, for keys bound to no single tenant (as the operator console).
const DEFAULT_TENANT = "default";

async function anApi(path) {
  try {
    return await apiCall("GET", path, undefined, an.key);
  } catch (err) {
    if (err.status === 401) {
      anSignOut(an.key ? "Your API key was refused."
        : (an.tried ? "An API key is required: this server has API keys on." : ""));
    }
    throw err;
  }
}

function refusal(err) {
  const errors = err.body && Array.isArray(err.body.errors) ? err.body.errors : [];
  const fields = errors.map((e) => (e.field ? `${e.field}: ${e.detail}` : e.detail))
    .filter((text) => text && !(err.message || "").includes(text)).join("; ");
  return `${err.status ? `HTTP ${err.status}: ` : ""}${err.message}${fields ? ` (${fields})` : ""}`;
}

function line(id, text, error) {
  $(id).textContent = text;
  $(id).classList.toggle("error", Boolean(error));
}

const when = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "");
const pct = (v) => (v === null || v === undefined ? "" : `${(v * 100).toFixed(1)}%`);
const plural = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
const driversText = (drivers) => drivers.map((d) =>
  `${d.feature} ${Number(d.value).toFixed(2)} (${d.contribution >= 0 ? "+" : ""}${Number(d.contribution).toFixed(2)})`).join("; ");

// -- sign in ---------------------------------------------------------------------------------
function anShow(signedIn) {
  $("login").hidden = signedIn;
  $("an-view").hidden = !signedIn;
  $("logout").hidden = !signedIn;
}

function anSignOut(message) {
  sessionStorage.removeItem("sy.key");
  an.key = "";
  an.session = null;
  $("who").textContent = "";
  $("login-error").textContent = message || "";
  anShow(false);
  $("api-key").focus();
}

async function anSignIn() {
  try {
    an.session = await anApi("/api/operator/session");
  } catch (err) {
    if (err.status !== 401) anSignOut(err.status === 403 ? "This key may not open classroom analytics (admins and auditors may)." : err.message);
    return;
  }
  const s = an.session;
  $("who").textContent = `${s.key_id} · ${s.role} · tenant ${s.tenant}`;
  if (!$("a-tenant").value) $("a-tenant").value = s.tenant !== "*" ? s.tenant : DEFAULT_TENANT;
  anShow(true);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  an.key = $("api-key").value.trim();
  an.tried = true;
  sessionStorage.setItem("sy.key", an.key);
  anSignIn();
});
$("logout").addEventListener("click", () => anSignOut(""));

// -- sessions --------------------------------------------------------------------------------
async function listSessions() {
  line("sessions-status", "");
  const params = new URLSearchParams({ tenant: $("a-tenant").value.trim(), classroom: $("a-classroom").value.trim() });
  try {
    const data = await anApi(`/api/analytics/sessions?${params}`);
    $("sessions").querySelector("tbody").replaceChildren(...data.sessions.map((s) => {
      const row = el("tr");
      row.dataset.classroom = s.classroom_id;
      row.dataset.session = s.session_id;
      const open = el("button", "Show", "link");
      open.type = "button";
      open.setAttribute("aria-label", `Show session ${s.session_id} of ${s.classroom_id}`);
      open.addEventListener("click", () => openSession(s.classroom_id, s.session_id));
      const cell = el("td");
      cell.append(open);
      row.append(el("td", s.classroom_id), el("td", s.session_id), el("td", when(s.first_window)),
        el("td", String(s.windows)), el("td", s.engagement === null ? "withheld" : pct(s.engagement)),
        el("td", `${s.attendance} of ${s.expected_students}`), el("td", String(s.alerts)), cell);
      return row;
    }));
    line("sessions-status", `${plural(data.sessions.length, "session")} of tenant ${data.tenant}${data.next_page_token ? " (newest first; more exist)" : ""}.`);
  } catch (err) {
    line("sessions-status", refusal(err), true);
  }
}

$("sessions-form").addEventListener("submit", (event) => { event.preventDefault(); listSessions(); });

// -- one session -----------------------------------------------------------------------------
async function openSession(classroom, session) {
  const tenant = $("a-tenant").value.trim();
  an.open = { tenant, classroom, session };
  line("se-status", "");
  $("session-view").hidden = false;
  $("se-id").textContent = session;
  try {
    const data = await anApi(`/api/analytics/engagement?${new URLSearchParams({ tenant, classroom, session })}`);
    showEngagement(data);
  } catch (err) {
    line("se-status", refusal(err), true);
  }
  $("h-session").focus();
  loadAttendance(tenant, classroom, session);
}

function showEngagement(data) {
  const s = data.session;
  const k = data.k_anonymity;
  $("se-classroom").textContent = s.classroom_id;
  $("se-windows").textContent = String(data.windows.length);
  $("se-first").textContent = when(s.first_window);
  $("se-last").textContent = when(s.last_window);
  $("se-engagement").textContent = s.engagement === null ? "withheld (no window with k students)" : pct(s.engagement);
  $("se-attendance").textContent = `${s.attendance} of ${s.expected_students}`;
  $("se-k").textContent = `${k} students`;
  $("se-alerts").textContent = String(data.alerts.length);

  const reason = `fewer than ${k} students`;
  const windows = data.windows.map((w) => ({ ...w, t0: Date.parse(w.start), t1: Date.parse(w.end) }));
  const suppressed = windows.filter((w) => w.suppressed);
  const chart = lineChart("Class engagement per window (mean probability of engagement)",
    [{ name: "engagement", points: windows.map((w) => ({ t: w.t0, y: w.suppressed ? null : w.engagement })) }],
    { yMax: 1, format: pct, gaps: suppressed.map((w) => ({ t0: w.t0, t1: w.t1, label: reason })),
      tMin: windows.length ? windows[0].t0 : undefined, tMax: windows.length ? windows[windows.length - 1].t1 : undefined });
  $("engagement-chart").replaceChildren(chart);
  $("suppressed-note").textContent = suppressed.length
    ? `${plural(suppressed.length, "window")} of ${windows.length} shown as gaps: ${reason} (engagement withheld).`
    : `Every window had at least ${k} students.`;

  $("windows").querySelector("tbody").replaceChildren(...windows.map((w) => {
    const row = el("tr");
    row.dataset.start = w.start;
    row.dataset.suppressed = String(w.suppressed);
    const engagement = w.suppressed ? el("td", `withheld: ${reason}`, "withheld") : el("td", pct(w.engagement));
    row.append(el("td", when(w.start)), el("td", when(w.end)), el("td", String(w.students)), engagement,
      el("td", `${w.attendance} of ${w.expected_students}`), el("td", String(w.signals)),
      el("td", String(w.late_signals)), el("td", String(w.duplicate_signals)),
      el("td", String(w.dropped_no_consent)), el("td", driversText(w.drivers)));
    return row;
  }));

  $("alerts").querySelector("tbody").replaceChildren(...data.alerts.map((a) => {
    const row = el("tr");
    row.dataset.kind = a.kind;
    row.append(el("td", a.kind.toLowerCase().replaceAll("_", " ")),
      el("td", `${when(a.window_start)} – ${when(a.window_end)}`), el("td", a.seat_id || "—"),
      el("td", pct(a.score)), el("td", String(a.windows)), el("td", a.detail),
      el("td", driversText(a.drivers)), el("td", String(a.suppressed_before)));
    return row;
  }));
  $("alerts-empty").hidden = data.alerts.length > 0;
}

async function loadAttendance(tenant, classroom, session) {
  line("attendance-status", "");
  try {
    const data = await anApi(`/api/analytics/attendance?${new URLSearchParams({ tenant, classroom })}`);
    const points = data.points.map((p) => ({ ...p, t: Date.parse(p.start) }));
    $("attendance-chart").replaceChildren(lineChart(`Attendance rate per session of ${classroom}`,
      [{ name: "attendance rate", points: points.map((p) => ({ t: p.t, y: p.rate })) }], { yMax: 1, format: pct }));
    $("attendance").querySelector("tbody").replaceChildren(...points.map((p) => {
      const row = el("tr");
      row.dataset.session = p.session_id;
      if (p.session_id === session) row.classList.add("selected");
      row.append(el("td", p.session_id), el("td", when(p.start)), el("td", String(p.attendance)),
        el("td", String(p.expected_students)), el("td", p.rate === null ? "unknown" : pct(p.rate)),
        el("td", p.anomaly ? "yes" : "no", p.anomaly ? "over-limit" : ""));
      return row;
    }));
    line("attendance-status", `${plural(points.length, "session")} of ${classroom} in the last ${data.days} days.`);
  } catch (err) {
    line("attendance-status", refusal(err), true);
  }
}

// -- fairness --------------------------------------------------------------------------------
async function loadFairness() {
  line("fairness-status", "");
  try {
    const data = await anApi(`/api/analytics/fairness?${new URLSearchParams({ tenant: $("a-tenant").value.trim() })}`);
    const rows = [];
    for (const m of data.models) {
      m.groups.forEach((g, index) => {
        const row = el("tr");
        row.dataset.model = m.model_version;
        row.dataset.group = g.group;
        const parity = index === 0
          ? el("td", `${m.parity_difference === null ? "not enough groups" : pct(m.parity_difference)} (limit ${pct(m.limit)})${m.over_limit ? ": over the limit" : ""}`,
            m.over_limit ? "over-limit" : "")
          : el("td", "");
        row.append(el("td", index === 0 ? m.model_version : ""), el("td", g.group), el("td", String(g.windows)),
          el("td", String(g.flagged)), g.rate === null ? el("td", "withheld: fewer than k windows", "withheld") : el("td", pct(g.rate)), parity);
        rows.push(row);
      });
    }
    $("fairness").querySelector("tbody").replaceChildren(...rows);
    line("fairness-status", `${plural(data.models.length, "model version")}.`);
  } catch (err) {
    line("fairness-status", refusal(err), true);
  }
}

$("fairness-go").addEventListener("click", loadFairness);

anSignIn();
