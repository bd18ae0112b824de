"""The EQL parser: identity fixtures, precedence, strings, located errors, junk input, and the
lowering rules one by one (expected trees written from the EQL semantics, not from output)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from ruleatlas.languages.eql import ParseError, analyze_eql_query, generate, parse
from ruleatlas.languages.eql import ast as E
from ruleatlas.languages.eql.parser import MAX_DEPTH
from ruleatlas.languages.eql.tokens import escape
from ruleatlas.model import (
    And,
    Call,
    Condition,
    Const,
    FieldRef,
    Node,
    Not,
    Op,
    Opaque,
    Or,
    Pattern,
    Predicate,
    Regex,
    StageKind,
    Value,
    Wild,
)

FIXTURES = ROOT / "tests" / "fixtures" / "eql_identity.txt"
ANY, ONE = Wild.ANY, Wild.ONE


def identity_cases() -> list[str]:
    lines = FIXTURES.read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith("#")]


@pytest.mark.parametrize("eql", identity_cases())
def test_identity_fixtures(eql: str) -> None:
    """Each fixture is in generated form: generating its tree gives it back."""
    assert generate(parse(eql)) == eql


def test_fixture_file_has_enough_cases() -> None:
    assert len(identity_cases()) >= 30


# ---- tree shapes ---------------------------------------------------------------------------


def cond(q: str) -> E.Expr:
    body = parse(q).body
    assert isinstance(body, E.EventQuery)
    return body.condition


def test_not_binds_tighter_than_and_and_looser_than_comparison() -> None:
    c = cond("process where not a == 1 and b == 2")
    assert c == E.And((E.Not(E.BinOp("==", E.Field("a"), E.Num(1))),
                       E.BinOp("==", E.Field("b"), E.Num(2))))


def test_and_binds_tighter_than_or() -> None:
    c = cond("process where a == 1 or b == 2 and c == 3")
    assert isinstance(c, E.Or) and isinstance(c.args[1], E.And)


def test_arithmetic_precedence_and_unary_minus() -> None:
    c = cond("process where a + 2 * -b > 1")
    assert c == E.BinOp(">", E.BinOp("+", E.Field("a"), E.BinOp("*", E.Num(2),
                                                                   E.Unary("-", E.Field("b")))),
                          E.Num(1))


def test_strings_escapes_raw_and_unicode() -> None:
    c = cond('process where a == "q\\" b\\\\ t\\t n\\n \\u{41}\\u{1F600}" and b == """C:\\x\\"""')
    assert isinstance(c, E.And)
    first, second = c.args
    assert isinstance(first, E.BinOp) and first.right == E.Str('q" b\\ t\t n\n A\U0001F600')
    assert isinstance(second, E.BinOp) and second.right == E.Str("C:\\x\\")


def test_raw_string_keeps_up_to_two_trailing_quotes() -> None:
    c = cond('process where a == """x""""')
    assert isinstance(c, E.BinOp) and c.right == E.Str('x"')


def test_fields_backquotes_optional_and_at() -> None:
    c = cond("any where ?`a``b`.c == 1 and @timestamp > 0 and `x.y-z` : \"q\"")
    assert isinstance(c, E.And)
    names = [(a.left.name, a.left.optional) for a in c.args
             if isinstance(a, (E.BinOp, E.Match)) and isinstance(a.left, E.Field)]
    assert names == [("a`b.c", True), ("@timestamp", False), ("x.y-z", False)]


def test_comments_are_skipped_and_nest() -> None:
    q = "process where /* a /* nested */ comment */ a == 1 // trailing\n and b == 2"
    assert parse(q) == parse("process where a == 1 and b == 2")


def test_sequence_parts() -> None:
    q = ("sequence by host.id with maxspan=5m [process where a == 1] by p with runs=2 "
         "![file where true] until [process where true] | head 3")
    tree = parse(q)
    seq = tree.body
    assert isinstance(seq, E.Sequence)
    assert seq.by == (E.Field("host.id"),) and seq.maxspan == E.MaxSpan(5, "m")
    assert [(m.by, m.runs, m.missing) for m in seq.members] == [
        ((E.Field("p"),), 2, False), ((), None, True)]
    assert seq.until is not None and seq.until.query.category == "process"
    assert tree.pipes == (E.Pipe("head", (E.Num(3),)),)


def test_function_names_and_tilde() -> None:
    c = cond('process where startsWith~(a, "x") and cidrmatch(b, "10.0.0.0/8")')
    assert isinstance(c, E.And)
    assert c.args[0] == E.FuncCall("startsWith", (E.Field("a"), E.Str("x")), True)
    assert c.args[1] == E.FuncCall("cidrmatch", (E.Field("b"), E.Str("10.0.0.0/8")))


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ('process where process.name == "cmd', 1, 31, "unterminated string"),
        ("process where\n  a == 'x'", 2, 8, "single-quoted"),
        ("process where a == 1 and", 1, 25, "expected a value"),
        ("sequence [process where true]", 1, 30, "at least two members"),
        ("process where a < b < c", 1, 21, "do not chain"),
        ("process where a = 1", 1, 17, "no '=' comparison"),
        ('process where a == "x\\q"', 1, 22, "unknown escape"),
        ("process where /* open", 1, 15, "unterminated comment"),
        ("sequence by a with maxspan=5 parsecs [a where true] [b where true]", 1, 30,
         "unknown time unit"),
        ("sample by a ![a where true]", 1, 13, "only belongs in a sequence"),
        ("process where a == 1 |", 1, 23, "expected a pipe name"),
        ("sequence by host.id\n  [process where true]\n  [file where a ==]", 3, 19,
         "expected a value"),
        ("where a == 1", 1, 1, "expected an event category"),
        ("process a == 1", 1, 9, "expected 'where'"),
        ('process where a : b', 1, 19, "expected a constant after ':'"),
        ('process where a == "\\u{1}"', 1, 21, "unicode escape"),
        ("", 1, 1, "expected a query"),
        ("process where " + "(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1), 1, 115,
         "nested deeper"),
    ],
)
def test_errors_are_located(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text)
    e = info.value
    assert (e.line, e.col) == (line, col), str(e)
    assert message in e.description
    assert e.highlight.endswith("^")


@pytest.mark.parametrize("prefix", ["not ", "-", "f(", "("])
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(prefix: str) -> None:
    closing = ")" if prefix in ("f(", "(") else ""
    text = "process where " + prefix * 500 + "a" + closing * 500
    with pytest.raises(ParseError, match="nested deeper"):
        parse(text)


def test_analysis_of_a_bad_query_is_one_opaque_stage_with_a_located_problem() -> None:
    a = analyze_eql_query("process where\n  a ==")
    assert [st.kind for st in a.stages] == [StageKind.OPAQUE]
    (p,) = a.problems
    assert p.code == "parse-error" and p.severity == "error"
    assert p.location is not None and (p.location.line, p.location.col) == (2, 7)


# ---- fuzzing ---------------------------------------------------------------------------------

FIELDS = st.sampled_from(["process.name", "?process.args", "`a-b`.c", "file.path", "@timestamp",
                          "a_b", "`x``y`"])
STRINGS = st.one_of(
    st.text(max_size=10).map(lambda s: f'"{escape(s)}"'),
    st.text(alphabet=st.characters(blacklist_characters='"\r\n', blacklist_categories=["Cs"]),
            max_size=8).map(lambda s: f'"""{s}"""'),
)
NUMBERS = st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(["1.5", "2e3", ".5", "-3"]))
CONSTANTS = st.one_of(STRINGS, NUMBERS, st.sampled_from(["true", "false", "null"]))


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    f = draw(FIELDS)
    kind = draw(st.sampled_from(["cmp", "match", "in", "call", "arith"]))
    if kind == "cmp":
        return f"{f} {draw(st.sampled_from(['==', '!=', '<', '<=', '>', '>=']))} {draw(CONSTANTS)}"
    if kind == "match":
        op = draw(st.sampled_from([":", "like", "like~", "regex", "regex~"]))
        vals = draw(st.lists(STRINGS, min_size=1, max_size=3))
        return f"{f} {op} " + (vals[0] if len(vals) == 1 else f"({', '.join(vals)})")
    if kind == "in":
        op = draw(st.sampled_from(["in", "in~", "not in", "not in~"]))
        return f"{f} {op} ({', '.join(draw(st.lists(CONSTANTS, min_size=1, max_size=3)))})"
    if kind == "call":
        name = draw(st.sampled_from(["startsWith", "endsWith~", "length", "cidrMatch"]))
        return f"{name}({f}, {draw(CONSTANTS)})"
    return f"{f} {draw(st.sampled_from(['+', '-', '*', '/', '%']))} {draw(NUMBERS)} > 1"


EXPRS = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(" ".join),
        inner.map(lambda s: f"not {s}"),
        inner.map(lambda s: f"({s})"),
    ),
    max_leaves=8,
)


@st.composite
def queries(draw: st.DrawFn) -> str:
    def event() -> str:
        category = draw(st.sampled_from(["process", "any", "file", '"my-cat"']))
        return f"{category} where {draw(EXPRS)}"

    shape = draw(st.sampled_from(["event", "sequence", "sample"]))
    if shape == "event":
        body = event()
    else:
        members = []
        for _ in range(draw(st.integers(2, 3))):
            m = f"[{event()}]"
            if draw(st.booleans()):
                m += f" by {draw(FIELDS)}"
            if shape == "sequence" and draw(st.booleans()):
                m += f" with runs={draw(st.integers(1, 9))}"
            members.append(m)
        head = shape + (f" by {draw(FIELDS)}" if draw(st.booleans()) else "")
        if shape == "sequence" and draw(st.booleans()):
            head += f" with maxspan={draw(st.integers(1, 60))}{draw(st.sampled_from(['s', 'm']))}"
        body = " ".join([head, *members])
    pipes = draw(st.lists(st.sampled_from(["head 3", "tail 1", "unique process.name", "count"]),
                          max_size=2))
    return " | ".join([body, *pipes])


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(queries())
def test_generated_queries_parse_round_trip_and_analyze(q: str) -> None:
    tree = parse(q)
    assert parse(generate(tree)) == tree
    a = analyze_eql_query(q)
    assert not [p for p in a.problems if p.code == "parse-error"]


JUNK = st.lists(st.sampled_from([
    "a", "b.c", "?d", "`e`", " ", "\n", ":", "==", "!=", "<", ">=", "=", "|", "[", "![", "]", "(",
    ")", ",", '"', '"x"', '"""', "'", "\\", "*", "+", "-", "~", "and", "or", "not", "in", "in~",
    "like", "regex~", "where", "any", "process", "sequence", "sample", "by", "with", "maxspan",
    "runs", "until", "1", "5m", "/*", "*/", "//", "true", "null", "\\u{", "}",
]), max_size=30).map("".join)


