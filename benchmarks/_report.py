"""Turning the measurements into the markdown report, the verdicts and the charts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import control, http_load, in_process, kept, work_models
from ._stats import MIN_WINDOW, SHORT_MARK, Summary, num, rate_cell, short_window

# -- targets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    target: str
    goal: str
    measured: str
    ok: bool | None
    """None: could not be measured in this run."""
    mark: str = ""
    """What to show instead of met/missed."""

    def row(self) -> str:
        mark = self.mark or ("-" if self.ok is None else ("met" if self.ok else "**missed**"))
        return f"| {self.target} | {self.goal} | {self.measured} | {mark} |"


def _get(section: dict[str, Any] | None, *keys: str) -> Summary | None:
    node: Any = section
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, Summary) else None


FILLED = 0.1
"""The share of 429s from which the flood counts as one that met a full queue: it was
refused. Below it, the queue had room for nearly all of it and the full-queue target is
not judged."""
STILL_FULL = 0.5
"""The share of the filled queue that must still be waiting when the flood ends for the
queue to count as full through the flood: a queue that ran down below half measured
mostly its drain, not a flood at a full queue (`http_load.flood_rate` takes the run-down
out, but then the rate is of a queue that was not full). Not nearer 1: each of the
flood's connections has one batch in flight, and an accepted batch waits for its group
commit, so once refusals cost little the executor runs the queue down faster than 64
connections refill it, whatever the refusals cost. Filled at the start, still more than
half full at the end, and refusing the flood (`FILLED`): a flood at a full queue."""


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    out: list[Verdict] = []
    http = results.get("http")
    hs = http["summary"] if http else None
    out += _front_verdicts(hs)
    single = [r["e2e_chunks_per_s"] for r in http["raw"].get("executor/1/64", [])] if http else []
    batch = [r["e2e_chunks_per_s"] for r in http["raw"].get("executor/100/64", [])] if http else []
    if single and batch:
        gain = Summary.of([b / s for b, s in zip(batch, single, strict=False)])
        out.append(
            Verdict(
                "End-to-end chunks/s, batches of 100 ÷ 1 chunk/request (64 connections)",
                "≥ 10x",
                f"{num(gain.median, 1)}x ±{gain.spread * 100:.0f}%",
                gain.median >= 10,
            )
        )
    out += _full_queue_verdicts(hs)
    ip = results.get("in_process")
    for model in in_process.MODELS:
        ratio = _get(ip["summary"] if ip else None, f"{model}/ratio")
        if ratio is not None:
            out.append(
                Verdict(
                    f"In-process chunks/s, {model}: executor ÷ bare asyncio loop",
                    "≥ 0.5",
                    ratio.fmt(2),
                    ratio.median >= 0.5,
                )
            )
    mem = results.get("memory")
    per_chunk = _get(mem["summary"] if mem else None, "rss", "per_chunk_bytes")
    if per_chunk is not None:
        out.append(
            Verdict(
                "Executor memory per retained small chunk (RSS)",
                "≤ 1 KB",
                per_chunk.fmt(0) + " B",
                per_chunk.median <= 1024,
            )
        )
    left = _get(mem["summary"] if mem else None, "traced", "after_delete_bytes")
    if left is not None and mem is not None:
        per = left.median / mem["chunks"]
        out.append(
            Verdict(
                "Python memory still held after DELETE of the run",
                "returns (≈ 0 per chunk)",
                f"{num(left.median / 1024, 0)} KB ({per:.2f} B/chunk)",
                per < 10,
            )
        )
    out += _durability_verdicts(results.get("durability"))
    out += _control_verdicts(results.get("control"))
    kept_growth = _get(results.get("kept", {}).get("summary"), "growth_mb")
    if kept_growth is not None:
        out.append(
            Verdict(
                f"RSS growth from 100,000 to {results['kept']['chunks']:,} finished chunks "
                "in kept runs",
                f"≤ {kept.TARGET_MB:g} MB",
                kept_growth.fmt(1) + " MB",
                kept_growth.median <= kept.TARGET_MB,
            )
        )
    out += _ray_verdicts(results.get("ray"))
    return out


def _full_queue_verdicts(hs: dict[str, Any] | None) -> list[Verdict]:
    """Issue #11: with the queue full (a flood of batches at the default `--max-pending`),
    chunks/s at least 0.9 of the same flood's with room; one row per flood's batch size,
    judged only when the queue stayed full: enough 429s (`FILLED`) and most of it still
    waiting at the flood's end (`STILL_FULL`)."""
    out = []
    for batch in http_load.FLOOD_BATCHES:
        full = http_load.flood_key("executor", batch)
        ratio = _get(hs, full, "room_ratio_flood")
        if ratio is None or not ratio.n:
            continue
        share = _get(hs, full, "rejected_share")
        waiting, prefill = _get(hs, full, "waiting_end"), _get(hs, full, "prefill")
        share_v = share.median if share is not None and share.n else 0.0
        held = (
            waiting.median / prefill.median
            if waiting is not None and prefill is not None and prefill.n and prefill.median
            else 0.0
        )
        stayed = share_v >= FILLED and held >= STILL_FULL
        out.append(
            Verdict(
                f"Full queue ÷ room: chunks/s completed during a flood of batches of {batch:,} "
                "(64 connections) at the default --max-pending, filled first, ÷ the same "
                "flood with room",
                "≥ 0.9",
                f"{ratio.fmt(2)} ({share_v:.0%} 429s, {held:.0%} of the filled queue still "
                "waiting at the flood's end)",
                ratio.median >= 0.9 if stayed else None,
                "" if stayed else "- (the queue did not stay full)",
            )
        )
    return out


