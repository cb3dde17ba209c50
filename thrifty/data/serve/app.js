// The page of `agent serve`: lists the runs and shows one live from its server-sent events.
// The token the user enters is kept in this tab's sessionStorage and sent as an Authorization header:
// it is never put in a URL. EventSource cannot send headers, so the stream is read with fetch().
"use strict";

const TOKEN_KEY = "thrifty-serve-token";
const LABELS = {
  total_tokens: "tokens", input_tokens: "input tokens", output_tokens: "output tokens",
  tool_calls: "tool calls", model_requests: "model calls", usd: "USD", seconds: "seconds",
};
const POLL_MS = 1500;

const state = { selected: null, stream: null, view: null, runs: new Map(), polling: null };
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function notice(text) {
  const el = $("notice");
  el.textContent = text || "";
  el.hidden = !text;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function label(dim) {
  return dim.startsWith("tool:") ? dim.slice(5) + " calls" : LABELS[dim] || dim;
}

function fmt(dim, value) {
  if (value === undefined || value === null || Number.isNaN(value)) return "—";
  if (dim === "usd") return "$" + Number(value).toFixed(4);
  if (dim === "seconds") return Number(value).toFixed(1) + " s";
  return Number.isInteger(value) ? value.toLocaleString("en") : Number(value).toFixed(2);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, { Authorization: "Bearer " + token() });
  const res = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  if (res.status === 401) {
    stopPolling();
    notice("The server refused the token. Enter the token the server was started with.");
    throw new Error("unauthorized");
  }
  return res;
}

// ------------------------------------------------------------------------------------------ runs list
async function pollRuns() {
  if (!token()) return;
  let data;
  try {
    const res = await api("/runs");
    data = await res.json();
  } catch (err) {
    return;
  }
  notice("");
  renderServer(data.server || {});
  renderRuns(data.runs || []);
}

function renderServer(server) {
  const limits = server.limits || {};
  const spent = server.spent || {};
  const parts = Object.keys(limits).map((dim) => `${label(dim)} ${fmt(dim, spent[dim] || 0)} of ${fmt(dim, limits[dim])}`);
  $("server-budget").textContent = parts.length ? "server: " + parts.join(" · ") : "";
}

function renderRuns(runs) {
  const body = document.querySelector("#runs tbody");
  body.replaceChildren();
  state.runs.clear();
  for (const run of runs) {
    state.runs.set(run.run_id, run);
    const row = el(
      "tr",
      { "data-run-id": run.run_id, class: run.run_id === state.selected ? "selected" : "" },
      el("td", {}, el("code", {}, run.run_id)),
      el("td", {}, el("span", { class: "status " + run.status }, run.status)),
      el("td", { class: "task", title: run.question || "" }, run.task || run.question || ""),
      el("td", { class: "num" }, fmt("usd", (run.spent || {}).usd || 0)),
    );
    row.addEventListener("click", () => select(run.run_id));
    body.append(row);
  }
  $("runs-empty").hidden = runs.length > 0;
  const current = state.runs.get(state.selected);
  if (current) {
    setStatus(current.status);
    if (current.status === "running" && !state.stream) openStream(state.selected);
  }
}

function startPolling() {
  stopPolling();
  pollRuns();
  state.polling = setInterval(pollRuns, POLL_MS);
}

// A time limit burns between events too: its bar is redrawn every half second while the run goes.
setInterval(() => {
  const view = state.view;
  if (view && view.live && "seconds" in view.limits) renderBars(view);
}, 500);

function stopPolling() {
  if (state.polling) clearInterval(state.polling);
  state.polling = null;
}

// ------------------------------------------------------------------------------------------ one run
function select(runId) {
  if (state.selected === runId && state.stream) return;
  state.selected = runId;
  history.replaceState(null, "", "#run=" + encodeURIComponent(runId));
  for (const row of document.querySelectorAll("#runs tbody tr")) {
    row.classList.toggle("selected", row.dataset.runId === runId);
  }
  openStream(runId);
}

