"""Shared fixtures: the corpus lives in ../shared/corpus relative to the project root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
SIGMA = CORPUS / "sigma"
SPLUNK = CORPUS / "security_content"
OTRF = CORPUS / "otrf"
ELASTIC = CORPUS / "elastic"
EXAMPLE_PAGE = (ROOT.parent / "shared" / "spec" / "rule-page-example.txt").resolve()
EXAMPLE_ID = "0734bd21-2769-4972-a5f1-78bb1e011224"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def corpus_db(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole corpus (Sigma + security_content + Elastic detection-rules) built once per
    session by the real pipeline (``ruleatlas.build.build``) into a temporary catalog file;
    returns its path. Open it read-only (``store.Catalog.open(path, readonly=True)``): other
    tests share it."""
    from ruleatlas.build import build

    db = tmp_path_factory.mktemp("corpus_db") / "catalog.db"
    build([SIGMA, SPLUNK, ELASTIC], db)
    return db


def spl_rule(search: str) -> Any:
    """A Splunk search, analyzed by the real SPL analyzer (no macros), prepared for the
    engine."""
    from ruleatlas.engine.runner import prepare
    from ruleatlas.languages.spl.analyze import analyze_query
    from ruleatlas.model import Rule

    r = Rule(id="r1", source="splunk", path="detections/x.yml", title="T", language="spl",
             query=search, body="b")
    return prepare(r, analyze_query(search, {}))


def run_spl(search: str, rows: list[dict[str, Any]], route: bool = True) -> list[dict[str, Any]]:
    """The findings' matched fields (plus ``_pos``, the event's position) of one search over
    hand-made events."""
    from ruleatlas.engine.events import Event
    from ruleatlas.engine.runner import Engine

    er = spl_rule(search)
    assert er.runnable, er.reason
    evs = [Event(dict(r), "mem", i) for i, r in enumerate(rows, 1)]
    return [f.matched | {"_pos": f.event.position}
            for f in Engine([er], route=route).run(evs)]
