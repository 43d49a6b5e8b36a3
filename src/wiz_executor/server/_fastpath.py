"""AddData without the framework: the hot path of the executor.

`POST /processors/{procID}/runs/{runID}/data` is the one request a pipeline sends per
chunk. This ASGI middleware answers it directly: read the body (refusing oversize ones
as it reads), decode it with msgspec into run-map records, hand them to the executor in
O(1) per chunk, answer. Every other request goes on to FastAPI, which also declares this
route (same handler, for the OpenAPI document and as a fallback).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._logs import about
from ..errors import ExecutorFull, InvalidInput, PayloadTooLarge, WizError
from ..executor import Executor
from ..runs import Chunk
from ..waiting import free_room
from ..wire import batch_spans, decode_add_data, decode_distinct, encode
from ._early import refuse_before_body, refuse_without_room
from ._errors import error_body, error_headers, status_of

log = logging.getLogger(__name__)
_JSON = (b"content-type", b"application/json")
_ROOM = b"x-wiz-free-room"
_ONE_ACCEPTED = b'{"Accepted":1,"Duplicates":0}'


FULL_PACE = 0.05
"""Seconds a 429 for a full queue is held before it is sent (per `FULL_PACE_BYTES` of
the refused body, `full_hold`). A client that does not wait for `Retry-After` (wrk, a
shell loop, a naive pipeline) sends its next batch as soon as the 429 arrives; at once,
such a flood of 64 connections took nearly all the event loop's time in 429s, and the
chunks the queue held ran at 0.2-0.4 of their rate with room
(benchmarks/results/history.md). Held, each connection sends about 20 small batches a
second, and the work drains at nearly the rate it has with room. A client that honours
`Retry-After` (seconds) does not notice."""
FULL_PACE_BYTES = 4096
"""The body size (about 100 small chunks) held `FULL_PACE`; a larger one is held longer
in proportion. A refusal decided early costs about reading its body, so a connection
that ignores `Retry-After` costs the loop the same whatever its batch size: about
`FULL_PACE_BYTES / FULL_PACE` bytes of refused body a second (batches of 1,000 small
chunks: 2 a second, not 20)."""
FULL_PACE_MAX = 1.0
"""The longest hold (bodies of 80 KB and more): the default `Retry-After`, so a client
that honours it learns of the room at most that much later than it would."""


def full_hold(body_bytes: int) -> float:
    """Seconds to hold a 429 for a full queue that refused a body of `body_bytes` (0 when
    it was refused unread): `FULL_PACE` per `FULL_PACE_BYTES`, at least `FULL_PACE`, at most
    `FULL_PACE_MAX`."""
    return min(FULL_PACE_MAX, FULL_PACE * max(1.0, body_bytes / FULL_PACE_BYTES))


FREE_ROOM_HEADER = "X-Wiz-Free-Room"
"""*Extension*: on AddData's 200 and 429 answers, how many more chunks the executor
would accept now (`--max-pending` less the chunks waiting, as /healthz's `free_room`).
An upstream executor's downstream sender paces itself by it; a client that does not
know it (the Go manager) ignores it.

The executor's room, not the run's (GetRun's `FreeRoom`): a sender keeps the room per
host, shared by every run it sends to there, and only `--max-pending` is shared like
that. A run's own limits (its NumChunks reached, its input closed) are answered 409
whatever the pace, and must not stall deliveries to the executor's other runs."""


def free_room_value(executor: Executor) -> bytes:
    """The `X-Wiz-Free-Room` value for an AddData answer (`FREE_ROOM_HEADER`)."""
    room = free_room(executor)
    return _ROOM_TEXT[room] if room < len(_ROOM_TEXT) else str(room).encode()


_ROOM_TEXT = tuple(str(n).encode() for n in range(1024))
"""The header's value for the small rooms, made once (encoding it costs per answer)."""


MAX_WARNED = 1000
"""Distinct unknown-field warnings remembered per run (to log each once); past it they
are logged every time rather than kept: a client inventing names cannot grow memory."""

DECODE_OFF_LOOP_BYTES = 512 * 1024
"""Bodies larger than this are decoded on a worker thread, so that a batch of many
thousand chunks does not hold up the event loop while it is parsed (the GIL is handed
back to the loop every few milliseconds). Smaller ones, the common case, are decoded in
place: a thread hop would cost more than the decoding."""


def _decode_large(executor: Executor, body: bytes) -> tuple[list[Chunk], int, list[str]]:
    # Reads nothing but the body and the settings: safe off the loop.
    split = batch_spans(body)
    if split is None:
        chunks, unknown = decode_add_data(body)
        return chunks, 0, unknown
    spans, count = split
    executor.check_batch_size(count)  # before any item is decoded
    return decode_distinct(body, spans)


async def add_data_response(executor: Executor, proc_id: str, run_id: str, body: bytes) -> bytes:
    """The AddData operation on raw bytes; raises WizError for the caller to map.

    Decoding (pure, on the body alone) may run off the loop; checking and accepting the
    chunks is one synchronous call on the loop, so a batch is still accepted or
    rejected whole against the run map as it is at that instant.

    The answer waits for the accepted chunks to be durable in the journal (group
    committed with the other requests of the moment); a failed commit is a 503.

    Fields a chunk does not have are ignored and named in the answer's `Warnings` (and
    the log), or refused with a 400 under `--strict-config`, before anything is taken.
    """
    refuse_without_room(executor, proc_id, run_id, body)
    if len(body) <= DECODE_OFF_LOOP_BYTES:
        chunks, unknown = decode_add_data(body)
        repeats = 0
    else:
        chunks, repeats, unknown = await asyncio.to_thread(_decode_large, executor, body)
    if unknown and executor.settings.strict_config:
        raise InvalidInput(
            "unknown field(s) in the chunks (refused under --strict-config): " + ", ".join(unknown)
        )
    stored = None
    run = executor.runs.find(proc_id, run_id)
    if run is not None and run.stored:  # finished: a resend is checked against the journal
        stored = await executor.held_chunks(run, chunks)
    result = executor.add_chunks(proc_id, run_id, chunks, repeats, stored)
    warnings = [f"unknown field {path} ignored" for path in unknown]
    if warnings:
        # Logged once per run and warning: a client that always sends the field would
        # otherwise write a log line per request. (Read now: the run may be deleted
        # while the commit is awaited.)
        warned = executor.get_run(proc_id, run_id).warned
        new = [w for w in warnings if w not in warned]
        if new:
            if len(warned) < MAX_WARNED:
                warned.update(new)
            log.warning(
                "AddData to run %s/%s: %s",
                proc_id,
                run_id,
                "; ".join(new),
                extra=about(proc_id, run_id),
            )
    if result.committed is not None:  # 200 only once the chunks are in the journal
        await executor.committed(result.committed)
    if warnings:
        answer = {"Accepted": result.accepted, "Duplicates": result.duplicates}
        return encode({**answer, "Warnings": warnings})
    if result.accepted == 1 and not result.duplicates:
        return _ONE_ACCEPTED
    return encode({"Accepted": result.accepted, "Duplicates": result.duplicates})


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; PayloadTooLarge as soon as it passes `limit` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLarge(limit)
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(limit)
        parts.append(part)
    return b"".join(parts)


class AddDataFastPath:
    def __init__(
        self, app: ASGIApp, on_request: Callable[[int, float], None] | None = None
    ) -> None:
        self.app = app
        self.on_request = on_request
        """Told (status, seconds) of each AddData answered here, for the HTTP metrics."""
        self.executor: Executor | None = None
        """The app's executor, once the app has one (`_ExecutorApp.attach`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            # ['', 'processors', procID, 'runs', runID, 'data']; a U+FFFD may stand for
            # bytes that were not UTF-8, which HttpRules, behind, answers with a 400.
            if (
                len(parts) == 6
                and parts[5] == "data"
                and parts[1] == "processors"
                and parts[3] == "runs"
                and "\ufffd" not in scope["path"]
            ):
                await self._add_data(scope, receive, send, parts[2], parts[4])
                return
        await self.app(scope, receive, send)

    async def _add_data(
        self, scope: Scope, receive: Receive, send: Send, proc_id: str, run_id: str
    ) -> None:
        started = perf_counter()
        executor = self.executor
        if executor is None:  # an app called before its lifespan: as the routes would
            executor = scope["app"].state.executor
        headers: list[tuple[bytes, bytes]] = [_JSON]
        body = b""
        try:
            # Decided on the headers, the body is left unread: the server discards it
            # (uvicorn's parsers skip a body the app did not read), the connection stays
            # in step for the next request.
            refuse_before_body(executor, proc_id, run_id, scope["headers"])
            body = await read_body(receive, executor.settings.max_body_bytes)
            payload = await add_data_response(executor, proc_id, run_id, body)
            status = 200
            headers.append((_ROOM, free_room_value(executor)))
        except WizError as exc:
            status = status_of(exc)
            payload = error_body(exc.message)
            headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(exc).items()]
            if isinstance(exc, ExecutorFull):
                # The room that decided the 429, not the room after the pause: the two
                # agree, and the sender paces by the answer it was refused with.
                headers.append((_ROOM, free_room_value(executor)))
                await asyncio.sleep(full_hold(len(body)))  # see FULL_PACE
        except Exception:
            # A bug, answered 500 by the server: still counted, like every answer.
            if self.on_request is not None:
                self.on_request(500, perf_counter() - started)
            raise
        headers.append((b"content-length", str(len(payload)).encode()))
        start: Message = {"type": "http.response.start", "status": status, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": payload})
        if self.on_request is not None:
            self.on_request(status, perf_counter() - started)
