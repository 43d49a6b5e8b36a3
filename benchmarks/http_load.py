"""Scenario 2: AddData over HTTP, the executor against the bare app, in the same run.

The servers run as their own processes on 127.0.0.1, on a port the kernel picks: the
executor as shipped (`wiz executor` with its default flags: only where it listens and
where it writes are set), the same with a queue big enough to hold a whole batch load
(`--max-pending 2000000`, named as such in the report), and the bare app under uvicorn's
own command line, so all get uvicorn's automatic choices (uvloop and httptools,
installed with uvicorn[standard]). A load generator process (wrk, one thread) sends
AddData requests with unique ChunkIDs for a fixed time, at least `MIN_WINDOW`, as fast
as the server answers: one chunk per request or batches of 100, over 16 or 64
connections. Loads of the variants alternate, so all see the same machine noise, and
the ratio executor/bare is taken per interleaved set.

wrk does not honour Retry-After, so when the executor's queue is full its 429 answers
come back at once and wrk sends the next request: the report gives their count and
share next to the requests/s, and counts only accepted requests in the chunks/s and in
the ratio to the bare app.

Beside these, the floors and the Go proxy of issue #11: the bare app on uvicorn (the
uvicorn floor) and on granian's RSGI interface (`bare_rsgi`, the granian floor, when
granian is installed), the executor with `--ephemeral` (one chunk per request, 64
connections), and the load with a new connection per request (`Connection: close`, one
chunk, 64 connections) on the executor and both floors. The Go original is not in the
repository: its rates are taken as `GO_PROXY` times the uvicorn floor of the same set.
The full-queue flood (issue #11: end-to-end chunks/s with the queue full at least 0.9
of the rate with room): the as-shipped executor (default `--max-pending`) gets a fresh
run whose queue is filled first, then a flood of batches (`FLOOD_BATCHES`) over 64
connections for `flood_seconds`; against it, the same flood on `executor-queue` (room
for the whole flood, nothing filled), in the same set. No flood fills the default queue
in a few seconds here: the executor runs noop chunks about as fast as it takes them
(batches of 10,000 posted from four threads for 24 s left it nine tenths empty). So the
run is paused while the bench posts batches of `PREFILL_BATCH` new chunks until a 429
comes back, and tops the queue up to exactly full with the room that 429 reports; then
the flood's clock starts (t0), the run is resumed and wrk starts at once. The 429s'
share of the flood's answers, and the chunks still waiting when it ends, say whether the
queue stayed full enough to judge (`_report.FILLED`, `_report.STILL_FULL`).

For the executor, each load goes to a new run (NumChunks 0, the executor's default
worker limit and work model). End to end chunks/s counts the chunks the run completed
from the start of the load (t0) to the moment the run is SUCCEEDED (end of input is
declared as soon as the load stops): its SUCCEEDED count then, less its count at t0 (0
but for a filled run, which is paused until t0), over that time. The flood also gives
the chunks completed while it ran (counted when wrk ends, over the same start). Then the
run is deleted so the next load starts from the same memory. The executor processes' RSS
is sampled throughout (`_rss`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib.util import find_spec
from typing import Any

import httpx
import psutil

from ._loadgen import Load, generator, run_load
from ._rss import RssSampler
from ._stats import Summary

BATCHES = (1, 100)
CONNECTIONS = (16, 64)
VARIANTS: dict[str, tuple[str, ...]] = {
    "executor": (),
    "executor-queue": ("--max-pending", "2000000"),
    "executor-ephemeral": ("--ephemeral",),
}
"""Executor variants: flags beyond where it listens and writes. `executor` is as shipped;
`executor-queue` has room for every chunk of a batch load, so it shows what the
as-shipped queue bound costs when a client does not slow down for 429s;
`executor-ephemeral` keeps no journal (measured at one chunk per request, 64
connections, keep-alive)."""
FLOORS = ("bare", "bare-rsgi")
"""The bare app on uvicorn (ASGI) and on granian (RSGI)."""
GO_PROXY = {"keep-alive": 0.72, "close": 1.5}
"""The Go original's requests/s ÷ the uvicorn floor's, measured side by side on one
machine (issue #11), with keep-alive and with a new connection per request."""
CLOSE = "close"
"""The key suffix of loads with a new connection per request."""
FLOOD = "flood"
"""The key suffix of the full-queue flood: `executor/100/64/flood` (the default queue,
filled first) and `executor-queue/100/64/flood` (room for the whole flood)."""
FLOOD_BATCHES = (100, 1000)
"""Chunks per request of the full-queue floods. Batches of 100 are the issue's flood, but
here they do not keep the default queue full: each connection waits for its batch's
group commit (hundreds of ms under the flood), so 64 of them bring in fewer chunks a
second than the executor runs, and the filled queue runs down. Batches of 1,000 keep it
full (nearly every answer a 429), so the target is judged on them."""
FLOOD_CONNECTIONS = 64
PREFILL_BATCH = 10_000
"""Chunks per request while filling the queue: about 450 KB of body, well under the
default `--max-body-bytes` (16 MiB), so ten requests fill the default queue."""
QUEUE_BATCHES = (100,)
"""Batch sizes the big-queue variant is measured at: one chunk per request does not fill
the default queue (the executor runs chunks about as fast as it takes them)."""
METRICS = (
    "req_per_s",
    "accepted_req_per_s",
    "chunks_per_s",
    "e2e_chunks_per_s",
    "rejected",
    "rejected_share",
    "p50_ms",
    "p99_ms",
    "ratio",
    "ratio_rsgi",
    "go_ratio",
    "window_s",
    "e2e_window_s",
    "flood_chunks_per_s",
    "flood_window_s",
    "prefill",
    "waiting_end",
    "room_ratio",
    "room_ratio_flood",
)


def _command(kind: str, data_dir: str, extra: tuple[str, ...] | None = None) -> list[str]:
    local = ["--host", "127.0.0.1", "--port", "0"]
    if extra is not None or kind in VARIANTS:
        return [
            *(sys.executable, "-m", "wiz_executor", "executor", *local),
            *("--data-dir", data_dir, *(VARIANTS[kind] if extra is None else extra)),
        ]
    if kind == "bare-rsgi":
        return [
            *(sys.executable, "-m", "granian", "--interface", "rsgi", "--workers", "1"),
            *("benchmarks.bare_rsgi:app", "--host", "127.0.0.1", "--port", "0"),
            *("--log-level", "warning"),
        ]
    return [
        *(sys.executable, "-m", "uvicorn", "benchmarks.bare_app:app", *local),
        *("--log-level", "warning", "--no-access-log"),
    ]


def floors() -> tuple[str, ...]:
    """The floors this machine can run: granian's only when it is installed."""
    return FLOORS if find_spec("granian") else FLOORS[:1]


def flags(kind: str) -> str:
    """The flags an executor variant ran with, beyond --host, --port and --data-dir."""
    return " ".join(VARIANTS[kind]) or "defaults"


def stack_name() -> str:
    """The event loop and HTTP parser uvicorn's automatic choice gives both servers."""
    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    http = "httptools" if find_spec("httptools") else "h11"
    return f"{loop} + {http}"


@contextmanager
def server(kind: str, extra: tuple[str, ...] | None = None) -> Iterator[tuple[str, int]]:
    """Start the executor or the bare app; yield its base URL and PID; stop it. `extra`:
    an executor with these flags (another scenario's variant) whatever `kind` says.

    Its log goes to a file (a pipe nobody reads could fill up and stall the server)."""
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryFile() as log:
        command = _command(kind, data_dir, extra)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        try:
            try:
                url = f"http://127.0.0.1:{_listening_port(proc)}"
                _wait_ready(url, proc)
            except RuntimeError as exc:
                log.seek(0)
                output = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{exc}:\n{output}") from None
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _exited(proc: subprocess.Popen[bytes]) -> RuntimeError:
    return RuntimeError(f"server {proc.args} exited with status {proc.returncode}")


def _listening_port(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """The port the server bound (it was started with --port 0)."""
    deadline = time.monotonic() + timeout
    ps = psutil.Process(proc.pid)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(proc)
        # granian's sockets may be held by its worker process: look there too.
        for each in (ps, *ps.children(recursive=True)):
            for conn in each.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    return int(conn.laddr.port)
        time.sleep(0.05)  # polling a server that is still starting
    raise RuntimeError(f"server {proc.args} did not listen within {timeout}s")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise _exited(proc)
            try:
                http.get("/healthz")
                return
            except httpx.TransportError:
                time.sleep(0.05)  # polling a server that is still starting
    raise RuntimeError(f"server at {url} not ready after {timeout}s")


class _ExecutorRun:
    """One measured load against the executor: a fresh run, then its completion."""

    def __init__(self, http: httpx.Client, run_id: str) -> None:
        self.http = http
        self.path = f"/processors/noop/runs/{run_id}"

    def __enter__(self) -> _ExecutorRun:
        resp = self.http.post(self.path + "/config", json={"ExpectedData": {"NumChunks": 0}})
        resp.raise_for_status()
        return self

    def fill(self, prefix: str) -> int:
        """Fill the executor's queue with this run's chunks; return how many it holds.

        The run is paused first, so that none of them runs while the queue fills (else
        the executor runs them about as fast as it takes them and it never fills); it
        stays paused until `resume`. Batches of `PREFILL_BATCH` new chunks go until a
        429, then one batch of exactly the room that 429 reports (`X-Wiz-Free-Room`),
        until a 429 reports none left. Any other answer, or a queue still not full after
        a minute, is an error: the flood would not be one at a full queue."""
        self.http.post(self.path + "/pause").raise_for_status()
        sent, size = 0, PREFILL_BATCH
        deadline = time.monotonic() + 60
        while size and time.monotonic() < deadline:
            body = _batch(f"{prefix}-f", sent, size)
            resp = self.http.post(
                self.path + "/data", content=body, headers={"content-type": "application/json"}
            )
            if resp.status_code == 429:
                size = min(size, int(resp.headers.get("x-wiz-free-room", "0")))
                continue
            resp.raise_for_status()
            sent += size
        if size:
            raise RuntimeError(f"the queue did not fill within a minute ({sent:,} chunks sent)")
        return sent

    def resume(self) -> None:
        self.http.post(self.path + "/resume").raise_for_status()

    def counts(self) -> dict[str, int]:
        """The run's chunk counts by state, now."""
        counts: dict[str, int] = self.http.get(self.path).json()["ChunkCounts"]
        return counts

    def finish(self) -> tuple[float, dict[str, Any]]:
        """Declare end of input and wait until the run is done; (time done, run JSON)."""
        self.http.post(self.path + "/end-of-input").raise_for_status()
        deadline = time.perf_counter() + 120
        while True:
            run: dict[str, Any] = self.http.get(self.path).json()
            now = time.perf_counter()
            if run["CurrentState"] in ("SUCCEEDED", "ERRORED") or now > deadline:
                return now, run
            time.sleep(0.002)  # polling the run's state

    def __exit__(self, *exc: object) -> None:
        self.http.delete(self.path)


def _measure(
    kind: str,
    url: str,
    http: httpx.Client | None,
    load_s: int,
    batch: int,
    conns: int,
    n: int,
    close: bool = False,
) -> dict[str, Any]:
    """One load of `load_s` seconds; `http` talks to the executor (None: a bare app);
    `close`: a new connection per request."""
    tool = generator()
    prefix = f"{kind}{n}"
    target = f"{url}/processors/noop/runs/{prefix}/data"
    load = Load(target, conns, load_s, batch, prefix, close=close)
    if http is None:
        result = run_load(load, tool)
        result["chunks"] = (result["requests"] - result["rejected"]) * batch
        result["e2e_seconds"] = result["seconds"]
    else:
        with _ExecutorRun(http, prefix) as run:
            start = time.perf_counter()
            result = run_load(load, tool)
            done, info = run.finish()
        result["chunks"] = info["ChunkCounts"]["SUCCEEDED"]
        result["failed"] = info["ChunkCounts"]["FAILED"]
        result["state"] = info["CurrentState"]
        result["e2e_seconds"] = done - start
    return derive(result, batch)


def _batch(prefix: str, start: int, size: int) -> bytes:
    """An AddData body of `size` new chunks, ChunkIDs `{prefix}{i}` (wrk's are
    `{prefix}-{i}`: the two never meet)."""
    items = (
        f'{{"ChunkID":"{prefix}{i}","RawData":{{"i":{i}}}}}' for i in range(start, start + size)
    )
    return ("[" + ",".join(items) + "]").encode()


def _flood(
    kind: str, url: str, http: httpx.Client, load_s: int, batch: int, n: int
) -> dict[str, Any]:
    """One flood of batches of `batch` over 64 connections for `load_s` seconds on a fresh
    run; the as-shipped executor's queue filled first (`_ExecutorRun.fill`), the big
    queue's not (it could not be). Both sides count alike, from t0 (just before the run
    is resumed, when it was filled, and wrk starts): the flood's rate (`flood_rate`,
    until wrk ends) and end to end (until the run is SUCCEEDED after end of input, less
    the chunks SUCCEEDED at t0)."""
    prefix = f"{kind}{n}"
    target = f"{url}/processors/noop/runs/{prefix}/data"
    load = Load(target, FLOOD_CONNECTIONS, load_s, batch, prefix)
    filled = kind == "executor"
    with _ExecutorRun(http, prefix) as run:
        prefill = run.fill(prefix) if filled else 0
        at_start = run.counts()
        start = time.perf_counter()
        if filled:
            run.resume()
        result = run_load(load, generator())
        at_end = run.counts()
        flood_end = time.perf_counter()
        done, info = run.finish()
    result["chunks"] = info["ChunkCounts"]["SUCCEEDED"] - at_start["SUCCEEDED"]
    result["failed"] = info["ChunkCounts"]["FAILED"]
    result["state"] = info["CurrentState"]
    result["e2e_seconds"] = done - start
    result["prefill"] = prefill
    result["waiting_end"] = at_end["WAITING"]
    result["flood_chunks_per_s"] = flood_rate(at_start, at_end, flood_end - start)
    result["flood_window_s"] = flood_end - start
    return derive(result, batch)


def flood_rate(at_start: dict[str, int], at_end: dict[str, int], seconds: float) -> float:
    """Chunks/s a flood completed that it also brought in: the run's SUCCEEDED from t0 to
    the flood's end, less what its queue ran down (WAITING at t0 less WAITING at the end,
    when positive), over that time.

    Without the second term a filled queue would count the chunks taken before t0 (their
    decoding and journalling not in the window) as the flood's; with room the queue only
    grows and the term is 0. When the queue stays full the two sides do the same work per
    chunk counted: take it in, journal it, run it, answer the 429s around it."""
    done = at_end["SUCCEEDED"] - at_start["SUCCEEDED"]
    drawn = max(0, at_start["WAITING"] - at_end["WAITING"])
    return (done - drawn) / seconds


def flood_seconds(quick: bool) -> int:
    """How long the full-queue flood sends (whole seconds, for wrk's -d): at least a few,
    so that the flood, not the filled queue's drain after it, is most of the end-to-end
    window."""
    return 2 if quick else 3


def derive(result: dict[str, Any], batch: int) -> dict[str, Any]:
    """The rates of one load, each with the window it was measured over."""
    answered, seconds = result["requests"], result["seconds"]
    accepted = answered - result["rejected"]
    return {
        **result,
        "req_per_s": answered / seconds,
        "accepted_req_per_s": accepted / seconds,
        "chunks_per_s": accepted * batch / seconds,
        "rejected_share": result["rejected"] / answered if answered else 0.0,
        "e2e_chunks_per_s": result["chunks"] / result["e2e_seconds"],
        "window_s": seconds,
        "e2e_window_s": result["e2e_seconds"],
    }


def seconds_per_load(batch: int, quick: bool) -> int:
    """How long one load sends: whole seconds (wrk's -d takes no fractions), so at least
    `_stats.MIN_WINDOW`. Batch loads are kept short: at the bigger queue, every second of one
    leaves a few hundred thousand chunks to hold and run."""
    return 1 if quick or batch > 1 else 2


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    raw: dict[str, list[dict[str, Any]]] = {}
    n = 0
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        samplers: dict[str, RssSampler] = {}
        for kind in (*VARIANTS, *floors()):
            urls[kind], pid = stack.enter_context(server(kind))
            if kind in VARIANTS:
                samplers[kind] = stack.enter_context(RssSampler(pid, interval=0.01))
        clients = {
            kind: stack.enter_context(httpx.Client(base_url=urls[kind], timeout=30))
            for kind in VARIANTS
        }

        def measure(kind: str, batch: int, conns: int, close: bool = False) -> dict[str, Any]:
            nonlocal n
            n += 1
            load_s = seconds_per_load(batch, quick)
            http = clients.get(kind)
            return _measure(kind, urls[kind], http, load_s, batch, conns, n, close)

        def measure_set(kinds: list[str], batch: int, conns: int, close: bool = False) -> None:
            loads = {kind: measure(kind, batch, conns, close) for kind in kinds}
            bare = loads["bare"]["accepted_req_per_s"]
            rsgi = loads["bare-rsgi"]["accepted_req_per_s"] if "bare-rsgi" in loads else None
            for kind, result in loads.items():
                if kind not in FLOORS:
                    result["ratio"] = result["accepted_req_per_s"] / bare
                    result["go_ratio"] = (
                        result["ratio"] / GO_PROXY[CLOSE if close else "keep-alive"]
                    )
                    if rsgi:
                        result["ratio_rsgi"] = result["accepted_req_per_s"] / rsgi
                key = f"{kind}/{batch}/{conns}" + (f"/{CLOSE}" if close else "")
                raw.setdefault(key, []).append(result)

        flood_s = flood_seconds(quick)
        for kind in urls:  # warm-up, not counted (the first loads also fault in memory)
            for batch in BATCHES:
                measure(kind, batch, 64)
        for rep in range(reps):
            for batch in BATCHES:
                kinds = ["executor", "bare"]
                if batch in QUEUE_BATCHES:
                    kinds.append("executor-queue")
                if batch == 1:
                    kinds += floors()[1:]
                for conns in CONNECTIONS:
                    each = kinds + (["executor-ephemeral"] if (batch, conns) == (1, 64) else [])
                    measure_set(each[::-1] if rep % 2 else each, batch, conns)
            # a new connection per request: the executor against both floors
            each = ["executor", *floors()]
            measure_set(each[::-1] if rep % 2 else each, 1, 64, close=True)
            # the full-queue floods against the same floods with room
            floods_started = time.perf_counter()
            for batch in FLOOD_BATCHES:
                floods = {}
                for kind in ("executor-queue", "executor")[:: -1 if rep % 2 else 1]:
                    n += 1
                    floods[kind] = _flood(kind, urls[kind], clients[kind], flood_s, batch, n)
                full, room = floods["executor"], floods["executor-queue"]
                full["room_ratio"] = full["e2e_chunks_per_s"] / room["e2e_chunks_per_s"]
                full["room_ratio_flood"] = full["flood_chunks_per_s"] / room["flood_chunks_per_s"]
                for kind, result in floods.items():
                    raw.setdefault(flood_key(kind, batch), []).append(result)
            log(
                f"  HTTP: repetition {rep + 1}/{reps} done (its full-queue floods took "
                f"{time.perf_counter() - floods_started:.0f} s)"
            )
        peak_rss = {kind: sampler.peak() / 2**20 for kind, sampler in samplers.items()}
    summary = {
        key: {m: Summary.of([r[m] for r in results if m in r]) for m in METRICS}
        for key, results in raw.items()
    }
    return {
        "generator": generator(),
        "stack": stack_name(),
        "seconds": {batch: seconds_per_load(batch, quick) for batch in BATCHES},
        "flood_seconds": flood_seconds(quick),
        "flags": {kind: flags(kind) for kind in VARIANTS},
        "peak_rss_mb": peak_rss,
        "raw": raw,
        "summary": summary,
        "problems": _problems(raw),
    }


def flood_key(kind: str, batch: int) -> str:
    """The results key of a full-queue flood (`kind` executor) or its room side."""
    return f"{kind}/{batch}/{FLOOD_CONNECTIONS}/{FLOOD}"


def _problems(raw: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Anything that makes a measurement suspect: errors, answers other than 2xx and 429
    (429s are part of the results), failed chunks, runs that did not succeed."""
    out = []
    for key, results in raw.items():
        for r in results:
            other = r.get("non_2xx", 0) - r.get("rejected", 0)
            if r.get("errors") or other or r.get("failed"):
                out.append(
                    f"{key}: {r.get('errors', 0)} socket errors, {other} answers other than "
                    f"2xx and 429, {r.get('failed', 0)} failed chunks"
                )
            if r.get("state") not in (None, "SUCCEEDED"):
                out.append(f"{key}: run ended {r['state']}")
    return out
