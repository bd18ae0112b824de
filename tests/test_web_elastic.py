"""Elastic rules in the built three-vendor catalog and on the web: rule pages (EQL sequence,
threshold, new terms, machine learning, hunting file, ES|QL stages, KQL predicates), corpus
counts with an elastic column, facets, the ATT&CK matrix, safe Markdown, and the EQL sequence
page in a real browser (with its screenshot).

Expectations are read from the rule files themselves (quoted in the comments) or counted from
the corpus with tomllib, never copied from the catalog."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conftest import ELASTIC, EXAMPLE_ID
from ruleatlas.cli import app as cli_app
from ruleatlas.web.app import create_app
from test_browser import browser, page, shots  # noqa: F401  (fixtures, module-scoped browser)
from test_web_support import build_catalog, running_server

SEQUENCE_ID = "2772264c-6fb9-4d9d-9014-b416eed21254"  # lateral_movement_powershell_remoting_target
THRESHOLD_ID = "bbaa96b9-f36c-4898-ace2-581acb00a409"  # discovery_potential_syn_port_scan_detected
NEW_TERMS_ID = "9050506c-df6d-4bdf-bc82-fcad0ef1e8c1"  # command_and_control_genai_process_...
ML_ID = "78d3d8d9-b476-451d-a9e0-7a5addd70670"  # ml_cloudtrail_error_message_spike
HUNT_ID = "hunt-d0aed6f5-f84c-4da8-bb2a-b5ca0fbb55e0"  # detect_rare_lsass_process_access_attempts
ESQL_ID = "28371aa1-14ed-46cf-ab5b-2fc7d1942278"  # execution_potential_widespread_malware_...
KQL_ID = "6e9130a5-9be6-48e5-943a-9628bfc74b18"  # persistence_ad_adminsdholder

# The two hunting files whose uuid an earlier hunting file already holds (duplicate-id errors).
DUP_HUNTS = ("hunting/macos/queries/execution_suspicious_python_app_execution_via_streamlit.toml",
             "hunting/macos/queries/execution_unsigned_or_untrusted_binary_execution_via_python"
             ".toml")

EXAMPLE_SECTIONS = ["MITRE ATT&CK coverage", "Event coverage", "Rule body",
                    "Stages and Predicates", "Indicators", "Similar rules", "Stories",
                    "References", "Known false positives", "How to implement", "Tests"]


@pytest.fixture(scope="session")
def web_db(corpus_db: Path) -> Path:
    return Path(corpus_db)


@pytest.fixture(scope="session")
def client(web_db: Path) -> TestClient:
    return TestClient(create_app(web_db))


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def get(client: TestClient, rule_id: str) -> tuple[BeautifulSoup, dict[str, Any]]:
    r = client.get(f"/rules/{rule_id}")
    assert r.status_code == 200, r.text[:500]
    j = client.get(f"/api/rules/{rule_id}")
    assert j.status_code == 200
    return soup(r.text), j.json()["rule"]


def meta(s: BeautifulSoup) -> dict[str, str]:
    return {dt.get_text(strip=True): dt.find_next("dd").get_text(" ", strip=True)
            for dt in s.select("dl.meta dt")}


def headings(s: BeautifulSoup) -> list[str]:
    return [h.get_text(" ", strip=True) for h in s.select("main h2")]


def _corpus_files() -> Iterator[tuple[str, dict[str, Any]]]:
    for folder in ("rules", "rules_building_block", "hunting"):
        for p in sorted((ELASTIC / folder).rglob("*.toml")):
            rel = p.relative_to(ELASTIC).as_posix()
            if rel not in DUP_HUNTS:
                yield rel, tomllib.loads(p.read_text("utf-8"))


# --------------------------------------------------------------------------------------------
# Rule pages
# --------------------------------------------------------------------------------------------


def test_eql_sequence_page(client: TestClient) -> None:
    s, doc = get(client, SEQUENCE_ID)
    assert s.select_one("nav.crumbs").get_text(" ", strip=True) == "Detection rules › Elastic"
    assert s.select_one("h1").get_text(strip=True) == "Incoming Execution via PowerShell Remoting"
    m = meta(s)
    # maturity = "production", severity = "medium", risk_score = 47, type/language "eql"
    assert (m["Status"], m["Severity"], m["Type"], m["Language"], m["Risk score"]) == (
        "production", "medium", "eql", "EQL", "47")
    assert m["Author"] == "Elastic"
    assert m["Source"] == "github.com/elastic/detection-rules"
    # every section of the example page, in its order, plus the Elastic ones
    hs = headings(s)
    idx = [next(i for i, h in enumerate(hs) if h.startswith(x)) for x in EXAMPLE_SECTIONS]
    assert idx == sorted(idx)
    assert hs.index("Rule settings") < hs.index("MITRE ATT&CK coverage")
    assert hs.index("Investigation guide") < hs.index("Setup") < hs.index("Tests")
    assert [c.get_text() for c in s.select("#rule-settings code.index")] == [
        "winlogbeat-*", "logs-endpoint.events.process-*", "logs-endpoint.events.network-*",
        "logs-windows.sysmon_operational-*", "logs-sentinel_one_cloud_funnel.*"]
    # sequence by host.id with maxspan = 30s [network where ...] [process where ...]
    seq = s.select_one("#sequence")
    assert "Event sequence by host.id" in seq.select_one("h3").get_text(" ", strip=True)
    assert "within 30s" in seq.select_one("h3").get_text(" ", strip=True)
    steps = seq.select("ol.seq-steps > li")
    assert [st.select_one(".seq-n").get_text() for st in steps] == ["1", "2"]
    assert [st.select_one(".seq-head strong").get_text() for st in steps] == [
        "network", "process"]
    for st in steps:
        assert [k.get_text() for k in st.select("code.key")] == ["host.id"]
    first = [li.get_text(" ", strip=True) for li in steps[0].select("ul.predicates li")]
    assert "destination.port in 5985 , 5986" in first
    assert "source.ip ne 127.0.0.1" in first
    second = [li.get_text(" ", strip=True) for li in steps[1].select("ul.predicates li")]
    assert "process.parent.name eq wsmprovhost.exe" in second
    assert any(p.startswith("not process.executable") and "conhost.exe" in p for p in second)
    # the JSON twin carries the same sequence
    q = doc["sequence"]
    assert (q["kind"], q["by"], q["maxspan_text"]) == ("sequence", ["host.id"], "30s")
    assert [st["category"] for st in q["steps"]] == ["network", "process"]
    assert doc["details"]["risk_score"] == 47 and doc["language_label"] == "EQL"
    # the investigation guide is Markdown made HTML: "### Possible investigation steps"
    guide = s.select_one("#investigation-guide .markdown")
    assert guide.find("h3", string="Possible investigation steps") is not None
    assert guide.select("ul li")
    assert "Elastic Defend" in s.select_one("#setup .markdown").get_text()


def test_threshold_rule_page(client: TestClient) -> None:
    s, doc = get(client, THRESHOLD_ID)
    # [rule.threshold] field = ["destination.ip", "source.ip"], value = 1,
    # [[rule.threshold.cardinality]] field = "destination.port", value = 250
    assert doc["details"]["threshold"] == {
        "fields": ["destination.ip", "source.ip"], "value": 1,
        "cardinality": [{"field": "destination.port", "value": 250}]}
    panel = s.select_one("#threshold")
    assert [c.get_text() for c in panel.select("code")] == [
        "destination.ip", "source.ip", "destination.port"]
    text = panel.get_text(" ", strip=True)
    assert "at least 1 matching event share" in text and "at least 250 distinct" in text
    m = meta(s)
    assert (m["Type"], m["Language"], m["Risk score"]) == ("threshold", "KQL", "21")
    assert m["Schedule"] == "every 5m, looking back to now-9m"
    assert "Potential SYN-Based Port Scan Detected" == s.select_one("h1").get_text(strip=True)


def test_new_terms_rule_page(client: TestClient) -> None:
    s, doc = get(client, NEW_TERMS_ID)
    # [rule.new_terms] value = ["destination.domain"], history_window_start "now-7d"
    assert doc["details"]["new_terms"] == {"fields": ["destination.domain"],
                                           "history_window_start": "now-7d"}
    panel = s.select_one("#new-terms").get_text(" ", strip=True)
    assert "destination.domain" in panel and "now-7d" in panel
    assert meta(s)["Type"] == "new_terms"
    assert [c.get_text() for c in s.select("#rule-settings code.index")] == [
        "logs-endpoint.events.network*"]


def test_machine_learning_rule_page(client: TestClient) -> None:
    s, doc = get(client, ML_ID)
    # machine_learning_job_id = "high_distinct_count_error_message", anomaly_threshold = 50
    assert doc["details"]["machine_learning"] == {
        "jobs": ["high_distinct_count_error_message"], "anomaly_threshold": 50}
    panel = s.select_one("#machine-learning")
    assert [c.get_text() for c in panel.select("code")] == ["high_distinct_count_error_message"]
    assert "at least 50" in panel.get_text(" ", strip=True)
    assert doc["query"] == "" and meta(s)["Type"] == "machine_learning"


def test_hunting_file_page(client: TestClient) -> None:
    s, doc = get(client, HUNT_ID)
    assert s.select_one("nav.crumbs").get_text(" ", strip=True) == "Detection rules › Elastic"
    assert s.select_one("h1").get_text(strip=True) == "Rare LSASS Process Access Attempts"
    # two ES|QL queries; mitre = ["T1003", "T1003.001"]; two notes
    items = s.select("#hunting-queries ol.hunt-queries > li")
    assert [li.select_one(".tag").get_text() for li in items] == ["ES|QL", "ES|QL"]
    texts = [li.select_one("pre").get_text() for li in items]
    assert texts[0].lstrip().startswith("from logs-endpoint.events.api*")
    assert texts[1].lstrip().startswith("from logs-windows.sysmon_operational-*")
    assert len(s.select("#hunting-queries ul.hunt-notes li")) == 2
    assert [a["technique"] for a in doc["attack"]] == ["T1003", "T1003.001"]
    assert meta(s)["Type"] == "hunt"
    assert s.select_one("#body .hl") is not None  # the TOML, highlighted


def test_esql_rule_stages(client: TestClient) -> None:
    s, doc = get(client, ESQL_ID)
    # from logs-endpoint.alerts-* | where event.code in (...) and rule.name is not null
    # | keep ... | stats ... by rule.name, event.code | where Esql.host_id_count_distinct >= 3
    assert [st["command"] for st in doc["stages"]] == ["from", "where", "keep", "stats", "where"]
    assert doc["stages"][3]["by"] == ["rule.name", "event.code"]
    assert doc["group_by"] == ["rule.name", "event.code"]
    where = {(p["field"], p["op"], tuple(p["values"]), p["negated"])
             for p in doc["stages"][1]["predicates"]}
    assert ("event.code", "in", ("malicious_file", "memory_signature", "shellcode_thread"),
            False) in where
    heads = [h.get_text(" ", strip=True) for h in s.select("#stages .stage h3")]
    assert heads == ["Stage 1: from", "Stage 2: where", "Stage 3: keep", "Stage 4: stats",
                     "Stage 5: where"]
    assert [c.get_text() for c in s.select("#stages .stage")[3].select(".stage-by code")] == [
        "rule.name", "event.code"]
    assert meta(s)["Language"] == "ES|QL"


def _elastic_rules_on_event_code(code: str) -> set[str]:
    """Rule ids of Elastic KQL rules whose query says ``event.code:<code>`` (read by regex)."""
    rx = re.compile(rf'(?<![\w.])event\.code\s*:\s*"?{code}"?(?!\d)')
    return {d["rule"]["rule_id"] for _, d in _corpus_files()
            if "rule" in d and d["rule"].get("language") == "kuery"
            and rx.search(d["rule"].get("query", ""))}


def test_kql_rule_predicates_and_corpus_counts(client: TestClient, web_db: Path) -> None:
    s, doc = get(client, KQL_ID)
    # event.code:5136 and host.os.type:"windows" and
    # winlog.event_data.ObjectDN:CN=AdminSDHolder,CN=System*
    preds = [(p["field"], p["op"], p["values"]) for st in doc["stages"]
             for p in st["predicates"]]
    assert ("event.code", "eq", ["5136"]) in preds
    assert ("host.os.type", "eq", ["windows"]) in preds
    assert ("winlog.event_data.ObjectDN", "wildcard", ["CN=AdminSDHolder,CN=System*"]) in preds
    row = next(r for r in doc["indicators"] if r["field"] == "event.code")
    corpus = row["values"][0]["corpus"]
    assert set(corpus) == {"total", "elastic", "sigma", "splunk"}
    assert corpus["total"] == corpus["elastic"] + corpus["sigma"] + corpus["splunk"]
    # the indicator page lists every rule counted, and at least the KQL rules on 5136
    ind = client.get(f"/api/indicators/{row['field_key']}/5136").json()["indicator"]
    elastic_ids = {r["id"] for r in ind["by_source"].get("elastic", [])}
    assert len(elastic_ids) == corpus["elastic"]
    assert _elastic_rules_on_event_code("5136") <= elastic_ids
    assert len(_elastic_rules_on_event_code("5136")) >= 2
    # the page writes the count as the corpus column does
    li = next(tr for tr in s.select("#indicators tbody tr")
              if tr.select_one("td code").get_text() == "event.code")
    text = li.select_one(".corpus").get_text(strip=True)
    assert re.fullmatch(rf"corpus {corpus['total']} \(elastic {corpus['elastic']}.*\)", text)
    # ... and so does the CLI, in JSON and as a table
    runner = CliRunner()
    res = runner.invoke(cli_app, ["indicators", KQL_ID, "--db", str(web_db), "--format", "json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    cli_row = next(r for r in got["indicators"] if r["field"] == "event.code")
    assert cli_row["values"][0]["corpus"] == corpus
    res = runner.invoke(cli_app, ["indicators", KQL_ID, "--db", str(web_db)],
                        env={"COLUMNS": "200"})
    assert f"elastic {corpus['elastic']}" in res.output


def test_example_rule_corpus_names_every_source(client: TestClient) -> None:
    """The Splunk example's ScriptBlockText "*invoke-wmiexec*": one Sigma and one Splunk rule;
    no Elastic rule names Invoke-WMIExec (grep of the corpus: only a Markdown note does)."""
    doc = client.get(f"/api/rules/{EXAMPLE_ID}").json()["rule"]
    row = next(r for r in doc["indicators"] if r["field"] == "ScriptBlockText")
    assert row["values"][0]["corpus"] == {"total": 2, "elastic": 0, "sigma": 1, "splunk": 1}


# --------------------------------------------------------------------------------------------
# Facets, matrix
# --------------------------------------------------------------------------------------------


def test_facets_source_language_type_status_integration(client: TestClient) -> None:
    types = ["query", "eql", "esql", "threshold", "new_terms", "threat_match",
             "machine_learning"]
    qs = "&".join(f"type={t}" for t in types)
    d = client.get(f"/api/rules?source=elastic&{qs}&per_page=1").json()
    f = {k: dict(v) for k, v in d["facets"].items()}
    # the counts: 1,011 + 70 EQL, 737 + 55 KQL, 209 + 3 ES|QL, 1 Lucene, 106 ML
    assert f["language"] == {"eql": 1081, "kql": 792, "esql": 212, "lucene": 1, "ml": 106}
    assert d["total"] == 2192
    maturity: dict[str, int] = {}
    integration = 0
    for _, doc in _corpus_files():
        if "rule" in doc:
            mt = doc["metadata"]["maturity"]
            maturity[mt] = maturity.get(mt, 0) + 1
            ints = doc["metadata"].get("integration", [])
            ints = [ints] if isinstance(ints, str) else list(ints)
            ints += [i.get("package") for i in doc["rule"].get("related_integrations", [])]
        else:
            ints = list(doc["hunt"].get("integration", []))
        integration += "endpoint" in ints
    assert f["status"] == maturity
    all_el = client.get("/api/rules?source=elastic&per_page=1").json()
    fa = {k: dict(v) for k, v in all_el["facets"].items()}
    assert fa["source"] == {"elastic": 2330}
    assert fa["data_source"]["endpoint"] == integration
    assert fa["type"]["hunt"] == 138
    # the page shows the labels of the registry
    s = soup(client.get(f"/rules?source=elastic&{qs}").text)
    langs = [a.get_text() for a in s.select(".facet-language li a")]
    assert {"EQL", "KQL", "ES|QL"} <= set(langs)
    assert [a.get_text() for a in s.select(".facet-source li a")] == ["Elastic"]


def _technique_files(technique: str) -> int:
    n = 0
    for _, d in _corpus_files():
        ids: set[str] = set()
        if "rule" in d:
            for t in d["rule"].get("threat", []):
                for tech in t.get("technique", []):
                    ids.add(tech["id"])
                    ids.update(sub["id"] for sub in tech.get("subtechnique", []))
        else:
            ids.update(d["hunt"].get("mitre", []))
        n += any(i == technique or i.startswith(technique + ".") for i in ids)
    return n


def test_attack_matrix_and_navigator_include_elastic(client: TestClient) -> None:
    expected = _technique_files("T1046")  # Network Service Discovery
    assert expected >= 10

    def cell(src: str | None) -> int:
        m = client.get("/api/attack" + (f"?source={src}" if src else "")).json()["matrix"]
        disc = next(t for t in m["tactics"] if t["id"] == "discovery")
        return int(next(c for c in disc["techniques"] if c["id"] == "T1046")["count"])

    assert cell("elastic") == expected
    assert cell(None) == cell("elastic") + cell("sigma") + cell("splunk")
    m = client.get("/api/attack").json()["matrix"]
    assert m["sources"] == ["elastic", "sigma", "splunk"]
    layer = client.get("/attack/navigator.json?source=elastic").json()
    t = next(x for x in layer["techniques"] if x["techniqueID"] == "T1046")
    assert t["score"] == expected and layer["name"] == "Rule Atlas (elastic)"


# --------------------------------------------------------------------------------------------
# Markdown from a hostile rule
# --------------------------------------------------------------------------------------------

HOSTILE_NOTE = '''\
## Triage <script>alert(1)</script>

<img src=x onerror="alert(2)">
<div onmouseover="alert(3)">raw html</div>

[click](javascript:alert(4)) [data](data:text/html;base64,PHNjcmlwdD4=) [ok](https://example.org/x)
[vb](VBScript:msgbox) <javascript:alert(5)> ![pic](https://evil.example/p.png)
[rel](/etc/passwd) <a href="javascript:alert(6)">inline</a>
'''

HOSTILE_RULE = f'''\
[metadata]
creation_date = "2024/01/02"
maturity = "production"
updated_date = "2024/02/03"

[rule]
author = ["<b>Mallory</b>"]
description = "Hostile."
name = "Hostile <script>alert(7)</script>"
risk_score = 21
rule_id = "cccccccc-0000-4000-8000-000000000001"
severity = "low"
type = "eql"
language = "eql"
index = ["<script>alert(8)</script>"]
note = """{HOSTILE_NOTE}"""
setup = """{HOSTILE_NOTE}"""
query = \'\'\'
process where process.name == "cmd.exe"
\'\'\'
'''


@pytest.fixture(scope="module")
def hostile_elastic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile-elastic")
    repo = base / "elastic"
    (repo / "rules").mkdir(parents=True)
    (repo / "rules" / "hostile.toml").write_text(HOSTILE_RULE)
    return build_catalog([repo], base / "hostile.db")


def test_hostile_markdown_is_inert(hostile_elastic: Path) -> None:
    c = TestClient(create_app(hostile_elastic))
    html = c.get("/rules/cccccccc-0000-4000-8000-000000000001").text
    s = soup(html)
    for sec in ("#investigation-guide .markdown", "#setup .markdown"):
        md = s.select_one(sec)
        assert md is not None
        assert md.find("script") is None and md.find("img") is None and md.find("div") is None
        assert not [t for t in md.find_all(True) if any(a.startswith("on") for a in t.attrs)]
        hrefs = [a["href"] for a in md.select("a")]
        assert hrefs == ["https://example.org/x"]
        assert md.select_one("a")["rel"] == ["noopener", "noreferrer", "nofollow"]
        text = md.get_text()
        assert "<script>alert(1)</script>" in text  # shown as text
        assert '<img src=x onerror="alert(2)">' in text
        assert "javascript:alert(4)" in text  # the link stays text
    assert "<script>alert(" not in html  # nothing unescaped anywhere on the page
    assert "javascript:" not in " ".join(a.get("href", "") for a in s.select("a"))


# --------------------------------------------------------------------------------------------
# Browser: the EQL sequence page in Chromium, and its screenshot
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(web_db: Path) -> Iterator[str]:
    with running_server(web_db) as base:
        yield base


@pytest.mark.browser
def test_browser_eql_sequence_page(server: str, page: Any, shots: Any) -> None:  # noqa: F811
    page.goto(f"{server}/rules/{SEQUENCE_ID}")
    assert page.locator("nav.crumbs").inner_text().strip() == "Detection rules › Elastic"
    steps = page.locator("#sequence ol.seq-steps > li")
    assert steps.count() == 2
    assert steps.nth(0).locator(".seq-head strong").first.inner_text() == "network"
    assert steps.nth(1).locator(".seq-head strong").first.inner_text() == "process"
    assert steps.nth(0).locator("code.key").inner_text() == "host.id"
    # the steps are drawn one below the other, in order
    y0 = steps.nth(0).bounding_box()["y"]
    y1 = steps.nth(1).bounding_box()["y"]
    assert y0 < y1
    assert page.locator("#investigation-guide h3", has_text="Possible investigation steps"
                        ).count() == 1
    # the shot: the page scrolled to "Stages and Predicates", the sequence below its heading
    page.evaluate("document.getElementById('stages').scrollIntoView()")
    shots(page, "eql-sequence.png")


@pytest.mark.browser
def test_browser_hostile_markdown_runs_nothing(hostile_elastic: Path,
                                               page: Any) -> None:  # noqa: F811
    """The hostile rule's page in Chromium: no dialog, no script run, the guide is text."""
    page.add_init_script("window.__xss = 0; window.alert = function () { window.__xss++; };")
    with running_server(hostile_elastic) as base:
        page.goto(f"{base}/rules/cccccccc-0000-4000-8000-000000000001")
        page.wait_for_load_state("load")
        for link in page.locator("#investigation-guide .markdown a").all():
            assert link.get_attribute("href") == "https://example.org/x"
        assert page.locator("#investigation-guide .markdown h2").inner_text() == (
            "Triage <script>alert(1)</script>")
        assert page.evaluate("window.__xss") == 0
