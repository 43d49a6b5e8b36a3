"""`wiz send`: chunks from a JSON array or NDJSON (a file or stdin), sent in batches.

An item that is a JSON object with a `ChunkID` is a whole chunk (a Data object); any
other item becomes the `RawData` of a chunk named `<prefix><index>`. Each batch is one
AddData request, accepted or rejected whole; a resend of the same file is a no-op, so a
send that stopped half-way can simply be run again.
"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..api import Data
from ..client import Client
from ._common import (
    DEFAULT,
    EXIT_USAGE,
    JsonOption,
    ProcArg,
    RunArg,
    UrlOption,
    api_errors,
    fail,
    print_json,
    stderr,
    stdout,
)


def send(
    proc: ProcArg,
    run: RunArg,
    file: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="JSON array or NDJSON; '-' = stdin.")
    ] = "-",
    batch_size: Annotated[int, typer.Option(min=1, help="Chunks per AddData request.")] = 100,
    id_prefix: Annotated[
        str, typer.Option(help="ChunkID prefix for items that are not whole chunks.")
    ] = "chunk-",
    url: UrlOption = DEFAULT,
    json: JsonOption = False,
) -> None:
    """Send chunks to a run, in batches, with a progress bar."""
    text = sys.stdin.read() if file == "-" else _read(Path(file))
    chunks = parse_chunks(text, id_prefix, "stdin" if file == "-" else file)
    accepted = duplicates = 0
    progress = Progress(
        TextColumn(f"sending to {proc}/{run}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
        disable=json,
    )
    with api_errors(url), Client(url) as wiz, progress:
        task = progress.add_task("send", total=len(chunks))
        for start in range(0, len(chunks), batch_size):
            batch = chunks[start : start + batch_size]
            result = wiz.add_data(proc, run, batch)
            accepted += result.Accepted
            duplicates += result.Duplicates
            progress.advance(task, len(batch))
    summary = {"Sent": len(chunks), "Accepted": accepted, "Duplicates": duplicates}
    if json:
        return print_json(summary)
    stdout().print(
        f"sent {len(chunks)} chunks to {proc}/{run}: {accepted} accepted, {duplicates} already held"
    )


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
