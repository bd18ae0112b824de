"""Build (or rebuild) the catalog from rule repositories: sources -> languages -> store.

Why it is shaped like this:

* **Incremental.** Each rule file's ``(size, mtime_ns, sha256)`` is stored. A file whose size and
  mtime did not change is not even read; one whose hash did not change is not parsed. Deleted
  files leave the catalog with their rules and errors. When a repository's side tables changed
  (``SideTables.digest``: a Splunk macro was edited), every rule of that repository is analyzed
  again from its stored ``rule_json``, without parsing YAML again.
* **Parallel where it pays.** Parsing and analysis (pure functions of a file) run in a process
  pool when many files changed; workers return plain tuples ready for ``executemany``, so the
  main process only writes. Few changes run inline (a pool costs more than it saves).
* **One write transaction** per build: a reader (the web server) sees the old catalog or the
  new one, never half of each.
* **Every file accounted for**: a file's rules + load errors >= 1, and duplicate ids become
  ``LoadError(kind="duplicate-id")`` on the later file (sorted by repository order, then path),
  naming the file that holds the id.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruleatlas import coverage, indicators
from ruleatlas.languages import AnalysisContext, analyze
from ruleatlas.model import Analysis, FileResult, Problem, Rule, Span, analysis_to_dict
from ruleatlas.sources import SOURCES, detect
from ruleatlas.sources.base import SideTables, Source
from ruleatlas.store import writer
from ruleatlas.store.catalog import Catalog
from ruleatlas.store.codec import dumps, rule_from_json, rule_to_json

Progress = Callable[[str, int, int], None]  # (phase label, done, total)

POOL_MIN_TASKS = 300  # below this many files (or rules) to process, run inline


class BuildError(ValueError):
    """A repository that cannot be built at all (missing folder, unknown layout)."""


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
# Work done per file / per rule (also in worker processes): pure, returns plain tuples
# --------------------------------------------------------------------------------------------

# root -> (source, analysis context); set before the pool forks, or in the main process.
_CTX: dict[str, tuple[Source, AnalysisContext]] = {}
_CONFIGURED: list[str] = [""]  # root whose data sources coverage is configured with

_MACRO_CALL = re.compile(r"`([A-Za-z0-9_.:-]+)(?:\(((?:[^`()]|\([^`()]*\))*)\))?`")


def _macros_used(rule: Rule, a: Analysis) -> list[str]:
    """Macro keys a rule calls: from the analyzer when it says, else from the query text."""
    got = a.extra.get("macros") if isinstance(a.extra, dict) else None
    if isinstance(got, (list, tuple)) and all(isinstance(m, str) for m in got):
        return list(dict.fromkeys(got))
    if rule.language != "spl":
        return []
    out: list[str] = []
    for name, args in _MACRO_CALL.findall(rule.query):
        n = len(_split_args(args)) if args.strip() else 0
        out.append(f"{name}({n})" if n else name)
    return list(dict.fromkeys(out))


def _split_args(args: str) -> list[str]:
    depth, parts, cur = 0, [], ""
    for ch in args:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _ctx(root: str) -> tuple[Source, AnalysisContext]:
    src, ctx = _CTX[root]
    if _CONFIGURED[0] != root:
        coverage.configure(ctx.data_sources)
        _CONFIGURED[0] = root
    return src, ctx


def _pack_rule(root: str, rule: Rule, ctx: AnalysisContext) -> tuple[Any, ...]:
    """One rule analyzed and flattened into the rows the store writes."""
    a = analyze(rule, ctx)
    crashed: list[Problem] = []
    try:
        inds = indicators.extract(rule, a)
    except Exception as e:  # a bug there must not lose the rule: keep it, and say so on it
        inds = ()
        crashed.append(Problem(f"indicators could not be extracted: {type(e).__name__}: {e}",
                               "error", Span(rule.line, 1, path=rule.path), "crash"))
    try:
        evs = coverage.events_for(rule, a)
    except Exception as e:
        evs = ()
        crashed.append(Problem(f"event coverage could not be computed: {type(e).__name__}: {e}",
                               "error", Span(rule.line, 1, path=rule.path), "crash"))
    if crashed:
        a = replace(a, problems=(*a.problems, *crashed))
    row = (
        rule.id, rule.source, root, rule.path, rule.doc_index, rule.line, rule.source_url,
        rule.title, rule.status, rule.severity, rule.author, rule.date, rule.modified,
        rule.version, rule.type, rule.language, rule.description or "", rule.how_to_implement,
        rule.query, rule.body, rule_to_json(rule), dumps(analysis_to_dict(a)),
        dumps(list(a.group_by)), len(a.problems),
    )
    ind_rows = tuple(
        (i, ind.field, ind.op, int(ind.negated), v.value, ind.field_key, v.key)
        for i, ind in enumerate(inds) for v in ind.values
    )
    return (
        row,
        tuple(dict.fromkeys(_technique(t) for t in rule.attack)),
        tuple(dict.fromkeys(rule.data_sources)),
        tuple(dict.fromkeys(rule.stories)),
        tuple(dict.fromkeys((e.channel, e.event_id or "") for e in evs)),
        tuple(_macros_used(rule, a)),
        ind_rows,
    )


def _technique(t: str) -> str:
    s = t.strip()
    if s.lower().startswith("attack."):
        s = s[7:]
    return s.upper()


def _work_file(task: tuple[str, str]) -> tuple[Any, ...]:
    """Parse one file and analyze its rules: ``(path, sha256, errors, packed rules)``.

    Never raises: a failure of this pipeline on one rule (or file) becomes a located
    ``internal`` load error of that file, and the build goes on."""
    root, path = task
    try:
        src, ctx = _ctx(root)
        fr: FileResult = src.load_file(Path(root), Path(root, path))
    except Exception as e:
        try:
            digest = _sha256(Path(root, path))
        except OSError:
            digest = ""
        return (path, digest, ((None, None, "internal",
                                f"could not be loaded: {type(e).__name__}: {e}"),), ())
    errs = [(e.line, e.col, e.kind, e.reason) for e in fr.errors]
    packed = []
    for r in fr.rules:
        try:
            packed.append(_pack_rule(root, r, ctx))
        except Exception as e:
            errs.append((r.line, None, "internal",
                         f"rule {r.id} could not be stored: {type(e).__name__}: {e}"))
    return (path, fr.sha256, tuple(errs), tuple(packed))


def _work_rule(task: tuple[str, str]) -> tuple[Any, ...] | None:
    """Analyze a stored rule again (side tables changed); None keeps the stored analysis."""
    root, rule_json = task
    try:
        _, ctx = _ctx(root)
        return _pack_rule(root, rule_from_json(rule_json), ctx)
    except Exception:
        return None


def _warm() -> None:
    """Import and load what every worker needs once, before forking (workers inherit it)."""
    from ruleatlas.languages import _load_builtin

    _load_builtin()
    try:
        from ruleatlas.coverage.table import load_table
        from ruleatlas.sources.sigma import _pysigma

        load_table()
        _pysigma("detection")
    except Exception:  # warming is an optimisation only
        pass


def _run(fn: Callable[[Any], Any], tasks: list[Any], workers: int | None,
         progress: Progress | None, label: str) -> Iterator[Any]:
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
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class _Repo:
    root: str
    src: Source
    files: list[tuple[str, int, int]]  # (rel path, size, mtime_ns), sorted
    side: SideTables | None = None
    parsed: int = 0
    unchanged: int = 0
    deleted: int = 0
    reanalyzed: int = 0
    affected: set[str] | None = None  # rules to analyze again (None: all)


# Folders a source's side tables are read from. When none of their files changed (size, mtime)
# and no rule file of the repository needs analysis, a rebuild does not read them at all.
# A source without an entry has its side tables read on every build (always correct).
SIDE_FOLDERS: dict[str, tuple[str, ...]] = {
    "splunk": ("macros", "stories", "data_sources", "lookups"),
}


def _side_signature(root: str, source: str) -> str | None:
    folders = SIDE_FOLDERS.get(source)
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


_BAD_NAMES: set[tuple[str, str]] = set()  # (root, shown path) of files named in bad UTF-8


def _list_files(root: str, src: Source) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of the rule files, sorted. A file name that is not UTF-8
    (SQLite text must be) is kept under a readable escaped name and reported, not parsed."""
    out = []
    rp = Path(root)
    for f in src.rule_files(rp):
        try:
            st = f.stat()
        except OSError:
            continue
        rel = f.relative_to(rp).as_posix()
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            rel = os.fsencode(rel).decode("utf-8", "backslashreplace")
            _BAD_NAMES.add((root, rel))
        out.append((rel, st.st_size, st.st_mtime_ns))
    out.sort()
    return out


