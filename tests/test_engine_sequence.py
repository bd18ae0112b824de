"""EQL sequences and samples (engine/sequence.py) on hand-made ECS events, with the queries
lowered by the real EQL analyzer. Expectations come from Elasticsearch's EQL syntax reference
(its state-machine walk-through, the until and runs examples) and from reading each corpus rule.
"""

from __future__ import annotations

import random
import tomllib
from typing import Any

import pytest

from conftest import ELASTIC
from ruleatlas.engine.elastic_semantics import compile_elastic
from ruleatlas.engine.sequence import (
    Match,
    OutOfOrder,
    SampleRunner,
    SequenceRunner,
    Step,
    build_runner,
    event_time,
    run_sequence,
)
from ruleatlas.languages.eql import analyze_eql_query


def runner(query: str, **kw: Any) -> SequenceRunner | SampleRunner:
    a = analyze_eql_query(query)
    assert not a.problems and a.sequence is not None, a.problems
    opt = frozenset(a.extra.get("optional_fields", ()))
    return build_runner(a.sequence, compile_elastic, optional=opt, **kw)


def at(sec: float, **fields: Any) -> dict[str, Any]:
    """An event ``sec`` seconds after 2024-01-01T00:00:00Z."""
    m, s = divmod(sec, 60)
    ev = {"@timestamp": f"2024-01-01T00:{int(m):02d}:{s:06.3f}Z"}
    ev.update({k.replace("__", "."): v for k, v in fields.items()})
    return ev


def ids(matches: list[Match]) -> list[list[Any]]:
    return [[e.get("id") for e in m.events] for m in matches]


def run(query: str, events: list[dict[str, Any]], **kw: Any) -> list[Match]:
    return list(run_sequence(runner(query, **kw), events))


def proc(sec: float, id_: int, user: str, name: str) -> dict[str, Any]:
    return at(sec, id=id_, event__category=["process"], user__name=user, process__name=name)


def test_state_machine_walkthrough() -> None:
    """The reference's 11 events: root matches [2, 4, 9], elkbee [6, 8, 10]."""
    seq = [(1, "root", "attrib"), (2, "root", "attrib"), (3, "elkbee", "bash"),
           (4, "root", "bash"), (5, "root", "bash"), (6, "elkbee", "attrib"),
           (7, "root", "attrib"), (8, "elkbee", "bash"), (9, "root", "cat"),
           (10, "elkbee", "cat"), (11, "root", "cat")]
    events = [proc(i, i, u, n) for i, u, n in seq]
    q = ('sequence by user.name [process where process.name == "attrib"] '
         '[process where process.name == "bash"] [process where process.name == "cat"]')
    got = run(q, events)
    assert ids(got) == [[2, 4, 9], [6, 8, 10]]
    assert [m.key for m in got] == [("root",), ("elkbee",)]


def test_order_matters() -> None:
    q = 'sequence [process where process.name : "a"] [process where process.name : "b"]'
    assert ids(run(q, [proc(1, 1, "u", "b"), proc(2, 2, "u", "a")])) == []
    assert ids(run(q, [proc(1, 1, "u", "a"), proc(2, 2, "u", "b")])) == [[1, 2]]


def test_ties_keep_record_order() -> None:
    q = 'sequence [process where process.name : "a"] [process where process.name : "b"]'
    assert ids(run(q, [proc(5, 1, "u", "a"), proc(5, 2, "u", "b")])) == [[1, 2]]
    assert ids(run(q, [proc(5, 1, "u", "b"), proc(5, 2, "u", "a")])) == []


def test_one_event_cannot_fill_two_members() -> None:
    q = 'sequence [process where true] [process where true]'
    assert ids(run(q, [proc(1, 1, "u", "x")])) == []
    assert ids(run(q, [proc(1, 1, "u", "x"), proc(2, 2, "u", "x")])) == [[1, 2]]


def test_maxspan_from_first_to_last() -> None:
    q = ('sequence by user.name with maxspan=30s [process where process.name : "a"] '
         '[process where process.name : "b"] [process where process.name : "c"]')
    inside = [proc(0, 1, "u", "a"), proc(10, 2, "u", "b"), proc(30, 3, "u", "c")]
    assert ids(run(q, inside)) == [[1, 2, 3]]          # exactly maxspan is inside
    late = [proc(0, 1, "u", "a"), proc(10, 2, "u", "b"), proc(30.5, 3, "u", "c")]
    assert ids(run(q, late)) == []
    # a newer start overwrites the old one and keeps the window
    restart = [proc(0, 1, "u", "a"), proc(20, 2, "u", "a"), proc(25, 3, "u", "b"),
               proc(45, 4, "u", "c")]
    assert ids(run(q, restart)) == [[2, 3, 4]]


