"""Archives read in place: ``.zip``, ``.tar`` (``.gz``/``.bz2``/``.xz``), single-file ``.gz``.

Members are streamed one after another and dispatched again by their own name and content, so
the OTRF ``.zip``/``.tar.gz`` files (JSON lines inside) are read without extracting anything.
macOS resource forks (``__MACOSX/``, ``._name``) are skipped: they are not logs. An EVTX member
is spooled to a temporary file (the parser needs to seek), in memory up to 16 MB.

Event and error file names are ``archive!member``.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from ruleatlas.engine.events import Event, ReadError
from ruleatlas.engine.readers.evtx import read_evtx

Report = Callable[[ReadError], None]
SPOOL = 16 << 20


def _skip(member: str) -> bool:
    base = member.rsplit("/", 1)[-1]
    return member.startswith("__MACOSX/") or base.startswith("._") or not base


def _member(stream: IO[bytes], name: str, report: Report) -> Iterator[Event]:
    from ruleatlas.engine.readers import _by_suffix, read_stream

    fmt = _by_suffix(name.rsplit("!", 1)[-1])
    # Always our own buffer: peeking a streamed tar member's own reader seeks its archive.
    buffered = io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type,type-var]
    yield from read_stream(buffered, name, fmt, report)


def read_zip(fh: IO[bytes], name: str, report: Report) -> Iterator[Event]:
    try:
        if not fh.seekable():
            fh = _spool(fh)
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        report(ReadError(name, 0, f"bad zip archive: {e}", "file"))
        return
    with zf:
        for info in zf.infolist():
            if info.is_dir() or _skip(info.filename):
                continue
            mname = f"{name}!{info.filename}"
            try:
                with zf.open(info) as raw:
                    yield from _member(raw, mname, report)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                report(ReadError(mname, 0, f"bad zip member: {e}", "file"))


def read_tar(fh: IO[bytes], name: str, report: Report) -> Iterator[Event]:
    try:
        tf = tarfile.open(fileobj=fh, mode="r|*")
    except (tarfile.TarError, OSError, EOFError) as e:
        report(ReadError(name, 0, f"bad tar archive: {e}", "file"))
        return
    with tf:
        try:
            for m in tf:
                if not m.isfile() or _skip(m.name):
                    continue
                mname = f"{name}!{m.name}"
                f = tf.extractfile(m)
                if f is None:
                    continue
                try:
                    yield from _member(f, mname, report)
                except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                    report(ReadError(mname, 0, f"bad tar member: {e}", "file"))
                    return
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            report(ReadError(name, 0, f"bad tar archive: {e}", "file"))


def read_gzip(fh: IO[bytes], name: str, report: Report) -> Iterator[Event]:
    """A ``.gz`` file: a tarball, or one compressed log (``x.json.gz``, ``x.log.gz``)."""
    from ruleatlas.engine.readers import read_stream, sniff

    inner = name[:-3] if name.lower().endswith(".gz") else name
    try:
        gz = gzip.GzipFile(fileobj=fh)
        buffered = io.BufferedReader(gz, 1 << 20)  # type: ignore[arg-type,type-var]
        head = buffered.peek(65536)[:65536]
    except (OSError, EOFError) as e:
        report(ReadError(name, 0, f"bad gzip file: {e}", "file"))
        return
    if sniff(head) == "tar":
        yield from read_tar(buffered, name, report)
        return
    try:
        yield from read_stream(buffered, inner, sniff(head), report)
    except (OSError, EOFError, zlib.error) as e:
        report(ReadError(name, 0, f"bad gzip data: {e}", "file"))


def _spool(stream: IO[bytes]) -> IO[bytes]:
    tmp = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # closed by the caller
    while True:
        block = stream.read(1 << 20)
        if not block:
            break
        tmp.write(block)
    tmp.seek(0)
    return tmp  # type: ignore[return-value]


def read_evtx_stream(stream: IO[bytes], name: str, report: Report) -> Iterator[Event]:
    """An EVTX file inside an archive: spooled, then parsed like a file."""
    tmp = _spool(stream)
    try:
        yield from read_evtx(tmp, name, report)
    finally:
        tmp.close()


READERS: dict[str, Callable[[IO[bytes], str, Report], Iterator[Event]]] = {
    "zip": read_zip,
    "tar": read_tar,
    "gzip": read_gzip,
}
PATH_READERS = READERS
