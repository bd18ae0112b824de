"""The SPL parser on the whole corpus, round trips, identity fixtures, errors and junk input."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, SPLUNK
from ruleatlas.languages.spl import ParseError, analyze_query, generate, parse
from ruleatlas.sources.splunk import load_macros

FIXTURES = ROOT / "tests" / "fixtures" / "spl_identity.txt"


@cache
def corpus_searches() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in sorted((SPLUNK / "detections").rglob("*.yml")):
        d = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        out.append((path.name, d["search"]))
        for i, dd in enumerate(d.get("drilldown_searches") or []):
            out.append((f"{path.name}#drilldown{i}", dd["search"]))
    return out


@pytest.mark.slow
def test_every_corpus_search_and_drilldown_parses() -> None:
    searches = corpus_searches()
    detections = sum(1 for n, _ in searches if "#" not in n)
    assert detections == 1711
    assert len(searches) - detections == 2618
    failures = []
    for name, q in searches:
        try:
            parse(q)
        except ParseError as e:
            failures.append(f"{name}: {e}")
    assert failures == []


@pytest.mark.slow
def test_generator_roundtrip_on_corpus() -> None:
    for name, q in corpus_searches():
        tree = parse(q)
        again = parse(generate(tree))
        assert again == tree, name


@pytest.mark.slow
def test_corpus_analysis_has_no_errors() -> None:
    macros = load_macros(SPLUNK)
    unknown = 0
    for name, q in corpus_searches():
        if "#" in name:
            continue
        a = analyze_query(q, macros)
        assert not [p for p in a.problems if p.severity == "error"], name
        unknown += sum(1 for p in a.problems if p.code == "unknown-macro")
        if a.extra.get("macros"):  # the expanded tree: the whole search after expansion parses
            expanded = parse(a.extra["expanded_search"])
            assert len(expanded.commands) >= len(a.stages), name
    # cim_corporate_web_domain_search (2 calls) and get_asset (1) are not shipped in the corpus
    assert unknown == 3


def identity_cases() -> list[str]:
    lines = FIXTURES.read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith("#")]


@pytest.mark.parametrize("spl", identity_cases())
def test_identity_fixtures(spl: str) -> None:
    """Each fixture is already in generated form: generating its tree gives it back."""
    assert generate(parse(spl)) == spl


@pytest.mark.parametrize(
    ("spl", "line", "col", "message"),
    [
        ('index=a "unclosed', 1, 9, "unterminated string"),
        ("index=a | ", 1, 11, "empty pipeline stage"),
        ("index=a\n| where (x=1", 2, 13, "missing ')'"),
        ("index=a OR", 1, 9, "OR without a right operand"),
        ("index=a [ search b", 1, 9, "unclosed subsearch"),
        ("index=a | eval = 3", 1, 16, "expected a field name"),
        ("a `mac", 1, 3, "unterminated macro"),
        ("user=", 1, 6, "missing value"),
        ("NOT", 1, 1, "NOT without an operand"),
    ],
)
def test_errors_have_positions(spl: str, line: int, col: int, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)) as info:
        parse(spl)
    assert (info.value.line, info.value.col) == (line, col)
    assert info.value.highlight.endswith("^")
    assert info.value.location is not None and info.value.location.line == line


def test_analysis_of_unparsable_search_is_a_problem_not_an_exception() -> None:
    a = analyze_query('index=a | where "oops', {})
    assert a.problems[0].code == "parse-error" and a.problems[0].location is not None
    assert a.stages[0].kind.value == "opaque"


# ---- property-based ------------------------------------------------------------------------

FIELDS = st.sampled_from(["user", "Processes.process_name", "EventCode", "dest_port", "a.b{}"])
WORDS = st.sampled_from(["cmd.exe", "*\\\\temp\\\\*", "4104", "*mimikatz*", "a-b", "x:y", "*"])
STRINGS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def values(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(WORDS)
    s = draw(STRINGS).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


@st.composite
def search_exprs(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 6 if depth < 3 else 2))
    if kind == 0:
        return f"{draw(FIELDS)}{draw(st.sampled_from(['=', '!=', '<', '>=']))}{draw(values())}"
    if kind == 1:
        vals = draw(st.lists(values(), min_size=1, max_size=4))
        return f"{draw(FIELDS)} IN ({', '.join(vals)})"
    if kind == 2:
        return draw(values())
    if kind == 3:
        return "NOT " + draw(search_exprs(depth + 1))
    if kind == 4:
        return f"({draw(search_exprs(depth + 1))})"
    sep = " OR " if kind == 5 else " "
    parts = draw(st.lists(search_exprs(depth + 1), min_size=2, max_size=3))
    return sep.join(parts)


@st.composite
def pipelines(draw: st.DrawFn) -> str:
    first = draw(search_exprs())
    stages = draw(st.lists(st.sampled_from([
        "stats count by user", "where count > 5", "eval x=lower(user) . \"-\" . len(y)",
        "rename a as b", "table a b", "fillnull", "`some_macro(1)`", "dedup user",
        "rex field=a \"(?<n>\\d+)\"", "search " + draw(search_exprs()),
        "join user [ search index=b | fields user ]",
    ]), max_size=4))
    return " | ".join([first, *stages])


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(pipelines())
def test_generated_searches_parse_and_roundtrip(spl: str) -> None:
    tree = parse(spl)
    assert parse(generate(tree)) == tree


@settings(max_examples=500, deadline=1000)
@given(st.text(alphabet="ab =!<>|[]()\"'`,*\\NOTAND OR\n.+-%", max_size=60))
def test_junk_gives_tree_or_positioned_error(text: str) -> None:
    try:
        tree = parse(text)
    except ParseError as e:
        assert 1 <= e.line and 1 <= e.col and 0 <= e.pos <= len(text)
        return
    assert parse(generate(tree)) == tree


@settings(max_examples=200, deadline=1000)
@given(st.text(max_size=80))
def test_analyze_never_raises(text: str) -> None:
    analyze_query(text, {})


def test_fixture_file_exists() -> None:
    assert Path(FIXTURES).is_file() and len(identity_cases()) >= 20


def test_nodes_declare_arg_types_and_walk() -> None:
    from ruleatlas.languages.spl import ast as A

    assert A.SCompare.arg_types == {"field": True, "op": True, "value": True}
    assert "start" not in A.Command.arg_types and A.Command.arg_types["name"] is True
    tree = parse("a=1 [search b=2 | where len(x) > 1] | stats count by y")
    assert [n.field for n in A.find_all(tree, A.SCompare)] == ["a", "b"]
    assert [n.name for n in A.find_all(tree, A.Call)] == ["len"]
    assert sum(1 for _ in A.find_all(tree, A.Pipeline)) == 2


@pytest.mark.parametrize("spl", [
    "a IN b", "a and b", "a as b", "x by y", "a IN", 'a "IN" (b c)', "a IN (b c) d",
    "x | search a xor b like c", 'a "AND" b', "| tstats count where a by b",
    "x | eval a = '\\'b'", "x | eval a = 'b\\\\c'",
])
def test_roundtrip_of_keyword_terms_and_quoted_fields(spl: str) -> None:
    """Found by mutating corpus searches: bare words that look like keywords stay bare unless
    they would be read as operators; quotes inside 'field names' are escaped."""
    tree = parse(spl)
    assert parse(generate(tree)) == tree


_MUTATION_CHARS = "ab =!<>|[]()\"'`,*\\NOTANDOR\n.+-%$:{}"


@st.composite
def mutated_corpus_searches(draw: st.DrawFn) -> str:
    """A real detection search with a few characters deleted, inserted or spliced in: the
    near-misses a user typing SPL produces."""
    searches = [q for n, q in corpus_searches() if "#" not in n]
    text = list(draw(st.sampled_from(searches)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "splice"]))
        if action == "delete" and text:
            del text[min(i, len(text) - 1)]
        elif action == "insert":
            text.insert(i, draw(st.sampled_from(_MUTATION_CHARS)))
        else:
            other = draw(st.sampled_from(searches))
            text[i:i] = list(other[: draw(st.integers(0, 40))])
    return "".join(text)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_corpus_searches())
def test_mutated_corpus_searches_give_tree_or_positioned_error(text: str) -> None:
    try:
        parse(text)
    except ParseError as e:
        assert 1 <= e.line and 1 <= e.col and 0 <= e.pos <= len(text)
        assert e.highlight.endswith("^")
    a = analyze_query(text, {})
    assert a.stages and all(p.severity in ("error", "warning", "unsupported") for p in a.problems)


@pytest.mark.parametrize("spl", [
    "(" * 5000 + "a" + ")" * 5000,
    "[" * 3000 + "]" * 3000,
    "x | where " + "(" * 5000 + "a" + ")" * 5000,
    "NOT " * 20000 + "a",
    "x | eval a=" + "- " * 5000 + "1",
    "x | eval a=" + "f(" * 3000 + ")" * 3000,
])
def test_deep_nesting_is_a_located_error_not_a_recursion_error(spl: str) -> None:
    with pytest.raises(ParseError, match="nested deeper than 100 levels") as e:
        parse(spl)
    assert e.value.line == 1 and e.value.col > 100
    a = analyze_query(spl, {})
    assert a.problems[0].code == "parse-error"


def test_nesting_below_the_limit_parses() -> None:
    assert parse("(" * 99 + "a" + ")" * 99)
    assert parse("[search " * 60 + "a" + "]" * 60)