@settings(max_examples=500, deadline=1000)
@given(st.one_of(JUNK, st.text(max_size=60)))
def test_junk_gives_tree_or_located_error(text: str) -> None:
    try:
        tree = parse(text)
    except ParseError as e:
        assert 1 <= e.line and 1 <= e.col and 0 <= e.pos <= len(text)
        return
    assert parse(generate(tree)) == tree


@settings(max_examples=200, deadline=1000)
@given(st.text(max_size=80))
def test_analyze_never_raises(text: str) -> None:
    analyze_eql_query(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**9))
def test_mutated_corpus_queries_give_tree_or_located_error(seed: int) -> None:
    from test_eql_corpus import corpus_queries

    rnd = random.Random(seed)
    _name, q = rnd.choice(corpus_queries())
    i = rnd.randrange(len(q) + 1)
    q = q[:i] + rnd.choice(['"', "(", ")", "[", "]", "`", "|", " and", "", "not "]) + q[i + 1:]
    try:
        tree = parse(q)
    except ParseError as e:
        assert 1 <= e.line and 1 <= e.col and 0 <= e.pos <= len(q)
        return
    assert parse(generate(tree)) == tree


# ---- lowering rules ----------------------------------------------------------------------------


def lowered(q: str) -> Node | None:
    """The condition of ``any where q`` (no category predicate)."""
    return analyze_eql_query(f"any where {q}").condition


