"""GetData without holding up the event loop: pages, a state filter, a streamed answer.

A run can hold 100,000 chunks; rendering them all in one go took ~0.4 s during which
the executor answered nothing else. So:

- a page (`limit`, `after`, `state`) is a slice of the run's arrival order, found in
  O(page) through the chunk's position (`Chunk.seq`); with a state filter the run is
  scanned in slices, handing the loop back between them;
- any answer of more than `PIECE` chunks is streamed: rendered and encoded `PIECE`
  chunks at a time, on the loop (the chunks change only there, so no snapshot of their
  contents is needed), handing the loop back between pieces.

What a client sees: the chunks the run held when the request arrived (a page: those
chosen when it was chosen), in arrival order, `In` then `Out` for the same chunks. Each
is rendered as it is when its piece is rendered, so a chunk that finishes meanwhile may
show RUNNING in `In` and SUCCEEDED in `Out`; a state filter holds at the time of
choosing. A run deleted meanwhile still answers the chunks chosen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi.responses import Response, StreamingResponse

from ..api import DataChunkState
from ..errors import ChunkNotFound, NotFound
from ..runs import Chunk, Run
from ..wire import DataView, encode, render_input, render_output

if TYPE_CHECKING:
    from ..executor import Executor

MAX_PAGE = 10_000
"""Largest `limit` a client may ask for."""
DEFAULT_PAGE = 1_000
"""The page size when a client filters or resumes without saying `limit`."""
PIECE = 1_000
"""Chunks rendered and encoded between two turns of the loop (~2-4 ms of work)."""
SCAN_SLICE = 10_000
"""Chunks checked against a state filter between two turns of the loop."""


def _not_after(run: Run, after: str) -> NotFound:
    return NotFound(
        f"after={after!r} is not an input chunk of run {run.run_id!r}: pass the "
        "last ChunkID of the previous page (the Link header's next URL does)"
    )


async def select_page(
    executor: Executor, run: Run, state: DataChunkState | None, after: str | None, limit: int
) -> tuple[list[Chunk], bool]:
    """The chunks of one page, and whether more follow it (a stored run's from the
    journal, which pages the same way: one more than the page tells if more follow)."""
    if run.stored:
        try:
            read = await executor.chunks_of(run, state=state, after=after, limit=limit + 1)
        except ChunkNotFound:
            raise _not_after(run, after or "") from None
        return read[:limit], len(read) > limit
    start = 0
    if after is not None:
        held = run.chunks.get(after)
        if held is None:
            raise _not_after(run, after)
        start = held.seq + 1
    order = run.order
    if state is None:
        return order[start : start + limit], start + limit < len(order)
    page: list[Chunk] = []
    position = start
    while position < len(order):
        for chunk in order[position : position + SCAN_SLICE]:
            if chunk.state is state:
                if len(page) == limit:
                    return page, True
                page.append(chunk)
        position += SCAN_SLICE
        await asyncio.sleep(0)  # let the loop serve others between slices
    return page, False


def next_link(
    root: str,
    proc_id: str,
    run_id: str,
    state: DataChunkState | None,
    limit: int,
    last: Chunk,
) -> str:
    """The RFC 8288 `Link` to the page after `last`, as a path with its query."""
    params: dict[str, Any] = {}
    if state is not None:
        params["state"] = state.value
    params["limit"] = limit
    params["after"] = last.id
    path = f"{root}/processors/{quote(proc_id, safe='')}/runs/{quote(run_id, safe='')}"
    return f'<{path}/data?{urlencode(params, quote_via=quote)}>; rel="next"'


def data_response(
    chunks: list[Chunk], headers: dict[str, str] | None = None, slow_after: float | None = None
) -> Response:
    """`{"In": [...], "Out": [...]}` for these chunks: at once when small, else streamed.
    A RUNNING chunk is `Slow` once it has run longer than `slow_after` seconds."""
    render = partial(render_input, slow_after=slow_after)
    if len(chunks) <= PIECE:
        body = encode(
            {"In": [render(c) for c in chunks], "Out": [render_output(c) for c in chunks]}
        )
        return Response(body, media_type="application/json", headers=headers)
    # `chunks` is the caller's own list (a slice of the run's order), so a chunk
    # arriving, or the run being deleted, while it streams changes nothing in it.
    return StreamingResponse(
        _pieces(chunks, render), media_type="application/json", headers=headers
    )


async def _pieces(chunks: list[Chunk], render: Callable[[Chunk], DataView]) -> AsyncIterator[bytes]:
    yield b'{"In":['
    async for piece in _rendered(chunks, render):
        yield piece
    yield b'],"Out":['
    async for piece in _rendered(chunks, render_output):
        yield piece
    yield b"]}"


async def _rendered(
    chunks: list[Chunk], render: Callable[[Chunk], DataView]
) -> AsyncIterator[bytes]:
    for start in range(0, len(chunks), PIECE):
        encoded = encode([render(c) for c in chunks[start : start + PIECE]])
        # Each piece is a JSON array; joined without their brackets they make one.
        yield (b"," if start else b"") + encoded[1:-1]
        await asyncio.sleep(0)  # let the loop serve others between pieces
