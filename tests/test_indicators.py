"""Indicators: extraction and normalised keys on hand-built predicate trees."""

from __future__ import annotations

import pytest

from ruleatlas.indicators import explain, extract
from ruleatlas.indicators.normalize import render_glob
from ruleatlas.indicators.query import SpecError, parse_spec
from ruleatlas.model import (
    Analysis,
    And,
    Condition,
    FieldRef,
    Not,
    Op,
    Or,
    Pattern,
    Phase,
    Predicate,
    Regex,
    Rule,
    Stage,
    StageKind,
    Wild,
)

A = Wild.ANY
RULE = Rule(id="r", source="x", path="p", title="t", language="spl", query="", body="")


def spl(*nodes, **kw) -> Analysis:
    cond = And(tuple(nodes)) if len(nodes) > 1 else nodes[0]
    return Analysis("spl", stages=(Stage(1, "search", "...", condition=cond),), **kw)


def sigma(*nodes) -> Analysis:
    cond = And(tuple(nodes)) if len(nodes) > 1 else nodes[0]
    return Analysis("sigma", condition=cond)


def keys(analysis: Analysis) -> list[tuple[str, str]]:
    return [(i.field_key, v.key) for i in extract(RULE, analysis) for v in i.values]


def one_key(analysis: Analysis) -> tuple[str, str]:
    (k,) = keys(analysis)
    return k


# --- the examples of issue 5 -----------------------------------------------------------------


def test_sigma_contains_meets_spl_star_pattern():
    s = one_key(sigma(Predicate("ScriptBlockText", Op.CONTAINS, ("Invoke-WMIExec",))))
    p = one_key(spl(Predicate("ScriptBlockText", Op.IN, (Pattern(("", A, "invoke-wmiexec", A)),))))
    assert s == p == ("ScriptBlockText", "*invoke-wmiexec*")


def test_startswith_endswith_eq():
    assert one_key(sigma(Predicate("F", Op.STARTSWITH, ("Ab",)))) == ("F", "ab*")
    assert one_key(sigma(Predicate("F", Op.ENDSWITH, ("Ab",)))) == ("F", "*ab")
    assert one_key(sigma(Predicate("F", Op.EQ, ("Ab",)))) == ("F", "ab")


def test_wildcards_inside_a_contains_value_merge():
    p = Predicate("F", Op.CONTAINS, (Pattern((A, "x", A, "y")),))
    assert one_key(sigma(p)) == ("F", "*x*y*")


def test_case_kept_when_cased_or_where():
    assert one_key(sigma(Predicate("F", Op.EQ, ("AbC",), cased=True))) == ("F", "AbC")
    assert one_key(spl(Predicate("F", Op.EQ, ("AbC",), cased=True))) == ("F", "AbC")
    assert one_key(spl(Predicate("F", Op.EQ, ("AbC",)))) == ("F", "abc")


def test_registry_path_backslashes_meet_target_object():
    # SPL escapes are resolved by the parser: "*\\SOFTWARE\\Policies\\x" is one backslash each.
    splunk = Predicate(
        "Registry.registry_path",
        Op.EQ,
        (Pattern((A, "\\SOFTWARE\\Policies\\Microsoft\\Windows Defender")),),
        datamodel="Endpoint.Registry",
    )
    sig = Predicate(
        "TargetObject", Op.ENDSWITH, ("\\SOFTWARE\\Policies\\Microsoft\\Windows Defender",)
    )
    expected = ("TargetObject", "*\\software\\policies\\microsoft\\windows defender")
    assert one_key(spl(splunk)) == one_key(sigma(sig)) == expected


def test_process_name_is_image_basename():
    splunk = Predicate(
        "Processes.process_name", Op.EQ, ("cmd.exe",), datamodel="Endpoint.Processes"
    )
    sig = Predicate("Image", Op.ENDSWITH, ("\\cmd.exe",))
    assert one_key(spl(splunk)) == one_key(sigma(sig)) == ("Image", "*\\cmd.exe")


def test_basename_with_leading_wildcard_is_not_prefixed():
    p = Predicate("Processes.process_name", Op.EQ, (Pattern((A, "pwsh", A)),))
    assert one_key(spl(p)) == ("Image", "*pwsh*")


