"""`wiz watch` follows a whole pipeline: the run, every run reachable downstream of it
(on the same executor or another), or the runs of a pipeline launch; runs it cannot
follow are shown as such. Real executors on 127.0.0.1, driven through typer's CliRunner.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from _wiz_process import free_port
from wiz_executor import Settings
from wiz_executor.api import Run
from wiz_executor.cli import _follow_runs, app
from wiz_executor.cli._follow_runs import RunFollower
from wiz_executor.cli._progress import NOT_KNOWN
from wiz_executor.cli._watch import _Display
from wiz_executor.client import Client
from wiz_executor.pipelines import EmbeddedExecutor

EXAMPLE = Path(__file__).parent.parent / "examples" / "hello-pipeline.yaml"
ENV: dict[str, str | None] = {"WIZ_URL": None, "WIZ_TOKEN": None, "COLUMNS": "200"}
TOKEN = "s3cret-token"


def executor(path: Path, token: str | None = None) -> EmbeddedExecutor:
    return EmbeddedExecutor(Settings(data_dir=path, shutdown_grace=5, token=token))


@pytest.fixture(scope="module")
def a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with executor(tmp_path_factory.mktemp("a")) as ex:
        yield ex.url


@pytest.fixture(scope="module")
def b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with executor(tmp_path_factory.mktemp("b")) as ex:
        yield ex.url


def host(url: str) -> str:
    return url.removeprefix("http://")


def configure(url: str, run: str, chunks: int, *to: tuple[str, str], token: str = "") -> None:
    """A noop run expecting `chunks` chunks, sending downstream to `to` (host, run)."""
    locations = [{"Hostname": h, "ProcID": "noop", "RunID": r} for h, r in to]
    config: dict[str, Any] = {"ExpectedData": {"NumChunks": chunks}}
    if locations:
        config["ExecutorConfig"] = {"SendDownstream": True, "DownstreamLocations": locations}
    with Client(url, token=token) as client:
        client.configure("noop", run, config)


def send(url: str, run: str, chunks: list[dict[str, Any]], token: str = "") -> None:
    with Client(url, token=token) as client:
        client.add_data("noop", run, chunks)


def close(url: str, run: str, token: str = "") -> None:
    with Client(url, token=token) as client:
        client.end_of_input("noop", run)


def wiz(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=ENV)


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def finals(result: Result) -> dict[str, dict[str, Any]]:
    return {line["RunID"]: line for line in json_lines(result) if line["event"] == "final"}


def test_watch_follows_the_runs_downstream_across_executors(a: str, b: str) -> None:
    """a/src -> b/mid -> a/sink: one watch of a/src follows all three to their end."""
    configure(a, "x-sink", 3)
    configure(b, "x-mid", 3, (host(a), "x-sink"))
    configure(a, "x-src", 3, (host(b), "x-mid"))
    send(a, "x-src", [{"ChunkID": f"c{i}", "RawData": i} for i in range(3)])
    result = wiz("watch", "noop", "x-src", "--url", a, "--timeout", "60", "--json")
    assert result.exit_code == 0, result.output
    ended = finals(result)
    # (A final line is printed as its run ends: in whatever order they end.)
    assert sorted(ended) == ["x-mid", "x-sink", "x-src"]
    assert {r["CurrentState"] for r in ended.values()} == {"SUCCEEDED"}
    assert ended["x-mid"]["URL"] == b  # on another executor: said so
    assert "URL" not in ended["x-src"]
    assert "URL" not in ended["x-sink"]  # back on --url's executor
    events = [line for line in json_lines(result) if line["event"] != "final"]
    assert {e["RunID"] for e in events} <= {"x-src", "x-mid", "x-sink"}

    human = wiz("watch", "noop", "x-src", "--url", a, "--timeout", "60")
    assert human.exit_code == 0, human.output
    assert human.stdout.splitlines() == [
        "noop/x-src SUCCEEDED: 3 succeeded, 0 failed",
        f"{b} noop/x-mid SUCCEEDED: 3 succeeded, 0 failed",
        "noop/x-sink SUCCEEDED: 3 succeeded, 0 failed",
    ]
    alone = wiz("watch", "noop", "x-src", "--url", a, "--no-downstream")
    assert alone.exit_code == 0, alone.output
    assert alone.stdout.splitlines() == ["noop/x-src SUCCEEDED: 3 succeeded, 0 failed"]


def test_an_unreachable_location_is_shown_not_a_crash(a: str) -> None:
    """A run that names a downstream no executor answers at: the watch shows it and the
    run it could follow, and exits 1 (not everything could be followed)."""
    dead = f"127.0.0.1:{free_port()}"
    configure(a, "u-lonely", 0, (dead, "far"))
    close(a, "u-lonely")  # no chunks, so nothing is delivered: it ends SUCCEEDED
    result = wiz("watch", "noop", "u-lonely", "--url", a, "--timeout", "60")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "noop/u-lonely SUCCEEDED: 0 succeeded, 0 failed"
    assert lines[1].startswith(
        f"http://{dead} noop/far not followed: cannot reach http://{dead}: ConnectError"
    )
    assert "Traceback" not in result.output
    as_json = wiz("watch", "noop", "u-lonely", "--url", a, "--json")
    assert as_json.exit_code == 1
    missing = [line for line in json_lines(as_json) if line["event"] == "not-followed"]
    assert missing == [
        {
            "event": "not-followed",
            "ProcID": "noop",
            "RunID": "far",
            "URL": f"http://{dead}",
            "Error": missing[0]["Error"],
        }
    ]
    assert missing[0]["Error"].startswith(f"cannot reach http://{dead}")


def test_a_missing_downstream_run_and_an_errored_run(a: str) -> None:
    """The delivery to a run that does not exist fails, so the sender ends ERRORED
    (exit 3); the missing run is shown with the executor's answer."""
    configure(a, "m-src", 1, (host(a), "m-nowhere"))
    send(a, "m-src", [{"ChunkID": "c", "RawData": 1}])
    result = wiz("watch", "noop", "m-src", "--url", a, "--timeout", "60")
    assert result.exit_code == 3, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "noop/m-src ERRORED: 1 succeeded, 0 failed"
    assert "c-out: not delivered downstream:" in lines[1]
    assert lines[-1].startswith(
        "noop/m-nowhere not followed: no run 'm-nowhere' of processor 'noop'"
    )


