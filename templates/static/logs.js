// cronmgr dashboard, the log page: progressive enhancement only. Without this file the
// page shows a page of lines with links to older and newer ones; with it, the page opens
// at its newest line, follows the log live, and "Load older lines" adds the older page
// above in place. Nothing from the log is ever parsed as HTML here: followed lines are
// built as text nodes, older pages come as the server's escaped HTML.
"use strict";

const MAX_LOG_ROWS = 2000;
const TRACE_FIELDS = ["exception", "stack"];
const KNOWN_FIELDS = ["timestamp", "level", "event", "run_id", "step", ...TRACE_FIELDS];

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// A traceback folded under its line: its last line (the exception) shows, the rest opens.
function traceFold(trace) {
  const fold = document.createElement("details");
  fold.className = "trace";
  const summary = document.createElement("summary");
  const lines = trace.split("\n").filter((line) => line.trim());
  summary.textContent = lines.length ? lines[lines.length - 1].trim() : "traceback";
  const body = document.createElement("pre");
  body.textContent = trace.replace(/\n+$/, "");
  fold.append(summary, body);
  return fold;
}

// One log line as a table row, the same columns the server renders.
function logRow(text) {
  let record = null;
  try { record = JSON.parse(text); } catch (error) { record = null; }
  const row = document.createElement("tr");
  if (!record || typeof record !== "object" || Array.isArray(record)) {
    row.className = "lvl-none";
    ["", "", text, "", "", ""].forEach((value) => cell(row, value));
    return row;
  }
  const stamp = String(record.timestamp || "");
  row.className = "lvl-" + (record.level || "none");
  cell(row, stamp.slice(11, 23), "nowrap").title = stamp;
  cell(row, String(record.level || ""));
  cell(row, String(record.event || ""));
  const run = cell(row, "", "nowrap");
  if (record.run_id) {
    const link = document.createElement("a");
    link.href = "runs/" + encodeURIComponent(String(record.run_id));
    const code = document.createElement("code");
    code.textContent = String(record.run_id).slice(0, 13);
    link.appendChild(code);
    run.appendChild(link);
  }
  cell(row, String(record.step || ""));
  const details = Object.entries(record)
    .filter(([key]) => !KNOWN_FIELDS.includes(key))
    .map(([key, value]) => key + "=" + (typeof value === "string" ? value : JSON.stringify(value)));
  const last = cell(row, details.join(" "), "details");
  const trace = TRACE_FIELDS.filter((key) => record[key])
    .map((key) => (typeof record[key] === "string" ? record[key] : JSON.stringify(record[key])))
    .join("\n");
  if (trace) last.appendChild(traceFold(trace));
  return row;
}

function atBottom() {
  return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 40;
}

function toNewest() {
  const end = document.getElementById("newest");
  if (end) end.scrollIntoView({ block: "end" });
}

function followLog(body) {
  const state = document.getElementById("follow-state");
  if (!state || !state.dataset.stream || !window.EventSource) return;
  const controls = document.getElementById("follow-controls");
  const toggle = document.getElementById("follow-toggle");
  let source = null;
  let paused = false;
  let held = [];
  const say = (text) => { state.textContent = text; };
  const show = (rows) => {
    const stay = atBottom();
    for (const row of rows) body.appendChild(row);
    while (body.rows.length > MAX_LOG_ROWS) body.deleteRow(0);
    if (stay) toNewest();
  };
  const note = (text) => show([logRow(text)]);
  source = new EventSource(state.dataset.stream);
  source.onopen = () => say("Following the log live.");
  source.onerror = () => say(source.readyState === EventSource.CLOSED
    ? "Stopped following: reload the page." : "Reconnecting…");
  source.onmessage = (event) => {
    if (paused) { held.push(event.data); return; }
    show([logRow(event.data)]);
  };
  for (const kind of ["rotated", "cleared"]) {
    source.addEventListener(kind, () => note("— the log was " + kind + " —"));
  }
  source.addEventListener("unreadable", (event) => {
    let why = "";
    try { why = JSON.parse(event.data).error || ""; } catch (error) { why = ""; }
    note("— the log can't be read (" + why + "); still trying —");
  });
  controls.hidden = false;
  toggle.addEventListener("click", () => {
    paused = !paused;
    toggle.textContent = paused ? "Resume" : "Pause";
    if (!paused) { show(held.slice(-MAX_LOG_ROWS).map(logRow)); held = []; }
    say(paused ? "Paused: new lines wait until you resume." : "Following the log live.");
  });
}

// "Load older lines": fetch the link's page and put its rows above, keeping in view what
// was in view; the link becomes the fetched page's own (or "the start of the log").
function loadOlder(body) {
  const holder = document.getElementById("log-older");
  if (!holder) return;
  holder.addEventListener("click", async (event) => {
    const link = event.target.closest("#older-link");
    if (!link) return;
    event.preventDefault();
    link.setAttribute("aria-busy", "true");
    let fresh = null;
    try {
      const response = await fetch(link.href, { credentials: "same-origin" });
      if (response.ok && !response.redirected) {
        fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      }
    } catch (error) { fresh = null; }
    const next = fresh && fresh.getElementById("log-older");
    if (!next) { location.href = link.href; return; } // plain navigation says what is wrong
    const height = document.documentElement.scrollHeight;
    const rows = Array.from(fresh.querySelectorAll("#log tbody tr"));
    body.prepend(...rows.map((row) => document.adoptNode(row)));
    window.scrollBy(0, document.documentElement.scrollHeight - height);
    holder.replaceChildren(...Array.from(next.childNodes).map((node) => document.adoptNode(node)));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const body = document.querySelector("#log tbody");
  if (!body) return;
  toNewest();
  followLog(body);
  loadOlder(body);
});
