"""Sigma conditions, stages, spans and the known pitfalls (escapes, `them`, exact `1 of`)."""

from __future__ import annotations

import textwrap

from ruleatlas.languages import AnalysisContext, analyze
from ruleatlas.languages.sigma import analyze_sigma, rule_from_text
from ruleatlas.model import (
    Analysis,
    And,
    Not,
    Op,
    Opaque,
    Or,
    Pattern,
    Predicate,
    StageKind,
    Wild,
    analysis_from_dict,
    analysis_to_dict,
)

ANY = Wild.ANY


def run(detection: str, line: int = 1) -> Analysis:
    text = "title: t\nlogsource:\n    product: windows\ndetection:\n" + textwrap.indent(
        textwrap.dedent(detection).strip("\n"), "    ") + "\n"
    return analyze_sigma(rule_from_text(text, "r.yml", line), AnalysisContext())


def eq(field: str, value: object) -> Predicate:
    return Predicate(field, Op.EQ, (value,))


# ---- escapes ---------------------------------------------------------------------------------


def test_escaped_star_is_literal():
    a = run("sel:\n    F: 'a\\*b'\ncondition: sel")
    assert a.condition == eq("F", "a*b")


def test_double_backslash_star_is_backslash_then_wildcard():
    a = run("sel:\n    F: 'a\\\\*'\ncondition: sel")
    assert a.condition == Predicate("F", Op.WILDCARD, (Pattern(("a\\", ANY)),))


def test_trailing_backslash_is_literal():
    a = run("sel:\n    F|startswith: 'C:\\Windows\\'\ncondition: sel")
    assert a.condition == Predicate("F", Op.STARTSWITH, ("C:\\Windows\\",))


def test_backslash_before_ordinary_char_is_kept():
    a = run("sel:\n    F: 'C:\\Users\\x'\ncondition: sel")
    assert a.condition == eq("F", "C:\\Users\\x")


def test_escaped_question_mark_in_contains():
    a = run("sel:\n    F|contains: 'what\\?'\ncondition: sel")
    assert a.condition == Predicate("F", Op.CONTAINS, ("what?",))


# ---- condition -------------------------------------------------------------------------------


def test_and_not_or_precedence():
    a = run("a:\n    A: 1\nb:\n    B: 2\nc:\n    C: 3\ncondition: a or b and not c")
    assert a.condition == Or((eq("A", 1), And((eq("B", 2), Not(eq("C", 3))))))


def test_parentheses_and_flattening():
    a = run("a:\n    A: 1\nb:\n    B: 2\nc:\n    C: 3\ncondition: (a and b) and c")
    assert a.condition == And((eq("A", 1), eq("B", 2), eq("C", 3)))


def test_one_of_pattern_is_or_all_of_is_and():
    det = "sel_a:\n    A: 1\nsel_b:\n    B: 2\nother:\n    C: 3\n"
    assert run(det + "condition: 1 of sel_*").condition == Or((eq("A", 1), eq("B", 2)))
    assert run(det + "condition: all of sel_*").condition == And((eq("A", 1), eq("B", 2)))
    assert run(det + "condition: any of sel_*").condition == Or((eq("A", 1), eq("B", 2)))


def test_them_skips_underscore_identifiers():
    a = run("sel:\n    A: 1\n_helper:\n    H: 9\nother:\n    B: 2\ncondition: all of them")
    assert a.condition == And((eq("A", 1), eq("B", 2)))
    assert [s.name for s in a.stages[:-1]] == ["sel", "_helper", "other"]  # still a stage


def test_one_of_without_wildcard_is_exact_name():
    a = run("selection:\n    A: 1\nselection_extra:\n    B: 2\ncondition: 1 of selection")
    assert a.condition == eq("A", 1)


def test_null_vs_empty_vs_exists():
    a = run("n:\n    F: null\ne:\n    F: ''\nx:\n    F|exists: true\n"
            "condition: n or e or x")
    assert a.condition == Or((eq("F", None), eq("F", ""), Predicate("F", Op.EXISTS, ())))
    assert eq("F", None) != eq("F", "")


