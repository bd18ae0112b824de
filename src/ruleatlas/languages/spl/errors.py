"""SPL parse errors: a message, the position, line/col and a caret line (sqlglot's shape)."""

from __future__ import annotations

from bisect import bisect_right
from functools import lru_cache

from ruleatlas.caching import LINE_STARTS
from ruleatlas.model import AtlasError, Span


@lru_cache(maxsize=LINE_STARTS)
def _line_starts(text: str) -> tuple[int, ...]:
    """Offsets where each line of ``text`` starts (cached: one search gives many spans)."""
    starts = [0]
    i = text.find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return tuple(starts)


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of offset ``pos`` in ``text`` (a bisect, not a count, so a
    search with many predicates stays linear)."""
    pos = max(0, min(pos, len(text)))
    starts = _line_starts(text)
    line = bisect_right(starts, pos)
    return line, pos - starts[line - 1] + 1


def span_of(text: str, start: int, end: int | None = None) -> Span:
    line, col = line_col(text, start)
    return Span(line, col, start, end if end is not None else start)


class ParseError(AtlasError):
    """A search the parser cannot read. ``highlight`` is the line with a caret under ``pos``."""

    def __init__(self, description: str, text: str, pos: int) -> None:
        self.description = description
        self.text = text
        self.pos = pos
        self.line, self.col = line_col(text, pos)
        src_line = text.split("\n")[self.line - 1]
        self.highlight = f"{src_line}\n{' ' * (self.col - 1)}^"
        super().__init__(description, Span(self.line, self.col, pos, pos))

    def __str__(self) -> str:
        return f"{self.description} at {self.line}:{self.col}\n{self.highlight}"