def test_bare_datamodel_field_with_datamodel_resolves():
    p = Predicate("parent_process_name", Op.EQ, ("w3wp.exe",), datamodel="Endpoint.Processes")
    assert one_key(spl(p)) == ("ParentImage", "*\\w3wp.exe")


def test_path_fields_key_slash_as_backslash():
    linux = Predicate("Image", Op.ENDSWITH, ("/curl",))
    assert one_key(sigma(linux)) == ("Image", "*\\curl")
    # registry paths are not file paths: '/' stays
    assert one_key(sigma(Predicate("TargetObject", Op.CONTAINS, ("a/b",)))) == (
        "TargetObject", "*a/b*")


def test_other_aliases():
    cases = [
        ("Processes.process", "CommandLine"),
        ("Processes.parent_process", "ParentCommandLine"),
        ("Processes.original_file_name", "OriginalFileName"),
        ("Processes.process_path", "Image"),
        ("Registry.registry_value_data", "Details"),
        ("Filesystem.file_path", "TargetFilename"),
        ("All_Traffic.dest_port", "DestinationPort"),
        ("EventCode", "EventID"),
        ("eventcode", "EventID"),
    ]
    for name, key in cases:
        assert one_key(spl(Predicate(name, Op.EQ, ("1",))))[0] == key, name
    fn = Predicate("Filesystem.file_name", Op.EQ, ("a.dll",))
    assert one_key(spl(fn)) == ("TargetFilename", "*\\a.dll")


def test_numbers_meet_as_text():
    a = one_key(spl(Predicate("EventCode", Op.EQ, ("4104",))))
    b = one_key(sigma(Predicate("EventID", Op.EQ, (4104,))))
    c = one_key(sigma(Predicate("EventID", Op.EQ, (4104.0,))))
    assert a == b == c == ("EventID", "4104")


def test_in_list_value_by_value_in_order_without_duplicates():
    p = Predicate("Processes.process_name", Op.IN, ("cmd.exe", "powershell.exe", "cmd.exe"))
    (row,) = extract(RULE, spl(p))
    assert row.op == "in"
    assert [v.value for v in row.values] == ["cmd.exe", "powershell.exe"]
    assert [v.key for v in row.values] == ["*\\cmd.exe", "*\\powershell.exe"]


def test_sigma_value_list_and_all():
    p = Predicate("CommandLine", Op.CONTAINS, ("a", "b"), match_all=True)
    (row,) = extract(RULE, sigma(p))
    assert row.op == "contains|all"
    assert [v.key for v in row.values] == ["*a*", "*b*"]


def test_negation_under_not_and_negated_flag_and_ne():
    t = sigma(
        Predicate("Image", Op.ENDSWITH, ("\\a.exe",)),
        Not(Or((Predicate("ParentImage", Op.ENDSWITH, ("\\b.exe",)),))),
        Not(Predicate("User", Op.EQ, ("x",), negated=True)),  # double negation: positive
    )
    rows = extract(RULE, t)
    assert [(r.field, r.negated, r.values[0].key) for r in rows] == [
        ("Image", False, "*\\a.exe"),
        ("ParentImage", True, "!*\\b.exe"),
        ("User", False, "x"),
    ]
    ne = extract(RULE, spl(Predicate("EventCode", Op.NE, ("4",))))
    assert ne[0].op == "ne" and ne[0].negated is False and ne[0].values[0].key == "!4"
    assert keys(spl(Not(Predicate("EventCode", Op.EQ, ("4",))))) == [("EventID", "!4")]


def test_same_field_op_with_both_polarities_gives_two_rows():
    t = sigma(
        Predicate("CommandLine", Op.CONTAINS, ("x",)),
        Not(Predicate("CommandLine", Op.CONTAINS, ("y",))),
    )
    rows = extract(RULE, t)
    assert [(r.negated, [v.key for v in r.values]) for r in rows] == [
        (False, ["*x*"]), (True, ["!*y*"])]


