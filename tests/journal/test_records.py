"""Every record type round-trips through both stores, and both read back the same.

Each test appends records, reopens the store (a restart, for SQLite) and checks what
`load()` and the reads hand back.
"""

from __future__ import annotations

import pytest

from wiz_executor.api import DataChunkState, DataFormat, State
from wiz_executor.errors import ChunkNotFound, InvalidInput, RunNotFound
from wiz_executor.journal import (
    AcceptedChunk,
    Attempt,
    ChunkFailed,
    ChunksAccepted,
    ChunkStarted,
    ChunkSucceeded,
    DeliveryDone,
    DeliveryFailed,
    DeliveryPending,
    InputClosed,
    PendingDelivery,
    RunConfigured,
    RunDeleted,
    RunFinished,
    RunRetried,
    SettingChanged,
    StoredChunk,
    StoredRun,
)

from .conftest import Harness

# Marked here, not only by the top conftest's hook: that hook runs after parametrisation,
# too late for the parametrised `journal` fixture.
pytestmark = pytest.mark.anyio

WAITING, RUNNING, SUCCEEDED, FAILED = DataChunkState
T0 = 1_795_000_000.123456
CONFIG = {
    "ExpectedData": {"NumChunks": 0},
    "ExecutorConfig": {"MaxWorkers": 2, "SendDownstream": False},
    "Processor": {"nested": [1, 2.5, None, True, "ü"]},
}


def accepted(*ids: str, run: str = "r1", time: float = T0) -> ChunksAccepted:
    return ChunksAccepted(
        "noop",
        run,
        tuple(
            AcceptedChunk(i, f"{i}-out", DataFormat.RAW, {"n": i}, generated_output_id=True)
            for i in ids
        ),
        time,
    )


def only_run(h: Harness) -> StoredRun:
    runs = h.store.load().runs
    assert len(runs) == 1
    return runs[0]


async def test_run_configured_round_trips(journal: Harness) -> None:
    await journal.store.append([RunConfigured("noop", "r1", CONFIG, T0)])
    await journal.reopen()
    run = only_run(journal)
    assert (run.proc_id, run.run_id, run.configuration, run.created) == ("noop", "r1", CONFIG, T0)
    assert run.state is None
    assert run.finished is None
    assert not run.input_closed
    assert run.chunks == []
    assert run.deliveries == []
    assert run.counts == dict.fromkeys(DataChunkState, 0)


async def test_chunks_accepted_round_trip_every_field_in_arrival_order(journal: Harness) -> None:
    chunks = (
        AcceptedChunk(
            "c2",
            "c2-out",
            DataFormat.RAW,
            {"a": [1, {"b": None}], "s": "ü"},
            generated_output_id=True,
        ),
        AcceptedChunk("c1", "custom", DataFormat.FILESYSTEM_REF, None, "local", "/data/x.csv"),
        AcceptedChunk("c3", "c3-out", DataFormat.RAW, 7, generated_output_id=True),
        AcceptedChunk("c0", "c0-out", DataFormat.RAW, [True, False, 1.5], generated_output_id=True),
    )
    await journal.store.append(
        [RunConfigured("noop", "r1", CONFIG, T0), ChunksAccepted("noop", "r1", chunks[:2], T0 + 1)]
    )
    journal.store.append_nowait([ChunksAccepted("noop", "r1", chunks[2:], T0 + 2)])
    await journal.store.flush()
    await journal.reopen()
    run = only_run(journal)
    assert run.chunks == [
        StoredChunk(
            c.chunk_id,
            c.output_id,
            c.in_format,
            c.raw_data,
            c.fs_driver,
            c.fs_location,
            c.generated_output_id,
            T0 + 1 if i < 2 else T0 + 2,
        )
        for i, c in enumerate(chunks)
    ]
    assert run.counts[WAITING] == 4


async def test_chunks_accepted_after_a_restart_keep_arrival_order(journal: Harness) -> None:
    await journal.store.append([RunConfigured("noop", "r1", CONFIG, T0), accepted("b", "a")])
    store = await journal.reopen()
    await store.append([accepted("d", "c")])
    store = await journal.reopen()
    assert [c.chunk_id for c in await store.chunks("noop", "r1")] == ["b", "a", "d", "c"]


async def test_a_resent_run_or_chunk_is_kept_once(journal: Harness) -> None:
    await journal.store.append(
        [
            RunConfigured("noop", "r1", CONFIG, T0),
            accepted("c1", "c2"),
            RunConfigured("noop", "r1", {"other": 1}, T0 + 5),
            accepted("c1"),
        ]
    )
    await journal.reopen()
    run = only_run(journal)
    assert run.configuration == CONFIG
    assert [c.chunk_id for c in run.chunks or []] == ["c1", "c2"]


