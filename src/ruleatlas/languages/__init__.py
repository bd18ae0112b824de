"""Query languages: one analyzer per language, each turning a rule's query into an Analysis.

The registry is a dict (house rule 4): adding a language is adding an entry. An analyzer never
raises on bad input: it returns an Analysis whose ``problems`` say what went wrong and where, and
keeps what it could not represent as ``Opaque`` stages or nodes. :func:`analyze` is the one place
where an analyzer that crashes (a bug, not bad input) becomes a located ``crash`` problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ruleatlas.model import Analysis, Macro, Problem, Rule, Span, Stage, StageKind


@dataclass(frozen=True, slots=True)
class AnalysisContext:
    """What an analyzer may need besides the rule: Splunk macros by key (``name`` or
    ``name(n)``), Splunk data sources by name, and anything else a language wants (``extra``)."""

    macros: Mapping[str, Macro] = field(default_factory=dict)
    data_sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


Analyzer = Callable[[Rule, AnalysisContext], Analysis]

ANALYZERS: dict[str, Analyzer] = {}


def register(language: str) -> Callable[[Analyzer], Analyzer]:
    """Decorator: register ``fn`` as the analyzer of ``language``."""

    def deco(fn: Analyzer) -> Analyzer:
        ANALYZERS[language] = fn
        return fn

    return deco


def _load_builtin() -> None:
    # Built-in languages register themselves on import (house rule 11).
    from ruleatlas.languages import sigma as _sigma  # noqa: F401
    from ruleatlas.languages import spl as _spl  # noqa: F401


def analyze(rule: Rule, ctx: AnalysisContext | None = None) -> Analysis:
    """Analyze one rule with the analyzer of its language; never raises.

    Bad input gives the analyzer's own located problems. An analyzer that raises (a bug) gives
    one opaque stage holding the whole query and an ``error`` problem with code ``crash``, located
    at the rule, naming the exception: the build keeps the rule and says why it is opaque."""
    if not ANALYZERS:
        _load_builtin()
    ctx = ctx or AnalysisContext()
    fn = ANALYZERS.get(rule.language)
    if fn is None:
        return Analysis(
            language=rule.language,
            stages=(Stage(0, "query", rule.query, kind=StageKind.OPAQUE),),
            problems=(Problem(f"no analyzer for language {rule.language!r}", "unsupported"),),
        )
    try:
        return fn(rule, ctx)
    except Exception as exc:  # recorded: a located crash problem on the rule (see docstring)
        return Analysis(
            language=rule.language,
            stages=(Stage(0, "query", rule.query, kind=StageKind.OPAQUE),),
            problems=(Problem(f"{rule.language} analyzer crashed: {type(exc).__name__}: {exc}",
                              "error", Span(rule.line, 1, path=rule.path), "crash"),),
        )