def _ray_verdicts(ray: dict[str, Any] | None) -> list[Verdict]:
    if not ray:
        return []
    s = ray["summary"]
    out = []
    over_raw = s.get("ray_over_raw")
    if isinstance(over_raw, Summary):
        out.append(
            Verdict(
                "RAY noop chunks/s ÷ a raw Ray ActorPool (same micro-batches)",
                "≥ 0.8",
                over_raw.fmt(2),
                over_raw.median >= 0.8,
            )
        )
    over_pool = s.get("ray_over_pool_cpu")
    if isinstance(over_pool, Summary):
        out.append(
            Verdict(
                "CPU-bound (~1 ms pure Python) chunks/s: RAY 2 actors ÷ POOL 2 workers",
                "≥ 1.7",
                over_pool.fmt(2),
                over_pool.median >= 1.7,
            )
        )
    return out


def _front_verdicts(hs: dict[str, Any] | None) -> list[Verdict]:
    """Issue #11's targets for one chunk per request over 64 connections: the executor
    against the uvicorn floor, with the Go original's proxy beside it, and the p99s."""
    out: list[Verdict] = []
    close = http_load.CLOSE
    rows = (
        ("executor/1/64", "keep-alive, as shipped (durable)", 1.5, "keep-alive"),
        ("executor-ephemeral/1/64", "keep-alive, `--ephemeral`", 1.5, "keep-alive"),
        (f"executor/1/64/{close}", "a new connection per request", 1.2, close),
    )
    for key, label, over_go, load in rows:
        ratio = _get(hs, key, "ratio")
        if ratio is None or not ratio.n:
            continue
        floor_goal = over_go * http_load.GO_PROXY[load]
        go = _get(hs, key, "go_ratio")
        out.append(
            Verdict(
                f"AddData, 1 chunk/request, 64 connections, {label}: executor ÷ uvicorn floor "
                "req/s (and x Go)",
                f"≥ {floor_goal:.2f} (≥ {over_go:g}x Go)",
                f"{ratio.fmt(2)} ({go.median:.2f}x Go)" if go and go.n else ratio.fmt(2),
                ratio.median >= floor_goal,
            )
        )
        rsgi = _get(hs, key, "ratio_rsgi")
        if rsgi is not None and rsgi.n:
            out.append(
                Verdict(
                    f"AddData, 1 chunk/request, 64 connections, {label}: executor ÷ granian "
                    "RSGI floor req/s",
                    "(no target)",
                    rsgi.fmt(2),
                    None,
                    "-",
                )
            )
    for key, label in (("executor/1/64", "keep-alive"), (f"executor/1/64/{close}", "new")):
        p99 = _get(hs, key, "p99_ms")
        if p99 is not None and p99.n:
            what = "keep-alive" if label == "keep-alive" else "a new connection per request"
            out.append(
                Verdict(
                    f"AddData p99 latency, 1 chunk/request, 64 connections, {what}",
                    "< 10 ms",
                    p99.fmt(1) + " ms",
                    p99.median < 10,
                )
            )
    return out


def _durability_verdicts(dur: dict[str, Any] | None) -> list[Verdict]:
    if not dur:
        return []
    out: list[Verdict] = []
    ratios = dur["summary"]["ratio"]
    for key, label, goal in (
        ("1/req_per_s", "AddData req/s, 1 chunk/request", 0.85),
        ("100/e2e_chunks_per_s", "end-to-end chunks/s, batches of 100", 0.7),
    ):
        ratio = ratios.get(key)
        if ratio is not None:
            out.append(
                Verdict(
                    f"Durable ÷ --ephemeral, {label} (64 connections)",
                    f"≥ {goal}",
                    ratio.fmt(2),
                    ratio.median >= goal,
                )
            )
    rec = dur["recovery"]
    out.append(
        Verdict(
            f"Recovery of {rec['chunks']:,} journalled chunks (restart until writes are taken)",
            "≤ 5 s" if rec["chunks"] >= 1_000_000 else "≤ 5 s at 1,000,000 (quick: fewer)",
            f"{rec['seconds']:.2f} s",
            rec["seconds"] <= 5 if rec["chunks"] >= 1_000_000 else None,
        )
    )
    out.append(
        Verdict("Journal bytes per chunk", "(no target)", f"{rec['bytes_per_chunk']:.0f} B", None)
    )
    return out


def _control_verdicts(ctl: dict[str, Any] | None) -> list[Verdict]:
    if not ctl:
        return []
    s = ctl["summary"]
    reaction = s["raise"]["reaction_ms"]
    out = [
        Verdict(
            f"MaxWorkers raised 1 → {control.RAISED_TO} mid-run: time until the rolling "
            f"throughput (over one chunk's {control.CHUNK_SECONDS * 1000:g} ms) reaches 90% "
            "of the steady rate",
            f"≤ {control.TARGET_REACTION_MS:g} ms",
            reaction.fmt(1) + " ms",
            reaction.median <= control.TARGET_REACTION_MS,
        )
    ]
    for name in control.SWITCHES:
        overhead = s[name]["overhead_ms"]
        out.append(
            Verdict(
                f"Work model switched mid-run ({name.replace('-', ' ')}): time beyond the "
                "in-flight chunks' drain until the new model starts a chunk",
                f"≤ {control.TARGET_OVERHEAD_MS:g} ms (the switch costs the drain)",
                f"{overhead.fmt(2)} ms (drain {s[name]['drain_ms'].fmt(1)} ms)",
                overhead.median <= control.TARGET_OVERHEAD_MS,
            )
        )
    return out


# -- checks of the report itself --------------------------------------------------------


