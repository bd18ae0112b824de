"""SPL parse errors: a message, the position, line/col and a caret line (sqlglot's shape)."""

from __future__ import annotations

from ruleatlas.model import AtlasError, Span


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of offset ``pos`` in ``text``."""
    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


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
