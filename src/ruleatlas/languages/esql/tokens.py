"""ES|QL tokenizer: table-driven, every token with its offsets.

One master regular expression reads the whole query. Words (commands, keywords, field names)
are all :attr:`T.NAME`: ES|QL keywords are reserved only where the grammar expects them, so the
parser decides by context (case-insensitively). A dotted field name (``process.parent.name``) is
one token; a backquoted part (`` `my field` ``, ````` `` ````` is a backquote) joins the others
through :attr:`T.DOT`. Index patterns after ``from`` (``logs-endpoint.events.*``) are read by the
parser as adjacent tokens glued together. ``//`` and ``/* */`` comments are dropped from the
token stream and kept in ``Tokenizer.comments``.

Strings: ``"..."`` with the escapes ``\\t \\n \\r \\" \\\\`` (Elasticsearch rejects any other
backslash; we keep it as written, backslash included, so a corpus query with ``"\\?"`` reads),
and triple-quoted strings (no escapes at all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ruleatlas.languages import parsing
from ruleatlas.languages.parsing import OPERATORS, Operator, ParseError


class T(Enum):
    PIPE = "|"
    LPAREN = "("
    RPAREN = ")"
    LBRACKET = "["
    RBRACKET = "]"
    LBRACE = "{"
    RBRACE = "}"
    COMMA = ","
    DOT = "."
    COLON = ":"
    CAST = "::"
    ASSIGN = "="
    EQ = "=="
    CIEQ = "=~"
    STRING = "string"
    NAME = "name"  # a word or a dotted name
    QNAME = "qname"  # a `backquoted` identifier
    INTEGER = "integer"
    DECIMAL = "decimal"
    PARAM = "param"  # ? ?name ?1
    EOF = "eof"


Kind: TypeAlias = T | Operator  # the operators are the kinds every language shares


@dataclass(frozen=True, slots=True, repr=False)
class Token(parsing.Token[Kind]):
    """One ES|QL token (``text``: unescaped for strings and backquoted names); ``triple`` marks a
    triple-quoted string."""

    triple: bool = False


SYMBOLS: dict[str, Kind] = {
    "::": T.CAST, "==": T.EQ, "=~": T.CIEQ, "|": T.PIPE, "(": T.LPAREN, ")": T.RPAREN,
    "[": T.LBRACKET, "]": T.RBRACKET, "{": T.LBRACE, "}": T.RBRACE, ",": T.COMMA, ".": T.DOT,
    ":": T.COLON, "=": T.ASSIGN, **OPERATORS,
}
ESCAPES: dict[str, str] = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
UNESCAPES: dict[str, str] = {v: "\\" + k for k, v in ESCAPES.items()}

_SCAN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<lcomment>//[^\n]*)
      |(?P<bcomment>/\*.*?\*/)
      |(?P<open>/\*)
      |(?P<triple>\"\"\".*?\"\"\"\"?\"?)
      |(?P<str>"(?:\\.|[^"\\\r\n])*")
      |(?P<qname>`(?:``|[^`])*`)
      |(?P<decimal>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
      |(?P<integer>\d+)
      |(?P<param>\?\??(?:[A-Za-z_]\w*|\d+)?)
      |(?P<name>[A-Za-z_@]\w*(?:\.[A-Za-z_@]\w*)*)
      |(?P<sym>::|==|=~|!=|<=|>=|[|()\[\]{},.:=<>+\-*/%])""",
    re.VERBOSE | re.DOTALL,
)
_OPEN_ERRORS = {"`": "unterminated quoted identifier (`)", '"': "unterminated string"}


def _escape_at(body: str, i: int) -> tuple[str, int]:
    nxt = body[i + 1 : i + 2]
    if nxt not in ESCAPES:  # Elasticsearch rejects it; kept as written (see docs)
        return "\\" + nxt, i + 2
    return ESCAPES[nxt], i + 2


def unescape(body: str) -> str:
    """The value of a ``"..."`` string body."""
    return parsing.unescape(body, _escape_at)


def escape(value: str) -> str:
    """Inverse of :func:`unescape`: the body of a ``"..."`` string."""
    return "".join(UNESCAPES.get(ch, ch) for ch in value)


def quote(value: str, triple: bool = False) -> str:
    """A string literal for ``value``: triple-quoted when asked and possible."""
    if triple and '"""' not in value and not value.endswith('"') and "\r" not in value:
        return f'"""{value}"""'
    return f'"{escape(value)}"'


SCANNER: parsing.Scanner[Kind, Token] = parsing.Scanner(
    _SCAN, Token, T.EOF,
    plain={"name": T.NAME, "integer": T.INTEGER, "decimal": T.DECIMAL, "param": T.PARAM},
    lookup={"sym": SYMBOLS},
)


def _open_error(text: str, i: int) -> ParseError:
    ch = text[i]
    return ParseError(_OPEN_ERRORS.get(ch, f"unexpected character {ch!r}"), text, i)


class Tokenizer:
    """Turns ES|QL text into tokens with one master regular expression (:data:`SCANNER`)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.comments: list[tuple[int, int]] = []

    def tokenize(self) -> list[Token]:
        return SCANNER.tokenize(self.text, self._special, _open_error)

    def _special(self, kind: str, raw: str, i: int, j: int) -> tuple[Token | None, int]:
        if kind == "str":
            return Token(T.STRING, unescape(raw[1:-1]), raw, i, j), j
        if kind == "triple":
            return Token(T.STRING, raw[3:-3], raw, i, j, triple=True), j
        if kind == "qname":
            return Token(T.QNAME, raw[1:-1].replace("``", "`"), raw, i, j), j
        if kind == "open":
            raise ParseError("unterminated comment (/*)", self.text, i)
        self.comments.append((i, j))  # comments
        return None, j


def tokenize(text: str) -> list[Token]:
    return Tokenizer(text).tokenize()
