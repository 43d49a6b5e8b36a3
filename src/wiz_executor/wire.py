"""Fast translation between JSON bytes and run-map records, for the hot paths.

`api` holds the contract as pydantic models (the OpenAPI document, the client, every
rarely used endpoint). AddData and GetData are the hot paths, so here the same shapes are
decoded with msgspec straight into `Chunk` records and rendered back from them as
untracked msgspec structs (`DataView`), several times faster. A test checks both agree
with the pydantic models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from time import time
from typing import Any

import msgspec

from .api import Data, DataChunkState, DataFormat, unknown_fields
from .errors import Conflict, InvalidInput
from .history import rfc3339, run_timing
from .runs import Chunk, Run


class _FsRef(msgspec.Struct):
    Driver: str = ""
    Location: str = ""


class _InChunk(msgspec.Struct):
    ChunkID: str = ""
    Format: str | int = "RAW"
    Type: Any = None  # the executor's to set: ignored
    State: Any = None  # the executor's to set: ignored
    RawData: Any = None
    FilesystemReference: _FsRef | None = None
    AssociatedChunkID: str = ""


# The same shapes refusing unknown fields. msgspec cannot collect the unknown fields it
# skips, so the hot path decodes with these (as fast: measured in `decode_add_data`) and
# only a body they refuse is decoded again, leniently, to find what to report.
class _FsRefExact(_FsRef, forbid_unknown_fields=True):
    pass


class _InChunkExact(_InChunk, forbid_unknown_fields=True):
    FilesystemReference: _FsRefExact | None = None


_FORMATS: dict[Any, DataFormat] = {
    "RAW": DataFormat.RAW,
    1: DataFormat.RAW,
    0: DataFormat.RAW,  # Go's zero value: unset
    "DataFormat(0)": DataFormat.RAW,
    "FILESYSTEM_REF": DataFormat.FILESYSTEM_REF,
    2: DataFormat.FILESYSTEM_REF,
}

MAX_DEPTH = 200
"""Deepest nesting of containers accepted in a chunk's RawData (as pydantic's parser
allows). msgspec alone decodes up to the interpreter's recursion limit, and a value
decoded near it can fail to encode again from a deeper stack: a 500 on every GetData."""

_one = msgspec.json.Decoder(_InChunk)
_many = msgspec.json.Decoder(list[_InChunk])
_one_exact = msgspec.json.Decoder(_InChunkExact)
_many_exact = msgspec.json.Decoder(list[_InChunkExact])
_items = msgspec.json.Decoder(list[msgspec.Raw])
encode = msgspec.json.Encoder().encode


def decode_chunks(body: bytes) -> list[Chunk]:
    """Parse an AddData body (one chunk or a JSON array of them) into WAITING chunks,
    ignoring fields a chunk does not have (`decode_add_data` also names them)."""
    return decode_add_data(body)[0]


def decode_add_data(body: bytes) -> tuple[list[Chunk], list[str]]:
    """Parse an AddData body (one chunk or a JSON array of them) into WAITING chunks,
    and name the unknown fields it ignored: dotted paths inside a chunk
    (`FilesystemReference.Foo`), each once, `Foo (in 3 chunks)` when a batch repeats it.

    The common body has no unknown field and costs one exact decode. A body the exact
    decoders refuse (an unknown field, or a real error) is decoded again leniently,
    which raises the real error if there is one, and then as plain JSON to find the
    unknown fields with `api.unknown_fields`, the same judgement the models make.
    """
    many = body.lstrip()[:1] == b"["
    try:
        items: Sequence[_InChunk] = _many_exact.decode(body) if many else [_one_exact.decode(body)]
        unknown: list[str] = []
    except msgspec.ValidationError:
        items = _decode_lenient(body, many)
        unknown = _unknown_in(body, many)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"request body nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:  # msgspec decodes strings strictly, and says so
        raise _not_utf8(exc) from None
    return _to_chunks(items, body), unknown


def _not_utf8(exc: UnicodeDecodeError) -> InvalidInput:
    return InvalidInput(
        f"request body is not valid UTF-8: {exc.reason} (byte 0x{exc.object[exc.start]:02x})"
    )


def _decode_lenient(body: bytes, many: bool) -> list[_InChunk]:
    try:
        return _many.decode(body) if many else [_one.decode(body)]
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid chunk: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"request body nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:  # msgspec decodes strings strictly, and says so
        raise _not_utf8(exc) from None


def _unknown_in(body: bytes, many: bool) -> list[str]:
    """The fields of an AddData body that no chunk field takes: each path once, with
    how many chunks of a batch held it."""
    try:
        decoded = msgspec.json.decode(body)
    except RecursionError:  # an unknown field's value nests too deep to look at
        raise InvalidInput(f"request body nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:  # msgspec decodes strings strictly, and says so
        raise _not_utf8(exc) from None
    except msgspec.ValidationError as exc:  # in a value the typed decoders skipped (1e400)
        raise InvalidInput(f"invalid chunk: {exc}") from None
    counts: dict[str, int] = {}
    for item in decoded if many else [decoded]:
        _count_unknown(item, counts)
    return _named_unknown(counts, many)


def _count_unknown(item: Any, counts: dict[str, int]) -> None:
    for path in dict.fromkeys(unknown_fields(Data, item)):
        counts[path] = counts.get(path, 0) + 1


def _named_unknown(counts: dict[str, int], many: bool) -> list[str]:
    """Each unknown field's path once, with how many chunks of a batch held it."""
    return [f"{path} (in {n} chunks)" if many and n > 1 else path for path, n in counts.items()]


