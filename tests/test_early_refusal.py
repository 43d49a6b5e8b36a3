"""AddData answers decided before the chunks are decoded (`server/_early.py`).

What proves "before decoding": a body that the full path would refuse with a 400 (a
field of the wrong type beside new ChunkIDs) is told 429 while the queue is full, and
404 for a run that does not exist. The semantics that need the chunks stay: a resend
of held chunks needs no room, a closed run answers 409. A body left unread must not
desync the connection: checked on a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import Gate, add, asgi_client, chunk_counts, configure, gate_processor, run_path
from _wiz_process import WizProcess
from conftest import wait_for
from wiz_executor import Executor, Settings
from wiz_executor.server import _early, _fastpath

pytestmark = pytest.mark.anyio

BAD_FORMAT = {"Format": "NOT-A-FORMAT"}
"""A field the ChunkID scan does not look at and the full decode refuses (400)."""


def chunks(ids: range, **extra: Any) -> list[dict[str, Any]]:
    return [{"ChunkID": f"c{i}", "RawData": {"i": i}, **extra} for i in ids]


@pytest.fixture
async def full(tmp_path: Path) -> AsyncIterator[tuple[Executor, httpx.AsyncClient, Gate]]:
    """An executor whose queue (max 3 waiting) is full: run r holds c0 running (held at
    the gate) and c1-c3 waiting; run empty is configured and holds nothing."""
    gate = Gate()
    settings = Settings(data_dir=tmp_path, max_pending=3, retry_after=2)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        executor.registry.register(gate_processor(gate))
        try:
            await configure(client, "gate", "r", MaxWorkers=1)
            await configure(client, "gate", "empty")
            assert (await add(client, "gate", "r", chunks(range(1)))).is_success
            await wait_for(lambda: gate.active == 1)
            assert (await add(client, "gate", "r", chunks(range(1, 4)))).is_success
            yield executor, client, gate
        finally:
            gate.release_all()


async def test_a_batch_of_new_chunks_without_room_is_429_before_it_is_decoded(
    full: tuple[Executor, httpx.AsyncClient, Gate],
) -> None:
    _, client, _ = full
    # The full path would answer 400 for the Format; the early scan of the ChunkIDs
    # already knows the two new chunks do not fit.
    resp = await add(client, "gate", "r", chunks(range(10, 12), **BAD_FORMAT))
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] == "2"
    assert "3 waiting chunks" in resp.json()["value"]
    resp = await add(client, "gate", "r", chunks(range(10, 11), **BAD_FORMAT)[0])
    assert resp.status_code == 429, resp.text
    counts = await chunk_counts(client, "gate", "r")
    assert (counts["WAITING"], counts["RUNNING"]) == (3, 1)


async def test_a_429_for_a_full_queue_is_held_before_it_is_sent(
    full: tuple[Executor, httpx.AsyncClient, Gate], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that does not wait for Retry-After is slowed down by the server instead:
    held `FULL_PACE` (made long here), so that a flood of them cannot take the event
    loop from the chunks that fill the queue. Other errors are answered at once."""
    _, client, _ = full
    monkeypatch.setattr(_fastpath, "FULL_PACE", 0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await add(client, "gate", "r", chunks(range(10, 12)))
    assert resp.status_code == 429
    assert loop.time() - started >= 0.5
    # Not held: far quicker than a hold made long enough (5 s) that no stall of a loaded
    # machine passes for one (they reached 0.35 s on a shared 2-core box).
    monkeypatch.setattr(_fastpath, "FULL_PACE", 5.0)
    started = loop.time()
    assert (await add(client, "gate", "nope", chunks(range(10, 12)))).status_code == 404
    assert loop.time() - started < 5.0


async def test_a_full_queue_is_429_before_the_body_for_a_run_holding_nothing(
    full: tuple[Executor, httpx.AsyncClient, Gate],
) -> None:
    _, client, _ = full
    # Not even JSON: decided on the headers (no chunk of it can be a resend).
    resp = await client.post(f"{run_path('gate', 'empty')}/data", content=b"x" * 40)
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] == "2"


