"""parsing.Scanner, the tokenizer loop the SPL, EQL and ES|QL tokenizers run, on a toy language:
every expectation below was worked out by hand from the toy pattern and the input text."""

from __future__ import annotations

import re
from enum import Enum

import pytest

from ruleatlas.languages.parsing import ParseError, Scanner, Token


class K(Enum):
    NUM = "num"
    PLUS = "+"
    LPAREN = "("
    STR = "str"
    EOF = "eof"


TOY = re.compile(r"""(?P<ws>\s+)|(?P<num>\d+)|(?P<sym>[+(])|(?P<str>'[^']*')|(?P<skipto>\#)""")
SCANNER: Scanner[K, Token[K]] = Scanner(TOY, Token, K.EOF, plain={"num": K.NUM},
                                        lookup={"sym": {"+": K.PLUS, "(": K.LPAREN}})


def special(kind: str, raw: str, i: int, j: int) -> tuple[Token[K] | None, int]:
    if kind == "str":
        return Token(K.STR, raw[1:-1].upper(), raw, i, j), j
    return None, j + 2  # '#' hides itself and the next two characters


def error(text: str, i: int) -> ParseError:
    return ParseError(f"bad {text[i]!r}", text, i)


def spans(toks: list[Token[K]]) -> list[tuple[K, str, int, int]]:
    return [(t.kind, t.text, t.start, t.end) for t in toks]


def test_groups_go_by_table_and_hook() -> None:
    toks = SCANNER.tokenize("12 + 'ab'#xy(", special, error)
    assert spans(toks) == [(K.NUM, "12", 0, 2), (K.PLUS, "+", 3, 4), (K.STR, "AB", 5, 9),
                           (K.LPAREN, "(", 12, 13), (K.EOF, "", 13, 13)]
    assert toks[2].raw == "'ab'"


def test_offset_shifts_tokens_not_the_hook() -> None:
    seen: list[tuple[int, int]] = []

    def hook(kind: str, raw: str, i: int, j: int) -> tuple[Token[K] | None, int]:
        seen.append((i, j))
        return special(kind, raw, i, j)

    toks = SCANNER.tokenize(" 7 'x'", hook, error, offset=100)
    assert spans(toks) == [(K.NUM, "7", 101, 102), (K.STR, "X", 3, 6), (K.EOF, "", 106, 106)]
    assert seen == [(3, 6)]  # the hook gets offsets into the text it was given


def test_no_group_raises_the_languages_error() -> None:
    with pytest.raises(ParseError) as e:
        SCANNER.tokenize("1 +\n ?", special, error)
    assert (e.value.description, e.value.line, e.value.col) == ("bad '?'", 2, 2)


def test_empty_text_is_eof_only() -> None:
    assert spans(SCANNER.tokenize("", special, error, offset=4)) == [(K.EOF, "", 4, 4)]
