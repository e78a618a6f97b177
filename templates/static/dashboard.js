// cronmgr dashboard: progressive enhancement only. Every page works without this file;
// with it, the parts marked data-refresh stay current and the log page follows the log.
"use strict";

const REFRESH_MS = 2000;
const MAX_LOG_ROWS = 2000;

// Fetch this page again and swap in the new content of each [data-refresh] element
// (matched by id). The server escaped that HTML; nothing from the log goes this way.
async function refreshOnce() {
  const response = await fetch(location.href, { credentials: "same-origin" });
  if (!response.ok || response.redirected) return false; // logged out: stop
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const old of document.querySelectorAll("[data-refresh][id]")) {
    const next = fresh.getElementById(old.id);
    if (next) old.innerHTML = next.innerHTML;
  }
  return true;
}

function keepFresh() {
  if (!document.querySelector("[data-refresh]")) return;
  const tick = async () => {
    let goOn = true;
    if (!document.hidden) {
      try { goOn = await refreshOnce(); } catch (error) { goOn = true; }
    }
    if (goOn) setTimeout(tick, REFRESH_MS);
  };
  setTimeout(tick, REFRESH_MS);
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
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
  const known = ["timestamp", "level", "event", "run_id", "step"];
  const stamp = String(record.timestamp || "");
  row.className = "lvl-" + (record.level || "none");
  cell(row, stamp.slice(11, 23), "nowrap").title = stamp;
  cell(row, String(record.level || ""));
  cell(row, String(record.event || ""));
  const run = cell(row, "", "nowrap");
  if (record.run_id) {
    const link = document.createElement("a");
    link.href = "runs/" + encodeURIComponent(String(record.run_id));
    link.textContent = String(record.run_id).slice(0, 13);
    run.appendChild(link);
  }
  cell(row, String(record.step || ""));
  const details = Object.entries(record)
    .filter(([key]) => !known.includes(key))
    .map(([key, value]) => key + "=" + (typeof value === "string" ? value : JSON.stringify(value)));
  cell(row, details.join(" "), "details");
  return row;
}

function followLog() {
  const state = document.getElementById("follow-state");
  const body = document.querySelector("#log tbody");
  if (!state || !body || !window.EventSource) return;
  const controls = document.getElementById("follow-controls");
  const toggle = document.getElementById("follow-toggle");
  let source = null;
  let paused = false;
  let held = [];
  const say = (text) => { state.textContent = text; };
  const show = (lines) => {
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    for (const text of lines) body.appendChild(logRow(text));
    while (body.rows.length > MAX_LOG_ROWS) body.deleteRow(0);
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  };
  const open = () => {
    source = new EventSource(state.dataset.stream);
    source.onopen = () => say("Following the log live.");
    source.onerror = () => say(source.readyState === EventSource.CLOSED
      ? "Stopped following: reload the page." : "Reconnecting…");
    source.onmessage = (event) => {
      if (paused) { held.push(event.data); return; }
      show([event.data]);
    };
    for (const kind of ["rotated", "cleared"]) {
      source.addEventListener(kind, () => body.appendChild(logRow("— the log was " + kind + " —")));
    }
    source.addEventListener("unreadable", (event) => {
      let why = "";
      try { why = JSON.parse(event.data).error || ""; } catch (error) { why = ""; }
      body.appendChild(logRow("— the log can't be read (" + why + "); still trying —"));
    });
  };
  controls.hidden = false;
  toggle.addEventListener("click", () => {
    paused = !paused;
    toggle.textContent = paused ? "Resume" : "Pause";
    if (!paused) { show(held.slice(-MAX_LOG_ROWS)); held = []; }
    say(paused ? "Paused: new lines wait until you resume." : "Following the log live.");
  });
  open();
}

document.addEventListener("DOMContentLoaded", () => {
  keepFresh();
  followLog();
});
