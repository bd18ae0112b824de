"""model.Sequence / SequenceStep: JSON round trip inside an Analysis, and what is left out of
equality (display text and spans)."""

from __future__ import annotations

import json

from ruleatlas.model import (
    Analysis,
    Op,
    Pattern,
    Predicate,
    Sequence,
    SequenceStep,
    Span,
    Stage,
    Wild,
    analysis_from_dict,
    analysis_to_dict,
    sequence_from_dict,
    sequence_to_dict,
)


def _sequence() -> Sequence:
    first = SequenceStep(
        Predicate("process.name", Op.WILDCARD, (Pattern(("cmd", Wild.ANY)),), text="p"),
        by=("process.entity_id",), runs=3, category="process", text="[process where ...]",
        span=Span(2, 3, 10, 40))
    gone = SequenceStep(Predicate("event.category", Op.IN, ("file", "dns"), cased=True),
                        missing=True, text="![any where ...]")
    until = SequenceStep(None, category="process", text="[process where true]")
    return Sequence("sequence", (first, gone), by=("host.id",), maxspan=300.0,
                    maxspan_text="5m", until=until)


def test_sequence_round_trips_through_json() -> None:
    seq = _sequence()
    back = sequence_from_dict(json.loads(json.dumps(sequence_to_dict(seq))))
    assert back == seq
    assert back.steps[0].span == Span(2, 3, 10, 40) and back.steps[0].text == seq.steps[0].text
    assert back.until is not None and back.until.condition is None


def test_analysis_carries_the_sequence_and_defaults_to_none() -> None:
    a = Analysis("eql", stages=(Stage(0, "sequence step 1", "[...]"),), sequence=_sequence())
    d = json.loads(json.dumps(analysis_to_dict(a)))
    assert d["sequence"]["kind"] == "sequence" and d["sequence"]["maxspan_text"] == "5m"
    assert analysis_from_dict(d) == a
    plain = Analysis("spl")
    assert "sequence" not in analysis_to_dict(plain)
    assert analysis_from_dict(analysis_to_dict(plain)).sequence is None


def test_sample_without_maxspan_or_until() -> None:
    s = Sequence("sample", (SequenceStep(None), SequenceStep(None, by=("a",))))
    assert sequence_from_dict(json.loads(json.dumps(sequence_to_dict(s)))) == s


def test_text_and_span_do_not_take_part_in_equality() -> None:
    a = SequenceStep(None, text="[a where true]", span=Span(1, 1))
    b = SequenceStep(None, text="[ a where true ]", span=Span(3, 5))
    assert a == b
    assert SequenceStep(None, missing=True) != SequenceStep(None)
