"""ES|QL lowering rules one at a time: operators, casing, wildcards, Lucene regexes, stages."""

from __future__ import annotations

import pytest

from ruleatlas.languages.esql import analyze_esql_query
from ruleatlas.languages.esql.lower import like_pattern
from ruleatlas.model import (
    Call,
    Condition,
    Const,
    FieldRef,
    Not,
    Op,
    Opaque,
    Or,
    Pattern,
    Phase,
    Predicate,
    Regex,
    StageKind,
    Wild,
)

ANY, ONE = Wild.ANY, Wild.ONE


def where(expr: str) -> object:
    a = analyze_esql_query(f"from logs-* | where {expr}")
    assert not [p for p in a.problems if p.severity == "error"], a.problems
    return a.condition


def P(field: str, op: Op, *values: object, cased: bool = True) -> Predicate:
    return Predicate(field, op, tuple(values), cased=cased)  # type: ignore[arg-type]


@pytest.mark.parametrize(("expr", "expected"), [
    ('a == "x"', P("a", Op.EQ, "x")),
    ('"x" == a', P("a", Op.EQ, "x")),
    ("a != 1", P("a", Op.NE, 1)),
    ('a =~ "X"', P("a", Op.EQ, "X", cased=False)),
    ("5 < a", P("a", Op.GT, 5)),
    ("a <= -2", P("a", Op.LE, -2)),
    ("a >= 1.5", P("a", Op.GE, 1.5)),
    ("a == b", P("a", Op.EQ, FieldRef("b"))),
    ('to_lower(a) == "x"', P("a", Op.EQ, "x", cased=False)),
    ('TO_UPPER(a) like "X*"', P("a", Op.WILDCARD, Pattern(("X", ANY)), cased=False)),
    ('a::keyword == "x"', P("a", Op.EQ, "x")),
    ('a like ("x*", "?y")', P("a", Op.WILDCARD, Pattern(("x", ANY)), Pattern((ONE, "y")))),
    ('a not like "x"', Not(P("a", Op.WILDCARD, Pattern(("x",))))),
    ('a in ("x", 2)', P("a", Op.IN, "x", 2)),
    ('to_lower(a) not in ("x")', Not(P("a", Op.IN, "x", cased=False))),
    ("a is null", Not(P("a", Op.EXISTS))),
    ("a is not null", P("a", Op.EXISTS)),
    ('starts_with(a, "x")', P("a", Op.STARTSWITH, "x")),
    ('ends_with(to_lower(a), "x")', P("a", Op.ENDSWITH, "x", cased=False)),
    ('contains(a, "x")', P("a", Op.CONTAINS, "x")),
    ('mv_contains(a, "x")', P("a", Op.EQ, "x")),
    ('cidr_match(to_ip(a), "10.0.0.0/8")', P("a", Op.CIDR, "10.0.0.0/8")),
    ("a", P("a", Op.EQ, True)),
    ("true", None),
    ("false", Const(False)),
    # Anchored with \Z, not $ (which also accepts a trailing newline): Elasticsearch's regexp
    # syntax, "the pattern provided must match the entire string".
    ('a rlike "x.*"', P("a", Op.REGEX, Regex(r"^(?:x.*)\Z", frozenset({"s"})))),
    ('to_lower(a) rlike "x"', P("a", Op.REGEX, Regex(r"^(?:x)\Z", frozenset({"s", "i"})),
                                cased=False)),
])
def test_where_lowering(expr: str, expected: object) -> None:
    assert where(expr) == expected


@pytest.mark.parametrize(("expr", "call", "fields"), [
    ("a == null", Call("==", (FieldRef("a"), None)), ("a",)),
    ("length(a) > 3", Call(">", (Call("length", (FieldRef("a"),)), 3)), ("a",)),
    ("@timestamp > now() - 1 hour",
     Call(">", (FieldRef("@timestamp"), Call("-", (Call("now"), Call("duration", (1, "hour")))))),
     ("@timestamp",)),
    ('a : "x"', Call(":", (FieldRef("a"), "x")), ("a",)),
    ('kql("a: b")', Call("kql", ("a: b",)), ()),
    ("a + b > c", Call(">", (Call("+", (FieldRef("a"), FieldRef("b"))), FieldRef("c"))),
     ("a", "b", "c")),
    ("a == ?p", Call("==", (FieldRef("a"), Call("param", ("?p",)))), ("a",)),
])
def test_other_expressions_are_conditions(expr: str, call: Call, fields: tuple[str, ...]) -> None:
    c = where(expr)
    assert isinstance(c, Condition)
    assert (c.expr, c.text, c.fields) == (call, expr, fields)


