"""The catalog of the whole shared corpus (``corpus_db``, built once): counts, accounting, the
example rule's document, search and filters, coverage reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ELASTIC, EXAMPLE_ID, SIGMA, SPLUNK
from ruleatlas.api.documents import DOCUMENT_KEYS, rule_document
from ruleatlas.sources import SOURCES
from ruleatlas.store import Catalog, CatalogError, RuleNotFound, RuleQuery


@pytest.fixture(scope="module")
def cat(corpus_db: Path) -> Iterator[Catalog]:
    c = Catalog.open(corpus_db, readonly=True)
    yield c
    c.close()


def test_every_rule_of_the_three_corpora_is_in(cat: Catalog) -> None:
    st = cat.stats()
    assert st["sources"]["splunk"]["rules"] == 1711
    # 2,332 TOML files less the 2 hunting files whose uuid another hunting file holds; the 3
    # Elastic rules whose rule_id a Sigma rule carries are kept under "elastic:<id>"
    assert (st["sources"]["elastic"]["rules"], st["sources"]["elastic"]["errors"]) == (2330, 2)
    assert sorted(r[0] for r in cat.conn.execute(
        "SELECT id FROM rules WHERE id LIKE 'elastic:%'")) == [
        "elastic:2f0bae2d-bf20-4465-be86-1311addebaa3",
        "elastic:b45ab1d2-712f-4f01-a751-df3826969807",
        "elastic:ee39a9f7-5a79-4b0a-9815-d36b3cf28d3e"]
    (n,) = cat.conn.execute(
        "SELECT count(*) FROM rules WHERE source = 'sigma' AND path LIKE 'rules%'").fetchone()
    assert n == 3780
    # independent count: YAML files under the corpus rule folders
    files = {"sigma": len(list(SOURCES["sigma"].rule_files(SIGMA))),
             "splunk": len(list((SPLUNK / "detections").rglob("*.yml"))),
             "elastic": sum(len(list((ELASTIC / d).rglob("*.toml")))
                            for d in ("rules", "rules_building_block", "hunting"))}
    assert files["elastic"] == 2332
    for src, d in st["sources"].items():
        assert d["files"] == files[src]
        # files = rules + errors, per file: each file's rules + errors >= 1, and they add up
        assert d["accounted"]
        assert d["file_rules"] == d["rules"] and d["file_errors"] == d["errors"]
    (bad,) = cat.conn.execute("SELECT count(*) FROM files WHERE rules + errors < 1").fetchone()
    assert bad == 0


def test_example_rule_document(cat: Catalog) -> None:
    d = rule_document(cat, EXAMPLE_ID)
    assert set(DOCUMENT_KEYS) == set(d)
    assert d["source"] == "splunk"
    assert d["title"] == "PowerShell Invoke WmiExec Usage"
    assert d["path"] == "detections/endpoint/powershell_invoke_wmiexec_usage.yml"
    assert d["source_url"].endswith("/detections/endpoint/powershell_invoke_wmiexec_usage.yml")
    assert d["author"] == "Michael Haag, Splunk"
    assert {"technique": "T1047", "name": "Windows Management Instrumentation",
            "tactics": ["execution"]}.items() <= d["attack"][0].items()
    assert "Invoke-WMIExec" in d["body"]
    assert "Microsoft-Windows-PowerShell/Operational 4104" in d["events"]
    assert d["stories"] == ["Suspicious WMI Use"]
    assert d["tests"] and d["tests"][0]["kind"] == "attack_data"
    assert isinstance(d["stages"], list) and isinstance(d["indicators"], list)
    # the same document by unique title
    assert rule_document(cat, "PowerShell Invoke WmiExec Usage")["id"] == EXAMPLE_ID


def test_unknown_and_ambiguous_references(cat: Catalog) -> None:
    with pytest.raises(KeyError):
        rule_document(cat, "no such rule at all")
    with pytest.raises(RuleNotFound):
        cat.get_rule("ffffffff-ffff-ffff-ffff-ffffffffffff")
    (title,) = cat.conn.execute(
        "SELECT title FROM rules GROUP BY title HAVING count(*) > 1 LIMIT 1").fetchone()
    with pytest.raises(CatalogError) as e:
        cat.get_rule(title)
    assert "use an id" in str(e.value) and str(e.value).count("\n") >= 2


def test_search_ranks_and_snippets(cat: Catalog) -> None:
    page = cat.search_rules(RuleQuery(text="wmiexec"))
    got = [r.id for r in page.rows]
    assert EXAMPLE_ID in got
    assert page.total == len(got) or page.total > len(got)
    ex = next(r for r in page.rows if r.id == EXAMPLE_ID)
    assert ex.snippet and "\x02" in ex.snippet
    # facets describe the current result set
    assert sum(n for _, n in page.facets["source"]) == page.total
    # title words weigh most: a rule with the word in its title comes first
    first = page.rows[0]
    assert "wmiexec" in first.title.lower()


@pytest.mark.parametrize("text", ['"', '""', "*", "NEAR(", "a NEAR( b", "((", "))", "(a",
                                  "title:x", "AND", "OR NOT", "^x", "a\"b", "'; DROP TABLE x",
                                  "\x00", "x*", "-", "{a b}", "🦊", "\\"])
def test_hostile_search_text_never_errors(cat: Catalog, text: str) -> None:
    page = cat.search_rules(RuleQuery(text=text, per_page=3))
    (rules,) = cat.conn.execute("SELECT count(*) FROM rules").fetchone()
    assert rules == 8078  # 4,037 Sigma + 1,711 ESCU + 2,330 Elastic rules in the corpus
    assert 0 <= page.total <= rules
    assert len(page.rows) == min(3, page.total)
    assert len({r.id for r in page.rows}) == len(page.rows)


def test_filters(cat: Catalog) -> None:
    t1047 = cat.search_rules(RuleQuery(technique=("T1047",), per_page=1000))
    assert EXAMPLE_ID in {r.id for r in t1047.rows}
    # 24 Elastic files name T1047 in their threat tables
    assert {r.source for r in t1047.rows} == {"elastic", "sigma", "splunk"}
    # a parent finds its sub-techniques
    parent = cat.search_rules(RuleQuery(technique=("T1059",), per_page=1, facets=False)).total
    sub = cat.search_rules(RuleQuery(technique=("T1059.001",), per_page=1, facets=False)).total
    exact = cat.conn.execute(
        "SELECT count(DISTINCT rule_id) FROM rule_attack WHERE technique LIKE 'T1059%'"
    ).fetchone()[0]
    assert parent == exact > sub > 0
    sp = cat.search_rules(RuleQuery(source=("splunk",), severity=("critical",), per_page=1))
    (n,) = cat.conn.execute("SELECT count(*) FROM rules WHERE source = 'splunk' AND "
                            "severity = 'critical'").fetchone()
    assert sp.total == n
    assert cat.search_rules(RuleQuery(tactic=("Execution",), per_page=1)).total > 0
    ds = cat.search_rules(RuleQuery(data_source=("Powershell Script Block Logging 4104",)))
    assert EXAMPLE_ID in {r.id for r in ds.rows}
    ev = cat.search_rules(RuleQuery(event=("Microsoft-Windows-PowerShell/Operational 4104",),
                                    text="wmiexec"))
    assert EXAMPLE_ID in {r.id for r in ev.rows}
    both = cat.search_rules(RuleQuery(text="wmiexec", source=("splunk",)))
    assert {r.source for r in both.rows} == {"splunk"}


def test_sorts_and_pages(cat: Catalog) -> None:
    a = cat.search_rules(RuleQuery(sort="title", per_page=20, facets=False))
    b = cat.search_rules(RuleQuery(sort="title", per_page=10, page=2, facets=False))
    assert [r.id for r in a.rows[10:]] == [r.id for r in b.rows]
    sev = cat.search_rules(RuleQuery(sort="-severity", per_page=5, facets=False))
    assert all(r.severity == "critical" for r in sev.rows)
    low = cat.search_rules(RuleQuery(sort="severity", per_page=5, facets=False))
    assert all(r.severity in (None, "informational") for r in low.rows)


def test_catalog_wide_reads(cat: Catalog) -> None:
    cov = {t.technique: t for t in cat.attack_coverage()}
    assert cov["T1047"].name == "Windows Management Instrumentation"
    assert cov["T1047"].by_source["splunk"] >= 1 and cov["T1047"].by_source["sigma"] >= 1
    unknown = [t for t in cov.values() if not t.known]
    assert all(t.name == "unknown technique" for t in unknown)
    events = cat.event_coverage()
    assert any(str(e) == "Microsoft-Windows-PowerShell/Operational 4104" for e in events)
    macros = {m.key: m for m in cat.macros()}
    assert EXAMPLE_ID in macros["powershell"].rules
    story = cat.story("Suspicious WMI Use")
    assert EXAMPLE_ID in story.rules
    assert any(d.name == "Powershell Script Block Logging 4104" and d.rules > 0
               for d in cat.data_sources())
    assert cat.errors("splunk") == [] or all(e.source == "splunk" for e in cat.errors("splunk"))


def test_readonly_catalog_refuses_writes(corpus_db: Path) -> None:
    with Catalog.open(corpus_db, readonly=True) as c:
        with pytest.raises(Exception, match=r"readonly|read-only"):
            c.conn.execute("DELETE FROM rules")
        with pytest.raises(CatalogError):
            with c.transaction():
                pass


def test_facets_match_independent_counts(cat: Catalog) -> None:
    q = RuleQuery(text="powershell", source=("sigma",), per_page=5)
    page = cat.search_rules(q)
    ids = [r[0] for r in cat.conn.execute(
        "SELECT r.id FROM rules r WHERE r.source = 'sigma' AND r.rowid IN "
        "(SELECT rowid FROM rules_fts WHERE rules_fts MATCH 'powershell*')")]  # last word: prefix
    assert page.total == len(ids)
    marks = ",".join("?" * len(ids))
    want = dict(cat.conn.execute(
        f"SELECT lower(severity), count(*) FROM rules WHERE id IN ({marks}) "
        "AND coalesce(severity, '') <> '' GROUP BY 1", ids).fetchall())
    assert dict(page.facets["severity"]) == want
    tech = dict(cat.conn.execute(
        f"SELECT technique, count(*) FROM rule_attack WHERE rule_id IN ({marks}) GROUP BY 1",
        ids).fetchall())
    for t, n in page.facets["technique"]:
        assert tech[t] == n
    assert page.facets["source"] == (("sigma", len(ids)),)


def test_test_status_filter(cat: Catalog) -> None:
    tested = cat.search_rules(RuleQuery(test=("untested",), per_page=1, facets=False)).total
    none = cat.search_rules(RuleQuery(test=("none",), per_page=1, facets=False)).total
    results = cat.conn.execute("SELECT count(*) FROM test_results").fetchone()[0]
    assert tested + none + results >= cat.stats()["rules"]
    assert tested > 1000  # every Splunk detection names attack_data


def test_no_pipeline_failures_on_the_corpus(cat: Catalog) -> None:
    """The build's own safety net (``internal`` errors) never fires on the corpus, and the
    only Sigma load errors are files of ``unsupported/``."""
    assert [e for e in cat.errors() if e.kind == "internal"] == []
    assert all(e.path.startswith("unsupported/") for e in cat.errors("sigma"))
    assert cat.errors("splunk") == []
    assert [(e.path.rsplit("/", 1)[1], e.kind) for e in cat.errors("elastic")] == [
        ("execution_suspicious_python_app_execution_via_streamlit.toml", "duplicate-id"),
        ("execution_unsigned_or_untrusted_binary_execution_via_python.toml", "duplicate-id")]


def test_id_prefix_resolves_when_unique(cat: Catalog) -> None:
    assert cat.resolve(EXAMPLE_ID[:8]) == EXAMPLE_ID
    assert cat.resolve("  " + EXAMPLE_ID + " ") == EXAMPLE_ID
    with pytest.raises(RuleNotFound):
        cat.resolve("0734")  # too short to be taken as a prefix
