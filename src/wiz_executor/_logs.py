"""Logging for `wiz executor`: one format for every logger, set up in one place.

uvicorn's loggers, the executor's and httpx's all go to one handler on stderr, as
`2026-11-28 04:50:00.123 INFO wiz_executor.runs: run noop/r1 finished SUCCEEDED (...)`.
A record is one line: control characters in its message (a chunk ID may hold a newline
or an escape sequence) are written escaped, so no ID or URL can forge or break a line;
only a traceback, the format's own multi-line part, keeps its lines.

Outbound HTTP (httpx and httpcore: downstream deliveries, `get`, `scrape`) is logged at
DEBUG only: at INFO, a line per request would drown the lifecycle lines (1,000 chunks
delivered downstream, 1,000 lines).

`--log-format json` is for machines (a log shipper, `jq`): one JSON object per line,
`{"time", "level", "logger", "message"}`, plus `processor`, `run` and `chunk` when the
record concerns one (the run log and the chunk runner pass them with `extra=about(...)`)
and `exception` (the traceback's text) when it carries one. JSON escapes control
characters and, ASCII-only, the line separators too, so a record stays one line.

The library never configures logging by itself; `configure_logging` is for the process
that serves (the CLI), and is safe to call again (it replaces its own handler only).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

OUTBOUND_HTTP = ("httpx", "httpcore")
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

LogFormat = Literal["text", "json"]
CONTEXT = ("processor", "run", "chunk")
"""The record attributes (set with `extra=`) that say which run or chunk it concerns."""


def about(proc_id: str, run_id: str, chunk_id: str | None = None) -> dict[str, str]:
    """The `extra=` of a record about a run (or one of its chunks): what the JSON
    format writes as `processor`, `run` and `chunk`; the text format has them in the
    message already."""
    if chunk_id is None:
        return {"processor": proc_id, "run": run_id}
    return {"processor": proc_id, "run": run_id, "chunk": chunk_id}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with control characters (C0, DEL, C1, line and paragraph separators)
    written as escapes (`\\n`, `\\x1b`, `\\u2028`), so it prints on one line."""
    return _CONTROL.sub(_escaped, text)


class LogFormatter(logging.Formatter):
    """The one format, with the message escaped onto one line."""

    def __init__(self) -> None:
        super().__init__(FORMAT, DATE_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (`--log-format json`)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever `sys.stderr` is when a record is written (test runners
    swap it), marked as ours so `configure_logging` can replace it."""

    def __init__(self, log_format: LogFormat = "text") -> None:
        super().__init__()
        self.setFormatter(JsonFormatter() if log_format == "json" else LogFormatter())

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(level: str | int, log_format: LogFormat = "text") -> None:
    """Send every logger's records to stderr in the one format (readable `text`, or
    `json` lines), at `level`.

    uvicorn's loggers lose their own handlers and propagate to the root's; pass
    uvicorn `log_config=None` so it keeps them that way. httpx and httpcore log only
    when `level` is DEBUG.
    """
    number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    root.addHandler(_StderrHandler(log_format))
    root.setLevel(number)
    for name in UVICORN:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    outbound = logging.DEBUG if number <= logging.DEBUG else logging.WARNING
    for name in OUTBOUND_HTTP:
        logging.getLogger(name).setLevel(outbound)
