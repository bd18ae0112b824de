"""SPL tokenizer: table-driven, every token with its span.

SPL has two lexical contexts. In *search* context (the search command, command arguments) a
bare word runs until whitespace or one of ``| [ ] ( ) = ! < > , " ```` ` and may hold ``*``, ``\\``,
``:``, ``.``, ``-``, ``/``. In *eval* context (``eval``, ``where``, functions) arithmetic
operators split words, numbers are numbers and ``'single quoted'`` text is a field name. The
parser picks the context per command (sqlglot keeps one tokenizer per dialect; SPL needs one per
command family).

Triple-backtick comments are not macros (contentctl mistook them for macros, splunk/contentctl
#156): they are dropped from the token stream and kept in ``Tokenizer.comments``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import TypeAlias

from ruleatlas.languages import parsing
from ruleatlas.languages.parsing import OPERATORS, Operator, ParseError


class T(Enum):
    PIPE = "|"
    LBRACKET = "["
    RBRACKET = "]"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    EQ = "="
    EQEQ = "=="
    DOT = "."
    STRING = "string"
    QFIELD = "qfield"  # 'single quoted' field name (eval context)
    WORD = "word"
    NUMBER = "number"
    MACRO = "macro"
    EOF = "eof"


Kind: TypeAlias = T | Operator  # the operators are the kinds every language shares


class Token(parsing.Token[Kind]):
    """One SPL token (``text``: the unescaped value of a string, the body of a macro call)."""

    __slots__ = ()


SINGLE_TOKENS: dict[str, T] = {
    "|": T.PIPE,
    "[": T.LBRACKET,
    "]": T.RBRACKET,
    "(": T.LPAREN,
    ")": T.RPAREN,
    ",": T.COMMA,
}
COMPARISONS: dict[str, Kind] = {
    "==": T.EQEQ,
    "=": T.EQ,
    **{op: OPERATORS[op] for op in ("!=", "<=", ">=", "<", ">")},
}
ARITHMETIC: dict[str, Kind] = {".": T.DOT, **{op: OPERATORS[op] for op in "+-*/%"}}



def unescape(body: str, quotes: str = '\\"') -> str:
    """SPL string escapes: ``\\\\`` is one backslash, ``\\"`` a quote (the characters of
    ``quotes`` stand for themselves after a backslash); others stay as written."""

    def escape_at(b: str, i: int) -> tuple[str, int]:
        nxt = b[i + 1 : i + 2]
        return (nxt, i + 2) if nxt and nxt in quotes else ("\\", i + 1)

    return parsing.unescape(body, escape_at)


def escape(value: str) -> str:
    """Inverse of :func:`unescape` for writing a double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


_SEARCH_SCAN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<comment>```.*?```)
      |(?P<macro>`(?!``)[^`]*`)
      |(?P<str>"(?:\\.|[^"\\])*")
      |(?P<tmpl><<[A-Za-z_]+>>)
      |(?P<op>==|!=|<=|>=|[=<>])
      |(?P<single>[|\[\](),])
      |(?P<word>(?:\\.|[^\s|\[\]()=!<>,"`\\]|!(?!=)|\\)+)""",
    re.VERBOSE | re.DOTALL,
)
_EVAL_SCAN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<comment>```.*?```)
      |(?P<macro>`(?!``)[^`]*`)
      |(?P<str>"(?:\\.|[^"\\])*")
      |(?P<qfield>'(?:\\.|[^'\\])*')
      |(?P<tmpl><<[A-Za-z_]+>>)
      |(?P<op>==|!=|<=|>=|[=<>])
      |(?P<single>[|\[\](),])
      |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.]))
      |(?P<eword>[A-Za-z_@$:{}\\][\w@$:{}\\.\-]*(?<![.\-])|\$[^$\s]+\$)
      |(?P<arith>[-+*/%.])
      |(?P<word>(?:\\.|[^\s|\[\]()=!<>,"`\\]|!(?!=)|\\)+)""",
    re.VERBOSE | re.DOTALL,
)
_OPEN_ERRORS = {"`": "unterminated macro call (`)", '"': "unterminated string",
                "'": "unterminated string"}


_PLAIN: dict[str, Kind] = {"word": T.WORD, "eword": T.WORD, "tmpl": T.WORD, "number": T.NUMBER}
_LOOKUP: dict[str, Mapping[str, Kind]] = {"op": COMPARISONS, "single": SINGLE_TOKENS,
                                          "arith": ARITHMETIC}
SCANNERS: dict[str, parsing.Scanner[Kind, Token]] = {
    mode: parsing.Scanner(scan, Token, T.EOF, _PLAIN, _LOOKUP)
    for mode, scan in (("search", _SEARCH_SCAN), ("eval", _EVAL_SCAN))
}


class Tokenizer:
    """Turns SPL text into tokens with one master regular expression per context
    (:data:`SCANNERS`)."""

    def __init__(self, text: str, mode: str = "search", offset: int = 0) -> None:
        self.text = text
        self.mode = mode
        self.offset = offset  # where ``text`` starts in the whole query (for spans)
        self.comments: list[tuple[int, int]] = []

    def error(self, message: str, pos: int) -> ParseError:
        return ParseError(message, self.text, pos)

    def tokenize(self) -> list[Token]:
        scanner = SCANNERS["eval" if self.mode == "eval" else "search"]
        return scanner.tokenize(self.text, self._special, self._scan_error, self.offset)

    def _scan_error(self, text: str, i: int) -> ParseError:
        if text.startswith("```", i):
            return self.error("unterminated comment (```)", i)
        ch = text[i]
        return self.error(_OPEN_ERRORS.get(ch, f"unexpected character {ch!r}"), i)

    def _special(self, kind: str, raw: str, i: int, j: int) -> tuple[Token | None, int]:
        a, b = self.offset + i, self.offset + j
        if kind == "str":
            return Token(T.STRING, unescape(raw[1:-1]), raw, a, b), j
        if kind == "macro":
            return Token(T.MACRO, raw[1:-1].strip(), raw, a, b), j
        if kind == "qfield":
            return Token(T.QFIELD, unescape(raw[1:-1], "\\\"'"), raw, a, b), j
        self.comments.append((a, b))  # comment
        return None, j


def tokenize(text: str, mode: str = "search", offset: int = 0) -> list[Token]:
    return Tokenizer(text, mode, offset).tokenize()
