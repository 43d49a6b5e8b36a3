from __future__ import annotations

import httpx

from conftest import live_server, wait_run_done
from wiz_executor import Settings


async def test_three_chunks_complete(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/processors/noop/runs/r/config", json={"ExpectedData": {"NumChunks": 3}}
    )
    assert resp.status_code == 200, resp.text
    for i in range(3):
        resp = await client.post(
            "/processors/noop/runs/r/data", json={"ChunkID": f"c{i}", "RawData": {"i": i}}
        )
        assert resp.status_code == 200, resp.text
    run = await wait_run_done(client, "noop", "r")
    assert run["CurrentState"] == "SUCCEEDED"
    data = (await client.get("/processors/noop/runs/r/data")).json()
    assert [c["RawData"] for c in data["Out"]] == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_live_server_answers(settings: Settings) -> None:
    async with live_server(settings) as (url, _), httpx.AsyncClient(base_url=url) as http:
        resp = await http.get("/processors")
        assert resp.status_code == 200
        assert resp.json() == [
            {"ProcID": "noop", "Name": "No Operation Processor", "Version": "0.1.0"}
        ]
