"""Where the engine gets its rules: the catalog database, or repositories read directly.

``ruleatlas test`` / ``hunt`` read the built catalog (``--db``), whose rows carry the stored
Analysis; with no catalog file, or for tests and benchmarks, :func:`from_repos` reads the
repositories with the source readers and analyzes each rule on the spot (same code path as
``build``, no database).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ruleatlas.model import Analysis, Rule, analysis_from_dict

_RULE_FIELDS = {f.name: f for f in dataclasses.fields(Rule)}


@dataclass(frozen=True, slots=True)
class LoadedRule:
    rule: Rule
    analysis: Analysis
    root: str
    tactics: tuple[str, ...] = ()


def rule_from_dict(d: Mapping[str, Any]) -> Rule:
    """A :class:`Rule` from its JSON form (``rules.rule_json``), through the store's codec."""
    from ruleatlas.store.codec import rule_from_dict as decode

    return decode(d)


def tactics_of(rule: Rule) -> tuple[str, ...]:
    """ATT&CK tactic short names of a rule's techniques (none for an unknown technique)."""
    from ruleatlas import attack

    data = attack.default()
    return tuple(sorted({tac for t in rule.attack for tac in data.technique(t).tactics}))


def from_db(db: str | Path, ids: Sequence[str] | None = None) -> list[LoadedRule]:
    from ruleatlas.store.results import load_rules

    out = []
    for sr in load_rules(db, ids):
        rule = sr.rule
        if sr.analysis is not None:
            analysis = analysis_from_dict(sr.analysis)
        else:
            from ruleatlas.languages import analyze

            analysis = analyze(rule)
        out.append(LoadedRule(rule, analysis, sr.root, sr.tactics or tactics_of(rule)))
    return out


def from_repos(roots: Iterable[str | Path], with_tests_only: bool = False,
               languages: Sequence[str] | None = None) -> list[LoadedRule]:
    """Read and analyze every rule of the given repository clones (any source)."""
    from ruleatlas.languages import AnalysisContext, analyze
    from ruleatlas.sources import detect

    out: list[LoadedRule] = []
    for root in roots:
        rp = Path(root)
        src = detect(rp)
        if src is None:
            continue
        side = src.side_tables(rp)
        ctx = AnalysisContext(macros=side.macros, data_sources=side.data_sources)
        for f in src.rule_files(rp):
            fr = src.load_file(rp, f)
            for rule in fr.rules:
                if with_tests_only and not rule.tests:
                    continue
                if languages and rule.language not in languages:
                    continue
                out.append(LoadedRule(rule, analyze(rule, ctx), str(rp), tactics_of(rule)))
    return out


RETIRED_FOLDERS = ("deprecated/", "unsupported/")
RETIRED_STATUS = frozenset({"deprecated", "unsupported", "retired"})


def is_retired(rule: Rule) -> bool:
    """Deprecated or unsupported rules (kept in the catalog, left out of hunting by default)."""
    return (rule.path.startswith(RETIRED_FOLDERS)
            or (rule.status or "").lower() in RETIRED_STATUS)


class HasRule(Protocol):
    @property
    def rule(self) -> Rule: ...


R = TypeVar("R", bound=HasRule)


def select(rules: Sequence[R], filters: Sequence[str] | None) -> list[R]:
    """Rules whose id, title, path or source matches any filter (exact id, or a glob on
    title/path, case-insensitive; a source name, ``sigma``/``splunk``/``elastic``, picks that
    source and nothing else). Works on anything with a ``rule`` (:class:`LoadedRule`,
    ``engine.plans.RulePlan``)."""
    if not filters:
        return list(rules)
    sources = {lr.rule.source for lr in rules}
    out = []
    for lr in rules:
        r = lr.rule
        for f in filters:
            fl = f.lower()
            if fl in sources:  # a source name selects that source only (not "AWS ElastiCache")
                if r.source == fl:
                    out.append(lr)
                    break
                continue
            if (r.id == f or fnmatch.fnmatch(r.title.lower(), fl)
                    or fnmatch.fnmatch(r.path.lower(), fl) or fl in r.title.lower()
                    or r.path.lower().endswith(fl)):
                out.append(lr)
                break
    return out
