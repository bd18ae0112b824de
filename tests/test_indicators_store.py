"""Indicator SQL and CLI on a real temporary SQLite catalog built from hand-made trees."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ruleatlas.cli  # noqa: F401  (registers every command on the app)
from ruleatlas.cli.app import app
from ruleatlas.indicators import extract
from ruleatlas.model import Analysis, And, Not, Op, Pattern, Predicate, Rule, Wild
from ruleatlas.store import AmbiguousRule, BadRuleReference, RuleNotFound
from ruleatlas.store import indicators as store
from ruleatlas.store.connection import connect
from ruleatlas.store.resolve import MAX_REF_LEN, resolve_rule

A = Wild.ANY
SCHEMA = Path(store.__file__).with_name("schema.sql")


def _rule(rid: str, source: str, title: str, language: str) -> Rule:
    return Rule(id=rid, source=source, path=f"{rid}.yml", title=title, language=language,
                query="", body="")


RULES: list[tuple[Rule, Analysis]] = [
    (
        _rule("s1", "splunk", "PowerShell Invoke WmiExec Usage", "spl"),
        Analysis("spl", condition=And((
            Predicate("EventCode", Op.EQ, ("4104",)),
            Predicate("ScriptBlockText", Op.IN, (Pattern((A, "invoke-wmiexec", A)),)),
        ))),
    ),
    (
        _rule("s2", "splunk", "Other 4104", "spl"),
        Analysis("spl", condition=And((
            Predicate("EventCode", Op.EQ, ("4104",)),
            Predicate("ScriptBlockText", Op.IN, (Pattern((A, "get-foo", A)),)),
        ))),
    ),
    (
        _rule("s3", "splunk", "Third 4104", "spl"),
        Analysis("spl", condition=Predicate("EventCode", Op.EQ, ("4104",))),
    ),
    (
        _rule("g1", "sigma", "Malicious PowerShell Commandlets", "sigma"),
        Analysis("sigma", condition=And((
            Predicate("ScriptBlockText", Op.CONTAINS, ("Invoke-WMIExec", "Get-Foo")),
            Not(Predicate("ScriptBlockText", Op.CONTAINS, ("benign",))),
        ))),
    ),
    (
        _rule("g2", "sigma", "Duplicate title", "sigma"),
        Analysis("sigma", condition=Predicate("Image", Op.ENDSWITH, ("\\cmd.exe",))),
    ),
    (
        _rule("g3", "sigma", "Duplicate title", "sigma"),
        Analysis("sigma", condition=Predicate("Image", Op.ENDSWITH, ("\\CMD.exe",))),
    ),
]


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.read_text())
    for rule, analysis in RULES:
        conn.execute(
            "INSERT INTO rules (id, source, root, path, title, language, query, body, rule_json)"
            " VALUES (?, ?, '/r', ?, ?, ?, '', '', '{}')",
            (rule.id, rule.source, rule.path, rule.title, rule.language),
        )
        store.write_indicators(conn, rule.id, rule.source, extract(rule, analysis))
    assert store.recount(conn) == 5
    conn.commit()
    conn.close()
    return path


def test_rule_indicators_document_shape_and_counts(db: Path):
    conn = connect(db)
    doc = store.rule_indicators(conn, "s1")
    assert doc == [
        {"field": "EventCode", "op": "eq", "negated": False, "field_key": "EventID",
         "phase": "event", "values": [{"value": '"4104"' if False else "4104", "key": "4104",
                     "corpus": {"total": 3, "elastic": 0, "sigma": 0, "splunk": 3}}]},
        {"field": "ScriptBlockText", "op": "in", "negated": False, "field_key": "ScriptBlockText",
         "phase": "event", "values": [{"value": '"*invoke-wmiexec*"', "key": "*invoke-wmiexec*",
                     "corpus": {"total": 2, "elastic": 0, "sigma": 1, "splunk": 1}}]},
    ]
    neg = store.rule_indicators(conn, "g1")[1]
    assert neg["negated"] and neg["values"][0]["key"] == "!*benign*"
    assert neg["values"][0]["corpus"]["total"] == 1


def test_recount_is_a_fresh_recount(db: Path):
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM indicators WHERE rule_id = 's3'")
    store.recount(conn)
    (total,) = conn.execute(
        "SELECT total FROM indicator_counts WHERE field_key = 'EventID' AND key = '4104'"
    ).fetchone()
    assert total == 2


def test_rules_with_indicator_by_source(db: Path):
    conn = connect(db)
    got = store.rules_with_indicator(conn, "ScriptBlockText", "*invoke-wmiexec*")
    assert {s: [r["id"] for r in rs] for s, rs in got.items()} == {"sigma": ["g1"],
                                                                  "splunk": ["s1"]}
    assert got["sigma"][0]["op"] == "contains" and got["sigma"][0]["value"] == "Invoke-WMIExec"


def test_similar_weights_rare_indicators_higher(db: Path):
    conn = connect(db)
    sim = store.similar_rules(conn, "s1", 10)
    assert [r["id"] for r in sim] == ["g1", "s2", "s3"]
    n = 6
    assert sim[0]["score"] == pytest.approx(math.log(n / 2), abs=1e-3)
    assert sim[1]["score"] == pytest.approx(math.log(n / 3), abs=1e-3)
    assert [s["key"] for s in sim[0]["shared"]] == ["*invoke-wmiexec*"]
    # g2 and g3 share Image *\cmd.exe (case folded): twins
    assert [r["id"] for r in store.similar_rules(conn, "g2")] == ["g3"]
    assert store.similar_rules(conn, "g2")[0]["share"] == 1.0


def test_top_and_rarest(db: Path):
    conn = connect(db)
    top = store.top_indicators(conn, limit=2)
    assert [(t["field_key"], t["key"], t["corpus"]["total"]) for t in top] == [
        ("EventID", "4104", 3), ("Image", "*\\cmd.exe", 2)]
    rare = store.rarest_indicators(conn, field="scriptblocktext")
    assert [(t["key"], t["corpus"]["total"]) for t in rare] == [
        ("*get-foo*", 2), ("*invoke-wmiexec*", 2)]


def test_resolve_rule_by_id_and_title(db: Path):
    conn = connect(db)
    assert resolve_rule(conn, "s1") == "s1"
    assert resolve_rule(conn, " s1 ") == "s1"
    assert resolve_rule(conn, "powershell invoke wmiexec usage") == "s1"
    with pytest.raises(AmbiguousRule) as e:
        resolve_rule(conn, "Duplicate title")
    assert [c.id for c in e.value.candidates] == ["g2", "g3"]
    assert "g2" in str(e.value) and "g3" in str(e.value)
    with pytest.raises(RuleNotFound):
        resolve_rule(conn, "nope")
    with pytest.raises(BadRuleReference, match="at most 512"):
        resolve_rule(conn, "s" * (MAX_REF_LEN + 1))
    with pytest.raises(BadRuleReference, match="control"):
        resolve_rule(conn, "s1\x00")


runner = CliRunner()


def test_cli_indicators_json_and_table(db: Path):
    res = runner.invoke(app, ["indicators", "s1", "--db", str(db), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["indicators"][1]["values"][0]["corpus"] == {"total": 2, "elastic": 0, "sigma": 1,
                                                           "splunk": 1}
    res = runner.invoke(app, ["indicators", "PowerShell Invoke WmiExec Usage", "--db", str(db)],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "*invoke-wmiexec*" in res.output


def test_cli_indicator_and_similar(db: Path):
    res = runner.invoke(app, ["indicator", "ScriptBlockText contains Invoke-WMIExec",
                              "--db", str(db), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["by_source"] == {"sigma": 1, "splunk": 1}
    res = runner.invoke(app, ["indicator", 'ScriptBlockText IN "*invoke-wmiexec*"',
                              "--db", str(db), "--format", "json"])
    assert json.loads(res.output)["total"] == 2
    res = runner.invoke(app, ["similar", "s1", "--db", str(db), "--format", "json"])
    assert json.loads(res.output)["similar"][0]["id"] == "g1"
    res = runner.invoke(app, ["similar", "s1", "--db", str(db)], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "Malicious PowerShell" in res.output


def test_cli_errors_are_clear(db: Path, tmp_path: Path):
    res = runner.invoke(app, ["indicators", "nope", "--db", str(db)])
    assert res.exit_code == 1 and "no rule with id, id prefix or title 'nope'" in res.output
    res = runner.invoke(app, ["indicators", "Duplicate title", "--db", str(db)])
    assert res.exit_code == 1 and "ambiguous" in res.output
    assert "g2" in res.output and "g3" in res.output
    for cmd in ("indicators", "similar"):
        res = runner.invoke(app, [cmd, "x" * 50_000, "--db", str(db)])
        assert res.exit_code == 2, res.output
        assert isinstance(res.exception, SystemExit)  # a clean exit, no traceback
        assert res.output.startswith("error: a rule reference is at most 512 characters")
        assert res.output.count("\n") == 1
    res = runner.invoke(app, ["indicators", "s1", "--db", str(tmp_path / "missing.db")])
    assert res.exit_code == 1 and "no catalog at" in res.output
    res = runner.invoke(app, ["indicator", "F frob x", "--db", str(db)])
    assert res.exit_code == 2 and "unknown operator" in res.output


def test_queries_work_on_a_query_only_row_connection(db: Path):
    # the web reads through mode=ro + query_only with sqlite3.Row rows
    conn = connect(db)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA query_only = 1")
    assert store.similar_rules(conn, "s1")[0]["id"] == "g1"
    assert store.rule_indicators(conn, "s1")[1]["values"][0]["corpus"]["total"] == 2
    assert store.top_indicators(conn, limit=1)[0]["key"] == "4104"
