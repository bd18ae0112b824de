"""Tree helpers for combining analyses: map a tree, move its stage numbers, move its spans.

A hunting file's queries are analyzed one by one, each with stages numbered from 0 and spans
relative to its own text; the combined analysis numbers stages across all queries and places
spans in the rule's joined ``query``. These helpers rebuild trees with those offsets (the model
types are frozen: every change is a new node).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ruleatlas import model as M

Leaf = M.Predicate | M.Condition | M.Opaque


def map_leaves(node: M.Node | None, fn: Callable[[Leaf], M.Node]) -> M.Node | None:
    """``node`` with every predicate, condition and opaque leaf replaced by ``fn(leaf)``."""
    if node is None:
        return None
    if isinstance(node, (M.Predicate, M.Condition, M.Opaque)):
        return fn(node)
    if isinstance(node, (M.And, M.Or)):
        args: list[M.Node] = []
        for a in node.args:
            m = map_leaves(a, fn) or a
            args.extend(m.args if type(m) is type(node) else (m,))  # type: ignore[union-attr]
        return type(node)(tuple(args))
    if isinstance(node, M.Not):
        return M.Not(map_leaves(node.arg, fn) or node.arg)
    return node


def line_col_shift(text: str, offset: int) -> tuple[int, int]:
    """(lines before ``offset`` in ``text``, column of ``offset`` on its line minus one)."""
    lines = text.count("\n", 0, offset)
    col = offset - (text.rfind("\n", 0, offset) + 1)
    return lines, col


def shift_span(span: M.Span | None, text: str, offset: int) -> M.Span | None:
    """A span of a text that starts at ``offset`` of ``text``, as a span of ``text``."""
    if span is None or offset == 0:
        return span
    lines, col = line_col_shift(text, offset)
    return replace(
        span,
        line=span.line + lines,
        col=span.col + (col if span.line == 1 else 0),
        start=None if span.start is None else span.start + offset,
        end=None if span.end is None else span.end + offset,
    )


def _move_leaf(leaf: Leaf, stage_offset: int, text: str, offset: int) -> M.Node:
    stage = None if leaf.stage is None else leaf.stage + stage_offset
    return replace(leaf, stage=stage, span=shift_span(leaf.span, text, offset))


def move_tree(node: M.Node | None, stage_offset: int, text: str = "", offset: int = 0
              ) -> M.Node | None:
    """``node`` with stage numbers moved by ``stage_offset`` and spans by ``offset`` in
    ``text``."""
    if stage_offset == 0 and offset == 0:
        return node
    return map_leaves(node, lambda leaf: _move_leaf(leaf, stage_offset, text, offset))


def move_stage(st: M.Stage, stage_offset: int, text: str = "", offset: int = 0) -> M.Stage:
    return replace(
        st,
        index=st.index + stage_offset,
        condition=move_tree(st.condition, stage_offset, text, offset),
        span=shift_span(st.span, text, offset),
    )


def move_problem(p: M.Problem, prefix: str, text: str = "", offset: int = 0) -> M.Problem:
    return replace(p, message=prefix + p.message, location=shift_span(p.location, text, offset))


def move_sequence(seq: M.Sequence | None, text: str, offset: int) -> M.Sequence | None:
    """A sequence's member conditions and spans moved into ``text`` (stages are not numbered
    in a :class:`Sequence`)."""
    if seq is None or offset == 0:
        return seq

    def step(s: M.SequenceStep) -> M.SequenceStep:
        return replace(s, condition=move_tree(s.condition, 0, text, offset),
                       span=shift_span(s.span, text, offset))

    return replace(seq, steps=tuple(step(s) for s in seq.steps),
                   until=step(seq.until) if seq.until else None)
