"""`wiz pipeline validate FILE` and `wiz pipeline run --dry-run`: what a pipeline file
says, checked and shown, without an executor and without creating anything."""

from __future__ import annotations

import json as jsonlib
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from ..pipelines import CheckReport, Pipeline, check_pipeline, plan_runs
from ._common import EXIT_USAGE, JsonOption, flag, print_json, stderr, stdout

EMBEDDED_HOST = "127.0.0.1:<port>"
"""The Hostname a dry run shows for the embedded executor, whose port is chosen when it
starts."""


def host_of(url: str) -> str:
    """How an executor at `url` names itself in DownstreamLocations, by default:
    host:port for a plain-http URL (what Go executors expect), else the URL itself."""
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.netloc and parts.path in ("", "/"):
        return parts.netloc
    return url.rstrip("/")


FileArg = Annotated[Path, typer.Argument(metavar="FILE.yaml", help="The pipeline file.")]


def validate(
    file: FileArg,
    strict: Annotated[
        bool, flag("--strict", "Treat warnings (unknown configuration fields) as errors.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Check a pipeline file without an executor: its shape, its graph, its processors
    (the built-ins and installed plugins) and their configurations.

    Every problem is printed with its place in the file; exits 2 if there is any."""
    report = check_pipeline(file)
    if strict:
        report.problems += report.warnings
        report.warnings = []
    if json:
        print_json(_report_json(file, report))
    else:
        _print_report(file, report)
    if not report.ok:
        raise typer.Exit(EXIT_USAGE)


def _print_report(file: Path, report: CheckReport) -> None:
    for warning in report.warnings:
        stderr().print(f"warning: {warning}", markup=False, soft_wrap=True)
    for problem in report.problems:
        stderr().print(f"error: {problem}", markup=False, soft_wrap=True)
    pipeline = report.pipeline
    if not report.ok or pipeline is None:
        count = len(report.problems)
        stderr().print(
            f"{file}: {count} problem{'s' if count != 1 else ''}", markup=False, soft_wrap=True
        )
        return
    out = stdout()
    out.print(
        f"{file}: pipeline {pipeline.name} is valid: {_count(len(pipeline.nodes), 'node')}, "
        f"{_count(len(pipeline.data), 'chunk')} of data",
        markup=False,
    )
    for node in pipeline.nodes.values():
        feeds = ", ".join(node.downstream) if node.downstream else "(final)"
        out.print(f"  {node.name} ({node.proc_id}) -> {feeds}", markup=False)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def _report_json(file: Path, report: CheckReport) -> dict[str, Any]:
    pipeline = report.pipeline
    return {
        "File": str(file),
        "Valid": report.ok,
        "Pipeline": pipeline.name if pipeline else None,
        "Problems": report.problems,
        "Warnings": report.warnings,
        "Nodes": _nodes(pipeline) if pipeline else [],
    }


def _nodes(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [
        {
            "Name": n.name,
            "ProcID": n.proc_id,
            "Upstream": n.upstream,
            "Downstream": n.downstream,
        }
        for n in pipeline.nodes.values()
    ]


def dry_run(file: Path, url: str | None, hostname: str | None, json: bool) -> None:
    """Print the runs `wiz pipeline run` would create and their configurations; send
    nothing anywhere. The file is checked first, as `validate` does, except that with
    `--url` a processor this installation lacks is only a warning: that executor may
    serve it as a plugin."""
    report = check_pipeline(file, unknown_is_error=url is None)
    for warning in report.warnings:
        stderr().print(f"warning: {warning}", markup=False, soft_wrap=True)
    if not report.ok or report.pipeline is None:
        for problem in report.problems:
            stderr().print(f"error: {problem}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    pipeline = report.pipeline
    if hostname is None:
        hostname = host_of(url) if url is not None else EMBEDDED_HOST
    suffix = secrets.token_hex(3)
    plan = plan_runs(pipeline, hostname, suffix)
    runs = [
        {
            "Node": p.node.name,
            "ProcID": p.proc_id,
            "RunID": p.run_id,
            "Upstream": p.node.upstream,
            "Downstream": p.node.downstream,
            "Chunks": p.chunks,
            "Configuration": p.configuration.model_dump(mode="json"),
        }
        for p in plan
    ]
    if json:
        print_json(
            {
                "DryRun": True,
                "Pipeline": pipeline.name,
                "URL": url,
                "Embedded": url is None,
                "Runs": runs,
            }
        )
        return
    out = stdout()
    where = url if url is not None else "an embedded executor"
    out.print(
        f"dry run: pipeline {pipeline.name} would create {_count(len(runs), 'run')} on "
        f"{where} (nothing was created; the run IDs get a new suffix at each launch)",
        markup=False,
    )
    for r, p in zip(runs, plan, strict=True):
        out.print(f"\n{r['Node']}: {r['ProcID']}/{r['RunID']}", style="bold", markup=False)
        if p.node.first:
            out.print(
                f"  gets the pipeline's {_count(p.chunks, 'chunk')}, then end of input",
                markup=False,
            )
        else:
            out.print(
                f"  gets the outputs of {', '.join(p.node.upstream)}; end of input once "
                f"{'it has' if len(p.node.upstream) == 1 else 'they have'} finished",
                markup=False,
            )
        for key, value in p.configuration.model_dump(mode="json").items():
            text = jsonlib.dumps(value, ensure_ascii=False, separators=(", ", ": "))
            out.print(f"  {key} {text}", markup=False, soft_wrap=True)
