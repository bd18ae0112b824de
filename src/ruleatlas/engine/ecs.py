"""The ECS view of a raw Windows event, as Elastic's Windows / System integrations produce it.

Elastic's rules read Elastic Common Schema fields (``process.name``, ``event.category``,
``winlog.event_data.GrantedAccess``); the readers give raw flattened events (``Image``,
``EventID``, engine/events.py). :func:`ecs_view` computes the ECS document of one event from
the table in ``ecs.yaml``: per channel (as ``coverage.routing.event_key`` names it) the
categorisation of each event id (``event.category``/``type``/``action``, copied from the
integrations' ingest pipelines) and rows ``ecs.field -> how to compute it from raw fields``,
each traced to the pipeline step it follows (docs/ecs.md).

The view is flat (dotted keys); multi-valued fields are lists (``process.args``,
``event.category``); every raw EventData field is kept as ``winlog.event_data.<Name>``. It is a
pure function of the fields, compiled once per event kind (``lru_cache``), and total: missing
fields, odd types (an ``int`` where a string is expected, lists, dicts) and malformed values
give fewer fields, never an exception.

Command lines are split as the pipelines split them: :func:`command_line_to_argv` (Windows'
CommandLineToArgvW rules, the Sysmon and PowerShell pipelines' "SplitCommandLine" script) and
:func:`security_args` (the Security pipeline's simpler split for 4688, which keeps quotes).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from ruleatlas.coverage.routing import Key, event_key
from ruleatlas.coverage.table import load_table

__all__ = ["KindTable", "Row", "command_line_to_argv", "ecs_view", "kind_table",
           "security_args"]

Value = Any
Step = Callable[[Mapping[str, Any], dict[str, Any]], None]

# --------------------------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------------------------


def command_line_to_argv(cmd: str) -> list[str]:
    """Split a command line into arguments the way Windows' CommandLineToArgvW does (as the
    Sysmon pipeline's "Windows-like SplitCommandLine" script, ported from Go's
    ``syscall.commandLineToArgv``): space and tab separate arguments outside quotes; ``2n``
    backslashes before a quote are ``n`` backslashes and the quote toggles quoting, ``2n+1``
    are ``n`` and a literal quote; backslashes elsewhere are literal; inside quotes a doubled
    quote is one literal quote and ends the quoting (the "prior to 2008" rule)."""
    return list(_argv_cached(cmd))


_ARGV_TOKEN = re.compile(r'(\\*)"|[ \t]+|[^ \t"\\]+|\\+')


@lru_cache(maxsize=8192)
def _argv_cached(cmd: str) -> tuple[str, ...]:
    if '"' not in cmd:  # no quote: backslashes are literal, only blanks separate
        return tuple(x for x in re.split(r"[ \t]+", cmd) if x)
    args: list[str] = []
    cur: list[str] | None = None
    inquote = False
    pos, n = 0, len(cmd)
    while pos < n:
        m = _ARGV_TOKEN.match(cmd, pos)
        if m is None:  # unreachable: the alternatives cover every character
            break
        pos = m.end()
        text = m.group(0)
        if m.group(1) is not None:  # backslashes then a quote
            nslash = len(m.group(1))
            cur = [] if cur is None else cur
            cur.append("\\" * (nslash // 2))
            if nslash % 2:
                cur.append('"')
            else:
                if inquote and pos < n and cmd[pos] == '"':
                    cur.append('"')
                    pos += 1
                inquote = not inquote
        elif text[0] in " \t":
            if inquote and cur is not None:
                cur.append(text)
            elif cur is not None:
                args.append("".join(cur))
                cur = None
        else:
            cur = [] if cur is None else cur
            cur.append(text)
    if cur is not None:
        args.append("".join(cur))
    return tuple(args)


def security_args(cmd: str) -> list[str]:
    """The Security pipeline's 4688 split ("Process Event 4688"): a new argument at each
    whitespace character outside double quotes; quotes stay in the arguments and two
    whitespace characters in a row give an empty argument, as Elastic stores them."""
    out: list[str] = []
    start = 0
    in_quote = False
    last = len(cmd) - 1
    for i, c in enumerate(cmd):
        if c == '"':
            in_quote = not in_quote
        if c.isspace() and not in_quote:
            out.append(cmd[start:i])
            start = i + 1
        if i == last:
            out.append(cmd[start:i + 1])
    return out


# --------------------------------------------------------------------------------------------
# Value functions (one per row kind of ecs.yaml)
# --------------------------------------------------------------------------------------------


def _text(v: Value) -> str | None:
    """A scalar as text (EventID may be an int); None for lists, dicts and None."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return None