def test_the_token_goes_to_the_url_executor_only(tmp_path: Path) -> None:
    """Both executors take the same token, but only --url's is given it: the other
    answers 401 (so the CLI did not send it there), until --downstream-token names it."""
    with executor(tmp_path / "p", TOKEN) as ep, executor(tmp_path / "q", TOKEN) as eq:
        p, q = ep.url, eq.url
        configure(q, "t-far", 0, token=TOKEN)
        close(q, "t-far", token=TOKEN)
        configure(p, "t-near", 0, (host(q), "t-far"), token=TOKEN)
        close(p, "t-near", token=TOKEN)
        args = ["watch", "noop", "t-near", "--url", p, "--token", TOKEN, "--timeout", "60"]
        refused = wiz(*args)
        assert refused.exit_code == 1, refused.output
        far = refused.stdout.splitlines()[1]
        assert far.startswith(f"{q} noop/t-far not followed: ")
        assert f"--downstream-token {host(q)}=TOKEN" in far
        allowed = wiz(*args, "--downstream-token", f"{host(q)}={TOKEN}")
        assert allowed.exit_code == 0, allowed.output
        assert allowed.stdout.splitlines()[1] == f"{q} noop/t-far SUCCEEDED: 0 succeeded, 0 failed"
        bad = wiz(*args, "--downstream-token", "no-equals-sign")
        assert bad.exit_code == 2
        assert "expected HOST:PORT=TOKEN" in bad.stderr


