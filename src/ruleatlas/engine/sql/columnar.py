"""Flattened events as columns: the table the SQL backends read (``ruleatlas convert``).

One row per event, the field names the local engine sees (the readers' ``Event.fields``), plus

* ``_file`` (string) and ``_position`` (int64): where the event was read, what a finding names;
* ``_kind``: the event kind as ``coverage.routing.event_key`` names it, ``channel|event id``
  (``Microsoft-Windows-Sysmon/Operational|1``; an absent part is empty), the Hive partition
  directory ``_kind=<url-quoted>`` of the Parquet layout;
* ``_seq`` (int64): the event's number in the order the converter read it, which is the order
  the local engine reads the same inputs (findings are ordered by it, and an aggregation's
  first event is the one with the smallest);
* ``_epoch`` (double): what an SPL aggregation reads as ``_time`` (the event's ``_time`` field
  when it is a number, else its time as seconds since 1970, ``runner.epoch``), NULL when none;
* ``_types`` (string, NULL when every value is a string): a JSON object naming the fields whose
  value was not a string (``i`` int, ``f`` float, ``b`` bool, ``n`` None, ``j`` object, ``a``
  an alias the converter added; a list field: one code per item, None items included), so
  :func:`row_event` gives back the event the readers gave, and findings print the same values.

Every field column is a **string**: the engine's own text of the value
(``sigma_semantics.to_text``: ``4104`` and ``"4104"`` both ``'4104'``, booleans
``'true'``/``'false'``, objects as sorted JSON). The matcher compares text for everything but
``gt/ge/lt/le``, and there it parses the text back (``as_number(to_text(v)) == as_number(v)``
for every int, float, bool and str), so no typed column is needed; typed columns would clash
across files anyway (``EventID`` is an int in EVTX, a string in XML). A field whose value is a
list in an event (unnamed ``<Data>`` entries) gets a ``<name>[]`` column (``list<string>``, the
non-null items' texts) and NULL in its scalar column for that event.

Windows Defender's spaced EventData names (``Threat Name``) get their spaceless alias added, as
the local engine does for event kinds that carry them.

At most ``BATCH`` events are held in memory, by kind (:class:`ParquetSink`), so memory stays
bounded whatever the input size; each file has the columns of its own rows, and readers merge
the schemas (Spark ``mergeSchema``, DuckDB ``union_by_name``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ruleatlas.coverage.routing import Key, event_key
from ruleatlas.engine.events import Event
from ruleatlas.engine.sigma_semantics import as_number, to_text
from ruleatlas.engine.sql.compiler import LIST_SUFFIX, META_COLUMNS
from ruleatlas.limits import LimitError, Limits, fmt_size

BATCH = 20_000  # events held in memory before a flush
KIND_COLUMN = "_kind"
SEQ, EPOCH, TYPES = "_seq", "_epoch", "_types"
# a value's type -> its code in ``_types`` (str has none); anything else keeps its text ("s")
TYPE_CODES: dict[type, str] = {int: "i", float: "f", bool: "b", type(None): "n", dict: "j"}


META = META_COLUMNS  # _file _position _kind _seq _epoch _types: not event fields


def kind_text(key: Key) -> str:
    """``(channel, event id)`` -> ``channel|event id`` (absent parts empty)."""
    ch, eid = key
    return f"{ch or ''}|{eid or ''}"


def kind_key(text: str) -> Key:
    """The inverse of :func:`kind_text`."""
    ch, _, eid = text.rpartition("|")
    return (ch or None, eid or None)


def kind_dir(text: str) -> str:
    """The Hive partition directory of a kind (``/`` and ``|`` url-quoted, as Spark does)."""
    return f"{KIND_COLUMN}={quote(text, safe='')}"


def dir_kind(name: str) -> str | None:
    """The kind a partition directory names (:func:`kind_dir` undone); None for another name."""
    prefix = f"{KIND_COLUMN}="
    return unquote(name[len(prefix):]) if name.startswith(prefix) else None


@dataclass(slots=True)
class Row:
    """One event as columns: scalar texts and list items."""

    kind: str
    file: str
    position: int
    values: dict[str, str | None]
    lists: dict[str, list[str]]
    epoch: float | None = None
    types: str | None = None  # the ``_types`` JSON
    seq: int = 0  # set by the sink


_KINDS: dict[tuple[Any, Any], str] = {}  # (Channel, EventID) as read -> kind, as Engine caches
KIND_CACHE = 4096


def event_kind(fields: dict[str, Any]) -> str:
    """``kind_text(event_key(fields))``, remembered per (Channel, EventID) as read."""
    ck = (fields.get("Channel"), fields.get("EventID"))
    cacheable = type(ck[0]) is str and type(ck[1]) in (int, str)
    got = _KINDS.get(ck) if cacheable else None
    if got is None:
        got = kind_text(event_key(fields))
        if cacheable and len(_KINDS) < KIND_CACHE:
            _KINDS[ck] = got
    return got


def _code(v: Any) -> str | None:
    return None if type(v) is str else TYPE_CODES.get(type(v), "s")


def event_row(ev: Event) -> Row:
    fields = ev.fields
    codes: dict[str, Any] = {}
    if any(" " in k for k in fields):  # Defender: ``Threat Name`` is also ``ThreatName``
        fields = dict(fields)
        for k in [k for k in fields if " " in k]:
            alias = k.replace(" ", "")
            if alias not in fields:
                fields[alias] = fields[k]
                codes[alias] = "a"
    values: dict[str, str | None] = {}
    lists: dict[str, list[str]] = {}
    for k, v in fields.items():
        if isinstance(v, list):
            values[k] = None
            lists[k] = [to_text(x) for x in v if x is not None]
            item_codes = [_code(x) or "" for x in v]  # None items: "n", kept in their place
            if any(item_codes):
                codes[k] = item_codes
        else:
            values[k] = None if v is None else to_text(v)
            c = _code(v)
            if c is not None and k not in codes:
                codes[k] = c
    types = json.dumps(codes, separators=(",", ":"), ensure_ascii=False) if codes else None
    return Row(event_kind(ev.fields), ev.file, ev.position, values, lists, agg_time(ev),
               types)


def agg_time(ev: Event) -> float | None:
    """``_time`` as an SPL aggregation of the local engine reads it (``runner._agg_input``)."""
    from ruleatlas.engine.runner import epoch

    if "_time" in ev.fields:
        return as_number(ev.fields["_time"])
    return epoch(ev.time)


def _typed(text: Any, code: str) -> Any:
    if code == "i":
        return int(text)
    if code == "f":
        return float(text)
    if code == "b":
        return text == "true"
    if code == "j":
        return json.loads(text)
    return text


def _items(texts: Sequence[str], codes: Sequence[str]) -> list[Any]:
    """A list field's items back: the non-null texts typed, the None items in their place."""
    it = iter(texts)
    return [None if c == "n" else _typed(next(it), c) if c else next(it) for c in codes]


