"""The one bounded cache of Rule Atlas, and the sizes of every cache, named in one place.

A build or a hunt meets the same few thousand strings again and again (condition strings,
macro calls, Image paths), so parsing or testing each distinct one once pays. Where the work
is a pure function of hashable arguments, ``functools.lru_cache(maxsize=<a size below>)`` is
used. Where it is not (the answer depends on a table passed beside the key, or the cache lives
inside one compiled matcher), :class:`BoundedCache` is used: a dict that forgets everything
when it is full. Forgetting all at once costs nothing per hit (``cache.get`` is the plain dict
method), and the working set of a build refills it within a few rules.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

# ---- sizes (entries) -----------------------------------------------------------------------
SIGMA_STRINGS = 65_536  # distinct Sigma string values built into pySigma SigmaStrings
SIGMA_CONDITIONS = 8_192  # distinct Sigma condition strings parsed by pySigma
SIGMA_SELECTIONS = 8_192  # distinct ("1 of pattern", detection names) resolutions
SPL_EXPANDED_STAGES = 8_192  # distinct macro-expanded SPL stages parsed
SPL_MACRO_CALLS = 16_384  # distinct top-level macro calls expanded, per macro table
SPL_DRILLDOWNS = 4_096  # distinct drilldown searches analyzed, per macro table
CHANNEL_NAMES = 10_000  # distinct channel / source values mapped to a canonical channel
VALUE_TESTS = 4_096  # distinct string values whose answer one compiled value test remembers
FIELD_PREFILTER = 20_000  # distinct values per field whose pre-filter hits one matcher keeps
CONDITION_SYNTAX = 4_096  # distinct Sigma conditions checked against pySigma's grammar
SPL_REGEXES = 4_096  # distinct patterns of SPL functions (like, match, replace) compiled
KEYWORD_GATES = 256  # distinct keyword sets whose pre-filter gates were chosen
LINE_STARTS = 16  # texts whose line offsets are kept (one search gives many spans)
GIT_REMOTES = 32  # clones whose GitHub remote was read
ATTACK_BUNDLES = 4  # ATT&CK data sets loaded (the bundled one, and STIX files by path)
SPARK_TASK_ENGINES = 2  # shipped catalogs whose engine one Spark Python worker keeps built


class BoundedCache(dict[K, V]):
    """A dict of at most ``maxsize`` entries: :meth:`put` empties it when it is full.

    ``owner``: an object the entries are valid for (a macro table). :meth:`bind` with another
    object empties the cache, so answers computed for one table are never given for another.
    """

    __slots__ = ("maxsize", "owner")

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        if maxsize < 1:
            raise ValueError(f"a bounded cache needs room for one entry, not {maxsize}")
        self.maxsize = maxsize
        self.owner: object | None = None

    def put(self, key: K, value: V) -> V:
        """Remember ``value`` for ``key`` (emptying the cache first when it is full)."""
        if len(self) >= self.maxsize:
            self.clear()
        self[key] = value
        return value

    def bind(self, owner: object) -> None:
        """Entries from now on are valid for ``owner``; a different owner empties the cache."""
        if self.owner is not owner:
            self.clear()
            self.owner = owner
