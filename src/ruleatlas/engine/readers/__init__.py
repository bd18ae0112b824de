"""Event readers: any log file (or folder, or archive) -> a stream of flattened events.

:func:`read_events` dispatches on the file type, by suffix first and by sniffing the first
bytes when the suffix says nothing:

=========================  ==================================================================
EVTX                       ``.evtx`` / ``ElfFile`` signature (:mod:`.evtx`)
JSON                       ``.json .jsonl .ndjson`` / ``{`` or ``[``: lines, arrays, nested
                           ``Event.System`` objects or flat OTRF-style ones (:mod:`.jsonlog`)
Windows event XML          ``.xml .log .txt`` / ``<Event``: Splunk XmlWinEventLog (:mod:`.xmllog`)
archives                   ``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.gz``: members streamed in
                           place, each dispatched again (:mod:`.archive`)
=========================  ==================================================================

Errors never stop the stream: each becomes a :class:`ReadError` (file, position, reason)
appended to ``errors``. Without an ``errors`` list reading is strict and the first problem
raises :class:`EventReadError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from ruleatlas.engine.events import Event, ReadError
from ruleatlas.engine.readers import archive
from ruleatlas.engine.readers.evtx import MAGIC as EVTX_MAGIC
from ruleatlas.engine.readers.evtx import read_evtx
from ruleatlas.engine.readers.jsonlog import read_json
from ruleatlas.engine.readers.xmllog import read_xml
from ruleatlas.model import AtlasError

__all__ = [
    "Event",
    "EventReadError",
    "ReadError",
    "detect_format",
    "read_events",
    "read_file",
    "read_stream",
]

Report = Callable[[ReadError], None]


class EventReadError(AtlasError):
    """Raised in strict mode (no ``errors`` list) for the first unreadable file or record."""

    def __init__(self, error: ReadError) -> None:
        self.error = error
        super().__init__(str(error))


# Suffix -> format; longest suffixes first so ".tar.gz" wins over ".gz".
SUFFIXES: dict[str, str] = {
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".tar.bz2": "tar",
    ".tar.xz": "tar",
    ".tar": "tar",
    ".zip": "zip",
    ".gz": "gzip",
    ".evtx": "evtx",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".xml": "xml",
}
KNOWN_TEXT = (".log", ".txt")  # sniffed: Splunk .log files may hold XML or JSON


def _by_suffix(name: str) -> str | None:
    low = name.lower()
    for suf, fmt in SUFFIXES.items():
        if low.endswith(suf):
            return fmt
    return None


def sniff(head: bytes) -> str | None:
    """Format from the first bytes of a file (None when unknown)."""
    if head[:8] == EVTX_MAGIC:
        return "evtx"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 (Event Viewer "Save as XML")
        return "xml" if "<Event" in head.decode("utf-16", errors="ignore") else None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return "json"
    if b"<Event" in head:
        return "xml"
    return None


def _choose(by_suffix: str | None, sniffed: str | None) -> str | None:
    """Content wins when it is clear (a ``.json`` that holds XML records, a ``.log`` that is an
    EVTX file); the suffix decides otherwise (a ``.evtx`` of junk is reported as not EVTX)."""
    if by_suffix == "tar" and sniffed in (None, "gzip", "tar"):
        return "tar"  # tarfile reads its own compression (and ignores trailing padding)
    if sniffed is not None and (by_suffix in (None, "json", "xml") or sniffed != "json"):
        return sniffed
    return by_suffix


SNIFF = 16384  # bytes read to recognise a file


def detect_format(path: str | os.PathLike[str]) -> str | None:
    """``evtx``, ``json``, ``xml``, ``zip``, ``tar``, ``gzip`` or None."""
    name = os.fspath(path)
    with open(name, "rb") as fh:
        head = fh.read(SNIFF)
    return _choose(_by_suffix(name), sniff(head))


def _reporter(errors: list[ReadError] | None) -> Report:
    if errors is None:

        def strict(e: ReadError) -> None:
            raise EventReadError(e)

        return strict
    return errors.append


def read_stream(
    stream: IO[bytes], name: str, fmt: str | None, report: Report
) -> Iterator[Event]:
    """Events of an open binary stream (an archive member) of format ``fmt`` (sniffed when
    None). Streams must support ``peek`` or be buffered readers."""
    if fmt in (None, "json", "xml"):
        peek = getattr(stream, "peek", None)
        head = peek(SNIFF)[:SNIFF] if peek else b""
        fmt = _choose(fmt, sniff(head))
    if fmt == "json":
        yield from read_json(stream, name, report)
    elif fmt == "xml":
        yield from read_xml(stream, name, report)
    elif fmt == "evtx":
        yield from archive.read_evtx_stream(stream, name, report)
    elif fmt in ("zip", "tar", "gzip"):
        yield from archive.READERS[fmt](stream, name, report)
    else:
        report(ReadError(name, 0, "unknown log format (not EVTX, JSON or event XML)", "file"))


def read_file(path: str | os.PathLike[str], report: Report) -> Iterator[Event]:
    """Events of one file, dispatched on its type."""
    name = os.fspath(path)
    try:
        fmt = detect_format(name)
    except OSError as e:
        report(ReadError(name, 0, f"cannot read: {e.strerror or e}", "file"))
        return
    if fmt == "evtx":
        yield from read_evtx(name, name, report)
        return
    try:
        fh = open(name, "rb", buffering=1 << 20)
    except OSError as e:
        report(ReadError(name, 0, f"cannot read: {e.strerror or e}", "file"))
        return
    with fh:
        if fmt in archive.PATH_READERS:
            yield from archive.PATH_READERS[fmt](fh, name, report)
        else:
            yield from read_stream(fh, name, fmt, report)


def _expand(paths: Iterable[str | os.PathLike[str]], report: Report) -> Iterator[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for sub in sorted(path.rglob("*")):
                if sub.is_file() and not sub.name.startswith("."):
                    if _by_suffix(sub.name) or sub.suffix.lower() in KNOWN_TEXT:
                        yield sub
        elif path.exists():
            yield path
        else:
            report(ReadError(str(path), 0, "no such file or directory", "file"))


def read_events(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    errors: list[ReadError] | None = None,
) -> Iterator[Event]:
    """Every event of every path (files, folders read recursively, archives read in place).

    Problems are appended to ``errors`` and reading goes on; with ``errors=None`` the first
    problem raises :class:`EventReadError`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    report = _reporter(errors)
    for path in _expand(paths, report):
        yield from read_file(path, report)
