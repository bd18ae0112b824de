"""Build (or rebuild) the catalog from rule repositories: sources -> languages -> store.

Why it is shaped like this:

* **Incremental.** Each rule file's ``(size, mtime_ns, sha256)`` is stored. A file whose size and
  mtime did not change is not even read; one whose hash did not change is not parsed. Deleted
  files leave the catalog with their rules and errors. When a repository's side tables changed
  (``SideTables.digest``: a Splunk macro was edited), every rule of that repository is analyzed
  again from its stored ``rule_json``, without parsing YAML again.
* **Parallel where it pays.** Parsing and analysis (pure functions of a file) run in a process
  pool when many files changed; workers return typed records (``store.writer.FileRecord``,
  ``RuleRecord``) already flattened into rows, so the main process only writes. Few changes run
  inline (a pool costs more than it saves).
* **One write transaction** per build: a reader (the web server) sees the old catalog or the
  new one, never half of each.
* **Every file accounted for**: a file's rules + load errors >= 1, and duplicate ids become
  ``LoadError(kind="duplicate-id")`` on the later file (sorted by repository order, then path),
  naming the file that holds the id.
* **Nothing swallowed.** A file the pipeline fails on becomes a located ``internal`` load error;
  indicators or coverage failing on a rule become a located ``crash`` problem on the rule. A
  stored rule that cannot be analyzed again raises :class:`BuildError` naming it: the build's
  transaction is rolled back and the catalog stays as it was.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from ruleatlas import coverage, indicators
from ruleatlas.languages import AnalysisContext, analyze, language
from ruleatlas.model import Analysis, EventRef, FileResult, Problem, Rule, Span, analysis_to_dict
from ruleatlas.sources import SOURCES, detect
from ruleatlas.sources.base import SideTables, Source
from ruleatlas.store import writer
from ruleatlas.store.catalog import Catalog
from ruleatlas.store.codec import dumps, rule_from_json, rule_to_json
from ruleatlas.store.writer import (
    FileError,
    FileRecord,
    IndicatorRow,
    RuleRecord,
    RuleRow,
)

Progress = Callable[[str, int, int], None]  # (phase label, done, total)
T = TypeVar("T")
R = TypeVar("R")

POOL_MIN_TASKS = 300  # below this many files (or rules) to process, run inline


class BuildError(ValueError):
    """A build that cannot be done: a missing folder, an unknown layout, a missing ATT&CK
    file, or a stored rule that cannot be analyzed again (the transaction is rolled back)."""


@dataclass(frozen=True, slots=True)
class RepoSummary:
    """What one repository holds after the build, and what this build did to it."""

    source: str
    root: str
    files: int
    rules: int
    errors: int
    side_errors: int = 0
    parsed: int = 0
    unchanged: int = 0
    deleted: int = 0
    reanalyzed: int = 0


@dataclass(frozen=True, slots=True)
class BuildSummary:
    db: str
    repos: tuple[RepoSummary, ...]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    dropped_repos: tuple[str, ...] = ()  # earlier clones of a source built here, now gone

    def by_source(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.repos:
            d = out.setdefault(r.source, {"files": 0, "rules": 0, "errors": 0})
            d["files"] += r.files
            d["rules"] += r.rules
            d["errors"] += r.errors
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "sources": self.by_source(),
            "repos": [{k: getattr(r, k) for k in RepoSummary.__slots__} for r in self.repos],
            "dropped_repos": list(self.dropped_repos),
        }


# --------------------------------------------------------------------------------------------
# Work done per file / per rule (also in worker processes): pure, returns typed records
# --------------------------------------------------------------------------------------------

# root -> (source, analysis context); set before the pool forks, or in the main process.
_CTX: dict[str, tuple[Source, AnalysisContext]] = {}

def _macros_used(rule: Rule, a: Analysis) -> list[str]:
    """Macro keys a rule calls: from the analyzer when it says (it does not when the search
    does not parse), else from the calls written in the query text."""
    got = a.extra.get("macros") if isinstance(a.extra, dict) else None
    if isinstance(got, (list, tuple)) and all(isinstance(m, str) for m in got):
        return list(dict.fromkeys(got))
    lang = language(rule.language)
    if lang is None or lang.macro_calls is None:
        return []
    return list(dict.fromkeys(lang.macro_calls(rule.query)))


@lru_cache(maxsize=1)
def _configure_coverage(root: str) -> None:
    """Give coverage the data sources of ``root`` (again only when the root changes; the cache
    is cleared when the side tables are read anew)."""
    coverage.configure(_CTX[root][1].data_sources)


def _ctx(root: str) -> tuple[Source, AnalysisContext]:
    _configure_coverage(root)
    return _CTX[root]


def _pack_rule(root: str, rule: Rule, ctx: AnalysisContext) -> RuleRecord:
    """One rule analyzed and flattened into the rows the store writes."""
    a = analyze(rule, ctx)
    crashed: list[Problem] = []
    try:
        inds = indicators.extract(rule, a)
    except Exception as e:  # recorded: a located crash problem on the rule, which is kept
        inds = ()
        crashed.append(Problem(f"indicators could not be extracted: {type(e).__name__}: {e}",
                               "error", Span(rule.line, 1, path=rule.path), "crash"))
    try:
        evs = coverage.events_for(rule, a)
    except Exception as e:  # recorded, likewise
        evs = ()
        crashed.append(Problem(f"event coverage could not be computed: {type(e).__name__}: {e}",
                               "error", Span(rule.line, 1, path=rule.path), "crash"))
    if crashed:
        a = replace(a, problems=(*a.problems, *crashed))
    row = RuleRow(
        id=rule.id, source=rule.source, root=root, path=rule.path, doc_index=rule.doc_index,
        line=rule.line, source_url=rule.source_url, title=rule.title, status=rule.status,
        severity=rule.severity, author=rule.author, date=rule.date, modified=rule.modified,
        version=rule.version, type=rule.type, language=rule.language,
        description=rule.description or "", how_to_implement=rule.how_to_implement,
        query=rule.query, body=rule.body, rule_json=rule_to_json(rule),
        analysis_json=dumps(analysis_to_dict(a)), group_by_json=dumps(list(a.group_by)),
        problems=len(a.problems),
    )
    return RuleRecord(
        row,
        techniques=tuple(dict.fromkeys(_technique(t) for t in rule.attack)),
        data_sources=tuple(dict.fromkeys(rule.data_sources)),
        stories=tuple(dict.fromkeys(rule.stories)),
        events=tuple(dict.fromkeys(EventRef(e.channel, e.event_id or None) for e in evs)),
        macros=tuple(_macros_used(rule, a)),
        indicators=tuple(
            IndicatorRow(i, ind.field, ind.op, ind.negated, v.value, ind.field_key, v.key,
                         ind.phase.value)
            for i, ind in enumerate(inds) for v in ind.values),
    )


def _technique(t: str) -> str:
    s = t.strip()
    if s.lower().startswith("attack."):
        s = s[7:]
    return s.upper()


def _work_file(task: tuple[str, str]) -> FileRecord:
    """Parse one file and analyze its rules.

    Never raises: a failure of this pipeline on the file (or one of its rules) becomes a
    located ``internal`` load error of that file, and the build goes on."""
    root, path = task
    try:
        src, ctx = _ctx(root)
        fr: FileResult = src.load_file(Path(root), Path(root, path))
    except Exception as e:  # recorded: an internal load error of the file
        digest = _hash_or_empty(Path(root, path))
        return FileRecord(path, digest, (FileError(
            None, None, "internal", f"could not be loaded: {type(e).__name__}: {e}"),), ())
    errs = [FileError(e.line, e.col, e.kind, e.reason) for e in fr.errors]
    packed = []
    for r in fr.rules:
        try:
            packed.append(_pack_rule(root, r, ctx))
        except Exception as e:  # recorded: an internal load error at the rule's line
            errs.append(FileError(r.line, None, "internal",
                                  f"rule {r.id} could not be stored: {type(e).__name__}: {e}"))
    return FileRecord(path, fr.sha256, tuple(errs), tuple(packed))


def _work_rule(task: tuple[str, str, str]) -> RuleRecord:
    """Analyze a stored rule again (its repository's side tables changed).

    Raises :class:`BuildError` naming the rule when that fails (its stored JSON no longer
    decodes, or packing it fails): keeping the stale analysis silently would show a catalog
    that does not match its macros."""
    root, rule_id, rule_json = task
    try:
        _, ctx = _ctx(root)
        return _pack_rule(root, rule_from_json(rule_json), ctx)
    except Exception as e:  # re-raised with the rule and what to do
        raise BuildError(f"{root}: stored rule {rule_id} could not be analyzed again "
                         f"({type(e).__name__}: {e}); `ruleatlas build --full` parses every "
                         "file again") from e


def _warm() -> None:
    """Import and load what every worker needs once, before forking (workers inherit it)."""
    from ruleatlas.coverage.table import load_table
    from ruleatlas.languages import load_builtin
    from ruleatlas.sources.sigma import _pysigma

    load_builtin()
    load_table()
    _pysigma("detection")


def _run(fn: Callable[[T], R], tasks: list[T], workers: int | None,
         progress: Progress | None, label: str) -> Iterator[R]:
    """Results of ``fn`` over ``tasks`` in order; a forked pool when there are many."""
    total = len(tasks)
    nproc = workers if workers is not None else (os.cpu_count() or 1)
    if total >= POOL_MIN_TASKS and nproc > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        _warm()
        # An executor, not mp.Pool: a worker that dies (out of memory) raises
        # BrokenProcessPool instead of hanging the build.
        with ProcessPoolExecutor(nproc, mp_context=mp.get_context("fork")) as pool:
            for i, res in enumerate(pool.map(fn, tasks, chunksize=16), 1):
                if progress and (i % 50 == 0 or i == total):
                    progress(label, i, total)
                yield res
        return
    for i, t in enumerate(tasks, 1):
        yield fn(t)
        if progress and (i % 50 == 0 or i == total):
            progress(label, i, total)


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:  # streamed: a huge rule file is never held whole
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _hash_or_empty(path: Path) -> str:
    """The file's sha256, or "" when it cannot be read now (it is then parsed again, and the
    parse reports why it cannot be read)."""
    try:
        return _sha256(path)
    except OSError:
        return ""


@dataclass
class _Repo:
    root: str
    src: Source
    files: list[tuple[str, int, int]]  # (rel path, size, mtime_ns), sorted
    bad_names: frozenset[str] = frozenset()  # paths among files whose name is not UTF-8
    side: SideTables | None = None
    parsed: int = 0
    unchanged: int = 0
    deleted: int = 0
    reanalyzed: int = 0
    affected: set[str] | None = None  # rules to analyze again (None: all)


def _side_signature(root: str, source: str) -> str | None:
    """Size and mtime of every file of the source's side folders (``Source.side_folders``):
    when it is unchanged and no rule file needs analysis, a rebuild does not read them at all.
    None (read them on every build) for a source that does not name its folders."""
    src = SOURCES.get(source)
    folders = src.side_folders if src is not None else None
    if folders is None:
        return None
    h = hashlib.sha256()
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                h.update(f"{full}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _resolve_repos(repos: Iterable[str | Path]) -> list[tuple[str, Source]]:
    out: list[tuple[str, Source]] = []
    seen: set[str] = set()
    for r in repos:
        p = Path(r).expanduser()
        if not p.is_dir():
            raise BuildError(f"{p}: no such folder")
        src = detect(p)
        if src is None:
            raise BuildError(f"{p}: not a rule repository this build knows "
                             f"({', '.join(SOURCES)}); see docs/sources.md")
        root = str(p.resolve())
        if root not in seen:
            seen.add(root)
            out.append((root, src))
    return out


# The code whose output the catalog stores: when any of it changes (a new Rule Atlas, an edited
# analyzer), stored rules are stale although their files are not, so the next build parses all.
PIPELINE_PARTS = ("model.py", "attack.py", "build.py", "sources", "languages", "indicators",
                  "coverage", "store/writer.py", "store/codec.py")


def pipeline_digest() -> str:
    """Hash of the pipeline's code and data files (``PIPELINE_PARTS``)."""
    base = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for part in PIPELINE_PARTS:
        p = base / part
        files = sorted(f for f in p.rglob("*") if f.suffix in (".py", ".yaml", ".yml", ".toml",
                                                               ".json", ".lark")
                       ) if p.is_dir() else [p]
        for f in files:
            try:
                data = f.read_bytes()
            except OSError:
                continue
            h.update(f.relative_to(base).as_posix().encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def _list_files(root: str, src: Source) -> tuple[list[tuple[str, int, int]], frozenset[str]]:
    """``(path, size, mtime_ns)`` of the rule files, sorted, and the paths among them whose
    name is not UTF-8 (SQLite text must be): those are kept under a readable escaped name and
    reported, not parsed."""
    out = []
    bad: set[str] = set()
    rp = Path(root)
    for f in src.rule_files(rp):
        try:
            st = f.stat()
        except OSError:
            continue  # gone between listing and stat: not part of this build
        rel = f.relative_to(rp).as_posix()
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            rel = os.fsencode(rel).decode("utf-8", "backslashreplace")
            bad.add(rel)
        out.append((rel, st.st_size, st.st_mtime_ns))
    out.sort()
    return out, frozenset(bad)


def _bad_name_result(path: str) -> FileRecord:
    return FileRecord(path, "", (FileError(None, None, "encoding",
                                           "file name is not valid UTF-8; rename it"),), ())


def build(repos: Sequence[str | Path], db_path: str | Path, progress: Progress | None = None,
          workers: int | None = None, attack_json: str | Path | None = None,
          full: bool = False) -> BuildSummary:
    """Build the catalog at ``db_path`` from ``repos`` (each auto-detected); incremental.

    ``workers``: processes for parsing (default: all CPUs; 1 = inline); ``attack_json``: an
    official ``enterprise-attack.json`` to take ATT&CK names from instead of the bundled data;
    ``full``: parse every file again (also done by itself when the pipeline's code changed).
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    resolved = _resolve_repos(repos)
    stix = None
    if attack_json is not None:
        if not Path(attack_json).is_file():
            raise BuildError(f"{attack_json}: no such ATT&CK file")
        stix = str(Path(attack_json).resolve())
    cat = Catalog.open(db_path)
    try:
        return _build(cat, resolved, progress, workers, t0, timings, stix, full)
    finally:
        cat.close()


@dataclass
class _Plan:
    """What one build has to do, decided before the write transaction opens."""

    state: list[_Repo]
    code: str  # pipeline digest of this Rule Atlas
    forced: bool  # every file is parsed again (asked for, or the pipeline's code changed)
    stored: dict[str, dict[str, writer.StoredFile]]  # root -> path -> what the catalog holds
    file_tasks: list[tuple[str, str]] = field(default_factory=list)  # (root, path) to parse
    # Unchanged files whose rule lost an id to another file (a duplicate id, or an id another
    # source holds): their outcome can change only when some other file changes or goes.
    rivals: list[tuple[_Repo, str]] = field(default_factory=list)
    hash_updates: list[tuple[int, int, str, str]] = field(default_factory=list)
    reanalyze: list[_Repo] = field(default_factory=list)  # side tables changed
    old_digest: dict[str, str] = field(default_factory=dict)  # root -> stored side digest
    new_sigs: dict[str, str] = field(default_factory=dict)  # root -> side folders signature
    deleted: dict[str, set[str]] = field(default_factory=dict)  # root -> paths gone
    replaced: list[str] = field(default_factory=list)  # earlier clones of a source built here
    stix: str | None = None

    def nothing_to_do(self) -> bool:
        return (not self.forced and not self.file_tasks and not self.reanalyze
                and not any(self.deleted.values()) and not self.replaced
                and not self.hash_updates and not self.new_sigs and self.stix is None
                and all(r.root in self.old_digest for r in self.state))


def _build(cat: Catalog, resolved: list[tuple[str, Source]], progress: Progress | None,
           workers: int | None, t0: float, timings: dict[str, float],
           stix: str | None = None, full: bool = False) -> BuildSummary:
    t = time.perf_counter()
    state = [_Repo(root, src, *_list_files(root, src)) for root, src in resolved]
    timings["list"] = time.perf_counter() - t

    code = pipeline_digest()
    forced = full or cat.meta("pipeline_digest") not in (None, code)
    stored = writer.stored_files(cat.conn, [r.root for r in state])
    if forced:  # every file is parsed again: forget what was stored (cleared in the transaction)
        stored = {root: {} for root in stored}
    plan = _Plan(state, code, forced, stored, stix=stix)
    t = time.perf_counter()
    _scan_files(plan)
    timings["scan"] = time.perf_counter() - t
    t = time.perf_counter()
    _read_side_tables(cat, plan)
    timings["side_tables"] = time.perf_counter() - t
    _find_gone(cat, plan)
    _wake_rivals(plan)
    if plan.nothing_to_do():
        timings["total"] = time.perf_counter() - t0
        return BuildSummary(str(cat.path), tuple(_summaries(cat, state)),
                            time.perf_counter() - t0, timings)
    with cat.transaction():
        w = writer.Writer(cat.conn)
        t = time.perf_counter()
        _write_repos(w, plan)
        timings["side_write"] = time.perf_counter() - t
        t = time.perf_counter()
        _write_files(w, plan, workers, progress)
        timings["parse_write"] = time.perf_counter() - t
        t = time.perf_counter()
        _reanalyze(cat, w, plan, workers, progress)
        timings["reanalyze"] = time.perf_counter() - t
        t = time.perf_counter()
        w.finish([r.root for r in state])
        timings["finish"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        w.set_meta("last_build", {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(timings["total"], 3),
            "repos": {r.root: {"source": r.src.name, "parsed": r.parsed,
                               "unchanged": r.unchanged, "deleted": r.deleted,
                               "reanalyzed": r.reanalyzed} for r in state},
        })
        # the engine's plans of new and changed rules (engine/plans.py), in this transaction
        from ruleatlas.engine import plans

        timings["plans"] = plans.refresh_timed(
            cat.conn, lambda fn, tasks: _run(fn, tasks, workers, progress, "plans"))
    return BuildSummary(str(cat.path), tuple(_summaries(cat, state)),
                        time.perf_counter() - t0, timings, tuple(plan.replaced))


def _scan_files(plan: _Plan) -> None:
    """Which files to parse: new, or changed in size/mtime and content (sha256). A file whose
    content did not change only has its new stat remembered (``hash_updates``)."""
    for repo in plan.state:
        have = plan.stored.get(repo.root, {})
        for rel, size, mtime in repo.files:
            old = have.get(rel)
            if old is not None:
                if old.size == size and old.mtime_ns == mtime:
                    _unchanged(plan, repo, rel, old.dup)
                    continue
                digest = "" if rel in repo.bad_names else _hash_or_empty(Path(repo.root, rel))
                if digest and digest == old.sha256:
                    plan.hash_updates.append((size, mtime, repo.root, rel))
                    _unchanged(plan, repo, rel, old.dup)
                    continue
            plan.file_tasks.append((repo.root, rel))
            repo.parsed += 1


def _unchanged(plan: _Plan, repo: _Repo, rel: str, rival: bool) -> None:
    repo.unchanged += 1
    if rival:
        plan.rivals.append((repo, rel))


def _wake_rivals(plan: _Plan) -> None:
    """Parse the files that lost an id again when anything else changed (its holder may be
    gone or renamed); with nothing else to do, their stored outcome still holds."""
    if not plan.rivals or not (plan.file_tasks or any(plan.deleted.values()) or plan.replaced
                               or plan.reanalyze):
        return
    for repo, rel in plan.rivals:
        plan.file_tasks.append((repo.root, rel))
        repo.unchanged -= 1
        repo.parsed += 1


def _read_side_tables(cat: Catalog, plan: _Plan) -> None:
    """Side tables: read when something will be analyzed, or when their digest may have moved;
    a changed digest marks the repository's affected rules for analysis again."""
    plan.old_digest = writer.side_digests(cat.conn)
    busy = {root for root, _ in plan.file_tasks}
    for repo in plan.state:
        sig = _side_signature(repo.root, repo.src.name)
        if (sig is not None and repo.root not in busy and repo.root in plan.old_digest
                and cat.meta(f"side_signature:{repo.root}") == sig):
            continue  # side files untouched and nothing to analyze: do not read them
        if sig is not None:
            plan.new_sigs[repo.root] = sig
        side = repo.src.side_tables(Path(repo.root))
        repo.side = side
        _CTX[repo.root] = (repo.src, AnalysisContext(macros=side.macros,
                                                     data_sources=side.data_sources))
        if repo.root in plan.old_digest and plan.old_digest[repo.root] != side.digest:
            repo.affected = writer.affected_rules(cat.conn, repo.root, repo.src.name, side)
            if repo.affected is None or repo.affected:
                plan.reanalyze.append(repo)
    _configure_coverage.cache_clear()  # the data sources of a root may have changed


def _find_gone(cat: Catalog, plan: _Plan) -> None:
    """Files deleted since the last build, and earlier clones of a source built here."""
    plan.deleted = {repo.root: set(plan.stored.get(repo.root, {})) - {f[0] for f in repo.files}
                    for repo in plan.state}
    # One repository per source: an earlier clone of a source built here (another path, e.g.
    # the corpus before `sync`) leaves the catalog, or all its ids would clash.
    here = {r.root for r in plan.state}
    sources_here = {r.src.name for r in plan.state}
    plan.replaced = sorted(root for root, src in writer.repo_sources(cat.conn).items()
                           if src in sources_here and root not in here)


def _write_repos(w: writer.Writer, plan: _Plan) -> None:
    """Reference data, side tables, repositories gone, deleted files, new stats."""
    w.attack_techniques(plan.stix)
    for root, sig in plan.new_sigs.items():
        w.set_meta(f"side_signature:{root}", sig)
    for root in plan.replaced:
        w.drop_repo(root)
    if plan.forced:
        w.clear_repos([r.root for r in plan.state])
    w.set_meta("pipeline_digest", plan.code)
    for repo in plan.state:
        if repo.side is not None:
            w.side_tables(repo.root, repo.src.name, repo.side)
        repo.deleted = len(plan.deleted[repo.root])
        for rel in sorted(plan.deleted[repo.root]):
            w.drop_file(repo.root, rel)
    w.touch_files(plan.hash_updates)


def _write_files(w: writer.Writer, plan: _Plan, workers: int | None,
                 progress: Progress | None) -> None:
    """Parse and analyze the files to parse (in a pool when many), writing each as it comes."""
    repo_of = {r.root: r for r in plan.state}
    size_of = {(r.root, f[0]): (f[1], f[2]) for r in plan.state for f in r.files}
    w.begin_files({r.root: i for i, r in enumerate(plan.state)},
                  {(root, p) for root, have in plan.stored.items() for p in have})
    bad = [t for t in plan.file_tasks if t[1] in repo_of[t[0]].bad_names]
    good = [t for t in plan.file_tasks if t[1] not in repo_of[t[0]].bad_names]
    for root, rel in bad:
        w.write_file(repo_of[root].src.name, root, *size_of[(root, rel)], _bad_name_result(rel))
    for (root, rel), res in zip(good, _run(_work_file, good, workers, progress, "parse"),
                                strict=True):
        w.write_file(repo_of[root].src.name, root, *size_of[(root, rel)], res)


def _reanalyze(cat: Catalog, w: writer.Writer, plan: _Plan, workers: int | None,
               progress: Progress | None) -> None:
    """Analyze again the stored rules a side-table change affects (not those just parsed)."""
    if plan.forced:
        return  # everything was parsed and analyzed anew
    for repo in plan.reanalyze:
        tasks = [(repo.root, rid, j) for rid, j in writer.rule_jsons(
            cat.conn, repo.root, exclude=w.written_rules, only=repo.affected)]
        for rec in _run(_work_rule, tasks, workers, progress, "re-analyze"):
            w.rewrite_rule(rec)
            repo.reanalyzed += 1


def _summaries(cat: Catalog, state: list[_Repo]) -> Iterator[RepoSummary]:
    for repo in state:
        files, rules, errors, side = writer.repo_counts(cat.conn, repo.root)
        yield RepoSummary(repo.src.name, repo.root, files, rules, errors, side, repo.parsed,
                          repo.unchanged, repo.deleted, repo.reanalyzed)
