"""The one Lucene-regex-to-Python converter of EQL ``regex`` and ES|QL ``rlike``.

Each expectation was written from Lucene's ``RegExp`` grammar (its javadoc and parser) and the
Elasticsearch "Regular expression syntax" page, not from this code's output. The cases come from
the two converters this module replaced (``languages/eql/regex.py``, ``languages/esql/regex.py``);
where one of them was wrong, the comment says which rule decides.
"""

from __future__ import annotations

import re
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruleatlas.languages.lucene_regex import RegexUnsupported, lucene_regex, lucene_to_python
from ruleatlas.model import Regex


def matches(lucene: str, value: str) -> bool:
    rx = lucene_regex(lucene)
    return re.search(rx.pattern, value, re.S) is not None


@pytest.mark.parametrize(("lucene", "body"), [
    ("abc", "abc"),
    ("a.c", "a.c"),
    ("^a$", r"\^a\$"),
    ('"a.b"c', r"a\.bc"),
    ("a@", "a.*"),
    ("a#", "a(?!)"),
    ("#|a", "(?!)|a"),
    ("<1-3>", "(?:3|2|1)"),
    ("<08-10>", "(?:10|09|08)"),
    # ES|QL read \s as Python's [ \t\n\r\f\v]; Lucene's RegExp javadoc: "\s (whitespace
    # [ \t\n\r])", "\w (a word character [a-zA-Z_0-9])", "\d (a digit [0-9])".
    (r"\d+\w\s", r"[0-9]+[a-zA-Z_0-9][ \t\n\r]"),
    (r"[\d.]", "[0-9.]"),
    (r"[^@\s]", r"[^@ \t\n\r]"),
    ("[a&&b]", r"[a\&\&b]"),
    ("[+--]", r"[+-\-]"),
    (".+*", "(?:.+)*"),
    ("(ab)+?", "(?:(ab)+)?"),
    ("a{2,3}", "a{2,3}"),
    ("C:\\\\Users", r"C:\\Users"),
    (".*[0-9]{1,3}\\.[0-9]{1,3}.*", r".*[0-9]{1,3}\.[0-9]{1,3}.*"),
    ("[^\\\\]", r"[^\\]"),
])
def test_translation(lucene: str, body: str) -> None:
    assert lucene_to_python(lucene) == f"^(?:{body})\\Z"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FutureWarning about set operations either
        assert re.compile(lucene_to_python(lucene))


@pytest.mark.parametrize(("lucene", "yes", "no"), [
    (".*[0-9]{1,3}\\.[0-9]{1,3}.*", "ip 10.1 x", "10x1"),
    ("a^b$", "a^b$", "ab"),
    ('"a.b"c', "a.bc", "axbc"),
    ("@x", "yyx", "xy"),
    ("#|a", "a", ""),
    ("[^\\\\]", "a", "\\"),
    # EQL read \d \w \s as Python's Unicode classes; Lucene's are ASCII (javadoc above), so an
    # Arabic-Indic digit is no \d.
    ("\\d+\\w\\s", "12a ", "\u0661\u0662a "),
    ("\\w", "_", "\u00e9"),
    ("\\s", "\t", "\f"),
    ("\\S", "\f", " "),
    # Lucene: "(" and ")" group, "\"...\"" is "a string", and a repetition applies to the
    # preceding expression: "ab"* repeats "ab", not "b".
    ('"ab"*', "abab", "abb"),
    ("(ab)+", "abab", "aba"),
    # Numeric intervals (RegExp "<n-m>", enabled by Elasticsearch's ALL flags): EQL refused them.
    # Lucene's makeDecimalInterval: ends of the same width fix the width (zero-padded), else any
    # number of leading zeros is accepted.
    ("<1-10>", "007", "11"),
    ("<01-10>", "05", "5"),
    ("foo<1-100>", "foo100", "foo101"),
    # A repetition of a repetition (RegExp "repeatexp ::= repeatexp *"): EQL refused "a**".
    ("a**", "aaa", "b"),
    # Lucene "a+?" is (a+)?, which matches the empty value (Python would read a lazy "a+?").
    ("a+?", "", "b"),
])
def test_matching(lucene: str, yes: str, no: str) -> None:
    assert matches(lucene, yes) and not matches(lucene, no)


