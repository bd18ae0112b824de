"""In-process tests of the web catalog (Starlette TestClient = httpx over ASGI) on real catalogs
built by the real pipeline: the whole corpus (``corpus_db``) and a hostile hand-made one."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from starlette.testclient import TestClient

from conftest import EXAMPLE_ID
from ruleatlas.web.app import create_app
from ruleatlas.web.render import CSP
from ruleatlas.web.views import all_pages
from test_web_support import (
    HOSTILE_SIGMA_ID,
    HOSTILE_SPLUNK_ID,
    build_catalog,
    make_hostile_repos,
)

SECTIONS = [
    "MITRE ATT&CK coverage",
    "Event coverage",
    "Rule body",
    "Stages and Predicates",
    "Indicators",
    "Similar rules",
    "Stories",
    "References",
    "Known false positives",
    "How to implement",
    "Tests",
]
_SRC = r"(elastic|sigma|splunk) \d+"
CORPUS_RE = re.compile(rf"^corpus \d+( \({_SRC}(, {_SRC})*\))?$")


@pytest.fixture(scope="session")
def web_db(corpus_db: Path) -> Path:
    """The whole-corpus catalog built once per session (conftest ``corpus_db``)."""
    return Path(corpus_db)


@pytest.fixture(scope="session")
def client(web_db: Path) -> TestClient:
    return TestClient(create_app(web_db))


@pytest.fixture(scope="session")
def spl_analyzed(web_db: Path) -> None:
    """The Splunk example's stages and indicators read what the SPL analyzer produced: it gives
    indicators to 1,627 of the 1,711 ESCU rules (measured), so fewer than 1,600 means the SPL
    layer is broken, and those tests fail here saying so."""
    from ruleatlas.store.connection import connect

    conn = connect(web_db)
    (n,) = conn.execute("SELECT count(DISTINCT rule_id) FROM indicators "
                        "WHERE source = 'splunk'").fetchone()
    conn.close()
    assert n >= 1600, f"the SPL analyzer gave indicators to only {n} ESCU rules"


@pytest.fixture(scope="session")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    return build_catalog(make_hostile_repos(base), base / "hostile.db")


@pytest.fixture(scope="session")
def hostile(hostile_db: Path) -> TestClient:
    return TestClient(create_app(hostile_db))


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


# --------------------------------------------------------------------------------------------
# The example rule page
# --------------------------------------------------------------------------------------------


def test_example_rule_page_has_every_section_in_order(
    client: TestClient, spl_analyzed: None
) -> None:
    r = client.get(f"/rules/{EXAMPLE_ID}")
    assert r.status_code == 200
    s = soup(r.text)
    crumbs = s.select_one("nav.crumbs").get_text(" ", strip=True)
    assert crumbs == "Detection rules › Splunk"
    assert s.select_one("h1").get_text(strip=True) == "PowerShell Invoke WmiExec Usage"
    meta = [dt.get_text(strip=True) for dt in s.select("dl.meta dt")]
    assert meta == ["Status", "Severity", "Group by", "Author", "Source"]
    dd = {dt.get_text(strip=True): dt.find_next("dd") for dt in s.select("dl.meta dt")}
    assert dd["Status"].get_text(strip=True) == "production"
    assert "Michael Haag" in dd["Author"].get_text()
    src = dd["Source"].find("a")
    assert src.get_text(strip=True) == "github.com/splunk/security_content"
    assert src["href"].startswith("https://github.com/splunk/security_content/")
    group_by = dd["Group by"].get_text(strip=True)
    doc = client.get(f"/api/rules/{EXAMPLE_ID}").json()["rule"]
    assert group_by == ", ".join(doc["group_by"]) and "ScriptBlockText" in group_by
    assert "Invoke-WMIExec utility" in s.select_one("#description").get_text()
    h2 = [h.get_text(" ", strip=True) for h in s.select("main h2")]
    got = [next((x for x in SECTIONS if h.startswith(x)), h) for h in h2]
    assert [x for x in got if x in SECTIONS] == SECTIONS
    assert h2[SECTIONS.index("Rule body")] == "Rule body splunk"


def test_example_rule_attack_events_body_stages(client: TestClient, spl_analyzed: None) -> None:
    s = soup(client.get(f"/rules/{EXAMPLE_ID}").text)
    attack = s.select_one("#attack")
    hrefs = [a["href"] for a in attack.select("a")]
    assert "https://attack.mitre.org/techniques/T1047/" in hrefs
    assert "/rules?technique=T1047" in hrefs
    assert "Windows Management Instrumentation" in attack.get_text()
    assert "Execution" in attack.get_text()
    assert "4104" in s.select_one("#events").get_text()
    body = s.select_one("#body .hl")
    assert body is not None and body.select("span.nt"), "YAML keys are highlighted"
    assert "invoke-wmiexec" in body.get_text()
    stages = s.select("#stages .stage")
    assert len(stages) >= 3
    assert stages[0].select_one("h3").get_text(strip=True) == "Stage 1: search"
    assert "`powershell` EventCode=4104" in stages[0].select_one("pre").get_text()
    assert any(st.select_one("details.expanded") for st in stages), "macro text on demand"


def test_example_rule_indicators_and_corpus_column(client: TestClient, spl_analyzed: None) -> None:
    s = soup(client.get(f"/rules/{EXAMPLE_ID}").text)
    doc = client.get(f"/api/rules/{EXAMPLE_ID}").json()["rule"]
    table = s.select_one("#indicators table")
    assert [th.get_text(strip=True) for th in table.select("thead th")] == [
        "Field", "Kind", "Values"]
    rows = {tr.select_one("td code").get_text(): tr for tr in table.select("tbody tr")}
    assert "EventCode" in rows and "ScriptBlockText" in rows
    for tr in table.select("tbody tr"):
        for li in tr.select("ul.values li"):
            corpus = li.select_one(".corpus").get_text(strip=True)
            assert CORPUS_RE.match(corpus), corpus
            a = li.select_one("a.ival")
            assert a["href"].startswith("/indicators/") and a["title"]
    li = rows["ScriptBlockText"].select_one("ul.values li")
    assert "invoke-wmiexec" in li.select_one("a").get_text().lower()
    # the page shows exactly what the document says
    row = next(r for r in doc["indicators"] if r["field"] == "ScriptBlockText")
    c = row["values"][0]["corpus"]
    expect = f"corpus {c['total']}"
    parts = [f"{k} {c[k]}" for k in sorted(c) if k != "total" and c[k]]
    if parts:
        expect += f" ({', '.join(parts)})"
    assert li.select_one(".corpus").get_text(strip=True) == expect
    assert c["splunk"] >= 1 and c["sigma"] >= 1, "a Sigma rule looks for invoke-wmiexec too"
    ev = rows["EventCode"].select_one("ul.values li .corpus").get_text()
    assert int(ev.split()[1]) > 50, "EventCode 4104 is shared by many PowerShell rules"


def test_indicator_link_leads_to_its_rules(client: TestClient, spl_analyzed: None) -> None:
    s = soup(client.get(f"/rules/{EXAMPLE_ID}").text)
    href = next(a["href"] for a in s.select("#indicators a.ival")
                if "wmiexec" in a.get_text().lower())
    r = client.get(href)
    assert r.status_code == 200
    page = soup(r.text)
    assert EXAMPLE_ID in {a["href"].rsplit("/", 1)[-1] for a in page.select("main table a")}
    assert {h.get_text(" ", strip=True).split()[0] for h in page.select("section h2")} >= {
        "sigma", "splunk"}


def test_similar_rules_and_stories(client: TestClient, spl_analyzed: None) -> None:
    s = soup(client.get(f"/rules/{EXAMPLE_ID}").text)
    similar = s.select("#similar li a")
    assert similar, "the Sigma invoke-wmiexec rule at least"
    assert any(a["href"].startswith("/rules/") for a in similar)
    assert "Suspicious WMI Use" in s.select_one("#stories").get_text()
    story = s.select_one("#stories a")["href"]
    assert client.get(story).status_code == 200


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


def test_search_wmiexec_finds_the_example_with_highlight(client: TestClient) -> None:
    r = client.get("/rules", params={"q": "wmiexec"})
    assert r.status_code == 200
    s = soup(r.text)
    links = [a["href"] for a in s.select(".hit a.hit-title")]
    assert f"/rules/{EXAMPLE_ID}" in links[:5]
    marks = [m.get_text().lower() for m in s.select(".snippet mark")]
    assert marks and all("wmiexec" in m for m in marks)
    j = client.get("/api/rules", params={"q": "wmiexec"}).json()
    assert j["ok"] and j["total"] == int(s.select_one(".count strong").get_text())
    assert EXAMPLE_ID in [x["id"] for x in j["rows"]]


def test_filter_by_technique_and_combined(client: TestClient) -> None:
    j = client.get("/api/rules", params={"technique": "T1047", "per_page": 200}).json()
    assert j["total"] > 10
    assert all(any(t.split(".")[0] == "T1047" for t in row["techniques"]) for row in j["rows"])
    both = client.get("/api/rules", params={"technique": "T1047", "source": "splunk",
                                            "q": "wmiexec"}).json()
    assert EXAMPLE_ID in [x["id"] for x in both["rows"]]
    assert all(x["source"] == "splunk" for x in both["rows"])
    facets = dict((k, dict(v)) for k, v in j["facets"].items())
    assert sum(facets["source"].values()) == j["total"]
    assert "execution" in facets["tactic"]


def test_filters_or_within_and_across(client: TestClient) -> None:
    a = client.get("/api/rules", params={"source": "sigma", "per_page": 1}).json()["total"]
    b = client.get("/api/rules", params={"source": "splunk", "per_page": 1}).json()["total"]
    ab = client.get("/api/rules?source=sigma&source=splunk&per_page=1").json()["total"]
    assert ab == a + b
    hi = client.get("/api/rules?source=sigma&severity=high&per_page=1").json()["total"]
    assert 0 < hi < a


@pytest.mark.parametrize("sort", ["title", "-title", "modified", "-modified", "severity",
                                  "-severity", "source", "relevance"])
def test_sorts_and_pagination(client: TestClient, sort: str) -> None:
    p1 = client.get("/api/rules", params={"sort": sort, "per_page": 20}).json()
    p2 = client.get("/api/rules", params={"sort": sort, "per_page": 20, "page": 2}).json()
    assert p1["pages"] > 2 and len(p1["rows"]) == 20
    assert not {x["id"] for x in p1["rows"]} & {x["id"] for x in p2["rows"]}
    if sort == "title":
        titles = [x["title"].lower() for x in p1["rows"]]
        assert titles == sorted(titles)


@pytest.mark.parametrize("q", ['"', "NEAR(a b)", "*", "a OR", "title:foo", "^x", "'; DROP",
                               "(((", "é中文", "-a"])
def test_fts_syntax_in_user_text_is_harmless(client: TestClient, q: str) -> None:
    r = client.get("/api/rules", params={"q": q})
    assert r.status_code == 200 and r.json()["ok"] is True


# --------------------------------------------------------------------------------------------
# ATT&CK, events, indicators, macros, stories
# --------------------------------------------------------------------------------------------


def test_attack_matrix_and_navigator(client: TestClient) -> None:
    s = soup(client.get("/attack").text)
    cols = [h.get_text(strip=True) for h in s.select(".tactic h2")]
    assert cols[:3] == ["Reconnaissance", "Resource Development", "Initial Access"]
    cell = s.select_one('a.cell[data-technique="T1047"]')
    assert cell["href"] == "/rules?technique=T1047"
    assert re.search(r"heat-[1-6]", " ".join(cell["class"]))
    assert s.select_one('a.cell[data-technique="T1059.001"]') is not None
    per = soup(client.get("/attack?source=splunk").text)
    assert per.select_one('a.cell[data-technique="T1047"]')["href"] == (
        "/rules?technique=T1047&source=splunk")
    nav = client.get("/attack/navigator.json?source=splunk").json()
    assert nav["domain"] == "enterprise-attack"
    t = {x["techniqueID"]: x["score"] for x in nav["techniques"]}
    spl = client.get("/api/rules?technique=T1047&source=splunk&per_page=1").json()["total"]
    assert t["T1047"] == spl


def test_events_macros_stories_indicators(client: TestClient) -> None:
    ev = client.get("/api/events").json()["coverage"]
    assert any(e["event_id"] == "4104" for e in ev["events"])
    assert ev["data_sources"]
    macros = client.get("/api/macros").json()["macros"]
    assert any(m["name"] == "powershell" for m in macros)
    st = client.get("/api/stories").json()["stories"]
    assert any(x["name"] == "Suspicious WMI Use" for x in st)
    ex = client.get("/api/indicators").json()["explorer"]
    assert ex and all(f["common"] for f in ex)
    assert ex[0]["common"][0]["total"] >= ex[0]["rare"][0]["total"]


def test_macro_usage(client: TestClient, spl_analyzed: None) -> None:
    macros = client.get("/api/macros").json()["macros"]
    pw = next(m for m in macros if m["name"] == "powershell")
    assert pw["used_by"] > 10
    one = client.get("/api/macros/powershell").json()
    assert EXAMPLE_ID in [r["id"] for r in one["macros"][0]["rules"]]


# --------------------------------------------------------------------------------------------
# Every route: JSON twin, errors, headers
# --------------------------------------------------------------------------------------------


def _sample_paths(client: TestClient) -> dict[str, str]:
    """One real URL per page of the corpus catalog."""
    from ruleatlas.web.render import Urls

    field = client.get("/api/indicators").json()["explorer"][0]
    story = client.get("/api/stories").json()["stories"][0]["name"]
    return {
        "home": "/", "rules": "/rules?q=wmiexec", "rule": f"/rules/{EXAMPLE_ID}",
        "indicators": "/indicators",
        "indicator": Urls().indicator(field["field"], field["common"][0]["key"]),
        "attack": "/attack", "events": "/events", "macros": "/macros",
        "macro": "/macros/powershell", "stories": "/stories", "story": Urls().story(story),
    }


@pytest.mark.parametrize("page", [p for p in all_pages() if p.api], ids=lambda p: p.name)
def test_every_page_has_a_json_twin(client: TestClient, page: Any) -> None:
    url = _sample_paths(client)[page.name]
    html = client.get(url)
    assert html.status_code == 200, url
    assert html.headers["content-type"].startswith("text/html")
    api = "/api" + (url if url != "/" else "")
    assert f'<{api}>; rel="alternate"' in html.headers["link"]
    j = client.get(api)
    assert j.status_code == 200 and j.headers["content-type"].startswith("application/json")
    assert j.json()["ok"] is True
    assert soup(html.text).select_one(f'link[rel=alternate][href="{api}"]') is not None


def test_openapi_describes_every_api_route(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for page in all_pages():
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", ("/api" + page.path) if page.api
                      else page.path).rstrip("/") or "/api"
        assert path in spec["paths"], path
        op = spec["paths"][path]["get"]
        assert {p["name"] for p in op["parameters"]} >= set(page.params)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/rules?page=abc", 400), ("/rules?page=0", 400), ("/rules?per_page=100000", 400),
        ("/rules?sort=bogus", 400), ("/rules?bogus=1", 400), ("/rules?technique=X1", 400),
        ("/rules?tactic=nope", 400), ("/rules?q=" + "a" * 400, 400), ("/rules?q=a%00b", 400),
        ("/rules?page=1&page=2", 400), ("/rules?page=999", 404), ("/rules/nope", 404),
        ("/indicators/x/nothing-here", 404), ("/macros/nope", 404), ("/stories/nope", 404),
        ("/nope", 404), ("/attack?source=x&source=y", 400), ("/indicators?limit=-1", 400),
    ],
)
def test_errors_html_and_json_shape(client: TestClient, url: str, status: int) -> None:
    r = client.get(url)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    j = client.get("/api" + url)
    assert j.status_code == status
    body = j.json()
    assert set(body) == {"ok", "error", "status"}
    assert body["ok"] is False and body["status"] == status and body["error"]


def test_method_not_allowed_is_json_under_api(client: TestClient) -> None:
    r = client.post("/api/rules")
    assert r.status_code == 405 and r.json() == {"ok": False, "error": "method not allowed",
                                                 "status": 405}


@pytest.mark.parametrize("url", ["/static/../app.py", "/static/%2e%2e/app.py",
                                 "/static/..%2fapp.py", "/static/%2e%2e%2fviews/rule.py",
                                 "/static/....//app.py", "/static//etc/passwd"])
def test_no_path_traversal_on_static(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 404 or "create_app" not in r.text
    assert "create_app" not in r.text and "root:" not in r.text


def test_static_assets_and_headers(client: TestClient) -> None:
    for url in ("/static/style.css", "/static/pygments.css", "/static/search.js"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-security-policy"] == CSP
    r = client.get("/")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "'unsafe-inline'" not in r.headers["content-security-policy"]


@pytest.mark.parametrize("name", ["home", "rules", "rule", "attack", "events", "macros",
                                  "stories", "indicators"])
def test_no_inline_script_or_style(client: TestClient, name: str) -> None:
    s = soup(client.get(_sample_paths(client)[name]).text)
    assert all(tag.get("src") for tag in s.find_all("script"))
    assert not s.find_all(style=True) and not s.find_all("style")
    assert not [t for t in s.find_all(True) if any(a.startswith("on") for a in t.attrs)]


def test_server_is_read_only(web_db: Path, client: TestClient) -> None:
    before = hashlib.sha256(web_db.read_bytes()).hexdigest()
    for url in _sample_paths(client).values():
        client.get(url)
    conn = client.app.state.pool.get()
    with pytest.raises(Exception, match=r"readonly|read-only|read only"):
        conn.execute("DELETE FROM rules")
    assert hashlib.sha256(web_db.read_bytes()).hexdigest() == before


# --------------------------------------------------------------------------------------------
# Hostile catalog: every text is shown as text
# --------------------------------------------------------------------------------------------


def _assert_inert(html: str) -> None:
    s = soup(html)
    for tag in s.find_all("script"):
        assert re.match(r"^(/|(\.\./)*)static/[\w.-]+\.js$", tag.get("src", "")), tag
    assert not s.find_all(["img", "svg", "iframe", "b"]), "markup from rule text"
    for tag in s.find_all(True):
        for attr, value in tag.attrs.items():
            assert not attr.startswith("on"), (tag.name, attr)
            if attr in ("href", "src", "action"):
                v = value if isinstance(value, str) else " ".join(value)
                assert not re.match(r"\s*(javascript|data|vbscript):", v, re.I), v


@pytest.mark.parametrize("rule_id", [HOSTILE_SIGMA_ID, HOSTILE_SPLUNK_ID])
def test_hostile_rule_pages_are_inert(hostile: TestClient, rule_id: str) -> None:
    r = hostile.get(f"/rules/{rule_id}")
    assert r.status_code == 200
    _assert_inert(r.text)
    s = soup(r.text)
    assert "<script>alert(1)</script>" in s.get_text() or "<svg onload" in s.get_text()
    refs = s.select_one("#references")
    assert "javascript:alert(1)" in refs.get_text()
    assert all(a["href"].startswith("https://") for a in refs.select("a"))
    assert refs.select(".unsafe-link")


def test_hostile_every_page_is_inert(hostile: TestClient) -> None:
    urls = ["/", "/rules", "/rules?q=alert", "/rules?q=script", "/attack", "/events",
            "/macros", "/macros/sysmon", "/stories", "/indicators",
            f"/rules/{HOSTILE_SIGMA_ID}", f"/rules/{HOSTILE_SPLUNK_ID}"]
    stories = hostile.get("/api/stories").json()["stories"]
    from ruleatlas.web.render import Urls

    urls += [Urls().story(x["name"]) for x in stories]
    for rid in (HOSTILE_SIGMA_ID, HOSTILE_SPLUNK_ID):
        for row in hostile.get(f"/api/rules/{rid}").json()["rule"]["indicators"]:
            for v in row["values"]:
                urls.append(Urls().indicator(row.get("field_key") or row["field"], v["key"]))
    for url in urls:
        r = hostile.get(url)
        assert r.status_code == 200, url
        _assert_inert(r.text)


def test_hostile_snippets_escape_before_marking(hostile: TestClient) -> None:
    s = soup(hostile.get("/rules", params={"q": "alert"}).text)
    snippets = s.select(".snippet")
    assert snippets
    for sn in snippets:
        assert {c.name for c in sn.find_all(True)} <= {"mark"}
    j = hostile.get("/api/rules", params={"q": "alert"}).json()
    assert json.dumps(j)  # plain JSON, markers spelled << >>


def test_export_site(hostile_db: Path, tmp_path: Path) -> None:
    from ruleatlas.web.export import export

    out = tmp_path / "site"
    stats = export(hostile_db, out)
    assert stats["rules"] == 2
    for rel in ("index.html", "search.html", "search-index.json", "attack.html",
                "navigator.json", "events.html", "macros.html", "stories.html",
                "static/style.css", "static/pygments.css", "static/export-search.js",
                f"rules/{HOSTILE_SIGMA_ID}.html"):
        assert (out / rel).is_file(), rel
    files = [p for p in out.rglob("*") if p.is_file()]
    assert all(out in p.resolve().parents for p in files)
    for p in files:
        if p.suffix == ".html":
            _assert_inert(p.read_text())
    idx = json.loads((out / "search-index.json").read_text())
    assert {r["id"] for r in idx} == {HOSTILE_SIGMA_ID, HOSTILE_SPLUNK_ID}
    # each page's JSON twin, as the server's /api answers it
    assert stats["json"] >= 2 + 6
    client = TestClient(create_app(hostile_db))
    for rid in (HOSTILE_SIGMA_ID, HOSTILE_SPLUNK_ID):
        twin = json.loads((out / f"api/rules/{rid}.json").read_text())
        live = client.get(f"/api/rules/{rid}").json()
        assert twin == json.loads(json.dumps(live)), rid
        assert rid in json.dumps(twin)
    assert (out / "api/attack.json").is_file() and (out / "api/events.json").is_file()
    bare = export(hostile_db, tmp_path / "bare", json_twins=False)
    assert bare["json"] == 0 and not (tmp_path / "bare" / "api").exists()
    page = soup((out / f"rules/{HOSTILE_SIGMA_ID}.html").read_text())
    for a in page.select("a[href]"):
        href = a["href"]
        if href.startswith(("http://", "https://", "#")):
            continue
        target = (out / "rules" / href.split("#")[0].split("?")[0]).resolve()
        assert target.is_file(), href


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    from ruleatlas.store import CatalogError

    with pytest.raises(CatalogError, match="no catalog at"):
        create_app(tmp_path / "none.db")


def test_every_route_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "web.md").read_text()
    for page in all_pages():
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", page.path)
        assert f"`{path}`" in doc or f"`{path}`," in doc, path


def test_cli_serve_and_export_refuse_a_missing_catalog(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ruleatlas.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--db", str(tmp_path / "none.db"), "--port", "0"])
    assert r.exit_code == 2 and "no catalog at" in r.output
    r = runner.invoke(app, ["export-site", str(tmp_path / "out"), "--db",
                            str(tmp_path / "none.db")])
    assert r.exit_code == 2 and "no catalog at" in r.output
    assert not (tmp_path / "out").exists()


def test_cli_export_site(hostile_db: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ruleatlas.cli import app

    r = CliRunner().invoke(app, ["export-site", str(tmp_path / "out"), "--db", str(hostile_db)])
    assert r.exit_code == 0, r.output
    assert "2 rule pages" in r.output
    assert (tmp_path / "out" / "index.html").is_file()


def test_query_time_limit(web_db: Path) -> None:
    """A runaway query is interrupted inside SQLite and reported, not left running."""
    from ruleatlas.store import QueryTimeout, ReadPool

    pool = ReadPool(web_db)
    slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT count(*) FROM n")
    with pytest.raises(QueryTimeout, match=r"longer than 0\.2s"):
        pool.run(lambda c: c.execute(slow).fetchone(), timeout=0.2)
    assert pool.run(lambda c: c.execute("SELECT count(*) FROM rules").fetchone()[0]) > 0
    pool.close()


def test_head_requests_and_no_control_characters_in_json(client: TestClient) -> None:
    r = client.head(f"/rules/{EXAMPLE_ID}")
    assert r.status_code == 200 and r.content == b""
    raw = client.get("/api/rules", params={"q": "wmiexec"}).content
    assert b"\\u0002" not in raw and b"\x02" not in raw
    assert "<<" in json.dumps(client.get("/api/rules", params={"q": "wmiexec"}).json()["rows"])


def test_test_results_show_up_while_serving(tmp_path: Path) -> None:
    """The engine records a result while the server runs: the rule page, the test filter and
    facet follow (whole-catalog caches are keyed on the file and its WAL)."""
    from ruleatlas.store.results import write_results

    db = build_catalog(make_hostile_repos(tmp_path), tmp_path / "live.db")
    c = TestClient(create_app(db))
    assert c.get("/api/rules", params={"test": "pass"}).json()["total"] == 0
    assert c.get(f"/api/rules/{HOSTILE_SPLUNK_ID}").json()["rule"]["test_result"] is None
    assert "pass" not in dict(c.get("/api/rules").json()["facets"]["test"])
    write_results(db, [{"id": HOSTILE_SPLUNK_ID, "status": "pass", "matched": 3,
                        "expected": 1, "reason": "<b>matched</b>"}])
    j = c.get("/api/rules", params={"test": "pass"}).json()
    assert [r["id"] for r in j["rows"]] == [HOSTILE_SPLUNK_ID]
    assert dict(c.get("/api/rules").json()["facets"]["test"])["pass"] == 1
    page = soup(c.get(f"/rules/{HOSTILE_SPLUNK_ID}").text)
    result = page.select_one(".test-result")
    assert "pass" in result.get_text() and "3 matched" in result.get_text()
    assert "<b>matched</b>" in result.get_text() and not result.find("b")


def test_search_by_rule_id(client: TestClient) -> None:
    for q in (EXAMPLE_ID, EXAMPLE_ID[:8], EXAMPLE_ID.upper()):
        j = client.get("/api/rules", params={"q": q}).json()
        assert [m["id"] for m in j["id_matches"]] == [EXAMPLE_ID], q
    s = soup(client.get("/rules", params={"q": EXAMPLE_ID[:13]}).text)
    assert s.select_one(f'.id-match a[href="/rules/{EXAMPLE_ID}"]') is not None
    assert client.get("/api/rules", params={"q": "wmiexec"}).json()["id_matches"] == []


def test_indicator_urls_round_trip_for_odd_keys(web_db: Path) -> None:
    """Keys with slashes, backslashes, dots, quotes, spaces, '%', '?', '#', non-ASCII: the URL
    the page links to leads back to that exact indicator. Over the real server: Starlette's
    TestClient decodes paths twice (``%2500`` would arrive as NUL), uvicorn decodes once."""
    import httpx

    from ruleatlas.store.connection import connect
    from ruleatlas.web.render import Urls
    from test_web_support import running_server

    conn = connect(web_db)
    odd = conn.execute(
        "SELECT field_key, key FROM indicator_counts WHERE key GLOB '*[/\\\\%?#. \"]*' "
        "OR key = '' OR key <> CAST(key AS BLOB) ORDER BY length(key) DESC LIMIT 150"
    ).fetchall()
    conn.close()
    assert len(odd) > 50
    with running_server(web_db) as base, httpx.Client(base_url=base) as http:
        for fk, key in odd:
            url = Urls().indicator(fk, key).replace("/indicators/", "/api/indicators/", 1)
            r = http.get(url)
            assert r.status_code == 200, (fk, key)
            got = r.json()["indicator"]
            assert (got["field"], got["key"]) == (fk, key)
