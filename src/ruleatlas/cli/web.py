"""CLI commands: ``serve`` (the web catalog) and ``export-site`` (the same pages as files)."""

from __future__ import annotations

from pathlib import Path

import typer

from ruleatlas.cli.app import DEFAULT_DB, app

SERVERS = ("auto", "granian", "uvicorn")
APP_FACTORY = "ruleatlas.web.app:app_from_env"  # what each worker process imports
# granian kills a worker still alive this many seconds after it was asked to stop (a thread
# stuck in a long SQLite call keeps the interpreter from exiting).
KILL_AFTER = 1


def _server(choice: str) -> str:
    """``auto``: granian when it is installed (measured fastest, docs/web.md), else uvicorn."""
    if choice != "auto":
        return choice
    import importlib.util

    return "granian" if importlib.util.find_spec("granian") else "uvicorn"


def _run_granian(host: str, port: int, workers: int, access_log: bool) -> None:
    import importlib

    granian = importlib.import_module("granian")  # optional: not a dependency of Rule Atlas
    consts = importlib.import_module("granian.constants")
    log = importlib.import_module("granian.log")
    granian.Granian(APP_FACTORY, address=host, port=port, interface=consts.Interfaces.ASGI,
                    factory=True, workers=workers, websockets=False, log_access=access_log,
                    log_level=log.LogLevels.warning,
                    workers_kill_timeout=KILL_AFTER).serve()


def _run_uvicorn(host: str, port: int, workers: int, access_log: bool) -> None:
    import uvicorn

    from ruleatlas.web.app import SHUTDOWN_GRACE

    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers,
                access_log=access_log, log_level="warning",
                timeout_graceful_shutdown=SHUTDOWN_GRACE)


@app.command()
def serve(
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help="catalog built by `ruleatlas build`"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port"),
    workers: int = typer.Option(0, "--workers", min=0, max=64,
                                help="worker processes (0: one per CPU core)"),
    server: str = typer.Option("auto", "--server", help="ASGI server: auto (granian when "
                               "installed, else uvicorn), granian or uvicorn"),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log"),
) -> None:
    """Serve the web catalog (read-only) at http://HOST:PORT/ with WORKERS processes; SIGTERM
    or Ctrl-C stops it within a few seconds (running queries are interrupted)."""
    import os

    from ruleatlas.store import CatalogError
    from ruleatlas.web.app import create_app

    if server not in SERVERS:
        typer.echo(f"error: --server is one of {', '.join(SERVERS)}, not {server!r}", err=True)
        raise typer.Exit(2)
    try:
        create_app(db).state.site.pool.close()  # a missing or broken catalog fails here
    except CatalogError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    n = workers or os.cpu_count() or 1
    name = _server(server)
    typer.echo(f"Rule Atlas: serving {db} at http://{host}:{port}/ ({n} {name} worker"
               f"{'s' if n > 1 else ''})", err=True)
    os.environ["RULEATLAS_DB"] = str(db.resolve())
    (_run_granian if name == "granian" else _run_uvicorn)(host, port, n, access_log)


@app.command("export-site")
def export_site(
    out: Path = typer.Argument(..., help="output folder (created; existing files overwritten)"),
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help="catalog built by `ruleatlas build`"),
    indicators: bool = typer.Option(True, "--indicators/--no-indicators",
                                    help="write one page per indicator value"),
    json_twins: bool = typer.Option(True, "--json/--no-json",
                                    help="write each page's JSON twin under api/"),
) -> None:
    """Write the catalog as static HTML (any static host) with a client-side search index."""
    from ruleatlas.store import CatalogError
    from ruleatlas.web.export import export

    try:
        stats = export(db, out, indicators=indicators, json_twins=json_twins)
    except CatalogError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {stats['files']} files ({stats['rules']} rule pages, "
               f"{stats['indicators']} indicator pages, {stats['json']} JSON twins) to {out} "
               f"in {stats['seconds']:.1f}s")
