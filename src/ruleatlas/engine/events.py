"""The flattened event record every reader produces and every matcher reads.

An event is flattened ONCE, when it is read, into the field names rules use:

* EventData ``<Data Name="X">`` entries are top-level fields (``Image``, ``CommandLine``, ...);
  unnamed ``<Data>`` entries become ``Data`` (the text, or a list of texts when there are
  several) and ``Data_1``, ``Data_2``, ... (each one, 1-based); UserData leaves are top-level too;
* System becomes ``EventID``, ``Qualifiers``, ``Version``, ``Level``, ``Task``, ``Opcode``,
  ``Keywords``, ``TimeCreated`` (the SystemTime string), ``EventRecordID``, ``ActivityID``,
  ``ProcessID``/``ThreadID`` (Execution), ``Channel``, ``Computer``, ``Security_UserID``,
  ``Provider_Name``, ``Provider_Guid``, ``Provider_EventSourceName``;
* on a name clash EventData wins over System (EventData is what rules name).

Values stay as the source gives them: ``EventID`` is an ``int`` from EVTX and JSON, a ``str``
from Splunk XML text. Compare through :func:`as_int` / :func:`same_value`, never with ``==``.

Winlogbeat/ECS documents (``winlog.event_data``...) are mapped by :func:`flatten_winlog`.
Flattened JSON lines (OTRF/NXLog exports) already use these names; :func:`normalise_flat` maps
their few differences (``Hostname`` -> ``Computer``, ``SourceName`` -> ``Provider_Name``, ...),
adding the canonical name and keeping the original one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


class Event:
    """One flattened event: ``fields`` plus where it came from.

    ``file`` is the path read (``archive.zip!member.json`` for an archive member); ``position``
    the 1-based record number (EVTX, XML) or line number (JSON lines) inside it. A plain slotted
    class, not a dataclass: the engine makes hundreds of thousands of these per second.
    """

    __slots__ = ("fields", "file", "position")

    def __init__(self, fields: dict[str, Any], file: str, position: int) -> None:
        self.fields = fields
        self.file = file
        self.position = position

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    @property
    def record_id(self) -> int | str:
        """``EventRecordID`` when the event has one, else the position in its file."""
        rid = self.fields.get("EventRecordID")
        return rid if rid is not None else self.position

    @property
    def time(self) -> str | None:
        """When it happened: System TimeCreated, else the collector's timestamp."""
        f = self.fields
        for k in ("TimeCreated", "UtcTime", "@timestamp", "EventTime", "timestamp", "_time"):
            v = f.get(k)
            if v is not None:
                return str(v)
        return None

    @property
    def host(self) -> str | None:
        v = self.fields.get("Computer")
        return None if v is None else str(v)

    @property
    def channel(self) -> str | None:
        v = self.fields.get("Channel")
        return None if v is None else str(v)

    @property
    def event_id(self) -> int | None:
        """The EventID as an int whatever the source gave (None when absent or not numeric)."""
        return as_int(self.fields.get("EventID"))

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "position": self.position, "fields": self.fields}

    def __repr__(self) -> str:
        return f"Event({self.file}#{self.position}, {self.channel} {self.fields.get('EventID')})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Event)
            and self.fields == other.fields
            and self.file == other.file
            and self.position == other.position
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class ReadError:
    """A file or record that could not be read, with where and why; reading went on.

    ``unit`` says what ``position`` counts: ``record`` (1-based, EVTX/XML), ``line`` (JSON),
    ``byte`` (an offset), or ``file`` (position 0: the file as a whole).
    """

    file: str
    position: int
    reason: str
    unit: str = "record"

    def __str__(self) -> str:
        where = self.file if self.unit == "file" else f"{self.file}:{self.unit} {self.position}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class InputRead:
    """What reading one input (a file or archive given by the user, or found in a folder) gave:
    its events and its :class:`ReadError` count. ``errors == 0``: read whole; ``events == 0``
    with errors: nothing of it could be read."""

    file: str
    events: int
    errors: int

    @property
    def status(self) -> str:
        if not self.errors:
            return "read"
        return "partly read" if self.events else "unreadable"


# --------------------------------------------------------------------------------------------
# Value helpers (for the matcher: EventID is int in EVTX/JSON, str in XML)
# --------------------------------------------------------------------------------------------


