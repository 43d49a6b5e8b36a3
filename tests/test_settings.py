"""Settings: defaults that hold, and paths made absolute once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from _gates import asgi_client, configure, run_path
from conftest import wait_run_done
from wiz_executor import (
    Context,
    Executor,
    Input,
    Output,
    Processor,
    ProcessorConfig,
    Registry,
    Settings,
)
from wiz_executor.settings import host_key

pytestmark = pytest.mark.anyio


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("wiz-data"), allowed_roots=(Path("shared"),))
    assert settings.data_dir == tmp_path / "wiz-data"
    assert settings.allowed_roots == (tmp_path / "shared",)


@pytest.mark.parametrize("bad", ["max_workers", "default_run_workers", "max_pending"])
def test_limits_below_one_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        Settings(**{bad: 0})


class Scratch(Processor[ProcessorConfig]):
    id = "scratch"
    name = "answers with its scratch folder"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        return Output.file(context.scratch_dir)


async def test_file_outputs_are_absolute_with_a_relative_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Location is handed to other runs and processes: it must not depend on the
    executor's working directory (the default data dir, ./wiz-data, is relative)."""
    monkeypatch.chdir(tmp_path)
    async with (
        Executor(Settings(data_dir=Path("wiz-data")), Registry([Scratch])) as executor,
        asgi_client(executor) as client,
    ):
        await configure(client, "scratch", "r", num_chunks=1)
        await client.post(f"{run_path('scratch', 'r')}/data", json={"ChunkID": "c"})
        assert (await wait_run_done(client, "scratch", "r"))["CurrentState"] == "SUCCEEDED"
        out = (await client.get(f"{run_path('scratch', 'r')}/data/output/c-out")).json()
        location = Path(out["FilesystemReference"]["Location"])
        assert location.is_absolute()
        assert location == tmp_path / "wiz-data" / "scratch" / "r" / "c"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_body_bytes", 0),
        ("downstream_attempts", 0),
        ("chunk_timeout", -1.0),
        ("chunk_timeout", float("nan")),
        ("shutdown_grace", -1.0),
        ("downstream_backoff", -0.5),
        ("delivery_timeout", 0),
        ("delivery_timeout", float("nan")),
        ("delivery_backoff_cap", -1.0),
    ],
)
def test_settings_that_would_fail_everything_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hostname", "key"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("H.Example:8080/", "h.example:8080"),
        ("h.example", "h.example:80"),
        ("http://h.example", "h.example:80"),
        ("https://h.example", "h.example:443"),
        ("https://h.example:8443/base", "h.example:8443"),
        ("[::1]:9", "[::1]:9"),
    ],
)
def test_a_downstream_host_is_keyed_by_its_host_and_port(hostname: str, key: str) -> None:
    """Tokens and the per-host delivery queues share one key, the default port made
    explicit: `--downstream-token h.example:443=T` is the token of `https://h.example`."""
    assert host_key(hostname) == key
