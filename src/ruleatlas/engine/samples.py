"""User samples for rule tests: ``ruleatlas test --samples FILE``.

A samples file is YAML mapping a rule id (any source) to its samples; a sample is one log file
(or folder), or a mapping with ``files`` (one path or a list, read together as one stream of
events, so a sequence may span them) and ``fire`` (``true``, the default: the rule must fire on
the sample; ``false``: it must not)::

    06a7a03c-c735-47a6-a313-51c354aef6c3: dsquery.evtx          # one sample, must fire
    fd70c98a-c410-42dc-a2e3-761c71848acf:                       # a list: every sample checked
      - certutil_encode.evtx
      - {files: certutil_addstore.evtx, fire: false}
      - files: [sysmon.evtx, security.evtx]

Rules are named by id only (titles are not unique across vendors). Paths are relative to the
samples file's folder, or absolute (``~`` expanded); anything ``ruleatlas hunt`` reads (EVTX,
JSON lines, OTRF zip / tar.gz, Windows event XML, folders).

The file is validated strictly and every problem is collected with its ``path:line:col`` (YAML
marks from PyYAML's C composer): not YAML, not a mapping, a rule id given twice, an unknown
rule id, a value of the wrong type, an unknown key, a missing file, a file over the
``samples_file_bytes`` limit (docs/limits.md). :func:`load_samples` raises one
:class:`SamplesError` holding them all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ruleatlas.limits import Limits, fmt_size
from ruleatlas.model import AtlasError, Span

__all__ = ["Sample", "SampleProblem", "SamplesError", "SamplesFile", "load_samples"]

KEYS = ("files", "fire")
NULL = "tag:yaml.org,2002:null"
BOOL = "tag:yaml.org,2002:bool"
STR = "tag:yaml.org,2002:str"
BOOLS = yaml.constructor.SafeConstructor.bool_values  # YAML 1.1: true/false, yes/no, on/off

# Which ids of a list exist (the catalog, or the rules read from --repo clones).
KnownIds = Callable[[Sequence[str]], Collection[str]]


@dataclass(frozen=True, slots=True)
class Sample:
    """Files read together as one stream of events, and whether ``rule_id`` must fire on it."""

    rule_id: str
    files: tuple[Path, ...]
    fire: bool = True
    span: Span | None = field(default=None, compare=False)

    def label(self) -> str:
        return " + ".join(p.name for p in self.files)


@dataclass(frozen=True, slots=True)
class SamplesFile:
    path: Path
    samples: tuple[Sample, ...]

    def rule_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.rule_id for s in self.samples))

    def for_rule(self, rule_id: str) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.rule_id == rule_id)


class SampleProblem(AtlasError):
    """One problem of a samples file; ``str()`` is ``message (path:line:col)``."""


class SamplesError(AtlasError):
    """A samples file that cannot be used; ``problems`` lists every located problem."""

    def __init__(self, path: Path, problems: Sequence[SampleProblem]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"samples file {path}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  {p}" for p in self.problems))


def _span(path: Path, node: Node | None, mark: yaml.Mark | None = None) -> Span:
    m = mark if mark is not None else node.start_mark if node is not None else None
    if m is None:
        return Span(1, 1, path=str(path))
    return Span(m.line + 1, m.column + 1, path=str(path))


class _Reader:
    """Walks the composed YAML nodes, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent
        self.problems: list[SampleProblem] = []

    def problem(self, message: str, node: Node | None) -> None:
        self.problems.append(SampleProblem(message, _span(self.path, node)))

    def document(self, root: Node | None) -> list[Sample]:
        if root is None:
            self.problem("empty samples file: expected a mapping of rule id -> log files", None)
            return []
        if not isinstance(root, MappingNode):
            self.problem(f"expected a mapping of rule id -> log files, got {_kind(root)}", root)
            return []
        out: list[Sample] = []
        first: dict[str, Node] = {}
        for key, value in root.value:
            if not isinstance(key, ScalarNode) or key.tag == NULL or not key.value.strip():
                self.problem(f"a rule id must be text, got {_kind(key)}", key)
                continue
            rid = key.value.strip()
            if rid in first:
                line = first[rid].start_mark.line + 1
                self.problem(f"rule id {rid!r} given twice (first on line {line})", key)
                continue
            first[rid] = key
            out.extend(self.samples(rid, value))
        return out

    def samples(self, rid: str, node: Node) -> list[Sample]:
        if isinstance(node, SequenceNode):
            if not node.value:
                self.problem(f"{rid}: empty list of samples", node)
            got = [self.sample(rid, item) for item in node.value]
            return [s for s in got if s is not None]
        one = self.sample(rid, node)
        return [one] if one is not None else []

    def sample(self, rid: str, node: Node) -> Sample | None:
        if isinstance(node, ScalarNode):
            p = self.file(rid, node)
            return Sample(rid, (p,), True, _span(self.path, node)) if p else None
        if not isinstance(node, MappingNode):
            self.problem(f"{rid}: a sample is a path or a mapping {{files, fire}}, got "
                         f"{_kind(node)}", node)
            return None
        files: list[Path] | None = None
        fire = True
        ok = True
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name == "files":
                files = self.files(rid, value)
            elif name == "fire":
                if isinstance(value, ScalarNode) and value.tag == BOOL:
                    fire = BOOLS[value.value.lower()]
                else:
                    ok = False
                    self.problem(f"{rid}: fire must be true or false, got {_kind(value)}", value)
            else:
                ok = False
                self.problem(f"{rid}: unknown key {name or _kind(key)!r} in a sample "
                             f"(known: {', '.join(KEYS)})", key)
        if files is None:
            named = any(isinstance(k, ScalarNode) and k.value == "files" for k, _ in node.value)
            if ok and not named:  # (an unknown key's message already lists the known ones)
                self.problem(f"{rid}: a sample mapping needs files: PATH or a list", node)
            return None
        if not ok or not files:
            return None
        return Sample(rid, tuple(files), fire, _span(self.path, node))

    def files(self, rid: str, node: Node) -> list[Path] | None:
        items = node.value if isinstance(node, SequenceNode) else [node]
        if isinstance(node, SequenceNode) and not items:
            self.problem(f"{rid}: files is an empty list", node)
            return None
        got = [self.file(rid, item) for item in items]
        return [p for p in got if p is not None] if all(got) else None

    def file(self, rid: str, node: Node) -> Path | None:
        if not isinstance(node, ScalarNode) or node.tag in (NULL, BOOL) or not node.value.strip():
            self.problem(f"{rid}: a log file path must be text, got {_kind(node)}", node)
            return None
        p = Path(node.value.strip()).expanduser()
        full = p if p.is_absolute() else self.base / p
        if not full.exists():
            self.problem(f"{rid}: no such log file or folder: {node.value.strip()}"
                         + ("" if p.is_absolute() else f" (looked for {full})"), node)
            return None
        return full


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode):
        if node.tag == NULL:
            return "nothing (null)"
        kind = node.tag.rsplit(":", 1)[-1] if node.tag != STR else "text"
        return f"{kind} {node.value!r}"
    return type(node).__name__


