"""How Sigma writes a value (its escapes) and an operator (the modifier chain)."""

from __future__ import annotations

from ruleatlas.model import Pattern, Predicate, Regex, Value, Wild, value_text


def display_value(v: Value, pred: Predicate) -> str:
    """A value with Sigma's escapes: ``\\*``/``\\?`` for literal wildcards, a backslash doubled
    only where Sigma would read it as an escape."""
    if isinstance(v, Regex):
        return v.pattern  # Sigma writes the pattern bare; flags are modifiers (in the key)
    if not isinstance(v, Pattern):
        return value_text(v)
    out: list[str] = []
    parts = v.parts
    for i, p in enumerate(parts):
        if isinstance(p, Wild):
            out.append(p.value)
            continue
        for j, ch in enumerate(p):
            if ch in "*?":
                out.append("\\" + ch)
            elif ch == "\\":
                nxt = p[j + 1] if j + 1 < len(p) else parts[i + 1] if i + 1 < len(parts) else ""
                # Sigma: a backslash is an escape only before * ? or another backslash.
                out.append("\\\\" if isinstance(nxt, Wild) or nxt in ("*", "?", "\\") else ch)
            else:
                out.append(ch)
    return "".join(out)


def display_op(pred: Predicate) -> str:
    """The modifier chain as written: transforms, the operator, ``all``, ``cased``
    (``base64offset|contains|all``)."""
    mods = [*pred.transforms, pred.op.value]
    if pred.match_all:
        mods.append("all")
    if pred.cased:
        mods.append("cased")
    return "|".join(mods)