_INT = re.compile(r"[+-]?\d{1,19}")
_LONG = re.compile(r"([+-]?)(?:(0[xX]|#)([0-9a-fA-F]{1,16})|(0[0-7]+)|(\d{1,19}))")
_MAPPED_V4 = re.compile(r"::ffff:(\d+\.\d+\.\d+\.\d+)")


def _int_or_text(v: Value) -> int | str | None:
    """``v`` itself when an int (not a bool), else its text stripped (None without one)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    s = _text(v)
    return None if s is None else s.strip()


def _int(v: Value) -> int | None:
    s = _int_or_text(v)
    if not isinstance(s, str):
        return s
    return int(s) if _INT.fullmatch(s) else None


def _long(v: Value) -> int | None:
    """Java's Long.decode: decimal, ``0x``/``#`` hex, leading ``0`` octal."""
    s = _int_or_text(v)
    if not isinstance(s, str):
        return s
    m = _LONG.fullmatch(s)
    if m is None:
        return None
    sign = -1 if m.group(1) == "-" else 1
    if m.group(3):
        return sign * int(m.group(3), 16)
    if m.group(4):
        return sign * int(m.group(4), 8)
    return sign * int(m.group(5))


def _basename(v: Value) -> str | None:
    s = _text(v)
    if s is None or len(s) <= 1:
        return None
    idx = s.rfind("\\")
    name = s[idx + 1:] if idx > -1 else ""
    return name or None


def _lastpart(v: Value) -> str | None:
    s = _text(v)
    return None if s is None else s.split("\\")[-1]


def _argv(v: Value) -> list[str] | None:
    s = _text(v)
    return command_line_to_argv(s) if s else None


def _argv_count(v: Value) -> int | None:
    s = _text(v)
    return len(command_line_to_argv(s)) if s else None


def _args_security(v: Value) -> list[str] | None:
    s = _text(v)
    return security_args(s) if s else None


def _user_part(v: Value, index: int) -> str | None:
    s = _text(v)
    if s is None:
        return None
    parts = s.split("\\")
    return (parts[index] or None) if len(parts) == 2 else None


def _before_at(v: Value) -> str | None:
    s = _text(v)
    return None if s is None else s.split("@")[0]


def _split_ws(v: Value) -> list[str] | None:
    s = _text(v)
    return s.split() if s is not None else None


def _trim(v: Value) -> str | None:
    s = _text(v)
    return s.strip() if s is not None else None


def _ip(v: Value) -> str | None:
    s = _text(v)
    if s is None:
        return None
    m = _MAPPED_V4.fullmatch(s)
    return m.group(1) if m else s


AUDIT_FAILURE = 0x10000000000000
AUDIT_SUCCESS = 0x20000000000000


def _outcome(v: Value) -> str | None:
    """[BEAT] winevent.Fields: the Keywords audit bits (a hex string in EVTX/XML, a signed
    64-bit int in NXLog exports), or the rendered keyword names of Winlogbeat documents
    (``["Audit Success"]``)."""
    if isinstance(v, (list, str)):
        names = [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, str)]
        if "Audit Failure" in names:
            return "failure"
        if "Audit Success" in names:
            return "success"
    k = _long(v)
    if k is None:
        return None
    k &= 0xFFFFFFFFFFFFFFFF
    if k & AUDIT_FAILURE:
        return "failure"
    if k & AUDIT_SUCCESS:
        return "success"
    return None


def _map(v: Value, row: Row) -> Any:
    s = _text(v)
    got = row.mapping.get(s) if s is not None and row.mapping is not None else None
    return row.default if got is None else got


def _equals(v: Value, row: Row) -> Any:
    return row.const if _text(v) == row.equals else None


def _hashes(v: Value) -> dict[str, str] | None:
    """[SYSMON] kv on "," and "=", keys and values lower-cased, all-zero values dropped;
    imphash is pe.imphash."""
    s = _text(v)
    if not s:
        return None
    out: dict[str, str] = {}
    for part in s.split(","):
        key, eq, val = part.partition("=")
        if not eq:
            continue
        key, val = key.strip().lower(), val.strip().lower()
        if not key or not val or set(val) == {"0"}:
            continue
        out["pe.imphash" if key == "imphash" else f"hash.{key}"] = val
    return out or None


