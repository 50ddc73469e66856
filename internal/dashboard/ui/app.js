// Panopticon dashboard. Plain JavaScript, no dependencies. Every string that
// came from the network is rendered with textContent, never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const flows = [];            // newest first
const seen = new Set();      // flow ids already shown
let maxFlows = 1000;
let selectedId = null;
let lastState = null;
let renderQueued = false;
let stateTimer = null;
let freshIds = new Set();

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "title") e.title = v;
    else if (k === "onclick") e.addEventListener("click", v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function td(text, cls) { return el("td", { class: cls || "", text: text == null ? "" : String(text) }); }

function fmtBytes(n) {
  if (!n) return "0";
  if (n < 1000) return n + " B";
  const units = ["kB", "MB", "GB", "TB"];
  let f = n, u = -1;
  do { f /= 1000; u++; } while (f >= 1000 && u < units.length - 1);
  return f.toFixed(1) + " " + units[u];
}

function fmtTime(t) {
  const d = new Date(t);
  if (isNaN(d)) return "";
  return d.toLocaleTimeString([], { hour12: false });
}

function fmtAgo(t) {
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return Math.floor(s) + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return new Date(t).toLocaleDateString();
}

function hostPort(f) {
  const h = f.host || "-";
  return f.port ? (h.includes(":") ? "[" + h + "]" : h) + ":" + f.port : h;
}

function toast(msg, isError) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast" + (isError ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), 3500);
}

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = {};
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error(data.error || r.status + " " + r.statusText);
  return data;
}

// ---- tabs ----
for (const b of document.querySelectorAll(".tab")) {
  b.addEventListener("click", () => {
    for (const x of document.querySelectorAll(".tab")) x.classList.toggle("active", x === b);
    for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === "tab-" + b.dataset.tab);
  });
}

// ---- flows ----
function matches(f) {
  const kind = $("#f-kind").value, dec = $("#f-decision").value;
  const host = $("#f-host").value.trim().toLowerCase(), text = $("#f-text").value.trim().toLowerCase();
  if (kind && f.kind !== kind) return false;
  if (dec && f.decision !== dec) return false;
  if (host && !(f.host || "").toLowerCase().includes(host)) return false;
  if (text && !JSON.stringify(f).toLowerCase().includes(text)) return false;
  return true;
}

function flowRow(f) {
  const req = [f.method, f.path].filter(Boolean).join(" ");
  const tr = el("tr", { "data-id": String(f.id), "data-host": f.host || "", "data-decision": f.decision || "" },
    td(fmtTime(f.time), "time"),
    el("td", {}, el("span", { class: "pill kind", text: f.kind || "" })),
    el("td", {}, el("span", { class: "pill " + (f.decision || ""), text: f.decision || "" })),
    td(hostPort(f), "host"),
    td(req, "req"),
    td(f.status || "", "num"),
    td(f.decision === "allow" ? fmtBytes((f.bytes_in || 0) + (f.bytes_out || 0)) : "", "num"),
    td(f.decision === "allow" ? f.duration_ms : "", "num"),
    td(f.reason || "", "reason"),
  );
  tr.title = f.reason || "";
  if (f.id === selectedId) tr.classList.add("selected");
  if (freshIds.has(f.id)) tr.classList.add("new");
  tr.addEventListener("click", () => showDetails(f));
  return tr;
}

function renderFlows() {
  renderQueued = false;
  if ($("#f-pause").checked) return;
  const body = $("#flows tbody");
  const rows = [];
  for (const f of flows) if (matches(f)) rows.push(flowRow(f));
  body.replaceChildren(...rows);
  freshIds = new Set();
  $("#flows-empty").classList.toggle("hidden", rows.length > 0);
  $("#flow-count").textContent = rows.length === flows.length ? flows.length + " flows" : rows.length + " of " + flows.length + " flows";
}

function queueRender() {
  if (!renderQueued) { renderQueued = true; setTimeout(() => requestAnimationFrame(renderFlows), 150); }
}

function addFlow(f) {
  if (seen.has(f.id)) return;
  seen.add(f.id);
  freshIds.add(f.id);
  // Flows arrive in id order; keep newest first.
  let i = 0;
  while (i < flows.length && flows[i].id > f.id) i++;
  flows.splice(i, 0, f);
  while (flows.length > maxFlows) seen.delete(flows.pop().id);
  queueRender();
}