def peak_below_rest(summary: dict[str, dict[str, Summary]]) -> list[str]:
    """Work-model rows whose peak RSS is below their RSS at rest: impossible when the
    peak is sampled and includes the reading at rest (`_rss`), so a sign of a broken
    measurement (results from before it was sampled have such rows)."""
    out = []
    for key, s in summary.items():
        peak, rest = s.get("peak_rss_mb"), s.get("rest_rss_mb")
        if peak is None or rest is None or peak.n == 0 or rest.n == 0:
            continue
        if peak.median < rest.median or peak.lo < rest.lo or peak.hi < rest.hi:
            out.append(
                f"work models {key}: peak RSS {peak.fmt(1)} MB is below the RSS at rest "
                f"{rest.fmt(1)} MB"
            )
    return out


RATES: dict[str, tuple[tuple[str, str], ...]] = {
    # scenario: (rate metric, the window it was measured over), per summary row
    "work_models": (
        ("chunks_per_s", "load_window_s"),
        ("cpu_ms_per_1k", "load_window_s"),
        ("rest_cpu_ms_per_s", "rest_window_s"),
    ),
    "http": (
        ("req_per_s", "window_s"),
        ("accepted_req_per_s", "window_s"),
        ("chunks_per_s", "window_s"),
        ("e2e_chunks_per_s", "e2e_window_s"),
        ("flood_chunks_per_s", "flood_window_s"),
    ),
}


def short_windows(results: dict[str, Any]) -> list[str]:
    """Every reported rate that came from less than MIN_WINDOW of work (or from a
    window that was not recorded), by scenario and row."""
    out = []
    for scenario, pairs in RATES.items():
        section = results.get(scenario)
        if not section:
            continue
        for key, s in section["summary"].items():
            for rate, window in pairs:
                if rate in s and s[rate].n and short_window(s.get(window)):
                    out.append(f"{scenario} {key}: {rate} {_window_text(s.get(window))}")
    ip = results.get("in_process")
    if ip:
        s = ip["summary"]
        for key in s:
            if key.endswith(("/executor", "/bare", "/textbook")) and short_window(
                s.get(f"{key}_window_s")
            ):
                out.append(f"in_process {key}: chunks/s {_window_text(s.get(f'{key}_window_s'))}")
    return out


def _window_text(window: Summary | None) -> str:
    if window is None or window.n == 0:
        return "from a window that was not recorded"
    return f"from a window of {window.lo:.3f} s (shortest repetition)"


def checks(results: dict[str, Any]) -> list[str]:
    """What makes numbers of this report untrustworthy; empty when nothing does."""
    wm = results.get("work_models")
    return [*(peak_below_rest(wm["summary"]) if wm else []), *short_windows(results)]


def _checks_section(results: dict[str, Any]) -> list[str]:
    found = checks(results)
    lines = ["## Checks", ""]
    if not found:
        return [
            *lines,
            f"Every rate below comes from at least {MIN_WINDOW} s of work (the shortest "
            "window is in each table), and no peak RSS is below its RSS at rest.",
            "",
        ]
    return [
        *lines,
        f"**Numbers not to trust** (marked {SHORT_MARK} in the tables when a rate came "
        f"from less than {MIN_WINDOW} s of work):",
        "",
        *(f"- {problem}" for problem in found),
        "",
    ]


def _window(s: dict[str, Summary], metric: str) -> str:
    """The shortest window of a row's repetitions, for a table cell."""
    window = s.get(metric)
    return "-" if window is None or window.n == 0 else f"{window.lo:.2f}"


# -- work models ----------------------------------------------------------------------

CRITERIA: tuple[tuple[str, str, str, bool, float], ...] = (
    # (metric, seed criterion, label, higher is better, absolute difference that is noise)
    ("rest_rss_mb", "memory and CPU", "RSS at rest", False, 1.0),
    ("peak_rss_mb", "memory and CPU", "peak RSS", False, 1.0),
    ("rest_cpu_ms_per_s", "memory and CPU", "CPU at rest", False, 1.0),
    ("cpu_ms_per_1k", "memory and CPU", "CPU under load", False, 0.5),
    ("first_result_ms", "start-up overhead", "time to first result", False, 1.0),
    ("p50_ms", "latency of a new chunk", "chunk latency p50", False, 0.005),
    ("p99_ms", "latency of a new chunk", "chunk latency p99", False, 0.005),
    ("chunks_per_s", "throughput", "chunks/s", True, 0.0),
)
TIE = 0.10
"""Medians closer than this (relative) are a tie: repetitions here vary about as much."""


def _winner(a: Summary, b: Summary, higher: bool, floor: float) -> str | None:
    """ "a", "b" or None (a tie)."""
    if abs(a.median - b.median) <= max(floor, TIE * max(abs(a.median), abs(b.median))):
        return None
    a_better = a.median > b.median if higher else a.median < b.median
    return "a" if a_better else "b"


def winners(summary: dict[str, dict[str, Summary]]) -> dict[str, Any]:
    """Per criterion: who wins at each (processor, MaxWorkers), and the tally."""
    lt, pl = work_models.MODELS
    table: dict[str, dict[str, str]] = {}
    tally = {lt: 0, pl: 0}
    for metric, _, label, higher, floor in CRITERIA:
        row: dict[str, str] = {}
        for proc in ("noop", "expensive"):
            for workers in work_models.WORKERS:
                a = summary.get(f"{proc}/{workers}/{lt}", {}).get(metric)
                b = summary.get(f"{proc}/{workers}/{pl}", {}).get(metric)
                if a is None or b is None:
                    continue
                win = _winner(a, b, higher, floor)
                name = "tie" if win is None else (lt if win == "a" else pl)
                if win is not None:
                    tally[name] += 1
                row[f"{proc}/{workers}"] = name
        table[label] = row
    pick = pl if tally[pl] > tally[lt] else lt
    return {"table": table, "tally": tally, "pick": pick}