def _path_parts(v: Value) -> dict[str, str] | None:
    """[SYSMON] "Adds file information": name and directory around the last backslash, the
    extension after the last "." of the whole path; nothing when there is no backslash."""
    s = _text(v)
    if s is None or len(s) <= 1:
        return None
    idx = s.rfind("\\")
    if idx < 0:
        return None
    out = {"name": s[idx + 1:], "directory": s[:idx]}
    dot = s.rfind(".")
    if dot > -1:
        out["extension"] = s[dot + 1:]
    return out


HIVES = {"HKEY_CLASSES_ROOT": "HKCR", "HKCR": "HKCR", "HKEY_CURRENT_CONFIG": "HKCC",
         "HKCC": "HKCC", "HKEY_CURRENT_USER": "HKCU", "HKCU": "HKCU", "HKEY_DYN_DATA": "HKDD",
         "HKDD": "HKDD", "HKEY_LOCAL_MACHINE": "HKLM", "HKLM": "HKLM",
         "HKEY_PERFORMANCE_DATA": "HKPD", "HKPD": "HKPD", "HKEY_USERS": "HKU", "HKU": "HKU"}
_QWORD = re.compile(r"(?i)QWORD \(((0x[0-9A-F]{8})-(0x[0-9A-F]{8}))\)")
_DWORD = re.compile(r"(?i)DWORD \((0x[0-9A-F]{8})\)")


def _registry(v: Value, details: Value) -> dict[str, Any] | None:
    """[SYSMON] "Set registry fields" on TargetObject and Details, including its quirks: the
    QWORD value is ``(high << 8) + low`` and the types are named SZ_DWORD / SZ_QWORD."""
    path = _text(v)
    if not path:
        return None
    out: dict[str, Any] = {"path": path}
    tokens = [t for t in path.split("\\")]
    while len(tokens) > 1 and tokens[-1] == "":
        tokens.pop()  # Java's String.split drops trailing empty strings
    hive = HIVES.get(tokens[0])
    if hive is not None:
        out["hive"] = hive
        if len(tokens) > 1:
            out["key"] = "\\".join(tokens[1:])
    out["value"] = tokens[-1]
    data = _text(details)
    if data:
        m = _QWORD.fullmatch(data)
        if m:
            val = (int(m.group(2)[2:], 16) << 8) + int(m.group(3)[2:], 16)
            out["data.strings"], out["data.type"] = [str(val)], "SZ_QWORD"
        elif (m := _DWORD.fullmatch(data)) is not None:
            out["data.strings"], out["data.type"] = [str(int(m.group(1)[2:], 16))], "SZ_DWORD"
        elif data == "Binary Data":
            out["data.strings"], out["data.type"] = [data], "REG_BINARY"
        else:
            out["data.strings"], out["data.type"] = [data], "REG_SZ"
    return out


DNS_TYPES = {"1": "A", "2": "NS", "5": "CNAME", "6": "SOA", "12": "PTR", "15": "MX",
             "16": "TXT", "28": "AAAA", "33": "SRV", "39": "DNAME", "255": "ANY"}


def _dns_answers(v: Value) -> dict[str, list[Any]] | None:
    """[SYSMON] QueryResults "type:  5 name;::ffff:1.2.3.4;": named answers with their type,
    addresses as resolved_ip and as A / AAAA answers (flattened: answers.type, answers.data
    are parallel lists)."""
    s = _text(v)
    if not s:
        return None
    types: list[Any] = []
    datas: list[Any] = []
    ips: list[str] = []
    for answer in s.split(";"):
        if not answer:
            continue
        if answer.startswith("type:"):
            parts = answer.split()
            if len(parts) == 3:
                types.append(DNS_TYPES.get(parts[1], parts[1]))
                datas.append(parts[2])
        else:
            ips.append(answer.replace("::ffff:", ""))
    for ip in ips:
        types.append("AAAA" if ":" in ip else "A")
        datas.append(ip)
    out: dict[str, list[Any]] = {}
    if types:
        out["answers.type"], out["answers.data"] = types, datas
    if ips:
        out["resolved_ip"] = ips
    return out or None