def test_until_example_from_the_reference() -> None:
    """A, B / A, B, C / A, C, B with ``until C``: the first two match, not the third."""
    q = ('sequence by id_ [any where ev == "A"] [any where ev == "B"] '
         'until [any where ev == "C"]')

    def e(sec: float, group: int, name: str) -> dict[str, Any]:
        return at(sec, id=f"{group}{name}", id_=group, ev=name)

    events = [e(1, 1, "A"), e(2, 1, "B"),
              e(3, 2, "A"), e(4, 2, "B"), e(5, 2, "C"),
              e(6, 3, "A"), e(7, 3, "C"), e(8, 3, "B")]
    assert ids(run(q, events)) == [["1A", "1B"], ["2A", "2B"]]


def test_runs() -> None:
    q = ('sequence by host.id [process where process.name : "a"] '
         '[process where process.name : "b"] with runs=3')

    def e(sec: float, id_: int, name: str) -> dict[str, Any]:
        return at(sec, id=id_, event__category=["process"], host__id="h", process__name=name)

    two = [e(1, 1, "a"), e(2, 2, "b"), e(3, 3, "b")]
    assert ids(run(q, two)) == []
    three = [e(1, 1, "a"), e(2, 2, "b"), e(3, 3, "x"), e(4, 4, "b"), e(5, 5, "b"), e(6, 6, "b")]
    assert ids(run(q, three)) == [[1, 2, 4, 5]]     # others may come between; one match


def test_per_member_keys() -> None:
    """``[file ...] by file.path`` then ``[process ...] by process.executable``: the values
    must be equal across the two fields."""
    q = ('sequence by user.name [file where file.extension == "exe"] by file.path '
         '[process where true] by process.executable')
    f = at(1, id=1, event__category=["file"], user__name="bob", file__extension="exe",
           file__path="C:\\t\\x.exe")
    other = at(2, id=2, event__category=["process"], user__name="bob",
               process__executable="C:\\t\\y.exe")
    same = at(3, id=3, event__category=["process"], user__name="bob",
              process__executable="C:\\t\\x.exe")
    wrong_user = at(4, id=4, event__category=["process"], user__name="eve",
                    process__executable="C:\\t\\x.exe")
    assert ids(run(q, [f, other, wrong_user, same])) == [[1, 3]]


def test_interleaved_keys() -> None:
    q = ('sequence by host.id [process where process.name : "a"] '
         '[process where process.name : "b"]')

    def e(sec: float, id_: str, host: str, name: str) -> dict[str, Any]:
        return at(sec, id=id_, event__category=["process"], host__id=host, process__name=name)

    events = [e(1, "1a", "h1", "a"), e(2, "2a", "h2", "a"), e(3, "2b", "h2", "b"),
              e(4, "1b", "h1", "b"), e(5, "3b", "h3", "b")]
    assert ids(run(q, events)) == [["2a", "2b"], ["1a", "1b"]]


def test_null_join_key_unless_optional() -> None:
    events = [at(1, id=1, event__category=["process"], process__name="a"),
              at(2, id=2, event__category=["process"], process__name="b")]
    plain = ('sequence by process.entity_id [process where process.name : "a"] '
             '[process where process.name : "b"]')
    assert ids(run(plain, events)) == []
    optional = ('sequence by ?process.entity_id [process where process.name : "a"] '
                '[process where process.name : "b"]')
    assert ids(run(optional, events)) == [[1, 2]]


def test_out_of_order_input() -> None:
    q = ('sequence by user.name [process where process.name == "attrib"] '
         '[process where process.name == "bash"] [process where process.name == "cat"]')
    events = [proc(1, 1, "u", "attrib"), proc(2, 2, "u", "bash"), proc(3, 3, "u", "cat"),
              proc(4, 4, "v", "attrib"), proc(5, 5, "v", "bash"), proc(6, 6, "v", "cat")]
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    assert ids(run(q, shuffled)) == [[1, 2, 3], [4, 5, 6]]
    r = runner(q)
    r.feed(events[2])
    with pytest.raises(OutOfOrder):
        r.feed(events[0])


def test_memory_cap_drops_the_oldest_key() -> None:
    q = ('sequence by host.id [process where process.name : "a"] '
         '[process where process.name : "b"]')

    def e(sec: float, host: str, name: str) -> dict[str, Any]:
        return at(sec, id=f"{host}{name}", event__category=["process"], host__id=host,
                  process__name=name)

    r = runner(q, max_keys=2)
    events = [e(1, "h1", "a"), e(2, "h2", "a"), e(3, "h3", "a"),
              e(4, "h1", "b"), e(5, "h3", "b")]
    got = list(run_sequence(r, events))
    assert ids(got) == [["h3a", "h3b"]]
    assert isinstance(r, SequenceRunner) and r.evicted == 1 and len(r.keys) <= 2


