// cronmgr dashboard: progressive enhancement only. Every page works without this file;
// with it, the parts marked data-refresh stay current (the log page has logs.js).
"use strict";

const REFRESH_MS = 2000;

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

document.addEventListener("DOMContentLoaded", () => {
  keepFresh();
});