def row_event(row: Mapping[str, Any]) -> Event:
    """The event a row was made from (the inverse of :func:`event_row`)."""
    codes: dict[str, Any] = json.loads(row[TYPES]) if row.get(TYPES) else {}
    fields: dict[str, Any] = {}
    for k, v in row.items():
        if k in META or (v is None and codes.get(k) != "n"):
            continue
        if k.endswith(LIST_SUFFIX):
            name = k[: -len(LIST_SUFFIX)]
            item_codes = codes.get(name)
            fields[name] = (_items(v, item_codes) if isinstance(item_codes, list)
                            else list(v))
            continue
        c = codes.get(k)
        if c == "a":
            continue
        fields[k] = None if c == "n" else _typed(v, c) if c else v
    return Event(fields, row["_file"], int(row["_position"]))


ARROW_CASTS: dict[str, Callable[[pa.Array], pa.Array]] = {
    "i": lambda a: pc.cast(a, pa.int64()),
    "f": lambda a: pc.cast(a, pa.float64()),
    "b": lambda a: pc.equal(a, "true"),
}


SCALAR_CODES = frozenset("ifbjsn")  # codes a value is typed back from in place ("n": a None)


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """How :func:`batch_events` rebuilds one batch's rows: its columns (the null ones left out,
    but for a field some row holds as None), the typed columns Arrow cast (a field with one code,
    int, float or boolean, on every row it has a value in), and per ``_types`` text the codes left
    for its rows: ``nulls``, the fields that row holds as None, and ``typed``, the (field, code)
    pairs typed in place; None where a code is neither (a list's item codes, an alias), and the
    row is rebuilt whole by :func:`row_event`."""

    arrays: dict[str, pa.Array]
    cast: dict[str, pa.Array]
    rows: dict[str, tuple[frozenset[str], tuple[tuple[str, str], ...]] | None]


