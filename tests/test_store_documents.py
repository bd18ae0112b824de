"""The rule document's display helpers on hand-made trees (model JSON form)."""

from __future__ import annotations

from ruleatlas.api.documents import display_value, expression, flat_predicates
from ruleatlas.model import (
    And,
    Not,
    Op,
    Or,
    Pattern,
    Predicate,
    Regex,
    Wild,
    node_to_dict,
)

P1 = Predicate("source", Op.EQ, ("A",))
P2 = Predicate("source", Op.EQ, ("B",))
P3 = Predicate("ScriptBlockText", Op.IN, (Pattern((Wild.ANY, "invoke-wmiexec", Wild.ANY)),))
P4 = Predicate("Image", Op.ENDSWITH, ("\\cmd.exe",), negated=True)


def test_expression_keeps_structure() -> None:
    tree = node_to_dict(And((Or((P1, P2)), P3, Not(P4))))
    assert expression(tree) == (
        "(source = A OR source = B) AND ScriptBlockText IN (*invoke-wmiexec*) AND "
        "NOT (NOT (Image endswith \\cmd.exe))")


def test_flat_predicates_give_effective_polarity() -> None:
    tree = node_to_dict(And((P1, Not(Or((P3, P4))))))
    flat = flat_predicates(tree)
    assert [(p["field"], p["negated"]) for p in flat] == [
        ("source", False), ("ScriptBlockText", True), ("Image", False)]
    assert flat[1]["values"] == ["*invoke-wmiexec*"]


def test_display_values() -> None:
    assert display_value(node_to_dict(P3)["values"][0]) == "*invoke-wmiexec*"
    lit_star = {"pattern": ["a*b", {"wild": "*"}]}
    assert display_value(lit_star) == "a\\*b*"
    assert display_value({"regex": "ab+", "flags": ["i"]}) == str(Regex("ab+", frozenset("i")))
    assert display_value(None) == "null" and display_value(True) == "true"