def test_anchored_to_the_whole_value_without_a_trailing_newline() -> None:
    # Elasticsearch: "Lucene's patterns are always anchored. The pattern provided must match the
    # entire string." ES|QL used "$", which also matches before a final "\n".
    assert not matches("a", "a\n")
    assert not matches("a.b", "xa\nb")
    assert matches("a.b", "a\nb")  # "." matches any character


@pytest.mark.parametrize(("lucene", "value"), [
    # An operator where Lucene's parser wants an atom is a plain character (parseSimpleExp reads
    # it with parseCharExp): "||" is "|" then a literal "|", "(?i)" is the text "?i".
    ("(oauth.*||.*login.*)", "|x login"),
    ("(?i)a", "?ia"),
    ("*a", "*a"),
    ("a]", "a]"),
])
def test_operator_in_atom_position_is_literal(lucene: str, value: str) -> None:
    assert matches(lucene, value)


def test_operator_in_atom_position_is_literal_only() -> None:
    assert not matches("(oauth.*||.*login.*)", "x login")
    assert not matches("(?i)a", "A")


@pytest.mark.parametrize(("lucene", "yes", "no"), [
    # A complement shorthand inside a class (RegExp charclass may hold \D \S \W).
    (r"[a\D]", "x", "5"),
    (r"[^a\S]", " ", "a"),
    (r"[^a\S]", "\n", "x"),
])
def test_negated_shorthand_inside_a_class(lucene: str, yes: str, no: str) -> None:
    assert matches(lucene, yes) and not matches(lucene, no)


@pytest.mark.parametrize(("bad", "why"), [
    ("a&b", "intersection"),
    ("~a", "complement"),
    ("a\\", "lone"),
    ("[ab", "class"),
    ("<a-b>", "interval"),
    ('"ab', "string"),
    ("a{2", "repetition"),
    ("a{3,2}", "order"),
    ("a)", "unbalanced"),
    ("(a", "')'"),
    ("a|", "ends"),
    # ES|QL rejected it, EQL read "<" as a literal: with Elasticsearch's ALL flags "<" opens a
    # named automaton or numeric interval, and RegExp fails with "expected '>'".
    ("a<b", "'>'"),
    # A named automaton <name>: Elasticsearch provides none, so Lucene fails ("not found").
    ("<name>", "interval"),
    # EQL read "\q" as "q"; Lucene's RegExp rejects a backslash before a letter that is no class
    # ("invalid character class"), after Java's Pattern ("It is an error to use a backslash
    # prior to any alphabetic character that does not denote an escaped construct").
    ("\\q\\/", "no character class"),
    ("\\n", "no character class"),
    # EQL read "[a\]b-]" as a class holding "-"; in Lucene "b-]" is a range (charclass ::=
    # charexp - charexp; "dash has a special meaning in charclass expressions"), and b > ].
    ("[a\\]b-]+", "range"),
    ("<1-5000>", "interval"),
])
def test_refused(bad: str, why: str) -> None:
    with pytest.raises(RegexUnsupported, match=re.escape(why)):
        lucene_regex(bad)


def test_regex_value_and_flags() -> None:
    assert lucene_regex("x.*") == Regex(r"^(?:x.*)\Z", frozenset({"s"}))
    assert lucene_regex("x", ignore_case=True) == Regex(r"^(?:x)\Z", frozenset({"s", "i"}))
    assert lucene_regex("") == Regex(r"^(?:)\Z", frozenset({"s"}))


LUCENE_CHARS = st.sampled_from(list('ab.?+*|{}[]()"\\#@&<>~^$-,0123dDsSwWq '))


@given(st.text(LUCENE_CHARS, max_size=24))
def test_any_pattern_translates_or_is_refused_with_a_reason(p: str) -> None:
    try:
        text = lucene_to_python(p)
    except RegexUnsupported as e:
        assert str(e)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        re.compile(text, re.S)


@given(st.text(st.characters(blacklist_characters='"'), max_size=20))
def test_quoted_string_matches_exactly_itself(s: str) -> None:
    assert matches(f'"{s}"', s)
    assert not matches(f'"{s}"', s + "x")
