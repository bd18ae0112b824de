"""Elastic detection-rules reader: ``rules/``, ``rules_building_block/`` and ``hunting/``.

Every ``.toml`` file under those three folders is a rule file (other files there, such as
``rules/README.md``, ``rules/**/NOTICE.txt``, ``rules_building_block/.gitkeep`` and
``hunting/index.yml``, are not rule files, as for the Sigma and Splunk readers). Each file is read
once with the standard library's ``tomllib`` and gives one :class:`Rule` or one located
:class:`LoadError` (never an exception). A file with a ``[rule]`` table is a detection rule; a file
with a ``[hunt]`` table is a hunting query.

Detection rules (``[metadata]`` + ``[rule]``):

=====================  ==========================================================================
Rule field             from
=====================  ==========================================================================
``id``                 ``rule.rule_id``
``title``              ``rule.name``
``language``           ``rule.language`` through :data:`LANGUAGES` (``kuery`` -> ``kql``, ``eql``,
                       ``esql``, ``lucene``); ``ml`` for ``machine_learning`` rules; when absent,
                       the rule type's language (``eql``/``esql`` types, else ``kql``)
``query``              ``rule.query`` as written (``""`` for machine-learning rules)
``type``               ``rule.type`` (query, eql, esql, threshold, new_terms, threat_match,
                       machine_learning)
``status``             ``metadata.maturity`` (production, development, deprecated, ...)
``severity``           ``rule.severity``
``author``             ``rule.author`` joined with ``", "``
``date``/``modified``  ``metadata.creation_date``/``updated_date`` as ISO text (``2020-12-01``)
``version``            ``rule.version`` when present (the corpus has none: versions live in a lock
                       file)
``description``        ``rule.description``, outer whitespace stripped
``references``         ``rule.references``
``falsepositives``     ``rule.false_positives``, each dedented and stripped
``attack``             technique and sub-technique ids of ``[[rule.threat]]`` (``T1059``,
                       ``T1059.001``), in file order, no duplicates, ids of other frameworks
                       left out; names come from the ATT&CK
                       data (:mod:`ruleatlas.attack`), never from the TOML's ``name`` keys
``tags``               ``rule.tags`` as written (``"Tactic: Execution"``, ``"OS: Windows"``, ...)
``data_sources``       the related integrations: ``metadata.integration`` then the packages of
                       ``rule.related_integrations``; when there are none, the index patterns
``source_url``         ``https://github.com/<owner>/<repo>/blob/main/<path>`` (the clone's
                       GitHub remote, else elastic/detection-rules)
``body``, ``line``     the whole TOML text, 1
=====================  ==========================================================================

Everything else goes to ``extra`` under the TOML key's own name (stable keys): ``index``,
``risk_score``, ``license``, ``from``, ``interval``, ``building_block_type``, ``setup``, ``note``
(the Markdown investigation guide, raw), ``required_fields``, ``related_integrations``,
``alert_suppression``, ``exceptions_list``, ``threat_mapping``, ``threat_index``,
``threat_query``, ``threat_indicator_path``, ``threat_filters``, ``timestamp_override``,
``max_signals``, ``investigation_fields``, ``severity_mapping``, ``risk_score_mapping``,
``rule_name_override``, ``filters``, ``timeline_id``/``timeline_title``, ... and the
``[metadata]`` keys without a column (``integration``, ``min_stack_version``,
``min_stack_comments``, ``deprecation_date``, ``deprecated_reason``, ``promotion``,
``bypass_bbr_timing``; a metadata key that a rule key already uses goes to
``extra["metadata"]``) and the ``[transform]`` table (``extra["transform"]``). Some are
normalised:

* ``threshold``: ``{"field": [...], "value": n, "cardinality": [{"field", "value"}]}`` (a single
  ``field`` string becomes a one-item list; ``cardinality`` only when written);
* ``new_terms``: ``{"fields": [...], "history_window_start": "now-14d"}`` from the TOML's
  ``field``/``value`` pairs;
* ``machine_learning_job_id``: always a list;
* ``threat_language``: mapped like ``language`` (``kuery`` -> ``kql``);
* ``tactics``: the tactic ids of ``[[rule.threat]]`` (``TA0002``), in file order;
* ``threat``: ``[{"framework", "tactic": "TA0002", "techniques": [{"id": "T1059",
  "subtechniques": ["T1059.001"]}]}]``, ids only;
* ``building_block``: True for every rule under ``rules_building_block/`` and for a rule with
  ``building_block_type`` elsewhere (5 deprecated rules of ``rules/_deprecated/``).

TOML dates and times become ISO text, so ``extra`` round-trips through JSON.

Hunting queries (``[hunt]``), one Rule per file:

=====================  ==========================================================================
``id``                 ``"hunt-"`` + ``hunt.uuid`` (:data:`HUNT_ID_PREFIX`; the uuid itself is
                       ``extra["uuid"]``): upstream, hunting uuids are not rule ids, and one of
                       them equals a production rule's ``rule_id``
``title``              ``hunt.name``
``type``               ``"hunt"``
``language``           the first declared language that one of its queries has (below), else
                       the first query's
``query``              the query when there is one; several are joined with
                       :data:`HUNT_QUERY_SEPARATOR` (each with trailing whitespace stripped)
``attack``             the ATT&CK ids of ``hunt.mitre`` (ATLAS ids such as ``AML.T0051`` of the
                       LLM hunts stay in ``extra["mitre"]`` only)
``author``             ``hunt.author`` (joined when a list)
``data_sources``       ``hunt.integration``
``description``        ``hunt.description``; ``references`` from ``hunt.references``
=====================  ==========================================================================

``extra["queries"]`` lists every query as ``{"language", "query"}``, the text an analyzer should
read (an analyzer of hunting rules reads this list, not the joined ``query``).
``extra["languages"]`` holds the declared ``hunt.language`` list mapped through
:data:`HUNT_LANGUAGES` (``ES|QL`` -> ``esql``, ``EQL`` -> ``eql``, ``SQL`` -> ``sql``). A query's
own language is recognised from its first word (``select``/``with``: sql; ``from``/``row``/
``show``: esql; ``sequence``/``sample``/``<category> where``: eql), else the first declared
language. Six corpus files open ES|QL queries with a stray Markdown fence tag on a line of its own
(``sql``); that line is dropped from the entry's ``query`` and kept as ``"stray_tag": "sql"``
(the entry's text then starts one line below the written one). ``extra["notes"]``,
``extra["mitre"]``, ``extra["integration"]`` and ``extra["license"]`` are kept as written.

Errors (``LoadError.kind``): ``toml`` (line/col from tomllib's message; "at end of document" is
the end of the text), ``encoding`` (line/col of the first bad byte), ``empty``, ``schema`` (no
``[rule]``/``[hunt]`` table, or a required key missing or of the wrong type: ``rule_id``,
``name``, ``type``, and ``query`` unless a machine-learning rule, whose
``machine_learning_job_id`` is required instead; ``uuid``, ``name`` and ``query`` of a hunt;
line of the key, else of the table header), ``io``, ``internal``. Duplicate ids across files are
found by the build (``duplicate-id``).
"""

