"""SigmaHQ reader: every ``rules*`` folder plus ``deprecated/`` and ``unsupported/``.

A file may hold one rule, a rule collection (several YAML documents with ``action: global``,
``reset`` or ``repeat``), a correlation rule (``correlation:``) or a filter (``filter:``). Each
document is parsed once with libyaml and validated with pySigma from that dict (never
``from_yaml``, which would re-parse with the pure-Python loader). The rule keeps its original
text: ``body`` is the document as written, ``query`` the ``detection:`` (``correlation:``,
``filter:``) block sliced from it by line position.

pySigma errors are split in two (see ``docs/sources.md``):

* *logic* errors (detection, condition, logsource, modifiers, values, correlation/filter
  structure): the document cannot be lowered, so it becomes a :class:`LoadError` whose ``kind``
  is the pySigma error class name;
* *metadata* errors (date format, status, level, tags, references, ...): the detection is fine, so
  the rule is kept and the issue is recorded in ``extra["validation"]``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from ruleatlas.caching import CONDITION_SYNTAX
from ruleatlas.model import FileResult, LoadError, Rule, TestRef
from ruleatlas.sources import yamlutil
from ruleatlas.sources.base import (
    SideTables,
    files_under,
    load_guarded,
    read_rule_text,
    strings,
)

NAME = "sigma"
YAML_SUFFIXES = (".yml", ".yaml")
UPSTREAM = "https://github.com/SigmaHQ/sigma"
BRANCH = "master"

# Folders besides rules* whose rules are kept with a forced status.
STATUS_FOLDERS: dict[str, str] = {"deprecated": "deprecated", "unsupported": "unsupported"}

# pySigma error classes that only concern metadata: the rule is kept, the issue recorded.
METADATA_ERRORS = frozenset({
    "SigmaAuthorError", "SigmaDateError", "SigmaModifiedError", "SigmaDescriptionError",
    "SigmaFalsePositivesError", "SigmaFieldsError", "SigmaLevelError", "SigmaLicenseError",
    "SigmaReferencesError", "SigmaRelatedError", "SigmaScopeError", "SigmaStatusError",
    "SigmaTagError", "SigmaTaxonomyError", "SigmaNameError",
})
# Which top-level key a pySigma error class is about (for the line of the error).
_ERROR_KEY: dict[str, str] = {
    "SigmaTitleError": "title", "SigmaIdentifierError": "id", "SigmaAuthorError": "author",
    "SigmaDateError": "date", "SigmaModifiedError": "modified", "SigmaLevelError": "level",
    "SigmaStatusError": "status", "SigmaTagError": "tags", "SigmaReferencesError": "references",
    "SigmaRelatedError": "related", "SigmaFalsePositivesError": "falsepositives",
    "SigmaDescriptionError": "description", "SigmaFieldsError": "fields",
    "SigmaLogsourceError": "logsource", "SigmaDetectionError": "detection",
    "SigmaConditionError": "detection", "SigmaModifierError": "detection",
    "SigmaTypeError": "detection", "SigmaValueError": "detection",
    "SigmaRegularExpressionError": "detection", "SigmaLicenseError": "license",
    "SigmaTaxonomyError": "taxonomy", "SigmaScopeError": "scope", "SigmaNameError": "name",
    "SigmaCorrelationRuleError": "correlation", "SigmaCorrelationTypeError": "correlation",
    "SigmaCorrelationConditionError": "correlation", "SigmaTimespanError": "correlation",
    "SigmaFilterError": "filter", "SigmaFilterConditionError": "filter",
    "SigmaFilterRuleReferenceError": "filter",
}

# Keys mapped to Rule columns; everything else of a document is kept in extra.
_MAPPED = frozenset({
    "id", "title", "status", "level", "author", "date", "modified", "description",
    "references", "falsepositives", "tags", "logsource", "regression_tests_path",
})
_TACTIC_OR_TECH = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.I)
_LOGSOURCE_ORDER = ("product", "category", "service")


# --------------------------------------------------------------------------------------------
# Repository helpers
# --------------------------------------------------------------------------------------------


def rule_folders(root: Path) -> list[Path]:
    """``rules*`` folders (sorted) then ``deprecated``/``unsupported`` when present."""
    try:
        entries = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    out = [p for p in entries if p.name.startswith("rules")]
    out += [root / n for n in STATUS_FOLDERS if (root / n).is_dir()]
    return out


def source_url(root: Path, rel: str) -> str:
    return f"{yamlutil.github_remote(str(root), UPSTREAM)}/blob/{BRANCH}/{rel}"


# --------------------------------------------------------------------------------------------
# Field mapping
# --------------------------------------------------------------------------------------------


def _opt(v: Any) -> str | None:
    if v is None:
        return None
    s = v if isinstance(v, str) else str(v)
    return s if s.strip() else None


def attack_ids(tags: Iterable[str]) -> tuple[str, ...]:
    """``attack.t1059.001`` -> ``T1059.001``; order kept, duplicates dropped."""
    seen: dict[str, None] = {}
    for t in tags:
        m = _TACTIC_OR_TECH.match(t.strip())
        if m:
            seen[m.group(1).upper()] = None
    return tuple(seen)


def data_source_of(logsource: Mapping[str, Any]) -> tuple[str, ...]:
    """``product/category/service`` of a logsource, missing parts skipped."""
    parts = [str(logsource[k]) for k in _LOGSOURCE_ORDER if logsource.get(k)]
    return ("/".join(parts),) if parts else ()


_SLASH_DATE = re.compile(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})$")


def iso_date(v: Any) -> str | None:
    """``2020/10/05`` (old Sigma style) or a loaded date -> ``2020-10-05``; other text kept."""
    s = _opt(v)
    if s is None:
        return None
    s = s.strip()
    m = _SLASH_DATE.match(s)
    return f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}" if m else s


def pysigma_dict(rule: Rule) -> dict[str, Any]:
    """A dict pySigma's ``from_dict`` accepts, rebuilt from a catalog Rule (for the Sigma
    language layer): metadata columns, ``extra``, and the query block parsed from ``query``."""
    out: dict[str, Any] = {k: v for k, v in rule.extra.items()
                           if k not in ("validation", "original_status", "query_generated",
                                        "collection", "collection_id")}
    out.update(title=rule.title, id=str(rule.extra.get("collection_id", rule.id)))
    if rule.status:
        out["status"] = rule.extra.get("original_status") or rule.status
    if rule.severity:
        out["level"] = rule.severity
    if rule.tags:
        out["tags"] = list(rule.tags)
    if rule.logsource:
        out["logsource"] = dict(rule.logsource)
    block, err = yamlutil.load_one(rule.query)
    if err is None and isinstance(block, dict):
        out.update(yamlutil.plain(block))
    return out


def _deep_update(base: Mapping[str, Any], upd: Mapping[str, Any]) -> dict[str, Any]:
    """Sigma collection merge: ``upd`` wins, nested mappings merged (as pySigma does)."""
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def _key_line(text: str, key: str, first_line: int) -> int:
    m = re.search(rf"^{re.escape(key)}[ \t]*:", text, re.M)
    return first_line + (text.count("\n", 0, m.start()) if m else 0)


# --------------------------------------------------------------------------------------------
# pySigma validation
# --------------------------------------------------------------------------------------------

_KIND_CLASSES: dict[str, Any] = {}


def _pysigma(kind: str) -> Any:
    """The pySigma class for a document kind, imported once (pySigma import is slow)."""
    if not _KIND_CLASSES:
        from sigma.correlations import SigmaCorrelationRule
        from sigma.filters import SigmaFilter
        from sigma.rule import SigmaRule

        _KIND_CLASSES.update(
            detection=SigmaRule, correlation=SigmaCorrelationRule, filter=SigmaFilter
        )
    return _KIND_CLASSES[kind]


# pySigma objects built while loading, handed to the Sigma language layer so a build does not
# run ``from_dict`` twice: key (path, doc index, body) -> SigmaRule/SigmaCorrelationRule/...
# Opt-in (``sigma.KEEP_PARSED = True``): the Sigma language layer lowers from the YAML itself,
# so by default nothing is kept and memory stays flat.
KEEP_PARSED = False
_PARSED: dict[tuple[str, int, str], Any] = {}
_PARSED_MAX = 20_000


def take_parsed(rule: Rule) -> Any | None:
    """The pySigma object validated when ``rule`` was loaded in this process (removed from the
    cache: the caller may mutate it with processing pipelines), or None."""
    return _PARSED.pop((rule.path, rule.doc_index, rule.body), None)


def validate(doc: dict[str, Any], kind: str,
             keep: tuple[str, int, str] | None = None) -> list[tuple[str, str]]:
    """pySigma's errors for one document as ``(class name, message)``; never raises.

    Conditions are checked too (pySigma parses them lazily): syntax with pySigma's own grammar,
    cached per condition string, and every identifier against the detection's keys. Resolving
    the tree is left to the language layer, which needs it anyway."""
    try:
        parsed = _pysigma(kind).from_dict(doc, collect_errors=True)
    except Exception as e:  # recorded: pySigma raises some errors even when collecting
        return [(type(e).__name__, _message(e))]
    out = [(type(e).__name__, _message(e)) for e in getattr(parsed, "errors", ())]
    if not out and kind == "detection":
        detection = doc.get("detection") or {}
        conds = detection.get("condition")
        for cond in conds if isinstance(conds, list) else [conds]:
            problem = condition_problem(str(cond), tuple(k for k in detection if k != "condition"))
            if problem:
                out.append(("SigmaConditionError", problem))
    if KEEP_PARSED and keep is not None and not out and len(_PARSED) < _PARSED_MAX:
        _PARSED[keep] = parsed
    return out


_COND_KEYWORDS = frozenset({"and", "or", "not", "of", "them", "all", "any"})
_COND_TOKEN = re.compile(r"[\w*?.\-]+")


@lru_cache(maxsize=CONDITION_SYNTAX)
def _condition_syntax(cond: str) -> str | None:
    if "|" in cond:
        return ("The pipe syntax in Sigma conditions has been deprecated and replaced by Sigma "
                "correlations. pySigma doesn't supports this syntax.")
    from sigma.conditions import condition as grammar

    try:
        grammar.parse_string(cond, parse_all=True)
    except Exception as e:  # recorded: the grammar's message is the condition's problem
        return " ".join(str(e).split())
    return None


def condition_problem(cond: str, identifiers: tuple[str, ...]) -> str | None:
    """Why a Sigma condition cannot be used (syntax, or an identifier no detection matches)."""
    problem = _condition_syntax(cond)
    if problem:
        return problem
    for tok in _COND_TOKEN.findall(cond):
        if tok.lower() in _COND_KEYWORDS or tok.isdigit():
            continue
        if "*" in tok or "?" in tok:
            if not any(fnmatch.fnmatchcase(i, tok) for i in identifiers):
                return f"Pattern '{tok}' of the condition matches no detection identifier"
        elif tok not in identifiers:
            return f"Detection identifier '{tok}' of the condition is not defined"
    return None


def _is_legacy_pipe(cls: str, msg: str) -> bool:
    """Sigma 1.0 aggregation (``condition: sel | count() by x > 5``): valid in the old spec,
    replaced by correlation rules, refused by pySigma. The rule is kept with the issue noted."""
    return cls == "SigmaConditionError" and "pipe syntax" in msg


def _message(e: Exception) -> str:
    msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    return " ".join(msg.split())


# --------------------------------------------------------------------------------------------
# Documents into rules
# --------------------------------------------------------------------------------------------


def _doc_kind(doc: Mapping[str, Any]) -> str:
    if "correlation" in doc:
        return "correlation"
    if "filter" in doc:
        return "filter"
    return "detection"


def _query(body: str, doc: Mapping[str, Any], key: str, merged: bool) -> tuple[str, bool]:
    """The exact ``detection:``/``correlation:``/``filter:`` block of ``body``, and False.

    When a collection merge completed the block from a global document (or the key is not
    written plainly at column 0), the member's own text is not the whole query: the merged
    block is rendered as YAML instead, and the flag is True (``extra["query_generated"]``)."""
    own = None if merged else yamlutil.top_block(body, key)
    if own is not None:
        return own[0], False
    value = doc.get(key)
    if value is None:
        return "", False
    import yaml

    return yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True).rstrip(), True


def rule_from_doc(
    doc: dict[str, Any], *, rel: str, url: str, body: str, line: int, index: int,
    folder_status: str | None, merged_from: str | None = None,
) -> Rule | LoadError:
    """One (possibly collection-merged) document into a Rule, or a located LoadError."""
    kind = _doc_kind(doc)
    missing = [k for k in ("id", "title") if not _opt(doc.get(k))]
    if missing:
        return LoadError(NAME, rel, f"missing required key(s): {', '.join(missing)}",
                         line=line, kind="schema")
    if kind == "detection" and not isinstance(doc.get("detection"), Mapping):
        return LoadError(NAME, rel, "missing or invalid detection: block",
                         line=_key_line(body, "detection", line), kind="schema")
    # The query block is kept as text in ``query`` (and in ``body``), not twice.
    extra: dict[str, Any] = {k: v for k, v in doc.items() if k not in _MAPPED and k != kind}
    validation: list[dict[str, Any]] = []
    for cls, msg in validate(doc, kind, (rel, index, body)):
        key = _ERROR_KEY.get(cls, "")
        eline = _key_line(body, key, line) if key else line
        if cls in METADATA_ERRORS or _is_legacy_pipe(cls, msg):
            validation.append({"kind": cls, "reason": msg, "line": eline})
        else:
            return LoadError(NAME, rel, msg, line=eline, kind=cls)
    if validation:
        extra["validation"] = validation
    status = _opt(doc.get("status"))
    if folder_status and status != folder_status:
        extra["original_status"] = status
        status = folder_status
    tags = strings(doc.get("tags"))
    logsource_raw = doc.get("logsource")
    logsource = (
        {str(k): ("" if v is None else str(v)) for k, v in logsource_raw.items()}
        if isinstance(logsource_raw, Mapping) else {}
    )
    if logsource_raw is not None and not isinstance(logsource_raw, Mapping):
        extra["logsource"] = logsource_raw
    tests: tuple[TestRef, ...] = ()
    rtp = _opt(doc.get("regression_tests_path"))
    if rtp:
        tests = (TestRef(name=PurePosixPath(rtp).parent.name or rtp, kind="sigma-regression",
                         path=rtp),)
    query, generated = _query(body, doc, kind, merged_from is not None)
    if generated:
        extra["query_generated"] = True
    if merged_from is not None:
        extra["collection"] = merged_from
    fps = doc.get("falsepositives")
    return Rule(
        id=str(doc["id"]).strip(),
        source=NAME,
        path=rel,
        title=str(doc["title"]).strip(),
        language="sigma",
        query=query,
        body=body,
        source_url=url,
        status=status,
        severity=_opt(doc.get("level")),
        author=_opt(doc.get("author")),
        date=iso_date(doc.get("date")),
        modified=iso_date(doc.get("modified")),
        version=None,
        type=kind,
        description=_opt(doc.get("description")) or "",
        references=strings(doc.get("references")),
        falsepositives=strings(fps),
        how_to_implement=None,
        attack=attack_ids(tags),
        tags=tags,
        data_sources=data_source_of(logsource),
        logsource=logsource,
        tests=tests,
        doc_index=index,
        line=line,
        extra=extra,
    )


def load_sigma_file(root: Path, path: Path, data: bytes | None = None) -> FileResult:
    """One Sigma file into rules and located errors; never raises for bad input."""
    got = read_rule_text(NAME, root, path, data)
    if isinstance(got, FileResult):
        return got
    rel, digest, text = got.rel, got.digest, got.text
    top = PurePosixPath(rel).parts[0] if rel else ""
    folder_status = STATUS_FOLDERS.get(top)
    url = source_url(root, rel)
    docs = list(yamlutil.load_documents(text))
    if not docs:
        return got.fail("no YAML content (only comments or markers)", kind="empty")

    rules: list[Rule] = []
    errors: list[LoadError] = []
    global_doc: dict[str, Any] = {}
    global_line: int | None = None
    prev: dict[str, Any] = {}
    for d in docs:
        if d.error is not None:
            errors.append(LoadError(NAME, rel, d.error.reason, d.error.line, d.error.col,
                                    d.error.kind))
            continue
        if d.data is None:
            continue
        if not isinstance(d.data, dict):
            errors.append(LoadError(
                NAME, rel, f"document {d.index + 1} is a {type(d.data).__name__}, not a mapping",
                d.line, kind="schema"))
            continue
        doc: dict[str, Any] = d.data
        action = doc.get("action")
        merged_from: str | None = None
        if action == "global":
            global_doc = {k: v for k, v in doc.items() if k != "action"}
            global_line = d.line
            prev = global_doc
            continue
        if action == "reset":
            global_doc, global_line = {}, None
            continue
        if action == "repeat":
            full = _deep_update(prev, {k: v for k, v in doc.items() if k != "action"})
            merged_from = f"repeat of the previous document of {rel}"
        elif action is not None:
            errors.append(LoadError(NAME, rel, f"unknown Sigma collection action {action!r}",
                                    _key_line(d.text, "action", d.line),
                                    kind="SigmaCollectionError"))
            continue
        elif _doc_kind(doc) != "detection" or not global_doc:
            full = doc
        else:
            full = _deep_update(global_doc, doc)
            merged_from = f"global document at line {global_line}"
        if action != "repeat" and _doc_kind(doc) == "detection":
            prev = full
        res = rule_from_doc(full, rel=rel, url=url, body=d.text, line=d.line, index=d.index,
                            folder_status=folder_status, merged_from=merged_from)
        if isinstance(res, LoadError):
            errors.append(res)
        else:
            rules.append(res)
    if not rules and not errors:
        reason = ("collection without a rule document (only action: global/reset)"
                  if global_line is not None else "no YAML content (only comments or markers)")
        errors.append(LoadError(NAME, rel, reason, global_line,
                                kind="empty" if global_line is None else "schema"))
    rules = _unique_ids(rules)
    return FileResult(NAME, rel, digest, rules=tuple(rules), errors=tuple(errors))


def _unique_ids(rules: list[Rule]) -> list[Rule]:
    """Collection members inherit the global ``id``; the catalog keys rules by id, so the 2nd+
    member with an id already used in the same file becomes ``<id>#<document number>`` and
    keeps the written id in ``extra["collection_id"]``."""
    from dataclasses import replace

    seen: set[str] = set()
    out: list[Rule] = []
    for r in rules:
        if r.id in seen:
            extra = dict(r.extra)
            extra["collection_id"] = r.id
            r = replace(r, id=f"{r.id}#{r.doc_index + 1}", extra=extra)
        seen.add(r.id)
        out.append(r)
    return out


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


class SigmaSource:
    """Reader of a SigmaHQ/sigma clone (see module doc)."""

    name = NAME
    label = "Sigma"
    side_folders: tuple[str, ...] | None = ()

    def detect(self, root: Path) -> bool:
        for p in rule_folders(root):
            if p.name.startswith("rules") and next(files_under(p, YAML_SUFFIXES), None):
                return True
        return False

    def rule_files(self, root: Path) -> Iterable[Path]:
        out: list[Path] = []
        for folder in rule_folders(root):
            out.extend(files_under(folder, YAML_SUFFIXES))
        return sorted(out)

    def load_file(self, root: Path, path: Path, data: bytes | None = None) -> FileResult:
        return load_guarded(NAME, load_sigma_file, root, path, data)

    def side_tables(self, root: Path) -> SideTables:
        """Sigma has no macros/stories; the digest covers nothing so it stays stable."""
        return SideTables()