def batch_plan(batch: pa.RecordBatch) -> BatchPlan:
    """The :class:`BatchPlan` of ``batch``, read off its distinct ``_types`` texts."""
    columns = dict(zip(batch.schema.names, batch.columns, strict=True))
    types = columns.get(TYPES)
    counted = ([] if types is None or types.null_count == len(types) else
               [(x["values"], x["counts"]) for x in pc.value_counts(types).to_pylist()
                if x["values"] is not None])
    parsed: dict[str, dict[str, Any]] = {text: json.loads(text) for text, _ in counted}
    tally: dict[str, dict[Any, int]] = {}  # field -> code (None: not a scalar's) -> rows
    for text, n in counted:
        for f, c in parsed[text].items():
            by = tally.setdefault(f, {})
            key = c if type(c) is str else None
            by[key] = by.get(key, 0) + n
    arrays = {name: col for name, col in columns.items()
              if col.null_count < len(col) or "n" in tally.get(name, ())}
    cast: dict[str, pa.Array] = {}
    for f, by in tally.items():
        col = arrays.get(f)
        if col is None or len(by) != 1:
            continue
        ((c, n),) = by.items()
        if c in ARROW_CASTS and n == len(col) - col.null_count:
            try:
                cast[f] = ARROW_CASTS[c](col)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # a number Arrow does not take as Python does (past 64 bits): row by row
    rows: dict[str, tuple[frozenset[str], tuple[tuple[str, str], ...]] | None] = {}
    for text, codes in parsed.items():
        left = [(f, c) for f, c in codes.items() if f not in cast]
        rows[text] = (None if any(type(c) is not str or c not in SCALAR_CODES for _, c in left)
                      else (frozenset(f for f, c in left if c == "n"),
                            tuple((f, c) for f, c in left if c != "n")))
    return BatchPlan(arrays, cast, rows)


def batch_events(batch: pa.RecordBatch) -> Iterator[tuple[int, Event]]:
    """``(_seq, event)`` of each row of an Arrow batch of the events table: what
    :func:`row_event` gives for each row, column by column (:class:`BatchPlan`). A field with
    one type wherever it has a value (most are, in a file of one event kind) is cast by Arrow;
    the others are typed row by row from the row's codes."""
    plan = batch_plan(batch)
    arrays = plan.arrays
    fnames = [n for n in arrays if n not in META]
    source = {**arrays, **plan.cast}
    cols = [source[n].to_pylist() for n in fnames]
    seqs, files, places = (arrays[n].to_pylist() for n in (SEQ, "_file", "_position"))
    # a list column ``name[]`` gives the field ``name`` (its scalar column is NULL there)
    targets = [n[: -len(LIST_SUFFIX)] if n.endswith(LIST_SUFFIX) else n for n in fnames]
    types: list[Any] = (arrays[TYPES].to_pylist() if TYPES in arrays
                        else [None] * batch.num_rows)
    dense = all(arrays[n].null_count == 0 for n in fnames)
    plain = (frozenset[str](), ())
    for i, vals in enumerate(zip(*cols, strict=True)):
        text = types[i]
        fix = plain if text is None else plan.rows[text]
        if fix is None:
            yield int(seqs[i]), row_event(batch.slice(i, 1).to_pylist()[0])
            continue
        nulls, typed = fix
        if dense:
            fields = dict(zip(targets, vals, strict=True))
        elif nulls:
            fields = {k: v for k, v in zip(targets, vals, strict=True)
                      if v is not None or k in nulls}
        else:
            fields = {k: v for k, v in zip(targets, vals, strict=True) if v is not None}
        for k, c in typed:
            if k in fields:
                fields[k] = _typed(fields[k], c)
        yield seqs[i], Event(fields, files[i], places[i])


def file_events(path: str, content: pa.Buffer | bytes, max_bytes: int | None = None
                ) -> Iterator[tuple[int, Event]]:
    """``(_seq, event)`` of each row of one file of the layout (``.jsonl``: JSON lines, else
    Parquet) given as its bytes. ``max_bytes`` (``Limits.columnar_file_bytes``) bounds the
    file and, for Parquet, its decoded column data as the footer states it, checked before any
    page is decompressed: :class:`~ruleatlas.limits.LimitError` past it."""
    cap = max_bytes if max_bytes is not None else Limits().columnar_file_bytes
    if len(content) > cap:
        raise LimitError(f"converted file exceeds {fmt_size(cap)} ({len(content)} bytes)", path,
                         limit="columnar_file_bytes")
    if path.endswith((".jsonl", ".json")):
        for line in bytes(content).splitlines():
            if line.strip():
                row = json.loads(line)
                yield int(row[SEQ]), row_event(row)
        return
    pf = pq.ParquetFile(pa.BufferReader(content))
    decoded = sum(pf.metadata.row_group(i).total_byte_size for i in range(pf.num_row_groups))
    if decoded > cap:
        raise LimitError(f"converted file exceeds {fmt_size(cap)} decoded ({decoded} bytes)",
                         path, limit="columnar_file_bytes")
    # one thread: a task runs on each core already, and Arrow's pool only competes with them
    # (and costs more than it gives on the layout's files, a few MB each)
    for b in pf.read(use_threads=False).to_batches():
        yield from batch_events(b)