from __future__ import annotations

import datetime as _dt
import re
import textwrap
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ruleatlas.model import FileResult, LoadError, Rule
from ruleatlas.sources import yamlutil
from ruleatlas.sources.base import (
    SideTables,
    files_under,
    load_guarded,
    read_rule_text,
    strings,
)

NAME = "elastic"
UPSTREAM = "https://github.com/elastic/detection-rules"
BRANCH = "main"

RULE_FOLDERS: tuple[str, ...] = ("rules", "rules_building_block", "hunting")
BUILDING_BLOCK_FOLDER = "rules_building_block"

# TOML ``rule.language`` -> catalog language id.
LANGUAGES: dict[str, str] = {"kuery": "kql", "kql": "kql", "eql": "eql", "esql": "esql",
                             "lucene": "lucene"}
# Language of a rule type when ``language`` is not written (Kibana's default is kuery).
TYPE_LANGUAGES: dict[str, str] = {"eql": "eql", "esql": "esql"}
DEFAULT_LANGUAGE = "kql"
ML_TYPE = "machine_learning"
ML_LANGUAGE = "ml"
HUNT_TYPE = "hunt"
# ``hunt.language`` entries (lower-cased) -> catalog language id.
HUNT_LANGUAGES: dict[str, str] = {"es|ql": "esql", "esql": "esql", "eql": "eql", "sql": "sql",
                                  "osquery": "sql", "kql": "kql", "kuery": "kql",
                                  "lucene": "lucene"}