async def test_an_unknown_run_is_404_before_the_body(
    full: tuple[Executor, httpx.AsyncClient, Gate],
) -> None:
    _, client, _ = full
    for proc, run in (("gate", "nope"), ("no-such-processor", "r")):
        resp = await client.post(f"{run_path(proc, run)}/data", content=b"not json")
        assert resp.status_code == 404, resp.text


async def test_what_needs_the_chunks_is_still_decided_by_them(
    full: tuple[Executor, httpx.AsyncClient, Gate],
) -> None:
    executor, client, gate = full
    # A resend of held chunks needs no room, even while the queue is full.
    resend = await add(client, "gate", "r", chunks(range(1, 4)))
    assert resend.json() == {"Accepted": 0, "Duplicates": 3}
    # Held with other content: a conflict, not a 429.
    changed = await add(client, "gate", "r", {"ChunkID": "c1", "RawData": {"i": 99}})
    assert changed.status_code == 409, changed.text
    # A bad body that fits nowhere near the scan's threshold: the full path's 400.
    assert (await client.post(f"{run_path('gate', 'r')}/data", content=b"{")).status_code == 400
    # A run whose input is closed answers 409 to new chunks, full queue or not.
    assert (await client.post(f"{run_path('gate', 'empty')}/end-of-input")).is_success
    closed = await add(client, "gate", "empty", chunks(range(20, 22)))
    assert closed.status_code == 409, closed.text
    # With room again, new chunks are taken (a client retrying as told loses nothing).
    gate.release_all()

    async def accepted() -> bool:
        resp = await add(client, "gate", "r", chunks(range(10, 12)))
        assert resp.status_code in (200, 429), resp.text
        return resp.status_code == 200

    await wait_for(accepted, what="the batch to be accepted once there is room")
    # c0-c3 and c10-c11: nothing refused early was taken, nothing was taken twice.
    assert sum(executor.runs.counts.values()) == 6


async def test_a_body_left_unread_keeps_the_connection_in_step(tmp_path: Path) -> None:
    """On a real server: a refusal decided on the headers leaves a large body unread;
    the next request on the same connection must be answered as itself."""
    wiz = WizProcess(tmp_path)
    try:
        await wiz.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", wiz.port)
        body = b"[" + b" " * 200_000 + b"]"
        head = (
            "POST /processors/noop/runs/nope/data HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        statuses = []
        async with asyncio.timeout(30):
            for _ in range(2):
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                statuses.append(status.split()[1])
        assert statuses == [b"404", b"200"]
        writer.close()
    finally:
        await wiz.stop()


def flat(ids: range) -> list[dict[str, Any]]:
    """Chunks of one "{" each: a body of them bounds its chunk count by max_pending (3)."""
    return [{"ChunkID": f"c{i}", "RawData": i} for i in ids]


def raw_batch(ids: range, tail: bytes = b"]") -> bytes:
    """A batch body of `ids` (as `flat`) ending in `tail` (by default the list's end)."""
    return b"[" + b",".join(b'{"ChunkID":"c%d","RawData":%d}' % (i, i) for i in ids) + tail


async def test_with_no_room_a_batch_whose_first_chunk_is_new_is_429_whatever_follows(
    full: tuple[Executor, httpx.AsyncClient, Gate],
) -> None:
    """With no room at all, the first chunk's ChunkID (new) decides: what follows is not
    read, so a body that is not even JSON past it is told 429 (the full path: 400)."""
    _, client, _ = full
    url = f"{run_path('gate', 'r')}/data"
    resp = await client.post(url, content=raw_batch(range(10, 12), tail=b",{not json"))
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] == "2"
    # Past the size the scan takes on the loop (`SCAN_MAX_BYTES`) as well.
    big = raw_batch(range(10, 12), tail=b"," + b" " * (_early.SCAN_MAX_BYTES + 1) + b"x")
    resp = await client.post(url, content=big)
    assert resp.status_code == 429, resp.text
    counts = await chunk_counts(client, "gate", "r")
    assert (counts["WAITING"], counts["RUNNING"]) == (3, 1)


