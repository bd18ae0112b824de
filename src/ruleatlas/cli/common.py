"""What every command module shares: options, output formats, errors, opening the catalog and
resolving a rule reference.

Errors are one line on stderr (``error: ...``) and an exit code: 1 for a missing catalog, an
unknown or ambiguous rule (the candidates follow on the next lines); 2 for a reference that
cannot name a rule (over ``store.MAX_REF_LEN`` characters, control characters).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import typer

from ruleatlas.cli.app import DEFAULT_DB
from ruleatlas.store import BadRuleReference, Catalog, CatalogError


class Format(StrEnum):
    table = "table"
    json = "json"


RULE_HELP = "Rule id, unique id prefix (8+ characters) or unique title."
DB_OPT = typer.Option(DEFAULT_DB, "--db", help="Catalog database file.")
FORMAT_OPT = typer.Option(Format.table, "--format", help="Output format: table or json.")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; the Exit to raise (``raise fail(...) from None``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def open_catalog(db: str) -> Catalog:
    """The catalog at ``db``, read-only; exit 1 with the reason when it cannot be opened."""
    try:
        return Catalog.open(db, readonly=True)
    except CatalogError as e:
        raise fail(e.message) from None


def resolve(cat: Catalog, ref: str) -> str:
    """The id of the rule ``ref`` names (the one resolver, ``store.resolve``); exit 2 for an
    impossible reference, 1 for an unknown or ambiguous one."""
    try:
        return cat.resolve(ref)
    except BadRuleReference as e:
        raise fail(e.message, 2) from None
    except CatalogError as e:
        raise fail(e.message) from None


def echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


__all__ = ["DB_OPT", "FORMAT_OPT", "RULE_HELP", "Format", "echo_json", "fail", "open_catalog",
           "resolve"]
