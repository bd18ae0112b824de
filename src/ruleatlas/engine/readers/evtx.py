"""EVTX files through the Rust-backed ``evtx`` package (``PyEvtxParser.records_json``).

Records stream chunk by chunk from the Rust parser; nothing holds a whole file. Corruption is
reported, not fatal: the parser runs with ``skip_errors`` and ``validate_checksums``, and each
chunk it skips arrives as a ``RuntimeWarning`` that becomes a :class:`ReadError`; a file shorter
than its header's chunk count says is reported as truncated (the parser silently drops a
partial last chunk otherwise). A file that yields no record at all (an EVTX header over
zeros, an empty log) is reported too, so it is never taken for a clean log.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from collections.abc import Callable, Iterator
from typing import IO, Any

from evtx import PyEvtxParser

from ruleatlas.engine.events import Event, ReadError, flatten_nested

try:
    import orjson

    _loads: Callable[[str], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

MAGIC = b"ElfFile\x00"
HEADER_BLOCK = 4096
CHUNK_SIZE = 65536

Report = Callable[[ReadError], None]


def _check_size(head: bytes, size: int, name: str, report: Report) -> None:
    """Report a file cut short: fewer bytes than the header's chunk count needs."""
    if len(head) < 128 or head[:8] != MAGIC:
        return
    (chunks,) = struct.unpack_from("<H", head, 42)
    need = HEADER_BLOCK + chunks * CHUNK_SIZE
    partial = (size - HEADER_BLOCK) % CHUNK_SIZE if size > HEADER_BLOCK else 0
    if size < need or partial:
        report(ReadError(
            name, size,
            f"truncated EVTX: {size} bytes, header announces {chunks} chunk(s) "
            f"({need} bytes); records past byte {size - partial} are lost",
            "byte",
        ))


def read_evtx(
    source: str | os.PathLike[str] | IO[bytes], name: str, report: Report, threads: int = 1
) -> Iterator[Event]:
    """Every record of an EVTX file (a path or a seekable binary file object)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            size = os.path.getsize(source)
            with open(source, "rb") as fh:
                head = fh.read(128)
            arg: Any = os.fspath(source)
        else:
            source.seek(0, os.SEEK_END)
            size = source.tell()
            source.seek(0)
            head = source.read(128)
            source.seek(0)
            arg = source
        if head[:8] != MAGIC:
            report(ReadError(name, 0, "not an EVTX file (no ElfFile signature)", "file"))
            return
        _check_size(head, size, name, report)
        parser = evtx_parser(arg, threads)
    except (OSError, RuntimeError, ValueError) as e:
        report(ReadError(name, 0, f"cannot open EVTX: {e}", "file"))
        return
    n = 0
    failed = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        seen = 0
        it = parser.records_json()
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except (RuntimeError, OSError, ValueError) as e:  # not skippable: stop here
                report(ReadError(name, n + 1, f"EVTX parse error: {e}", "record"))
                failed = True
                break
            if len(caught) > seen:
                for w in caught[seen:]:
                    report(ReadError(name, n + 1, f"skipped: {w.message}", "record"))
                seen = len(caught)
            n += 1
            try:
                fields = flatten_nested(_loads(rec["data"]))
            except (ValueError, TypeError, KeyError) as e:
                report(ReadError(name, n, f"bad record JSON: {e}", "record"))
                continue
            if "EventRecordID" not in fields and rec.get("event_record_id") is not None:
                fields["EventRecordID"] = rec["event_record_id"]
            yield Event(fields, name, n)
        for w in caught[seen:]:
            report(ReadError(name, n + 1, f"skipped: {w.message}", "record"))
        if n == 0 and not caught and not failed:  # header over zeros, or an empty log
            report(ReadError(name, 0, f"no event records in this EVTX file ({size} bytes)",
                             "file"))


def evtx_parser(arg: Any, threads: int) -> Any:
    return PyEvtxParser(
        arg, number_of_threads=threads, indent=False, skip_errors=True, validate_checksums=True
    )
