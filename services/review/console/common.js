// Shared by the review console (console.js) and the operator console (operator.js): DOM
// helpers and the JSON API client. Every call carries "Authorization: Bearer <API key>";
// content from the server is only ever rendered as text (textContent, never innerHTML).
"use strict";

const $ = (id) => document.getElementById(id);

// Characters that make text read otherwise than it is stored: bidirectional overrides,
// embeddings and isolates (a file name "invoice_scan<U+202E>fdp.exe" reads
// "invoice_scanexe.pdf") and invisible ones ("ad<U+200B>min" reads "admin"). Whatever a
// submitter wrote is shown with each of them as a visible mark, so it reads as stored.
const HIDDEN_CHARS = /[\u202A-\u202E\u2066-\u2069\u200B\u2060\u180E\uFEFF]/g;
function shown(text) {
  return String(text).replace(HIDDEN_CHARS, (c) => `\u27E6U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}\u27E7`);
}

function setText(node, text) { node.textContent = shown(text); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = shown(text);
  if (cls) node.className = cls;
  return node;
}

// A refused call: the review API answers {"error": ...}, the operator API problem documents
// ({"detail": ..., "errors": [{field, detail}]}).
class ApiError extends Error {
  constructor(status, body) {
    super(body && (body.error || body.detail) ? (body.error || body.detail) : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function apiCall(method, path, body, key) {
  const headers = { "Accept": "application/json" };
  if (key) headers["Authorization"] = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// The API key both consoles keep for this browser tab (sessionStorage, never a cookie).
const storedKey = () => sessionStorage.getItem("sy.key") || "";
