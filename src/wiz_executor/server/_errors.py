"""The one table mapping the executor's errors to HTTP status codes, and the error body.

Every error answer is `{"value": "<what went wrong, for a person>"}`, as the Processor
API specifies; 429 and 503 also say when to come back (`Retry-After`), and 401 how to
authenticate (`WWW-Authenticate`, RFC 6750).
"""

from __future__ import annotations

from .. import errors
from ..wire import encode

STATUS: dict[type[errors.WizError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.MisdirectedRequest: 421,
    errors.ExecutorFull: 429,
    errors.ShuttingDown: 503,
    errors.Recovering: 503,
    errors.JournalError: 503,
    errors.WizError: 500,
}


def status_of(exc: errors.WizError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(message: str) -> bytes:
    return encode({"value": message})


REALM = "wiz-executor"
"""The realm a 401's `WWW-Authenticate: Bearer` challenge names."""


def bearer_challenge(error: str = "", description: str = "") -> str:
    """The `WWW-Authenticate` value of a 401 (RFC 6750 §3): the realm, and when a
    token was sent but is not the right one, the error code and why."""
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}"'
        if description:
            challenge += f', error_description="{description}"'
    return challenge


def error_headers(exc: errors.WizError) -> dict[str, str]:
    if isinstance(exc, errors.Unauthorized):
        return {"WWW-Authenticate": bearer_challenge(exc.error, exc.message if exc.error else "")}
    if isinstance(exc, errors.ExecutorFull):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, errors.ShuttingDown | errors.JournalError):
        return {"Retry-After": "5"}
    if isinstance(exc, errors.Recovering):
        return {"Retry-After": "1"}
    return {}