function newView(runId) {
  $("detail").hidden = false;
  $("run-id").textContent = runId;
  $("run-question").textContent = "";
  $("run-meta").textContent = "";
  $("bars").replaceChildren();
  $("events").replaceChildren();
  $("tree").replaceChildren();
  $("tree-box").hidden = true;
  $("outcome").hidden = true;
  $("run-error").hidden = true;
  const run = state.runs.get(runId);
  setStatus(run ? run.status : "");
  return { runId, limits: {}, remaining: {}, usdSpent: 0, nodes: new Map(), path: [], strategy: "" };
}

function setStatus(status) {
  const badge = $("run-status");
  badge.textContent = status || "";
  badge.className = "status " + (status || "");
  $("cancel").hidden = status !== "running";
  const resumable = status === "paused" || status === "interrupted";
  $("resume-form").hidden = !resumable;
  $("resume-why").textContent = status === "paused"
    ? "Paused at its budget. Raise a limit (empty: keep it) and"
    : "Cut off by a server restart. Raise a limit if you like, and";
}

async function resumeRun(event) {
  event.preventDefault();
  const runId = state.selected;
  if (!runId) return;
  const budget = {};
  for (const dim of ["tool_calls", "total_tokens", "usd"]) {
    const value = $("resume-" + dim).value.trim();
    if (value) budget[dim] = Number(value);
  }
  const res = await api(`/runs/${encodeURIComponent(runId)}/resume`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ budget }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    notice((body.error && body.error.message) || `the server answered ${res.status}`);
    return;
  }
  notice("");
  for (const dim of ["tool_calls", "total_tokens", "usd"]) $("resume-" + dim).value = "";
  const run = state.runs.get(runId);
  if (run) run.status = "running";
  openStream(runId);
}

// A stream that breaks before the run's result (a proxy's timeout, a network blip, a laptop that slept)
// is opened again with the id of the last event read (Last-Event-ID): the server sends the events after
// it, so the view goes on where it stopped and shows no event twice.
const RECONNECT_MS = [500, 1000, 2000, 4000, 8000];

async function openStream(runId) {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  state.view = newView(runId);
  const view = state.view;
  let failures = 0;
  try {
    for (;;) {
      const headers = { Accept: "text/event-stream" };
      if (view.lastId !== undefined) headers["Last-Event-ID"] = view.lastId;
      let broke = null;
      try {
        const res = await api(`/runs/${encodeURIComponent(runId)}/events`, { headers, signal: controller.signal });
        if (!res.ok) {
          const body = await res.json().catch(() => ({}));
          const run = state.runs.get(runId);
          if (res.status === 409 && run && run.status === "interrupted") {
            $("run-question").textContent = run.question || "";
            $("run-meta").textContent = "Its events were in the server that stopped; resume it to watch it go on.";
          } else {
            notice((body.error && body.error.message) || `the server answered ${res.status}`);
          }
          return;
        }
        const retried = failures > 0;
        if (retried) notice("");
        let read = 0;
        await readEvents(res.body, (name, data, id) => {
          if (read++ === 0) failures = 0;
          if (id !== undefined) view.lastId = id;
          handle(view, name, data);
        });
        // closed by the server with nothing more to send (after a reconnect): the run has no more events
        if (retried && !read) return;
      } catch (err) {
        if (err.name === "AbortError" || err.message === "unauthorized") return;
        broke = err;
      }
      if (view.ended || state.view !== view || controller.signal.aborted) return;
      if (failures >= RECONNECT_MS.length) {
        notice("The event stream broke: " + (broke ? broke.message : "the server closed it") + ". Click the run to try again.");
        return;
      }
      notice("The event stream broke; reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS[failures++]));
      if (state.view !== view || controller.signal.aborted) return;
    }
  } finally {
    view.live = false;
    if (state.stream === controller) state.stream = null;
    if (state.view === view) refreshRun(runId);
  }
}

// Server-sent events over fetch: blocks of "field: value" lines, one blank line after each.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let id;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "id") id = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")), id);
    }
  }
}