def _wm_table(summary: dict[str, dict[str, Summary]], proc: str) -> list[str]:
    lines = [
        "| MaxWorkers | model | time to first result (ms) | latency p50 (ms) | "
        "latency p99 (ms) | chunks/s | CPU under load (ms per 1k chunks) | "
        "load window (s) | RSS at rest (MB) | peak RSS (MB) | CPU at rest (ms/s) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers in work_models.WORKERS:
        for model in work_models.MODELS:
            s = summary.get(f"{proc}/{workers}/{model}")
            if s is None:
                continue
            load, rest = s.get("load_window_s"), s.get("rest_window_s")
            lines.append(
                f"| {workers} | {model} | {s['first_result_ms'].fmt(2)} | {s['p50_ms'].fmt(3)} | "
                f"{s['p99_ms'].fmt(3)} | {rate_cell(s['chunks_per_s'], load)} | "
                f"{rate_cell(s['cpu_ms_per_1k'], load, 1)} | {_window(s, 'load_window_s')} | "
                f"{s['rest_rss_mb'].fmt(1)} | {s['peak_rss_mb'].fmt(1)} | "
                f"{rate_cell(s['rest_cpu_ms_per_s'], rest, 2)} |"
            )
    return lines


def _wm_section(wm: dict[str, Any], default: str) -> list[str]:
    summary = wm["summary"]
    lines = [
        "## 1. Work models: LIFETIME vs POOL",
        "",
        "In-process executor, one fresh process per measurement. *noop*: answers at once. "
        "*expensive setup*: the same, after a `setup` that waits 50 ms and fills 20 MB kept "
        "by the instance. Latency: MaxWorkers clients each wait for their chunk's result "
        "before sending the next (a worker is always free). chunks/s and CPU under load: "
        "bursts of chunks in batches of 100, repeated until they add up to at least "
        f"{MIN_WINDOW} s (*load window*: their total, the shortest of the repetitions). "
        "RSS at rest: the run still open and idle after the first burst, above the same "
        "process before the run (it includes the chunks the run retains, the same for both "
        "models); peak RSS: the highest RSS from before the run to the reading at rest, "
        "sampled every few ms by another process, on the same base (never below the RSS at "
        "rest).",
        "",
        f"Executor flags: `{wm.get('flags', '?')}` (room for every chunk of a burst); "
        "the work model and MaxWorkers are set on each run, as the rows say.",
        "",
    ]
    for proc, title in (("noop", "noop"), ("expensive", "expensive setup (50 ms, 20 MB)")):
        lines += [f"**{title}**", "", *_wm_table(summary, proc), ""]
    w = winners(summary)
    cols = [f"{p}/{n}" for p in ("noop", "expensive") for n in work_models.WORKERS]
    lines += [
        "**Winner per criterion** (a tie when the medians are within "
        f"{TIE:.0%} or a negligible absolute difference); columns are processor/MaxWorkers.",
        "",
        "| seed criterion | measure | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for _, criterion, label, _, _ in CRITERIA:
        row = w["table"].get(label, {})
        lines.append(
            f"| {criterion} | {label} | " + " | ".join(row.get(c, "-") for c in cols) + " |"
        )
    tally = w["tally"]
    lines += [
        "",
        f"Wins: LIFETIME {tally['LIFETIME']}, POOL {tally['POOL']}. "
        f"**The numbers pick {w['pick']}** as the default work model; "
        f"the executor's default in this run was {default}.",
        "",
    ]
    return lines


# -- HTTP -----------------------------------------------------------------------------


def _http_section(http: dict[str, Any], default: str) -> list[str]:
    s = http["summary"]
    gen = http["generator"]
    gen_text = (
        "wrk (1 thread)"
        if gen == "wrk"
        else "the Python asyncio generator (wrk was not installed; it may be the bottleneck)"
    )
    flags = http.get("flags", {})
    seconds = http.get("seconds", {})
    lines = [
        "## 2. HTTP: AddData, executor vs a bare app",
        "",
        "Each server runs as its own process on 127.0.0.1: the executor as shipped (its "
        "default flags), the executor with a queue that holds a whole load (for batches), "
        "and the bare app under `uvicorn`; all on uvicorn's automatic choice, "
        f"{http.get('stack', '?')}. Load: {gen_text}, unique ChunkIDs, for "
        f"{seconds.get(1, '?')} s per load of one chunk per request and "
        f"{seconds.get(100, '?')} s per load of 100. The bare app only decodes the body "
        "with msgspec and answers 200. Executor runs use the defaults "
        f"(work model {default}, MaxWorkers 0 = 8). *req/s*: every answer, 429s included; "
        "*429s*: the share of answers that were 429 (queue full; the load generator does "
        "not wait for Retry-After); *accepted chunks/s*: chunks in 2xx answers. "
        "*e2e chunks/s*: chunks completed from the first request until the run is "
        "SUCCEEDED. *ratio*: executor ÷ bare accepted requests/s, per interleaved set. "
        "*window*: the shortest load of the row, in seconds.",
        "",
        "| executor flags | chunks/request | connections | executor req/s | 429s | "
        "executor accepted chunks/s | bare req/s | ratio | executor e2e chunks/s | "
        "executor p50 / p99 (ms) | bare p50 / p99 (ms) | window (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("executor", "executor-queue"):
        for batch in http_load.BATCHES:
            for conns in http_load.CONNECTIONS:
                ex = s.get(f"{kind}/{batch}/{conns}")
                bare = s.get(f"bare/{batch}/{conns}")
                if ex is None or bare is None:
                    continue
                label = "defaults" if kind == "executor" else flags.get(kind, kind)
                win, e2e_win = ex.get("window_s"), ex.get("e2e_window_s")
                share = ex.get("rejected_share")
                shown = "-" if share is None or share.n == 0 else f"{share.median:.0%}"
                lines.append(
                    f"| `{label}` | {batch} | {conns} | {rate_cell(ex['req_per_s'], win)} | "
                    f"{shown} | {rate_cell(ex['chunks_per_s'], win)} | "
                    f"{rate_cell(bare['req_per_s'], bare.get('window_s'))} | "
                    f"{ex['ratio'].fmt(2)} | {rate_cell(ex['e2e_chunks_per_s'], e2e_win)} | "
                    f"{ex['p50_ms'].fmt(1)} / {ex['p99_ms'].fmt(1)} | "
                    f"{bare['p50_ms'].fmt(1)} / {bare['p99_ms'].fmt(1)} | "
                    f"{_shortest(win, bare.get('window_s'))} |"
                )
    lines += _floors_table(s)
    lines += _flood_table(s, flags, http.get("flood_seconds"))
    peaks = http.get("peak_rss_mb", {})
    if peaks:
        lines += [
            "",
            "Peak RSS of the executor processes over all their loads (sampled): "
            + ", ".join(f"`{flags.get(k, k)}` {num(v, 0)} MB" for k, v in peaks.items())
            + ".",
        ]
    if http["problems"]:
        lines += ["", "Problems seen during the loads:", ""]
        lines += [f"- {p}" for p in http["problems"]]
    lines.append("")
    return lines


_LOADS = {"keep-alive": "keep-alive", http_load.CLOSE: "a new connection per request"}


def _floors_table(s: dict[str, dict[str, Summary]]) -> list[str]:
    """One chunk per request over 64 connections: the executor against both floors and
    the Go original's proxy, with keep-alive and with a new connection per request."""
    close = http_load.CLOSE
    loads = (
        ("keep-alive", "executor", "", "keep-alive"),
        ("keep-alive", "executor-ephemeral", "", "keep-alive"),
        ("new connection per request", "executor", f"/{close}", close),
    )
    rows = []
    for load, kind, suffix, proxy in loads:
        ex = s.get(f"{kind}/1/64{suffix}")
        bare = s.get(f"bare/1/64{suffix}")
        if ex is None or bare is None:
            continue
        rsgi = s.get(f"bare-rsgi/1/64{suffix}")
        go = bare["req_per_s"].median * http_load.GO_PROXY[proxy]
        label = "as shipped" if kind == "executor" else "--ephemeral"
        rows.append(
            f"| {load} | {label} | {rate_cell(ex['req_per_s'], ex.get('window_s'))} | "
            f"{rate_cell(bare['req_per_s'], bare.get('window_s'))} | "
            + (f"{rate_cell(rsgi['req_per_s'], rsgi.get('window_s'))} | " if rsgi else "- | ")
            + f"{num(go, 0)} | {ex['ratio'].fmt(2)} | "
            + (f"{ex['ratio_rsgi'].fmt(2)} | " if rsgi and ex["ratio_rsgi"].n else "- | ")
            + f"{ex['go_ratio'].fmt(2)} | {ex['p99_ms'].fmt(1)} | {bare['p99_ms'].fmt(1)} | "
            + (f"{rsgi['p99_ms'].fmt(1)} |" if rsgi else "- |")
        )
    if not rows:
        return []
    return [
        "",
        "One chunk per request, 64 connections: the executor against the floors (the bare "
        "app on uvicorn, and on granian's RSGI interface) and the Go original, whose rate "
        "is its proxy: "
        + " and ".join(
            f"{v:g}x the uvicorn floor ({_LOADS[k]})" for k, v in http_load.GO_PROXY.items()
        )
        + ", as measured side by side in issue #11. *new connection per request*: "
        "`Connection: close` on every request. Ratios per interleaved set.",
        "",
        "| load | executor | executor req/s | uvicorn floor req/s | granian RSGI floor req/s | "
        "Go proxy req/s | ÷ uvicorn floor | ÷ granian floor | x Go | executor p99 (ms) | "
        "uvicorn floor p99 (ms) | granian floor p99 (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def _flood_table(
    s: dict[str, dict[str, Summary]], flags: dict[str, str], seconds: int | None
) -> list[str]:
    """The full-queue floods: the as-shipped executor, its queue filled first, against the
    big queue, under the same flood in the same set."""
    rows = []
    for batch in http_load.FLOOD_BATCHES:
        for kind in ("executor", "executor-queue"):
            r = s.get(http_load.flood_key(kind, batch))
            if r is None:
                continue
            win, flood_win = r.get("window_s"), r.get("flood_window_s")
            e2e_win = r.get("e2e_window_s")
            ratios = (
                f"{r['room_ratio_flood'].fmt(2)} | {r['room_ratio'].fmt(2)}"
                if r["room_ratio_flood"].n
                else "- | -"
            )
            label = "defaults" if kind == "executor" else flags.get(kind, kind)
            rows.append(
                f"| `{label}` | {batch:,} | {r['prefill'].fmt(0)} | "
                f"{rate_cell(r['req_per_s'], win)} | {r['rejected_share'].median:.0%} | "
                f"{rate_cell(r['chunks_per_s'], win)} | {r['waiting_end'].fmt(0)} | "
                f"{rate_cell(r['flood_chunks_per_s'], flood_win)} | "
                f"{rate_cell(r['e2e_chunks_per_s'], e2e_win)} | "
                f"{r['p50_ms'].fmt(1)} / {r['p99_ms'].fmt(1)} | {ratios} | "
                f"{_shortest(win, flood_win, e2e_win)} |"
            )
    if not rows:
        return []
    return [
        "",
        f"The full-queue floods: batches over {http_load.FLOOD_CONNECTIONS} connections for "
        f"{seconds or '?'} s to a fresh run. On the as-shipped executor the run is paused "
        f"first and its queue filled with batches of {http_load.PREFILL_BATCH:,} new chunks "
        "until a 429, then topped up to the room that 429 reports (*filled*: the chunks "
        "waiting at the flood's start); the clock starts, the run is resumed and the flood "
        "starts. The big queue gets the same flood with nothing filled. *waiting at the "
        "end*: the run's WAITING chunks when the flood stops. *flood chunks/s*: chunks "
        "completed from the flood's start to its end, less what the queue ran down (WAITING "
        "at the start less at the end), over that time; *e2e chunks/s*: chunks completed "
        "from the flood's start until the run is SUCCEEDED after end of input. Ratios full "
        "÷ room per interleaved set; the targets take the flood's, and are judged only when "
        f"the queue stayed full (at least {FILLED:.0%} 429s and {STILL_FULL:.0%} of the "
        "filled queue still waiting at the end).",
        "",
        "| executor flags | chunks/request | filled | req/s | 429s | accepted chunks/s | "
        "waiting at the end | flood chunks/s | e2e chunks/s | p50 / p99 (ms) | "
        "full ÷ room, flood | full ÷ room, e2e | window (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def _shortest(*windows: Summary | None) -> str:
    lows = [w.lo for w in windows if w is not None and w.n]
    return f"{min(lows):.2f}" if lows else "-"


def _in_process_section(ip: dict[str, Any]) -> list[str]:
    s = ip["summary"]
    lines = [
        "## 3. In-process throughput (no HTTP)",
        "",
        f"{ip['n']:,} noop chunks per measurement, MaxWorkers {ip['workers']}, one "
        "`add_chunks` call per chunk with a loop iteration between chunks (as separate "
        "requests would arrive), on uvloop. The bare loops do the same work model with "
        "nothing else: LIFETIME, a semaphore taken before each chunk's task starts and "
        "released when it ends (the executor's own structure); POOL, MaxWorkers consumers "
        "of an `asyncio.Queue`. The last row compares LIFETIME with the textbook loop, "
        "where each chunk's task enters `async with semaphore` itself. Each measurement "
        f"repeats its chunks until it has taken at least {MIN_WINDOW} s; *window*: the "
        f"shortest measurement of the row, in seconds. Executor flags: `{ip.get('flags', '?')}`.",
        "",
        "| model | executor chunks/s | bare asyncio chunks/s | ratio | window (s) |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(label: str, executor: str, bare: str, ratio: str) -> str:
        ex_w, bare_w = s.get(f"{executor}_window_s"), s.get(f"{bare}_window_s")
        return (
            f"| {label} | {rate_cell(s[executor], ex_w)} | {rate_cell(s[bare], bare_w)} | "
            f"{s[ratio].fmt(2)} | {_shortest(ex_w, bare_w)} |"
        )

    for model in in_process.MODELS:
        if f"{model}/executor" in s:
            lines.append(row(model, f"{model}/executor", f"{model}/bare", f"{model}/ratio"))
    if "LIFETIME/textbook" in s:
        lines.append(
            row(
                "LIFETIME, against the textbook loop",
                "LIFETIME/executor",
                "LIFETIME/textbook",
                "LIFETIME/textbook_ratio",
            )
        )
    lines.append("")
    return lines


def _memory_section(mem: dict[str, Any]) -> list[str]:
    rss, traced = mem["summary"]["rss"], mem["summary"]["traced"]
    kb = 1 / 1024
    return [
        "## 4. Memory per retained chunk",
        "",
        f"One noop run of {mem['chunks']:,} small chunks in a fresh process (default work "
        "model), measured once all SUCCEEDED, and after DELETE of the run and a garbage "
        f"collection. Executor flags: `{mem.get('flags', '?')}`. No rates here: every figure "
        "is a size.",
        "",
        "| measure | per retained chunk | held after DELETE | after DELETE + malloc_trim |",
        "|---|---:|---:|---:|",
        f"| process RSS | {rss['per_chunk_bytes'].fmt(0)} B | "
        f"{rss['after_delete_bytes'].fmt(0, kb)} KB | {rss['after_trim_bytes'].fmt(0, kb)} KB |",
        f"| Python heap (tracemalloc) | {traced['per_chunk_bytes'].fmt(0)} B | "
        f"{traced['after_delete_bytes'].fmt(0, kb)} KB | - |",
        "",
        "RSS held after DELETE is memory the C allocator keeps for reuse (Python's arenas "
        "that still hold a live object, glibc's heap top); the tracemalloc row shows "
        "whether the executor still references anything.",
        "",
    ]


def _kept_section(k: dict[str, Any]) -> list[str]:
    s = k["summary"]
    return [
        "## 6. Memory while finished runs are kept",
        "",
        f"{k['chunks']:,} small noop chunks in runs of {kept.RUN_SIZE:,}, fed in process to "
        f"a durable executor ({kept.IN_FLIGHT} runs at a time), none deleted. A finished "
        "run's chunks leave RAM once journalled; the RSS (after a garbage collection) is "
        f"read after the first {kept.BASELINE:,} have finished and after all of them. "
        f"Executor flags: `{k.get('flags', '?')}`.",
        "",
        "| RSS after 100,000 | RSS after all | growth | seconds |",
        "|---:|---:|---:|---:|",
        f"| {s['baseline_mb'].fmt(1)} MB | {s['end_mb'].fmt(1)} MB | "
        f"{s['growth_mb'].fmt(1)} MB | {s['seconds'].fmt(0)} |",
        "",
    ]


def _durability_section(dur: dict[str, Any]) -> list[str]:
    s = dur["summary"]
    lines = [
        "## 5. Durability: the journal against --ephemeral",
        "",
        "AddData over HTTP (64 connections, a fresh run per load) to three executor "
        "processes measured in turn: "
        + ", ".join(f"{k} (`{v}`)" for k, v in dur["flags"].items())
        + ". The ratios are durable ÷ ephemeral per interleaved set.",
        "",
        "| executor | chunks/request | req/s | end-to-end chunks/s | p99 ms | 429 share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in dur["flags"]:
        for batch in (1, 100):
            row = s.get(f"{kind}/{batch}")
            if row is None:
                continue
            lines.append(
                f"| {kind} | {batch} | {row['req_per_s'].fmt(0)} | "
                f"{row['e2e_chunks_per_s'].fmt(0)} | {row['p99_ms'].fmt(1)} | "
                f"{row['rejected_share'].median * 100:.0f}% |"
            )
    rec = dur["recovery"]
    lines += [
        "",
        f"Recovery: {rec['chunks']:,} journalled chunks (half SUCCEEDED with an output, "
        f"half waiting; {rec['requeued']:,} requeued) recovered in {rec['seconds']:.2f} s, "
        f"from {rec['bytes_per_chunk']:.0f} bytes of journal per chunk.",
        "",
    ]
    if dur.get("problems"):
        lines += ["Problems: " + "; ".join(dur["problems"]), ""]
    return lines


def _control_section(ctl: dict[str, Any]) -> list[str]:
    s = ctl["summary"]
    r = s["raise"]
    lines = [
        "## 7. Live control: a running run changed",
        "",
        f"In process, no HTTP; a processor that takes {control.CHUNK_SECONDS * 1000:g} ms "
        "per chunk (an asyncio sleep), so throughput is worker-bound. Raise: MaxWorkers 1 "
        f"→ {control.RAISED_TO} after {control.BEFORE:g} s (POOL); reaction = from the "
        "change until the rolling throughput over one chunk's time reaches 90% of the "
        "steady rate (a new worker's first chunk takes a chunk's time of it). Switch: "
        f"MaxWorkers {control.RAISED_TO}, the work model changed after {control.BEFORE:g} s; "
        "drain = until the old model's last chunk in flight ended, gap = until the new "
        f"model's first chunk started. Executor flags: `{ctl.get('flags', '?')}`.",
        "",
        "| change | steady chunks/s after | reaction ms | all workers running after ms |",
        "|---|---:|---:|---:|",
        f"| MaxWorkers 1 → {control.RAISED_TO} | {r['steady_per_s'].fmt(0)} | "
        f"{r['reaction_ms'].fmt(1)} | {r['all_running_ms'].fmt(2)} |",
        "",
        "| switch | chunks in flight | drain ms | gap ms | overhead ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in control.SWITCHES:
        w = s[name]
        lines.append(
            f"| {name.replace('-', ' ')} | {w['in_flight'].fmt(0)} | {w['drain_ms'].fmt(1)} | "
            f"{w['gap_ms'].fmt(1)} | {w['overhead_ms'].fmt(2)} |"
        )
    lines.append("")
    if ctl.get("problems"):
        lines += ["Problems: " + "; ".join(ctl["problems"]), ""]
    return lines


def _ray_section(ray: dict[str, Any]) -> list[str]:
    s, p = ray["summary"], ray["params"]

    def cell(key: str, digits: int = 0) -> str:
        value = s.get(key)
        return value.fmt(digits) if isinstance(value, Summary) else "-"

    return [
        "## 8. RAY on a local Ray runtime",
        "",
        "One executor in process (ephemeral) whose first RAY run starts a local Ray "
        "runtime (127.0.0.1, 2 CPUs). noop: a run of MaxWorkers 2 (BatchSize 100) with its "
        f"actors up, {p['noop']:,} chunks; the raw ActorPool: 2 Ray actors, the same "
        f"batches of 100, two in flight per actor; one call per chunk: {p['naive']:,} "
        f"chunks on the same actors. CPU-bound: {p['cpu']:,} chunks of ~1 ms of pure "
        "Python, RAY with 2 actors and POOL with 2 workers.",
        "",
        "| measurement | value |",
        "|---|---:|",
        f"| noop chunks/s, RAY | {cell('ray_noop_per_s')} |",
        f"| noop chunks/s, raw Ray ActorPool, batches of 100 | {cell('raw_noop_per_s')} |",
        f"| noop chunks/s, one Ray call per chunk | {cell('naive_noop_per_s')} |",
        f"| CPU-bound chunks/s, RAY (2 actors) | {cell('ray_cpu_per_s')} |",
        f"| CPU-bound chunks/s, POOL (2 workers) | {cell('pool_cpu_per_s')} |",
        f"| first chunk's result, Ray not started (s) | {cell('cold_first_chunk_s', 2)} |",
        f"| first chunk's result, a new run, Ray up (s) | {cell('warm_first_chunk_s', 2)} |",
        "",
    ]


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    default = results["default_work_model"]
    reps = ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in results["reps"].items())
    lines = [
        "# wiz-executor benchmarks",
        "",
        f"Measured {m['date']} ({results['mode']} mode; repetitions: {reps}) on "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}; {m['python']}; "
        f"{pk}. Load average (1 min) {m['load_start']:.2f} at the start, "
        f"{results['load_end']:.2f} at the end; the whole run took "
        f"{results['seconds'] / 60:.1f} min.",
        "",
        "Cells are the median of the repetitions ± half their range (as a % of the median). "
        "Other processes share this machine, so absolute numbers move from run to run; "
        "the targets are ratios of two measurements taken in this run, interleaved "
        "(executor, bare, executor, …), which machine noise affects alike.",
        "",
        "## Targets",
        "",
        "| target | goal | measured | |",
        "|---|---|---|---|",
        *(v.row() for v in verdicts(results)),
        "",
        *_checks_section(results),
    ]
    if "work_models" in results:
        lines += _wm_section(results["work_models"], default)
    if "http" in results:
        lines += _http_section(results["http"], default)
    if "in_process" in results:
        lines += _in_process_section(results["in_process"])
    if "memory" in results:
        lines += _memory_section(results["memory"])
    if "durability" in results:
        lines += _durability_section(results["durability"])
    if "kept" in results:
        lines += _kept_section(results["kept"])
    if "control" in results:
        lines += _control_section(results["control"])
    if "ray" in results:
        lines += _ray_section(results["ray"])
    lines += [
        "Charts: `work_models.png`, `http.png`. Raw measurements: `latest.json`. "
        "Profiling and the hot-path fixes it led to, with before/after numbers: "
        "`history.md`.",
        "",
    ]
    return "\n".join(lines)


# -- the README's copy ------------------------------------------------------------------

README_BEGIN = (
    "<!-- benchmarks:begin: written by a full `make bench` from its report; do not edit -->"
)
README_END = "<!-- benchmarks:end -->"


def readme_block(results: dict[str, Any]) -> str:
    """The report as the README's "Latest results" carry it: its headings moved under
    that section's, and the charts linked from the results folder."""
    lines = []
    for line in markdown(results).splitlines():
        if line.startswith("# "):
            continue
        lines.append("##" + line if line.startswith("## ") else line)
    lines += [
        "![Work models](benchmarks/results/work_models.png)",
        "",
        "![HTTP](benchmarks/results/http.png)",
    ]
    return "\n".join(lines).strip() + "\n"


def replace_readme_block(readme: str, block: str) -> str:
    """`readme` with the text between its benchmark markers replaced by `block`."""
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"README has no {README_BEGIN!r} … {README_END!r} block")
    head = readme[: begin + len(README_BEGIN)]
    return f"{head}\n\n{block}\n{readme[end:]}"


# -- charts ---------------------------------------------------------------------------


def _bars(ax: Any, groups: list[str], series: dict[str, list[Summary]], ylabel: str) -> None:
    import numpy as np

    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        med = [v.median for v in values]
        err = [[v.median - v.lo for v in values], [v.hi - v.median for v in values]]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, med, width, yerr=err, label=name)
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def charts(results: dict[str, Any], out_dir: Any) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    wm = results.get("work_models")
    if wm:
        s = wm["summary"]
        panels = (
            ("chunks_per_s", "chunks/s (log)", True),
            ("p99_ms", "chunk latency p99, ms (log)", True),
            ("rest_rss_mb", "RSS at rest, MB", False),
        )
        fig, axes = plt.subplots(2, 3, figsize=(15, 8))
        for row, (proc, title) in enumerate((("noop", "noop"), ("expensive", "expensive setup"))):
            for col, (metric, label, log) in enumerate(panels):
                ax = axes[row][col]
                groups = [f"MaxWorkers {w}" for w in work_models.WORKERS]
                series = {
                    model: [s[f"{proc}/{w}/{model}"][metric] for w in work_models.WORKERS]
                    for model in work_models.MODELS
                }
                _bars(ax, groups, series, label)
                if log:
                    ax.set_yscale("log")
                ax.set_title(f"{title}: {label.split(',')[0].split(' (')[0]}")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", ncols=2)
        fig.suptitle("Work models: LIFETIME vs POOL (medians, bars show the range)")
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        path = out_dir / "work_models.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)
    http = results.get("http")
    if http:
        s = http["summary"]
        groups = [
            f"{b} chunk{'s' if b > 1 else ''}/req, {c} conns"
            for b in http_load.BATCHES
            for c in http_load.CONNECTIONS
        ]
        keys = [(b, c) for b in http_load.BATCHES for c in http_load.CONNECTIONS]
        fig, axes = plt.subplots(1, 2, figsize=(14, 5))
        _bars(
            axes[0],
            groups,
            {
                k: [s[f"{k}/{b}/{c}"]["accepted_req_per_s"] for b, c in keys]
                for k in ("executor", "bare")
            },
            "AddData requests/s accepted (429s not counted)",
        )
        for i, (b, c) in enumerate(keys):
            ratio = s[f"executor/{b}/{c}"]["ratio"].median
            axes[0].annotate(f"x{ratio:.2f}", (i, 0), ha="center", va="bottom", fontsize=9)
        axes[0].set_title("Accepted requests/s: executor as shipped vs bare app (x = ratio)")
        axes[0].legend()
        _bars(
            axes[1],
            groups,
            {"executor": [s[f"executor/{b}/{c}"]["e2e_chunks_per_s"] for b, c in keys]},
            "chunks/s, first request to run SUCCEEDED",
        )
        axes[1].set_title("Executor end-to-end chunks/s")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        path = out_dir / "http.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)
    return written


def jsonable(value: Any) -> Any:
    """Results with every Summary turned into a dict, for latest.json."""
    if isinstance(value, Summary):
        return {"median": value.median, "lo": value.lo, "hi": value.hi, "n": value.n}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
