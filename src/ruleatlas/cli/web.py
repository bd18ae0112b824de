"""CLI commands: ``serve`` (the web catalog) and ``export-site`` (the same pages as files)."""

from __future__ import annotations

from pathlib import Path

import typer

from ruleatlas.cli.app import DEFAULT_DB, app


@app.command()
def serve(
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help="catalog built by `ruleatlas build`"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port"),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="uvicorn worker processes"),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log"),
) -> None:
    """Serve the web catalog (read-only) at http://HOST:PORT/."""
    import uvicorn

    from ruleatlas.store import CatalogError
    from ruleatlas.web.app import create_app

    try:
        web = create_app(db)
    except CatalogError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Rule Atlas: serving {db} at http://{host}:{port}/", err=True)
    if workers > 1:
        import os

        os.environ["RULEATLAS_DB"] = str(db.resolve())
        uvicorn.run("ruleatlas.web.app:app_from_env", factory=True, host=host, port=port,
                    workers=workers, access_log=access_log, log_level="warning")
    else:
        uvicorn.run(web, host=host, port=port, access_log=access_log, log_level="warning")


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
