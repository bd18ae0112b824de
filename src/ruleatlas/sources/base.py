"""The contract every source reader fulfils.

A reader lists the rule files of a repository, turns one file into a :class:`FileResult`
(rules and/or located load errors, never an exception), and reads the repository's side tables
(Splunk macros, stories, data sources, lookups). Readers are pure: no database, no printing; the
build pipeline calls them, possibly from worker processes, so ``load_file`` must be picklable-safe
(module-level state only).

Rule files are read through :func:`read_rule_file`, the one place a source reads bytes: a file
over ``Limits.rule_file_bytes`` is a load error (kind ``limit``) and is never read whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ruleatlas.limits import LimitError, Limits, fmt_size
from ruleatlas.model import FileResult, LoadError, Macro, Rule
from ruleatlas.sources import yamlutil


def rel_path(root: Path, path: Path) -> str:
    """``path`` relative to the repository ``root``, POSIX-style (as written when outside)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def strings(v: Any) -> tuple[str, ...]:
    """A YAML/TOML scalar or list of scalars as a tuple of non-empty strings (a mapping or a
    nested list is no string: left out)."""
    items = v if isinstance(v, (list, tuple)) else [v]
    return tuple(str(x) for x in items
                 if x is not None and not isinstance(x, (dict, list, tuple)) and str(x) != "")


def files_under(folder: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """The files below ``folder`` whose suffix is one of ``suffixes``."""
    for p in folder.rglob("*"):
        if p.suffix in suffixes and not p.is_dir():
            yield p


def load_guarded(source: str, load: Callable[[Path, Path, bytes | None], FileResult],
                 root: Path, path: Path, data: bytes | None) -> FileResult:
    """``load(root, path, data)``; an exception it lets out is recorded as an ``internal`` load
    error of the file (a reader's ``load_file`` never raises)."""
    try:
        return load(root, path, data)
    except Exception as e:  # recorded: an internal load error
        rel = rel_path(root, path)
        return FileResult(source, rel, "", errors=(
            LoadError(source, rel, f"internal error: {type(e).__name__}: {e}", kind="internal"),
        ))


def read_rule_file(source: str, rel: str, path: Path, data: bytes | None = None,
                   limits: Limits | None = None) -> bytes | LoadError:
    """The bytes of one rule (or side-table) file; a file over ``rule_file_bytes`` is a load
    error found from its size, without reading it (at most the limit + 1 bytes are read)."""
    try:
        cap = (limits or Limits.from_env()).rule_file_bytes
    except LimitError as e:
        return LoadError(source, rel, str(e), kind="limit")
    if data is not None:
        return data if len(data) <= cap else _over(source, rel, cap, len(data))
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > cap:
                return _over(source, rel, cap, size)
            got = fh.read(cap + 1)  # the file may have grown since
    except OSError as e:
        return LoadError(source, rel, f"cannot read: {e.strerror or e}", kind="io")
    return got if len(got) <= cap else _over(source, rel, cap, len(got))


@dataclass(frozen=True, slots=True)
class RuleText:
    """A rule file read and decoded: its source, path relative to the repository, the digest of
    its bytes and its text (never empty)."""

    source: str
    rel: str
    digest: str
    text: str

    def fail(self, reason: str, line: int | None = None, col: int | None = None, *,
             kind: str) -> FileResult:
        """This file as one located load error."""
        err = LoadError(self.source, self.rel, reason, line, col, kind)
        return FileResult(self.source, self.rel, self.digest, errors=(err,))

    def result(self, rule: Rule | LoadError) -> FileResult:
        """This file holding one rule, or the load error that stands for it."""
        if isinstance(rule, LoadError):
            return FileResult(self.source, self.rel, self.digest, errors=(rule,))
        return FileResult(self.source, self.rel, self.digest, rules=(rule,))


def read_rule_text(source: str, root: Path, path: Path,
                   data: bytes | None = None) -> RuleText | FileResult:
    """Read one rule file (through :func:`read_rule_file`) and decode it; a file that is
    too large, unreadable, not text or empty is a :class:`FileResult` holding the located
    error."""
    rel = rel_path(root, path)
    got = read_rule_file(source, rel, path, data)
    if isinstance(got, LoadError):
        return FileResult(source, rel, "", errors=(got,))
    digest = yamlutil.sha256(got)
    text = yamlutil.decode(got)
    if isinstance(text, yamlutil.YamlProblem):
        err = LoadError(source, rel, text.reason, text.line, text.col, text.kind)
        return FileResult(source, rel, digest, errors=(err,))
    if not text.strip():
        return FileResult(source, rel, digest, errors=(
            LoadError(source, rel, "empty file", kind="empty"),))
    return RuleText(source, rel, digest, text)


def _over(source: str, rel: str, cap: int, size: int) -> LoadError:
    return LoadError(source, rel, f"rule file exceeds {fmt_size(cap)} ({size} bytes); not read",
                     kind="limit")


@dataclass(frozen=True, slots=True)
class SideTables:
    """Repository-wide tables a source carries besides its rules.

    ``stories``: name -> dict (description, narrative, references, ...);
    ``data_sources``: name -> dict (source, sourcetype, fields, ...);
    ``lookups``: name -> dict (description, filename, fields, ...);
    ``story_members``: story name -> rule ids (when the repository lists them that way);
    ``errors``: side-table files that failed, accounted for like rule files.
    """

    macros: Mapping[str, Macro] = field(default_factory=dict)
    stories: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    data_sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    lookups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    story_members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    errors: tuple[LoadError, ...] = ()
    digest: str = ""  # content hash of every side-table file: a change re-analyzes the source


class Source(Protocol):
    """A source reader (``sigma``, ``splunk``, ``elastic``).

    ``label`` is the name users read (``Splunk``); ``side_folders`` the folders its side tables
    are read from (a rebuild that finds none of their files changed does not read them again);
    ``()`` when the source has no side tables, None to read them on every build."""

    name: str
    label: str
    side_folders: tuple[str, ...] | None

    def detect(self, root: Path) -> bool:
        """True when ``root`` looks like a clone of this source's repository."""

    def rule_files(self, root: Path) -> Iterable[Path]:
        """Every file under the rule folders that must be accounted for, sorted."""

    def load_file(self, root: Path, path: Path, data: bytes | None = None) -> FileResult:
        """One file into rules and/or located errors. Never raises for bad input."""

    def side_tables(self, root: Path) -> SideTables:
        """The repository's side tables."""
