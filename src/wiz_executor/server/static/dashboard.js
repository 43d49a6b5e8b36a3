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
// with fetch, since EventSource cannot send headers), the actions and the downloads.
//
// The run on display also shows its timing and rates (the Run's `Started`, `Ended`,
// `DurationSeconds`, `ChunksPerSecond`, `EtaSeconds`) and a chart of its last minutes
// from `GET .../history`, drawn as SVG here. Runs that send downstream to one another
// are drawn as a graph (the pipeline view). Rendering is throttled: however fast events
// arrive, the page is redrawn at most every RENDER_MS.
"use strict";

const CHUNK_STATES = ["WAITING", "RUNNING", "SUCCEEDED", "FAILED"];
const FINISHED_RUN = new Set(["SUCCEEDED", "ERRORED"]);
const PAGE_SIZE = 500; // chunks asked for at once: a run may hold millions
const REFRESH_DIRTY_MS = 300;
const HEALTH_MS = 1000;
const FULL_REFRESH_MS = 5000;
const HISTORY_MS = 2000; // the chart of the run on display is read again this often
const RENDER_MS = 200; // at most one redraw this often, however fast events come
const SHOWN_BYTES = 20000; // a chunk's data shown in full up to this; longer: truncated

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
  history: null, // {key, IntervalSeconds, Samples} of the run on display
  chunkView: null, // {key, id, input, output, error} of the chunk on display
  deleting: null, // key of the run being deleted
  stats: { events: 0, renders: 0 }, // what the tests read to see the batching
};
window.wizDashboard = view;

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

// Fields of a Run kept as they come, when present: timing and rates, and what other
// parts of the executor may add (pause, waiting reasons, free room).
const RUN_EXTRAS = [
  "Started",
  "Ended",
  "DurationSeconds",
  "ChunksPerSecond",
  "EtaSeconds",
  "Paused",
  "Waiting",
  "FreeRoom",
];

function runFromApi(proc, body) {
  const config = body.Configuration || {};
  const ec = config.ExecutorConfig || {};
  const run = {
    ProcID: proc,
    RunID: body.RunID,
    CurrentState: body.CurrentState,
    ChunkCounts: body.ChunkCounts ?? { WAITING: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0 },
    InputClosed: !!body.InputClosed,
    NumChunks: config.ExpectedData?.NumChunks ?? 0,
    Downstream: ec.SendDownstream ? ec.DownstreamLocations || [] : [],
    SendsDownstream: !!ec.SendDownstream,
  };
  for (const name of RUN_EXTRAS) if (body[name] !== undefined) run[name] = body[name];
  return run;
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
        Slow: c.Slow ?? null, // (issue #14's fields, when the executor sends them)
        RunningSince: c.RunningSince ?? null,
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
  view.stats.events += 1;
  view.runs.set(key, {
    ...(known || { NumChunks: 0, Downstream: [], SendsDownstream: false }),
    ProcID: data.ProcID,
    RunID: data.RunID,
    CurrentState: data.CurrentState,
    ChunkCounts: data.ChunkCounts,
    InputClosed: data.InputClosed,
  });
  view.dirty.add(key); // its configuration (NumChunks), timing and rates
  scheduleRender();
}

function onChunkEvent(data) {
  const key = keyOf(data.ProcID, data.RunID);
  view.stats.events += 1;
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
      Slow: data.Slow ?? null,
      RunningSince: data.RunningSince ?? null,
    });
    scheduleRender();
  }
}

setInterval(() => {
  const keys = [...view.dirty];
  view.dirty.clear();
  for (const key of keys) if (key !== view.deleting) refreshRun(key);
}, REFRESH_DIRTY_MS);

// -- rendering ---------------------------------------------------------------------

// Replace an element's content only when it changed: a redraw with nothing new touches
// no DOM (and leaves alone what a person is hovering or selecting).
function setHTML(el, html) {
  if (el._html !== html) {
    el._html = html;
    el.innerHTML = html;
  }
}

// One redraw for any number of changes, and at most one every RENDER_MS: a run
// streaming thousands of chunks a second costs the page a few redraws a second.
let renderQueued = false;
let lastRender = 0;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  const wait = Math.max(0, lastRender + RENDER_MS - performance.now());
  setTimeout(() => {
    requestAnimationFrame(() => {
      renderQueued = false;
      lastRender = performance.now();
      view.stats.renders += 1;
      render();
    });
  }, wait);
}

