"""Typed pipeline steps: what the SPL lowering emits (expectations written from the searches),
their JSON round trip (the catalog stores analyses as JSON), and the engine reading them."""

from __future__ import annotations

import json

import pytest

from ruleatlas.engine.aggregate import agg_spec
from ruleatlas.engine.compile import NotRunnable
from ruleatlas.languages.spl.analyze import analyze_query
from ruleatlas.model import (
    AggFunc,
    Aggregate,
    Bin,
    Call,
    Eval,
    FieldRef,
    Filter,
    Join,
    OtherCommand,
    Rename,
    Rex,
    analysis_from_dict,
    analysis_to_dict,
)

SEARCH = ('index=win EventCode=4688 | rex field=Message "(?<user>\\S+)@" '
          '| eval u=lower(user) | bin span=5m _time '
          '| stats count min(_time) as firstTime dc(u) as users by host, _time '
          '| join type=left host [search index=asset | stats values(owner) as owner by host] '
          '| rename owner as asset_owner | lookup hosts host OUTPUT site | where users > 2')


def test_spl_lowering_emits_typed_steps_in_order():
    a = analyze_query(SEARCH, {})
    kinds = [type(s) for s in a.steps]
    assert kinds == [Filter, Rex, Eval, Bin, Aggregate, Join, Rename, OtherCommand, Filter]
    rex, ev, b, agg, join, ren, look = a.steps[1:8]
    assert rex == Rex(1, "Message", "(?<user>\\S+)@", 1, None)
    assert ev == Eval(2, (("u", Call("lower", (FieldRef("user"),))),))
    assert b == Bin(3, ("_time",), "5m")
    assert agg.command == "stats" and agg.by == ("host", "_time")
    assert agg.functions == (AggFunc("count"), AggFunc("min", "_time", "firstTime"),
                             AggFunc("dc", "u", "users"))
    assert (join.kind, join.fields, join.max, join.overwrite) == ("outer", ("host",), "1", True)
    assert join.subsearch is not None
    [sub_agg] = [s for s in join.subsearch.steps if isinstance(s, Aggregate)]
    assert sub_agg.functions == (AggFunc("values", "owner", "owner"),)
    assert ren == Rename(6, (("owner", "asset_owner"),))
    assert look == OtherCommand(7, "lookup", ("site",))
    assert "event_pipeline" not in a.extra and "result_pipeline" not in a.extra


def test_steps_round_trip_through_json():
    a = analyze_query(SEARCH, {})
    back = analysis_from_dict(json.loads(json.dumps(analysis_to_dict(a))))
    assert back.steps == a.steps


def test_tstats_step_carries_datamodel_options_and_span():
    a = analyze_query("| tstats summariesonly=false count values(Processes.process) as cmd "
                      "from datamodel=Endpoint.Processes where Processes.process_name=x.exe "
                      "by Processes.dest _time span=1h", {})
    [agg] = a.steps
    assert isinstance(agg, Aggregate) and agg.command == "tstats"
    assert agg.datamodel == "Endpoint.Processes" and agg.span == "1h"
    assert agg.options == (("summariesonly", "false"),)
    assert agg.by == ("Processes.dest", "_time")
    assert agg.functions == (AggFunc("count"), AggFunc("values", "Processes.process", "cmd"))


def test_agg_spec_names_and_refusals():
    spec = agg_spec(Aggregate(0, "stats", ("h",), (AggFunc("c"), AggFunc("distinct_count",
                                                                         "u"))))
    assert [(f.fn, f.arg, f.name) for f in spec.funcs] == [
        ("count", None, "count"), ("dc", "u", "distinct_count(u)")]
    [agg] = [s for s in analyze_query("x | stats dc(eval(a)) as n by h", {}).steps
             if isinstance(s, Aggregate)]
    with pytest.raises(NotRunnable, match="nested expression"):
        agg_spec(agg)
    with pytest.raises(NotRunnable, match="wildcard output"):
        agg_spec(Aggregate(0, "stats", ("h",), (AggFunc("values", "*", "*"),)))
