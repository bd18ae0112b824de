"""Sigma modifiers into predicates, one behaviour per test, on inline-YAML rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sigma.modifiers import modifier_mapping

from ruleatlas.languages import AnalysisContext
from ruleatlas.languages.sigma import MODIFIERS, analyze_sigma, rule_from_text
from ruleatlas.model import (
    Analysis,
    FieldRef,
    Op,
    Opaque,
    Or,
    Pattern,
    Predicate,
    Regex,
    Wild,
    walk,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sigma.md"
ANY, ONE = Wild.ANY, Wild.ONE


def analyze(detection: str, line: int = 1) -> Analysis:
    """Analyze a rule whose detection block is ``detection`` (indented under ``detection:``)."""
    text = "title: t\nlogsource:\n    product: windows\ndetection:\n" + textwrap.indent(
        textwrap.dedent(detection).strip("\n"), "    ") + "\n"
    return analyze_sigma(rule_from_text(text, "t.yml", line), AnalysisContext())


def one(detection: str) -> Predicate:
    """The single predicate of a one-item selection (condition: selection)."""
    a = analyze(detection + "\ncondition: selection\n")
    assert not a.problems, a.problems
    assert isinstance(a.condition, Predicate), a.condition
    return a.condition


def test_plain_string_is_eq():
    p = one("selection:\n    Image: 'C:\\Windows\\cmd.exe'")
    assert p == Predicate("Image", Op.EQ, ("C:\\Windows\\cmd.exe",))
    assert p.cased is False  # Sigma is case-insensitive by default


def test_plain_with_star_is_wildcard_pattern():
    p = one("selection:\n    Image: '*\\cmd.exe'")
    assert p == Predicate("Image", Op.WILDCARD, (Pattern((ANY, "\\cmd.exe")),))


def test_question_mark_is_single_wildcard():
    p = one("selection:\n    Image: 'c?d.exe'")
    assert p.values == (Pattern(("c", ONE, "d.exe")),)


def test_mixed_list_splits_eq_and_wildcard_any_of():
    p = analyze("selection:\n    Image: ['a.exe', '*b.exe']\ncondition: selection").condition
    assert p == Or((Predicate("Image", Op.EQ, ("a.exe",)),
                    Predicate("Image", Op.WILDCARD, (Pattern((ANY, "b.exe")),))))


def test_contains_keeps_value_as_written():
    p = one("selection:\n    ScriptBlockText|contains: Invoke-WMIExec")
    assert p == Predicate("ScriptBlockText", Op.CONTAINS, ("Invoke-WMIExec",))
    assert p.text == "ScriptBlockText|contains: Invoke-WMIExec"


def test_contains_with_inner_wildcard_is_pattern():
    p = one("selection:\n    CommandLine|contains: 'a*b'")
    assert p.values == (Pattern(("a", ANY, "b")),)


def test_startswith_endswith():
    assert one("selection:\n    Image|startswith: 'C:\\Users\\'").op is Op.STARTSWITH
    p = one("selection:\n    Image|endswith: '\\rundll32.exe'")
    assert p == Predicate("Image", Op.ENDSWITH, ("\\rundll32.exe",))


def test_value_list_is_one_any_of_predicate():
    p = one("selection:\n    Image|endswith:\n        - '\\a.exe'\n        - '\\b.exe'")
    assert p.values == ("\\a.exe", "\\b.exe") and not p.match_all


def test_all_sets_match_all():
    p = one("selection:\n    CommandLine|contains|all:\n        - ' -enc '\n        - 'hidden'")
    assert p == Predicate("CommandLine", Op.CONTAINS, (" -enc ", "hidden"), match_all=True)
    assert p.text == "CommandLine|contains|all: [' -enc ', 'hidden']"


def test_numbers_bools_null_and_empty_string():
    assert one("selection:\n    EventID: 4104").values == (4104,)
    assert one("selection:\n    Ratio: 1.5").values == (1.5,)
    assert one("selection:\n    Enabled: true").values == (True,)
    assert one("selection:\n    User: null") == Predicate("User", Op.EQ, (None,))
    assert one("selection:\n    User: ''") == Predicate("User", Op.EQ, ("",))


def test_empty_list_means_null():
    assert one("selection:\n    User: []") == Predicate("User", Op.EQ, (None,))


def test_re_is_case_sensitive_regex_as_written():
    p = one("selection:\n    TargetFilename|re: '^C:\\\\Users\\\\[^\\\\]+\\\\NTUSER\\.DAT$'")
    assert p.op is Op.REGEX
    assert p.values == (Regex(r"^C:\\Users\\[^\\]+\\NTUSER\.DAT$", frozenset()),)
    assert "i" not in p.values[0].flags  # type: ignore[union-attr]


def test_re_flags_from_sub_modifiers():
    assert one("selection:\n    F|re|i: 'abc'").values == (Regex("abc", frozenset({"i"})),)
    p = one("selection:\n    F|re|m|s: 'a.b'")
    assert p.values == (Regex("a.b", frozenset({"m", "s"})),)
    p = one("selection:\n    F|re|ignorecase|multiline|dotall: 'x'")
    assert p.values == (Regex("x", frozenset({"i", "m", "s"})),)


def test_regex_flag_without_re_is_unsupported():
    a = analyze("selection:\n    F|i: 'abc'\ncondition: selection")
    assert isinstance(a.condition, Opaque)
    assert a.problems[0].severity == "unsupported"


def test_cidr():
    p = one("selection:\n    DestinationIp|cidr:\n        - '10.0.0.0/8'\n        - 'fe80::/10'")
    assert p == Predicate("DestinationIp", Op.CIDR, ("10.0.0.0/8", "fe80::/10"))


@pytest.mark.parametrize(("mod", "op"), [("gt", Op.GT), ("gte", Op.GE), ("lt", Op.LT),
                                         ("lte", Op.LE)])
def test_numeric_comparisons(mod: str, op: Op):
    assert one(f"selection:\n    Size|{mod}: 100") == Predicate("Size", op, (100,))


def test_comparison_on_a_string_is_rejected_by_pysigma_with_location():
    a = analyze("selection:\n    Size|gt: 'big'\n    Other: 1\ncondition: selection")
    assert a.problems[0].code == "pysigma" and a.problems[0].location is not None
    assert a.problems[0].location.line == 6
    kinds = [type(n).__name__ for n in walk(a.condition)]
    assert "Opaque" in kinds and "Predicate" in kinds  # the rest of the item is kept


def test_exists_true_and_false():
    assert one("selection:\n    User|exists: true") == Predicate("User", Op.EXISTS, ())
    assert one("selection:\n    User|exists: false") == Predicate("User", Op.EXISTS, (),
                                                                    negated=True)


def test_fieldref_values_and_position():
    p = one("selection:\n    TargetFilename|fieldref: Image")
    assert p == Predicate("TargetFilename", Op.EQ, (FieldRef("Image"),))
    p = one("selection:\n    A|fieldref|startswith: B")
    assert p == Predicate("A", Op.STARTSWITH, (FieldRef("B"),))


def test_cased():
    p = one("selection:\n    CommandLine|cased|contains: 'ABC'")
    assert p == Predicate("CommandLine", Op.CONTAINS, ("ABC",), cased=True)


@pytest.mark.parametrize(("mods", "transforms"), [
    ("base64", ("base64",)),
    ("base64offset|contains", ("base64offset",)),
    ("wide|base64offset|contains", ("wide", "base64offset")),
    ("utf16le|base64offset|contains", ("wide", "base64offset")),
    ("utf16be|base64|contains", ("utf16be", "base64")),
    ("utf16|base64offset|contains", ("utf16", "base64offset")),
    ("windash|contains", ("windash",)),
])
def test_encodings_are_transforms_in_modifier_order(mods: str, transforms: tuple[str, ...]):
    p = one(f"selection:\n    CommandLine|{mods}: '-enc x'")
    assert p.transforms == transforms
    assert p.values == ("-enc x",)  # kept as written, never expanded
    assert p.op is (Op.CONTAINS if "contains" in mods else Op.EQ)


def test_base64_of_wildcard_is_rejected_by_pysigma():
    a = analyze("selection:\n    CommandLine|base64: 'a*'\ncondition: selection")
    assert isinstance(a.condition, Opaque)
    assert a.problems[0].code == "pysigma"


def test_expand_keeps_placeholder():
    p = one("selection:\n    ComputerName|expand: '%Workstations%'")
    assert p == Predicate("ComputerName", Op.EQ, ("%Workstations%",), transforms=("expand",))
    p = one("selection:\n    Attributes|contains|expand: '%known_cdcs%'")
    assert p == Predicate("Attributes", Op.CONTAINS, ("%known_cdcs%",), transforms=("expand",))


def test_neq_negates():
    assert one("selection:\n    User|neq: x") == Predicate("User", Op.EQ, ("x",), negated=True)


def test_keyword_detection():
    a = analyze("keywords:\n    - 'evil'\n    - 'bad*'\ncondition: keywords")
    assert a.condition == Predicate(None, Op.KEYWORD, ("evil", Pattern(("bad", ANY))))
    a = analyze("keywords: 'one'\ncondition: keywords")
    assert a.condition == Predicate(None, Op.KEYWORD, ("one",))


def test_keyword_with_modifier_keeps_its_operator():
    a = analyze("keywords:\n    '|contains': ['x', 'y']\ncondition: keywords")
    assert a.condition == Predicate(None, Op.CONTAINS, ("x", "y"))


def test_unknown_modifier_is_located_problem_and_rule_is_kept():
    a = analyze("selection:\n    A|frobnicate: x\n    B: y\ncondition: selection")
    assert [p.code for p in a.problems] == ["unknown-modifier"]
    prob = a.problems[0]
    assert prob.severity == "unsupported" and "'frobnicate'" in prob.message
    assert prob.location is not None and (prob.location.line, prob.location.col) == (6, 9)
    nodes = list(walk(a.condition))
    assert any(isinstance(n, Opaque) and n.text == "A|frobnicate: x" for n in nodes)
    assert Predicate("B", Op.EQ, ("y",)) in nodes


def test_timestamp_part_modifier_is_unsupported_not_dropped():
    a = analyze("selection:\n    Time|hour: 3\ncondition: selection")
    assert isinstance(a.condition, Opaque)
    assert a.problems[0].severity == "unsupported"


def test_registry_covers_every_pysigma_modifier():
    assert set(modifier_mapping) <= set(MODIFIERS)
    for name, mod in MODIFIERS.items():
        assert mod.name == name
        assert mod.pysigma is None or mod.pysigma in modifier_mapping


def test_every_modifier_is_documented():
    doc = DOCS.read_text(encoding="utf-8")
    missing = [m for m in MODIFIERS if f"`{m}`" not in doc]
    assert not missing, f"docs/sigma.md lacks {missing}"
