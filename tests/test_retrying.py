"""The one retry policy (`wiz_executor._retrying`): its Retry-After parser, its backoff,
its bounds, and that `get`/`scrape`, downstream delivery and the client all go through
it. Nothing here waits: the delays the policy chose are recorded, and zero is waited."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import httpx
import pytest

from _stub_server import deliver_one
from wiz_executor import ShuttingDown
from wiz_executor._retrying import Backoff, Transient, parse_retry_after
from wiz_executor.client import AsyncClient, Client
from wiz_executor.processors._http import FetchError, status_error, with_retries

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


# -- the parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 12 ", 12.0),
        ("0", 0.0),
        ("-3", 0.0),  # never a negative wait
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),  # a date past: now
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # the obsolete RFC 850 form, long past
        ("Sun Nov  6 08:49:37 1994", 0.0),  # asctime, read as GMT
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_in_both_forms(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=lambda: NOW) == seconds


# -- the backoff and its bounds ------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_honours_a_longer_retry_after() -> None:
    policy = Backoff(first=0.5, cap=5.0)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay(0, 3.0) == 3.0  # the server asked for longer
    assert policy.delay(3, 1.0) == 4.0  # the backoff is longer already
    assert policy.delay(0, 3600.0) == 5.0  # capped: a server cannot park a caller
    assert policy.delay(10_000) == 5.0  # no overflow on a long outage


def test_a_longer_retry_after_may_be_honoured_past_the_cap() -> None:
    """A caller with a long deadline (downstream delivery) waits as long as the server
    asks, up to its own bound; the backoff itself stays capped."""
    policy = Backoff(first=0.5, cap=5.0, attempts=None, deadline=3600, longest_retry_after=600)
    assert policy.delay(0, 120.0) == 120.0
    assert policy.delay(0, 3600.0) == 600.0
    assert policy.delay(10) == 5.0


async def test_no_wait_goes_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last wait is cut to what is left of the deadline, so the last try comes at
    the deadline rather than a whole backoff after it. The waits are recorded, not slept."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def record_wait(delay: float, result: Any = None) -> Any:
        waits.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", record_wait)
    policy = Backoff(first=100.0, cap=100.0, attempts=3, deadline=5.0)
    assert await fail_every_time(policy, lambda exc: 0.0) == 3
    monkeypatch.undo()
    assert len(waits) == 2
    assert all(4.0 <= wait <= 5.0 for wait in waits), waits


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"longest_retry_after": -1}, "longest_retry_after"),
        ({"attempts": 0}, "attempts"),
        ({"attempts": None}, "attempts or a deadline"),
        ({"deadline": 0}, "deadline"),
        ({"first": -1}, "negative"),
    ],
)
def test_a_policy_must_be_bounded_and_sane(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


async def fail_every_time(policy: Backoff, decide: Transient) -> int:
    """Run a try that always raises KeyError under `policy`; return how many ran."""
    tries = 0
    try:
        async for attempt in policy.retrying(decide):
            with attempt:
                tries += 1
                raise KeyError(tries)
    except KeyError as exc:
        last = exc.args[0]
        return tries if last == tries else -1  # -1: not the last error that was raised
    raise AssertionError("the loop ended without raising")


async def test_attempts_bound_the_loop_and_the_last_error_is_raised() -> None:
    assert await fail_every_time(Backoff(first=0.0, attempts=3), lambda exc: 0.0) == 3


async def test_a_deadline_alone_bounds_the_loop() -> None:
    """The shape a long outage needs (downstream riding one out): no attempt count,
    only a total time."""
    policy = Backoff(first=0.0, attempts=None, deadline=0.05)
    assert await fail_every_time(policy, lambda exc: 0.0) >= 1


async def test_a_final_error_is_not_retried() -> None:
    assert await fail_every_time(Backoff(first=0.0), lambda exc: None) == 1


def test_the_blocking_loop_is_the_same_policy() -> None:
    tries = 0

    def run() -> None:
        nonlocal tries
        for attempt in Backoff(first=0.0, attempts=2).retrying_sync(lambda exc: 0.0):
            with attempt:
                tries += 1
                raise ValueError("again")

    with pytest.raises(ValueError, match="again"):
        run()
    assert tries == 2


# -- the three callers share it ------------------------------------------------------------


@pytest.fixture
def chosen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float | None]]:
    """Every (retry, Retry-After) that `Backoff.delay` was asked about; the loop then
    waits zero, so the retries happen at once."""
    calls: list[tuple[int, float | None]] = []

    def record(self: Backoff, retry: int, retry_after: float | None = None) -> float:
        calls.append((retry, retry_after))
        return 0.0

    monkeypatch.setattr(Backoff, "delay", record)
    return calls


def answers(*responses: httpx.Response) -> httpx.MockTransport:
    queue = list(responses)
    return httpx.MockTransport(lambda request: queue.pop(0))


async def test_get_scrape_downstream_and_the_client_share_one_policy(
    chosen: list[tuple[int, float | None]],
) -> None:
    """Each caller, told to come back at an HTTP-date 20 s ahead, asks the one policy
    for its wait with the same Retry-After, read by the one parser."""
    date = http_date(20)
    expected = parse_retry_after(date)
    assert expected is not None

    # get and scrape: a transient FetchError from a 503, then success
    async def fetch(n: int) -> str:
        if n == 0:
            request = httpx.Request("GET", "http://127.0.0.1:9/x")
            refused = httpx.Response(503, headers={"Retry-After": date}, request=request)
            raise await status_error(refused, "http://127.0.0.1:9/x")
        return "fetched"

    assert await with_retries(fetch, retries=3, backoff=0.5) == "fetched"

    # downstream delivery: a 503, then accepted
    busy = httpx.Response(503, headers={"Retry-After": date}, json={"value": "busy"})
    accepted = httpx.Response(200, json={"Accepted": 1, "Duplicates": 0})
    chunk, _ = await deliver_one([busy, accepted], attempts=3, backoff=0.1)
    assert chunk.delivery_error is None

    # the client, async and sync: a 429, then the answer
    full = {"Retry-After": date}
    transport = answers(
        httpx.Response(429, headers=full, json={"value": "full"}), httpx.Response(200, json=[])
    )
    async with AsyncClient("http://127.0.0.1:9", transport=transport) as wiz:
        assert await wiz.processors() == []
    sync_transport = answers(
        httpx.Response(429, headers=full, json={"value": "full"}), httpx.Response(200, json=[])
    )
    with Client("http://127.0.0.1:9", transport=sync_transport) as sync_wiz:
        assert sync_wiz.processors() == []

    assert [retry for retry, _ in chosen] == [0, 0, 0, 0], "one retry by each caller"
    for _, retry_after in chosen:
        assert retry_after == pytest.approx(expected, abs=2)


async def test_the_client_retries_a_429_only(chosen: list[tuple[int, float | None]]) -> None:
    """One policy, but what is worth another try stays each caller's decision: the
    client leaves a 503 (shutting down) to its caller at once."""
    transport = answers(httpx.Response(503, json={"value": "shutting down"}))
    async with AsyncClient("http://127.0.0.1:9", transport=transport) as wiz:
        with pytest.raises(ShuttingDown):
            await wiz.processors()
    assert chosen == []


async def test_a_post_that_may_have_been_acted_on_is_not_resent(
    chosen: list[tuple[int, float | None]],
) -> None:
    tries = 0

    async def post(n: int) -> None:
        nonlocal tries
        tries += 1
        raise FetchError("the connection broke", transient=True, unprocessed=False)

    with pytest.raises(FetchError, match=r"the connection broke$"):
        await with_retries(post, retries=3, backoff=0.5, idempotent=False)
    assert tries == 1
    assert chosen == []
