"""The Rule Atlas MCP server: the catalog's questions as read-only tools for an assistant.

Why a thin layer: every tool calls the function the CLI and the web already use for the same
question (``Catalog.search_rules``, ``api.documents.rule_document``, ``store.indicators``,
``Catalog.attack_coverage``/``event_coverage``, ``engine.hunt.hunt``), so an assistant gets the
answers a person gets, and a fix in one place reaches every front end. This module adds only
what a protocol boundary needs: input limits (``LIMITS``, one place, documented in
docs/mcp.md), typed results (``results.py``) and errors as tool results (``ToolError``: the
client sees ``isError`` with the reason; the server keeps running).

The catalog is opened read-only (``mode=ro``) for each call, with the web's query time limit
enforced inside SQLite (``store.connection.query_deadline``); ``hunt_file`` keeps the rules it
loaded from the catalog (one entry, keyed by the catalog generation, so a rebuilt catalog is
read again).
"""

from __future__ import annotations

import functools
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from ruleatlas import __version__
from ruleatlas.attack import ENTERPRISE_TACTICS
from ruleatlas.limits import DEFAULT as READ_LIMITS
from ruleatlas.mcp.results import (
    AttackCoverageResult,
    DataSourceCount,
    DataSourceCoverageResult,
    EventRow,
    HuntFinding,
    HuntResult,
    IndicatorResult,
    IndicatorRule,
    RuleFindings,
    RuleHit,
    RuleResult,
    SearchResult,
    SimilarResult,
    SimilarRule,
    TechniqueRow,
)
from ruleatlas.sources import SOURCES
from ruleatlas.store import (
    HL_END,
    HL_START,
    Catalog,
    CatalogError,
    RuleQuery,
    SearchError,
    catalog_generation,
)
from ruleatlas.store.connection import query_deadline

