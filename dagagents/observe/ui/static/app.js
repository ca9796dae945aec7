// dagagents web view: folds trace events (from one SSE stream per run) into the page.
// No framework, no network beyond this origin.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, text) => {
  const e = document.createElementNS(
    ["svg", "rect", "text", "path", "g", "title"].includes(tag) ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml",
    tag
  );
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const money = (x) => "$" + (x || 0).toFixed(4);
const MAX_DRAWN = 400;
const STATUSES = ["pending", "queued", "running", "waiting", "done", "cached", "failed", "skipped", "cancelled"];

const S = {
  run: null, graph: "", status: "running", nodes: new Map(), ended: false, t: 0, wall: null,
  maxCost: null, retries429: 0, retries529: 0, backoff: 0, rateWaits: 0, limits: null,
  selected: null, dirtyLayout: true, dirty: true,
  batches: new Map(),  // batch id -> { id, state, requests, nodes, reattached }
};
// The Message Batches API's processing_status, in the words the terminal view uses.
const BATCH_STATE = { in_progress: "processing", canceling: "canceling", ended: "ended" };

function node(name) {
  let n = S.nodes.get(name);
  if (!n) {
    n = { name, kind: "node", agent: null, model: null, deps: [], status: "pending", start: null, end: null,
          usage: null, cost: 0, retries: 0, key: null, text: "", prompt: null, system: null, error: null, calls: 0,
          batch: null };  // batch: "collecting" (waiting for the next batch) or the id of the one it waits in
    S.nodes.set(name, n);
    S.dirtyLayout = true;
  }
  return n;
}

function addDep(name, dep) {
  const n = node(name);
  node(dep);
  if (!n.deps.includes(dep)) { n.deps.push(dep); S.dirtyLayout = true; }
}

function settle(n, status) {
  n.status = status;
  if (S.selected === n.name) renderDrawer(true);
}

function apply(e) {
  S.t = Math.max(S.t, e.t || 0);
  const k = e.event;
  if (k === "token") {
    const n = node(e.node);
    n.text += e.text;
    if (S.selected === e.node) $("#drawer-stream").textContent = n.text;
    return;
  }
  S.dirty = true;
  switch (k) {
    case "run_start": S.run = e.run; S.graph = e.graph; break;
    case "prompt": { const n = node(e.node); n.prompt = e.prompt; n.system = e.system; if (S.selected === e.node) renderDrawer(false); break; }
    case "node_ready": { const n = node(e.node); if (n.status === "pending") n.status = "queued"; break; }
    case "node_start": {
      const n = node(e.node); n.start = e.t; n.text = ""; n.kind = e.kind || n.kind;
      n.agent = e.agent || n.agent; n.model = e.model || n.model; settle(n, "running"); break;
    }
    case "message": addDep(e.dst, e.src); break;
    case "cache_hit": { const n = node(e.node); n.start = n.end = e.t; n.key = e.key; n.cost = e.saved_cost || 0; settle(n, "cached"); break; }
    case "node_complete": {
      const n = node(e.node); n.end = e.t; n.key = e.key; n.usage = e.usage; n.cost = e.cost || 0;
      if (n.start === null) n.start = e.t - (e.duration || 0);
      settle(n, "done"); break;
    }
    case "node_error": {
      const n = node(e.node); n.end = e.t; n.error = e.error;
      settle(n, ["cancelled", "interrupted"].includes(e.error) ? "cancelled" : "failed"); break;
    }
    case "node_skipped": { const n = node(e.node); n.error = "skipped because " + e.because; settle(n, "skipped"); break; }
    case "node_waiting": { const n = node(e.node); n.prompt = e.prompt || n.prompt; settle(n, "waiting"); break; }
    case "approval": { const n = node(e.node); n.error = e.approved ? null : "rejected: " + (e.reason || ""); break; }
    case "retry": {
      const n = node(e.node); n.retries += 1; n.text = "";
      if (e.status === 429) S.retries429 += 1;
      if (e.status === 529) S.retries529 += 1;
      S.backoff += e.wait || 0; break;
    }
    case "rate_limited": S.rateWaits += 1; S.backoff += e.wait || 0; break;
    case "llm_call": { const n = node(e.node); n.calls += 1; break; }
    case "expand":
      for (const name of e.added) {
        const n = node(name);
        n.agent = (e.agents || {})[name] || n.agent; n.model = (e.models || {})[name] || n.model;
      }
      for (const [src, dst] of e.edges) addDep(dst, src);
      break;
    case "batch_wait": node(e.node).batch = "collecting"; break;
    case "batch_submitted":
      S.batches.set(e.batch_id, { id: e.batch_id, state: "submitted", requests: e.requests, nodes: e.nodes || [] });
      for (const name of e.nodes || []) node(name).batch = e.batch_id;
      break;
    case "batch_reattached": {
      const b = S.batches.get(e.batch_id) || { id: e.batch_id, state: "submitted", requests: null, nodes: [], reattached: true };
      if (e.node && !b.nodes.includes(e.node)) b.nodes.push(e.node);
      S.batches.set(e.batch_id, b);
      if (e.node) node(e.node).batch = e.batch_id;
      break;
    }
    case "batch_status": {
      const b = S.batches.get(e.batch_id);
      if (b) b.state = BATCH_STATE[e.status] || e.status;
      break;
    }
    case "limits": S.limits = e; if (e.max_cost_usd) S.maxCost = e.max_cost_usd; break;
    case "run_end": S.ended = true; S.status = e.status; S.wall = e.wall; break;
  }
}

