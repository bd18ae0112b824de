"""Sigma reader on the real SigmaHQ corpus and on hand-made collections, correlations, filters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conftest import SIGMA
from ruleatlas.sources import SOURCES, detect
from ruleatlas.sources.sigma import iso_date, pysigma_dict

SRC = SOURCES["sigma"]


@pytest.fixture(scope="module")
def corpus_results():
    return [SRC.load_file(SIGMA, p) for p in SRC.rule_files(SIGMA)]


def _top(path: str) -> str:
    return path.split("/", 1)[0]


def test_detects_layout():
    assert detect(SIGMA) is SRC


def test_rule_files_are_yaml_only():
    files = list(SRC.rule_files(SIGMA))
    assert all(p.suffix in (".yml", ".yaml") for p in files)
    assert files == sorted(files)
    tops = Counter(_top(p.relative_to(SIGMA).as_posix()) for p in files)
    assert sum(n for t, n in tops.items() if t.startswith("rules")) == 3780
    assert tops["deprecated"] > 0 and tops["unsupported"] > 0
    assert "regression_data" not in tops and "tests" not in tops


def test_all_rules_star_rules_load(corpus_results):
    rules_star = [r for r in corpus_results if _top(r.path).startswith("rules")]
    assert len(rules_star) == 3780
    assert sum(len(r.rules) for r in rules_star) == 3780
    assert [str(e) for r in rules_star for e in r.errors] == []


def test_every_file_accounted_for(corpus_results):
    for r in corpus_results:
        assert r.rules or r.errors, r.path
    docs = sum(len(r.rules) + len(r.errors) for r in corpus_results)
    assert docs >= len(corpus_results)


def test_folder_status(corpus_results):
    by_top: dict[str, Counter[str | None]] = {}
    for r in corpus_results:
        for x in r.rules:
            by_top.setdefault(_top(x.path), Counter())[x.status] += 1
    assert set(by_top["deprecated"]) == {"deprecated"}
    assert set(by_top["unsupported"]) == {"unsupported"}
    assert "deprecated" not in by_top["rules"]


def test_collections_become_one_rule_per_member(corpus_results):
    (res,) = [r for r in corpus_results
              if r.path == "unsupported/windows/win_remote_service.yml"]
    assert res.errors == ()
    a, b = res.rules
    assert a.id == "4a3a2b96-d7fc-4cb9-80e4-4a545fe95f46"
    assert b.id == a.id + "#3" and b.extra["collection_id"] == a.id
    assert a.title == b.title == "Remote Service Creation"
    assert a.logsource == {"product": "windows", "service": "security"}
    assert b.logsource["service"] == "system"
    assert a.date == "2020-10-05"  # written 2020/10/05
    assert "selection2" in b.query and "7045" in b.query and "condition" in b.query
    assert b.body.startswith("logsource:") and "7045" in b.body
    raw = (SIGMA / res.path).read_text(encoding="utf-8")
    assert raw.splitlines()[b.line - 1] == "logsource:"
    assert a.attack == ("T1543.003",)


def test_one_rule_metadata(corpus_results):
    path = "rules/windows/process_creation/proc_creation_win_addinutil_uncommon_cmdline.yml"
    (res,) = [r for r in corpus_results if r.path == path]
    (rule,) = res.rules
    raw = (SIGMA / path).read_text(encoding="utf-8")
    assert rule.body == raw
    assert rule.query.startswith("detection:\n    selection_img:")
    assert rule.query.endswith("condition: all of selection_* and not 1 of filter_main_*")
    assert rule.query in raw
    assert rule.severity == "medium" and rule.status == "test" and rule.type == "detection"
    assert rule.date == "2023-09-18" and rule.language == "sigma"
    assert rule.attack == ("T1218",) and "attack.t1218" in rule.tags
    assert rule.data_sources == ("windows/process_creation",)
    assert rule.source_url == f"https://github.com/SigmaHQ/sigma/blob/master/{path}"
    assert "detection" not in rule.extra


def test_query_is_exact_slice_everywhere(corpus_results):
    for r in corpus_results:
        for x in r.rules:
            if not x.extra.get("query_generated"):
                assert x.query and x.query in x.body, x.path


def test_regression_tests_path(corpus_results):
    with_tests = [x for r in corpus_results for x in r.rules if x.tests]
    assert len(with_tests) > 50
    t = with_tests[0].tests[0]
    assert t.kind == "sigma-regression" and t.path.endswith("info.yml")


def test_dates_are_iso_strings(corpus_results):
    for r in corpus_results:
        for x in r.rules:
            assert x.date is None or (isinstance(x.date, str) and x.date[4] == "-"), x.path
            assert x.modified is None or isinstance(x.modified, str)


def test_pysigma_dict_round_trip(corpus_results):
    from sigma.rule import SigmaRule

    rules = [x for r in corpus_results[:300] for x in r.rules]
    for x in rules:
        parsed = SigmaRule.from_dict(pysigma_dict(x), collect_errors=True)
        assert parsed.errors == [], (x.path, parsed.errors)
        assert str(parsed.id) == x.extra.get("collection_id", x.id)


def test_iso_date():
    assert iso_date("2020/1/5") == "2020-01-05"
    assert iso_date("2024-09-30") == "2024-09-30"
    assert iso_date(None) is None


CORRELATION = """\
title: Many failed logins
id: 0e95725d-7320-415d-80f7-004da920fc11
status: test
level: high
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - User
    timespan: 5m
    condition:
        gte: 10