async def test_records_of_unknown_runs_and_chunks_change_nothing(journal: Harness) -> None:
    await journal.store.append(
        [
            accepted("c1", run="nope"),
            ChunkStarted("noop", "nope", "c1", 1, T0),
            RunConfigured("noop", "r1", CONFIG, T0),
            ChunkStarted("noop", "r1", "ghost", 1, T0),
            ChunkSucceeded("noop", "r1", "ghost", 1, DataFormat.RAW, 1, T0),
            ChunkFailed("noop", "r1", "ghost", 1, "x", T0),
            DeliveryPending("noop", "r1", "ghost", 0),
            DeliveryFailed("noop", "nope", "c1", 0, "x"),
            InputClosed("noop", "nope"),
            RunFinished("noop", "nope", State.SUCCEEDED, T0),
            RunDeleted("noop", "nope"),
        ]
    )
    await journal.reopen()
    run = only_run(journal)
    assert run.run_id == "r1"
    assert run.chunks == []
    assert run.deliveries == []


async def test_attempts_keep_each_run_of_a_chunk_and_where_it_ran(journal: Harness) -> None:
    await journal.store.append(
        [
            RunConfigured("noop", "r1", CONFIG, T0),
            accepted("c1", "c2", "c3", "c4"),
            # c1: a first attempt cut short (the process died), a second that succeeds
            ChunkStarted("noop", "r1", "c1", 1, T0 + 1, "host-a", 11, "pool-0"),
            ChunkStarted("noop", "r1", "c1", 2, T0 + 2, "host-b", 22, "pool-1"),
            ChunkSucceeded(
                "noop",
                "r1",
                "c1",
                2,
                DataFormat.FILESYSTEM_REF,
                {"size": 3},
                T0 + 3,
                "local",
                "/o/c1",
            ),
            # c2: fails
            ChunkStarted("noop", "r1", "c2", 1, T0 + 1, "host-a", 11, "pool-0"),
            ChunkFailed("noop", "r1", "c2", 1, "boom: it broke", T0 + 4),
            # c3: running when the process died
            ChunkStarted("noop", "r1", "c3", 1, T0 + 5, "host-a", 11, "pool-1"),
            # c4: failed without ever running
            ChunkFailed("noop", "r1", "c4", 0, "run was deleted", T0 + 6),
        ]
    )
    await journal.reopen()
    c1, c2, c3, c4 = only_run(journal).chunks or []
    assert (c1.state, c1.out_format, c1.out_raw, c1.out_driver, c1.out_location, c1.error) == (
        SUCCEEDED,
        DataFormat.FILESYSTEM_REF,
        {"size": 3},
        "local",
        "/o/c1",
        None,
    )
    assert c1.attempts == [
        Attempt(1, T0 + 1, None, None, None, "host-a", 11, "pool-0"),
        Attempt(2, T0 + 2, T0 + 3, SUCCEEDED, None, "host-b", 22, "pool-1"),
    ]
    assert (c2.state, c2.error) == (FAILED, "boom: it broke")
    assert c2.attempts == [
        Attempt(1, T0 + 1, T0 + 4, FAILED, "boom: it broke", "host-a", 11, "pool-0")
    ]
    assert c3.state is RUNNING
    assert c3.attempts == [Attempt(1, T0 + 5, None, None, None, "host-a", 11, "pool-1")]
    assert (c4.state, c4.error, c4.attempts) == (FAILED, "run was deleted", [])
    assert only_run(journal).counts == {WAITING: 0, RUNNING: 1, SUCCEEDED: 1, FAILED: 2}


async def test_deliveries_stay_pending_until_done_or_failed(journal: Harness) -> None:
    await journal.store.append(
        [
            RunConfigured("noop", "r1", CONFIG, T0),
            accepted("c1", "c2", "c3"),
            DeliveryPending("noop", "r1", "c1", 0),
            DeliveryPending("noop", "r1", "c1", 1),
            DeliveryPending("noop", "r1", "c2", 0),
            DeliveryPending("noop", "r1", "c3", 0),
            DeliveryDone("noop", "r1", "c1", 0),
            DeliveryFailed("noop", "r1", "c2", 0, "downstream said 409"),
        ]
    )
    await journal.reopen()
    run = only_run(journal)
    assert run.deliveries == [PendingDelivery("c1", 1), PendingDelivery("c3", 0)]
    c1, c2, _ = run.chunks or []
    assert c1.delivery_error is None
    assert c2.delivery_error == "downstream said 409"


