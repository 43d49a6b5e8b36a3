"""AddData refused early: what is decided without decoding the chunks.

Under a flood of batches at a full queue most answers are 429s, and a 429 that costs as
much as an accepted batch (read, decode every chunk, check each against the run) leaves
the executor little CPU to drain the queue with. So the answers that do not depend on
the chunks' content are given before it is decoded:

- before the body is read (the headers and the run map tell): an unknown processor or
  run (404), and a full queue when the run holds no chunk yet, so that no chunk of the
  body can be a resend (429);
- after it is read, with no room at all (the flood's case): a full queue when the
  batch's first chunk is new (the run does not hold its ChunkID), read off the body's
  first bytes, whatever the batch's size (429): a batch with a new chunk never fits in
  no room, whatever else it holds;
- after it is read, from a scan of its ChunkIDs alone (about what the bare app's
  generic decode costs, a fifth of the full decode): a full queue, when the batch holds
  more new ChunkIDs than there is room for and none the run already holds (429).

Everything else goes the full way, so the answers stay those of `Executor.add_chunks`:
a resend of held chunks needs no room (200 with its duplicates, or 409 when its content
differs), a closed or finished run and a run past its `NumChunks` answer 409, a closing
executor 503, a failed journal 503. The one difference: while the queue is full, a batch
of new chunks that is also malformed beyond its ChunkIDs is told 429 first; the 400
comes when it is retried with room. With no room at all the difference is wider: a
batch whose first chunk is new is told 429 whatever follows that chunk's ChunkID (the
rest malformed, even not JSON; a resend of a held chunk with other content, which the
full path answers 409; a first object with the ChunkID key twice, read here by the
first); the 400 or 409 comes when it is retried with room. A batch
whose first chunk is held goes the scan's way, so a resend of only held chunks still
gets its 200 (or 409) with no room.
"""

from __future__ import annotations

import re
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

_WS = rb"[ \t\r\n]*"
"""What JSON counts as whitespace (a regex's class of spaces would also take form feeds
and vertical tabs, which the full decode refuses)."""
_FIRST_ID = re.compile(
    _WS
    + rb"\[?"
    + _WS
    + rb"\{"
    + _WS
    + rb'"ChunkID"'
    + _WS
    + rb":"
    + _WS
    + rb'"([^"\\\x00-\x1f]+)"'
)
"""The first chunk's ChunkID when it is the body's first key and needs no unescaping
(the IDs pipelines send); anything else goes the scan's way."""


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
    if len(body) < MIN_CHUNK_BYTES * (room + 1):
        return  # it cannot hold more chunks than fit
    run = executor.runs.find(proc_id, run_id)
    if run is None or not _takes_new(executor, run):
        return
    if room == 0 and _first_is_new(executor, run, body):
        raise executor.full()
    if len(body) > SCAN_MAX_BYTES:
        return  # it is scanned off the loop
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
    if len(ids) <= room or not run.chunks.keys().isdisjoint(ids):
        return  # it may fit, or it resends a held chunk (which may conflict: a 409)
    new = len(set(ids)) if room else len(ids)  # (with room 0, any new one is too many)
    if new <= room or (run.expected and run.accepted + new > run.expected):
        return  # it fits, or a 409 for more chunks than the run expects
    raise executor.full()


def _first_is_new(executor: Executor, run: Run, body: bytes) -> bool:
    """Whether the body's first chunk is new to `run`, read off its first bytes, when
    nothing but the room could answer for it otherwise: no 413 (the body cannot hold
    more chunks than `--max-pending`) and no 409 for more than the run's NumChunks."""
    limit = executor.settings.max_pending
    if run.expected:
        limit = min(limit, run.expected - run.accepted)
    # Each chunk is an object, so its "{" (and any other) bounds how many it holds: a
    # count of the body, made only when its size alone does not bound it enough.
    if len(body) // MIN_CHUNK_BYTES > limit and body.count(b"{") > limit:
        return False
    first = _FIRST_ID.match(body)
    if first is None:
        return False
    try:
        chunk_id = first[1].decode()
    except UnicodeDecodeError:
        return False  # the full path's 400
    return chunk_id not in run.chunks
