"""Checking a pipeline without an executor: its graph, its processors, their configurations.

A pipeline read from a file is a tree of blocks, so its graph is sound by construction;
a `Pipeline` built in code is not, and a runner given a cycle would wait for ever for
a node to finish before closing the input of that same node. `graph_problems` finds
what the runner cannot run (a reference to a node that does not exist, an edge known to
one end only, a cycle, two nodes on one run ID); `PipelineRunner` refuses such a graph
before it creates anything.

`check_pipeline` adds what only the processors know: every node's processor is served
by this installation (the built-ins and installed plugins, `Registry.default()`), and
its configuration passes the processor's own configuration model, as Configure would
check it. A field the model does not know is a warning, not an error: the executor
ignores it (and says so in the run's `Warnings`) unless it runs with `--strict-config`.
The executor's ceilings (`--max-download-bytes`, allowed folders, ...) depend on its
flags, so they are left to Configure.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput, WizError
from ..registry import Registry
from ._spec import Pipeline, _slug, check_document, read_pipeline_file


@dataclass
class CheckReport:
    """What `check_pipeline` found: problems make the pipeline unusable (then `pipeline`
    is None), warnings do not. Each message starts with the file's path."""

    pipeline: Pipeline | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def graph_problems(pipeline: Pipeline) -> list[str]:
    """What makes a pipeline's graph impossible to run, one message per problem."""
    nodes = pipeline.nodes
    problems: list[str] = []
    for name, node in nodes.items():
        if node.name != name:
            problems.append(f"node {node.name!r} is filed under the name {name!r}")
        for kind, names, back in (
            ("upstream", node.upstream, "downstream"),
            ("downstream", node.downstream, "upstream"),
        ):
            for other in names:
                if other not in nodes:
                    problems.append(f"node {name!r}: {kind} node {other!r} does not exist")
                elif name not in getattr(nodes[other], back):
                    problems.append(
                        f"node {name!r} lists {other!r} as {kind}, but {other!r} does not "
                        f"list {name!r} as {back}"
                    )
    by_run: dict[str, str] = {}
    for name in nodes:
        other = by_run.setdefault(_slug(name), name)
        if other != name:
            problems.append(
                f"nodes {other!r} and {name!r} would get the same run ID; make their "
                "names differ by more than case and punctuation"
            )
    cycle = find_cycle(pipeline)
    if cycle:
        problems.append(f"the graph has a cycle: {' -> '.join(cycle)}")
    return problems


def find_cycle(pipeline: Pipeline) -> list[str]:
    """A cycle of the downstream edges, as the names along it (the first one repeated at
    the end), or [] when there is none. Edges to missing nodes are left out."""
    nodes = pipeline.nodes
    done: set[str] = set()
    for start in nodes:
        if start in done:
            continue
        path = [start]
        stack = [iter(nodes[start].downstream)]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path.pop())
            elif nxt in path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt in nodes and nxt not in done:
                path.append(nxt)
                stack.append(iter(nodes[nxt].downstream))
    return []


def processor_problems(
    pipeline: Pipeline, registry: Registry, *, unknown_is_error: bool = True
) -> tuple[list[str], list[str]]:
    """Problems and warnings about the nodes' processors and their configurations.

    With `unknown_is_error` false, a processor this installation lacks is a warning (the
    executor the pipeline is meant for may serve it as a plugin)."""
    problems: list[str] = []
    warnings: list[str] = []
    known = sorted(cls.id for cls in registry)
    for node in pipeline.nodes.values():
        where = pipeline.at((*node.loc, "processor", "id"))
        if node.proc_id not in registry:
            close = difflib.get_close_matches(node.proc_id, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            message = (
                f"{where}: unknown processor {node.proc_id!r} ({hint}"
                f"this installation serves {', '.join(known)})"
            )
            (problems if unknown_is_error else warnings).append(message)
            continue
        cls = registry.get(node.proc_id)
        where = pipeline.at((*node.loc, "processor", "configuration"))
        try:
            _, unknown = cls.check_config(node.configuration, allow_unknown=True)
        except WizError as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        for path in unknown:
            warnings.append(
                f"{where}: unknown field {path!r} in the configuration of "
                f"processor {node.proc_id!r}: the executor ignores it (refuses it under "
                "--strict-config)"
            )
    return problems, warnings


def check_pipeline(
    path: Path, registry: Registry | None = None, *, unknown_is_error: bool = True
) -> CheckReport:
    """Every check of a pipeline file that needs no executor: the file's shape, the
    graph, the processors and their configurations. Problems name their place in the
    file (path, node name and line); nothing is created anywhere."""
    try:
        document, line_of = read_pipeline_file(path)
    except InvalidInput as exc:
        return CheckReport(None, [exc.message])
    pipeline, problems = check_document(document, path.stem, line_of)
    warnings: list[str] = []
    if pipeline is not None:
        if not problems:  # the builder's problems are graph problems, told better
            problems = graph_problems(pipeline)
        found, warnings = processor_problems(
            pipeline, registry or Registry.default(), unknown_is_error=unknown_is_error
        )
        problems += found
    return CheckReport(
        pipeline if not problems else None,
        [f"{path}: {p}" for p in problems],
        [f"{path}: {w}" for w in warnings],
    )
