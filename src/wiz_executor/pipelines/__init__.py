"""Pipelines: a graph of processor runs, described in YAML and run on an executor.

`load_pipeline` reads a file in the original Wiz shape, `check_pipeline` checks one
without an executor (graph, processors, configurations), `plan_runs` says which runs a
launch creates, `PipelineRunner` creates and wires the runs and drives them to the end,
and `EmbeddedExecutor` serves an executor for as long as a command needs one.
"""

from ._check import CheckReport, check_pipeline, find_cycle, graph_problems
from ._embedded import EmbeddedExecutor
from ._runner import NodeRun, PipelineResult, PipelineRunner, PlannedRun, Update, plan_runs
from ._spec import Node, Pipeline, load_pipeline, parse_pipeline, run_id_for

__all__ = [
    "CheckReport",
    "EmbeddedExecutor",
    "Node",
    "NodeRun",
    "Pipeline",
    "PipelineResult",
    "PipelineRunner",
    "PlannedRun",
    "Update",
    "check_pipeline",
    "find_cycle",
    "graph_problems",
    "load_pipeline",
    "parse_pipeline",
    "plan_runs",
    "run_id_for",
]
