// The wiz executor dashboard: plain JavaScript, no build step, nothing from elsewhere.
//
// State comes from the JSON API (processors, runs, a run's chunks, /healthz) and is kept
// current by the executor-wide event stream (/events): `run` events carry a run's
// counts; `chunk` events mark their run for a (throttled) refresh and update the chunk
// table of the run on display. A slow full refresh also catches deleted runs.
//
// An executor started with a token answers the API 401 without it: the page then asks
// for the token once (a small form), keeps it for the tab in sessionStorage, and sends
// it as `Authorization: Bearer …` on every request, the event stream included (read
// with fetch, since EventSource cannot send headers).
"use strict";

const CHUNK_STATES = ["WAITING", "RUNNING", "SUCCEEDED", "FAILED"];
const FINISHED_RUN = new Set(["SUCCEEDED", "ERRORED"]);
const PAGE_SIZE = 500; // chunks asked for at once: a run may hold millions
const REFRESH_DIRTY_MS = 300;
const HEALTH_MS = 1000;
const FULL_REFRESH_MS = 5000;

const view = {
  processors: [], // [{ProcID, Name, Version}]
  runs: new Map(), // key → {ProcID, RunID, CurrentState, ChunkCounts, InputClosed, NumChunks}
  selected: null, // key of the run on display
  chunks: new Map(), // ChunkID → {ChunkID, State, Error, Progress} of the selected run
  chunksLoaded: false,
  nextPage: null, // query of the next page of the run on display (from the Link header)
  filter: "all",
  health: null,
  dirty: new Set(),
};

const $ = (id) => document.getElementById(id);
const keyOf = (proc, run) => `${proc}/${run}`;
const runUrl = (proc, run) =>
  `processors/${encodeURIComponent(proc)}/runs/${encodeURIComponent(run)}`;

function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );
}

// -- the token ---------------------------------------------------------------------

const TOKEN_KEY = "wiz-executor-token";
let asking = null; // the pending question, shared by every request that got a 401

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the token lives in memory only
  }
}

let memoryToken = null;
function currentToken() {
  return storedToken() ?? memoryToken;
}

function keepToken(token) {
  memoryToken = token;
  try {
    if (token === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // in memory only
  }
}

// Show the form and resolve with what the person enters; `refused` says the last
// token was wrong.
function askToken(refused) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const panel = $("auth");
    const form = $("auth-form");
    const input = $("auth-token");
    $("auth-error").hidden = !refused;
    panel.hidden = false;
    input.value = "";
    input.focus();
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      panel.hidden = true;
      form.onsubmit = null;
      keepToken(token);
      asking = null;
      resolve(token);
    };
  });
  return asking;
}

// fetch() with the token, asking for one (again) when the executor answers 401.
async function apiFetch(url, options = {}) {
  for (;;) {
    const token = currentToken();
    const headers = { ...(options.headers || {}) };
    if (token) headers.Authorization = `Bearer ${token}`;
    const resp = await fetch(url, { ...options, headers });
    if (resp.status !== 401) return resp;
    if (token && currentToken() === token) keepToken(null);
    await askToken(!!token);
  }
}

async function getJSON(url) {
  const resp = await apiFetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) {
    const err = new Error(`${resp.status} ${url}`);
    err.status = resp.status;
    throw err;
  }
  return resp.json();
}

// -- reading the API ---------------------------------------------------------------

function runFromApi(proc, body) {
  const expected = body.Configuration?.ExpectedData?.NumChunks ?? 0;
  return {
    ProcID: proc,
    RunID: body.RunID,
    CurrentState: body.CurrentState,
    ChunkCounts: body.ChunkCounts ?? { WAITING: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0 },
    InputClosed: !!body.InputClosed,
    NumChunks: expected,
  };
}

async function loadAll() {
  view.processors = await getJSON("processors");
  const lists = await Promise.all(
    view.processors.map((p) =>
      getJSON(`processors/${encodeURIComponent(p.ProcID)}/runs`).then((runs) => [p.ProcID, runs]),
    ),
  );
  const seen = new Map();
  for (const [proc, runs] of lists) {
    for (const body of runs) {
      const run = runFromApi(proc, body);
      seen.set(keyOf(proc, run.RunID), run);
    }
  }
  view.runs = seen;
  if (view.selected && !view.runs.has(view.selected)) {
    // the run on display was deleted
    view.chunks.clear();
  }
  scheduleRender();
}

