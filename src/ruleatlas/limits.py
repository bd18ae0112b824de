"""Every size limit of Rule Atlas, as named data in one place (docs/limits.md is the table).

Rule Atlas reads files written by strangers (rule repositories, logs from compromised hosts).
Each input it reads in one piece is bounded here; going over a limit is a located error
(:class:`LimitError`, or the reader's own error record carrying its message), never a crash, a
hang or unbounded memory.

Defaults are :class:`Limits`' field defaults. Each field can be set with the environment
variable ``RULEATLAS_MAX_<FIELD NAME IN UPPER CASE>`` (``RULEATLAS_MAX_MEMBER_BYTES=64M``) and,
for ``ruleatlas hunt``, with ``--limit member_bytes=64M``. Sizes take a ``K``/``M``/``G``
suffix (binary: ``1M`` is 2**20 bytes, which messages write as ``1 MB``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

from ruleatlas.model import AtlasError

__all__ = ["ENV_PREFIX", "LimitError", "Limits", "fmt_size", "parse_size"]

ENV_PREFIX = "RULEATLAS_MAX_"
KB = 1 << 10
MB = 1 << 20
GB = 1 << 30


class LimitError(AtlasError):
    """Input over one of the :class:`Limits`: ``archive member exceeds 256 MB (a.zip!b.json)``.

    ``limit`` names the :class:`Limits` field that was exceeded; ``path`` is the file (an
    archive member is ``archive!member``) and ``position`` a line/record/byte when known.
    """

    def __init__(self, message: str, path: str | None = None, *, limit: str,
                 position: int | None = None) -> None:
        super().__init__(message, None)
        self.limit = limit
        self.path = path
        self.position = position
        if path:
            where = f"{path}:{position}" if position else path
            self.args = (f"{message} ({where})",)


def _meta(unit: str, what: str, error: str) -> dict[str, str]:
    return {"unit": unit, "what": what, "error": error}


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits; defaults sized from the corpora (largest rule file 295 KB, largest OTRF
    archive member 87.5 MB, no nested archive, events of a few KB)."""

    rule_file_bytes: int = field(default=4 * MB, metadata=_meta(
        "bytes", "a rule file read by a source (Sigma, Splunk)",
        "load error `rule file exceeds 4 MB (N bytes)`, kind `limit`; the file is not read"))
    fts_text_chars: int = field(default=256 * KB, metadata=_meta(
        "chars", "text of one rule column indexed for full-text search (a prefix is indexed)",
        "none: the text past the limit is not searchable"))
    snippet_text_chars: int = field(default=8 * KB, metadata=_meta(
        "chars", "text of one rule column a search result's snippet is cut from (FTS5 "
        "snippet() costs the square of the matches in the text)",
        "none: a longer column gives no snippet (the title or description gives it)"))
    query_seconds: int = field(default=5, metadata=_meta(
        "seconds", "SQLite work of one web page or /api call (every query, FTS functions too)",
        "HTTP 503 `query took longer than 5s`"))
    rule_ref_chars: int = field(default=512, metadata=_meta(
        "chars", "a rule id, title or path given to `show`, a page or the API",
        "a client error: HTTP 400/404 (never 500), CLI exit 1"))
    member_bytes: int = field(default=256 * MB, metadata=_meta(
        "bytes", "one decompressed archive member (zip, tar, gzip), counted while streaming",
        "read error `archive member exceeds 256 MB`; the next member is read"))
    archive_bytes: int = field(default=1 * GB, metadata=_meta(
        "bytes", "all decompressed bytes of one archive, nested archives included",
        "read error `archive exceeds 1024 MB decompressed`; the rest of the archive is skipped"))
    archive_depth: int = field(default=3, metadata=_meta(
        "levels", "archives inside archives (the outer archive is level 1)",
        "read error `archive nested deeper than 3 levels`; that member is skipped"))
    record_bytes: int = field(default=16 * MB, metadata=_meta(
        "bytes", "one record read in one piece: a JSON line, a JSON value, an XML <Event>",
        "read error `JSON line exceeds 16 MB` (or value, record); the next one is read"))
    samples_file_bytes: int = field(default=1 * MB, metadata=_meta(
        "bytes", "a samples file given to `ruleatlas test --samples` (YAML, read in one piece)",
        "error `samples file exceeds 1 MB (N bytes); not read`, exit code 2"))
    columnar_file_bytes: int = field(default=256 * MB, metadata=_meta(
        "bytes", "one file of a converted folder read by Spark's plans (`hunt --engine spark`): "
        "its bytes, and its column data once decoded (from the Parquet footer)",
        "read error `converted file exceeds 256 MB`; the file is not read, the others are"))
    skipped_records: int = field(default=10_000, metadata=_meta(
        "records", "unreadable records of one input file before the rest of it is skipped",
        "read error `too many unreadable records (10000): rest of file skipped`"))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def env_var(cls, name: str) -> str:
        return ENV_PREFIX + name.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """Defaults overridden by ``RULEATLAS_MAX_*`` variables; a bad value is a LimitError."""
        env = os.environ if env is None else env
        got: dict[str, int] = {}
        for name in cls.names():
            var = cls.env_var(name)
            if env.get(var, "").strip():
                got[name] = parse_size(env[var], var)
        return cls(**got) if got else DEFAULT

    def with_options(self, options: Iterable[str]) -> Limits:
        """These limits with ``NAME=VALUE`` overrides (the ``--limit`` CLI option)."""
        got: dict[str, int] = {}
        for opt in options:
            name, sep, value = opt.partition("=")
            name = name.strip().lower().replace("-", "_")
            if name.startswith("max_"):
                name = name[4:]
            if not sep or name not in self.names():
                raise LimitError(f"--limit wants NAME=VALUE with NAME one of "
                                 f"{', '.join(self.names())}; got {opt!r}", limit="option")
            got[name] = parse_size(value, f"--limit {name}")
        return replace(self, **got) if got else self


DEFAULT = Limits()

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": KB, "m": MB, "g": GB}


def parse_size(text: str, what: str = "limit") -> int:
    """``"256M"`` -> 268435456; plain numbers are bytes (or counts). Raises LimitError."""
    m = _SIZE.match(text)
    if m is None:
        raise LimitError(f"{what}: not a size or count: {text!r} (e.g. 4096, 64K, 256M, 1G)",
                         limit="option")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def fmt_size(n: int) -> str:
    """Bytes as the messages write them: ``256 MB``, ``64 KB``, ``1000 bytes``."""
    if n >= MB and n % MB == 0:
        return f"{n // MB} MB"
    if n >= KB and n % KB == 0:
        return f"{n // KB} KB"
    return f"{n} bytes"