def as_int(v: Any) -> int | None:
    """An int from an int, a decimal string (``"4688"``, ``" 4688 "``) or a hex string
    (``"0x1F"``); None for anything else. Booleans are not numbers here."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s, 16) if s[:2] in ("0x", "0X") else int(s)
        except ValueError:
            return None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def same_value(event_value: Any, rule_value: Any) -> bool:
    """Exact equality that lets numbers meet across int and str (``4688 == "4688"``);
    strings compare case-insensitively, as Sigma and SPL search terms do."""
    if event_value is None or rule_value is None:
        return event_value is rule_value
    if isinstance(event_value, str) and isinstance(rule_value, str):
        return event_value == rule_value or event_value.lower() == rule_value.lower()
    a, b = as_int(event_value), as_int(rule_value)
    if a is not None and b is not None:
        return a == b
    return str(event_value).lower() == str(rule_value).lower()


# --------------------------------------------------------------------------------------------
# Flattening the nested Event.System / Event.EventData shape (evtx JSON and XML alike)
# --------------------------------------------------------------------------------------------

TEXT = "#text"
ATTRS = "#attributes"

# System element -> {attribute: flattened name}; elements not listed keep their own name.
SYSTEM_ATTRS: dict[str, dict[str, str]] = {
    "Provider": {"Name": "Provider_Name", "Guid": "Provider_Guid",
                 "EventSourceName": "Provider_EventSourceName"},
    "TimeCreated": {"SystemTime": "TimeCreated"},
    "Execution": {"ProcessID": "ProcessID", "ThreadID": "ThreadID",
                  "ProcessorID": "ProcessorID", "SessionID": "SessionID",
                  "KernelTime": "KernelTime", "UserTime": "UserTime",
                  "ProcessorTime": "ProcessorTime"},
    "Security": {"UserID": "Security_UserID"},
    "Correlation": {"ActivityID": "ActivityID", "RelatedActivityID": "RelatedActivityID"},
    "EventID": {"Qualifiers": "Qualifiers"},
}


def _text(v: Any) -> Any:
    """The text of an evtx JSON element: ``{"#text": x, "#attributes": ...}`` -> ``x``."""
    if isinstance(v, dict):
        return v.get(TEXT)
    return v


def _system(system: Mapping[str, Any], out: dict[str, Any]) -> None:
    for k, v in system.items():
        if isinstance(v, dict):
            attrs = v.get(ATTRS)
            if attrs:
                names = SYSTEM_ATTRS.get(k)
                for ak, av in attrs.items():
                    out[names.get(ak, f"{k}_{ak}") if names else f"{k}_{ak}"] = av
            t = v.get(TEXT)
            if t is not None:
                out[k] = t
        elif v is not None:
            out[k] = v


def _unnamed(values: Any, out: dict[str, Any], name: str = "Data") -> None:
    v = _text(values)
    if v is None:
        return
    if isinstance(v, list):
        vals = [_text(x) for x in v]
        out[name] = vals if len(vals) > 1 else (vals[0] if vals else None)
        for i, x in enumerate(vals, 1):
            out[f"{name}_{i}"] = x
    else:
        out[name] = v
        out[f"{name}_1"] = v


def _event_data(ed: Any, out: dict[str, Any]) -> None:
    if isinstance(ed, dict):
        for k, v in ed.items():
            if k == ATTRS:
                continue  # <EventData Name="TaskDisabled">: a template name, not a field
            if k == "Data":
                _unnamed(v, out)
            elif isinstance(v, dict):
                t = v.get(TEXT)
                if t is not None or ATTRS not in v:
                    out[k] = t if t is not None else v
            else:
                out[k] = v
    elif ed is not None:
        _unnamed(ed, out)


def _leaves(node: Any, out: dict[str, Any]) -> None:
    """UserData: every leaf element at the top level (``<LogFileCleared><SubjectUserName>``)."""
    if not isinstance(node, dict):
        return
    for k, v in node.items():
        if k == ATTRS:
            continue
        if isinstance(v, dict) and TEXT not in v:
            _leaves(v, out)
        elif k not in out:
            out[k] = _text(v)


def flatten_nested(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``{"Event": {"System": ..., "EventData": ...}}`` (or the inner dict) -> flat fields."""
    ev = obj.get("Event", obj)
    if not isinstance(ev, dict):
        return {}
    out: dict[str, Any] = {}
    system = ev.get("System")
    if isinstance(system, dict):
        _system(system, out)
    ed = ev.get("EventData")
    if ed is not None:
        _event_data(ed, out)
    ud = ev.get("UserData")
    if ud is not None:
        _leaves(ud, out)
    ri = ev.get("RenderingInfo")
    if isinstance(ri, dict):
        for k, v in ri.items():
            if k != ATTRS:
                out.setdefault("Message" if k == "Message" else f"RenderingInfo_{k}", _text(v))
    return out


def is_nested(obj: Mapping[str, Any]) -> bool:
    """True for the nested Event.System shape (evtx JSON, ``evtx_dump -o json``)."""
    ev = obj.get("Event")
    if isinstance(ev, dict):
        return "System" in ev
    return isinstance(obj.get("System"), dict)