# Hunting uuids live in their own namespace upstream (one equals a detection rule's rule_id):
# the catalog id of a hunt is this prefix + its uuid, so no hunt can displace a detection rule.
HUNT_ID_PREFIX = "hunt-"
HUNT_QUERY_SEPARATOR = "\n\n/* ---- next query ---- */\n\n"

# First word of a hunting query -> its language (after comments and a stray fence tag).
_FIRST_WORD: dict[str, str] = {"select": "sql", "with": "sql", "from": "esql", "row": "esql",
                               "show": "esql", "sequence": "eql", "sample": "eql"}
_EQL_HEAD = re.compile(r"^[A-Za-z_][\w.]*\s+where\b")
_FENCE_TAG = re.compile(r"^[ \t]*(sql|esql|eql|kql|kuery)[ \t]*\r?\n", re.I)
_LEADING_COMMENT = re.compile(r"^\s*(?://[^\n]*|--[^\n]*|/\*.*?\*/)", re.S)
_TOML_AT = re.compile(r"\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")
_TID = re.compile(r"^T\d{4}(?:\.\d{3})?$")

# [rule] keys with a Rule column (everything else goes to extra).
_RULE_MAPPED = frozenset({
    "rule_id", "name", "description", "references", "false_positives", "tags", "severity",
    "author", "type", "language", "query", "version", "threat",
})
_META_MAPPED = frozenset({"creation_date", "updated_date", "maturity"})
_HUNT_MAPPED = frozenset({"uuid", "name", "description", "references", "author", "language",
                          "query"})


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def source_url(root: Path, rel: str) -> str:
    return f"{yamlutil.github_remote(str(root), UPSTREAM)}/blob/{BRANCH}/{rel}"


def _plain(v: Any) -> Any:
    """TOML dates and times to ISO text, recursively (records stay JSON-able)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, (_dt.date, _dt.time)):
        return v.isoformat()
    return v


def _opt(v: Any) -> str | None:
    if v is None or isinstance(v, (dict, list)):
        return None
    s = v if isinstance(v, str) else str(v)
    return s if s.strip() else None


def _date(v: Any) -> str | None:
    """``2020/12/01`` (Elastic's style) -> ``2020-12-01``; other text kept."""
    s = _opt(v)
    if s is None:
        return None
    m = re.match(r"^(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})$", s.strip())
    return f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}" if m else s.strip()


def toml_problem(e: tomllib.TOMLDecodeError, text: str) -> tuple[str, int, int]:
    """Reason, line and column of a tomllib error (``(at line L, column C)`` or ``(at end of
    document)``, which is the position after the last character)."""
    msg = str(e)
    m = _TOML_AT.search(msg)
    if m:
        return msg[: m.start()].rstrip(), int(m.group(1)), int(m.group(2))
    end = _TOML_END.search(msg)
    reason = msg[: end.start()] + " at end of document" if end else msg
    line = text.count("\n") + 1
    col = len(text) - (text.rfind("\n") + 1) + 1
    return reason, line, col


