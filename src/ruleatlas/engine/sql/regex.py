"""Python ``re`` patterns re-emitted for Java (Spark ``RLIKE``) and RE2 (DuckDB
``regexp_matches``), from Python's own parse, so the SQL backends search what the local engine
searches.

Text is not translated piecewise: the pattern is parsed by ``re._parser`` (exactly what
``re.compile`` sees, verbose mode and inline flags included) and every node is written back with
explicit semantics where the engines differ:

* literals are written as ``\\x{HEX}`` (no escaping question left: ``{``, ``[``, ``&&``, ``#``);
* ``\\d \\w \\s`` are Python's Unicode classes written out (``\\p{Nd}``, ``[\\p{L}\\p{N}_]``,
  Python's ``str.isspace`` set) or their ASCII forms under ``re.A``;
* ``$`` without ``m`` is "end, or before a final newline" (RE2's ``$`` is only the end);
  ``\\Z`` is ``\\z``; Java runs with ``(?d)`` so ``.``, ``^`` and ``$`` know only ``\\n``, as
  Python does; ``(?i)`` is Unicode-aware in Java with ``u``;
* ``\\b``/``\\B`` are Python's word boundary as look-arounds in Java; RE2 has no look-arounds.

What a dialect cannot express (RE2: look-arounds, back-references, atomic groups, possessive
repeats, ``\\b``; both: conditional groups) raises :class:`RegexUnsupported` with the reason, and
the rule falls back to the local engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ruleatlas.model import AtlasError

try:  # Python 3.11+: the parser and its opcode constants
    from re import _constants as C  # type: ignore[attr-defined]
    from re import _parser as P  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older Pythons are not supported by the project
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse as P  # type: ignore[no-redef]


class RegexUnsupported(AtlasError):
    """A Python regex feature the target regex engine has no exact equivalent for."""


# Python's str.isspace() set (what ``\s`` matches on str patterns), written as class items.
PY_SPACE = r"\x{9}-\x{d}\x{1c}-\x{1f}\x{85}\p{Z}"
PY_WORD = r"\p{L}\p{N}_"
PY_DIGIT = r"\p{Nd}"
ASCII_SPACE = r"\x{9}-\x{d}\x{20}"
ASCII_WORD = r"a-zA-Z0-9_"
ASCII_DIGIT = r"0-9"
MAXREPEAT = C.MAXREPEAT


@dataclass(frozen=True, slots=True)
class _Flags:
    i: bool
    m: bool
    s: bool
    a: bool


class RegexDialect:
    """Writes a parsed Python pattern for one engine; subclasses set the flags."""

    NAME: ClassVar[str] = "java"
    PREFIX: ClassVar[str] = "(?d)"  # Java: only \n ends a line, as in Python
    CASE_FLAG: ClassVar[str] = "iu"
    LOOKAROUND: ClassVar[bool] = True
    BACKREF: ClassVar[bool] = True
    ATOMIC: ClassVar[bool] = True
    DOLLAR_IS_END_ONLY: ClassVar[bool] = False  # RE2: `$` (no m) is the end of text only

    def translate(self, pattern: str, flags: frozenset[str] = frozenset()) -> str:
        f = (re.I if "i" in flags else 0) | (re.M if "m" in flags else 0) | (
            re.S if "s" in flags else 0)
        try:
            tree = P.parse(pattern, f)
        except re.error as exc:
            raise RegexUnsupported(f"regex {pattern!r} does not compile in Python: {exc}") from None
        g = tree.state.flags
        if g & re.LOCALE:
            raise RegexUnsupported("regex uses the LOCALE flag")
        fl = _Flags(bool(g & re.I), bool(g & re.M), bool(g & re.S), bool(g & re.A))
        head = self.PREFIX + self._flag_group(fl)
        return head + self._seq(tree, fl)

    # ---------------------------------------------------------------------------------------

    def _flag_group(self, fl: _Flags) -> str:
        on = (self.CASE_FLAG if fl.i else "") + ("m" if fl.m else "") + ("s" if fl.s else "")
        return f"(?{on})" if on else ""

    def _seq(self, seq: Any, fl: _Flags) -> str:
        return "".join(self._node(op, av, fl) for op, av in seq)

    def _node(self, op: Any, av: Any, fl: _Flags) -> str:
        if op is C.LITERAL:
            return _lit(av)
        if op is C.NOT_LITERAL:
            return f"[^{_lit(av)}]"
        if op is C.ANY:
            return "."
        if op is C.IN:
            return self._class(av, fl)
        if op is C.BRANCH:
            return "(?:" + "|".join(self._seq(s, fl) for s in av[1]) + ")"
        if op is C.SUBPATTERN:
            return self._group(av, fl)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT) or op is getattr(C, "POSSESSIVE_REPEAT", None):
            return self._repeat(op, av, fl)
        if op is C.AT:
            return self._at(av, fl)
        if op is C.GROUPREF:
            if not self.BACKREF:
                raise RegexUnsupported(f"{self.NAME} regexes have no back-references")
            return f"(?:\\{av})"
        if op in (C.ASSERT, C.ASSERT_NOT):
            if not self.LOOKAROUND:
                raise RegexUnsupported(f"{self.NAME} regexes have no look-arounds")
            direction, sub = av
            kind = ("(?=" if op is C.ASSERT else "(?!") if direction == 1 else (
                "(?<=" if op is C.ASSERT else "(?<!")
            return kind + self._seq(sub, fl) + ")"
        if op is getattr(C, "ATOMIC_GROUP", None):
            if not self.ATOMIC:
                raise RegexUnsupported(f"{self.NAME} regexes have no atomic groups")
            return "(?>" + self._seq(av, fl) + ")"
        if op is C.GROUPREF_EXISTS:
            raise RegexUnsupported("conditional groups (?(n)...) have no SQL regex equivalent")
        raise RegexUnsupported(f"regex construct {op} is not translated")

    def _group(self, av: Any, fl: _Flags) -> str:
        group, add, delete, sub = av
        inner_fl = _Flags(
            (fl.i or bool(add & re.I)) and not delete & re.I,
            (fl.m or bool(add & re.M)) and not delete & re.M,
            (fl.s or bool(add & re.S)) and not delete & re.S,
            fl.a or bool(add & re.A),
        )
        body = self._seq(sub, inner_fl)
        on = "".join(c for c, b in ((self.CASE_FLAG, add & re.I), ("m", add & re.M),
                                    ("s", add & re.S)) if b)
        off = "".join(c for c, b in (("i", delete & re.I), ("m", delete & re.M),
                                     ("s", delete & re.S)) if b)
        flags = f"(?{on}{'-' + off if off else ''}:" if on or off else ""
        if group is None:
            return (flags or "(?:") + body + ")"
        return "(" + (flags + body + ")" if flags else body) + ")"

    def _repeat(self, op: Any, av: Any, fl: _Flags) -> str:
        lo, hi, sub = av
        if op is getattr(C, "POSSESSIVE_REPEAT", None) and not self.ATOMIC:
            raise RegexUnsupported(f"{self.NAME} regexes have no possessive repeats")
        body = "(?:" + self._seq(sub, fl) + ")"
        if (lo, hi) == (0, MAXREPEAT):
            q = "*"
        elif (lo, hi) == (1, MAXREPEAT):
            q = "+"
        elif (lo, hi) == (0, 1):
            q = "?"
        elif hi == MAXREPEAT:
            q = f"{{{lo},}}"
        elif lo == hi:
            q = f"{{{lo}}}"
        else:
            q = f"{{{lo},{hi}}}"
        if op is C.MIN_REPEAT:
            q += "?"
        elif op is not C.MAX_REPEAT:
            q += "+"
        return body + q

    def _at(self, code: Any, fl: _Flags) -> str:
        if code is C.AT_BEGINNING:
            return "^"
        if code is C.AT_BEGINNING_STRING:
            return r"\A"
        if code is C.AT_END_STRING:
            return r"\z"
        if code is C.AT_END:
            if self.DOLLAR_IS_END_ONLY and not fl.m:
                return r"(?:\n?\z)" if not self.LOOKAROUND else r"(?=\n?\z)"
            return "$"
        if code in (C.AT_BOUNDARY, C.AT_NON_BOUNDARY):
            return self._boundary(code is C.AT_BOUNDARY, fl)
        raise RegexUnsupported(f"regex anchor {code} is not translated")

    def _boundary(self, positive: bool, fl: _Flags) -> str:
        if not self.LOOKAROUND:
            raise RegexUnsupported(f"{self.NAME} regexes have no Unicode \\b (RE2's is ASCII)")
        w = f"[{ASCII_WORD if fl.a else PY_WORD}]"
        edge = f"(?<={w})(?!{w})|(?<!{w})(?={w})"
        same = f"(?<={w})(?={w})|(?<!{w})(?!{w})"
        return f"(?:{edge if positive else same})"

    def _class(self, items: Any, fl: _Flags) -> str:
        neg = False
        out: list[str] = []
        negated_cats: list[str] = []
        for op, av in items:
            if op is C.NEGATE:
                neg = True
            elif op is C.LITERAL:
                out.append(_lit(av))
            elif op is C.RANGE:
                out.append(f"{_lit(av[0])}-{_lit(av[1])}")
            elif op is C.CATEGORY:
                pos, body = _category(av, fl)
                if pos:
                    out.append(body)
                else:
                    negated_cats.append(body)
            else:
                raise RegexUnsupported(f"class item {op} is not translated")
        if negated_cats:  # [\W], [^\S]: one negated category alone is a negated class
            if len(negated_cats) == 1 and not out:
                return f"[{'' if neg else '^'}{negated_cats[0]}]"
            raise RegexUnsupported("a class mixing a negated category (\\W \\S \\D) with "
                                   "other items is not translated")
        return f"[{'^' if neg else ''}{''.join(out)}]"


class JavaRegex(RegexDialect):
    """Spark's ``RLIKE`` / ``regexp``: ``java.util.regex``, searched with ``find()``."""


