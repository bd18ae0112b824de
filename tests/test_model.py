"""The shared model: patterns normalise, trees round-trip through JSON, spans never compare."""

from __future__ import annotations

from ruleatlas.model import (
    And,
    Call,
    Condition,
    Const,
    FieldRef,
    Not,
    Op,
    Opaque,
    Or,
    Pattern,
    Predicate,
    Regex,
    Span,
    Wild,
    conjoin,
    connective,
    node_from_dict,
    node_to_dict,
    predicates,
)


def test_pattern_merges_adjacent_text() -> None:
    assert Pattern(("a", "", "b", Wild.ANY)) == Pattern(("ab", Wild.ANY))
    assert Pattern(("x",)).literal() == "x"
    assert Pattern((Wild.ANY, "x")).literal() is None


def test_pattern_display_escapes_literal_wildcards() -> None:
    assert Pattern((Wild.ANY, "a*b\\", Wild.ONE)).display() == "*a\\*b\\\\?"


def test_span_does_not_affect_equality() -> None:
    a = Predicate("Image", Op.ENDSWITH, ("\\cmd.exe",), span=Span(3, 4))
    b = Predicate("Image", Op.ENDSWITH, ("\\cmd.exe",), span=Span(9, 1), text="x")
    assert a == b
    assert a != Predicate("Image", Op.ENDSWITH, ("\\cmd.exe",), negated=True)


def test_tree_roundtrip() -> None:
    tree = And(
        (
            Predicate("EventCode", Op.EQ, (4104,), span=Span(1, 2, 0, 10)),
            Or(
                (
                    Predicate("ScriptBlockText", Op.IN, (Pattern((Wild.ANY, "wmi", Wild.ANY)),)),
                    Predicate("x", Op.REGEX, (Regex("a.b", frozenset({"i"})),), cased=True),
                    Predicate("y", Op.EQ, (FieldRef("z"), None, True, 1.5)),
                )
            ),
            Not(Predicate("CommandLine", Op.CONTAINS, ("-enc",), transforms=("windash",))),
            Condition(Call(">", (Call("len", (FieldRef("q"),)), 10)), "len(q) > 10", ("q",)),
            Opaque("| weird", "unknown command"),
            Const(True),
        )
    )
    assert node_from_dict(node_to_dict(tree)) == tree


def test_predicates_polarity() -> None:
    p, q = Predicate("a", Op.EQ, ("1",)), Predicate("b", Op.EQ, ("2",))
    assert list(predicates(And((p, Not(Or((q,))))))) == [(p, True), (q, False)]


def test_conjoin_flattens() -> None:
    p, q = Predicate("a", Op.EQ, ("1",)), Predicate("b", Op.EQ, ("2",))
    assert conjoin([And((p,)), None, Const(True), q]) == And((p, q))
    assert conjoin([None]) is None
    assert conjoin([p]) == p


def test_connective_splices_only_the_same_connective() -> None:
    p, q, r = (Predicate(f, Op.EQ, ("1",)) for f in "abc")
    assert connective(And, [And((p, q)), Or((q, r)), r]) == And((p, q, Or((q, r)), r))
    assert connective(Or, iter([Or((p,)), Not(Or((q,)))])) == Or((p, Not(Or((q,)))))
    assert connective(Or, [p]) == Or((p,))  # one node stays wrapped
    assert connective(And, []) == And(())
