"""A cancel takes the run's queued chunks back from its work model: LIFETIME sets up
no processor for a chunk the cancel failed (it used to set one up per cancelled chunk,
then skip it), and chunks whose journal commit was still pending when the cancel came
are not handed to the work model at all."""

from __future__ import annotations

import pytest

from _gates import Gate, add, asgi_client, configure, gate_processor, run_path
from conftest import wait_for, wait_run_done
from test_cancel import chunks
from wiz_executor import Executor
from wiz_executor.api import Data
from wiz_executor.wire import chunk_from_data

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("work_model", ["LIFETIME", "POOL"])
async def test_cancelled_chunks_set_up_no_processor(executor: Executor, work_model: str) -> None:
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r", 0, MaxWorkers=1, WorkModel=work_model)
        assert (await add(client, "gate", "r", chunks(20))).status_code == 200
        await wait_for(lambda: gate.active == 1, what="the first chunk to run")
        resp = await client.post(run_path("gate", "r") + "/cancel")
        assert resp.json()["Cancelled"] == 19
        load = executor.scheduler.load(executor.get_run("gate", "r"))
        assert load is not None
        assert load.queued == 0  # none left behind in the work model's queue
        gate.release_all()
        assert (await wait_run_done(client, "gate", "r"))["CurrentState"] == "ERRORED"
        await executor.scheduler.released(executor.get_run("gate", "r"))
        assert gate.setups == 1
        assert gate.entered == 1


@pytest.mark.parametrize("work_model", ["LIFETIME", "POOL"])
async def test_a_cancel_before_the_batch_is_committed_submits_none(
    executor: Executor, work_model: str
) -> None:
    gate = Gate()
    gate.release_all()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r", 0, MaxWorkers=1, WorkModel=work_model)
        batch = [chunk_from_data(Data.model_validate(c)) for c in chunks(5)]
        result = executor.add_chunks("gate", "r", batch)
        assert result.committed is not None  # (the durable journal: submitted on commit)
        _, cancelled = executor.cancel("gate", "r")
        assert cancelled == 5
        await executor.committed(result.committed)
        assert (await wait_run_done(client, "gate", "r"))["CurrentState"] == "ERRORED"
        await executor.scheduler.released(executor.get_run("gate", "r"))
        assert (gate.setups, gate.entered) == (0, 0)
