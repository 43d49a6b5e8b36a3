"""`wiz pipeline validate` and `wiz pipeline run --dry-run`: a pipeline checked and shown
without an executor; and the graph checks a hand-built `Pipeline` gets from the runner."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

from _wiz_process import PLUGINS, wiz_command
from wiz_executor.api import Data
from wiz_executor.cli import app
from wiz_executor.client import AsyncClient
from wiz_executor.errors import InvalidInput
from wiz_executor.pipelines import (
    Node,
    Pipeline,
    PipelineRunner,
    check_pipeline,
    find_cycle,
    graph_problems,
    plan_runs,
)

EXAMPLE = Path(__file__).parent.parent / "examples" / "hello-pipeline.yaml"
NO_URL: dict[str, str | None] = {"WIZ_URL": None, "WIZ_TOKEN": None}

BAD = """\
name: bad
data: [1, 2]
spec:
  sequential:
    - name: a
      processor: {id: nop, configuration: {SleepMs: 5}}
    - name: b
      processor: {id: noop, configuration: {SleepMs: -1}}
    - name: c
      processor: {id: noop, configuration: {Sleep: 1}}
    - name: a
      processor: noop
    - name: B
      processor: noop
"""


def wiz(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=NO_URL)


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- wiz pipeline validate ----------------------------------------------------------


def test_the_example_is_valid() -> None:
    result = wiz("pipeline", "validate", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert f"{EXAMPLE}: pipeline hello is valid: 3 nodes, 3 chunks of data" in result.stdout
    assert "prepare (noop) -> shout, whisper" in result.stdout
    assert result.stderr == ""


def test_every_problem_is_listed_with_its_place(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = wiz("pipeline", "validate", str(path))
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {path}: spec.sequential[3] (a) (line 11): two nodes are named 'a'; names "
        "must be unique",
        f"error: {path}: spec.sequential[4] (B) (line 13): nodes 'b' and 'B' would get the "
        "same run ID; make their names differ by more than case and punctuation",
        f"error: {path}: spec.sequential[0] (a).processor.id (line 6): unknown processor "
        "'nop' (did you mean 'noop'? this installation serves get, git, ls, noop, scrape)",
        f"error: {path}: spec.sequential[1] (b).processor.configuration (line 8): invalid "
        "configuration for processor 'noop': SleepMs: Input should be greater than or equal "
        "to 0",
    ]
    assert (
        f"warning: {path}: spec.sequential[2] (c).processor.configuration (line 10): unknown "
        "field 'Sleep' in the configuration of processor 'noop'" in result.stderr
    )
    assert result.stderr.rstrip().endswith(f"{path}: 4 problems")
    assert result.stdout == ""


def test_an_unknown_configuration_field_is_a_warning_unless_strict(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "spec: {sequential: [{name: a, processor: {id: noop, configuration: {Slep: 1}}}]}\n",
    )
    lenient = wiz("pipeline", "validate", str(path))
    assert lenient.exit_code == 0, lenient.output
    assert "unknown field 'Slep'" in lenient.stderr
    assert "is valid" in lenient.stdout
    strict = wiz("pipeline", "validate", str(path), "--strict")
    assert strict.exit_code == 2
    assert strict.stderr.startswith(f"error: {path}: spec.sequential[0] (a).processor")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "spec:\n  sequential:\n    - name: a\n      processor: {id: noop}\n      paralel: []\n",
            "spec.sequential[0] (a) (line 3): unknown key 'paralel'",
        ),
        ("spec: [unclosed\n", "not valid YAML"),
        ("name: x\n", "the pipeline has no `spec`"),
        ("spec: {sequential: [{name: a, processor: noop}]}\ndata: [{ChunkID: 1}]\n", "data[0]"),
    ],
)
def test_shape_errors_exit_2(tmp_path: Path, text: str, message: str) -> None:
    result = wiz("pipeline", "validate", str(write(tmp_path, text)))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = wiz("pipeline", "validate", str(tmp_path / "none.yaml"))
    assert result.exit_code == 2
    assert "cannot read pipeline file" in result.stderr


def test_validate_json(tmp_path: Path) -> None:
    good = json.loads(wiz("pipeline", "validate", str(EXAMPLE), "--json").stdout)
    assert good["Valid"] is True
    assert good["Pipeline"] == "hello"
    assert good["Problems"] == good["Warnings"] == []
    assert {n["Name"]: n["Downstream"] for n in good["Nodes"]} == {
        "prepare": ["shout", "whisper"],
        "shout": [],
        "whisper": [],
    }
    result = wiz("pipeline", "validate", str(write(tmp_path, BAD)), "--json")
    assert result.exit_code == 2
    bad = json.loads(result.stdout)
    assert bad["Valid"] is False
    assert len(bad["Problems"]) == 4
    assert len(bad["Warnings"]) == 1


def test_installed_plugins_count_as_known_processors(tmp_path: Path) -> None:
    """A plugin processor (the tests' `crash`, advertised by an entry point) is known
    once installed: here, a real `wiz` process with it on its path, and one without."""
    path = write(tmp_path, "spec: {sequential: [{name: a, processor: crash}]}\n")
    command = [*wiz_command(), "pipeline", "validate", str(path)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    without = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert without.returncode == 2
    assert "unknown processor 'crash'" in without.stderr
    env["PYTHONPATH"] = str(PLUGINS)
    found = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert found.returncode == 0, found.stderr
    assert "a (crash) -> (final)" in found.stdout


# -- the graph of a hand-built pipeline -----------------------------------------------


def pipeline_of(edges: list[tuple[str, str]], *names: str) -> Pipeline:
    nodes = {n: Node(n, "noop") for n in names}
    for up, down in edges:
        nodes[up].downstream.append(down)
        if down in nodes:
            nodes[down].upstream.append(up)
    return Pipeline("hand", [Data(ChunkID="c")], nodes)


def test_graph_problems() -> None:
    assert graph_problems(pipeline_of([("a", "b"), ("b", "c")], "a", "b", "c")) == []
    cyclic = pipeline_of([("a", "b"), ("b", "c"), ("c", "b")], "a", "b", "c")
    assert find_cycle(cyclic) == ["b", "c", "b"]
    assert graph_problems(cyclic) == ["the graph has a cycle: b -> c -> b"]
    assert find_cycle(pipeline_of([("a", "a")], "a")) == ["a", "a"]
    dangling = pipeline_of([("a", "ghost")], "a")
    assert graph_problems(dangling) == ["node 'a': downstream node 'ghost' does not exist"]
    one_sided = pipeline_of([], "a", "b")
    one_sided.nodes["b"].upstream.append("a")
    assert graph_problems(one_sided) == [
        "node 'b' lists 'a' as upstream, but 'a' does not list 'b' as downstream"
    ]
    clash = pipeline_of([], "Left side", "left-side")
    assert graph_problems(clash) == [
        "nodes 'Left side' and 'left-side' would get the same run ID; make their names "
        "differ by more than case and punctuation"
    ]


async def test_the_runner_refuses_a_cycle_before_any_request() -> None:
    """A cycle would make the runner wait for ever (each node's input is closed when
    its upstream finishes): it is refused before anything is sent."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500)

    cyclic = pipeline_of([("a", "b"), ("b", "c"), ("c", "b")], "a", "b", "c")
    async with AsyncClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(InvalidInput, match=r"^pipeline hand: the graph has a cycle"):
            await PipelineRunner(cyclic, client, "unused").run(5)
    assert requests == []


def test_the_runner_configures_what_plan_runs_says() -> None:
    plan = plan_runs(pipeline_of([("a", "b")], "a", "b"), "h:1", "x")
    assert [(p.node.name, p.run_id, p.chunks) for p in plan] == [
        ("a", "hand-a-x", 1),
        ("b", "hand-b-x", 0),
    ]
    locations = plan[0].configuration.ExecutorConfig.DownstreamLocations
    assert [(loc.Hostname, loc.RunID) for loc in locations or []] == [("h:1", "hand-b-x")]


# -- wiz pipeline run --dry-run -------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A port that accepts connections (so a request would succeed in connecting),
    to prove that none came."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", sock


def nobody_connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def dry_json(*args: str) -> dict[str, Any]:
    result = wiz("pipeline", "run", "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_dry_run_without_an_executor() -> None:
    plan = dry_json(str(EXAMPLE))
    assert plan["DryRun"] is True
    assert plan["Embedded"] is True
    assert plan["URL"] is None
    runs = {r["Node"]: r for r in plan["Runs"]}
    assert list(runs) == ["prepare", "shout", "whisper"]
    prepare = runs["prepare"]
    assert prepare["RunID"].startswith("hello-prepare-")
    assert prepare["Chunks"] == 3
    config = prepare["Configuration"]
    assert config["ExpectedData"] == {"NumChunks": 3}
    assert config["Processor"] == {"SleepMs": 20}
    assert config["ExecutorConfig"]["SendDownstream"] is True
    assert [
        (loc["Hostname"], loc["ProcID"], loc["RunID"])
        for loc in config["ExecutorConfig"]["DownstreamLocations"]
    ] == [
        ("127.0.0.1:<port>", "noop", runs["shout"]["RunID"]),
        ("127.0.0.1:<port>", "noop", runs["whisper"]["RunID"]),
    ]
    whisper = runs["whisper"]["Configuration"]
    assert whisper["ExpectedData"] == {"NumChunks": 0}
    assert whisper["ExecutorConfig"]["MaxWorkers"] == 1
    assert whisper["ExecutorConfig"]["SendDownstream"] is False
    assert runs["whisper"]["Upstream"] == ["prepare"]


def test_dry_run_with_an_executor_sends_it_nothing(
    listener: tuple[str, socket.socket],
) -> None:
    url, sock = listener
    plan = dry_json(str(EXAMPLE), "--url", url)
    assert plan["URL"] == url
    assert plan["Embedded"] is False
    host = url.removeprefix("http://")
    locations = plan["Runs"][0]["Configuration"]["ExecutorConfig"]["DownstreamLocations"]
    assert {loc["Hostname"] for loc in locations} == {host}
    assert (
        dry_json(str(EXAMPLE), "--url", url, "--hostname", "wiz-a:8080")["Runs"][0][
            "Configuration"
        ]["ExecutorConfig"]["DownstreamLocations"][0]["Hostname"]
        == "wiz-a:8080"
    )
    human = wiz("pipeline", "run", "--dry-run", str(EXAMPLE), "--url", url)
    assert human.exit_code == 0, human.output
    assert f"dry run: pipeline hello would create 3 runs on {url}" in human.stdout
    assert "gets the pipeline's 3 chunks, then end of input" in human.stdout
    assert "gets the outputs of prepare; end of input once it has finished" in human.stdout
    assert 'Processor {"SleepMs": 50}' in human.stdout
    assert nobody_connected(sock)


def test_dry_run_checks_the_file_first(tmp_path: Path, listener: tuple[str, socket.socket]) -> None:
    url, sock = listener
    bad = wiz("pipeline", "run", "--dry-run", str(write(tmp_path, BAD)))
    assert bad.exit_code == 2
    assert bad.stdout == ""
    assert "unknown processor 'nop'" in bad.stderr
    # A processor this installation lacks may be a plugin of the executor at --url: a
    # warning there; on the embedded executor (no --url) it could not run.
    plugin = write(
        tmp_path, yaml.safe_dump({"spec": {"sequential": [{"name": "a", "processor": "crash"}]}})
    )
    embedded = wiz("pipeline", "run", "--dry-run", str(plugin))
    assert embedded.exit_code == 2
    assert "unknown processor 'crash'" in embedded.stderr
    remote = wiz("pipeline", "run", "--dry-run", str(plugin), "--url", url)
    assert remote.exit_code == 0, remote.output
    assert remote.stderr.startswith("warning: ")
    assert "unknown processor 'crash'" in remote.stderr
    assert nobody_connected(sock)


def test_check_pipeline_as_a_library(tmp_path: Path) -> None:
    report = check_pipeline(EXAMPLE)
    assert report.ok
    assert report.pipeline is not None
    assert report.pipeline.name == "hello"
    bad = check_pipeline(write(tmp_path, BAD))
    assert not bad.ok
    assert bad.pipeline is None
