"""When to retry a request the executor answered with 429, and how long to wait first.

A full executor tells the client when to come back (`Retry-After`); retrying is safe
because Configure and AddData are idempotent (a resent chunk with the same content is a
no-op). The attempts are bounded so a client never hangs on an executor that stays full.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of requests answered 429 (executor full).

    `attempts` counts every try, so `RetryPolicy(attempts=1)` never retries. The wait is
    the server's `Retry-After` (or `default_delay` without one), capped at `max_delay`.
    """

    attempts: int = 5
    max_delay: float = 30.0
    default_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.max_delay < 0 or self.default_delay < 0:
            raise ValueError("delays cannot be negative")

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None to stop and answer."""
        if response.status_code != 429 or attempt >= self.attempts:
            return None
        wait = retry_after(response)
        return min(self.default_delay if wait is None else wait, self.max_delay)