def P(field: str, op: Op, *values: Value, cased: bool = False, negated: bool = False) -> Predicate:
    return Predicate(field, op, values, negated=negated, cased=cased)


@pytest.mark.parametrize(("q", "expected"), [
    ('f : "x"', P("f", Op.EQ, "x")),
    ('f : "a*b?"', P("f", Op.WILDCARD, Pattern(("a", ANY, "b", ONE)))),
    ('f : ("a", "b*")', P("f", Op.IN, "a", Pattern(("b", ANY)))),
    ('f : 4', P("f", Op.EQ, 4)),
    ('f == "a*"', P("f", Op.EQ, "a*", cased=True)),
    ('f != "x"', P("f", Op.NE, "x", cased=True)),
    ("f == null", P("f", Op.EXISTS, cased=True, negated=True)),
    ("f != null", P("f", Op.EXISTS, cased=True)),
    ("f == true", P("f", Op.EQ, True, cased=True)),
    ('"x" == f', P("f", Op.EQ, "x", cased=True)),
    ("3 < f", P("f", Op.GT, 3, cased=True)),
    ("f <= -2.5", P("f", Op.LE, -2.5, cased=True)),
    ('f like "a"', P("f", Op.WILDCARD, Pattern(("a",)), cased=True)),
    ('f like~ ("a*", "b")', P("f", Op.IN, Pattern(("a", ANY)), Pattern(("b",)))),
    ('f in ("a", 1)', P("f", Op.IN, "a", 1, cased=True)),
    ('f in~ ("a")', P("f", Op.IN, "a")),
    ('f not in ("a")', P("f", Op.IN, "a", cased=True, negated=True)),
    ('f not in~ ("a")', P("f", Op.IN, "a", negated=True)),
    ('not f in ("a")', Not(P("f", Op.IN, "a", cased=True))),
    ('startsWith(f, "x")', P("f", Op.STARTSWITH, "x", cased=True)),
    ('startswith~(f, "x")', P("f", Op.STARTSWITH, "x")),
    ('endsWith(f, "x")', P("f", Op.ENDSWITH, "x", cased=True)),
    ('stringContains~(f, "x")', P("f", Op.CONTAINS, "x")),
    ('cidrMatch(f, "10.0.0.0/8", "::1")', P("f", Op.CIDR, "10.0.0.0/8", "::1")),
    ('startsWith(f, "x") == false', Not(P("f", Op.STARTSWITH, "x", cased=True))),
    ("f", P("f", Op.EQ, True, cased=True)),
    ("false", Const(False)),
    ('f regex "a.c"', P("f", Op.REGEX, Regex(r"^(?:a.c)\Z", frozenset({"s"})), cased=True)),
    ('f regex~ ("a", "b")', P("f", Op.REGEX, Regex(r"^(?:a)\Z", frozenset({"s", "i"})),
                              Regex(r"^(?:b)\Z", frozenset({"s", "i"})))),
    ('(a == 1 or (b == 2)) and c == 3', And((Or((P("a", Op.EQ, 1, cased=True),
                                                P("b", Op.EQ, 2, cased=True))),
                                            P("c", Op.EQ, 3, cased=True)))),
])
def test_lowering_rules(q: str, expected: Node) -> None:
    assert lowered(q) == expected


