"""CLI command: ``ruleatlas mcp`` (the MCP server, over stdio or streamable HTTP)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from ruleatlas.cli.app import DEFAULT_DB, app

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Transport(StrEnum):
    stdio = "stdio"
    http = "http"


@app.command("mcp")
def mcp_cmd(
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help="catalog built by `ruleatlas build`"),
    transport: Transport = typer.Option(Transport.stdio, "--transport",
                                        help="stdio (an assistant starts the server) or http "
                                             "(streamable HTTP at http://HOST:PORT/mcp)"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (http)"),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="TCP port (http)"),
    hunt_root: list[Path] = typer.Option(
        None, "--hunt-root", help="only let hunt_file read logs under this folder (repeat); "
                                  "default: any file the server's user can read"),
) -> None:
    """Serve the catalog to an assistant over MCP: search, rules, indicators, similar rules,
    ATT&CK and event coverage, and hunting one log file. Read-only."""
    from ruleatlas.mcp.server import create_server
    from ruleatlas.store import CatalogError

    roots = tuple(hunt_root or ())
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        typer.echo(f"error: --hunt-root is not a folder: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    try:
        server = create_server(db, roots)
    except CatalogError as e:
        typer.echo(f"error: {e} (build it with `ruleatlas build --db {db} ...`)", err=True)
        raise typer.Exit(2) from None
    if transport is Transport.stdio:
        server.run("stdio")
        return
    typer.echo(f"Rule Atlas MCP: serving {db} at http://{host}:{port}/mcp", err=True)
    if host not in LOOPBACK:
        typer.echo(f"warning: {host} is not a loopback address and the server has no "
                   "authentication: anyone who reaches it can query the catalog and have it read "
                   "log files" + ("" if roots else " (confine them with --hunt-root)"), err=True)
    server.run("streamable-http", host=host, port=port)
