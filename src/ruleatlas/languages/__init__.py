"""Query languages: one plugin per language, registered in one place.

A :class:`Language` is everything the rest of Rule Atlas needs to know about one query language:
its analyzer (query -> :class:`~ruleatlas.model.Analysis`), how its operators and values are
displayed, whether its plain comparisons ignore case (indicator keys), which of its fields only
route a search to data, and what the engine must know about it. Adding a language is one package
under ``languages/`` that calls :func:`register`, plus one line in :func:`load_builtin`; nothing
in the engine, the store or the web names a language.

Sources may add what a rule TYPE means on top of its query's language (Elastic's threshold,
new_terms or machine-learning rules; a hunting file holding several queries): a
:data:`RuleAnalyzer` registered with :func:`register_source` receives the rule and a function
that analyzes one query text in one language.

An analyzer never raises on bad input: it returns an Analysis whose ``problems`` say what went
wrong and where, and keeps what it could not represent as ``Opaque`` stages or nodes.
:func:`analyze` is the one place where an analyzer that crashes (a bug, not bad input) becomes
a located ``crash`` problem.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ruleatlas.model import Analysis, Macro, Predicate, Problem, Rule, Span, Stage, StageKind, Value


@dataclass(frozen=True, slots=True)
class AnalysisContext:
    """What an analyzer may need besides the rule: Splunk macros by key (``name`` or
    ``name(n)``), Splunk data sources by name, and anything else a language wants (``extra``)."""

    macros: Mapping[str, Macro] = field(default_factory=dict)
    data_sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


Analyzer = Callable[[Rule, AnalysisContext], Analysis]
QueryAnalyzer = Callable[[str, str], Analysis]
"""``(language, query text) -> Analysis``: one query analyzed by its language's plugin."""
RuleAnalyzer = Callable[[Rule, AnalysisContext, QueryAnalyzer], Analysis]
"""A source's rule-type layer: the whole rule, given a way to analyze each of its queries."""


@dataclass(frozen=True, slots=True)
class Language:
    """One query language as the rest of the pipeline sees it.

    * ``analyzer``: rule -> Analysis (never raises for bad input);
    * ``label``: the name users read (``SPL``, ``ES|QL``);
    * ``fold_case``: plain comparisons ignore case unless a predicate is ``cased`` (indicator
      keys fold case then, so ``CMD.EXE`` in one rule meets ``cmd.exe`` in another);
    * ``exists_text``: how the language writes "the field is present" (SPL ``*``, Sigma
      ``true``); ``display_value``/``display_op``: a value and an operator as the language writes
      them (default: the model's text and the op's name);
    * ``routing_fields``: lower-case field names that send a search to data (SPL ``index``,
      ``sourcetype``) rather than describe what it detects: never indicators;
    * ``selections``: named stages may stand outside the condition (Sigma selections the
      condition does not use are not indicators);
    * ``macro_calls``: the macro keys a query's text calls (the build records them when the
      analyzer could not say, e.g. a search that does not parse);
    * ``pipeline``: the engine replays the language's field-writing steps (SPL eval, rex, ...);
    * ``field_map``: a coverage field map applied to every event kind for this language's rules
      (``Splunk``: CIM-style names the Splunk add-ons extract);
    * ``not_runnable``: a language-specific reason why a rule cannot run on single events;
    * ``view``: what the engine matches the language's rules against: ``raw`` (the reader's
      flattened event, read through the route's field maps) or ``ecs`` (``engine.ecs.ecs_view``:
      the document Elastic's Windows integrations would index for that event);
    * ``semantics``: which of the engine's compilers runs its trees: ``default``
      (``engine.compile``) or ``elastic`` (Elasticsearch's ``!=`` on a missing field and the EQL
      functions, ``engine.elastic_semantics``).
    """

    name: str
    analyzer: Analyzer
    label: str
    fold_case: bool = False
    exists_text: str = "exists"
    display_value: Callable[[Value, Predicate], str] | None = None
    display_op: Callable[[Predicate], str] | None = None
    routing_fields: frozenset[str] = frozenset()
    selections: bool = False
    macro_calls: Callable[[str], list[str]] | None = None
    pipeline: bool = False
    field_map: str | None = None
    not_runnable: Callable[[Rule, Analysis], str | None] | None = None
    view: str = "raw"
    semantics: str = "default"