def _share_path(v: Value, f: Mapping[str, Any]) -> dict[str, str] | None:
    """[SECURITY] 5140/5145: file.name (RelativeTargetName), directory (ShareLocalPath), path
    (both), target_path (ShareName and the name), extension (of the name)."""
    out: dict[str, str] = {}
    name = _text(f.get("RelativeTargetName"))
    local = _text(f.get("ShareLocalPath"))
    if local:
        out["directory"] = local
    if name:
        out["name"] = name
        if local:
            out["path"] = f"{local}\\{name}"
        share = _text(f.get("ShareName"))
        if share:
            out["target_path"] = f"{share}\\{name}"
        dot = name.rfind(".")
        if dot > -1:
            out["extension"] = name[dot + 1:]
    return out or None


def _member_name(v: Value) -> dict[str, str] | None:
    """[SECURITY] MemberName "CN=x,OU=..,DC=d,DC=..": target.name x, target.domain (the 4th
    comma part without DC=)."""
    s = _text(v)
    if not s or s == "-":
        return None
    parts = s.split(",")
    out = {"target.name": parts[0].replace("CN=", "").replace("cn=", "")}
    if len(parts) >= 4:
        out["target.domain"] = parts[3].replace("DC=", "").replace("dc=", "")
    return out


def _ps_users(v: Value, f: Mapping[str, Any]) -> dict[str, str] | None:
    """[PSOP]: User "D\\n" -> domain/name; a ConnectedUser moves them to destination.user.*
    and takes user.* itself (and source.user.*)."""
    out: dict[str, str] = {}
    user = _text(v)
    if user is not None and len(p := user.split("\\")) == 2:
        out.update({k: x for k, x in (("domain", p[0]), ("name", p[1])) if x})
    conn = _text(f.get("ConnectedUser"))
    if conn is not None and len(c := conn.split("\\")) == 2:
        moved = {f"@destination.user.{k}": x for k, x in out.items()}
        out = {k: x for k, x in (("domain", c[0]), ("name", c[1])) if x}
        out.update({f"@source.user.{k}": x for k, x in out.items()})
        out.update(moved)
    return out or None


SIMPLE: dict[str, Callable[[Value], Any]] = {
    "raw": lambda v: v, "str": _text, "int": _int, "long": _long, "basename": _basename,
    "lastpart": _lastpart, "argv": _argv, "argv_count": _argv_count,
    "args_security": _args_security, "user_domain": lambda v: _user_part(v, 0),
    "user_name": lambda v: _user_part(v, 1), "before_at": _before_at, "split_ws": _split_ws,
    "trim": _trim, "ip": _ip, "outcome": _outcome, "hashes": _hashes,
    "path_parts": _path_parts, "dns_answers": _dns_answers, "member_name": _member_name,
}
WITH_ROW: dict[str, Callable[[Value, Row], Any]] = {"map": _map, "equals": _equals}
WITH_FIELDS: dict[str, Callable[[Value, Mapping[str, Any]], Any]] = {
    "share_path": _share_path, "ps_users": _ps_users,
    "registry": lambda v, f: _registry(v, f.get("Details")),
}
MULTI = frozenset({"hashes", "path_parts", "dns_answers", "member_name", "share_path",
                   "ps_users", "registry"})

# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One row of ecs.yaml: ``target`` computed by ``fn`` from the first of ``sources``
    present; ``overwrite`` for the pipelines' ``set`` (else the first row to give a value
    wins); ``multi`` rows write ``target.<suffix>`` for each key they return."""

    target: str
    fn: str
    sources: tuple[str, ...] = ()
    const: Any = None
    mapping: Mapping[str, Any] | None = None
    default: Any = None
    equals: str | None = None
    skip: frozenset[str] = frozenset()
    codes: frozenset[str] | None = None
    not_codes: frozenset[str] = frozenset()
    overwrite: bool = False

    @property
    def multi(self) -> bool:
        return self.fn in MULTI

    def produces(self, name: str) -> bool:
        """Whether this row writes the ECS field ``name``."""
        if name == self.target or (self.multi and name.startswith(self.target + ".")):
            return True
        return self.fn == "ps_users" and name.startswith(("source.user.", "destination.user."))

    def applies(self, event_id: str | None) -> bool:
        if self.codes is not None and event_id not in self.codes:
            return False
        return event_id not in self.not_codes


@dataclass(frozen=True, slots=True)
class Expand:
    """Raw fields parsed into more raw fields first (PowerShell's ContextInfo / param3)."""

    sources: tuple[str, ...]
    style: str
    codes: frozenset[str] | None = None
    not_codes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, eq=False)
