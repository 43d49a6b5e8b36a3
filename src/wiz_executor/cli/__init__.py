"""The `wiz` command: `wiz executor` serves; the other verbs are clients of a server."""

from __future__ import annotations

import typer

from ._serve import serve
from ._verbs import register as _register_client_verbs

app = typer.Typer(
    name="wiz",
    help="Wiz executor: serve the Wiz Processor API and drive it.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("executor")(serve)
_register_client_verbs(app)


@app.callback()
def _root() -> None:
    """Wiz executor: serve the Wiz Processor API and drive it."""


def main() -> None:
    app()


__all__ = ["app", "main"]
