// Switchyard review console: queue view, item view, claims and verdicts over /api.
// Every call carries "Authorization: Bearer <API key>"; the server applies the ReviewService
// role policy. Item content is rendered with textContent only (it is untrusted input).
"use strict";

const state = {
  key: storedKey(),
  reviewer: sessionStorage.getItem("sy.reviewer") || "",
  session: null,
  items: [],
  pages: 1,            // how many pages of the queue are shown ("Show more" adds one)
  more: false,         // whether the queue has items past the pages shown
  selected: 0,
  item: null,          // the item open in the item view
  pending: null,       // an action waiting for its reason ("reject")
  refreshTimer: null,
  renewTimer: null,
  returnTo: null,      // the item whose row takes the focus back when the queue is shown again
  // single-key shortcuts (j, a, r, ...) may be turned off (WCAG 2.1.4); this browser remembers
  shortcuts: localStorage.getItem("sy.shortcuts") !== "off",
};

// $, el, ApiError and apiCall come from common.js (shared with the operator console).
async function api(method, path, body) {
  try {
    return await apiCall(method, path, body, state.key);
  } catch (err) {
    if (err.status === 401) signOut("Your API key was refused.");
    throw err;
  }
}

// -- time ------------------------------------------------------------------------------------
function countdown(iso) {
  if (!iso) return { text: "no SLA", cls: "" };
  const ms = Date.parse(iso) - Date.now();
  const abs = Math.abs(ms);
  const h = Math.floor(abs / 3600000), m = Math.floor((abs % 3600000) / 60000), s = Math.floor((abs % 60000) / 1000);
  const text = (h ? `${h}h ` : "") + `${String(m).padStart(h ? 2 : 1, "0")}m ${String(s).padStart(2, "0")}s`;
  const bump = state.session ? state.session.sla_bump_s * 1000 : 900000;
  if (ms < 0) return { text: `overdue ${text}`, cls: "overdue" };
  return { text: `${text} left`, cls: ms < bump ? "soon" : "" };
}

function tickClocks() {
  document.querySelectorAll("[data-deadline]").forEach((node) => {
    const c = countdown(node.dataset.deadline);
    // an item that passed its SLA once and was given a new deadline stays marked late
    const late = Number(node.dataset.late || 0);
    const breached = late ? `breached${late > 1 ? ` ${late}×` : ""}, now ` : "";
    node.textContent = (node.dataset.prefix || "") + breached + c.text;
    node.classList.toggle("soon", c.cls === "soon" && !late);
    node.classList.toggle("overdue", c.cls === "overdue" || late > 0);
  });
}

// -- sign in -----------------------------------------------------------------------------------
function show(view) {
  for (const id of ["login", "queue-view", "item-view"]) $(id).hidden = id !== view;
  for (const id of ["logout", "shortcuts-toggle", "help-open"]) $(id).hidden = view === "login";
}

$("shortcuts-on").checked = state.shortcuts;
$("shortcuts-on").addEventListener("change", (event) => {
  state.shortcuts = event.target.checked;
  localStorage.setItem("sy.shortcuts", state.shortcuts ? "on" : "off");
});
$("help-open").addEventListener("click", () => $("help").showModal());

// On a narrow screen (a phone, or a desktop at 200% zoom) the tables marked "cards" show each
// row as a card, each value under its column's name: the name comes from the table's head.
function labelCells(table) {
  const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
  table.querySelectorAll("tbody tr").forEach((row) => {
    [...row.children].forEach((cell, index) => { if (names[index]) cell.dataset.label = names[index]; });
  });
}

function signOut(message) {
  sessionStorage.removeItem("sy.key");
  state.key = "";
  state.session = null;
  $("who").textContent = "";
  $("login-error").textContent = message || "";
  show("login");
  $("reviewer").value = state.reviewer;
  $("api-key").focus();
}

async function signIn() {
  try {
    state.session = await api("GET", "/api/session");
  } catch (err) {
    signOut(err.status === 403 ? "This key may not use the review console." : err.message);
    return;
  }
  if (state.session.reviewer) {
    state.reviewer = state.session.reviewer;   // with API keys the key is the reviewer
  } else if (!state.reviewer) {
    signOut("Auth is off: type your reviewer name.");
    return;
  }
  const groups = state.session.groups === null ? "every group" :
    (state.session.groups.length ? `groups ${state.session.groups.join(", ")}` : "no group");
  const mayAct = mayDecide();
  setText($("who"), `${state.reviewer} · ${state.session.role}${mayAct ? "" : " (read-only)"} · tenant ${state.session.tenant} · ${groups}`);
  // an auditor reads: no button or shortcut that the server would only refuse
  for (const id of ["act-buttons", "reason-label", "add-field"]) $(id).hidden = !mayAct;
  $("read-only-note").hidden = mayAct;
  show("queue-view");
  await refresh();
  watch();
  const linked = linkedItem();
  if (linked) await openItem(linked);
}