def _to_chunks(items: Sequence[_InChunk], body: bytes) -> list[Chunk]:
    chunks = [_to_chunk(item, i if len(items) > 1 else None) for i, item in enumerate(items)]
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH:  # else nothing can nest that deep
        for chunk in chunks:
            if too_deep(chunk.raw_data):
                raise InvalidInput(
                    f"chunk {chunk.id!r}: RawData nests deeper than {MAX_DEPTH} levels"
                )
    return chunks


SEGMENT_BYTES = 256 * 1024
"""About how much of a huge batch is split into items in one call. msgspec holds the
GIL for a whole call, and splitting a 16 MB array of a million items in one took
60-200 ms: the event loop's thread could not run meanwhile, even with the decoding on
another thread. Segments of this size take a few ms each."""

_BOUNDARY = re.compile(rb"\}\s*,\s*\{")
"""Where one object of an array may end and the next begin. A match inside a string or
a nested value is no boundary, but then the segment it ends fails to decode (an open
string, unbalanced brackets), and the split moves on to the next match."""

Span = tuple[int, int]


def batch_spans(body: bytes) -> tuple[list[Span], int] | None:
    """The segments of an AddData array (each a run of whole items) and its item count;
    None for a single chunk.

    Each segment is split into `Raw` views (~64 bytes an item, not a decoded chunk of
    hundreds) and dropped again, so a huge batch is counted, and can be refused, before
    any of it is materialised, in steps short enough to let the event loop run.
    """
    start = body.find(b"[")
    if body[:start].strip() or start < 0:
        return None
    end = body.rfind(b"]")
    if end < start or body[end + 1 :].strip():
        _split(body)  # not one array: let the decoder say what is wrong
        raise InvalidInput("request body is not one JSON array")  # pragma: no cover
    spans: list[Span] = []
    count = 0
    a = start + 1
    while a < end:
        cut = _BOUNDARY.search(body, min(a + SEGMENT_BYTES, end), end)
        if cut is not None:
            try:
                count += len(_split(body, a, cut.start() + 1))
                spans.append((a, cut.start() + 1))
                a = cut.end() - 1
                continue
            except InvalidInput:
                pass  # no boundary: take the rest whole (trying each match could be O(n²))
        count += len(_split(body, a, end))
        spans.append((a, end))
        break
    return spans, count


