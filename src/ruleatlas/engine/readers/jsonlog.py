"""JSON event logs: JSON lines (OTRF/Mordor, ``evtx_dump -o jsonl``, Winlogbeat-like exports),
JSON arrays, and concatenated pretty-printed objects (the ``.json`` files beside the Sigma
regression EVTX files, as ``evtx_dump -o json`` writes them).

The mode is decided from the first non-blank line: a line that is a whole JSON object means JSON
lines (the fast path: one ``loads`` per line, orjson when installed); ``[`` means an array and a
``{`` that does not close on its line means concatenated objects, both read by an incremental
decoder over chunks, so no file is ever held whole in memory.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from ruleatlas.engine.events import FLAT_ALIASES, Event, ReadError, flatten

try:  # orjson is ~3x faster on the OTRF lines; the stdlib parser is the fallback.
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _LoadError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads
    _LoadError = json.JSONDecodeError

CHUNK = 1 << 20
MAX_VALUE = 64 << 20  # a JSON value longer than this is treated as corrupt
_RESYNC = re.compile(r"\n[\[{]")  # after a bad value: the next value starting a line

Report = Callable[[ReadError], None]


def read_json(stream: IO[bytes], name: str, report: Report) -> Iterator[Event]:
    """Every event of a JSON log stream; bad lines/values reported with their line."""
    lineno = 0
    for raw in stream:
        lineno += 1
        s = raw.strip()
        if not s:
            continue
        if s[:1] == b"[" or (s[:3] == b"\xef\xbb\xbf" and s[3:4] == b"["):
            yield from _read_stream(raw, stream, name, report, lineno)
            return
        try:
            obj = _loads(s)
        except _LoadError:
            if s[:1] == b"{" or s[:4] == b"\xef\xbb\xbf{":
                yield from _read_stream(raw, stream, name, report, lineno)
                return
            obj = None
        break
    else:
        return
    # JSON lines.
    if obj is not None:
        yield from _one(obj, name, lineno, report)
    else:
        report(ReadError(name, lineno, "not JSON", "line"))
    aliases = FLAT_ALIASES
    for raw in stream:
        lineno += 1
        try:
            obj = _loads(raw)
        except _LoadError as e:
            if not raw.isspace():
                report(ReadError(name, lineno, f"invalid JSON: {e}", "line"))
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


def _read_stream(
    first: bytes, stream: IO[bytes], name: str, report: Report, first_line: int
) -> Iterator[Event]:
    """Arrays and concatenated objects: ``raw_decode`` over a growing text buffer.

    Events get the line their value starts on as position.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    dec = json.JSONDecoder()
    buf = decoder.decode(first)
    line = first_line  # line of buf[cpos]
    cpos = 0
    eof = False
    depth_array = False
    pos = 0
    ws = " \t\r\n"
    while True:
        # Skip separators between values.
        while pos < len(buf):
            c = buf[pos]
            if c in ws or c == ",":
                pos += 1
            elif c == "[" and not depth_array:
                depth_array = True
                pos += 1
            elif c == "]" and depth_array:
                depth_array = False
                pos += 1
            else:
                break
        if pos >= len(buf):
            if eof:
                return
            line += buf.count("\n", cpos, pos)
            buf, pos, cpos = "", 0, 0
            chunk = stream.read(CHUNK)
            if chunk:
                buf = decoder.decode(chunk)
            else:
                buf = decoder.decode(b"", final=True)
                eof = True
            continue
        try:
            obj, end = dec.raw_decode(buf, pos)
        except json.JSONDecodeError as e:
            if not eof and len(buf) - pos < MAX_VALUE:
                chunk = stream.read(CHUNK)  # maybe the value is only cut by the chunk end
                if chunk:
                    buf += decoder.decode(chunk)
                else:
                    buf += decoder.decode(b"", final=True)
                    eof = True
                continue
            at = line + buf.count("\n", cpos, e.pos)
            report(ReadError(name, at, f"invalid JSON: {e.msg}", "line"))
            m = _RESYNC.search(buf, e.pos)
            if m is None:
                return
            pos = m.start() + 1
            continue
        line += buf.count("\n", cpos, pos)
        cpos = pos
        yield from _one(obj, name, line, report)
        pos = end
        # Drop consumed text now and then so the buffer stays small.
        if pos > CHUNK:
            line += buf.count("\n", cpos, pos)
            buf, pos, cpos = buf[pos:], 0, 0
