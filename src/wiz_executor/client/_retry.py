"""When to retry a request the executor answered with 429, and how long to wait first.

A full executor tells the client when to come back (`Retry-After`); retrying is safe
because Configure and AddData are idempotent (a resent chunk with the same content is a
no-op). The attempts are bounded so a client never hangs on an executor that stays full.
The waiting itself is the project's one retry policy (`wiz_executor._retrying`), shared
with `get`, `scrape` and downstream delivery; only the client's rule (retry a 429, and
nothing else) is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from .._retrying import Backoff, parse_retry_after


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), if any."""
    return parse_retry_after(response.headers.get("retry-after"))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of requests answered 429 (executor full).

    `attempts` counts every try, so `RetryPolicy(attempts=1)` never retries. The wait is
    the server's `Retry-After` or the backoff, whichever is longer, capped at
    `max_delay`; the backoff starts at `default_delay` and doubles with each retry.
    """

    attempts: int = 5
    max_delay: float = 30.0
    default_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.max_delay < 0 or self.default_delay < 0:
            raise ValueError("delays cannot be negative")

    @property
    def backoff(self) -> Backoff:
        """This policy as the project's shared retry loop."""
        return Backoff(first=self.default_delay, cap=self.max_delay, attempts=self.attempts)

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None to stop and answer."""
        if not self.retryable(response) or attempt >= self.attempts:
            return None
        return self.backoff.delay(attempt - 1, retry_after(response))

    @staticmethod
    def retryable(response: httpx.Response) -> bool:
        """The client's rule: only a full executor (429) is worth another try;
        every other answer is the caller's to see at once."""
        return response.status_code == 429

    @staticmethod
    def transient(exc: Exception) -> float | None:
        """The rule as the retry loop asks it: retry an `Answered` 429 after the
        `Retry-After` it carries (0 when none: the backoff alone then)."""
        if isinstance(exc, Answered) and RetryPolicy.retryable(exc.response):
            return retry_after(exc.response) or 0.0
        return None


class Answered(Exception):
    """An answer the policy may retry, raised inside the retry loop so that the loop
    sees it; when the retries are used up it is turned into the usual error."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