async function refreshRun(runId) {
  try {
    const res = await api(`/runs/${encodeURIComponent(runId)}`);
    if (!res.ok) return;
    const run = await res.json();
    setStatus(run.status);
    if (run.error) {
      $("run-error").textContent = run.error;
      $("run-error").hidden = false;
      $("outcome").hidden = false;
    }
  } catch (err) {
    /* the list poll reports a refused token */
  }
}

function handle(view, name, ev) {
  if (view !== state.view) return;
  if (name === "error" || ev.kind === "result") view.ended = true;
  if (name === "error") {
    $("run-error").textContent = ev.message;
    $("run-error").hidden = false;
    $("outcome").hidden = false;
    return;
  }
  if (ev.remaining) {
    view.remaining = ev.remaining;
    view.at = performance.now();
  }
  if (typeof ev.usd_spent === "number") view.usdSpent = ev.usd_spent;
  if (ev.kind === "start") onStart(view, ev);
  else if (ev.kind === "trace") onTrace(view, ev);
  else if (ev.kind === "result") onResult(view, ev);
  addEventLine(ev);
  renderBars(view);
}

function onStart(view, ev) {
  view.limits = Object.assign({}, ev.budget || {});
  view.live = true;
  view.strategy = ev.strategy || view.strategy;
  $("run-question").textContent = ev.question || "";
  $("run-meta").textContent = `strategy ${ev.strategy || "?"} · model ${ev.model || "?"}` + (ev.resumed ? " · resumed" : "");
  $("outcome").hidden = true;
  if (view.strategy === "value_tree") $("tree-box").hidden = false;
}

function onTrace(view, ev) {
  const entry = ev.event || {};
  if (entry.action === "expand") {
    if (!view.nodes.has(0)) view.nodes.set(0, { id: 0, parent: null, value: 0.5, tool: null });
    const parent = view.nodes.get(entry.selected) || { id: entry.selected, parent: null };
    parent.expanded = (parent.expanded || 0) + 1;
    view.nodes.set(parent.id, parent);
    for (const child of entry.children || []) view.nodes.set(child.id, Object.assign({ parent: entry.selected }, child));
    renderTree(view);
  } else if (entry.action === "tree") {
    view.nodes = new Map((entry.nodes || []).map((node) => [node.id, node]));
    view.path = entry.path || [];
    renderTree(view);
  }
}

function onResult(view, ev) {
  const result = ev.result || {};
  view.live = false;
  $("answer").textContent = result.answer === null || result.answer === undefined ? "(none)" : result.answer;
  $("stop-reason").textContent = result.stop_reason || "";
  $("outcome").hidden = false;
  if (result.budget) view.limits = Object.assign({}, view.limits, result.budget);
}

function describe(ev) {
  if (ev.kind === "start") return ev.resumed ? "resumed" : "started";
  if (ev.kind === "result") return `ended: ${ev.result.stop_reason}`;
  if (ev.kind === "charge") return ev.text || `charged ${ev.charge.kind} ${ev.charge.name}`;
  const entry = ev.event || {};
  return `[step ${entry.step}] ` + (ev.text || entry.action);
}

function addEventLine(ev) {
  const action = ev.kind === "trace" ? (ev.event || {}).action || "" : "";
  const item = el("li", { class: `ev ${ev.kind} ${action}`, "data-index": ev.index }, describe(ev));
  $("events").append(item);
}

