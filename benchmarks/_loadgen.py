"""Load generators for the HTTP benchmark: wrk when it is installed, else a Python one.

Either runs as its own process, apart from the server under test, and returns the same
record: requests answered, seconds, non-2xx answers and how many of them were 429,
errors, latency percentiles.
wrk (one thread, as in the reference measurements) is preferred: the Python generator
needs about as much CPU per request as the server, so on a small machine it may be the
bottleneck; the report says which one ran.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._child import params_from_argv, report, run_child, run_on_uvloop
from ._stats import percentile

LUA = Path(__file__).with_name("adddata.lua")


@dataclass(frozen=True)
class Load:
    url: str
    connections: int
    seconds: float
    batch: int
    prefix: str
    requests: int = 0
    """Stop after this many answers (0: run for `seconds`, which is then only a cap)."""
    close: bool = False
    """A new connection per request (`Connection: close`), as clients that do not keep
    connections alive (the original Go client, shell loops) make."""


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def run_load(load: Load, tool: str) -> dict[str, Any]:
    if tool == "wrk":
        return _wrk(load)
    return _python(load)


def _wrk(load: Load) -> dict[str, Any]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{load.connections}",
        f"-d{load.seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        *(("-H", "Connection: close") if load.close else ()),
        load.url,
        "--",
        str(load.batch),
        load.prefix,
        str(load.requests),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # ends when wrk exits
        lines.append(line)
        if line.startswith("WRK-LIMIT"):
            proc.send_signal(signal.SIGINT)
    stderr = proc.stderr.read() if proc.stderr else ""
    proc.wait()
    for line in lines:
        if line.startswith("WRK-RESULT "):
            raw = json.loads(line[len("WRK-RESULT ") :])
            seconds = raw["duration_us"] / 1e6
            errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors"))
            return {
                "requests": raw["requests"],
                "seconds": seconds,
                "non_2xx": raw["status_errors"],
                "rejected": raw["rejected"],
                "errors": errors + raw["timeouts"],
                "p50_ms": raw["p50_us"] / 1000,
                "p90_ms": raw["p90_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "max_ms": raw["max_us"] / 1000,
            }
    raise RuntimeError(f"wrk failed (exit {proc.returncode}): {''.join(lines)}\n{stderr}")


def _python(load: Load) -> dict[str, Any]:
    params = {
        "url": load.url,
        "connections": load.connections,
        "seconds": load.seconds,
        "batch": load.batch,
        "prefix": load.prefix,
        "requests": load.requests,
        "close": load.close,
    }
    return run_child("benchmarks._loadgen", params, timeout=load.seconds + 60)


# -- the Python generator (runs in its own process) ------------------------------------


def _body(prefix: str, start: int, batch: int) -> bytes:
    items = [
        f'{{"ChunkID":"{prefix}-{i}","RawData":{{"i":{i}}}}}' for i in range(start, start + batch)
    ]
    return (items[0] if batch == 1 else "[" + ",".join(items) + "]").encode()


async def _python_load(
    url: str,
    connections: int,
    seconds: float,
    batch: int,
    prefix: str,
    requests: int,
    close: bool = False,
) -> dict[str, Any]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    head = f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
    if close:
        head += "Connection: close\r\n"
    latencies: list[float] = []
    counter = 0
    non_2xx = rejected = errors = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def connection() -> None:
        nonlocal counter, non_2xx, rejected, errors
        reader, writer = await asyncio.open_connection(host, int(port))
        fresh = True
        try:
            while loop.time() < deadline and not (requests and len(latencies) >= requests):
                body = _body(prefix, counter, batch)
                counter += batch
                request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
                start = time.perf_counter()
                if close and fresh is False:  # the server closed the last one: a new one
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                fresh = False
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if not status_line.startswith(b"HTTP/1.1 2"):
                    non_2xx += 1
                    rejected += status_line.startswith(b"HTTP/1.1 429")
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "non_2xx": non_2xx,
        "rejected": rejected,
        "errors": errors,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=0.0) * 1000,
    }


def _main() -> None:
    p = params_from_argv()
    report(
        run_on_uvloop(
            _python_load(
                p["url"],
                p["connections"],
                p["seconds"],
                p["batch"],
                p["prefix"],
                p["requests"],
                p.get("close", False),
            )
        )
    )


if __name__ == "__main__":
    sys.exit(_main())
