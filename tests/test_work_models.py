"""One list of work models: every wire name is served by a registered model, offered by
the CLI's `--work-model` options and documented in the OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from wiz_executor import Executor, WorkModel
from wiz_executor.cli import app
from wiz_executor.scheduling import WORK_MODELS, WorkModelBase

NAMES = {model.value for model in WorkModel}


def test_every_wire_name_has_a_registered_model() -> None:
    assert set(WORK_MODELS) == set(WorkModel)
    for name, cls in WORK_MODELS.items():
        assert issubclass(cls, WorkModelBase)
        assert cls.name is name


async def test_the_scheduler_serves_every_registered_model(executor: Executor) -> None:
    models = executor.scheduler.models
    assert set(models) == set(WORK_MODELS)
    assert all(type(models[name]) is cls for name, cls in WORK_MODELS.items())


def _choices(command: str) -> set[str]:
    """The choices `wiz COMMAND --help` shows for --work-model (`<lifetime|pool>`)."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    match = re.search(r"--work-model\s+<([a-z|]+)>", result.output)
    assert match is not None, result.output
    return {choice.upper() for choice in match.group(1).split("|")}


@pytest.mark.parametrize("command", ["executor", "configure"])
def test_the_cli_offers_every_work_model(command: str) -> None:
    assert _choices(command) == NAMES


@pytest.mark.anyio
async def test_the_openapi_document_lists_every_work_model(client: httpx.AsyncClient) -> None:
    document: dict[str, Any] = (await client.get("/openapi.json")).json()
    schema = document["components"]["schemas"]["WorkModel"]
    assert set(schema["enum"]) == NAMES