// ------------------------------------------------------------------ derived state
function effectiveStatus(n) {
  if (n.status !== "pending") return n.status;
  const ready = n.deps.every((d) => ["done", "cached"].includes((S.nodes.get(d) || {}).status));
  return ready && !S.ended ? "queued" : "pending";
}

function layers() {
  const depth = new Map();
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0;
    seen.add(name);
    const n = S.nodes.get(name);
    const d = n && n.deps.length ? 1 + Math.max(...n.deps.map((x) => visit(x, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  for (const name of S.nodes.keys()) visit(name, new Set());
  return depth;
}

function criticalPath() {
  // Longest chain of actual durations ending at the node that finished last.
  const done = [...S.nodes.values()].filter((n) => n.end !== null && n.start !== null);
  if (!done.length) return new Set();
  const memo = new Map();
  const best = (n) => {
    if (memo.has(n.name)) return memo.get(n.name);
    let top = { len: 0, path: [] };
    for (const d of n.deps) {
      const dn = S.nodes.get(d);
      if (dn && dn.end !== null) { const r = best(dn); if (r.len > top.len) top = r; }
    }
    const r = { len: top.len + (n.end - n.start), path: [...top.path, n.name] };
    memo.set(n.name, r);
    return r;
  };
  let top = { len: -1, path: [] };
  for (const n of done) { const r = best(n); if (r.len > top.len) top = r; }
  return new Set(top.path);
}

// ------------------------------------------------------------------ rendering
function renderDag() {
  const box = $("#dag");
  const names = [...S.nodes.keys()];
  if (names.length > MAX_DRAWN) {
    const counts = {};
    for (const n of S.nodes.values()) { const s = effectiveStatus(n); counts[s] = (counts[s] || 0) + 1; }
    box.textContent = `${names.length} nodes (too many to draw): ` +
      Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
    return;
  }
  const critical = S.ended ? criticalPath() : new Set();
  if (S.dirtyLayout || !box.querySelector("svg")) {
    S.dirtyLayout = false;
    const depth = layers();
    const cols = new Map();
    for (const name of names) {
      const d = depth.get(name) || 0;
      if (!cols.has(d)) cols.set(d, []);
      cols.get(d).push(name);
    }
    const W = 150, H = 30, GX = 60, GY = 14, pos = new Map();
    let maxRows = 0;
    for (const [d, col] of cols) {
      col.forEach((name, i) => pos.set(name, { x: 10 + d * (W + GX), y: 10 + i * (H + GY) }));
      maxRows = Math.max(maxRows, col.length);
    }
    const svg = el("svg", { width: 20 + cols.size * (W + GX), height: 20 + maxRows * (H + GY) });
    for (const n of S.nodes.values()) {
      const b = pos.get(n.name);
      for (const d of n.deps) {
        const a = pos.get(d);
        if (!a) continue;
        const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
        svg.appendChild(el("path", { class: "edge", "data-src": d, "data-dst": n.name,
          d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
      }
    }
    for (const name of names) {
      const p = pos.get(name);
      const g = el("g", { class: "node", "data-node": name, transform: `translate(${p.x},${p.y})` });
      g.appendChild(el("rect", { width: W, height: H }));
      const label = name.length > 22 ? name.slice(0, 21) + "…" : name;
      g.appendChild(el("text", { x: 8, y: 19 }, label));
      g.appendChild(el("title", {}, name));
      g.addEventListener("click", () => select(name));
      svg.appendChild(g);
    }
    box.replaceChildren(svg);
  }
  for (const g of box.querySelectorAll("g.node")) {
    const n = S.nodes.get(g.dataset.node);
    const s = effectiveStatus(n);
    if (g.dataset.status !== s) g.dataset.status = s;
    const waitsIn = batchOf(n);
    if ((g.dataset.batch || "") !== waitsIn) { if (waitsIn) g.dataset.batch = waitsIn; else delete g.dataset.batch; }
    g.classList.toggle("critical", critical.has(n.name));
    g.classList.toggle("selected", S.selected === n.name);
  }
  for (const p of box.querySelectorAll("path.edge")) {
    p.classList.toggle("critical", critical.has(p.dataset.src) && critical.has(p.dataset.dst));
  }
}

// What a running node waits for in batch mode: "collecting" (the next batch), or the state of
// the batch its request is in ("submitted", "processing", "ended"); "" when it waits in none.
function batchOf(n) {
  if (n.status !== "running" || !n.batch || S.ended) return "";
  if (n.batch === "collecting") return "collecting";
  const b = S.batches.get(n.batch);
  return b ? b.state : "";
}

function renderBatches() {
  $("#batches").hidden = S.batches.size === 0;
  if (!S.batches.size) return;
  const all = [...S.batches.values()];
  const ended = all.filter((b) => b.state === "ended").length;
  $("#batch-summary").textContent = `${all.length} submitted · ${all.length - ended} processing · ${ended} ended`;
  const rows = all.map((b) => {
    const waiting = b.nodes.filter((name) => (S.nodes.get(name) || {}).batch === b.id && batchOf(S.nodes.get(name)));
    return `<tr data-batch="${esc(b.id)}" data-state="${esc(b.state)}"><td title="${esc(b.id)}">…${esc(b.id.slice(-8))}${b.reattached ? " (re-attached)" : ""}</td>` +
      `<td>${esc(b.state)}</td><td class="num">${b.requests === null || b.requests === undefined ? "" : b.requests}</td>` +
      `<td>${waiting.map(esc).join(", ")}</td></tr>`;
  });
  const body = $("#batch-list tbody");
  const html = rows.join("");
  if (body.dataset.html !== html) { body.innerHTML = html; body.dataset.html = html; }
  const collecting = [...S.nodes.values()].filter((n) => batchOf(n) === "collecting").map((n) => n.name);
  $("#batch-collecting").textContent = collecting.length ? `waiting for the next batch: ${collecting.join(", ")}` : "";
}

function meter(bucket) {
  if (!bucket) return "—";
  const [level, cap] = bucket;
  const pct = cap > 0 ? Math.max(0, Math.min(100, (100 * level) / cap)) : 0;
  return `<div class="meter" title="${Math.round(level)} of ${Math.round(cap)} left"><i style="width:${pct}%"></i></div>`;
}

function renderLimits() {
  const running = [...S.nodes.values()].filter((n) => n.status === "running" && n.agent).length;
  let inFlight = running;
  const rows = [];
  if (S.limits && !S.ended) {
    inFlight = 0;
    for (const [model, m] of Object.entries(S.limits.models || {})) {
      inFlight += m.in_flight;
      const lim = m.limit === null ? "∞" : (+m.limit).toFixed(m.limit % 1 ? 1 : 0);
      rows.push(`<tr><td>${esc(model)}</td><td>${m.in_flight} / ${lim}${m.backoff > 0 ? ` · backoff ${m.backoff.toFixed(1)}s` : ""}</td>` +
        `<td>${meter(m.rpm)}</td><td>${meter(m.itpm)}</td><td>${meter(m.otpm)}</td></tr>`);
    }
  } else if (S.ended) inFlight = 0;
  $("#in-flight").textContent = inFlight;
  $("#count-429").textContent = S.retries429;
  $("#count-529").textContent = S.retries529;
  $("#backoff").textContent = S.backoff.toFixed(1) + "s";
  $("#rate-waits").textContent = S.rateWaits;
  const body = $("#model-limits tbody");
  const html = rows.join("");
  if (body.dataset.html !== html) { body.innerHTML = html; body.dataset.html = html; }
}

function renderCost() {
  const by = new Map();
  let total = 0;
  for (const n of S.nodes.values()) {
    if (n.status !== "done" || !n.agent) continue;
    const key = `${n.agent} · ${n.model}`;
    const r = by.get(key) || { calls: 0, cost: 0 };
    r.calls += n.calls || 1; r.cost += n.cost; by.set(key, r); total += n.cost;
  }
  $("#cost-total").textContent = money(total) + (S.maxCost ? ` of ${money(S.maxCost)}` : "");
  $("#budget-fill").style.width = S.maxCost ? Math.min(100, (100 * total) / S.maxCost) + "%" : "0";
  const rows = [...by.entries()].sort((a, b) => b[1].cost - a[1].cost)
    .map(([k, r]) => `<tr><td>${esc(k)}</td><td class="num">${r.calls}</td><td class="num">${money(r.cost)}</td></tr>`);
  $("#cost-by tbody").innerHTML = rows.join("");
}

function idealSchedule() {
  // Infinite slots: each node starts when its last dependency ends (the lower bound).
  const start = new Map(), end = new Map();
  const visit = (n) => {
    if (end.has(n.name)) return end.get(n.name);
    end.set(n.name, 0);
    let s = 0;
    for (const d of n.deps) { const dn = S.nodes.get(d); if (dn) s = Math.max(s, visit(dn)); }
    const dur = n.end !== null && n.start !== null && n.status === "done" ? n.end - n.start : 0;
    start.set(n.name, s); end.set(n.name, s + dur);
    return s + dur;
  };
  let wall = 0;
  for (const n of S.nodes.values()) wall = Math.max(wall, visit(n));
  return { start, end, wall };
}

function renderTimeline() {
  const box = $("#timeline");
  const started = [...S.nodes.values()].filter((n) => n.start !== null).sort((a, b) => a.start - b.start);
  const shown = started.slice(0, 200);
  const span = Math.max(S.wall || S.t, 0.001);
  const width = Math.max(300, box.clientWidth - 160);
  const ideal = S.ended ? idealSchedule() : null;
  const rows = shown.map((n) => {
    const end = n.end !== null ? n.end : S.t;
    const left = 150 + (width * n.start) / span, w = Math.max(2, (width * (end - n.start)) / span);
    let bars = `<div class="tl-bar ${n.status}" style="left:${left}px;width:${w}px" title="${esc(n.name)} ${(end - n.start).toFixed(2)}s"></div>`;
    if (ideal && ideal.end.get(n.name) > ideal.start.get(n.name)) {
      const il = 150 + (width * ideal.start.get(n.name)) / span;
      const iw = Math.max(2, (width * (ideal.end.get(n.name) - ideal.start.get(n.name))) / span);
      bars += `<div class="tl-bar ideal" style="left:${il}px;width:${iw}px"></div>`;
    }
    return `<div class="tl-row" data-node="${esc(n.name)}"><span class="tl-label">${esc(n.name)}</span>${bars}</div>`;
  });
  if (started.length > shown.length) rows.push(`<div class="sub">… ${started.length - shown.length} more nodes</div>`);
  box.innerHTML = rows.join("");
  $("#ideal-note").textContent = ideal
    ? `actual ${(S.wall || 0).toFixed(2)}s · ideal schedule (unlimited slots, grey) ${ideal.wall.toFixed(2)}s`
    : "";
}

function renderApprovals() {
  const waiting = [...S.nodes.values()].filter((n) => n.status === "waiting");
  $("#approvals").hidden = waiting.length === 0;
  const list = $("#approval-list");
  const have = [...list.children].map((li) => li.dataset.node).join("\n");
  if (have === waiting.map((n) => n.name).join("\n")) return;
  list.replaceChildren(...waiting.map((n) => {
    const li = el("li", { "data-node": n.name });
    li.appendChild(el("b", {}, n.name));
    li.appendChild(document.createTextNode(" " + (n.prompt || "") + " "));
    const ok = el("button", { class: "approve" }, "Approve");
    const no = el("button", { class: "reject" }, "Reject");
    ok.onclick = () => decide(n.name, true);
    no.onclick = () => decide(n.name, false);
    li.append(ok, " ", no);
    return li;
  }));
}

async function decide(name, approved) {
  const reason = approved ? null : (window.prompt(`Why reject ${name}?`, "rejected in the web view") || "rejected");
  const r = await fetch(`/api/runs/${encodeURIComponent(S.run)}/${approved ? "approve" : "reject"}/${encodeURIComponent(name)}`,
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ reason }) });
  if (!r.ok) { alert((await r.json()).error || "the decision was refused"); return; }
  const n = S.nodes.get(name);
  if (n && S.streamDone) {  // a stored run: the decision waits for the next run to use it
    n.status = approved ? "approved" : "rejected"; S.dirty = true;
  }
  if (S.selected === name) $("#drawer-approve").hidden = true;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ------------------------------------------------------------------ the drawer
function select(name) {
  S.selected = name;
  $("#drawer").hidden = false;
  document.body.classList.add("drawer-open");
  $("#drawer-output").textContent = "(none yet)";
  $("#drawer-output").classList.add("sub");
  $("#drawer-prompt").textContent = "(not sent yet)";
  S.dirty = true;
  renderDrawer(true);
}

async function renderDrawer(fetchOutput) {
  const n = S.nodes.get(S.selected);
  if (!n) return;
  $("#drawer").dataset.node = n.name;
  $("#drawer-title").textContent = n.name;
  const tokens = n.usage ? `${n.usage.input_tokens || 0} in / ${n.usage.output_tokens || 0} out` : "";
  const parts = [effectiveStatus(n), n.agent ? `${n.agent} · ${n.model}` : n.kind, tokens,
    n.cost ? money(n.cost) : "", n.retries ? `${n.retries} retries` : "", n.key ? `key ${n.key.slice(0, 12)}` : "", n.error || "",
    batchOf(n) === "collecting" ? "waiting for the next batch" : (batchOf(n) ? `in batch ${n.batch} (${batchOf(n)})` : "")];
  $("#drawer-meta").textContent = parts.filter(Boolean).join(" · ");
  $("#drawer-approve").hidden = n.status !== "waiting";
  $("#drawer-stream").textContent = n.text;
  if (n.prompt !== null) $("#drawer-prompt").textContent = (n.system ? `[system] ${n.system}\n\n` : "") + n.prompt;
  if (!fetchOutput || !S.run || !["done", "cached", "failed", "skipped"].includes(n.status)) return;
  const r = await fetch(`/api/runs/${encodeURIComponent(S.run)}/nodes/${encodeURIComponent(n.name)}`);
  if (!r.ok || S.selected !== n.name) return;
  const d = await r.json();
  $("#drawer-output").textContent = d.text !== null && d.text !== undefined ? d.text : (d.note || "(no output)");
  $("#drawer-output").classList.toggle("sub", d.text === null || d.text === undefined);
  if (d.prompt && n.prompt === null) {
    n.prompt = d.prompt; n.system = d.system;
    $("#drawer-prompt").textContent = (d.system ? `[system] ${d.system}\n\n` : "") + d.prompt;
  }
}

// ------------------------------------------------------------------ pages
function tick() {
  // Redraw at most every 150 ms, and for big runs no more than 5% of the time.
  const t0 = performance.now();
  render();
  const spent = performance.now() - t0;
  setTimeout(tick, Math.max(150, 20 * spent));
}

function render() {
  if (S.dirty) {
    S.dirty = false;
    renderDag(); renderLimits(); renderBatches(); renderCost(); renderTimeline(); renderApprovals();
    if (S.selected) renderDrawer(false);  // its status line follows the run (batches, retries)
    const pill = $("#run-status");
    const waiting = [...S.nodes.values()].some((n) => n.status === "waiting");
    const status = S.ended ? S.status : (waiting ? "waiting" : "running");
    pill.textContent = status; pill.className = "pill " + status;
    $("#title").textContent = `${S.graph} · run ${S.run}`;
    if (S.streamDone) document.body.dataset.ended = "1";  // drawn in its final state
  }
  $("#clock").textContent = S.ended ? `wall ${(S.wall || 0).toFixed(2)}s` : `${S.t.toFixed(1)}s`;
}

async function runPage(runId) {
  $("#run-view").hidden = false;
  S.run = runId;
  $("#legend").innerHTML = STATUSES.map((s) => `<span><i style="background:var(--${s})"></i>${s}</span>`).join("");
  $("#drawer-close").onclick = () => {
    $("#drawer").hidden = true; S.selected = null; S.dirty = true;
    document.body.classList.remove("drawer-open");
  };
  $("#drawer-approve .approve").onclick = () => decide(S.selected, true);
  $("#drawer-approve .reject").onclick = () => decide(S.selected, false);
  const g = await (await fetch(`/api/runs/${encodeURIComponent(runId)}/graph`)).json();
  S.graph = g.graph || "";
  S.maxCost = g.max_cost_usd || null;
  for (const [name, info] of Object.entries(g.nodes || {})) {
    const n = node(name);
    n.kind = info.kind || n.kind; n.agent = info.agent || null; n.model = info.model || null;
    for (const d of info.depends_on || []) addDep(name, d);
  }
  S.dirty = true;
  const source = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events`);
  source.addEventListener("events", (m) => { for (const e of JSON.parse(m.data)) apply(e); });
  source.addEventListener("end", () => { source.close(); S.ended = true; S.streamDone = true; S.dirty = true; });
  tick();
}

async function listPage() {
  $("#list-view").hidden = false;
  $("#title").textContent = "runs";
  const load = async () => {
    const data = await (await fetch("/api/runs")).json();
    $("#runs tbody").innerHTML = data.runs.map((r) =>
      `<tr data-run="${esc(r.run)}"><td><a href="/run/${encodeURIComponent(r.run)}">${esc(r.run)}</a></td><td>${esc(r.graph || "")}</td>` +
      `<td><span class="pill ${esc(r.status)}">${esc(r.status)}</span></td>` +
      `<td class="num">${r.wall !== null && r.wall !== undefined ? r.wall.toFixed(2) + "s" : ""}</td>` +
      `<td class="num">${r.cost !== null && r.cost !== undefined ? money(r.cost) : ""}</td></tr>`).join("");
  };
  await load();
  setInterval(load, 2000);
}

const m = location.pathname.match(/^\/run\/(.+)$/);
if (m) runPage(decodeURIComponent(m[1])); else listPage();
