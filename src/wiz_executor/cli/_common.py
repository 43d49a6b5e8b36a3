"""What every client verb shares: `--url`, `--token`, `--ssl-ca-certs`, `--json`, output,
and one-line errors.

The verbs are thin: they parse arguments, call `wiz_executor.client`, and print. An API
error or an unreachable executor becomes one line on stderr and exit code 1; bad
arguments or input files exit 2 (typer's usage code); a run that ends ERRORED exits 3.
"""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import typer
from pydantic import BaseModel
from rich.console import Console

from .._tls import CA_CERTS_HINT, client_context, verification_failure
from ..api import WorkModel
from ..client import DEFAULT_URL, Client
from ..errors import TLSError, WizError

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_RUN_ERRORED = 3

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="WIZ_URL",
        help="Base URL of the executor.",
        show_envvar=True,
    ),
]

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="WIZ_TOKEN",
        help="The executor's bearer token, if it requires one (prefer the variable: a "
        "command line is visible to every local user).",
        show_envvar=True,
    ),
]


CaCertsOption = Annotated[
    Path | None,
    typer.Option(
        "--ssl-ca-certs",
        envvar="WIZ_CA_CERTS",
        show_envvar=True,
        metavar="PATH",
        help="A CA bundle (PEM) trusted besides the system's, for https servers signed "
        "by a private CA (an executor, its downstream executors, get and scrape sources).",
    ),
]


def flag(name: str, help: str) -> Any:
    """A boolean option given alone (`--json`), shown in `--help` without a value: typer
    otherwise labels every flag `<bool>`, as if it took one."""
    return typer.Option(name, help=help, metavar="")


JsonOption = Annotated[bool, flag("--json", "Print machine-readable JSON.")]
ProcArg = Annotated[str, typer.Argument(metavar="PROC", help="Processor ID, e.g. noop.")]
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run ID.")]

DEFAULT = DEFAULT_URL


def stdout() -> Console:
    """A console on the current stdout (looked up per call, so test runners see it)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False)


def print_warnings(warnings: list[str] | None, seen: set[str] | None = None) -> None:
    """The executor's `Warnings` (what it did with a request that the sender should
    know), one `warning: ...` line each on stderr; those already in `seen` are skipped,
    so a warning every batch repeats is printed once."""
    for warning in warnings or ():
        if seen is not None:
            if warning in seen:
                continue
            seen.add(warning)
        stderr().print(f"warning: {warning}", markup=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_API_ERROR) -> NoReturn:
    """One line on stderr, then exit with `code`."""
    stderr().print(f"error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def trust(ca_certs: Path | None) -> ssl.SSLContext:
    """What the client verifies the executor's certificate against: the system's CAs,
    plus `--ssl-ca-certs`; an unusable bundle is a usage error naming it."""
    try:
        return client_context(ca_certs)
    except TLSError as exc:
        fail(exc.message, EXIT_USAGE)


@contextmanager
def api_errors(url: str) -> Iterator[None]:
    """Turn the client's exceptions into one-line errors and exit codes."""
    try:
        yield
    except WizError as exc:
        fail(exc.message)
    except httpx.TransportError as exc:
        refused = verification_failure(exc)
        if refused:
            fail(f"cannot reach the executor at {url}: {refused}; {CA_CERTS_HINT}")
        fail(f"cannot reach the executor at {url}: {_describe(exc)}")
    except TimeoutError as exc:
        fail(str(exc) or "timed out")


@contextmanager
def connected(url: str, token: str | None, ca_certs: Path | None) -> Iterator[Client]:
    """A client of the executor at `url` for one verb: its token, the trust of
    `--ssl-ca-certs`, and the client's errors turned into one-line errors."""
    with api_errors(url), Client(url, token=token, verify=trust(ca_certs)) as wiz:
        yield wiz


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def to_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """JSON on stdout, unstyled, so it pipes into jq."""
    typer.echo(json.dumps(to_json(value), indent=2, ensure_ascii=False))


def compact(value: Any, width: int = 60) -> str:
    """A JSON value on one line, cut to `width` characters for a table cell."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def load_json_text(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc}", EXIT_USAGE)


if TYPE_CHECKING:

    class WorkModelName(StrEnum):
        """`--work-model`'s choices (see below)."""

else:
    WorkModelName = StrEnum(
        "WorkModelName", {model.value.lower(): model.value.lower() for model in WorkModel}
    )
    """`--work-model`'s choices: every name of the wire enum `api.WorkModel` (the one
    list of work models), in lower case."""
