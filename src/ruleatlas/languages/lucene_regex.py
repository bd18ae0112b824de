"""Lucene regular expressions -> Python ``re``: EQL ``regex``/``regex~`` and ES|QL ``rlike``.

Elasticsearch runs both as Lucene ``RegExp`` with every optional operator enabled (flag ``ALL``).
This module is a recursive-descent port of that grammar (``union | inter & concat, repeat, ~compl,
[class], simple``) that writes the Python text of each piece as it reads it, so the quirks of
Lucene's parser come along: an operator where an atom is expected is a literal character (``*a``,
``|a``, ``(?i)`` and the second ``|`` of ``a||b`` are literal text), and so are ``]`` and ``}``
outside their construct.

What differs from Python, and what we write:

* the pattern matches the whole value: ``^(?:...)\\Z`` (``\\Z``, not ``$``, which also accepts a
  trailing newline); ``.`` matches any character, line breaks included (the ``s`` flag);
* ``^ $`` are literal characters; ``"text"`` is a literal string, one atom (``"ab"*`` repeats
  ``ab``); ``\\x`` is the character ``x``, except ``\\d \\D \\s \\S \\w \\W``, the ASCII classes
  ``[0-9]``, ``[ \\t\\n\\r]``, ``[a-zA-Z_0-9]`` and their complements (inside a class too); a
  backslash before any other ASCII letter is refused, as Lucene does;
* a repetition of a repetition (``a**``, ``.+*``) repeats the group: Python reads ``a*?`` as
  lazy and ``a*+`` as possessive, Lucene as ``(a*)?`` and ``(a*)+``;
* ``@`` (any string) is ``.*``; ``#`` (the empty language) matches nothing: ``(?!)``;
* ``<n-m>`` (numeric interval) is the alternation of the numbers (at most ``MAX_INTERVAL`` of
  them): zero-padded to the common width when both ends are written with the same number of
  digits, else with any number of leading zeros; ``<name>`` (a named automaton: Elasticsearch
  defines none) and a ``<`` without its ``>`` are errors in Lucene, refused here;
* ``&`` (intersection) and ``~`` (complement) have no Python equivalent: refused.

Everything refused raises :class:`RegexUnsupported` with the reason; the lowerings keep the
predicate as an opaque condition with that reason. One known difference stays: Lucene's
case-insensitive matching folds ASCII letters of literal characters only, Python's ``re.I`` (the
``i`` flag of ``regex~`` and of an ``rlike`` on a lowered field) folds every letter and ranges.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from ruleatlas.model import Regex

# The predefined classes of Lucene's RegExp (expandPredefined): ASCII only, ``\s`` without \f \v.
SHORTHANDS: dict[str, tuple[str, bool]] = {
    "d": ("0-9", False), "D": ("0-9", True),
    "s": (r" \t\n\r", False), "S": (r" \t\n\r", True),
    "w": ("a-zA-Z_0-9", False), "W": ("a-zA-Z_0-9", True),
}
MAX_INTERVAL = 1000  # numbers an interval <n-m> may span before it is refused
MAX_DEPTH = 100  # nested groups
JAVA_INT_MAX = 2**31 - 1  # Lucene reads the ends of <n-m> as Java ints
CLASS_SPECIAL = frozenset("\\[]^-&~|")  # escaped inside a Python class (incl. set operators)
ATOM, REPEATED, SEQUENCE = "atom", "repeated", "sequence"  # what a quantifier may follow as is


class RegexUnsupported(ValueError):
    """A Lucene regular expression that Python ``re`` cannot express, or one Lucene rejects."""


def _in_class(ch: str) -> str:
    return "\\" + ch if ch in CLASS_SPECIAL else ch


@dataclass(frozen=True, slots=True)
class _Piece:
    """Python text of one parsed piece; ``kind`` says whether a quantifier can follow it as is
    (``ATOM``) or needs a group first (a repetition, a sequence of several characters)."""

    text: str
    kind: str


class _Reader:
    """Lucene's ``RegExp`` parser, writing Python text instead of building an automaton."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.pos = 0
        self.depth = 0

    # ---- characters ----------------------------------------------------------------------

    def more(self) -> bool:
        return self.pos < len(self.p)

    def peek(self, chars: str) -> bool:
        return self.more() and self.p[self.pos] in chars

    def match(self, ch: str) -> bool:
        if self.more() and self.p[self.pos] == ch:
            self.pos += 1
            return True
        return False

    def next(self) -> str:
        if not self.more():
            raise RegexUnsupported("the regular expression ends too early")
        self.pos += 1
        return self.p[self.pos - 1]

    def escape(self) -> tuple[str, bool]:
        """After a backslash: ``(shorthand letter, True)`` or ``(literal character, False)``."""
        if not self.more():
            raise RegexUnsupported("the regular expression ends with a lone '\\'")
        ch = self.next()
        if ch in SHORTHANDS:
            return ch, True
        if ch in string.ascii_letters:
            raise RegexUnsupported(f"'\\{ch}' is no character class (Lucene rejects it)")
        return ch, False

    def char(self) -> str:
        """Lucene's ``charexp``: an optional backslash, then any character."""
        self.match("\\")
        return self.next()

    # ---- grammar ---------------------------------------------------------------------------

    def union(self) -> _Piece:
        parts = [self.inter()]
        while self.match("|"):
            parts.append(self.inter())
        return parts[0] if len(parts) == 1 else _Piece("|".join(p.text for p in parts), SEQUENCE)

    def inter(self) -> _Piece:
        e = self.concat()
        if self.match("&"):
            raise RegexUnsupported("intersection '&'")
        return e

    def concat(self) -> _Piece:
        parts = [self.repeat()]
        while self.more() and not self.peek(")|&"):
            parts.append(self.repeat())
        return parts[0] if len(parts) == 1 else _Piece("".join(p.text for p in parts), SEQUENCE)

    def repeat(self) -> _Piece:
        e = self.complement()
        while self.peek("?*+{"):
            q = self.next()
            if q == "{":
                q = self.bounds()
            text = e.text if e.kind == ATOM else f"(?:{e.text})"
            e = _Piece(text + q, REPEATED)
        return e

    def bounds(self) -> str:
        """``{n}``, ``{n,}`` or ``{n,m}`` after its ``{``."""
        m = re.compile(r"([0-9]+)(,([0-9]*))?\}").match(self.p, self.pos)
        if m is None:
            raise RegexUnsupported(f"malformed repetition at position {self.pos - 1}")
        if m.group(3) and int(m.group(1)) > int(m.group(3)):
            raise RegexUnsupported(f"repetition {{{m.group()} out of order")
        self.pos = m.end()
        return "{" + m.group()

    def complement(self) -> _Piece:
        if self.match("~"):
            raise RegexUnsupported("complement '~'")
        return self.char_class() if self.match("[") else self.simple()

    def char_class(self) -> _Piece:
        """``[...]``/``[^...]`` after its ``[``: members, ranges and shorthands."""
        negate = self.match("^")
        inside: list[str] = []
        negated: list[str] = []  # \D \S \W: a Python class cannot hold a complement
        while True:
            self.class_member(inside, negated)
            if not self.more() or self.peek("]"):
                break
        if not self.match("]"):
            raise RegexUnsupported("unterminated character class '['")
        alts = ([f"[{''.join(inside)}]"] if inside else []) + [f"[^{n}]" for n in negated]
        if not negated:
            return _Piece(f"[{'^' if negate else ''}{''.join(inside)}]", ATOM)
        either = alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"
        return _Piece(f"(?:(?!{either})(?s:.))" if negate else either, ATOM)

    def class_member(self, inside: list[str], negated: list[str]) -> None:
        """One member: ``\\d``-style shorthand, escaped character (never a range start, as in
        Lucene 10), character, or range ``a-z``."""
        if self.match("\\"):
            ch, shorthand = self.escape()
            if shorthand:
                body, neg = SHORTHANDS[ch]
                (negated if neg else inside).append(body)
            else:
                inside.append(_in_class(ch))
            return
        ch = self.next()
        if not self.match("-"):
            inside.append(_in_class(ch))
            return
        end = self.char()
        if ord(end) < ord(ch):
            raise RegexUnsupported(f"invalid range {ch}-{end}")
        inside.append(f"{_in_class(ch)}-{_in_class(end)}")

    def simple(self) -> _Piece:
        ch = self.next()
        if ch == ".":
            return _Piece(".", ATOM)
        if ch == "#":
            return _Piece("(?!)", ATOM)
        if ch == "@":
            return _Piece(".*", REPEATED)
        if ch == '"':
            end = self.p.find('"', self.pos)
            if end < 0:
                raise RegexUnsupported("unterminated literal string '\"'")
            text, self.pos = self.p[self.pos:end], end + 1
            return _Piece(re.escape(text), ATOM if len(text) == 1 else SEQUENCE)
        if ch == "(":
            return self.group()
        if ch == "<":
            return self.interval()
        if ch == "\\":
            ch, shorthand = self.escape()
            if shorthand:
                body, neg = SHORTHANDS[ch]
                return _Piece(f"[{'^' if neg else ''}{body}]", ATOM)
        return _Piece(re.escape(ch), ATOM)

    def group(self) -> _Piece:
        if self.match(")"):
            return _Piece("(?:)", ATOM)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RegexUnsupported(f"groups nested deeper than {MAX_DEPTH}")
        inner = self.union()
        if not self.match(")"):
            raise RegexUnsupported(f"expected ')' at position {self.pos}")
        self.depth -= 1
        return _Piece(f"({inner.text})", ATOM)

    def interval(self) -> _Piece:
        """``<n-m>`` after its ``<`` (Lucene's ``makeDecimalInterval``)."""
        end = self.p.find(">", self.pos)
        if end < 0:
            raise RegexUnsupported(f"'<' without '>' at position {self.pos - 1}")
        body, self.pos = self.p[self.pos:end], end + 1
        m = re.fullmatch(r"([0-9]+)-([0-9]+)", body)
        if m is None:
            raise RegexUnsupported(f"<{body}> is not a numeric interval <n-m>")
        lo, hi = sorted((int(m.group(1)), int(m.group(2))))
        if hi > JAVA_INT_MAX or hi - lo >= MAX_INTERVAL:
            raise RegexUnsupported(f"numeric interval <{body}>: past Java ints or wider than "
                                   f"{MAX_INTERVAL} numbers")
        width = len(m.group(1)) if len(m.group(1)) == len(m.group(2)) else 0
        alts = "|".join(str(n).zfill(width) for n in range(hi, lo - 1, -1))
        return _Piece(f"(?:{alts})" if width else f"(?:0*(?:{alts}))", ATOM)


def lucene_to_python(pattern: str) -> str:
    """The Python ``re`` text (for the ``s`` flag) matching exactly the values the Lucene
    ``pattern`` matches, anchored; :class:`RegexUnsupported` where there is none."""
    reader = _Reader(pattern)
    body = reader.union().text if pattern else ""
    if reader.more():
        raise RegexUnsupported(f"unbalanced ')' at position {reader.pos}")
    text = f"^(?:{body})\\Z"
    try:
        re.compile(text, re.S)
    except (re.error, OverflowError) as e:
        raise RegexUnsupported(f"not a valid regular expression: {e}") from e
    return text


def lucene_regex(pattern: str, ignore_case: bool = False) -> Regex:
    """The model :class:`Regex` of a Lucene ``pattern`` (flag ``i`` when ``ignore_case``)."""
    flags = {"s", "i"} if ignore_case else {"s"}
    return Regex(lucene_to_python(pattern), frozenset(flags))


__all__ = ["MAX_INTERVAL", "SHORTHANDS", "RegexUnsupported", "lucene_regex", "lucene_to_python"]
