"""Pipelines: the YAML spec, the runner's wiring and input closing, and `wiz pipeline run`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import live_server
from wiz_executor import Settings, State
from wiz_executor.api import EndOfInputResult, Run
from wiz_executor.cli import app
from wiz_executor.client import AsyncClient, Client, Event
from wiz_executor.errors import InvalidInput, ProcessorNotFound
from wiz_executor.pipelines import (
    EmbeddedExecutor,
    NodeRun,
    PipelineRunner,
    load_pipeline,
    parse_pipeline,
)

EXAMPLE = Path(__file__).parent.parent / "examples" / "hello-pipeline.yaml"
NO_URL: dict[str, str | None] = {"WIZ_URL": None}  # so the embedded executor is used


def edges(document: dict[str, Any]) -> set[tuple[str, str]]:
    pipeline = parse_pipeline(document)
    return {(up, n.name) for n in pipeline.nodes.values() for up in n.upstream}


def node(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "processor": {"id": "noop"}, **extra}


# -- the spec -------------------------------------------------------------------------


def test_sequential_parallel_and_join() -> None:
    spec = {
        "sequential": [
            node("a"),
            {"parallel": [node("b"), {"sequential": [node("c1"), node("c2")]}]},
            node("d"),
        ]
    }
    assert edges({"spec": spec}) == {
        ("a", "b"),
        ("a", "c1"),
        ("c1", "c2"),
        ("b", "d"),
        ("c2", "d"),
    }
    pipeline = parse_pipeline({"name": "p", "spec": spec, "data": [1, {"ChunkID": "k"}]})
    assert [n.name for n in pipeline.first] == ["a"]
    assert [n.name for n in pipeline.final] == ["d"]
    assert [n.name for n in pipeline.joins()] == ["d"]
    assert [(c.ChunkID, c.RawData) for c in pipeline.data] == [("chunk-0", 1), ("k", None)]


def test_the_original_shape_children_and_top_level_parallel() -> None:
    # As in the original Wiz: a node's `children` hang off that node, and top-level
    # `parallel` nodes hang off the pipeline's input, like the first sequential node.
    spec = {
        "sequential": [
            node("dl", children={"sequential": [node("x"), node("y")], "parallel": [node("z")]}),
            node("after"),
        ],
        "parallel": [node("side")],
    }
    assert edges({"spec": spec}) == {
        ("dl", "x"),
        ("x", "y"),
        ("dl", "z"),
        ("dl", "after"),
    }
    pipeline = parse_pipeline({"spec": spec, "data": {"url": "u"}})
    assert {n.name for n in pipeline.first} == {"dl", "side"}
    assert [c.RawData for c in pipeline.data] == [{"url": "u"}]  # one value: one chunk


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"spec": {"sequential": [node("a"), node("a")]}}, "two nodes are named 'a'"),
        (
            {"spec": {"parallel": [node("Left side"), node("left-side")]}},
            "nodes 'Left side' and 'left-side' would get the same run ID",
        ),
        (
            {"spec": {"sequential": [{"name": "a"}]}},
            r"^spec\.sequential\[0\] \(a\): a node needs a `processor`$",
        ),
        ({"spec": {"sequential": [{"name": "a", "processor": {}}]}}, "needs an `id`"),
        ({"spec": {"sequential": [node("a", executor={"Bogus": 1})]}}, "`executor` may set"),
        ({"spec": {"sequential": [node("a", executor={"MaxWorkers": -1})]}}, "invalid"),
        (
            {"spec": {"serial": []}},
            r"^spec: unknown key 'serial' \(allowed: `sequential`, `parallel`\)",
        ),
        ({"spec": {}}, "spec: expected a mapping with `sequential` or `parallel`"),
        ({"spec": {"sequential": []}}, "has no nodes"),
        ({"data": []}, "has no `spec`"),
        ({"spec": {"sequential": [node("a")]}, "data": [{"ChunkID": "x"}] * 2}, "same ChunkID"),
        ([1, 2], "is a mapping"),
    ],
)
def test_bad_specs_say_what_and_where(document: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_pipeline(document)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"spec": {"sequential": [node("a")]}, "nmae": "typo"},
            r"^the pipeline: unknown key 'nmae' \(allowed: `name`, `description`, `data`, `spec`",
        ),
        (
            {"spec": {"sequential": [node("a"), {"paralel": [node("b")]}]}},
            r"^spec\.sequential\[1\]: unknown key 'paralel' \(allowed: `sequential`, `parallel`\)$",
        ),
        (
            {"spec": {"parallel": [node("a", childs={})]}},
            r"^spec\.parallel\[0\] \(a\): unknown key 'childs' \(allowed: `name`, `processor`, ",
        ),
        (
            {"spec": {"sequential": [{"name": "a", "processor": {"id": "noop", "config": {}}}]}},
            r"^spec\.sequential\[0\] \(a\)\.processor: unknown key 'config' \(allowed: ",
        ),
        (
            {
                "spec": {
                    "sequential": [
                        node(
                            "a",
                            children={"sequential": [node("c", executor={"WorkModel": "FAST"})]},
                        )
                    ]
                }
            },
            r"^spec\.sequential\[0\] \(a\)\.children\.sequential\[0\] \(c\)\.executor: "
            "invalid WorkModel",
        ),
        (
            {"spec": {"sequential": [3]}},
            r"^spec\.sequential\[0\]: expected a node \(with `processor`\) or a block .*, got 3$",
        ),
    ],
)
def test_unknown_keys_and_bad_values_are_named_with_their_path(document: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_pipeline(document)


def test_errors_in_a_file_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\n"
        "spec:\n"
        "  sequential:\n"
        "    - name: prepare\n"
        "      processor: noop\n"
        "    - parallel:\n"
        "        - name: left\n"
        "          processor: {id: noop, confguration: {}}\n"
        "        - name: right\n"
        "          processor: noop\n"
        "          executor:\n"
        "            MaxWorkers: -2\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as error:
        load_pipeline(path)
    assert error.value.message == (
        f"{path}: spec.sequential[1].parallel[0] (left).processor (line 8): unknown key "
        "'confguration' (allowed: `id`, `name`, `version`, `type`, `configuration`); "
        "spec.sequential[1].parallel[1] (right).executor (line 12): invalid MaxWorkers: "
        "Input should be greater than or equal to 0"
    )


def test_the_example_loads() -> None:
    pipeline = load_pipeline(EXAMPLE)
    assert pipeline.name == "hello"
    assert [n.name for n in pipeline.first] == ["prepare"]
    assert [n.name for n in pipeline.final] == ["shout", "whisper"]
    assert pipeline.nodes["whisper"].executor == {"MaxWorkers": 1}


# -- the runner -----------------------------------------------------------------------


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[str]:
    async with live_server(settings) as (url, _):
        yield url


class RecordingClient(AsyncClient):
    """Notes, at each end-of-input call, the states of every run of the pipeline."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.closed_when: dict[str, dict[str, State]] = {}
        self.run_ids: list[str] = []

    async def end_of_input(self, proc_id: str, run_id: str) -> EndOfInputResult:
        states = {r: (await self.run("noop", r)).CurrentState for r in self.run_ids}
        self.closed_when[run_id] = states
        return await super().end_of_input(proc_id, run_id)


