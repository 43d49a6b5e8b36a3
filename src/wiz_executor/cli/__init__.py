"""The `wiz` command: `wiz executor` serves; the other verbs are clients of a server."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from ._config import ConfiguredCommand
from ._serve import serve
from ._verbs import register as _register_client_verbs

app = typer.Typer(
    name="wiz",
    help="Wiz executor: serve the Wiz Processor API and drive it.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("executor", cls=ConfiguredCommand)(serve)
_register_client_verbs(app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"wiz-executor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            metavar="",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Wiz executor: serve the Wiz Processor API and drive it."""


def main() -> None:
    app()


__all__ = ["app", "main"]