async def test_a_finished_run_comes_back_without_its_chunks_but_with_its_counts(
    journal: Harness,
) -> None:
    await journal.store.append(
        [
            RunConfigured("noop", "r1", CONFIG, T0),
            accepted("c1", "c2"),
            ChunkSucceeded("noop", "r1", "c1", 0, DataFormat.RAW, 1, T0),
            ChunkFailed("noop", "r1", "c2", 0, "x", T0),
            InputClosed("noop", "r1"),
            RunFinished("noop", "r1", State.ERRORED, T0 + 9),
        ]
    )
    await journal.reopen()
    run = only_run(journal)
    assert run.input_closed
    assert (run.state, run.finished, run.chunks) == (State.ERRORED, T0 + 9, None)
    assert run.counts == {WAITING: 0, RUNNING: 0, SUCCEEDED: 1, FAILED: 1}
    # ...and its chunks are still served from the journal
    assert [c.chunk_id for c in await journal.store.chunks("noop", "r1")] == ["c1", "c2"]


async def test_a_retried_run_is_unfinished_again_with_its_failures_waiting(
    journal: Harness,
) -> None:
    """The retry call survives a restart: its failed chunks come back WAITING (to run
    again), its failed delivery pending and without its error, and the run unfinished."""
    await journal.store.append(
        [
            RunConfigured("noop", "r1", CONFIG, T0),
            accepted("c1", "c2", "c3"),
            ChunkStarted("noop", "r1", "c1", 1, T0, "h", 1, "w"),
            ChunkFailed("noop", "r1", "c1", 1, "boom", T0 + 1),
            ChunkSucceeded("noop", "r1", "c2", 0, DataFormat.RAW, 2, T0),
            ChunkSucceeded("noop", "r1", "c3", 0, DataFormat.RAW, 3, T0),
            DeliveryPending("noop", "r1", "c3", 0),
            DeliveryFailed("noop", "r1", "c3", 0, "downstream said 500"),
            InputClosed("noop", "r1"),
            RunFinished("noop", "r1", State.ERRORED, T0 + 9),
            RunRetried("noop", "r1", ("c1",), T0 + 10, ("c3",)),
            DeliveryPending("noop", "r1", "c3", 0),
        ]
    )
    await journal.reopen()
    run = only_run(journal)
    assert (run.state, run.finished) == (None, None)
    c1, c2, c3 = run.chunks or []
    assert (c1.state, c1.error, c1.out_raw) == (WAITING, None, None)
    assert [a.outcome for a in c1.attempts] == [FAILED]  # its history is kept
    assert c2.state is SUCCEEDED
    assert (c3.state, c3.delivery_error) == (SUCCEEDED, None)
    assert run.deliveries == [PendingDelivery("c3", 0)]


async def test_a_deleted_run_is_forgotten(journal: Harness) -> None:
    await journal.store.append(
        [RunConfigured("noop", "r1", CONFIG, T0), RunConfigured("noop", "r2", CONFIG, T0)]
    )
    await journal.store.append([accepted("c1"), DeliveryPending("noop", "r1", "c1", 0)])
    await journal.store.delete_run("noop", "r1")
    await journal.reopen()
    assert [r.run_id for r in journal.store.load().runs] == ["r2"]
    with pytest.raises(RunNotFound):
        await journal.store.chunks("noop", "r1")
    # the same run ID may be configured again, and starts empty
    await journal.store.append([RunConfigured("noop", "r1", {"new": True}, T0 + 1)])
    runs = journal.store.load().runs
    assert [(r.run_id, r.configuration, r.chunks) for r in runs] == [
        ("r2", CONFIG, []),
        ("r1", {"new": True}, []),
    ]


async def test_settings_changed_at_run_time_come_back(journal: Harness) -> None:
    await journal.store.append(
        [
            SettingChanged("max_workers", 8),
            SettingChanged("x", {"a": [1]}),
            SettingChanged("max_workers", 4),
        ]
    )
    await journal.reopen()
    assert journal.store.load().settings == {"max_workers": 4, "x": {"a": [1]}}


async def test_runs_come_back_in_the_order_they_were_configured(journal: Harness) -> None:
    await journal.store.append(
        [RunConfigured(p, r, CONFIG, T0) for p, r in [("b", "2"), ("a", "9"), ("b", "1")]]
    )
    await journal.reopen()
    assert [(r.proc_id, r.run_id) for r in journal.store.load().runs] == [
        ("b", "2"),
        ("a", "9"),
        ("b", "1"),
    ]


# -- paging reads -------------------------------------------------------------------------


