"""Hand-made broken repositories: every bad file is reported with file, line and kind, and the
rest of the repository still loads."""

from __future__ import annotations

from pathlib import Path

from ruleatlas.model import FileResult
from ruleatlas.sources import SOURCES

GOOD_SIGMA = """\
title: Good rule
id: 11111111-1111-4111-8111-111111111111
status: test
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\\\\cmd.exe'
    condition: selection
level: low
"""

BAD_YAML = """\
title: Broken
id: 22222222-2222-4222-8222-222222222222
detection:
    selection:
        Image: [unclosed
    condition: selection
"""

COLLECTION_ONE_BAD = """\
action: global
title: Collection
id: 33333333-3333-4333-8333-333333333333
status: test
detection:
    condition: selection
---
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID: 4624
---
logsource: {product: windows
detection:
---
logsource:
    product: windows
    service: system
detection:
    selection:
        EventID: 7045
"""


def _write(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(content, encoding="utf-8")
        else:
            p.write_bytes(content)
    return root


def _load_all(name: str, root: Path) -> dict[str, FileResult]:
    src = SOURCES[name]
    return {r.path: r for r in (src.load_file(root, p) for p in src.rule_files(root))}


def test_broken_sigma_repo(tmp_path: Path):
    root = _write(tmp_path, {
        "rules/good.yml": GOOD_SIGMA,
        "rules/bad_yaml.yml": BAD_YAML,
        "rules/missing_id.yml": GOOD_SIGMA.replace(
            "id: 11111111-1111-4111-8111-111111111111\n", ""),
        "rules/latin1.yml": GOOD_SIGMA.replace("Good rule", "Caf\u00e9").encode("latin-1"),
        "rules/empty.yml": "",
        "rules/comments.yml": "# nothing here\n",
        "rules/list.yml": "- a\n- b\n",
        "rules/collection.yml": COLLECTION_ONE_BAD,
        "rules/bad_condition.yml": GOOD_SIGMA.replace("condition: selection",
                                                      "condition: selection and ("),
        "rules/bad_modifier.yml": GOOD_SIGMA.replace("endswith", "nosuchmodifier"),
        "rules/bad_date.yml": GOOD_SIGMA.replace("level: low", "level: low\ndate: 2024-13-45"),
    })
    res = _load_all("sigma", root)
    assert len(res) == 11
    assert len(res["rules/good.yml"].rules) == 1

    (e,) = res["rules/bad_yaml.yml"].errors
    assert (e.kind, e.line) == ("yaml", 6) and e.col and e.path == "rules/bad_yaml.yml"
    assert res["rules/bad_yaml.yml"].rules == ()

    (e,) = res["rules/missing_id.yml"].errors
    assert e.kind == "schema" and "id" in e.reason and e.line == 1

    (e,) = res["rules/latin1.yml"].errors
    assert e.kind == "encoding" and e.line == 1 and e.col == 11

    for name in ("empty", "comments"):
        (e,) = res[f"rules/{name}.yml"].errors
        assert e.kind == "empty"

    (e,) = res["rules/list.yml"].errors
    assert e.kind == "schema" and "not a mapping" in e.reason

    coll = res["rules/collection.yml"]
    assert [r.line for r in coll.rules] == [8, 18]
    assert [r.id for r in coll.rules] == ["33333333-3333-4333-8333-333333333333",
                                          "33333333-3333-4333-8333-333333333333#4"]
    (e,) = coll.errors
    assert e.kind == "yaml" and e.line is not None and 14 <= e.line <= 16

    (e,) = res["rules/bad_condition.yml"].errors
    assert e.kind == "SigmaConditionError" and e.line == 7
    (e,) = res["rules/bad_modifier.yml"].errors
    assert e.kind.startswith("Sigma") and e.line == 7

    # Metadata problem: the rule is kept, the pySigma issue recorded.
    bd = res["rules/bad_date.yml"]
    assert bd.errors == () and len(bd.rules) == 1
    (v,) = bd.rules[0].extra["validation"]
    assert v["kind"] == "SigmaDateError" and v["line"] == 12

    for r in res.values():
        assert r.sha256 and len(r.rules) + len(r.errors) >= 1


def test_broken_splunk_repo(tmp_path: Path):
    good = ("name: Good\nid: aaaaaaaa-0000-4000-8000-000000000001\nversion: 1\n"
            "search: index=main | stats count\ntags:\n  risk_score: 25\n")
    root = _write(tmp_path, {
        "macros/m.yml": "name: m\ndefinition: index=x\n",
        "detections/endpoint/good.yml": good,
        "detections/endpoint/bad.yml": "name: Bad\nid: x\nsearch: 'unterminated\n",
        "detections/endpoint/noid.yml": good.replace(
            "id: aaaaaaaa-0000-4000-8000-000000000001\n", ""),
        "detections/endpoint/nosearch.yml": good.replace(
            "search: index=main | stats count\n", ""),
        "detections/endpoint/latin1.yml": good.replace("Good", "G\u00f6od").encode("latin-1"),
        "detections/endpoint/empty.yml": "",
        "detections/endpoint/scalar.yml": "just text\n",
        "detections/deprecated/old.yml": good.replace("0001", "0002"),
    })
    res = _load_all("splunk", root)
    assert len(res) == 8
    assert res["detections/endpoint/good.yml"].rules[0].severity == "low"
    assert res["detections/deprecated/old.yml"].rules[0].status == "deprecated"
    e = res["detections/endpoint/bad.yml"].errors[0]
    assert e.kind == "yaml" and e.line == 4
    e = res["detections/endpoint/noid.yml"].errors[0]
    assert e.kind == "schema" and "id" in e.reason
    e = res["detections/endpoint/nosearch.yml"].errors[0]
    assert e.kind == "schema" and "search" in e.reason
    e = res["detections/endpoint/latin1.yml"].errors[0]
    assert e.kind == "encoding" and e.line == 1 and e.col == 8
    assert res["detections/endpoint/empty.yml"].errors[0].kind == "empty"
    assert res["detections/endpoint/scalar.yml"].errors[0].kind == "schema"
    rules = sum(len(r.rules) for r in res.values())
    errors = sum(len(r.errors) for r in res.values())
    assert (rules, errors) == (2, 6)


def test_load_file_takes_bytes_and_missing_files(tmp_path: Path):
    src = SOURCES["sigma"]
    (tmp_path / "rules").mkdir()
    p = tmp_path / "rules" / "virtual.yml"
    res = src.load_file(tmp_path, p, GOOD_SIGMA.encode())
    assert len(res.rules) == 1 and res.rules[0].path == "rules/virtual.yml"
    gone = src.load_file(tmp_path, tmp_path / "rules" / "gone.yml")
    assert gone.errors[0].kind == "io"
    gone = SOURCES["splunk"].load_file(tmp_path, tmp_path / "detections" / "gone.yml")
    assert gone.errors[0].kind == "io"


# ---------------------------------------------------------------------------------------------
# Properties of the text slicing the readers rely on
# ---------------------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ruleatlas.sources import yamlutil  # noqa: E402

_keys = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
_scalars = st.one_of(st.integers(), st.booleans(), st.none(),
                     st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")),
                             max_size=12))
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3)
                       | st.dictionaries(_keys, c, max_size=3), max_leaves=8)