async def test_a_join_is_closed_only_after_its_slowest_branch(server: str) -> None:
    pipeline = parse_pipeline(
        {
            "name": "join",
            "data": [1, 2, 3],
            "spec": {
                "sequential": [
                    node("a"),
                    {
                        "parallel": [
                            node("fast"),
                            {
                                "name": "slow",
                                "processor": {"id": "noop", "configuration": {"SleepMs": 200}},
                                "executor": {"MaxWorkers": 1},
                            },
                        ]
                    },
                    node("join"),
                ]
            },
        }
    )
    updates: list[tuple[str, Run | Event]] = []

    def on_update(nr: NodeRun, item: Run | Event) -> None:
        updates.append((nr.node.name, item))

    async with RecordingClient(server) as client:
        runner = PipelineRunner(
            pipeline, client, server.removeprefix("http://"), on_update=on_update
        )
        client.run_ids = [nr.run_id for nr in runner.runs.values()]
        result = await runner.run(timeout=30)

        ids = {name: nr.run_id for name, nr in runner.runs.items()}
        # The join was closed when both branches had finished, not before.
        at_close = client.closed_when[ids["join"]]
        assert at_close[ids["fast"]] is State.SUCCEEDED
        assert at_close[ids["slow"]] is State.SUCCEEDED
        assert client.closed_when[ids["fast"]][ids["a"]] is State.SUCCEEDED

        assert result.succeeded
        join_in = {c.ChunkID for c in (await client.data("noop", ids["join"])).In}
        for branch in ("fast", "slow"):
            outs = {c.ChunkID for c in (await client.data("noop", ids[branch])).Out}
            assert outs <= join_in
        # Each branch's outputs reach the join under their own IDs: 3 chunks x 2 branches.
        assert len(join_in) == 6
        config = await client.config("noop", ids["a"])
        assert config.ExpectedData.NumChunks == 3
        assert {(d.ProcID, d.RunID) for d in config.ExecutorConfig.DownstreamLocations or []} == {
            ("noop", ids["fast"]),
            ("noop", ids["slow"]),
        }
        assert (await client.config("noop", ids["join"])).ExpectedData.NumChunks == 0
    assert {c.RawData for c in result.outputs["join"]} == {1, 2, 3}
    assert {name for name, _ in updates} == {"a", "fast", "slow", "join"}


