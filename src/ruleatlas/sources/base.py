"""The contract every source reader fulfils.

A reader lists the rule files of a repository, turns one file into a :class:`FileResult`
(rules and/or located load errors, never an exception), and reads the repository's side tables
(Splunk macros, stories, data sources, lookups). Readers are pure: no database, no printing; the
build pipeline calls them, possibly from worker processes, so ``load_file`` must be picklable-safe
(module-level state only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ruleatlas.model import FileResult, LoadError, Macro


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
