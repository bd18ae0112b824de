"""The ES|QL parser on the whole Elastic corpus, identity fixtures, located errors, fuzzing."""

from __future__ import annotations

import tomllib
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ELASTIC, ROOT
from ruleatlas.languages.esql import (
    ParseError,
    generate,
    parse,
    parse_expression,
    query_language,
    strip_fence_tag,
)
from ruleatlas.languages.esql import ast as A
from ruleatlas.languages.esql.tokens import T, tokenize
from ruleatlas.languages.parsing import Operator

FIXTURES = ROOT / "tests" / "fixtures" / "esql_identity.txt"
# Hunting queries that are not valid ES|QL (Elasticsearch rejects them too), with where.
INVALID_HUNTS = {
    # `event.provider = "..."`: a single '=' where ES|QL compares with '=='
    "hunting/aws/queries/servicequotas_discovery_multi_region_get_service_quota_calls.toml#0":
        (5, 62),
    # a trailing `or` before the closing parenthesis
    "hunting/azure/queries/entra_authentication_attempts_behind_rare_user_agents.toml#0": (42, 5),
    # `reset_counts = by ...`: an assignment without a value
    "hunting/okta/queries/credential_access_rapid_reset_password_requests_for_different_users"
    ".toml#0": (13, 20),
    # `now(-)`
    "hunting/windows/queries/execution_via_windows_scheduled_task_with_low_occurrence_frequency"
    ".toml#0": (2, 28),
}


@cache
def corpus_queries() -> tuple[tuple[str, str], ...]:
    """Every ES|QL query of the Elastic corpus: rules (``[rule] language = "esql"``) by path,
    hunting queries (``[hunt] query`` items of a hunt listing ES|QL that read as ES|QL) as
    ``path#n``."""
    out: list[tuple[str, str]] = []
    for path in sorted(ELASTIC.rglob("*.toml")):
        rel = path.relative_to(ELASTIC).as_posix()
        d = tomllib.loads(path.read_text(encoding="utf-8"))
        rule = d.get("rule") or {}
        if rule.get("language") == "esql":
            out.append((rel, rule["query"]))
        hunt = d.get("hunt") or {}
        if "ES|QL" in hunt.get("language", []):
            for i, q in enumerate(hunt.get("query", [])):
                if query_language(q) == "esql":
                    out.append((f"{rel}#{i}", q))
    return tuple(out)


def test_corpus_counts() -> None:
    qs = corpus_queries()
    rules = [n for n, _ in qs if "#" not in n]
    hunts = [n for n, _ in qs if "#" in n]
    assert len(rules) == 212  # 209 rules + 3 building blocks
    assert sum(1 for n in rules if n.startswith("rules_building_block/")) == 3
    assert len(hunts) == 165


def test_every_corpus_query_parses_and_round_trips() -> None:
    failures: dict[str, tuple[int, int]] = {}
    for name, q in corpus_queries():
        text, _ = strip_fence_tag(q)
        try:
            tree = parse(text)
        except ParseError as e:
            failures[name] = (e.line, e.col)
            continue
        assert parse(generate(tree)) == tree, name
    assert failures == INVALID_HUNTS


def identity_cases() -> list[str]:
    lines = FIXTURES.read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith("#")]


@pytest.mark.parametrize("q", identity_cases())
def test_identity_fixtures(q: str) -> None:
    assert generate(parse(q)) == q


def test_identity_fixture_count() -> None:
    assert len(identity_cases()) == 50


# ---- trees checked by hand ----------------------------------------------------------------


def test_precedence_not_binds_tighter_than_and() -> None:
    e = parse_expression("not a == 1 and b == 2 or c")
    assert e == A.Or((
        A.And((A.Not(A.BinOp("==", A.Field("a"), A.Num("1"))),
               A.BinOp("==", A.Field("b"), A.Num("2")))),
        A.Field("c"),
    ))


def test_arithmetic_is_left_associative() -> None:
    assert parse_expression("a - b - c * d") == A.BinOp(
        "-", A.BinOp("-", A.Field("a"), A.Field("b")),
        A.BinOp("*", A.Field("c"), A.Field("d")))


def test_not_like_not_in_is_not_null() -> None:
    assert parse_expression('f not like "a*"') == A.Like(A.Field("f"), (A.Str("a*"),),
                                                         negated=True)
    assert parse_expression("f not in (1, 2)") == A.In(A.Field("f"), (A.Num("1"), A.Num("2")),
                                                       negated=True)
    assert parse_expression("f IS NOT NULL") == A.IsNull(A.Field("f"), negated=True)


