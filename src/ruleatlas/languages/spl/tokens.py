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
from dataclasses import dataclass
from enum import Enum

from ruleatlas.languages.spl.errors import ParseError


class T(Enum):
    PIPE = "|"
    LBRACKET = "["
    RBRACKET = "]"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    EQ = "="
    EQEQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    PLUS = "+"
    MINUS = "-"
    STAR = "*"
    SLASH = "/"
    PERCENT = "%"
    DOT = "."
    STRING = "string"
    QFIELD = "qfield"  # 'single quoted' field name (eval context)
    WORD = "word"
    NUMBER = "number"
    MACRO = "macro"
    EOF = "eof"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: kind, text (unescaped value for strings), raw source text and offsets."""

    kind: T
    text: str
    raw: str
    start: int
    end: int

    def __repr__(self) -> str:
        return f"{self.kind.name}({self.text!r})"


SINGLE_TOKENS: dict[str, T] = {
    "|": T.PIPE,
    "[": T.LBRACKET,
    "]": T.RBRACKET,
    "(": T.LPAREN,
    ")": T.RPAREN,
    ",": T.COMMA,
}
COMPARISONS: dict[str, T] = {
    "==": T.EQEQ,
    "!=": T.NE,
    "<=": T.LE,
    ">=": T.GE,
    "=": T.EQ,
    "<": T.LT,
    ">": T.GT,
}
ARITHMETIC: dict[str, T] = {"+": T.PLUS, "-": T.MINUS, "*": T.STAR, "/": T.SLASH, "%": T.PERCENT,
                            ".": T.DOT}

_SEARCH_WORD = re.compile(r"""(?:\\.|[^\s|\[\]()=!<>,"`\\]|!(?!=)|\\)+""")
_TEMPLATE = re.compile(r"<<[A-Za-z_]+>>")  # foreach placeholders: <<FIELD>>, <<MATCHSTR>>
_EVAL_WORD = re.compile(r"""[A-Za-z_@$:{}\\][\w@$:{}\\.\-]*(?<![.\-])|\$[^$\s]+\$""")
_NUMBER = re.compile(r"""(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])""")
_SPACE = re.compile(r"\s+")


def unescape(body: str) -> str:
    """SPL string escapes: ``\\\\`` is one backslash, ``\\"`` a quote; others stay as written."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n and body[i + 1] in '\\"':
            out.append(body[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def escape(value: str) -> str:
    """Inverse of :func:`unescape` for writing a double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


class Tokenizer:
    """Turns SPL text into tokens. ``mode`` is ``search`` or ``eval``."""

    def __init__(self, text: str, mode: str = "search", offset: int = 0) -> None:
        self.text = text
        self.mode = mode
        self.offset = offset  # where ``text`` starts in the whole query (for spans)
        self.comments: list[tuple[int, int]] = []

    def error(self, message: str, pos: int) -> ParseError:
        return ParseError(message, self.text, pos)

    def tokenize(self) -> list[Token]:
        text, n, mode = self.text, len(self.text), self.mode
        toks: list[Token] = []
        i = 0
        append = toks.append
        off = self.offset
        while i < n:
            ch = text[i]
            if ch.isspace():
                m = _SPACE.match(text, i)
                assert m
                i = m.end()
                continue
            if ch == "`":
                if text.startswith("```", i):
                    j = text.find("```", i + 3)
                    if j < 0:
                        raise self.error("unterminated comment (```)", i)
                    self.comments.append((off + i, off + j + 3))
                    i = j + 3
                    continue
                j = text.find("`", i + 1)
                if j < 0:
                    raise self.error("unterminated macro call (`)", i)
                body = text[i + 1 : j]
                append(Token(T.MACRO, body.strip(), text[i : j + 1], off + i, off + j + 1))
                i = j + 1
                continue
            if ch == '"' or (ch == "'" and mode == "eval"):
                j = i + 1
                while j < n and text[j] != ch:
                    j += 2 if text[j] == "\\" and j + 1 < n else 1
                if j >= n:
                    raise self.error("unterminated string", i)
                body = text[i + 1 : j]
                kind = T.STRING if ch == '"' else T.QFIELD
                append(Token(kind, unescape(body), text[i : j + 1], off + i, off + j + 1))
                i = j + 1
                continue
            if ch == "<" and text.startswith("<<", i):
                m = _TEMPLATE.match(text, i)
                if m:
                    append(Token(T.WORD, m.group(), m.group(), off + i, off + m.end()))
                    i = m.end()
                    continue
            two = text[i : i + 2]
            if two in COMPARISONS:
                append(Token(COMPARISONS[two], two, two, off + i, off + i + 2))
                i += 2
                continue
            if ch in SINGLE_TOKENS:
                append(Token(SINGLE_TOKENS[ch], ch, ch, off + i, off + i + 1))
                i += 1
                continue
            if ch in COMPARISONS:
                append(Token(COMPARISONS[ch], ch, ch, off + i, off + i + 1))
                i += 1
                continue
            if mode == "eval":
                m = _NUMBER.match(text, i)
                if m:
                    append(Token(T.NUMBER, m.group(), m.group(), off + i, off + m.end()))
                    i = m.end()
                    continue
                m = _EVAL_WORD.match(text, i)
                if m and m.end() > i:
                    w = m.group()
                    append(Token(T.WORD, w, w, off + i, off + m.end()))
                    i = m.end()
                    continue
                if ch in ARITHMETIC:
                    append(Token(ARITHMETIC[ch], ch, ch, off + i, off + i + 1))
                    i += 1
                    continue
                # anything else (a stray wildcard word, unicode) falls back to a search word
            m = _SEARCH_WORD.match(text, i)
            if not m or m.end() == i:
                raise self.error(f"unexpected character {ch!r}", i)
            w = m.group()
            append(Token(T.WORD, w, w, off + i, off + m.end()))
            i = m.end()
        append(Token(T.EOF, "", "", off + n, off + n))
        return toks


def tokenize(text: str, mode: str = "search", offset: int = 0) -> list[Token]:
    return Tokenizer(text, mode, offset).tokenize()