def rows_table(rows: list[Row]) -> pa.Table:
    """Rows (of one kind, or any) as an Arrow table: ``_file``, ``_position``, fields sorted,
    then the ``name[]`` list columns."""
    names = sorted({k for r in rows for k in r.values})
    list_names = sorted({k for r in rows for k in r.lists})
    cols: dict[str, pa.Array] = {
        "_file": pa.array([r.file for r in rows], pa.string()),
        "_position": pa.array([r.position for r in rows], pa.int64()),
        SEQ: pa.array([r.seq for r in rows], pa.int64()),
        EPOCH: pa.array([r.epoch for r in rows], pa.float64()),
        TYPES: pa.array([r.types for r in rows], pa.string()),
    }
    for n in names:
        if n in META:
            continue
        cols[n] = pa.array([r.values.get(n) for r in rows], pa.string())
    for n in list_names:
        cols[n + LIST_SUFFIX] = pa.array([r.lists.get(n) for r in rows], pa.list_(pa.string()))
    return pa.table(cols)


def by_kind(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.kind, []).append(r)
    return out


@dataclass(slots=True)
class ConvertReport:
    events: int = 0
    files: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    bytes: int = 0


class ParquetSink:
    """Writes rows to ``out/_kind=<kind>/part-NNNNN.parquet`` (or ``.jsonl``): at most
    ``batch`` rows are held, by kind; when full, the kinds holding the most rows are written,
    one file each, until half is free. A rare kind's rows wait for more (one file at the end),
    so a corpus of hundreds of kinds gives a few files per kind, not one per kind per batch
    (the OTRF corpus: 2,048 small files before, each costing every reader an open and a
    footer)."""

    def __init__(self, out: str | Path, batch: int = BATCH, fmt: str = "parquet") -> None:
        self.out = Path(out)
        self.batch = batch
        self.fmt = fmt
        self.pending: dict[str, list[Row]] = {}
        self.held = 0
        self.report = ConvertReport()
        self.seq = 0
        self.out.mkdir(parents=True, exist_ok=True)

    def add(self, row: Row) -> None:
        row.seq = self.report.events
        self.pending.setdefault(row.kind, []).append(row)
        self.held += 1
        self.report.events += 1
        self.report.kinds[row.kind] = self.report.kinds.get(row.kind, 0) + 1
        if self.held >= self.batch:
            for kind in sorted(self.pending, key=lambda k: -len(self.pending[k])):
                if self.held <= self.batch // 2:
                    break
                self._write(kind)

    def _write(self, kind: str) -> None:
        rows = self.pending.pop(kind)
        self.held -= len(rows)
        d = self.out / kind_dir(kind)
        d.mkdir(parents=True, exist_ok=True)
        if self.fmt == "jsonl":
            path = d / f"part-{self.seq:05d}.jsonl"
            with path.open("w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(jsonl_row(r), ensure_ascii=False) + "\n")
        else:
            path = d / f"part-{self.seq:05d}.parquet"
            pq.write_table(rows_table(rows), path, compression="zstd")
        self.report.files += 1
        self.report.bytes += path.stat().st_size
        self.seq += 1

    def flush(self) -> None:
        """Write every kind's rows."""
        for kind in list(self.pending):
            self._write(kind)

    def close(self) -> ConvertReport:
        self.flush()
        return self.report


def jsonl_row(r: Row) -> dict[str, Any]:
    """A row as one JSON object (the same columns; ``_kind`` kept in the object too)."""
    d: dict[str, Any] = {"_file": r.file, "_position": r.position, KIND_COLUMN: r.kind,
                         SEQ: r.seq, EPOCH: r.epoch, TYPES: r.types}
    d.update({k: v for k, v in r.values.items() if v is not None and k not in META})
    d.update({k + LIST_SUFFIX: v for k, v in r.lists.items()})
    return d


def convert(paths: list[str], out: str | Path, fmt: str = "parquet",
            errors: list[Any] | None = None, batch: int = BATCH,
            on_event: Callable[[Event], None] | None = None) -> ConvertReport:
    """Read every event of ``paths`` (files, folders, archives) and write them as columns."""
    from ruleatlas.engine.readers import read_events

    sink = ParquetSink(out, batch, fmt)
    for ev in read_events(list(paths), errors if errors is not None else []):
        sink.add(event_row(ev))
        if on_event is not None:
            on_event(ev)
    return sink.close()


def kinds_tables(events: Iterable[Event]) -> Iterator[tuple[str, pa.Table]]:
    """In memory: each kind's rows as one Arrow table (tests, small inputs)."""
    for kind, rows in by_kind(event_row(e) for e in events).items():
        yield kind, rows_table(rows)