def _split(body: bytes, a: int = 0, b: int | None = None) -> list[msgspec.Raw]:
    segment = body if b is None else b"[" + body[a:b] + b"]"
    try:
        return _items.decode(segment)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid chunk: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"request body nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc) from None


def decode_distinct(body: bytes, spans: list[Span]) -> tuple[list[Chunk], int, list[str]]:
    """Decode a batch one item at a time, keeping only the first of each ChunkID.

    Returns the distinct chunks, in order, how many items repeated an earlier one (a
    repeat must have the same content, else Conflict), and the unknown fields ignored
    (as `decode_add_data` names them). A batch of a million copies of one chunk so holds
    one decoded chunk at a time, not a million.
    """
    check_depth = body.count(b"[") + body.count(b"{") > MAX_DEPTH
    first: dict[str, Chunk] = {}
    unknown: dict[str, int] = {}
    repeats = 0
    index = -1
    for a, b in spans:
        for raw in _split(body, a, b):
            index += 1
            item = _decode_item(memoryview(raw), index, unknown)
            chunk = _to_chunk(item, index)
            held = first.get(chunk.id)
            if held is not None:
                if not held.same_input(chunk):
                    raise Conflict(
                        f"chunk {chunk.id!r} (item {index}) is in the batch twice, with "
                        "different content"
                    )
                repeats += 1
                continue
            if check_depth and too_deep(chunk.raw_data):
                raise InvalidInput(
                    f"chunk {chunk.id!r}: RawData nests deeper than {MAX_DEPTH} levels"
                )
            first[chunk.id] = chunk
    return list(first.values()), repeats, _named_unknown(unknown, True)


