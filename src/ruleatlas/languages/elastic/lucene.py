"""Lucene queries (``language = "lucene"``): read with the KQL analyzer when the text only uses
syntax both languages read the same way, else kept opaque with the reason.

Both are Kibana query bars over the same Elasticsearch term, wildcard and phrase queries:
``field:value``, ``field:(a OR b)``, ``"phrases"``, ``*`` wildcards, ``\\`` escapes and upper-case
``AND``/``OR``/``NOT`` mean the same. :func:`kql_incompatibility` finds what does not (checked
outside quoted phrases, escapes honoured), each with its reason:

* ``/regex/`` terms (Lucene regular expressions; KQL reads the slashes literally);
* ``~`` fuzzy/proximity and ``^`` boosts; ``[a TO b]`` / ``{a TO b}`` ranges and ``:>5``;
* ``?`` single-character wildcards (KQL has only ``*``);
* ``+``/``-`` required/prohibited prefixes, ``&&`` ``||`` ``!``, ``_exists_``;
* lower-case ``and``/``or``/``not`` (search words in Lucene, operators in KQL) and two terms
  with no operator between them (Lucene's default OR; KQL reads one multi-word value).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"(?:\\.|[^\s()\":\\])+")
_LOWER_OPS = frozenset({"and", "or", "not"})
_UPPER_OPS = frozenset({"AND", "OR", "NOT"})
# Characters that mean something in Lucene and not (or something else) in KQL, as the first
# character of a word, or anywhere in it.
_START_REASONS: dict[str, str] = {
    "/": "a Lucene regular expression (KQL has none)",
    "+": "a Lucene required-term prefix '+'",
    "-": "a Lucene prohibited-term prefix '-'",
    "!": "a Lucene '!' negation",
    "[": "a Lucene range [a TO b]",
    "{": "a Lucene range {a TO b}",
    ">": "a Lucene ':>' range",
    "<": "a Lucene ':<' range",
}
_ANY_REASONS: dict[str, str] = {
    "~": "a Lucene fuzzy or proximity operator '~'",
    "^": "a Lucene boost '^'",
    "?": "a Lucene '?' wildcard (KQL has only '*')",
    "&&": "a Lucene '&&' operator",
    "||": "a Lucene '||' operator",
}


def _unescaped(word: str, needle: str) -> bool:
    i = 0
    while i < len(word):
        if word[i] == "\\":
            i += 2
            continue
        if word.startswith(needle, i):
            return True
        i += 1
    return False


def _word_reason(word: str) -> str | None:
    if word in _LOWER_OPS:
        return f"lower-case '{word}' (a search word in Lucene, an operator in KQL)"
    if word == "_exists_":
        return "Lucene's _exists_ field"
    if word[0] in _START_REASONS:
        return f"{_START_REASONS[word[0]]}: {word}"
    for needle, reason in _ANY_REASONS.items():
        if _unescaped(word, needle):
            return f"{reason}: {word}"
    if _unescaped(word, "/"):
        return f"{_START_REASONS['/']}: {word}"
    return None


def _tokens(text: str) -> list[tuple[str, str]] | str:
    """(kind, text) tokens: ``q`` quoted phrase, ``w`` word, ``(`` ``)`` ``:``; or a reason."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == '"':
            m = re.compile(r'"(?:\\.|[^"\\])*"', re.S).match(text, i)
            if m is None:
                return "an unterminated quoted phrase"
            out.append(("q", m.group(0)))
            i = m.end()
        elif ch in "():":
            out.append((ch, ch))
            i += 1
        else:
            m = _WORD.match(text, i)
            if m is None:  # a lone backslash at the end
                return "a trailing backslash"
            out.append(("w", m.group(0)))
            i = m.end()
    return out


def kql_incompatibilities(text: str) -> list[str]:
    """Every reason the Lucene query ``text`` would not mean the same read as KQL, in order."""
    toks = _tokens(text)
    if isinstance(toks, str):
        return [toks]
    out: list[str] = []
    ended = False  # the previous token ended an operand
    for n, (kind, tok) in enumerate(toks):
        if kind == "w":
            reason = _word_reason(tok)
            if reason:
                out.append(reason)
        is_op = kind == "w" and tok in _UPPER_OPS
        starts = kind in ("w", "q", "(") and not (is_op and tok != "NOT")
        if ended and starts:
            out.append("two terms with no operator between them (Lucene ORs them), before "
                       f"{tok!r}")
        nxt = toks[n + 1][0] if n + 1 < len(toks) else None
        ended = (kind in ("w", "q") and not is_op and nxt != ":") or kind == ")"
    return list(dict.fromkeys(out))


def kql_incompatibility(text: str) -> str | None:
    """The reasons of :func:`kql_incompatibilities` joined with ``; ``, or None."""
    return "; ".join(kql_incompatibilities(text)) or None
