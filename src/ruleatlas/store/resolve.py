"""The one rule resolver: what every command and page that takes a rule does with the reference.

A reference is, in this order of precedence:

1. an exact rule id (``0734bd21-2769-4972-a5f1-78bb1e011224``);
2. a title, compared without case, when exactly one rule has it;
3. an id prefix of at least ``MIN_PREFIX_LEN`` characters (case-insensitive), when exactly one
   rule's id starts with it (``0734bd21``).

Leading and trailing spaces are ignored. A reference longer than ``MAX_REF_LEN`` characters or
holding a control character is refused before any query (:class:`BadRuleReference`): the web
answers 404, the CLI exits with code 2. No rule: :class:`RuleNotFound` (also a ``KeyError``).
Several rules: :class:`AmbiguousRule`, whose message lists up to ``MAX_CANDIDATES`` candidates.
"""

from __future__ import annotations

import re
import sqlite3

from ruleatlas.limits import DEFAULT
from ruleatlas.model import RuleRef
from ruleatlas.store.connection import CatalogError

MAX_REF_LEN = DEFAULT.rule_ref_chars  # longer than any id or title (titles stay under 200)
MIN_PREFIX_LEN = 8  # an id prefix shorter than this is not taken as one ("0734" is not)
MAX_CANDIDATES = 20  # candidates listed by an ambiguous reference
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PREFIX_END = "\U0010ffff"  # sorts after every character an id can hold


class RuleNotFound(CatalogError, KeyError):
    """No rule with that id, title or id prefix (a KeyError too, so ``except KeyError`` works)."""

    def __str__(self) -> str:
        return self.message


class BadRuleReference(CatalogError):
    """A reference that cannot name a rule: too long, or holding control characters."""


class AmbiguousRule(CatalogError):
    """A title or id prefix several rules share; ``candidates`` lists them."""

    def __init__(self, ref: str, candidates: tuple[RuleRef, ...]) -> None:
        self.candidates = candidates
        lines = "\n".join(f"  {c}" for c in candidates)
        super().__init__(f"{_shown(ref)} is ambiguous: it names {len(candidates)} rules; "
                         f"use an id:\n{lines}")


def _shown(ref: str) -> str:
    return repr(ref if len(ref) <= 80 else ref[:80] + "...")


def check_reference(ref: str) -> str:
    """``ref`` without surrounding spaces; :class:`BadRuleReference` when it cannot be one."""
    if len(ref) > MAX_REF_LEN:
        raise BadRuleReference(
            f"a rule reference is at most {MAX_REF_LEN} characters (got {len(ref)})")
    if _CONTROL.search(ref):
        raise BadRuleReference("a rule reference cannot hold control characters")
    return ref.strip()


_COLUMNS = "SELECT id, title, source, path FROM rules"


def _candidates(conn: sqlite3.Connection, where: str, params: tuple[str, ...],
                limit: int) -> tuple[RuleRef, ...]:
    rows = conn.execute(f"{_COLUMNS} WHERE {where} ORDER BY id LIMIT ?", (*params, limit))
    return tuple(RuleRef(id=str(r[0]), title=str(r[1]), source=str(r[2]), path=str(r[3]))
                 for r in rows)


def id_prefix_matches(conn: sqlite3.Connection, text: str,
                      limit: int = MAX_CANDIDATES) -> tuple[RuleRef, ...]:
    """Rules whose id starts with ``text`` (``MIN_PREFIX_LEN`` characters or more, any case);
    the search page lists them above its results."""
    t = text.strip()
    if not MIN_PREFIX_LEN <= len(t) <= MAX_REF_LEN or _CONTROL.search(t) or " " in t:
        return ()  # no id is that short or that long, or holds a space or a control char
    low = t.lower()
    return _candidates(conn, "(id >= ? AND id < ?) OR (id >= ? AND id < ?)",
                       (t, t + _PREFIX_END, low, low + _PREFIX_END), limit)


def resolve_rule(conn: sqlite3.Connection, ref: str) -> str:
    """The id of the one rule ``ref`` names (see the module doc for the rules and errors)."""
    ref = check_reference(ref)
    if conn.execute("SELECT 1 FROM rules WHERE id = ?", (ref,)).fetchone():
        return ref
    found = _candidates(conn, "title = ? COLLATE NOCASE", (ref,), MAX_CANDIDATES)
    if not found:
        found = id_prefix_matches(conn, ref)
    if len(found) == 1:
        return found[0].id
    if not found:
        raise RuleNotFound(f"no rule with id, id prefix or title {_shown(ref)}")
    raise AmbiguousRule(ref, found)


__all__ = ["MAX_REF_LEN", "MIN_PREFIX_LEN", "AmbiguousRule", "BadRuleReference",
           "RuleNotFound", "check_reference", "id_prefix_matches", "resolve_rule"]
