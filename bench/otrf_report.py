"""The Elastic rules over the OTRF corpus: what runs, what cannot and why, what fires.

Reads the plans of a built catalog (``--db``, built from the three vendors' repositories:
``ruleatlas build --db F ../shared/corpus/sigma ../shared/corpus/security_content
../shared/corpus/elastic``), keeps the Elastic rules that ``ruleatlas hunt`` runs by default
(not deprecated), and prints, as Markdown tables for docs/elastic-engine.md:

* the rules that run and the rules that cannot, by reason, grouped (machine learning, threat
  match, ES|QL, non-Windows data by platform, ...), detection rules and hunting queries apart;
* the hunt of ``../shared/corpus/otrf`` (``engine.hunt.hunt_plans``, the code of ``ruleatlas
  hunt --rules elastic``): events, findings, findings per rule (all of them), per ATT&CK tactic,
  per rule type.

``--save F`` writes the findings as JSON lines (``ruleatlas hunt --format jsonl``'s shape), for
checking findings by hand; ``--findings F`` prints the tables from such a file instead of
hunting again. ``--no-hunt`` prints the runnability tables only.

Usage: ``.venv/bin/python bench/otrf_report.py --db F [--jobs N] [--save F] [--no-hunt]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ruleatlas.engine.catalog import from_db, is_retired
from ruleatlas.engine.hunt import HuntReport, hunt_plans
from ruleatlas.engine.plans import LoadedPlans, PlanHead, load
from ruleatlas.model import Rule

ROOT = Path(__file__).resolve().parent.parent
OTRF = (ROOT.parent / "shared" / "corpus" / "otrf").resolve()

# Data sources (as the routing table names them) -> the platform a report groups them under.
PLATFORMS = {
    "Linux-Sysmon/Operational": "Linux", "linux:audit": "Linux", "macos:esf": "macOS",
    "aws:cloudtrail": "AWS", "google:gcp:pubsub:audit": "Google Cloud",
    "gws:reports": "Google Workspace", "o365:management:activity": "Microsoft 365",
    "azure:monitor:aad": "Azure / Entra ID", "mscs:azure:audit": "Azure / Entra ID",
    "OktaIM2:log": "Okta", "kube:audit": "Kubernetes", "github:audit": "GitHub",
    "suricata": "network (Suricata)",
}
_READS = re.compile(r"reads (.+?) data: ")
# Index patterns of the data Winlogbeat and Elastic's Windows / System integrations write (what
# the ECS view imitates); a rule naming none of them reads EDR data only (Elastic Defend,
# Endgame, SentinelOne, CrowdStrike, Microsoft Defender XDR) or network data (Zeek, PAN-OS).
WINDOWS_LOGS = ("winlogbeat-", "logs-windows.", "logs-system.")


def scope(rule: Rule) -> str:
    """Which data a rule is written for: ``Windows logs`` or ``EDR / network only``; ``+sig``
    when its query reads a ``code_signature`` field (Sysmon 1/3/11/22... have none)."""
    index = rule.extra.get("index") or ()
    logs = any(str(i).startswith(WINDOWS_LOGS) for i in index)
    sig = "code_signature" in (rule.query or "")
    return ("Windows logs" if logs else "EDR / network only") + (" +sig" if sig else "")


def group(h: PlanHead) -> str:
    """The group of a not-runnable rule's reason (the table's first column)."""
    why = h.reason or ""
    if h.rule.language == "esql":
        if why.startswith("generating command from"):
            return "ES|QL: not run by the engine yet (FROM ... pipes)"
        if why.startswith("filters on fields computed"):
            return "ES|QL: filters on EVAL/DISSECT/GROK/STATS outputs"
        return "ES|QL: other (" + why.split(":")[0] + ")"
    if h.rule.language == "sql":
        return "osquery SQL (hunting queries)"
    if why.startswith("machine-learning"):
        return "machine learning (anomaly jobs)"
    if why.startswith("threat-match"):
        return "threat match (indicator index)"
    m = _READS.match(why)
    if m:
        names = {PLATFORMS.get(s.strip(), s.strip()) for s in m.group(1).split(",")}
        return "non-Windows data: " + " + ".join(sorted(names))
    return why.split(":")[0][:70]


def runnability(heads: Sequence[PlanHead]) -> None:
    """The table of runnable / not-runnable Elastic rules by group, rules and hunts apart."""
    rows: Counter[tuple[str, bool]] = Counter()
    for h in heads:
        hunting = h.rule.type == "hunt"
        rows[("runs" if h.runnable else group(h), hunting)] += 1
    total = Counter(hunting for _, hunting in rows.elements())
    print(f"\n| | detection rules ({total[False]}) | hunting queries ({total[True]}) |")
    print("| --- | ---: | ---: |")
    keys = sorted({k for k, _ in rows}, key=lambda k: (k != "runs", -rows[(k, False)]
                                                        - rows[(k, True)], k))
    for k in keys:
        label = k.replace("|", "\\|")  # ES|QL inside a Markdown table cell
        print(f"| {label} | {rows[(k, False)]} | {rows[(k, True)]} |")
    detail: Counter[str] = Counter(h.reason or "" for h in heads if not h.runnable
                                   and group(h).startswith(("ES|QL: other", "analysis")))
    for why, n in detail.most_common():
        print(f"  {n} x {why[:140]}")


def findings_tables(heads: Sequence[PlanHead], report: HuntReport, types: Counter[str],
                    full: dict[str, Rule]) -> None:
    by_id = {h.rule.id: h for h in heads}
    print(f"\n{report.events:,} events, {report.rules_run} rules run, {report.findings:,} "
          f"findings from {len(report.by_rule)} rules in {report.seconds:.0f} s")
    print("\n| findings | rule | type | data |\n| ---: | --- | --- | --- |")
    for rid, n in report.by_rule.most_common():
        r = by_id[rid].rule
        print(f"| {n:,} | {r.title} | {r.language}/{r.type} | {scope(full[rid])} |")
    by_scope: Counter[str] = Counter()
    ran: Counter[str] = Counter(scope(full[h.rule.id]) for h in heads if h.runnable)
    fired_scope: Counter[str] = Counter()
    for rid, n in report.by_rule.items():
        by_scope[scope(full[rid])] += n
        fired_scope[scope(full[rid])] += 1
    print("\n| data the rule is written for | rules run | rules that fired | findings |")
    print("| --- | ---: | ---: | ---: |")
    for k, n in ran.most_common():
        print(f"| {k} | {n} | {fired_scope[k]} | {by_scope[k]:,} |")
    print("\n| tactic | findings |\n| --- | ---: |")
    for t, n in report.by_tactic.most_common():
        print(f"| {t} | {n:,} |")
    print("\n| rule type | rules run | rules that fired | findings |\n| --- | ---: | ---: | ---: |")
    fired: Counter[str] = Counter()
    found: Counter[str] = Counter()
    for rid, n in report.by_rule.items():
        k = f"{by_id[rid].rule.language}/{by_id[rid].rule.type}"
        fired[k] += 1
        found[k] += n
    for k, n in types.most_common():
        print(f"| {k} | {n} | {fired[k]} | {found[k]:,} |")


def hunt(plans: LoadedPlans, heads: Sequence[PlanHead], report: HuntReport, jobs: int,
         save: str | None) -> None:
    """``ruleatlas hunt --rules elastic`` over OTRF, the findings written to ``save``."""
    out = open(save, "w", encoding="utf-8") if save else None
    t = time.perf_counter()
    try:
        for f in hunt_plans(plans, heads, [str(OTRF)], report, jobs=jobs):
            if out is not None:
                out.write(json.dumps(f.to_dict(), ensure_ascii=False, default=str) + "\n")
    finally:
        if out is not None:
            out.close()
    print(f"hunt: {time.perf_counter() - t:.0f} s, {len(report.errors)} read errors")


def saved(path: str, heads: Sequence[PlanHead]) -> HuntReport:
    """The counts of a :class:`HuntReport` from findings saved by ``--save``."""
    report = HuntReport()
    titles = {h.rule.id: h.rule for h in heads}
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            r = titles[d["rule_id"]]
            report.findings += 1
            report.by_rule[r.id] += 1
            report.titles[r.id] = (r.title, r.severity, r.source)
            for t in d["tactics"] or ("(no tactic)",):
                report.by_tactic[t] += 1
    report.rules_run = sum(h.runnable for h in heads)
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True, help="a catalog built from the three vendors")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--save", default=None, help="write the findings here (JSON lines)")
    ap.add_argument("--no-hunt", action="store_true")
    ap.add_argument("--findings", default=None,
                    help="tables from findings saved by --save instead of a new hunt")
    args = ap.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    plans = load(args.db)
    heads = [h for h in plans.plans if h.rule.source == "elastic" and not is_retired(h.rule)]
    print(f"Elastic rules: {len(heads)} (deprecated left out), "
          f"{sum(h.runnable for h in heads)} runnable")
    runnability(heads)
    if args.no_hunt:
        return
    report = HuntReport() if args.findings is None else saved(args.findings, heads)
    if args.findings is None:
        hunt(plans, heads, report, args.jobs, args.save)
    types = Counter(f"{h.rule.language}/{h.rule.type}" for h in heads if h.runnable)
    full = {lr.rule.id: lr.rule for lr in from_db(args.db, [h.rule.id for h in heads
                                                             if h.runnable])}
    findings_tables(heads, report, types, full)


if __name__ == "__main__":
    main()
