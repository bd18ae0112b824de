"""Lucene (Elasticsearch ``regexp``) regular expressions -> Python ``re``.

EQL's ``regex``/``regex~`` run as Elasticsearch ``regexp`` queries, whose syntax is Lucene's
``RegExp`` with every optional operator enabled. What differs from Python, and what we do:

* the pattern matches the whole value: wrapped as ``^(?:...)\\Z`` (``\\Z``, not ``$``, which would
  also accept a trailing newline);
* ``.`` matches any character, line breaks included: the ``s`` flag;
* ``^ $`` are literal characters (escaped for Python); ``"text"`` is a literal string;
* ``\\d \\D \\s \\S \\w \\W`` are classes, any other ``\\x`` is the character ``x``;
* ``@`` (any string) is ``.*``; ``#`` (the empty language) matches nothing: ``(?!)``;
* ``&`` (intersection), ``~`` (complement) and ``<n-m>`` (numeric interval) have no Python
  equivalent: :class:`RegexUnsupported` (the lowering keeps the predicate opaque, with why);
* ``{n}``, ``{n,}``, ``{n,m}``, ``* + ?``, ``|``, ``( )``, ``[...]`` classes (``[^...]``, ranges)
  mean the same; a class member that Python would read specially (``[`` ``&&`` ``\\``) is escaped.
"""

from __future__ import annotations

import re

from ruleatlas.model import Regex

CLASS_ESCAPES: dict[str, str] = {c: "\\" + c for c in "dDsSwW"}
# Characters that are operators in Lucene outside a class and mean the same in Python.
SAME = frozenset("()|*+?.")
UNSUPPORTED: dict[str, str] = {
    "&": "intersection '&'",
    "~": "complement '~'",
}


class RegexUnsupported(ValueError):
    """A Lucene regular expression that Python ``re`` cannot express (or a malformed one)."""


def _class(p: str, i: int) -> tuple[str, int]:
    """Translate the class opening at ``p[i] == '['``; return (python text, index after)."""
    out = ["["]
    j = i + 1
    n = len(p)
    if j < n and p[j] == "^":
        out.append("^")
        j += 1
    first = True
    while j < n:
        ch = p[j]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        if ch == "\\" and j + 1 < n:
            nxt = p[j + 1]
            out.append(CLASS_ESCAPES.get(nxt) or re.escape(nxt))
            j += 2
        elif ch in "[]\\&~|":
            out.append("\\" + ch)
            j += 1
        else:
            out.append(ch)
            j += 1
        first = False
    raise RegexUnsupported("unterminated character class '['")


def lucene_to_python(pattern: str) -> str:
    """The Python ``re`` text matching exactly what the Lucene ``pattern`` matches (anchored)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise RegexUnsupported("the regular expression ends with a lone '\\'")
            nxt = pattern[i + 1]
            out.append(CLASS_ESCAPES.get(nxt) or re.escape(nxt))
            i += 2
        elif ch == "[":
            text, i = _class(pattern, i)
            out.append(text)
        elif ch == '"':
            end = pattern.find('"', i + 1)
            if end < 0:
                raise RegexUnsupported("unterminated literal string '\"'")
            out.append(re.escape(pattern[i + 1 : end]))
            i = end + 1
        elif ch == "{":
            m = re.compile(r"\{(\d+)(,(\d*))?\}").match(pattern, i)
            if m is None:
                raise RegexUnsupported("malformed repetition '{'")
            out.append(m.group())
            i = m.end()
        elif ch == "<":
            m = re.compile(r"<(\d+)-(\d+)>").match(pattern, i)
            if m is not None:
                raise RegexUnsupported(f"numeric interval {m.group()}")
            out.append("<")
            i += 1
        elif ch in UNSUPPORTED:
            raise RegexUnsupported(UNSUPPORTED[ch])
        elif ch == "@":
            out.append(".*")
            i += 1
        elif ch == "#":
            out.append("(?!)")
            i += 1
        elif ch in SAME:
            out.append(ch)
            i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    body = "".join(out)
    text = f"^(?:{body})\\Z"
    try:
        re.compile(text, re.S)
    except re.error as e:
        raise RegexUnsupported(f"not a valid regular expression: {e}") from e
    return text


def to_regex(pattern: str, insensitive: bool) -> Regex:
    """A model :class:`Regex` for EQL ``regex`` (``regex~`` when ``insensitive``)."""
    flags = {"s", "i"} if insensitive else {"s"}
    return Regex(lucene_to_python(pattern), frozenset(flags))
