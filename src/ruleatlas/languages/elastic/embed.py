"""ES|QL's embedded ``kql("...")``: the KQL text lowered into predicates in place.

The ES|QL analyzer keeps ``where kql("event.action: exec")`` as
``Condition(Call("kql", (text,)))``. Here each such condition becomes the KQL lowering of its
text (:func:`ruleatlas.languages.kql.lower`), with the condition's stage and phase, so that its
predicates are indicators, count for event coverage, and reach the engine like any other
``where`` predicate. Elasticsearch runs ``kql()`` as the same query Kibana would build, so the
KQL semantics (keyword fields cased, analysed text fields ``contains``) apply unchanged.

Spans: when the string literal holds the KQL text as written (a triple-quoted literal, or a
``"..."`` one without escapes), each predicate's span points into the ES|QL text; otherwise it is
the span of the whole ``kql(...)`` call. A text that does not parse stays opaque: an
:class:`Opaque` node with the reason, and an ``error`` problem with its location.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ruleatlas.languages.elastic.trees import Leaf, map_leaves
from ruleatlas.languages.kql import lower as kql_lower
from ruleatlas.languages.kql import parse as kql_parse
from ruleatlas.languages.spl.errors import ParseError, span_of
from ruleatlas.model import (
    Analysis,
    Call,
    Condition,
    Node,
    Opaque,
    Problem,
    Span,
)

FUNCTION = "kql"
# The opening of the string argument inside the call's text: ``kql(  """`` or ``kql("``.
_OPEN = re.compile(r'kql\s*\(\s*("""|")', re.IGNORECASE)


def kql_text(node: Leaf) -> str | None:
    """The KQL text of a ``kql("...")`` condition, else None."""
    if not isinstance(node, Condition) or not isinstance(node.expr, Call):
        return None
    call = node.expr
    if call.name.lower() != FUNCTION or len(call.args) != 1 or not isinstance(call.args[0], str):
        return None
    return call.args[0]


def _content_offset(cond: Condition, text: str, query: str) -> int | None:
    """Offset in ``query`` where the literal's content starts, when it is ``text`` verbatim."""
    if cond.span is None or cond.span.start is None:
        return None
    m = _OPEN.match(cond.text)
    if m is None:
        return None
    base = cond.span.start + m.end()
    return base if query[base : base + len(text)] == text else None


def _lower_one(cond: Condition, text: str, query: str, problems: list[Problem]) -> Node:
    try:
        tree = kql_parse(text)
    except ParseError as e:
        reason = f"kql() query does not parse: {e.description}"
        problems.append(Problem(reason, "error", cond.span, "kql-parse-error"))
        return Opaque(cond.text, reason, stage=cond.stage, span=cond.span)
    base = _content_offset(cond, text, query)
    whole: Span | None = cond.span

    def locate(s: int, e: int) -> Span | None:
        return span_of(query, base + s, base + e) if base is not None else whole

    lowered = kql_lower(tree, text, locate=locate)

    def place(leaf: Leaf) -> Node:
        if isinstance(leaf, Opaque):
            return replace(leaf, stage=cond.stage)
        return replace(leaf, stage=cond.stage, phase=cond.phase)

    return map_leaves(lowered, place) or lowered


def embed_kql(analysis: Analysis, query: str) -> Analysis:
    """``analysis`` (of the ES|QL text ``query``) with every ``kql("...")`` condition replaced
    by its KQL predicates; unchanged when there is none."""
    problems: list[Problem] = []
    done: dict[tuple[Condition, int | None, Span | None], Node] = {}

    def swap(leaf: Leaf) -> Node:
        text = kql_text(leaf)
        if text is None:
            return leaf
        assert isinstance(leaf, Condition)
        key = (leaf, leaf.stage, leaf.span)  # the same text in two stages is two calls
        if key not in done:
            done[key] = _lower_one(leaf, text, query, problems)
        return done[key]

    stages = tuple(replace(st, condition=map_leaves(st.condition, swap))
                   for st in analysis.stages)
    if not done:
        return analysis
    return replace(
        analysis,
        stages=stages,
        condition=map_leaves(analysis.condition, swap),
        result_condition=map_leaves(analysis.result_condition, swap),
        problems=analysis.problems + tuple(dict.fromkeys(problems)),
        extra={**analysis.extra, "kql_calls": len(done)},
    )
