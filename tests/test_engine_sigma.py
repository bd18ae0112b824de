"""Sigma semantics of the engine, end to end: inline Sigma YAML -> the real analyzer -> prepare ->
Engine (routing, field maps, pre-filter) -> hand-made events. One behaviour per test."""

from __future__ import annotations

import base64

import pytest

from ruleatlas.engine.events import Event
from ruleatlas.engine.runner import Engine, prepare
from ruleatlas.languages import analyze
from ruleatlas.languages.sigma import rule_from_text

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def _rule(detection: str, logsource: str = "    category: process_creation\n    product: windows"):
    text = (
        "title: t\nid: 11111111-1111-1111-1111-111111111111\nstatus: test\n"
        f"logsource:\n{logsource}\ndetection:\n{detection}\nlevel: high\n"
    )
    rule = rule_from_text(text)
    return prepare(rule, analyze(rule))


def match(detection: str, fields: dict, **kw) -> bool:
    er = _rule(detection, **kw)
    assert er.runnable, er.reason
    base = {"Channel": SYSMON, "EventID": 1}
    eng = Engine([er])
    return any(True for _ in eng.run([Event({**base, **fields}, "mem", 1)]))


def sel(body: str, cond: str = "selection") -> str:
    return "    selection:\n" + "".join(f"        {ln}\n" for ln in body.splitlines()) + (
        f"    condition: {cond}")


def test_a_routing_failure_makes_the_rule_not_runnable_with_the_reason(monkeypatch):
    """A bug in routing must not run the rule on every event: the rule is refused, and says why."""
    from ruleatlas.engine import plan

    def broken(rule, analysis):
        raise KeyError("no table")

    monkeypatch.setattr(plan, "route_for", broken)
    er = _rule(sel("Image|endswith: '\\cmd.exe'"))
    assert not er.runnable
    assert er.reason == "its events could not be routed: KeyError: 'no table'"
    event = Event({"Channel": SYSMON, "EventID": 1, "Image": "C:\\cmd.exe"}, "mem", 1)
    assert list(Engine([er]).run([event])) == []


# ------------------------------------------------------------------------------ plain values


def test_case_insensitive_by_default():
    assert match(sel("Image|endswith: '\\cmd.exe'"), {"Image": "C:\\WINDOWS\\CMD.EXE"})


def test_cased_modifier_is_case_sensitive():
    d = sel("Image|cased|endswith: '\\cmd.exe'")
    assert match(d, {"Image": "C:\\x\\cmd.exe"})
    assert not match(d, {"Image": "C:\\x\\CMD.exe"})


def test_wildcards_star_and_question():
    d = sel("CommandLine: 'a*b?d'")
    assert match(d, {"CommandLine": "aXXXbcd"})
    assert match(d, {"CommandLine": "abxd"})
    assert not match(d, {"CommandLine": "abd"})


def test_escaped_star_is_literal():
    d = sel("CommandLine: 'a\\*b'")
    assert match(d, {"CommandLine": "a*b"})
    assert not match(d, {"CommandLine": "axb"})


def test_escaped_backslash_then_wildcard():
    # \\* = a literal backslash followed by a wildcard
    d = sel("CommandLine: 'a\\\\*'")
    assert match(d, {"CommandLine": "a\\anything"})
    assert not match(d, {"CommandLine": "a*"})


def test_trailing_backslash_is_literal():
    d = sel("Image|endswith: 'C:\\Temp\\'")
    assert match(d, {"Image": "x C:\\temp\\"})
    assert not match(d, {"Image": "C:\\temp"})


def test_empty_value_matches_only_empty():
    d = sel("CommandLine: ''")
    assert match(d, {"CommandLine": ""})
    assert not match(d, {"CommandLine": "x"})
    assert not match(d, {})


def test_null_matches_missing_and_null_not_empty():
    d = sel("CommandLine: null")
    assert match(d, {})
    assert match(d, {"CommandLine": None})
    assert not match(d, {"CommandLine": ""})


def test_exists_true_and_false():
    assert match(sel("CommandLine|exists: true"), {"CommandLine": ""})
    assert not match(sel("CommandLine|exists: true"), {})
    assert match(sel("CommandLine|exists: false"), {})
    assert not match(sel("CommandLine|exists: false"), {"CommandLine": "x"})


def test_unicode_values_lower():
    d = sel("CommandLine|contains: 'ÄÖÜ'")
    assert match(d, {"CommandLine": "x äöü y"})


def test_list_is_or_and_all_is_and():
    assert match(sel("CommandLine|contains:\n    - foo\n    - bar"), {"CommandLine": "bar"})
    d = sel("CommandLine|contains|all:\n    - foo\n    - bar")
    assert match(d, {"CommandLine": "foo bar"})
    assert not match(d, {"CommandLine": "bar"})


def test_eventid_int_and_str_meet():
    d = sel("EventID: 1\nImage|endswith: '\\a.exe'")
    assert match(d, {"EventID": 1, "Image": "c:\\a.exe"})
    assert match(d, {"EventID": "1", "Image": "c:\\a.exe"})