def test_durations_casts_params_and_backquotes() -> None:
    assert parse_expression("@timestamp > NOW() - 30 Days") == A.BinOp(
        ">", A.Field("@timestamp"),
        A.BinOp("-", A.FuncCall("now"), A.Duration(A.Num("30"), "days")))
    assert parse_expression("DATE_TRUNC(5m, x)") == A.FuncCall(
        "date_trunc", (A.Duration(A.Num("5"), "m"), A.Field("x")))
    assert parse_expression("x::STRING") == A.Cast(A.Field("x"), "string")
    assert parse_expression("`a b`.c == ?p") == A.BinOp("==", A.Field("a b.c"), A.Param("?p"))
    assert parse_expression("`a``b`") == A.Field("a`b")


def test_strings_escapes_and_triple_quotes() -> None:
    assert parse_expression(r'"C:\\Windows\\*"') == A.Str("C:\\Windows\\*")
    assert parse_expression('"""a\\.b"c"""') == A.Str('a\\.b"c')
    assert parse_expression(r'"a\tb\"c"') == A.Str('a\tb"c')
    # Elasticsearch rejects other escapes; they are kept as written (a corpus hunt has "\?")
    assert parse_expression(r'"(/|\?|$)"') == A.Str("(/|\\?|$)")


def test_from_sources_metadata_and_comments() -> None:
    q = parse("FROM logs-aws.cloudtrail-*, \"quoted\" METADATA _id // c\n/* x */| LIMIT 5")
    assert q.commands[0] == A.Command(
        "from", sources=(A.Source("logs-aws.cloudtrail-*"), A.Source("quoted", True)),
        names=("_id",))
    assert q.commands[1] == A.Command("limit", args=(A.Num("5"),))


def test_command_spans_cover_the_command() -> None:
    text = "from a | where x == 1\n| keep y"
    q = parse(text)
    assert [text[c.start:c.end] for c in q.commands] == ["from a", "where x == 1", "keep y"]


def test_inlinestats_spellings_and_agg_where() -> None:
    a = parse("from a | inlinestats c = count() where x > 1 by h").commands[1]
    b = parse("from a | INLINE STATS c = count() WHERE x > 1 BY h").commands[1]
    assert a == b == A.Command(
        "inline stats",
        assigns=(A.Assign("c", A.FuncCall("count"), A.BinOp(">", A.Field("x"), A.Num("1"))),),
        by=(A.Assign(None, A.Field("h")),))


def test_unknown_command_is_kept_opaque() -> None:
    q = parse("from a | rerank \"q\" on title | limit 1")
    assert q.commands[1] == A.Command("rerank", raw='"q" on title')


def test_tokens_have_offsets() -> None:
    toks = tokenize('from a-* | where x == "y"')
    assert [(t.kind, t.start, t.end) for t in toks[:4]] == [
        (T.NAME, 0, 4), (T.NAME, 5, 6), (Operator.MINUS, 6, 7), (Operator.STAR, 7, 8)]


# ---- located errors -------------------------------------------------------------------------


