"""Nothing acknowledged is lost: real `wiz executor` processes, real signals.

Each test starts the executor as a subprocess on its own data dir, does something to it
(SIGKILL after K acknowledged chunks, SIGTERM with chunks waiting, a chunk that kills
the process every time it runs, a damaged journal file), starts it again on the same
data dir and checks what the journal promised.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from _wiz_process import (
    WizProcess,
    chunk,
    configure,
    free_port,
    get_json,
    run_path,
    wait_finished,
    wiz_command,
)

pytestmark = pytest.mark.anyio

TOTAL = 600
KILL_AFTER = 250


@pytest.mark.parametrize("model", ["POOL", "LIFETIME"])
async def test_acknowledged_chunks_survive_sigkill(tmp_path: Path, model: str) -> None:
    """SIGKILL after K acknowledged chunks (singles and batches from four clients at
    once): after the restart every acknowledged chunk is there exactly once, every chunk
    ends SUCCEEDED, the run SUCCEEDED, and no output is duplicated."""
    wiz = WizProcess(tmp_path)
    ids = [f"c{i:04d}" for i in range(TOTAL)]
    acked: list[str] = []
    enough = asyncio.Event()
    try:
        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url, timeout=30) as client:
            # Slow enough (20 ms a chunk, 8 workers) that chunks wait and run at the kill.
            await configure(client, "noop", "r", {"SleepMs": 20}, WorkModel=model, MaxWorkers=8)
            data = run_path("noop", "r") + "/data"

            async def sender(part: list[str], batch: int) -> None:
                for i in range(0, len(part), batch):
                    items = part[i : i + batch]
                    body = chunk(items[0]) if batch == 1 else [chunk(c) for c in items]
                    try:
                        resp = await client.post(data, json=body)
                    except httpx.TransportError:
                        return  # killed: this request was never acknowledged
                    assert resp.status_code == 200, resp.text
                    acked.extend(items)
                    if len(acked) >= KILL_AFTER:
                        enough.set()

            parts = [ids[i::4] for i in range(4)]
            senders = [
                asyncio.create_task(sender(part, batch))
                for part, batch in zip(parts, (1, 1, 10, 7), strict=True)
            ]
            async with asyncio.timeout(60):
                await enough.wait()
            assert await wiz.kill(signal.SIGKILL) == -signal.SIGKILL
            await asyncio.gather(*senders)
        held_at_kill = len(acked)
        assert KILL_AFTER <= held_at_kill < TOTAL  # killed mid-stream, as intended

        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url, timeout=30) as client:
            data = run_path("noop", "r") + "/data"
            recovered = await get_json(client, data)
            held = [c["ChunkID"] for c in recovered["In"]]
            assert len(held) == len(set(held)), "a chunk is held twice"
            missing = set(acked) - set(held)
            assert not missing, f"{len(missing)} acknowledged chunks lost: {sorted(missing)[:5]}"
            # The clients resend everything (a client that lost its answers would):
            # chunks already held are duplicates, never second copies.
            accepted = duplicates = 0
            for i in range(0, TOTAL, 50):
                resp = await client.post(data, json=[chunk(c) for c in ids[i : i + 50]])
                assert resp.status_code == 200, resp.text
                accepted += resp.json()["Accepted"]
                duplicates += resp.json()["Duplicates"]
            assert duplicates == len(held)
            assert accepted == TOTAL - len(held)
            resp = await client.post(run_path("noop", "r") + "/end-of-input")
            assert resp.status_code == 200, resp.text
            run = await wait_finished(client, "noop", "r")
            assert run["CurrentState"] == "SUCCEEDED", run
            assert run["ChunkCounts"]["SUCCEEDED"] == TOTAL
            final = await get_json(client, data)
            ins = [c["ChunkID"] for c in final["In"]]
            outs = [c["ChunkID"] for c in final["Out"]]
            assert sorted(ins) == ids  # each exactly once
            assert sorted(outs) == sorted(f"{c}-out" for c in ids)  # no output duplicated
            assert all(c["State"] == "SUCCEEDED" for c in final["In"])
            assert all(c["RawData"] == {"n": c["ChunkID"]} for c in final["In"])
        assert "recovered from" in wiz.stderr()
        await wiz.kill(signal.SIGTERM)
    finally:
        await wiz.stop()


async def test_sigterm_keeps_waiting_chunks_for_the_restart(tmp_path: Path) -> None:
    """SIGTERM with chunks waiting: they are not failed; they wait in the journal and
    run after the restart, and the run ends SUCCEEDED."""
    wiz = WizProcess(tmp_path)
    ids = [f"w{i:02d}" for i in range(20)]
    try:
        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url, timeout=30) as client:
            # Two workers, 300 ms a chunk: 18 or so still wait when the signal comes.
            await configure(client, "noop", "r", {"SleepMs": 300}, MaxWorkers=2)
            data = run_path("noop", "r") + "/data"
            resp = await client.post(data, json=[chunk(c) for c in ids])
            assert resp.status_code == 200, resp.text
            resp = await client.post(run_path("noop", "r") + "/end-of-input")
            assert resp.status_code == 200, resp.text
            health = await get_json(client, "/healthz")
            assert health["chunks"]["WAITING"] > 0
        # (uvicorn stops cleanly, then re-raises the signal it caught: -15 is a clean stop)
        assert await wiz.kill(signal.SIGTERM) in (0, -signal.SIGTERM)
        assert "kept in the journal" in wiz.stderr()

        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url, timeout=30) as client:
            run = await wait_finished(client, "noop", "r")
            assert run["CurrentState"] == "SUCCEEDED", run
            final = await get_json(client, run_path("noop", "r") + "/data")
            assert sorted(c["ChunkID"] for c in final["In"]) == ids
            assert all(c["State"] == "SUCCEEDED" for c in final["In"])
            assert not any(c.get("Error") for c in final["In"])
        await wiz.kill(signal.SIGTERM)
    finally:
        await wiz.stop()


async def test_a_poison_chunk_fails_after_max_attempts(tmp_path: Path) -> None:
    """A chunk that kills the process every time it runs (SIGKILL, before anything can
    be written) fails after --max-attempts restarts; the rest of the run SUCCEEDED."""
    wiz = WizProcess(tmp_path, "--max-attempts", "2")
    ids = [f"ok{i}" for i in range(10)]
    batch = [*map(chunk, ids), {"ChunkID": "poison", "RawData": {"Crash": True}}]
    try:
        # As a client would: (re)configure and (re)send until answered; both are
        # idempotent. The poison chunk may kill the executor before it answers.
        for _ in range(6):  # 2 counted attempts, one perhaps not journalled, then the end
            if not await wiz.start(may_die=True):
                assert await wiz.wait_exit() == -signal.SIGKILL
                continue
            try:
                async with httpx.AsyncClient(base_url=wiz.url, timeout=30) as client:
                    await configure(
                        client,
                        "crash",
                        "r",
                        {},
                        MaxWorkers=1,
                        extra={"ExpectedData": {"NumChunks": 11}},
                    )
                    resp = await client.post(run_path("crash", "r") + "/data", json=batch)
                    assert resp.status_code == 200, resp.text
                    run = await wait_finished(client, "crash", "r")
                    final = await get_json(client, run_path("crash", "r") + "/data")
            except httpx.TransportError:  # the poison chunk ran and killed it
                assert await wiz.wait_exit() == -signal.SIGKILL
                continue
            break
        else:
            pytest.fail("the poison chunk crash-looped the executor")
        assert run["CurrentState"] == "ERRORED"
        assert run["ChunkCounts"]["SUCCEEDED"] == 10
        assert run["ChunkCounts"]["FAILED"] == 1
        (poison,) = [c for c in final["In"] if c["ChunkID"] == "poison"]
        assert poison["State"] == "FAILED"
        assert "ran 2 times without ending" in poison["Error"]
        assert "--max-attempts 2" in poison["Error"]
        assert len(poison["Attempts"]) == 2
        assert all(a["Outcome"] is None for a in poison["Attempts"])
        assert all(c["State"] == "SUCCEEDED" for c in final["In"] if c["ChunkID"] != "poison")
        await wiz.kill(signal.SIGTERM)
    finally:
        await wiz.stop()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_journal_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    """A journal that is not one, or is cut short: the executor names the file and what
    to do, exits non-zero, prints no traceback, and never starts afresh over it."""
    data_dir = tmp_path / "wiz-data"
    data_dir.mkdir()
    db = data_dir / "wiz.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a journal\n" * 300)
    else:
        _write_journal(db)
        size = db.stat().st_size
        assert size > 4096 * 2
        with db.open("r+b") as f:
            f.truncate(size // 2 + 100)
    before = db.read_bytes()
    port = free_port()
    done = subprocess.run(
        [*wiz_command(), "executor", "--port", str(port), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert str(db) in done.stderr
    assert "cannot be read" in done.stderr
    assert "move it aside" in done.stderr
    assert "Traceback" not in done.stderr
    assert db.read_bytes() == before  # left as it was


def _write_journal(db: Path) -> None:
    """A real journal with a few pages of chunks (written by the store itself)."""
    from wiz_executor.journal import AcceptedChunk, ChunksAccepted, RunConfigured, SqliteStore

    async def write() -> None:
        store = SqliteStore(db)
        store.open()
        chunks = tuple(AcceptedChunk(f"c{i}", f"c{i}-out", "RAW", "x" * 200) for i in range(400))
        await store.append(
            [RunConfigured("noop", "r", {}, 0.0), ChunksAccepted("noop", "r", chunks, 0.0)]
        )
        await store.close()

    asyncio.run(write())