async def test_with_no_room_the_first_chunk_is_read_only_after_json_whitespace(
    full: tuple[Executor, httpx.AsyncClient, Gate],
) -> None:
    """A form feed or vertical tab is no JSON whitespace: a body that starts with one is
    not JSON, and the full path's 400 says so (the first-chunk rule must not read past
    it and answer 429)."""
    _, client, _ = full
    url = f"{run_path('gate', 'r')}/data"
    batch = raw_batch(range(10, 12))
    for body in (b"\x0c" + batch, b"\x0b" + batch, b"[\x0c" + batch[1:]):
        resp = await client.post(url, content=body)
        assert resp.status_code == 400, (body, resp.text)
    # JSON's own whitespace is read past.
    resp = await client.post(url, content=b" \r\n\t" + raw_batch(range(10, 12)))
    assert resp.status_code == 429, resp.text


async def test_with_no_room_new_chunks_beside_a_changed_resend_are_429_before_the_409(
    full: tuple[Executor, httpx.AsyncClient, Gate],
) -> None:
    """The documented exception: a first chunk that is new is told 429 with no room,
    though a later one resends held c1 with other content (the full path: 409). A batch
    whose first chunk is held is still checked whole: 409 for a changed resend, 429 for
    a new chunk beside same-content resends, 200 for same-content resends alone."""
    _, client, _ = full
    changed = {"ChunkID": "c1", "RawData": 99}
    resp = await add(client, "gate", "r", [*flat(range(10, 12)), changed])
    assert resp.status_code == 429, resp.text
    resp = await add(client, "gate", "r", [changed, *flat(range(10, 12))])
    assert resp.status_code == 409, resp.text
    resp = await add(client, "gate", "r", [*chunks(range(2, 4)), *flat(range(10, 11))])
    assert resp.status_code == 429, resp.text
    resp = await add(client, "gate", "r", chunks(range(1, 4)))
    assert resp.json() == {"Accepted": 0, "Duplicates": 3}


async def test_with_no_room_the_first_chunk_does_not_hide_a_413_or_a_409_for_num_chunks(
    tmp_path: Path,
) -> None:
    """What the full path answers before the room (a batch that never fits, a run past
    its NumChunks) is not decided by the first chunk."""
    gate = Gate()
    settings = Settings(data_dir=tmp_path, max_pending=2)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        executor.registry.register(gate_processor(gate))
        try:
            await configure(client, "gate", "r", MaxWorkers=1)
            await configure(client, "gate", "few", 2)
            assert (await add(client, "gate", "few", chunks(range(1)))).is_success
            await wait_for(lambda: gate.active == 1)
            assert (await add(client, "gate", "r", chunks(range(2)))).is_success
            resp = await add(client, "gate", "r", chunks(range(10, 13)))
            assert resp.status_code == 413, resp.text
            resp = await add(client, "gate", "few", chunks(range(10, 12)))
            assert resp.status_code == 409, resp.text
            resp = await add(client, "gate", "few", chunks(range(10, 11)))
            assert resp.status_code == 429, resp.text
        finally:
            gate.release_all()


async def test_a_429_for_a_full_queue_is_held_longer_for_a_larger_body(
    full: tuple[Executor, httpx.AsyncClient, Gate], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that ignores Retry-After and sends big batches is paced by the bytes it
    makes the executor read, not per request: `FULL_PACE` per `FULL_PACE_BYTES`."""
    _, client, _ = full
    monkeypatch.setattr(_fastpath, "FULL_PACE", 0.1)
    monkeypatch.setattr(_fastpath, "FULL_PACE_BYTES", 100)
    monkeypatch.setattr(_fastpath, "FULL_PACE_MAX", 60.0)
    body = raw_batch(range(10, 12), tail=b"," + b" " * 1_000 + b"]")  # > 1,000 bytes
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await client.post(f"{run_path('gate', 'r')}/data", content=body)
    assert resp.status_code == 429, resp.text
    assert loop.time() - started >= 1.0  # 0.1 s per 100 bytes


def test_the_hold_of_a_429_grows_with_the_body_between_its_bounds() -> None:
    small, step, most = _fastpath.FULL_PACE, _fastpath.FULL_PACE_BYTES, _fastpath.FULL_PACE_MAX
    assert _fastpath.full_hold(0) == small  # refused unread
    assert _fastpath.full_hold(step) == small
    assert _fastpath.full_hold(10 * step) == min(most, 10 * small)
    assert _fastpath.full_hold(1 << 30) == most
    assert small < most