@pytest.mark.parametrize(("q", "line", "col", "message"), [
    ("", 1, 1, "empty query"),
    ("where x == 1", 1, 1, "a query starts with from, row, show or ts"),
    ("from a | where", 1, 15, "unexpected end of query in expression"),
    ("from a | where x == ", 1, 21, "unexpected end of query in expression"),
    ("from a\n| where x = 1", 2, 11, "unexpected '=' in where"),
    ("from a | where f(x", 1, 19, "expected ',' or ')' in the arguments"),
    ('from a | where x == "abc', 1, 21, "unterminated string"),
    ("from a | where `abc", 1, 16, "unterminated quoted identifier"),
    ("from a | where x /* y", 1, 18, "unterminated comment (/*)"),
    ("from a | where x in 1", 1, 21, "expected '(' after in"),
    ("from a | where x is nul", 1, 21, "expected 'null'"),
    ("from a | sort x nulls middle", 1, 23, "expected first or last after nulls"),
    ("from a | limit x", 1, 16, "expected a number after limit"),
    ("from a | rename a b", 1, 19, "expected 'as'"),
    ("from a |", 1, 9, "expected a command"),
    ("from a | where x == 1 )", 1, 23, "unexpected ')' in where"),
    ("from a | where x == 1 | keep a b", 1, 32, "unexpected 'b' in keep"),
    ("from a | where x # 1", 1, 18, "unexpected character '#'"),
    ("from metadata", 1, 6, "expected an index pattern"),
])
def test_errors_are_located(q: str, line: int, col: int, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse(q)
    assert (exc.value.line, exc.value.col) == (line, col)
    assert exc.value.description.startswith(message)


def test_corpus_invalid_hunt_is_located() -> None:
    q = dict(corpus_queries())[
        "hunting/windows/queries/execution_via_windows_scheduled_task_with_low_occurrence"
        "_frequency.toml#0"]
    with pytest.raises(ParseError) as exc:
        parse(q)
    assert (exc.value.line, exc.value.col) == (2, 28)
    assert exc.value.highlight.splitlines()[0].endswith("now(-) - 7 day")


def test_nesting_limit_is_a_located_error() -> None:
    ok = "from a | where " + "(" * 100 + "x" + ")" * 100
    assert parse(ok).commands[1].expr == A.Field("x")
    deep = "from a | where " + "(" * 101 + "x" + ")" * 101
    with pytest.raises(ParseError) as exc:
        parse(deep)
    assert exc.value.col == 15 + 101
    assert "nested deeper than 100" in exc.value.description
    calls = "from a | where " + "f(" * 100 + "x" + ")" * 100
    assert isinstance(parse(calls).commands[1].expr, A.FuncCall)
    nots = parse("from a | where " + "not " * 100 + "x").commands[1].expr
    assert isinstance(nots, A.Not)
    ins = "from a | where " + "x in (" * 100 + "1" + ")" * 100
    assert isinstance(parse(ins).commands[1].expr, A.In)
    chain = parse("row y = " + " * ".join(["x"] * 101))  # 100 operators: 100 levels
    assert parse(generate(chain)) == chain
    for prefix in ("not " * 150, "-" * 150, "f(" * 150, "x in (" * 150, "[" * 150,
                   '{"k": ' * 150, "x + " * 150):
        with pytest.raises(ParseError, match="nested deeper"):
            parse("from a | where " + prefix + "x")


def test_fence_tag_and_language_detection() -> None:
    text, fenced = strip_fence_tag("sql\nfrom a | limit 1")
    assert fenced and text == "   \nfrom a | limit 1"
    assert query_language("sql\nSELECT * FROM kernel_info;") == "sql"
    assert query_language("// c\nFROM logs-*") == "esql"
    assert query_language("sequence by host.id [process where true]") == "eql"
    assert query_language("process where process.name == \"a\"") == "eql"


# ---- fuzzing ----------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "process.name", "`x y`", "@timestamp", "Esql.count", "by"])
ATOMS = st.one_of(
    NAMES.filter(lambda n: n != "by"),
    st.integers(0, 10**6).map(str),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        .replace("\r", "\\r") + '"'),
    st.sampled_from(["true", "false", "null", "?p", "1 day", "now()", "count(*)", "1.5"]),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(
            [" and ", " or ", " == ", " != ", " + ", " * ", " like ", " rlike ", " : ", " - "]),
            children).map("".join),
        children.map(lambda c: f"not {c}"),
        children.map(lambda c: f"({c})"),
        children.map(lambda c: f"{c} is not null"),
        children.map(lambda c: f"{c}::string"),
        st.lists(children, min_size=1, max_size=3).map(lambda cs: f"x in ({', '.join(cs)})"),
        st.lists(children, max_size=3).map(lambda cs: f"coalesce({', '.join(cs)})"),
    )


EXPRESSIONS = st.recursive(ATOMS, _combine, max_leaves=12)
COMMANDS = st.one_of(
    EXPRESSIONS.map(lambda e: f"where {e}"),
    EXPRESSIONS.map(lambda e: f"eval y = {e}"),
    st.tuples(EXPRESSIONS, NAMES).map(lambda t: f"stats c = count({t[0]}) by {t[1]}"),
    NAMES.map(lambda n: f"keep {n}, b.*"),
    NAMES.map(lambda n: f"sort {n} desc nulls first"),
    st.just("limit 5"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(COMMANDS, max_size=4))
def test_generated_queries_round_trip_or_fail_located(cmds: list[str]) -> None:
    q = " | ".join(["from logs-*", *cmds])
    try:
        tree = parse(q)
    except ParseError as e:
        assert 1 <= e.line and 1 <= e.col
        return
    assert parse(generate(tree)) == tree


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('fromwhe |()"`*=!<>:,.-/\\?ab1 \n{}[]')),
               max_size=60))
def test_junk_gives_a_tree_or_a_located_error(junk: str) -> None:
    for q in (junk, "from a | where " + junk):
        try:
            tree = parse(q)
        except ParseError as e:
            assert 1 <= e.line and 1 <= e.col <= len(q) + 1
            continue
        assert parse(generate(tree)) == tree


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_corpus_queries(data: st.DataObject) -> None:
    qs = corpus_queries()
    name, q = qs[data.draw(st.integers(0, len(qs) - 1))]
    i = data.draw(st.integers(0, len(q)))
    cut = data.draw(st.integers(0, 5))
    ins = data.draw(st.sampled_from(["", "(", ")", '"', "|", " not ", "`", "::", "/*"]))
    m = q[:i] + ins + q[i + cut:]
    try:
        tree = parse(strip_fence_tag(m)[0])
    except ParseError as e:
        assert 1 <= e.line and 1 <= e.col
        return
    assert parse(generate(tree)) == tree, name