// An open item's address is the console's with #item=<id>: a reviewer bookmarks it, sends it
// to a colleague or reloads the page and lands on the item (after signing in), not the queue.
function linkedItem() {
  const match = /^#item=([0-9a-fA-F-]{36})$/.exec(location.hash);
  return match ? match[1] : null;
}

function linkTo(itemId) {
  history.replaceState(null, "", itemId ? `#item=${itemId}` : location.pathname + location.search);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  state.reviewer = $("reviewer").value.trim();
  sessionStorage.setItem("sy.key", state.key);
  sessionStorage.setItem("sy.reviewer", state.reviewer);
  signIn();
});
$("logout").addEventListener("click", () => signOut(""));

// -- queue view ------------------------------------------------------------------------------
function filterQuery() {
  const form = $("filters");
  const params = new URLSearchParams();
  params.set("queue", form.queue.value.trim());
  params.set("tenant", form.tenant.value.trim());
  params.set("state", form.state.value);
  params.set("priority", [...form.querySelectorAll("input[name=priority]:checked")].map((c) => c.value).join(","));
  params.set("reason", form.reason.value);
  params.set("page_size", String(PAGE_SIZE));
  return params;
}

const PAGE_SIZE = 200;

// The first state.pages pages of the queue, following ListQueue's page tokens.
async function loadQueue() {
  const items = [];
  let token = "";
  for (let page = 0; page < state.pages; page++) {
    const params = filterQuery();
    if (token) params.set("page_token", token);
    const list = await api("GET", `/api/items?${params}`);
    items.push(...list.items);
    token = list.next_page_token;
    if (!token) break;
  }
  state.more = Boolean(token);
  return items;
}

async function refresh() {
  if (!state.session) return;
  try {
    const [items, stats] = await Promise.all([loadQueue(), api("GET", "/api/stats")]);
    state.items = items;
    renderQueue();
    renderStats(stats.queues);
    if (state.item && !$("item-view").hidden) {
      const fresh = state.items.find((i) => i.item_id === state.item.item_id);
      if (fresh && (fresh.state !== state.item.state || fresh.claimed_by !== state.item.claimed_by)) await openItem(state.item.item_id, true);
    }
  } catch (err) {
    if (err.status !== 401) $("stats").textContent = `could not load the queue: ${err.message}`;
  }
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh(); }, 150);
}

function renderStats(queues) {
  const parts = queues.map((q) => `${q.queue}: ${q.open} open, ${q.backlog} in backlog` +
    (q.oldest_backlog_s ? ` (oldest ${Math.round(q.oldest_backlog_s)}s)` : ""));
  setText($("stats"), parts.join(" · ") || "all queues empty");
}

function queueLink(itemId) {
  return document.querySelector(`#queue tbody tr[data-item-id="${CSS.escape(itemId)}"] a.open-item`);
}

function renderQueue() {
  const body = document.querySelector("#queue tbody");
  // a refresh redraws the rows: the row that had the focus keeps it (and stays selected)
  const focusedRow = document.activeElement?.closest?.("#queue tbody tr");
  const keepFocus = state.returnTo || (focusedRow ? focusedRow.dataset.itemId : null);
  if (keepFocus) {
    const at = state.items.findIndex((i) => i.item_id === keepFocus);
    if (at >= 0) state.selected = at;
  }
  body.replaceChildren();
  state.selected = Math.min(state.selected, Math.max(0, state.items.length - 1));
  state.items.forEach((item, index) => {
    const row = el("tr");
    row.dataset.itemId = item.item_id;
    row.dataset.taskId = item.task_id;
    if (index === state.selected) row.classList.add("selected");
    const badge = el("span", item.priority, `badge ${item.priority}`);
    const prio = el("td"); prio.append(badge);
    const sla = el("td", "", "sla");
    if (item.sla_deadline) sla.dataset.deadline = item.sla_deadline; else sla.textContent = "no SLA";
    if (item.expiries) sla.dataset.late = item.expiries;
    const stateText = (item.state === "CLAIMED" ? `claimed by ${item.claimed_by}` :
      item.state.toLowerCase() + (item.decided_by ? ` by ${item.decided_by}` : "")) +
      (item.approvals.text ? ` · ${item.approvals.text}` : "");
    // the summary is a link: Tab reaches every row, Enter or a click opens it
    const link = el("a", item.summary || "(no text)", "open-item");
    link.href = `#item=${item.item_id}`;
    link.addEventListener("focus", () => select(index));
    const summary = el("td"); summary.append(link);
    row.append(prio, sla, el("td", item.tenant_id), el("td", item.queue), el("td", item.reviewer_group || "any"),
      el("td", item.reason.toLowerCase().replaceAll("_", " ")),
      el("td", item.kind), summary, el("td", stateText, "state"));
    row.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey) return;   // the link, in a new tab
      event.preventDefault(); state.selected = index; openItem(item.item_id);
    });
    body.append(row);
  });
  labelCells($("queue"));
  if (keepFocus) {
    const link = queueLink(keepFocus) || body.querySelector("tr.selected a.open-item");
    if (link) link.focus();
    state.returnTo = null;
  }
  $("empty").hidden = state.items.length > 0;
  $("more").hidden = !state.more;
  tickClocks();
}