def test_numeric_comparisons():
    d = sel("Count|gt: 5")
    assert match(d, {"Count": 6})
    assert match(d, {"Count": "7"})
    assert not match(d, {"Count": 5})
    assert not match(d, {"Count": "abc"})
    assert match(sel("Count|lte: 5"), {"Count": "0x5"})


def test_missing_field_makes_predicate_false_and_not_filter_true():
    d = ("    selection:\n        Image|endswith: '\\a.exe'\n"
         "    filter:\n        ParentImage|endswith: '\\b.exe'\n"
         "    condition: selection and not filter")
    assert match(d, {"Image": "c:\\a.exe"})  # no ParentImage: the filter is false
    assert not match(d, {"Image": "c:\\a.exe", "ParentImage": "c:\\b.exe"})


def test_multivalue_event_field():
    assert match(sel("Data: two"), {"Data": ["one", "two"]})


# ------------------------------------------------------------------------------ modifiers


def test_re_is_case_sensitive():
    d = sel("CommandLine|re: 'Invoke-[A-Z]'")
    assert match(d, {"CommandLine": "x Invoke-Mimikatz"})
    assert not match(d, {"CommandLine": "x invoke-mimikatz"})


def test_re_i_flag():
    assert match(sel("CommandLine|re|i: 'invoke-[a-z]'"), {"CommandLine": "INVOKE-X"})


def test_re_is_a_search():
    assert match(sel("CommandLine|re: 'b+c'"), {"CommandLine": "abbbcd"})


def test_cidr():
    d = sel("DestinationIp|cidr: '10.0.0.0/8'")
    assert match(d, {"DestinationIp": "10.1.2.3"})
    assert not match(d, {"DestinationIp": "11.1.2.3"})
    assert not match(d, {"DestinationIp": "not an ip"})
    assert match(sel("DestinationIp|cidr: 'fe80::/10'"), {"DestinationIp": "fe80::1"})


@pytest.mark.parametrize("dash", ["-", "/", "\u2013", "\u2014", "\u2015"])
def test_windash_variants(dash):
    d = sel("CommandLine|windash|contains: ' -enc '")
    assert match(d, {"CommandLine": f"powershell {dash}enc AAAA"})


def test_windash_keeps_inner_dashes():
    d = sel("CommandLine|windash|contains: '-foo-bar'")
    assert match(d, {"CommandLine": "/foo-bar"})
    assert not match(d, {"CommandLine": "/foo/bar"})


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"abc"])
def test_base64offset_all_offsets(prefix):
    d = sel("CommandLine|base64offset|contains: 'Invoke-Expression'")
    enc = base64.b64encode(prefix + b"Invoke-Expression(x)").decode()
    assert match(d, {"CommandLine": f"powershell -e {enc}"})


def test_base64_plain():
    d = sel("CommandLine|base64: 'http://'")
    assert match(d, {"CommandLine": base64.b64encode(b"http://").decode()})


@pytest.mark.parametrize(("mod", "codec", "bom"), [
    ("wide", "utf-16le", b""), ("utf16le", "utf-16le", b""), ("utf16be", "utf-16be", b""),
    ("utf16", "utf-16le", b"\xff\xfe"),
])
def test_utf16_then_base64offset(mod, codec, bom):
    d = sel(f"CommandLine|{mod}|base64offset|contains: 'IEX'")
    enc = base64.b64encode(bom + "IEX (New".encode(codec)).decode()
    assert match(d, {"CommandLine": f"-enc {enc}"})


def test_wide_without_base64():
    d = sel("Payload|wide|contains: 'ab'")
    assert match(d, {"Payload": "xa\x00b\x00y"})


def test_fieldref():
    d = sel("SubjectUserName|fieldref: TargetUserName")
    assert match(d, {"SubjectUserName": "Bob", "TargetUserName": "bob"})
    assert not match(d, {"SubjectUserName": "Bob", "TargetUserName": "alice"})
    assert not match(d, {"SubjectUserName": "Bob"})


def test_keywords_match_any_field_as_substring():
    d = "    keywords:\n        - 'mimikatz'\n    condition: keywords"
    assert match(d, {"CommandLine": "run MimiKatz.exe"})
    assert match(d, {"Other": "x mimikatz"})
    assert not match(d, {"CommandLine": "nothing"})


# ------------------------------------------------------------------------------ conditions


def test_one_of_selection_is_exact_name():
    d = ("    selection:\n        Image|endswith: '\\a.exe'\n"
         "    selection_x:\n        Image|endswith: '\\b.exe'\n"
         "    condition: 1 of selection")
    assert match(d, {"Image": "c:\\a.exe"})
    assert not match(d, {"Image": "c:\\b.exe"})


