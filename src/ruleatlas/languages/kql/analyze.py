"""One KQL query into an :class:`Analysis`: one filter stage holding the lowered tree.

Never raises for bad input: a query that does not parse gives one opaque stage and a located
``parse-error`` problem (as the SPL analyzer does).
"""

from __future__ import annotations

from ruleatlas.languages.kql.ast import Nested, walk
from ruleatlas.languages.kql.lower import is_text_field, lower
from ruleatlas.languages.kql.parser import Parser
from ruleatlas.languages.parsing import ParseError, span_of
from ruleatlas.model import Analysis, Problem, Span, Stage, StageKind, conjoin, predicates

LANGUAGE = "kql"
COMMAND = "kql"


def analyze_kql_query(query: str) -> Analysis:
    """The query as one filter stage; ``condition`` is its predicate tree."""
    try:
        parser = Parser(query)
        tree = parser.parse()
    except ParseError as e:
        where = Span(e.line, e.col, e.pos, e.pos)
        return Analysis(
            language=LANGUAGE,
            stages=(Stage(0, COMMAND, query.strip(), kind=StageKind.OPAQUE, span=where),),
            problems=(Problem(f"KQL parse error: {e.description}", "error", where,
                              "parse-error"),),
        )
    cond = conjoin([lower(tree, query)])
    notes: list[str] = []
    wild = sorted({p.field for p, _ in predicates(cond) if p.field and "*" in p.field})
    if wild:
        notes.append("field names with '*' match every field of the pattern: "
                     + ", ".join(wild))
    text = sorted({p.field for p, _ in predicates(cond) if p.field and is_text_field(p.field)})
    if text:
        notes.append("analysed text fields (values match inside the text, any case): "
                     + ", ".join(text))
    if any(isinstance(n, Nested) for n in walk(tree)):
        notes.append("nested query: its fields are written with the nested path as prefix")
    stage = Stage(0, COMMAND, query.strip(), kind=StageKind.FILTER, condition=cond,
                  notes=tuple(notes), span=span_of(query, 0, len(query)))
    return Analysis(language=LANGUAGE, stages=(stage,), condition=cond)