function select(index) {
  state.selected = index;
  document.querySelectorAll("#queue tbody tr").forEach((row, at) => row.classList.toggle("selected", at === index));
}

// j/k move the selection and the keyboard focus with it (a screen reader reads the row's link)
function moveSelection(delta) {
  if (!state.items.length) return;
  select((state.selected + delta + state.items.length) % state.items.length);
  const row = document.querySelector("#queue tbody tr.selected");
  if (row) { row.querySelector("a.open-item").focus(); row.scrollIntoView({ block: "nearest" }); }
}

$("filters").addEventListener("input", () => { state.selected = 0; state.pages = 1; scheduleRefresh(); });
$("more").addEventListener("click", () => { state.pages += 1; refresh(); });
$("filters").addEventListener("submit", (event) => event.preventDefault());

// -- live updates (server-sent events over fetch, so the API key stays in a header) -----------
let watching = false;
async function watch() {
  if (watching) return;
  watching = true;
  while (state.session) {
    try {
      const resp = await fetch("/api/events", { headers: { "Authorization": `Bearer ${state.key}` } });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      $("live").textContent = "live"; $("live").classList.add("on");
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (message.includes("event: change")) scheduleRefresh();
        }
      }
    } catch (_) { /* reconnect below */ }
    $("live").textContent = "offline"; $("live").classList.remove("on");
    await new Promise((r) => setTimeout(r, 3000));
  }
  watching = false;
}

// -- item view -------------------------------------------------------------------------------
async function openItem(itemId, keepStatus) {
  let data;
  try { data = await api("GET", `/api/items/${encodeURIComponent(itemId)}`); } catch (err) { setStatus(err.message, true); return; }
  const item = data.item;
  const opening = !state.item || state.item.item_id !== item.item_id || $("item-view").hidden;
  state.item = item;
  linkTo(item.item_id);
  show("item-view");
  setText($("i-title"), `${item.priority} ${item.kind || "item"} of ${item.tenant_id}, ${item.reason.toLowerCase().replaceAll("_", " ")}`);
  if (!keepStatus) { setStatus(""); $("reason").value = ""; state.pending = null; }
  const badge = $("i-priority");
  setText(badge, item.priority); badge.className = `badge ${item.priority}`;
  badge.title = `task priority: ${item.task_priority.toLowerCase()}`;
  setText($("i-task-priority"), item.task_priority.toLowerCase());
  setText($("i-state"), item.state === "CLAIMED" ? `claimed by ${item.claimed_by}` :
    (item.resolution ? `${item.state.toLowerCase()} (${item.resolution})` : item.state.toLowerCase()));
  const sla = $("i-sla");
  const closed = item.state === "RESOLVED" || item.state === "EXPIRED" || item.state === "WITHDRAWN";
  if (item.sla_deadline && !closed) { sla.dataset.deadline = item.sla_deadline; sla.dataset.prefix = "SLA: "; }
  else { delete sla.dataset.deadline; sla.classList.remove("soon", "overdue"); sla.textContent = closed ? "" : "no SLA"; }
  if (item.expiries && !closed) sla.dataset.late = item.expiries; else delete sla.dataset.late;
  const lease = $("i-lease");
  if (item.lease_expires_at && item.claimed_by === state.reviewer) { lease.dataset.deadline = item.lease_expires_at; lease.dataset.prefix = "lease: "; }
  else { delete lease.dataset.deadline; lease.textContent = ""; }
  setText($("i-tenant"), item.tenant_id);
  setText($("i-queue"), item.queue);
  setText($("i-group"), item.reviewer_group || "any reviewer");
  setText($("i-approvals"), approvalsText(item));
  setText($("i-instructions"), item.instructions || "");
  $("i-instructions-box").hidden = !item.instructions;
  setText($("i-reason"), `${item.reason.toLowerCase().replaceAll("_", " ")}${item.reason_detail ? ` — ${item.reason_detail}` : ""}`);
  setText($("i-kind"), item.kind || "unknown");
  setText($("i-task"), item.task_id);
  setText($("i-explanation"), item.proposal.explanation || "(no explanation)");
  setText($("i-proposal"), `Proposed: ${item.proposal.outcome.toLowerCase().replaceAll("_", " ")} as ${item.proposal.label || "?"} ` +
    `(rule ${item.proposal.rule || "?"}, confidence ${(item.proposal.confidence * 100).toFixed(1)}%)`);
  // what an approval sets going: the plan's steps, or nothing at all (said, never implied)
  const plan = item.proposal.plan || [];
  setText($("i-plan"), plan.length
    ? `On approval: ${plan.map((step) => step.target ? `${step.name} (${step.target})` : step.name).join(", then ")}.`
    : "On approval nothing runs: this proposal has no plan (no pack of this tenant reads it as it stands); approving closes the task as done.");
  $("i-plan").className = plan.length ? "muted" : "warning";
  const models = document.querySelector("#i-models tbody");
  models.replaceChildren(...item.proposal.models.map((m) => {
    const row = el("tr");
    row.append(el("td", `${m.name} v${m.version}`), el("td", m.label), el("td", `${(m.confidence * 100).toFixed(1)}%`));
    return row;
  }));
  renderDiscrepancies(item.discrepancies || []);
  renderFields(item.proposal.fields);
  showDocumentPages(item);
  setText($("i-doctype"), `${item.document.content_type}${item.document.filename ? ` · ${item.document.filename}` : ""}`);
  setText($("i-document"), item.document.hidden
    ? "Not shown: this approval step's reviewers check the fields and what disagrees, not the document."
    : item.document.text);
  document.querySelectorAll("#item-view table.cards").forEach(labelCells);
  updateButtons();
  tickClocks();
  // an opened item takes the keyboard focus at its title (a screen reader starts there)
  if (opening) $("i-title").focus();
  if (item.claimed_by === state.reviewer && item.state === "CLAIMED") scheduleRenew(item); else clearTimeout(state.renewTimer);
}