def test_trailing_missing_member() -> None:
    """Logon (4624) not followed within 5 s by a logoff (4647) for the same host and user
    (the reference's missing-events example)."""
    q = ('sequence by host.name, user.name with maxspan=5s '
         '[authentication where event.code : "4624"] '
         '![authentication where event.code : "4647"]')

    def e(sec: float, id_: int, code: str, user: str = "bob") -> dict[str, Any]:
        return at(sec, id=id_, event__category=["authentication"], event__code=code,
                  host__name="h", user__name=user)

    assert ids(run(q, [e(0, 1, "4624"), e(3, 2, "4647")])) == []
    assert ids(run(q, [e(0, 1, "4624"), e(6, 2, "4647")])) == [[1]]      # logoff too late
    assert ids(run(q, [e(0, 1, "4624"), e(3, 2, "4647", "eve")])) == [[1]]  # other user
    assert ids(run(q, [e(0, 1, "4624")])) == [[1]]                          # end of input


def test_middle_missing_member() -> None:
    q = ('sequence by host.id with maxspan=1m [any where ev == "A"] ![any where ev == "X"] '
         '[any where ev == "B"]')

    def e(sec: float, name: str) -> dict[str, Any]:
        return at(sec, id=f"{name}{sec:g}", host__id="h", ev=name)

    assert ids(run(q, [e(1, "A"), e(2, "B")])) == [["A1", "B2"]]
    assert ids(run(q, [e(1, "A"), e(2, "X"), e(3, "B")])) == []
    assert ids(run(q, [e(0, "X"), e(1, "A"), e(3, "B"), e(4, "X")])) == [["A1", "B3"]]


def test_sample_any_order_one_per_key() -> None:
    q = ('sample by host.id [process where process.name : "a"] '
         '[network where destination.port == 443]')
    events = [at(1, id=1, event__category=["network"], host__id="h", destination__port=443),
              at(2, id=2, event__category=["process"], host__id="h", process__name="a"),
              at(3, id=3, event__category=["process"], host__id="h", process__name="a"),
              at(4, id=4, event__category=["network"], host__id="h", destination__port=443),
              at(5, id=5, event__category=["process"], host__id="g", process__name="a")]
    got = run(q, events)
    assert ids(got) == [[2, 1]]        # member order, first event of each member
    assert got[0].key == ("h",)


def test_event_time_fields() -> None:
    assert event_time({"@timestamp": "2024-01-01T00:00:01Z"}) == 1704067201.0
    assert event_time({"TimeCreated": "2024-01-01T00:00:01.5000000Z"}) == 1704067201.5
    assert event_time({"TimeCreated": "2024-01-01 00:00:02"}) == 1704067202.0
    assert event_time({"x": 1}) is None


def test_streaming_api_with_plain_callables() -> None:
    r = SequenceRunner([Step(lambda ev: ev["n"] == 1, ("k",)),
                        Step(lambda ev: ev["n"] == 2, ("k",))], maxspan=10)
    assert r.feed({"n": 1, "k": "a"}, 0.0) == []
    (m,) = r.feed({"n": 2, "k": "a"}, 10.0)
    assert m.key == ("a",) and m.times == (0.0, 10.0)


# --------------------------------------------------------------------------------------------
# Corpus rules, lowered from their TOML, on events written by reading each rule
# --------------------------------------------------------------------------------------------


def rule_query(path: str) -> str:
    with open(ELASTIC / path, "rb") as fh:
        return str(tomllib.load(fh)["rule"]["query"])


def test_rule_rundll32_network_connection() -> None:
    """rundll32 started with no argument (args_count 1), then a connection to a public
    address by the same process within 1 minute."""
    q = rule_query("rules/windows/defense_evasion_unusual_network_connection_via_rundll32.toml")
    base = {"host.id": "H1", "process.entity_id": "P1", "host.os.type": "windows",
            "process.name": "rundll32.exe"}
    start = at(0, id="start", **{k.replace(".", "__"): v for k, v in base.items()},
               event__category=["process"], event__type=["start"], process__args_count=1,
               process__command_line="rundll32.exe")
    public = at(20, id="net", **{k.replace(".", "__"): v for k, v in base.items()},
                event__category=["network"], destination__ip="203.0.114.9")
    private = dict(public, id="lan", **{"destination.ip": "10.1.2.3"})
    late = dict(public, id="late", **{"@timestamp": "2024-01-01T00:01:01Z"})
    with_args = dict(start, id="args", **{"process.args_count": 2})
    assert ids(run(q, [start, public])) == [["start", "net"]]
    assert ids(run(q, [start, private])) == []
    assert ids(run(q, [start, late])) == []                    # maxspan=1m
    assert ids(run(q, [with_args, public])) == []
    other = dict(public, **{"process.entity_id": "P2"})
    assert ids(run(q, [start, other])) == []                   # by process.entity_id


