"""Ids shared across sources (a Sigma rule translated from an Elastic rule keeps Elastic's
rule_id): both rules are kept, the later one under a qualified id; inside one source the later
rule stays a duplicate-id load error (docs/catalog.md, "Ids across sources")."""

from __future__ import annotations

from pathlib import Path

from ruleatlas.build import build
from ruleatlas.store.catalog import Catalog
from test_build import ID_A, ID_B, accounted, ids, make_sigma

ELASTIC_RULE = """\
[metadata]
creation_date = "2024/01/02"
maturity = "production"
updated_date = "2024/02/03"

[rule]
author = ["Elastic"]
description = "An Elastic rule."
name = "{name}"
risk_score = 21
rule_id = "{rid}"
severity = "low"
type = "eql"
language = "eql"
query = '''
process where process.name == "cmd.exe"
'''
"""


def make_elastic(base: Path, files: dict[str, tuple[str, str]]) -> Path:
    root = base / "elastic"
    for rel, (rid, name) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(ELASTIC_RULE.format(rid=rid, name=name))
    return root


def _row(db: Path, rid: str) -> tuple[str, str, str | None, list[str]]:
    with Catalog.open(db, readonly=True) as c:
        stored = c.get_rule(rid)
        codes = [p.get("code") for p in (stored.analysis or {}).get("problems", [])]
        return (stored.rule.source, stored.rule.title, stored.rule.extra.get("upstream_id"),
                codes)


def test_clash_across_sources_keeps_both_rules(tmp_path: Path) -> None:
    sig = make_sigma(tmp_path)
    el = make_elastic(tmp_path, {"rules/x.toml": (ID_A, "Elastic Alpha"),
                                 "rules/y.toml": ("bbbbbbbb-0000-4000-8000-000000000009",
                                                  "Elastic Other")})
    db = tmp_path / "c.db"
    build([sig, el], db, workers=1)
    assert f"elastic:{ID_A}" in ids(db) and ID_A in ids(db)
    assert _row(db, ID_A)[:3] == ("sigma", "Alpha Shell", None)
    source, title, upstream, codes = _row(db, f"elastic:{ID_A}")
    assert (source, title, upstream) == ("elastic", "Elastic Alpha", ID_A)
    assert codes == ["id-clash"]
    with Catalog.open(db, readonly=True) as c:
        assert c.conn.execute("SELECT count(*) FROM load_errors").fetchone()[0] == 0
        st = c.stats()["sources"]["elastic"]
        assert (st["files"], st["rules"], st["errors"]) == (2, 2, 0)
        # derived rows follow the qualified id
        (n,) = c.conn.execute("SELECT count(*) FROM indicators WHERE rule_id = ?",
                              (f"elastic:{ID_A}",)).fetchone()
        assert n == 1
        assert c.resolve(f"elastic:{ID_A}") == f"elastic:{ID_A}"
    accounted(db)
    # A rebuild with nothing changed keeps both; the clash's file is parsed again each time.
    s = build([sig, el], db, workers=1)
    assert {r.source: r.parsed for r in s.repos} == {"sigma": 0, "elastic": 1}
    assert f"elastic:{ID_A}" in ids(db) and ID_A in ids(db)
    accounted(db)
    # The Sigma rule gone: the Elastic rule takes its own id back.
    (sig / "rules" / "windows" / "a.yml").unlink()
    build([sig, el], db, workers=1)
    assert ID_A in ids(db) and f"elastic:{ID_A}" not in ids(db)
    assert _row(db, ID_A) == ("elastic", "Elastic Alpha", None, [])
    accounted(db)


def test_clash_with_a_source_that_sorts_first_moves_the_stored_rule(tmp_path: Path) -> None:
    el = make_elastic(tmp_path, {"rules/x.toml": (ID_B, "Elastic Bravo")})
    sig = make_sigma(tmp_path)
    db = tmp_path / "c.db"
    build([el], db, workers=1)
    assert _row(db, ID_B)[0] == "elastic"
    # Sigma now comes first: its rule takes the plain id, the stored Elastic rule moves.
    build([sig, el], db, workers=1)
    assert _row(db, ID_B)[:2] == ("sigma", "Bravo Tool")
    assert _row(db, f"elastic:{ID_B}") == ("elastic", "Elastic Bravo", ID_B, ["id-clash"])
    with Catalog.open(db, readonly=True) as c:
        (n,) = c.conn.execute("SELECT count(*) FROM rules_fts WHERE id = ?",
                              (f"elastic:{ID_B}",)).fetchone()
        assert n == 1
    accounted(db)
    # Same catalog as a build from scratch.
    fresh = tmp_path / "fresh.db"
    build([sig, el], fresh, workers=1)
    assert ids(fresh) == ids(db)


def test_qualified_id_in_an_exported_site(tmp_path: Path) -> None:
    """export-site names the page of ``elastic:<id>`` with the id percent-encoded, and its links
    lead there once a static host decodes them."""
    from urllib.parse import unquote, urlsplit

    from ruleatlas.web.export import export
    from ruleatlas.web.render import ExportUrls

    sig = make_sigma(tmp_path)
    el = make_elastic(tmp_path, {"rules/x.toml": (ID_A, "Elastic Alpha")})
    db = tmp_path / "c.db"
    build([sig, el], db, workers=1)
    out = tmp_path / "site"
    export(db, out)
    href = ExportUrls(1).rule(f"elastic:{ID_A}")
    assert not urlsplit(href).scheme
    target = (out / "rules" / unquote(href.rsplit("/", 1)[1]))
    assert target.is_file() and "Elastic Alpha" in target.read_text()


def test_clash_inside_one_source_stays_a_duplicate_error(tmp_path: Path) -> None:
    sig = make_sigma(tmp_path)
    el = make_elastic(tmp_path, {"rules/x.toml": (ID_A, "Elastic Alpha"),
                                 "rules/z.toml": (ID_A, "Elastic Alpha Again")})
    db = tmp_path / "c.db"
    build([sig, el], db, workers=1)
    assert _row(db, f"elastic:{ID_A}")[1] == "Elastic Alpha"
    with Catalog.open(db, readonly=True) as c:
        errs = [(e.path, e.kind) for e in c.errors()]
    assert errs == [("rules/z.toml", "duplicate-id")]
    accounted(db)
