"""`wiz send`: chunks from a JSON array or NDJSON (a file or stdin), sent in batches.

An item that is a JSON object with a `ChunkID` is a whole chunk (a Data object); any
other item becomes the `RawData` of a chunk named `<prefix><index>`. Each batch is one
AddData request, accepted or rejected whole, and is cut by count (`--batch-size`) and
by size (`--max-batch-bytes`), so it stays below the executor's body limit; a resend of
the same file is a no-op, so a send that stopped half-way can simply be run again.
"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..api import Data, EndOfInputResult, data_adapter
from ..errors import PayloadTooLarge
from ._common import (
    DEFAULT,
    EXIT_USAGE,
    CaCertsOption,
    JsonOption,
    ProcArg,
    RunArg,
    TokenOption,
    UrlOption,
    connected,
    fail,
    flag,
    print_json,
    print_warnings,
    stderr,
    stdout,
)

MiB = 1024 * 1024
DEFAULT_MAX_BATCH_BYTES = 15 * MiB
"""A batch's body at most: 1 MiB below the executor's default `--max-body-bytes`
(16 MiB). Sizes are measured exactly as the client encodes the batch, so the margin is
only for an executor whose limit is a little lower."""


def send(
    proc: ProcArg,
    run: RunArg,
    file: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="JSON array or NDJSON; '-' = stdin.")
    ] = "-",
    batch_size: Annotated[int, typer.Option(min=1, help="Chunks per AddData request.")] = 100,
    max_batch_bytes: Annotated[
        int,
        typer.Option(
            min=64,
            help="Bytes per AddData request at most; keep it below the executor's "
            "--max-body-bytes (16 MiB by default).",
        ),
    ] = DEFAULT_MAX_BATCH_BYTES,
    end_of_input: Annotated[
        bool,
        flag("--end-of-input", "Declare end of input once the last chunk is sent."),
    ] = False,
    id_prefix: Annotated[
        str, typer.Option(help="ChunkID prefix for items that are not whole chunks.")
    ] = "chunk-",
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Send chunks to a run, in batches, with a progress bar.

    A batch holds up to --batch-size chunks and --max-batch-bytes bytes."""
    text = sys.stdin.read() if file == "-" else _read(Path(file))
    chunks = parse_chunks(text, id_prefix, "stdin" if file == "-" else file)
    batches = split_batches(chunks, batch_size, max_batch_bytes)
    accepted = duplicates = 0
    warnings: set[str] = set()
    closed: EndOfInputResult | None = None
    progress = Progress(
        TextColumn(f"sending to {proc}/{run}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
        disable=json,
    )
    with connected(url, token, ssl_ca_certs) as wiz, progress:
        task = progress.add_task("send", total=len(chunks))
        for batch, size in batches:
            try:
                result = wiz.add_data(proc, run, batch)
            except PayloadTooLarge as exc:
                fail(_too_large(exc, len(batch), size, batch_size, max_batch_bytes))
            print_warnings(result.Warnings, warnings)
            accepted += result.Accepted
            duplicates += result.Duplicates
            progress.advance(task, len(batch))
        if end_of_input:
            closed = wiz.end_of_input(proc, run)
    summary: dict[str, Any] = {"Sent": len(chunks), "Accepted": accepted, "Duplicates": duplicates}
    if closed is not None:
        summary["InputClosed"] = True
        summary["CurrentState"] = closed.CurrentState.value
    if warnings:
        summary["Warnings"] = sorted(warnings)
    if json:
        return print_json(summary)
    stdout().print(
        f"sent {len(chunks)} chunks to {proc}/{run}: {accepted} accepted, {duplicates} already held"
    )
    if closed is not None:
        stdout().print(
            f"end of input declared: {proc}/{run} is {closed.CurrentState.value} "
            f"with {closed.Accepted} chunks"
        )


def split_batches(
    chunks: list[Data], batch_size: int, max_bytes: int
) -> list[tuple[list[Data], int]]:
    """Chunks in order, as batches of at most `batch_size` chunks whose JSON body (as the
    client encodes it: `[c1,c2,...]`) is at most `max_bytes`; each with its body size.

    Every chunk is measured before anything is sent, so a chunk that could never fit
    stops the command before half of the file has gone out."""
    batches: list[tuple[list[Data], int]] = []
    batch: list[Data] = []
    size = 0
    for chunk in chunks:
        own = len(data_adapter.dump_json(chunk))
        if own + 2 > max_bytes:
            fail(
                f"chunk {chunk.ChunkID!r} is {own:,} bytes as JSON, more than a batch may be "
                f"(--max-batch-bytes {max_bytes:,}); raise --max-batch-bytes (the executor "
                "takes bodies up to its --max-body-bytes, 16 MiB by default), or make the "
                "chunk smaller (e.g. a FILESYSTEM_REF to a file instead of inline RawData)",
                EXIT_USAGE,
            )
        if batch and (len(batch) >= batch_size or size + 1 + own > max_bytes):
            batches.append((batch, size))
            batch, size = [], 0
        size = size + 1 + own if batch else own + 2  # a comma, or the brackets
        batch.append(chunk)
    if batch:
        batches.append((batch, size))
    return batches


def _too_large(
    exc: PayloadTooLarge, chunks: int, size: int, batch_size: int, max_batch_bytes: int
) -> str:
    """The executor's 413, and what to change to get past it."""
    what = f"the executor refused a batch of {chunks} chunks ({size:,} bytes): {exc.message}"
    if exc.limit:  # its --max-body-bytes
        return (
            f"{what}; lower --max-batch-bytes (now {max_batch_bytes:,}) to at most "
            f"{exc.limit:,}, or raise the executor's --max-body-bytes"
        )
    return f"{what}; lower --batch-size (now {batch_size}), or raise the executor's --max-pending"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)


def parse_chunks(text: str, id_prefix: str, source: str) -> list[Data]:
    """Chunks from a JSON array, or from NDJSON (one JSON value per non-blank line)."""
    items: list[Any]
    if text.lstrip().startswith("["):
        try:
            loaded = jsonlib.loads(text)
        except jsonlib.JSONDecodeError as exc:
            fail(f"{source} is not a valid JSON array: {exc}", EXIT_USAGE)
        items = loaded
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(jsonlib.loads(line))
            except jsonlib.JSONDecodeError as exc:
                fail(f"{source} line {number} is not valid JSON: {exc.msg}", EXIT_USAGE)
    chunks = []
    for i, item in enumerate(items):
        try:
            if isinstance(item, dict) and "ChunkID" in item:
                chunks.append(Data.model_validate(item))
            else:
                chunks.append(Data.model_validate({"ChunkID": f"{id_prefix}{i}", "RawData": item}))
        except ValidationError as exc:
            fail(f"{source} item {i} is not a valid chunk: {exc}", EXIT_USAGE)
    return chunks
