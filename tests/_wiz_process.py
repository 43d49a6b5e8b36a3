"""`wiz executor` as a real process for the durability tests: start it on a data dir,
wait until it serves (and has recovered), kill it with a real signal, start it again;
and the few Processor API calls those tests share (configure, wait for a run's end).

Its stderr goes to a file in the test's folder (a pipe nobody reads could fill and block
it); `stderr()` reads it back for a failing test's message.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

PLUGINS = Path(__file__).resolve().parent / "plugins"
"""Test-only processors (`crash`), found by the subprocess as an installed plugin."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wiz_command() -> list[str]:
    script = Path(sys.executable).parent / "wiz"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "wiz_executor"]


class WizProcess:
    """One `wiz executor` process on `folder` (its data dir is `folder/wiz-data`)."""

    def __init__(self, folder: Path, *args: str, log_level: str | None = "info") -> None:
        self.folder = folder
        self.args = (*(("--log-level", log_level) if log_level else ()), *args)
        """`--log-level` (None: the executor's default, as shipped), then `args`."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    def stderr(self) -> str:
        path = self.folder / f"stderr-{self.starts}.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self, timeout: float = 30, may_die: bool = False) -> bool:  # noqa: ASYNC109
        """Start it and wait until /healthz says ok (recovery done): True. False if it
        died on its own first and `may_die` (a test's poison chunk may kill it)."""
        self.starts += 1
        env = {**os.environ, "PYTHONPATH": str(PLUGINS)}
        with open(self.folder / f"stderr-{self.starts}.txt", "wb") as err:  # noqa: ASYNC230
            self.proc = await asyncio.create_subprocess_exec(
                *wiz_command(),
                "executor",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.folder / "wiz-data"),
                *self.args,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while True:
                if self.proc.returncode is not None:
                    if may_die:
                        return False
                    raise AssertionError(f"wiz executor exited at start-up:\n{self.stderr()}")
                try:
                    resp = await client.get("/healthz")
                    if resp.json()["status"] == "ok":
                        return True
                except httpx.TransportError:
                    pass
                if loop.time() > deadline:
                    raise AssertionError(f"wiz executor did not start:\n{self.stderr()}")
                await asyncio.sleep(0.02)  # noqa: sleep-ok (poll interval for the server)

    async def kill(self, sig: int = signal.SIGKILL, timeout: float = 30) -> int:  # noqa: ASYNC109
        """Send `sig` and wait for the process to end; its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def wait_exit(self, timeout: float = 60) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def stop(self) -> None:
        """Make sure it is gone (a test's clean-up)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def get_json(client: httpx.AsyncClient, path: str) -> Any:
    resp = await client.get(path)
    assert resp.status_code == 200, resp.text
    return resp.json()


RUN = "/processors/{proc}/runs/{run}"


def run_path(proc: str, run: str) -> str:
    return RUN.format(proc=proc, run=run)


async def configure(
    client: httpx.AsyncClient, proc: str, run: str, processor: dict[str, Any], **ec: Any
) -> None:
    body = {"Processor": processor, "ExecutorConfig": ec, **ec.pop("extra", {})}
    resp = await client.post(run_path(proc, run) + "/config", json=body)
    assert resp.status_code == 200, resp.text


async def wait_finished(
    client: httpx.AsyncClient,
    proc: str,
    run: str,
    timeout: float = 60,  # noqa: ASYNC109 (a polling deadline)
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        body: dict[str, Any] = await get_json(client, run_path(proc, run))
        if body["CurrentState"] in ("SUCCEEDED", "ERRORED"):
            return body
        assert loop.time() < deadline, f"run {run} did not finish: {body}"
        await asyncio.sleep(0.02)  # noqa: sleep-ok (poll interval)


def chunk(chunk_id: str) -> dict[str, Any]:
    return {"ChunkID": chunk_id, "RawData": {"n": chunk_id}}
