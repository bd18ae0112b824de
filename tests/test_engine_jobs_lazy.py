"""Collecting rules (EQL sequences, threshold, new terms) whose plan comes from the catalog's
cache, with worker processes: the parent never routes an event to the rule itself, so it must
fill the rule's plan in before it runs what the workers collected."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from ruleatlas.engine.hunt import HuntReport, run
from ruleatlas.engine.plan import RulePlan, plan_rule
from ruleatlas.engine.plans import PlanError, head_of, lazy_engine_rule
from ruleatlas.engine.runner import EngineRule, checked
from ruleatlas.languages import analyze
from ruleatlas.model import Rule
from ruleatlas.sources.elastic import rule_from_toml

SYSMON = "Microsoft-Windows-Sysmon/Operational"
TOML = '''[metadata]
creation_date = "2025/01/01"
maturity = "production"

[rule]
author = ["Rule Atlas tests"]
description = "test"
from = "now-9m"
index = ["winlogbeat-*", "logs-windows.sysmon_operational-*"]
language = "eql"
name = "a then b"
risk_score = 21
rule_id = "00000000-0000-4000-8000-00000000000a"
severity = "low"
type = "eql"
query = \'\'\'
sequence by host.id with maxspan=1m
  [process where process.name : "a.exe"]
  [process where process.name : "b.exe"]
\'\'\'
'''


def lazy_sequence_rule() -> EngineRule:
    """The sequence rule as a hunt gets it from the plan cache: a head, filled in later."""
    rule = rule_from_toml(tomllib.loads(TOML), "rules/windows/t.toml", TOML, "https://x")
    assert isinstance(rule, Rule), rule
    head = head_of(checked(plan_rule(rule, analyze(rule))))

    def fallback(_h: object, exc: PlanError) -> RulePlan:
        raise exc

    er = lazy_engine_rule(head, fallback)
    assert er.sequence is None and er.pending is not None  # not filled in yet
    return er


def test_lazy_sequence_rule_with_two_workers(tmp_path: Path) -> None:
    def line(image: str, t: str, rec: int) -> str:
        return json.dumps({"Channel": SYSMON, "EventID": 1, "Computer": "WS1",
                           "TimeCreated": t, "EventRecordID": rec, "Image": image,
                           "CommandLine": image, "ProcessGuid": "{G}"})
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(line("C:\\a.exe", "2024-05-01T10:00:00Z", 1) + "\n")
    b.write_text(line("C:\\b.exe", "2024-05-01T10:00:20Z", 2) + "\n")
    for jobs in (1, 2):
        found = list(run([lazy_sequence_rule()], [str(a), str(b)], HuntReport(), jobs=jobs))
        assert [(f.event.file, f.event.position, f.matched["sequence.by"]) for f in found] == [
            (str(a), 1, ["WS1"])], jobs