def test_typed_keys():
    cases = [
        (Predicate("F", Op.REGEX, (Regex("a.*b", frozenset("i")),)), "re:/a.*b/i"),
        (Predicate("F", Op.REGEX, (Regex("A"),)), "re:/A/"),
        (Predicate("ip", Op.CIDR, ("10.1.2.3/8",)), "cidr:10.0.0.0/8"),
        (Predicate("n", Op.GT, ("5",)), ">5"),
        (Predicate("n", Op.LE, (5.0,)), "<=5"),
        (Predicate("F", Op.EXISTS, ()), "exists"),
        (Predicate("F", Op.EQ, (Pattern((A,)),)), "exists"),
        (Predicate("F", Op.EQ, (None,)), "null"),
        (Predicate("F", Op.EQ, (FieldRef("EventCode"),)), "ref:EventID"),
        (Predicate("F", Op.CONTAINS, ("AbC",), transforms=("base64offset",)),
         "base64offset:*AbC*"),
        (Predicate("F", Op.CONTAINS, ("-enc",), transforms=("windash",)), "windash:*-enc*"),
    ]
    for p, key in cases:
        assert one_key(sigma(p))[1] == key, p


def test_exists_false_is_negated():
    rows = extract(RULE, sigma(Predicate("F", Op.EXISTS, (False,))))
    assert rows[0].values[0].key == "!exists"


def test_pattern_literal_metacharacters_are_bracket_escaped():
    lit = Pattern(("a*b?c[d\\e",))
    assert one_key(sigma(Predicate("F", Op.EQ, (lit,))))[1] == "a[*]b[?]c[[]d\\e"
    wild = Pattern(("a", A, "b", Wild.ONE))
    assert one_key(sigma(Predicate("F", Op.EQ, (wild,))))[1] == "a*b?"
    assert render_glob(["*"]) != render_glob([A])


def test_literal_that_looks_typed_is_protected():
    assert one_key(sigma(Predicate("F", Op.EQ, ("!x",))))[1] == "[!]x"
    assert one_key(sigma(Predicate("F", Op.EQ, ("re:/x/",))))[1] == "[r]e:/x/"
    assert one_key(sigma(Predicate("F", Op.EQ, ("exists",))))[1] == "[e]xists"
    assert one_key(sigma(Predicate("F", Op.EQ, (">5",))))[1] == "[>]5"


def test_keyword_predicates_search_raw():
    rows = extract(RULE, sigma(Predicate(None, Op.KEYWORD, ("Mimikatz",))))
    assert (rows[0].field, rows[0].field_key, rows[0].values[0].key) == (
        "(keyword)", "_raw", "mimikatz")


# --- what is not an indicator ---------------------------------------------------------------


def test_routing_fields_result_phase_and_expressions_are_skipped_with_reasons():
    search = And((
        Predicate("sourcetype", Op.EQ, ("XmlWinEventLog",)),
        Predicate("source", Op.EQ, ("XmlWinEventLog:Microsoft-Windows-PowerShell/Operational",)),
        Predicate("EventCode", Op.EQ, ("4104",)),
        Condition(expr=None, text="len(x) > 10"),
    ))
    where = Predicate("count", Op.GT, ("10",), phase=Phase.RESULT)
    a = Analysis(
        "spl",
        stages=(
            Stage(1, "search", "...", condition=search),
            Stage(2, "stats", "stats count", kind=StageKind.AGGREGATE),
            Stage(3, "where", "where count > 10", condition=where, phase=Phase.RESULT),
        ),
        condition=search,
        result_condition=where,
    )
    rows, skipped = explain(RULE, a)
    assert [(r.field, r.values[0].key) for r in rows] == [("EventCode", "4104")]
    assert sorted(s.reason for s in skipped) == [
        "expression", "result phase", "routing field", "routing field"]


def test_sigma_uses_condition_polarity_not_selection_stage_polarity():
    sel = Predicate("Image", Op.ENDSWITH, ("\\a.exe",))
    flt = Predicate("ParentImage", Op.ENDSWITH, ("\\b.exe",))
    unused = Predicate("User", Op.EQ, ("x",))
    a = Analysis(
        "sigma",
        stages=(
            Stage(1, "selection", "...", condition=sel, name="selection"),
            Stage(2, "filter", "...", condition=flt, name="filter"),
            Stage(3, "unused", "...", condition=unused, name="unused"),
            Stage(4, "condition", "selection and not filter", condition=And((sel, Not(flt)))),
        ),
        condition=And((sel, Not(flt))),
    )
    rows, skipped = explain(RULE, a)
    assert [(r.field, r.negated) for r in rows] == [("Image", False), ("ParentImage", True)]
    assert [s.reason for s in skipped] == ["selection unused not used by the condition"]


