"""The three kinds of Sigma documents, one lowering each: detection rules, correlation rules
and filters (``LOWER_SECTION`` is the dispatch table, keyed by the section name)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)

from ruleatlas.languages.sigma.lower import (
    RESERVED,
    Lowerer,
    condition_texts,
    detection_stages,
    or_of,
)
from ruleatlas.languages.sigma.spans import Block, mapping_pairs
from ruleatlas.model import (
    Analysis,
    Node,
    Op,
    Opaque,
    Phase,
    Predicate,
    Problem,
    Rule,
    Span,
    Stage,
    StageKind,
)

_CORR_OPS = {
    SigmaCorrelationConditionOperator.LT: Op.LT,
    SigmaCorrelationConditionOperator.LTE: Op.LE,
    SigmaCorrelationConditionOperator.GT: Op.GT,
    SigmaCorrelationConditionOperator.GTE: Op.GE,
    SigmaCorrelationConditionOperator.EQ: Op.EQ,
    SigmaCorrelationConditionOperator.NEQ: Op.NE,
}


def _not_a_mapping(rule: Rule, block: Block) -> Analysis:
    span = block.span(block.node) or Span(rule.line, 1, path=rule.path)
    return Analysis(
        language="sigma",
        stages=(Stage(0, block.key, rule.query, kind=StageKind.OPAQUE),),
        problems=(Problem(f"'{block.key}' is not a mapping", "error", span, "schema"),),
    )


def _filtering(rule: Rule, block: Block, final: str, skip: frozenset[str]) -> Analysis:
    """Shared by detection rules and filters: detection stages, then the condition stage."""
    data = block.data
    if not isinstance(data, dict):
        return _not_a_mapping(rule, block)
    lw = Lowerer(block)
    stages, trees, names = detection_stages(lw, data, skip)
    idx = len(stages)
    if not names:
        lw.problem("no named detection", "error", block.span(block.node), "no-detection")
    texts: list[str] = []
    nodes: list[Node] = []
    aggregations: list[tuple[str, Span | None]] = []
    first_span: Span | None = None
    for text, span in condition_texts(lw, data):
        first_span = first_span or span
        texts.append(text)
        expr = text
        if "|" in text:  # Sigma 1 aggregation (`sel | count() by x > 10`), replaced by correlations
            expr, agg = (s.strip() for s in text.split("|", 1))
            aggregations.append((agg, span))
            lw.problem(f"deprecated aggregation '| {agg}' is not represented (Sigma correlations "
                       "replace it)", "unsupported", span, "aggregation")
        nodes.append(lw.condition(expr, trees, names, span, idx))
    if not texts:
        lw.problem("no condition", "error", block.span(block.node), "no-condition")
    full = or_of(nodes) if nodes else None
    stages.append(Stage(idx, final, "\n".join(texts), StageKind.FILTER, condition=full,
                        span=first_span))
    extra: dict[str, Any] = {}
    result: Node | None = None
    timeframe = data.get("timeframe")
    if timeframe is not None:
        extra["timeframe"] = str(timeframe)
        if not aggregations:
            kn, _ = mapping_pairs(block.node).get("timeframe") or (None, None)
            lw.problem("'timeframe' without aggregation has no effect", "warning",
                       block.span(kn), "timeframe")
    if aggregations:
        agg_text = "\n".join(a for a, _ in aggregations)
        reason = "Sigma 1 aggregation (pipe syntax) is not supported"
        result = Opaque(agg_text, reason, stage=idx + 1, span=aggregations[0][1])
        notes = (f"timeframe {timeframe}",) if timeframe is not None else ()
        stages.append(Stage(idx + 1, "aggregation", agg_text, StageKind.AGGREGATE,
                            condition=result, phase=Phase.RESULT, notes=notes,
                            span=aggregations[0][1]))
        extra["aggregation"] = [a for a, _ in aggregations]
    return Analysis(
        language="sigma",
        stages=tuple(stages),
        condition=full,
        result_condition=result,
        problems=tuple(lw.problems),
        extra=extra,
    )


def lower_detection(rule: Rule, block: Block) -> Analysis:
    return _filtering(rule, block, "condition", RESERVED)


def lower_filter(rule: Rule, block: Block) -> Analysis:
    """A Sigma filter document: its detections and condition, and the rules it applies to."""
    a = _filtering(rule, block, "filter", RESERVED | {"rules"})
    data = block.data if isinstance(block.data, dict) else {}
    rules = data.get("rules")
    problems = list(a.problems)
    if rules is None:
        problems.append(Problem("filter without 'rules'", "error", block.span(block.node),
                                "schema"))
    refs: Any = rules if isinstance(rules, str) else [str(r) for r in rules or ()]
    return Analysis(
        language="sigma",
        stages=a.stages,
        condition=a.condition,
        result_condition=a.result_condition,
        problems=tuple(problems),
        extra={**a.extra, "filter": {"rules": refs}},
    )


def _result_predicate(ctype: str, cond: SigmaCorrelationCondition, stage: int,
                      span: Span | None, text: str) -> Predicate:
    """``count >= 10`` for event counts, ``value_count(User) > 3`` for value types."""
    fieldref = cond.fieldref
    if isinstance(fieldref, list):
        fieldref = ",".join(fieldref)
    name = f"{ctype}({fieldref})" if fieldref else "count"
    return Predicate(name, _CORR_OPS[cond.op], (cond.count,), phase=Phase.RESULT, stage=stage,
                     text=text, span=span)


def lower_correlation(rule: Rule, block: Block) -> Analysis:
    """A correlation rule: one AGGREGATE stage, group-by, the threshold as a result-phase
    predicate, and the referenced rules in ``extra['correlation']``."""
    data = block.data
    if not isinstance(data, dict):
        return _not_a_mapping(rule, block)
    span = block.span(block.key_node or block.node, block.node)
    problems: list[Problem] = []
    sc = SigmaCorrelationRule.from_dict(
        {"title": rule.title or "untitled", "correlation": data}, collect_errors=True
    )
    for err in sc.errors:
        problems.append(Problem(f"correlation: {err}", "error", span, "correlation"))
    pairs = mapping_pairs(block.node)
    ck, cv = pairs.get("condition") or (None, None)
    cspan = block.span(ck, cv) or span
    ctype = (sc.type.name.lower() if isinstance(sc.type, SigmaCorrelationType)
             else str(data.get("type")))
    result: Node | None = None
    cond = data.get("condition")
    if isinstance(sc.condition, SigmaCorrelationCondition) and (
        isinstance(cond, dict) or cond is None
    ):
        ctext = "condition: " + ", ".join(f"{k}: {v}" for k, v in (cond or {}).items())
        result = _result_predicate(ctype, sc.condition, 0, cspan, ctext)
    elif cond is not None:
        reason = "extended temporal condition is not represented"
        result = Opaque(str(cond), reason, stage=0, span=cspan)
        problems.append(Problem(reason, "unsupported", cspan, "correlation"))
    group_by = tuple(sc.group_by or ())
    refs = [r.reference for r in sc.rules or ()]
    extra = {
        "correlation": {
            "type": ctype,
            "rules": refs,
            "timespan": str(data.get("timespan")) if data.get("timespan") is not None else None,
            "condition": cond,
            "group_by": list(group_by),
            "aliases": data.get("aliases") or {},
            "generate": bool(data.get("generate", False)),
        }
    }
    stage = Stage(0, "correlation", rule.query or block.text(block.node) or "", StageKind.AGGREGATE,
                  condition=result, phase=Phase.RESULT, by=group_by, name=ctype, span=span)
    return Analysis(
        language="sigma",
        stages=(stage,),
        condition=None,
        result_condition=result,
        group_by=group_by,
        problems=tuple(problems),
        extra=extra,
    )


LOWER_SECTION: dict[str, Callable[[Rule, Block], Analysis]] = {
    "detection": lower_detection,
    "correlation": lower_correlation,
    "filter": lower_filter,
}