class KindTable:
    """Everything ecs_view needs for one event kind, compiled from ecs.yaml."""

    consts: tuple[tuple[str, Any], ...]
    rows: tuple[Row, ...]
    steps: tuple[Step, ...]
    needs: tuple[frozenset[str] | None, ...]
    expand: tuple[Expand, ...]
    empty: frozenset[str]
    envelope: frozenset[str]
    envelope_event_types: frozenset[str]
    collector_envelope: frozenset[str] = frozenset()  # envelope plus the collector's fields
    collector_markers: tuple[str, ...] = ()
    event_data: frozenset[str] | None = None


FN_KEYS = ("const", "task", *SIMPLE, *WITH_ROW, *WITH_FIELDS)


def _codes(x: Any) -> frozenset[str] | None:
    return None if x is None else frozenset(str(c) for c in x)


def _row(name: str, spec: Any) -> Row:
    if isinstance(spec, list):
        return Row(name, "raw", tuple(str(s) for s in spec))
    if not isinstance(spec, dict):
        raise ValueError(f"ecs.yaml: row {name}: expected a list or a mapping, got {spec!r}")
    fn = next((k for k in FN_KEYS if k in spec), None)
    if fn is None:
        raise ValueError(f"ecs.yaml: row {name}: no function among {', '.join(FN_KEYS)}")
    arg = spec[fn]
    sources: tuple[str, ...] = ()
    if fn in ("map", "equals"):
        sources = tuple(spec.get("from", ()))
    elif fn != "const":
        sources = tuple(str(s) for s in arg)
    mapping = {str(k): v for k, v in arg.items()} if fn == "map" else None
    return Row(
        target=str(spec.get("as", name)), fn=fn, sources=sources,
        const=spec.get("value") if fn == "equals" else (arg if fn == "const" else None),
        mapping=mapping, default=spec.get("default"),
        equals=str(arg) if fn == "equals" else None,
        skip=frozenset(str(s) for s in spec.get("skip", ())),
        codes=_codes(spec.get("codes")), not_codes=_codes(spec.get("not_codes")) or frozenset(),
        overwrite=bool(spec.get("set", False)),
    )


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files("ruleatlas.engine").joinpath("ecs.yaml").read_text("utf-8")
    return yaml.safe_load(text) or {}


@lru_cache(maxsize=1)
def security_tasks() -> dict[str, str]:
    return {str(k): str(v) for k, v in (_raw().get("security_tasks") or {}).items()}


def _categorisation(events: Mapping[str, Any], event_id: str | None) -> list[tuple[str, Any]]:
    cat = events.get(event_id) if event_id is not None else None
    if cat is None:
        cat = events.get("*")
    if not isinstance(cat, dict):
        return []
    return [(f"event.{k}", v) for k, v in cat.items() if k in ("category", "type", "action")]


def _is_ecs(name: str) -> bool:
    """A row source naming an ECS field computed before (``process.command_line``), not a raw
    field (``CommandLine``)."""
    return "." in name and name[:1].islower()


def _select(rows: tuple[Row, ...], only: frozenset[str]) -> tuple[Row, ...]:
    """The rows producing the names in ``only`` and the ECS fields those rows read."""
    wanted = set(only)
    keep: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, r in enumerate(rows):
            if i not in keep and any(r.produces(n) for n in wanted):
                keep.add(i)
                changed = True
                wanted.update(x for x in r.sources if _is_ecs(x))
    return tuple(r for i, r in enumerate(rows) if i in keep)


ALSO_READS = {"ps_users": ("ConnectedUser",), "registry": (), "share_path": ()}


def _needs(rows: tuple[Row, ...]) -> tuple[frozenset[str] | None, ...]:
    """Per row, the raw fields it can read (through the ECS fields it reads, too): a row none
    of whose raw fields is in an event gives nothing for it and is skipped. None: always run
    (a constant)."""
    produced: dict[str, set[str]] = {}
    out: list[frozenset[str] | None] = []
    for r in rows:
        if r.fn == "const":
            out.append(None)
            continue
        raw: set[str] = set(ALSO_READS.get(r.fn, ()))
        for src in r.sources:
            if _is_ecs(src):
                raw |= produced.get(src, set())
            else:
                raw.add(src)
        out.append(frozenset(raw))
        names = {r.target} if not r.multi else set()
        for n in names:
            produced.setdefault(n, set()).update(raw)
    return tuple(out)


