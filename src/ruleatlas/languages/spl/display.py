"""How SPL writes a value: quoted when the search quoted it (or when it must be), escapes kept."""

from __future__ import annotations

import re

from ruleatlas.model import Pattern, Predicate, Value, Wild, value_text

_NEEDS_QUOTES = re.compile(r'[\s"()=,|<>!\\\[\]]')


def _text(v: Pattern | str) -> str:
    parts = v.parts if isinstance(v, Pattern) else (v,)
    return "".join(p.value if isinstance(p, Wild) else p for p in parts)


def display_value(v: Value, pred: Predicate) -> str:
    """A value as the search wrote it: quoted when the predicate's text quotes it."""
    if not isinstance(v, (str, Pattern)):
        return value_text(v)
    raw = _text(v)
    quoted = '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if pred.text is not None:
        return quoted if quoted in pred.text else raw
    return quoted if isinstance(v, Pattern) or _NEEDS_QUOTES.search(raw) else raw