def test_one_of_pattern_and_all_of():
    d = ("    sel_a:\n        Image|endswith: '\\a.exe'\n"
         "    sel_b:\n        CommandLine|contains: 'x'\n"
         "    condition: all of sel_*")
    assert match(d, {"Image": "c:\\a.exe", "CommandLine": "x"})
    assert not match(d, {"Image": "c:\\a.exe"})
    d1 = d.replace("all of sel_*", "1 of sel_*")
    assert match(d1, {"Image": "c:\\a.exe"})


def test_them_skips_underscore_identifiers():
    d = ("    sel:\n        Image|endswith: '\\a.exe'\n"
         "    _helper:\n        CommandLine|contains: 'never'\n"
         "    condition: all of them")
    assert match(d, {"Image": "c:\\a.exe"})


# ------------------------------------------------------------------------------ routing


def test_process_creation_runs_on_security_4688_with_newprocessname_as_image():
    er = _rule(sel("Image|endswith: '\\evil.exe'"))
    ev = Event({"Channel": "Security", "EventID": 4688, "NewProcessName": "C:\\evil.exe"},
               "mem", 1)
    found = list(Engine([er]).run([ev]))
    assert len(found) == 1
    assert found[0].matched == {"Image": "C:\\evil.exe"}


def test_routing_keeps_rule_off_other_event_kinds():
    er = _rule(sel("Image|endswith: '\\evil.exe'"))
    ev = Event({"Channel": SYSMON, "EventID": 11, "Image": "C:\\evil.exe"}, "mem", 1)
    assert not list(Engine([er]).run([ev]))
    assert list(Engine([er], route=False).run([ev]))


def test_eventid_from_xml_text_routes_too():
    er = _rule(sel("Image|endswith: '\\evil.exe'"))
    ev = Event({"Channel": SYSMON, "EventID": "1", "Image": "C:\\evil.exe"}, "mem", 1)
    assert list(Engine([er]).run([ev]))


def test_spaced_defender_field_names():
    d = sel("EventID: 1119\nThreatName|contains: 'EICAR'")
    ev = {"Channel": "Microsoft-Windows-Windows Defender/Operational", "EventID": 1119,
          "Threat Name": "Virus:DOS/EICAR_Test_File"}
    er = _rule(d, logsource="    product: windows\n    service: windefend")
    assert list(Engine([er]).run([Event(ev, "mem", 1)]))


def test_prefilter_never_hides_a_match():
    # the same rules with and without the literal pre-filter give the same findings
    rules = [_rule(sel(b)) for b in (
        "CommandLine|contains: 'abc'", "Image|endswith:\n    - '\\x.exe'\n    - '\\y.exe'",
        "CommandLine|re: 'a.c'", "CommandLine|base64offset|contains: 'abc'",
    )]
    evs = [Event({"Channel": SYSMON, "EventID": 1, "CommandLine": c, "Image": i}, "m", n)
           for n, (c, i) in enumerate([("xABCx", "c:\\x.exe"), ("aXc", "c:\\z.exe"),
                                       (base64.b64encode(b"zabcz").decode(), "y.exe")])]
    a = [(f.rule.rule.id, f.event.position) for f in Engine(rules).run(evs)]
    rules2 = [_rule(sel(b)) for b in (
        "CommandLine|contains: 'abc'", "Image|endswith:\n    - '\\x.exe'\n    - '\\y.exe'",
        "CommandLine|re: 'a.c'", "CommandLine|base64offset|contains: 'abc'",
    )]
    b = [(f.rule.rule.id, f.event.position) for f in Engine(rules2, prefilter=False).run(evs)]
    assert sorted(a) == sorted(b)
    assert len(a) == 4


def test_product_gate_for_rules_routing_cannot_narrow():
    # product cisco (unknown to the routing table): never on Windows events
    d = "    keywords:\n        - 'username'\n    condition: keywords"
    er = _rule(d, logsource="    product: cisco\n    service: aaa")
    win = Event({"Channel": SYSMON, "EventID": 1, "CommandLine": "net user username"}, "m", 1)
    other = Event({"message": "username admin privilege 15"}, "m", 2)
    found = [f.event.position for f in Engine([er]).run([win, other])]
    assert found == [2]


def test_keyword_findings_name_the_keywords():
    d = "    keywords:\n        - 'mimikatz'\n        - 'sekurlsa::'\n    condition: keywords"
    er = _rule(d, logsource="    product: windows")
    ev = Event({"Channel": "Security", "EventID": 4688, "CommandLine": "mimikatz.exe"}, "m", 1)
    [f] = Engine([er]).run([ev])
    assert f.matched["keywords"] == ["mimikatz"]


def test_retired_rules_are_recognised():
    from ruleatlas.engine.catalog import is_retired

    r = rule_from_text("title: t\nid: x\nstatus: test\nlogsource:\n    product: windows\n"
                       "detection:\n    sel:\n        a: b\n    condition: sel\n",
                       path="deprecated/windows/x.yml")
    assert is_retired(r)
    assert not is_retired(rule_from_text("title: t\nid: x\n", path="rules/windows/x.yml"))