// "1 of 2 approvals (key-0)" for a four-eyes item; one verdict decides the others. What the
// first approval changed is said here and beside each field: the second reviewer approves it.
function approvalsText(item) {
  if (!item.approvals.text) return "one reviewer decides";
  const who = item.approvals.approved_by.length ? ` (${item.approvals.approved_by.join(", ")})` : "";
  const edits = Object.entries(item.approvals.edits || {});
  const changed = edits.length ? `; the first approval changed ${edits.map(([f, v]) => `${f} to ${v}`).join(", ")}` : "";
  return item.approvals.text + who + changed;
}

// Four eyes: the reviewer who gave the first approval cannot give the second.
function approvedByMe() { return Boolean(state.item && state.item.approvals.approved_by.includes(state.reviewer)); }

function confidenceClass(c) { return c < 0.5 ? "conf-low" : c < 0.8 ? "conf-mid" : ""; }

function fieldRow(name, value, confidence, editableName, provenance, isWithheld) {
  const row = el("tr");
  const nameCell = el("td");
  if (editableName) {
    const input = el("input"); input.className = "field-name"; input.placeholder = "field name";
    input.setAttribute("aria-label", "new field name"); nameCell.append(input);
  } else { setText(nameCell, name); row.dataset.field = name; }
  const edit = el("input"); edit.className = "field-edit"; edit.placeholder = "unchanged";
  edit.setAttribute("aria-label", `corrected ${name || "value"}`);
  // the extractor's own confidence is no field of the document: nothing to correct
  const computed = name === "extraction_confidence";
  if (computed) { edit.disabled = true; edit.placeholder = "computed"; }
  const editCell = el("td"); editCell.append(edit);
  // where the value was read (page, OCR confidence), and the way to pick it from the page
  const whereCell = el("td", "", "where");
  if (provenance) {
    whereCell.append(el("span", `p. ${provenance.page}` + (provenance.source === "OCR" ?
      ` · OCR ${(provenance.ocr_confidence * 100).toFixed(0)}%` : ""), "where-text"));
    row.dataset.page = String(provenance.page);
    row.addEventListener("mouseenter", () => highlightField(row.dataset.field || "", true));
    row.addEventListener("mouseleave", () => highlightField(row.dataset.field || "", false));
    row.addEventListener("focusin", () => highlightField(row.dataset.field || "", true));
    row.addEventListener("focusout", () => highlightField(row.dataset.field || "", false));
  }
  if (hasPages() && !computed) {
    const pick = el("button", "Pick words", "pick");
    pick.type = "button";
    // the visible label starts the accessible name (WCAG 2.5.3, label in name)
    pick.setAttribute("aria-label", `Pick words for ${name || "the new field"} on the page`);
    pick.addEventListener("click", () => startPick(row));
    whereCell.append(pick);
  }
  row.append(nameCell, valueCell(value, Boolean(isWithheld)), el("td", confidence === null ? "" : `${(confidence * 100).toFixed(1)}%`, confidence === null ? "" : confidenceClass(confidence)), whereCell, editCell);
  return row;
}

// A value the desk withheld (personal or health data this item does not reveal) is shown as
// its label, marked, with the reason in its title: the reviewer knows it exists but not what.
function valueCell(value, isWithheld) {
  const cell = el("td", value, isWithheld ? "withheld" : "");
  if (isWithheld) {
    cell.title = "withheld: personal or health data this review does not need";
    cell.append(" ", el("span", "withheld", "withheld-tag"));
  }
  return cell;
}