if TYPE_CHECKING:
    from ruleatlas.engine.plans import LoadedPlans


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the tools enforce (docs/mcp.md has the table). Text limits match the web's
    query parameters; a longer value is refused before any query runs."""

    rule_ref: int = READ_LIMITS.rule_ref_chars  # characters of a rule id / prefix / title
    query: int = 300  # characters of a search text (the web's ``q``)
    filter: int = 40  # characters of a source / severity / technique filter
    indicator: int = 1000  # characters of an indicator spec (or of its field, op, value)
    path: int = 4096  # characters of a log file path
    rules_filter: int = 20  # names in hunt_file's ``rules`` list
    search_results: int = 200  # search_rules ``limit`` (the web's per_page)
    similar_results: int = 50  # similar_rules ``limit``
    indicator_rules: int = 500  # rules listed by lookup_indicator
    coverage_rows: int = 2000  # rows of attack_coverage / data_source_coverage
    document_text: int = 100_000  # characters of a rule document's body/query/description
    hunt_findings: int = 1000  # findings returned by hunt_file (all are counted)
    hunt_errors: int = 50  # read errors listed by hunt_file (all are counted)
    hunt_file_bytes: int = 2 * 1024**3  # size of the log file hunt_file reads
    query_seconds: float = 5.0  # SQLite work per tool call (the web's limit)


LIMITS = Limits()
HUNT_CATALOGS = 1  # catalogs whose rules hunt_file keeps loaded
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TECHNIQUE = re.compile(r"[Tt]\d{4}(\.\d{3})?")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)

INSTRUCTIONS = """Rule Atlas: a catalog of public detection rules (Sigma, Splunk ESCU) taken
apart into stages, predicates and indicators, with ATT&CK and event coverage, and an engine
that runs the rules over logs. Start with search_rules, then get_rule on an id; lookup_indicator
and similar_rules compare rules across vendors; hunt_file runs the catalog over one log file."""


def _text(name: str, value: str, limit: int) -> str:
    """``value`` checked like a web query parameter: length, no control characters."""
    if len(value) > limit:
        raise ToolError(f"{name} is too long ({len(value)} characters; max {limit})")
    if _CONTROL.search(value):
        raise ToolError(f"{name} contains control characters")
    return value


def _optional(name: str, value: str | None, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    return _text(name, value.strip(), limit)


def _rule_ref(ref: str) -> str:
    ref = _text("rule", ref, LIMITS.rule_ref).strip()
    if not ref:
        raise ToolError("rule is empty: give a rule id, id prefix (8+ characters) or title")
    return ref


def _highlight(snippet: str | None) -> str | None:
    return None if snippet is None else snippet.replace(HL_START, "[").replace(HL_END, "]")


@functools.lru_cache(maxsize=HUNT_CATALOGS)
def _hunt_plans(db: str, generation: int) -> LoadedPlans:
    """The catalog's rules as the plans ``ruleatlas hunt`` starts from (``engine.plans``: the
    build stored them; a stale one is prepared here and not written back, the server being
    read-only); ``generation`` (``store.catalog_generation``) is part of the key only, so a
    catalog a build committed to since is loaded again."""
    from ruleatlas.engine.plans import load

    return load(db, store_back=False)


Query = Annotated[str, Field(description="words to find in title, description and query; all "
                                         "must appear, a word ending in * is a prefix")]
RuleRef = Annotated[str, Field(description="rule id, id prefix (8+ characters) or exact title")]
Source = Annotated[str | None, Field(description="only rules of this source: "
                                                 + ", ".join(SOURCES))]


class Atlas:
    """The tools over one catalog file. Each public method is one MCP tool; its docstring is
    the tool's description and its return annotation the tool's output schema."""

    def __init__(self, db: str | Path, hunt_roots: tuple[Path, ...] = ()) -> None:
        self.db = Path(db).resolve()
        self.hunt_roots = tuple(p.resolve() for p in hunt_roots)
        Catalog.open(self.db, readonly=True).close()  # fail early, with the store's message

    @contextmanager
    def _catalog(self) -> Iterator[Catalog]:
        """The catalog, read-only, with every query of the call (on this connection and on
        any a cache opens meanwhile) stopped after ``LIMITS.query_seconds``
        (``store.connection.query_deadline``)."""
        try:
            cat = Catalog.open(self.db, readonly=True)
        except CatalogError as e:
            raise ToolError(str(e)) from None
        try:
            with query_deadline(LIMITS.query_seconds) as deadline:
                yield cat
        except (ToolError, CatalogError, SearchError):
            raise
        except Exception as e:
            if time.monotonic() > deadline:
                raise ToolError(f"the catalog query took longer than {LIMITS.query_seconds:g} s"
                                ) from e
            raise
        finally:
            cat.close()

    # ------------------------------------------------------------------------ catalog tools

    def search_rules(
        self,
        query: Query,
        source: Source = None,
        severity: Annotated[str | None, Field(description="critical, high, medium, low or "
                                                          "informational")] = None,
        technique: Annotated[str | None, Field(description="ATT&CK id; T1059 also finds "
                                                           "T1059.001")] = None,
        limit: Annotated[int, Field(ge=1, le=LIMITS.search_results)] = 20,
    ) -> SearchResult:
        """Full-text search of the rules (ranked by bm25, title weighted most), with the
        matched words of each rule in its snippet, filtered by source, severity or technique."""
        text = _text("query", query, LIMITS.query).strip()
        if not text:
            raise ToolError("query is empty")
        tech = _optional("technique", technique, LIMITS.filter)
        if tech is not None and not _TECHNIQUE.fullmatch(tech):
            raise ToolError(f"technique must look like T1059 or T1059.001; got {tech!r}")
        src = _optional("source", source, LIMITS.filter)
        sev = _optional("severity", severity, LIMITS.filter)
        q = RuleQuery(text=text, source=(src,) if src else (), severity=(sev,) if sev else (),
                      technique=(tech,) if tech else (),
                      sort="relevance", per_page=limit, facets=False)
        with self._catalog() as cat:
            try:
                page = cat.search_rules(q)
            except SearchError as e:
                raise ToolError(str(e)) from None
        rows = [RuleHit(id=r.id, source=r.source, title=r.title, status=r.status,
                        severity=r.severity, type=r.type, language=r.language, path=r.path,
                        techniques=list(r.techniques), snippet=_highlight(r.snippet))
                for r in page.rows]
        return SearchResult(query=text, total=page.total, returned=len(rows), rules=rows)

    def get_rule(self, rule: RuleRef) -> RuleResult:
        """One rule as the JSON rule document: metadata, ATT&CK, event coverage, body, each
        stage with its predicates and readable expression, and the indicators with how many
        rules of each source hold them."""
        from ruleatlas.api.documents import rule_document

        ref = _rule_ref(rule)
        with self._catalog() as cat:
            try:
                doc = rule_document(cat, ref)
            except CatalogError as e:
                raise ToolError(e.message) from None
        cut: list[str] = []
        return RuleResult(rule=_cut_text(doc, "", cut), truncated=cut)

    def lookup_indicator(
        self,
        field: Annotated[str | None, Field(description="field name, e.g. ScriptBlockText or "
                                                       "Processes.process_name")] = None,
        op: Annotated[str | None, Field(description="operator: = != contains startswith "
                                                    "endswith in re exists ...")] = None,
        value: Annotated[str | None, Field(description="value; * and ? are wildcards")] = None,
        text: Annotated[str | None, Field(description="instead of field/op/value: "
                                                      "'FIELD OP VALUE' in one string")] = None,
        limit: Annotated[int, Field(ge=1, le=LIMITS.indicator_rules)] = 100,
    ) -> IndicatorResult:
        """Every rule holding one indicator, with counts by source. The indicator is
        normalised by the code that keyed the rules, so Sigma and Splunk spellings of the same
        check find each other (ScriptBlockText contains Invoke-WMIExec = ScriptBlockText IN
        "*invoke-wmiexec*")."""
        from ruleatlas.indicators.query import SpecError, parse_spec
        from ruleatlas.store.indicators import rules_with_indicator

        spec = self._indicator_spec(field, op, value, text)
        try:
            parsed = parse_spec(spec)
        except SpecError as e:
            raise ToolError(str(e)) from None
        with self._catalog() as cat:
            by_source = rules_with_indicator(cat.conn, parsed.field_key, parsed.key)
        rows = [IndicatorRule(id=r["id"], source=src, title=r["title"], path=r["path"],
                              field=r["field"], op=r["op"], value=r["value"])
                for src, rs in by_source.items() for r in rs]
        return IndicatorResult(spec=spec, field_key=parsed.field_key, key=parsed.key,
                               total=len(rows), by_source={s: len(v) for s, v in
                                                           by_source.items()},
                               returned=min(len(rows), limit), rules=rows[:limit])

    @staticmethod
    def _indicator_spec(field: str | None, op: str | None, value: str | None,
                        text: str | None) -> str:
        parts = {"field": field, "op": op, "value": value}
        given = {k: v for k, v in parts.items() if v is not None}
        if text is not None:
            if given:
                raise ToolError("give either text or field, op and value, not both")
            spec = _text("text", text, LIMITS.indicator).strip()
        elif len(given) == 3:
            for k, v in given.items():
                _text(k, v, LIMITS.indicator)
            spec = f"{given['field'].strip()} {given['op'].strip()} {given['value']}"
        else:
            missing = ", ".join(k for k in parts if k not in given)
            raise ToolError(f"give text='FIELD OP VALUE', or field, op and value (missing: "
                            f"{missing})")
        if not spec:
            raise ToolError("the indicator is empty")
        return spec

    def similar_rules(
        self,
        rule: RuleRef,
        limit: Annotated[int, Field(ge=1, le=LIMITS.similar_results)] = 10,
    ) -> SimilarResult:
        """Rules of any source sharing the most indicators with this rule (its cross-vendor
        twins); each shared indicator weighs log(N/df), so rare ones count more."""
        from ruleatlas.store.indicators import similar_rules

        ref = _rule_ref(rule)
        with self._catalog() as cat:
            try:
                stored = cat.get_rule(ref)
            except CatalogError as e:
                raise ToolError(e.message) from None
            found = similar_rules(cat.conn, stored.id, limit)
        return SimilarResult(rule=stored.id, title=stored.rule.title,
                             similar=[SimilarRule.model_validate(r) for r in found])

    def attack_coverage(
        self,
        tactic: Annotated[str | None, Field(description="ATT&CK tactic: short name "
                                                        "(execution), name or TA id")] = None,
        source: Source = None,
        limit: Annotated[int, Field(ge=1, le=LIMITS.coverage_rows)] = 1000,
    ) -> AttackCoverageResult:
        """ATT&CK coverage: every technique named by a rule, with its tactics and the number
        of rules per source (ids the ATT&CK data does not know are listed with known=false)."""
        short = None
        if _optional("tactic", tactic, LIMITS.filter) is not None:
            short = _tactic_short(str(tactic))
        src = _optional("source", source, LIMITS.filter)
        with self._catalog() as cat:
            rows = cat.attack_coverage(src)
        if short is not None:
            rows = [r for r in rows if short in r.tactics]
        out = [TechniqueRow(technique=r.technique, name=r.name, tactics=list(r.tactics),
                            parent=r.parent, total=r.total, by_source=dict(r.by_source),
                            known=r.known, revoked=r.revoked, deprecated=r.deprecated)
               for r in rows[:limit]]
        return AttackCoverageResult(source=src, tactic=short, total=len(rows),
                                    returned=len(out), techniques=out)

    def data_source_coverage(
        self,
        source: Source = None,
        limit: Annotated[int, Field(ge=1, le=LIMITS.coverage_rows)] = 200,
    ) -> DataSourceCoverageResult:
        """Event coverage: the event channels / event ids (and Splunk sourcetypes) the rules
        read, with rule counts per source, most rules first (``source`` keeps one source's
        rules); and the named data sources (Splunk's, Sigma's logsources) with their rules."""
        src = _optional("source", source, LIMITS.filter)
        with self._catalog() as cat:
            events = cat.event_coverage(src)
            sources = sorted(cat.data_sources(), key=lambda d: (-d.rules, d.name))
        ev = [EventRow(channel=e.channel, event_id=e.event_id, total=e.total,
                       by_source=dict(e.by_source)) for e in events[:limit]]
        ds = [DataSourceCount(name=d.name, rules=d.rules) for d in sources[:limit]]
        return DataSourceCoverageResult(total_events=len(events), events=ev,
                                        total_data_sources=len(sources), data_sources=ds)

    # ------------------------------------------------------------------------ hunt

    def hunt_file(
        self,
        path: Annotated[str, Field(description="a log file on the server's machine: EVTX, "
                                               "JSON lines/array, OTRF .zip/.tar.gz, Splunk "
                                               "XML")],
        rules: Annotated[str | None, Field(description="comma-separated rule filter: ids, "
                                                       "sources (sigma, splunk), title or path "
                                                       "globs; default every rule")] = None,
        limit: Annotated[int, Field(ge=1, le=LIMITS.hunt_findings)] = 100,
    ) -> HuntResult:
        """Run the catalog's rules over one log file (the engine of `ruleatlas hunt`;
        deprecated and unsupported rules left out) and return the findings: rule, file,
        record and the fields it matched, with a summary by rule and what was skipped."""
        from ruleatlas.engine.catalog import is_retired, select
        from ruleatlas.engine.hunt import HuntReport, hunt_plans

        log = self._log_file(path)
        filters = self._rule_filters(rules)
        try:
            cached = _hunt_plans(str(self.db), catalog_generation(self.db))
        except CatalogError as e:
            raise ToolError(str(e)) from None
        chosen = select(cached.plans, filters)
        if filters and not chosen:
            raise ToolError(f"no rule matches {', '.join(filters)}")
        active = [lr for lr in chosen if not is_retired(lr.rule)]
        report = HuntReport()
        found: list[HuntFinding] = []
        for f in hunt_plans(cached, active, [str(log)], report):
            if len(found) < limit:
                found.append(_finding(f.to_dict()))
        errors = [str(e) for e in report.errors]
        if report.events == 0:
            why = "; ".join(errors[:5]) or "the file holds no events"
            raise ToolError(f"nothing could be read from {log}: {why}")
        s = report.to_dict()
        return HuntResult(
            file=str(log), events=report.events, findings_total=report.findings,
            returned=len(found), findings=found,
            by_rule=[RuleFindings.model_validate(r) for r in s["by_rule"][:LIMITS.hunt_findings]],
            rules_run=report.rules_run, rules_not_runnable=len(report.not_runnable),
            rules_retired=len(chosen) - len(active), read_errors_total=len(errors),
            read_errors=errors[:LIMITS.hunt_errors], seconds=round(report.seconds, 3))

    def _log_file(self, path: str) -> Path:
        raw = _text("path", path, LIMITS.path).strip()
        if not raw:
            raise ToolError("path is empty")
        p = Path(os.path.expanduser(raw))
        try:
            st = p.stat()
        except FileNotFoundError:
            raise ToolError(f"no such file: {raw}") from None
        except OSError as e:
            raise ToolError(f"cannot read {raw}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"not a regular file: {raw}")
        if st.st_size > LIMITS.hunt_file_bytes:
            raise ToolError(f"{raw} is {st.st_size:,} bytes; hunt_file reads at most "
                            f"{LIMITS.hunt_file_bytes:,}")
        real = p.resolve()
        if self.hunt_roots and not any(real.is_relative_to(r) for r in self.hunt_roots):
            roots = ", ".join(str(r) for r in self.hunt_roots)
            raise ToolError(f"{raw} is outside the folders this server may read ({roots})")
        return real

    @staticmethod
    def _rule_filters(rules: str | None) -> list[str]:
        if rules is None or not rules.strip():
            return []
        names = [x.strip() for x in _text("rules", rules, LIMITS.query).split(",") if x.strip()]
        if len(names) > LIMITS.rules_filter:
            raise ToolError(f"rules names {len(names)} filters; max {LIMITS.rules_filter}")
        return names


def _tactic_short(tactic: str) -> str:
    """A tactic's short name from its short name, display name or TA id."""
    want = tactic.strip().lower().replace(" ", "-").replace("_", "-")
    for short, ta, name in ENTERPRISE_TACTICS:
        if want in (short, ta.lower(), name.lower().replace(" ", "-")):
            return short
    known = ", ".join(t[0] for t in ENTERPRISE_TACTICS)
    raise ToolError(f"unknown tactic {tactic!r}; one of {known}")


