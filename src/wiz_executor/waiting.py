"""Why a run's WAITING chunks are not running, how much more it would take, which
running chunks are slow: what an operator asks of a run that seems stuck.

Everything here is computed when asked (GetRun, GetAllRuns, GetData, a `/metrics`
scrape, `/healthz`), from the state the executor and its work models already keep:
nothing is counted per chunk for it. A run's `Waiting` reason is the first of `CHECKS`
that applies; each check is one function `(asking, run, load) -> Why | None`, so a
new reason is one function and one line in that tuple. `asking.ex` is the executor;
`load` is what the run's work model holds for it (`scheduling.RunLoad`), None when the
model cannot tell. What several runs' checks share (which runs hold the worker slots)
is worked out once per question (`Asking`), so listing many runs stays linear.

`Since` is the most precise start the executor knows: the oldest setup's start for
SETUP, recovery's or the shutdown's start for RECOVERING and STOPPING, and otherwise
since when the run has had chunks waiting without a break (`Run.waiting_since`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from .api import State, WaitingReason
from .errors import JournalError
from .history import rfc3339
from .runs import WAITING, Run
from .scheduling import RunLoad

if TYPE_CHECKING:
    from .executor import Executor

__all__ = [
    "CHECKS",
    "Asking",
    "Why",
    "free_room",
    "rfc3339",
    "slow_after",
    "waiting",
    "waiting_by_reason",
]


class Why(NamedTuple):
    """A run's `Waiting` extension, before it is rendered."""

    reason: WaitingReason
    detail: str
    since: float
    """`time.time()` seconds."""

    def wire(self) -> dict[str, str]:
        return {"Reason": self.reason.value, "Detail": self.detail, "Since": rfc3339(self.since)}


class Asking:
    """One question about the runs (a GetRun, a list, a scrape): the executor, and
    what the checks of several runs share, worked out once when first needed."""

    __slots__ = ("_holders", "ex")

    def __init__(self, ex: Executor) -> None:
        self.ex = ex
        self._holders: list[tuple[Run, int]] | None = None

    def holders(self) -> list[tuple[Run, int]]:
        """The runs holding executor-wide worker slots, most first."""
        if self._holders is None:
            self._holders = self.ex.scheduler.slot_holders()
        return self._holders


Check = Callable[[Asking, Run, RunLoad | None], Why | None]


def _since(run: Run) -> float:
    return run.waiting_since or time.time()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _unheld(run: Run, load: RunLoad | None) -> int:
    """The run's WAITING chunks its work model has not been given (yet): all of them
    when the model cannot tell."""
    return run.counts[WAITING] - (0 if load is None else load.queued)


