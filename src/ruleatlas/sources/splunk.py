"""Splunk security_content (ESCU) reader: ``detections/**.yml`` plus the side tables.

Two detection schemas are read into the same :class:`Rule`:

* late 2024 (the corpus): ATT&CK ids, stories, risk score, confidence/impact and observables
  under ``tags:``; ``date``;
* 2025+ (``rule-page-example.txt``): ``mitre_attack_id`` and ``analytic_story`` at the top level,
  ``creation_date``/``modification_date``, ``finding: {title, entity: {field, type, score}}`` or
  ``rba: {risk_objects: [...]}``, ``drilldown_searches``.

Keys the model has a column for are mapped; every other key is kept in ``Rule.extra`` (nothing
thrown away). Severity comes from the score (see :func:`severity_from_score`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ruleatlas.model import FileResult, LoadError, Macro, Rule, TestRef
from ruleatlas.sources import yamlutil
from ruleatlas.sources.base import (
    SideTables,
    load_guarded,
    read_rule_file,
    read_rule_text,
    rel_path,
    strings,
)

NAME = "splunk"
UPSTREAM = "https://github.com/splunk/security_content"
BRANCH = "develop"

# Score thresholds, highest first: score >= threshold -> severity. Documented in docs/sources.md.
SEVERITY_THRESHOLDS: tuple[tuple[int, str], ...] = (
    (80, "critical"),
    (60, "high"),
    (40, "medium"),
    (20, "low"),
    (0, "informational"),
)

# Keys mapped to Rule columns (everything else of the document goes to extra).
_MAPPED = frozenset({
    "id", "name", "version", "date", "creation_date", "modification_date", "author", "type",
    "status", "description", "how_to_implement", "known_false_positives", "references",
    "data_source", "search", "mitre_attack_id", "analytic_story",
})
# tags: keys mapped to columns; the rest of tags stays in extra["tags"].
_TAG_MAPPED = frozenset({"mitre_attack_id", "analytic_story"})


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _opt(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip() if not isinstance(v, str) else v
    return s if s != "" else None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


def severity_from_score(score: float | None) -> str | None:
    """``>= 80`` critical, ``>= 60`` high, ``>= 40`` medium, ``>= 20`` low, else informational."""
    if score is None:
        return None
    for threshold, name in SEVERITY_THRESHOLDS:
        if score >= threshold:
            return name
    return "informational"


def _scores(items: list[Any]) -> list[float]:
    nums = (_num(i.get("score")) for i in items if isinstance(i, Mapping))
    return [n for n in nums if n is not None]


def score_of(doc: Mapping[str, Any]) -> float | None:
    """The risk score of a detection, newest schema first: ``finding.entity.score``, the highest
    ``rba.risk_objects[].score``, ``tags.risk_score``, else ``confidence * impact / 100``."""
    finding = doc.get("finding")
    if isinstance(finding, Mapping):
        ent = finding.get("entity")
        ents = ent if isinstance(ent, list) else [ent]
        scores = _scores(ents)
        if scores:
            return max(scores)
    rba = doc.get("rba")
    if isinstance(rba, Mapping):
        objs = rba.get("risk_objects") or []
        scores = _scores(objs if isinstance(objs, list) else [objs])
        if scores:
            return max(scores)
    tags = doc.get("tags")
    if isinstance(tags, Mapping):
        rs = _num(tags.get("risk_score"))
        if rs is not None:
            return rs
        c, i = _num(tags.get("confidence")), _num(tags.get("impact"))
        if c is not None and i is not None:
            return c * i / 100
    return None


def source_url(root: Path, rel: str) -> str:
    return f"{yamlutil.github_remote(str(root), UPSTREAM)}/blob/{BRANCH}/{rel}"


# --------------------------------------------------------------------------------------------
# Detections
# --------------------------------------------------------------------------------------------


def _tests(doc: Mapping[str, Any]) -> tuple[TestRef, ...]:
    out: list[TestRef] = []
    tests = doc.get("tests")
    if not isinstance(tests, list):
        return ()
    for t in tests:
        if not isinstance(t, Mapping):
            continue
        tname = str(t.get("name") or "test")
        for ad in t.get("attack_data") or ():
            if isinstance(ad, Mapping) and ad.get("data"):
                out.append(TestRef(
                    name=tname, kind="attack_data", path=str(ad["data"]),
                    source=_opt(ad.get("source")), sourcetype=_opt(ad.get("sourcetype")),
                ))
    return tuple(out)


def detection_from_doc(doc: Mapping[str, Any], rel: str, text: str, url: str) -> Rule | LoadError:
    """One detection document into a Rule, or a ``schema`` error naming what is missing."""
    missing = [k for k in ("id", "name", "search") if not _opt(doc.get(k))]
    if missing:
        return LoadError(NAME, rel, f"missing required key(s): {', '.join(missing)}", line=1,
                         kind="schema")
    if not isinstance(doc["search"], str):
        return LoadError(NAME, rel, "search is not a string", line=1, kind="schema")
    raw_tags = doc.get("tags")
    tags: Mapping[str, Any] = raw_tags if isinstance(raw_tags, Mapping) else {}
    attack = strings(doc.get("mitre_attack_id")) or strings(tags.get("mitre_attack_id"))
    stories = strings(doc.get("analytic_story")) or strings(tags.get("analytic_story"))
    extra: dict[str, Any] = {k: v for k, v in doc.items() if k not in _MAPPED and k != "tags"}
    if tags:
        rest = {k: v for k, v in tags.items() if k not in _TAG_MAPPED}
        if rest:
            extra["tags"] = rest
    if "tags" in doc and not isinstance(doc.get("tags"), Mapping):
        extra["tags"] = doc["tags"]
    score = score_of(doc)
    if score is not None:
        extra["risk_score"] = int(score) if score == int(score) else score
    status = _opt(doc.get("status"))
    parts = PurePosixPath(rel).parts
    if len(parts) > 1 and parts[1] == "deprecated" and status != "deprecated":
        extra["original_status"] = status
        status = "deprecated"
    fp = _opt(doc.get("known_false_positives"))
    return Rule(
        id=str(doc["id"]).strip(),
        source=NAME,
        path=rel,
        title=str(doc["name"]).strip(),
        language="spl",
        query=doc["search"],
        body=text,
        source_url=url,
        status=status,
        severity=severity_from_score(score),
        author=_opt(doc.get("author")),
        date=_opt(doc.get("creation_date")) or _opt(doc.get("date")),
        modified=_opt(doc.get("modification_date")),
        version=_opt(doc.get("version")),
        type=_opt(doc.get("type")),
        description=_opt(doc.get("description")) or "",
        references=strings(doc.get("references")),
        falsepositives=(fp,) if fp else (),
        how_to_implement=_opt(doc.get("how_to_implement")),
        attack=tuple(a.strip().upper() for a in attack),
        tags=(),
        data_sources=strings(doc.get("data_source")) or strings(doc.get("data_sources")),
        stories=stories,
        tests=_tests(doc),
        extra=extra,
    )


def load_detection(root: Path, path: Path, data: bytes | None = None) -> FileResult:
    """One detection file into a FileResult; never raises."""
    got = read_rule_text(NAME, root, path, data)
    if isinstance(got, FileResult):
        return got
    doc, err = yamlutil.load_one(got.text)
    if err is not None:
        return got.fail(err.reason, err.line, err.col, kind=err.kind)
    if doc is None:
        return got.fail("no YAML content (only comments or markers)", kind="empty")
    if not isinstance(doc, dict):
        return got.fail(f"document is a {type(doc).__name__}, not a mapping", 1, kind="schema")
    return got.result(detection_from_doc(doc, got.rel, got.text, source_url(root, got.rel)))


# --------------------------------------------------------------------------------------------
# Side tables
# --------------------------------------------------------------------------------------------


def _yml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml") and not p.is_dir())


def _load_side(root: Path, path: Path, raw: bytes) -> dict[str, Any] | LoadError:
    rel = rel_path(root, path)
    text = yamlutil.decode(raw)
    if isinstance(text, yamlutil.YamlProblem):
        return LoadError(NAME, rel, text.reason, text.line, text.col, text.kind)
    if not text.strip():
        return LoadError(NAME, rel, "empty file", kind="empty")
    doc, err = yamlutil.load_one(text)
    if err is not None:
        return LoadError(NAME, rel, err.reason, err.line, err.col, err.kind)
    if not isinstance(doc, dict):
        return LoadError(NAME, rel, "document is not a mapping", 1, kind="schema")
    if not _opt(doc.get("name")):
        return LoadError(NAME, rel, "missing required key: name", 1, kind="schema")
    return doc


def _macro(doc: Mapping[str, Any], rel: str) -> Macro:
    args = doc.get("arguments") or ()
    if isinstance(args, str):
        args = [a.strip() for a in args.split(",") if a.strip()]
    return Macro(
        name=str(doc["name"]).strip(),
        definition="" if doc.get("definition") is None else str(doc["definition"]),
        arguments=tuple(str(a) for a in args),
        description=_opt(doc.get("description")) or "",
        path=rel,
    )


def _read_table(root: Path, folder: str, sink: list[LoadError],
                hasher: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for p in _yml_files(root / folder):
        rel = rel_path(root, p)
        raw = read_rule_file(NAME, rel, p)
        if isinstance(raw, LoadError):
            sink.append(raw)
            continue
        hasher.update(rel.encode() + b"\0" + raw + b"\0")
        doc = _load_side(root, p, raw)
        if isinstance(doc, LoadError):
            sink.append(doc)
        else:
            out.append((rel, doc))
    return out


def load_macros(root: Path, errors: list[LoadError] | None = None,
                hasher: Any = None) -> dict[str, Macro]:
    """Every macro of ``root/macros`` keyed by :attr:`Macro.key` (``name`` or ``name(n)``).

    Failed files are appended to ``errors`` when given (else skipped: a macro file that cannot
    be read cannot be expanded either, and the analyzer reports the unknown macro)."""
    import hashlib

    sink: list[LoadError] = [] if errors is None else errors
    h = hasher if hasher is not None else hashlib.sha256()
    out: dict[str, Macro] = {}
    for rel, doc in _read_table(root, "macros", sink, h):
        m = _macro(doc, rel)
        out[m.key] = m
    return out


def _by_name(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """name -> document, with ``path`` (repository-relative) added when the doc has none; a
    story under ``stories/deprecated/`` gets ``status: deprecated`` unless it says otherwise."""
    out: dict[str, dict[str, Any]] = {}
    for rel, d in docs:
        d = dict(d)
        d.setdefault("path", rel)
        if "/deprecated/" in rel:
            d.setdefault("status", "deprecated")
        out[str(d["name"]).strip()] = d
    return out


def side_tables(root: Path) -> SideTables:
    """Macros, stories, data sources and lookups; failed files become errors, one digest."""
    import hashlib

    errors: list[LoadError] = []
    h = hashlib.sha256()
    macros = load_macros(root, errors, h)
    stories = _by_name(_read_table(root, "stories", errors, h))
    data_sources = _by_name(_read_table(root, "data_sources", errors, h))
    lookups = _by_name(_read_table(root, "lookups", errors, h))
    return SideTables(
        macros=macros, stories=stories, data_sources=data_sources, lookups=lookups,
        story_members={}, errors=tuple(errors), digest=h.hexdigest(),
    )


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


class SplunkSource:
    """Reader of a splunk/security_content clone (see module doc)."""

    name = NAME
    label = "Splunk"
    side_folders: tuple[str, ...] | None = ("macros", "stories", "data_sources", "lookups")

    def detect(self, root: Path) -> bool:
        return (root / "detections").is_dir() and (root / "macros").is_dir()

    def rule_files(self, root: Path) -> Iterable[Path]:
        return _yml_files(root / "detections")

    def load_file(self, root: Path, path: Path, data: bytes | None = None) -> FileResult:
        return load_guarded(NAME, load_detection, root, path, data)

    def side_tables(self, root: Path) -> SideTables:
        return side_tables(root)