---
title: Failed login
id: 3bde8b4e-9b2f-4b2f-8b1a-2f0a4c4a1c11
name: failed_login
status: test
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID: 4625
    condition: selection
"""

FILTER = """\
title: Exclude admin hosts
id: 7a3d5f0a-1c47-4f60-9f7e-0a2b4c6d8e10
description: Global filter
logsource:
    product: windows
    category: process_creation
filter:
    rules:
        - 4f2cd9b6-4a17-440f-bb2a-687abb65993a
    selection:
        ComputerName|startswith: 'ADM-'
    condition: not selection
"""


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp_path


def test_correlation_and_filter(tmp_path: Path):
    root = _repo(tmp_path, {"rules/corr.yml": CORRELATION, "rules-x/filt.yml": FILTER,
                            "rules/README.md": "# not a rule\n"})
    assert detect(root) is SRC
    files = list(SRC.rule_files(root))
    assert [p.name for p in files] == ["corr.yml", "filt.yml"]
    corr = SRC.load_file(root, files[0])
    assert corr.errors == ()
    c, base = corr.rules
    assert (c.type, base.type) == ("correlation", "detection")
    assert c.query.startswith("correlation:\n    type: event_count")
    assert c.query.endswith("gte: 10")
    assert base.line == 15 and base.doc_index == 1 and base.body.startswith("title: Failed")
    assert c.severity == "high" and c.logsource == {}
    filt = SRC.load_file(root, files[1])
    assert filt.errors == ()
    (f,) = filt.rules
    assert f.type == "filter" and f.query.startswith("filter:\n    rules:")
    assert f.data_sources == ("windows/process_creation",)


def test_source_url_from_git_remote(tmp_path: Path):
    root = _repo(tmp_path, {"rules/a.yml": CORRELATION.split("---\n")[1]})
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(
        '[core]\n\tbare = false\n[remote "origin"]\n\turl = git@github.com:me/sigma-fork.git\n')
    (rule,) = SRC.load_file(root, root / "rules" / "a.yml").rules
    assert rule.source_url == "https://github.com/me/sigma-fork/blob/master/rules/a.yml"


def test_parsed_hand_off_is_opt_in(monkeypatch):
    from ruleatlas.sources import sigma as sigma_mod

    path = SIGMA / "rules/windows/process_creation/proc_creation_win_addinutil_uncommon_cmdline.yml"
    (rule,) = SRC.load_file(SIGMA, path).rules
    assert sigma_mod.take_parsed(rule) is None
    monkeypatch.setattr(sigma_mod, "KEEP_PARSED", True)
    (rule,) = SRC.load_file(SIGMA, path).rules
    parsed = sigma_mod.take_parsed(rule)
    assert parsed.title == rule.title and str(parsed.id) == rule.id
    assert sigma_mod.take_parsed(rule) is None


REPEAT_RESET = """\
action: global
title: Shared title
id: 5a0c0f1e-0000-4000-8000-000000000001
status: test
logsource:
    product: windows
    service: security
detection:
    condition: selection
---
detection:
    selection:
        EventID: 4624
---
action: repeat
detection:
    selection:
        EventID: 4625
---
action: reset
---
title: Standalone
id: 5a0c0f1e-0000-4000-8000-000000000002
logsource:
    product: linux
detection:
    selection:
        keyword: x
    condition: selection
---
action: explode
"""


def test_collection_repeat_reset_and_unknown_action(tmp_path: Path):
    root = _repo(tmp_path, {"rules/c.yml": REPEAT_RESET})
    res = SRC.load_file(root, root / "rules" / "c.yml")
    first, repeat, standalone = res.rules
    assert first.title == repeat.title == "Shared title"
    assert "4624" in first.query and "4625" in repeat.query and "4624" not in repeat.query
    assert repeat.id.endswith("#3") and repeat.extra["collection"].startswith("repeat")
    assert standalone.title == "Standalone" and "collection" not in standalone.extra
    assert standalone.logsource == {"product": "linux"}
    assert standalone.query.startswith("detection:\n    selection:")
    (err,) = res.errors
    assert err.kind == "SigmaCollectionError" and "explode" in err.reason and err.line == 31