function showDetails(f) {
  selectedId = f.id;
  const dl = $("#details-body");
  const rows = [];
  const add = (k, v) => { if (v !== undefined && v !== null && v !== "") rows.push(el("dt", { text: k }), el("dd", { text: String(v) })); };
  add("time", new Date(f.time).toISOString());
  add("kind", f.kind); add("decision", f.decision); add("reason", f.reason);
  add("client", f.client); add("host", f.host); add("port", f.port);
  add("method", f.method); add("path", f.path); add("status", f.status);
  add("bytes in", f.bytes_in); add("bytes out", f.bytes_out); add("duration", f.duration_ms + " ms");
  add("secrets", (f.secrets || []).join(", "));
  for (const [k, v] of Object.entries(f.detail || {})) add(k, v);
  const headers = (title, h) => {
    const names = Object.keys(h || {}).sort();
    if (!names.length) return;
    rows.push(el("dt", { text: title, class: "section" }), el("dd", { text: "" }));
    for (const n of names) for (const v of h[n]) add(n, v);
  };
  headers("request headers", f.request_headers);
  headers("response headers", f.response_headers);
  dl.replaceChildren(...rows);
  $("#details").classList.remove("hidden");
  for (const tr of document.querySelectorAll("#flows tbody tr")) tr.classList.toggle("selected", tr.dataset.id === String(f.id));
}
$("#details-close").addEventListener("click", () => { selectedId = null; $("#details").classList.add("hidden"); queueRender(); });
for (const id of ["#f-kind", "#f-decision", "#f-host", "#f-text", "#f-pause"]) $(id).addEventListener("input", queueRender);

// ---- live stream ----
function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { $("#live").className = "dot"; $("#live-text").textContent = "live"; });
  es.addEventListener("error", () => { $("#live").className = "dot off"; $("#live-text").textContent = "reconnecting…"; });
  es.addEventListener("flow", (ev) => {
    try { addFlow(JSON.parse(ev.data)); } catch (_) { return; }
    scheduleState();
  });
}

// ---- summaries ----
function scheduleState() {
  if (stateTimer) return;
  stateTimer = setTimeout(() => { stateTimer = null; loadState(); }, 400);
}

async function loadState() {
  try {
    const r = await fetch("/api/state", { credentials: "same-origin" });
    if (r.status === 401) { location.reload(); return; }
    if (!r.ok) return;
    lastState = await r.json();
  } catch (_) { return; }
  renderState(lastState);
}

function actionButton(label, cls, fn) {
  return el("button", { class: cls, text: label, onclick: async (ev) => {
    ev.currentTarget.disabled = true;
    try { await fn(); } catch (e) { toast(e.message, true); }
    loadState();
  } });
}

function allow(patterns) {
  return post("/api/allow", { patterns }).then((d) => {
    toast(d.added.length ? "Allowed " + d.added.join(", ") : "Already allowed");
  });
}

function groupRow(g, audit) {
  const last = [g.path ? g.path : ""].join("");
  const buttons = el("div", { class: "row-actions" });
  if (g.pattern) buttons.append(actionButton("Allow", "primary allow", () => allow([g.pattern])));
  buttons.append(actionButton("Dismiss", "dismiss", () => post("/api/dismiss", { host: g.host, reason: g.reason, audit })));
  return el("tr", { "data-host": g.host, "data-reason": g.reason },
    td(g.port && g.kind !== "dns" ? hostPort(g) : g.host, "host"),
    td(g.reason, "reason"),
    el("td", {}, el("span", { class: "pill kind", text: g.kind })),
    td(g.count, "num"),
    el("td", { class: "time", title: new Date(g.last).toISOString(), text: fmtAgo(g.last) }),
    td(audit ? (g.pattern || "—") : last, "req"),
    el("td", {}, buttons),
  );
}