def test_rule_script_interpreter_download() -> None:
    """wscript/cscript outbound connection, then the same process creates an .exe."""
    q = rule_query("rules/windows/command_and_control_remote_file_copy_scripts.toml")
    common = {"host__id": "H", "process__entity_id": "W1", "host__os__type": "windows"}
    net = at(0, id="net", event__category=["network"], process__name="WScript.exe",
             network__protocol="http", network__direction="egress", network__type="ipv4",
             destination__ip="198.51.100.7", **common)
    dns = dict(net, id="dns", **{"network.protocol": "dns"})
    exe = at(600, id="exe", event__category=["file"], event__type=["creation"],
             file__extension="exe", **common)
    txt = dict(exe, id="txt", **{"file.extension": "txt"})
    assert ids(run(q, [net, exe])) == [["net", "exe"]]          # no maxspan: 10 min is fine
    assert ids(run(q, [dns, exe])) == []
    assert ids(run(q, [net, txt])) == []
    net_after = dict(net, **{"@timestamp": "2024-01-01T00:11:00Z"})
    assert ids(run(q, [exe, net_after])) == []                  # the file came first


def test_rule_startup_folder_unsigned_process() -> None:
    q = rule_query("rules/windows/persistence_startup_folder_file_written_by_unsigned_process.toml")
    common = {"host__id": "H", "process__entity_id": "E", "host__os__type": "windows"}
    start = at(0, id="p", event__category=["process"], event__type=["start"],
               process__code_signature__trusted=False,
               process__executable="C:\\Users\\bob\\Downloads\\evil.exe", **common)
    write = at(3, id="f", event__category=["file"], event__type=["creation"],
               user__domain="CORP",
               file__path=("C:\\Users\\bob\\AppData\\Roaming\\Microsoft\\Windows\\Start Menu"
                           "\\Programs\\Startup\\evil.lnk"), **common)
    signed = dict(start, **{"process.code_signature.trusted": True})
    system = dict(write, **{"user.domain": "NT AUTHORITY"})
    slow = dict(write, **{"@timestamp": "2024-01-01T00:00:06Z"})
    assert ids(run(q, [start, write])) == [["p", "f"]]
    assert ids(run(q, [signed, write])) == []
    assert ids(run(q, [start, system])) == []
    assert ids(run(q, [start, slow])) == []                     # maxspan=5s


def test_rule_okta_mfa_bombing_runs_until() -> None:
    """Five push denials for one actor within 10 minutes, unless a successful login comes
    between (runs=5 + until)."""
    q = rule_query("rules/integrations/okta/"
                   "credential_access_okta_mfa_bombing_via_push_notifications.toml")

    def deny(sec: float, n: int) -> dict[str, Any]:
        return at(sec, id=n, data_stream__dataset="okta.system", okta__actor__id="A",
                  okta__event_type="user.mfa.okta_verify.deny_push")

    ok = at(25, id="ok", data_stream__dataset="okta.system", okta__actor__id="A",
            okta__event_type="user.session.start", okta__outcome__result="SUCCESS")
    five = [deny(10 * i, i) for i in range(1, 6)]
    assert ids(run(q, five)) == [[1, 2, 3, 4, 5]]
    assert ids(run(q, five[:4])) == []
    assert ids(run(q, [*five[:2], ok, *five[2:]])) == []
    assert ids(run(q, [*five[:2], ok, *five[2:], deny(60, 6), deny(70, 7)])) == [[3, 4, 5, 6, 7]]


def test_rule_missing_events_after_alert() -> None:
    """An endpoint alert followed, within 5 minutes on the same host, by no process/file/...
    event: a match; with a process event 1 minute later: none."""
    q = rule_query("rules/cross-platform/defense_evasion_missing_events_after_alert.toml")
    alert = at(0, id="alert", host__id="H", data_stream__dataset="endpoint.alerts")
    later = at(60, id="proc", host__id="H", event__category=["process"])
    other_host = at(60, id="proc2", host__id="G", event__category=["process"])
    assert ids(run(q, [alert, later])) == []
    assert ids(run(q, [alert, other_host])) == [["alert"]]
