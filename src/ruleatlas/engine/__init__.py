"""The rule engine: compiled matchers, routing, rule tests and hunting (docs/engine.md).

The public API is re-exported lazily (``from ruleatlas.engine import Engine``), so importing a
reader (``ruleatlas.engine.readers``) does not load the matcher and its automata.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "compile_node": "compile",
    "NotRunnable": "compile",
    "Engine": "runner",
    "EngineRule": "runner",
    "Finding": "runner",
    "prepare": "runner",
    "run_test": "testing",
    "run_tests": "testing",
    "TestResult": "testing",
    "HuntReport": "hunt",  # the function is ruleatlas.engine.hunt.hunt (module of that name)
    "from_db": "catalog",
    "from_repos": "catalog",
    "LoadedRule": "catalog",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'ruleatlas.engine' has no attribute {name!r}")
    return getattr(import_module(f"ruleatlas.engine.{mod}"), name)
