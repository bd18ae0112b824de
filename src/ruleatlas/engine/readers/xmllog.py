"""Windows event XML text: Splunk ``XmlWinEventLog`` exports (attack_data ``.log`` files),
``wevtutil qe /f:xml`` output, ``<Events>`` documents, evtx ``records()`` XML.

Records are cut out of the text with a fast ``str.find`` scan (one ``<Event ...>...</Event>``
per record, any text between records ignored), then each is parsed on its own with the C
ElementTree parser, so a bad record costs only itself. Values are strings, as written
(``EventID`` is ``"4688"``; see :func:`ruleatlas.engine.events.as_int`).

A record longer than ``Limits.record_bytes`` characters is skipped (reported with its line);
text between records is never kept beyond a few characters, so memory stays bounded.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import IO, Any

from ruleatlas.engine.events import SYSTEM_ATTRS, Event, ReadError
from ruleatlas.limits import DEFAULT, Limits, fmt_size

CHUNK = 1 << 20
_START = re.compile(r"<Event[\s>]")
_NS_DECL = re.compile(r"""\sxmlns(?::\w+)?=(?:'[^']*'|"[^"]*")""")

Report = Callable[[ReadError], None]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag[:1] == "{" else tag


def _system(system: ET.Element, out: dict[str, Any]) -> None:
    for child in system:
        tag = child.tag
        if tag[0] == "{":
            tag = tag.rpartition("}")[2]
        attrib = child.attrib
        if attrib:
            names = SYSTEM_ATTRS.get(tag)
            for ak, av in attrib.items():
                if ak[0] == "{":
                    ak = ak.rpartition("}")[2]
                out[names.get(ak, f"{tag}_{ak}") if names else f"{tag}_{ak}"] = av
        text = child.text
        if text and not text.isspace():
            out[tag] = text


def _event_data(ed: ET.Element, out: dict[str, Any]) -> None:
    unnamed: list[str] = []
    for child in ed:
        tag = child.tag
        if tag[0] == "{":
            tag = tag.rpartition("}")[2]
        text = child.text
        if text is None:
            text = ""
        if tag == "Data":
            name = child.get("Name")
            if name is None:
                unnamed.append(text)
            else:
                out[name] = text
        else:
            out[tag] = text
    if unnamed:
        out["Data"] = unnamed if len(unnamed) > 1 else unnamed[0]
        for i, x in enumerate(unnamed, 1):
            out[f"Data_{i}"] = x


def _leaves(node: ET.Element, out: dict[str, Any]) -> None:
    for child in node:
        if len(child):
            _leaves(child, out)
        else:
            out.setdefault(_local(child.tag), child.text if child.text is not None else "")


def flatten_xml(root: ET.Element) -> dict[str, Any]:
    """One parsed ``<Event>`` element -> flat fields (same names as the JSON flattener)."""
    out: dict[str, Any] = {}
    later: list[ET.Element] = []
    for part in root:
        tag = _local(part.tag)
        if tag == "System":
            _system(part, out)
        else:
            later.append(part)
    for part in later:
        tag = _local(part.tag)
        if tag == "EventData":
            _event_data(part, out)
        elif tag == "UserData":
            _leaves(part, out)
        elif tag == "RenderingInfo":
            for child in part:
                ct = _local(child.tag)
                if len(child):
                    continue
                key = "Message" if ct == "Message" else f"RenderingInfo_{ct}"
                out.setdefault(key, child.text if child.text is not None else "")
    return out


def parse_record(text: str) -> dict[str, Any]:
    """Parse one ``<Event>...</Event>`` string (raises ``ET.ParseError`` when malformed)."""
    # The Event namespace only prefixes every tag; drop it from the opening tag (not from text:
    # TaskContent holds whole escaped XML documents). Keep CRs in values: XML parsers turn
    # CRLF into LF, so carriage returns are passed as character references.
    head_end = text.find(">") + 1
    text = _NS_DECL.sub("", text[:head_end]) + text[head_end:]
    if "\r" in text:
        try:
            root = ET.fromstring(text.replace("\r", "&#13;"))
        except ET.ParseError:
            root = ET.fromstring(text)
    else:
        root = ET.fromstring(text)
    if _local(root.tag) != "Event":
        raise ET.ParseError(f"root element is <{_local(root.tag)}>, not <Event>")
    return flatten_xml(root)


def read_xml(stream: IO[bytes], name: str, report: Report,
             limits: Limits = DEFAULT) -> Iterator[Event]:
    """Every ``<Event>`` record of a byte stream; bad records reported with their line."""
    cap = limits.record_bytes
    first = stream.read(CHUNK)
    codec = "utf-16" if first[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    buf = ""
    line = 1  # line number of buf[0]
    eof = False
    n = 0
    while not eof:
        chunk, first = (first, b"") if first else (stream.read(CHUNK), b"")
        if chunk:
            buf += decoder.decode(chunk)
        else:
            buf += decoder.decode(b"", final=True)
            eof = True
        pos = 0  # scan position in buf; line counts newlines before ``counted``
        counted = 0
        while True:
            m = _START.search(buf, pos)
            if m is None:
                pos = max(pos, len(buf) - 8)  # keep a "<Event" cut at the chunk end
                break
            start = m.start()
            end = buf.find("</Event>", m.end())
            nxt = _START.search(buf, m.end())
            if end < 0 and nxt is None and not eof and len(buf) - start < cap:
                pos = start
                break  # the record goes on in the next chunk
            line += buf.count("\n", counted, start)
            counted = start
            n += 1
            whole = end >= 0 and (nxt is None or nxt.start() > end)
            if (end < 0 and nxt is None and not eof) or (whole and end + 8 - start > cap):
                report(ReadError(name, line, f"record {n}: <Event> exceeds {fmt_size(cap)}; "
                                 "skipped", "line"))
                pos = nxt.start() if nxt is not None else len(buf)
                continue
            if not whole:
                report(ReadError(name, line, f"record {n}: <Event> without </Event>", "line"))
                pos = nxt.start() if nxt is not None else len(buf)
                continue
            pos = end + len("</Event>")
            try:
                fields = parse_record(buf[start:pos])
            except ET.ParseError as e:
                report(ReadError(name, line, f"record {n}: bad XML: {e}", "line"))
            else:
                yield Event(fields, name, n)
        line += buf.count("\n", counted, pos)
        buf = buf[pos:]