async function refreshRun(key) {
  const run = view.runs.get(key);
  if (!run) return;
  try {
    const body = await getJSON(runUrl(run.ProcID, run.RunID));
    view.runs.set(key, runFromApi(run.ProcID, body));
  } catch (err) {
    if (err.status === 404) view.runs.delete(key);
  }
  scheduleRender();
}

// One page of a run's chunks, and the query of the next page (null on the last).
async function getPage(url) {
  const resp = await apiFetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) {
    const err = new Error(`${resp.status} ${url}`);
    err.status = resp.status;
    throw err;
  }
  const link = /<[^>?]*\?([^>]*)>\s*;\s*rel="next"/.exec(resp.headers.get("Link") || "");
  return { data: await resp.json(), next: link ? link[1] : null };
}

function pageQuery() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (view.filter !== "all") query.set("state", view.filter);
  return query.toString();
}

// The first page of the run on display (in the current filter), never the whole run;
// `more` appends the next one. The server filters, so a FAILED chunk far down the run
// is found without downloading what comes before it.
async function loadChunks(key, more = false) {
  const run = view.runs.get(key);
  if (!run) return;
  const filter = view.filter;
  const query = more ? view.nextPage : pageQuery();
  if (!query) return;
  try {
    const page = await getPage(`${runUrl(run.ProcID, run.RunID)}/data?${query}`);
    if (view.selected !== key || view.filter !== filter) return;
    const data = page.data;
    view.nextPage = page.next;
    const fresh = more ? new Map(view.chunks) : new Map();
    for (const c of data.In) {
      fresh.set(c.ChunkID, {
        ChunkID: c.ChunkID,
        State: c.State,
        Error: c.Error ?? null,
        Progress: c.Progress ?? null,
      });
    }
    // events that arrived while the page was on its way are newer than the page
    for (const [id, c] of view.chunks) {
      const old = fresh.get(id);
      if (old ? rank(c.State) >= rank(old.State) : !more) fresh.set(id, c);
    }
    view.chunks = fresh;
    view.chunksLoaded = true;
  } catch (err) {
    if (err.status === 404) view.runs.delete(key);
  }
  scheduleRender();
}

const rank = (state) => CHUNK_STATES.indexOf(state);

async function loadHealth() {
  try {
    view.health = await getJSON("healthz");
  } catch {
    view.health = null;
  }
  scheduleRender();
}

// -- the event stream --------------------------------------------------------------

// The stream is read with fetch (EventSource cannot send the token) and parsed here,
// per the Server-Sent Events rules this server uses: `event:` and `data:` lines, a
// blank line ends an event, `:` lines are comments (keepalives).
async function readEvents(onOpen) {
  const resp = await apiFetch("events", { headers: { Accept: "text/event-stream" } });
  if (!resp.ok || !resp.body) throw new Error(`${resp.status} events`);
  onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
      if (line === "") {
        if (data.length) onEvent(type, data.join("\n"));
        type = "message";
        data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") type = text;
        else if (field === "data") data.push(text);
      }
    }
  }
}

function onEvent(type, data) {
  if (type === "run") onRunEvent(JSON.parse(data));
  else if (type === "chunk") onChunkEvent(JSON.parse(data));
  else if (type === "dropped") $("conn-text").textContent = "catching up…";
}

const RECONNECT_MS = 1000;

