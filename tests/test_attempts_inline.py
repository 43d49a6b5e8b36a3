"""A chunk's first attempt is kept inline (`Chunk.attempts`): whatever happens to it,
the attempts read back are those the struct form recorded, field for field."""

from __future__ import annotations

from wiz_executor import Configuration, DataChunkState, DataFormat, WorkModel
from wiz_executor.journal import Attempt
from wiz_executor.runs import HOST, PID, Chunk, Run, RunMap

SUCCEEDED, FAILED = DataChunkState.SUCCEEDED, DataChunkState.FAILED


def _started(worker: str = "w1") -> tuple[RunMap, Run, Chunk]:
    runs = RunMap()
    run = Run("noop", "r", Configuration(), Configuration(), 1, WorkModel.POOL, None)
    runs.insert(run)
    chunk = Chunk("c", "c-out", DataFormat.RAW, None, "", "", False)
    runs.accept(run, [chunk])
    assert chunk.attempts is None
    assert chunk.attempt == 0
    runs.start(run, chunk, worker)
    return runs, run, chunk


def test_a_succeeded_first_attempt() -> None:
    runs, run, chunk = _started()
    (running,) = chunk.attempts or ()
    assert running.ended is None
    assert running.outcome is None
    assert chunk.attempt == 1
    runs.succeed(run, chunk, DataFormat.RAW, 1)
    (attempt,) = chunk.attempts or ()
    assert attempt == Attempt(1, running.started, attempt.ended, SUCCEEDED, None, HOST, PID, "w1")
    assert attempt.ended is not None
    assert attempt.ended >= attempt.started


def test_a_failed_first_attempt_carries_the_error() -> None:
    runs, run, chunk = _started()
    runs.fail(run, chunk, "boom")
    (attempt,) = chunk.attempts or ()
    assert (attempt.number, attempt.outcome, attempt.error) == (1, FAILED, "boom")
    assert attempt.ended is not None


def test_a_retried_failure_keeps_its_outcome_and_the_next_attempt_is_the_second() -> None:
    """A retry makes the chunk WAITING again: attempt 1 still says FAILED, with its error
    (inline, an outcome read from the chunk's state would have lost both)."""
    runs, run, chunk = _started()
    runs.fail(run, chunk, "boom")
    runs.retry(run)
    assert chunk.state is DataChunkState.WAITING
    assert chunk.error is None
    (first,) = chunk.attempts or ()
    assert (first.outcome, first.error) == (FAILED, "boom")
    runs.start(run, chunk, "w2")
    assert chunk.attempt == 2
    runs.succeed(run, chunk, DataFormat.RAW, 1)
    first, second = chunk.attempts or ()
    assert (first.number, first.outcome, first.error, first.worker) == (1, FAILED, "boom", "w1")
    assert (second.number, second.outcome, second.worker) == (2, SUCCEEDED, "w2")


def test_an_interrupted_attempt_has_no_outcome_even_once_the_chunk_fails() -> None:
    """Interrupted (a durable shutdown), then cancelled while it waits: the attempt
    ended without an outcome, and the chunk's FAILED is not its attempt's."""
    runs, run, chunk = _started()
    runs.interrupt(run, chunk)
    runs.cancel(run)
    assert chunk.state is FAILED
    (attempt,) = chunk.attempts or ()
    assert attempt.ended is not None
    assert attempt.outcome is None
    assert attempt.error is None


def test_a_requeued_attempt_keeps_why_and_the_next_one_is_counted() -> None:
    runs, run, chunk = _started()
    runs.requeue(run, chunk, "actor died")
    runs.start(run, chunk, "w2")
    first, second = chunk.attempts or ()
    assert (first.number, first.outcome, first.error) == (1, None, "actor died")
    assert first.ended is not None
    assert (second.number, second.ended) == (2, None)


def test_an_attempt_elsewhere_says_where() -> None:
    """A chunk run by another process (RAY) records that process, not this one."""
    runs = RunMap()
    run = Run("noop", "r", Configuration(), Configuration(), 1, WorkModel.POOL, None)
    runs.insert(run)
    chunk = Chunk("c", "c-out", DataFormat.RAW, None, "", "", False)
    runs.accept(run, [chunk])
    runs.start(run, chunk, "actor-1", host="node-b", pid=4242, node="n1")
    runs.succeed(run, chunk, DataFormat.RAW, 1)
    (attempt,) = chunk.attempts or ()
    assert (attempt.host, attempt.pid, attempt.node, attempt.outcome) == (
        "node-b",
        4242,
        "n1",
        SUCCEEDED,
    )
