"""The KQL parser against Kibana's grammar: precedence, values, escapes, Kibana's quirks, errors
with exact line/col, identity fixtures, lowering details, and hypothesis fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from ruleatlas.languages.kql import ParseError, analyze_kql_query, generate, lower, parse
from ruleatlas.languages.kql.ast import (
    And,
    Empty,
    Expr,
    FieldValue,
    FreeText,
    Nested,
    Not,
    Or,
    Quoted,
    Range,
    Unquoted,
    Value,
    ValueExpr,
    VAnd,
    VNot,
    VOr,
)
from ruleatlas.languages.kql.tokens import js_trim
from ruleatlas.model import And as MAnd
from ruleatlas.model import Const, Op, Pattern, Predicate, Span, StageKind, Wild
from ruleatlas.model import Not as MNot
from ruleatlas.model import Or as MOr

FIXTURES = ROOT / "tests" / "fixtures" / "kql_identity.txt"
ANY = Wild.ANY


def u(*parts: str | Wild) -> Unquoted:
    return Unquoted(Pattern(parts))


def fv(field: str, value: ValueExpr) -> FieldValue:
    return FieldValue(u(field), value)


# ---- grammar -------------------------------------------------------------------------------


def test_keywords_in_any_case_and_precedence_not_and_or() -> None:
    assert parse("a:1 OR b:2 And NOT c:3") == Or((
        fv("a", u("1")), And((fv("b", u("2")), Not(fv("c", u("3")))))))
    assert parse("not a:1 and b:2") == And((Not(fv("a", u("1"))), fv("b", u("2"))))
    assert parse("(a:1 or b:2) and c:3") == And((Or((fv("a", u("1")), fv("b", u("2")))),
                                                 fv("c", u("3"))))


def test_grouping_of_the_same_connective_is_kept() -> None:
    assert parse("a:1 or (b:2 or c:3)") == Or((fv("a", u("1")), Or((fv("b", u("2")),
                                                                    fv("c", u("3"))))))
    assert parse("a:1 or b:2 or c:3") == Or((fv("a", u("1")), fv("b", u("2")),
                                             fv("c", u("3"))))


def test_value_lists_with_and_or_not() -> None:
    assert parse("f:(a or b and not c)") == fv("f", VOr((u("a"), VAnd((u("b"), VNot(u("c")))))))
    assert parse("f : ( (a) or not (b or c) )") == fv("f", VOr((u("a"),
                                                               VNot(VOr((u("b"), u("c")))))))


def test_unquoted_values_run_across_whitespace_and_are_trimmed() -> None:
    assert parse("message: quick brown fox ") == fv("message", u("quick brown fox"))
    assert parse("f: a\n  b or c") == Or((fv("f", u("a\n  b")), FreeText(u("c"))))


def test_wildcards_in_values_and_fields_quoted_stars_are_literal() -> None:
    assert parse("process.*: *cmd*.exe") == FieldValue(u("process.", ANY),
                                                       u(ANY, "cmd", ANY, ".exe"))
    assert parse('f: "*cmd*"') == fv("f", Quoted("*cmd*"))
    assert parse('"my field": x') == FieldValue(Quoted("my field"), u("x"))


def test_ranges_and_nested_queries() -> None:
    assert parse("a>1 and b >= 2 and c< 3 and d <=\"x\"") == And((
        Range(u("a"), ">", u("1")), Range(u("b"), ">=", u("2")), Range(u("c"), "<", u("3")),
        Range(u("d"), "<=", Quoted("x"))))
    assert parse("p:{ a:x and q:{ b:y } }") == Nested(u("p"), And((
        fv("a", u("x")), Nested(u("q"), fv("b", u("y"))))))


def test_free_text_and_empty_query() -> None:
    assert parse('foo or "bar baz"') == Or((FreeText(u("foo")), FreeText(Quoted("bar baz"))))
    assert parse("  \n ") == Empty()


def test_unquoted_escapes() -> None:
    assert parse(r'f: \(x\)\:\<\>\"\*\{\}\\') == fv("f", u('(x):<>"*{}\\'))
    assert parse(r"f: a\tb\u0041") == fv("f", u("a\tbA"))
    assert parse(r"f: x \or y \AND z") == fv("f", u("x or y AND z"))
    # as in Kibana, \n wins over \not: a newline and "ot"
    assert parse(r"f: a\not") == fv("f", u("a\not"))


def test_quoted_escapes_keep_other_backslashes() -> None:
    assert parse(r'f: "C:\Program Files\x"') == fv("f", Quoted("C:\\Program Files\\x"))
    assert parse(r'f: "a\"b\\c\u0041\t"') == fv("f", Quoted('a"b\\cA\t'))


def test_kibana_keyword_lookahead_quirks() -> None:
    # 'or'/'and' are keywords only after an operand; at the start of a value they are text
    assert parse("( or x)") == FreeText(u("or x"))
    assert parse("f:(a or or b)") == fv("f", VOr((u("a"), u("or b"))))
    assert parse("f: and") == fv("f", u("and"))
    # 'not' needs whitespace after it: "not(" is the text "not", then '(' is an error
    with pytest.raises(ParseError) as e:
        parse("not(a:b)")
    assert (e.value.line, e.value.col) == (1, 4)
    # 'not' followed by whitespace ends an unquoted literal anywhere, even inside a word
    with pytest.raises(ParseError) as e:
        parse("f: cannot be")
    assert (e.value.line, e.value.col) == (1, 7)


def test_true_false_null_are_typed_only_in_lowercase_unquoted() -> None:
    q = 'a: true and b: false and c: null and d: True and e: "true"'
    assert lower(parse(q), q) == MAnd((
        Predicate("a", Op.EQ, (True,), cased=True), Predicate("b", Op.EQ, (False,), cased=True),
        Predicate("c", Op.EQ, (None,), cased=True), Predicate("d", Op.EQ, ("True",), cased=True),
        Predicate("e", Op.EQ, ("true",), cased=True)))


# ---- errors with exact line/col --------------------------------------------------------------


@pytest.mark.parametrize(("text", "line", "col", "message"), [
    ("a:(b or c", 1, 10, "expected ')'"),
    ("a:b)", 1, 4, "expected 'and', 'or' or the end of the query"),
    ('a: "abc', 1, 4, "unterminated string"),
    ("a:b and\n  c:\\x", 2, 5, "invalid escape '\\x'"),
    ("a: not b", 1, 4, "expected a value or '(' after ':'"),
    ("not not a:b", 1, 5, "'not' must be followed by"),
    ("a:b and ", 1, 9, "expected a field, a value or '('"),
    ("a > (1)", 1, 5, "expected a value after '>'"),
    ("a:{ b:c ", 1, 9, "expected '}'"),
    ("x:1 and\n\n   )", 3, 4, "expected a field, a value or '('"),
    ("a:b\\", 1, 4, "backslash at the end of the query"),
])
def test_errors_are_located(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(text)
    assert (e.value.line, e.value.col) == (line, col)
    assert message in e.value.description


def test_deep_nesting_is_a_located_error_not_a_recursion_error() -> None:
    for text in ["(" * 150 + "a:b" + ")" * 150, "a:" + "(" * 150 + "b" + ")" * 150,
                 "a:{" * 150 + "b:c" + "}" * 150]:
        with pytest.raises(ParseError) as e:
            parse(text)
        assert "nested deeper than 100 levels" in e.value.description
    assert parse("(" * 100 + "a:b" + ")" * 100) == fv("a", u("b"))


def test_long_inputs_are_read_in_linear_time() -> None:
    # each would take minutes with a quadratic scan of spaces, keywords or strings
    n = 20_000
    assert parse("f: " + "x " * n + "y") == fv("f", u("x " * n + "y"))
    assert len(parse("f: (a" + " or b" * n + ")").value.args) == n + 1  # type: ignore[union-attr]
    with pytest.raises(ParseError):
        parse('f: "' + "\\" * n)
    with pytest.raises(ParseError):
        parse("f: " + " " * n + "not x")


def test_analysis_of_a_bad_query_is_one_opaque_stage_and_a_located_problem() -> None:
    a = analyze_kql_query("event.code: 4104 and\n  (process.name: x")
    assert [s.kind for s in a.stages] == [StageKind.OPAQUE]
    (p,) = a.problems
    assert (p.code, p.severity, p.location) == ("parse-error", "error", Span(2, 19, 39, 39))
    assert p.message == "KQL parse error: expected ')', got end of query"


def test_registered_analyzer_reads_the_rules_query() -> None:
    from ruleatlas.languages import AnalysisContext, language
    from ruleatlas.model import Rule

    rule = Rule(id="r", source="elastic", path="rules/x.toml", title="T", language="kql",
                query="event.code: 4104 and not user.id: S-1-5-18", body="b")
    a = language("kql").analyzer(rule, AnalysisContext())
    assert a.language == "kql" and a.problems == ()
    assert a.condition == MAnd((Predicate("event.code", Op.EQ, ("4104",), cased=True),
                                MNot(Predicate("user.id", Op.EQ, ("S-1-5-18",), cased=True))))
    assert [(s.command, s.text) for s in a.stages] == [("kql", rule.query)]


def test_analysis_of_an_empty_query_has_no_condition() -> None:
    a = analyze_kql_query("")
    assert a.condition is None and a.stages[0].kind is StageKind.FILTER


# ---- lowering --------------------------------------------------------------------------------


def test_lowering_of_lists_exists_and_free_text() -> None:
    q = 'f:(a or "b" or c* or not d or *) and foo* and *'
    assert lower(parse(q), q) == MAnd((
        MOr((Predicate("f", Op.IN, ("a", "b", Pattern(("c", ANY))), cased=True),
             MNot(Predicate("f", Op.EQ, ("d",), cased=True)),
             Predicate("f", Op.EXISTS, ()))),
        Predicate(None, Op.KEYWORD, (Pattern(("foo", ANY)),)),
        Const(True)))


def test_lowering_keeps_text_and_spans_and_takes_cased_and_locate() -> None:
    q = "a: x and\n  b: (y or z)"
    (pa, pb) = lower(parse(q), q).args  # type: ignore[union-attr]
    assert (pa.text, pa.span) == ("a: x", Span(1, 1, 0, 4))
    assert (pb.text, pb.span) == ("b: (y or z)", Span(2, 3, 11, 22))
    moved = lower(parse(q), q, cased=False, locate=lambda s, e: Span(9, s, s, e))
    assert isinstance(moved, MAnd) and isinstance(moved.args[1], Predicate)
    assert moved.args[1].cased is False and moved.args[1].span == Span(9, 11, 11, 22)


def test_lowering_without_the_source_gives_the_same_tree_without_text() -> None:
    q = "a: (x or y or (z and w))"
    bare = lower(parse(q))
    assert bare == lower(parse(q), q)
    assert isinstance(bare, MOr) and isinstance(bare.args[0], Predicate)
    assert (bare.args[0].text, bare.args[0].span) == (None, None)


def test_text_fields_lower_to_contains_and_caseless_fields_are_not_cased() -> None:
    q = 'message: "Quick Fox" and url.original.text: (a or b*) and process.name.caseless: CMD.EXE'
    assert lower(parse(q), q) == MAnd((
        Predicate("message", Op.CONTAINS, ("Quick Fox",)),
        Predicate("url.original.text", Op.CONTAINS, ("a", Pattern(("b", ANY)))),
        Predicate("process.name.caseless", Op.EQ, ("CMD.EXE",))))


def test_nested_prefix_accumulates() -> None:
    q = "p:{ a:x and q:{ b >= 2 } }"
    assert lower(parse(q), q) == MAnd((Predicate("p.a", Op.EQ, ("x",), cased=True),
                                       Predicate("p.q.b", Op.GE, (2,))))


def test_range_values_become_numbers_when_they_are() -> None:
    q = 'a > 5 and b < -1.5e3 and c >= "7" and d <= now-1d'
    assert lower(parse(q), q) == MAnd((
        Predicate("a", Op.GT, (5,)), Predicate("b", Op.LT, (-1500.0,)),
        Predicate("c", Op.GE, (7,)), Predicate("d", Op.LE, ("now-1d",))))


# ---- generator -------------------------------------------------------------------------------


def test_generator_escapes_what_would_end_an_unquoted_value() -> None:
    t = fv("f", u("x or y and not z ", ANY, ' (a):"b"'))
    text = generate(t)
    assert text == 'f: x \\or y \\and no\\u0074 z *\\ \\(a\\)\\:\\"b\\"'.replace("\\ ", " ")
    assert parse(text) == t


def identity_cases() -> list[str]:
    lines = FIXTURES.read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith("#")]


@pytest.mark.parametrize("kql", identity_cases())
def test_identity_fixtures(kql: str) -> None:
    """Each fixture is already in generated form: generating its tree gives it back."""
    assert generate(parse(kql)) == kql


# ---- hypothesis --------------------------------------------------------------------------------

JUNK = st.text(alphabet=' \t\n\\():<>"*{}abnotrdAONx.-/?u0123', max_size=60)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(JUNK)
def test_junk_gives_a_tree_or_a_located_error(text: str) -> None:
    try:
        tree = parse(text)
    except ParseError as e:
        assert 1 <= e.line and 1 <= e.col
        assert 0 <= e.pos <= len(text)
        return
    assert parse(generate(tree)) == tree


@settings(max_examples=200, deadline=2000)
@given(st.text(max_size=80))
def test_any_text_gives_a_tree_or_a_located_error(text: str) -> None:
    try:
        tree = parse(text)
    except ParseError:
        return
    assert parse(generate(tree)) == tree


TOKENS = [*' \t\n\u00a0\\():<>"*{}abnotrdAONx.-?u0', "or", "and", "not", "OR", " or ", " not ",
          "\\u0041"]
TEXT = st.lists(st.sampled_from(TOKENS), max_size=8).map("".join)
PARTS = st.lists(st.one_of(st.just(ANY), st.text(
    alphabet=' \t\u00a0\\():<>"*{}abnotrdAONu0\u3000\x1c', min_size=1, max_size=8) | TEXT),
    max_size=5)


def _unquoted(parts: list[str | Wild]) -> Unquoted:
    return Unquoted(Pattern(tuple(js_trim(list(Pattern(tuple(parts)).parts)))))


VALUES: st.SearchStrategy[Value] = st.one_of(st.builds(Quoted, st.text(max_size=10)),
                                             PARTS.map(_unquoted))
VALUE_EXPRS: st.SearchStrategy[ValueExpr] = st.recursive(
    VALUES,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda a: VOr(tuple(a))),
        st.lists(inner, min_size=2, max_size=3).map(lambda a: VAnd(tuple(a))),
        inner.map(VNot)),
    max_leaves=6)
EXPRS: st.SearchStrategy[Expr] = st.recursive(
    st.one_of(st.builds(FieldValue, VALUES, VALUE_EXPRS),
              st.builds(Range, VALUES, st.sampled_from(["<", "<=", ">", ">="]), VALUES),
              st.builds(FreeText, VALUES)),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda a: Or(tuple(a))),
        st.lists(inner, min_size=2, max_size=3).map(lambda a: And(tuple(a))),
        inner.map(Not),
        st.builds(Nested, VALUES, inner)),
    max_leaves=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRS)
def test_generated_trees_round_trip(tree: Expr) -> None:
    assert parse(generate(tree)) == tree