@lru_cache(maxsize=4096)
def _steps_for(t: KindTable, names: tuple[str, ...]) -> tuple[Step, ...]:
    """The steps of ``t`` that can give a value for an event with these field names."""
    present = frozenset(names)
    return tuple(s for s, need in zip(t.steps, t.needs, strict=True)
                 if need is None or not need.isdisjoint(present))


# Index names the view's documents would have in Elasticsearch (Winlogbeat, the Windows and
# System integrations, Elastic Defend, which the view partly stands in for): a rule whose index
# patterns match none of them reads other data.
WINDOWS_INDICES = (
    "winlogbeat-8.0.0", "logs-windows.sysmon_operational-default",
    "logs-windows.powershell-default", "logs-windows.powershell_operational-default",
    "logs-windows.forwarded-default", "logs-system.security-default",
    "logs-system.system-default", "logs-system.application-default",
    "logs-endpoint.events.process-default", "logs-endpoint.events.file-default",
    "logs-endpoint.events.registry-default", "logs-endpoint.events.network-default",
    "logs-endpoint.events.library-default", "logs-endpoint.events.api-default",
)


def reads_windows(patterns: Iterable[str]) -> bool:
    """Whether some of a rule's index patterns (``logs-windows.*``, ``winlogbeat-*``,
    ``logs-*``) take the view's documents; a remote cluster prefix (``remote:logs-*``) is
    ignored."""
    for pat in patterns:
        pat = str(pat).rsplit(":", 1)[-1].strip()
        if any(fnmatch.fnmatchcase(name, pat) for name in WINDOWS_INDICES):
            return True
    return False


def described_channels() -> tuple[str, ...]:
    """The channels the mapping describes (Sysmon, Security, System, PowerShell, ...)."""
    return tuple((_raw().get("channels") or {}).keys())


@lru_cache(maxsize=64)
def described_ids(channel: str | None) -> tuple[str, ...]:
    """The event ids of a channel the mapping categorises (``Sysmon``: 1-29, 255)."""
    ch = (_raw().get("channels") or {}).get(channel) or {}
    return tuple(str(e) for e in ch.get("events") or () if str(e) != "*")


@lru_cache(maxsize=65536)
def may_have(key: Key, name: str) -> bool:
    """Whether the view of an event of kind ``key`` can hold the ECS field ``name`` (some row,
    constant or ``winlog.event_data.*`` of the kind gives it); False: never."""
    if name.startswith(EVENT_DATA):
        return True
    t = kind_table(key)
    return any(k == name for k, _ in t.consts) or any(r.produces(name) for r in t.rows)


def constants(key: Key) -> dict[str, Any]:
    """The ECS fields every event of a kind has with the same value (categorisation, dataset,
    ``event.code``): what routing can test before any event is read."""
    out: dict[str, Any] = dict(kind_table(key).consts)
    if key[1] is not None:
        out["event.code"] = out["winlog.event_id"] = key[1]
    return out


