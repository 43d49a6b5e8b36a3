"""The `wiz` command: `wiz executor` serves; the other verbs are clients of a server."""

from __future__ import annotations

import typer

from ._serve import serve

app = typer.Typer(
    name="wiz",
    help="Wiz executor: serve the Wiz Processor API and drive it.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("executor")(serve)


@app.callback()
def _root() -> None:
    """Wiz executor: serve the Wiz Processor API and drive it."""


def main() -> None:
    app()


__all__ = ["app", "main"]