def test_where_true_is_no_filter() -> None:
    assert lowered("true") is None
    assert analyze_eql_query("file where true").condition == P("event.category", Op.EQ, "file",
                                                                  cased=True)


def test_functions_and_arithmetic_become_conditions() -> None:
    c = lowered("length(a) + 1 > b % 2")
    assert isinstance(c, Condition)
    assert c.expr == Call(">", (Call("+", (Call("length", (FieldRef("a"),)), 1)),
                                Call("%", (FieldRef("b"), 2))))
    assert c.fields == ("a", "b") and c.text == "length(a) + 1 > b % 2"
    c2 = lowered('substring(a, 0, 2) : ("x*", "y")')
    assert isinstance(c2, Condition)
    assert c2.expr == Call(":", (Call("substring", (FieldRef("a"), 0, 2)), "x*", "y"))
    c3 = lowered("a == b")
    assert isinstance(c3, Condition) and c3.expr == Call("==", (FieldRef("a"), FieldRef("b")))


def test_category_predicate_and_spans() -> None:
    a = analyze_eql_query('process where\n  process.name : "x"')
    assert a.condition == And((P("event.category", Op.EQ, "process", cased=True),
                               P("process.name", Op.EQ, "x")))
    preds = [p for p, _ in a.all_predicates()]
    assert [(p.text, p.span.line, p.span.col) for p in preds if p.span] == [
        ("process", 1, 1), ('process.name : "x"', 2, 3)]


def test_unsupported_lucene_regex_is_opaque_with_reason() -> None:
    a = analyze_eql_query('any where f regex "a&b"')
    assert isinstance(a.condition, Opaque) and "intersection" in a.condition.reason
    assert [p.code for p in a.problems] == ["eql-opaque"]


def test_filter_and_count_pipes() -> None:
    a = analyze_eql_query('process where true | filter a == 1 | count host.id')
    assert [(s.command, s.kind) for s in a.stages] == [
        ("process where", StageKind.FILTER), ("filter", StageKind.FILTER),
        ("count", StageKind.AGGREGATE)]
    assert a.result_condition == P("a", Op.EQ, 1, cased=True)
    assert a.group_by == ("host.id",)
    assert a.condition == P("event.category", Op.EQ, "process", cased=True)


def test_unknown_pipe_is_an_opaque_stage() -> None:
    a = analyze_eql_query("process where true | frobnicate 3")
    assert a.stages[-1].kind is StageKind.OPAQUE
    assert [p.code for p in a.problems] == ["eql-pipe"]


def test_sequence_condition_is_the_union_of_present_members() -> None:
    a = analyze_eql_query("sequence [process where a == 1] ![file where b == 2] "
                          "[process where a == 1] [network where c == 3]")
    proc = And((P("event.category", Op.EQ, "process", cased=True), P("a", Op.EQ, 1, cased=True)))
    net = And((P("event.category", Op.EQ, "network", cased=True), P("c", Op.EQ, 3, cased=True)))
    assert a.condition == Or((proc, net))
    anything = analyze_eql_query("sequence [any where true] [process where a == 1]")
    assert anything.condition is None
    assert anything.sequence is not None and anything.sequence.steps[0].condition is None


def test_registered_analyzer_reads_the_rule_query() -> None:
    from ruleatlas.languages import AnalysisContext, language
    from ruleatlas.model import Rule

    q = 'process where process.name : "x"'
    rule = Rule(id="r", source="elastic", path="r.toml", title="t", language="eql", query=q,
                body="")
    a = language("eql").analyzer(rule, AnalysisContext())
    assert a == analyze_eql_query(q) and a.language == "eql"