@lru_cache(maxsize=4096)
def kind_table(key: Key, only: frozenset[str] | None = None) -> KindTable:
    """The compiled table of one event kind ``(channel, event id)``; with ``only``, just the
    rows computing those ECS fields (and what they depend on)."""
    raw = _raw()
    channel, event_id = key
    ch = (raw.get("channels") or {}).get(channel) or {}
    rows = [_row(str(n), s) for n, s in (raw.get("common") or {}).items()]
    consts: list[tuple[str, Any]] = []
    if ch.get("dataset"):
        consts += [("event.dataset", ch["dataset"]), ("data_stream.dataset", ch["dataset"])]
    consts += _categorisation(ch.get("events") or {}, event_id)
    rows += [_row(str(n), s) for n, s in (ch.get("fields") or {}).items()]
    expand = tuple(
        Expand(tuple(e["from"]), str(e["style"]), _codes(e.get("codes")),
               _codes(e.get("not_codes")) or frozenset())
        for e in ch.get("expand") or ()
    )
    kept = tuple(r for r in rows if r.applies(event_id))
    event_data: frozenset[str] | None = None  # None: every raw EventData field
    if only is not None:
        kept = _select(kept, only)
        consts = [(k, v) for k, v in consts if k in only]
        event_data = frozenset(n[len(EVENT_DATA):] for n in only if n.startswith(EVENT_DATA))
    empty = frozenset(ch.get("empty") or ("",))
    envelope = frozenset(str(x) for x in raw.get("envelope") or ())
    return KindTable(
        consts=tuple(consts),
        rows=kept,
        steps=tuple(_step(r, channel, empty) for r in kept),
        needs=_needs(kept),
        expand=tuple(e for e in expand
                     if (e.codes is None or event_id in e.codes) and event_id not in e.not_codes),
        empty=empty,
        envelope=envelope,
        collector_envelope=envelope | frozenset(
            str(x) for x in raw.get("collector_envelope") or ()),
        collector_markers=tuple(str(x) for x in raw.get("collector_markers") or ()),
        envelope_event_types=frozenset(raw.get("envelope_event_types") or ()),
        event_data=event_data,
    )


# --------------------------------------------------------------------------------------------
# Expansion of packed PowerShell fields
# --------------------------------------------------------------------------------------------

_TAB_KEY = re.compile(r"^[ \t]*(\w+)=", re.M)


def _expand(text: str, style: str) -> dict[str, str]:
    """``context_info``: "    Host Application = x" lines ([PSOP] kv on newlines, keys without
    spaces); ``tab_lines``: "\\tHostApplication=x" lines, a value running to the next key
    ([PS], multi-line values kept)."""
    text = text.replace("\r\n", "\n")
    out: dict[str, str] = {}
    if style == "context_info":
        for line in text.split("\n"):
            k, eq, v = line.partition("=")
            key = re.sub(r"\s", "", k)
            if eq and key:
                out[key] = v.strip(" \n\t")
        return out
    keys = list(_TAB_KEY.finditer(text))
    for i, m in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(text)
        out[m.group(1)] = text[m.end():end].strip()
    return out


# --------------------------------------------------------------------------------------------
# The view
# --------------------------------------------------------------------------------------------


def _first(sources: tuple[str, ...], skip: frozenset[str]) -> Callable[..., Any]:
    """The first of ``sources`` present (an ECS field already computed, else a raw one)."""
    raw_only = not any(_is_ecs(s) for s in sources)  # then ``out`` cannot hold any of them

    def get(f: Mapping[str, Any], out: Mapping[str, Any]) -> Any:
        for s in sources:
            v = None if raw_only else out.get(s)
            if v is None:
                v = f.get(s)
            if v is None or (v.__class__ is str and v in skip):
                continue
            return v
        return None

    return get


def _task(sources: tuple[str, ...], channel: str | None,
          empty: frozenset[str]) -> Callable[[Mapping[str, Any]], Any]:
    """[BEAT] event.action = the rendered task name: RenderingInfo's or the collector's
    (NXLog ``Category``); for Security, the numeric Task through the msobjs.dll table."""
    tasks = security_tasks() if channel == "Security" else {}

    def get(f: Mapping[str, Any]) -> Any:
        for s in sources:
            v = f.get(s)
            if v is None or (isinstance(v, str) and v in empty):
                continue
            if s == "Task":  # a number (EVTX, XML), or the name (Winlogbeat's winlog.task)
                text = _text(v)
                if text is None or text.isdigit():
                    return tasks.get(str(v))
                return text
            return _text(v)
        return None

    return get


def _compute(row: Row, channel: str | None, empty: frozenset[str]) -> Callable[..., Any]:
    """``(raw fields, view so far) -> value`` for one row."""
    if row.fn == "const":
        const = row.const
        return lambda f, out: const
    if row.fn == "task":
        task = _task(row.sources, channel, empty)
        return lambda f, out: task(f)
    get = _first(row.sources, empty | row.skip)
    if row.fn in WITH_FIELDS:
        fn2 = WITH_FIELDS[row.fn]
        always = row.fn == "ps_users"

        def with_fields(f: Mapping[str, Any], out: Mapping[str, Any]) -> Any:
            v = get(f, out)
            return fn2(v, f) if v is not None or always else None

        return with_fields
    if row.fn in WITH_ROW:
        fnr = WITH_ROW[row.fn]

        def with_row(f: Mapping[str, Any], out: Mapping[str, Any]) -> Any:
            v = get(f, out)
            return None if v is None else fnr(v, row)

        return with_row
    fn1 = SIMPLE[row.fn]
    if row.fn == "raw":
        return get

    def simple(f: Mapping[str, Any], out: Mapping[str, Any]) -> Any:
        v = get(f, out)
        return None if v is None else fn1(v)

    return simple