def _cut_text(v: Any, where: str, cut: list[str]) -> Any:
    """``v`` with every string longer than ``LIMITS.document_text`` cut to it; the path of each
    cut value (``body``, ``stages[0].text``) is appended to ``cut``."""
    if isinstance(v, str):
        if len(v) > LIMITS.document_text:
            cut.append(where)
            return v[:LIMITS.document_text]
        return v
    if isinstance(v, dict):
        return {k: _cut_text(x, f"{where}.{k}" if where else str(k), cut) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_cut_text(x, f"{where}[{i}]", cut) for i, x in enumerate(v)]
    return v


def _finding(d: dict[str, Any]) -> HuntFinding:
    rid = d["record_id"]
    d["record_id"] = rid if rid is None or isinstance(rid, int | str) else str(rid)
    return HuntFinding.model_validate(d)


TOOLS = ("search_rules", "get_rule", "lookup_indicator", "similar_rules", "attack_coverage",
         "data_source_coverage", "hunt_file")


def create_server(db: str | Path, hunt_roots: tuple[Path, ...] = ()) -> MCPServer:
    """The MCP server over the catalog ``db`` (raises ``CatalogError`` when it is not one),
    with the tools of :class:`Atlas` registered read-only."""
    atlas = Atlas(db, hunt_roots)
    server: MCPServer = MCPServer("ruleatlas", title="Rule Atlas", version=__version__,
                                  instructions=INSTRUCTIONS, log_level="WARNING")
    for name in TOOLS:
        server.add_tool(getattr(atlas, name), name=name, annotations=READ_ONLY,
                        structured_output=True)
    return server
