"""Source readers: repositories into Rule records, auto-detected from the folder layout.

``SOURCES`` maps a source name to its reader; ``detect(root)`` names the reader for a folder.
Adding a source (Elastic) is adding an entry (house rule: dict dispatch tables).
"""

from __future__ import annotations

from pathlib import Path

from ruleatlas.sources.base import SideTables, Source
from ruleatlas.sources.sigma import SigmaSource
from ruleatlas.sources.splunk import SplunkSource, load_macros

SOURCES: dict[str, Source] = {
    "sigma": SigmaSource(),
    "splunk": SplunkSource(),
}


def detect(root: Path) -> Source | None:
    """The reader whose layout ``root`` has (Splunk first: its layout is the more specific), or
    None when no reader recognises it."""
    root = Path(root)
    if not root.is_dir():
        return None
    for name in ("splunk", "sigma"):
        if SOURCES[name].detect(root):
            return SOURCES[name]
    for src in SOURCES.values():
        if src.detect(root):
            return src
    return None


__all__ = ["SOURCES", "SideTables", "Source", "detect", "load_macros"]
