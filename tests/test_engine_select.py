"""``engine.catalog.select``: the rule filter of ``ruleatlas hunt --rules`` / ``test``."""

from __future__ import annotations

from ruleatlas.engine.catalog import LoadedRule, select
from ruleatlas.model import Analysis, Rule


def lr(rid: str, source: str, title: str, path: str) -> LoadedRule:
    rule = Rule(id=rid, source=source, path=path, title=title, language="x", query="q",
                body="b")
    return LoadedRule(rule, Analysis(language="x"), "/r")


RULES = [lr("id-a", "sigma", "AWS ElastiCache Security Group Created", "rules/cloud/a.yml"),
         lr("id-b", "elastic", "Bitsadmin Activity", "rules/windows/b.toml"),
         lr("id-c", "splunk", "Elastic Agent Tampering", "detections/c.yml")]


def test_a_source_name_selects_that_source_only() -> None:
    # "elastic" is in the titles of a Sigma and a Splunk rule: neither is an Elastic rule
    assert [x.rule.id for x in select(RULES, ["elastic"])] == ["id-b"]
    assert [x.rule.id for x in select(RULES, ["Sigma", "splunk"])] == ["id-a", "id-c"]


def test_titles_paths_and_ids_still_match() -> None:
    assert [x.rule.id for x in select(RULES, ["elasticache"])] == ["id-a"]
    assert [x.rule.id for x in select(RULES, ["*tampering*"])] == ["id-c"]
    assert [x.rule.id for x in select(RULES, ["rules/windows/*"])] == ["id-b"]
    assert [x.rule.id for x in select(RULES, ["id-c"])] == ["id-c"]