class RE2Regex(RegexDialect):
    """DuckDB's ``regexp_matches``: RE2 (no look-arounds, back-references, atomic groups)."""

    NAME = "RE2"
    PREFIX = ""
    CASE_FLAG = "i"
    LOOKAROUND = False
    BACKREF = False
    ATOMIC = False
    DOLLAR_IS_END_ONLY = True


def _lit(code: int) -> str:
    c = chr(code)
    if c.isascii() and (c.isalnum() or c in " _"):
        return c
    return f"\\x{{{code:x}}}"


_CATEGORIES = {
    "DIGIT": (True, "DIGIT"),
    "NOT_DIGIT": (False, "DIGIT"),
    "WORD": (True, "WORD"),
    "NOT_WORD": (False, "WORD"),
    "SPACE": (True, "SPACE"),
    "NOT_SPACE": (False, "SPACE"),
}


def _category(code: Any, fl: _Flags) -> tuple[bool, str]:
    name = str(code).removeprefix("CATEGORY_").removeprefix("UNI_")
    got = _CATEGORIES.get(name)
    if got is None:
        raise RegexUnsupported(f"regex category {code} is not translated")
    pos, kind = got
    body = {"DIGIT": ASCII_DIGIT if fl.a else PY_DIGIT,
            "WORD": ASCII_WORD if fl.a else PY_WORD,
            "SPACE": ASCII_SPACE if fl.a else PY_SPACE}[kind]
    return pos, body


JAVA = JavaRegex()
RE2 = RE2Regex()
