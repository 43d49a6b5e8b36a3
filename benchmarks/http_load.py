"""Scenario 2: AddData over HTTP, the executor against the bare app, in the same run.

Both servers run as their own processes on 127.0.0.1, on a port the kernel picks: the
executor as shipped (`wiz executor`), the bare app under uvicorn's own command line, so
both get uvicorn's automatic choices (uvloop and httptools, installed with
uvicorn[standard]). A load generator process (wrk, one thread) sends AddData requests
with unique ChunkIDs: one chunk per request or batches of 100, over 16 or 64
connections. Each load is a fixed number of requests sent as fast as the server
answers; executor and bare loads alternate, so both see the same machine noise, and
the ratio executor/bare is taken per pair.

For the executor, each load goes to a new run (NumChunks 0, the executor's default
worker limit and work model). End to end chunks/s counts from the start of the load to
the moment the run is SUCCEEDED (end of input is declared as soon as the load stops);
then the run is deleted so the next load starts from the same memory.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from typing import Any

import httpx
import psutil

from ._loadgen import Load, generator, run_load
from ._stats import Summary

BATCHES = (1, 100)
CONNECTIONS = (16, 64)
MAX_PENDING = 2_000_000
"""The executor's bound on waiting chunks during the loads. wrk does not honour
Retry-After, so the default bound (100,000) would turn the batch loads into a measure
of how fast the executor answers 429; with room for every chunk of a load, they
measure how fast it takes and runs them."""
MAX_SECONDS = 60.0
"""A cap on one load: past it the server is too slow for the numbers to matter."""
METRICS = ("req_per_s", "chunks_per_s", "e2e_chunks_per_s", "p50_ms", "p99_ms", "ratio")


def _command(kind: str, data_dir: str) -> list[str]:
    local = ["--host", "127.0.0.1", "--port", "0", "--log-level", "warning"]
    if kind == "executor":
        return [
            *(sys.executable, "-m", "wiz_executor", "executor", *local),
            *("--max-pending", str(MAX_PENDING), "--data-dir", data_dir),
        ]
    return [sys.executable, "-m", "uvicorn", "benchmarks.bare_app:app", *local, "--no-access-log"]


def stack() -> str:
    """The event loop and HTTP parser uvicorn's automatic choice gives both servers."""
    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    http = "httptools" if find_spec("httptools") else "h11"
    return f"{loop} + {http}"


@contextmanager
def server(kind: str) -> Iterator[tuple[str, int]]:
    """Start the executor or the bare app; yield its base URL and PID; stop it.

    Its log goes to a file (a pipe nobody reads could fill up and stall the server)."""
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(_command(kind, data_dir), stdout=subprocess.DEVNULL, stderr=log)
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
        for conn in ps.net_connections(kind="tcp"):
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
    kind: str, url: str, http: httpx.Client, batch: int, conns: int, requests: int, n: int
) -> dict[str, Any]:
    tool = generator()
    prefix = f"{kind}{n}"
    target = f"{url}/processors/noop/runs/{prefix}/data"
    load = Load(target, conns, MAX_SECONDS, batch, prefix, requests)
    if kind == "bare":
        result = run_load(load, tool)
        result["chunks"] = result["requests"] * batch
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
    result["req_per_s"] = result["requests"] / result["seconds"]
    result["chunks_per_s"] = result["req_per_s"] * batch
    result["e2e_chunks_per_s"] = result["chunks"] / result["e2e_seconds"]
    return result


def requests_per_load(batch: int, quick: bool) -> int:
    """About 3 s (1 s quick) of the executor's AddData at one chunk per request."""
    single = 15_000 if quick else 50_000
    return single if batch == 1 else single // 20


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    raw: dict[str, list[dict[str, Any]]] = {}
    n = 0
    with (
        server("executor") as (ex_url, ex_pid),
        server("bare") as (bare_url, _),
        httpx.Client(base_url=ex_url, timeout=30) as http,
    ):
        urls = {"executor": ex_url, "bare": bare_url}
        for kind in urls:  # warm-up, not counted (the first loads also fault in memory)
            for batch in BATCHES:
                n += 1
                _measure(kind, urls[kind], http, batch, 64, requests_per_load(batch, quick), n)
        peak_rss = 0
        for rep in range(reps):
            order = ("executor", "bare") if rep % 2 == 0 else ("bare", "executor")
            for batch in BATCHES:
                for conns in CONNECTIONS:
                    pair = {}
                    for kind in order:
                        n += 1
                        requests = requests_per_load(batch, quick)
                        pair[kind] = _measure(kind, urls[kind], http, batch, conns, requests, n)
                    pair["executor"]["ratio"] = (
                        pair["executor"]["req_per_s"] / pair["bare"]["req_per_s"]
                    )
                    for kind, result in pair.items():
                        raw.setdefault(f"{kind}/{batch}/{conns}", []).append(result)
                    peak_rss = max(peak_rss, psutil.Process(ex_pid).memory_info().rss)
            log(f"  HTTP: repetition {rep + 1}/{reps} done")
    summary = {
        key: {m: Summary.of([r[m] for r in results if m in r]) for m in METRICS}
        for key, results in raw.items()
    }
    return {
        "generator": generator(),
        "stack": stack(),
        "requests": {batch: requests_per_load(batch, quick) for batch in BATCHES},
        "raw": raw,
        "summary": summary,
        "problems": _problems(raw),
    }


def _problems(raw: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Anything that makes a measurement suspect: errors, non-2xx answers, failed chunks."""
    out = []
    for key, results in raw.items():
        for r in results:
            if r.get("errors") or r.get("non_2xx") or r.get("failed"):
                out.append(
                    f"{key}: {r.get('errors', 0)} socket errors, {r.get('non_2xx', 0)} "
                    f"non-2xx answers, {r.get('failed', 0)} failed chunks"
                )
            if r.get("state") not in (None, "SUCCEEDED"):
                out.append(f"{key}: run ended {r['state']}")
    return out