def test_not_filter_keeps_negation_on_the_tree():
    a = run("selection:\n    A: 1\nfilter_main:\n    B: null\n"
            "condition: selection and not filter_main")
    assert a.condition == And((eq("A", 1), Not(eq("B", None))))


def test_list_of_maps_is_or_of_ands():
    a = run("sel:\n    - A: 1\n      B: 2\n    - C: 3\ncondition: sel")
    assert a.condition == Or((And((eq("A", 1), eq("B", 2))), eq("C", 3)))


def test_list_of_conditions_is_or():
    a = run("a:\n    A: 1\nb:\n    B: 2\ncondition:\n    - a\n    - b")
    assert a.condition == Or((eq("A", 1), eq("B", 2)))
    assert a.stages[-1].text == "a\nb"


def test_undefined_identifier_is_located_error():
    a = run("a:\n    A: 1\ncondition: a and nope")
    assert isinstance(a.condition, And) and isinstance(a.condition.args[1], Opaque)
    assert a.problems[0].code == "undefined-detection"
    loc = a.problems[0].location
    assert loc is not None and (loc.line, loc.col, loc.path) == (7, 5, "r.yml")


def test_selector_matching_nothing_is_a_problem():
    a = run("a:\n    A: 1\ncondition: a or 1 of zzz*")
    assert a.problems[0].code == "empty-selector"


def test_condition_syntax_error_is_a_problem():
    a = run("a:\n    A: 1\ncondition: a and (")
    assert isinstance(a.condition, Opaque) and a.problems[0].code == "condition"


# ---- stages, text and spans ------------------------------------------------------------------


def test_stages_one_per_detection_then_condition():
    a = run("selection:\n    A|contains: x\nfilter_main:\n    B: y\n"
            "condition: selection and not filter_main", line=10)
    sel, filt, cond = a.stages
    assert (sel.index, sel.command, sel.name, sel.kind) == (0, "selection", "selection",
                                                            StageKind.FILTER)
    assert (filt.command, filt.name) == ("filter", "filter_main")
    assert cond.command == "condition" and cond.text == "selection and not filter_main"
    assert sel.text == "selection:\n        A|contains: x"
    assert sel.condition == Predicate("A", Op.CONTAINS, ("x",))
    assert cond.condition == a.condition
    # file positions: document starts at line 10; "selection:" is its 5th line, column 5
    assert sel.span is not None and (sel.span.line, sel.span.col) == (14, 5)
    pred = sel.condition
    assert isinstance(pred, Predicate) and pred.stage == 0
    assert pred.span is not None and (pred.span.line, pred.span.col) == (15, 9)
    assert pred.span.path == "r.yml"
    inlined = a.condition
    assert isinstance(inlined, And) and inlined.args[1].arg.stage == 1  # type: ignore[union-attr]


def test_span_offsets_slice_the_body():
    text = ("title: t\ndetection:\n    sel:\n        Image|endswith: '\\x.exe'\n"
            "    condition: sel\n")
    rule = rule_from_text(text, "x.yml")
    a = analyze_sigma(rule, AnalysisContext())
    p = a.condition
    assert isinstance(p, Predicate) and p.span is not None
    assert rule.body[p.span.start:p.span.end] == "Image|endswith: '\\x.exe'"


def test_stage_text_drops_trailing_comments():
    a = run("sel:\n    A: 1\n# a comment\n\ncondition: sel")
    assert a.stages[0].text == "sel:\n        A: 1"


def test_analysis_round_trips_through_json():
    a = run("selection:\n    A|contains|all: ['x', 'y*z']\n    B|re|i: '^a'\n"
            "filter:\n    C: null\ncondition: selection and not filter")
    assert analysis_from_dict(analysis_to_dict(a)) == a


def test_registered_in_language_registry():
    rule = rule_from_text("title: t\ndetection:\n    s:\n        A: 1\n    condition: s\n")
    assert analyze(rule).condition == eq("A", 1)


def test_modifier_on_detection_name_is_flagged():
    a = run("sel|endswith:\n    Image: '/tree'\ncondition: 1 of sel*")
    assert a.condition == eq("Image", "/tree")  # as pySigma reads it: the name is just a name
    assert [p.code for p in a.problems] == ["modifier-on-name"]
    assert a.problems[0].severity == "warning"
