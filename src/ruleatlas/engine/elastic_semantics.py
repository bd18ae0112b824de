"""Elastic-specific tree rewrites and compiling for EQL and KQL rules (Elasticsearch semantics).

The predicate trees of EQL and KQL queries (``languages/eql``, ``languages/kql``) already say
what is cased, what is a pattern and what is a Lucene regex; :func:`compile_node` runs them with
the shared semantics (a missing field fails a predicate, a list matches when any value does).
Two things differ in Elasticsearch and are handled here, before compiling:

* **``!=`` on a missing field is true.** EQL's ``f != "x"`` is translated by Elasticsearch's QL
  planner (``ExpressionTranslators.BinaryComparisons``) into ``NotQuery(TermQuery(f, "x"))``, a
  ``bool.must_not``, which matches every document whose ``f`` does not hold ``"x"`` -- documents
  without ``f`` included, and a multi-valued ``f`` only when no value is ``"x"``. The shared
  ``ne`` needs the field present (SPL's ``field!=x``), so :func:`elastic_tree` rewrites EQL's
  ``ne`` into ``Not(eq)``. ``not f : "x"`` and ``f not in (...)`` are ``must_not`` too, and
  already ``Not``/negated predicates: true on a missing field.
* **``not`` of a script.** ``not length(f) > 3`` is one script query in Elasticsearch (QL's
  ``Nots`` translator: a ``Not`` over a ``ScriptQuery`` is the script of the ``Not``), so a null
  inside stays null and the event does not match; :func:`elastic_tree` folds ``Not(Condition)``
  into the condition (``NOT`` is three-valued in :mod:`engine.eql_functions`).
* **Conditions** (``length(f) > 3``, ``startsWith~(a, substring(b, 0, 1))``) compile with EQL's
  operators and functions (:mod:`engine.eql_functions`), not SPL's.

``?field`` needs nothing: an optional field only changes what Elasticsearch's verifier accepts
(an unmapped field is null instead of an error); on an event, a missing field is null either
way (``?f == null`` is true, ``?f : "x"`` is false).

ES|QL has other null rules (its ``!=`` drops nulls) and is not compiled through this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from ruleatlas.engine.compile import Matcher, compile_node
from ruleatlas.engine.eql_functions import compile_eql_term
from ruleatlas.model import And, Call, Condition, Node, Not, Op, Or, Predicate


def _rewrite(node: Node) -> Node:
    if isinstance(node, Predicate):
        if node.op is Op.NE:
            eq = Predicate(node.field, Op.EQ, node.values, match_all=node.match_all,
                           transforms=node.transforms, cased=node.cased, phase=node.phase,
                           stage=node.stage, text=node.text, span=node.span)
            return eq if node.negated else Not(eq)
        return node
    if isinstance(node, And):
        return And(tuple(_rewrite(a) for a in node.args))
    if isinstance(node, Or):
        return Or(tuple(_rewrite(a) for a in node.args))
    if isinstance(node, Not):
        if isinstance(node.arg, Condition):  # NOT of a script is a script: NOT null is null
            c = node.arg
            return Condition(Call("NOT", (c.expr,)), f"not {c.text}", c.fields, phase=c.phase,
                             stage=c.stage, span=c.span)
        return Not(_rewrite(node.arg))
    return node


def elastic_tree(node: Node | None) -> Node | None:
    """The tree with Elasticsearch's ``!=`` (``must_not term``: true when the field is
    missing) in place of the shared ``ne``."""
    return None if node is None else _rewrite(node)


def compile_elastic(node: Node | None, field_map: Mapping[str, str] | None = None) -> Matcher:
    """The matcher of an EQL or KQL tree with Elasticsearch's semantics. Raises
    :class:`engine.compile.NotRunnable` like :func:`compile_node`."""
    return compile_node(elastic_tree(node), field_map, terms=compile_eql_term)