def _bad_name_result(path: str) -> tuple[Any, ...]:
    return (path, "", ((None, None, "encoding", "file name is not valid UTF-8; rename it"),), ())


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


def _build(cat: Catalog, resolved: list[tuple[str, Source]], progress: Progress | None,
           workers: int | None, t0: float, timings: dict[str, float],
           stix: str | None = None, full: bool = False) -> BuildSummary:
    conn = cat.conn
    t = time.perf_counter()
    state = [_Repo(root, src, _list_files(root, src)) for root, src in resolved]
    timings["list"] = time.perf_counter() - t

    code = pipeline_digest()
    stale = cat.meta("pipeline_digest") not in (None, code)
    forced = full or stale
    stored = writer.stored_files(conn, [r.root for r in state])
    if forced:  # every file is parsed again: forget what was stored (cleared in the transaction)
        stored = {root: {} for root in stored}
    file_tasks: list[tuple[str, str]] = []
    hash_updates: list[tuple[int, int, str, str]] = []
    t = time.perf_counter()
    for repo in state:
        have = stored.get(repo.root, {})
        for rel, size, mtime in repo.files:
            old = have.get(rel)
            if old is not None and not old.dup:
                if old.size == size and old.mtime_ns == mtime:
                    repo.unchanged += 1
                    continue
                if (repo.root, rel) in _BAD_NAMES:
                    file_tasks.append((repo.root, rel))
                    repo.parsed += 1
                    continue
                try:
                    digest = _sha256(Path(repo.root, rel))
                except OSError:
                    digest = ""
                if digest and digest == old.sha256:
                    hash_updates.append((size, mtime, repo.root, rel))
                    repo.unchanged += 1
                    continue
            file_tasks.append((repo.root, rel))
            repo.parsed += 1
    timings["scan"] = time.perf_counter() - t

    # Side tables: read when something will be analyzed, or when their digest may have moved.
    t = time.perf_counter()
    reanalyze: list[_Repo] = []
    old_digest = writer.side_digests(conn)
    busy = {root for root, _ in file_tasks}
    new_sigs: dict[str, str] = {}
    for repo in state:
        sig = _side_signature(repo.root, repo.src.name)
        if (sig is not None and repo.root not in busy and repo.root in old_digest
                and cat.meta(f"side_signature:{repo.root}") == sig):
            continue  # side files untouched and nothing to analyze: do not read them
        if sig is not None:
            new_sigs[repo.root] = sig
        side = repo.src.side_tables(Path(repo.root))
        repo.side = side
        _CTX[repo.root] = (repo.src, AnalysisContext(macros=side.macros,
                                                     data_sources=side.data_sources))
        if repo.root in old_digest and old_digest[repo.root] != side.digest:
            repo.affected = writer.affected_rules(conn, repo.root, repo.src.name, side)
            if repo.affected is None or repo.affected:
                reanalyze.append(repo)
    _CONFIGURED[0] = ""
    timings["side_tables"] = time.perf_counter() - t

    deleted = {repo.root: set(stored.get(repo.root, {})) - {f[0] for f in repo.files}
               for repo in state}
    # One repository per source: an earlier clone of a source built here (another path, e.g.
    # the corpus before `sync`) leaves the catalog, or all its ids would clash.
    here = {r.root for r in state}
    sources_here = {r.src.name for r in state}
    replaced = sorted(root for root, src in writer.repo_sources(conn).items()
                      if src in sources_here and root not in here)
    nothing = (not forced and not file_tasks and not reanalyze and not any(deleted.values())
               and not replaced and not hash_updates and not new_sigs and stix is None
               and all(r.root in old_digest for r in state))
    if nothing:
        timings["total"] = time.perf_counter() - t0
        return BuildSummary(str(cat.path), tuple(_summaries(cat, state)),
                            time.perf_counter() - t0, timings)

    with cat.transaction():
        w = writer.Writer(conn)
        t = time.perf_counter()
        w.attack_techniques(stix)
        for root, sig in new_sigs.items():
            w.set_meta(f"side_signature:{root}", sig)
        for root in replaced:
            w.drop_repo(root)
        if forced:
            w.clear_repos([r.root for r in state])
        w.set_meta("pipeline_digest", code)
        for repo in state:
            if repo.side is not None:
                w.side_tables(repo.root, repo.src.name, repo.side)
            repo.deleted = len(deleted[repo.root])
            for rel in sorted(deleted[repo.root]):
                w.drop_file(repo.root, rel)
        w.touch_files(hash_updates)
        timings["side_write"] = time.perf_counter() - t

        src_of = {r.root: r.src.name for r in state}
        size_of = {(r.root, f[0]): (f[1], f[2]) for r in state for f in r.files}
        order = {r.root: i for i, r in enumerate(state)}
        w.begin_files(order, {(root, p) for root, have in stored.items() for p in have})
        if forced:
            reanalyze = []  # everything is parsed and analyzed anew
        t = time.perf_counter()
        bad = [t for t in file_tasks if t in _BAD_NAMES]
        good = [t for t in file_tasks if t not in _BAD_NAMES]
        for root, rel in bad:
            w.write_file(src_of[root], root, rel, *size_of[(root, rel)], _bad_name_result(rel))
        for (root, rel), res in zip(good, _run(_work_file, good, workers, progress, "parse"),
                                    strict=True):
            size, mtime = size_of[(root, rel)]
            w.write_file(src_of[root], root, rel, size, mtime, res)
        timings["parse_write"] = time.perf_counter() - t

        t = time.perf_counter()
        for repo in reanalyze:
            tasks = [(repo.root, j) for j in writer.rule_jsons(
                conn, repo.root, exclude=w.written_rules, only=repo.affected)]
            for packed in _run(_work_rule, tasks, workers, progress, "re-analyze"):
                if packed is not None:
                    w.rewrite_rule(packed)
                    repo.reanalyzed += 1
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
            conn, lambda fn, tasks: _run(fn, tasks, workers, progress, "plans"))
    return BuildSummary(str(cat.path), tuple(_summaries(cat, state)),
                        time.perf_counter() - t0, timings, tuple(replaced))


def _summaries(cat: Catalog, state: list[_Repo]) -> Iterator[RepoSummary]:
    for repo in state:
        files, rules, errors, side = writer.repo_counts(cat.conn, repo.root)
        yield RepoSummary(repo.src.name, repo.root, files, rules, errors, side, repo.parsed,
                          repo.unchanged, repo.deleted, repo.reanalyzed)
