"""One store API behind every front end, on the whole-corpus catalog (``corpus_db``): the same
search text gives the same rules in the same order on the web page, its ``/api`` twin and
``ruleatlas search``; the same rule reference resolves (or fails) the same way on the rule page,
``/api/rules/{id}``, ``ruleatlas show``, ``indicators``, ``similar`` and ``test``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conftest import EXAMPLE_ID
from ruleatlas.cli import app
from ruleatlas.store import MAX_REF_LEN, Catalog
from ruleatlas.web.app import create_app

EXAMPLE_TITLE = "PowerShell Invoke WmiExec Usage"
RULES_IN_CORPUS = 4037 + 1711 + 2330  # Sigma + Splunk + Elastic rules (docs/catalog.md)
PER_PAGE = 50
runner = CliRunner()


@pytest.fixture(scope="module")
def client(corpus_db: Path) -> TestClient:
    return TestClient(create_app(corpus_db))


def _web_ids(client: TestClient, q: str) -> tuple[int, list[str]]:
    r = client.get("/rules", params={"q": q, "per_page": PER_PAGE})
    assert r.status_code == 200, r.text
    s = BeautifulSoup(r.text, "html.parser")
    ids = [a["href"].rsplit("/", 1)[-1] for a in s.select(".hit a.hit-title")]
    return int(s.select_one(".count strong").get_text()), ids


def _api_ids(client: TestClient, q: str) -> tuple[int, list[str]]:
    j = client.get("/api/rules", params={"q": q, "per_page": PER_PAGE}).json()
    assert j["ok"] is True, j
    return j["total"], [r["id"] for r in j["rows"]]


def _cli_ids(db: Path, q: str) -> tuple[int, list[str]]:
    res = runner.invoke(app, ["search", q, "--db", str(db), "--limit", str(PER_PAGE),
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    return out["total"], [r["id"] for r in out["rules"]]


QUERIES = ["wmiex", '"invoke-wmiexec"', 'foo" OR (bar*', "NEAR(", "-", "^", "",
           "invoke wmiexec", "mimikatz sekurlsa", "T1047", "(((", "*"]


@pytest.mark.parametrize("q", QUERIES)
def test_same_query_same_rules_on_web_api_and_cli(client: TestClient, corpus_db: Path,
                                                   q: str) -> None:
    web = _web_ids(client, q)
    assert _api_ids(client, q) == web
    assert _cli_ids(corpus_db, q) == web
    total, ids = web
    assert len(ids) == min(total, PER_PAGE) and len(set(ids)) == len(ids)


def test_search_semantics_on_the_corpus(client: TestClient) -> None:
    # the last word is a prefix: "wmiex" finds the rules that say "wmiexec"
    total, ids = _api_ids(client, "wmiex")
    assert EXAMPLE_ID in ids and total >= 3
    assert _api_ids(client, "wmiexec")[0] <= total
    # a phrase: both words, in that order (the example's search says "invoke-wmiexec")
    phrase_total, phrase_ids = _api_ids(client, '"invoke-wmiexec"')
    assert EXAMPLE_ID in phrase_ids and 0 < phrase_total <= total
    # no letter or digit, or nothing at all: no text filter, every rule, by title
    for q in ("", "-", "^", "(((", "*"):
        assert _api_ids(client, q)[0] == RULES_IN_CORPUS, q
    everything = client.get("/api/rules", params={"per_page": 5}).json()["rows"]
    titles = [r["title"].lower() for r in everything]
    assert titles == sorted(titles)
    # FTS operators are words: "foo" and the phrase "or bar" appear in no rule
    assert _api_ids(client, 'foo" OR (bar*')[0] == 0


@pytest.fixture(scope="module")
def ambiguous_title(corpus_db: Path) -> str:
    with Catalog.open(corpus_db, readonly=True) as cat:
        (title,) = cat.conn.execute(
            "SELECT title FROM rules GROUP BY title HAVING count(*) > 1 ORDER BY title LIMIT 1"
        ).fetchone()
    return str(title)


@pytest.mark.parametrize("ref", [EXAMPLE_ID, EXAMPLE_ID[:8], EXAMPLE_ID[:13].upper(),
                                 EXAMPLE_TITLE, EXAMPLE_TITLE.lower(), f"  {EXAMPLE_ID} "])
def test_one_resolver_finds_the_example(client: TestClient, corpus_db: Path, ref: str) -> None:
    r = client.get(f"/rules/{ref}")
    assert r.status_code == 200
    assert BeautifulSoup(r.text, "html.parser").select_one("h1").get_text(strip=True) == (
        EXAMPLE_TITLE)
    doc = client.get(f"/api/rules/{ref}").json()["rule"]
    assert doc["id"] == EXAMPLE_ID and doc["similar"], "similar rules of the resolved id"
    shown = json.loads(runner.invoke(app, ["show", ref, "--db", str(corpus_db), "--format",
                                           "json"]).stdout)
    assert shown["id"] == EXAMPLE_ID
    for cmd, key in (("indicators", "rule"), ("similar", "rule")):
        res = runner.invoke(app, [cmd, ref, "--db", str(corpus_db), "--format", "json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)[key] == EXAMPLE_ID


def test_ambiguous_and_unknown_references(client: TestClient, corpus_db: Path,
                                          ambiguous_title: str) -> None:
    for ref in (ambiguous_title, "no rule is called this"):
        r = client.get(f"/api/rules/{ref}")
        assert r.status_code == 404 and r.json()["ok"] is False
        assert client.get(f"/rules/{ref}").status_code == 404
        for cmd in ("show", "indicators", "similar", "test"):
            res = runner.invoke(app, [cmd, ref, "--db", str(corpus_db), "--no-store"]
                                if cmd == "test" else [cmd, ref, "--db", str(corpus_db)])
            assert res.exit_code == 1, (cmd, res.output)
            assert res.output.startswith("error: ") and "Traceback" not in res.output
    res = runner.invoke(app, ["show", ambiguous_title, "--db", str(corpus_db)])
    assert "is ambiguous" in res.output and res.output.count("\n") >= 3  # candidates listed
    assert "is ambiguous" in client.get(f"/api/rules/{ambiguous_title}").json()["error"]


@pytest.mark.parametrize("ref", ["x" * (MAX_REF_LEN + 1), "a" * 50_000, "0734bd21\x01"])
def test_impossible_references_are_refused_cleanly(client: TestClient, corpus_db: Path,
                                                   ref: str) -> None:
    from urllib.parse import quote

    url = quote(ref, safe="")
    assert client.get(f"/rules/{url}").status_code == 404
    r = client.get(f"/api/rules/{url}")
    assert r.status_code == 404 and set(r.json()) == {"ok", "error", "status"}
    for cmd in ("show", "indicators", "similar", "test"):
        args = [cmd, ref, "--db", str(corpus_db)] + (["--no-store"] if cmd == "test" else [])
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (cmd, res.output)
        assert res.output.count("\n") == 1 and res.output.startswith("error: a rule reference")