// Each field another system disagrees on: the document's value, the other system's, why.
function renderDiscrepancies(items) {
  const body = document.querySelector("#i-discrepancies tbody");
  body.replaceChildren(...items.map((d) => {
    const row = el("tr");
    row.dataset.field = d.field;
    row.append(el("td", d.field), valueCell(d.submitted, d.withheld && Boolean(d.submitted)),
      valueCell(d.found || "(none)", d.withheld && Boolean(d.found)), el("td", d.source), el("td", d.note));
    return row;
  }));
  $("i-discrepancies-box").hidden = items.length === 0;
}

let fieldsShownFor = null;   // the item whose fields the table shows

function renderFields(fields) {
  endPick(false);
  // re-reading the same item (after a claim, a renewal) keeps the corrections typed or picked
  const kept = fieldsShownFor === state.item.item_id ? editedFields() : {};
  fieldsShownFor = state.item.item_id;
  const body = document.querySelector("#i-fields tbody");
  body.replaceChildren(...fields.map((f) => fieldRow(f.name, f.value, f.confidence, false, f.provenance, f.withheld)));
  const approved = state.item.approvals.edits || {};
  body.querySelectorAll("tr[data-field]").forEach((row) => {
    const edit = approved[row.dataset.field];
    if (edit !== undefined) row.children[1].append(" ", el("span", `→ ${edit} (first approval)`, "approved-edit"));
    if (kept[row.dataset.field] !== undefined) row.querySelector(".field-edit").value = kept[row.dataset.field];
  });
  $("i-nofields").hidden = fields.length > 0;
}

// -- document pages: the page image (masked by the server), the fields drawn where they were
// read, and correcting a field by picking its words ------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
const REDACTED_WORD = /^\[[A-Z0-9_ ]+ REDACTED\]$/;
const pages = { shownFor: null, url: null, number: 1, pick: null };

function hasPages() { return Boolean(state.item && state.item.document && state.item.document.page_count > 0); }
function pageCount() { return hasPages() ? state.item.document.page_count : 0; }
function layoutPage(number) { return (state.item.document.layout || []).find((p) => p.number === number) || null; }

function showDocumentPages(item) {
  $("i-pages").hidden = !hasPages();
  $("i-workspace").classList.toggle("with-pages", hasPages());
  if (!hasPages()) { pages.shownFor = null; return; }
  if (pages.shownFor !== item.item_id) { pages.number = 1; }
  loadPage(pages.number);
}

async function loadPage(number) {
  const item = state.item;
  if (!item) return;
  pages.number = Math.min(Math.max(1, number), pageCount());
  $("page-label").textContent = `Page ${pages.number} of ${pageCount()}`;
  $("page-prev").disabled = pages.number <= 1;
  $("page-next").disabled = pages.number >= pageCount();
  drawOverlay();
  const key = `${item.item_id}/${pages.number}`;
  if (pages.shownFor === item.item_id && $("page-img").dataset.key === key) return;
  pages.shownFor = item.item_id;
  $("page-error").textContent = "";
  try {
    const resp = await fetch(`/api/items/${encodeURIComponent(item.item_id)}/pages/${pages.number}`,
      { headers: { "Authorization": `Bearer ${state.key}` } });
    if (!resp.ok) {
      let body = null; try { body = await resp.json(); } catch (_) { body = null; }
      throw new ApiError(resp.status, body);
    }
    const blob = await resp.blob();
    if (!state.item || state.item.item_id !== item.item_id) return;
    if (pages.url) URL.revokeObjectURL(pages.url);
    pages.url = URL.createObjectURL(blob);
    const img = $("page-img");
    img.src = pages.url;
    img.dataset.key = key;
    img.alt = `Page ${pages.number} of ${pageCount()} of the document${item.document.filename ? ` ${item.document.filename}` : ""}; personal data is masked where redaction applies`;
  } catch (err) {
    $("page-error").textContent = `The page image could not be loaded: ${err.message}`;
  }
}

function svgRect(box, cls) {
  const rect = document.createElementNS(SVG, "rect");
  rect.setAttribute("x", String(box[0] * 1000)); rect.setAttribute("y", String(box[1] * 1000));
  rect.setAttribute("width", String(Math.max(1, (box[2] - box[0]) * 1000)));
  rect.setAttribute("height", String(Math.max(1, (box[3] - box[1]) * 1000)));
  rect.setAttribute("vector-effect", "non-scaling-stroke");
  rect.setAttribute("class", cls);
  return rect;
}

