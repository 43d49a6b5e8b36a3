"""Turning an error answer back into the exception the server raised.

The server maps exceptions to status codes in one table (`server._errors`); this is its
inverse for the client: the same classes from `wiz_executor.errors`, carrying the
server's `{"value"}` message, so `except RunNotFound` works the same in-process and over
HTTP. A 404 is told apart (processor, run, chunk, or no such endpoint) by the server's
message, which is written by the same package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from ..errors import (
    ChunkNotFound,
    Conflict,
    ExecutorFull,
    InvalidConfiguration,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ProcessorNotFound,
    RunNotFound,
    ShuttingDown,
    Unauthorized,
    WizError,
)
from ._retry import retry_after


class EventsUnavailable(NotFound):
    """The executor serves no event stream (an older executor); callers fall back to polling."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a request was about, to build the right NotFound subclass."""

    proc_id: str = ""
    run_id: str = ""
    chunk_id: str = ""
    chunk_kind: str = "input"
    configuring: bool = False
    events: bool = False


def server_message(response: httpx.Response) -> str:
    """The `{"value"}` message of an error answer, or a short description of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("value"), str):
        return str(body["value"])
    text = response.text.strip()[:200]
    return text or f"HTTP {response.status_code} {response.reason_phrase}".strip()


def error_from_response(response: httpx.Response, target: Target) -> WizError:
    message = server_message(response)
    status = response.status_code
    exc: WizError
    if status == 400:
        exc = InvalidConfiguration(message) if target.configuring else InvalidInput(message)
    elif status == 401:
        exc = Unauthorized(message)
    elif status in (404, 405):
        exc = _not_found(status, message, target)
    elif status == 409:
        exc = Conflict(message)
    elif status == 413:
        limit = re.search(r"limit of (\d+) bytes", message)
        exc = PayloadTooLarge(int(limit.group(1)) if limit else 0)
    elif status == 429:
        wait = retry_after(response)
        exc = ExecutorFull(message, retry_after=round(wait) if wait is not None else 1)
    elif status == 503:
        exc = ShuttingDown()
    else:
        request = response.request
        message = f"HTTP {status} from {request.method} {request.url.path}: {message}"
        exc = WizError(message)
    exc.message = message
    exc.args = (message,)
    return exc


def _not_found(status: int, message: str, target: Target) -> WizError:
    if message.startswith("no processor"):
        return ProcessorNotFound(target.proc_id)
    if message.startswith("no run"):
        return RunNotFound(target.proc_id, target.run_id)
    if target.chunk_id and message.startswith(f"run {target.run_id!r} has no"):
        return ChunkNotFound(target.run_id, target.chunk_id, target.chunk_kind)
    if target.events:
        return EventsUnavailable(message)
    if status == 405:
        return WizError(message)
    return NotFound(message)
