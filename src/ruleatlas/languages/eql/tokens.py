"""EQL tokenizer: one master regular expression, every token with its offsets.

Follows Elasticsearch's ``EqlBase.g4`` lexer: ``//`` and (nestable) ``/* */`` comments are
dropped; ``"..."`` strings resolve ``\\\\ \\" \\' \\b \\t \\n \\f \\r`` and ``\\u{XX..}``;
``\"\"\"raw\"\"\"`` strings keep every character as written (up to two trailing quotes belong to the
value); single-quoted and ``?"..."`` strings are Endgame syntax that Elasticsearch refuses, so
they are located errors here too. A field is one token: dotted parts, each an identifier
(letters, digits, ``_``, ``@``) or a backquoted name (````` `` ````` is one backquote), with an
optional leading ``?`` (an optional field). A name directly followed by ``~`` (``like~``,
``in~``, ``startsWith~``) is one token. Keywords are lower case, as Elasticsearch reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ruleatlas.languages import parsing
from ruleatlas.languages.parsing import OPERATORS, Operator, ParseError


class T(Enum):
    LBRACKET = "["
    MISSING = "!["
    RBRACKET = "]"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    PIPE = "|"
    COLON = ":"
    ASSIGN = "="
    EQ = "=="
    STRING = "string"
    NUMBER = "number"
    NAME = "name"  # identifier or field (dotted, backquoted, optional ``?``); keywords too
    TILDE = "tilde"  # a name directly followed by ``~``: ``like~``, ``startsWith~``
    EOF = "eof"


Kind: TypeAlias = T | Operator  # the operators are the kinds every language shares


@dataclass(frozen=True, slots=True, repr=False)
class Token(parsing.Token[Kind]):
    """One EQL token; ``raw_string`` is True for a triple-quoted string (kept so the generator
    can write the same form back)."""

    raw_string: bool = False


PUNCTUATION: dict[str, Kind] = {
    "![": T.MISSING, "[": T.LBRACKET, "]": T.RBRACKET, "(": T.LPAREN, ")": T.RPAREN,
    ",": T.COMMA, "|": T.PIPE, ":": T.COLON, "==": T.EQ, "=": T.ASSIGN, **OPERATORS,
}
# Escapes of a double-quoted string (Elasticsearch's STRING_ESCAPE fragment).
ESCAPES: dict[str, str] = {
    "\\": "\\", '"': '"', "'": "'", "b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r",
}
REVERSE_ESCAPES: dict[str, str] = {v: k for k, v in ESCAPES.items() if k != "'"}

_PART = r"(?:[A-Za-z_@][A-Za-z0-9_@]*|`(?:[^`]|``)*`)"
_SCAN = re.compile(
    rf"""(?P<ws>[ \t\r\n]+)
      |(?P<lcomment>//[^\r\n]*)
      |(?P<bcomment>/\*)
      |(?P<raw>\"\"\"[^\r\n]*?\"\"\"\"{{0,2}})
      |(?P<str>"(?:\\(?:u\{{[0-9A-Fa-f]+\}}|[\\"'btnfr])|[^\r\n"\\])*")
      |(?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
      |(?P<tilde>[A-Za-z][A-Za-z0-9_]*~)
      |(?P<name>\??{_PART}(?:\.(?:[A-Za-z0-9_@]+|`(?:[^`]|``)*`))*)
      |(?P<punct>!\[|==|!=|<=|>=|[\[\](),|:=<>+\-*/%])""",
    re.VERBOSE,
)
_UNICODE = re.compile(r"\\u\{([0-9A-Fa-f]+)\}")


def unescape(body: str, text: str, pos: int) -> str:
    """The value of a double-quoted string's body (``pos``: offset of the body in ``text``)."""

    def escape_at(b: str, i: int) -> tuple[str, int]:
        if b[i + 1] != "u":
            return ESCAPES[b[i + 1]], i + 2
        m = _UNICODE.match(b, i)
        assert m is not None  # the scanner only accepts well-formed escapes
        digits = m.group(1)
        if not 2 <= len(digits) <= 8 or int(digits, 16) > 0x10FFFF:
            raise ParseError("unicode escape must be 2 to 8 hex digits of a code point",
                             text, pos + i)
        return chr(int(digits, 16)), m.end()

    return parsing.unescape(body, escape_at)


def escape(value: str) -> str:
    """Inverse of :func:`unescape`: the body of a double-quoted string holding ``value``."""
    out: list[str] = []
    for ch in value:
        if ch in REVERSE_ESCAPES:
            out.append("\\" + REVERSE_ESCAPES[ch])
        elif not ch.isprintable():
            out.append(f"\\u{{{ord(ch):02x}}}")
        else:
            out.append(ch)
    return "".join(out)


def _skip_block_comment(text: str, i: int) -> int:
    """End offset of the (nestable) ``/* ... */`` comment opening at ``i``."""
    depth = 0
    j = i
    n = len(text)
    while j < n:
        if text.startswith("/*", j):
            depth += 1
            j += 2
        elif text.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    raise ParseError("unterminated comment (/*)", text, i)


def _error_at(text: str, i: int) -> ParseError:
    ch = text[i]
    if ch == '"':
        if text.startswith('"""', i):
            return ParseError("unterminated raw string (\"\"\"), or a line break in it", text, i)
        j = i + 1
        while j < len(text) and text[j] not in '"\r\n':
            if text[j] == "\\":
                if j + 1 < len(text) and text[j + 1] not in "\\\"'btnfru":
                    return ParseError(f"unknown escape sequence \\{text[j + 1]}", text, j)
                if text.startswith("\\u", j) and not _UNICODE.match(text, j):
                    return ParseError("malformed unicode escape (\\u{hex})", text, j)
                j += 1
            j += 1
        return ParseError("unterminated string, or a line break in it", text, i)
    if ch == "'" or text.startswith(("?'", '?"'), i):
        return ParseError("single-quoted and ?\"...\" strings are not EQL: use \"...\" or "
                          "\"\"\"...\"\"\"", text, i)
    if ch == "`":
        return ParseError("unterminated backquoted field name", text, i)
    return ParseError(f"unexpected character {ch!r}", text, i)


SCANNER: parsing.Scanner[Kind, Token] = parsing.Scanner(
    _SCAN, Token, T.EOF,
    plain={"name": T.NAME, "number": T.NUMBER, "tilde": T.TILDE},
    lookup={"punct": PUNCTUATION},
    skip=frozenset({"ws", "lcomment"}),
)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` (comments and whitespace dropped), ending with an EOF token."""

    def special(kind: str, raw: str, i: int, j: int) -> tuple[Token | None, int]:
        if kind == "str":
            return Token(T.STRING, unescape(raw[1:-1], text, i + 1), raw, i, j), j
        if kind == "raw":
            return Token(T.STRING, raw[3:-3], raw, i, j, raw_string=True), j
        return None, _skip_block_comment(text, i)  # bcomment

    return SCANNER.tokenize(text, special, _error_at)