// The fields read on this page as boxes; while picking, every word as a box too.
function drawOverlay() {
  const svg = $("page-overlay");
  svg.replaceChildren();
  if (!hasPages()) return;
  for (const field of state.item.proposal.fields) {
    const prov = field.provenance;
    if (!prov || prov.page !== pages.number) continue;
    const rect = svgRect(prov.box, "hl");
    rect.dataset.field = field.name;
    rect.addEventListener("click", () => {
      const row = document.querySelector(`#i-fields tr[data-field="${CSS.escape(field.name)}"]`);
      if (row) startPick(row);
    });
    svg.append(rect);
  }
  const pick = pages.pick;
  const page = layoutPage(pages.number);
  if (!pick || !page) return;
  page.words.forEach((word, index) => {
    const masked = REDACTED_WORD.test(word.text);
    const cls = ["word", masked ? "masked" : "", pick.selected.has(index) ? "sel" : "", pick.cursor === index ? "cur" : ""].join(" ").trim();
    const rect = svgRect(word.box, cls);
    rect.addEventListener("click", (event) => { event.stopPropagation(); pages.pick.cursor = index; toggleWord(index); });
    svg.append(rect);
  });
}

function highlightField(name, on) {
  document.querySelectorAll("#page-overlay rect.hl").forEach((r) => {
    if (r.dataset.field === name) r.classList.toggle("active", on);
  });
}

function fieldNameOf(row) {
  const named = row.querySelector(".field-name");
  return named ? named.value.trim() || "the new field" : row.dataset.field;
}

// Picking: the chosen words, in reading order, become the field's corrected value.
function startPick(row) {
  if (!hasPages()) return;
  endPick(false);
  const page = row.dataset.page ? Number(row.dataset.page) : pages.number;
  const input = row.querySelector(".field-edit");
  pages.pick = { row, input, before: input.value, selected: new Set(), cursor: 0 };
  row.classList.add("picking");
  if (page !== pages.number) loadPage(page); else drawOverlay();
  const frame = $("page-frame");
  frame.tabIndex = 0;
  frame.classList.add("picking");
  frame.focus();
  announce(`Picking the words of ${fieldNameOf(row)}: click words or use the arrow keys and Space; Enter to finish, Esc to cancel.`);
}

function endPick(keep) {
  const pick = pages.pick;
  if (!pick) return;
  pages.pick = null;
  if (!keep) pick.input.value = pick.before;
  pick.row.classList.remove("picking");
  const frame = $("page-frame");
  frame.classList.remove("picking");
  frame.tabIndex = -1;
  drawOverlay();
  announce(keep ? `${fieldNameOf(pick.row)} corrected to "${pick.input.value}".` : "Picking cancelled.");
  if (document.body.contains(pick.input)) pick.input.focus();
}

function pickedText() {
  const page = layoutPage(pages.number);
  if (!page || !pages.pick) return "";
  return [...pages.pick.selected].sort((a, b) => a - b).map((i) => page.words[i].text).join(" ");
}

function toggleWord(index) {
  const pick = pages.pick;
  const page = layoutPage(pages.number);
  if (!pick || !page || !page.words[index]) return;
  if (REDACTED_WORD.test(page.words[index].text)) {
    announce("That word is personal data and redacted: it cannot be picked."); drawOverlay(); return;
  }
  if (pick.selected.has(index)) pick.selected.delete(index); else pick.selected.add(index);
  pick.input.value = pickedText();
  drawOverlay();
  describeCursor();
}

function describeCursor() {
  const page = layoutPage(pages.number);
  const pick = pages.pick;
  if (!page || !pick || !page.words.length) return;
  const word = page.words[pick.cursor];
  announce(`Word ${pick.cursor + 1} of ${page.words.length}: "${word.text}"${pick.selected.has(pick.cursor) ? ", picked" : ""}. ${fieldNameOf(pick.row)}: "${pick.input.value}"`);
}

function announce(text) { $("pick-status").textContent = text; }

// Arrow keys: left/right the previous/next word in reading order; up/down the nearest word
// on the line above/below.
function moveCursor(key) {
  const page = layoutPage(pages.number);
  const pick = pages.pick;
  if (!page || !pick || !page.words.length) return;
  const n = page.words.length;
  if (key === "ArrowRight") pick.cursor = Math.min(n - 1, pick.cursor + 1);
  else if (key === "ArrowLeft") pick.cursor = Math.max(0, pick.cursor - 1);
  else {
    const cur = page.words[pick.cursor].box;
    const cx = (cur[0] + cur[2]) / 2, cy = (cur[1] + cur[3]) / 2;
    const down = key === "ArrowDown";
    const others = page.words.map((w, i) => ({ i, cx: (w.box[0] + w.box[2]) / 2, cy: (w.box[1] + w.box[3]) / 2 }))
      .filter((w) => (down ? w.cy > cur[3] : w.cy < cur[1]));
    if (others.length) {
      const lineY = down ? Math.min(...others.map((w) => w.cy)) : Math.max(...others.map((w) => w.cy));
      const height = cur[3] - cur[1];
      const line = others.filter((w) => Math.abs(w.cy - lineY) <= height / 2);
      line.sort((a, b) => Math.abs(a.cx - cx) - Math.abs(b.cx - cx));
      pick.cursor = line[0].i;
    }
  }
  drawOverlay();
  describeCursor();
}

