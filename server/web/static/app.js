// @ts-check
// The web view's only script (served as /static/app.js; the CSP allows no
// other). It keeps ages current, sorts the rows shown, and keeps the page
// live: every machine event of the server's feed (Server-Sent Events on
// /events) makes it re-read its part of the page from the server, and a gap
// in the feed is said out loud.

const body = document.body;
const page = body.dataset.page ?? "";
const liveMachine = body.dataset.liveMachine;
/** Server clock minus browser clock, so ages count from the server's "now". */
let skew = Date.parse(body.dataset.now ?? "") - Date.now() || 0;

/** The same wording as bmctl's ages (lib/display.ts humanAge). */
function humanAge(/** @type {number} */ ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function tickAges() {
  const now = Date.now() + skew;
  for (const t of document.querySelectorAll("time.age")) {
    const at = Date.parse(t.getAttribute("datetime") ?? "");
    if (!Number.isNaN(at)) t.textContent = humanAge(now - at);
  }
}
setInterval(tickAges, 1000);

// ---- sorting the rows of the page shown (cheap: no server round trip)
/** @type {{ key: string, dir: 1 | -1 } | undefined} */
let sorted;

function applySort() {
  const table = document.querySelector("table#machines");
  if (!table || !sorted) return;
  const heads = [...table.querySelectorAll("th[data-sort]")];
  const col = heads.findIndex((th) => th instanceof HTMLElement && th.dataset.sort === sorted?.key);
  if (col < 0) return;
  heads.forEach((th, i) => th.setAttribute("aria-sort", i === col ? (sorted?.dir === 1 ? "ascending" : "descending") : "none"));
  const tbody = table.querySelector("tbody");
  if (!tbody) return;
  const value = (/** @type {Element} */ tr) => tr.children[col]?.getAttribute("data-v") ?? "";
  const rows = [...tbody.querySelectorAll("tr")];
  const dir = sorted.dir;
  rows.sort((a, b) => dir * value(a).localeCompare(value(b), "en", { numeric: true }));
  tbody.append(...rows);
}

document.addEventListener("click", (ev) => {
  const th = ev.target instanceof Element ? ev.target.closest("th[data-sort]") : null;
  if (!(th instanceof HTMLElement) || !th.dataset.sort) return;
  const key = th.dataset.sort;
  sorted = { key, dir: sorted?.key === key && sorted.dir === 1 ? -1 : 1 };
  applySort();
});

// ---- notices and the live indicator
const live = document.getElementById("live");
const notice = document.getElementById("notice");

function setLive(/** @type {string} */ state, /** @type {string} */ text) {
  if (!live) return;
  live.className = `live ${state}`;
  live.textContent = text;
}

function showNotice(/** @type {string} */ text) {
  if (!notice) return;
  notice.textContent = `${new Date().toLocaleTimeString()}: ${text}`;
  notice.hidden = false;
}

// ---- re-reading the page's live part
let refreshing = false;
let again = false;
let lastRefresh = 0;
/** @type {number | undefined} */
let timer;
const MIN_GAP_MS = 1000;

function scheduleRefresh() {
  if (timer !== undefined) return;
  const wait = Math.max(0, lastRefresh + MIN_GAP_MS - Date.now());
  timer = window.setTimeout(() => {
    timer = undefined;
    void refresh();
  }, wait);
}

async function refresh() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  lastRefresh = Date.now();
  try {
    const res = await fetch(location.href, { headers: { accept: "text/html" }, cache: "no-store" });
    if (!res.ok) {
      showNotice(`could not refresh the page: ${res.status} ${res.statusText}`);
      return;
    }
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    const id = document.getElementById("live-region") ? "live-region" : "content";
    const fresh = doc.getElementById(id);
    const old = document.getElementById(id);
    if (fresh && old) old.replaceChildren(...[...fresh.childNodes].map((n) => document.importNode(n, true)));
    skew = Date.parse(doc.body.dataset.now ?? "") - Date.now() || skew;
    applySort();
    tickAges();
    if (document.getElementById("figures-as-of")?.dataset.revalidating) window.setTimeout(scheduleRefresh, 1_000);
    body.dataset.refreshed = String(Number(body.dataset.refreshed ?? "0") + 1);
  } catch (e) {
    showNotice(`could not refresh the page: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    refreshing = false;
    if (again) {
      again = false;
      scheduleRefresh();
    }
  }
}

// ---- the event feed
function connect() {
  if (!("EventSource" in window)) return;
  const source = new EventSource(liveMachine ? `/events?machine=${encodeURIComponent(liveMachine)}` : "/events");
  let interrupted = false;
  setLive("connecting", "connecting…");
  source.onopen = () => {
    setLive("on", "live");
    if (interrupted) {
      interrupted = false;
      showNotice("live updates were interrupted and are back; changes in between were re-read from the database.");
      scheduleRefresh();
    }
  };
  source.onerror = () => {
    interrupted = true;
    setLive(source.readyState === EventSource.CLOSED ? "off" : "connecting", source.readyState === EventSource.CLOSED ? "offline: reload to retry" : "reconnecting…");
  };
  source.addEventListener("machine", () => scheduleRefresh());
  source.addEventListener("gap", (ev) => {
    let reason = "";
    try {
      reason = JSON.parse(ev.data).reason ?? "";
    } catch {
      // an unreadable reason is still a gap
    }
    showNotice(`the live feed had a gap${reason ? ` (${reason})` : ""}: some changes may not have been shown; the page was re-read from the database.`);
    scheduleRefresh();
  });
}

if (page === "overview" || page === "machines" || page === "machine" || page === "agents") {
  connect();
  // Heartbeats that change no state send no event; the overview's pictures
  // still move, so it is re-read now and then while someone looks at it.
  // The figures are a shared reading a few seconds old, so an event's effect
  // may show on the next re-read rather than the first.
  if (page === "overview") {
    setInterval(() => document.visibilityState === "visible" && scheduleRefresh(), 5_000);
    // Older figures were served at once while the server reads new ones:
    // fetch those as soon as they can be there.
    if (document.getElementById("figures-as-of")?.dataset.revalidating) window.setTimeout(scheduleRefresh, 1_000);
  }
}
