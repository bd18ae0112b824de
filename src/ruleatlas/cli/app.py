"""The Typer application object every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="ruleatlas",
    help="Rule Atlas: a catalog of public detection rules, taken apart and run on logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DB = "ruleatlas.db"


@app.command()
def version() -> None:
    """Print the Rule Atlas version."""
    from ruleatlas import __version__

    typer.echo(__version__)
