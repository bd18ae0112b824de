"""Twin rules across vendors (``engine.twins``, ``ruleatlas twins``).

Unit tests: :func:`find_pairs` on a hand-made similarity, :func:`compare` on hand-made
events. CLI: a six-rule catalog built from real corpus files (the dsquery domain-trust rules
and the certutil decode rules of the three vendors) hunted over two of Sigma's regression
samples. Slow: the whole corpus catalog over the regression data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import ELASTIC, SIGMA, SPLUNK
from ruleatlas.cli import app
from ruleatlas.engine.twins import EventRef, RuleRef, TwinPair, Verdict, compare, find_pairs

S1 = RuleRef("s1", "sigma", "Sigma one")
S2 = RuleRef("s2", "sigma", "Sigma two")
P1 = RuleRef("p1", "splunk", "Splunk one")
E1 = RuleRef("e1", "elastic", "Elastic one")

# own weights: s1 10, s2 4, p1 8, e1 20. Shared weights (symmetric): s1-p1 6, s2-p1 4,
# s1-e1 4, s1-s2 4 (same source), p1-e1 2.
SHARED = {("s1", "p1"): 6.0, ("s2", "p1"): 4.0, ("s1", "e1"): 4.0, ("s1", "s2"): 4.0,
          ("p1", "e1"): 2.0}
OWN = {"s1": 10.0, "s2": 4.0, "p1": 8.0, "e1": 20.0}
SOURCE = {"s1": "sigma", "s2": "sigma", "p1": "splunk", "e1": "elastic"}


def similar(rid: str, limit: int) -> list[dict[str, Any]]:
    """``store.indicators.similar_rules``' shape over the table above, best first."""
    out: list[tuple[float, str]] = []
    for (a, b), score in SHARED.items():
        if rid in (a, b):
            out.append((score, b if rid == a else a))
    return [{"id": other, "source": SOURCE[other], "score": score,
             "share": round(score / OWN[rid], 4)}
            for score, other in sorted(out, key=lambda t: (-t[0], t[1]))[:limit]]


def test_pairs_need_both_shares() -> None:
    # s1-p1: 6/10 and 6/8 -> both >= 0.5. s2-p1: 4/4 and 4/8 = 0.5, but p1's best sigma
    # match is s1 (6 > 4). s1-e1: 4/10 = 0.4 < 0.5. p1-e1: 2/8. s1-s2: same source.
    got = find_pairs([S1, S2, P1, E1], similar, min_share=0.5)
    assert [(p.a.id, p.b.id) for p in got] == [("s1", "p1")]
    assert (got[0].score, got[0].share_a, got[0].share_b) == (6.0, 0.6, 0.75)


def test_pairs_mutual_best_and_lower_share() -> None:
    # at 0.2: s1-e1 (0.4, 0.2) is each one's best of the other source; p1-e1 (0.25, 0.1)
    # fails e1's share; s2-p1 still loses p1's best sigma match to s1.
    got = find_pairs([S1, S2, P1, E1], similar, min_share=0.2)
    assert sorted((p.a.id, p.b.id) for p in got) == [("e1", "s1"), ("s1", "p1")]
    # the pair is ordered by source name: elastic before sigma
    assert next(p for p in got if p.b.id == "s1").a.source == "elastic"


def test_pairs_min_score_and_rules_not_listed() -> None:
    assert find_pairs([S1, S2, P1, E1], similar, min_share=0.2, min_score=5.0)[0].score == 6.0
    assert len(find_pairs([S1, S2, P1, E1], similar, min_share=0.2, min_score=5.0)) == 1
    # p1 left out (not runnable): s1 has no other partner at 0.5
    assert find_pairs([S1, S2, E1], similar, min_share=0.5) == []


def ev(file: str, pos: int) -> EventRef:
    return EventRef(file, pos)