async def paged_run(journal: Harness) -> None:
    ids = [f"c{i:02}" for i in range(10)]
    records: list = [RunConfigured("noop", "r1", CONFIG, T0), accepted(*ids)]
    for i in range(0, 10, 3):  # c00, c03, c06, c09 fail
        records.append(ChunkFailed("noop", "r1", ids[i], 0, f"bad {i}", T0))
    for i in range(10):
        if i % 3:
            records.append(ChunkSucceeded("noop", "r1", ids[i], 0, DataFormat.RAW, i, T0))
    records.append(RunFinished("noop", "r1", State.ERRORED, T0))
    await journal.store.append(records)
    await journal.reopen()


async def test_paging_walks_a_run_in_arrival_order(journal: Harness) -> None:
    await paged_run(journal)
    store = journal.store
    seen: list[str] = []
    after = None
    while page := await store.chunks("noop", "r1", after=after, limit=4):
        assert len(page) <= 4
        seen += [c.chunk_id for c in page]
        after = page[-1].chunk_id
    assert seen == [f"c{i:02}" for i in range(10)]


async def test_paging_filters_by_state(journal: Harness) -> None:
    await paged_run(journal)
    store = journal.store
    failed = await store.chunks("noop", "r1", state=FAILED)
    assert [(c.chunk_id, c.error) for c in failed] == [
        ("c00", "bad 0"),
        ("c03", "bad 3"),
        ("c06", "bad 6"),
        ("c09", "bad 9"),
    ]
    page = await store.chunks("noop", "r1", state=FAILED, after="c03", limit=1)
    assert [c.chunk_id for c in page] == ["c06"]
    page = await store.chunks("noop", "r1", state=SUCCEEDED, after="c06", limit=10)
    assert [(c.chunk_id, c.out_raw) for c in page] == [("c07", 7), ("c08", 8)]
    assert await store.chunks("noop", "r1", state=WAITING) == []


async def test_single_chunk_reads_by_input_and_output_id(journal: Harness) -> None:
    await paged_run(journal)
    store = journal.store
    chunk = await store.chunk("noop", "r1", "c04")
    assert (chunk.chunk_id, chunk.state, chunk.out_raw) == ("c04", SUCCEEDED, 4)
    assert await store.output("noop", "r1", "c04-out") == chunk


async def test_reads_of_unknown_runs_and_chunks_raise_not_found(journal: Harness) -> None:
    await paged_run(journal)
    store = journal.store
    with pytest.raises(RunNotFound):
        await store.chunks("noop", "nope")
    with pytest.raises(RunNotFound):
        await store.chunk("other", "r1", "c01")
    with pytest.raises(ChunkNotFound, match="input chunk 'zz'"):
        await store.chunks("noop", "r1", after="zz")
    with pytest.raises(ChunkNotFound):
        await store.chunk("noop", "r1", "c01-out")
    with pytest.raises(ChunkNotFound, match="output chunk 'c01'"):
        await store.output("noop", "r1", "c01")


async def test_a_read_copy_does_not_change_the_store(journal: Harness) -> None:
    await paged_run(journal)
    chunk = await journal.store.chunk("noop", "r1", "c01")
    chunk.state = WAITING
    chunk.attempts.append(Attempt(9, T0))
    again = await journal.store.chunk("noop", "r1", "c01")
    assert (again.state, again.attempts) == (SUCCEEDED, [])


# -- purge --------------------------------------------------------------------------------


async def test_purge_removes_the_runs_finished_before_the_cutoff(journal: Harness) -> None:
    store = journal.store
    await store.append(
        [
            RunConfigured("noop", "old", CONFIG, T0),
            accepted("c1", run="old"),
            DeliveryPending("noop", "old", "c1", 0),
            RunFinished("noop", "old", State.SUCCEEDED, T0 + 10),
            RunConfigured("noop", "new", CONFIG, T0),
            accepted("c1", run="new"),
            RunFinished("noop", "new", State.SUCCEEDED, T0 + 30),
            RunConfigured("noop", "open", CONFIG, T0),
            accepted("c1", run="open"),
        ]
    )
    assert await store.purge(T0 + 20) == [("noop", "old")]
    assert await store.purge(T0 + 20) == []
    store = await journal.reopen()
    assert [r.run_id for r in store.load().runs] == ["new", "open"]
    with pytest.raises(RunNotFound):
        await store.chunks("noop", "old")
    assert [c.chunk_id for c in await store.chunks("noop", "new")] == ["c1"]


async def test_a_page_limit_below_one_is_refused(journal: Harness) -> None:
    await paged_run(journal)
    for limit in (0, -1):
        with pytest.raises(InvalidInput, match="limit"):
            await journal.store.chunks("noop", "r1", limit=limit)