@pytest.mark.parametrize(("text", "parts"), [
    ("*.exe", (ANY, ".exe")),
    ("a?c", ("a", ONE, "c")),
    ("\\*lit\\?", ("*lit?",)),
    ("C:\\\\Windows\\\\*", ("C:\\Windows\\", ANY)),
    ("end\\", ("end\\",)),
])
def test_like_pattern(text: str, parts: tuple[str | Wild, ...]) -> None:
    assert like_pattern(text) == Pattern(parts)


def test_untranslatable_rlike_is_a_condition_with_a_warning() -> None:
    a = analyze_esql_query('from a | where x rlike "a&b"')
    assert isinstance(a.condition, Condition)
    [p] = a.problems
    assert (p.severity, p.code) == ("warning", "regex-untranslatable")
    assert p.location is not None and (p.location.line, p.location.col) == (1, 16)


def test_stage_kinds_phases_and_texts() -> None:
    q = ("from logs-* metadata _id\n| eval x = 1\n| where a == 1\n| stats c = count() by h\n"
         "| where c > 1\n| sort c desc\n| limit 5")
    a = analyze_esql_query(q)
    assert [(s.command, s.kind) for s in a.stages] == [
        ("from", StageKind.GENERATE), ("eval", StageKind.TRANSFORM), ("where", StageKind.FILTER),
        ("stats", StageKind.AGGREGATE), ("where", StageKind.FILTER), ("sort", StageKind.TRANSFORM),
        ("limit", StageKind.TRANSFORM)]
    assert [s.phase for s in a.stages] == [Phase.EVENT] * 4 + [Phase.RESULT] * 3
    assert [s.text for s in a.stages[:2]] == ["from logs-* metadata _id", "| eval x = 1"]
    assert a.stages[3].by == ("h",)
    assert [(s.span.line, s.span.col) for s in a.stages if s.span] == [
        (1, 1), (2, 3), (3, 3), (4, 3), (5, 3), (6, 3), (7, 3)]
    assert a.condition == P("a", Op.EQ, 1)
    assert isinstance(a.result_condition, Predicate)
    assert a.result_condition.phase is Phase.RESULT and a.result_condition.stage == 4


def test_group_by_names_expressions_as_written() -> None:
    a = analyze_esql_query("from a | stats count(*) by b = bucket(@timestamp, 1 hour), "
                           "DATE_TRUNC(1 day, @timestamp), host.name | drop host.name")
    assert a.stages[1].by == ("b", "DATE_TRUNC(1 day, @timestamp)", "host.name")
    assert a.group_by == ("b", "DATE_TRUNC(1 day, @timestamp)")
    assert a.extra["computed_fields"] == ["count(*)"]


def test_fork_is_the_or_of_its_branches() -> None:
    a = analyze_esql_query('from a | fork (where x == 1 | limit 5) (where y == "z")')
    assert a.stages[1].kind is StageKind.FILTER
    assert a.condition == Or((P("x", Op.EQ, 1), P("y", Op.EQ, "z")))
    b = analyze_esql_query("from a | fork (stats count(*)) (where y == 1)")
    assert isinstance(b.condition, Opaque)


def test_unknown_command_is_an_opaque_stage_with_a_problem() -> None:
    a = analyze_esql_query('from a | rerank "q" on title | where x == 1')
    assert a.stages[1].kind is StageKind.OPAQUE
    [p] = a.problems
    assert (p.severity, p.code) == ("unsupported", "unknown-command")
    assert p.location is not None and (p.location.line, p.location.col) == (1, 10)
    assert a.condition == P("x", Op.EQ, 1)


def test_dissect_grok_enrich_outputs() -> None:
    a = analyze_esql_query(
        'from a | dissect m "%{?skip} %{+name} %{id->} %{}" '
        '| grok g "%{IP:ip.addr} (?<user>\\\\w+)"'
        " | enrich pol on h with new = old, kept | completion r = p with {} "
        "| rename ip.addr as ip")
    assert a.extra["computed_fields"] == ["name", "id", "ip.addr", "user", "new", "kept", "r",
                                          "ip"]


def test_not_esql_and_parse_error_never_raise() -> None:
    for q in ("", "   ", "SELECT * FROM t", "process where true", "from a | where (",
              "from a | where x == \"", "from"):
        a = analyze_esql_query(q)
        assert [s.kind for s in a.stages] == [StageKind.OPAQUE]
        assert len(a.problems) == 1


def test_unknown_time_unit_is_a_warning() -> None:
    a = analyze_esql_query("from a | eval t = date_trunc(5 fortnights, @timestamp)")
    [p] = a.problems
    assert (p.severity, p.code, p.message) == ("warning", "unknown-time-unit",
                                               "unknown time unit 'fortnights'")
    assert p.location is not None and (p.location.line, p.location.col) == (1, 30)
    assert analyze_esql_query("from a | eval t = date_trunc(5m, @timestamp)").problems == ()
