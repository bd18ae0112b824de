"""CLI command: ``ruleatlas convert LOGS... OUT --to parquet|jsonl`` — events in a columnar
layout for the SQL backends (Spark, DuckDB; docs/spark.md).

Reads like ``hunt`` (files, folders, archives; EVTX, JSON, Splunk XML) and writes the flattened
events, one string column per field plus ``_file``/``_position``, partitioned by event kind
(``OUT/_kind=<channel|id>/part-NNNNN.parquet``), in batches so memory stays bounded.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ruleatlas.cli.app import app
from ruleatlas.cli.common import fail


class ConvertFormat(StrEnum):
    parquet = "parquet"
    jsonl = "jsonl"


@app.command("convert")
def convert_cmd(
    paths: list[str] = typer.Argument(..., help="Log files or folders, then the output folder "
                                                "(last argument)."),
    to: ConvertFormat = typer.Option(ConvertFormat.parquet, "--to",
                                     help="parquet (default) or jsonl"),
    batch: int = typer.Option(20_000, "--batch", min=1,
                              help="Events held in memory before a write."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty output folder."),
) -> None:
    """Write events as columns (Parquet or JSON lines) partitioned by event kind, for the
    Spark and DuckDB backends and any SQL engine: the field names the local engine sees.

    Exit code as `hunt`'s: 0 every input read, 1 some inputs or records skipped (listed on
    stderr), 2 nothing could be read."""
    from ruleatlas.engine.events import ReadError
    from ruleatlas.engine.sql.columnar import convert

    if len(paths) < 2:
        raise fail("give at least one log path and the output folder", 2)
    *logs, out = paths
    missing = [p for p in logs if not Path(p).exists()]
    if missing:
        raise fail(f"no such file or folder: {', '.join(missing)}", 2)
    outp = Path(out)
    if outp.exists() and (not outp.is_dir() or (any(outp.iterdir()) and not force)):
        raise fail(f"{out} exists and is not an empty folder (use --force to add to it)", 2)
    errors: list[ReadError] = []
    con = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("converting"),
                  TextColumn("{task.completed} events"), TimeElapsedColumn(), console=con,
                  disable=not con.is_terminal, transient=True) as prog:
        task = prog.add_task("convert", total=None)
        n = 0

        def tick(_ev: Any) -> None:
            nonlocal n
            n += 1
            if n % 1000 == 0:
                prog.update(task, completed=n)

        report = convert(logs, outp, fmt=to.value, errors=errors, batch=batch, on_event=tick)
    for e in errors[:20]:
        con.print(f"[yellow]read error[/]: {e}")
    con.print(f"{report.events} events, {len(report.kinds)} event kinds, {report.files} files, "
              f"{report.bytes / 1e6:.1f} MB -> {out}")
    typer.echo(json.dumps({"events": report.events, "files": report.files,
                           "bytes": report.bytes, "read_errors": len(errors),
                           "kinds": dict(sorted(report.kinds.items()))}, indent=2))
    if errors:
        raise typer.Exit(1 if report.events else 2)
