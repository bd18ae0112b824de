"""Shared fixtures: the corpus lives in ../shared/corpus relative to the project root."""

from __future__ import annotations

from pathlib import Path

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
    """The whole corpus (Sigma + security_content) built once per session by the real
    pipeline (``ruleatlas.build.build``) into a temporary catalog file; returns its path.
    Open it read-only (``store.Catalog.open(path, readonly=True)``): other tests share it."""
    from ruleatlas.build import build

    db = tmp_path_factory.mktemp("corpus_db") / "catalog.db"
    build([SIGMA, SPLUNK], db)
    return db
