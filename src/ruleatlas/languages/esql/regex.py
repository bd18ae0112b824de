"""Lucene regular expressions (ES|QL ``rlike``) -> Python ``re`` patterns.

Lucene patterns are anchored (they match the whole value), ``.`` matches any character (a
newline too), ``"..."`` is a literal run, ``^`` and ``$`` are plain characters, and with the
optional operators Elasticsearch enables (``RegExp.ALL``) ``@`` is any string, ``#`` the empty
language and ``<1-10>`` a number range. ``&`` (intersection) and ``~`` (complement) have no
Python equivalent: :class:`Untranslatable` says so, and the caller keeps the check as a
``Condition``. The result is ``^(?:...)$`` with the ``s`` flag.
"""

from __future__ import annotations

import re

from ruleatlas.model import Regex

# Lucene 9 shorthand classes, spelled ASCII-only as Lucene reads them.
CLASS_ESCAPES: dict[str, str] = {"d": "0-9", "w": "A-Za-z0-9_", "s": r" \t\n\r\f\v"}
NEGATED_ESCAPES: dict[str, str] = {"D": "0-9", "W": "A-Za-z0-9_", "S": r" \t\n\r\f\v"}
PASS_THROUGH = frozenset("()|*+?{},")
# Characters escaped inside a Python class: its own specials, and those Python may one day
# read as set operations (``&&``, ``~~``, ``||``, ``--`` warn today; the second ``-`` of
# ``--`` is escaped where it occurs).
CLASS_SPECIAL = frozenset("\\[]^&~|")
MAX_RANGE = 1000


class Untranslatable(ValueError):
    """A Lucene construct with no Python ``re`` equivalent."""


def _escape_char(ch: str) -> str:
    if ch in CLASS_ESCAPES:
        return f"[{CLASS_ESCAPES[ch]}]"
    if ch in NEGATED_ESCAPES:
        return f"[^{NEGATED_ESCAPES[ch]}]"
    return re.escape(ch)


def _char_class(p: str, i: int) -> tuple[str, int]:
    """``[...]`` starting at ``p[i] == "["``: the Python class and the index after it."""
    out = ["["]
    j = i + 1
    if j < len(p) and p[j] == "^":
        out.append("^")
        j += 1
    first = True
    while j < len(p):
        ch = p[j]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        if ch == "\\" and j + 1 < len(p):
            nxt = p[j + 1]
            out.append(CLASS_ESCAPES.get(nxt) or re.escape(nxt))
            j += 2
        else:
            doubled = ch == "-" and p[j - 1] == "-"  # the 2nd of "--": a literal, as in Lucene
            out.append(re.escape(ch) if ch in CLASS_SPECIAL or doubled else ch)
            j += 1
        first = False
    raise Untranslatable("unclosed character class '['")


def _interval(p: str, i: int) -> tuple[str, int]:
    m = re.compile(r"<(\d+)-(\d+)>").match(p, i)
    if m is None:
        raise Untranslatable("'<' that is not a number range <n-m>")
    lo, hi = int(m.group(1)), int(m.group(2))
    if lo > hi:
        lo, hi = hi, lo
    if hi - lo > MAX_RANGE:
        raise Untranslatable(f"number range {m.group()} wider than {MAX_RANGE}")
    width = len(m.group(1)) if m.group(1).startswith("0") else 0
    alts = "|".join(str(n).zfill(width) for n in range(hi, lo - 1, -1))
    return f"(?:{alts})", m.end()


def lucene_to_python(p: str) -> str:
    """The body of the Python pattern (not yet anchored) for Lucene pattern ``p``.

    ``out`` holds one piece per atom (a group is merged into one piece when it closes), so a
    quantifier that follows another (Lucene ``.+*`` is ``(.+)*``; Python refuses ``+*``) wraps
    the quantified atom in a group."""
    out: list[str] = []
    groups: list[int] = []
    i, n = 0, len(p)
    while i < n:
        ch = p[i]
        if ch == "\\":
            if i + 1 >= n:
                raise Untranslatable("trailing backslash")
            out.append(_escape_char(p[i + 1]))
            i += 2
        elif ch == '"':
            j = p.find('"', i + 1)
            if j < 0:
                raise Untranslatable('unclosed quoted literal (")')
            out.append("(?:" + re.escape(p[i + 1:j]) + ")")
            i = j + 1
        elif ch == "[":
            cls, i = _char_class(p, i)
            out.append(cls)
        elif ch == "<":
            rng, i = _interval(p, i)
            out.append(rng)
        elif ch == "(":
            if p.startswith("(?", i):
                raise Untranslatable("'(?' (Lucene has no group options)")
            groups.append(len(out))
            out.append("(")
            i += 1
        elif ch == ")" and groups:
            k = groups.pop()
            out[k:] = ["".join(out[k:]) + ")"]
            i += 1
        elif ch in "*+?{" and out and out[-1] != "(" and out[-1] != "|":
            q = ch
            if ch == "{":
                j = p.find("}", i)
                if j < 0:
                    raise Untranslatable("unclosed repetition '{'")
                q = p[i:j + 1]
            last = out[-1]
            if last[-1] in "*+?}" and not last.endswith("\\}"):
                last = f"(?:{last})"
            out[-1] = last + q
            i += len(q)
        elif ch in "&~":
            raise Untranslatable(f"Lucene operator {ch!r} (intersection/complement)")
        else:
            out.append(".*" if ch == "@" else "(?!)" if ch == "#" else
                       ch if ch in PASS_THROUGH or ch == "." or ch.isalnum() else re.escape(ch))
            i += 1
    return "".join(out)


def lucene_regex(p: str, ignore_case: bool = False) -> Regex:
    """The :class:`Regex` for an ``rlike`` pattern; raises :class:`Untranslatable`."""
    body = f"^(?:{lucene_to_python(p)})$"
    try:
        re.compile(body)
    except re.error as e:
        raise Untranslatable(f"not a valid pattern: {e}") from None
    return Regex(body, frozenset({"s", "i"} if ignore_case else {"s"}))
