"""AddData refused early: what is decided without decoding the chunks.

Under a flood of batches at a full queue most answers are 429s, and a 429 that costs as
much as an accepted batch (read, decode every chunk, check each against the run) leaves
the executor little CPU to drain the queue with. So the answers that do not depend on
the chunks' content are given before it is decoded:

- before the body is read (the headers and the run map tell): an unknown processor or
  run (404), and a full queue when the run holds no chunk yet, so that no chunk of the
  body can be a resend (429);
- after it is read, from a scan of its ChunkIDs alone (about what the bare app's
  generic decode costs, a fifth of the full decode): a full queue, when the batch holds
  more new ChunkIDs than there is room for and none the run already holds (429).

Everything else goes the full way, so the answers stay those of `Executor.add_chunks`:
a resend of held chunks needs no room (200 with its duplicates, or 409 when its content
differs), a closed or finished run and a run past its `NumChunks` answer 409, a closing
executor 503, a failed journal 503. The one difference: while the queue is full, a batch
of new chunks that is also malformed beyond its ChunkIDs is told 429 first; the 400
comes when it is retried with room.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ..api import State
from ..executor import Executor
from ..runs import Run
from ..waiting import free_room

MIN_CHUNK_BYTES = len(b'{"ChunkID":"x"}')
"""The smallest body that holds a chunk: `Content-Length // MIN_CHUNK_BYTES` bounds how
many a body can hold."""

SCAN_MAX_BYTES = 512 * 1024
"""Bodies up to this size are scanned for their ChunkIDs on the event loop (the size the
full path decodes in place); larger ones go the full way, which counts them off it."""

_TAKING = (State.CONFIGURED, State.RUNNING)


class _Id(msgspec.Struct):
    ChunkID: str = ""


_one_id = msgspec.json.Decoder(_Id)
_many_ids = msgspec.json.Decoder(list[_Id])


def _takes_new(executor: Executor, run: Run) -> bool:
    """Whether a new chunk would get as far as the room check in `add_chunks`."""
    return (
        executor.refusal is None
        and not executor.closing
        and run.state in _TAKING
        and not run.input_closed
        and not run.stored
    )


def refuse_before_body(
    executor: Executor, proc_id: str, run_id: str, headers: Iterable[tuple[bytes, bytes]]
) -> None:
    """Raise what the request's headers and the run map already decide (see above).

    The common request (a known run, room in the queue) costs two lookups here."""
    if executor.refusal is not None:
        return  # the full path answers with the refusal itself
    run = executor.runs.find(proc_id, run_id)
    if run is None:
        executor.get_run(proc_id, run_id)  # raises the 404 for the processor or the run
        return
    if run.chunks or free_room(executor) > 0 or not _takes_new(executor, run):
        return
    content_length = _content_length(headers)
    if (
        content_length is None
        or content_length < MIN_CHUNK_BYTES
        # with more chunks than it still expects, add_chunks answers 409
        or (run.expected and run.accepted + content_length // MIN_CHUNK_BYTES > run.expected)
    ):
        return
    raise executor.full()


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def refuse_without_room(executor: Executor, proc_id: str, run_id: str, body: bytes) -> None:
    """Raise a 429 when the body's new ChunkIDs do not fit the free room (see above)."""
    room = free_room(executor)
    if len(body) < MIN_CHUNK_BYTES * (room + 1) or len(body) > SCAN_MAX_BYTES:
        return  # it cannot hold more chunks than fit, or it is scanned off the loop
    run = executor.runs.find(proc_id, run_id)
    if run is None or not _takes_new(executor, run):
        return
    try:
        many = body.lstrip()[:1] == b"["
        ids = (
            [item.ChunkID for item in _many_ids.decode(body)]
            if many
            else [_one_id.decode(body).ChunkID]
        )
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return  # the full path says what is wrong with it
    if len(ids) > executor.settings.max_pending:
        return  # a 413: it could never fit
    new = set(ids)
    held = run.chunks
    if len(new) <= room or any(chunk_id in held for chunk_id in new):
        return
    if run.expected and run.accepted + len(new) > run.expected:
        return  # a 409
    raise executor.full()
