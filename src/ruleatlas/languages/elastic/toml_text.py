"""The text of one part of a rule's TOML as written (a table and its sub-tables, or one key), so
the stages that rule types add show what the rule file says, with where it says it."""

from __future__ import annotations

import re

from ruleatlas.languages.spl.errors import span_of
from ruleatlas.model import Span

_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*([A-Za-z0-9_.\- \t\"]+?)[ \t]*\]\]?[ \t]*(?:#.*)?$", re.M)


def table_text(body: str, table: str) -> tuple[str, Span] | None:
    """Every ``[table]``/``[[table...]]`` section (headers included), in file order, joined;
    with the span of the first one. None when the body has no such table."""
    headers = list(_HEADER.finditer(body))
    parts: list[str] = []
    first: int | None = None
    for i, m in enumerate(headers):
        name = m.group(1).replace(" ", "")
        if name != table and not name.startswith(table + "."):
            continue
        end = headers[i + 1].start() if i + 1 < len(headers) else len(body)
        parts.append(body[m.start():end].strip())
        first = m.start() if first is None else first
    if first is None:
        return None
    text = "\n".join(parts)
    return text, span_of(body, first, first + len(parts[0]))


def key_text(body: str, key: str) -> tuple[str, Span] | None:
    """``key = value`` as written (a multi-line ``[...]`` array included), with its span."""
    m = re.search(rf"^[ \t]*{re.escape(key)}[ \t]*=[ \t]*", body, re.M)
    if m is None:
        return None
    start = m.start() + len(m.group(0)) - len(m.group(0).lstrip())
    end = body.find("\n", m.end())
    end = len(body) if end < 0 else end
    if body[m.end():m.end() + 1] == "[":
        close = body.find("]", m.end())
        end = close + 1 if close >= 0 else end
    return body[start:end].strip(), span_of(body, start, end)
