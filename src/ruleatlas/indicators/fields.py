"""Canonical field names: the alias table (``aliases.yaml``) loaded once, looked up per field.

Why a table and not code: which Splunk CIM field stands for which Sigma/Sysmon field is a fact
about vendors' schemas that people will want to extend (Elastic ECS, KQL tables) without reading
Python. This module only knows how to read the table and apply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from ruleatlas.model import AtlasError


class AliasError(AtlasError):
    """The alias table is malformed (a name mapped to two fields, an unknown key, ...)."""


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What the alias table says about one field name as written.

    ``key`` is the canonical field name used for counting; ``basename`` is True when the name
    holds only the last path component of ``key`` (so values are keyed as ``*\\value``);
    ``token`` is True when the name holds single tokens of ``key`` (ECS ``process.args``: one
    argument of the command line), so values are keyed as ``*value*``;
    ``path`` is True when ``key`` holds file-system paths (``/`` keyed as ``\\``);
    ``known`` is False when the name is not in the table (then ``key`` is the name itself).
    """

    key: str
    basename: bool = False
    path: bool = False
    known: bool = False
    token: bool = False


@dataclass(frozen=True, slots=True)
class AliasTable:
    """Lower-cased name -> :class:`FieldInfo`; built from the YAML entries."""

    names: dict[str, FieldInfo]
    entries: tuple[dict[str, Any], ...]

    def lookup(self, name: str, datamodel: str | None = None) -> FieldInfo:
        """Canonical info for ``name``; tries ``Dataset.name`` when a bare datamodel field is
        given with its datamodel (``process_name`` + ``Endpoint.Processes``)."""
        low = name.lower()
        hit = self.names.get(low)
        if hit is None and datamodel and "." not in name:
            dataset = datamodel.rsplit(".", 1)[-1].lower()
            hit = self.names.get(f"{dataset}.{low}")
        return hit if hit is not None else FieldInfo(key=name)


_ENTRY_KEYS = {"field", "same", "basename", "token", "path"}


def parse_table(doc: Any, where: str = "aliases.yaml") -> AliasTable:
    """Build an :class:`AliasTable` from the parsed YAML; errors name the entry."""
    if not isinstance(doc, dict) or not isinstance(doc.get("aliases"), list):
        raise AliasError(f"{where}: expected a mapping with an 'aliases' list")
    names: dict[str, FieldInfo] = {}
    entries: list[dict[str, Any]] = []

    def add(name: str, info: FieldInfo, i: int) -> None:
        low = str(name).lower()
        old = names.get(low)
        if old is not None and old != info:
            raise AliasError(f"{where}: entry {i}: {name!r} already maps to {old.key!r}")
        names[low] = info

    for i, e in enumerate(doc["aliases"], 1):
        if not isinstance(e, dict) or not isinstance(e.get("field"), str):
            raise AliasError(f"{where}: entry {i}: needs a 'field' name")
        unknown = set(e) - _ENTRY_KEYS
        if unknown:
            raise AliasError(f"{where}: entry {i} ({e['field']}): unknown keys {sorted(unknown)}")
        key = e["field"]
        path = bool(e.get("path", False))
        same = FieldInfo(key=key, path=path, known=True)
        add(key, same, i)
        for n in e.get("same") or ():
            add(n, same, i)
        for n in e.get("basename") or ():
            add(n, FieldInfo(key=key, basename=True, path=path, known=True), i)
        for n in e.get("token") or ():
            add(n, FieldInfo(key=key, path=path, known=True, token=True), i)
        entries.append(dict(e))
    return AliasTable(names=names, entries=tuple(entries))


@lru_cache(maxsize=1)
def alias_table() -> AliasTable:
    """The packaged alias table, parsed once per process."""
    text = resources.files("ruleatlas.indicators").joinpath("aliases.yaml").read_text("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return parse_table(yaml.load(text, Loader=loader))


def field_info(name: str, datamodel: str | None = None) -> FieldInfo:
    """Shortcut: :meth:`AliasTable.lookup` on the packaged table."""
    return alias_table().lookup(name, datamodel)