function renderBars(view) {
  const box = $("bars");
  const dims = Object.keys(view.limits).filter((dim) => view.limits[dim] > 0);
  box.replaceChildren();
  for (const dim of dims) {
    const limit = view.limits[dim];
    let left = dim in view.remaining ? view.remaining[dim] : limit;
    if (dim === "seconds" && view.live && view.at) left = Math.max(0, left - (performance.now() - view.at) / 1000);
    const share = Math.max(0, Math.min(1, left / limit));
    const fill = el("div", { class: "fill" + (share < 0.2 ? " low" : "") });
    fill.style.width = (share * 100).toFixed(1) + "%";
    box.append(
      el(
        "div",
        { class: "bar", "data-dim": dim, "data-left": String(left), "data-limit": String(limit) },
        el("span", { class: "bar-label" }, label(dim)),
        el("div", { class: "track" }, fill),
        el("span", { class: "bar-text" }, `${fmt(dim, left)} left of ${fmt(dim, limit)}`),
      ),
    );
  }
  if (!dims.length) box.append(el("p", { class: "dim" }, "unlimited"));
}

// ------------------------------------------------------------------------------------------ value tree
function renderTree(view) {
  $("tree-box").hidden = false;
  const children = new Map();
  for (const node of view.nodes.values()) {
    const key = node.parent === null || node.parent === undefined ? "root" : node.parent;
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(node);
  }
  const onPath = new Set(view.path);
  const build = (nodes) => {
    const list = el("ul", {});
    for (const node of nodes.sort((a, b) => a.id - b.id)) {
      const kids = children.get(node.id) || [];
      const classes = ["node"];
      if (node.pruned) classes.push("pruned");
      if (node.expanded || kids.length) classes.push("expanded");
      if (node.answer !== null && node.answer !== undefined) classes.push("terminal");
      if (onPath.has(node.id)) classes.push("chosen");
      const what = node.id === 0 ? "root"
        : node.answer !== null && node.answer !== undefined ? `answer: ${node.answer}`
        : `${node.tool || "?"}(${node.arguments || ""})`;
      const value = typeof node.value === "number" ? node.value : 0;
      const meter = el("span", { class: "meter" }, el("span", { class: "meter-fill" }));
      meter.firstChild.style.width = (Math.max(0, Math.min(1, value)) * 100).toFixed(0) + "%";
      const item = el(
        "li",
        { class: classes.join(" "), "data-node": String(node.id), "data-value": String(value) },
        el("div", { class: "node-box" },
          el("span", { class: "node-id" }, "#" + node.id),
          el("span", { class: "node-what" }, what),
          meter,
          el("span", { class: "node-value" }, "V=" + value.toFixed(2)),
          node.pruned ? el("span", { class: "tag pruned-tag" }, "pruned" + (node.prune_reason ? ": " + node.prune_reason : "")) : null,
          node.verdict ? el("span", { class: "tag" }, node.verdict) : null,
        ),
      );
      if (kids.length) item.append(build(kids));
      list.append(item);
    }
    return list;
  };
  $("tree").replaceChildren(build(children.get("root") || []));
  $("tree-size").textContent = `(${view.nodes.size} nodes)`;
}

// ------------------------------------------------------------------------------------------ start
function init() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").placeholder = "token set for this tab";
    startPolling();
    if (state.selected) openStream(state.selected);
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolling();
    if (state.stream) state.stream.abort();
    $("token").placeholder = "THRIFTY_SERVE_TOKEN";
    notice("Token forgotten. Enter it again to see the runs.");
  });
  $("show-charges").addEventListener("change", (event) => {
    $("events").classList.toggle("with-charges", event.target.checked);
  });
  $("resume-form").addEventListener("submit", resumeRun);
  $("cancel").addEventListener("click", async () => {
    if (!state.selected) return;
    const res = await api(`/runs/${encodeURIComponent(state.selected)}/cancel`, { method: "POST" });
    if (!res.ok) notice(((await res.json()).error || {}).message || "cancel refused");
  });
  const match = /run=([^&]+)/.exec(location.hash);
  if (match) state.selected = decodeURIComponent(match[1]);
  if (token()) {
    $("token").placeholder = "token set for this tab";
    startPolling();
    if (state.selected) openStream(state.selected);
  } else {
    notice("Enter the server's token (THRIFTY_SERVE_TOKEN) to see its runs; it stays in this tab only.");
  }
}

document.addEventListener("DOMContentLoaded", init);