def pair(a: RuleRef, b: RuleRef) -> TwinPair:
    return TwinPair(a, b, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("a_events,b_events,verdict,shared,files", [
    ({ev("f", 1), ev("f", 2)}, {ev("f", 2), ev("f", 1)}, Verdict.SAME, 2, 1),
    ({ev("f", 1), ev("g", 5)}, {ev("f", 1)}, Verdict.OVERLAP, 1, 1),
    ({ev("f", 1)}, {ev("f", 2)}, Verdict.DISJOINT, 0, 1),
    ({ev("f", 1)}, {ev("g", 1)}, Verdict.DISJOINT, 0, 0),
    ({ev("f", 1)}, set(), Verdict.ONLY_A, 0, 0),
    (set(), {ev("g", 3)}, Verdict.ONLY_B, 0, 0),
    (set(), set(), Verdict.NEITHER, 0, 0),
])
def test_verdicts(a_events: set[EventRef], b_events: set[EventRef], verdict: Verdict,
                  shared: int, files: int) -> None:
    got = compare([pair(S1, P1)], {"s1": a_events, "p1": b_events}).results[0]
    assert (got.verdict, got.shared, got.shared_files) == (verdict, shared, files)
    assert set(got.only_a) == a_events - b_events
    assert set(got.only_b) == b_events - a_events


def test_report_counts_by_sources() -> None:
    rep = compare([pair(S1, P1), pair(E1, S1), pair(S2, P1)],
                  {"s1": {ev("f", 1)}, "p1": {ev("f", 1)}})
    d = rep.to_dict()
    assert d["pairs"] == 3
    assert d["by_verdict"]["same events"] == 1  # s1-p1
    assert d["by_verdict"]["only b fired"] == 2  # e1-s1 (s1 fired), s2-p1 (p1 fired)
    assert d["by_sources"]["sigma-splunk"]["only b fired"] == 1
    assert d["by_sources"]["elastic-sigma"]["only b fired"] == 1


# --------------------------------------------------------------------------------------------
# The command, on a catalog of six real rules
# --------------------------------------------------------------------------------------------

PC = "rules/windows/process_creation"
DSQUERY_EVTX = (SIGMA / "regression_data" / PC / "proc_creation_win_dsquery_domain_trust_discovery"
                / "3bad990e-4848-4a78-9530-b427d854aac0.evtx")
ENCODE_EVTX = (SIGMA / "regression_data" / PC / "proc_creation_win_certutil_encode"
               / "e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a.evtx")
SIGMA_DSQUERY = "3bad990e-4848-4a78-9530-b427d854aac0"


def six_rule_catalog(base: Path) -> Path:
    from ruleatlas.build import build

    sig = base / "sigma" / PC
    sig.mkdir(parents=True)
    for f in ("proc_creation_win_dsquery_domain_trust_discovery.yml",
              "proc_creation_win_certutil_decode.yml"):
        shutil.copy(SIGMA / PC / f, sig)
    spl = base / "security_content"
    (spl / "detections" / "endpoint").mkdir(parents=True)
    shutil.copytree(SPLUNK / "macros", spl / "macros")
    for f in ("dsquery_domain_discovery.yml", "certutil_with_decode_argument.yml"):
        shutil.copy(SPLUNK / "detections" / "endpoint" / f, spl / "detections" / "endpoint")
    el = base / "elastic" / "rules" / "windows"
    el.mkdir(parents=True)
    for f in ("discovery_enumerating_domain_trusts_via_dsquery.toml",
              "defense_evasion_suspicious_certutil_commands.toml"):
        shutil.copy(ELASTIC / "rules" / "windows" / f, el)
    db = base / "c.db"
    build([base / "sigma", spl, base / "elastic"], db)
    return db


def test_twins_command_on_six_rules(tmp_path: Path) -> None:
    db = six_rule_catalog(tmp_path)
    res = CliRunner().invoke(app, ["twins", "--db", str(db), "--format", "json", "-j", "1",
                                   "--min-share", "0.3", str(DSQUERY_EVTX), str(ENCODE_EVTX)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    got = {(r["a"]["title"], r["b"]["title"]): r for r in doc["results"]}
    # Indicators: the dsquery rules share dsquery.exe (Image, OriginalFileName) and Sigma and
    # Splunk also '*trustedDomain*'; the decode rules share certutil.exe. The Elastic certutil
    # rule lists a dozen other arguments: its share of either decode rule is far below 0.3.
    assert set(got) == {
        ("Enumerating Domain Trusts via DSQUERY.EXE", "Domain Trust Discovery Via Dsquery"),
        ("Domain Trust Discovery Via Dsquery", "DSQuery Domain Discovery"),
        ("File Decoded From Base64/Hex Via Certutil.EXE", "CertUtil With Decode Argument"),
    }
    # The one dsquery event (Sysmon 1: C:\Windows\System32\dsquery.exe, command line
    # 'dsquery  * -filter "(objectClass=trustedDomain)" -attr *') meets all three dsquery
    # rules: process.args holds "(objectClass=trustedDomain)" (Elastic), CommandLine contains
    # trustedDomain (Sigma, Splunk's Processes.process).
    for (a, b), r in got.items():
        if "certutil" in a.lower():
            continue
        assert r["verdict"] == "same events", (a, b)
        assert (r["a_events"], r["b_events"], r["shared"]) == (1, 1, 1)
    # 'certutil  -encode file.bat file_.base64': no "decode" anywhere, neither decode rule fires
    decode = got[("File Decoded From Base64/Hex Via Certutil.EXE", "CertUtil With Decode Argument")]
    assert decode["verdict"] == "neither fired"
    assert doc["by_sources"]["elastic-sigma"]["same events"] == 1
    assert doc["hunt"]["events"] == 2


def test_twins_table_and_errors(tmp_path: Path) -> None:
    db = six_rule_catalog(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["twins", "--db", str(db), "-j", "1", str(DSQUERY_EVTX)])
    assert res.exit_code == 0, res.output
    assert "Twin pairs by sources" in res.stdout
    assert "elastic-sigma" in res.stdout and "sigma-splunk" in res.stdout
    assert "Twin pairs (2)" in res.stdout  # at the default share the decode pair is out
    missing = runner.invoke(app, ["twins", "--db", str(db), str(tmp_path / "none.evtx")])
    assert missing.exit_code == 2
    nodb = runner.invoke(app, ["twins", "--db", str(tmp_path / "no.db"), str(DSQUERY_EVTX)])
    assert nodb.exit_code == 2


@pytest.mark.slow
def test_twins_corpus_regression(corpus_db: Path) -> None:
    """The whole catalog over the dsquery sample: the Sigma and Elastic dsquery rules are twins
    at the default share, and both fire on its one event."""
    res = CliRunner().invoke(app, ["twins", "--db", str(corpus_db), "--format", "json", "-j", "1",
                                   str(DSQUERY_EVTX)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    mine = [r for r in doc["results"] if SIGMA_DSQUERY in (r["a"]["id"], r["b"]["id"])]
    el = [r for r in mine if r["a"]["source"] == "elastic"]
    assert [r["a"]["title"] for r in el] == ["Enumerating Domain Trusts via DSQUERY.EXE"]
    assert el[0]["verdict"] == "same events"
    # every pair's rules are of two different sources
    assert all(r["a"]["source"] != r["b"]["source"] for r in doc["results"])
