"""Source readers: repositories into Rule records, auto-detected from the folder layout.

``SOURCES`` maps a source name to its reader; ``detect(root)`` names the reader for a folder.
Adding a source is adding an entry (house rule: dict dispatch tables).
"""

from __future__ import annotations

from pathlib import Path

from ruleatlas.sources.base import SideTables, Source
from ruleatlas.sources.elastic import ElasticSource
from ruleatlas.sources.sigma import SigmaSource
from ruleatlas.sources.splunk import SplunkSource, load_macros

SOURCES: dict[str, Source] = {
    "sigma": SigmaSource(),
    "splunk": SplunkSource(),
    "elastic": ElasticSource(),
}

# Most specific layout first: Splunk (``detections/`` + ``macros/``), Elastic (``rules/`` holding
# ``.toml`` files), then Sigma (any ``rules*`` folder holding YAML).
DETECT_ORDER: tuple[str, ...] = ("splunk", "elastic", "sigma")


def detect(root: Path) -> Source | None:
    """The reader whose layout ``root`` has (in :data:`DETECT_ORDER`, most specific first), or
    None when no reader recognises it."""
    root = Path(root)
    if not root.is_dir():
        return None
    for name in DETECT_ORDER:
        if SOURCES[name].detect(root):
            return SOURCES[name]
    for src in SOURCES.values():
        if src.detect(root):
            return src
    return None


def source_label(name: str) -> str:
    """The display name of a source (its own name when unknown)."""
    src = SOURCES.get(name)
    return src.label if src is not None else name


__all__ = ["DETECT_ORDER", "SOURCES", "SideTables", "Source", "detect", "load_macros",
           "source_label"]