def _recovering(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    ex = asking.ex
    # Recovery gives each run's unfinished chunks to its work model as it puts the run
    # back; those it has not given yet wait for it.
    unheld = _unheld(run, load)
    if not ex.recovering or unheld <= 0:
        return None
    return Why(
        WaitingReason.RECOVERING,
        "the executor is recovering its runs from the journal: "
        f"{_plural(unheld, 'chunk')} of this run go to its workers once it is back",
        ex.recovery_started or _since(run),
    )


def _stopping(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    ex = asking.ex
    if not ex.closing:
        return None
    after = (
        "waiting chunks stay in the journal and run after the restart"
        if ex.runs.durable
        else "waiting chunks fail"
    )
    return Why(
        WaitingReason.STOPPING,
        f"the executor is shutting down and starts no chunk; {after}",
        ex.closing_since or _since(run),
    )


def _paused(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    if not run.paused:
        return None
    return Why(
        WaitingReason.PAUSED,
        "the run is paused: none of its chunks starts until it is resumed",
        _since(run),
    )


def _switching(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    target = asking.ex.scheduler.switching_to(run)
    if target is None:
        return None
    return Why(
        WaitingReason.SWITCHING,
        f"the run is moving from work model {run.work_model.value} to {target.value}: "
        "its chunks in flight on the old one finish first",
        _since(run),
    )


def _cluster(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    ex = asking.ex
    detail = ex.scheduler.waiting_reason(run)
    return None if detail is None else Why(WaitingReason.CLUSTER, detail, _since(run))


def _journal(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    ex = asking.ex
    # Accepted chunks go to the work model once the journal has committed them: the
    # waiting chunks the model does not hold are those.
    if load is None:
        return None
    uncommitted = _unheld(run, load)
    if uncommitted <= 0:
        return None
    failure = ex.refusal
    if isinstance(failure, JournalError):
        detail = (
            f"the journal failed ({failure.message}): {_plural(uncommitted, 'accepted chunk')} "
            "never committed never start; restart the executor"
        )
    elif load.queued == 0:
        detail = f"{_plural(uncommitted, 'accepted chunk')} start once the journal commits them"
    else:
        return None  # (the queued ones say more; these follow in a moment)
    return Why(WaitingReason.JOURNAL, detail, _since(run))


def _run_limit(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    if load is None or load.busy < load.limit:
        return None
    return Why(WaitingReason.RUN_LIMIT, f"{load.busy} of MaxWorkers {load.limit} busy", _since(run))


def _setup(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    if load is None or not load.setting_up:
        return None
    since = load.setup_since or _since(run)
    return Why(
        WaitingReason.SETUP,
        f"{_plural(load.setting_up, 'worker')} in the processor's setup since "
        f"{rfc3339(since)}; {load.busy} of MaxWorkers {load.limit} busy",
        since,
    )


SHOWN_HOLDERS = 5
"""Runs named in an EXECUTOR_LIMIT detail (the most slots first), the rest counted."""


def _executor_limit(asking: Asking, run: Run, load: RunLoad | None) -> Why | None:
    ex = asking.ex
    limiter = ex.scheduler.limiter
    if load is None or not (load.wants_slots or limiter.in_use >= limiter.total):
        return None
    holders = asking.holders()
    named = ", ".join(f"{r.proc_id}/{r.run_id} {n}" for r, n in holders[:SHOWN_HOLDERS])
    if len(holders) > SHOWN_HOLDERS:
        named += f" and {_plural(len(holders) - SHOWN_HOLDERS, 'other run')}"
    return Why(
        WaitingReason.EXECUTOR_LIMIT,
        f"{limiter.in_use} of --max-workers {limiter.total} worker slots taken"
        + (f" ({named})" if named else "")
        + f"; this run holds {load.workers} of its MaxWorkers {load.limit}",
        _since(run),
    )


CHECKS: tuple[Check, ...] = (
    _recovering,
    _stopping,
    _paused,
    _switching,
    _cluster,
    _journal,
    _run_limit,
    _setup,
    _executor_limit,
)
"""The reasons in the order they are tried (`WaitingReason`'s order); QUEUED when none
applies. PAUSED and SWITCHING come before the checks that count what the work model
holds: a paused or switching run's chunks are held by the scheduler, not the model."""


def waiting(ex: Executor, run: Run, asking: Asking | None = None) -> Why | None:
    """Why `run`'s WAITING chunks are not running; None when none waits. Pass one
    `asking` for the runs of one answer."""
    if not run.counts[WAITING] or run.stored or run.removed:
        return None
    if asking is None:
        asking = Asking(ex)
    load = ex.scheduler.load(run)
    for check in CHECKS:
        why = check(asking, run, load)
        if why is not None:
            return why
    if load is None:
        detail = f"{_plural(run.counts[WAITING], 'chunk')} queued in the {run.work_model} model"
    else:
        detail = (
            f"{_plural(load.queued, 'chunk')} queued for a free worker "
            f"({load.busy} of MaxWorkers {load.limit} busy)"
        )
    return Why(WaitingReason.QUEUED, detail, _since(run))


def waiting_by_reason(ex: Executor) -> dict[WaitingReason, int]:
    """Every WAITING chunk of the executor, counted under its run's reason (the
    `/metrics` gauge): one reason per run, computed per run, not per chunk."""
    counts = dict.fromkeys(WaitingReason, 0)
    if not ex.runs.counts[WAITING]:
        return counts
    asking = Asking(ex)
    for run in ex.runs:
        why = waiting(ex, run, asking)
        if why is not None:
            counts[why.reason] += run.counts[WAITING]
    return counts


def free_room(ex: Executor, run: Run | None = None) -> int:
    """How many more chunks the executor (or `run`) would accept now: `--max-pending`
    less the chunks waiting, and for a run also within what its NumChunks leaves; 0
    while writes are refused, and for a run that takes no more chunks.

    Read on every AddData answer (`X-Wiz-Free-Room`), so the common case is a few
    attribute reads."""
    room = ex.settings.max_pending - ex.runs.counts[WAITING]
    if run is not None:
        if run.input_closed or run.state in _FINISHED or run.removed:
            return 0
        expected = run.expected
        if expected:
            room = min(room, expected - run.accepted)
    if room <= 0 or ex.closing or ex.refusal is not None:
        return 0
    return room


_FINISHED = frozenset({State.SUCCEEDED, State.ERRORED})


def slow_after(ex: Executor, run: Run) -> float | None:
    """Seconds after which a running chunk of `run` is `Slow`: half its chunk timeout
    (the run's ChunkTimeout, else the executor's default); None without a timeout."""
    timeout = run.timeout or ex.settings.default_chunk_timeout
    return timeout / 2 if timeout else None
