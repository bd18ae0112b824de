"""The whole SigmaHQ corpus through the Sigma reader and the Sigma analyzer (a ratchet).

Counts are cross-checked by an independent text scan of the rule files, so the lowering cannot
silently lose a modifier: every ``|contains`` key written in ``rules*`` must come out as exactly
one ``contains`` predicate, and so on for each modifier the corpus uses.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule

from conftest import SIGMA
from ruleatlas.languages import AnalysisContext
from ruleatlas.languages.sigma import analyze_sigma
from ruleatlas.model import Analysis, And, FieldRef, Not, Op, Or, Predicate, Regex, Rule, walk
from ruleatlas.sources import SOURCES

# Ratchet: may only go down. Measured 2026-11-28 on the shared corpus (SigmaHQ 8eaafff).
RULES_STAR = 3780
RULES_STAR_WITH_PROBLEMS = 1  # proc_creation_macos_file_and_directory_discovery: see below
OTHER_WITH_PROBLEMS = 59  # deprecated/ + unsupported/: Sigma 1 pipe aggregations, timeframe
OTHER_PROBLEM_CODES = {"aggregation": 55, "timeframe": 4}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analyzed() -> list[tuple[Rule, Analysis]]:
    src = SOURCES["sigma"]
    rules = [r for p in src.rule_files(SIGMA) for r in src.load_file(SIGMA, p).rules]
    ctx = AnalysisContext()
    t = time.perf_counter()
    out = [(r, analyze_sigma(r, ctx)) for r in rules]
    elapsed = time.perf_counter() - t
    print(f"\nanalyzed {len(out)} Sigma rules in {elapsed:.2f} s")
    assert elapsed < 10, "Sigma lowering is far slower than expected (~1 s on this corpus)"
    return out


def _in_rules_star(r: Rule) -> bool:
    return r.path.startswith("rules")


def test_every_rules_star_rule_is_converted(analyzed):
    star = [(r, a) for r, a in analyzed if _in_rules_star(r)]
    assert len(star) == RULES_STAR
    bad = [(r.path, [str(p) for p in a.problems]) for r, a in star if a.problems]
    assert len(bad) <= RULES_STAR_WITH_PROBLEMS, bad[:10]
    for r, a in star:
        assert a.condition is not None, r.path
        assert a.stages[-1].command == "condition"


def test_deprecated_and_unsupported_say_why(analyzed):
    other = [(r, a) for r, a in analyzed if not _in_rules_star(r)]
    assert other, "the reader should load deprecated/ and unsupported/"
    with_problems = [a for _, a in other if a.problems]
    assert len(with_problems) <= OTHER_WITH_PROBLEMS
    codes = Counter(p.code for a in with_problems for p in a.problems)
    for code, n in codes.items():
        assert n <= OTHER_PROBLEM_CODES.get(code, 0), codes
    for a in with_problems:
        assert all(p.location is not None for p in a.problems)


def test_no_analysis_crashes(analyzed):
    assert not [r.path for r, a in analyzed if any(p.code == "crash" for p in a.problems)]


# ---- independent count of modifiers ----------------------------------------------------------

# A YAML key `Field|mod|mod:` (optionally quoted, optionally a list item), followed by a blank.
_KEY = re.compile(r"""^[ \t]*(?:-[ \t]+)?['"]?([^'"\s:#]*(?:\|[a-z0-9]+)+)['"]?[ \t]*:(?:\s|$)""",
                  re.M)


def _text_modifier_counts() -> Counter[str]:
    """Count modifiers by scanning the rules* files as text (no YAML, no pySigma)."""
    counts: Counter[str] = Counter()
    for folder in sorted(SIGMA.glob("rules*")):
        for p in folder.rglob("*.yml"):
            for key in _KEY.findall(p.read_text(encoding="utf-8")):
                counts.update(set(key.split("|")[1:]))
    return counts


def _model_modifier_counts(analyzed) -> Counter[str]:
    """The same count from our predicates: one item = one predicate (or an EQ/WILDCARD pair)."""
    counts: Counter[str] = Counter()
    seen: set[tuple[str, int | None]] = set()
    for r, a in analyzed:
        if not _in_rules_star(r):
            continue
        for st in a.stages[:-1]:
            for n in walk(st.condition):
                if not isinstance(n, Predicate) or n.span is None:
                    continue
                key = (r.path, n.span.start)
                if key in seen:  # the EQ and WILDCARD halves of one mixed list
                    continue
                seen.add(key)
                mods: set[str] = {op for op in ("contains", "startswith", "endswith")
                                  if n.op.value == op}
                mods.update(t for t in n.transforms)
                if n.match_all:
                    mods.add("all")
                if n.op is Op.REGEX:
                    mods.add("re")
                    mods.update(f for v in n.values if isinstance(v, Regex) for f in v.flags)
                if n.op is Op.CIDR:
                    mods.add("cidr")
                if any(isinstance(v, FieldRef) for v in n.values):
                    mods.add("fieldref")
                counts.update(mods)
    return counts


def test_every_modifier_written_in_the_corpus_is_in_the_predicates(analyzed):
    text = _text_modifier_counts()
    model = _model_modifier_counts(analyzed)
    assert text["contains"] > 4000 and text["windash"] > 100  # the scan itself works
    # Modifiers written on a detection *name* (`select_tree_execution|endswith:`, an upstream
    # slip) have no effect in Sigma; the text scan counts them, the analysis flags them.
    on_names: Counter[str] = Counter()
    for r, a in analyzed:
        for p in a.problems:
            if _in_rules_star(r) and p.code == "modifier-on-name":
                on_names.update(set(p.message.split("'")[1].split("|")[1:]))
    assert on_names == Counter({"endswith": 1})
    for mod, n in text.items():
        assert model[mod] + on_names[mod] == n, (mod, n, model[mod])


# ---- the example rule's Sigma twin ------------------------------------------------------------


def test_malicious_commandlets_lowers_to_script_block_contains(analyzed):
    ((rule, a),) = [(r, a) for r, a in analyzed
                    if r.path.endswith("powershell_script/posh_ps_malicious_commandlets.yml")]
    preds = [p for p, positive in a.all_predicates()
             if p.field == "ScriptBlockText" and p.op is Op.CONTAINS and positive]
    assert any("Invoke-WMIExec" in p.values for p in preds)
    assert [s.command for s in a.stages] == ["selection", "filter", "condition"]
    p = next(p for p in preds if "Invoke-WMIExec" in p.values)
    lines = (SIGMA / rule.path).read_text(encoding="utf-8").splitlines()
    assert p.span is not None and lines[p.span.line - 1].strip() == "ScriptBlockText|contains:"


def test_spans_point_at_the_written_key(analyzed):
    """For every field predicate, the file line at its span starts with its key as written."""
    checked = 0
    cache: dict[str, list[str]] = {}
    for r, a in analyzed:
        if r.extra.get("query_generated"):
            continue
        lines = cache.setdefault(r.path, (SIGMA / r.path).read_text(encoding="utf-8")
                                 .splitlines())
        for st in a.stages:
            for n in walk(st.condition):
                if isinstance(n, Predicate) and n.field is not None and n.span and n.text:
                    key = n.text.split(":", 1)[0].strip("'\"")
                    at = lines[n.span.line - 1][n.span.col - 1:].lstrip("'\"")
                    assert at.startswith(key), (r.path, n.span, key, at)
                    checked += 1
    assert checked > 15000


def test_corpus_is_where_conftest_says():
    assert Path(SIGMA, "rules").is_dir()


# ---- same boolean structure as pySigma's own post-processed condition ------------------------


def _ours_nf(n) -> str:  # type: ignore[no-untyped-def]
    """Normal form of our tree, each predicate expanded to one leaf per value as pySigma does."""
    if isinstance(n, Predicate):
        leaf = f"{n.field}"
        if n.op is Op.EXISTS or len(n.values) <= 1:
            body = leaf
        else:
            body = ("and(" if n.match_all else "or(") + ",".join([leaf] * len(n.values)) + ")"
        return f"not({body})" if n.negated and n.op is not Op.EXISTS else body
    if isinstance(n, (And, Or)):
        kind = "and" if isinstance(n, And) else "or"
        parts = sorted(_flatten(kind, [_ours_nf(a) for a in n.args]))
        return parts[0] if len(parts) == 1 else f"{kind}({','.join(parts)})"
    if isinstance(n, Not):
        return f"not({_ours_nf(n.arg)})"
    raise AssertionError(f"unexpected node {n!r}")


def _theirs_nf(c) -> str:  # type: ignore[no-untyped-def]
    if isinstance(c, ConditionFieldEqualsValueExpression):
        return f"{c.field}"
    if isinstance(c, ConditionValueExpression):
        return "None"
    if isinstance(c, (ConditionAND, ConditionOR)):
        kind = "and" if isinstance(c, ConditionAND) else "or"
        parts = sorted(_flatten(kind, [_theirs_nf(a) for a in c.args]))
        return parts[0] if len(parts) == 1 else f"{kind}({','.join(parts)})"
    if isinstance(c, ConditionNOT):
        return f"not({_theirs_nf(c.args[0])})"
    raise AssertionError(f"unexpected pySigma node {c!r}")


def _flatten(kind: str, parts: list[str]) -> list[str]:
    """Inline children of the same kind: and(a,and(b,c)) == and(a,b,c)."""
    out: list[str] = []
    for p in parts:
        if p.startswith(kind + "(") and _outer(p):
            out.extend(_split(p[len(kind) + 1:-1]))
        else:
            out.append(p)
    return out


def _outer(p: str) -> bool:
    depth = 0
    for i, ch in enumerate(p):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch == ")":
            return i == len(p) - 1
    return False


def _split(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    out.append(cur)
    return out


def test_condition_trees_match_pysigma_postprocessing(analyzed):
    """Our inlined trees have pySigma's boolean structure, field by field, on every rules* rule
    (selectors, `them`, `_` names, precedence and value lists all resolved the same way)."""
    checked = 0
    for r, a in analyzed:
        if not _in_rules_star(r):
            continue
        srule = SigmaRule.from_dict(yaml.load(r.body, Loader=yaml.CSafeLoader))
        theirs = [_theirs_nf(c.parse()) for c in srule.detection.parsed_condition]
        mine = [_ours_nf(a.condition)] if len(theirs) == 1 else _split(
            _ours_nf(a.condition)[3:-1])
        assert sorted(mine) == sorted(theirs), r.path
        checked += 1
    assert checked == RULES_STAR
