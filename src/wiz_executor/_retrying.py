"""The one retry policy of everything that resends an HTTP request, built on tenacity.

Three callers retry: `get` and `scrape` (`processors/_http.py`), downstream delivery
(`downstream.py`) and the client (`client/_retry.py`). They share three things here, so
a fix to any of them reaches all three:

- `parse_retry_after`: the one reader of a `Retry-After` header, in either of its forms
  (delta-seconds, or an HTTP-date such as `Wed, 21 Oct 2026 07:28:00 GMT`);
- `Backoff.delay`: the wait before a retry, doubling from a first delay up to a cap, and
  the server's `Retry-After` instead when that is longer (still capped, so a server
  cannot park a caller for an hour; a caller with a long deadline, such as downstream
  delivery, may honour longer ones with `longest_retry_after`), and never past the
  deadline: the last try is made when the deadline comes, not after it;
- `Backoff.retrying` / `Backoff.retrying_sync`: tenacity's retry loop, bounded by a
  number of attempts and/or a total deadline. A deadline instead of an attempt count is
  a configuration change (`Backoff(attempts=None, deadline=3600)`), not new code.

What is worth another try stays each caller's own decision (which statuses, whether a
POST may be resent): a `Transient` function that says, for an exception raised by one
attempt, "retry, and the server asked for this many seconds" or `None` for "final".

Why tenacity and not stamina (its opinionated wrapper): stamina's instrumentation is
process-wide. It counts every retry in prometheus_client's default registry (label
values naming our exception classes) and logs a warning per retry (printed on stderr
wherever logging is not configured, as in the `wiz` CLI); the only way off is a global
switch that would change stamina for the whole host process. This project keeps
metrics per app and no global state, and the client must not print to a CLI user's
terminal on every 429; tenacity has no global state, and its waits sleep on asyncio or
trio alike.

Tests do not wait: `Backoff.delay` is the one place a wait is chosen, so a test can
record what it chose and wait zero instead.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import tenacity

Transient = Callable[[Exception], float | None]
"""A caller's decision on an attempt's exception: `None` if it is final, otherwise the
seconds the server asked to wait (its `Retry-After`; 0 when it said nothing)."""


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP-date (RFC
    9110 §10.2.3). A date in the past is 0 (retry now); a missing or unreadable value is
    None, so each caller picks its own default."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    # HTTP-dates are always GMT; a date without a zone is read as GMT too.
    stamp = when.timestamp() if when.tzinfo else when.replace(tzinfo=UTC).timestamp()
    return max(stamp - now(), 0.0)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How often and how patiently to retry.

    `first` is the wait before the first retry, doubled for each one after, at most
    `cap`. The loop ends after `attempts` tries in all (so `attempts=1` never retries)
    or once `deadline` seconds have passed since the first, whichever comes first;
    either may be None, not both (a retry loop without a bound is a hang).
    `longest_retry_after` is the longest `Retry-After` honoured (None: `cap`), for a
    caller that may wait as long as a server asks, within its deadline.
    """

    first: float = 0.1
    cap: float = 30.0
    attempts: int | None = 5
    deadline: float | None = None
    longest_retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be positive")
        if self.attempts is None and self.deadline is None:
            raise ValueError("a retry policy needs attempts or a deadline")
        if self.first < 0 or self.cap < 0:
            raise ValueError("delays cannot be negative")
        if self.longest_retry_after is not None and not self.longest_retry_after >= 0:
            raise ValueError("longest_retry_after cannot be negative")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds before retry number `retry` (0 = the first retry): the doubling
        backoff, or the server's `Retry-After` when longer, never more than `cap` (a
        `Retry-After` never more than `longest_retry_after`, when that is set)."""
        try:
            backoff = min(self.first * 2.0**retry, self.cap)
        except OverflowError:
            backoff = self.cap
        longest = self.cap if self.longest_retry_after is None else self.longest_retry_after
        return float(max(backoff, min(retry_after or 0.0, longest)))

    def retrying(self, transient: Transient) -> AsyncIterator[tenacity.AttemptManager]:
        """The async retry loop: `async for attempt in policy.retrying(decide):` then
        `with attempt:` around one try. The last exception is re-raised when the
        decision calls it final or the bound is reached. Waits sleep on asyncio or trio."""
        return tenacity.AsyncRetrying(**self._loop(transient)).__aiter__()

    def retrying_sync(self, transient: Transient) -> Iterator[tenacity.AttemptManager]:
        """The same loop for blocking code (it sleeps with `time.sleep`)."""
        return iter(tenacity.Retrying(**self._loop(transient)))

    def _loop(self, transient: Transient) -> dict[str, Any]:
        """tenacity's settings for this policy: the caller decides whether to retry,
        this policy how long to wait and when to give up."""

        def retry(state: tenacity.RetryCallState) -> bool:
            return _asked(state, transient) is not None

        def wait(state: tenacity.RetryCallState) -> float:
            delay = self.delay(state.attempt_number - 1, _asked(state, transient))
            if self.deadline is not None:  # the last try comes at the deadline, not after
                delay = min(delay, max(self.deadline - (state.seconds_since_start or 0.0), 0.0))
            return delay

        stops: list[tenacity.stop.stop_base] = []
        if self.attempts is not None:
            stops.append(tenacity.stop_after_attempt(self.attempts))
        if self.deadline is not None:
            stops.append(tenacity.stop_after_delay(self.deadline))
        return {"retry": retry, "wait": wait, "stop": tenacity.stop_any(*stops), "reraise": True}


def _asked(state: tenacity.RetryCallState, transient: Transient) -> float | None:
    """The caller's decision on the attempt that just failed (None: it succeeded)."""
    exc = state.outcome.exception() if state.outcome is not None else None
    return transient(exc) if isinstance(exc, Exception) else None