_docs = st.dictionaries(_keys, _values, min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(st.lists(_docs, min_size=1, max_size=4), st.booleans(), st.booleans())
def test_documents_match_load_all(docs, flow, lead):
    import yaml

    text = ("---\n" if lead else "") + "---\n".join(
        yaml.safe_dump(d, default_flow_style=flow, allow_unicode=True) for d in docs)
    got = list(yamlutil.load_documents(text))
    assert [d.data for d in got] == list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    lines = text.splitlines()
    for d in got:
        assert d.error is None
        assert lines[d.line - 1] == d.text.splitlines()[0]
        assert yaml.load(d.text, Loader=yaml.CSafeLoader) == d.data


@settings(max_examples=60, deadline=None)
@given(_docs, _docs, _docs)
def test_top_block_slices_exactly(before, value, after):
    import yaml

    before.pop("detection", None)
    after.pop("detection", None)
    text = (yaml.safe_dump(before, sort_keys=False) + "detection:\n"
            + "".join("    " + ln + "\n" for ln in yaml.safe_dump(value).splitlines())
            + "# trailing comment\n\n" + yaml.safe_dump(after, sort_keys=False))
    block, line = yamlutil.top_block(text, "detection")
    assert text.splitlines()[line] == "detection:"
    assert block in text and not block.endswith("\n")
    assert yaml.load(block, Loader=yaml.CSafeLoader) == {"detection": value}


def test_dangling_symlink_is_accounted_for(tmp_path: Path):
    root = _write(tmp_path, {"rules/good.yml": GOOD_SIGMA})
    (root / "rules" / "dangling.yml").symlink_to(root / "nowhere.yml")
    res = _load_all("sigma", root)
    assert set(res) == {"rules/good.yml", "rules/dangling.yml"}
    (e,) = res["rules/dangling.yml"].errors
    assert e.kind == "io" and e.path == "rules/dangling.yml"