def load_samples(path: str | Path, known: KnownIds | None = None,
                 limits: Limits | None = None) -> SamplesFile:
    """The samples file at ``path``, validated; ``known(ids)`` returns which of ``ids`` name a
    rule (None: ids are not checked). Raises :class:`SamplesError` listing every problem."""
    p = Path(path)
    cap = (limits or Limits.from_env()).samples_file_bytes
    try:
        size = p.stat().st_size
        if size > cap:
            raise SamplesError(p, [SampleProblem(
                f"samples file exceeds {fmt_size(cap)} ({size} bytes); not read",
                Span(1, 1, path=str(p)))])
        text = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SamplesError(p, [SampleProblem(f"cannot read the samples file: {exc}",
                                             Span(1, 1, path=str(p)))]) from None
    reader = _Reader(p)
    try:
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SamplesError(p, [SampleProblem(
            f"not valid YAML: {exc.problem or exc.context}", _span(p, None, mark))]) from None
    except yaml.YAMLError as exc:
        raise SamplesError(p, [SampleProblem(f"not valid YAML: {exc}",
                                             Span(1, 1, path=str(p)))]) from None
    samples = reader.document(root)
    if known is not None and isinstance(root, MappingNode):
        _check_ids(reader, root, known)
    if reader.problems:
        reader.problems.sort(key=lambda e: (e.location.line, e.location.col)
                             if e.location else (0, 0))
        raise SamplesError(p, reader.problems)
    return SamplesFile(p, tuple(samples))


def _check_ids(reader: _Reader, root: MappingNode, known: KnownIds) -> None:
    keys = [k for k, _ in root.value if isinstance(k, ScalarNode) and k.value.strip()]
    found = set(known([k.value.strip() for k in keys]))
    seen: set[str] = set()
    for k in keys:
        rid = k.value.strip()
        if rid not in found and rid not in seen:
            reader.problem(f"unknown rule id {rid!r} (samples name rules by exact id)", k)
        seen.add(rid)
