"""The one bounded cache: at most ``maxsize`` entries, emptied when full or when its owner
changes (a macro table's expansions are never given for another table)."""

from __future__ import annotations

import pytest

from ruleatlas.caching import BoundedCache


def test_put_empties_a_full_cache_then_remembers() -> None:
    c: BoundedCache[str, int] = BoundedCache(2)
    assert c.put("a", 1) == 1
    c.put("b", 2)
    assert dict(c) == {"a": 1, "b": 2}
    c.put("c", 3)  # full: forget everything, keep the new entry
    assert dict(c) == {"c": 3}
    assert c.get("a") is None


def test_bind_to_another_owner_empties_the_cache() -> None:
    first, second = {"m": "x"}, {"m": "x"}  # equal, but not the same table
    c: BoundedCache[str, str] = BoundedCache(8)
    c.bind(first)
    c.put("`m`", "x")
    c.bind(first)
    assert c.get("`m`") == "x"
    c.bind(second)
    assert len(c) == 0


def test_a_cache_needs_room_for_one_entry() -> None:
    with pytest.raises(ValueError, match="room for one entry, not 0"):
        BoundedCache(0)
