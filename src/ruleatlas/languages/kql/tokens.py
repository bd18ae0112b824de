"""KQL tokenizer: every token with its span, following Kibana's kuery grammar.

Kibana's grammar (``packages/kbn-es-query/src/kuery/grammar/grammar.peggy``) is scannerless, so a
few of its lexical rules depend on the surrounding text; this tokenizer reproduces them:

* an unquoted literal runs *across whitespace* (``message: quick brown fox`` is one value) and
  ends at a special character ``\\ ( ) : < > " * { }`` (``*`` is a wildcard part of the
  literal), or where a keyword starts: whitespace + ``or``/``and`` + whitespace, or ``not`` +
  whitespace at any position (so ``cannot be`` ends the literal at ``can``, as in Kibana);
  its value is the decoded text with surrounding whitespace trimmed (JavaScript ``trim``);
* ``or``/``and`` (any case) are keywords only between whitespace, after an operand (a literal, a
  string, ``)`` or ``}``); elsewhere (``( or x)``, ``field: or``) they start a literal;
* ``not`` (any case) is a keyword only when whitespace follows (``not(`` is a literal ``not``);
* unquoted escapes: ``\\t \\r \\n`` (whitespace), ``\\`` + a special character, ``\\uXXXX``,
  ``\\or \\and \\not`` (the keyword as text; ``\\not`` is ``\\n`` + ``ot``, as in Kibana);
  any other backslash is an error;
* quoted strings: ``\\t \\r \\n \\uXXXX \\\\ \\"``; any other backslash is literal
  (``"C:\\Program Files"`` keeps its backslash); ``*`` is a literal character;
* whitespace is space, tab, CR, LF and U+00A0. KQL has no comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ruleatlas.languages.parsing import OPERATORS, Operator, ParseError
from ruleatlas.model import Pattern, Wild


class T(Enum):
    LPAREN = "("
    RPAREN = ")"
    LBRACE = "{"
    RBRACE = "}"
    COLON = ":"
    OR = "or"
    AND = "and"
    NOT = "not"
    STRING = "string"
    WORD = "word"
    EOF = "eof"


Kind: TypeAlias = T | Operator  # the range operators are kinds every language shares


@dataclass(frozen=True, slots=True)
class Token:
    """One token: kind, raw source text, offsets; ``value`` is the decoded string of a STRING,
    ``pattern`` the decoded parts of a WORD (wildcards as :class:`Wild`)."""

    kind: Kind
    raw: str
    start: int
    end: int
    value: str = ""
    pattern: Pattern | None = None

    def __repr__(self) -> str:
        return f"{self.kind.name}({self.raw!r})"


SPACE = " \t\r\n\u00a0"
# JavaScript String.prototype.trim: WhiteSpace (incl. Zs) and LineTerminator characters.
JS_TRIM = (" \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
           "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
SPECIAL = '\\():<>"*{}'
SINGLE_TOKENS: dict[str, T] = {
    "(": T.LPAREN,
    ")": T.RPAREN,
    "{": T.LBRACE,
    "}": T.RBRACE,
    ":": T.COLON,
}
RANGE_TOKENS: dict[str, Kind] = {op: OPERATORS[op] for op in ("<=", ">=", "<", ">")}
KEYWORDS: dict[str, T] = {"or": T.OR, "and": T.AND}
ESCAPED_WHITESPACE: dict[str, str] = {"t": "\t", "r": "\r", "n": "\n"}
# Tokens after which ``or``/``and`` between whitespace are operators.
OPERAND_END = frozenset({T.WORD, T.STRING, T.RPAREN, T.RBRACE})

_S = "[ \t\r\n\u00a0]"
_KEYWORD_AT = re.compile(f"(or|and)(?={_S})", re.IGNORECASE)
_NOT_AHEAD = re.compile(f"not{_S}+", re.IGNORECASE)
_ESCAPED_KEYWORD = re.compile("or|and|not", re.IGNORECASE)
_UNICODE = re.compile("u[0-9a-fA-F]{4}")
_SPACES = re.compile(f"{_S}*")
_STRING = re.compile(r'"(?:[^"\\]|\\[\s\S])*"')
# One piece of an unquoted literal: a run of plain characters; an 'n' that does not start
# "not" + whitespace; a whitespace run not followed by "or"/"and" + whitespace (possessive, so
# it cannot give back a space to dodge the look-ahead); a wildcard; a backslash (an escape).
_WORD_PIECE = re.compile(
    rf"""(?P<plain>[^\\():<>"*{{}}\x20\t\r\n\u00a0nN]+)
       |(?P<n>[nN](?![oO][tT]{_S}))
       |(?P<ws>{_S}++(?!(?:[oO][rR]|[aA][nN][dD]){_S}))
       |(?P<star>\*)
       |(?P<esc>\\)""",
    re.VERBOSE,
)


def js_trim(parts: list[str | Wild]) -> list[str | Wild]:
    """Trim JavaScript whitespace at both ends of a part list (Kibana trims the literal)."""
    out = list(parts)
    while out and isinstance(out[0], str):
        s = out[0].lstrip(JS_TRIM)
        if s:
            out[0] = s
            break
        out.pop(0)
    while out and isinstance(out[-1], str):
        s = out[-1].rstrip(JS_TRIM)
        if s:
            out[-1] = s
            break
        out.pop()
    return out


class Tokenizer:
    """Turns KQL text into tokens; ``or``/``and`` are decided from the previous token."""

    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, message: str, pos: int) -> ParseError:
        return ParseError(message, self.text, pos)

    def tokenize(self) -> list[Token]:
        text, n = self.text, len(self.text)
        toks: list[Token] = []
        i = 0
        prev: Kind = T.EOF
        while True:
            j = _SPACES.match(text, i).end()  # type: ignore[union-attr]
            spaced = j > i
            i = j
            if i >= n:
                toks.append(Token(T.EOF, "", n, n))
                return toks
            ch = text[i]
            tok: Token | None = None
            if spaced and prev in OPERAND_END and ch in "oOaA":
                m = _KEYWORD_AT.match(text, i)
                if m:
                    tok = Token(KEYWORDS[m.group(1).lower()], m.group(1), i, m.end())
            if tok is None:
                if ch in "nN" and _NOT_AHEAD.match(text, i):
                    tok = Token(T.NOT, text[i : i + 3], i, i + 3)
                elif ch in SINGLE_TOKENS:
                    tok = Token(SINGLE_TOKENS[ch], ch, i, i + 1)
                elif ch in "<>":
                    op = text[i : i + 2] if text.startswith("=", i + 1) else ch
                    tok = Token(RANGE_TOKENS[op], op, i, i + len(op))
                elif ch == '"':
                    tok = self._string(i)
                else:
                    tok = self._word(i)
            toks.append(tok)
            prev = tok.kind
            i = tok.end

    def _string(self, start: int) -> Token:
        m = _STRING.match(self.text, start)
        if m is None:
            raise self.error("unterminated string", start)
        raw = m.group()
        body = raw[1:-1]
        value = body if "\\" not in body else self._unescape_string(body)
        return Token(T.STRING, raw, start, m.end(), value=value)

    @staticmethod
    def _unescape_string(body: str) -> str:
        out: list[str] = []
        i, n = 0, len(body)
        while i < n:
            ch = body[i]
            if ch == "\\" and i + 1 < n:
                nxt = body[i + 1]
                if nxt in ESCAPED_WHITESPACE:
                    out.append(ESCAPED_WHITESPACE[nxt])
                    i += 2
                    continue
                if _UNICODE.match(body, i + 1):
                    out.append(chr(int(body[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                if nxt in '\\"':
                    out.append(nxt)
                    i += 2
                    continue
            out.append(ch)
            i += 1
        return "".join(out)

    def _word(self, start: int) -> Token:
        """An unquoted literal: characters, escapes and ``*`` up to a special character or a
        keyword; the decoded value is trimmed, and so is the token's end."""
        text = self.text
        parts: list[str | Wild] = []
        i = start
        last = start  # end of the last piece that is not bare whitespace
        piece = _WORD_PIECE.match
        while (m := piece(text, i)) is not None:
            kind = m.lastgroup
            if kind == "ws":
                parts.append(m.group())
                i = m.end()
                continue
            if kind == "esc":
                decoded, i = self._escape(i)
                parts.append(decoded)
            elif kind == "star":
                parts.append(Wild.ANY)
                i += 1
            else:
                parts.append(m.group())
                i = m.end()
            last = i
        if i == start:
            raise self.error(f"unexpected character {text[start]!r}", start)
        raw = text[start:last]
        return Token(T.WORD, raw, start, last, pattern=Pattern(tuple(js_trim(parts))))

    def _escape(self, i: int) -> tuple[str, int]:
        """Decode the escape at ``text[i] == '\\'``; return the text and the next offset."""
        text = self.text
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt in ESCAPED_WHITESPACE and nxt:
            return ESCAPED_WHITESPACE[nxt], i + 2
        if nxt and nxt in SPECIAL:
            return nxt, i + 2
        if _UNICODE.match(text, i + 1):
            return chr(int(text[i + 2 : i + 6], 16)), i + 6
        m = _ESCAPED_KEYWORD.match(text, i + 1)
        if m:
            return m.group(), m.end()
        if not nxt:
            raise self.error("backslash at the end of the query", i)
        raise self.error(f"invalid escape '\\{nxt}' (escape one of \\():<>\"*{{}} or a "
                         "keyword; quote the value to keep a backslash)", i)


def tokenize(text: str) -> list[Token]:
    return Tokenizer(text).tokenize()
