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
raises :class:`EventReadError`. Each input given (or found in a folder) is accounted for by an
:class:`InputRead` (events, errors) when an ``inputs`` list is passed.

Hostile input is bounded by :class:`ruleatlas.limits.Limits` (docs/limits.md): archive members,
archives and their nesting (:mod:`.archive`), one JSON line/value or XML record
(``record_bytes``), and unreadable records per input (``skipped_records``: past it the rest of
the input is skipped with one error).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from ruleatlas.engine.events import Event, InputRead, ReadError
from ruleatlas.engine.readers import archive
from ruleatlas.engine.readers.archive import Nesting
from ruleatlas.engine.readers.evtx import MAGIC as EVTX_MAGIC
from ruleatlas.engine.readers.evtx import read_evtx
from ruleatlas.engine.readers.jsonlog import read_json
from ruleatlas.engine.readers.xmllog import read_xml
from ruleatlas.limits import LimitError, Limits
from ruleatlas.model import AtlasError

__all__ = [
    "Event",
    "EventReadError",
    "InputRead",
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
    stream: IO[bytes], name: str, fmt: str | None, report: Report, nest: Nesting = Nesting()
) -> Iterator[Event]:
    """Events of an open binary stream (an archive member) of format ``fmt`` (sniffed when
    None). Streams must support ``peek`` or be buffered readers."""
    peek = getattr(stream, "peek", None)
    if peek is not None and not peek(1):
        report(ReadError(name, 0, "empty file", "file"))
        return
    if fmt in (None, "json", "xml"):
        head = peek(SNIFF)[:SNIFF] if peek else b""
        fmt = _choose(fmt, sniff(head))
    if fmt == "json":
        yield from read_json(stream, name, report, nest.limits)
    elif fmt == "xml":
        yield from read_xml(stream, name, report, nest.limits)
    elif fmt == "evtx":
        yield from archive.read_evtx_stream(stream, name, report, nest)
    elif fmt in ("zip", "tar", "gzip"):
        yield from archive.READERS[fmt](stream, name, report, nest)
    else:
        report(ReadError(name, 0, "unknown log format (not EVTX, JSON or event XML)", "file"))


class _Tally:
    """The report of one input: counts its errors and stops it (``LimitError``) once
    ``limit`` records were unreadable."""

    __slots__ = ("errors", "events", "limit", "records", "report", "unit")

    def __init__(self, report: Report, limit: int) -> None:
        self.report = report
        self.limit = limit
        self.events = 0
        self.errors = 0
        self.records = 0
        self.unit = "file"  # of the last unreadable record

    def final(self, e: ReadError) -> None:
        """The error that ends the input (not counted as one more record)."""
        self.report(e)
        self.errors += 1

    def __call__(self, e: ReadError) -> None:
        self.report(e)
        self.errors += 1
        if e.unit != "file":
            self.unit = e.unit
            self.records += 1
            if self.records >= self.limit:
                raise LimitError(f"too many unreadable records ({self.limit}): rest of file "
                                 "skipped", e.file, limit="skipped_records", position=e.position)


def _read_input(name: str, tally: _Tally, limits: Limits) -> Iterator[Event]:
    """One input's events; an input that gives neither an event nor an error (``[]``, an
    archive of directories) is reported, so it never passes for a log read whole."""
    try:
        for ev in _read_path(name, tally, limits):
            tally.events += 1
            yield ev
    except LimitError as e:  # too many bad records (or a limit no archive level handled)
        tally.final(ReadError(e.path or name, e.position or 0, e.message,
                              tally.unit if e.position else "file"))
    if not tally.events and not tally.errors:
        tally.final(ReadError(name, 0, "no events in this file", "file"))


def _read_path(name: str, report: Report, limits: Limits) -> Iterator[Event]:
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
            yield from archive.PATH_READERS[fmt](fh, name, report, Nesting(limits))
        else:
            yield from read_stream(fh, name, fmt, report, Nesting(limits))


def read_file(path: str | os.PathLike[str], report: Report,
              limits: Limits | None = None) -> Iterator[Event]:
    """Events of one file, dispatched on its type."""
    limits = limits or Limits.from_env()
    yield from _read_input(os.fspath(path), _Tally(report, limits.skipped_records), limits)


def _is_log(sub: Path) -> bool:
    return (sub.is_file() and not sub.name.startswith(".")
            and (_by_suffix(sub.name) is not None or sub.suffix.lower() in KNOWN_TEXT))


def _expand(paths: Iterable[str | os.PathLike[str]], report: Report,
            inputs: list[InputRead] | None) -> Iterator[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = False
            for sub in sorted(path.rglob("*")):
                if _is_log(sub):
                    found = True
                    yield sub
            if found:
                continue
            reason = "no log files (EVTX, JSON, XML, archives) in this folder"
        elif path.exists():
            yield path
            continue
        else:
            reason = "no such file or directory"
        report(ReadError(str(path), 0, reason, "file"))
        if inputs is not None:
            inputs.append(InputRead(str(path), 0, 1))


def read_events(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    errors: list[ReadError] | None = None,
    limits: Limits | None = None,
    inputs: list[InputRead] | None = None,
) -> Iterator[Event]:
    """Every event of every path (files, folders read recursively, archives read in place).

    Problems are appended to ``errors`` and reading goes on; with ``errors=None`` the first
    problem raises :class:`EventReadError`. ``limits`` default to :meth:`Limits.from_env`;
    ``inputs`` receives one :class:`InputRead` per input file once it has been read.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    limits = limits or Limits.from_env()
    report = _reporter(errors)
    for path in _expand(paths, report, inputs):
        tally = _Tally(report, limits.skipped_records)
        yield from _read_input(str(path), tally, limits)
        if inputs is not None:
            inputs.append(InputRead(str(path), tally.events, tally.errors))