async function connect() {
  const conn = $("conn");
  const text = $("conn-text");
  for (;;) {
    try {
      await readEvents(() => {
        conn.dataset.state = "live";
        text.textContent = "live";
        // read the current state once the stream is open: nothing is missed in between
        loadAll()
          .then(() => view.selected && loadChunks(view.selected))
          .catch(() => {});
      });
    } catch {
      // the executor is down or stopping: try again below
    }
    // the stream ended (we fell behind, or the executor stopped): reconnect, and the
    // next open reloads everything
    conn.dataset.state = "down";
    text.textContent = "reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

function onRunEvent(data) {
  const key = keyOf(data.ProcID, data.RunID);
  const known = view.runs.get(key);
  view.runs.set(key, {
    ProcID: data.ProcID,
    RunID: data.RunID,
    CurrentState: data.CurrentState,
    ChunkCounts: data.ChunkCounts,
    InputClosed: data.InputClosed,
    NumChunks: known ? known.NumChunks : 0,
  });
  if (!known) view.dirty.add(key); // fetch its configuration (NumChunks)
  scheduleRender();
}

function onChunkEvent(data) {
  const key = keyOf(data.ProcID, data.RunID);
  view.dirty.add(key);
  // Chunks on display are kept current; a new one is added only while the whole (filtered)
  // run is on display and short, so events cannot grow the table without bound.
  const shown = view.chunks.has(data.ChunkID);
  const room = view.chunksLoaded && !view.nextPage && view.chunks.size < PAGE_SIZE;
  if (key === view.selected && (shown || room)) {
    view.chunks.set(data.ChunkID, {
      ChunkID: data.ChunkID,
      State: data.State,
      Error: data.Error ?? null,
      Progress: data.Progress ?? null,
    });
    scheduleRender();
  }
}

setInterval(() => {
  const keys = [...view.dirty];
  view.dirty.clear();
  for (const key of keys) refreshRun(key);
}, REFRESH_DIRTY_MS);

// -- rendering ---------------------------------------------------------------------

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  renderCards();
  renderProcessors();
  renderDetail();
}

function renderCards() {
  const h = view.health;
  if (h) {
    $("workers-busy").textContent = h.workers.busy;
    $("workers-max").textContent = h.workers.max;
    $("workers-bar").style.width = `${Math.min(100, (100 * h.workers.busy) / h.workers.max)}%`;
    $("queue-depth").textContent = h.chunks.WAITING;
    const total = CHUNK_STATES.reduce((n, s) => n + (h.chunks[s] || 0), 0);
    $("chunks-total").textContent = total;
    $("chunks-running").textContent = h.chunks.RUNNING;
    $("chunks-succeeded").textContent = h.chunks.SUCCEEDED;
    $("chunks-failed").textContent = h.chunks.FAILED;
  }
  const byState = {};
  for (const run of view.runs.values()) {
    byState[run.CurrentState] = (byState[run.CurrentState] || 0) + 1;
  }
  $("runs-total").textContent = view.runs.size;
  $("runs-summary").textContent = Object.entries(byState)
    .map(([s, n]) => `${n} ${s.toLowerCase()}`)
    .join(" · ");
}

function progressBar(counts, total) {
  const parts = ["SUCCEEDED", "FAILED", "RUNNING", "WAITING"];
  const denom = Math.max(total, 1);
  return (
    `<div class="bar" role="img" aria-label="chunk states">` +
    parts
      .map((s) => {
        const pct = (100 * (counts[s] || 0)) / denom;
        return pct > 0 ? `<span class="${s.toLowerCase()}" style="width:${pct}%"></span>` : "";
      })
      .join("") +
    `</div>`
  );
}

function runTotal(run) {
  const held = CHUNK_STATES.reduce((n, s) => n + (run.ChunkCounts[s] || 0), 0);
  return { held, total: Math.max(run.NumChunks || 0, held) };
}

function countsText(run) {
  const c = run.ChunkCounts;
  const { held, total } = runTotal(run);
  const done = (c.SUCCEEDED || 0) + (c.FAILED || 0);
  const of = run.NumChunks ? total : run.InputClosed ? held : `${held}+`;
  const bits = [`${done} of ${of} done`];
  if (c.FAILED) bits.push(`${c.FAILED} failed`);
  if (c.RUNNING) bits.push(`${c.RUNNING} running`);
  if (c.WAITING) bits.push(`${c.WAITING} waiting`);
  return bits.join(" · ");
}

function runRow(run) {
  const key = keyOf(run.ProcID, run.RunID);
  const c = run.ChunkCounts;
  const { total } = runTotal(run);
  const attrs = [
    `data-run="${esc(key)}"`,
    `data-state="${esc(run.CurrentState)}"`,
    ...CHUNK_STATES.map((s) => `data-${s.toLowerCase()}="${c[s] || 0}"`),
  ].join(" ");
  const selected = key === view.selected ? " selected" : "";
  return (
    `<tr class="run${selected}" ${attrs}>` +
    `<td class="mono">${esc(run.RunID)}</td>` +
    `<td><span class="badge b-${esc(run.CurrentState)}">${esc(run.CurrentState)}</span></td>` +
    `<td class="progress-cell">${progressBar(c, total)}<div class="bar-text">${esc(countsText(run))}</div></td>` +
    `<td class="num">${c.SUCCEEDED || 0}</td>` +
    `<td class="num">${c.FAILED || 0}</td>` +
    `</tr>`
  );
}

function stateOrder(run) {
  // active runs first, then by ID
  return FINISHED_RUN.has(run.CurrentState) ? 1 : 0;
}

function renderProcessors() {
  const root = $("processors");
  if (!view.processors.length) {
    root.innerHTML = `<p class="muted">Loading…</p>`;
    return;
  }
  const runsOf = (proc) =>
    [...view.runs.values()]
      .filter((r) => r.ProcID === proc)
      .sort((a, b) => stateOrder(a) - stateOrder(b) || a.RunID.localeCompare(b.RunID));
  const busy = view.processors.filter((p) => runsOf(p.ProcID).length);
  const idle = view.processors.filter((p) => !runsOf(p.ProcID).length);
  const html = busy.map((p) => {
    const runs = runsOf(p.ProcID);
    return (
      `<div class="proc" data-proc="${esc(p.ProcID)}">` +
      `<div class="proc-head"><h2>${esc(p.Name)}</h2><code class="muted">${esc(p.ProcID)}</code>` +
      `<span class="muted small">v${esc(p.Version)} · ${runs.length} run${runs.length === 1 ? "" : "s"}</span></div>` +
      `<table><thead><tr><th>Run</th><th>State</th><th>Progress</th><th class="num">OK</th><th class="num">Failed</th></tr></thead>` +
      `<tbody>${runs.map(runRow).join("")}</tbody></table>` +
      `</div>`
    );
  });
  if (!busy.length) html.push(`<p class="muted empty">No runs yet: configure one with POST /processors/{procID}/runs/{runID}/config.</p>`);
  if (idle.length) {
    html.push(
      `<div class="idle-procs small muted">${busy.length ? "Other processors" : "Processors"}, no runs: ` +
        idle.map((p) => `<code title="${esc(p.Name)} v${esc(p.Version)}">${esc(p.ProcID)}</code>`).join(" ") +
        `</div>`,
    );
  }
  root.innerHTML = html.join("");
}

function progressCell(chunk) {
  if (chunk.State !== "RUNNING") return "";
  const p = chunk.Progress;
  if (!p) return `<span class="muted small">running…</span>`;
  if (p.Total) {
    const pct = Math.min(100, (100 * p.Done) / p.Total);
    return `<span class="mini"><span style="width:${pct}%"></span></span> <span class="small muted">${p.Done}/${p.Total}</span>`;
  }
  return `<span class="small muted">${p.Done} done</span>`;
}

function renderDetail() {
  const panel = $("detail");
  const run = view.selected ? view.runs.get(view.selected) : null;
  document.querySelector("main").classList.toggle("with-detail", !!view.selected);
  if (!view.selected) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const [proc, ...rest] = view.selected.split("/");
  $("detail-proc").textContent = `processor ${proc}`;
  $("detail-title").textContent = rest.join("/");
  // failed chunks, or an ERRORED run whose failures are undelivered outputs
  $("retry-failures").hidden = !(run && (run.ChunkCounts.FAILED || run.CurrentState === "ERRORED"));
  if (!run) {
    $("detail-summary").innerHTML = `<p class="muted">This run no longer exists.</p>`;
    $("chunk-rows").innerHTML = "";
    $("chunk-note").textContent = "";
    return;
  }
  const { total } = runTotal(run);
  $("detail-summary").innerHTML =
    `<span class="badge b-${esc(run.CurrentState)}" id="detail-state">${esc(run.CurrentState)}</span> ` +
    `<span class="muted small">${esc(countsText(run))}</span>` +
    `<div style="margin-top:8px">${progressBar(run.ChunkCounts, total)}</div>`;
  for (const b of document.querySelectorAll(".filters button")) {
    b.classList.toggle("active", b.dataset.filter === view.filter);
  }
  const order = { FAILED: 0, RUNNING: 1, WAITING: 2, SUCCEEDED: 3 };
  const chunks = [...view.chunks.values()]
    .filter((c) => view.filter === "all" || c.State === view.filter)
    .sort((a, b) => order[a.State] - order[b.State]);
  const shown = chunks;
  $("chunk-rows").innerHTML = shown.length
    ? shown
        .map(
          (c) =>
            `<tr class="chunk" data-chunk="${esc(c.ChunkID)}" data-state="${esc(c.State)}">` +
            `<td class="chunk-id" title="${esc(c.ChunkID)}">${esc(c.ChunkID)}</td>` +
            `<td><span class="badge b-${esc(c.State)}">${esc(c.State)}</span></td>` +
            `<td>${progressCell(c)}</td>` +
            `<td class="chunk-error">${c.Error ? esc(c.Error) : ""}</td>` +
            `</tr>`,
        )
        .join("")
    : `<tr><td colspan="4" class="muted small empty">${view.chunksLoaded ? "No chunks here." : "Loading…"}</td></tr>`;
  const more = $("chunk-more");
  more.hidden = !view.nextPage;
  $("chunk-note").textContent = view.nextPage
    ? `Showing the first ${view.chunks.size} chunks (in arrival order; failed first).`
    : "";
}

// -- interaction -------------------------------------------------------------------

function select(key) {
  view.selected = key;
  view.chunks = new Map();
  view.chunksLoaded = false;
  view.nextPage = null;
  view.filter = "all";
  $("retry-note").textContent = "";
  delete $("retry-note").dataset.done;
  if (key) {
    history.replaceState(null, "", `#run=${encodeURIComponent(key)}`);
    loadChunks(key);
  } else {
    history.replaceState(null, "", location.pathname);
  }
  scheduleRender();
}

$("processors").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr.run");
  if (row) select(row.dataset.run === view.selected ? null : row.dataset.run);
});
$("detail-close").addEventListener("click", () => select(null));
document.querySelector(".filters").addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-filter]");
  if (!button) return;
  if (view.filter === button.dataset.filter) return;
  view.filter = button.dataset.filter;
  // a page holds only part of the run: ask the server for the chunks in this state
  view.chunks = new Map();
  view.chunksLoaded = false;
  view.nextPage = null;
  if (view.selected) loadChunks(view.selected);
  scheduleRender();
});
// Retry what failed, once a person has confirmed: the run's FAILED chunks are queued
// again and its failed deliveries resent (POST .../retry); events show them run again.
async function retryFailures() {
  const run = view.selected ? view.runs.get(view.selected) : null;
  if (!run) return;
  const failed = run.ChunkCounts.FAILED || 0;
  const what = failed
    ? `the ${failed} failed chunk${failed === 1 ? "" : "s"}`
    : "the outputs not delivered downstream";
  if (!confirm(`Retry ${what} of run ${run.RunID}? They are queued and run (or sent) again.`)) {
    return;
  }
  const note = $("retry-note");
  note.textContent = "retrying…";
  try {
    const resp = await fetch(`${runUrl(run.ProcID, run.RunID)}/retry`, {
      method: "POST",
      headers: { Accept: "application/json" },
    });
    const body = await resp.json();
    note.textContent = resp.ok
      ? `${body.Chunks} chunk${body.Chunks === 1 ? "" : "s"} and ${body.Deliveries} ` +
        `deliver${body.Deliveries === 1 ? "y" : "ies"} queued again`
      : `not retried: ${body.value}`;
    note.dataset.done = resp.ok ? "ok" : "refused";
  } catch (err) {
    note.textContent = `not retried: ${err}`;
    note.dataset.done = "refused";
  }
  if (view.selected) loadChunks(view.selected);
}

$("retry-failures").addEventListener("click", () => retryFailures());
$("chunk-more").addEventListener("click", () => {
  if (view.selected && view.nextPage) loadChunks(view.selected, true);
});

// -- start -------------------------------------------------------------------------

(function start() {
  const match = /#run=(.+)$/.exec(location.hash);
  if (match) select(decodeURIComponent(match[1]));
  connect();
  loadHealth();
  setInterval(loadHealth, HEALTH_MS);
  setInterval(() => loadAll().catch(() => {}), FULL_REFRESH_MS);
  getJSON("openapi.json")
    .then((doc) => ($("version").textContent = `v${doc.info.version}`))
    .catch(() => {});
})();