$("page-frame").addEventListener("keydown", (event) => {
  if (!pages.pick) return;
  const key = event.key;
  if (key === "Tab") return;
  event.preventDefault();
  event.stopPropagation();   // the console's shortcuts (a, r, ...) do not apply while picking
  if (key.startsWith("Arrow")) moveCursor(key);
  else if (key === " " || key === "Spacebar") toggleWord(pages.pick.cursor);
  else if (key === "Enter") endPick(true);
  else if (key === "Escape") endPick(false);
});
$("page-prev").addEventListener("click", () => { endPick(false); loadPage(pages.number - 1); });
$("page-next").addEventListener("click", () => { endPick(false); loadPage(pages.number + 1); });

$("add-field").addEventListener("click", () => {
  const row = fieldRow("", "", null, true, null);
  document.querySelector("#i-fields tbody").append(row);
  labelCells($("i-fields"));
  $("i-nofields").hidden = true;
  row.querySelector(".field-name").focus();
});

function editedFields() {
  const out = {};
  document.querySelectorAll("#i-fields tbody tr").forEach((row) => {
    const named = row.querySelector(".field-name");
    const name = named ? named.value.trim() : row.dataset.field;
    const value = row.querySelector(".field-edit").value.trim();
    if (name && value) out[name] = value;
  });
  return out;
}

// may this key claim and decide items? (false for an auditor; older servers: assume yes)
function mayDecide() { return Boolean(state.session) && state.session.may_act !== false; }

function mine() { return state.item && state.item.state === "CLAIMED" && state.item.claimed_by === state.reviewer; }

// an admin (a review lead) may take back an item another reviewer holds: Release gives it back
function takesBack() {
  return Boolean(state.session) && state.session.role === "admin" && Boolean(state.item) &&
    state.item.state === "CLAIMED" && state.item.claimed_by !== state.reviewer;
}

function updateButtons() {
  const item = state.item;
  const open = item && (item.state === "PENDING" || item.state === "CLAIMED");
  $("claim").disabled = !open || mine() || item.state === "BACKLOGGED" || approvedByMe();
  $("release").disabled = !(mine() || takesBack());
  for (const id of ["approve", "reject", "modify"]) $(id).disabled = !mine();
}

// What a verdict or claim did, said where the reviewer sees it (at 200% zoom too).
function setStatus(text, error) {
  $("status").textContent = text;
  $("status").classList.toggle("error", !!error);
  if (text && !$("item-view").hidden) $("status").scrollIntoView({ block: "nearest" });
}

function scheduleRenew(item) {
  clearTimeout(state.renewTimer);
  const left = Date.parse(item.lease_expires_at) - Date.now();
  state.renewTimer = setTimeout(async () => {
    if (!mine()) return;
    try {
      const data = await api("POST", `/api/items/${item.item_id}/renew`, { reviewer_id: state.reviewer });
      state.item = data.item; await openItem(item.item_id, true);
    } catch (err) { setStatus(`lease renewal failed: ${err.message}`, true); }
  }, Math.max(1000, left / 2));
}

// A verdict on an item this reviewer does not hold: read it again (the page may be stale:
// another reviewer may have decided or claimed it) and say what stands in the way.
async function notMine(itemId) {
  await openItem(itemId, true);
  const fresh = state.item;
  if (fresh && !["PENDING", "CLAIMED"].includes(fresh.state)) {
    setStatus(`This item is ${fresh.state.toLowerCase()}${fresh.resolution ? ` (${fresh.resolution})` : ""}: ` +
      "there is nothing left to decide.", true);
  } else if (fresh && fresh.state === "CLAIMED" && fresh.claimed_by !== state.reviewer) {
    setStatus(`${fresh.claimed_by} holds this item now.`, true);
  } else {
    setStatus("Claim the item first (c).", true);
  }
}

