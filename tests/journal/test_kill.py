"""An acknowledged append survives `kill -9` of the process that made it.

A child process appends chunks and prints each ChunkID once its append resolved; the
test kills it with SIGKILL mid-stream, reopens the journal and finds every one of them.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from wiz_executor.journal import SqliteStore

pytestmark = pytest.mark.anyio

APPENDER = Path(__file__).with_name("_appender.py")


async def test_every_acknowledged_chunk_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "wiz.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(APPENDER), str(path), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    acknowledged: list[str] = []
    try:
        async with asyncio.timeout(30):
            assert await proc.stdout.readline() == b"ready\n"
            while len(acknowledged) < 3000:  # well into the stream, with appends in flight
                line = await proc.stdout.readline()
                assert line, "the appender exited early"
                acknowledged.append(line.decode().strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The pipe may hold more acknowledgements written before the kill: they count too.
    rest = await proc.stdout.read()
    acknowledged += [line for line in rest.decode().split("\n") if line.strip()]
    acknowledged = [a for a in acknowledged if a.startswith("c") and a[1:].isdigit()]

    store = SqliteStore(path)
    store.open()
    try:
        [run] = store.load().runs
        held = {c.chunk_id for c in run.chunks or []}
    finally:
        await store.close()
    missing = [a for a in acknowledged if a not in held]
    assert not missing, f"{len(missing)} acknowledged chunks lost, e.g. {missing[:5]}"
    assert len(held) >= len(acknowledged) >= 3000