async def test_an_errored_node_still_ends_the_pipeline(server: str) -> None:
    pipeline = parse_pipeline(
        {
            "name": "fails",
            "data": [{"Fail": True}, 2],
            "spec": {"sequential": [node("first"), node("second")]},
        }
    )
    async with AsyncClient(server) as client:
        result = await PipelineRunner(pipeline, client, server.removeprefix("http://")).run(30)
    assert not result.succeeded
    assert result.runs["first"].state is State.ERRORED
    assert result.runs["second"].state is State.SUCCEEDED  # got the one good output
    assert [c.RawData for c in result.outputs["second"]] == [2]


async def test_a_rejected_configuration_names_its_node(server: str) -> None:
    bad = {"name": "b", "processor": {"id": "noop", "configuration": {"SleepMs": -1}}}
    pipeline = parse_pipeline({"name": "p", "spec": {"sequential": [node("a"), bad]}})
    async with AsyncClient(server) as client:
        with pytest.raises(InvalidInput, match=r"^node 'b' \(noop/p-b-[0-9a-f]{6}\): .*SleepMs"):
            await PipelineRunner(pipeline, client, "unused").run(30)


async def test_an_unknown_processor_creates_nothing(server: str) -> None:
    pipeline = parse_pipeline(
        {"spec": {"sequential": [node("a"), {"name": "b", "processor": {"id": "nope"}}]}}
    )
    async with AsyncClient(server) as client:
        with pytest.raises(ProcessorNotFound):
            await PipelineRunner(pipeline, client, "unused").run(30)
        assert await client.runs("noop") == []


# -- the command ----------------------------------------------------------------------


def test_wiz_pipeline_run_the_example_on_an_embedded_executor() -> None:
    result = CliRunner().invoke(app, ["pipeline", "run", str(EXAMPLE), "--json"], env=NO_URL)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["State"] == "SUCCEEDED"
    assert report["Embedded"] is True
    assert report["URL"].startswith("http://127.0.0.1:")
    nodes = {n["Name"]: n for n in report["Nodes"]}
    assert nodes["prepare"]["Downstream"] == ["shout", "whisper"]
    assert all(n["State"] == "SUCCEEDED" for n in nodes.values())
    assert nodes["prepare"]["RunID"].startswith("hello-prepare-")
    data = yaml.safe_load(EXAMPLE.read_text())["data"]
    outputs = {o["Node"]: o for o in report["Outputs"]}
    assert set(outputs) == {"shout", "whisper"}
    for name, out in outputs.items():
        assert out["RunID"] == nodes[name]["RunID"]
        assert [c["RawData"] for c in out["Chunks"]] == data
        assert all(c["State"] == "SUCCEEDED" for c in out["Chunks"])


def test_wiz_pipeline_run_prints_where_the_outputs_are(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "wiz-data", shutdown_grace=5)
    with EmbeddedExecutor(settings) as executor:
        result = CliRunner().invoke(app, ["pipeline", "run", str(EXAMPLE), "--url", executor.url])
        assert result.exit_code == 0, result.output
        assert "pipeline hello SUCCEEDED (3 runs)" in result.stdout
        with Client(executor.url) as client:
            runs = {r.RunID: r for r in client.runs("noop")}
        shout = next(r for r in runs if r.startswith("hello-shout-"))
        assert f"final node shout: noop/{shout} SUCCEEDED, 3 outputs" in result.stdout
        assert '{"greeting":"bonjour","to":"monde"}' in result.stdout
        # With --url the runs outlive the command.
        assert runs[shout].CurrentState is State.SUCCEEDED


def test_wiz_pipeline_run_exit_codes(tmp_path: Path) -> None:
    failing = tmp_path / "fails.yaml"
    failing.write_text(
        yaml.safe_dump(
            {
                "name": "fails",
                "data": [1],
                "spec": {
                    "sequential": [
                        node("only", processor={"id": "noop", "configuration": {"Fail": True}})
                    ]
                },
            }
        )
    )
    result = CliRunner().invoke(app, ["pipeline", "run", str(failing), "--json"], env=NO_URL)
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["State"] == "ERRORED"

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nspec: {sequential: [{name: a}]}\n")
    result = CliRunner().invoke(app, ["pipeline", "run", str(broken)], env=NO_URL)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {broken}: spec.sequential[0] (a) (line 2): a node needs a `processor`"
    )
    slow = tmp_path / "slow.yaml"
    slow.write_text(
        yaml.safe_dump(
            {
                "name": "slow",
                "data": [{"SleepMs": 5000}],
                "spec": {"sequential": [node("only")]},
            }
        )
    )
    result = CliRunner().invoke(app, ["pipeline", "run", str(slow), "--timeout", "0.5"], env=NO_URL)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: pipeline slow did not finish within 0.5 s")
    missing = CliRunner().invoke(app, ["pipeline", "run", str(tmp_path / "none.yaml")], env=NO_URL)
    assert missing.exit_code == 2
    assert "cannot read pipeline file" in missing.stderr