def _decode_item(raw: memoryview, index: int, unknown: dict[str, int]) -> _InChunk:
    """One item of a batch: exactly, or, when it has fields a chunk does not, leniently,
    counting those fields in `unknown`."""
    try:
        try:
            return _one_exact.decode(raw)
        except msgspec.ValidationError:
            item = _one.decode(raw)  # raises the real error, if there is one
            _count_unknown(msgspec.json.decode(raw), unknown)
            return item
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid chunk (item {index}): {exc}") from None
    except RecursionError:
        raise InvalidInput(f"request body nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc) from None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a decoded JSON value nests lists and objects more than `limit` levels."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
    return False


def _to_chunk(item: _InChunk, index: int | None) -> Chunk:
    # Once per chunk of every AddData: the error messages are built only when needed.
    fmt = _FORMATS.get(item.Format)
    chunk_id = item.ChunkID
    if fmt is None or not chunk_id:
        raise _invalid(item, index, fmt)
    ref = item.FilesystemReference
    output_id = item.AssociatedChunkID
    # An empty AssociatedChunkID asks the executor to name the output.
    return Chunk(
        chunk_id,
        output_id or f"{chunk_id}-out",
        fmt,
        item.RawData,
        ref.Driver if ref else "",
        ref.Location if ref else "",
        not output_id,
    )


def _invalid(item: _InChunk, index: int | None, fmt: DataFormat | None) -> InvalidInput:
    where = f" (item {index})" if index is not None else ""
    if fmt is None:
        return InvalidInput(
            f"chunk {item.ChunkID!r}{where}: Format {item.Format!r} is not RAW (1) or "
            "FILESYSTEM_REF (2)"
        )
    return InvalidInput(f"chunk{where} has no ChunkID")


def chunk_from_data(data: Data) -> Chunk:
    """A WAITING chunk from a validated wire model (the library's convenient form)."""
    if not data.ChunkID:
        raise InvalidInput("chunk has no ChunkID")
    ref = data.FilesystemReference
    output_id = data.AssociatedChunkID
    # An empty AssociatedChunkID asks the executor to name the output.
    return Chunk(
        data.ChunkID,
        output_id or f"{data.ChunkID}-out",
        data.Format,
        data.RawData,
        ref.Driver,
        ref.Location,
        not output_id,
    )


class _Ref(msgspec.Struct, gc=False):
    Driver: str
    Location: str


class _Progress(msgspec.Struct, gc=False):
    Done: int
    Total: int | None


class _AttemptView(msgspec.Struct, gc=False, omit_defaults=True):
    Attempt: int
    Start: str
    End: str | None
    Outcome: str | None
    Error: str | None
    Host: str
    PID: int
    Worker: str
    Node: str | None = None


def _attempts(chunk: Chunk) -> list[_AttemptView] | None:
    attempts = chunk.attempts
    if attempts is None:
        return None
    return [
        _AttemptView(
            a.number,
            rfc3339(a.started),
            None if a.ended is None else rfc3339(a.ended),
            None if a.outcome is None else a.outcome.value,
            a.error,
            a.host,
            a.pid,
            a.worker,
            a.node or None,
        )
        for a in attempts
    ]


class DataView(msgspec.Struct, gc=False, omit_defaults=True):
    """A `Data` object as rendered for an answer: the wire shape, extensions omitted
    while unset. A struct the garbage collector does not track, not a dict: GetData
    renders hundreds of thousands of them, and as dicts, those alive when a collection
    ran were promoted and set off full collections of the whole heap (tens of ms each)."""

    ChunkID: str
    Format: str
    Type: str
    State: str
    RawData: Any
    FilesystemReference: _Ref
    AssociatedChunkID: str
    Error: str | None = None
    Progress: _Progress | None = None
    DeliveryError: str | None = None
    Attempts: list[_AttemptView] | None = None
    RunningSince: str | None = None
    Slow: bool | None = None


def _progress(chunk: Chunk) -> _Progress | None:
    progress = chunk.progress
    return None if progress is None else _Progress(progress[0], progress[1])


def render_input(chunk: Chunk, slow_after: float | None = None) -> DataView:
    """An input chunk as answered. A RUNNING one also says since when it runs
    (`RunningSince`), and `Slow` once it has run longer than `slow_after` seconds (half
    its run's chunk timeout, see `waiting.slow_after`)."""
    view = DataView(
        chunk.id,
        chunk.in_format.value,
        "INPUT",
        chunk.state.value,
        chunk.raw_data,
        _Ref(chunk.fs_driver, chunk.fs_location),
        chunk.output_id,
        chunk.error,
        _progress(chunk),
        None,
        _attempts(chunk),
    )
    if chunk.state is DataChunkState.RUNNING and chunk.attempts:
        started = chunk.attempts[-1].started
        view.RunningSince = rfc3339(started)
        if slow_after is not None and time() - started > slow_after:
            view.Slow = True
    return view


def render_output(chunk: Chunk) -> DataView:
    return DataView(
        chunk.output_id,
        chunk.out_format.value,
        "OUTPUT",
        chunk.state.value,
        chunk.out_raw,
        _Ref(chunk.out_driver, chunk.out_location),
        chunk.id,
        chunk.error,
        _progress(chunk),
        chunk.delivery_error,
    )


def render_run(
    run: Run, waiting: dict[str, str] | None = None, free_room: int | None = None
) -> dict[str, Any]:
    """A run as answered; `waiting` and `free_room` are the executor's, computed by the
    caller when asked (see `waiting.py`), and left out when None."""
    out: dict[str, Any] = {
        "RunID": run.run_id,
        "Configuration": run.configuration.model_dump(mode="json"),
        "CurrentState": run.state.value,
        "ChunkCounts": {state.value: run.counts[state] for state in DataChunkState},
        "InputClosed": run.input_closed,
    }
    if run.warnings:
        out["Warnings"] = run.warnings
    out.update(run_timing(run, time()))
    if waiting is not None:
        out["Waiting"] = waiting
    if free_room is not None:
        out["FreeRoom"] = free_room
    if run.paused:
        out["Paused"] = True
    return out