def test_display_values_as_written():
    p = Predicate("ScriptBlockText", Op.IN, (Pattern((A, "invoke-wmiexec", A)),),
                  text='ScriptBlockText IN ("*invoke-wmiexec*")')
    assert extract(RULE, spl(p))[0].values[0].value == '"*invoke-wmiexec*"'
    q = Predicate("EventCode", Op.EQ, ("4104",), text="EventCode=4104")
    assert extract(RULE, spl(q))[0].values[0].value == "4104"
    r = Predicate("Registry.registry_path", Op.EQ, (Pattern((A, "\\Policies\\x")),),
                  text='Registry.registry_path="*\\\\Policies\\\\x"')
    assert extract(RULE, spl(r))[0].values[0].value == '"*\\\\Policies\\\\x"'
    s = Predicate("CommandLine", Op.EQ, (Pattern((A, "\\x\\", A)),))
    assert extract(RULE, sigma(s))[0].values[0].value == "*\\x\\\\*"


# --- the spec parser of `ruleatlas indicator` -----------------------------------------------


def test_spec_parser_uses_the_same_keys():
    assert (parse_spec("ScriptBlockText contains Invoke-WMIExec").key == "*invoke-wmiexec*")
    s = parse_spec("Processes.process_name=cmd.exe")
    assert (s.field_key, s.key) == ("Image", "*\\cmd.exe")
    s = parse_spec(r"TargetObject endswith '\SOFTWARE\Policies\x'")
    assert (s.field_key, s.key) == ("TargetObject", "*\\software\\policies\\x")
    assert parse_spec("EventCode eq 4104").field_key == "EventID"
    assert parse_spec("ParentImage not endswith \\explorer.exe").key == "!*\\explorer.exe"
    assert parse_spec("F != 4").key == "!4"
    assert parse_spec("CommandLine base64offset|contains abc").key == "base64offset:*abc*"
    assert parse_spec("F re /a.b/i").key == "re:/a.b/i"
    assert parse_spec(r"F eq a\*b").key == "a[*]b"
    assert parse_spec("F eq *x*").key == "*x*"


def test_spec_parser_errors():
    for bad in ("F", "F frob x", "F contains", "F contains|nope x"):
        with pytest.raises(SpecError):
            parse_spec(bad)


def test_boolean_and_its_text_meet():
    a = one_key(sigma(Predicate("Initiated", Op.EQ, (True,))))
    b = one_key(sigma(Predicate("Initiated", Op.EQ, ("true",))))
    assert a == b == ("Initiated", "true")
    assert one_key(sigma(Predicate("F", Op.EQ, ("",)))) == ("F", "")


def _canon(parts):
    """Pattern parts with runs of ANY merged (they match the same strings)."""
    out = []
    for p in Pattern(tuple(parts)).parts:
        if p is A and out and out[-1] is A:
            continue
        out.append(p)
    return tuple(out)


def test_glob_keys_are_unambiguous():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    part = st.one_of(st.sampled_from([A, Wild.ONE]), st.text(alphabet="ab*?[]\\!:", max_size=4))
    pats = st.lists(part, max_size=5)

    @settings(max_examples=400, deadline=None)
    @given(pats, pats)
    def check(p, q):
        if _canon(p) != _canon(q):
            assert render_glob(_canon(p)) != render_glob(_canon(q))

    check()


def test_channel_from_a_splunk_macro_is_routing_not_an_indicator():
    cond = And((Or((Predicate("eventtype", Op.EQ, ("wineventlog_security",)),
                    Predicate("Channel", Op.EQ, ("security",)))),
                Predicate("EventCode", Op.EQ, ("4624",))))
    rows, skipped = explain(RULE, spl(cond))
    assert [r.field for r in rows] == ["EventCode"]
    assert [s.field for s in skipped] == ["eventtype", "Channel"]
    # Sigma has no routing predicates: a Channel there is what the rule wrote
    assert [r.field for r in extract(RULE, sigma(Predicate("Channel", Op.EQ, ("x",))))] == [
        "Channel"]