def _step(row: Row, channel: str | None, empty: frozenset[str]) -> Step:
    """The row as one step writing into the view (first value wins unless ``set``)."""
    compute = _compute(row, channel, empty)
    target, overwrite = row.target, row.overwrite
    if row.multi:
        prefix = target + "."

        def multi(f: Mapping[str, Any], out: dict[str, Any]) -> None:
            value = compute(f, out)
            if value:
                for k, x in value.items():
                    name = k[1:] if k[0] == "@" else prefix + k
                    if overwrite or name not in out:
                        out[name] = x

        return multi

    def single(f: Mapping[str, Any], out: dict[str, Any]) -> None:
        if overwrite or target not in out:
            value = compute(f, out)
            if value is not None:
                out[target] = value

    return single


EVENT_DATA = "winlog.event_data."
SHORT = 12  # steps: below this, filtering by the event's field names costs more than it saves


def _as_keyword(v: Any) -> Any:
    """EventData values as Winlogbeat stores them: the XML text, so a number the EVTX reader
    gives as an int (TerminalSessionId 1) is "1", a boolean "true"; lists stay lists."""
    if v.__class__ is str or not isinstance(v, (int, float)):
        return v
    return _text(v)


def _event_data(f: Mapping[str, Any], t: KindTable) -> dict[str, Any]:
    """Every raw EventData field as winlog.event_data.<Name> (envelope and empty values
    left out; numbers as text, :func:`_as_keyword`), or just the requested ones."""
    empty = t.empty
    env = (t.collector_envelope if any(m in f for m in t.collector_markers) else t.envelope)
    if t.event_data is not None:
        items = [(k, f.get(k)) for k in t.event_data if k not in env]
    else:
        items = [(k, v) for k, v in f.items() if k not in env and isinstance(k, str)]
    out = {EVENT_DATA + k: (v if v.__class__ is str else _as_keyword(v)) for k, v in items
           if v is not None and not (v.__class__ is str and v in empty)}
    et = out.get(EVENT_DATA + "EventType")
    if et.__class__ is str and et in t.envelope_event_types:
        del out[EVENT_DATA + "EventType"]
    return out


@lru_cache(maxsize=1)
def non_windows() -> frozenset[str]:
    """Channels of records the routing table recognises by shape (CloudTrail, O365, Okta,
    ...): not Windows events, so they have no view."""
    return frozenset(ch for ch, _ in load_table().shapes)


def ecs_view(fields: Mapping[str, Any], key: Key | None = None,
             only: frozenset[str] | None = None) -> dict[str, Any]:
    """The ECS document of one raw flattened event, flat (``{"process.name": "cmd.exe"}``).

    ``key``: the event's kind when the caller has it (``coverage.routing.event_key``);
    ``only``: the ECS fields wanted (a rule's fields: much faster than the whole view; the
    values are the same as in the whole view). A record of another source (CloudTrail, O365,
    ... recognised by its shape) has an empty view."""
    if not isinstance(fields, Mapping):
        return {}
    if key is None:
        key = event_key(fields)
    if key[0] in non_windows():
        return {}
    t = kind_table(key, only)
    f: Mapping[str, Any] = fields
    if t.expand:
        extra: dict[str, Any] = {}
        for e in t.expand:
            for s in e.sources:
                v = fields.get(s)
                if isinstance(v, str) and v:
                    extra.update(_expand(v, e.style))
                    break
        if extra:
            f = {**fields, **{k: v for k, v in extra.items() if v != ""}}
    out = _event_data(f, t) if t.event_data is None or t.event_data else {}
    out.update(t.consts)
    # a long step list is narrowed to the rows the event's fields can feed (cached per field
    # names); a short one (a rule's few fields) runs as it is
    for step in _steps_for(t, tuple(f)) if len(t.steps) > SHORT else t.steps:
        step(f, out)
    return out
