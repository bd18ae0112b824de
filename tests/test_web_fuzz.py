"""Fuzzing the JSON API with schemathesis: every operation of ``/api/openapi.json`` called with
generated parameters (in-process over ASGI) must never answer 500 and must answer what the
description says (status codes, content type, body schema).

Bounded: ``MAX_EXAMPLES`` examples per operation, no shrinking past a failure's first form,
on a small hand-made catalog (hostile ids and text included), so the run stays under a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from ruleatlas.build import build
from ruleatlas.web.app import create_app
from test_web_server import make_repo

MAX_EXAMPLES = 60  # per operation


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fuzz")
    db = base / "atlas.db"
    build([make_repo(base, huge=False)], db, workers=1)
    return db


def check(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.path, case.path_parameters, case.query,
                                        response.text[:300])
    case.validate_response(response)


def test_api_never_500_and_matches_its_schema(fuzz_db: Path) -> None:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app(fuzz_db))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # every /api page is described
    for op in operations:
        run = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                       database=None, phases=[Phase.explicit, Phase.generate],
                       suppress_health_check=list(HealthCheck))(given(case=op.as_strategy())(check))
        run()
