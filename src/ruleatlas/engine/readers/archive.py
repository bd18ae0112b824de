"""Archives read in place: ``.zip``, ``.tar`` (``.gz``/``.bz2``/``.xz``), single-file ``.gz``.

Members are streamed one after another and dispatched again by their own name and content, so
the OTRF ``.zip``/``.tar.gz`` files (JSON lines inside) are read without extracting anything.
macOS resource forks (``__MACOSX/``, ``._name``) are skipped: they are not logs. An EVTX member
is spooled to a temporary file (the parser needs to seek), in memory up to 16 MB.

Archives are bounded by :class:`ruleatlas.limits.Limits` (bombs stop with a located error):

* ``member_bytes``: decompressed bytes are counted while streaming (a header's size is only
  used to refuse a member early, never trusted to be the real size); a member over the cap is
  reported as ``archive member exceeds N MB`` and the next member is read. An EVTX member
  (spooled) or a nested zip (spooled to be seekable) is written with the same cap.
* ``archive_bytes``: all bytes decompressed while reading one archive, nested archives included;
  over it the rest of the archive is skipped.
* ``archive_depth``: an archive inside an archive inside ... deeper than this is skipped.

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
from dataclasses import dataclass, replace
from typing import IO, TypeVar

from ruleatlas.engine.events import Event, ReadError
from ruleatlas.engine.readers.evtx import read_evtx
from ruleatlas.limits import DEFAULT, LimitError, Limits, fmt_size
from ruleatlas.model import AtlasError

Report = Callable[[ReadError], None]
SPOOL = 16 << 20
BUFFER = 1 << 20
A = TypeVar("A", zipfile.ZipFile, tarfile.TarFile)
# What opening a damaged archive raises (fuzzing found "zip file version 6.4": NotImplemented).
ZIP_ERRORS: tuple[type[Exception], ...] = (zipfile.BadZipFile, OSError, EOFError,
                                           NotImplementedError, RuntimeError, ValueError)
TAR_ERRORS: tuple[type[Exception], ...] = (tarfile.TarError, OSError, EOFError)


class Budget:
    """Decompressed bytes one outer archive may still produce (shared by nested archives)."""

    __slots__ = ("archive", "limit", "used")

    def __init__(self, archive: str, limit: int) -> None:
        self.archive = archive
        self.limit = limit
        self.used = 0

    def take(self, n: int, where: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise LimitError(f"archive exceeds {fmt_size(self.limit)} decompressed "
                             f"(stopped at {where}); the rest of the archive is skipped",
                             self.archive, limit="archive_bytes")


@dataclass(frozen=True, slots=True)
class Nesting:
    """Where a stream sits: its limits, the archives around it, their shared budget."""

    limits: Limits = DEFAULT
    depth: int = 0
    budget: Budget | None = None


class Capped(io.RawIOBase):
    """A read-only stream that counts the bytes it passes on: over ``cap`` it raises
    ``archive member exceeds N MB`` for ``name``; every byte is also taken from ``budget``."""

    def __init__(self, inner: IO[bytes], name: str, cap: int | None,
                 budget: Budget | None) -> None:
        self.inner = inner
        self.name = name
        self.cap = cap
        self.budget = budget
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(b))
        n = len(data)
        self.count += n
        if self.cap is not None and self.count > self.cap:
            raise LimitError(f"archive member exceeds {fmt_size(self.cap)}", self.name,
                             limit="member_bytes")
        if self.budget is not None and n:
            self.budget.take(n, self.name)
        b[:n] = data
        return n


def _skip(member: str) -> bool:
    base = member.rsplit("/", 1)[-1]
    return member.startswith("__MACOSX/") or base.startswith("._") or not base


def _enter(name: str, report: Report, nest: Nesting) -> Nesting | None:
    """The nesting inside archive ``name``; None (reported) when it is nested too deep."""
    depth = nest.depth + 1
    if depth > nest.limits.archive_depth:
        report(ReadError(name, 0, f"archive nested deeper than {nest.limits.archive_depth} "
                                  "levels; skipped", "file"))
        return None
    budget = nest.budget or Budget(name, nest.limits.archive_bytes)
    return replace(nest, depth=depth, budget=budget)


def _too_big(mname: str, declared: int, report: Report, nest: Nesting) -> bool:
    cap = nest.limits.member_bytes
    if declared > cap:
        report(ReadError(mname, 0, f"archive member exceeds {fmt_size(cap)} "
                                   f"(its header says {declared} bytes); skipped", "file"))
        return True
    return False


def _member(stream: IO[bytes], name: str, report: Report, nest: Nesting,
            budget: bool = True) -> Iterator[Event]:
    """One member, counted (cap and budget), dispatched by name and content. A member over the
    cap is reported here; an archive over its budget stops where the budget was made."""
    from ruleatlas.engine.readers import _by_suffix, read_stream

    fmt = _by_suffix(name.rsplit("!", 1)[-1])
    capped = Capped(stream, name, nest.limits.member_bytes, nest.budget if budget else None)
    # Always our own buffer: peeking a streamed tar member's own reader seeks its archive.
    buffered = io.BufferedReader(capped, BUFFER)
    try:
        yield from read_stream(buffered, name, fmt, report, nest)
    except LimitError as e:
        if e.limit != "member_bytes" or e.path != name:
            raise
        report(ReadError(name, 0, f"{e.message}; the rest of the member is skipped", "file"))


def _owned(name: str, nest: Nesting, report: Report,
           members: Iterator[Event]) -> Iterator[Event]:
    """Events of an archive; the outermost one (which made the budget) reports its overrun."""
    try:
        yield from members
    except LimitError as e:
        if e.limit != "archive_bytes" or nest.budget is not None:
            raise
        report(ReadError(name, 0, e.message, "file"))


def _read_archive(name: str, report: Report, nest: Nesting, open_archive: Callable[[], A],
                  bad: tuple[type[Exception], ...], kind: str,
                  members: Callable[[A, str, Report, Nesting], Iterator[Event]]
                  ) -> Iterator[Event]:
    """Events of the members of one zip or tar archive: one nesting level deeper, opened (an
    archive that does not open is reported as ``bad <kind> archive``), its members owned."""
    inner = _enter(name, report, nest)
    if inner is None:
        return
    try:
        arc = open_archive()
    except AtlasError:  # the member cap, while spooling a nested zip
        raise
    except bad as e:
        report(ReadError(name, 0, f"bad {kind} archive: {e}", "file"))
        return
    with arc:
        yield from _owned(name, nest, report, members(arc, name, report, inner))


def read_zip(fh: IO[bytes], name: str, report: Report,
             nest: Nesting = Nesting()) -> Iterator[Event]:
    def open_zip() -> zipfile.ZipFile:
        return zipfile.ZipFile(fh if fh.seekable() else _spool(fh))

    yield from _read_archive(name, report, nest, open_zip, ZIP_ERRORS, "zip", _zip_members)


def _zip_members(zf: zipfile.ZipFile, name: str, report: Report,
                 nest: Nesting) -> Iterator[Event]:
    for info in zf.infolist():
        if info.is_dir() or _skip(info.filename):
            continue
        mname = f"{name}!{info.filename}"
        if _too_big(mname, info.file_size, report, nest):
            continue
        try:
            with zf.open(info) as raw:
                yield from _member(raw, mname, report, nest)
        except AtlasError:  # a limit, or strict reading's first error: not a zip problem
            raise
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError,
                RuntimeError, ValueError) as e:  # RuntimeError: encrypted member
            report(ReadError(mname, 0, f"bad zip member: {e}", "file"))


def read_tar(fh: IO[bytes], name: str, report: Report,
             nest: Nesting = Nesting()) -> Iterator[Event]:
    def open_tar() -> tarfile.TarFile:
        return tarfile.open(fileobj=fh, mode="r|*")

    yield from _read_archive(name, report, nest, open_tar, TAR_ERRORS, "tar", _tar_members)


def _tar_members(tf: tarfile.TarFile, name: str, report: Report,
                 nest: Nesting) -> Iterator[Event]:
    """Tar sizes are exact (tarfile reads ``m.size`` bytes of each member, skipped or not),
    so every member's size is taken from the budget up front, the read members counted again
    only against the member cap."""
    assert nest.budget is not None
    try:
        for m in tf:
            mname = f"{name}!{m.name}"
            nest.budget.take(max(m.size, 0), mname)
            if not m.isfile() or _skip(m.name) or _too_big(mname, m.size, report, nest):
                continue
            f = tf.extractfile(m)
            if f is None:
                continue
            try:
                yield from _member(f, mname, report, nest, budget=False)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                report(ReadError(mname, 0, f"bad tar member: {e}", "file"))
                return
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        report(ReadError(name, 0, f"bad tar archive: {e}", "file"))


def read_gzip(fh: IO[bytes], name: str, report: Report,
              nest: Nesting = Nesting()) -> Iterator[Event]:
    """A ``.gz`` file: a tarball, or one compressed log (``x.json.gz``, ``x.log.gz``)."""
    inner = _enter(name, report, nest)
    if inner is None:
        return
    yield from _owned(name, nest, report, _gzip_body(fh, name, report, inner))


def _gzip_body(fh: IO[bytes], name: str, report: Report, nest: Nesting) -> Iterator[Event]:
    from ruleatlas.engine.readers import read_stream, sniff

    try:
        gz = gzip.GzipFile(fileobj=fh)
        head = gz.peek(65536)[:65536]
    except (OSError, EOFError) as e:
        report(ReadError(name, 0, f"bad gzip file: {e}", "file"))
        return
    try:
        if sniff(head) == "tar":  # a tarball: its members are counted by read_tar
            tarred = io.BufferedReader(gz, BUFFER)  # type: ignore[arg-type,type-var]
            yield from read_tar(tarred, name, report, replace(nest, depth=nest.depth - 1))
            return
        capped = Capped(gz, name, nest.limits.member_bytes, nest.budget)  # type: ignore[arg-type]
        try:
            yield from read_stream(io.BufferedReader(capped, BUFFER), name, sniff(head), report,
                                   nest)
        except LimitError as e:
            if e.limit != "member_bytes" or e.path != name:
                raise
            report(ReadError(name, 0, f"{e.message} decompressed; the rest is skipped", "file"))
    except (OSError, EOFError, zlib.error) as e:
        report(ReadError(name, 0, f"bad gzip data: {e}", "file"))


def _spool(stream: IO[bytes]) -> IO[bytes]:
    """A seekable copy of ``stream`` (in memory up to 16 MB, then a temporary file). The
    stream of a member is :class:`Capped`, so the copy never exceeds the member cap."""
    tmp = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # closed by the caller
    try:
        while True:
            block = stream.read(BUFFER)
            if not block:
                break
            tmp.write(block)
    except BaseException:
        tmp.close()
        raise
    tmp.seek(0)
    return tmp  # type: ignore[return-value]


def read_evtx_stream(stream: IO[bytes], name: str, report: Report,
                     nest: Nesting = Nesting()) -> Iterator[Event]:
    """An EVTX file inside an archive: spooled (capped), then parsed like a file."""
    tmp = _spool(stream)
    try:
        yield from read_evtx(tmp, name, report)
    finally:
        tmp.close()


READERS: dict[str, Callable[[IO[bytes], str, Report, Nesting], Iterator[Event]]] = {
    "zip": read_zip,
    "tar": read_tar,
    "gzip": read_gzip,
}
PATH_READERS = READERS