def _header_line(text: str, table: str) -> int:
    m = re.search(rf"^[ \t]*\[{re.escape(table)}\][ \t]*(?:#.*)?$", text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def _key_line(text: str, table: str, key: str) -> int:
    """Line of ``key = `` after the ``[table]`` header (else the header's line, else 1)."""
    head = _header_line(text, table)
    start = 0
    for _ in range(head - 1):
        start = text.find("\n", start) + 1
    m = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=", re.M).search(text, start)
    return text.count("\n", 0, m.start()) + 1 if m else head


# --------------------------------------------------------------------------------------------
# ATT&CK
# --------------------------------------------------------------------------------------------


def _ids(v: Any) -> list[str]:
    out = []
    for item in v if isinstance(v, list) else []:
        if isinstance(item, Mapping) and _opt(item.get("id")):
            out.append(str(item["id"]).strip().upper())
    return out


def threat_of(threats: Any) -> list[dict[str, Any]]:
    """``[[rule.threat]]`` as ids only: ``[{"framework", "tactic", "techniques": [{"id",
    "subtechniques"}]}]``."""
    out: list[dict[str, Any]] = []
    for t in threats if isinstance(threats, list) else []:
        if not isinstance(t, Mapping):
            continue
        tactic = t.get("tactic")
        techniques = []
        for tech in t.get("technique") or []:
            if isinstance(tech, Mapping) and _opt(tech.get("id")):
                techniques.append({"id": str(tech["id"]).strip().upper(),
                                   "subtechniques": _ids(tech.get("subtechnique"))})
        out.append({
            "framework": _opt(t.get("framework")),
            "tactic": (str(tactic["id"]).strip().upper()
                       if isinstance(tactic, Mapping) and _opt(tactic.get("id")) else None),
            "techniques": techniques,
        })
    return out


def attack_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """The ATT&CK technique ids (``T1059``, ``T1059.001``) among ``ids``, upper-cased, order
    kept, no duplicates; other ids (ATLAS ``AML.T0051``) are left out (they stay in ``extra``)."""
    seen = dict.fromkeys(i.strip().upper() for i in ids)
    return tuple(i for i in seen if _TID.match(i))


def attack_of(threat: list[dict[str, Any]]) -> tuple[str, ...]:
    """Technique then sub-technique ids of ``[[rule.threat]]``, file order, no duplicates."""
    out: list[str] = []
    for t in threat:
        for tech in t["techniques"]:
            out.append(tech["id"])
            out.extend(tech["subtechniques"])
    return attack_ids(out)


# --------------------------------------------------------------------------------------------
# Detection rules
# --------------------------------------------------------------------------------------------


def _threshold(v: Any) -> Any:
    if not isinstance(v, Mapping):
        return v
    out = dict(v)
    out["field"] = list(strings(v.get("field")))
    return out


def _new_terms(v: Any) -> Any:
    """``{field: "new_terms_fields", value: [...], history_window_start: [{field, value}]}`` ->
    ``{"fields": [...], "history_window_start": "now-14d"}`` (other keys kept)."""
    if not isinstance(v, Mapping):
        return v
    out = {k: x for k, x in v.items() if k not in ("field", "value", "history_window_start")}
    out["fields"] = list(strings(v.get("value")))
    hws = v.get("history_window_start")
    for item in hws if isinstance(hws, list) else [hws]:
        if isinstance(item, Mapping) and item.get("field") == "history_window_start":
            out["history_window_start"] = _opt(item.get("value"))
        elif isinstance(item, str):
            out["history_window_start"] = item
    return out


_NORMALISE: dict[str, Any] = {
    "threshold": _threshold,
    "new_terms": _new_terms,
    "machine_learning_job_id": lambda v: list(strings(v)),
    "threat_language": lambda v: LANGUAGES.get(str(v).lower(), str(v).lower()),
}


def _rule_extra(doc: Mapping[str, Any], rule: Mapping[str, Any], meta: Mapping[str, Any],
                rel: str, threat: list[dict[str, Any]]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for k, v in rule.items():
        if k not in _RULE_MAPPED:
            fn = _NORMALISE.get(k)
            extra[k] = _plain(fn(v) if fn else v)
    rest_meta: dict[str, Any] = {}
    for k, v in meta.items():
        if k in _META_MAPPED:
            continue
        if k in extra:
            rest_meta[k] = _plain(v)
        else:
            extra[k] = _plain(v)
    if rest_meta:
        extra["metadata"] = rest_meta
    for k, v in doc.items():  # other top-level tables: [transform], ...
        if k not in ("rule", "metadata"):
            extra[k] = _plain(v)
    if threat:
        extra["threat"] = threat
        extra["tactics"] = list(dict.fromkeys(t["tactic"] for t in threat if t["tactic"]))
    if "threat" in rule and not isinstance(rule["threat"], list):
        extra["threat_raw"] = _plain(rule["threat"])
    if PurePosixPath(rel).parts[:1] == (BUILDING_BLOCK_FOLDER,) or "building_block_type" in rule:
        extra["building_block"] = True
    return extra


def _data_sources(rule: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, ...]:
    out = dict.fromkeys(strings(meta.get("integration")))
    for ri in rule.get("related_integrations") or []:
        if isinstance(ri, Mapping) and _opt(ri.get("package")):
            out[str(ri["package"])] = None
    return tuple(out) or strings(rule.get("index"))


def _rule_schema(rule: Mapping[str, Any], text: str) -> tuple[str, int] | None:
    """The first schema problem of a ``[rule]`` table and its line, or None."""
    for key in ("rule_id", "name", "type"):
        if key not in rule:
            return f"missing required key: rule.{key}", _header_line(text, "rule")
        if not isinstance(rule[key], str) or not rule[key].strip():
            return f"rule.{key} is not a non-empty string", _key_line(text, "rule", key)
    if rule["type"] == ML_TYPE:
        if not strings(rule.get("machine_learning_job_id")):
            return ("missing required key: rule.machine_learning_job_id",
                    _key_line(text, "rule", "machine_learning_job_id"))
    elif "query" not in rule:
        return "missing required key: rule.query", _header_line(text, "rule")
    elif not isinstance(rule["query"], str):
        return "rule.query is not a string", _key_line(text, "rule", "query")
    if "language" in rule and not isinstance(rule["language"], str):
        return "rule.language is not a string", _key_line(text, "rule", "language")
    return None


def _language(rule: Mapping[str, Any]) -> str:
    rtype = rule["type"]
    if rtype == ML_TYPE:
        return ML_LANGUAGE
    lang = rule.get("language")
    if isinstance(lang, str) and lang.strip():
        return LANGUAGES.get(lang.strip().lower(), lang.strip().lower())
    return TYPE_LANGUAGES.get(rtype, DEFAULT_LANGUAGE)


def rule_from_toml(doc: Mapping[str, Any], rel: str, text: str, url: str) -> Rule | LoadError:
    """A ``[metadata]`` + ``[rule]`` document into a Rule, or a located ``schema`` error."""
    rule = doc["rule"]
    meta_raw = doc.get("metadata")
    meta: Mapping[str, Any] = meta_raw if isinstance(meta_raw, Mapping) else {}
    problem = _rule_schema(rule, text)
    if problem:
        return LoadError(NAME, rel, problem[0], problem[1], kind="schema")
    threat = threat_of(rule.get("threat"))
    extra = _rule_extra(doc, rule, meta, rel, threat)
    if meta_raw is not None and not isinstance(meta_raw, Mapping):
        extra["metadata"] = _plain(meta_raw)
    ml = rule["type"] == ML_TYPE
    if ml and "query" in rule:
        extra["query"] = _plain(rule["query"])
    fps = rule.get("false_positives")
    return Rule(
        id=rule["rule_id"].strip(),
        source=NAME,
        path=rel,
        title=rule["name"].strip(),
        language=_language(rule),
        query="" if ml else rule["query"],
        body=text,
        source_url=url,
        status=_opt(meta.get("maturity")),
        severity=_opt(rule.get("severity")),
        author=", ".join(strings(rule.get("author"))) or None,
        date=_date(meta.get("creation_date")),
        modified=_date(meta.get("updated_date")),
        version=_opt(rule.get("version")),
        type=rule["type"].strip(),
        description=(_opt(rule.get("description")) or "").strip(),
        references=strings(rule.get("references")),
        falsepositives=tuple(textwrap.dedent(f).strip() for f in strings(fps)),
        attack=attack_of(threat),
        tags=strings(rule.get("tags")),
        data_sources=_data_sources(rule, meta),
        line=1,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------
# Hunting queries
# --------------------------------------------------------------------------------------------


def query_language(text: str, declared: tuple[str, ...]) -> tuple[str, str | None]:
    """The language of one hunting query and the stray fence tag it starts with (or None)."""
    tag = _FENCE_TAG.match(text.lstrip("\r\n"))
    head = text.lstrip("\r\n")[tag.end():] if tag else text
    while (m := _LEADING_COMMENT.match(head)) is not None:
        head = head[m.end():]
    head = head.lstrip()
    word = re.match(r"[A-Za-z_]+", head)
    lang = _FIRST_WORD.get(word.group(0).lower()) if word else None
    if lang is None and _EQL_HEAD.match(head):
        lang = "eql"
    return lang or (declared[0] if declared else DEFAULT_LANGUAGE), (
        tag.group(1) if tag else None)


def _hunt_queries(raw: Any, declared: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for q in raw if isinstance(raw, list) else [raw]:
        lang, tag = query_language(q, declared)
        entry: dict[str, Any] = {"language": lang, "query": q}
        if tag is not None:
            entry["query"] = _FENCE_TAG.sub("", q.lstrip("\r\n"), count=1)
            entry["stray_tag"] = tag
        out.append(entry)
    return out


def _hunt_schema(hunt: Mapping[str, Any], text: str) -> tuple[str, int] | None:
    for key in ("uuid", "name"):
        if key not in hunt:
            return f"missing required key: hunt.{key}", _header_line(text, "hunt")
        if not isinstance(hunt[key], str) or not hunt[key].strip():
            return f"hunt.{key} is not a non-empty string", _key_line(text, "hunt", key)
    q = hunt.get("query")
    if q is None:
        return "missing required key: hunt.query", _header_line(text, "hunt")
    queries = q if isinstance(q, list) else [q]
    if not queries or not all(isinstance(x, str) and x.strip() for x in queries):
        return ("hunt.query is not a non-empty string or list of them",
                _key_line(text, "hunt", "query"))
    return None


def hunt_from_toml(doc: Mapping[str, Any], rel: str, text: str, url: str) -> Rule | LoadError:
    """A ``[hunt]`` document into one Rule (all its queries), or a located ``schema`` error."""
    hunt = doc["hunt"]
    problem = _hunt_schema(hunt, text)
    if problem:
        return LoadError(NAME, rel, problem[0], problem[1], kind="schema")
    declared = tuple(HUNT_LANGUAGES.get(x.strip().lower(), x.strip().lower())
                     for x in strings(hunt.get("language")))
    queries = _hunt_queries(hunt["query"], declared)
    extra: dict[str, Any] = {k: _plain(v) for k, v in hunt.items() if k not in _HUNT_MAPPED}
    extra.update({k: _plain(v) for k, v in doc.items() if k != "hunt"})
    extra["queries"] = queries
    extra["languages"] = list(declared)
    raw = hunt["query"] if isinstance(hunt["query"], list) else [hunt["query"]]
    uuid = hunt["uuid"].strip()
    extra["uuid"] = uuid
    used = [q["language"] for q in queries]
    return Rule(
        id=HUNT_ID_PREFIX + uuid,
        source=NAME,
        path=rel,
        title=hunt["name"].strip(),
        language=next((lang for lang in declared if lang in used), used[0]),
        query=raw[0] if len(raw) == 1 else HUNT_QUERY_SEPARATOR.join(q.rstrip() for q in raw),
        body=text,
        source_url=url,
        author=", ".join(strings(hunt.get("author"))) or None,
        type=HUNT_TYPE,
        description=(_opt(hunt.get("description")) or "").strip(),
        references=strings(hunt.get("references")),
        attack=attack_ids(strings(hunt.get("mitre"))),
        data_sources=strings(hunt.get("integration")),
        line=1,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def load_elastic_file(root: Path, path: Path, data: bytes | None = None) -> FileResult:
    """One TOML file into a FileResult (one rule or one located error); never raises for bad
    input."""
    got = read_rule_text(NAME, root, path, data)
    if isinstance(got, FileResult):
        return got
    try:
        doc = tomllib.loads(got.text)
    except tomllib.TOMLDecodeError as e:
        return got.fail(*toml_problem(e, got.text), kind="toml")
    if not doc:
        return got.fail("no TOML content (only comments)", kind="empty")
    url = source_url(root, got.rel)
    if isinstance(doc.get("rule"), Mapping):
        return got.result(rule_from_toml(doc, got.rel, got.text, url))
    if isinstance(doc.get("hunt"), Mapping):
        return got.result(hunt_from_toml(doc, got.rel, got.text, url))
    return got.fail("no [rule] or [hunt] table", 1, kind="schema")


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


class ElasticSource:
    """Reader of an elastic/detection-rules clone (see module doc)."""

    name = NAME
    label = "Elastic"
    side_folders: tuple[str, ...] | None = ()

    def detect(self, root: Path) -> bool:
        """A ``rules/`` folder holding ``.toml`` files."""
        rules = root / "rules"
        return rules.is_dir() and next(files_under(rules, (".toml",)), None) is not None

    def rule_files(self, root: Path) -> Iterable[Path]:
        out: list[Path] = []
        for folder in RULE_FOLDERS:
            if (root / folder).is_dir():
                out.extend(files_under(root / folder, (".toml",)))
        return sorted(out)

    def load_file(self, root: Path, path: Path, data: bytes | None = None) -> FileResult:
        return load_guarded(NAME, load_elastic_file, root, path, data)

    def side_tables(self, root: Path) -> SideTables:
        """detection-rules has no side tables the catalog needs; the digest stays stable."""
        return SideTables()