function renderState(st) {
  maxFlows = st.flow_buffer || maxFlows;
  const selftest = $("#selftest");
  if (st.selftest) {
    const ago = Math.max(0, Math.round((Date.now() - new Date(st.selftest.time)) / 1000));
    const escaped = (st.selftest.probes || []).filter(p => !p.blocked).map(p => p.name);
    const stale = ago > 120; // the healthcheck runs every few seconds; an old verdict proves little
    selftest.textContent = !st.selftest.ok ? "SELFTEST FAILED: " + escaped.join(", ") : stale ? "selftest stale" : "selftest ok";
    selftest.className = "badge" + (!st.selftest.ok ? " failed" : stale ? " audit" : " ok");
    selftest.title = (st.selftest.ok ? "IPv6, UDP, a direct IP and outside DNS were all blocked" : "got out: " + escaped.join(", ")) + " (" + ago + " s ago)";
  }
  const mode = $("#mode");
  mode.textContent = st.mode;
  mode.className = "badge" + (st.mode === "audit" ? " audit" : "");
  mode.title = st.mode === "audit" ? "MODE=audit: what the allowlist would block is let through and logged as would-block" : "MODE=enforce: what is not allowlisted is blocked";

  $("#blocked tbody").replaceChildren(...st.blocked.map((g) => groupRow(g, false)));
  $("#blocked-empty").classList.toggle("hidden", st.blocked.length > 0);
  const bc = $("#blocked-count");
  bc.textContent = st.blocked.length;
  bc.classList.toggle("hot", st.blocked.length > 0);

  $("#would tbody").replaceChildren(...st.would_block.map((g) => groupRow(g, true)));
  $("#would-empty").classList.toggle("hidden", st.would_block.length > 0);
  $("#would-count").textContent = st.would_block.length;
  const patterns = [...new Set(st.would_block.map((g) => g.pattern).filter(Boolean))];
  const all = $("#allow-all");
  all.disabled = patterns.length === 0;
  all.dataset.patterns = JSON.stringify(patterns);
  $("#would-lead").textContent = st.mode === "audit"
    ? "Audit mode: these flows were let through but the allowlist would block them. Add them, then switch to MODE=enforce."
    : "Would-block flows are recorded in audit mode (MODE=audit). Panopticon is enforcing: see Blocked.";

  $("#hosts tbody").replaceChildren(...st.hosts.map((h) => el("tr", { "data-host": h.host },
    td(h.host, "host"), td(h.requests, "num"), td(fmtBytes(h.bytes_in), "num"), td(fmtBytes(h.bytes_out), "num"),
    td(h.blocks + h.would_blocks, "num"),
    el("td", { class: "time", text: fmtAgo(h.last) }))));
  $("#hosts-empty").classList.toggle("hidden", st.hosts.length > 0);

  const rt = st.allowlist.runtime;
  $("#runtime tbody").replaceChildren(...rt.map((e) => el("tr", { "data-pattern": e.pattern },
    td(e.pattern, "host"), td(e.hits, "num"),
    el("td", {}, el("div", { class: "row-actions" },
      actionButton("Remove", "danger remove", () => post("/api/runtime/remove", { pattern: e.pattern }).then(() => toast("Removed " + e.pattern))))))));
  $("#runtime-empty").classList.toggle("hidden", rt.length > 0);
  $("#add-form").classList.toggle("hidden", !st.allowlist.editable);

  const file = st.allowlist.file;
  $("#file tbody").replaceChildren(...file.map((e) => el("tr", { "data-pattern": e.pattern },
    td(e.pattern, "host"), td(e.line, "num"), td(e.hits, "num"))));
  $("#file-empty").classList.toggle("hidden", file.length > 0);
  $("#file-source").textContent = file.length ? file[0].source : "";
}

$("#allow-all").addEventListener("click", async () => {
  const patterns = JSON.parse($("#allow-all").dataset.patterns || "[]");
  if (!patterns.length) return;
  try { await allow(patterns); } catch (e) { toast(e.message, true); }
  loadState();
});

$("#add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const p = $("#add-pattern").value.trim();
  if (!p) return;
  try { await allow([p]); $("#add-pattern").value = ""; } catch (e) { toast(e.message, true); }
  loadState();
});

setInterval(loadState, 5000);
setInterval(() => { if (lastState) renderState(lastState); }, 15000); // refresh "ago" columns
loadState();
connect();
