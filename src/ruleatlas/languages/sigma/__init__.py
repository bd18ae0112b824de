"""Sigma detections into the shared predicate model (issue 5).

``analyze_sigma`` is registered as the ``sigma`` analyzer. It reads the rule's section
(``detection:``, ``correlation:`` or ``filter:``) from ``rule.body`` with positions
(``spans.py``), lets pySigma read items and conditions, and lowers them (``lower.py``,
``modifiers.py``; correlations and filters in ``documents.py``). Bad input never makes it raise:
what cannot be represented becomes an ``Opaque`` node plus a located ``Problem``. A bug that
raises is turned into a located ``crash`` problem by ``languages.analyze``. See docs/sigma.md.
"""

from __future__ import annotations

import re

import yaml

from ruleatlas.languages import AnalysisContext, register
from ruleatlas.languages.sigma.display import display_op, display_value
from ruleatlas.languages.sigma.documents import LOWER_SECTION
from ruleatlas.languages.sigma.modifiers import MODIFIERS
from ruleatlas.languages.sigma.spans import BlockError, locate, locate_generated, trim_tail
from ruleatlas.model import Analysis, Problem, Rule, Span, Stage, StageKind

__all__ = ["MODIFIERS", "analyze_sigma", "rule_from_text", "section_of"]

_SECTION_KEY = re.compile(r"^(correlation|filter)[ \t]*:", re.M)


def section_of(rule: Rule) -> str:
    """``detection``, ``correlation`` or ``filter``: the rule type, else guessed from the body."""
    if rule.type in LOWER_SECTION:
        return rule.type
    m = _SECTION_KEY.search(rule.body)
    if m and not re.search(r"^detection[ \t]*:", rule.body, re.M):
        return m.group(1)
    return "detection"


def rule_from_text(text: str, path: str = "<inline>", line: int = 1) -> Rule:
    """A :class:`Rule` from one Sigma YAML document as written: for tests, ad-hoc analysis and
    the engine's rule files. Metadata comes from a plain parse; the analysis reads ``body``."""
    try:
        doc = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    probe = Rule(id="", source="sigma", path=path, title="", language="sigma", query="",
                 body=text)
    section = section_of(probe)
    m = re.search(rf"^{section}[ \t]*:", text, re.M)
    query = ""
    if m:
        nxt = re.search(r"^[^\s#]", text[m.end():], re.M)
        query = trim_tail(text[m.start(): m.end() + nxt.start() if nxt else len(text)])
    ls = doc.get("logsource")
    return Rule(
        id=str(doc.get("id") or path), source="sigma", path=path, title=str(doc.get("title", "")),
        language="sigma", query=query, body=text, type=section, line=line,
        logsource={str(k): str(v) for k, v in ls.items()} if isinstance(ls, dict) else {},
    )


def _not_runnable(rule: Rule, analysis: Analysis) -> str | None:
    if rule.type in ("correlation", "filter") or analysis.extra.get("correlation"):
        return f"Sigma {rule.type or 'correlation'} rules are not run by the engine"
    return None


@register("sigma", "Sigma", fold_case=True, exists_text="true", display_value=display_value,
          display_op=display_op, selections=True,
          not_runnable=_not_runnable)
def analyze_sigma(rule: Rule, ctx: AnalysisContext) -> Analysis:
    """Analyze one Sigma rule document; never raises for bad input (problems say why)."""
    section = section_of(rule)
    try:
        if rule.extra.get("query_generated") and rule.query:
            block = locate_generated(rule.query, section, rule.line, rule.path)
        else:
            block = locate(rule.body, section, rule.line, rule.path, rule.query)
    except (BlockError, ValueError) as exc:
        line = getattr(exc, "line", None)
        col = getattr(exc, "col", None)
        loc = Span(line, col or 1, path=rule.path) if line else Span(rule.line, 1, path=rule.path)
        return _opaque(rule, section, Problem(str(exc), "error", loc, "yaml"))
    return LOWER_SECTION[section](rule, block)


def _opaque(rule: Rule, section: str, problem: Problem) -> Analysis:
    return Analysis(
        language="sigma",
        stages=(Stage(0, section, rule.query, kind=StageKind.OPAQUE),),
        problems=(problem,),
    )
