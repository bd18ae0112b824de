"""JSON event logs: JSON lines (OTRF/Mordor, ``evtx_dump -o jsonl``, Winlogbeat-like exports),
JSON arrays, and concatenated pretty-printed objects (the ``.json`` files beside the Sigma
regression EVTX files, as ``evtx_dump -o json`` writes them).

The mode is decided from the first non-blank line: a line that is a whole JSON object means JSON
lines (the fast path: one ``loads`` per line, orjson when installed); ``[`` means an array and a
``{`` that does not close on its line means concatenated objects, both read by an incremental
decoder over chunks, so no file is ever held whole in memory.

Bounded by ``Limits.record_bytes``: lines are read with a bounded ``readline``, so a line
longer than the limit is skipped (reported with its line number) and the next line is read; in
the array/concatenated mode a value longer than the limit is skipped up to the next line that
starts a value (``[`` or ``{``). A one-line array is streamed value by value whatever its size.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from ruleatlas.engine.events import FLAT_ALIASES, Event, ReadError, flatten
from ruleatlas.limits import DEFAULT, Limits, fmt_size

try:  # orjson is ~3x faster on the OTRF lines; the stdlib parser is the fallback.
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _LoadError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads
    _LoadError = json.JSONDecodeError

CHUNK = 1 << 20
_RESYNC = re.compile(r"\n[\[{]")  # after a bad value: the next value starting a line
_SEP = re.compile(r"[ \t\r\n,]*")  # between values

Report = Callable[[ReadError], None]


def _skip_line(readline: Callable[[int], bytes], cap: int, name: str, lineno: int,
               report: Report) -> None:
    """Consume the rest of an over-long line, ``cap`` bytes at a time, and report it."""
    while True:
        rest = readline(cap)
        if not rest or rest[-1:] == b"\n":
            break
    report(ReadError(name, lineno, f"JSON line exceeds {fmt_size(cap)}; skipped", "line"))


def _long(raw: bytes, cap: int) -> bool:
    return len(raw) > cap and raw[-1:] != b"\n"


def _is_array(s: bytes) -> bool:
    return s[:1] == b"[" or (s[:3] == b"\xef\xbb\xbf" and s[3:4] == b"[")


def read_json(stream: IO[bytes], name: str, report: Report,
              limits: Limits = DEFAULT) -> Iterator[Event]:
    """Every event of a JSON log stream; bad or over-long lines/values reported with their
    line."""
    cap = limits.record_bytes
    readline = stream.readline
    lineno = 0
    obj = None
    while True:
        raw = readline(cap + 1)
        if not raw:
            report(ReadError(name, 0, "no JSON content (empty or blank)", "file"))
            return
        lineno += 1
        s = raw.strip()
        if not s:
            continue
        if _is_array(s):
            yield from _read_stream(raw, stream, name, report, lineno, cap)
            return
        if _long(raw, cap):
            _skip_line(readline, cap, name, lineno, report)
            break
        try:
            obj = _loads(s)
        except _LoadError:
            if s[:1] == b"{" or s[:4] == b"\xef\xbb\xbf{":
                yield from _read_stream(raw, stream, name, report, lineno, cap)
                return
            report(ReadError(name, lineno, "not JSON", "line"))
        break
    # JSON lines.
    if obj is not None:
        yield from _one(obj, name, lineno, report)
    yield from _read_lines(stream, name, report, lineno, cap)


def _skip_blank(peek: Callable[[int], bytes], read: Callable[[int], bytes]) -> int:
    """Skip a run of blank lines a buffer at a time (a member of a million newlines costs
    milliseconds, not a loop per line); returns the newlines skipped."""
    lines = 0
    while True:
        buf = peek(1 << 16)
        k = len(buf) - len(buf.lstrip(b" \t\r\n"))
        if k == 0:
            return lines
        lines += buf.count(b"\n", 0, k)
        read(k)


def _read_lines(stream: IO[bytes], name: str, report: Report, lineno: int,
                cap: int) -> Iterator[Event]:
    aliases = FLAT_ALIASES
    limit = cap + 1
    readline = stream.readline
    peek = getattr(stream, "peek", None)
    read = stream.read
    while True:
        raw = readline(limit)
        if not raw:
            return
        lineno += 1
        if len(raw) == limit and raw[-1:] != b"\n":
            _skip_line(readline, cap, name, lineno, report)
            continue
        try:
            obj = _loads(raw)
        except _LoadError as e:
            if not raw.isspace():
                report(ReadError(name, lineno, f"invalid JSON: {e}", "line"))
            elif peek is not None:
                lineno += _skip_blank(peek, read)
            continue
        # Fast path (the OTRF case): an already flat object; normalise_flat inlined.
        if type(obj) is dict and "Event" not in obj and "System" not in obj and (
            "winlog" not in obj and "log_name" not in obj
        ):
            for src, dst in aliases:
                if src in obj and dst not in obj:
                    obj[dst] = obj[src]
            yield Event(obj, name, lineno)
        else:
            yield from _one(obj, name, lineno, report)


def _one(obj: Any, name: str, pos: int, report: Report, unit: str = "line") -> Iterator[Event]:
    if isinstance(obj, list):  # a JSON array on one line
        for i, item in enumerate(obj, 1):
            fields = flatten(item)
            if fields is None:
                report(ReadError(name, pos, f"array item {i} is not an object", unit))
            else:
                yield Event(fields, name, pos)
        return
    fields = flatten(obj)
    if fields is None:
        report(ReadError(name, pos, f"not an event object: {type(obj).__name__}", unit))
    else:
        yield Event(fields, name, pos)


class _Text:
    """The decoded text of a stream, read on demand: ``buf`` holds the unread part; ``line``
    is the line number of ``buf[cpos]`` (advanced, never recounted)."""

    __slots__ = ("buf", "cpos", "decoder", "eof", "line", "stream")

    def __init__(self, first: bytes, stream: IO[bytes], line: int) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self.stream = stream
        self.buf = self.decoder.decode(first)
        self.line = line
        self.cpos = 0
        self.eof = False

    def more(self, n: int = CHUNK) -> None:
        chunk = self.stream.read(n)
        if chunk:
            self.buf += self.decoder.decode(chunk)
        else:
            self.buf += self.decoder.decode(b"", final=True)
            self.eof = True

    def line_at(self, i: int) -> int:
        """Line of ``buf[i]`` (``i`` never below an earlier call's)."""
        self.line += self.buf.count("\n", self.cpos, i)
        self.cpos = i
        return self.line

    def drop(self, upto: int) -> None:
        """Forget ``buf[:upto]``."""
        self.line_at(upto)
        self.buf = self.buf[upto:]
        self.cpos = 0

    def resync(self, start: int) -> int | None:
        """Position of the next line starting a value (``[`` or ``{``) from ``start``, reading
        on (and forgetting what is passed) as needed; None at the end of the stream."""
        while True:
            m = _RESYNC.search(self.buf, start)
            if m is not None:
                return m.start() + 1
            if self.eof:
                return None
            keep = max(start, len(self.buf) - 1)  # a "\n" may end this chunk
            self.drop(keep)
            start = 0
            self.more()


def _separators(buf: str, pos: int, in_array: bool) -> tuple[int, bool]:
    """Skip whitespace, commas and the brackets of a top-level array (runs of whitespace and
    commas in one regex step)."""
    n = len(buf)
    while True:
        pos = _SEP.match(buf, pos).end()  # type: ignore[union-attr]
        if pos < n and buf[pos] == "[" and not in_array:
            in_array = True
        elif pos < n and buf[pos] == "]" and in_array:
            in_array = False
        else:
            return pos, in_array
        pos += 1


def _cut(e: json.JSONDecodeError, buf: str) -> bool:
    """True when a decode error may only mean the value goes on past the buffer."""
    return e.msg.startswith("Unterminated string") or e.pos >= len(buf) - 64


def _read_stream(first: bytes, stream: IO[bytes], name: str, report: Report, first_line: int,
                 cap: int) -> Iterator[Event]:
    """Arrays and concatenated objects: ``raw_decode`` over a sliding text buffer.

    Events get the line their value starts on as position. A value still incomplete after
    ``cap`` characters is skipped, as is a bad one: reading resumes at the next line that
    starts with ``[`` or ``{``.
    """
    t = _Text(first, stream, first_line)
    dec = json.JSONDecoder()
    in_array = False
    pos = 0
    while True:
        pos, in_array = _separators(t.buf, pos, in_array)
        if pos >= len(t.buf):
            if t.eof:
                return
            t.drop(pos)
            pos = 0
            t.more()
            continue
        try:
            obj, end = dec.raw_decode(t.buf, pos)
        except json.JSONDecodeError as e:
            pending = len(t.buf) - pos
            cut = not t.eof and _cut(e, t.buf)
            if cut and pending < cap:
                t.more(max(CHUNK, pending))  # read as much again: linear, not quadratic
                continue
            if cut:
                report(ReadError(name, t.line_at(pos), f"JSON value exceeds {fmt_size(cap)}; "
                                 "skipped to the next line starting a value", "line"))
                nxt = t.resync(pos + 1)
            else:
                report(ReadError(name, t.line_at(max(e.pos, pos)), f"invalid JSON: {e.msg}",
                                 "line"))
                nxt = t.resync(max(e.pos, pos))
            if nxt is None:
                return
            pos = nxt
            continue
        if end - pos > cap:  # whole, but over the limit all the same (it fit in a chunk)
            report(ReadError(name, t.line_at(pos), f"JSON value exceeds {fmt_size(cap)}; "
                             "skipped", "line"))
        else:
            yield from _one(obj, name, t.line_at(pos), report)
        pos = end
        if pos > CHUNK:  # drop consumed text now and then so the buffer stays small
            t.drop(pos)
            pos = 0