# Flattened exports (OTRF / NXLog / Winlogbeat-like) -> canonical names, added beside the
# originals when the canonical one is absent.
FLAT_ALIASES: tuple[tuple[str, str], ...] = (
    ("Hostname", "Computer"),
    ("SourceName", "Provider_Name"),
    ("ProviderName", "Provider_Name"),
    ("ProviderGuid", "Provider_Guid"),
    ("RecordNumber", "EventRecordID"),
    ("UserID", "Security_UserID"),
    ("ExecutionProcessID", "ProcessID"),
    ("EventCode", "EventID"),
)


def normalise_flat(d: dict[str, Any]) -> dict[str, Any]:
    """Add canonical names to an already flat event (in place; returns it)."""
    for src, dst in FLAT_ALIASES:
        if src in d and dst not in d:
            d[dst] = d[src]
    return d


# Winlogbeat / Elastic Agent (ECS) documents: ``winlog.*`` -> the names above.
WINLOG_FIELDS: tuple[tuple[str, str], ...] = (
    ("channel", "Channel"),
    ("event_id", "EventID"),
    ("computer_name", "Computer"),
    ("provider_name", "Provider_Name"),
    ("provider_guid", "Provider_Guid"),
    ("record_id", "EventRecordID"),
    ("opcode", "Opcode"),
    ("task", "Task"),
    ("version", "Version"),
    ("keywords", "Keywords"),
)


def _system_fields(src: Mapping[str, Any],
                   table: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The fields of ``table`` present in ``src``, under their canonical names; ``EventID`` an
    int when numeric; ``user.identifier`` (the SID) as ``Security_UserID``."""
    out: dict[str, Any] = {}
    for name, dst in table:
        v = src.get(name)
        if v is not None:
            out[dst] = v
    eid = out.get("EventID")
    if isinstance(eid, str) and eid.isdigit():
        out["EventID"] = int(eid)
    user = src.get("user")
    if isinstance(user, dict) and user.get("identifier"):
        out["Security_UserID"] = user["identifier"]
    return out


def _with_data(out: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    """``out`` with the entries of ``src``'s ``event_data`` and ``user_data`` at the top."""
    for part in ("event_data", "user_data"):
        data = src.get(part)
        if isinstance(data, dict):
            out.update(data)
    return out


def flatten_winlog(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Winlogbeat/ECS document: ``winlog.event_data`` / ``winlog.user_data`` entries at the
    top level, ``winlog.channel`` -> ``Channel``, ``winlog.event_id`` -> ``EventID`` (an int
    when numeric), ``winlog.process.pid`` -> ``ProcessID``, ``@timestamp`` -> ``TimeCreated``."""
    w = obj["winlog"]
    out = _system_fields(w, WINLOG_FIELDS)
    proc = w.get("process")
    if isinstance(proc, dict):
        pid = proc.get("pid")
        if pid is not None:
            out["ProcessID"] = pid
        thread = proc.get("thread")
        if isinstance(thread, dict) and thread.get("id") is not None:
            out["ThreadID"] = thread["id"]
    ts = obj.get("@timestamp")
    if ts is not None:
        out["TimeCreated"] = ts
    _with_data(out, w)
    msg = obj.get("message")
    if msg is not None:
        out.setdefault("Message", msg)
    return out


# Winlogbeat 6.x (older OTRF/Mordor archives): top-level snake_case System fields.
LEGACY_WINLOG_FIELDS: tuple[tuple[str, str], ...] = (
    ("log_name", "Channel"),
    ("event_id", "EventID"),
    ("computer_name", "Computer"),
    ("source_name", "Provider_Name"),
    ("provider_guid", "Provider_Guid"),
    ("record_number", "EventRecordID"),
    ("process_id", "ProcessID"),
    ("thread_id", "ThreadID"),
    ("opcode", "Opcode"),
    ("task", "Task"),
    ("version", "Version"),
    ("level", "Level"),
    ("keywords", "Keywords"),
    ("activity_id", "ActivityID"),
    ("message", "Message"),
    ("@timestamp", "TimeCreated"),
)


def flatten_legacy_winlog(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Winlogbeat 6.x document (``log_name``, ``event_id``, ``event_data``, ...)."""
    return _with_data(_system_fields(obj, LEGACY_WINLOG_FIELDS), obj)


def flatten(obj: Any) -> dict[str, Any] | None:
    """Any JSON object read from a log -> flat fields; None when it is not an object."""
    if not isinstance(obj, dict):
        return None
    if is_nested(obj):
        return flatten_nested(obj)
    if isinstance(obj.get("winlog"), dict):
        return flatten_winlog(obj)
    if "log_name" in obj and isinstance(obj.get("event_data", {}), dict) and "event_id" in obj:
        return flatten_legacy_winlog(obj)
    return normalise_flat(obj)