def test_watch_a_pipeline_launch(b: str, tmp_path: Path) -> None:
    """--pipeline FILE: the runs of a launch of that pipeline, found by their names."""
    assert wiz("watch", "--pipeline", str(EXAMPLE), "--url", b).exit_code == 1  # no launch yet
    first = wiz("pipeline", "run", str(EXAMPLE), "--url", b, "--json")
    assert first.exit_code == 0, first.output
    runs = {n["Name"]: n["RunID"] for n in json.loads(first.stdout)["Nodes"]}
    result = wiz("watch", "--pipeline", str(EXAMPLE), "--url", b, "--json", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert list(finals(result)) == [runs["prepare"], runs["shout"], runs["whisper"]]

    second = wiz("pipeline", "run", str(EXAMPLE), "--url", b, "--json")
    assert second.exit_code == 0, second.output
    two = wiz("watch", "--pipeline", str(EXAMPLE), "--url", b)
    assert two.exit_code == 1
    assert "2 launches of pipeline hello" in two.stderr
    assert "choose one with --launch SUFFIX" in two.stderr
    suffix = runs["prepare"].rsplit("-", 1)[1]
    chosen = wiz("watch", "--pipeline", str(EXAMPLE), "--url", b, "--launch", suffix)
    assert chosen.exit_code == 0, chosen.output
    assert f"noop/{runs['whisper']} SUCCEEDED: 3 succeeded, 0 failed" in chosen.stdout
    assert wiz("watch", "--pipeline", str(EXAMPLE), "--url", b, "--launch", "nope").exit_code == 1


def test_usage(a: str, tmp_path: Path) -> None:
    assert wiz("watch", "--url", a).exit_code == 2
    assert wiz("watch", "noop", "--url", a).exit_code == 2
    assert wiz("watch", "noop", "r", "--pipeline", str(EXAMPLE), "--url", a).exit_code == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\n")
    result = wiz("watch", "--pipeline", str(broken), "--url", a)
    assert result.exit_code == 2
    assert "has no `spec`" in result.stderr
    gone = wiz("watch", "noop", "never-made", "--url", a)  # the run asked for: an error
    assert gone.exit_code == 1
    assert "error: no run 'never-made' of processor 'noop'" in gone.stderr


# -- throughput and ETA while watching ------------------------------------------------


def run_json(state: str, **extra: Any) -> dict[str, Any]:
    return {
        "RunID": "r",
        "Configuration": {"ExpectedData": {"NumChunks": 10}},
        "CurrentState": state,
        "ChunkCounts": {"WAITING": 5, "RUNNING": 0, "SUCCEEDED": 5, "FAILED": 0},
        **extra,
    }


async def test_the_rates_are_read_again_while_the_stream_is_open() -> None:
    """The events carry no rates, so an executor that sends them in its Run is read
    again while the run goes on: the stream here ends only once that happened."""
    reads: list[str] = []
    refreshed = anyio.Event()
    seen: list[float | None] = []
    follower: RunFollower

    async def stream() -> AsyncIterator[bytes]:
        await refreshed.wait()
        seen.append(next(iter(follower.followed.values())).tracker.rate)
        done = {"ProcID": "noop", **run_json("SUCCEEDED")}
        yield f"event: done\ndata: {json.dumps(done)}\n\n".encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=stream()
            )
        reads.append(request.url.path)
        if refreshed.is_set():
            return httpx.Response(200, json=run_json("SUCCEEDED", ChunksPerSecond=2.0))
        if len(reads) == 1:
            return httpx.Response(200, json=run_json("RUNNING", ChunksPerSecond=1.0, EtaSeconds=99))
        refreshed.set()
        return httpx.Response(200, json=run_json("RUNNING", ChunksPerSecond=7.0, EtaSeconds=9))

    transport = httpx.MockTransport(handler)
    patched = functools.partial(_follow_runs.AsyncClient, transport=transport)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_follow_runs, "AsyncClient", patched)
        follower = RunFollower("http://127.0.0.1:9", "", True, refresh=0.01)
        with anyio.fail_after(30):
            (followed,) = await follower.run([("noop", "r")])
    assert seen == [7.0]  # the refresh's rate, before the stream ended
    assert followed.final is not None
    assert followed.final.CurrentState.value == "SUCCEEDED"
    assert followed.tracker.rate == 2.0  # the final snapshot's


def test_the_display_shows_rates_and_eta_or_a_dash() -> None:
    follower = RunFollower("http://127.0.0.1:9", "", True)
    display = _Display(follower)
    measured = Run.model_validate(run_json("RUNNING", ChunksPerSecond=12.5, EtaSeconds=65))
    old = Run.model_validate(run_json("RUNNING"))
    for run_id, snapshot in (("fast", measured), ("old", old)):
        tracker = _follow_runs.RunTracker("noop", run_id)
        tracker.update(snapshot)
        key = ("127.0.0.1:9", "noop", run_id)
        follower.followed[key] = _follow_runs.Followed(
            "http://127.0.0.1:9", "noop", run_id, tracker
        )
    console = Console(width=160, record=True)
    console.print(display.render())
    text = console.export_text()
    fast = next(line for line in text.splitlines() if "noop/fast" in line).split()
    old_line = next(line for line in text.splitlines() if "noop/old" in line).split()
    assert fast[-3:] == ["12.5/s", "1m", "05s"]
    assert old_line[-2:] == [NOT_KNOWN, NOT_KNOWN]
