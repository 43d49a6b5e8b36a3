"""The room a receiver reports (`X-Wiz-Free-Room`) is the executor's, not the run's: an
upstream sender keeps it per host, shared by every run it sends to there, so one
downstream run reaching its NumChunks (its own room 0) must not hold back deliveries to
the other runs of that executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, configure, run_path
from conftest import live_server, wait_run_done
from wiz_executor import Settings
from wiz_executor.downstream import Downstream

pytestmark = pytest.mark.anyio


def settings_for(tmp_path: Path, name: str) -> Settings:
    return Settings(data_dir=tmp_path / name, downstream_backoff=0.01)


def chunks(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"ChunkID": f"{prefix}{i}", "RawData": {"i": i}} for i in range(n)]


async def test_a_full_run_downstream_does_not_pace_the_other_runs_on_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paced: list[bool | None] = []
    take_room = Downstream._take_room

    async def recording(self: Downstream, *args: Any) -> bool | None:
        result = await take_room(self, *args)
        paced.append(result)
        return result

    monkeypatch.setattr(Downstream, "_take_room", recording)
    async with (
        live_server(settings_for(tmp_path, "a")) as (url_a, _),
        live_server(settings_for(tmp_path, "b")) as (url_b, _),
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        host = url_b.removeprefix("http://")
        await configure(b, "noop", "b1", num_chunks=1)
        await configure(b, "noop", "b2")
        for up, down in (("up1", "b1"), ("up2", "b2")):
            await configure(
                a,
                "noop",
                up,
                SendDownstream=True,
                DownstreamLocations=[{"Hostname": host, "ProcID": "noop", "RunID": down}],
            )
        assert (await add(a, "noop", "up1", chunks(1, "x"))).status_code == 200
        assert (await a.post(run_path("noop", "up1") + "/end-of-input")).status_code == 200
        assert (await wait_run_done(a, "noop", "up1"))["CurrentState"] == "SUCCEEDED"
        assert (await wait_run_done(b, "noop", "b1"))["CurrentState"] == "SUCCEEDED"
        # b1 took its NumChunks: it takes no more, but B has all its room for b2.
        assert (await add(a, "noop", "up2", chunks(5, "y"))).status_code == 200
        assert (await a.post(run_path("noop", "up2") + "/end-of-input")).status_code == 200
        assert (await wait_run_done(a, "noop", "up2"))["CurrentState"] == "SUCCEEDED"
        got = (await b.get(run_path("noop", "b2") + "/data")).json()["In"]
        assert len(got) == 5
        assert len(paced) == 6
        assert True not in paced  # no delivery waited for room B had all along