function render() {
  renderCards();
  renderPipeline();
  renderProcessors();
  renderDetail();
  renderChunkView();
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

// A run's chunks by state as one bar. Failures are never lost to scale: the failed
// part is drawn at least a few pixels wide (21 failures in 20,000 still show), with a
// count in its tooltip, and the row carries a count badge beside it.
function progressBar(counts, total) {
  const parts = ["SUCCEEDED", "FAILED", "RUNNING", "WAITING"];
  const denom = Math.max(total, 1);
  return (
    `<div class="bar" role="img" aria-label="chunk states">` +
    parts
      .map((s) => {
        const n = counts[s] || 0;
        const pct = (100 * n) / denom;
        if (!(pct > 0)) return "";
        if (s === "FAILED") {
          return `<span class="failed marker" style="width:${pct}%" title="${n} failed"></span>`;
        }
        return `<span class="${s.toLowerCase()}" style="width:${pct}%"></span>`;
      })
      .join("") +
    `</div>`
  );
}

function failBadge(n) {
  return n ? `<span class="fail-badge" title="${n} failed">${n} failed</span>` : "";
}

// -- numbers, times, durations -----------------------------------------------------

function fmtRate(rate) {
  if (rate === undefined || rate === null) return "–";
  const digits = rate >= 100 ? 0 : rate >= 10 ? 1 : 2;
  return `${rate.toFixed(digits)}/s`;
}

function fmtDuration(seconds) {
  if (seconds === undefined || seconds === null) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return esc(iso);
  const today = new Date().toDateString() === when.toDateString();
  return today ? when.toLocaleTimeString() : when.toLocaleString();
}

function etaText(run) {
  if (FINISHED_RUN.has(run.CurrentState)) return "done";
  if (run.EtaSeconds === undefined) return "–";
  return run.EtaSeconds === 0 ? "finishing" : fmtDuration(run.EtaSeconds);
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
    ...(run.Paused ? [`data-paused="true"`] : []),
  ].join(" ");
  const selected = key === view.selected ? " selected" : "";
  return (
    `<tr class="run${selected}" ${attrs}>` +
    `<td class="mono">${esc(run.RunID)}</td>` +
    `<td><span class="badge b-${esc(run.CurrentState)}">${esc(run.CurrentState)}</span>` +
    `${run.Paused ? ` <span class="badge b-PAUSED">PAUSED</span>` : ""}</td>` +
    `<td class="progress-cell">${progressBar(c, total)}<div class="bar-text">${esc(countsText(run))}</div></td>` +
    `<td class="num rate">${fmtRate(run.ChunksPerSecond)}</td>` +
    `<td class="num eta">${etaText(run)}</td>` +
    `<td class="num">${c.SUCCEEDED || 0}</td>` +
    `<td class="num failed-cell">${c.FAILED ? failBadge(c.FAILED) : 0}</td>` +
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
    setHTML(root, `<p class="muted">Loading…</p>`);
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
      `<table><thead><tr><th>Run</th><th>State</th><th>Progress</th><th class="num">Rate</th><th class="num">ETA</th><th class="num">OK</th><th class="num">Failed</th></tr></thead>` +
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
  setHTML(root, html.join(""));
}

function progressCell(chunk) {
  if (chunk.State !== "RUNNING") return "";
  const since = chunk.RunningSince ? ` title="running since ${esc(chunk.RunningSince)}"` : "";
  const slow = chunk.Slow ? `<span class="badge b-FAILED"${since}>SLOW</span> ` : "";
  return slow + progressText(chunk);
}

function progressText(chunk) {
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
  $("cancel-run").hidden = !(run && !FINISHED_RUN.has(run.CurrentState));
  $("delete-run").hidden = !run;
  if (!run) {
    setHTML($("detail-summary"), `<p class="muted">This run no longer exists.</p>`);
    setHTML($("chunk-rows"), "");
    $("chunk-note").textContent = "";
    setHTML($("run-chart"), "");
    setHTML($("run-notes"), "");
    return;
  }
  const { total } = runTotal(run);
  setHTML($("detail-summary"), `<span class="badge b-${esc(run.CurrentState)}" id="detail-state">${esc(run.CurrentState)}</span> ` +
    (run.Paused ? `<span class="badge b-PAUSED" id="detail-paused">PAUSED</span> ` : "") +
    `<span class="muted small">${esc(countsText(run))}</span> ${failBadge(run.ChunkCounts.FAILED || 0)}` +
    `<div style="margin-top:8px">${progressBar(run.ChunkCounts, total)}</div>`);
  $("stat-rate").textContent = fmtRate(run.ChunksPerSecond);
  $("stat-eta").textContent = etaText(run);
  $("stat-started").textContent = fmtTime(run.Started);
  $("stat-ended").textContent = run.Ended ? fmtTime(run.Ended) : FINISHED_RUN.has(run.CurrentState) ? "–" : "not yet";
  $("stat-duration").textContent = fmtDuration(run.DurationSeconds);
  setHTML($("run-notes"), runNotes(run));
  setHTML($("run-chart"), view.history && view.history.key === view.selected ? charts(view.history) : "");
  for (const b of document.querySelectorAll(".filters button")) {
    b.classList.toggle("active", b.dataset.filter === view.filter);
  }
  const order = { FAILED: 0, RUNNING: 1, WAITING: 2, SUCCEEDED: 3 };
  const chunks = [...view.chunks.values()]
    .filter((c) => view.filter === "all" || c.State === view.filter)
    .sort((a, b) => order[a.State] - order[b.State]);
  const shown = chunks;
  setHTML($("chunk-rows"), shown.length
    ? shown
        .map(
          (c) =>
            `<tr class="chunk" data-chunk="${esc(c.ChunkID)}" data-state="${esc(c.State)}" title="show this chunk">` +
            `<td class="chunk-id" title="${esc(c.ChunkID)}">${esc(c.ChunkID)}</td>` +
            `<td><span class="badge b-${esc(c.State)}">${esc(c.State)}</span></td>` +
            `<td>${progressCell(c)}</td>` +
            `<td class="chunk-error">${c.Error ? esc(c.Error) : ""}</td>` +
            `</tr>`,
        )
        .join("")
    : `<tr><td colspan="4" class="muted small empty">${view.chunksLoaded ? "No chunks here." : "Loading…"}</td></tr>`);
  const more = $("chunk-more");
  more.hidden = !view.nextPage;
  $("chunk-note").textContent = view.nextPage
    ? `Showing the first ${view.chunks.size} chunks (in arrival order; failed first).`
    : "";
}

// What the executor says about why a run waits, and how much room it has, when it
// says so (fields other parts of the executor add; shown as they come).
function runNotes(run) {
  const notes = [];
  const w = run.Waiting;
  if (w) {
    const since = w.Since ? ` since ${fmtTime(w.Since)}` : "";
    notes.push(
      `<div class="note" id="run-waiting"><b>Waiting:</b> ${esc(w.Reason ?? "")}` +
        `${w.Detail ? ` — ${esc(w.Detail)}` : ""}<span class="muted">${esc(since)}</span></div>`,
    );
  }
  if (run.FreeRoom !== undefined && run.FreeRoom !== null) {
    const room = typeof run.FreeRoom === "object" ? JSON.stringify(run.FreeRoom) : run.FreeRoom;
    notes.push(`<div class="note muted small">Free room: ${esc(room)}</div>`);
  }
  return notes.join("");
}

// -- the chart of a run's last minutes (SVG, drawn here) ---------------------------

const CHART_W = 300;
const CHART_H = 96;
const CHART_PAD = { left: 34, right: 6, top: 8, bottom: 16 };
const SMOOTH = 10; // the rate at a sample is measured over this many samples back

// Chunks/s and queue depth from the history samples: the rate at each sample is the
// finished chunks over the last SMOOTH samples (a per-second difference of whole
// chunks jumps about).
function series(history) {
  const samples = history.Samples || [];
  const points = samples.map((s) => ({ t: Date.parse(s.Time) / 1000, ...s }));
  const rate = [];
  for (let i = 1; i < points.length; i++) {
    const j = Math.max(0, i - SMOOTH);
    const dt = points[i].t - points[j].t;
    rate.push({ t: points[i].t, v: dt > 0 ? Math.max(0, points[i].Finished - points[j].Finished) / dt : 0 });
  }
  const queue = points.map((p) => ({ t: p.t, v: p.Queued }));
  const running = points.map((p) => ({ t: p.t, v: p.Running }));
  return { rate, queue, running, points };
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function chart(id, title, lines, t0, t1, unit) {
  const w = CHART_W - CHART_PAD.left - CHART_PAD.right;
  const h = CHART_H - CHART_PAD.top - CHART_PAD.bottom;
  const max = niceMax(Math.max(0, ...lines.flatMap((l) => l.data.map((p) => p.v))));
  const x = (t) => CHART_PAD.left + (w * (t - t0)) / Math.max(1, t1 - t0);
  const y = (v) => CHART_PAD.top + h - (h * v) / max;
  const paths = lines
    .map((line) => {
      if (!line.data.length) return "";
      const pts = line.data.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
      const area = line.fill
        ? `<path class="area ${line.cls}" d="M${x(line.data[0].t).toFixed(1)},${y(0)} L${pts.join(" L")} L${x(line.data[line.data.length - 1].t).toFixed(1)},${y(0)} Z"/>`
        : "";
      return `${area}<polyline class="line ${line.cls}" points="${pts.join(" ")}"/>`;
    })
    .join("");
  const minutes = Math.round((t1 - t0) / 60);
  const last = lines[0].data.length ? lines[0].data[lines[0].data.length - 1].v : null;
  const legend = lines
    .map((l) => `<span><i class="sw ${l.cls}"></i>${esc(l.name)}</span>`)
    .join(" ");
  return (
    `<figure class="chart" id="${id}" data-points="${lines[0].data.length}">` +
    `<figcaption><b>${esc(title)}</b> <span class="muted">${last === null ? "" : esc(unit(last))}</span>` +
    `<span class="legend small">${legend}</span></figcaption>` +
    `<svg viewBox="0 0 ${CHART_W} ${CHART_H}" role="img" aria-label="${esc(title)}">` +
    `<line class="axis" x1="${CHART_PAD.left}" y1="${y(0)}" x2="${CHART_W - CHART_PAD.right}" y2="${y(0)}"/>` +
    `<line class="grid" x1="${CHART_PAD.left}" y1="${y(max)}" x2="${CHART_W - CHART_PAD.right}" y2="${y(max)}"/>` +
    `<line class="grid" x1="${CHART_PAD.left}" y1="${y(max / 2)}" x2="${CHART_W - CHART_PAD.right}" y2="${y(max / 2)}"/>` +
    `<text class="tick" x="${CHART_PAD.left - 4}" y="${y(max) + 3}" text-anchor="end">${esc(short(max))}</text>` +
    `<text class="tick" x="${CHART_PAD.left - 4}" y="${y(0) + 3}" text-anchor="end">0</text>` +
    `<text class="tick" x="${CHART_PAD.left}" y="${CHART_H - 3}">−${minutes || 1}m</text>` +
    `<text class="tick" x="${CHART_W - CHART_PAD.right}" y="${CHART_H - 3}" text-anchor="end">now</text>` +
    paths +
    `</svg></figure>`
  );
}

function short(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

function charts(history) {
  const { rate, queue, running, points } = series(history);
  if (points.length < 2) {
    return `<p class="muted small chart-empty">The chart fills in as the executor samples the run (once a second).</p>`;
  }
  const t1 = points[points.length - 1].t;
  const t0 = Math.min(points[0].t, t1 - 60); // at least a minute wide
  return (
    chart("chart-rate", "Chunks/s", [{ name: "finished", cls: "c-rate", fill: true, data: rate }], t0, t1, (v) => fmtRate(v)) +
    chart(
      "chart-queue",
      "Queue depth",
      [
        { name: "waiting", cls: "c-queue", fill: true, data: queue },
        { name: "running", cls: "c-running", data: running },
      ],
      t0,
      t1,
      (v) => `${Math.round(v)} waiting`,
    )
  );
}

async function loadHistory() {
  const key = view.selected;
  const run = key ? view.runs.get(key) : null;
  if (!run || view.deleting === key) return;
  try {
    const body = await getJSON(`${runUrl(run.ProcID, run.RunID)}/history`);
    if (view.selected === key) {
      view.history = { key, ...body };
      scheduleRender();
    }
  } catch {
    // deleted meanwhile, or the executor is away: the next tick tries again
  }
}

// -- the pipeline view: runs sending downstream to one another, as a graph ---------

const NODE_W = 190;
const NODE_H = 62;
const COL_GAP = 70;
const ROW_GAP = 18;

// host:port of a location's Hostname (which may be a base URL)
function hostOf(hostname) {
  try {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(hostname) ? hostname : `http://${hostname}`);
    const host = url.hostname === "localhost" ? "127.0.0.1" : url.hostname;
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    return `${host}:${port}`;
  } catch {
    return hostname;
  }
}

function isHere(hostname) {
  return hostOf(hostname) === hostOf(`${location.protocol}//${location.host}`);
}

// Nodes (this executor's runs, and the runs of other executors they send to) and edges,
// laid out left to right by their distance from the runs nothing sends to.
function pipelineGraph() {
  const nodes = new Map();
  const edges = [];
  const local = (run) => {
    const id = keyOf(run.ProcID, run.RunID);
    if (!nodes.has(id)) nodes.set(id, { id, run, external: false });
    return id;
  };
  for (const run of view.runs.values()) {
    for (const loc of run.Downstream || []) {
      const from = local(run);
      let to;
      const here = isHere(loc.Hostname) ? view.runs.get(keyOf(loc.ProcID, loc.RunID)) : null;
      if (here) to = local(here);
      else {
        to = `${loc.Hostname}|${keyOf(loc.ProcID, loc.RunID)}`;
        if (!nodes.has(to)) {
          nodes.set(to, { id: to, external: true, host: loc.Hostname, ProcID: loc.ProcID, RunID: loc.RunID, here: isHere(loc.Hostname) });
        }
      }
      edges.push({ from, to });
    }
  }
  // columns: the longest path from a run nothing sends to (cycles cut where met)
  const into = new Map([...nodes.keys()].map((id) => [id, []]));
  for (const e of edges) into.get(e.to).push(e.from);
  const col = new Map();
  const depth = (id, seen) => {
    if (col.has(id)) return col.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const d = Math.max(-1, ...into.get(id).map((p) => depth(p, seen))) + 1;
    seen.delete(id);
    col.set(id, d);
    return d;
  };
  for (const id of nodes.keys()) depth(id, new Set());
  const columns = [];
  for (const [id, c] of col) (columns[c] ||= []).push(id);
  for (const ids of columns) ids?.sort();
  const pos = new Map();
  columns.forEach((ids, c) =>
    (ids || []).forEach((id, r) => pos.set(id, { x: 10 + c * (NODE_W + COL_GAP), y: 10 + r * (NODE_H + ROW_GAP) })),
  );
  const rows = Math.max(0, ...columns.map((ids) => (ids ? ids.length : 0)));
  return { nodes, edges, pos, width: 20 + columns.length * (NODE_W + COL_GAP) - COL_GAP, height: 20 + rows * (NODE_H + ROW_GAP) - ROW_GAP };
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function nodeSvg(node, p) {
  if (node.external) {
    return (
      `<g class="node external" data-node="${esc(node.id)}" transform="translate(${p.x},${p.y})">` +
      `<title>${esc(node.host)} ${esc(node.ProcID)}/${esc(node.RunID)}</title>` +
      `<rect width="${NODE_W}" height="${NODE_H}" rx="8"/>` +
      `<text class="n-title" x="12" y="20">${esc(truncate(node.RunID, 24))}</text>` +
      `<text class="n-sub" x="12" y="36">${esc(truncate(node.ProcID, 28))}</text>` +
      `<text class="n-sub" x="12" y="52">${node.here ? "not on this executor" : `on ${esc(truncate(node.host, 24))}`}</text>` +
      `</g>`
    );
  }
  const run = node.run;
  const c = run.ChunkCounts;
  const { total } = runTotal(run);
  const done = (c.SUCCEEDED || 0) + (c.FAILED || 0);
  const barW = NODE_W - 24;
  const ok = (barW * (c.SUCCEEDED || 0)) / Math.max(total, 1);
  const bad = c.FAILED ? Math.max(3, (barW * c.FAILED) / Math.max(total, 1)) : 0;
  const selected = keyOf(run.ProcID, run.RunID) === view.selected ? " selected" : "";
  return (
    `<g class="node local s-${esc(run.CurrentState)}${selected}" data-node="${esc(node.id)}" data-run="${esc(node.id)}" data-state="${esc(run.CurrentState)}" transform="translate(${p.x},${p.y})">` +
    `<title>${esc(node.id)}: ${esc(countsText(run))}</title>` +
    `<rect width="${NODE_W}" height="${NODE_H}" rx="8"/>` +
    `<rect class="stripe" width="5" height="${NODE_H}" rx="2"/>` +
    `<text class="n-title" x="12" y="19">${esc(truncate(run.RunID, 24))}</text>` +
    `<text class="n-sub" x="12" y="34">${esc(truncate(run.ProcID, 14))} · ${esc(run.CurrentState.toLowerCase())}</text>` +
    `<text class="n-count" x="${NODE_W - 10}" y="34" text-anchor="end">${done}/${run.NumChunks || run.InputClosed ? total : `${total}+`}${c.FAILED ? ` · ${c.FAILED}✕` : ""}</text>` +
    `<rect class="n-bar" x="12" y="44" width="${barW}" height="7" rx="3"/>` +
    `<rect class="n-ok" x="12" y="44" width="${ok.toFixed(1)}" height="7" rx="3"/>` +
    (bad ? `<rect class="n-failed" x="${(12 + barW - bad).toFixed(1)}" y="44" width="${bad.toFixed(1)}" height="7"/>` : "") +
    `</g>`
  );
}

function renderPipeline() {
  const panel = $("pipeline");
  const graph = pipelineGraph();
  panel.hidden = !graph.edges.length;
  if (!graph.edges.length) return;
  const edges = graph.edges
    .map((e) => {
      const a = graph.pos.get(e.from);
      const b = graph.pos.get(e.to);
      const x1 = a.x + NODE_W;
      const y1 = a.y + NODE_H / 2;
      const x2 = b.x;
      const y2 = b.y + NODE_H / 2;
      const bend = Math.max(30, Math.abs(x2 - x1) / 2);
      return `<path class="edge" data-from="${esc(e.from)}" data-to="${esc(e.to)}" d="M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2 - 6},${y2}" marker-end="url(#arrow)"/>`;
    })
    .join("");
  const nodes = [...graph.nodes.values()].map((n) => nodeSvg(n, graph.pos.get(n.id))).join("");
  setHTML($("pipeline-graph"), `<svg width="${graph.width}" height="${graph.height}" viewBox="0 0 ${graph.width} ${graph.height}" role="img" aria-label="pipeline of runs">` +
    `<defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>` +
    edges +
    nodes +
    `</svg>`);
}

// -- a chunk's detail ----------------------------------------------------------------

const KNOWN_DATA = new Set([
  "ChunkID",
  "Format",
  "Type",
  "State",
  "RawData",
  "FilesystemReference",
  "AssociatedChunkID",
  "Error",
  "DeliveryError",
  "Progress",
  "Attempts",
]);

function dataBlock(label, data, url, name) {
  if (!data) return `<h3>${esc(label)}</h3><p class="muted small">Not available.</p>`;
  if (data.Format === "FILESYSTEM_REF") {
    const ref = data.FilesystemReference || {};
    return (
      `<h3>${esc(label)} <span class="muted small">file reference</span></h3>` +
      `<pre class="json">${esc(JSON.stringify(ref, null, 2))}</pre>`
    );
  }
  const text = JSON.stringify(data.RawData ?? null, null, 2);
  const big = text.length > SHOWN_BYTES;
  const shown = big ? text.slice(0, SHOWN_BYTES) : text;
  const size = new Blob([text]).size;
  return (
    `<h3>${esc(label)} <span class="muted small">RawData, ${fmtBytes(size)}</span></h3>` +
    `<pre class="json" data-truncated="${big}">${esc(shown)}${big ? "\n…" : ""}</pre>` +
    (big
      ? `<p class="small muted truncated-note">Showing the first ${fmtBytes(SHOWN_BYTES)}. ` +
        `<a href="#" class="download" data-url="${esc(url)}" data-name="${esc(name)}">Download all of it</a></p>`
      : "")
  );
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// Every field of every attempt, as columns: whatever an attempt carries is shown.
function attemptsTable(attempts) {
  if (!attempts || !attempts.length) return `<p class="muted small">It has not run yet.</p>`;
  const columns = [];
  for (const a of attempts) for (const k of Object.keys(a)) if (!columns.includes(k)) columns.push(k);
  const cell = (k, v) => {
    if (v === null || v === undefined) return `<td class="muted">–</td>`;
    if ((k === "Start" || k === "End") && typeof v === "string") return `<td title="${esc(v)}">${esc(fmtTime(v))}</td>`;
    if (k === "Outcome") return `<td><span class="badge b-${esc(v)}">${esc(v)}</span></td>`;
    return `<td>${esc(typeof v === "object" ? JSON.stringify(v) : v)}</td>`;
  };
  return (
    `<table class="attempts"><thead><tr>${columns.map((k) => `<th>${esc(k)}</th>`).join("")}</tr></thead><tbody>` +
    attempts.map((a) => `<tr>${columns.map((k) => cell(k, a[k])).join("")}</tr>`).join("") +
    `</tbody></table>`
  );
}

function deliveryText(run, input, output) {
  if (!run || !run.SendsDownstream) return `<span class="muted">Not sent downstream (the run's SendDownstream is off).</span>`;
  const err = output?.DeliveryError;
  if (err) return `<span class="delivery-failed">Not delivered: ${esc(err)}</span>`;
  if (input.State !== "SUCCEEDED") return `<span class="muted">Nothing to send yet (the chunk is ${esc(input.State)}).</span>`;
  return `<span class="delivery-ok">No delivery error: sent downstream, or being sent.</span>`;
}

function renderChunkView() {
  const box = $("chunk-view");
  const cv = view.chunkView;
  box.hidden = !cv;
  if (!cv) return;
  const [proc, ...rest] = cv.key.split("/");
  $("chunk-run").textContent = `run ${rest.join("/")} of ${proc}`;
  $("chunk-title").textContent = cv.id;
  if (cv.error) {
    setHTML($("chunk-body"), `<p class="muted">${esc(cv.error)}</p>`);
    return;
  }
  if (!cv.input) {
    setHTML($("chunk-body"), `<p class="muted">Loading…</p>`);
    return;
  }
  const run = view.runs.get(cv.key);
  const input = cv.input;
  const base = runUrl(proc, rest.join("/"));
  const extras = Object.entries(input).filter(([k]) => !KNOWN_DATA.has(k));
  const progress = input.Progress
    ? `${input.Progress.Done}${input.Progress.Total ? ` of ${input.Progress.Total}` : ""} done`
    : null;
  setHTML($("chunk-body"), `<div class="chunk-state"><span class="badge b-${esc(input.State)}" id="chunk-state">${esc(input.State)}</span>` +
    (input.Slow ? ` <span class="badge b-FAILED">SLOW</span>` : "") +
    (progress ? ` <span class="muted small">${esc(progress)}</span>` : "") +
    ` <span class="muted small">output ${esc(input.AssociatedChunkID || "–")}</span></div>` +
    (input.Error ? `<p class="chunk-error" id="chunk-error">${esc(input.Error)}</p>` : "") +
    (extras.length
      ? `<dl class="extras">${extras
          .map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(typeof v === "object" ? JSON.stringify(v) : v)}</dd></div>`)
          .join("")}</dl>`
      : "") +
    `<div class="io">` +
    `<div id="chunk-input">${dataBlock("Input", input, `${base}/data/input/${encodeURIComponent(input.ChunkID)}`, `${input.ChunkID}.input.json`)}</div>` +
    `<div id="chunk-output">${
      input.State === "SUCCEEDED"
        ? dataBlock("Output", cv.output, `${base}/data/output/${encodeURIComponent(input.AssociatedChunkID)}`, `${input.AssociatedChunkID}.output.json`)
        : `<h3>Output</h3><p class="muted small">None: the chunk is ${esc(input.State)}.</p>`
    }</div>` +
    `</div>` +
    `<h3>Delivery</h3><p class="small" id="chunk-delivery">${deliveryText(run, input, cv.output)}</p>` +
    `<h3>Attempts</h3><div id="chunk-attempts">${attemptsTable(input.Attempts)}</div>`);
}

async function openChunk(key, id) {
  const run = view.runs.get(key);
  if (!run) return;
  view.chunkView = { key, id, input: null, output: null, error: null };
  scheduleRender();
  const base = runUrl(run.ProcID, run.RunID);
  try {
    const input = await getJSON(`${base}/data/input/${encodeURIComponent(id)}`);
    let output = null;
    if (input.State === "SUCCEEDED" && input.AssociatedChunkID) {
      output = await getJSON(`${base}/data/output/${encodeURIComponent(input.AssociatedChunkID)}`).catch(() => null);
    }
    if (view.chunkView?.id === id && view.chunkView.key === key) {
      view.chunkView = { key, id, input, output, error: null };
    }
  } catch (err) {
    if (view.chunkView?.id === id) view.chunkView.error = err.status === 404 ? "This chunk no longer exists." : `Could not read it: ${err.message}`;
  }
  scheduleRender();
}

// A download that works with the token: fetched with it, handed over as a Blob URL.
async function download(url, name) {
  const resp = await apiFetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`${resp.status} ${url}`);
  const body = await resp.json();
  const blob = new Blob([JSON.stringify(body.RawData ?? body, null, 2)], { type: "application/json" });
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}

// -- interaction -------------------------------------------------------------------

function select(key) {
  view.selected = key;
  view.chunks = new Map();
  view.chunksLoaded = false;
  view.nextPage = null;
  view.filter = "all";
  view.history = null;
  view.chunkView = null;
  $("retry-note").textContent = "";
  delete $("retry-note").dataset.done;
  if (key) {
    history.replaceState(null, "", `#run=${encodeURIComponent(key)}`);
    loadChunks(key);
    loadHistory();
  } else {
    history.replaceState(null, "", location.pathname);
  }
  scheduleRender();
}

$("processors").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr.run");
  if (row) select(row.dataset.run === view.selected ? null : row.dataset.run);
});
$("pipeline-graph").addEventListener("click", (ev) => {
  const node = ev.target.closest("g.node.local");
  if (node && node.dataset.run !== view.selected) select(node.dataset.run);
});
$("chunk-rows").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr.chunk");
  if (row && view.selected) openChunk(view.selected, row.dataset.chunk);
});
function closeChunk() {
  view.chunkView = null;
  scheduleRender();
}
$("chunk-close").addEventListener("click", closeChunk);
$("chunk-view").addEventListener("click", (ev) => {
  if (ev.target === $("chunk-view")) closeChunk(); // a click beside the box
  const link = ev.target.closest("a.download");
  if (!link) return;
  ev.preventDefault();
  link.dataset.state = "fetching";
  download(link.dataset.url, link.dataset.name)
    .then(() => (link.dataset.state = "done"))
    .catch((err) => {
      link.dataset.state = "failed";
      link.textContent = `Download failed: ${err.message}`;
    });
});
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && view.chunkView) closeChunk();
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
  delete note.dataset.done;
  try {
    const resp = await apiFetch(`${runUrl(run.ProcID, run.RunID)}/retry`, {
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

// Cancel, once confirmed: no more chunks are taken and the waiting ones fail without
// running (POST .../cancel); running ones finish. What was done is kept.
async function cancelRun() {
  const run = view.selected ? view.runs.get(view.selected) : null;
  if (!run) return;
  const waiting = run.ChunkCounts.WAITING || 0;
  const question =
    `Cancel run ${run.RunID}? It takes no more chunks, and its ${waiting} waiting ` +
    `chunk${waiting === 1 ? "" : "s"} fail without running; running ones finish.`;
  if (!confirm(question)) return;
  await act("cancelling…", `${runUrl(run.ProcID, run.RunID)}/cancel`, "POST", (body) =>
    `${body.Cancelled} waiting chunk${body.Cancelled === 1 ? "" : "s"} cancelled`,
  );
  if (view.selected) loadChunks(view.selected);
}

// Delete, once confirmed: the run is stopped and forgotten (DELETE), with its files.
async function deleteRun() {
  const run = view.selected ? view.runs.get(view.selected) : null;
  if (!run) return;
  const question =
    `Delete run ${run.RunID}? Its running chunks are stopped, and the run, its chunks, ` +
    `outputs and files are removed from the executor. This cannot be undone.`;
  if (!confirm(question)) return;
  const key = view.selected;
  view.deleting = key; // its chart and chunks are not read again meanwhile
  const ok = await act("deleting…", runUrl(run.ProcID, run.RunID), "DELETE", () => "deleted");
  view.deleting = null;
  if (ok) {
    view.runs.delete(key);
    select(null);
    loadAll().catch(() => {});
  }
}

// Send an action with the token; say in the note what came of it. True if it was done.
async function act(doing, url, method, said) {
  const note = $("retry-note");
  note.textContent = doing;
  delete note.dataset.done;
  try {
    const resp = await apiFetch(url, { method, headers: { Accept: "application/json" } });
    const body = await resp.json().catch(() => ({}));
    note.textContent = resp.ok ? said(body) : `refused: ${body.value ?? resp.status}`;
    note.dataset.done = resp.ok ? "ok" : "refused";
    return resp.ok;
  } catch (err) {
    note.textContent = `failed: ${err}`;
    note.dataset.done = "refused";
    return false;
  }
}

$("retry-failures").addEventListener("click", () => retryFailures());
$("cancel-run").addEventListener("click", () => cancelRun());
$("delete-run").addEventListener("click", () => deleteRun());
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
  setInterval(loadHistory, HISTORY_MS);
  getJSON("openapi.json")
    .then((doc) => ($("version").textContent = `v${doc.info.version}`))
    .catch(() => {});
})();
