"""Pipelines: a graph of processor runs, described in YAML and run on an executor.

`load_pipeline` reads a file in the original Wiz shape, `PipelineRunner` creates and
wires the runs and drives them to the end, and `EmbeddedExecutor` serves an executor for
as long as a command needs one.
"""

from ._embedded import EmbeddedExecutor
from ._runner import NodeRun, PipelineResult, PipelineRunner, Update
from ._spec import Node, Pipeline, load_pipeline, parse_pipeline, run_id_for

__all__ = [
    "EmbeddedExecutor",
    "Node",
    "NodeRun",
    "Pipeline",
    "PipelineResult",
    "PipelineRunner",
    "Update",
    "load_pipeline",
    "parse_pipeline",
    "run_id_for",
]
