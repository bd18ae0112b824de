"""The typed results of the MCP tools (their ``outputSchema``).

Why pydantic models and not the project's frozen, slotted dataclasses: the MCP SDK derives a
tool's output schema from its return annotation and validates every result against it; it reads
pydantic models directly (field descriptions included), whereas slotted dataclasses lose their
defaults on the way. The models are frozen all the same, and hold only JSON values.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ruleatlas.sources import SOURCES


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ------------------------------------------------------------------------------ search_rules


class RuleHit(_Result):
    id: str
    source: str = Field(description="the rule's source: " + ", ".join(SOURCES))
    title: str
    status: str | None = None
    severity: str | None = None
    type: str | None = None
    language: str
    path: str = Field(description="file of the rule in its repository")
    techniques: list[str] = Field(default_factory=list, description="ATT&CK technique ids")
    snippet: str | None = Field(None, description="matched words between [ and ]")


class SearchResult(_Result):
    query: str
    total: int = Field(description="rules matching, of which the first `returned` are listed")
    returned: int
    rules: list[RuleHit]


# ------------------------------------------------------------------------------ get_rule


class RuleResult(_Result):
    rule: dict[str, Any] = Field(
        description="the rule document (docs/catalog.md): metadata, attack, events, body, "
                    "stages with their predicates, indicators with corpus counts by source")
    truncated: list[str] = Field(
        default_factory=list, description="paths of the text values cut to the text limit "
                                          "(body, stages[0].text, ...)")


# ------------------------------------------------------------------------------ lookup_indicator


class IndicatorRule(_Result):
    id: str
    source: str
    title: str
    path: str
    field: str = Field(description="the indicator as the rule writes it: field")
    op: str
    value: str


class IndicatorResult(_Result):
    spec: str = Field(description="the indicator as asked, 'FIELD OP VALUE'")
    field_key: str = Field(description="canonical field the spec normalises to")
    key: str = Field(description="normalised value key")
    total: int = Field(description="rules holding the indicator")
    by_source: dict[str, int]
    returned: int
    rules: list[IndicatorRule]


# ------------------------------------------------------------------------------ similar_rules


class SharedIndicator(_Result):
    field_key: str
    key: str
    weight: float = Field(description="log(N / df)")
    df: int = Field(description="rules holding this indicator")


class SimilarRule(_Result):
    id: str
    title: str | None
    source: str | None
    path: str | None
    score: float = Field(description="sum of the weights of the shared indicators")
    share: float = Field(description="score over the asked rule's own total weight")
    shared: list[SharedIndicator]


class SimilarResult(_Result):
    rule: str = Field(description="id of the rule asked about")
    title: str
    similar: list[SimilarRule]


# ------------------------------------------------------------------------------ coverage


class TechniqueRow(_Result):
    technique: str
    name: str
    tactics: list[str]
    parent: str | None
    total: int = Field(description="rules naming this technique")
    by_source: dict[str, int]
    known: bool = Field(description="false: an id the ATT&CK data does not know")
    revoked: bool
    deprecated: bool


class AttackCoverageResult(_Result):
    source: str | None
    tactic: str | None
    total: int = Field(description="techniques with at least one rule (after the filters)")
    returned: int
    techniques: list[TechniqueRow]


class EventRow(_Result):
    channel: str = Field(description="event channel, sourcetype or log source")
    event_id: str | None
    total: int
    by_source: dict[str, int]


class DataSourceCount(_Result):
    name: str
    rules: int


class DataSourceCoverageResult(_Result):
    total_events: int
    events: list[EventRow] = Field(description="channels / event ids, most rules first")
    total_data_sources: int
    data_sources: list[DataSourceCount] = Field(
        description="named data sources, most rules first (of every source: the source filter "
                    "applies to events)")


# ------------------------------------------------------------------------------ hunt_file


class HuntFinding(_Result):
    rule_id: str
    rule_title: str
    source: str
    severity: str | None
    file: str
    record_id: int | str | None = Field(description="EventRecordID, else the position in the file")
    time: str | None
    host: str | None
    matched: dict[str, Any] = Field(description="the fields of the event the rule tested")
    tactics: list[str]


class RuleFindings(_Result):
    rule_id: str
    rule_title: str
    source: str
    severity: str | None
    findings: int


class HuntResult(_Result):
    file: str
    events: int = Field(description="events read")
    findings_total: int
    returned: int
    findings: list[HuntFinding]
    by_rule: list[RuleFindings]
    rules_run: int
    rules_not_runnable: int = Field(description="rules the engine cannot run (skipped)")
    rules_retired: int = Field(description="deprecated/unsupported rules left out")
    read_errors_total: int = Field(description="records or files that could not be read")
    read_errors: list[str] = Field(description="the first of them, with file and position")
    seconds: float
