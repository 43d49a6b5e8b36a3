"""--keep-finished: runs finished longer ago than the window are removed from the run
map, the journal and the data directory; younger and unfinished runs stay. In process,
no sleeps: the purge step is called directly, or the executor's clock is moved on."""

from __future__ import annotations

import dataclasses
import time

import pytest
import typer

from conftest import wait_for
from wiz_executor import Configuration, Data, Executor, Settings
from wiz_executor.cli._serve import parse_keep_finished
from wiz_executor.errors import RunNotFound
from wiz_executor.settings import KEEP_FINISHED_DEFAULT, parse_duration

pytestmark = pytest.mark.anyio

KEEP = 3600.0


async def finish_run(ex: Executor, run_id: str) -> None:
    """Configure `run_id` of noop with one chunk, a file in its folder, and wait it out."""
    config = Configuration.model_validate({"ExpectedData": {"NumChunks": 1}})
    ex.configure("noop", run_id, config)
    await ex.committed(ex.add_data("noop", run_id, Data(ChunkID="a")).committed)
    folder = ex.settings.data_dir / "noop" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "left.txt").write_text("left by the processor")
    await ex.wait("noop", run_id, timeout=10)
    await ex.commit()


async def clock_past(moment: float) -> float:
    """The wall clock once it reads later than `moment` (it may not have moved yet)."""
    await wait_for(lambda: time.time() > moment, what="the clock to move on")
    return time.time()


async def journal_has(ex: Executor, run_id: str) -> bool:
    assert ex.journal is not None
    try:
        await ex.journal.chunks("noop", run_id)
    except RunNotFound:
        return False
    return True


@pytest.mark.parametrize("ephemeral", [False, True], ids=["durable", "ephemeral"])
async def test_a_finished_run_older_than_the_window_is_removed(
    settings: Settings, ephemeral: bool
) -> None:
    settings = dataclasses.replace(settings, keep_finished=KEEP, ephemeral=ephemeral)
    async with Executor(settings) as ex:
        await finish_run(ex, "old")
        cut = await clock_past(time.time())
        await clock_past(cut)
        await finish_run(ex, "young")
        ex.configure("noop", "open", Configuration())  # unfinished: never removed
        ex.add_data("noop", "open", Data(ChunkID="w"))
        await ex.commit()

        removed = await ex.purge_finished(now=cut + KEEP)

        assert removed == [("noop", "old")]
        assert ex.runs.find("noop", "old") is None
        assert not await journal_has(ex, "old")
        assert not (settings.data_dir / "noop" / "old").exists()
        for kept in ("young", "open"):
            assert ex.runs.find("noop", kept) is not None
            assert await journal_has(ex, kept)
        assert (settings.data_dir / "noop" / "young" / "left.txt").exists()
        # Far enough on, the young run goes too; the unfinished one never does.
        assert await ex.purge_finished(now=time.time() + 2 * KEEP) == [("noop", "young")]
        assert [r.run_id for r in ex.list_runs("noop")] == ["open"]


async def test_a_restart_purges_after_recovery(settings: Settings) -> None:
    settings = dataclasses.replace(settings, keep_finished=KEEP)
    async with Executor(settings) as ex:
        await finish_run(ex, "old")
    later = Executor(settings)
    later.clock = lambda: time.time() + 2 * KEEP
    async with later:
        await later.recovered()
        await wait_for(lambda: later.runs.find("noop", "old") is None, what="the purge")
        assert not await journal_has(later, "old")
        assert not (settings.data_dir / "noop" / "old").exists()


async def test_keep_finished_none_keeps_finished_runs_for_ever(settings: Settings) -> None:
    settings = dataclasses.replace(settings, keep_finished=None)
    async with Executor(settings) as ex:
        await finish_run(ex, "r")
        assert await ex.purge_finished(now=time.time() + 1e9) == []
        assert ex.runs.find("noop", "r") is not None
        assert await journal_has(ex, "r")


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("1.5") == 1.5
    assert parse_duration("30m") == 1800
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration(" 7D ") == 7 * 86400
    for bad in ("", "-1", "7w", "h", "1h30m", "nan"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
    assert parse_keep_finished("0") is None
    assert parse_keep_finished("7d") == KEEP_FINISHED_DEFAULT == Settings().keep_finished
    with pytest.raises(typer.BadParameter):
        parse_keep_finished("a week")
    with pytest.raises(ValueError, match="keep_finished"):
        Settings(keep_finished=0)