LANGUAGES: dict[str, Language] = {}
RULE_ANALYZERS: dict[str, RuleAnalyzer] = {}


def register(name: str, label: str, **traits: Any) -> Callable[[Analyzer], Analyzer]:
    """Decorator: register ``fn`` as the analyzer of language ``name``, with its traits (the
    other fields of :class:`Language`)."""

    def deco(fn: Analyzer) -> Analyzer:
        LANGUAGES[name] = Language(name, fn, label, **traits)
        return fn

    return deco


def register_source(source: str) -> Callable[[RuleAnalyzer], RuleAnalyzer]:
    """Decorator: ``fn`` analyzes every rule of ``source`` (its rule types on top of its
    queries' languages)."""

    def deco(fn: RuleAnalyzer) -> RuleAnalyzer:
        RULE_ANALYZERS[source] = fn
        return fn

    return deco


@cache
def load_builtin() -> None:
    """Import the built-in languages (and the Elastic rule-type layer) once; each registers
    itself (house rule 11)."""
    from ruleatlas.languages import elastic as _elastic  # noqa: F401
    from ruleatlas.languages import eql as _eql  # noqa: F401
    from ruleatlas.languages import esql as _esql  # noqa: F401
    from ruleatlas.languages import kql as _kql  # noqa: F401
    from ruleatlas.languages import sigma as _sigma  # noqa: F401
    from ruleatlas.languages import spl as _spl  # noqa: F401


def language(name: str) -> Language | None:
    """The plugin of language ``name``, or None when no language of that name is registered."""
    load_builtin()
    return LANGUAGES.get(name)


def label(name: str) -> str:
    """The display name of a language (its own name when unknown)."""
    lang = language(name)
    return lang.label if lang else name


def _opaque(rule: Rule, text: str, problem: Problem) -> Analysis:
    return Analysis(language=rule.language,
                    stages=(Stage(0, "query", text, kind=StageKind.OPAQUE),),
                    problems=(problem,))


def analyze_text(rule: Rule, ctx: AnalysisContext, lang_name: str, text: str) -> Analysis:
    """One query text of ``rule`` analyzed by the plugin of ``lang_name``."""
    lang = language(lang_name)
    if lang is None:
        return _opaque(rule, text, Problem(f"no analyzer for language {lang_name!r}",
                                           "unsupported", code="no-analyzer"))
    return lang.analyzer(dataclasses.replace(rule, language=lang_name, query=text), ctx)


def analyze(rule: Rule, ctx: AnalysisContext | None = None) -> Analysis:
    """Analyze one rule (its source's rule-type layer, else its language's analyzer); never
    raises.

    Bad input gives the analyzer's own located problems. An analyzer that raises (a bug) gives
    one opaque stage holding the whole query and an ``error`` problem with code ``crash``, located
    at the rule, naming the exception: the build keeps the rule and says why it is opaque."""
    load_builtin()
    ctx = ctx or AnalysisContext()
    try:
        by_source = RULE_ANALYZERS.get(rule.source)
        if by_source is not None:
            return by_source(rule, ctx, lambda lang, text: analyze_text(rule, ctx, lang, text))
        lang = LANGUAGES.get(rule.language)
        if lang is None:
            return _opaque(rule, rule.query,
                           Problem(f"no analyzer for language {rule.language!r}", "unsupported",
                                   code="no-analyzer"))
        return lang.analyzer(rule, ctx)
    except Exception as exc:  # recorded: a located crash problem on the rule (see docstring)
        return _opaque(rule, rule.query, Problem(
            f"{rule.language} analyzer crashed: {type(exc).__name__}: {exc}",
            "error", Span(rule.line, 1, path=rule.path), "crash"))