async function act(action) {
  const item = state.item;
  if (!item) return;
  let message;
  try {
    if (action === "claim") {
      await api("POST", `/api/items/${item.item_id}/claim`, { reviewer_id: state.reviewer });
      message = `Claimed by ${state.reviewer}.`;
    } else if (action === "release") {
      const holder = takesBack() ? item.claimed_by : "";
      await api("POST", `/api/items/${item.item_id}/release`, { reviewer_id: state.reviewer });
      message = holder ? `Taken back from ${holder}; back in the queue.` : "Released to the queue.";
    } else {
      const body = { reviewer_id: state.reviewer, verdict: action, reason: $("reason").value.trim() };
      if (action === "reject" && !body.reason && (mine() || item.state === "PENDING")) {
        // the Reason box takes the focus whether or not the item is claimed yet, so what the
        // reviewer types next is the reason, never a run of shortcuts (an "a" approves)
        state.pending = "reject";
        setStatus(mine() ? "Type a reason for rejecting, then press Enter."
          : "Type a reason for rejecting, then press Enter: the item is claimed first.", true);
        $("reason").focus();
        return;
      }
      if (!mine() && action === "reject" && item.state === "PENDING") {
        // a typed rejection of an open item claims it first, as `switchyard review reject` does
        state.item = (await api("POST", `/api/items/${item.item_id}/claim`, { reviewer_id: state.reviewer })).item;
      }
      if (!mine()) { await notMine(item.item_id); return; }
      const edits = editedFields();
      const typed = Object.keys(edits);
      if (action === "approve" && typed.length) {
        // a plain approval carries no edits: never drop what the reviewer typed in silence
        setStatus(`You typed a corrected ${typed.join(", ")}: approve with edits (m), or clear ` +
          `the corrected value${typed.length > 1 ? "s" : ""} to approve as proposed.`, true);
        return;
      }
      if (action === "modify") {
        body.modified_fields = edits;
        if (!typed.length) {
          setStatus("Enter a corrected value for at least one field, then press Ctrl+Enter.", true);
          const first = document.querySelector("#i-fields .field-edit");
          if (first) first.focus();
          return;
        }
      }
      const data = await api("POST", `/api/items/${item.item_id}/verdict`, body);
      state.pending = null;
      const verb = { approve: "Approved", reject: "Rejected", modify: "Approved with edits" }[action];
      message = data.decision_id ? `${verb}: decision ${data.decision_id} sent to the executor.`
        : `${verb}: ${data.item.approvals.text}; another reviewer must approve before anything runs.`;
    }
    // Re-read the item before saying it is done, so the next shortcut acts on fresh state.
    await openItem(item.item_id, true);
    setStatus(message);
    scheduleRefresh();
  } catch (err) {
    const violations = err.body && err.body.field_violations ? Object.entries(err.body.field_violations) : [];
    // the fields, unless the message already names each (it usually does: said once)
    const fields = violations.length && !violations.every(([, v]) => err.message.includes(v))
      ? ` (${violations.map(([k, v]) => `${k}: ${v}`).join("; ")})` : "";
    if (err.status === 409) await openItem(item.item_id, true);
    setStatus(`${err.message}${fields}`, true);
  }
}

for (const action of ["claim", "release", "approve", "reject", "modify"]) $(action).addEventListener("click", () => act(action));
$("back").addEventListener("click", backToQueue);

function backToQueue() {
  clearTimeout(state.renewTimer);
  endPick(false);
  state.returnTo = state.item ? state.item.item_id : null;   // its row takes the focus back
  state.item = null;
  linkTo(null);
  show("queue-view");
  refresh();
}

// -- keyboard --------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  if (!state.session) return;
  const target = event.target;
  const typing = target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
  const inItem = !$("item-view").hidden;
  if (event.key === "Escape") {
    if (typing) { target.blur(); return; }
    if (inItem) backToQueue();
    return;
  }
  if (typing) {
    if (inItem && target.id === "reason" && event.key === "Enter" && state.pending) { event.preventDefault(); act(state.pending); }
    if (inItem && event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.closest("#i-fields")) { event.preventDefault(); act("modify"); }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  // single-key shortcuts turned off: only Enter and the arrow keys act (Esc above)
  if (!state.shortcuts && event.key.length === 1) return;
  // a focused button (e.g. "Show more") takes Enter and Space itself
  if (target instanceof HTMLButtonElement && (event.key === "Enter" || event.key === " ")) return;
  const keys = inItem
    ? { ...(mayDecide() ? { c: () => act("claim"), u: () => act("release"), a: () => act("approve"), r: () => act("reject"), m: () => act("modify") } : {}),
        "[": () => { if (hasPages()) { endPick(false); loadPage(pages.number - 1); } },
        "]": () => { if (hasPages()) { endPick(false); loadPage(pages.number + 1); } } }
    : { j: () => moveSelection(1), k: () => moveSelection(-1), ArrowDown: () => moveSelection(1), ArrowUp: () => moveSelection(-1),
        Enter: () => { const item = state.items[state.selected]; if (item) openItem(item.item_id); },
        "/": () => $("f-queue").focus() };
  keys["?"] = () => $("help").showModal();
  const handler = keys[event.key];
  if (handler) { event.preventDefault(); handler(); }
});

// -- start -----------------------------------------------------------------------------------
window.addEventListener("hashchange", () => {  // a link pasted while signed in
  const linked = linkedItem();
  if (state.session && linked && (!state.item || state.item.item_id !== linked)) openItem(linked);
});
setInterval(tickClocks, 1000);
setInterval(() => { if (state.session && !document.hidden) refresh(); }, 15000);
if (state.key || state.reviewer) { signIn(); } else { signOut(""); }
