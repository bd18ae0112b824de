"""CLI commands: indicators (a rule's indicator table), indicator (rules holding one
indicator), similar (rules sharing the most indicators, IDF-weighted).

Each command opens the catalog read-only, resolves a rule reference with the one resolver
(``cli.common.resolve``) and prints a table or JSON (``--format json``) whose shape is the one
``store.indicators`` returns to the web pages.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ruleatlas.cli import common
from ruleatlas.cli.app import app
from ruleatlas.indicators.query import SpecError, parse_spec
from ruleatlas.store import indicators as store


def _corpus_text(c: dict[str, int]) -> str:
    rest = ", ".join(f"{s} {n}" for s, n in c.items() if s != "total" and n)
    return f"{c['total']} ({rest})" if rest else str(c["total"])


@app.command("indicators")
def indicators_cmd(
    rule: str = typer.Argument(..., help=common.RULE_HELP),
    db: str = common.DB_OPT,
    fmt: common.Format = common.FORMAT_OPT,
) -> None:
    """Show a rule's indicators with normalised keys and corpus counts.

    One row per field and operator; each value as written, its normalised key, and how many
    rules of the catalog hold it (total and by source). A test made after an aggregation
    (phase ``result``) is marked "(after aggregation)"."""
    with common.open_catalog(db) as cat:
        rid = common.resolve(cat, rule)
        rows = store.rule_indicators(cat.conn, rid)
    if fmt is common.Format.json:
        common.echo_json({"rule": rid, "indicators": rows})
        return
    t = Table(title=f"Indicators of {rid}")
    for col in ("Field", "Kind", "Value", "Key", "Corpus"):
        t.add_column(col, overflow="fold")
    for r in rows:
        kind = ("not " if r["negated"] else "") + r["op"]
        if r.get("phase") == "result":
            kind += " (after aggregation)"
        for i, v in enumerate(r["values"]):
            field = f"{r['field']} [{r['field_key']}]" if i == 0 else ""
            t.add_row(field, kind if i == 0 else "", v["value"], v["key"],
                      _corpus_text(v["corpus"]))
    Console().print(t)
    if not rows:
        typer.echo("(no indicators)")


@app.command("indicator")
def indicator_cmd(
    spec: str = typer.Argument(
        ..., help="'FIELD OP VALUE', e.g. 'ScriptBlockText contains Invoke-WMIExec' or "
                  "'Processes.process_name=cmd.exe'."
    ),
    db: str = common.DB_OPT,
    fmt: common.Format = common.FORMAT_OPT,
) -> None:
    """List every rule holding one indicator, by source.

    The spec is normalised by the same code as the rules, so Sigma and Splunk spellings find
    each other."""
    try:
        parsed = parse_spec(spec)
    except SpecError as exc:
        raise common.fail(str(exc), 2) from None
    with common.open_catalog(db) as cat:
        by_source = store.rules_with_indicator(cat.conn, parsed.field_key, parsed.key)
    if fmt is common.Format.json:
        common.echo_json(
            {
                "spec": spec,
                "field_key": parsed.field_key,
                "key": parsed.key,
                "total": sum(len(v) for v in by_source.values()),
                "by_source": {s: len(v) for s, v in by_source.items()},
                "rules": by_source,
            }
        )
        return
    total = sum(len(v) for v in by_source.values())
    typer.echo(f"{parsed.field_key} {parsed.key!r}: {total} rule(s)")
    for source, rules in by_source.items():
        t = Table(title=f"{source} ({len(rules)})")
        for col in ("Id", "Title", "As written"):
            t.add_column(col, overflow="fold")
        for r in rules:
            t.add_row(r["id"], r["title"], f"{r['field']} {r['op']} {r['value']}")
        Console().print(t)


@app.command("similar")
def similar_cmd(
    rule: str = typer.Argument(..., help=common.RULE_HELP),
    limit: int = typer.Option(10, "--limit", "-n", help="How many rules to list."),
    db: str = common.DB_OPT,
    fmt: common.Format = common.FORMAT_OPT,
) -> None:
    """List the rules of any source sharing the most indicators with RULE.

    Each shared indicator weighs log(N/df), so rare ones count more than EventCode=4104."""
    with common.open_catalog(db) as cat:
        rid = common.resolve(cat, rule)
        found = store.similar_rules(cat.conn, rid, limit)
    if fmt is common.Format.json:
        common.echo_json({"rule": rid, "similar": found})
        return
    t = Table(title=f"Rules similar to {rid}")
    for col in ("Score", "Share", "Source", "Id", "Title", "Shared indicators"):
        t.add_column(col, overflow="fold")
    for r in found:
        shared = "; ".join(f"{s['field_key']} {s['key']} (df {s['df']})" for s in r["shared"])
        t.add_row(f"{r['score']:.2f}", f"{r['share']:.0%}", r["source"] or "", r["id"],
                  r["title"] or "", shared)
    Console().print(t)
    if not found:
        typer.echo("(no rule shares an indicator)")
