"""Live control through the Python clients (sync and async) and the `wiz` verbs
(`pause`, `resume`, `set`, `limits`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from wiz_executor import (
    AsyncClient,
    Client,
    Conflict,
    Executor,
    InvalidInput,
    RunNotFound,
    Settings,
    WorkModel,
    create_app,
)
from wiz_executor.cli import app
from wiz_executor.pipelines import EmbeddedExecutor

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("wiz-data"), shutdown_grace=5)
    with EmbeddedExecutor(settings) as ex:
        yield ex.url


def wiz(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--url", url])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result


def test_the_sync_client_pauses_changes_and_resumes(url: str) -> None:
    with Client(url) as client:
        client.configure("noop", "sync", {"ExecutorConfig": {"MaxWorkers": 2}})
        assert client.pause("noop", "sync").Paused is True
        client.add_data("noop", "sync", [{"ChunkID": f"c{i}"} for i in range(5)])
        run = client.run("noop", "sync")
        assert run.Paused is True
        assert run.ChunkCounts is not None
        assert run.ChunkCounts.WAITING == 5
        changed = client.change_config(
            "noop", "sync", max_workers=3, chunk_timeout=12.5, work_model="lifetime"
        )
        ec = changed.Configuration.ExecutorConfig
        assert (ec.MaxWorkers, ec.ChunkTimeout, ec.WorkModel) == (3, 12.5, WorkModel.LIFETIME)
        assert client.config("noop", "sync").ExecutorConfig.MaxWorkers == 3
        resumed = client.resume("noop", "sync")
        assert resumed.Paused is None
        client.end_of_input("noop", "sync")
        final = client.wait("noop", "sync", timeout=30)
        assert final.CurrentState.value == "SUCCEEDED"
        assert final.ChunkCounts is not None
        assert final.ChunkCounts.SUCCEEDED == 5
        with pytest.raises(Conflict):
            client.pause("noop", "sync")
        with pytest.raises(RunNotFound):
            client.resume("noop", "nope")


def test_the_sync_client_reads_and_changes_the_executor_limits(url: str) -> None:
    with Client(url) as client:
        before = client.executor_limits()
        assert before.MaxWorkers == 64
        after = client.set_executor_limits(max_pending=5000)
        assert (after.MaxWorkers, after.MaxPending) == (64, 5000)
        restored = client.set_executor_limits(max_pending=before.MaxPending)
        assert restored == before


async def test_the_async_client_does_the_same(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, ephemeral=True)
    async with Executor(settings) as executor:
        transport = httpx.ASGITransport(app=create_app(executor=executor))
        async with AsyncClient("http://executor", transport=transport) as client:
            await client.configure("noop", "a", {})
            assert (await client.pause("noop", "a")).Paused is True
            changed = await client.change_config("noop", "a", max_workers=4)
            assert changed.Configuration.ExecutorConfig.MaxWorkers == 4
            assert (await client.resume("noop", "a")).Paused is None
            limits = await client.set_executor_limits(max_workers=3)
            assert limits.MaxWorkers == 3
            assert (await client.executor_limits()).MaxWorkers == 3
            assert executor.scheduler.limiter.total == 3
            with pytest.raises(InvalidInput):
                await client.change_config("noop", "a", chunk_timeout=10**9)


def test_the_wiz_verbs(url: str) -> None:
    ok(wiz(url, "configure", "noop", "cli", "--max-workers", "2"))
    paused = json.loads(ok(wiz(url, "pause", "noop", "cli", "--json")).stdout)
    assert paused["Paused"] is True
    assert "paused noop/cli" in ok(wiz(url, "pause", "noop", "cli")).stdout
    assert "paused" in ok(wiz(url, "run", "noop", "cli")).stdout
    out = ok(wiz(url, "set", "noop", "cli", "--max-workers", "5", "--work-model", "lifetime"))
    assert "max workers 5" in out.stdout
    assert "work model LIFETIME" in out.stdout
    clamped = wiz(url, "set", "noop", "cli", "--max-workers", "500")
    assert "MaxWorkers 500 is more than" in ok(clamped).output  # the warning, on stderr
    nothing = wiz(url, "set", "noop", "cli")
    assert nothing.exit_code == 2
    assert "at least one of" in nothing.output
    resumed = json.loads(ok(wiz(url, "resume", "noop", "cli", "--json")).stdout)
    assert "Paused" not in resumed
    assert "max workers 64" in ok(wiz(url, "limits")).stdout
    changed = json.loads(ok(wiz(url, "limits", "--max-pending", "777", "--json")).stdout)
    assert changed == {"MaxWorkers": 64, "MaxPending": 777}
    ok(wiz(url, "limits", "--max-pending", "100000"))
    missing = wiz(url, "pause", "noop", "nope")
    assert missing.exit_code == 1
    assert "nope" in missing.output
